//! Arbitrary bytes never panic the parser (a cargo-fuzz target covers the same entry point
//! more deeply: fuzz/fuzz_targets/parse_unit.rs).

use gitproc::unit::{SpecifierContext, parse_unit};
use proptest::prelude::*;

fn parse(bytes: &[u8], dropin: &[u8]) {
    let ctx = SpecifierContext::default();
    let dropins = vec![("x@i.service.d/a.conf".to_string(), dropin.to_vec())];
    let env = |p: &str| p.len().is_multiple_of(2).then(|| dropin.to_vec());
    let l = parse_unit("x@i.service", "x@.service", bytes, &dropins, &ctx, &env);
    // Every diagnostic has a position.
    assert!(l.diagnostics.iter().all(|d| d.line >= 1 && d.column >= 1));
    assert_eq!(l.unit.is_none(), l.has_errors());
}

/// Bytes that look like unit files: sections, keys, quotes, escapes, specifiers, variables.
fn unitish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just("[Service]\n".to_string()),
        Just("[Unit]\n".to_string()),
        Just("ExecStart=".to_string()),
        Just("Environment=".to_string()),
        Just("EnvironmentFile=".to_string()),
        Just("Type=oneshot\n".to_string()),
        Just("LimitNOFILE=".to_string()),
        Just("TimeoutSec=".to_string()),
        Just("KillSignal=SIGRTMIN+".to_string()),
        Just("KillSignal=SIGRTMAX-".to_string()),
        Just("LimitCPU=".to_string()),
        Just("LimitNICE=".to_string()),
        Just("RestartSec=".to_string()),
        Just("SuccessExitStatus=".to_string()),
        "-?[0-9.]{0,25}[a-zA-Z]{0,3}",
        Just("\\\n".to_string()),
        Just("\"".to_string()),
        Just("'".to_string()),
        Just("\\x".to_string()),
        Just("\\u".to_string()),
        Just("%".to_string()),
        Just("$".to_string()),
        Just("${".to_string()),
        Just(";".to_string()),
        Just("-@:+!".to_string()),
        Just("\n".to_string()),
        "[a-zA-Z0-9 /=.é]{0,8}",
    ];
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat().into_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), d in prop::collection::vec(any::<u8>(), 0..64)) {
        parse(&bytes, &d);
    }

    #[test]
    fn unit_like_text_never_panics(bytes in unitish(), d in unitish()) {
        parse(&bytes, &d);
    }
}

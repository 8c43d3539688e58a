//! The whole-core property test: arbitrary unit sets and event sequences through
//! [`super::drive`]. `PROPTEST_CASES` bounds it (default 64, a few seconds).

use std::time::Instant;

use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn the_core_keeps_its_invariants(data in proptest::collection::vec(any::<u8>(), 0..1500)) {
        super::drive(&data, Instant::now());
    }
}

/// The hostile spans of the unit generator, each on every key, started, stopped, and
/// timed out: nothing overflows.
#[test]
fn huge_spans_on_every_key_run_and_stop() {
    let mut data = Vec::new();
    for seed in 0u8..=255 {
        data.clear();
        data.extend((0..400u32).map(|i| seed.wrapping_mul(31).wrapping_add((i * 7) as u8)));
        super::drive(&data, Instant::now());
    }
}

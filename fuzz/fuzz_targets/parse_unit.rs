//! Fuzzes the unit parser: the input is split into a unit file and a drop-in at the first NUL
//! byte; the drop-in's bytes also serve as every environment file. Nothing may panic.
//!
//! Run: `cd fuzz && cargo +nightly fuzz run parse_unit`

#![no_main]

use gitproc::unit::{SpecifierContext, parse_unit};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (unit, dropin) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let ctx = SpecifierContext::default();
    let dropins = vec![("fuzz@x.service.d/a.conf".to_string(), dropin.to_vec())];
    let env = |_: &str| Some(dropin.to_vec());
    let loaded = parse_unit("fuzz@x.service", "fuzz@.service", unit, &dropins, &ctx, &env);
    assert_eq!(loaded.unit.is_none(), loaded.has_errors());
});

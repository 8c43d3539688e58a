//! Fuzzes the whole pure core: the input is a scenario for `gitproc::testing::drive` (unit
//! files, exits, notify datagrams, timer fires, operator jobs, new snapshots, daemon
//! restarts on a simulated clock). Nothing may panic and the supervisor's invariants (one
//! main process per unit, signals only to its own pids, everything down after a shutdown)
//! must hold; the same driver runs as a proptest in `cargo test`.
//!
//! Run: `cd fuzz && cargo +nightly fuzz run core_pipeline`

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    gitproc::testing::drive(data, std::time::Instant::now());
});

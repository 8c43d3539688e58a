//! The whole pure core driven without a process (issue 10): unit files -> the parser ->
//! `reconcile` -> the service state machines -> `deps`, on a simulated clock. A small driver
//! ([`sim::Sim`]) plays the event loop's role: it answers `Effect::Spawn` with a fake pid,
//! records `Effect::Signal`, delivers exits, notify datagrams and timer fires, runs operator
//! jobs, applies new snapshots and restarts the "daemon" from what it would have persisted.
//!
//! One entry point, [`drive`], turns arbitrary bytes into a scenario, so the proptest
//! (`testing::tests`, bounded by `PROPTEST_CASES`, default 64) and the cargo-fuzz target
//! (`fuzz/fuzz_targets/core_pipeline.rs`) run the same code. The invariants it checks, and
//! panics on (a panic anywhere in the core is a failure too):
//!
//! - at most one main process per unit: a unit never spawns a main process while one it
//!   had is still there (not yet reaped);
//! - no signal to a pid the unit does not own (never spawned or handed to it, or already
//!   reaped);
//! - after a shutdown (stop everything, then every signalled process exits, every helper
//!   finishes and timers fire), every unit is inactive or failed.
//!
//! Compiled for tests and with the `fuzzing` feature only; not part of the API.

mod lifecycle;
mod sim;
#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

pub use sim::Sim;

/// Reads a scenario out of arbitrary bytes: every read succeeds (zeros past the end), so
/// every input is a scenario.
pub struct Bytes<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Bytes<'a> {
    pub fn new(data: &'a [u8]) -> Bytes<'a> {
        Bytes { data, at: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.at >= self.data.len()
    }

    pub fn byte(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at = self.at.saturating_add(1);
        b
    }

    /// True for one in `n` values of the next byte.
    pub fn one_in(&mut self, n: u8) -> bool {
        self.byte().is_multiple_of(n)
    }

    /// One of `options`, chosen by the next byte.
    pub fn pick<T: Copy>(&mut self, options: &[T]) -> T {
        options[usize::from(self.byte()) % options.len()]
    }

    /// Up to `max` raw bytes (garbage for the parser).
    pub fn raw(&mut self, max: usize) -> Vec<u8> {
        let n = usize::from(self.byte()) % (max + 1);
        (0..n).map(|_| self.byte()).collect()
    }
}

/// The number of units a scenario names (`u0.service` ..).
pub const UNITS: usize = 4;

/// The time spans a generated unit uses: zero, small, and the hostile ones (huge, infinity).
const SPANS: &[&str] = &[
    "0",
    "100ms",
    "1s",
    "5s",
    "90s",
    "infinity",
    "300000000000y",
    "584542y",
    "18446744073709551615us",
];

/// A unit file for unit `index`, chosen by the bytes: its type, Restart=, time spans
/// (including huge and zero ones), helper commands, and Requires=/After=/Wants= on the
/// other units. Sometimes garbage is appended (the parser must report it, not panic).
pub fn unit_file(index: usize, b: &mut Bytes) -> Vec<u8> {
    let ty = b.pick(&["simple", "exec", "forking", "oneshot", "notify"]);
    let restart = b.pick(&[
        "no",
        "always",
        "on-failure",
        "on-abnormal",
        "on-success",
        "on-watchdog",
    ]);
    let mut text = format!("[Unit]\nDescription=generated unit {index}\n");
    for _ in 0..b.byte() % 3 {
        let key = b.pick(&["Requires", "After", "Wants", "Before", "BindsTo"]);
        let other = usize::from(b.byte()) % (UNITS + 1);
        text.push_str(&format!("{key}=u{other}.service\n"));
    }
    if b.one_in(2) {
        text.push_str(&format!(
            "StartLimitIntervalSec={}\nStartLimitBurst={}\n",
            b.pick(SPANS),
            b.byte() % 4
        ));
    }
    text.push_str(&format!(
        "[Service]\nType={ty}\nExecStart=/bin/true {index}\nRestart={restart}\n"
    ));
    for key in [
        "RestartSec",
        "TimeoutStartSec",
        "TimeoutStopSec",
        "WatchdogSec",
        "RestartMaxDelaySec",
    ] {
        if b.one_in(2) {
            text.push_str(&format!("{key}={}\n", b.pick(SPANS)));
        }
    }
    if b.one_in(3) {
        text.push_str(&format!("RestartSteps={}\n", b.byte() % 5));
    }
    if ty == "forking" || b.one_in(4) {
        text.push_str(&format!("PIDFile=/run/u{index}.pid\n"));
    }
    if ty == "oneshot" && b.one_in(2) {
        text.push_str("RemainAfterExit=yes\nExecStart=/bin/true second\n");
    }
    for key in [
        "ExecStartPre",
        "ExecStartPost",
        "ExecStop",
        "ExecStopPost",
        "ExecReload",
    ] {
        if b.one_in(4) {
            text.push_str(&format!("{key}=/bin/true {key}\n"));
        }
    }
    text.push_str(b.pick(&[
        "",
        "KillMode=process\n",
        "KillMode=mixed\n",
        "NotifyAccess=all\n",
    ]));
    let mut bytes = text.into_bytes();
    if b.one_in(8) {
        bytes.extend(b.raw(24));
    }
    bytes
}

/// Runs the scenario `data` describes from `t0` (the simulated clock's origin; the caller
/// reads the real clock once, the core never does) and checks the invariants; panics with
/// the violated one.
pub fn drive(data: &[u8], t0: Instant) {
    let mut b = Bytes::new(data);
    let mut sim = Sim::new(t0, b.one_in(2));
    let mut snapshot = std::collections::BTreeMap::new();
    for i in 0..UNITS {
        if !b.one_in(4) {
            snapshot.insert(format!("u{i}.service"), unit_file(i, &mut b));
        }
    }
    sim.apply(&snapshot);
    let mut steps = 0;
    while !b.is_empty() && steps < 200 {
        steps += 1;
        let unit = format!("u{}.service", usize::from(b.byte()) % UNITS);
        match b.byte() % 12 {
            0 | 1 => sim.exit_one(&mut b),
            2 => sim.notify(&unit, &mut b),
            3 | 4 => {
                let step = b.pick(&[0, 10, 100, 1_000, 30_000, 100_000_000]);
                sim.advance(Duration::from_millis(step));
            }
            5 => sim.advance_to_next_deadline(),
            6 => sim.operator(&unit, b.byte()),
            7 => {
                let i = usize::from(b.byte()) % UNITS;
                if b.one_in(4) {
                    snapshot.remove(&unit);
                } else {
                    snapshot.insert(format!("u{i}.service"), unit_file(i, &mut b));
                }
                sim.apply(&snapshot);
            }
            8 => sim.restart_daemon(&snapshot),
            9 => sim.answer_pid_files(&mut b),
            _ => sim.exit_one(&mut b),
        }
        sim.check();
    }
    sim.shutdown();
}

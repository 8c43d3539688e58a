//! Latency histograms of the daemon's own operations (fetch, parse, diff, apply, spawn,
//! reap-to-restart, save, control request), for `gitproc perf stats|export`.
//!
//! Each operation has one HDR histogram of fixed size (microseconds, 1 µs .. 1 h, 2
//! significant digits: a few KiB each), so memory stays bounded however long the daemon runs.
//! Owned by the event loop like the rest of the supervisor state.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The operations measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    Fetch,
    Parse,
    Diff,
    Apply,
    Spawn,
    ReapToRestart,
    Save,
    Control,
    /// From a probe result that made a unit unhealthy to the machine's decision (the stop
    /// or restart asked for) inside the daemon.
    ProbeToRestart,
}

impl Op {
    pub const ALL: [Op; 9] = [
        Op::Fetch,
        Op::Parse,
        Op::Diff,
        Op::Apply,
        Op::Spawn,
        Op::ReapToRestart,
        Op::Save,
        Op::Control,
        Op::ProbeToRestart,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::Fetch => "fetch",
            Op::Parse => "parse",
            Op::Diff => "diff",
            Op::Apply => "apply",
            Op::Spawn => "spawn",
            Op::ReapToRestart => "reap_to_restart",
            Op::Save => "save",
            Op::Control => "control",
            Op::ProbeToRestart => "probe_to_restart",
        }
    }
}

/// Summary of one operation's histogram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpStats {
    pub count: u64,
    pub p50_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// One unit's health probes: latency histogram and counters.
struct UnitProbes {
    latency: Histogram<u64>,
    failures: u64,
}

/// Summary of one unit's probes, for `perf export` (`probes`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeStats {
    pub count: u64,
    pub failures: u64,
    pub p50_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// Longest probe latency recorded (a probe's `TimeoutSec=` ends it well before).
const PROBE_MAX_US: u64 = 600_000_000;

/// One histogram per operation.
pub struct Perf {
    histograms: Vec<Histogram<u64>>,
    /// Health probe latencies per unit (1 significant digit more would double the size;
    /// 2 is what the operations use).
    probes: BTreeMap<String, UnitProbes>,
    /// Saves of the state writer already recorded (it saves on its own thread).
    saves_seen: u64,
}

const MAX_US: u64 = 3_600_000_000;

impl Default for Perf {
    fn default() -> Self {
        Perf::new()
    }
}

impl Perf {
    pub fn new() -> Perf {
        let histograms = Op::ALL
            .iter()
            .map(|_| Histogram::new_with_bounds(1, MAX_US, 2).expect("constant bounds are valid"))
            .collect();
        Perf {
            histograms,
            probes: BTreeMap::new(),
            saves_seen: 0,
        }
    }

    /// Records one health probe of `unit`.
    pub fn record_probe(&mut self, unit: &str, took: Duration, ok: bool) {
        if !self.probes.contains_key(unit) {
            let Ok(latency) = Histogram::new_with_bounds(1, PROBE_MAX_US, 2) else {
                return;
            };
            self.probes.insert(
                unit.to_string(),
                UnitProbes {
                    latency,
                    failures: 0,
                },
            );
        }
        if let Some(p) = self.probes.get_mut(unit) {
            p.latency
                .saturating_record((took.as_micros() as u64).clamp(1, PROBE_MAX_US));
            if !ok {
                p.failures += 1;
            }
        }
    }

    /// Forgets the probes of a unit gone from the repository.
    pub fn forget_probes(&mut self, unit: &str) {
        self.probes.remove(unit);
    }

    /// Probe latencies and failures per unit.
    pub fn probe_stats(&self) -> BTreeMap<String, ProbeStats> {
        self.probes
            .iter()
            .map(|(unit, p)| {
                let h = &p.latency;
                let q = |x: f64| {
                    if h.is_empty() {
                        0
                    } else {
                        h.value_at_quantile(x)
                    }
                };
                let stats = ProbeStats {
                    count: h.len(),
                    failures: p.failures,
                    p50_us: q(0.5),
                    p95_us: q(0.95),
                    p99_us: q(0.99),
                    max_us: if h.is_empty() { 0 } else { h.max() },
                };
                (unit.clone(), stats)
            })
            .collect()
    }

    /// Records one occurrence; values above an hour are clamped.
    pub fn record(&mut self, op: Op, took: Duration) {
        let us = (took.as_micros() as u64).clamp(1, MAX_US);
        if let Some(h) = self.histograms.get_mut(op as usize) {
            h.saturating_record(us);
        }
    }

    /// Records the state writer's latest save when its count moved since the last call. The
    /// writer saves on its own thread and keeps only its last duration, so saves between two
    /// calls are sampled, not all counted (they are at most one per few seconds, except
    /// operator-forced ones).
    pub fn record_saves(&mut self, saves: u64, last: Option<Duration>) {
        if saves != self.saves_seen {
            self.saves_seen = saves;
            if let Some(took) = last {
                self.record(Op::Save, took);
            }
        }
    }

    /// A copy of every operation's histogram, for `/metrics` (a few KiB each: the loop
    /// copies, the HTTP thread turns them into buckets).
    pub fn histograms(&self) -> Vec<(&'static str, Histogram<u64>)> {
        Op::ALL
            .iter()
            .zip(&self.histograms)
            .map(|(op, h)| (op.name(), h.clone()))
            .collect()
    }

    /// Percentiles of every operation, keyed by [`Op::name`].
    pub fn stats(&self) -> BTreeMap<String, OpStats> {
        Op::ALL
            .iter()
            .zip(&self.histograms)
            .map(|(op, h)| {
                let stats = OpStats {
                    count: h.len(),
                    p50_us: if h.is_empty() {
                        0
                    } else {
                        h.value_at_quantile(0.5)
                    },
                    p95_us: if h.is_empty() {
                        0
                    } else {
                        h.value_at_quantile(0.95)
                    },
                    p99_us: if h.is_empty() {
                        0
                    } else {
                        h.value_at_quantile(0.99)
                    },
                    max_us: if h.is_empty() { 0 } else { h.max() },
                };
                (op.name().to_string(), stats)
            })
            .collect()
    }
}

/// Renders per-unit probe stats in Prometheus' text exposition format.
pub fn prometheus_probes(probes: &BTreeMap<String, ProbeStats>) -> String {
    let mut out = String::new();
    if probes.is_empty() {
        return out;
    }
    out.push_str("# HELP gitproc_probe_seconds Latency of each unit's health probes.\n");
    out.push_str("# TYPE gitproc_probe_seconds summary\n");
    for (unit, s) in probes {
        let unit = unit.replace('\\', "\\\\").replace('"', "\\\"");
        for (q, v) in [("0.5", s.p50_us), ("0.95", s.p95_us), ("0.99", s.p99_us)] {
            out.push_str(&format!(
                "gitproc_probe_seconds{{unit=\"{unit}\",quantile=\"{q}\"}} {}\n",
                v as f64 / 1e6
            ));
        }
        out.push_str(&format!(
            "gitproc_probe_seconds_count{{unit=\"{unit}\"}} {}\n",
            s.count
        ));
    }
    out.push_str("# HELP gitproc_probe_failures_total Failed health probes per unit.\n");
    out.push_str("# TYPE gitproc_probe_failures_total counter\n");
    for (unit, s) in probes {
        let unit = unit.replace('\\', "\\\\").replace('"', "\\\"");
        out.push_str(&format!(
            "gitproc_probe_failures_total{{unit=\"{unit}\"}} {}\n",
            s.failures
        ));
    }
    out
}

/// Renders stats in Prometheus' text exposition format (summaries in seconds).
pub fn prometheus(stats: &BTreeMap<String, OpStats>) -> String {
    let mut out = String::new();
    out.push_str(
        "# HELP gitproc_operation_seconds Latency of the gitproc daemon's own operations.\n",
    );
    out.push_str("# TYPE gitproc_operation_seconds summary\n");
    for (op, s) in stats {
        for (q, v) in [("0.5", s.p50_us), ("0.95", s.p95_us), ("0.99", s.p99_us)] {
            out.push_str(&format!(
                "gitproc_operation_seconds{{op=\"{op}\",quantile=\"{q}\"}} {}\n",
                v as f64 / 1e6
            ));
        }
        out.push_str(&format!(
            "gitproc_operation_seconds_count{{op=\"{op}\"}} {}\n",
            s.count
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_follow_recorded_values() {
        let mut perf = Perf::new();
        for ms in 1..=100 {
            perf.record(Op::Spawn, Duration::from_millis(ms));
        }
        let stats = perf.stats();
        let spawn = &stats["spawn"];
        assert_eq!(spawn.count, 100);
        assert!((49_000..=51_000).contains(&spawn.p50_us), "{spawn:?}");
        assert!((94_000..=96_000).contains(&spawn.p95_us), "{spawn:?}");
        assert_eq!(stats["fetch"].count, 0);
    }

    #[test]
    fn probes_are_kept_per_unit() {
        let mut perf = Perf::new();
        perf.record_probe("a.service", Duration::from_millis(2), true);
        perf.record_probe("a.service", Duration::from_millis(4), false);
        let stats = perf.probe_stats();
        assert_eq!(
            (stats["a.service"].count, stats["a.service"].failures),
            (2, 1)
        );
        let text = prometheus_probes(&stats);
        assert!(
            text.contains("gitproc_probe_failures_total{unit=\"a.service\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn prometheus_names_every_operation() {
        let mut perf = Perf::new();
        perf.record(Op::Save, Duration::from_millis(3));
        let text = prometheus(&perf.stats());
        assert!(text.contains("gitproc_operation_seconds_count{op=\"save\"} 1"));
        assert!(text.contains("op=\"reap_to_restart\",quantile=\"0.95\""));
    }
}

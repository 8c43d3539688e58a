//! The health of one run of a service (`[X-Health]`), pure: probe outcomes and instants in,
//! the health state and its changes out. The loop owns one [`Health`] per running unit with
//! a health check, feeds it every probe result ([`Health::record`]) and turns a
//! [`Change`] into an event for the service's machine (`Event::Healthy`/`Event::Unhealthy`).
//!
//! The rules (after Docker's and Kubernetes' probes, in `[X-Health]`'s words):
//! - a run starts `starting`; `SuccessThreshold=` consecutive successes make it `healthy`,
//!   `Retries=` consecutive failures make it `unhealthy`;
//! - failures within `StartPeriodSec=` of the run's start do not count while the run has
//!   never been healthy (a slow start is not a failure); a success ends that grace;
//! - a state is entered once: the change is reported once, not at every probe.

use std::time::{Duration, Instant};

use crate::unit::model::HealthCheck;

/// Most bytes of a probe's output kept for `status` (`last_probe_output`).
pub const OUTPUT_KEPT: usize = 512;
/// Most lines of a probe's output kept for `status`.
pub const OUTPUT_LINES: usize = 4;

/// The health state of a run (`none` in status when the unit has no health check).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HealthState {
    Starting,
    Healthy,
    Unhealthy,
}

impl HealthState {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Starting => "starting",
            HealthState::Healthy => "healthy",
            HealthState::Unhealthy => "unhealthy",
        }
    }
}

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutcome {
    pub ok: bool,
    /// In a few words, for the log line and status: `HTTP 503`, `connection refused`,
    /// `exit status 1`, `timed out after 5s`.
    pub summary: String,
    /// What the probe answered (HTTP body, command output), cut to a few lines.
    pub output: String,
}

impl ProbeOutcome {
    pub fn new(ok: bool, summary: impl Into<String>, output: &str) -> ProbeOutcome {
        ProbeOutcome {
            ok,
            summary: summary.into(),
            output: cut_output(output),
        }
    }
}

/// The first [`OUTPUT_LINES`] lines and at most [`OUTPUT_KEPT`] bytes (on a char boundary).
pub fn cut_output(s: &str) -> String {
    let mut end = s.len().min(OUTPUT_KEPT);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end]
        .lines()
        .take(OUTPUT_LINES)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A change of health state, reported once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Healthy { message: String },
    Unhealthy { message: String },
}

/// One run's health.
#[derive(Debug, Clone)]
pub struct Health {
    retries: u32,
    success_threshold: u32,
    /// Until when failures do not count (while never healthy).
    grace_until: Option<Instant>,
    state: HealthState,
    since: Instant,
    /// Consecutive failures and successes.
    failures: u32,
    successes: u32,
    been_healthy: bool,
    pub probes: u64,
    pub failed_probes: u64,
    last: Option<(Instant, ProbeOutcome)>,
}

impl Health {
    /// A run that started at `started`: `starting`.
    pub fn new(check: &HealthCheck, started: Instant) -> Health {
        Health {
            retries: check.retries.max(1),
            success_threshold: check.success_threshold.max(1),
            grace_until: crate::sys::time::deadline(started, check.start_period)
                .filter(|_| check.start_period > Duration::ZERO),
            state: HealthState::Starting,
            since: started,
            failures: 0,
            successes: 0,
            been_healthy: false,
            probes: 0,
            failed_probes: 0,
            last: None,
        }
    }

    pub fn state(&self) -> HealthState {
        self.state
    }

    /// When the current state was entered.
    pub fn since(&self) -> Instant {
        self.since
    }

    /// The last probe's instant and outcome.
    pub fn last(&self) -> Option<&(Instant, ProbeOutcome)> {
        self.last.as_ref()
    }

    /// Records a probe that ended at `at`; returns the change of state it caused, if any.
    pub fn record(&mut self, outcome: ProbeOutcome, at: Instant) -> Option<Change> {
        self.probes += 1;
        let change = if outcome.ok {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            self.grace_until = None;
            if self.state != HealthState::Healthy && self.successes >= self.success_threshold {
                self.enter(HealthState::Healthy, at);
                self.been_healthy = true;
                Some(Change::Healthy {
                    message: format!(
                        "{} after {} {}",
                        outcome.summary,
                        self.successes,
                        plural(self.successes)
                    ),
                })
            } else {
                None
            }
        } else {
            self.failed_probes += 1;
            self.successes = 0;
            let in_grace = !self.been_healthy && self.grace_until.is_some_and(|until| at < until);
            if in_grace {
                None
            } else {
                self.failures = self.failures.saturating_add(1);
                if self.state != HealthState::Unhealthy && self.failures >= self.retries {
                    self.enter(HealthState::Unhealthy, at);
                    Some(Change::Unhealthy {
                        message: format!(
                            "{} after {} {}",
                            outcome.summary,
                            self.failures,
                            plural(self.failures)
                        ),
                    })
                } else {
                    None
                }
            }
        };
        self.last = Some((at, outcome));
        change
    }

    fn enter(&mut self, state: HealthState, at: Instant) {
        self.state = state;
        self.since = at;
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "probe" } else { "probes" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unit::model::{HealthProbe, OnUnhealthy};

    fn check(retries: u32, success: u32, start_period: Duration) -> HealthCheck {
        HealthCheck {
            probe: HealthProbe::Tcp {
                host: "127.0.0.1".into(),
                port: 1,
            },
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            start_period,
            retries,
            success_threshold: success,
            on_unhealthy: OnUnhealthy::Restart,
            ready_on_healthy: false,
        }
    }

    fn ok() -> ProbeOutcome {
        ProbeOutcome::new(true, "HTTP 200", "fine")
    }

    fn bad() -> ProbeOutcome {
        ProbeOutcome::new(false, "HTTP 503", "")
    }

    #[test]
    fn retries_consecutive_failures_make_it_unhealthy_once() {
        let t0 = Instant::now();
        let mut h = Health::new(&check(3, 1, Duration::ZERO), t0);
        assert_eq!(h.state(), HealthState::Starting);
        assert!(matches!(h.record(ok(), t0), Some(Change::Healthy { .. })));
        assert_eq!(h.record(bad(), t0), None);
        assert_eq!(h.record(bad(), t0), None);
        // A success in between starts the count over.
        assert_eq!(h.record(ok(), t0), None);
        assert_eq!(h.record(bad(), t0), None);
        assert_eq!(h.record(bad(), t0), None);
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(
            h.record(bad(), t1),
            Some(Change::Unhealthy {
                message: "HTTP 503 after 3 probes".into()
            })
        );
        assert_eq!(h.state(), HealthState::Unhealthy);
        assert_eq!(h.since(), t1);
        assert_eq!(h.record(bad(), t1), None, "reported once");
        assert_eq!((h.probes, h.failed_probes), (8, 6));
    }

    #[test]
    fn success_threshold_needs_consecutive_successes() {
        let t0 = Instant::now();
        let mut h = Health::new(&check(3, 2, Duration::ZERO), t0);
        assert_eq!(h.record(ok(), t0), None);
        assert_eq!(h.record(bad(), t0), None);
        assert_eq!(h.record(ok(), t0), None);
        assert_eq!(
            h.record(ok(), t0),
            Some(Change::Healthy {
                message: "HTTP 200 after 2 probes".into()
            })
        );
    }

    #[test]
    fn failures_in_the_start_period_do_not_count_until_healthy() {
        let t0 = Instant::now();
        let mut h = Health::new(&check(1, 1, Duration::from_secs(10)), t0);
        assert_eq!(h.record(bad(), t0 + Duration::from_secs(1)), None);
        assert_eq!(h.state(), HealthState::Starting);
        assert!(h.record(bad(), t0 + Duration::from_secs(11)).is_some());
        // A success ends the grace at once.
        let mut h = Health::new(&check(1, 1, Duration::from_secs(10)), t0);
        assert!(h.record(ok(), t0).is_some());
        assert!(h.record(bad(), t0 + Duration::from_secs(1)).is_some());
    }

    #[test]
    fn output_is_cut_to_a_few_lines() {
        let long = "a\nb\nc\nd\ne\nf";
        assert_eq!(cut_output(long), "a\nb\nc\nd");
        let wide = "é".repeat(OUTPUT_KEPT);
        assert!(cut_output(&wide).len() <= OUTPUT_KEPT);
    }
}

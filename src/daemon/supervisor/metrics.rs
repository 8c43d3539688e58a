//! `/metrics` in the loop: the facts only metrics need (last successful check, error and
//! rollback counts, since when the host is behind the tip), and the [`Snapshot`] the HTTP
//! thread asks for. The loop copies numbers and names; the HTTP thread formats.

use std::time::{Duration, SystemTime};

use super::Supervisor;
use crate::metrics::{MetricsQuery, PendingMetrics, Snapshot, UnitMetrics};
use crate::service::ActiveState;

/// Counters and times kept for metrics only.
#[derive(Debug, Default)]
pub(super) struct MetricFacts {
    last_success: Option<SystemTime>,
    source_errors: u64,
    /// When the applied commit first differed from the fetched tip (`None`: on the tip).
    behind_since: Option<SystemTime>,
    pub(super) rollbacks: u64,
}

fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Supervisor {
    /// Called for every check the source worker reports, after the update is taken in.
    pub(super) fn note_check(&mut self, checked_at: SystemTime, failed: bool) {
        let facts = &mut self.metric_facts;
        if failed {
            facts.source_errors = facts.source_errors.saturating_add(1);
        } else {
            facts.last_success = Some(checked_at);
        }
        let s = &self.source;
        let behind = s.fetched_tip.is_some() && s.fetched_tip != s.applied_commit;
        if !behind {
            facts.behind_since = None;
        } else if facts.behind_since.is_none() {
            facts.behind_since = Some(checked_at);
        }
    }

    pub(super) fn on_metrics(&mut self, query: MetricsQuery) {
        let now = SystemTime::now();
        let s = &self.source;
        let w = self.writer.stats();
        let mut units: Vec<UnitMetrics> = self
            .units
            .iter()
            .map(|(name, m)| {
                let (active_state, restarts, last_exit_status) = match &m.service {
                    Some(svc) => {
                        let st = svc.status();
                        // As `status` shows it: a start refused by `Assert*=` is failed,
                        // by `Condition*=` inactive.
                        let state = match &m.condition_failed {
                            Some(why) if st.active_state == ActiveState::Inactive => {
                                if why.starts_with("Assert") {
                                    ActiveState::Failed
                                } else {
                                    ActiveState::Inactive
                                }
                            }
                            _ => st.active_state,
                        };
                        (state, u64::from(st.n_restarts), st.exec_main_status)
                    }
                    None => (ActiveState::Failed, 0, None),
                };
                UnitMetrics {
                    name: name.clone(),
                    active_state,
                    restarts,
                    last_exit_status,
                    rolled_back: m.failed_commit.is_some(),
                    load_error: m.load_error.is_some(),
                    health: self.health.get(name).map(|h| h.health.state().as_str()),
                }
            })
            .collect();
        // Timers and sockets: few, so their status rows are reused as they are.
        let others = self
            .timers_json(&[])
            .into_iter()
            .chain(self.sockets_json(&[]));
        for row in others {
            let (Some(name), Some(state)) = (
                row["name"].as_str(),
                row["active_state"]
                    .as_str()
                    .and_then(|a| a.parse::<ActiveState>().ok()),
            ) else {
                continue;
            };
            units.push(UnitMetrics {
                name: name.to_string(),
                active_state: state,
                restarts: 0,
                last_exit_status: None,
                rolled_back: false,
                load_error: row["error"].is_string(),
                health: None,
            });
        }
        let snapshot = Snapshot {
            version: env!("CARGO_PKG_VERSION"),
            repo: self.settings.repo.clone(),
            branch: self.settings.branch.clone(),
            hostname: self.settings.host.hostname.clone(),
            applied_commit: s.applied_commit.clone(),
            fetched_commit: s.fetched_tip.clone(),
            last_check_unix: s.last_check.map(unix_secs),
            last_success_unix: self.metric_facts.last_success.map(unix_secs),
            // Read live as well: a commit applied after its check (a deferred apply) is on
            // the tip at once, not only from the next check on.
            behind_tip: match self.metric_facts.behind_since {
                Some(t) if s.fetched_tip.is_some() && s.fetched_tip != s.applied_commit => {
                    now.duration_since(t).unwrap_or_default()
                }
                _ => Duration::ZERO,
            },
            poll_interval: s.poll_interval,
            source_error: s.error.is_some(),
            source_errors: self.metric_facts.source_errors,
            save_error: w.last_error.is_some(),
            save_errors: w.failures,
            rollbacks: self.metric_facts.rollbacks,
            units,
            gauges: Vec::new(),
            latencies: self.perf.histograms(),
            // The rollout's own status objects are the one definition of these facts.
            frozen: Some(!self.freeze_json().is_null()),
            pending: pending_metrics(&self.pending_json()),
            // Counted by the HTTP listener, which fills them in.
            webhooks: Vec::new(),
        };
        // An HTTP thread that gave up waiting has dropped its receiver: nothing to do.
        let _ = query.reply.send(snapshot);
    }
}

/// The pending commit of `status` (`daemon.pending`) as metrics; `None` when nothing waits.
fn pending_metrics(p: &serde_json::Value) -> Option<PendingMetrics> {
    let text = |key: &str| p[key].as_str().map(str::to_string);
    Some(PendingMetrics {
        commit: text("commit")?,
        wave: text("wave"),
        reason: text("reason"),
        held_by: text("held_by"),
        apply_at_unix: p["apply_at_ms"].as_f64().map(|ms| ms / 1000.0),
    })
}

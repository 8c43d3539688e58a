//! Versions on trial: a unit changed by a commit must stay active for [`TRIAL_PERIOD`]
//! (with an `[X-Health]` check: stay healthy for one full `IntervalSec=`) before it counts
//! as its last good version; if it fails or turns unhealthy first, the last good version is
//! put back (rollback) and the commit is marked failed for that unit.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Supervisor;
use crate::daemon::managed::{GoodVersion, Trial};
use crate::service::{ActiveState, Event, Status, SubState};
use crate::sys::time::deadline;
use crate::unit::model::ServiceType;

/// How long a new version must stay active before it counts as good (no rollback after).
pub(crate) const TRIAL_PERIOD: Duration = Duration::from_secs(1);

impl Supervisor {
    /// A version on trial failed: put its last good version back and restart it (when
    /// rollback is on and there is one); either way the trial is over.
    pub(super) fn roll_back(&mut self, name: &str, status: &Status) {
        let Some(m) = self.units.get_mut(name) else {
            return;
        };
        let trial = m.trial.take();
        if self.settings.rollback
            && let Some(good) = m.last_good.clone()
        {
            let failed_commit = trial.and_then(|t| t.commit);
            tracing::error!(
                "Rolling back {name} to its last good version (commit {}): the version from commit {} failed its trial: {}",
                short(good.commit.as_deref()),
                short(failed_commit.as_deref()),
                status.error.as_deref().unwrap_or(status.result.as_str())
            );
            let _ = self.logs.note(
                name,
                &format!(
                    "gitproc: rolled back to commit {}: the version from commit {} failed its trial: {}",
                    short(good.commit.as_deref()),
                    short(failed_commit.as_deref()),
                    status.error.as_deref().unwrap_or(status.result.as_str())
                ),
            );
            m.failed_commit = failed_commit;
            self.metric_facts.rollbacks = self.metric_facts.rollbacks.saturating_add(1);
            m.failed_hash = m.hash.take();
            m.hash = Some(good.hash.clone());
            m.commit = good.commit.clone();
            if let Some(svc) = m.service.as_mut() {
                svc.set_unit(Arc::clone(&good.unit));
            }
            self.dirty = true;
            self.feed(name, Event::Restart);
        }
    }

    /// Promotes versions that stayed active long enough to "last good": units with a
    /// health check once healthy for one full `IntervalSec=`, others once active for
    /// [`TRIAL_PERIOD`].
    pub(super) fn check_trials(&mut self, now: Instant) {
        let on_health_trial: HashMap<String, (Duration, Duration)> = self
            .units
            .iter()
            .filter(|(_, m)| m.trial.is_some())
            .filter_map(|(name, m)| {
                m.service.as_ref()?.running_unit().health.as_ref()?;
                let healthy = self
                    .healthy_for(name, now)
                    .unwrap_or((Duration::ZERO, Duration::MAX));
                Some((name.clone(), healthy))
            })
            .collect();
        for (name, m) in self.units.iter_mut() {
            let (Some(svc), Some(trial)) = (m.service.as_ref(), m.trial.as_mut()) else {
                continue;
            };
            if let Some(&(healthy, interval)) = on_health_trial.get(name) {
                if svc.status().active_state == ActiveState::Active
                    && healthy >= interval
                    && !healthy.is_zero()
                {
                    promote(m, now);
                    self.dirty = true;
                }
                continue;
            }
            let status = svc.status();
            let good_now = match status.active_state {
                ActiveState::Active => true,
                ActiveState::Inactive => {
                    status.result == crate::service::ServiceResult::Success
                        && svc.unit().service.service_type == ServiceType::Oneshot
                }
                _ => false,
            };
            if !good_now {
                trial.active_since = None;
                continue;
            }
            let since = *trial.active_since.get_or_insert(now);
            let oneshot_done = status.active_state == ActiveState::Inactive
                || status.sub_state == SubState::Exited;
            if oneshot_done || now.duration_since(since) >= TRIAL_PERIOD {
                promote(m, now);
                self.dirty = true;
            }
        }
    }

    /// When the next unit on a health trial will have been healthy for its interval.
    pub(super) fn health_trial_deadline(&self) -> Option<Instant> {
        self.units
            .iter()
            .filter(|(_, m)| m.trial.is_some())
            .filter_map(|(name, _)| {
                let h = self.health.get(name)?;
                (h.health.state() == crate::service::health::HealthState::Healthy)
                    .then(|| deadline(h.health.since(), h.check.interval))
                    .flatten()
            })
            .min()
    }

    /// Puts the version `apply` just installed on trial (a first version too: once it has
    /// stayed up it is what a later failing commit rolls back to).
    pub(in crate::daemon) fn begin_trial(&mut self, name: &str, commit: Option<String>) {
        if let Some(m) = self.units.get_mut(name) {
            m.trial = Some(Trial {
                commit,
                active_since: None,
            });
        }
    }
}

/// The version on trial proved itself: it is the last good version now.
fn promote(m: &mut crate::daemon::managed::Managed, _now: Instant) {
    let Some(svc) = m.service.as_ref() else {
        return;
    };
    m.last_good = Some(GoodVersion {
        unit: Arc::clone(svc.unit()),
        hash: m.hash.clone().unwrap_or_default(),
        commit: m.commit.clone(),
    });
    m.trial = None;
    m.failed_commit = None;
    m.failed_hash = None;
}

fn short(commit: Option<&str>) -> &str {
    commit.map(|c| c.get(..10).unwrap_or(c)).unwrap_or("-")
}

//! The start and stop queues: a unit starts once what it is ordered after has settled, and
//! stops once what is ordered after it has stopped (`deps::Graph` decides); a start that a
//! `Condition*=` rules out on this host is skipped.

use super::Supervisor;
use crate::runtime::host::check_conditions;
use crate::service::{ActiveState, Event, SubState};

impl Supervisor {
    /// Asks for a unit to start once its ordering allows; pulls in its requirements.
    pub(super) fn queue_start(&mut self, name: &str) {
        let closure = self.graph.requirement_closure(&[name.to_string()]);
        for unit in closure {
            let Some(m) = self.units.get(&unit) else {
                continue;
            };
            if unit != name && m.held_stopped() {
                continue;
            }
            if m.load_error.is_some() && m.service.is_none() {
                continue;
            }
            if !self.start_queue.contains(&unit) {
                self.start_queue.push(unit);
            }
        }
    }

    fn unit_is_busy(&self, name: &str) -> bool {
        if self.start_queue.iter().any(|n| n == name) {
            return true;
        }
        self.units
            .get(name)
            .and_then(|m| m.service.as_ref())
            .is_some_and(|svc| {
                matches!(svc.status().active_state, ActiveState::Activating)
                    && svc.status().sub_state != SubState::AutoRestart
            })
    }

    pub(super) fn process_queues(&mut self) {
        if !self.start_queue.is_empty() && !self.shutting_down {
            let mut progressed = true;
            while progressed {
                progressed = false;
                let queue = std::mem::take(&mut self.start_queue);
                let mut keep = Vec::new();
                for name in queue {
                    let blockers = self.graph.start_blockers(&name, &|n| {
                        n != name && (keep.contains(&n.to_string()) || self.unit_is_busy(n))
                    });
                    if blockers.is_empty() {
                        self.start_now(&name);
                        progressed = true;
                    } else {
                        keep.push(name);
                    }
                }
                self.start_queue = keep;
                if self.start_queue.is_empty() {
                    break;
                }
            }
        }
        if !self.stop_queue.is_empty() {
            let queue = std::mem::take(&mut self.stop_queue);
            let mut keep = Vec::new();
            for name in &queue {
                // Stop `name` only when nothing ordered after it still runs: queued or
                // already stopping (a unit leaves the queue when its stop begins, not ends).
                let blocked = !self
                    .graph
                    .stop_blockers(name, &|n| n != name && self.is_running(n))
                    .is_empty();
                if blocked {
                    keep.push(name.clone());
                } else {
                    self.feed(name, Event::Stop);
                }
            }
            self.stop_queue = keep;
        }
    }

    pub(super) fn is_running(&self, name: &str) -> bool {
        self.units
            .get(name)
            .and_then(|m| m.service.as_ref())
            .is_some_and(|svc| {
                !matches!(
                    svc.status().active_state,
                    ActiveState::Inactive | ActiveState::Failed
                )
            })
    }

    /// Starts a unit now, unless a condition says it does not belong on this host.
    fn start_now(&mut self, name: &str) {
        let Some(m) = self.units.get_mut(name) else {
            return;
        };
        let Some(svc) = m.service.as_ref() else {
            return;
        };
        match check_conditions(svc.unit(), &self.settings.hostname) {
            Ok(()) => m.condition_failed = None,
            Err(why) => {
                if m.condition_failed.as_deref() != Some(why.as_str()) {
                    tracing::info!("{name}: start condition not met, skipped: {why}");
                }
                m.condition_failed = Some(why);
                self.dirty = true;
                return;
            }
        }
        for other in self.graph.conflicts(name) {
            if self.is_running(&other) {
                self.feed(&other, Event::Stop);
            }
        }
        self.feed(name, Event::Start);
    }

    pub(in crate::daemon) fn request_start(&mut self, name: &str) {
        self.queue_start(name);
    }

    pub(in crate::daemon) fn request_restart(&mut self, name: &str) {
        let blocked = self
            .units
            .get(name)
            .and_then(|m| m.service.as_ref())
            .and_then(|svc| check_conditions(svc.unit(), &self.settings.hostname).err());
        if let (Some(why), true) = (blocked, self.is_running(name)) {
            // The new version is not for this host: stop it rather than restart it (a
            // restart inside the state machine would skip the condition check).
            tracing::info!("{name}: new version's start condition not met, stopping: {why}");
            if let Some(m) = self.units.get_mut(name) {
                m.condition_failed = Some(why);
            }
            self.request_stop(name);
        } else if self.is_running(name) {
            self.feed(name, Event::Restart);
        } else {
            self.queue_start(name);
        }
    }

    pub(in crate::daemon) fn request_stop(&mut self, name: &str) {
        self.start_queue.retain(|n| n != name);
        if self.is_running(name) {
            self.feed(name, Event::Stop);
        } else {
            self.after_change(name);
        }
    }
}

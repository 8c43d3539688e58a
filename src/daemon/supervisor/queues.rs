//! The start and stop queues: a unit starts once what it is ordered after has settled, and
//! stops once what is ordered after it has stopped (`deps::Graph` decides); a start that a
//! `Condition*=` rules out on this host is skipped.
//!
//! Dependencies act as in systemd: stopping a unit (operator stop, removal from git) stops
//! what `Requires=`, `BindsTo=` or is `PartOf=` it, restarting it restarts them, a unit that
//! becomes inactive on its own stops what `BindsTo=` it, and a start stops its `Conflicts=`;
//! `deps::Graph` decides who, these hooks only act.

use super::Supervisor;
use crate::deps::Graph;
use crate::runtime::host::{check_asserts, check_conditions};
use crate::service::{ActiveState, Event, SubState};

impl Supervisor {
    /// Asks for a unit to start once its ordering allows; pulls in its requirements.
    pub(super) fn queue_start(&mut self, name: &str) {
        let closure = self.graph.requirement_closure(&[name.to_string()]);
        // Socket units are not services: what the closure pulls in of them (and each
        // service's own sockets) starts listening now; the services wait for the binds.
        for unit in &closure {
            self.start_sockets_of(unit);
        }
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
                    if blockers.is_empty() && !self.waits_for_sockets(&name) {
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
        let checked = check_conditions(svc.unit(), &self.settings.host)
            .and_then(|()| check_asserts(svc.unit(), &self.settings.host));
        match checked {
            Ok(()) => m.condition_failed = None,
            Err(why) if why.starts_with("Assert") => {
                // A failed assert fails the start (status: failed, result "assert"): unlike
                // a condition it says the unit is meant to run here but cannot.
                if m.condition_failed.as_deref() != Some(why.as_str()) {
                    tracing::error!("{name}: assertion failed, start refused: {why}");
                }
                m.condition_failed = Some(why);
                self.dirty = true;
                self.drop_hook_start(name);
                return;
            }
            Err(why) => {
                if m.condition_failed.as_deref() != Some(why.as_str()) {
                    tracing::info!("{name}: start condition not met, skipped: {why}");
                }
                m.condition_failed = Some(why);
                self.dirty = true;
                self.drop_hook_start(name);
                return;
            }
        }
        for other in self.graph.conflicts(name) {
            if self.is_running(&other) {
                tracing::info!("{other}: stopped because {name} starts (Conflicts=)");
                self.propagate_stop(&other);
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
            .and_then(|svc| check_conditions(svc.unit(), &self.settings.host).err());
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
            self.propagate_restart(name);
        } else {
            self.queue_start(name);
        }
    }

    pub(in crate::daemon) fn request_stop(&mut self, name: &str) {
        self.start_queue.retain(|n| n != name);
        if self.is_running(name) {
            self.propagate_stop(name);
            self.feed(name, Event::Stop);
        } else {
            self.after_change(name);
        }
    }

    /// Queues the stop of every running unit that stops with `name` (`Requires=`,
    /// `BindsTo=`, `PartOf=` on their side, transitively); the stop queue orders them.
    pub(super) fn propagate_stop(&mut self, name: &str) {
        let others = self.graph.stop_propagation(name);
        self.queue_stops(name, others, "stopped with");
    }

    /// Restarts every running unit that restarts with `name` (the units [`propagate_stop`]
    /// would stop): systemd restarts them rather than leaving them on the old instance.
    ///
    /// [`propagate_stop`]: Supervisor::propagate_stop
    pub(super) fn propagate_restart(&mut self, name: &str) {
        for other in self.graph.stop_propagation(name) {
            if self.is_running(&other) {
                tracing::info!("{other}: restarted with {name} (Requires=/BindsTo=/PartOf=)");
                self.feed(&other, Event::Restart);
            }
        }
    }

    /// `BindsTo=`: once `name` is inactive or failed, whatever the cause (it exited on its
    /// own, its start failed), the units bound to it stop too. Called after every change of
    /// `name`; only running units are asked, so repeated calls do nothing more.
    pub(super) fn stop_bound(&mut self, name: &str) {
        if self.is_running(name) || !self.units.contains_key(name) {
            return;
        }
        let others = self.graph.bound_by(name);
        self.queue_stops(name, others, "bound to");
    }

    /// Removal from git: the new graph no longer has the removed units, so what stops with
    /// them is read from the graph they were part of (`old`).
    pub(super) fn stop_with_removed(&mut self, old: &Graph) {
        let removed: Vec<String> = self
            .units
            .iter()
            .filter(|(_, m)| m.removed)
            .map(|(n, _)| n.clone())
            .collect();
        for name in removed {
            if self.is_running(&name) {
                let others = old.stop_propagation(&name);
                self.queue_stops(&name, others, "stopped with removed unit");
            }
        }
    }

    fn queue_stops(&mut self, cause: &str, others: Vec<String>, why: &str) {
        for other in others {
            self.start_queue.retain(|n| *n != other);
            if self.is_running(&other) && !self.stop_queue.contains(&other) {
                tracing::info!("{other}: {why} {cause} (Requires=/BindsTo=/PartOf=)");
                self.stop_queue.push(other);
            }
        }
    }
}

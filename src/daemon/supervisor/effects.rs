//! The effect executor: feeds an event to a unit's pure state machine and carries out the
//! effects it answers with (spawn, signal, PID files, lifecycle lines), until no event is
//! left; then the bookkeeping a change of state needs.
//!
//! A change of state that ends a run fires the unit's `OnFailure=`/`OnSuccess=` hooks
//! ([`super::hooks`]).
//!
//! Effects that touch the host beyond a signal or a log line (spawning, reading or removing
//! a PID file, removing `RuntimeDirectory=`) go to the spawner's threads; their answers come
//! back later as events (see [`super::spawns`]).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use super::{Supervisor, unix_now};
use crate::daemon::spawner::Task;
use crate::runtime::host::track_main_session;
use crate::service::{ActiveState, Effect, Event, KillTarget, SubState};

impl Supervisor {
    /// Feeds one event to a unit's state machine and performs the effects, including the
    /// events they produce (spawn results) until none are left.
    pub(super) fn feed(&mut self, name: &str, event: Event) {
        self.feed_machine(name, event);
        self.reindex(name);
    }

    /// [`Self::feed`] without the re-index.
    fn feed_machine(&mut self, name: &str, event: Event) {
        let mut queue = VecDeque::from([event]);
        while let Some(event) = queue.pop_front() {
            let now = Instant::now();
            let Some(m) = self.units.get_mut(name) else {
                return;
            };
            let Some(svc) = m.service.as_mut() else {
                return;
            };
            let before_status = svc.status();
            let before = before_status.active_state;
            let effects = svc.on_event(event, now);
            let after = svc.status();
            if after.active_state != before {
                m.since_unix = Some(unix_now());
                self.dirty = true;
                let stopped = matches!(
                    after.active_state,
                    ActiveState::Inactive | ActiveState::Failed
                );
                // systemd removes RuntimeDirectory= when the service stops; so do we (on the
                // spawner, after this unit's earlier tasks, before its next spawn).
                if stopped && !svc.unit().service.runtime_directory.is_empty() {
                    let task = Task::RemoveRuntimeDirectories {
                        unit: Arc::clone(svc.unit()),
                        dirs: self.settings.dirs.clone(),
                    };
                    self.spawner.submit(name, task);
                }
                // Its cgroup v1 directories too (empty now, unless KillMode= left some).
                if stopped {
                    let cgroups = self
                        .resource_roots
                        .unit(name, m.tracker.cgroup().map(|c| c.path()));
                    if !cgroups.v1_dirs().is_empty() {
                        self.spawner.submit(name, Task::RemoveCgroups { cgroups });
                    }
                }
            }
            if let Some(pid) = after.main_pid {
                self.pids.entry(pid).or_insert_with(|| name.to_string());
            }
            if let Some(pid) = after.main_pid {
                track_main_session(&mut m.tracker, pid);
            }
            let wanted = svc.spawn_pending();
            let asks_spawn = effects.iter().any(|e| matches!(e, Effect::Spawn { .. }));
            // OnFailure=/OnSuccess=: read before the effects (a restart's spawn takes a
            // new invocation id), started after them.
            let hooks = self.detect_hooks(name, (before, before_status.sub_state), &after);
            self.settle_pending_spawn(name, wanted, asks_spawn);
            for effect in effects {
                if let Some(next) = self.perform(name, effect) {
                    queue.push_back(next);
                }
            }
            if let Some(hooks) = hooks {
                self.fire_hooks(name, hooks);
            }
        }
        self.after_change(name);
        self.stop_bound(name);
        self.sync_health(name);
    }

    pub(super) fn perform(&mut self, name: &str, effect: Effect) -> Option<Event> {
        match effect {
            Effect::Spawn { role, command } => self.start_spawn(name, role, &command),
            Effect::Signal { target, signal } => self.signal(name, target, signal),
            Effect::ReadPidFile { path } => {
                let id = self.next_task_id;
                self.next_task_id += 1;
                self.pid_reads.insert(name.to_string(), id);
                let trust = self.pid_trust(name);
                self.spawner
                    .submit(name, Task::ReadPidFile { id, path, trust });
                None
            }
            Effect::GuessMainPid => {
                let id = self.next_task_id;
                self.next_task_id += 1;
                self.pid_reads.insert(name.to_string(), id);
                let scope = self.guess_scope(name);
                self.spawner.submit(name, Task::GuessMainPid { id, scope });
                None
            }
            Effect::RemovePidFile { path } => {
                self.spawner.submit(name, Task::RemovePidFile { path });
                None
            }
            Effect::Lifecycle { kind, pid, reason } => {
                match pid {
                    Some(pid) => tracing::info!("{kind} {name} (pid {pid}): {reason}"),
                    None => tracing::info!("{kind} {name}: {reason}"),
                }
                let line = format!("gitproc: {kind}: {reason}");
                let _ = self.logs.note(name, &line);
                None
            }
            Effect::StatusChanged => {
                self.dirty = true;
                None
            }
        }
    }

    /// Sends a signal; answers `GroupEmpty` when a group signal found nobody left.
    fn signal(&mut self, name: &str, target: KillTarget, signal: i32) -> Option<Event> {
        let m = self.units.get_mut(name)?;
        match target {
            KillTarget::Main(pid) | KillTarget::Control(pid) => {
                let start_time = match m.main_start_time {
                    Some((p, t)) if p == pid => Some(t),
                    _ => crate::state::identity::ProcessIdentity::read(pid)
                        .filter(|_| self.pids.get(&pid).map(String::as_str) == Some(name))
                        .map(|id| id.start_time),
                };
                match start_time {
                    Some(t) => {
                        if let Err(err) = crate::runtime::kill::signal_verified(pid, t, signal) {
                            tracing::debug!("{name}: signal {signal} to {pid}: {err}");
                        }
                    }
                    None => tracing::warn!(
                        "{name}: not signalling pid {pid}: it is not a process this daemon started or adopted"
                    ),
                }
            }
            KillTarget::Group => {
                if m.tracker.signal_all(signal) == 0 {
                    return Some(Event::GroupEmpty);
                }
            }
        }
        None
    }

    /// Post-event bookkeeping: forget removed units once stopped; start what a rollback needs.
    pub(super) fn after_change(&mut self, name: &str) {
        let Some(m) = self.units.get_mut(name) else {
            return;
        };
        let Some(svc) = m.service.as_ref() else {
            return;
        };
        let status = svc.status();
        if m.removed
            && matches!(
                status.active_state,
                ActiveState::Inactive | ActiveState::Failed
            )
        {
            tracing::info!("{name}: removed from the repository and stopped; forgotten");
            if let Some(cgroup) = m.tracker.cgroup() {
                let _ = cgroup.remove(); // empty now; rmdir refuses otherwise
            }
            self.units.remove(name);
            self.reindex(name);
            self.pids.retain(|_, unit| unit != name);
            self.perf.forget_probes(name);
            self.forget_health(name);
            self.dirty = true;
            return;
        }
        // A version on trial that failed: roll back to the last good one.
        let failed = matches!(status.active_state, ActiveState::Failed)
            || (status.sub_state == SubState::AutoRestart);
        if failed && m.trial.is_some() {
            self.roll_back(name, &status);
        }
    }
}

//! The effect executor: feeds an event to a unit's pure state machine and carries out the
//! effects it answers with (spawn, signal, PID files, lifecycle lines), until no event is
//! left; then the bookkeeping a change of state needs.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use super::{Supervisor, unix_now};
use crate::daemon::managed::new_invocation_id;
use crate::logs::collector::Stream;
use crate::perf::Op;
use crate::runtime::host::{read_pid_file, track_main_session};
use crate::runtime::spawn::SpawnRequest;
use crate::service::{ActiveState, Effect, Event, KillTarget, ProcessRole, SubState};
use crate::unit::model::ServiceType;

impl Supervisor {
    /// Feeds one event to a unit's state machine and performs the effects, including the
    /// events they produce (spawn results) until none are left.
    pub(super) fn feed(&mut self, name: &str, event: Event) {
        let mut queue = VecDeque::from([event]);
        while let Some(event) = queue.pop_front() {
            let now = Instant::now();
            let Some(m) = self.units.get_mut(name) else {
                return;
            };
            let Some(svc) = m.service.as_mut() else {
                return;
            };
            let before = svc.status().active_state;
            let effects = svc.on_event(event, now);
            let after = svc.status();
            if after.active_state != before {
                m.since_unix = Some(unix_now());
                self.dirty = true;
                let stopped = matches!(
                    after.active_state,
                    ActiveState::Inactive | ActiveState::Failed
                );
                // systemd removes RuntimeDirectory= when the service stops; so do we.
                if stopped && !svc.unit().service.runtime_directory.is_empty() {
                    let unit = Arc::clone(svc.unit());
                    if let Err(err) = crate::runtime::spawn::remove_runtime_directories(
                        &unit.service,
                        &self.settings.dirs,
                    ) {
                        tracing::warn!("{name}: removing RuntimeDirectory=: {err}");
                    }
                }
            }
            if let Some(pid) = after.main_pid {
                self.pids.entry(pid).or_insert_with(|| name.to_string());
            }
            if let Some(pid) = after.main_pid {
                track_main_session(&mut m.tracker, pid);
            }
            for effect in effects {
                if let Some(next) = self.perform(name, effect, now) {
                    queue.push_back(next);
                }
            }
        }
        self.after_change(name);
    }

    pub(super) fn perform(&mut self, name: &str, effect: Effect, now: Instant) -> Option<Event> {
        match effect {
            Effect::Spawn { role, command } => Some(self.spawn(name, role, &command, now)),
            Effect::Signal { target, signal } => self.signal(name, target, signal),
            Effect::ReadPidFile { path } => Some(Event::PidFile(read_pid_file(&path))),
            Effect::RemovePidFile { path } => {
                match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        tracing::warn!("{name}: cannot remove PIDFile={path}: {e}")
                    }
                    _ => {}
                }
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

    fn spawn(
        &mut self,
        name: &str,
        role: ProcessRole,
        command: &crate::unit::model::ExecCommand,
        now: Instant,
    ) -> Event {
        let Some(m) = self.units.get_mut(name) else {
            return Event::SpawnFailed {
                role,
                error: "unit vanished".into(),
                exit_status: crate::service::exit_code::EXEC,
            };
        };
        let Some(svc) = m.service.as_ref() else {
            return Event::SpawnFailed {
                role,
                error: "unit not loaded".into(),
                exit_status: crate::service::exit_code::EXEC,
            };
        };
        let unit = Arc::clone(svc.unit());
        let main_pid = svc.status().main_pid;
        if role == ProcessRole::Main {
            m.invocation_id = new_invocation_id();
        }
        let wants_notify = unit.service.service_type == ServiceType::Notify
            || unit.service.watchdog.is_some_and(|w| !w.is_zero());
        // Variables only known now ($MAINPID, PassEnvironment= names) are expanded at spawn.
        let expanded;
        let command = if command.runtime_vars.is_empty() {
            command
        } else {
            let lookup = |var: &str| match var {
                "MAINPID" => main_pid.map(|p| p.to_string()),
                _ => std::env::var(var).ok(),
            };
            expanded = crate::unit::model::ExecCommand {
                argv: crate::unit::exec::expand_runtime(command, &lookup),
                ..command.clone()
            };
            &expanded
        };
        let mut request = SpawnRequest::new(
            name,
            command,
            &unit.service,
            &m.invocation_id,
            &self.settings.dirs,
        );
        request.notify_socket = wants_notify.then_some(self.settings.notify_socket.as_path());
        request.main_pid = if role == ProcessRole::Main {
            None
        } else {
            main_pid
        };
        request.cgroup = m.tracker.cgroup();
        // Values read by the loader from EnvironmentFile=s in the commit.
        request.extra_env = &unit.service.environment_from_files;
        let started = Instant::now();
        let result = crate::runtime::spawn::spawn(&request);
        self.perf.record(Op::Spawn, started.elapsed());
        match result {
            Ok(spawned) => {
                let pid = spawned.pid;
                for warning in &spawned.warnings {
                    tracing::warn!("{name}: {warning}");
                    let _ = self.logs.note(name, &format!("gitproc: {warning}"));
                }
                m.tracker.add_session(pid);
                if role == ProcessRole::Main {
                    m.main_start_time = Some((pid, spawned.start_time));
                    if let Some(exited) = m.exited_at.take() {
                        self.perf
                            .record(Op::ReapToRestart, now.saturating_duration_since(exited));
                    }
                }
                self.pids.insert(pid, name.to_string());
                if let Some(fd) = spawned.stdout {
                    let _ = self.logs.add(name, fd, Stream::Stdout);
                }
                if let Some(fd) = spawned.stderr {
                    let _ = self.logs.add(name, fd, Stream::Stderr);
                }
                Event::Spawned { role, pid }
            }
            Err(err) => {
                let error = err.to_string();
                tracing::error!("{name}: {error}");
                let _ = self.logs.note(name, &format!("gitproc: {error}"));
                Event::SpawnFailed {
                    role,
                    error,
                    exit_status: err.exit_status(),
                }
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
            self.pids.retain(|_, unit| unit != name);
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

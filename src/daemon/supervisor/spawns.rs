//! Spawns in flight. The loop never spawns itself: [`Effect::Spawn`] becomes a
//! [`Task::Spawn`] for the spawner's threads, and the machine gets `Spawned`/`SpawnFailed`
//! when the report arrives, as an event of its own. In between, anything may happen to the
//! service (a stop, a start timeout, a new version): the machine says whether it still
//! wants the spawn ([`Service::spawn_pending`]); when it no longer does, the spawn is
//! cancelled (a FIFO wait gives up at once) and, if it produced a process all the same,
//! that process is killed the moment its pid arrives.
//!
//! One race is the loop's to close: the spawned process may exit, and be reaped by the
//! loop's sweep, before the report with its pid is read. Exits of unknown pids reaped while
//! the spawner is busy are kept ([`Supervisor::note_unclaimed_exit`]) and matched to the
//! pid when it arrives, if they were reaped after its spawn began (pids are allocated
//! cyclically, so a pid freed before that cannot be the new process's).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Supervisor;
use crate::daemon::managed::new_invocation_id;
use crate::daemon::spawner::{Report, SpawnJob, Task};
use crate::logs::collector::Stream;
use crate::perf::Op;
use crate::runtime::spawn::{SpawnProgress, Spawned};
use crate::service::{Event, ExitStatus, ProcessRole};
use crate::unit::model::{ExecCommand, ServiceType};

/// Most unclaimed exits kept (orphans reaped as subreaper while spawns were in flight).
const UNCLAIMED_EXITS_KEPT: usize = 256;

/// How long a change of state waits to be handed to the state writer while a main process
/// is being spawned. The writer saves the first change at once and later ones batched
/// (seconds apart); without the wait, a start would be saved as `activating` without its
/// pid, and a daemon killed in the next seconds would not know the process to adopt. A
/// spawn takes about a millisecond; one stuck longer than this does not hold saves up.
pub(super) const SAVE_HOLD: Duration = Duration::from_millis(100);

/// The spawn a unit's machine waits for.
pub(super) struct PendingSpawn {
    pub(super) id: u64,
    pub(super) role: ProcessRole,
    pub(super) progress: Arc<SpawnProgress>,
    pub(super) asked: Instant,
}

impl Supervisor {
    /// Hands [`Effect::Spawn`] to the spawner. Answers at once only when there is nothing
    /// to spawn for.
    pub(super) fn start_spawn(
        &mut self,
        name: &str,
        role: ProcessRole,
        command: &ExecCommand,
    ) -> Option<Event> {
        // Socket activation: the main process gets the fds of its listening sockets.
        let listen = if role == ProcessRole::Main {
            self.listen_fds_for(name)
        } else {
            Vec::new()
        };
        let monitor_env = self.monitor_env_for(name, role);
        let Some(m) = self.units.get_mut(name) else {
            return Some(Event::SpawnFailed {
                role,
                error: "unit vanished".into(),
                exit_status: crate::service::exit_code::EXEC,
            });
        };
        let Some(svc) = m.service.as_ref() else {
            return Some(Event::SpawnFailed {
                role,
                error: "unit not loaded".into(),
                exit_status: crate::service::exit_code::EXEC,
            });
        };
        let unit = Arc::clone(svc.unit());
        let main_pid = svc.status().main_pid;
        if role == ProcessRole::Main {
            m.invocation_id = new_invocation_id();
        }
        let wants_notify = unit.service.service_type == ServiceType::Notify
            || unit.service.watchdog.is_some_and(|w| !w.is_zero());
        // Variables only known now ($MAINPID, PassEnvironment= names) are expanded at spawn.
        let command = if command.runtime_vars.is_empty() {
            command.clone()
        } else {
            let lookup = |var: &str| match var {
                "MAINPID" => main_pid.map(|p| p.to_string()),
                _ => std::env::var(var).ok(),
            };
            ExecCommand {
                argv: crate::unit::exec::expand_runtime(command, &lookup),
                ..command.clone()
            }
        };
        let id = self.next_task_id;
        self.next_task_id += 1;
        let progress = Arc::new(SpawnProgress::new());
        let job = SpawnJob {
            id,
            unit_name: None,
            role,
            command,
            invocation_id: m.invocation_id.clone(),
            instance: self.settings.instance.clone(),
            notify_socket: wants_notify.then(|| self.settings.notify_socket.clone()),
            main_pid: if role == ProcessRole::Main {
                None
            } else {
                main_pid
            },
            cgroup: m.tracker.cgroup().cloned(),
            resources: self.resource_job(name, &unit),
            dirs: self.settings.dirs.clone(),
            listen,
            monitor_env,
            unit,
            progress: Arc::clone(&progress),
        };
        self.spawner.submit(name, Task::Spawn(Box::new(job)));
        self.spawns.insert(
            name.to_string(),
            PendingSpawn {
                id,
                role,
                progress,
                asked: Instant::now(),
            },
        );
        None
    }

    /// After an event: gives up the unit's spawn in flight when the machine no longer
    /// waits for it (`wanted` is what it waits for now; `asks_again`: it asks for a new one).
    pub(super) fn settle_pending_spawn(
        &mut self,
        name: &str,
        wanted: Option<ProcessRole>,
        asks_again: bool,
    ) {
        let Some(p) = self.spawns.get(name) else {
            return;
        };
        if asks_again || wanted != Some(p.role) {
            p.progress.cancel();
            let step = p.progress.step().unwrap_or_default();
            tracing::info!(
                "{name}: spawn no longer wanted ({step}); cancelled, its process is killed if it starts"
            );
            self.spawns.remove(name);
        }
    }

    /// Until when the state save waits for a main pid being spawned (see [`SAVE_HOLD`]);
    /// `None` when it need not wait.
    pub(super) fn save_held_until(&self, now: Instant) -> Option<Instant> {
        self.spawns
            .values()
            .filter(|p| p.role == ProcessRole::Main)
            .map(|p| p.asked + SAVE_HOLD)
            .filter(|&until| until > now)
            .max()
    }

    pub(super) fn on_spawner_report(&mut self, report: Report) {
        self.spawner.finished(report.unit());
        let report = match report {
            Report::Spawn {
                unit,
                id,
                result,
                began,
                role: ProcessRole::Control(crate::service::ExecKind::Health),
                ..
            } => {
                self.on_probe_spawned(&unit, id, result, began);
                if !self.spawner.is_busy() {
                    self.unclaimed_exits.clear();
                    self.early_notify.clear();
                }
                return;
            }
            other => other,
        };
        match report {
            Report::Spawn {
                unit,
                id,
                role,
                result,
                began,
                took,
                cgroups,
            } => {
                self.perf.record(Op::Spawn, took);
                let wanted = self.spawns.get(&unit).is_some_and(|p| p.id == id);
                if wanted {
                    self.spawns.remove(&unit);
                }
                if let (true, ProcessRole::Main, Some(prepared)) = (wanted, role, cgroups) {
                    self.resources_prepared(&unit, prepared);
                }
                match (result, wanted) {
                    (Ok(spawned), true) => self.spawned(&unit, role, spawned, began),
                    (Ok(spawned), false) => self.kill_unwanted(&unit, spawned, began),
                    (Err(err), true) => {
                        // A child that died before exec may have been reaped by the loop's
                        // sweep before the spawning thread could wait for it.
                        let err = match err
                            .unreaped_child()
                            .and_then(|pid| self.claim_exit(pid, began))
                        {
                            Some(status) => err.with_reaped_status(raw_wait_status(status)),
                            None => err,
                        };
                        let error = err.to_string();
                        tracing::error!("{unit}: {error}");
                        let _ = self.logs.note(&unit, &format!("gitproc: {error}"));
                        let exit_status = err.exit_status();
                        self.feed(
                            &unit,
                            Event::SpawnFailed {
                                role,
                                error,
                                exit_status,
                            },
                        );
                    }
                    (Err(err), false) => {
                        tracing::debug!("{unit}: a spawn given up on ended: {err}");
                    }
                }
            }
            Report::PidFile { unit, id, result } => {
                if self.pid_reads.get(&unit) == Some(&id) {
                    self.pid_reads.remove(&unit);
                    use crate::runtime::main_pid::PidRead;
                    let event = match result {
                        PidRead::Pid(pid) => {
                            self.record_main(&unit, pid, None);
                            Event::PidFile(Ok(pid))
                        }
                        PidRead::NotYet(e) => Event::PidFile(Err(e)),
                        PidRead::Refused(e) => Event::PidFileRefused(e),
                    };
                    self.feed(&unit, event);
                }
            }
            Report::Resources { unit, prepared } => self.resources_updated(&unit, prepared),
            Report::Sockets { unit, id, result } => self.on_sockets_bound(&unit, id, result),
            Report::MainPidGuess { unit, id, guess } => {
                if self.pid_reads.get(&unit) == Some(&id) {
                    self.pid_reads.remove(&unit);
                    if let Some(warning) = &guess.warning {
                        tracing::warn!("{unit}: {warning}");
                        let _ = self.logs.note(&unit, &format!("gitproc: {warning}"));
                    }
                    if let Some((pid, start_time)) = guess.main {
                        self.record_main(&unit, pid, Some(start_time));
                    }
                    self.feed(&unit, Event::MainPidGuessed(guess.main.map(|(pid, _)| pid)));
                    // No main process and nothing left at all: the daemon died already. Say
                    // so now (the loop checks groups only while stopping), or the service
                    // would show `running` with nothing running.
                    let empty = guess.main.is_none()
                        && self.units.get_mut(&unit).is_some_and(|m| {
                            m.tracker.prune();
                            m.tracker.members().is_empty()
                        });
                    if empty {
                        self.feed(&unit, Event::GroupEmpty);
                    }
                }
            }
            Report::Done { .. } => {}
        }
        if !self.spawner.is_busy() {
            self.unclaimed_exits.clear();
            self.early_notify.clear();
        }
    }

    /// A spawn the machine waits for succeeded: record the process, then tell the machine.
    fn spawned(&mut self, name: &str, role: ProcessRole, spawned: Spawned, began: Instant) {
        let pid = spawned.pid;
        let early_exit = self.claim_exit(pid, began);
        let Some(m) = self.units.get_mut(name) else {
            return;
        };
        m.tracker.add_session(pid);
        if role == ProcessRole::Main {
            m.main_start_time = Some((pid, spawned.start_time));
            if let Some(exited) = m.exited_at.take() {
                self.perf.record(Op::ReapToRestart, exited.elapsed());
            }
        }
        self.pids.insert(pid, name.to_string());
        // Settings applied differently from the unit, as systemd would (a clamped Limit*=).
        for warning in &spawned.warnings {
            tracing::warn!("{name}: {warning}");
            let _ = self.logs.note(name, &format!("gitproc: {warning}"));
        }
        self.attach_logs(name, spawned);
        self.feed(name, Event::Spawned { role, pid });
        self.replay_early_notify();
        if let Some(status) = early_exit {
            self.on_exit(pid, status);
        }
    }

    /// A spawn given up on started a process anyway: kill it now (it is ours: we just
    /// spawned it and hold its start time), and route its exit to the unit, which ignores
    /// a pid it does not know.
    fn kill_unwanted(&mut self, name: &str, spawned: Spawned, began: Instant) {
        let pid = spawned.pid;
        if self.claim_exit(pid, began).is_some() {
            return; // already gone and reaped
        }
        tracing::info!("{name}: killing pid {pid}: it started after the service gave up on it");
        if let Some(m) = self.units.get_mut(name) {
            m.tracker.add_session(pid);
        }
        self.pids.insert(pid, name.to_string());
        if spawned.start_time != 0
            && let Err(err) =
                crate::runtime::kill::signal_verified(pid, spawned.start_time, libc::SIGKILL)
        {
            tracing::debug!("{name}: SIGKILL to {pid}: {err}");
        }
        self.attach_logs(name, spawned);
    }

    fn attach_logs(&mut self, name: &str, spawned: Spawned) {
        if let Some(fd) = spawned.stdout {
            let _ = self.logs.add(name, fd, Stream::Stdout);
        }
        if let Some(fd) = spawned.stderr {
            let _ = self.logs.add(name, fd, Stream::Stderr);
        }
    }

    /// The loop reaped `pid` and it is in no table: keep its exit while spawns are in flight
    /// (it may be a spawned process whose report is not read yet).
    pub(super) fn note_unclaimed_exit(&mut self, pid: i32, status: ExitStatus) {
        if !self.spawner.is_busy() {
            return;
        }
        if self.unclaimed_exits.len() >= UNCLAIMED_EXITS_KEPT {
            self.unclaimed_exits.remove(0);
        }
        self.unclaimed_exits.push((pid, status, Instant::now()));
    }

    /// The exit of `pid` reaped after `began`, if the loop saw one (and forgets it).
    pub(super) fn claim_exit(&mut self, pid: i32, began: Instant) -> Option<ExitStatus> {
        let i = self
            .unclaimed_exits
            .iter()
            .rposition(|&(p, _, at)| p == pid && at >= began)?;
        Some(self.unclaimed_exits.remove(i).1)
    }
}

/// A waitpid(2)-style status for an exit the loop reaped, for [`SpawnError::with_reaped_status`].
fn raw_wait_status(status: ExitStatus) -> i32 {
    match status {
        ExitStatus::Exited(code) => (code & 0xff) << 8,
        ExitStatus::Signaled {
            signal,
            core_dumped,
        } => (signal & 0x7f) | if core_dumped { 0x80 } else { 0 },
        ExitStatus::Unknown => 0,
    }
}

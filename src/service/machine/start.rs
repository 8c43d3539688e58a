//! The way up: operator start and restart, the start limit, and the start phases
//! `condition -> start-pre -> start -> start-post -> running|exited`, each running its
//! `Exec*=` list one command after the other.
//!
//! A start replaces the [`Run`] (see [`super::run`]); readiness per `Type=` is decided here
//! for `simple`/`exec` (spawned), in [`super::exits`] for `forking`/`oneshot` (the main
//! process exits) and in [`super::notifications`] for `notify` (READY=1).

use std::collections::VecDeque;
use std::time::Instant;

use super::run::Run;
use super::{Service, is_deactivating, secs};
use crate::service::event::{Effect, ExecKind, Lifecycle, ProcessRole};
use crate::service::state::{ServiceResult, SubState};
use crate::unit::model::{ExecCommand, ServiceType};

impl Service {
    pub(super) fn op_start(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        match self.sub {
            SubState::Dead | SubState::Failed | SubState::AutoRestart => self.start(now, true, fx),
            s if is_deactivating(s) => self.run.start_after_stop = true,
            _ => {}
        }
    }

    /// Stop if running, then start (at once when there is nothing to stop).
    pub(super) fn op_restart(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        if matches!(
            self.sub,
            SubState::Dead | SubState::Failed | SubState::AutoRestart
        ) {
            self.start(now, true, fx);
        } else {
            self.run.start_after_stop = true;
            self.op_stop(now, fx);
        }
    }

    /// Begins a run. `operator`: an explicit start, which clears the start-limit history.
    pub(super) fn start(&mut self, now: Instant, operator: bool, fx: &mut Vec<Effect>) {
        self.cfg = self.unit.clone();
        if operator {
            self.start_times.clear();
            self.streak = 0;
        }
        if self.start_limit_hit(now, fx) {
            return;
        }
        self.run = Run::new(self.svc());
        if operator {
            // An automatic restart keeps the reason the timer gave (and logged Restarting).
            self.reason = "start requested".to_string();
            self.lifecycle(Lifecycle::Starting, fx);
        }
        self.enter_condition(now, fx);
    }

    /// StartLimitIntervalSec=/StartLimitBurst=: records this start, or refuses it and leaves
    /// the service `failed` with result `start-limit-hit`.
    ///
    /// The refusal writes into the run that ended (no new run begins, so its `STATUS=`
    /// stays visible), clearing the operator intents as any start does. It only happens to
    /// automatic restarts: an operator start clears the history first.
    fn start_limit_hit(&mut self, now: Instant, fx: &mut Vec<Effect>) -> bool {
        let interval = self.cfg.unit.start_limit_interval;
        let burst = self.cfg.unit.start_limit_burst;
        if interval.is_zero() || burst == 0 {
            return false;
        }
        while let Some(first) = self.start_times.front() {
            if now.saturating_duration_since(*first) >= interval {
                self.start_times.pop_front();
            } else {
                break;
            }
        }
        if self.start_times.len() >= burst as usize {
            self.run.forbid_restart = false;
            self.run.start_after_stop = false;
            self.run.result = ServiceResult::StartLimitHit;
            let msg = format!(
                "start limit hit: more than {burst} starts within {} \
                 (StartLimitBurst=, StartLimitIntervalSec=); `gitproc start` resets it",
                secs(interval)
            );
            self.run.error = Some(msg.clone());
            self.reason = msg;
            self.deadline = None;
            self.set_state(SubState::Failed, now, fx);
            return true;
        }
        self.start_times.push_back(now);
        false
    }

    /// Starts running `cmds` as control processes of `kind`, one after the other.
    pub(super) fn run_commands(
        &mut self,
        kind: ExecKind,
        cmds: Vec<ExecCommand>,
        fx: &mut Vec<Effect>,
    ) {
        self.run.queue = cmds.into();
        self.run.control.kind = Some(kind);
        self.spawn_next_control(kind, fx);
    }

    /// Spawns the next queued control command; false when the phase is done.
    pub(super) fn spawn_next_control(&mut self, kind: ExecKind, fx: &mut Vec<Effect>) -> bool {
        match self.run.queue.pop_front() {
            Some(command) => {
                self.run.control.kind = Some(kind);
                self.run.control.ignore = command.flags.ignore_failure;
                self.group_empty = false;
                self.spawn_requested(ProcessRole::Control(kind));
                fx.push(Effect::Spawn {
                    role: ProcessRole::Control(kind),
                    command,
                });
                true
            }
            None => false,
        }
    }

    fn enter_condition(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        let cmds = self.svc().exec_condition.clone();
        if cmds.is_empty() {
            return self.enter_start_pre(now, fx);
        }
        self.set_state(SubState::Condition, now, fx);
        self.run_commands(ExecKind::Condition, cmds, fx);
    }

    pub(super) fn enter_start_pre(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        let cmds = self.svc().exec_start_pre.clone();
        if cmds.is_empty() {
            return self.enter_start(now, fx);
        }
        self.set_state(SubState::StartPre, now, fx);
        self.run_commands(ExecKind::StartPre, cmds, fx);
    }

    pub(super) fn enter_start(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        let mut cmds: VecDeque<ExecCommand> = self.svc().exec_start.clone().into();
        let Some(first) = cmds.pop_front() else {
            if self.svc().service_type == ServiceType::Oneshot {
                return self.enter_start_post(now, fx);
            }
            self.run.error = Some(format!(
                "{}: no ExecStart= (only Type=oneshot may omit it); add ExecStart=",
                self.cfg.name
            ));
            self.reason = "no ExecStart=".to_string();
            return self.enter_signal(SubState::StopSigterm, ServiceResult::Resources, now, fx);
        };
        self.set_state(SubState::Start, now, fx);
        self.run.queue = cmds;
        self.spawn_main(first, fx);
    }

    /// Spawns an `ExecStart=` line (for `Type=oneshot`, the next of them).
    pub(super) fn spawn_main(&mut self, command: ExecCommand, fx: &mut Vec<Effect>) {
        self.run.main_ignore = command.flags.ignore_failure;
        self.group_empty = false;
        self.spawn_requested(ProcessRole::Main);
        fx.push(Effect::Spawn {
            role: ProcessRole::Main,
            command,
        });
    }

    pub(super) fn enter_start_post(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        let cmds = self.svc().exec_start_post.clone();
        if cmds.is_empty() {
            return self.enter_running(ServiceResult::Success, now, fx);
        }
        self.set_state(SubState::StartPost, now, fx);
        self.run_commands(ExecKind::StartPost, cmds, fx);
    }

    /// The start phases are done (or the main process exited while up): `running` with a
    /// main process, `exited` with RemainAfterExit=, else the run ends; with a failed
    /// result, the stop sequence.
    pub(super) fn enter_running(&mut self, f: ServiceResult, now: Instant, fx: &mut Vec<Effect>) {
        self.fail(f);
        if self.run.result != ServiceResult::Success {
            return self.enter_signal(SubState::StopSigterm, ServiceResult::Success, now, fx);
        }
        if self.waits_for_healthy() {
            // ReadyOnHealthy=yes: stay `activating` (TimeoutStartSec= runs on) until the
            // first healthy probe (see `machine::health`).
            self.run.awaiting_healthy = true;
            self.reason = "waiting for the first healthy probe (ReadyOnHealthy=yes)".to_string();
            return;
        }
        if self.run.main_pid.is_some() || self.run.running_without_main {
            self.reason = "main process running".to_string();
            self.set_state(SubState::Running, now, fx);
            if self.run.watchdog_deadline.is_none() {
                self.arm_watchdog(now);
            }
        } else if self.svc().remain_after_exit {
            self.reason = "finished, RemainAfterExit=yes".to_string();
            self.set_state(SubState::Exited, now, fx);
        } else {
            if self.reason.is_empty() {
                self.reason = "finished".to_string();
            }
            self.enter_stop(ServiceResult::Success, now, fx);
        }
    }

    /// Remembers that the answer to a spawn of `role` is awaited (see `Run::spawning`).
    fn spawn_requested(&mut self, role: ProcessRole) {
        self.run.spawning = Some(role);
        self.run.spawn_step = None;
    }

    /// Answer to a spawn: records the pid; `Type=simple`/`exec` are started once the main
    /// process exists.
    pub(super) fn spawned(
        &mut self,
        role: ProcessRole,
        pid: i32,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        match role {
            ProcessRole::Control(kind) => {
                self.run.control.pid = Some(pid);
                self.run.control.kind = Some(kind);
            }
            ProcessRole::Main => {
                self.run.main_pid = Some(pid);
                if self.sub == SubState::Start {
                    if self.run.watchdog_deadline.is_none() {
                        self.arm_watchdog(now);
                    }
                    if matches!(
                        self.svc().service_type,
                        ServiceType::Simple | ServiceType::Exec
                    ) {
                        self.enter_start_post(now, fx);
                    }
                }
            }
        }
    }

    /// The PID file can never give a trusted main pid: fail at once with `protocol`, as
    /// systemd does; Restart= then applies.
    pub(super) fn pid_file_refused(&mut self, error: String, now: Instant, fx: &mut Vec<Effect>) {
        if !self.run.awaiting_pid_file || self.sub != SubState::Start {
            return;
        }
        self.run.awaiting_pid_file = false;
        self.run.pid_file_retry = None;
        self.run.last_pid_file_error = None;
        self.run.error = Some(error.clone());
        self.reason = error;
        self.enter_signal(SubState::StopSigterm, ServiceResult::Protocol, now, fx);
    }

    /// Answer to [`Effect::ReadPidFile`] (`Type=forking` with `PIDFile=`): the main pid, or
    /// another try after [`super::PID_FILE_RETRY`] until TimeoutStartSec=.
    pub(super) fn pid_file(
        &mut self,
        read: Result<i32, String>,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        if !self.run.awaiting_pid_file || self.sub != SubState::Start {
            return;
        }
        match read {
            Ok(pid) if pid > 1 => {
                self.run.awaiting_pid_file = false;
                self.run.pid_file_retry = None;
                self.run.main_pid = Some(pid);
                self.enter_start_post(now, fx);
            }
            Ok(pid) => {
                self.run.last_pid_file_error = Some(format!("PIDFile= holds an invalid pid {pid}"));
                self.run.pid_file_retry = crate::sys::time::deadline(now, super::PID_FILE_RETRY);
            }
            Err(e) => {
                self.run.last_pid_file_error = Some(e);
                self.run.pid_file_retry = crate::sys::time::deadline(now, super::PID_FILE_RETRY);
            }
        }
    }

    /// Answer to [`Effect::GuessMainPid`]: the guessed main process, or none (the service
    /// then runs without one, as with GuessMainPID=no, until no process of it is left).
    pub(super) fn main_pid_guessed(
        &mut self,
        pid: Option<i32>,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        if !self.run.awaiting_main_guess || self.sub != SubState::Start {
            return;
        }
        self.run.awaiting_main_guess = false;
        match pid.filter(|&p| p > 1 && self.run.control.pid != Some(p)) {
            Some(pid) => self.run.main_pid = Some(pid),
            None => self.run.running_without_main = true,
        }
        self.enter_start_post(now, fx);
    }
}

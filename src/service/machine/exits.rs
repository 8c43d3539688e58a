//! What the end of a process means in each sub-state: the main process (by `Type=`) or a
//! control process (by the phase it belongs to), a spawn that failed, and the whole group
//! gone (with group tracking).
//!
//! The exit's [`ServiceResult`] comes from [`crate::service::restart`] (SuccessExitStatus=,
//! the `-` prefix); whether the run restarts is decided when it is over
//! ([`Service::enter_dead`]).

use std::time::Instant;

use super::Service;
use crate::service::event::{Effect, ExecKind, ExitStatus, ProcessRole};
use crate::service::restart;
use crate::service::state::{ServiceResult, SubState};
use crate::unit::model::ServiceType;

/// An exit status in systemd's words, for the log and for `error`.
fn describe(status: ExitStatus) -> String {
    match status {
        ExitStatus::Exited(code) => {
            format!(
                "code=exited, status={}",
                crate::service::exit_code::describe(code)
            )
        }
        ExitStatus::Signaled {
            signal,
            core_dumped,
        } => {
            let name = nix::sys::signal::Signal::try_from(signal)
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|_| signal.to_string());
            let code = if core_dumped { "dumped" } else { "killed" };
            format!("code={code}, signal={name}")
        }
        ExitStatus::Unknown => "status unknown (not our child)".to_string(),
    }
}

impl Service {
    /// Fork, setup or exec failed: reported as systemd does, as an exit with the step's
    /// status (203/EXEC, 217/USER, ...: [`crate::service::exit_code`]), the runtime's
    /// message in `error` (unless the command had the `-` prefix).
    pub(super) fn spawn_failed(
        &mut self,
        role: ProcessRole,
        error: String,
        exit_status: i32,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        match role {
            ProcessRole::Main => {
                if !self.run.main_ignore {
                    self.run.error = Some(error);
                }
                self.main_exited(ExitStatus::Exited(exit_status), now, fx);
            }
            ProcessRole::Control(_) => {
                if !self.run.control.ignore {
                    self.run.error = Some(error);
                }
                self.control_exited(ExitStatus::Exited(exit_status), now, fx);
            }
        }
    }

    pub(super) fn main_exited(&mut self, status: ExitStatus, now: Instant, fx: &mut Vec<Effect>) {
        self.run.last_main_pid = self.run.main_pid.take();
        self.exec_main = Some(status);
        self.run.main_status = Some(status);
        let ty = self.svc().service_type;
        let oneshot = ty == ServiceType::Oneshot;
        let mut f = restart::main_exit_result(status, oneshot, &self.svc().success_exit_status);
        // An adopted process (not our child: status unknown) that exits on its own, not
        // because we stopped it, is treated as a failure (issue 5): Restart=on-failure
        // brings it back and Restart=no shows it failed rather than cleanly finished.
        if status == ExitStatus::Unknown
            && matches!(
                self.sub,
                SubState::StartPost | SubState::Running | SubState::Reload
            )
        {
            f = ServiceResult::ExitCode;
        }
        // systemd: a main process the OOM killer ended fails the run with `oom-kill`.
        let oom = matches!(status, ExitStatus::Signaled { .. })
            && self.run.oom_killed.is_some()
            && self.run.oom_killed == self.run.last_main_pid;
        if oom {
            f = ServiceResult::OomKill;
        }
        if self.run.main_ignore {
            f = ServiceResult::Success;
        }
        self.reason = if oom {
            format!(
                "main process exited, {}: killed by the OOM killer (memory limit of the unit's cgroup)",
                describe(status)
            )
        } else {
            format!("main process exited, {}", describe(status))
        };
        if let Some(since) = self.run.running_since {
            // Stayed up long enough: the crash streak is over, the backoff starts over.
            if now.saturating_duration_since(since) >= restart::stay_up_period(self.svc()) {
                self.streak = 0;
            }
        }
        match self.sub {
            SubState::Start => self.main_exited_starting(ty, f, now, fx),
            SubState::StartPost | SubState::Running | SubState::Reload => {
                if self.sub == SubState::Reload && self.run.control.pid.is_none() {
                    self.run.notify_reloading = false;
                }
                self.enter_running(f, now, fx)
            }
            SubState::Stop => {
                self.fail(f);
                if self.run.control.pid.is_none() && self.run.queue.is_empty() {
                    // STOPPING=1 from a notify service: it exited on its own.
                    self.enter_signal(SubState::StopSigterm, ServiceResult::Success, now, fx);
                }
            }
            SubState::StopSigterm
            | SubState::StopSigkill
            | SubState::FinalSigterm
            | SubState::FinalSigkill => {
                if f != ServiceResult::Success && self.run.result == ServiceResult::Success {
                    self.run.result = f;
                }
                self.maybe_signal_done(now, fx);
            }
            _ => {}
        }
    }

    /// The main process ended in `start`: what that means depends on `Type=`.
    fn main_exited_starting(
        &mut self,
        ty: ServiceType,
        mut f: ServiceResult,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        match ty {
            ServiceType::Forking => {
                if f != ServiceResult::Success {
                    return self.enter_signal(SubState::StopSigterm, f, now, fx);
                }
                match self.svc().pid_file.clone() {
                    Some(path) => {
                        self.run.awaiting_pid_file = true;
                        fx.push(Effect::ReadPidFile { path });
                    }
                    None if self.svc().guess_main_pid => {
                        self.run.awaiting_main_guess = true;
                        fx.push(Effect::GuessMainPid);
                    }
                    None => {
                        self.run.running_without_main = true;
                        self.enter_start_post(now, fx);
                    }
                }
            }
            ServiceType::Oneshot => {
                if f != ServiceResult::Success {
                    return self.enter_signal(SubState::StopSigterm, f, now, fx);
                }
                match self.run.queue.pop_front() {
                    Some(next) => self.spawn_main(next, fx),
                    None => self.enter_start_post(now, fx),
                }
            }
            ServiceType::Notify => {
                if f == ServiceResult::Success {
                    self.run.error = Some(
                        "main process exited before sending READY=1 (Type=notify)".to_string(),
                    );
                    f = ServiceResult::Protocol;
                }
                self.enter_signal(SubState::StopSigterm, f, now, fx);
            }
            ServiceType::Simple | ServiceType::Exec => self.enter_running(f, now, fx),
        }
    }

    pub(super) fn control_exited(
        &mut self,
        status: ExitStatus,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        let kind = self.run.control.kind;
        self.run.control.pid = None;
        let ignore = self.run.control.ignore;
        let mut f = restart::control_exit_result(status);
        let ignored = ignore && f != ServiceResult::Success;
        if ignore {
            f = ServiceResult::Success;
        }
        if let Some(kind) = kind
            && (f != ServiceResult::Success || ignored)
        {
            self.reason = format!("{} exited, {}", kind.key(), describe(status));
        }
        match self.sub {
            SubState::Condition => {
                if let (false, ExitStatus::Exited(code @ 1..=254)) = (ignore, status) {
                    self.reason =
                        format!("condition not met (ExecCondition= exited with {code}); skipped");
                    self.run.queue.clear();
                    self.set_state(SubState::Dead, now, fx);
                    return self.after_dead(now, fx);
                }
                if f != ServiceResult::Success {
                    return self.enter_signal(SubState::StopSigterm, f, now, fx);
                }
                if !self.spawn_next_control(ExecKind::Condition, fx) {
                    self.enter_start_pre(now, fx);
                }
            }
            SubState::StartPre => {
                if f != ServiceResult::Success {
                    return self.enter_signal(SubState::StopSigterm, f, now, fx);
                }
                if !self.spawn_next_control(ExecKind::StartPre, fx) {
                    self.enter_start(now, fx);
                }
            }
            SubState::StartPost => {
                if f != ServiceResult::Success {
                    return self.enter_stop(f, now, fx);
                }
                if !self.spawn_next_control(ExecKind::StartPost, fx) {
                    self.enter_running(ServiceResult::Success, now, fx);
                }
            }
            SubState::Reload => {
                if f == ServiceResult::Success && self.spawn_next_control(ExecKind::Reload, fx) {
                    return;
                }
                if f != ServiceResult::Success {
                    self.run.error =
                        Some(format!("reload failed: ExecReload= {}", describe(status)));
                }
                self.run.queue.clear();
                self.back_from_reload(now, fx);
            }
            SubState::Stop => {
                if f == ServiceResult::Success && self.spawn_next_control(ExecKind::Stop, fx) {
                    return;
                }
                self.enter_signal(SubState::StopSigterm, f, now, fx);
            }
            SubState::StopPost => {
                if f == ServiceResult::Success && self.spawn_next_control(ExecKind::StopPost, fx) {
                    return;
                }
                self.enter_signal(SubState::FinalSigterm, f, now, fx);
            }
            _ => self.maybe_signal_done(now, fx),
        }
    }

    /// No process of the service is left (the loop said so, see
    /// [`Service::set_group_tracking`]).
    pub(super) fn on_group_empty(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        if !self.group_tracking {
            return;
        }
        self.group_empty = true;
        if self.sub == SubState::Running
            && self.run.running_without_main
            && self.run.main_pid.is_none()
        {
            // Type=forking without PIDFile=: the daemon is gone.
            self.reason = "no process left (Type=forking without PIDFile=)".to_string();
            self.run.running_without_main = false;
            return self.enter_running(ServiceResult::Success, now, fx);
        }
        self.maybe_signal_done(now, fx);
    }
}

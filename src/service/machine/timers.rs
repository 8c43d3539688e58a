//! Deadlines: the phase timeouts (TimeoutStartSec=, TimeoutStopSec=), the restart delay, the
//! watchdog, the PID file retry, and what happens when one of them passes
//! ([`crate::service::Event::Timer`]).
//!
//! The loop asks [`Service::next_deadline`] when to call back; a timer that fires early or
//! twice does nothing.

use std::time::{Duration, Instant};

use super::{Service, secs};
use crate::service::event::{Effect, KillTarget, Lifecycle};
use crate::service::state::{ServiceResult, SubState};
use crate::sys::time::deadline;

/// How often a `PIDFile=` that could not be read yet is read again (forking parents may
/// exit before the daemon wrote its pid file), until TimeoutStartSec=.
pub const PID_FILE_RETRY: Duration = Duration::from_millis(50);

/// Whether the watchdog deadline stays armed in `sub` (entering any other sub-state
/// disarms it).
pub(super) fn watchdog_runs_in(sub: SubState) -> bool {
    matches!(
        sub,
        SubState::Start | SubState::StartPost | SubState::Running | SubState::Reload
    )
}

impl Service {
    /// The deadline of a phase entered at `now`: TimeoutStartSec= for the starting and
    /// reloading phases, TimeoutStopSec= for the stopping ones, none otherwise (the restart
    /// delay is set by whoever enters `auto-restart`). A timeout too long for the clock is
    /// no deadline at all (infinity), never an overflow.
    pub(super) fn phase_deadline(&self, sub: SubState, now: Instant) -> Option<Instant> {
        match sub {
            SubState::Condition
            | SubState::StartPre
            | SubState::Start
            | SubState::StartPost
            | SubState::Reload => self.svc().timeout_start.and_then(|d| deadline(now, d)),
            SubState::Stop
            | SubState::StopSigterm
            | SubState::StopSigkill
            | SubState::StopPost
            | SubState::FinalSigterm
            | SubState::FinalSigkill => self.svc().timeout_stop.and_then(|d| deadline(now, d)),
            _ => None,
        }
    }

    /// The watchdog period starts over at `now` (off when there is none, or when the period
    /// is too long for the clock: a watchdog that never expires).
    pub(super) fn arm_watchdog(&mut self, now: Instant) {
        self.run.watchdog_deadline = self.run.watchdog.and_then(|d| deadline(now, d));
    }

    /// No WATCHDOG=1 in time (or WATCHDOG=trigger): the stop sequence with the watchdog
    /// signal, result `watchdog`.
    pub(super) fn watchdog_expired(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        self.run.watchdog_deadline = None;
        let period = self.run.watchdog.map(secs).unwrap_or_default();
        self.run.error = Some(format!(
            "watchdog timeout: no WATCHDOG=1 within {period} (WatchdogSec=)"
        ));
        self.reason = "watchdog timeout".to_string();
        self.run.watchdog_abort = true;
        self.kill_control(fx);
        self.enter_signal(SubState::StopSigterm, ServiceResult::Watchdog, now, fx);
    }

    pub(super) fn timer(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        if self.run.watchdog_deadline.is_some_and(|d| now >= d) {
            return self.watchdog_expired(now, fx);
        }
        if self.run.pid_file_retry.is_some_and(|d| now >= d)
            && self.deadline.is_none_or(|d| now < d)
        {
            self.run.pid_file_retry = None;
            if let Some(path) = self.svc().pid_file.clone() {
                fx.push(Effect::ReadPidFile { path });
            }
            return;
        }
        if self.deadline.is_none_or(|d| now < d) {
            return;
        }
        self.deadline = None;
        self.phase_timed_out(now, fx);
    }

    /// The step a pending spawn is stuck in (`opening StandardOutput=file:/x`), or a plain
    /// "spawning" when the loop has not said.
    fn pending_spawn_step(&self) -> Option<String> {
        self.run.spawning?;
        Some(
            self.run
                .spawn_step
                .clone()
                .unwrap_or_else(|| "spawning the process".to_string()),
        )
    }

    /// The deadline of the current phase passed: give up starting, or escalate the stop
    /// (SIGTERM -> SIGKILL, final-sigterm -> final-sigkill), or restart after the delay.
    fn phase_timed_out(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        let timeout_start = self.svc().timeout_start.map(secs).unwrap_or_default();
        let timeout_stop = self.svc().timeout_stop.map(secs).unwrap_or_default();
        match self.sub {
            SubState::Condition | SubState::StartPre | SubState::Start => {
                let mut msg = format!("start timed out after {timeout_start} (TimeoutStartSec=)");
                if let Some(step) = self.pending_spawn_step() {
                    msg = format!("{step} blocked for {timeout_start}; {msg}");
                }
                if let Some(e) = self.run.last_pid_file_error.take() {
                    msg = format!("{msg}; PID file not read: {e}");
                }
                if self.run.awaiting_healthy {
                    msg = format!("{msg}; no healthy probe yet (ReadyOnHealthy=yes)");
                    self.run.awaiting_healthy = false;
                }
                self.run.pid_file_retry = None;
                self.run.awaiting_pid_file = false;
                self.run.awaiting_main_guess = false;
                self.run.error = Some(msg.clone());
                self.reason = msg;
                self.enter_signal(SubState::StopSigterm, ServiceResult::Timeout, now, fx);
            }
            SubState::StartPost => {
                let mut msg = if self.run.awaiting_healthy && self.run.control.pid.is_none() {
                    self.run.awaiting_healthy = false;
                    format!(
                        "start timed out after {timeout_start} (TimeoutStartSec=); no healthy probe yet (ReadyOnHealthy=yes)"
                    )
                } else {
                    format!("ExecStartPost= timed out after {timeout_start} (TimeoutStartSec=)")
                };
                if let Some(step) = self.pending_spawn_step() {
                    msg = format!("{step} blocked for {timeout_start}; {msg}");
                }
                self.run.error = Some(msg.clone());
                self.reason = msg;
                self.enter_stop(ServiceResult::Timeout, now, fx);
            }
            SubState::Reload => {
                self.kill_control(fx);
                self.run.queue.clear();
                self.run.error = Some(format!(
                    "reload timed out after {timeout_start} (TimeoutStartSec=)"
                ));
                self.back_from_reload(now, fx);
            }
            SubState::Stop => {
                self.reason = format!("stop timed out after {timeout_stop} (TimeoutStopSec=)");
                self.kill_control(fx);
                self.enter_signal(SubState::StopSigterm, ServiceResult::Timeout, now, fx);
            }
            SubState::StopSigterm => {
                self.reason =
                    format!("still running {timeout_stop} after the kill signal (TimeoutStopSec=)");
                if self.svc().send_sigkill {
                    self.log_escalation(fx);
                    self.enter_signal(SubState::StopSigkill, ServiceResult::Timeout, now, fx);
                } else {
                    self.run.result = ServiceResult::Timeout;
                    self.forget_processes();
                    self.enter_stop_post(now, fx);
                }
            }
            SubState::StopSigkill => {
                self.forget_processes();
                self.enter_stop_post(now, fx);
            }
            SubState::StopPost => {
                if let Some(pid) = self.run.control.pid {
                    fx.push(Effect::Signal {
                        target: KillTarget::Control(pid),
                        signal: self.svc().kill_signal,
                    });
                }
                self.enter_signal(SubState::FinalSigterm, ServiceResult::Timeout, now, fx);
            }
            SubState::FinalSigterm => {
                if self.svc().send_sigkill {
                    self.reason = format!(
                        "processes still running {timeout_stop} after the kill signal (TimeoutStopSec=)"
                    );
                    self.log_escalation(fx);
                    self.enter_signal(SubState::FinalSigkill, ServiceResult::Timeout, now, fx);
                } else {
                    self.run.result = ServiceResult::Timeout;
                    self.forget_processes();
                    self.enter_dead(now, fx);
                }
            }
            SubState::FinalSigkill => {
                self.forget_processes();
                self.enter_dead(now, fx);
            }
            SubState::AutoRestart => {
                self.n_restarts += 1;
                self.streak += 1;
                self.reason = format!("automatic restart #{} (Restart=)", self.n_restarts);
                self.run.last_main_pid = None;
                self.lifecycle(Lifecycle::Restarting, fx);
                self.start(now, false, fx);
            }
            _ => {}
        }
    }
}

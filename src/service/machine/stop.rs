//! The way down: operator stop, `ExecStop=`, the kill sequence per KillMode=
//! (`stop-sigterm -> stop-sigkill`), `ExecStopPost=` and its leftovers
//! (`final-sigterm -> final-sigkill`), and the end of a run: `dead`, `failed`, or
//! `auto-restart` as Restart= decides (through [`crate::service::restart`]).
//!
//! Escalation on TimeoutStopSec= is in [`super::timers`]; this file moves on when what a
//! phase waits for is gone.

use std::time::Instant;

use super::{Service, secs};
use crate::service::event::{Effect, ExecKind, KillTarget, Lifecycle};
use crate::service::restart;
use crate::service::state::{ServiceResult, SubState};
use crate::unit::model::KillMode;

/// systemd's `WatchdogSignal=` default.
const WATCHDOG_SIGNAL: i32 = libc::SIGABRT;

impl Service {
    pub(super) fn op_stop(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        self.run.forbid_restart = true;
        self.reason = "stop requested".to_string();
        match self.sub {
            SubState::Dead | SubState::Failed => {}
            SubState::AutoRestart => {
                // As systemd: the stop cancels the pending restart and the unit is inactive
                // (dead), as asked; the result of the run that ended stays visible.
                self.reason = "stop requested while waiting to restart".to_string();
                self.deadline = None;
                self.set_state(SubState::Dead, now, fx);
                self.after_dead(now, fx);
            }
            SubState::Condition
            | SubState::StartPre
            | SubState::Start
            | SubState::StartPost
            | SubState::Reload => {
                self.enter_signal(SubState::StopSigterm, ServiceResult::Success, now, fx)
            }
            SubState::Running | SubState::Exited => {
                self.enter_stop(ServiceResult::Success, now, fx)
            }
            _ => {} // already stopping
        }
    }

    /// SIGKILL to the running control process, which is then forgotten (a stop or a
    /// watchdog expiry interrupts it).
    pub(super) fn kill_control(&mut self, fx: &mut Vec<Effect>) {
        if let Some(pid) = self.run.control.pid.take() {
            fx.push(Effect::Signal {
                target: KillTarget::Control(pid),
                signal: libc::SIGKILL,
            });
        }
    }

    /// ExecStop= if any, then the kill sequence. A control process still running (e.g. an
    /// ExecStartPost=) is killed and forgotten first.
    pub(super) fn enter_stop(&mut self, f: ServiceResult, now: Instant, fx: &mut Vec<Effect>) {
        self.fail(f);
        self.kill_control(fx);
        let cmds = self.svc().exec_stop.clone();
        if cmds.is_empty() {
            return self.enter_signal(SubState::StopSigterm, ServiceResult::Success, now, fx);
        }
        self.set_state(SubState::Stop, now, fx);
        self.run_commands(ExecKind::Stop, cmds, fx);
    }

    /// Sends the phase's signal per KillMode= and waits for the main and control processes.
    pub(super) fn enter_signal(
        &mut self,
        state: SubState,
        f: ServiceResult,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        self.fail(f);
        self.run.queue.clear();
        let sigterm_phase = matches!(state, SubState::StopSigterm | SubState::FinalSigterm);
        let signal = if state == SubState::StopSigterm && self.run.watchdog_abort {
            WATCHDOG_SIGNAL
        } else if sigterm_phase {
            self.svc().kill_signal
        } else {
            self.svc().final_kill_signal
        };
        let mode = self.svc().kill_mode;
        let send_sighup = self.svc().send_sighup;
        let mut targets = Vec::new();
        let group = match mode {
            KillMode::ControlGroup => true,
            KillMode::Mixed => !sigterm_phase,
            KillMode::Process | KillMode::None => false,
        };
        if group {
            targets.push(KillTarget::Group);
        } else if mode != KillMode::None {
            targets.extend(self.run.main_pid.map(KillTarget::Main));
            targets.extend(self.run.control.pid.map(KillTarget::Control));
        }
        for target in &targets {
            fx.push(Effect::Signal {
                target: *target,
                signal,
            });
        }
        if sigterm_phase && send_sighup && signal != libc::SIGHUP {
            for target in &targets {
                fx.push(Effect::Signal {
                    target: *target,
                    signal: libc::SIGHUP,
                });
            }
        }
        self.set_state(state, now, fx);
        if mode == KillMode::None {
            // Nothing was signalled: nothing to wait for (the processes are left alone).
            self.forget_processes();
        }
        self.maybe_signal_done(now, fx);
    }

    /// Whether stop phases wait for the whole group, not only for main and control.
    fn waits_for_group(&self) -> bool {
        self.group_tracking
            && matches!(
                self.svc().kill_mode,
                KillMode::ControlGroup | KillMode::Mixed
            )
    }

    /// Leaves a signal phase once everything it waits for is gone.
    pub(super) fn maybe_signal_done(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        let is_signal_phase = matches!(
            self.sub,
            SubState::StopSigterm
                | SubState::StopSigkill
                | SubState::FinalSigterm
                | SubState::FinalSigkill
        );
        if is_signal_phase
            && self.run.main_pid.is_none()
            && self.run.control.pid.is_none()
            && (self.group_empty || !self.waits_for_group())
        {
            self.signal_done(now, fx);
        }
    }

    /// The processes the phase waited for are gone.
    ///
    /// KillMode=mixed: the main process got the kill signal and is gone; what remains of the
    /// group gets FinalKillSignal now (systemd waits for the cgroup to empty first, up to
    /// TimeoutStopSec=; the machine cannot see the group, so it does not wait).
    fn signal_done(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        if self.sub == SubState::StopSigterm
            && self.svc().kill_mode == KillMode::Mixed
            && self.svc().send_sigkill
            && !self.group_tracking
        {
            fx.push(Effect::Signal {
                target: KillTarget::Group,
                signal: self.svc().final_kill_signal,
            });
        }
        match self.sub {
            SubState::StopSigterm | SubState::StopSigkill => self.enter_stop_post(now, fx),
            SubState::FinalSigterm | SubState::FinalSigkill => self.enter_dead(now, fx),
            _ => {}
        }
    }

    pub(super) fn enter_stop_post(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        self.run.watchdog_abort = false;
        let cmds = self.svc().exec_stop_post.clone();
        if cmds.is_empty() {
            // The group just got the kill signal and nothing was spawned since: a final
            // SIGTERM would only repeat it (final-sigterm follows ExecStopPost= only).
            return self.enter_dead(now, fx);
        }
        self.set_state(SubState::StopPost, now, fx);
        self.run_commands(ExecKind::StopPost, cmds, fx);
    }

    /// The run is over: dead, failed, or auto-restart per Restart=.
    pub(super) fn enter_dead(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        if let Some(path) = self.svc().pid_file.clone() {
            fx.push(Effect::RemovePidFile { path });
        }
        self.forget_processes();
        self.run.control.kind = None;
        self.run.queue.clear();
        self.run.pid_file_retry = None;
        let restart = !self.run.forbid_restart
            && !self.run.start_after_stop
            && (self.run.health_restart
                || restart::shall_restart(self.svc(), self.run.result, self.run.main_status));
        if restart {
            let delay = restart::restart_delay(self.svc(), self.streak);
            let kind = if self.run.result == ServiceResult::Success {
                Lifecycle::Stopped
            } else {
                Lifecycle::Failed
            };
            self.reason = format!(
                "{} (result {}); restarting in {}",
                self.reason,
                self.run.result,
                secs(delay)
            );
            self.set_state(SubState::AutoRestart, now, fx);
            self.lifecycle(kind, fx);
            // RestartSec=infinity (Duration::MAX): never due, the unit waits here.
            self.deadline = crate::sys::time::deadline(now, delay);
            return;
        }
        let end = if self.run.result == ServiceResult::Success {
            SubState::Dead
        } else {
            SubState::Failed
        };
        if end == SubState::Failed {
            self.reason = format!("{} (result {})", self.reason, self.run.result);
        }
        self.set_state(end, now, fx);
        self.after_dead(now, fx);
    }

    /// A start asked for during the stop (operator restart) happens now.
    pub(super) fn after_dead(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        if self.run.start_after_stop {
            self.start(now, true, fx);
        }
    }

    /// Says (in the lifecycle log and in status) that a stop escalates to FinalKillSignal=:
    /// the exit that follows reads only "killed by SIGKILL", which does not say why.
    pub(super) fn log_escalation(&mut self, fx: &mut Vec<Effect>) {
        let signal = nix::sys::signal::Signal::try_from(self.svc().final_kill_signal)
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|_| self.svc().final_kill_signal.to_string());
        self.reason = format!("{}; sending {signal}", self.reason);
        self.run.error = Some(format!("stop timed out: {}", self.reason));
        self.lifecycle(Lifecycle::Stopping, fx);
    }

    /// Stops waiting for the main and control processes: they are gone, left alone
    /// (KillMode=none), or survived the final kill signal (systemd logs and ignores them
    /// too).
    pub(super) fn forget_processes(&mut self) {
        self.run.main_pid = None;
        self.run.control.pid = None;
    }
}

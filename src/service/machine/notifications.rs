//! What an sd_notify message does to the machine: READY=1, RELOADING=1, STOPPING=1,
//! MAINPID=, STATUS=/ERRNO=, WATCHDOG=1/WATCHDOG=trigger/WATCHDOG_USEC=, EXTEND_TIMEOUT_USEC=.
//!
//! Parsing the datagram is [`crate::service::notify`]; this file is only its meaning.

use std::time::Instant;

use super::Service;
use crate::service::event::Effect;
use crate::service::notify::NotifyMessage;
use crate::service::state::{ActiveState, ServiceResult, SubState};
use crate::unit::model::{NotifyAccess, ServiceType};

/// The sub-states in which the main process runs (or is being started): where MAINPID= and
/// STOPPING=1 are accepted.
fn main_may_run(sub: SubState) -> bool {
    matches!(
        sub,
        SubState::Start | SubState::StartPost | SubState::Running | SubState::Reload
    )
}

impl Service {
    pub(super) fn notify(
        &mut self,
        pid: i32,
        msg: NotifyMessage,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        if matches!(
            self.sub,
            SubState::Dead | SubState::Failed | SubState::AutoRestart
        ) {
            return;
        }
        if !self.notify_access_allows(pid) {
            return;
        }
        if let Some(text) = msg.status {
            self.run.status_text = Some(text);
        }
        if msg.errno.is_some() {
            self.run.status_errno = msg.errno;
        }
        if let Some(new_main) = msg.main_pid {
            self.notified_main_pid(pid, new_main, now, fx);
        }
        if let Some(usec) = msg.watchdog_usec {
            self.run.watchdog = Some(usec).filter(|d| !d.is_zero());
            if self.run.watchdog_deadline.is_some() || self.run.watchdog.is_some() {
                self.arm_watchdog(now);
            }
        }
        if msg.watchdog_ping && self.run.watchdog_deadline.is_some() {
            self.arm_watchdog(now);
        }
        if let Some(extend) = msg.extend_timeout {
            let phase_has_timeout = self.sub.active_state() != ActiveState::Active;
            if let (true, Some(deadline)) = (phase_has_timeout, self.deadline) {
                // An extension past what the clock holds removes the deadline.
                self.deadline =
                    crate::sys::time::deadline(now, extend).map(|extended| deadline.max(extended));
            }
        }
        if msg.watchdog_trigger {
            return self.watchdog_expired(now, fx);
        }
        if msg.stopping && main_may_run(self.sub) {
            self.reason = "service sent STOPPING=1".to_string();
            self.kill_control(fx);
            self.run.queue.clear();
            self.set_state(SubState::Stop, now, fx);
            if self.run.main_pid.is_none() {
                self.enter_signal(SubState::StopSigterm, ServiceResult::Success, now, fx);
            }
            return;
        }
        if msg.reloading && self.sub == SubState::Running {
            self.run.notify_reloading = true;
            let since = self.run.running_since;
            self.set_state(SubState::Reload, now, fx);
            self.run.running_since = since;
            return;
        }
        if msg.ready {
            let ty = self.svc().service_type;
            if self.sub == SubState::Start
                && ty == ServiceType::Notify
                && self.run.main_pid.is_some()
            {
                self.enter_start_post(now, fx);
            } else if self.sub == SubState::Reload && self.run.notify_reloading {
                self.back_from_reload(now, fx);
            }
        }
    }

    /// `NotifyAccess=`: the loop has already proven `pid` to be a process of this service;
    /// this narrows it to the processes the unit allows (systemd's `notify_access`).
    /// The loop asks too, to log what it drops.
    pub fn notify_access_allows(&self, pid: i32) -> bool {
        let main = self.run.main_pid == Some(pid);
        match self.svc().effective_notify_access() {
            NotifyAccess::None => false,
            NotifyAccess::Main => main,
            NotifyAccess::Exec => main || self.run.control.pid == Some(pid),
            NotifyAccess::All => true,
        }
    }

    /// MAINPID=: accepted if it names a real process (not init, not a negative group id),
    /// while starting or running, from the current main process or a control process (or
    /// from anyone while there is no main process). It also ends the wait for a PID file.
    fn notified_main_pid(&mut self, from: i32, new_main: i32, now: Instant, fx: &mut Vec<Effect>) {
        let from_ours = self.run.main_pid == Some(from)
            || self.run.control.pid == Some(from)
            || self.run.main_pid.is_none();
        // The running control process cannot become the main one: it would hold both roles,
        // and its one exit would leave the other pointing at a reaped pid (then signalled).
        let is_control = self.run.control.pid == Some(new_main);
        if new_main > 1 && from_ours && !is_control && main_may_run(self.sub) {
            self.run.main_pid = Some(new_main);
            self.run.running_without_main = false;
            if self.run.awaiting_pid_file || self.run.awaiting_main_guess {
                self.run.awaiting_pid_file = false;
                self.run.awaiting_main_guess = false;
                self.run.pid_file_retry = None;
                self.enter_start_post(now, fx);
            }
        }
    }
}

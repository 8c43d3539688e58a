//! What the `[X-Health]` check's verdicts do to a run. The verdicts themselves come from
//! [`crate::service::health`] through the loop (`Event::Healthy`, `Event::Unhealthy`).
//!
//! - `ReadyOnHealthy=yes`: once the start phases are done, the run stays `activating`
//!   (sub-state `start` or `start-post`, TimeoutStartSec= running on) until the first
//!   healthy verdict; only then does it become `active/running`, so units ordered `After=`
//!   it start then.
//! - `OnUnhealthy=restart`: the normal stop sequence with result `health`, then an
//!   automatic restart whatever `Restart=` says; the restart is an automatic start, so
//!   StartLimitBurst= counts it. `stop`: the same stop, no restart (`failed`, result
//!   `health`). `none`: nothing (the loop reports it).

use std::time::Instant;

use super::Service;
use crate::service::event::Effect;
use crate::service::state::{ServiceResult, SubState};
use crate::unit::model::OnUnhealthy;

impl Service {
    /// Whether `enter_running` must wait for the first healthy verdict.
    pub(super) fn waits_for_healthy(&self) -> bool {
        self.cfg.health.as_ref().is_some_and(|h| h.ready_on_healthy)
            && !self.run.healthy_seen
            && self.run.main_pid.is_some()
            && matches!(self.sub, SubState::Start | SubState::StartPost)
    }

    pub(super) fn healthy(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        self.run.healthy_seen = true;
        if self.run.awaiting_healthy {
            self.run.awaiting_healthy = false;
            self.reason = "healthy (ReadyOnHealthy=yes)".to_string();
            self.enter_running(ServiceResult::Success, now, fx);
        }
    }

    pub(super) fn unhealthy(&mut self, message: String, now: Instant, fx: &mut Vec<Effect>) {
        let Some(action) = self.cfg.health.as_ref().map(|h| h.on_unhealthy) else {
            return;
        };
        let starting = matches!(self.sub, SubState::Start | SubState::StartPost);
        let up = matches!(self.sub, SubState::Running | SubState::Reload);
        if action == OnUnhealthy::None || !(starting || up) {
            return;
        }
        self.run.awaiting_healthy = false;
        self.run.error = Some(format!("unhealthy: {message}"));
        self.reason = format!("unhealthy: {message} (OnUnhealthy=)");
        match action {
            OnUnhealthy::Restart => self.run.health_restart = true,
            OnUnhealthy::Stop => self.run.forbid_restart = true,
            OnUnhealthy::None => {}
        }
        if up {
            self.kill_control(fx);
            self.run.queue.clear();
            self.enter_stop(ServiceResult::Health, now, fx);
        } else {
            self.kill_control(fx);
            self.enter_signal(SubState::StopSigterm, ServiceResult::Health, now, fx);
        }
    }
}

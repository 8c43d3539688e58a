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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use crate::service::Service;
    use crate::service::event::{Effect, Event, ExitStatus, ProcessRole};
    use crate::service::state::{ActiveState, ServiceResult, SubState};
    use crate::unit::model::{
        ExecCommand, HealthCheck, HealthProbe, OnUnhealthy, RestartPolicy, ServiceSection, Unit,
    };

    fn service(on_unhealthy: OnUnhealthy, ready_on_healthy: bool, burst: u32) -> Service {
        let exec = ExecCommand {
            path: "/bin/server".to_string(),
            argv: vec!["/bin/server".to_string()],
            ..Default::default()
        };
        let mut unit = Unit {
            name: "web.service".to_string(),
            service: ServiceSection {
                exec_start: vec![exec],
                restart: RestartPolicy::No,
                restart_sec: Duration::from_millis(100),
                ..Default::default()
            },
            health: Some(HealthCheck {
                probe: HealthProbe::Tcp {
                    host: "127.0.0.1".into(),
                    port: 80,
                },
                interval: Duration::from_secs(1),
                timeout: Duration::from_secs(1),
                start_period: Duration::ZERO,
                retries: 3,
                success_threshold: 1,
                on_unhealthy,
                ready_on_healthy,
            }),
            ..Default::default()
        };
        unit.unit.start_limit_burst = burst;
        unit.unit.start_limit_interval = Duration::from_secs(10);
        Service::new(Arc::new(unit))
    }

    fn spawned(svc: &mut Service, pid: i32, now: Instant) {
        svc.on_event(
            Event::Spawned {
                role: ProcessRole::Main,
                pid,
            },
            now,
        );
    }

    fn exited(svc: &mut Service, pid: i32, now: Instant) {
        let status = ExitStatus::Signaled {
            signal: libc::SIGTERM,
            core_dumped: false,
        };
        svc.on_event(Event::Exited { pid, status }, now);
    }

    #[test]
    fn unhealthy_restarts_with_result_health_whatever_restart_says_and_counts_the_limit() {
        let t0 = Instant::now();
        let mut svc = service(OnUnhealthy::Restart, false, 2);
        svc.on_event(Event::Start, t0);
        spawned(&mut svc, 10, t0);
        assert_eq!(svc.status().sub_state, SubState::Running);
        let fx = svc.on_event(Event::Unhealthy("HTTP 503 after 3 probes".into()), t0);
        assert!(
            fx.iter().any(|e| matches!(e, Effect::Signal { .. })),
            "{fx:?}"
        );
        exited(&mut svc, 10, t0);
        let st = svc.status();
        assert_eq!(
            (st.sub_state, st.result),
            (SubState::AutoRestart, ServiceResult::Health)
        );
        assert_eq!(
            st.error.as_deref(),
            Some("unhealthy: HTTP 503 after 3 probes")
        );
        // The restart is automatic: it counts against StartLimitBurst=2 (the operator
        // start was the first).
        svc.on_event(Event::Timer, t0 + Duration::from_millis(100));
        spawned(&mut svc, 11, t0 + Duration::from_millis(100));
        svc.on_event(
            Event::Unhealthy("again".into()),
            t0 + Duration::from_millis(200),
        );
        exited(&mut svc, 11, t0 + Duration::from_millis(200));
        svc.on_event(Event::Timer, t0 + Duration::from_millis(300));
        let st = svc.status();
        assert_eq!(
            (st.active_state, st.result),
            (ActiveState::Failed, ServiceResult::StartLimitHit)
        );
    }

    #[test]
    fn stop_and_none() {
        let t0 = Instant::now();
        let mut svc = service(OnUnhealthy::Stop, false, 0);
        svc.on_event(Event::Start, t0);
        spawned(&mut svc, 10, t0);
        svc.on_event(Event::Unhealthy("TCP refused".into()), t0);
        exited(&mut svc, 10, t0);
        let st = svc.status();
        assert_eq!(
            (st.active_state, st.result),
            (ActiveState::Failed, ServiceResult::Health)
        );

        let mut svc = service(OnUnhealthy::None, false, 0);
        svc.on_event(Event::Start, t0);
        spawned(&mut svc, 10, t0);
        let fx = svc.on_event(Event::Unhealthy("TCP refused".into()), t0);
        assert!(fx.is_empty(), "{fx:?}");
        assert_eq!(svc.status().sub_state, SubState::Running);
    }

    #[test]
    fn ready_on_healthy_stays_activating_until_healthy_and_the_start_timeout_applies() {
        let t0 = Instant::now();
        let mut svc = service(OnUnhealthy::Restart, true, 0);
        svc.on_event(Event::Start, t0);
        spawned(&mut svc, 10, t0);
        let st = svc.status();
        assert_eq!(
            (st.active_state, st.sub_state),
            (ActiveState::Activating, SubState::Start)
        );
        svc.on_event(Event::Healthy, t0 + Duration::from_secs(2));
        assert_eq!(svc.status().sub_state, SubState::Running);
        // A later unhealthy/healthy change does not send it back to activating.
        svc.on_event(Event::Healthy, t0 + Duration::from_secs(3));
        assert_eq!(svc.status().sub_state, SubState::Running);

        let mut svc = service(OnUnhealthy::Restart, true, 0);
        svc.on_event(Event::Start, t0);
        spawned(&mut svc, 10, t0);
        let timeout = crate::unit::model::defaults::TIMEOUT_START;
        svc.on_event(Event::Timer, t0 + timeout);
        let st = svc.status();
        assert_eq!(st.result, ServiceResult::Timeout);
        assert!(
            st.error
                .as_deref()
                .is_some_and(|e| e.contains("no healthy probe yet")),
            "{st:?}"
        );
    }
}

//! What crosses the boundary between two runs: the [`Run`] is replaced at each start, the
//! rest of [`Service`] carries over. The simulated-clock tests in `tests/service_machine.rs`
//! cover behaviour; these pin the split itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::service::event::Event;
use crate::service::notify::NotifyMessage;
use crate::unit::model::{ExecCommand, RestartPolicy, ServiceType};

fn crashing_notify_service() -> Service {
    let exec = ExecCommand {
        path: "/bin/daemon".to_string(),
        argv: vec!["/bin/daemon".to_string()],
        ..Default::default()
    };
    let unit = Unit {
        name: "test.service".to_string(),
        service: ServiceSection {
            service_type: ServiceType::Notify,
            exec_start: vec![exec],
            restart: RestartPolicy::Always,
            restart_sec: Duration::from_secs(1),
            watchdog: Some(Duration::from_secs(30)),
            ..Default::default()
        },
        ..Default::default()
    };
    Service::new(Arc::new(unit))
}

fn notify(svc: &mut Service, pid: i32, datagram: &str, now: Instant) {
    let message = NotifyMessage::parse(datagram.as_bytes());
    svc.on_event(Event::Notify { pid, message }, now);
}

#[test]
fn a_restart_replaces_the_run_and_keeps_the_rest() {
    let t0 = Instant::now();
    let mut svc = crashing_notify_service();
    svc.on_event(Event::Start, t0);
    svc.on_event(
        Event::Spawned {
            role: ProcessRole::Main,
            pid: 100,
        },
        t0,
    );
    notify(
        &mut svc,
        100,
        "READY=1\nSTATUS=busy\nWATCHDOG_USEC=5000000",
        t0,
    );
    assert_eq!(svc.sub, SubState::Running);
    assert_eq!(svc.run.watchdog, Some(Duration::from_secs(5)));

    svc.on_event(
        Event::Exited {
            pid: 100,
            status: ExitStatus::Exited(3),
        },
        t0,
    );
    // The run is over but stays visible until the next start.
    let st = svc.status();
    assert_eq!(st.sub_state, SubState::AutoRestart);
    assert_eq!(st.result, ServiceResult::ExitCode);
    assert_eq!(st.status_text.as_deref(), Some("busy"));
    assert_eq!(svc.run.last_main_pid, Some(100));

    svc.on_event(Event::Timer, t0 + Duration::from_secs(1));
    let st = svc.status();
    assert_eq!(st.sub_state, SubState::Start);
    // A new run: its own result, STATUS=, watchdog period (from the unit again).
    assert_eq!(st.result, ServiceResult::Success);
    assert_eq!(st.status_text, None);
    assert_eq!(st.error, None);
    assert_eq!(svc.run.watchdog, Some(Duration::from_secs(30)));
    assert_eq!(svc.run.main_status, None);
    assert_eq!(svc.run.last_main_pid, None);
    // What survives: the counters, the start-limit window, the last main exit.
    assert_eq!(st.n_restarts, 1);
    assert_eq!(svc.streak, 1);
    assert_eq!(svc.start_times.len(), 2);
    assert_eq!(st.exec_main_status, Some(3));
}

#[test]
fn a_refused_start_keeps_the_run_that_ended() {
    let t0 = Instant::now();
    let mut svc = crashing_notify_service();
    let mut unit = (**svc.unit()).clone();
    unit.unit.start_limit_burst = 1;
    unit.unit.start_limit_interval = Duration::from_secs(60);
    svc.set_unit(Arc::new(unit));
    svc.on_event(Event::Start, t0);
    svc.on_event(
        Event::Spawned {
            role: ProcessRole::Main,
            pid: 100,
        },
        t0,
    );
    notify(&mut svc, 100, "READY=1\nSTATUS=busy", t0);
    svc.on_event(
        Event::Exited {
            pid: 100,
            status: ExitStatus::Exited(3),
        },
        t0,
    );
    svc.on_event(Event::Timer, t0 + Duration::from_secs(1));
    let st = svc.status();
    assert_eq!(st.sub_state, SubState::Failed);
    assert_eq!(st.result, ServiceResult::StartLimitHit);
    // No new run began: the last STATUS= is still what status shows.
    assert_eq!(st.status_text.as_deref(), Some("busy"));
    assert!(st.error.is_some_and(|e| e.contains("start limit hit")));
}

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

fn simple_service(timeout_start: Option<Duration>) -> Service {
    let exec = ExecCommand {
        path: "/bin/sleep".to_string(),
        argv: vec!["/bin/sleep".to_string(), "1000".to_string()],
        ..Default::default()
    };
    let unit = Unit {
        name: "pending.service".to_string(),
        service: ServiceSection {
            exec_start: vec![exec],
            timeout_start,
            ..Default::default()
        },
        ..Default::default()
    };
    Service::new(Arc::new(unit))
}

fn asks_spawn(fx: &[Effect]) -> bool {
    fx.iter().any(|e| matches!(e, Effect::Spawn { .. }))
}

#[test]
fn a_spawn_is_pending_until_answered() {
    let t0 = Instant::now();
    let mut svc = simple_service(None);
    assert!(asks_spawn(&svc.on_event(Event::Start, t0)));
    assert_eq!(svc.spawn_pending(), Some(ProcessRole::Main));
    assert_eq!(svc.sub, SubState::Start);
    svc.on_event(
        Event::Spawned {
            role: ProcessRole::Main,
            pid: 100,
        },
        t0,
    );
    assert_eq!(svc.spawn_pending(), None);
    assert_eq!(svc.sub, SubState::Running);
}

#[test]
fn a_stop_while_the_main_spawn_is_pending_gives_it_up_and_stops_at_once() {
    let t0 = Instant::now();
    let mut svc = simple_service(None);
    svc.on_event(Event::Start, t0);
    svc.set_group_tracking(true);
    let fx = svc.on_event(Event::Stop, t0);
    assert_eq!(svc.spawn_pending(), None, "the loop must cancel it: {fx:?}");
    // Nothing runs yet: the group signal finds nobody and the stop completes.
    svc.on_event(Event::GroupEmpty, t0);
    assert_eq!(svc.status().active_state, ActiveState::Inactive);
}

#[test]
fn a_restart_while_spawning_asks_for_a_new_spawn() {
    let t0 = Instant::now();
    let mut svc = simple_service(None);
    svc.on_event(Event::Start, t0);
    svc.set_group_tracking(true);
    svc.on_event(Event::Restart, t0);
    let fx = svc.on_event(Event::GroupEmpty, t0);
    assert!(asks_spawn(&fx), "{fx:?}");
    assert_eq!(svc.spawn_pending(), Some(ProcessRole::Main));
}

#[test]
fn a_start_timeout_that_hits_a_pending_spawn_names_the_step_it_is_stuck_in() {
    let t0 = Instant::now();
    let mut svc = simple_service(Some(Duration::from_secs(2)));
    svc.on_event(Event::Start, t0);
    svc.set_spawn_step(Some(
        "opening StandardOutput=file:/x (a FIFO with no reader)".to_string(),
    ));
    svc.on_event(Event::Timer, t0 + Duration::from_secs(2));
    let st = svc.status();
    assert_eq!(st.result, ServiceResult::Timeout);
    assert_eq!(
        st.error.as_deref(),
        Some(
            "opening StandardOutput=file:/x (a FIFO with no reader) blocked for 2s; \
             start timed out after 2s (TimeoutStartSec=)"
        )
    );
    assert_eq!(svc.spawn_pending(), None);
}

#[test]
fn the_spawn_step_is_ignored_when_no_spawn_is_pending() {
    let t0 = Instant::now();
    let mut svc = simple_service(Some(Duration::from_secs(2)));
    svc.on_event(Event::Start, t0);
    svc.on_event(
        Event::Spawned {
            role: ProcessRole::Main,
            pid: 100,
        },
        t0,
    );
    svc.set_spawn_step(Some("stale".to_string()));
    assert_eq!(svc.run.spawn_step, None);
}

/// A main process the OOM killer ended fails with `oom-kill`; Restart=on-failure restarts
/// it (systemd counts oom-kill as a failure that is not an exit code). A SIGKILL without
/// the loop's word stays `signal`, and the mark does not outlive its run.
#[test]
fn an_oom_killed_main_process_ends_with_result_oom_kill() {
    let t0 = Instant::now();
    let sigkill = crate::service::ExitStatus::Signaled {
        signal: libc::SIGKILL,
        core_dumped: false,
    };
    let mut svc = simple_service(None);
    svc.on_event(Event::Start, t0);
    let main = |pid| Event::Spawned {
        role: ProcessRole::Main,
        pid,
    };
    svc.on_event(main(100), t0);
    svc.on_event(Event::OomKilled { pid: 999 }, t0); // not the main pid: ignored
    svc.on_event(Event::OomKilled { pid: 100 }, t0);
    svc.on_event(
        Event::Exited {
            pid: 100,
            status: sigkill,
        },
        t0,
    );
    let st = svc.status();
    assert_eq!(st.active_state, ActiveState::Failed);
    assert_eq!(st.result, ServiceResult::OomKill);
    assert_eq!(st.result.to_string(), "oom-kill");
    svc.on_event(Event::Start, t0);
    svc.on_event(main(101), t0);
    svc.on_event(
        Event::Exited {
            pid: 101,
            status: sigkill,
        },
        t0,
    );
    assert_eq!(svc.status().result, ServiceResult::Signal);

    let mut on_failure = simple_service(None);
    let mut unit = (**on_failure.unit()).clone();
    unit.service.restart = RestartPolicy::OnFailure;
    on_failure = Service::new(Arc::new(unit));
    on_failure.on_event(Event::Start, t0);
    on_failure.on_event(main(200), t0);
    on_failure.on_event(Event::OomKilled { pid: 200 }, t0);
    on_failure.on_event(
        Event::Exited {
            pid: 200,
            status: sigkill,
        },
        t0,
    );
    let st = on_failure.status();
    assert_eq!(st.sub_state, SubState::AutoRestart);
    assert_eq!(st.result, ServiceResult::OomKill);
}

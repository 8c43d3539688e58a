use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::*;
use crate::timer::calendar::CalendarSpec;

fn host() -> HostClock {
    HostClock {
        boot: Duration::ZERO,
        startup: Duration::from_secs(100),
        local: TimeZone::UTC,
        perturbation: Duration::ZERO,
    }
}

/// Now at `secs` seconds after the daemon's start (wall clock 2025-01-01T00:00:00Z then).
fn at(secs: f64) -> Stamp {
    let d = Duration::from_secs_f64(secs);
    let base: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
    Stamp {
        wall: base
            .checked_add(jiff::SignedDuration::try_from(d).unwrap())
            .unwrap(),
        mono: Duration::from_secs(100) + d,
    }
}

fn every_2s() -> TimerSettings {
    TimerSettings {
        on_calendar: vec![CalendarSpec::parse("*:*:0/2").unwrap()],
        accuracy: Duration::from_millis(1),
        ..TimerSettings::default()
    }
}

#[test]
fn fires_then_runs_until_the_service_is_inactive_then_waits_again() {
    let h = host();
    let mut t = TimerState::new(every_2s(), 0, None);
    t.start(at(0.5), &h, 0);
    assert_eq!(t.sub_state(), TimerSub::Waiting);
    let wake = t.wake().unwrap();
    assert!(wake > at(0.5).mono && wake <= at(2.001).mono, "{wake:?}");
    assert_eq!(t.tick(at(1.0), false, &h, 0), Action::Nothing);
    assert_eq!(t.tick(at(2.001), false, &h, 0), Action::StartService);
    assert_eq!(t.sub_state(), TimerSub::Running);
    assert_eq!(t.wake(), None, "no elapse while the service runs");
    // The service runs past the next elapse: never started twice.
    assert_eq!(t.tick(at(2.1), true, &h, 0), Action::Nothing);
    assert_eq!(t.tick(at(4.5), true, &h, 0), Action::Nothing);
    // Inactive again: waiting for the next elapse after the last trigger.
    assert_eq!(t.tick(at(4.6), false, &h, 0), Action::StartService);
    assert_eq!(t.tick(at(4.7), true, &h, 0), Action::Nothing);
    assert_eq!(t.tick(at(4.8), false, &h, 0), Action::Nothing);
    assert_eq!(t.sub_state(), TimerSub::Waiting);
    assert!(t.wake().unwrap() <= at(6.001).mono);
}

#[test]
fn already_active_service_is_not_started() {
    let h = host();
    let mut t = TimerState::new(every_2s(), 0, None);
    t.start(at(0.5), &h, 0);
    assert_eq!(t.tick(at(1.0), true, &h, 0), Action::Nothing);
    assert_eq!(t.tick(at(2.01), true, &h, 0), Action::AlreadyActive);
    assert!(t.last_trigger.is_some());
}

#[test]
fn a_change_reschedules_from_now_without_firing() {
    let h = host();
    let mut hourly = TimerSettings {
        on_calendar: vec![CalendarSpec::parse("hourly").unwrap()],
        ..TimerSettings::default()
    };
    hourly.accuracy = Duration::from_millis(1);
    let mut t = TimerState::new(hourly, 0, None);
    t.start(at(0.5), &h, 0);
    assert_eq!(t.tick(at(0.6), false, &h, 0), Action::Nothing);
    // Long after a trigger, the schedule changes to every 2 s: nothing fires at once.
    t.last_trigger = Some(LastTrigger {
        wall: at(0.6).wall,
        mono: Some(at(0.6).mono),
    });
    t.change(every_2s(), at(601.0), &h, 0);
    assert_eq!(t.tick(at(601.0), false, &h, 0), Action::Nothing);
    let wake = t.wake().unwrap();
    assert!(
        wake > at(601.0).mono && wake <= at(602.001).mono,
        "{wake:?}"
    );
}

#[test]
fn one_shot_elapses_and_stops_without_remain_after_elapse() {
    let h = host();
    let settings = TimerSettings {
        on_active_sec: vec![Duration::from_secs(1)],
        accuracy: Duration::from_millis(1),
        remain_after_elapse: false,
        ..TimerSettings::default()
    };
    let mut t = TimerState::new(settings.clone(), 0, None);
    t.start(at(0.0), &h, 0);
    assert_eq!(t.tick(at(1.01), false, &h, 0), Action::StartService);
    t.tick(at(1.02), true, &h, 0);
    t.tick(at(1.5), false, &h, 0);
    assert_eq!(t.sub_state(), TimerSub::Dead);

    let mut t = TimerState::new(
        TimerSettings {
            remain_after_elapse: true,
            ..settings
        },
        0,
        None,
    );
    t.start(at(0.0), &h, 0);
    t.tick(at(1.01), false, &h, 0);
    t.tick(at(1.02), true, &h, 0);
    t.tick(at(1.5), false, &h, 0);
    assert_eq!(t.sub_state(), TimerSub::Elapsed);
    assert_eq!(t.wake(), None);
}

#[test]
fn on_unit_active_sec_counts_from_the_service_start() {
    let h = host();
    let settings = TimerSettings {
        on_active_sec: vec![Duration::ZERO],
        on_unit_active_sec: vec![Duration::from_secs(3)],
        accuracy: Duration::from_millis(1),
        ..TimerSettings::default()
    };
    let mut t = TimerState::new(settings, 0, None);
    t.start(at(0.0), &h, 0);
    assert_eq!(t.tick(at(0.0), false, &h, 0), Action::StartService);
    t.tick(at(0.1), true, &h, 0);
    t.tick(at(0.5), false, &h, 0);
    let wake = t.wake().unwrap();
    assert!(wake >= at(3.1).mono && wake <= at(3.102).mono, "{wake:?}");
}

#[test]
fn stopped_timer_never_wakes() {
    let h = host();
    let mut t = TimerState::new(every_2s(), 0, None);
    t.start(at(0.0), &h, 0);
    t.stop();
    assert_eq!(t.sub_state(), TimerSub::Dead);
    assert_eq!(t.tick(at(10.0), false, &h, 0), Action::Nothing);
}

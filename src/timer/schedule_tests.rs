//! The schedule with a simulated clock: every instant is chosen by the test.

use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use proptest::prelude::*;

use super::*;
use crate::timer::calendar::CalendarSpec;

fn ts(s: &str) -> Timestamp {
    match s.parse() {
        Ok(t) => t,
        Err(e) => panic!("{s}: {e}"),
    }
}

fn cal(expr: &str) -> CalendarSpec {
    match CalendarSpec::parse(expr) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Booted at mono 0; the daemon started at mono 5 s; now is mono 100 s at `wall`.
fn facts(wall: &str) -> Facts {
    Facts {
        now: Stamp {
            wall: ts(wall),
            mono: secs(100),
        },
        boot: Duration::ZERO,
        startup: secs(5),
        timer_activated: Some(Stamp {
            wall: ts(wall),
            mono: secs(100),
        }),
        unit_active_enter: None,
        unit_inactive_enter: None,
        last_trigger: None,
        local: TimeZone::UTC,
        seed: 42,
        entropy: 7,
        perturbation: Duration::ZERO,
    }
}

fn at(next: Next) -> (Option<Duration>, Option<Timestamp>, Duration) {
    match next {
        Next::At {
            monotonic,
            realtime,
            wake,
        } => (monotonic, realtime, wake),
        Next::Elapsed { stay_active } => panic!("elapsed (stay_active={stay_active})"),
    }
}

#[test]
fn defaults_are_systemds() {
    let s = TimerSettings::default();
    assert_eq!(s.accuracy, secs(60));
    assert_eq!(s.randomized_delay, Duration::ZERO);
    assert!(s.remain_after_elapse);
    assert!(!s.persistent && !s.fixed_random_delay);
}

#[test]
fn on_boot_sec_counts_from_boot_and_waits_within_accuracy() {
    let s = TimerSettings {
        on_boot_sec: vec![secs(300)],
        ..Default::default()
    };
    let mut f = facts("2024-05-10T13:00:00Z");
    f.perturbation = secs(17);
    let (mono, real, wake) = at(next_elapse(&s, &f));
    assert_eq!(mono, Some(secs(300)));
    assert_eq!(real, None);
    // Window [300 s, 360 s]: the host's spot in the minute, 17 s past it.
    assert_eq!(wake, secs(317));
}

#[test]
fn on_startup_and_on_active_count_from_the_daemon_and_the_timer() {
    let s = TimerSettings {
        on_startup_sec: vec![secs(1000)],
        on_active_sec: vec![secs(30)],
        accuracy: Duration::from_micros(1),
        ..Default::default()
    };
    let f = facts("2024-05-10T13:00:00Z");
    // Activated at 100 s: 130 s is earlier than 5 s + 1000 s.
    assert_eq!(at(next_elapse(&s, &f)).2, secs(130));
    let s = TimerSettings {
        on_active_sec: vec![],
        ..s
    };
    assert_eq!(at(next_elapse(&s, &f)).2, secs(1005));
}

#[test]
fn one_time_settings_do_not_fire_again_after_a_trigger() {
    let s = TimerSettings {
        on_boot_sec: vec![secs(10)],
        accuracy: Duration::from_micros(1),
        ..Default::default()
    };
    let mut f = facts("2024-05-10T13:00:00Z");
    // Never fired: an elapse in the past is due at once.
    assert_eq!(at(next_elapse(&s, &f)).2, secs(10));
    f.last_trigger = Some(LastTrigger {
        wall: ts("2024-05-10T12:58:30Z"),
        mono: Some(secs(10)),
    });
    assert_eq!(next_elapse(&s, &f), Next::Elapsed { stay_active: true });
    let s = TimerSettings {
        remain_after_elapse: false,
        ..s
    };
    assert_eq!(next_elapse(&s, &f), Next::Elapsed { stay_active: false });
}

#[test]
fn on_unit_active_sec_counts_from_the_later_of_activation_and_trigger() {
    let s = TimerSettings {
        on_unit_active_sec: vec![secs(3600)],
        accuracy: Duration::from_micros(1),
        ..Default::default()
    };
    let mut f = facts("2024-05-10T13:00:00Z");
    // The unit never ran and the timer never fired: nothing to count from, but the timer
    // stays around (the unit may still run).
    assert_eq!(next_elapse(&s, &f), Next::Elapsed { stay_active: true });
    f.unit_active_enter = Some(secs(50));
    assert_eq!(at(next_elapse(&s, &f)).0, Some(secs(3650)));
    f.last_trigger = Some(LastTrigger {
        wall: ts("2024-05-10T13:00:00Z"),
        mono: Some(secs(90)),
    });
    assert_eq!(at(next_elapse(&s, &f)).0, Some(secs(3690)));

    let s = TimerSettings {
        on_unit_active_sec: vec![],
        on_unit_inactive_sec: vec![secs(60)],
        ..s
    };
    f.last_trigger = None;
    f.unit_inactive_enter = Some(secs(95));
    assert_eq!(at(next_elapse(&s, &f)).0, Some(secs(155)));
}

#[test]
fn calendar_elapse_becomes_a_monotonic_deadline() {
    let s = TimerSettings {
        on_calendar: vec![cal("daily")],
        accuracy: Duration::from_millis(1),
        ..Default::default()
    };
    let f = facts("2024-05-10T13:00:00Z");
    let (mono, real, wake) = at(next_elapse(&s, &f));
    assert_eq!(mono, None);
    assert_eq!(real, Some(ts("2024-05-11T00:00:00Z")));
    // 11 h after now (mono 100 s), within the 1 ms accuracy.
    let due = secs(100 + 11 * 3600);
    assert!(
        wake >= due && wake <= due + Duration::from_millis(1),
        "{wake:?}"
    );
}

#[test]
fn earliest_setting_wins() {
    let s = TimerSettings {
        on_calendar: vec![cal("hourly"), cal("*:30")],
        on_boot_sec: vec![secs(7200)],
        accuracy: Duration::from_micros(1),
        ..Default::default()
    };
    let f = facts("2024-05-10T13:10:00Z");
    let (mono, real, wake) = at(next_elapse(&s, &f));
    assert_eq!(mono, Some(secs(7200)));
    assert_eq!(real, Some(ts("2024-05-10T13:30:00Z")));
    assert_eq!(wake, secs(100 + 20 * 60));
}

#[test]
fn coalescing_follows_sd_event() {
    const S: u64 = 1_000_000;
    let p = secs(17);
    // Within a minute window: the perturbed spot of the minute.
    assert_eq!(coalesce(30 * S, 90 * S, p), 77 * S);
    // Too narrow for that and for the 10 s spot: the perturbed spot of a second.
    assert_eq!(coalesce(30 * S, 35 * S, p), 34 * S);
    // A window of one microsecond: the elapse itself.
    assert_eq!(coalesce(30 * S, 30 * S + 1, p), 30 * S);
    assert_eq!(coalesce(0, 10 * S, p), 0);
    // Timers with the default accuracy wake at the same point of a minute.
    let a = coalesce(120 * S + 5, 180 * S + 5, p);
    let b = coalesce(150 * S, 210 * S, p);
    assert_eq!(a % (60 * S), 17 * S);
    assert_eq!(b % (60 * S), 17 * S);
}

proptest! {
    #[test]
    fn coalesce_stays_in_the_window(a in 1u64..u64::MAX / 2, w in 0u64..10_000_000_000, p in 0u64..60_000_000) {
        let b = a + w;
        let c = coalesce(a, b, Duration::from_micros(p));
        prop_assert!(a <= c && c <= b);
    }

    #[test]
    fn random_delay_is_within_bounds(entropy: u64, seed: u64, delay_us in 1u64..100_000_000_000) {
        let s = TimerSettings { randomized_delay: Duration::from_micros(delay_us), ..Default::default() };
        prop_assert!(random_delay(&s, seed, entropy) < Duration::from_micros(delay_us));
        let fixed = TimerSettings { fixed_random_delay: true, ..s };
        let d = random_delay(&fixed, seed, entropy);
        prop_assert!(d < Duration::from_micros(delay_us));
        prop_assert_eq!(d, random_delay(&fixed, seed, entropy.wrapping_add(1)));
    }
}

#[test]
fn randomized_delay_is_added_and_fixed_delay_is_stable() {
    let s = TimerSettings {
        on_calendar: vec![cal("daily")],
        randomized_delay: secs(3600),
        accuracy: Duration::from_micros(1),
        ..Default::default()
    };
    let mut f = facts("2024-05-10T13:00:00Z");
    let midnight = ts("2024-05-11T00:00:00Z");
    let mut seen = std::collections::BTreeSet::new();
    for e in 0..200u64 {
        f.entropy = e.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let (_, real, _) = at(next_elapse(&s, &f));
        let real = real.unwrap_or(Timestamp::MAX);
        assert!(real >= midnight && real < midnight + jiff::SignedDuration::from_hours(1));
        seen.insert(real);
    }
    assert!(seen.len() > 150, "not random: {} distinct", seen.len());

    let fixed = TimerSettings {
        fixed_random_delay: true,
        ..s
    };
    let first = at(next_elapse(&fixed, &f)).1;
    for e in 0..50 {
        f.entropy = e;
        assert_eq!(at(next_elapse(&fixed, &f)).1, first);
    }
    // Another timer (seed) gets another spot.
    f.seed = fixed_delay_seed(b"machine", 0, "backup.timer");
    let other = at(next_elapse(&fixed, &f)).1;
    f.seed = fixed_delay_seed(b"machine", 0, "logrotate.timer");
    assert_ne!(other, at(next_elapse(&fixed, &f)).1);
}

#[test]
fn persistent_runs_a_missed_elapse_once_at_start() {
    let s = TimerSettings {
        on_calendar: vec![cal("daily")],
        persistent: true,
        accuracy: Duration::from_micros(1),
        ..Default::default()
    };
    // Last ran yesterday at midnight; the daemon was down across today's midnight and
    // started 95 s ago (mono 5 s, now mono 100 s).
    let mut f = facts("2024-05-10T13:00:00Z");
    f.last_trigger = Some(LastTrigger {
        wall: ts("2024-05-09T00:00:00Z"),
        mono: None,
    });
    assert!(missed_while_down(&s, &f));
    let (_, real, wake) = at(next_elapse(&s, &f));
    assert_eq!(real, Some(ts("2024-05-10T12:58:25Z")));
    assert!(wake <= f.now.mono, "due at once: {wake:?}");

    // After it ran, the next one is tomorrow.
    f.last_trigger = Some(LastTrigger {
        wall: f.now.wall,
        mono: Some(f.now.mono),
    });
    assert!(!missed_while_down(&s, &f));
    assert_eq!(at(next_elapse(&s, &f)).1, Some(ts("2024-05-11T00:00:00Z")));

    // Without Persistent=, the old trigger is ignored: nothing runs at start.
    let plain = TimerSettings {
        persistent: false,
        ..s.clone()
    };
    f.last_trigger = Some(LastTrigger {
        wall: ts("2024-05-09T00:00:00Z"),
        mono: None,
    });
    assert!(!missed_while_down(&plain, &f));
    assert_eq!(
        at(next_elapse(&plain, &f)).1,
        Some(ts("2024-05-11T00:00:00Z"))
    );

    // Nothing was missed: last ran this midnight.
    f.last_trigger = Some(LastTrigger {
        wall: ts("2024-05-10T00:00:00Z"),
        mono: None,
    });
    assert!(!missed_while_down(&s, &f));
    assert_eq!(at(next_elapse(&s, &f)).1, Some(ts("2024-05-11T00:00:00Z")));

    // A last trigger in the future (a wrong clock) is ignored.
    f.last_trigger = Some(LastTrigger {
        wall: ts("2030-01-01T00:00:00Z"),
        mono: None,
    });
    assert!(!missed_while_down(&s, &f));
    assert_eq!(at(next_elapse(&s, &f)).1, Some(ts("2024-05-11T00:00:00Z")));
}

#[test]
fn a_simulated_clock_fires_every_two_seconds() {
    // OnCalendar=*:*:0/2, AccuracySec=1ms: the event loop sleeps until `wake`, fires,
    // records the trigger and asks again.
    let s = TimerSettings {
        on_calendar: vec![cal("*:*:0/2")],
        accuracy: Duration::from_millis(1),
        ..Default::default()
    };
    let mut f = facts("2024-05-10T13:00:00.300Z");
    f.perturbation = Duration::from_micros(12_345_678);
    let mut fired = Vec::new();
    for _ in 0..30 {
        let (_, _, wake) = at(next_elapse(&s, &f));
        assert!(wake > f.now.mono);
        // Advance the simulated clocks together.
        let step = wake - f.now.mono;
        f.now = Stamp {
            wall: f.now.wall + jiff::SignedDuration::try_from(step).unwrap_or_default(),
            mono: wake,
        };
        f.last_trigger = Some(LastTrigger {
            wall: f.now.wall,
            mono: Some(f.now.mono),
        });
        fired.push(f.now.wall);
    }
    assert_eq!(fired.len(), 30);
    for w in fired.windows(2) {
        let gap = w[1].duration_since(w[0]).as_millis();
        assert!((1999..=2001).contains(&gap), "{} then {}", w[0], w[1]);
    }
    let first = fired.first().copied().unwrap_or(Timestamp::MAX);
    assert!(first >= ts("2024-05-10T13:00:02Z") && first <= ts("2024-05-10T13:00:02.001Z"));
}

#[test]
fn huge_durations_saturate() {
    let s = TimerSettings {
        on_boot_sec: vec![Duration::MAX],
        on_calendar: vec![cal("yearly")],
        randomized_delay: Duration::MAX,
        accuracy: Duration::MAX,
        ..Default::default()
    };
    let mut f = facts("2199-06-01T00:00:00Z");
    f.now.mono = Duration::MAX;
    f.startup = Duration::MAX;
    // Must not panic; the calendar has no elapse after 2199, the boot one saturates.
    let next = next_elapse(&s, &f);
    assert!(matches!(next, Next::At { .. }), "{next:?}");
    let s = TimerSettings {
        on_unit_active_sec: vec![Duration::MAX],
        ..s
    };
    f.unit_active_enter = Some(Duration::MAX);
    let _ = next_elapse(&s, &f);
}

//! When a timer fires next (systemd.timer(5)), pure: the timer's settings and the facts
//! about clocks and units in, the next elapse out. Follows systemd's `timer.c`
//! (`timer_enter_waiting`) and sd-event's wake-up coalescing (`sleep_between`).
//!
//! Two clocks, as in systemd:
//! - the *monotonic* clock, for `OnActiveSec=`, `OnBootSec=`, `OnStartupSec=`,
//!   `OnUnitActiveSec=`, `OnUnitInactiveSec=`. Its instants are [`Duration`]s since an
//!   origin the caller picks (CLOCK_MONOTONIC/CLOCK_BOOTTIME: the machine's boot);
//! - the *realtime* (wall) clock, for `OnCalendar=`, as [`Timestamp`]s.
//!
//! Each clock's earliest elapse gets the random delay, then is placed within the accuracy
//! window; [`Next::At::wake`] is the earlier of the two on the monotonic clock: the one
//! deadline the event loop needs. Every addition saturates.

use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use super::calendar::CalendarSpec;

/// systemd's default `AccuracySec=`.
pub const DEFAULT_ACCURACY: Duration = Duration::from_secs(60);

const USEC_PER_MSEC: u64 = 1_000;
const USEC_PER_SEC: u64 = 1_000_000;
const USEC_PER_MINUTE: u64 = 60 * USEC_PER_SEC;

/// A timer's settings, mirroring the `[Timer]` section of systemd.timer(5). Every list
/// holds all values of a (repeatable) key; an empty assignment in the unit file resets it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimerSettings {
    pub on_calendar: Vec<CalendarSpec>,
    pub on_active_sec: Vec<Duration>,
    pub on_boot_sec: Vec<Duration>,
    pub on_startup_sec: Vec<Duration>,
    pub on_unit_active_sec: Vec<Duration>,
    pub on_unit_inactive_sec: Vec<Duration>,
    /// `AccuracySec=`, default 1 min.
    pub accuracy: Duration,
    /// `RandomizedDelaySec=`, default 0.
    pub randomized_delay: Duration,
    /// `FixedRandomDelay=`, default no.
    pub fixed_random_delay: bool,
    /// `Persistent=`, default no.
    pub persistent: bool,
    /// `RemainAfterElapse=`, default yes.
    pub remain_after_elapse: bool,
}

impl Default for TimerSettings {
    fn default() -> Self {
        TimerSettings {
            on_calendar: Vec::new(),
            on_active_sec: Vec::new(),
            on_boot_sec: Vec::new(),
            on_startup_sec: Vec::new(),
            on_unit_active_sec: Vec::new(),
            on_unit_inactive_sec: Vec::new(),
            accuracy: DEFAULT_ACCURACY,
            randomized_delay: Duration::ZERO,
            fixed_random_delay: false,
            persistent: false,
            remain_after_elapse: true,
        }
    }
}

/// One instant on both clocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub wall: Timestamp,
    pub mono: Duration,
}

/// When the timer last fired. `mono` is known only for a trigger in this boot (it is
/// `None` for one read back from the state file after a reboot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastTrigger {
    pub wall: Timestamp,
    pub mono: Option<Duration>,
}

/// What the schedule depends on besides the settings; the caller reads the clocks.
#[derive(Clone, Debug)]
pub struct Facts {
    /// Now, on both clocks.
    pub now: Stamp,
    /// The machine's boot on the monotonic clock (zero for CLOCK_MONOTONIC).
    pub boot: Duration,
    /// The daemon's start on the monotonic clock (`OnStartupSec=`, and the earliest time a
    /// missed calendar elapse runs).
    pub startup: Duration,
    /// When the timer unit was started, if it is active (`OnActiveSec=`; the calendar base
    /// before the first trigger).
    pub timer_activated: Option<Stamp>,
    /// When the triggered unit last became active (left inactive), monotonic.
    pub unit_active_enter: Option<Duration>,
    /// When the triggered unit last became inactive, monotonic.
    pub unit_inactive_enter: Option<Duration>,
    /// The timer's last trigger, in this daemon run or from the state file.
    pub last_trigger: Option<LastTrigger>,
    /// The zone of calendar expressions without a zone suffix.
    pub local: TimeZone,
    /// Stable per timer (see [`fixed_delay_seed`]): the delay with `FixedRandomDelay=yes`.
    pub seed: u64,
    /// Fresh randomness for this computation: the delay with `FixedRandomDelay=no`.
    pub entropy: u64,
    /// Per host and boot (see [`perturbation`]): where in each minute timers coalesce.
    pub perturbation: Duration,
}

/// The outcome of [`next_elapse`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Waiting. `monotonic` and `realtime` are each clock's earliest elapse with the random
    /// delay (what `list-timers` shows); `wake` is when to fire, on the monotonic clock,
    /// after coalescing within `AccuracySec=`. `wake <= now.mono` means at once.
    At {
        monotonic: Option<Duration>,
        realtime: Option<Timestamp>,
        wake: Duration,
    },
    /// Nothing will elapse again. The timer stays active ("elapsed") when `stay_active`
    /// (`RemainAfterElapse=yes`, or an `OnUnit*Sec=` that may rearm it), else it stops.
    Elapsed { stay_active: bool },
}

fn usec(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn from_usec(us: u64) -> Duration {
    Duration::from_micros(us)
}

fn ts_add(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

fn ts_sub(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_sub(d).ok())
        .unwrap_or(Timestamp::MIN)
}

/// The wall-clock instant of a monotonic instant, through `now`.
fn wall_of(now: Stamp, mono: Duration) -> Timestamp {
    if mono >= now.mono {
        ts_add(now.wall, mono - now.mono)
    } else {
        ts_sub(now.wall, now.mono - mono)
    }
}

/// The monotonic instant of a wall-clock instant, through `now` (saturating at zero).
fn mono_of(now: Stamp, wall: Timestamp) -> Duration {
    let delta = wall.duration_since(now.wall);
    let magnitude = delta.unsigned_abs();
    if delta.is_negative() {
        now.mono.saturating_sub(magnitude)
    } else {
        now.mono.saturating_add(magnitude)
    }
}

/// Microseconds since the epoch, clamped to `0..`.
fn wall_usec(t: Timestamp) -> u64 {
    u64::try_from(t.as_microsecond()).unwrap_or(0)
}

fn wall_from_usec(us: u64) -> Timestamp {
    i64::try_from(us)
        .ok()
        .and_then(|us| Timestamp::from_microsecond(us).ok())
        .unwrap_or(Timestamp::MAX)
}

/// A stable 64-bit mix (SplitMix64's finalizer).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// FNV-1a, stable across Rust releases (unlike `DefaultHasher`).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        // Separate the parts, so ("ab", "c") and ("a", "bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The seed of `FixedRandomDelay=` for a timer: like systemd's hash of the machine id, the
/// user and the unit name, stable across reboots and daemon restarts.
pub fn fixed_delay_seed(machine_id: &[u8], uid: u32, unit: &str) -> u64 {
    fnv1a(&[machine_id, &uid.to_le_bytes(), unit.as_bytes()])
}

/// Where in each minute this host's timers wake (sd-event's perturbation: a hash of the
/// boot id, modulo one minute).
pub fn perturbation(boot_id: &[u8]) -> Duration {
    from_usec(mix(fnv1a(&[boot_id])) % USEC_PER_MINUTE)
}

/// `RandomizedDelaySec=`: uniform in `[0, delay)`; the same for a timer on every
/// computation with `FixedRandomDelay=yes`.
pub fn random_delay(settings: &TimerSettings, seed: u64, entropy: u64) -> Duration {
    let range = usec(settings.randomized_delay);
    if range == 0 {
        return Duration::ZERO;
    }
    let r = if settings.fixed_random_delay {
        mix(seed)
    } else {
        entropy
    };
    from_usec(r % range)
}

/// sd-event's choice of a wake-up in `[a, b]` (microseconds on one clock): the latest
/// point that is the host's perturbed spot in a minute, else in 10 s, 1 s, 250 ms steps,
/// else `b`. Timers on a host thus wake together, as late as their accuracy allows.
pub fn coalesce(a: u64, b: u64, perturbation: Duration) -> u64 {
    if a == 0 {
        return 0;
    }
    if b <= a.saturating_add(1) {
        return a;
    }
    let perturb = usec(perturbation) % USEC_PER_MINUTE;
    for step in [
        USEC_PER_MINUTE,
        10 * USEC_PER_SEC,
        USEC_PER_SEC,
        250 * USEC_PER_MSEC,
    ] {
        let Some(mut c) = (b / step * step).checked_add(perturb % step) else {
            return b;
        };
        if c >= b {
            if c < step {
                return b;
            }
            c -= step;
        }
        if c >= a {
            return c;
        }
    }
    b
}

/// The wall-clock time the daemon started (systemd maps its monotonic start to realtime).
fn startup_wall(facts: &Facts) -> Timestamp {
    wall_of(facts.now, facts.startup)
}

/// The last trigger the calendar counts from: one of this daemon run, or with
/// `Persistent=yes` one from the state file; never one in the future (a wrong clock).
fn effective_last_trigger(settings: &TimerSettings, facts: &Facts) -> Option<LastTrigger> {
    let lt = facts.last_trigger?;
    if lt.wall > facts.now.wall {
        return None;
    }
    if settings.persistent || lt.wall >= startup_wall(facts) {
        Some(lt)
    } else {
        None
    }
}

/// The next calendar elapse without the random delay: counted from the last trigger, else
/// from the timer's activation, else from now; one that is already past (a run missed
/// while the daemon was down, with `Persistent=yes`) is moved to the daemon's start, so it
/// runs at once.
pub fn next_calendar_elapse(settings: &TimerSettings, facts: &Facts) -> Option<Timestamp> {
    let base = effective_last_trigger(settings, facts)
        .map(|lt| lt.wall)
        .or(facts.timer_activated.map(|s| s.wall))
        .unwrap_or(facts.now.wall);
    let started = startup_wall(facts);
    settings
        .on_calendar
        .iter()
        .filter_map(|spec| spec.next_elapse_in(base, &facts.local))
        .map(|t| t.max(started))
        .min()
}

/// `Persistent=yes`: was a calendar elapse missed while the daemon was down? True when the
/// first calendar elapse after the recorded last trigger is not after now (it then runs
/// once, at once).
pub fn missed_while_down(settings: &TimerSettings, facts: &Facts) -> bool {
    if !settings.persistent {
        return false;
    }
    let Some(lt) = facts.last_trigger.filter(|lt| lt.wall <= facts.now.wall) else {
        return false;
    };
    settings
        .on_calendar
        .iter()
        .filter_map(|spec| spec.next_elapse_in(lt.wall, &facts.local))
        .any(|t| t <= facts.now.wall)
}

/// The next monotonic elapse without the random delay, and whether an `OnUnit*Sec=` is
/// set (which keeps an otherwise elapsed timer around, as systemd does).
fn next_monotonic_elapse(settings: &TimerSettings, facts: &Facts) -> (Option<Duration>, bool) {
    let last_trigger = facts.last_trigger;
    let last_mono = last_trigger.and_then(|lt| lt.mono);
    let mut best: Option<Duration> = None;
    let mut consider = |t: Duration| best = Some(best.map_or(t, |b| b.min(t)));

    // One-time settings: once the timer has fired, an elapse in the past stays disabled.
    let one_time_done = |t: Duration| {
        last_trigger.is_some() && (t < facts.now.mono || last_mono.is_some_and(|m| m >= t))
    };
    let active_base = facts.timer_activated.map_or(facts.now.mono, |s| s.mono);
    for (values, base) in [
        (&settings.on_active_sec, active_base),
        (&settings.on_boot_sec, facts.boot),
        (&settings.on_startup_sec, facts.startup),
    ] {
        for v in values {
            let t = base.saturating_add(*v);
            if !one_time_done(t) {
                consider(t);
            }
        }
    }

    let leave_around =
        !settings.on_unit_active_sec.is_empty() || !settings.on_unit_inactive_sec.is_empty();
    for (values, unit_time) in [
        (&settings.on_unit_active_sec, facts.unit_active_enter),
        (&settings.on_unit_inactive_sec, facts.unit_inactive_enter),
    ] {
        let base = match (unit_time, last_mono) {
            (Some(a), Some(b)) => a.max(b),
            (a, b) => match a.or(b) {
                Some(t) => t,
                None => continue,
            },
        };
        if base.is_zero() {
            continue;
        }
        for v in values {
            consider(base.saturating_add(*v));
        }
    }
    (best, leave_around)
}

/// When the timer fires next: the earliest elapse across all its settings, each clock's
/// with `RandomizedDelaySec=` added, coalesced within `AccuracySec=`.
pub fn next_elapse(settings: &TimerSettings, facts: &Facts) -> Next {
    let (mono, leave_around) = next_monotonic_elapse(settings, facts);
    let real = next_calendar_elapse(settings, facts);
    if mono.is_none() && real.is_none() {
        return Next::Elapsed {
            stay_active: settings.remain_after_elapse || leave_around,
        };
    }
    let delay = random_delay(settings, facts.seed, facts.entropy);
    let accuracy = usec(settings.accuracy).max(1);

    let monotonic = mono.map(|t| t.saturating_add(delay));
    let realtime = real.map(|t| ts_add(t, delay));

    let wake_mono = monotonic.map(|t| {
        let a = usec(t);
        from_usec(coalesce(a, a.saturating_add(accuracy), facts.perturbation))
    });
    let wake_real = realtime.map(|t| {
        let a = wall_usec(t);
        let chosen = coalesce(a, a.saturating_add(accuracy), facts.perturbation);
        mono_of(facts.now, wall_from_usec(chosen))
    });
    let wake = match (wake_mono, wake_real) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b).unwrap_or(facts.now.mono),
    };
    Next::At {
        monotonic,
        realtime,
        wake,
    }
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;

//! When to check the remote next (pure: the caller passes the clock in).
//!
//! A fresh change is often followed by another (a fix-up commit), so the schedule polls
//! quickly after any change and backs off gradually while the branch is quiet: the interval
//! stays at `min_interval` for `unchanged_before_growth` consecutive unchanged checks, then
//! grows by `step` per further unchanged check up to `max_interval`. Any change resets it.
//! A failed check (unreachable remote, deleted branch, ...) uses its own backoff so a dead
//! remote is not hammered, capped at `max_interval` so recovery is noticed soon.
//!
//! While inotify watches a local repository ([`PollSchedule::set_watched`]), changes arrive
//! through the watch and the poll is only a safety net: successful checks are spaced by
//! `max_interval` from the start.
//!
//! A ±`jitter` fraction, drawn from a seeded generator, keeps a fleet of machines that
//! started together from polling in lockstep. Tests pass a fixed seed (or `jitter = 0.0`).

use std::time::{Duration, Instant};

/// The knobs of a [`PollSchedule`]. Defaults: 10 s, 30 s, 3 checks, +5 s, ±10 %.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PollConfig {
    /// The interval after a change and for the first checks (default 10 s).
    pub min_interval: Duration,
    /// The interval never grows beyond this (default 30 s); also caps the failure backoff.
    pub max_interval: Duration,
    /// How many consecutive unchanged checks keep the interval at `min_interval` (default 3).
    pub unchanged_before_growth: u32,
    /// Growth per further unchanged check (default 5 s).
    pub step: Duration,
    /// Jitter as a fraction of the interval, applied as ±`jitter` (default 0.10; 0 disables).
    pub jitter: f64,
}

impl Default for PollConfig {
    fn default() -> Self {
        PollConfig {
            min_interval: Duration::from_secs(10),
            max_interval: Duration::from_secs(30),
            unchanged_before_growth: 3,
            step: Duration::from_secs(5),
            jitter: 0.10,
        }
    }
}

/// The jitter fraction must be below this: a poll moves by less than ±50 % of its interval.
/// (The bound `[poll] jitter` has always had in the configuration file.)
pub const MAX_JITTER: f64 = 0.5;

/// The one validation of the poll knobs, in the units the configuration file writes them
/// (`[poll]` in `gitproc.toml`: seconds as numbers, jitter as a fraction). Every number
/// must be finite and not negative, `0 < min_interval_s <= max_interval_s`, and
/// `0 <= jitter < MAX_JITTER`. The message names the offending key.
pub fn validate_secs(
    min_interval_s: f64,
    max_interval_s: f64,
    step_s: f64,
    jitter: f64,
) -> Result<(), String> {
    for (key, value) in [
        ("min_interval_s", min_interval_s),
        ("max_interval_s", max_interval_s),
        ("step_s", step_s),
        ("jitter", jitter),
    ] {
        if !value.is_finite() || value < 0.0 {
            return Err(format!("{key} ({value}) must be a finite number >= 0"));
        }
    }
    if !(min_interval_s > 0.0 && min_interval_s <= max_interval_s) {
        return Err(format!(
            "min_interval_s ({min_interval_s}) must be > 0 and <= max_interval_s ({max_interval_s})"
        ));
    }
    if jitter >= MAX_JITTER {
        return Err(format!("jitter ({jitter}) must be in 0 .. {MAX_JITTER}"));
    }
    Ok(())
}

/// The adaptive poll schedule. Feed it each check's result; it answers when to check next.
#[derive(Debug, Clone)]
pub struct PollSchedule {
    config: PollConfig,
    unchanged: u32,
    failures: u32,
    next: Option<Instant>,
    rng: SplitMix64,
    watched: bool,
}

impl PollSchedule {
    /// A schedule whose jitter is drawn from a generator seeded with `seed` (deterministic).
    pub fn new(config: PollConfig, seed: u64) -> PollSchedule {
        PollSchedule {
            config,
            unchanged: 0,
            failures: 0,
            next: None,
            rng: SplitMix64(seed),
            watched: false,
        }
    }

    /// Marks the source as watched by inotify (or not): while it is, a successful check is
    /// followed by one after `max_interval`, since the watch brings changes at once and the
    /// poll only covers what a watch can miss (an overflow, a replaced repository).
    pub fn set_watched(&mut self, watched: bool) {
        self.watched = watched;
    }

    /// The current base interval, without jitter (what `gitproc status` shows): the failure
    /// backoff while checks fail, else the adaptive interval.
    pub fn interval(&self) -> Duration {
        if self.failures > 0 {
            return self.failure_interval();
        }
        let c = &self.config;
        if self.watched {
            return c.max_interval;
        }
        let growth_steps = self.unchanged.saturating_sub(c.unchanged_before_growth);
        let grown = c
            .min_interval
            .saturating_add(c.step.saturating_mul(growth_steps));
        grown.min(c.max_interval)
    }

    /// When the next check is due, or `None` before the first check (check immediately).
    pub fn next_check(&self) -> Option<Instant> {
        self.next
    }

    /// Records a successful check made at `now`; returns the time of the next check.
    pub fn on_check(&mut self, changed: bool, now: Instant) -> Instant {
        self.failures = 0;
        if changed {
            self.unchanged = 0;
        } else {
            self.unchanged = self.unchanged.saturating_add(1);
        }
        self.schedule(now)
    }

    /// Records a failed check made at `now`; returns the time of the next check. The retry
    /// interval doubles from `min_interval` per consecutive failure, capped at `max_interval`.
    pub fn on_error(&mut self, now: Instant) -> Instant {
        self.failures = self.failures.saturating_add(1);
        self.schedule(now)
    }

    fn failure_interval(&self) -> Duration {
        let c = &self.config;
        let doublings = self.failures.saturating_sub(1).min(16);
        c.min_interval
            .saturating_mul(1u32 << doublings)
            .min(c.max_interval)
    }

    fn schedule(&mut self, now: Instant) -> Instant {
        let base = self.interval();
        let jittered = self.jittered(base);
        let next = crate::sys::time::later(now, jittered);
        self.next = Some(next);
        next
    }

    fn jittered(&mut self, base: Duration) -> Duration {
        if self.config.jitter <= 0.0 {
            return base;
        }
        // A uniform factor in [-1, 1) from the top 53 bits of the generator.
        let unit = (self.rng.next() >> 11) as f64 / (1u64 << 53) as f64;
        let factor = 1.0 + self.config.jitter * (unit * 2.0 - 1.0);
        base.mul_f64(factor.max(0.0))
    }
}

/// SplitMix64: tiny, good enough to spread poll times, and needs no crate.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_jitter() -> PollConfig {
        PollConfig {
            jitter: 0.0,
            ..PollConfig::default()
        }
    }

    /// Simulates checks on a fake clock and returns the gaps between them in seconds.
    fn gaps(schedule: &mut PollSchedule, changes: &[bool]) -> Vec<u64> {
        let mut now = Instant::now();
        changes
            .iter()
            .map(|&changed| {
                let next = schedule.on_check(changed, now);
                let gap = next - now;
                now = next;
                gap.as_secs()
            })
            .collect()
    }

    #[test]
    fn grows_after_three_unchanged_checks_up_to_the_cap() {
        let mut s = PollSchedule::new(no_jitter(), 1);
        assert_eq!(s.next_check(), None);
        assert_eq!(s.interval(), Duration::from_secs(10));
        assert_eq!(
            gaps(&mut s, &[false; 9]),
            vec![10, 10, 10, 15, 20, 25, 30, 30, 30]
        );
        assert_eq!(s.interval(), Duration::from_secs(30));
    }

    #[test]
    fn any_change_resets_to_the_minimum() {
        let mut s = PollSchedule::new(no_jitter(), 1);
        gaps(&mut s, &[false; 6]);
        assert_eq!(s.interval(), Duration::from_secs(25));
        assert_eq!(
            gaps(&mut s, &[true, false, false, false, false, true]),
            vec![10, 10, 10, 10, 15, 10]
        );
    }

    #[test]
    fn all_four_numbers_are_configurable() {
        let cfg = PollConfig {
            min_interval: Duration::from_secs(2),
            max_interval: Duration::from_secs(9),
            unchanged_before_growth: 1,
            step: Duration::from_secs(3),
            jitter: 0.0,
        };
        let mut s = PollSchedule::new(cfg, 1);
        assert_eq!(gaps(&mut s, &[false; 5]), vec![2, 5, 8, 9, 9]);
    }

    #[test]
    fn failures_back_off_exponentially_capped_and_recover() {
        let mut s = PollSchedule::new(no_jitter(), 1);
        let now = Instant::now();
        let secs = |s: &mut PollSchedule| (s.on_error(now) - now).as_secs();
        assert_eq!(
            [secs(&mut s), secs(&mut s), secs(&mut s), secs(&mut s)],
            [10, 20, 30, 30]
        );
        assert_eq!(s.failures, 4);
        assert_eq!((s.on_check(true, now) - now).as_secs(), 10);
        assert_eq!(s.failures, 0);
    }

    #[test]
    fn jitter_stays_within_ten_percent_and_varies() {
        let mut s = PollSchedule::new(PollConfig::default(), 42);
        let now = Instant::now();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let gap = s.on_check(true, now) - now;
            assert!(
                gap >= Duration::from_secs(9) && gap <= Duration::from_secs(11),
                "{gap:?} is outside 10 s ± 10 %"
            );
            seen.insert(gap.as_millis());
        }
        assert!(seen.len() > 50, "jitter barely varies: {seen:?}");
        // Deterministic for a given seed.
        let mut a = PollSchedule::new(PollConfig::default(), 7);
        let mut b = PollSchedule::new(PollConfig::default(), 7);
        assert_eq!(a.on_check(false, now), b.on_check(false, now));
    }

    #[test]
    fn validation_names_the_bad_key() {
        let d = PollConfig::default();
        let (min, max, step) = (
            d.min_interval.as_secs_f64(),
            d.max_interval.as_secs_f64(),
            d.step.as_secs_f64(),
        );
        assert_eq!(validate_secs(min, max, step, d.jitter), Ok(()));
        assert_eq!(validate_secs(min, max, step, 0.0), Ok(()));
        let err = |r: Result<(), String>| r.expect_err("rejected");
        assert!(err(validate_secs(40.0, 30.0, step, 0.1)).contains("min_interval_s"));
        assert!(err(validate_secs(0.0, max, step, 0.1)).contains("min_interval_s"));
        assert!(err(validate_secs(min, max, step, 0.5)).contains("jitter"));
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0] {
            assert!(err(validate_secs(bad, max, step, 0.1)).contains("min_interval_s"));
            assert!(err(validate_secs(min, bad, step, 0.1)).contains("max_interval_s"));
            assert!(err(validate_secs(min, max, bad, 0.1)).contains("step_s"));
            assert!(err(validate_secs(min, max, step, bad)).contains("jitter"));
        }
    }

    #[test]
    fn a_watched_source_polls_at_the_slow_end_but_backs_off_failures_as_before() {
        let mut s = PollSchedule::new(no_jitter(), 1);
        s.set_watched(true);
        assert_eq!(gaps(&mut s, &[false, true, false]), vec![30, 30, 30]);
        let now = Instant::now();
        assert_eq!(s.on_error(now) - now, Duration::from_secs(10));
        s.set_watched(false);
        assert_eq!(gaps(&mut s, &[true]), vec![10]);
    }
}

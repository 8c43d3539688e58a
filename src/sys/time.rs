//! Saturating clock arithmetic: the one place where a duration is added to an [`Instant`].
//!
//! Durations come from unit files, `sd_notify` datagrams and the config, so they can be as
//! large as a [`Duration`] holds; `Instant + Duration` panics on overflow, and a panic on the
//! event-loop thread takes down the supervisor of every service. A deadline that the clock
//! cannot represent is one that never comes, so it is `None` ("never"), as systemd's
//! `usec_add` saturates at `USEC_INFINITY` (a disarmed timer).

use std::time::{Duration, Instant};

/// The instant `d` after `now`, or `None` (never) when that is beyond what an [`Instant`]
/// can represent. `Duration::MAX` is how the unit model spells "infinity".
pub fn deadline(now: Instant, d: Duration) -> Option<Instant> {
    now.checked_add(d)
}

/// How far away [`later`] puts an instant the clock cannot represent: farther than any
/// daemon runs (about 136 years), near enough that the monotonic clock holds it.
pub const FAR_FUTURE: Duration = Duration::from_secs(1 << 32);

/// The instant `d` after `now` for callers that need an instant (a poll or save schedule):
/// saturates at [`FAR_FUTURE`] from `now` instead of overflowing.
pub fn later(now: Instant, d: Duration) -> Instant {
    deadline(now, d)
        .or_else(|| deadline(now, FAR_FUTURE))
        .unwrap_or(now)
}

/// A duration from a number of seconds that saturates instead of panicking: NaN and
/// negative values are zero, anything too large (including +inf) is `Duration::MAX`.
/// (`Duration::from_secs_f64` panics on all of those.) Callers that must reject such input
/// check it first; this is for computed values such as a backoff curve.
pub fn secs_f64(secs: f64) -> Duration {
    if secs.is_nan() || secs <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_beyond_the_clock_is_never() {
        let now = Instant::now();
        assert_eq!(deadline(now, Duration::MAX), None);
        assert_eq!(
            deadline(now, Duration::from_secs(u64::MAX / 2)),
            None,
            "more than an i64 of seconds"
        );
        assert_eq!(
            deadline(now, Duration::from_secs(5)),
            Some(now + Duration::from_secs(5))
        );
    }

    #[test]
    fn later_saturates_at_the_far_future() {
        let now = Instant::now();
        assert_eq!(later(now, Duration::MAX), now + FAR_FUTURE);
        assert_eq!(
            later(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
    }

    #[test]
    fn float_seconds_saturate() {
        assert_eq!(secs_f64(f64::NAN), Duration::ZERO);
        assert_eq!(secs_f64(-3.0), Duration::ZERO);
        assert_eq!(secs_f64(f64::INFINITY), Duration::MAX);
        assert_eq!(secs_f64(1e300), Duration::MAX);
        assert_eq!(secs_f64(1.5), Duration::from_millis(1500));
    }
}

//! Service logs: one collector thread for every service's stdout/stderr pipes, writing
//! `<dir>/<unit>.log` with size-based rotation, and [`tail`] for `status`/`logs`.
//!
//! Each line is written as `<RFC 3339 UTC timestamp with milliseconds> <line>\n`, e.g.
//! `2026-11-23T10:00:00.123Z hello`. Readers only read files, so reading never blocks
//! writing.

pub mod collector;
pub mod daemon_log;
pub mod rotate;

pub use collector::{LogCollector, LogConfig, Stream};
pub use rotate::tail;

use std::time::{SystemTime, UNIX_EPOCH};

/// Formats `t` as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC). Hand-written (a civil-from-days
/// conversion) because it runs once per chunk read on the collector's hot path and needs
/// nothing a date crate would add; tested against known instants.
pub(crate) fn format_timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let millis = d.subsec_millis();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
/// Works on 400-year eras (146,097 days) counted from 0000-03-01 so that the leap day is
/// the last day of each computed year.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1st
    let mp = (5 * doy + 2) / 153; // month index from March
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_known_instants() {
        let at = |s: u64, ms: u64| UNIX_EPOCH + Duration::from_secs(s) + Duration::from_millis(ms);
        assert_eq!(format_timestamp(at(0, 0)), "1970-01-01T00:00:00.000Z");
        // 2000-02-29 (a leap day in a year divisible by 400).
        assert_eq!(
            format_timestamp(at(951_782_400, 5)),
            "2000-02-29T00:00:00.005Z"
        );
        // 2026-11-23T10:00:00.123Z
        assert_eq!(
            format_timestamp(at(1_795_428_000, 123)),
            "2026-11-23T10:00:00.123Z"
        );
        // 2100-03-01 (2100 is not a leap year).
        assert_eq!(
            format_timestamp(at(4_107_542_400, 999)),
            "2100-03-01T00:00:00.999Z"
        );
    }
}

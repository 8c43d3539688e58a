//! Value types of unit settings: booleans, time spans (systemd.time(7)), signals, octal modes,
//! exit-status sets and resource limits. Pure functions from `&str`; errors are messages that
//! say what was expected (the caller adds file:line:col).

use std::time::Duration;

use super::model::{ExitStatusSet, LimitResource, RLimit};

/// `1/yes/y/true/t/on` and `0/no/n/false/f/off`, case-insensitive (systemd's parse_boolean).
pub fn parse_bool(s: &str) -> Result<bool, String> {
    const TRUE: [&str; 6] = ["1", "yes", "y", "true", "t", "on"];
    const FALSE: [&str; 6] = ["0", "no", "n", "false", "f", "off"];
    if TRUE.iter().any(|t| t.eq_ignore_ascii_case(s)) {
        Ok(true)
    } else if FALSE.iter().any(|f| f.eq_ignore_ascii_case(s)) {
        Ok(false)
    } else {
        Err(format!(
            "invalid boolean {s:?}: expected yes/no, true/false, on/off or 1/0"
        ))
    }
}

/// Microseconds per unit name, longest names first where one is a prefix of another.
const TIME_UNITS: &[(&str, u128)] = &[
    ("usec", 1),
    ("us", 1),
    ("µs", 1),
    ("μs", 1),
    ("msec", 1_000),
    ("ms", 1_000),
    ("seconds", 1_000_000),
    ("second", 1_000_000),
    ("sec", 1_000_000),
    ("s", 1_000_000),
    ("minutes", 60_000_000),
    ("minute", 60_000_000),
    ("min", 60_000_000),
    ("months", 2_629_800_000_000),
    ("month", 2_629_800_000_000),
    ("m", 60_000_000),
    ("hours", 3_600_000_000),
    ("hour", 3_600_000_000),
    ("hr", 3_600_000_000),
    ("h", 3_600_000_000),
    ("days", 86_400_000_000),
    ("day", 86_400_000_000),
    ("d", 86_400_000_000),
    ("weeks", 604_800_000_000),
    ("week", 604_800_000_000),
    ("w", 604_800_000_000),
    ("M", 2_629_800_000_000),
    ("years", 31_557_600_000_000),
    ("year", 31_557_600_000_000),
    ("y", 31_557_600_000_000),
];

/// systemd's `USEC_INFINITY`: a `usec_t` of all ones. A span of this many microseconds or
/// more is infinity.
pub const USEC_INFINITY: u128 = u64::MAX as u128;

/// A time span as systemd.time(7): `5`, `5s`, `1min 30s`, `1min30s`, `2h`, `500ms`, `1.5h`,
/// `infinity`. A bare number is in `default_unit_us` (seconds for `*Sec=` settings).
/// Returns `None` for `infinity`.
///
/// Spans saturate, as systemd's `usec_t` arithmetic does: any span of [`USEC_INFINITY`]
/// microseconds or more (about 584,542 years, e.g. `300000000000y`) *is* `infinity`, never an
/// error and never a wrap. Only the syntax can be wrong; every well-formed number is a span.
pub fn parse_timespan(s: &str, default_unit_us: u128) -> Result<Option<Duration>, String> {
    let s = s.trim();
    if s == "infinity" {
        return Ok(None);
    }
    let err = || {
        format!(
            "invalid time span {s:?}: expected e.g. 5s, 1min 30s, 500ms, 2h or infinity (units: us ms s min h d w M y)"
        )
    };
    if s.is_empty() {
        return Err(err());
    }
    let mut rest = s;
    let mut total: u128 = 0;
    let mut first = true;
    while !rest.is_empty() {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..digits];
        if number.is_empty() || number.starts_with('.') && number.len() == 1 {
            return Err(err());
        }
        let (int_part, frac_part) = match number.split_once('.') {
            Some((i, f)) => (i, f),
            None => (number, ""),
        };
        if frac_part.contains('.') {
            return Err(err());
        }
        rest = rest[digits..].trim_start();
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.' || c.is_whitespace())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let mult = if unit.is_empty() {
            // A bare number without unit is only allowed as the whole value.
            if !first || !rest.trim().is_empty() {
                return Err(err());
            }
            default_unit_us
        } else {
            match TIME_UNITS.iter().find(|(name, _)| *name == unit) {
                Some((_, m)) => *m,
                None => return Err(err()),
            }
        };
        // Only ASCII digits are left in `int_part`, so a parse failure is an overflow.
        let int: u128 = int_part
            .parse()
            .unwrap_or(if int_part.is_empty() { 0 } else { u128::MAX });
        let mut value = int.saturating_mul(mult);
        if !frac_part.is_empty() {
            let frac_digits = &frac_part[..frac_part.len().min(9)];
            let frac: u128 = frac_digits.parse().map_err(|_| err())?;
            let scale = 10u128.pow(frac_digits.len() as u32);
            value = value.saturating_add(frac * mult / scale);
        }
        total = total.saturating_add(value);
        first = false;
    }
    if total >= USEC_INFINITY {
        return Ok(None);
    }
    // Below USEC_INFINITY, so the seconds fit a u64.
    let secs = (total / 1_000_000) as u64;
    let micros = (total % 1_000_000) as u32;
    Ok(Some(Duration::new(secs, micros * 1_000)))
}

/// One second in microseconds: the default unit of `*Sec=` settings.
pub const SEC: u128 = 1_000_000;

const SIGNALS: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("IOT", libc::SIGIOT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("POLL", libc::SIGPOLL),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// systemd's name of a signal without `SIG` (`TERM`, `RTMIN+3`), as `$EXIT_STATUS` and
/// `$MONITOR_EXIT_STATUS` spell it; the number itself for one without a name.
pub fn signal_name(n: i32) -> String {
    if let Some((name, _)) = SIGNALS.iter().find(|(_, v)| *v == n) {
        return (*name).to_string();
    }
    let rtmin = libc::SIGRTMIN();
    if (rtmin..=libc::SIGRTMAX()).contains(&n) {
        return match n - rtmin {
            0 => "RTMIN".to_string(),
            off => format!("RTMIN+{off}"),
        };
    }
    n.to_string()
}

/// Realtime signal range as the kernel defines it (glibc reserves the first two or three).
const SIGRTMIN_KERNEL: i32 = 32;
const SIGRTMAX_KERNEL: i32 = 64;

/// A signal name with or without `SIG` (`SIGTERM`, `TERM`), `RTMIN+n`/`RTMAX-n`, or a number.
pub fn parse_signal(s: &str) -> Result<i32, String> {
    let err =
        || format!("invalid signal {s:?}: expected a name such as SIGTERM or TERM, or a number");
    if let Ok(n) = s.parse::<i32>() {
        return if (1..=SIGRTMAX_KERNEL).contains(&n) {
            Ok(n)
        } else {
            Err(err())
        };
    }
    let name = s.strip_prefix("SIG").unwrap_or(s);
    if let Some((_, n)) = SIGNALS.iter().find(|(k, _)| *k == name) {
        return Ok(*n);
    }
    let rtmin = libc::SIGRTMIN();
    let rtmax = libc::SIGRTMAX();
    if name == "RTMIN" {
        return Ok(rtmin);
    }
    if name == "RTMAX" {
        return Ok(rtmax);
    }
    if let Some(off) = name.strip_prefix("RTMIN+") {
        let off: i32 = off.parse().map_err(|_| err())?;
        let n = rtmin.checked_add(off).ok_or_else(err)?;
        return if (rtmin..=rtmax).contains(&n) && n >= SIGRTMIN_KERNEL {
            Ok(n)
        } else {
            Err(err())
        };
    }
    if let Some(off) = name.strip_prefix("RTMAX-") {
        let off: i32 = off.parse().map_err(|_| err())?;
        let n = rtmax.checked_sub(off).ok_or_else(err)?;
        return if (rtmin..=rtmax).contains(&n) {
            Ok(n)
        } else {
            Err(err())
        };
    }
    Err(err())
}

/// An octal file mode such as `0755` or `2755`, at most `max` (0o7777 or 0o777 for UMask=).
pub fn parse_mode(s: &str, max: u32) -> Result<u32, String> {
    let err = || format!("invalid octal mode {s:?}: expected e.g. 0755 (at most {max:o})");
    if s.is_empty() || !s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(err());
    }
    let m = u32::from_str_radix(s, 8).map_err(|_| err())?;
    if m > max { Err(err()) } else { Ok(m) }
}

/// Exit status names systemd accepts besides numbers (LSB and BSD sysexits names).
const EXIT_NAMES: &[(&str, i32)] = &[
    ("SUCCESS", 0),
    ("FAILURE", 1),
    ("INVALIDARGUMENT", 2),
    ("NOTIMPLEMENTED", 3),
    ("NOPERMISSION", 4),
    ("NOTINSTALLED", 5),
    ("NOTCONFIGURED", 6),
    ("NOTRUNNING", 7),
    ("USAGE", 64),
    ("DATAERR", 65),
    ("NOINPUT", 66),
    ("NOUSER", 67),
    ("NOHOST", 68),
    ("UNAVAILABLE", 69),
    ("SOFTWARE", 70),
    ("OSERR", 71),
    ("OSFILE", 72),
    ("CANTCREAT", 73),
    ("IOERR", 74),
    ("TEMPFAIL", 75),
    ("PROTOCOL", 76),
    ("NOPERM", 77),
    ("CONFIG", 78),
];

/// Adds the words of an exit-status list (`1 2 8 SIGKILL`) to `set`.
pub fn parse_exit_status_set(s: &str, set: &mut ExitStatusSet) -> Result<(), String> {
    for word in s.split_ascii_whitespace() {
        if let Ok(n) = word.parse::<i32>() {
            if !(0..=255).contains(&n) {
                return Err(format!("invalid exit status {word:?}: expected 0..255"));
            }
            if !set.codes.contains(&n) {
                set.codes.push(n);
            }
        } else if word.starts_with("SIG") {
            let sig = parse_signal(word)?;
            if !set.signals.contains(&sig) {
                set.signals.push(sig);
            }
        } else if let Some((_, n)) = EXIT_NAMES.iter().find(|(k, _)| *k == word) {
            if !set.codes.contains(n) {
                set.codes.push(*n);
            }
        } else {
            return Err(format!(
                "invalid exit status {word:?}: expected a number 0..255 or a signal name such as SIGTERM"
            ));
        }
    }
    Ok(())
}

/// How a resource limit's value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LimitKind {
    Bytes,
    /// Seconds (LimitCPU=), time spans allowed.
    Seconds,
    /// Microseconds (LimitRTTIME=), time spans allowed.
    Micros,
    Nice,
    Count,
}

/// How each `Limit*=` resource's value is written.
fn limit_kind(resource: LimitResource) -> LimitKind {
    match resource {
        LimitResource::As
        | LimitResource::Core
        | LimitResource::Data
        | LimitResource::Fsize
        | LimitResource::Memlock
        | LimitResource::Msgqueue
        | LimitResource::Rss
        | LimitResource::Stack => LimitKind::Bytes,
        LimitResource::Cpu => LimitKind::Seconds,
        LimitResource::Rttime => LimitKind::Micros,
        LimitResource::Nice => LimitKind::Nice,
        LimitResource::Locks
        | LimitResource::Nofile
        | LimitResource::Nproc
        | LimitResource::Rtprio
        | LimitResource::Sigpending => LimitKind::Count,
    }
}

/// The resource name of a `Limit*=` key (`LimitNOFILE` -> `NOFILE`) if it is one.
pub fn limit_resource(key: &str) -> Option<&'static str> {
    LimitResource::from_name(key.strip_prefix("Limit")?).map(LimitResource::name)
}

fn parse_limit_value(resource: &str, s: &str) -> Result<Option<u64>, String> {
    if s == "infinity" {
        return Ok(None);
    }
    let kind = LimitResource::from_name(resource).map_or(LimitKind::Count, limit_kind);
    let err = || format!("invalid Limit{resource}= value {s:?}");
    match kind {
        LimitKind::Count => s.parse::<u64>().map(Some).map_err(|_| err()),
        LimitKind::Bytes => parse_size(s).map(Some).map_err(|_| err()),
        LimitKind::Seconds => match parse_timespan(s, SEC).map_err(|_| err())? {
            None => Ok(None),
            Some(d) => Ok(Some(
                d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0)),
            )),
        },
        LimitKind::Micros => match parse_timespan(s, 1).map_err(|_| err())? {
            None => Ok(None),
            Some(d) => Ok(Some(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))),
        },
        LimitKind::Nice => {
            // systemd.exec: a signed value is a nice level (-20..19), an unsigned one is the raw
            // rlimit (0..40); RLIMIT_NICE = 20 - nice.
            if s.starts_with(['+', '-']) {
                let n: i64 = s.parse().map_err(|_| err())?;
                if !(-20..=19).contains(&n) {
                    return Err(err());
                }
                Ok(Some((20 - n) as u64))
            } else {
                let n: u64 = s.parse().map_err(|_| err())?;
                if n > 40 { Err(err()) } else { Ok(Some(n)) }
            }
        }
    }
}

/// A size with an optional base-1024 suffix: `512`, `64K`, `1G`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let err = || format!("invalid size {s:?}: expected a number with optional K, M, G, T, P or E");
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| err())?;
    let mult: u64 = match suffix {
        "" | "B" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        "P" => 1 << 50,
        "E" => 1 << 60,
        _ => return Err(err()),
    };
    n.checked_mul(mult).ok_or_else(err)
}

/// `Limit*=`: `VALUE` (soft = hard) or `SOFT:HARD`; `infinity` allowed on either side.
pub fn parse_rlimit(resource: &str, s: &str) -> Result<RLimit, String> {
    match s.split_once(':') {
        Some((soft, hard)) => {
            let soft = parse_limit_value(resource, soft.trim())?;
            let hard = parse_limit_value(resource, hard.trim())?;
            if let (Some(s), Some(h)) = (soft, hard)
                && s > h
            {
                return Err(format!(
                    "Limit{resource}= soft limit {s} is above the hard limit {h}"
                ));
            }
            Ok(RLimit { soft, hard })
        }
        None => {
            let v = parse_limit_value(resource, s)?;
            Ok(RLimit { soft: v, hard: v })
        }
    }
}

/// A signed integer in `lo..=hi`.
pub fn parse_int_range(s: &str, lo: i64, hi: i64, what: &str) -> Result<i64, String> {
    match s.parse::<i64>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(format!(
            "invalid {what} {s:?}: expected an integer from {lo} to {hi}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(s: &str) -> Option<Duration> {
        match parse_timespan(s, SEC) {
            Ok(v) => v,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn booleans_per_systemd_syntax() {
        for t in ["1", "yes", "true", "on", "YES", "True", "y", "t"] {
            assert_eq!(parse_bool(t), Ok(true), "{t}");
        }
        for f in ["0", "no", "false", "off", "Off", "n", "f"] {
            assert_eq!(parse_bool(f), Ok(false), "{f}");
        }
        assert!(parse_bool("maybe").is_err());
        assert!(parse_bool("").is_err());
    }

    #[test]
    fn time_spans_per_systemd_time() {
        assert_eq!(span("5"), Some(Duration::from_secs(5)));
        assert_eq!(span("5s"), Some(Duration::from_secs(5)));
        assert_eq!(span("1min 30s"), Some(Duration::from_secs(90)));
        assert_eq!(span("1min30s"), Some(Duration::from_secs(90)));
        assert_eq!(span("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(span("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(span("100us"), Some(Duration::from_micros(100)));
        assert_eq!(
            span("1d 2w"),
            Some(Duration::from_secs(86_400 + 14 * 86_400))
        );
        assert_eq!(span("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(span("0.1"), Some(Duration::from_millis(100)));
        assert_eq!(span("2 minutes"), Some(Duration::from_secs(120)));
        assert_eq!(span("1y"), Some(Duration::from_secs(31_557_600)));
        assert_eq!(span("1M"), Some(Duration::from_secs(2_629_800)));
        assert_eq!(span("3m"), Some(Duration::from_secs(180)));
        assert_eq!(span("infinity"), None);
        assert_eq!(span("0"), Some(Duration::ZERO));
        for bad in ["", "5 parsecs", "abc", "-5s", "1..2s", "5s 3", "s"] {
            assert!(parse_timespan(bad, SEC).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn huge_time_spans_saturate_at_infinity() {
        // Beyond USEC_INFINITY in every way a span can get there: one huge unit, a sum, a
        // number longer than any integer type, a huge bare number.
        for huge in [
            "300000000000y",
            "584543y",
            "500000y 500000y",
            "99999999999999999999999999999999999999999999999999s",
            "18446744073709551615us",
            "18446744073709551616",
        ] {
            assert_eq!(parse_timespan(huge, SEC), Ok(None), "{huge}");
        }
        // Just below infinity stays finite.
        assert_eq!(
            parse_timespan("18446744073709551614us", SEC),
            Ok(Some(Duration::from_micros(18_446_744_073_709_551_614)))
        );
        assert_eq!(
            span("584542y"),
            Some(Duration::from_secs(584_542 * 31_557_600))
        );
    }

    #[test]
    fn signals_by_name_short_name_and_number() {
        assert_eq!(parse_signal("SIGTERM"), Ok(libc::SIGTERM));
        assert_eq!(parse_signal("TERM"), Ok(libc::SIGTERM));
        assert_eq!(signal_name(libc::SIGTERM), "TERM");
        assert_eq!(signal_name(libc::SIGABRT), "ABRT");
        assert_eq!(signal_name(libc::SIGRTMIN() + 2), "RTMIN+2");
        assert_eq!(parse_signal("9"), Ok(9));
        assert_eq!(parse_signal("SIGINT"), Ok(libc::SIGINT));
        assert_eq!(parse_signal("SIGRTMIN+1"), Ok(libc::SIGRTMIN() + 1));
        assert!(parse_signal("SIGFOO").is_err());
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("65").is_err());
        assert!(parse_signal("SIGRTMIN+2147483647").is_err());
        assert!(parse_signal("SIGRTMAX--2147483648").is_err());
    }

    #[test]
    fn octal_modes() {
        assert_eq!(parse_mode("0755", 0o7777), Ok(0o755));
        assert_eq!(parse_mode("2755", 0o7777), Ok(0o2755));
        assert_eq!(parse_mode("007", 0o777), Ok(0o7));
        assert!(parse_mode("0855", 0o7777).is_err());
        assert!(parse_mode("1777", 0o777).is_err());
        assert!(parse_mode("", 0o777).is_err());
    }

    #[test]
    fn exit_status_sets() {
        let mut set = ExitStatusSet::default();
        assert!(parse_exit_status_set("1 2 SIGKILL 143 TEMPFAIL", &mut set).is_ok());
        assert_eq!(set.codes, vec![1, 2, 143, 75]);
        assert_eq!(set.signals, vec![libc::SIGKILL]);
        assert!(parse_exit_status_set("256", &mut set).is_err());
        assert!(parse_exit_status_set("bogus", &mut set).is_err());
    }

    #[test]
    fn rlimits() {
        let r = parse_rlimit("NOFILE", "1024:4096");
        assert_eq!(
            r,
            Ok(RLimit {
                soft: Some(1024),
                hard: Some(4096)
            })
        );
        let r = parse_rlimit("NOFILE", "65535");
        assert_eq!(
            r,
            Ok(RLimit {
                soft: Some(65535),
                hard: Some(65535)
            })
        );
        let r = parse_rlimit("CORE", "infinity");
        assert_eq!(
            r,
            Ok(RLimit {
                soft: None,
                hard: None
            })
        );
        let r = parse_rlimit("MEMLOCK", "64K:infinity");
        assert_eq!(
            r,
            Ok(RLimit {
                soft: Some(65536),
                hard: None
            })
        );
        let r = parse_rlimit("CPU", "1h");
        assert_eq!(
            r,
            Ok(RLimit {
                soft: Some(3600),
                hard: Some(3600)
            })
        );
        let r = parse_rlimit("NICE", "-5");
        assert_eq!(
            r,
            Ok(RLimit {
                soft: Some(25),
                hard: Some(25)
            })
        );
        assert!(parse_rlimit("NOFILE", "4096:1024").is_err());
        assert!(parse_rlimit("NOFILE", "lots").is_err());
        let huge = parse_rlimit("CPU", "18446744073709551615.5s");
        // Beyond USEC_INFINITY the span saturates at infinity: RLIM_INFINITY.
        assert_eq!(huge.map(|l| l.soft), Ok(None));
        assert_eq!(limit_resource("LimitNOFILE"), Some("NOFILE"));
        assert_eq!(limit_resource("LimitFOO"), None);
    }
}

//! systemd calendar events (systemd.time(7), "CALENDAR EVENTS"): parsing, the normalized
//! form `systemd-analyze calendar` prints, and the next elapse after a given instant.
//!
//! Pure except for one thing: a time zone suffix (`Europe/Berlin`) is resolved through
//! jiff's IANA database when the expression is parsed (jiff reads and caches
//! `/usr/share/zoneinfo`). Computing elapses reads no clock: "now" is an argument, and the
//! local time zone is an argument of [`CalendarSpec::next_elapse_in`].
//!
//! Semantics follow systemd's `calendarspec.c`:
//! - components are lists of `value`, `start..stop` and `value/repeat` (or
//!   `start..stop/repeat`); `*` matches anything; two-digit years mean 1970..2069;
//! - `~` counts days from the end of the month (`~01` is the last day); `~07/1` means
//!   "the 7th last day and every day after it", `~07..01` the last seven days;
//! - years are limited to 1970..=2199, so an expression that can never match
//!   (`*-04-31`) has no next elapse rather than searching forever;
//! - seconds have microsecond resolution (fractions are rounded to 6 digits);
//! - across DST transitions, a local time that does not exist (a spring-forward gap) is
//!   skipped, and a local time that exists twice (a fall-back fold) elapses once, at its
//!   first (earlier) occurrence. These are the cases systemd's test suite pins down
//!   ("2017-09-24 02:30:00 Pacific/Auckland" never elapses; "2017-04-02 02:30:00
//!   Pacific/Auckland" elapses once).
//!
//! One file of ~1,100 lines on purpose: the grammar, the normalized printing and the elapse
//! search all work on the same private component type; split, each would need its internals.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, Offset, TimeZone};

const USEC_PER_SEC: u32 = 1_000_000;
const USEC_PER_MINUTE: u32 = 60 * USEC_PER_SEC;
const MIN_YEAR: u32 = 1970;
const MAX_YEAR: u32 = 2199;
/// systemd's limit on the length of one comma-separated list.
const COMPONENTS_MAX: usize = 240;
/// Bound of the civil search loop; real expressions need a few dozen steps.
const MAX_SEARCH_STEPS: usize = 200_000;

/// One element of a comma-separated component list: `start`, `start..stop`,
/// `start/repeat` or `start..stop/repeat`. Seconds are stored in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Component {
    start: u32,
    stop: Option<u32>,
    repeat: u32,
}

/// `None` is `*` (every value).
type Chain = Option<Vec<Component>>;

/// The time zone an expression is evaluated in.
#[derive(Clone, Debug)]
pub enum Zone {
    /// No suffix: the local time zone, given to [`CalendarSpec::next_elapse_in`].
    Local,
    /// `UTC` (any case).
    Utc,
    /// An IANA time zone such as `Europe/Berlin`.
    Named { name: String, tz: TimeZone },
}

impl PartialEq for Zone {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Zone::Local, Zone::Local) | (Zone::Utc, Zone::Utc) => true,
            (Zone::Named { name: a, .. }, Zone::Named { name: b, .. }) => a == b,
            _ => false,
        }
    }
}

impl Eq for Zone {}

/// A parsed `OnCalendar=` expression. `Display` prints systemd's normalized form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CalendarSpec {
    /// Bit 0 = Monday ... bit 6 = Sunday; `None` = any day.
    weekdays: Option<u8>,
    year: Chain,
    month: Chain,
    day: Chain,
    /// `day` counts from the end of the month (`~`).
    end_of_month: bool,
    hour: Chain,
    minute: Chain,
    /// Microseconds within the minute; never `None` (`*` is `0/1s`).
    second: Vec<Component>,
    zone: Zone,
}

/// Why an expression was refused: the expression and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid calendar expression {expr:?}: {reason}")]
pub struct CalendarError {
    pub expr: String,
    pub reason: String,
}

impl FromStr for CalendarSpec {
    type Err = CalendarError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CalendarSpec::parse(s)
    }
}

/// Civil fields during the search; wide integers so carries never overflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Civil {
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    /// Microseconds within the minute.
    usec: u32,
}

impl Civil {
    fn from_datetime(dt: DateTime) -> Option<Civil> {
        Some(Civil {
            year: u32::try_from(dt.year()).ok()?,
            month: u32::try_from(dt.month()).ok()?,
            day: u32::try_from(dt.day()).ok()?,
            hour: u32::try_from(dt.hour()).ok()?,
            minute: u32::try_from(dt.minute()).ok()?,
            usec: u32::try_from(dt.second()).ok()? * USEC_PER_SEC
                + u32::try_from(dt.subsec_nanosecond()).ok()? / 1000,
        })
    }

    fn to_datetime(self) -> Option<DateTime> {
        DateTime::new(
            i16::try_from(self.year).ok()?,
            i8::try_from(self.month).ok()?,
            i8::try_from(self.day).ok()?,
            i8::try_from(self.hour).ok()?,
            i8::try_from(self.minute).ok()?,
            i8::try_from(self.usec / USEC_PER_SEC).ok()?,
            i32::try_from(self.usec % USEC_PER_SEC).ok()? * 1000,
        )
        .ok()
    }

    /// One microsecond later (carries are resolved by the search).
    fn next_usec(mut self) -> Civil {
        self.usec += 1;
        self
    }
}

fn date(year: u32, month: u32, day: u32) -> Option<Date> {
    Date::new(
        i16::try_from(year).ok()?,
        i8::try_from(month).ok()?,
        i8::try_from(day).ok()?,
    )
    .ok()
}

fn days_in_month(year: u32, month: u32) -> Option<u32> {
    date(year, month, 1).map(|d| d.days_in_month().unsigned_abs().into())
}

/// The smallest value `>= v` (and `<= max`) that one of the chain's components produces.
fn next_match(chain: &[Component], v: u32, max: u32) -> Option<u32> {
    let mut best: Option<u64> = None;
    for c in chain {
        let (start, stop, repeat) = (
            u64::from(c.start),
            c.stop.map(u64::from),
            u64::from(c.repeat),
        );
        let v = u64::from(v);
        let cand = if start >= v {
            Some(start)
        } else if repeat > 0 {
            let k = start + repeat * (v - start).div_ceil(repeat);
            stop.is_none_or(|s| k <= s).then_some(k)
        } else {
            None
        };
        if let Some(k) = cand
            && best.is_none_or(|b| k < b)
        {
            best = Some(k);
        }
    }
    best.filter(|&b| b <= u64::from(max))
        .and_then(|b| u32::try_from(b).ok())
}

fn next_in(chain: &Chain, v: u32, max: u32) -> Option<u32> {
    match chain {
        None => (v <= max).then_some(v),
        Some(c) => next_match(c, v, max),
    }
}

impl CalendarSpec {
    /// Parses an expression as `OnCalendar=` and `systemd-analyze calendar` accept it.
    pub fn parse(expr: &str) -> Result<CalendarSpec, CalendarError> {
        parse(expr).map_err(|reason| CalendarError {
            expr: expr.to_string(),
            reason,
        })
    }

    /// The time zone suffix, if any.
    pub fn zone(&self) -> &Zone {
        &self.zone
    }

    /// The next elapse strictly after `after`, evaluating an expression without a time
    /// zone suffix in `local`. `None` when the expression never elapses again.
    pub fn next_elapse_in(&self, after: Timestamp, local: &TimeZone) -> Option<Timestamp> {
        let tz = match &self.zone {
            Zone::Local => local,
            Zone::Utc => &TimeZone::UTC,
            Zone::Named { tz, .. } => tz,
        };
        let start = Timestamp::from_microsecond(after.as_microsecond().checked_add(1)?).ok()?;
        let mut from = Civil::from_datetime(tz.to_datetime(start))?;
        for _ in 0..64 {
            let cand = self.next_civil(from)?;
            let dt = cand.to_datetime()?;
            match tz.to_ambiguous_timestamp(dt).offset() {
                AmbiguousOffset::Unambiguous { offset } => {
                    let ts = offset.to_timestamp(dt).ok()?;
                    if ts > after {
                        return Some(ts);
                    }
                    from = cand.next_usec();
                }
                AmbiguousOffset::Gap { after: later, .. } => {
                    // This local time does not exist: continue at the first local time after
                    // the transition.
                    let probe = later.to_timestamp(dt).ok()?;
                    from = tz
                        .following(probe)
                        .next()
                        .and_then(|t| Civil::from_datetime(tz.to_datetime(t.timestamp())))
                        .filter(|c| *c > cand)
                        .unwrap_or_else(|| cand.next_usec());
                }
                AmbiguousOffset::Fold {
                    before,
                    after: later,
                } => {
                    // A local time that happens twice elapses once, at its first occurrence.
                    let first = before
                        .to_timestamp(dt)
                        .ok()?
                        .min(later.to_timestamp(dt).ok()?);
                    if first > after {
                        return Some(first);
                    }
                    // Already elapsed in the first pass: skip the local times that did.
                    let wider = if before > later { before } else { later };
                    from = Civil::from_datetime(wider_civil(wider, after))
                        .map(Civil::next_usec)
                        .filter(|c| *c > cand)
                        .unwrap_or_else(|| cand.next_usec());
                }
            }
        }
        None
    }

    /// The next elapse strictly after `after`, with the process's local time zone (jiff's
    /// `TimeZone::system()`, which reads `TZ` or `/etc/localtime` once) for expressions
    /// without a suffix. The daemon should prefer [`Self::next_elapse_in`].
    pub fn next_elapse(&self, after: Timestamp) -> Option<Timestamp> {
        match self.zone {
            Zone::Local => self.next_elapse_in(after, &TimeZone::system()),
            _ => self.next_elapse_in(after, &TimeZone::UTC),
        }
    }

    /// The next `n` elapses after `after` (what `systemd-analyze calendar --iterations=N`
    /// prints).
    pub fn elapses_in(&self, after: Timestamp, local: &TimeZone, n: usize) -> Vec<Timestamp> {
        let mut out = Vec::with_capacity(n.min(1024));
        let mut t = after;
        while out.len() < n {
            match self.next_elapse_in(t, local) {
                Some(next) => {
                    out.push(next);
                    t = next;
                }
                None => break,
            }
        }
        out
    }

    /// The earliest matching civil time `>= from` (fields may carry over, e.g. usec = 60 s).
    fn next_civil(&self, from: Civil) -> Option<Civil> {
        let Civil {
            mut year,
            mut month,
            mut day,
            mut hour,
            mut minute,
            mut usec,
        } = from;
        for _ in 0..MAX_SEARCH_STEPS {
            if usec >= USEC_PER_MINUTE {
                usec = 0;
                minute += 1;
            }
            if minute > 59 {
                minute = 0;
                hour += 1;
            }
            if hour > 23 {
                hour = 0;
                day += 1;
            }
            if month > 12 {
                month = 1;
                day = 1;
                year += 1;
            }
            if year > MAX_YEAR {
                return None;
            }
            let mut dim = days_in_month(year, month)?;
            if day > dim {
                day = 1;
                month += 1;
                if month > 12 {
                    month = 1;
                    year += 1;
                }
                if year > MAX_YEAR {
                    return None;
                }
                dim = days_in_month(year, month)?;
            }

            let y = next_in(&self.year, year, MAX_YEAR)?;
            if y != year {
                (year, month, day, hour, minute, usec) = (y, 1, 1, 0, 0, 0);
                continue;
            }
            match next_in(&self.month, month, 12) {
                None => {
                    (year, month, day, hour, minute, usec) = (year + 1, 1, 1, 0, 0, 0);
                    continue;
                }
                Some(m) if m != month => {
                    (month, day, hour, minute, usec) = (m, 1, 0, 0, 0);
                    continue;
                }
                Some(_) => {}
            }
            match self.next_day(day, dim) {
                None => {
                    (month, day, hour, minute, usec) = (month + 1, 1, 0, 0, 0);
                    continue;
                }
                Some(d) if d != day => (day, hour, minute, usec) = (d, 0, 0, 0),
                Some(_) => {}
            }
            if let Some(bits) = self.weekdays {
                let wd = date(year, month, day)?.weekday().to_monday_zero_offset();
                if bits & (1 << wd) == 0 {
                    (day, hour, minute, usec) = (day + 1, 0, 0, 0);
                    continue;
                }
            }
            match next_in(&self.hour, hour, 23) {
                None => {
                    (day, hour, minute, usec) = (day + 1, 0, 0, 0);
                    continue;
                }
                Some(h) if h != hour => (hour, minute, usec) = (h, 0, 0),
                Some(_) => {}
            }
            match next_in(&self.minute, minute, 59) {
                None => {
                    (hour, minute, usec) = (hour + 1, 0, 0);
                    continue;
                }
                Some(m) if m != minute => (minute, usec) = (m, 0),
                Some(_) => {}
            }
            match next_match(&self.second, usec, USEC_PER_MINUTE - 1) {
                None => {
                    (minute, usec) = (minute + 1, 0);
                    continue;
                }
                Some(s) => usec = s,
            }
            return Some(Civil {
                year,
                month,
                day,
                hour,
                minute,
                usec,
            });
        }
        None
    }

    /// The first matching day `>= day` in a month of `dim` days.
    fn next_day(&self, day: u32, dim: u32) -> Option<u32> {
        let Some(chain) = &self.day else {
            return (day <= dim).then_some(day);
        };
        if !self.end_of_month {
            return next_match(chain, day, dim);
        }
        // `~n` is the n-th last day; a range `~a..b` covers the days from the b-th last to
        // the a-th last, and a repetition counts forward from the n-th last day.
        let from_end = |n: u32| (dim + 1).checked_sub(n).filter(|d| *d >= 1);
        let mapped: Vec<Component> = chain
            .iter()
            .filter_map(|c| match c.stop {
                Some(stop) => Some(Component {
                    start: from_end(stop)?,
                    stop: Some(from_end(c.start)?),
                    repeat: c.repeat,
                }),
                None => Some(Component {
                    start: from_end(c.start)?,
                    stop: None,
                    repeat: c.repeat,
                }),
            })
            .collect();
        next_match(&mapped, day, dim)
    }
}

fn wider_civil(offset: Offset, t: Timestamp) -> DateTime {
    offset.to_datetime(t)
}

// ---------------------------------------------------------------------------------------
// Parsing

fn starts_with_ci(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

fn ends_with_ci(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len()
        && s.as_bytes()[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

fn skip_spaces(p: &mut &str) {
    *p = p.trim_start_matches(' ');
}

fn konst(v: u32) -> Chain {
    Some(vec![Component {
        start: v,
        stop: None,
        repeat: 0,
    }])
}

fn konst_list(vs: &[u32]) -> Chain {
    Some(
        vs.iter()
            .map(|&v| Component {
                start: v,
                stop: None,
                repeat: 0,
            })
            .collect(),
    )
}

fn parse(input: &str) -> Result<CalendarSpec, String> {
    let mut spec = CalendarSpec {
        weekdays: None,
        year: None,
        month: None,
        day: None,
        end_of_month: false,
        hour: None,
        minute: None,
        second: Vec::new(),
        zone: Zone::Local,
    };
    let mut p = input;
    if ends_with_ci(p, " UTC") {
        spec.zone = Zone::Utc;
        p = &p[..p.len() - 4];
    } else if let Some(space) = p.rfind(' ') {
        let name = &p[space + 1..];
        let zone_like = name.starts_with(|c: char| c.is_ascii_alphabetic());
        let lookup = if zone_like {
            jiff::tz::db().get(name).ok()
        } else {
            None
        };
        if zone_like && lookup.is_none() && name.contains('/') {
            // Nothing else in the syntax has a letter followed by a '/'.
            return Err(format!("unknown time zone {name:?}"));
        }
        if let Some(tz) = lookup {
            let name = tz.iana_name().unwrap_or(name).to_string();
            spec.zone = if name == "UTC" {
                Zone::Utc
            } else {
                Zone::Named { name, tz }
            };
            p = &p[..space];
        }
    }
    if p.is_empty() {
        return Err("nothing before the time zone".into());
    }

    let shorthand: Option<(Option<u8>, Chain, Chain)> = match p.to_ascii_lowercase().as_str() {
        "minutely" => {
            spec.second = vec![zero()];
            return finish(spec);
        }
        "hourly" => {
            spec.minute = konst(0);
            spec.second = vec![zero()];
            return finish(spec);
        }
        "daily" => Some((None, None, None)),
        "weekly" => Some((Some(1), None, None)),
        "monthly" => Some((None, None, konst(1))),
        "yearly" | "annually" | "anually" => Some((None, konst(1), konst(1))),
        "quarterly" => Some((None, konst_list(&[1, 4, 7, 10]), konst(1))),
        "semiannually" | "semi-annually" | "biannually" | "bi-annually" => {
            Some((None, konst_list(&[1, 7]), konst(1)))
        }
        _ => None,
    };
    if let Some((weekdays, month, day)) = shorthand {
        spec.weekdays = weekdays;
        spec.month = month;
        spec.day = day;
        spec.hour = konst(0);
        spec.minute = konst(0);
        spec.second = vec![zero()];
        return finish(spec);
    }

    parse_weekdays(&mut p, &mut spec)?;
    let timestamp = parse_date(&mut p, &mut spec)?;
    if !timestamp {
        parse_time(&mut p, &mut spec)?;
    }
    if !p.is_empty() {
        return Err(format!("unexpected {p:?} at the end"));
    }
    finish(spec)
}

fn zero() -> Component {
    Component {
        start: 0,
        stop: None,
        repeat: 0,
    }
}

const WEEKDAYS: [(&str, u8); 14] = [
    ("monday", 0),
    ("mon", 0),
    ("tuesday", 1),
    ("tue", 1),
    ("wednesday", 2),
    ("wed", 2),
    ("thursday", 3),
    ("thu", 3),
    ("friday", 4),
    ("fri", 4),
    ("saturday", 5),
    ("sat", 5),
    ("sunday", 6),
    ("sun", 6),
];

fn parse_weekdays(p: &mut &str, spec: &mut CalendarSpec) -> Result<(), String> {
    let mut bits: u8 = 0;
    let mut range_from: Option<u8> = None;
    let mut first = true;
    loop {
        let Some(&(name, nr)) = WEEKDAYS.iter().find(|(name, _)| starts_with_ci(p, name)) else {
            if first {
                return Ok(());
            }
            return Err(format!("expected a weekday name at {p:?}"));
        };
        let rest = &p[name.len()..];
        if !matches!(
            rest.as_bytes().first(),
            None | Some(b'-' | b'.' | b',' | b' ')
        ) {
            return Err(format!(
                "unknown weekday {:?}",
                p.split(' ').next().unwrap_or(p)
            ));
        }
        bits |= 1 << nr;
        if let Some(from) = range_from {
            if from > nr {
                return Err(format!("weekday range ends before it starts at {p:?}"));
            }
            for j in from + 1..nr {
                bits |= 1 << j;
            }
        }
        *p = rest;
        spec.weekdays = Some(spec.weekdays.unwrap_or(0) | bits);
        match p.as_bytes().first() {
            None => return Ok(()),
            Some(b' ') => {
                skip_spaces(p);
                return Ok(());
            }
            Some(b'.') => {
                if range_from.is_some() || !p.starts_with("..") {
                    return Err(format!("bad weekday range at {p:?}"));
                }
                range_from = Some(nr);
                *p = &p[2..];
            }
            Some(b'-') => {
                if range_from.is_some() {
                    return Err(format!("bad weekday range at {p:?}"));
                }
                range_from = Some(nr);
                *p = &p[1..];
            }
            Some(b',') => {
                range_from = None;
                *p = &p[1..];
            }
            Some(_) => {}
        }
        if p.is_empty() || p.starts_with(' ') {
            skip_spaces(p);
            if range_from.is_some() {
                return Err("weekday range without an end".into());
            }
            return Ok(());
        }
        first = false;
    }
}

/// Parses `[[year-]month-]day` or `@seconds`; returns true for `@seconds` (no time follows).
fn parse_date(p: &mut &str, spec: &mut CalendarSpec) -> Result<bool, String> {
    if p.is_empty() {
        return Ok(false);
    }
    if let Some(rest) = p.strip_prefix('@') {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err("expected seconds since the epoch after '@'".into());
        }
        let secs: i64 = rest[..digits]
            .parse()
            .map_err(|_| format!("timestamp @{} is out of range", &rest[..digits]))?;
        let ts = Timestamp::from_second(secs)
            .map_err(|_| format!("timestamp @{secs} is out of range"))?;
        let dt = TimeZone::UTC.to_datetime(ts);
        let c =
            Civil::from_datetime(dt).ok_or_else(|| format!("timestamp @{secs} is out of range"))?;
        spec.year = konst(c.year);
        spec.month = konst(c.month);
        spec.day = konst(c.day);
        spec.hour = konst(c.hour);
        spec.minute = konst(c.minute);
        spec.second = vec![Component {
            start: (c.usec / USEC_PER_SEC) * USEC_PER_SEC,
            stop: None,
            repeat: 0,
        }];
        spec.zone = Zone::Utc;
        *p = &rest[digits..];
        return Ok(true);
    }

    let mut t = *p;
    let first = parse_chain(&mut t, false)?;
    // Already the end, or a ':': this was a time, not a date.
    if t.is_empty() || t.starts_with(':') {
        return Ok(false);
    }
    if t.starts_with('~') {
        spec.end_of_month = true;
    } else if !t.starts_with('-') {
        return Err(format!("expected '-' or '~' in the date at {t:?}"));
    }
    t = &t[1..];
    let second = parse_chain(&mut t, false)?;
    if t.is_empty() || t.starts_with(' ') {
        skip_spaces(&mut t);
        *p = t;
        spec.month = first;
        spec.day = second;
        return Ok(false);
    }
    if spec.end_of_month {
        return Err("'~' may only separate the month and the day".into());
    }
    if t.starts_with('~') {
        spec.end_of_month = true;
    } else if !t.starts_with('-') {
        return Err(format!("expected '-' or '~' in the date at {t:?}"));
    }
    t = &t[1..];
    let third = parse_chain(&mut t, false)?;
    if !(t.is_empty() || t.starts_with(' ')) {
        return Err(format!("unexpected {t:?} after the date"));
    }
    skip_spaces(&mut t);
    *p = t;
    spec.year = first;
    spec.month = second;
    spec.day = third;
    Ok(false)
}

fn parse_time(p: &mut &str, spec: &mut CalendarSpec) -> Result<(), String> {
    if p.is_empty() {
        spec.hour = konst(0);
        spec.minute = konst(0);
        spec.second = vec![zero()];
        return Ok(());
    }
    let hour = parse_chain(p, false)?;
    let Some(rest) = p.strip_prefix(':') else {
        return Err(format!("expected ':' after the hour at {p:?}"));
    };
    *p = rest;
    let minute = parse_chain(p, false)?;
    let second = if p.is_empty() {
        vec![zero()]
    } else if let Some(rest) = p.strip_prefix(':') {
        *p = rest;
        let s = parse_chain(p, true)?;
        if !p.is_empty() {
            return Err(format!("unexpected {p:?} after the seconds"));
        }
        s.unwrap_or_default()
    } else {
        return Err(format!("expected ':' after the minute at {p:?}"));
    };
    spec.hour = hour;
    spec.minute = minute;
    spec.second = second;
    Ok(())
}

/// `*` or a comma-separated list of components.
fn parse_chain(p: &mut &str, usec: bool) -> Result<Chain, String> {
    if let Some(rest) = p.strip_prefix('*') {
        *p = rest;
        return Ok(if usec {
            Some(vec![Component {
                start: 0,
                stop: None,
                repeat: USEC_PER_SEC,
            }])
        } else {
            None
        });
    }
    let mut chain = Vec::new();
    loop {
        chain.push(parse_component(p, usec)?);
        if chain.len() > COMPONENTS_MAX {
            return Err(format!("more than {COMPONENTS_MAX} values in one list"));
        }
        match p.strip_prefix(',') {
            Some(rest) => *p = rest,
            None => return Ok(Some(chain)),
        }
    }
}

fn parse_component(p: &mut &str, usec: bool) -> Result<Component, String> {
    let start = parse_decimal(p, usec)?;
    let mut stop = None;
    let mut repeat = 0;
    if let Some(rest) = p.strip_prefix("..") {
        *p = rest;
        stop = Some(parse_decimal(p, usec)?);
        repeat = if usec { USEC_PER_SEC } else { 1 };
    }
    if let Some(rest) = p.strip_prefix('/') {
        *p = rest;
        repeat = parse_decimal(p, usec)?;
        if repeat == 0 {
            return Err("a repetition of 0".into());
        }
    } else if usec && stop.is_some_and(|s| start.saturating_add(repeat) > s) {
        return Err("a range of seconds shorter than one second needs a repetition".into());
    }
    if !matches!(
        p.as_bytes().first(),
        None | Some(b' ' | b',' | b'-' | b'~' | b':')
    ) {
        return Err(format!("unexpected {p:?}"));
    }
    Ok(Component {
        start,
        stop,
        repeat,
    })
}

/// A decimal number; for seconds, with an optional fraction, in microseconds.
fn parse_decimal(p: &mut &str, usec: bool) -> Result<u32, String> {
    let digits = p.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(format!("expected a number at {p:?}"));
    }
    let text = &p[..digits];
    let too_large = || format!("number {text} is too large");
    let mut value: u64 = text.parse().map_err(|_| too_large())?;
    *p = &p[digits..];
    if usec {
        value = value
            .checked_mul(u64::from(USEC_PER_SEC))
            .ok_or_else(too_large)?;
        if p.starts_with('.') && !p.starts_with("..") {
            *p = &p[1..];
            value = value
                .checked_add(u64::from(parse_fraction(p)?))
                .ok_or_else(too_large)?;
        }
    }
    if value > i32::MAX as u64 {
        return Err(too_large());
    }
    u32::try_from(value).map_err(|_| too_large())
}

/// Up to 6 fractional digits (microseconds), rounded on the 7th; further digits ignored.
fn parse_fraction(p: &mut &str) -> Result<u32, String> {
    let digits = p.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(format!("expected digits after the decimal point at {p:?}"));
    }
    let b = p.as_bytes();
    let mut val: u32 = 0;
    for i in 0..6 {
        let digit = b
            .get(i)
            .filter(|_| i < digits)
            .map_or(0, |d| u32::from(d - b'0'));
        val = val * 10 + digit;
    }
    if b.get(6).is_some_and(|d| digits > 6 && *d >= b'5') {
        val += 1;
    }
    *p = &p[digits..];
    Ok(val)
}

fn finish(mut spec: CalendarSpec) -> Result<CalendarSpec, String> {
    if spec.weekdays.is_some_and(|b| b == 0 || b >= 127) {
        spec.weekdays = None;
    }
    if spec.end_of_month && spec.day.is_none() {
        spec.end_of_month = false;
    }
    if let Some(year) = &mut spec.year {
        for c in year.iter_mut() {
            c.start = fix_year(c.start);
            c.stop = c.stop.map(fix_year);
        }
    }
    for chain in [
        &mut spec.year,
        &mut spec.month,
        &mut spec.day,
        &mut spec.hour,
        &mut spec.minute,
    ]
    .into_iter()
    .flatten()
    {
        normalize_chain(chain);
    }
    normalize_chain(&mut spec.second);

    check_chain(&spec.year, MIN_YEAR, MAX_YEAR, false, "year")?;
    check_chain(&spec.month, 1, 12, false, "month")?;
    check_chain(&spec.day, 1, 31, spec.end_of_month, "day")?;
    check_chain(&spec.hour, 0, 23, false, "hour")?;
    check_chain(&spec.minute, 0, 59, false, "minute")?;
    check_chain(
        &Some(spec.second.clone()),
        0,
        USEC_PER_MINUTE - 1,
        false,
        "second",
    )?;
    Ok(spec)
}

/// 12 → 2012, 89 → 1989.
fn fix_year(y: u32) -> u32 {
    match y {
        0..70 => y + 2000,
        70..100 => y + 1900,
        _ => y,
    }
}

/// Shortens ranges to a multiple of their repetition, turns repetitions that cannot repeat
/// into single values, sorts and deduplicates.
fn normalize_chain(chain: &mut Vec<Component>) {
    for c in chain.iter_mut() {
        if let Some(stop) = c.stop
            && stop > c.start
            && c.repeat > 0
        {
            let stop = stop - (stop - c.start) % c.repeat;
            c.stop = Some(stop);
            if c.start.saturating_add(c.repeat) > stop {
                c.repeat = 0;
                c.stop = None;
            }
        }
        if c.stop == Some(c.start) {
            c.repeat = 0;
            c.stop = None;
        }
    }
    chain.sort();
    chain.dedup();
}

fn check_chain(
    chain: &Chain,
    from: u32,
    to: u32,
    end_of_month: bool,
    what: &str,
) -> Result<(), String> {
    let Some(chain) = chain else {
        return Ok(());
    };
    // Days counted from the end of the month may not reach further back than the 28th.
    let to = if end_of_month { to - 3 } else { to };
    let scale = if what == "second" { USEC_PER_SEC } else { 1 };
    let show = |v: u32| {
        if scale == 1 {
            v.to_string()
        } else {
            format_value(v, 0, true)
        }
    };
    let range = || format!("{}..{}", show(from), show(to));
    for c in chain {
        if c.start < from || c.start > to {
            return Err(format!("{what} {} is outside {}", show(c.start), range()));
        }
        if c.repeat > to - from {
            return Err(format!("{what} repetition {} is too large", show(c.repeat)));
        }
        match c.stop {
            Some(stop) => {
                if stop < from || stop > to {
                    return Err(format!("{what} {} is outside {}", show(stop), range()));
                }
                if c.start.saturating_add(c.repeat) > stop {
                    return Err(format!(
                        "{what} range {}..{} is empty or reversed",
                        show(c.start),
                        show(stop)
                    ));
                }
            }
            None => {
                if end_of_month && c.start < from + c.repeat {
                    return Err(format!(
                        "{what} ~{}/{} repeats past the end of the month",
                        c.start, c.repeat
                    ));
                }
                if !end_of_month && c.start.saturating_add(c.repeat) > to {
                    return Err(format!(
                        "{what} {}/{} never repeats within {}",
                        show(c.start),
                        show(c.repeat),
                        range()
                    ));
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Normalized form

fn format_value(v: u32, width: usize, usec: bool) -> String {
    if usec {
        let (s, frac) = (v / USEC_PER_SEC, v % USEC_PER_SEC);
        if frac > 0 {
            format!("{s:0width$}.{frac:06}")
        } else {
            format!("{s:0width$}")
        }
    } else {
        format!("{v:0width$}")
    }
}

fn format_chain(
    f: &mut fmt::Formatter<'_>,
    width: usize,
    chain: Option<&[Component]>,
    usec: bool,
) -> fmt::Result {
    let Some(chain) = chain else {
        return f.write_str("*");
    };
    let unit = if usec { USEC_PER_SEC } else { 1 };
    if usec
        && chain
            == [Component {
                start: 0,
                stop: None,
                repeat: USEC_PER_SEC,
            }]
    {
        return f.write_str("*");
    }
    for (i, c) in chain.iter().enumerate() {
        if i > 0 {
            f.write_str(",")?;
        }
        f.write_str(&format_value(c.start, width, usec))?;
        if let Some(stop) = c.stop {
            write!(f, "..{}", format_value(stop, width, usec))?;
        }
        if c.repeat > 0 && !(c.stop.is_some() && c.repeat == unit) {
            write!(f, "/{}", format_value(c.repeat, 0, usec))?;
        }
    }
    Ok(())
}

const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

fn format_weekdays(f: &mut fmt::Formatter<'_>, bits: u8) -> fmt::Result {
    let mut first = true;
    let mut x = 0;
    while x < 7 {
        if bits & (1 << x) == 0 {
            x += 1;
            continue;
        }
        let mut end = x;
        while end + 1 < 7 && bits & (1 << (end + 1)) != 0 {
            end += 1;
        }
        if !first {
            f.write_str(",")?;
        }
        first = false;
        f.write_str(DAY_NAMES[x])?;
        match end - x {
            0 => {}
            1 => write!(f, ",{}", DAY_NAMES[end])?,
            _ => write!(f, "..{}", DAY_NAMES[end])?,
        }
        x = end + 1;
    }
    Ok(())
}

impl fmt::Display for CalendarSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(bits) = self.weekdays {
            format_weekdays(f, bits)?;
            f.write_str(" ")?;
        }
        format_chain(f, 4, self.year.as_deref(), false)?;
        f.write_str("-")?;
        format_chain(f, 2, self.month.as_deref(), false)?;
        f.write_str(if self.end_of_month { "~" } else { "-" })?;
        format_chain(f, 2, self.day.as_deref(), false)?;
        f.write_str(" ")?;
        format_chain(f, 2, self.hour.as_deref(), false)?;
        f.write_str(":")?;
        format_chain(f, 2, self.minute.as_deref(), false)?;
        f.write_str(":")?;
        format_chain(f, 2, Some(&self.second), true)?;
        match &self.zone {
            Zone::Local => Ok(()),
            Zone::Utc => f.write_str(" UTC"),
            Zone::Named { name, .. } => write!(f, " {name}"),
        }
    }
}

#[cfg(test)]
#[path = "calendar_tests.rs"]
mod tests;

//! Table tests against systemd's own vectors: the normalized forms in systemd.time(7) and
//! src/test/test-calendarspec.c (`test_one`), and the next elapses of `test_next` (local
//! zone `""` there is UTC), plus DST cases of our own for Europe/Berlin and America/New_York.
//!
//! Over 600 lines because it is a table: one row per systemd vector.

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::CalendarSpec;

/// (input, normalized form).
const NORMALIZED: &[(&str, &str)] = &[
    // test-calendarspec.c
    ("Sat,Thu,Mon-Wed,Sat-Sun", "Mon..Thu,Sat,Sun *-*-* 00:00:00"),
    (
        "Sat,Thu,Mon..Wed,Sat..Sun",
        "Mon..Thu,Sat,Sun *-*-* 00:00:00",
    ),
    ("Mon,Sun 12-*-* 2,1:23", "Mon,Sun 2012-*-* 01,02:23:00"),
    ("Wed *-1", "Wed *-*-01 00:00:00"),
    ("Wed-Wed,Wed *-1", "Wed *-*-01 00:00:00"),
    ("Wed..Wed,Wed *-1", "Wed *-*-01 00:00:00"),
    ("Wed, 17:48", "Wed *-*-* 17:48:00"),
    ("Wednesday,", "Wed *-*-* 00:00:00"),
    ("Wed-Sat,Tue 12-10-15 1:2:3", "Tue..Sat 2012-10-15 01:02:03"),
    (
        "Wed..Sat,Tue 12-10-15 1:2:3",
        "Tue..Sat 2012-10-15 01:02:03",
    ),
    ("*-*-7 0:0:0", "*-*-07 00:00:00"),
    ("10-15", "*-10-15 00:00:00"),
    ("monday *-12-* 17:00", "Mon *-12-* 17:00:00"),
    ("Mon,Fri *-*-3,1,2 *:30:45", "Mon,Fri *-*-01,02,03 *:30:45"),
    ("12,14,13,12:20,10,30", "*-*-* 12,13,14:10,20,30:00"),
    ("mon,fri *-1/2-1,3 *:30:45", "Mon,Fri *-01/2-01,03 *:30:45"),
    ("03-05 08:05:40", "*-03-05 08:05:40"),
    ("08:05:40", "*-*-* 08:05:40"),
    ("05:40", "*-*-* 05:40:00"),
    ("Sat,Sun 12-05 08:05:40", "Sat,Sun *-12-05 08:05:40"),
    ("Sat,Sun 08:05:40", "Sat,Sun *-*-* 08:05:40"),
    ("2003-03-05 05:40", "2003-03-05 05:40:00"),
    ("2003-03-05", "2003-03-05 00:00:00"),
    ("03-05", "*-03-05 00:00:00"),
    ("hourly", "*-*-* *:00:00"),
    ("daily", "*-*-* 00:00:00"),
    ("monthly", "*-*-01 00:00:00"),
    ("weekly", "Mon *-*-* 00:00:00"),
    ("minutely", "*-*-* *:*:00"),
    ("quarterly", "*-01,04,07,10-01 00:00:00"),
    ("semi-annually", "*-01,07-01 00:00:00"),
    ("annually", "*-01-01 00:00:00"),
    ("*:2/3", "*-*-* *:02/3:00"),
    ("2015-10-25 01:00:00 uTc", "2015-10-25 01:00:00 UTC"),
    (
        "2015-10-25 01:00:00 Asia/Vladivostok",
        "2015-10-25 01:00:00 Asia/Vladivostok",
    ),
    (
        "weekly Pacific/Auckland",
        "Mon *-*-* 00:00:00 Pacific/Auckland",
    ),
    ("2016-03-27 03:17:00.4200005", "2016-03-27 03:17:00.420001"),
    ("2016-03-27 03:17:00/0.42", "2016-03-27 03:17:00/0.420000"),
    ("9..11,13:00,30", "*-*-* 09..11,13:00,30:00"),
    ("1..3-1..3 1..3:1..3", "*-01..03-01..03 01..03:01..03:00"),
    ("00:00:1.125..2.125", "*-*-* 00:00:01.125000..02.125000"),
    ("00:00:1.0..3.8", "*-*-* 00:00:01..03"),
    ("00:00:01..03", "*-*-* 00:00:01..03"),
    ("00:00:01/2,02..03", "*-*-* 00:00:01/2,02..03"),
    ("*-*~1 Utc", "*-*~01 00:00:00 UTC"),
    ("*-*~05,3 ", "*-*~03,05 00:00:00"),
    ("*-*~* 00:00:00", "*-*-* 00:00:00"),
    ("Monday", "Mon *-*-* 00:00:00"),
    ("Monday *-*-*", "Mon *-*-* 00:00:00"),
    ("*-*-*", "*-*-* 00:00:00"),
    ("*:*:*", "*-*-* *:*:*"),
    ("*:*", "*-*-* *:*:00"),
    ("12:*", "*-*-* 12:*:00"),
    ("*:30", "*-*-* *:30:00"),
    ("93..00-*-*", "1993..2000-*-* 00:00:00"),
    ("00..07-*-*", "2000..2007-*-* 00:00:00"),
    ("*:20..39/5", "*-*-* *:20..35/5:00"),
    ("00:00:20..40/1", "*-*-* 00:00:20..40"),
    ("*~03/1,03..05", "*-*~03/1,03..05 00:00:00"),
    ("@1493187147", "2017-04-26 06:12:27 UTC"),
    ("@1493187147 UTC", "2017-04-26 06:12:27 UTC"),
    ("@0", "1970-01-01 00:00:00 UTC"),
    ("@0 UTC", "1970-01-01 00:00:00 UTC"),
    ("*:05..05", "*-*-* *:05:00"),
    ("*:05..10/6", "*-*-* *:05:00"),
    // systemd.time(7), "CALENDAR EVENTS"
    ("12..14:10,20,30", "*-*-* 12..14:10,20,30:00"),
    (
        "05:40:23.4200004/3.1700005",
        "*-*-* 05:40:23.420000/3.170001",
    ),
    ("2003-02..04-05", "2003-02..04-05 00:00:00"),
    ("2003-03-05 05:40 UTC", "2003-03-05 05:40:00 UTC"),
    ("daily UTC", "*-*-* 00:00:00 UTC"),
    ("yearly", "*-01-01 00:00:00"),
    ("semiannually", "*-01,07-01 00:00:00"),
    (
        "Thu,Fri 2012-*-1,5 11:12:13",
        "Thu,Fri 2012-*-01,05 11:12:13",
    ),
    ("*-*-* *:*:00", "*-*-* *:*:00"),
    ("*-02~03", "*-02~03 00:00:00"),
    ("Mon *-05~07/1", "Mon *-05~07/1 00:00:00"),
    ("Mon..Fri *-*-* 08:00", "Mon..Fri *-*-* 08:00:00"),
    ("*:0/15", "*-*-* *:00/15:00"),
    ("2024-*-01/2", "2024-*-01/2 00:00:00"),
    ("Sat,Sun 12:00", "Sat,Sun *-*-* 12:00:00"),
    ("*-*-* 06:00 Europe/Berlin", "*-*-* 06:00:00 Europe/Berlin"),
    (
        "Fri *-*-13 12:00 America/New_York",
        "Fri *-*-13 12:00:00 America/New_York",
    ),
    ("Mon,Tue,Wed,Thu,Fri,Sat,Sun 3:0", "*-*-* 03:00:00"),
    ("Mon,Wed,Fri", "Mon,Wed,Fri *-*-* 00:00:00"),
    ("Mon,Tue", "Mon,Tue *-*-* 00:00:00"),
];

/// (expression, local zone, after in µs since the epoch, expected next elapse in µs).
const NEXT_USEC: &[(&str, &str, i64, Option<i64>)] = &[
    ("2016-03-27 03:17:00", "UTC", 12345, Some(1459048620000000)),
    ("2016-03-27 03:17:00", "CET", 12345, Some(1459041420000000)),
    // 03:17 does not exist in EET that day (03:00 jumps to 04:00).
    ("2016-03-27 03:17:00", "EET", 12345, None),
    (
        "2016-03-27 03:17:00 UTC",
        "UTC",
        12345,
        Some(1459048620000000),
    ),
    (
        "2016-03-27 03:17:00 UTC",
        "CET",
        12345,
        Some(1459048620000000),
    ),
    (
        "2016-03-27 03:17:00 UTC",
        "EET",
        12345,
        Some(1459048620000000),
    ),
    (
        "2016-03-27 03:17:00.420000001 UTC",
        "EET",
        12345,
        Some(1459048620420000),
    ),
    (
        "2016-03-27 03:17:00.4200005 UTC",
        "EET",
        12345,
        Some(1459048620420001),
    ),
    (
        "2015-11-13 09:11:23.42",
        "EET",
        12345,
        Some(1447398683420000),
    ),
    (
        "2015-11-13 09:11:23.42/1.77",
        "EET",
        1447398683420000,
        Some(1447398685190000),
    ),
    (
        "2015-11-13 09:11:23.42/1.77",
        "EET",
        1447398683419999,
        Some(1447398683420000),
    ),
    (
        "Sun 16:00:00",
        "CET",
        1456041600123456,
        Some(1456066800000000),
    ),
    ("*-04-31", "UTC", 12345, None),
    ("2016-02~01 UTC", "UTC", 12345, Some(1456704000000000)),
    (
        "Mon 2017-05~01..07 UTC",
        "UTC",
        12345,
        Some(1496016000000000),
    ),
    ("Mon 2017-05~07/1 UTC", "UTC", 12345, Some(1496016000000000)),
    (
        "*-*-01/5 04:00:00 UTC",
        "UTC",
        1646010000000000,
        Some(1646107200000000),
    ),
    (
        "*-01/7-01 04:00:00 UTC",
        "UTC",
        1664607600000000,
        Some(1672545600000000),
    ),
    (
        "2017-08-06 9,11,13,15,17:00 UTC",
        "UTC",
        1502029800000000,
        Some(1502031600000000),
    ),
    (
        "2017-08-06 9..17/2:00 UTC",
        "UTC",
        1502029800000000,
        Some(1502031600000000),
    ),
    (
        "2016-12-* 3..21/6:00 UTC",
        "UTC",
        1482613200000001,
        Some(1482634800000000),
    ),
    (
        "2017-09-24 03:30:00 Pacific/Auckland",
        "UTC",
        12345,
        Some(1506177000000000),
    ),
    // 02:30 does not exist in Auckland on 2017-09-24 (spring forward).
    ("2017-09-24 02:30:00 Pacific/Auckland", "UTC", 12345, None),
    (
        "2017-04-02 02:30:00 Pacific/Auckland",
        "UTC",
        12345,
        Some(1491053400000000),
    ),
    // Fall back: 02:30 happens twice, the expression elapses once.
    (
        "2017-04-02 02:30:00 Pacific/Auckland",
        "UTC",
        1491053400000000,
        None,
    ),
    (
        "2017-04-02 03:30:00 Pacific/Auckland",
        "UTC",
        12345,
        Some(1491060600000000),
    ),
    (
        "2017-09-09 20:42:00 Pacific/Auckland",
        "UTC",
        12345,
        Some(1504946520000000),
    ),
    (
        "2017-09-09 20:42:00 Pacific/Auckland",
        "EET",
        12345,
        Some(1504946520000000),
    ),
    (
        "Sun *-*-* 01:00:00 Europe/Dublin",
        "UTC",
        1616412478000000,
        Some(1617494400000000),
    ),
    (
        "Sun *-*-* 01:00:00 Europe/Dublin",
        "Europe/London",
        1616412478000000,
        Some(1617494400000000),
    ),
];

/// (expression, local zone, after, expected next elapse), RFC 3339 instants.
const NEXT_RFC3339: &[(&str, &str, &str, Option<&str>)] = &[
    (
        "daily",
        "UTC",
        "2024-05-10T13:00:00Z",
        Some("2024-05-11T00:00:00Z"),
    ),
    // Strictly after: at exactly an elapse, the next one.
    (
        "daily",
        "UTC",
        "2024-05-11T00:00:00Z",
        Some("2024-05-12T00:00:00Z"),
    ),
    (
        "daily",
        "UTC",
        "2024-05-10T23:59:59.999999999Z",
        Some("2024-05-11T00:00:00Z"),
    ),
    (
        "hourly",
        "UTC",
        "2024-05-10T13:00:00Z",
        Some("2024-05-10T14:00:00Z"),
    ),
    (
        "minutely",
        "UTC",
        "2024-05-10T13:00:30Z",
        Some("2024-05-10T13:01:00Z"),
    ),
    (
        "weekly",
        "UTC",
        "2024-05-10T13:00:00Z",
        Some("2024-05-13T00:00:00Z"),
    ),
    (
        "monthly",
        "UTC",
        "2024-05-10T13:00:00Z",
        Some("2024-06-01T00:00:00Z"),
    ),
    (
        "quarterly",
        "UTC",
        "2024-05-10T13:00:00Z",
        Some("2024-07-01T00:00:00Z"),
    ),
    (
        "semiannually",
        "UTC",
        "2024-08-10T13:00:00Z",
        Some("2025-01-01T00:00:00Z"),
    ),
    (
        "yearly",
        "UTC",
        "2024-05-10T13:00:00Z",
        Some("2025-01-01T00:00:00Z"),
    ),
    (
        "*:0/15",
        "UTC",
        "2024-05-10T13:16:00Z",
        Some("2024-05-10T13:30:00Z"),
    ),
    (
        "*:0/15",
        "UTC",
        "2024-05-10T13:50:00Z",
        Some("2024-05-10T14:00:00Z"),
    ),
    (
        "*:*:0/2",
        "UTC",
        "2024-05-10T13:16:01Z",
        Some("2024-05-10T13:16:02Z"),
    ),
    (
        "Mon..Fri *-*-* 08:00",
        "UTC",
        "2024-05-10T09:00:00Z",
        Some("2024-05-13T08:00:00Z"),
    ),
    (
        "Sat,Sun 12:00",
        "UTC",
        "2024-05-10T09:00:00Z",
        Some("2024-05-11T12:00:00Z"),
    ),
    (
        "2024-*-01/2",
        "UTC",
        "2024-05-02T00:00:00Z",
        Some("2024-05-03T00:00:00Z"),
    ),
    ("2024-*-01/2", "UTC", "2024-12-31T00:00:00Z", None),
    // The third last day of February, leap and common years.
    (
        "*-02~03",
        "UTC",
        "2024-01-01T00:00:00Z",
        Some("2024-02-27T00:00:00Z"),
    ),
    (
        "*-02~03",
        "UTC",
        "2024-03-01T00:00:00Z",
        Some("2025-02-26T00:00:00Z"),
    ),
    // The last Monday of May.
    (
        "Mon *-05~07/1",
        "UTC",
        "2024-01-01T00:00:00Z",
        Some("2024-05-27T00:00:00Z"),
    ),
    (
        "*-*~01",
        "UTC",
        "2024-04-30T00:00:00Z",
        Some("2024-05-31T00:00:00Z"),
    ),
    (
        "*-*-31",
        "UTC",
        "2024-04-01T00:00:00Z",
        Some("2024-05-31T00:00:00Z"),
    ),
    (
        "*-02-29",
        "UTC",
        "2024-03-01T00:00:00Z",
        Some("2028-02-29T00:00:00Z"),
    ),
    (
        "Fri *-*-13",
        "UTC",
        "2024-01-01T00:00:00Z",
        Some("2024-09-13T00:00:00Z"),
    ),
    (
        "2199-12-31 23:59:59",
        "UTC",
        "2024-01-01T00:00:00Z",
        Some("2199-12-31T23:59:59Z"),
    ),
    ("2003-03-05", "UTC", "2024-01-01T00:00:00Z", None),
    // Local zone as an argument.
    (
        "*-*-* 06:00",
        "Europe/Berlin",
        "2024-07-01T00:00:00Z",
        Some("2024-07-01T04:00:00Z"),
    ),
    (
        "*-*-* 06:00",
        "America/New_York",
        "2024-07-01T00:00:00Z",
        Some("2024-07-01T10:00:00Z"),
    ),
    (
        "*-*-* 06:00 Europe/Berlin",
        "America/New_York",
        "2024-01-10T00:00:00Z",
        Some("2024-01-10T05:00:00Z"),
    ),
    // Europe/Berlin spring forward, 2024-03-31 02:00 CET -> 03:00 CEST: 02:30 is skipped.
    (
        "*-*-* 02:30 Europe/Berlin",
        "UTC",
        "2024-03-31T00:00:00Z",
        Some("2024-04-01T00:30:00Z"),
    ),
    (
        "*:0/15 Europe/Berlin",
        "UTC",
        "2024-03-31T00:50:00Z",
        Some("2024-03-31T01:00:00Z"),
    ),
    (
        "*-*-* 03:00 Europe/Berlin",
        "UTC",
        "2024-03-31T00:00:00Z",
        Some("2024-03-31T01:00:00Z"),
    ),
    // Europe/Berlin fall back, 2024-10-27 03:00 CEST -> 02:00 CET: 02:30 elapses once.
    (
        "*-*-* 02:30 Europe/Berlin",
        "UTC",
        "2024-10-26T23:00:00Z",
        Some("2024-10-27T00:30:00Z"),
    ),
    (
        "*-*-* 02:30 Europe/Berlin",
        "UTC",
        "2024-10-27T00:30:00Z",
        Some("2024-10-28T01:30:00Z"),
    ),
    (
        "*-*-* 02:30 Europe/Berlin",
        "UTC",
        "2024-10-27T01:10:00Z",
        Some("2024-10-28T01:30:00Z"),
    ),
    (
        "hourly Europe/Berlin",
        "UTC",
        "2024-10-27T00:30:00Z",
        Some("2024-10-27T02:00:00Z"),
    ),
    (
        "daily Europe/Berlin",
        "UTC",
        "2024-10-26T12:00:00Z",
        Some("2024-10-26T22:00:00Z"),
    ),
    (
        "daily Europe/Berlin",
        "UTC",
        "2024-10-26T22:00:00Z",
        Some("2024-10-27T23:00:00Z"),
    ),
    // America/New_York, 2024-03-10 02:00 EST -> 03:00 EDT and 2024-11-03 02:00 EDT -> 01:00 EST.
    (
        "*-*-* 02:15",
        "America/New_York",
        "2024-03-10T05:00:00Z",
        Some("2024-03-11T06:15:00Z"),
    ),
    (
        "*-*-* 01:30",
        "America/New_York",
        "2024-11-03T04:00:00Z",
        Some("2024-11-03T05:30:00Z"),
    ),
    (
        "*-*-* 01:30",
        "America/New_York",
        "2024-11-03T05:30:00Z",
        Some("2024-11-04T06:30:00Z"),
    ),
];

/// Expressions systemd refuses.
const INVALID: &[&str] = &[
    "test",
    " utc",
    "    ",
    "",
    "7",
    "121212:1:2",
    "2000-03-05.23 00:00:00",
    "2000-03-05 00:00.1:00",
    "00:00:00/0.00000001",
    "00:00:00.0..00.9",
    "2016~11-22",
    "*-*~5/5",
    "Monday.. 12:00",
    "Monday..",
    "-00:+00/-5",
    "00:+00/-5",
    "2016- 11- 24 12: 30: 00",
    "*~29",
    "*~16..31",
    "12..1/2-*",
    "20/4:00",
    "00:00/60",
    "00:00:2300",
    "00:00:18446744073709551615",
    "@88588582097858858",
    "Fri..Mon",
    "Sunny",
    "*-*-*/2",
    "25:00",
    "*-13-01",
    "1969-01-01",
    "daily Mars/Olympus",
];

fn zone(name: &str) -> TimeZone {
    match TimeZone::get(name) {
        Ok(tz) => tz,
        Err(e) => panic!("time zone {name}: {e}"),
    }
}

fn spec(expr: &str) -> CalendarSpec {
    match CalendarSpec::parse(expr) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

fn ts(s: &str) -> Timestamp {
    match s.parse() {
        Ok(t) => t,
        Err(e) => panic!("{s}: {e}"),
    }
}

fn usec(us: i64) -> Timestamp {
    match Timestamp::from_microsecond(us) {
        Ok(t) => t,
        Err(e) => panic!("{us}: {e}"),
    }
}

#[test]
fn normalized_forms_match_systemd() {
    assert!(NORMALIZED.len() + NEXT_USEC.len() >= 50);
    let mut failures = Vec::new();
    for &(input, want) in NORMALIZED {
        let got = spec(input).to_string();
        if got != want {
            failures.push(format!("{input:?}: got {got:?}, want {want:?}"));
            continue;
        }
        // The normalized form parses back to itself.
        let again = spec(&got).to_string();
        if again != got {
            failures.push(format!("{input:?}: {got:?} re-normalizes to {again:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn next_elapses_match_systemd() {
    let mut failures = Vec::new();
    for &(expr, local, after, want) in NEXT_USEC {
        let got = spec(expr).next_elapse_in(usec(after), &zone(local));
        let want = want.map(usec);
        if got != want {
            failures.push(format!(
                "{expr:?} in {local} after {after}: got {got:?}, want {want:?}"
            ));
        }
    }
    for &(expr, local, after, want) in NEXT_RFC3339 {
        let got = spec(expr).next_elapse_in(ts(after), &zone(local));
        let want = want.map(ts);
        if got != want {
            failures.push(format!(
                "{expr:?} in {local} after {after}: got {got:?}, want {want:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn invalid_expressions_are_refused_with_the_expression_named() {
    let mut accepted = Vec::new();
    for &expr in INVALID {
        match CalendarSpec::parse(expr) {
            Ok(s) => accepted.push(format!("{expr:?} -> {s}")),
            Err(e) => {
                assert_eq!(e.expr, expr);
                let msg = e.to_string();
                assert!(msg.contains(&format!("{expr:?}")), "{msg}");
                assert!(!e.reason.is_empty());
            }
        }
    }
    assert!(accepted.is_empty(), "accepted: {}", accepted.join("\n"));
}

#[test]
fn hourly_elapses_are_one_hour_apart() {
    // systemd's test_hourly_bug_4031.
    let s = spec("hourly");
    let now = ts("2024-05-10T13:27:11.5Z");
    let utc = TimeZone::UTC;
    let all = s.elapses_in(now, &utc, 3);
    assert_eq!(
        all,
        vec![
            ts("2024-05-10T14:00:00Z"),
            ts("2024-05-10T15:00:00Z"),
            ts("2024-05-10T16:00:00Z")
        ]
    );
}

#[test]
fn elapses_are_strictly_increasing_across_dst_in_every_zone() {
    let utc = TimeZone::UTC;
    for expr in [
        "*:0/10 Europe/Berlin",
        "*:0/10 America/New_York",
        "*:0/10 Pacific/Auckland",
        "*:0/10 Europe/Dublin",
        "*:0/10 Australia/Lord_Howe",
    ] {
        let s = spec(expr);
        let all = s.elapses_in(ts("2024-01-01T00:00:00Z"), &utc, 6 * 24 * 366);
        assert_eq!(all.len(), 6 * 24 * 366, "{expr}");
        for w in all.windows(2) {
            assert!(w[0] < w[1], "{expr}: {} then {}", w[0], w[1]);
            // Never more than the spring-forward gap plus one step apart, and never closer
            // than one step.
            let gap = w[1].duration_since(w[0]).as_secs();
            assert!(
                (600..=600 + 3600).contains(&gap),
                "{expr}: {} then {}",
                w[0],
                w[1]
            );
        }
    }
}

#[test]
fn error_messages_say_what_is_wrong() {
    let e = CalendarSpec::parse("25:00").err();
    assert_eq!(
        e.map(|e| e.to_string()),
        Some("invalid calendar expression \"25:00\": hour 25 is outside 0..23".to_string())
    );
    let e = CalendarSpec::parse("12:00 Mars/Olympus").err();
    assert_eq!(
        e.map(|e| e.reason),
        Some("unknown time zone \"Mars/Olympus\"".to_string())
    );
    let e = CalendarSpec::parse("Sunny 12:00").err();
    assert!(e.is_some_and(|e| e.reason.contains("Sunny")));
}

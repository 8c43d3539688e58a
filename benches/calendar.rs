//! The next elapse of 1,000 `OnCalendar=` expressions (the daemon recomputes a timer's next
//! elapse whenever it fires or its unit changes). Target (issue 12): under 5 ms for the
//! 1,000 on a 2-core machine.
//!
//! Run: `cargo bench --bench calendar`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use gitproc::timer::calendar::CalendarSpec;
use jiff::Timestamp;
use jiff::tz::TimeZone;

/// A varied set: shorthands, weekday lists, repetitions, end of month, zones with DST.
fn expression(i: usize) -> String {
    let zones = [
        "",
        " UTC",
        " Europe/Berlin",
        " America/New_York",
        " Pacific/Auckland",
    ];
    let zone = zones[i % zones.len()];
    let body = match i % 12 {
        0 => [
            "minutely",
            "hourly",
            "daily",
            "weekly",
            "monthly",
            "quarterly",
            "yearly",
        ][i / 12 % 7]
            .to_string(),
        1 => format!("*:0/{}", 1 + i % 30),
        2 => format!("Mon..Fri *-*-* {:02}:{:02}", i % 24, i % 60),
        3 => format!("Sat,Sun {:02}:00", i % 24),
        4 => format!("*-*-01/{} 04:00:00", 1 + i % 10),
        5 => format!("*-02~0{}", 1 + i % 9),
        6 => "Mon *-05~07/1".to_string(),
        7 => format!("*-*-* {}..{}/2:{:02}:30", i % 6, 12 + i % 12, i % 60),
        8 => format!("Fri *-*-13 {:02}:00", i % 24),
        9 => format!("2030-*-* *:*:{:02}.5/7", i % 50),
        10 => format!("*:*:0/{}", 1 + i % 59),
        _ => format!("*-{:02}-{:02} 02:30", 1 + i % 12, 1 + i % 28),
    };
    format!("{body}{zone}")
}

fn bench(c: &mut Criterion) {
    let specs: Vec<CalendarSpec> = (0..1000)
        .map(|i| match CalendarSpec::parse(&expression(i)) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        })
        .collect();
    let local = match TimeZone::get("Europe/Berlin") {
        Ok(tz) => tz,
        Err(e) => panic!("{e}"),
    };
    let now = match "2026-03-29T00:30:00Z".parse::<Timestamp>() {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    };
    c.bench_function("next_elapse_1000", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for s in &specs {
                if s.next_elapse_in(black_box(now), &local).is_some() {
                    n += 1;
                }
            }
            black_box(n)
        })
    });
    let texts: Vec<String> = (0..1000).map(expression).collect();
    c.bench_function("parse_1000", |b| {
        b.iter(|| {
            for t in &texts {
                black_box(CalendarSpec::parse(black_box(t)).is_ok());
            }
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

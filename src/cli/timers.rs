//! Timers on the command line: `list-timers` (systemctl's columns), the timer lines of
//! `status NAME.timer`, and `check --calendar` (`systemd-analyze calendar`).

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::Value;

use super::output::human_span;
use super::{GlobalArgs, ListTimersArgs, exit, socket_path};
use crate::control::client;
use crate::control::protocol::Verb;
use crate::timer::calendar::CalendarSpec;

/// `Wed 2026-12-02 06:00:00 UTC`, in `tz`, as systemd prints timestamps.
fn stamp(t: Timestamp, tz: &TimeZone) -> String {
    t.to_zoned(tz.clone())
        .strftime("%a %Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

fn from_secs(secs: f64) -> Option<Timestamp> {
    Timestamp::from_microsecond((secs * 1e6) as i64).ok()
}

/// `1min 35s left` / `5s ago` relative to `now`.
fn relative(t: Timestamp, now: Timestamp) -> String {
    let d = t.duration_since(now);
    let secs = d.unsigned_abs().as_secs();
    if d.is_negative() {
        format!("{} ago", human_span(secs))
    } else {
        format!("{} left", human_span(secs))
    }
}

/// `gitproc list-timers [--all] [--json]`: one row per timer, soonest first.
pub fn list(global: &GlobalArgs, args: &ListTimersArgs) -> anyhow::Result<i32> {
    let reply = client::call(&socket_path(global)?, Verb::Status { units: vec![] })?;
    if !reply.ok {
        eprintln!(
            "gitproc: {}",
            reply.error.as_deref().unwrap_or("list-timers failed")
        );
        return Ok(exit::FAILURE);
    }
    let mut timers: Vec<&Value> = reply.data["units"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|u| u["kind"].as_str() == Some("timer"))
        .filter(|u| args.all || u["active_state"].as_str() == Some("active"))
        .collect();
    timers.sort_by(|a, b| {
        let key = |u: &Value| u["next_elapse"].as_f64().unwrap_or(f64::INFINITY);
        key(a).total_cmp(&key(b))
    });
    if let Some(format) = args.json {
        let rows: Vec<Value> = timers
            .iter()
            .map(|u| {
                serde_json::json!({
                    "unit": u["name"],
                    "activates": u["triggers"],
                    "next": u["next_elapse"],
                    "last": u["last_trigger"],
                    "active_state": u["active_state"],
                    "sub_state": u["sub_state"],
                })
            })
            .collect();
        println!("{}", format.render(&rows)?);
        return Ok(exit::OK);
    }
    let tz = TimeZone::try_system().unwrap_or(TimeZone::UTC);
    let now = Timestamp::now();
    let cell = |v: &Value| -> (String, String) {
        match v.as_f64().and_then(from_secs) {
            Some(t) => (stamp(t, &tz), relative(t, now)),
            None => ("-".into(), "-".into()),
        }
    };
    let mut rows: Vec<[String; 6]> = vec![[
        "NEXT".into(),
        "LEFT".into(),
        "LAST".into(),
        "PASSED".into(),
        "UNIT".into(),
        "ACTIVATES".into(),
    ]];
    for u in &timers {
        let (next, left) = cell(&u["next_elapse"]);
        let (last, passed) = cell(&u["last_trigger"]);
        rows.push([
            next,
            left,
            last,
            passed,
            u["name"].as_str().unwrap_or("?").to_string(),
            u["triggers"].as_str().unwrap_or("-").to_string(),
        ]);
    }
    let mut widths = [0usize; 6];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", line.join(" ").trim_end());
    }
    println!();
    println!(
        "{} timers listed.{}",
        timers.len(),
        if args.all {
            ""
        } else {
            "\nPass --all to see loaded but inactive timers, too."
        }
    );
    Ok(exit::OK)
}

/// The timer lines of `status NAME.timer`, after `Active:`.
pub fn print_status_lines(u: &Value) {
    let tz = TimeZone::try_system().unwrap_or(TimeZone::UTC);
    let now = Timestamp::now();
    if let Some(t) = u["next_elapse"].as_f64().and_then(from_secs) {
        println!("    Trigger: {}; {}", stamp(t, &tz), relative(t, now));
    } else {
        println!("    Trigger: n/a");
    }
    if let Some(t) = u["last_trigger"].as_f64().and_then(from_secs) {
        println!("   Last ran: {}; {}", stamp(t, &tz), relative(t, now));
    }
    println!("   Triggers: ● {}", u["triggers"].as_str().unwrap_or("?"));
}

/// `gitproc check --calendar EXPR... [--iterations N]`, like `systemd-analyze calendar`:
/// the normalized form and the next `iterations` elapses. Exit 1 on a bad expression.
pub fn calendar(exprs: &[String], iterations: usize) -> i32 {
    let tz = TimeZone::try_system().unwrap_or(TimeZone::UTC);
    let now = Timestamp::now();
    let mut code = exit::OK;
    for (i, expr) in exprs.iter().enumerate() {
        if i > 0 {
            println!();
        }
        let spec = match CalendarSpec::parse(expr) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("gitproc check: {e}");
                code = exit::FAILURE;
                continue;
            }
        };
        println!("  Original form: {expr}");
        println!("Normalized form: {spec}");
        let elapses = spec.elapses_in(now, &tz, iterations.max(1));
        if elapses.is_empty() {
            println!("    Next elapse: never");
        }
        for (n, t) in elapses.into_iter().enumerate() {
            let label = if n == 0 {
                "    Next elapse".to_string()
            } else {
                format!("{:>15}", format!("Iteration #{}", n + 1))
            };
            println!("{label}: {}", stamp(t, &tz));
            if tz != TimeZone::UTC {
                println!("       (in UTC): {}", stamp(t, &TimeZone::UTC));
            }
            println!("       From now: {}", relative(t, now));
        }
    }
    code
}

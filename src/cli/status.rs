//! `status` and `list`: what the daemon supervises, systemctl-style.

use std::collections::BTreeSet;

use serde_json::Value;

use super::output::{human_span, paint, state_dot, use_color, utc};
use super::{
    GlobalArgs, JsonFormat, ListArgs, StatusArgs, exit, socket_path, state_dir, unit_name,
};
use crate::control::client;
use crate::control::protocol::Verb;
use crate::sys::procstat::read_stat;

pub fn run(global: &GlobalArgs, args: &StatusArgs) -> anyhow::Result<i32> {
    let units: Vec<String> = args.units.iter().map(|u| unit_name(u)).collect();
    if let Some(format) = args.json
        && units.is_empty()
    {
        return print_json_overview(global, format);
    }
    let reply = client::call(
        &socket_path(global)?,
        Verb::Status {
            units: units.clone(),
        },
    )?;
    if !reply.ok && reply.data.is_null() {
        eprintln!(
            "gitproc: {}",
            reply.error.as_deref().unwrap_or("status failed")
        );
        return Ok(if reply.exit == 0 {
            exit::FAILURE
        } else {
            reply.exit
        });
    }
    if let Some(format) = args.json {
        println!("{}", format.render(&reply.data)?);
    } else if units.is_empty() {
        print_summary(&reply.data);
    } else {
        let logs_dir = state_dir(global)?.join("logs");
        let color = use_color();
        let mut first = true;
        for unit in reply.data["units"].as_array().into_iter().flatten() {
            if !first {
                println!();
            }
            first = false;
            print_unit(unit, color);
            let name = unit["name"].as_str().unwrap_or("");
            if args.lines > 0
                && let Ok(lines) = crate::logs::tail(&logs_dir, name, args.lines)
                && !lines.is_empty()
            {
                println!();
                for line in lines {
                    println!("{line}");
                }
            }
        }
    }
    if let Some(error) = &reply.error {
        eprintln!("gitproc: {error}");
    }
    Ok(status_exit(&units, &reply.data, reply.exit))
}

/// `status --json` of every unit. One line is the daemon's own bytes, written as they
/// came; pretty is that JSON re-indented as it is read (the same output as printing a
/// parsed tree, in a third of the time for 100 units).
fn print_json_overview(global: &GlobalArgs, format: JsonFormat) -> anyhow::Result<i32> {
    use std::io::Write;
    let reply = client::call_raw(&socket_path(global)?, Verb::Status { units: vec![] })?;
    if let Some(data) = &reply.data {
        let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
        if format.is_pretty() {
            let mut from = serde_json::Deserializer::from_str(data.get());
            serde_transcode::transcode(&mut from, &mut serde_json::Serializer::pretty(&mut out))?;
        } else {
            out.write_all(data.get().as_bytes())?;
        }
        writeln!(out)?;
        out.flush()?;
    }
    match &reply.error {
        Some(error) => eprintln!("gitproc: {error}"),
        None if !reply.ok => eprintln!("gitproc: status failed"),
        None => {}
    }
    Ok(if !reply.ok && reply.exit == 0 {
        exit::FAILURE
    } else {
        reply.exit
    })
}

/// systemctl's rule: 4 when a named unit is unknown, 3 when one is not active, else 0.
fn status_exit(named: &[String], data: &Value, reply_exit: i32) -> i32 {
    if named.is_empty() {
        return reply_exit;
    }
    let known: BTreeSet<&str> = data["units"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u["name"].as_str())
        .collect();
    if named.iter().any(|n| !known.contains(n.as_str())) {
        return exit::NO_SUCH_UNIT;
    }
    let all_active = data["units"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|u| matches!(u["active_state"].as_str(), Some("active" | "reloading")));
    if all_active {
        exit::OK
    } else {
        exit::NOT_ACTIVE
    }
}

fn str_or<'a>(v: &'a Value, key: &str, default: &'a str) -> &'a str {
    v[key].as_str().unwrap_or(default)
}

fn short(commit: &str) -> &str {
    commit.get(..10).unwrap_or(commit)
}

/// `Frozen:` of the summary: who froze the host, when and why (`None`: not frozen).
pub fn frozen_line(f: &Value) -> Option<String> {
    if f.is_null() {
        return None;
    }
    let reason = f["reason"]
        .as_str()
        .map(|r| format!(": {r}"))
        .unwrap_or_default();
    let when = f["at"].as_u64().map(utc).unwrap_or_default();
    Some(format!(
        "by {} since {when}{reason} (commits are fetched, not applied; `gitproc thaw` lifts it)",
        str_or(f, "by", "?")
    ))
}

/// `Pending:` of the summary: the fetched commit not applied yet, its wave and when it
/// applies (or what holds it).
pub fn pending_line(p: &Value) -> Option<String> {
    let commit = p["commit"].as_str()?;
    let wave = p["wave"]
        .as_str()
        .map(|w| format!(", wave {w}"))
        .unwrap_or_default();
    let by_wave = p["reason"].as_str() == Some("wave");
    let when = match (p["held_by"].as_str(), p["apply_in_s"].as_f64()) {
        (Some("freeze"), Some(s)) if by_wave => {
            format!("held by the freeze (its wave is due in {s:.1} s)")
        }
        (Some("freeze"), _) => "held by the freeze".to_string(),
        (Some("halt"), _) => "halted by its rollout policy (halt = true)".to_string(),
        (Some("invalid-policy"), _) => format!(
            "held: invalid rollout policy: {}",
            str_or(p, "policy_error", "?")
        ),
        (_, Some(s)) => {
            let at = p["apply_at_ms"]
                .as_u64()
                .map(|ms| format!(" at {}", utc(ms / 1000)))
                .unwrap_or_default();
            format!("applies in {s:.1} s{at}")
        }
        _ => "waiting".to_string(),
    };
    Some(format!(
        "{} {}{wave}: {when}",
        short(commit),
        str_or(p, "subject", "")
    ))
}

fn print_summary(data: &Value) {
    let d = &data["daemon"];
    let color = use_color();
    println!(
        "gitproc daemon (pid {}) following {} {}",
        d["pid"],
        str_or(d, "repo", "-"),
        d["branch"]
            .as_str()
            .map(|b| format!("({b})"))
            .unwrap_or_default()
    );
    let commit = str_or(d, "commit", "");
    if commit.is_empty() {
        println!("  Commit: none applied yet");
    } else {
        println!(
            "  Commit: {} {}{}",
            short(commit),
            str_or(d, "commit_subject", ""),
            d["commit_time"]
                .as_u64()
                .map(|t| format!(" ({})", utc(t)))
                .unwrap_or_default()
        );
    }
    if let Some(t) = d["last_check"].as_u64() {
        println!("  Last check: {}", utc(t));
    }
    if let Some(t) = d["next_check"].as_u64() {
        println!(
            "  Next check: {} (poll interval {}s)",
            utc(t),
            d["poll_interval_s"].as_f64().unwrap_or(0.0).round()
        );
    }
    if let Some(err) = d["source_error"].as_str() {
        println!("  {}: {err}", paint("Source error", "31", color));
    }
    if let Some(line) = frozen_line(&d["frozen"]) {
        println!("  {}: {line}", paint("Frozen", "33", color));
    }
    if let Some(line) = pending_line(&d["pending"]) {
        println!("  Pending: {line}");
    }
    if let Some(err) = d["save_error"].as_str() {
        let since = d["save_error_since"]
            .as_u64()
            .map(|t| format!(" (failing since {})", utc(t)))
            .unwrap_or_default();
        println!(
            "  {}: {err}{since}; changes since then will not survive a daemon restart",
            paint("Save error", "31", color)
        );
    }
    println!();
    let units = data["units"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    // The name column fits the longest name (hook instances such as
    // `notify-failure@web.service.service` are long), 32 at least.
    let width = units
        .iter()
        .map(|u| str_or(u, "name", "?").chars().count())
        .max()
        .unwrap_or(0)
        .max(32);
    println!(
        "  {:<width$} {:<12} {:<14} {:<16} {:>8} {:>8}  HEALTH",
        "UNIT", "ACTIVE", "SUB", "RESULT", "PID", "RESTARTS"
    );
    for u in units {
        let active = str_or(u, "active_state", "?");
        println!(
            "{} {:<width$} {:<12} {:<14} {:<16} {:>8} {:>8}  {}",
            state_dot(active, color),
            str_or(u, "name", "?"),
            active,
            str_or(u, "sub_state", "?"),
            str_or(u, "result", "?"),
            u["main_pid"]
                .as_i64()
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into()),
            u["n_restarts"].as_u64().unwrap_or(0),
            // `[X-Health]`'s state, `-` without a check.
            str_or(u, "health", "-")
        );
        if let Some(err) = u["error"].as_str() {
            println!("    {}", paint(err, "31", color));
        }
    }
}

fn print_unit(u: &Value, color: bool) {
    let name = str_or(u, "name", "?");
    let active = str_or(u, "active_state", "?");
    match u["description"].as_str() {
        Some(desc) => println!("{} {name} - {desc}", state_dot(active, color)),
        None => println!("{} {name}", state_dot(active, color)),
    }
    let loaded = match (u["path"].as_str(), u["commit"].as_str()) {
        (Some(path), Some(commit)) => format!("loaded ({path}; commit {})", short(commit)),
        (Some(path), None) => format!("loaded ({path})"),
        _ => "not-found".to_string(),
    };
    println!("     Loaded: {loaded}");
    let mut active_line = format!("{active} ({})", str_or(u, "sub_state", "?"));
    if let Some(since) = u["since"].as_u64() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(since);
        active_line.push_str(&format!(
            " since {}; {} ago",
            utc(since),
            human_span(now.saturating_sub(since))
        ));
    }
    let active_code = match active {
        "active" => "32",
        "failed" => "31",
        _ => "",
    };
    println!("     Active: {}", paint(&active_line, active_code, color));
    if let Some(ovr) = u["override"].as_str() {
        println!("   Override: {ovr} by operator (until `gitproc start`)");
    }
    if matches!(u["kind"].as_str(), Some("timer" | "socket")) {
        if u["kind"].as_str() == Some("timer") {
            super::timers::print_status_lines(u);
        } else {
            super::sockets::print_status_lines(u);
        }
        if let Some(err) = u["error"].as_str() {
            println!("      Error: {}", paint(err, "31", color));
        }
        return;
    }
    if let Some(pid) = u["main_pid"].as_i64() {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        println!("   Main PID: {pid} ({})", comm.trim());
        print_usage(u, pid as i32);
    }
    print_limits(u);
    println!(
        "   Restarts: {}   Result: {}{}",
        u["n_restarts"].as_u64().unwrap_or(0),
        str_or(u, "result", "?"),
        last_status(u)
            .map(|s| format!("   Last status: {s}"))
            .unwrap_or_default()
    );
    if let Some(status) = u["status_text"].as_str() {
        println!("     Status: \"{status}\"");
    }
    print_health(u, color);
    if let Some(failed) = u["failed_commit"].as_str() {
        let good = u["last_good_commit"]
            .as_str()
            .map(|c| format!("; running the last good version from commit {}", short(c)))
            .unwrap_or_default();
        println!(
            "   Rollback: {}",
            paint(
                &format!("the version from commit {} failed{good}", short(failed)),
                "31",
                color
            )
        );
    }
    if let Some(err) = u["error"].as_str() {
        println!("      Error: {}", paint(err, "31", color));
    }
}

/// `[X-Health]`: the state, since when, and the last probe (its output indented below).
fn print_health(u: &Value, color: bool) {
    let Some(state) = u["health"].as_str() else {
        return;
    };
    let code = match state {
        "healthy" => "32",
        "unhealthy" => "31",
        _ => "",
    };
    let mut line = state.to_string();
    if let Some(since) = u["health_since"].as_u64() {
        line.push_str(&format!(" since {}", utc(since)));
    }
    let probe = str_or(u, "health_probe", "?");
    match (u["last_probe_result"].as_str(), u["last_probe"].as_u64()) {
        (Some(result), Some(at)) => {
            line.push_str(&format!("; last {probe} probe {}: {result}", utc(at)))
        }
        _ => line.push_str(&format!("; no {probe} probe yet")),
    }
    println!("     Health: {}", paint(&line, code, color));
    if let Some(out) = u["last_probe_output"].as_str().filter(|o| !o.is_empty()) {
        for l in out.lines() {
            println!("             {l}");
        }
    }
}

/// Tasks, memory and CPU time: the unit's cgroups' accounting when the daemon has it
/// (as systemctl shows it, with the limit), else the main process's session from /proc.
fn print_usage(u: &Value, main_pid: i32) {
    let r = &u["resources"];
    let limit = |key: &str| {
        r["limits"].as_array().and_then(|l| {
            l.iter()
                .find(|w| w["key"].as_str() == Some(key))
                .and_then(|w| w["value"].as_str())
                .map(str::to_string)
        })
    };
    let mib = |b: u64| format!("{:.1}M", b as f64 / (1024.0 * 1024.0));
    let (tasks, memory) = match (r["tasks_current"].as_u64(), r["memory_current"].as_u64()) {
        (Some(t), Some(m)) => (t, m),
        (t, m) => {
            let (tasks, rss_kib) = session_usage(main_pid);
            (
                t.unwrap_or(tasks as u64),
                m.unwrap_or(rss_kib.saturating_mul(1024)),
            )
        }
    };
    match limit("TasksMax") {
        Some(l) => println!("      Tasks: {tasks} (limit: {l})"),
        None => println!("      Tasks: {tasks}"),
    }
    let max = limit("MemoryMax").and_then(|v| v.parse::<u64>().ok());
    match max {
        Some(l) => println!("     Memory: {} (max: {})", mib(memory), mib(l)),
        None => println!("     Memory: {}", mib(memory)),
    }
    if let Some(ns) = r["cpu_usage_nsec"].as_u64() {
        println!("        CPU: {:.3}s", ns as f64 / 1e9);
    }
}

/// The resource limits written to the unit's cgroups (`MemoryMax=33554432 (memory.limit_in_bytes)`).
fn print_limits(u: &Value) {
    let Some(limits) = u["resources"]["limits"]
        .as_array()
        .filter(|l| !l.is_empty())
    else {
        return;
    };
    let words: Vec<String> = limits
        .iter()
        .map(|w| {
            let file = w["file"].as_str().unwrap_or("");
            let file = file.rsplit('/').next().unwrap_or(file);
            format!(
                "{}={} ({file})",
                w["key"].as_str().unwrap_or("?"),
                w["value"].as_str().unwrap_or("?")
            )
        })
        .collect();
    println!("     Limits: {}", words.join(", "));
}

/// The last main exit as systemctl words it: `exit 217/USER`, `exit 3`, `signal 9`.
fn last_status(u: &Value) -> Option<String> {
    let status = u["exec_main_status"].as_i64()?;
    Some(match u["exec_main_code"].as_str() {
        Some("exited") => match u["exec_main_status_name"].as_str() {
            Some(name) => format!("exit {status}/{name}"),
            None => format!("exit {status}"),
        },
        Some("dumped") => format!("signal {status} (core dumped)"),
        Some("killed") => format!("signal {status}"),
        _ => status.to_string(),
    })
}

/// Processes and resident memory of the session a main pid leads (services run in their own
/// session), read from /proc by the client so the daemon never pays for it.
fn session_usage(main_pid: i32) -> (usize, u64) {
    let Ok(main) = read_stat(main_pid) else {
        return (0, 0);
    };
    let mut tasks = 0;
    let mut rss_kib = 0;
    for pid in crate::sys::procstat::pids() {
        if let Ok(st) = read_stat(pid)
            && st.session == main.session
        {
            tasks += 1;
            rss_kib += st.rss_pages * page_kib();
        }
    }
    (tasks, rss_kib)
}

fn page_kib() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map(|b| b as u64 / 1024)
        .unwrap_or(4)
}

pub fn list(global: &GlobalArgs, args: &ListArgs) -> anyhow::Result<i32> {
    let reply = client::call(&socket_path(global)?, Verb::Status { units: vec![] })?;
    if !reply.ok {
        eprintln!(
            "gitproc: {}",
            reply.error.as_deref().unwrap_or("list failed")
        );
        return Ok(exit::FAILURE);
    }
    if let Some(format) = args.json {
        println!("{}", format.render(&reply.data["units"])?);
        return Ok(exit::OK);
    }
    let color = use_color();
    let units: Vec<&Value> = reply.data["units"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    // Columns as wide as their longest entry, like `systemctl list-units`.
    let width = |key: &str, min: usize| {
        units
            .iter()
            .map(|u| str_or(u, key, "?").chars().count())
            .max()
            .unwrap_or(0)
            .max(min)
    };
    let (name_w, active_w, sub_w) = (
        width("name", 4),
        width("active_state", 6),
        width("sub_state", 3),
    );
    for u in units {
        let active = str_or(u, "active_state", "?");
        let line = format!(
            "{} {:<name_w$} {:<active_w$} {:<sub_w$} {}",
            state_dot(active, color),
            str_or(u, "name", "?"),
            active,
            str_or(u, "sub_state", "?"),
            str_or(u, "description", "")
        );
        println!("{}", line.trim_end());
    }
    Ok(exit::OK)
}

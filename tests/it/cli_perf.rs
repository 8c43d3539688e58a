//! `gitproc perf stats [--json]` and `perf export --format json|prometheus`: the daemon's
//! own operation latencies, after some real activity.

use crate::support::{Daemon, Repo, WAIT, service, wait_for};
use serde_json::Value;

fn busy_daemon() -> (Repo, Daemon) {
    let repo = Repo::new();
    repo.write("a.service", &service("/bin/sleep 1000", ""));
    repo.write(
        "flappy.service",
        &service(
            "/bin/sh -c 'sleep 0.05; exit 1'",
            "Restart=always\nRestartSec=10ms",
        ),
    );
    repo.commit("units");
    let daemon = Daemon::start(repo.path(), &[]);
    daemon.wait_running("a.service");
    daemon.wait_unit("flappy.service", "restarted", |u| {
        u["n_restarts"].as_u64().unwrap_or(0) >= 2
    });
    // An operator stop forces a state save.
    assert_eq!(daemon.cli(&["stop", "flappy"]).status.code(), Some(0));
    (repo, daemon)
}

fn operations(daemon: &Daemon) -> Value {
    let out = daemon.cli(&["perf", "stats", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).expect("perf stats --json");
    v["operations"].clone()
}

#[test]
fn perf_stats_counts_what_the_daemon_did() {
    let (_repo, daemon) = busy_daemon();
    let ops = wait_for("a recorded state save", WAIT, || {
        let ops = operations(&daemon);
        (ops["save"]["count"].as_u64().unwrap_or(0) >= 1).then_some(ops)
    });
    for op in [
        "fetch",
        "parse",
        "apply",
        "spawn",
        "reap_to_restart",
        "control",
    ] {
        let s = &ops[op];
        let count = s["count"].as_u64().unwrap_or(0);
        assert!(count >= 1, "{op} not counted: {ops:#}");
        let (p50, p95, p99, max) = (
            s["p50_us"].as_u64().unwrap_or(0),
            s["p95_us"].as_u64().unwrap_or(0),
            s["p99_us"].as_u64().unwrap_or(0),
            s["max_us"].as_u64().unwrap_or(0),
        );
        assert!(
            0 < p50 && p50 <= p95 && p95 <= p99 && p99 <= max,
            "{op} percentiles out of order: {s}"
        );
    }
    assert!(ops["spawn"]["count"].as_u64().unwrap_or(0) >= 3, "{ops:#}");

    let out = daemon.cli(&["perf", "stats"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("OPERATION"), "{text}");
    let spawn = text
        .lines()
        .find(|l| l.starts_with("spawn "))
        .unwrap_or_else(|| panic!("no spawn row:\n{text}"));
    assert_eq!(spawn.split_whitespace().count(), 6, "{spawn}");

    // The allocator's totals (glibc): what is live, what is kept free.
    let out = daemon.cli(&["perf", "stats", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("perf stats --json");
    let a = &v["allocator"];
    assert!(
        a["in_use_bytes"].as_u64().unwrap_or(0) > 64 * 1024,
        "a daemon with live state has heap in use: {a:#}"
    );
    assert!(a["free_bytes"].is_u64(), "{a:#}");
    assert!(a["mmapped_bytes"].is_u64(), "{a:#}");
    assert!(
        text.contains("\nallocator: ") && text.contains(" KiB in use"),
        "{text}"
    );
}

#[test]
fn perf_export_speaks_json_and_prometheus() {
    let (_repo, daemon) = busy_daemon();
    let out = daemon.cli(&["perf", "export", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).expect("export json");
    assert!(
        v["operations"]["spawn"]["count"].as_u64().unwrap_or(0) >= 1,
        "{v:#}"
    );

    let out = daemon.cli(&["perf", "export", "--format", "prometheus"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("# TYPE gitproc_operation_seconds summary"),
        "{text}"
    );
    // Every sample line is `name{labels} value` with a numeric value.
    let mut spawn_count = None;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (metric, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample line {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("non-numeric value in {line:?}"));
        assert!(metric.starts_with("gitproc_"), "{line}");
        assert!(metric.ends_with('}'), "{line}");
        if metric == "gitproc_operation_seconds_count{op=\"spawn\"}" {
            spawn_count = Some(value);
        }
    }
    assert!(spawn_count.is_some_and(|c| c >= 1.0), "{text}");
}

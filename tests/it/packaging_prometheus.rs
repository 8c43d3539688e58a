//! The monitoring kit in `packaging/prometheus/`: the alert rules load and their unit
//! tests pass under `promtool` (Debian's `prometheus` package, installed by .ci/run), the
//! dashboard is valid JSON, and every `gitproc_*` metric either of them uses is one the
//! daemon's `/metrics` really exports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::{have_program, require};
use gitproc::metrics::{Snapshot, UnitMetrics, render};
use gitproc::service::ActiveState;

fn kit() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/prometheus")
}

fn promtool(args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(kit())
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alert_rules_load_and_their_unit_tests_pass() {
    if !require("promtool (package prometheus)", have_program("promtool")) {
        return;
    }
    promtool(&["check", "rules", "gitproc-alerts.yml"]);
    promtool(&["test", "rules", "gitproc-alerts.test.yml"]);
}

/// Every family name the daemon exports (with every optional family present).
fn exported() -> BTreeSet<String> {
    let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 2)
        .expect("histogram bounds");
    h.record(1000).expect("record");
    let text = render(Snapshot {
        last_check_unix: Some(1.0),
        last_success_unix: Some(1.0),
        poll_interval: Duration::from_secs(10),
        units: vec![UnitMetrics {
            name: "a.service".into(),
            active_state: ActiveState::Failed,
            restarts: 1,
            last_exit_status: Some(1),
            rolled_back: true,
            load_error: true,
            health: Some("unhealthy"),
        }],
        latencies: vec![("apply", h)],
        webhooks: vec![("refused", 1)],
        frozen: Some(false),
        pending: Some(gitproc::metrics::PendingMetrics {
            commit: "abc".into(),
            apply_at_unix: Some(1.0),
            ..Default::default()
        }),
        ..Snapshot::default()
    });
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap_or_default().to_string();
            if parts.next() == Some("histogram") {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            names.insert(name);
        }
    }
    names
}

/// The `gitproc_*` tokens of a text.
fn used(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("gitproc_") {
        let start = i + pos;
        let word_before =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(text.len(), |n| start + n);
        if !word_before {
            out.insert(text[start..end].to_string());
        }
        i = end;
    }
    out
}

#[test]
fn the_rules_and_the_dashboard_use_only_exported_metrics() {
    let exported = exported();
    let dashboard_text =
        std::fs::read_to_string(kit().join("gitproc-fleet.json")).expect("read dashboard");
    let dashboard: serde_json::Value =
        serde_json::from_str(&dashboard_text).expect("the dashboard is valid JSON");
    assert!(
        dashboard["panels"].as_array().is_some_and(|p| p.len() >= 5),
        "the dashboard has panels"
    );
    for file in [
        "gitproc-alerts.yml",
        "gitproc-alerts.test.yml",
        "gitproc-fleet.json",
    ] {
        let text = std::fs::read_to_string(kit().join(file)).expect("read kit file");
        let unknown: Vec<String> = used(&text)
            .into_iter()
            .filter(|name| !exported.contains(name))
            .collect();
        assert!(
            unknown.is_empty(),
            "{file} uses metrics the daemon does not export: {unknown:?}\nexported: {exported:?}"
        );
    }
    // The fleet view's three questions: commit per host, failing units, restarts.
    for name in [
        "gitproc_source_info",
        "gitproc_unit_state",
        "gitproc_unit_restarts_total",
    ] {
        assert!(dashboard_text.contains(name), "the dashboard shows {name}");
    }
}

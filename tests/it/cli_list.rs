//! `gitproc list [--json]`: one line per unit.

use crate::support;

use crate::support::{Daemon, Repo, service};
use serde_json::Value;

#[test]
fn list_prints_one_aligned_line_per_unit() {
    let repo = Repo::new();
    repo.write(
        "a.service",
        "[Unit]\nDescription=first one\n\n[Service]\nExecStart=/bin/sleep 1000\n",
    );
    repo.write("a-much-longer-name.service", &service("/bin/true", ""));
    repo.commit("two units");
    let daemon = Daemon::start(repo.path(), &[]);
    daemon.wait_running("a.service");
    daemon.wait_unit("a-much-longer-name.service", "finished", |u| {
        u["active_state"] == "inactive"
    });
    let out = daemon.cli(&["list"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    // Sorted by name; states in aligned columns.
    assert!(
        lines[0].starts_with("● a-much-longer-name.service inactive dead"),
        "{text}"
    );
    assert!(lines[1].starts_with("● a.service "), "{text}");
    assert!(lines[1].ends_with("first one"), "{text}");
    let column = |line: &str, word: &str| line.find(word).unwrap_or(usize::MAX);
    assert_eq!(
        column(lines[0], "inactive"),
        column(lines[1], "active"),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "colors on a pipe: {text:?}");

    let out = daemon.cli(&["list", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let units: Value = serde_json::from_slice(&out.stdout).expect("list --json");
    let names: Vec<&str> = units
        .as_array()
        .expect("an array of units")
        .iter()
        .filter_map(|u| u["name"].as_str())
        .collect();
    assert_eq!(names, ["a-much-longer-name.service", "a.service"]);
    assert_eq!(units[1]["sub_state"], "running");
}

#[test]
fn list_without_a_daemon_fails_with_exit_1() {
    let state = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(support::bin())
        .arg("list")
        .arg("--state-dir")
        .arg(state.path())
        .output()
        .expect("run gitproc");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));
}

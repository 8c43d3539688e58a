//! `gitproc sync`: check git now and print what was applied.

use crate::support::{Daemon, Repo, service};
use serde_json::Value;

/// Moves the followed repository aside and puts an identical copy at its path. The daemon's
/// inotify ref watcher keeps watching the moved original, so commits to the copy are seen
/// only when asked: `sync` is then the one that applies them (otherwise the watcher usually
/// wins the race and `sync` truthfully says "up to date").
struct Unwatched {
    moved: std::path::PathBuf,
}

impl Unwatched {
    fn new(repo: &Repo) -> Unwatched {
        let path = repo.path().to_path_buf();
        let moved = path.with_extension("watched");
        std::fs::rename(&path, &moved).expect("move repo aside");
        let ok = std::process::Command::new("cp")
            .arg("-a")
            .arg(&moved)
            .arg(&path)
            .status()
            .expect("cp -a");
        assert!(ok.success());
        Unwatched { moved }
    }
}

impl Drop for Unwatched {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.moved);
    }
}

#[test]
fn sync_prints_what_it_applied() {
    let repo = Repo::new();
    repo.write("a.service", &service("/bin/sleep 1000", ""));
    repo.write("b.service", &service("/bin/sleep 1000", ""));
    let first = repo.commit("a and b");
    let daemon = Daemon::start(repo.path(), &[]);
    daemon.wait_running("a.service");
    daemon.wait_running("b.service");

    let out = daemon.cli(&["sync"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.trim(), format!("up to date at {first}"));

    let _unwatched = Unwatched::new(&repo);
    repo.write("a.service", &service("/bin/sleep 1001", ""));
    repo.remove("b.service");
    repo.write("c.service", &service("/bin/sleep 1000", ""));
    repo.write("d.service", "[Service]\nType=simple\n");
    let second = repo.commit("change a, drop b, add c and a broken d");
    assert!(daemon.unit("c.service").is_null(), "applied before sync");

    let out = daemon.cli(&["sync"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert_eq!(lines[0], format!("applied {second}"), "{text}");
    for expected in [
        "started: c.service",
        "restarted: a.service",
        "stopped: b.service",
    ] {
        assert!(
            lines.contains(&expected),
            "missing {expected:?} in:\n{text}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("failed to load: d.service: ") && l.contains("ExecStart")),
        "{text}"
    );
    daemon.wait_running("c.service");

    let out = daemon.cli(&["sync", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let reply: Value = serde_json::from_slice(&out.stdout).expect("sync --json");
    assert_eq!(reply["ok"], true, "{reply:#}");
    assert_eq!(reply["data"]["commit"], second.as_str(), "{reply:#}");
    assert_eq!(reply["data"]["changed"], false, "{reply:#}");
}

#[test]
fn sync_reports_a_source_error_with_exit_1() {
    let repo = Repo::new();
    repo.write("a.service", &service("/bin/sleep 1000", ""));
    repo.commit("a");
    let daemon = Daemon::start(repo.path(), &[]);
    daemon.wait_running("a.service");
    let _unwatched = Unwatched::new(&repo);
    std::fs::remove_dir_all(repo.path()).expect("remove the repository");
    let out = daemon.cli(&["sync"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&repo.path().display().to_string()), "{err}");
    // The units keep running on the last good commit.
    assert!(daemon.main_pid("a.service").is_some());
}

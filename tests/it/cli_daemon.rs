//! `gitproc daemon`: follows a repository, starts its units, stops them on SIGTERM.

use crate::support;

use crate::support::{Daemon, Repo, WAIT, alive, service, wait_for};

#[test]
fn starts_units_from_the_committed_tree_and_stops_them_on_sigterm() {
    let repo = Repo::new();
    repo.write("units/a.service", &service("/bin/sleep 1000", ""));
    repo.write("units/b.service", &service("/bin/sleep 1000", ""));
    repo.commit("two units");
    // An uncommitted unit is ignored: only committed trees count.
    repo.write("units/uncommitted.service", &service("/bin/sleep 1000", ""));
    let mut daemon = Daemon::start(repo.path(), &["--units-dir", "units"]);
    let a = daemon.wait_running("a.service");
    let b = daemon.wait_running("b.service");
    assert!(daemon.unit("uncommitted.service").is_null());
    assert_eq!(daemon.shutdown(), Some(0), "log:\n{}", daemon.log_text());
    wait_for(
        "services to be stopped by the daemon's shutdown",
        WAIT,
        || (!alive(a) && !alive(b)).then_some(()),
    );
}

#[test]
fn a_second_daemon_on_the_same_state_dir_is_refused() {
    let repo = Repo::new();
    repo.write("a.service", &service("/bin/sleep 1000", ""));
    repo.commit("one unit");
    let daemon = Daemon::start(repo.path(), &[]);
    let out = std::process::Command::new(support::bin())
        .args(["daemon", "--repo"])
        .arg(repo.path())
        .arg("--state-dir")
        .arg(daemon.state.path())
        .output()
        .expect("run second daemon");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!("another gitproc daemon (pid {}) holds", daemon.pid());
    assert!(stderr.contains(&expected), "stderr: {stderr}");
}

/// A local repository's units are read from the repository itself, so they start without
/// waiting for the fetch into the daemon's mirror (`git-upload-pack` and `git
/// pack-objects`), which follows. With no git on the daemon's PATH that fetch fails: the
/// units run all the same, and so does the next commit; the failure is logged once.
#[test]
fn a_local_repository_runs_its_units_before_and_without_the_mirror_fetch() {
    let repo = Repo::new();
    repo.write("a.service", &service("/bin/sleep 1000", ""));
    repo.commit("one unit");
    let mut daemon = Daemon::start_wrapped(
        vec!["--repo".into(), repo.path().display().to_string()],
        tempfile::tempdir().expect("state dir"),
        vec!["/usr/bin/env".into(), "PATH=/nonexistent".into()],
        "info",
    );
    let first = daemon.wait_running("a.service");
    daemon.wait("the failed mirror fetch to be logged", || {
        daemon
            .log_text()
            .contains("the units were read from the repository itself")
            .then_some(())
    });
    repo.write("a.service", &service("/bin/sleep 1001", ""));
    let second = repo.commit("change a");
    daemon.wait("the second commit to be applied without the mirror", || {
        (daemon.status()["daemon"]["commit"] == second.as_str()).then_some(())
    });
    let restarted = daemon.wait_running("a.service");
    assert_ne!(
        restarted, first,
        "a.service was not restarted for its change"
    );
    let log = daemon.log_text();
    assert_eq!(
        log.matches("the units were read from the repository itself")
            .count(),
        1,
        "the same mirror failure must be logged once; log:\n{log}"
    );
    assert_eq!(daemon.shutdown(), Some(0), "log:\n{log}");
    assert!(
        !alive(restarted),
        "a.service survived the daemon's shutdown"
    );
}

/// With git available, the mirror catches up with the tip right after the units start.
#[test]
fn the_mirror_fetches_a_local_tip_after_its_units_start() {
    let repo = Repo::new();
    repo.write("a.service", &service("/bin/sleep 1000", ""));
    let commit = repo.commit("one unit");
    let mut daemon = Daemon::start(repo.path(), &[]);
    daemon.wait_running("a.service");
    daemon.wait_mirror_holds(&commit);
    assert!(
        !daemon
            .log_text()
            .contains("the units were read from the repository itself"),
        "the mirror fetch failed with git available; log:\n{}",
        daemon.log_text()
    );
    assert_eq!(daemon.shutdown(), Some(0), "log:\n{}", daemon.log_text());
}

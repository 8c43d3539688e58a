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

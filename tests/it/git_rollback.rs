//! Roll back what fails: a commit whose changed unit cannot start puts that unit's last good
//! version back, and says which commit failed; `rollback = false` leaves it failed.

use crate::support::{Daemon, Repo, alive, cmdline_once_exec, service};

/// Commits a good unit, starts the daemon and waits for it to run; returns the repo, the
/// daemon, the good commit and the pid.
fn running_good_version(args: &[&str]) -> (Repo, Daemon, String, i32) {
    let repo = Repo::new();
    repo.write("app.service", &service("/bin/sleep 1000", ""));
    repo.write("bystander.service", &service("/bin/sleep 1001", ""));
    let good = repo.commit("good version");
    let daemon = Daemon::start(repo.path(), args);
    let pid = daemon.wait_running("app.service");
    daemon.wait_running("bystander.service");
    // A version becomes "last good" once it has stayed up for the trial period.
    daemon.wait_unit("app.service", "proven good", |u| {
        u["last_good_commit"] == good.as_str()
    });
    (repo, daemon, good, pid)
}

/// Asserts `app.service` was rolled back from `bad` to `good`: it runs the old command in a
/// new process and status names the failed commit.
fn assert_rolled_back(daemon: &Daemon, good: &str, bad: &str, old_pid: i32) {
    let unit = daemon.wait_unit("app.service", "rolled back and running", |u| {
        u["failed_commit"] == bad
            && u["sub_state"] == "running"
            && u["main_pid"].is_i64()
            && u["main_pid"] != old_pid
    });
    let pid = unit["main_pid"].as_i64().unwrap_or_default() as i32;
    assert_eq!(
        cmdline_once_exec(pid, "/bin/sleep 1000"),
        "/bin/sleep 1000",
        "the last good command runs"
    );
    assert_eq!(unit["commit"], good, "{unit:#}");
    assert!(
        daemon.log_text().contains("Rolling back app.service"),
        "the rollback is logged"
    );
}

#[test]
fn a_changed_unit_whose_command_does_not_exist_is_rolled_back() {
    let (repo, daemon, good, pid) = running_good_version(&[]);
    let bystander = daemon.main_pid("bystander.service");
    repo.write(
        "app.service",
        &service("/nonexistent/gitproc-test-binary", ""),
    );
    let bad = repo.commit("point app at a missing binary");
    daemon.sync_to(&bad);
    assert_rolled_back(&daemon, &good, &bad, pid);
    assert_eq!(daemon.main_pid("bystander.service"), bystander);
}

#[test]
fn a_changed_unit_that_exits_at_once_is_rolled_back() {
    let (repo, daemon, good, pid) = running_good_version(&[]);
    repo.write("app.service", &service("/bin/sh -c 'exit 1'", "Restart=no"));
    let bad = repo.commit("app exits 1 at once");
    daemon.sync_to(&bad);
    assert_rolled_back(&daemon, &good, &bad, pid);

    // A later good commit replaces the rolled-back version and clears the mark.
    repo.write("app.service", &service("/bin/sleep 1002", ""));
    let fixed = repo.commit("fix app");
    daemon.sync_to(&fixed);
    let unit = daemon.wait_unit("app.service", "running the fixed version", |u| {
        u["commit"] == fixed && u["sub_state"] == "running" && u["main_pid"].is_i64()
    });
    let pid = unit["main_pid"].as_i64().unwrap_or_default() as i32;
    assert_eq!(cmdline_once_exec(pid, "/bin/sleep 1002"), "/bin/sleep 1002");
    daemon.wait_unit("app.service", "without a failed commit", |u| {
        u["failed_commit"].is_null()
    });
}

#[test]
fn with_rollback_disabled_a_failing_unit_stays_failed() {
    let config_dir = tempfile::tempdir().expect("temp dir");
    let config = config_dir.path().join("gitproc.toml");
    std::fs::write(&config, "rollback = false\n").expect("write config");
    let (repo, daemon, _good, pid) =
        running_good_version(&["--config", config.to_str().expect("utf-8 path")]);
    repo.write("app.service", &service("/bin/sh -c 'exit 1'", "Restart=no"));
    let bad = repo.commit("app exits 1 at once");
    daemon.sync_to(&bad);
    let unit = daemon.wait_unit("app.service", "failed", |u| u["active_state"] == "failed");
    assert!(unit["main_pid"].is_null(), "{unit:#}");
    assert_eq!(unit["commit"], bad);
    assert!(!alive(pid));
    assert!(!daemon.log_text().contains("Rolling back"));
}

#[test]
fn a_version_adopted_after_a_daemon_restart_is_what_a_failure_rolls_back_to() {
    let (repo, mut daemon, good, pid) = running_good_version(&[]);
    daemon.restart();
    let unit = daemon.wait_unit("app.service", "adopted and proven good", |u| {
        u["last_good_commit"] == good.as_str()
    });
    assert_eq!(unit["main_pid"], pid, "adopted, not restarted");

    repo.write(
        "app.service",
        &service("/nonexistent/gitproc-test-binary", ""),
    );
    let bad = repo.commit("break app");
    daemon.sync_to(&bad);
    assert_rolled_back(&daemon, &good, &bad, pid);
}

#[test]
fn a_rolled_back_unit_is_not_retried_by_an_unrelated_commit() {
    let (repo, daemon, good, pid) = running_good_version(&[]);
    repo.write(
        "app.service",
        &service("/nonexistent/gitproc-test-binary", ""),
    );
    let bad = repo.commit("break app");
    daemon.sync_to(&bad);
    assert_rolled_back(&daemon, &good, &bad, pid);
    let app = daemon.main_pid("app.service").unwrap_or_default();
    let bystander = daemon.wait_running("bystander.service");

    // A commit that changes only the bystander must not try app's known-bad version again.
    repo.write("bystander.service", &service("/bin/sleep 1003", ""));
    let next = repo.commit("change the bystander only");
    daemon.sync_to(&next);
    daemon.wait_unit("bystander.service", "restarted", |u| {
        u["sub_state"] == "running" && u["main_pid"].is_i64() && u["main_pid"] != bystander
    });
    let unit = daemon.unit("app.service");
    assert_eq!(unit["main_pid"], app, "app was not restarted: {unit:#}");
    assert_eq!(unit["failed_commit"], bad, "{unit:#}");
    assert_eq!(
        daemon
            .log_text()
            .matches("Rolling back app.service")
            .count(),
        1,
        "one rollback only"
    );
}

#[test]
fn the_rolled_back_mark_survives_a_kill9_of_the_daemon() {
    let (repo, mut daemon, good, pid) = running_good_version(&[]);
    repo.write(
        "app.service",
        &service("/nonexistent/gitproc-test-binary", ""),
    );
    let bad = repo.commit("break app");
    daemon.sync_to(&bad);
    assert_rolled_back(&daemon, &good, &bad, pid);
    let app = daemon.main_pid("app.service").unwrap_or_default();
    crate::support::wait_for("the mark saved in state.json", crate::support::WAIT, || {
        let state = daemon.try_state_file()?;
        (state["units"]["app.service"]["failed_commit"] == bad.as_str()).then_some(())
    });
    daemon.kill9();
    daemon.restart();
    // Adopted as it ran (the last good version), not restarted onto the failed one.
    let unit = daemon.unit("app.service");
    assert_eq!(unit["main_pid"], app, "app was not restarted: {unit:#}");
    assert_eq!(unit["failed_commit"], bad, "{unit:#}");
    assert_eq!(unit["commit"], good, "{unit:#}");
    // Still marked after a trial period would have passed, and after an unrelated commit.
    repo.write("bystander.service", &service("/bin/sleep 1004", ""));
    let next = repo.commit("change the bystander only");
    daemon.sync_to(&next);
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let unit = daemon.unit("app.service");
    assert_eq!(unit["main_pid"], app, "{unit:#}");
    assert_eq!(unit["failed_commit"], bad, "{unit:#}");
}

#[test]
fn reverting_a_failed_commit_clears_the_failure_without_a_restart() {
    let (repo, daemon, good, pid) = running_good_version(&[]);
    repo.write(
        "app.service",
        &service("/nonexistent/gitproc-test-binary", ""),
    );
    let bad = repo.commit("break app");
    daemon.sync_to(&bad);
    assert_rolled_back(&daemon, &good, &bad, pid);
    let app = daemon.main_pid("app.service");

    repo.git(&["revert", "--no-edit", "HEAD"]);
    let reverted = repo.git(&["rev-parse", "HEAD"]);
    daemon.sync_to(&reverted);
    let unit = daemon.wait_unit("app.service", "without a failed commit", |u| {
        u["failed_commit"].is_null()
    });
    assert_eq!(unit["main_pid"].as_i64().map(|p| p as i32), app, "{unit:#}");
}

#[test]
fn a_changed_unit_that_never_becomes_ready_is_rolled_back_after_its_start_timeout() {
    let (repo, daemon, good, pid) = running_good_version(&[]);
    repo.write(
        "app.service",
        &service("/bin/sleep 1005", "Type=notify\nTimeoutStartSec=1"),
    );
    let bad = repo.commit("app waits for a READY=1 that never comes");
    daemon.sync_to(&bad);
    assert_rolled_back(&daemon, &good, &bad, pid);
}

//! `gitproc start|stop|restart|reload UNIT... [--no-block] [--json]`: the operator's jobs,
//! their exit codes, and `stop` as an override that outlives syncs and daemon restarts.

use std::process::Output;
use std::time::{Duration, Instant};

use crate::support::{Daemon, Repo, WAIT, alive, service, wait_for};
use serde_json::Value;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        stderr(out)
    );
}

#[test]
fn stop_holds_across_a_new_commit_and_a_daemon_restart_until_start() {
    let repo = Repo::new();
    repo.write("a.service", &service("/bin/sleep 1000", ""));
    repo.write("b.service", &service("/bin/sleep 1000", ""));
    repo.commit("two units");
    let mut daemon = Daemon::start(repo.path(), &[]);
    let first = daemon.wait_running("a.service");

    // A blocking stop answers once the unit is down.
    ok(&daemon.cli(&["stop", "a"]));
    let a = daemon.unit("a.service");
    assert_eq!(a["active_state"], "inactive", "{a:#}");
    assert_eq!(a["override"], "stopped", "{a:#}");
    assert!(!alive(first));

    // A new commit changes a.service: the new version is recorded but not started.
    repo.write("a.service", &service("/bin/sleep 1001", ""));
    let second = repo.commit("change a");
    let out = daemon.cli(&["sync"]);
    ok(&out);
    let a = daemon.unit("a.service");
    assert_eq!(a["commit"], second.as_str(), "{a:#}");
    assert_eq!(a["active_state"], "inactive", "started by a sync: {a:#}");

    // The override is durable: a restarted daemon (after kill -9) keeps it.
    daemon.restart();
    let b = daemon.wait_running("b.service");
    assert!(b > 0);
    let a = daemon.unit("a.service");
    assert_eq!(
        a["active_state"], "inactive",
        "started after restart: {a:#}"
    );
    assert_eq!(a["override"], "stopped", "{a:#}");

    // `start` (full name this time) clears it and runs the new version.
    ok(&daemon.cli(&["start", "a.service"]));
    let a = daemon.unit("a.service");
    assert_eq!(
        a["sub_state"], "running",
        "blocking start answered early: {a:#}"
    );
    assert!(a["override"].is_null(), "{a:#}");
    let pid = a["main_pid"].as_i64().expect("main pid") as i32;
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(cmdline.contains("1001"), "old version started: {cmdline:?}");
}

#[test]
fn restart_replaces_the_main_process() {
    let repo = Repo::new();
    repo.write("a.service", &service("/bin/sleep 1000", ""));
    repo.commit("one unit");
    let daemon = Daemon::start(repo.path(), &[]);
    let before = daemon.wait_running("a.service");
    let out = daemon.cli(&["restart", "a", "--json"]);
    ok(&out);
    let reply: Value = serde_json::from_slice(&out.stdout).expect("--json reply");
    assert_eq!(reply["ok"], true, "{reply:#}");
    let after = daemon.wait_running("a.service");
    assert_ne!(before, after, "restart kept the same pid");
    wait_for("the old main process to be gone", WAIT, || {
        (!alive(before)).then_some(())
    });
    // Restarting a stopped unit starts it.
    ok(&daemon.cli(&["stop", "a"]));
    ok(&daemon.cli(&["restart", "a"]));
    assert_eq!(daemon.unit("a.service")["sub_state"], "running");
}

#[test]
fn reload_runs_exec_reload_and_refuses_units_without_one() {
    let repo = Repo::new();
    let marker = repo.path().join("reloaded");
    repo.write(
        "r.service",
        &service(
            "/bin/sleep 1000",
            &format!(
                "ExecReload=/bin/sh -c 'echo $MAINPID >> {}'",
                marker.display()
            ),
        ),
    );
    repo.write("plain.service", &service("/bin/sleep 1000", ""));
    repo.commit("reloadable and not");
    let daemon = Daemon::start(repo.path(), &[]);
    let pid = daemon.wait_running("r.service");
    daemon.wait_running("plain.service");

    ok(&daemon.cli(&["reload", "r"]));
    // A blocking reload answers after ExecReload= finished.
    let written = std::fs::read_to_string(&marker).expect("ExecReload= ran");
    assert_eq!(written.trim(), pid.to_string(), "$MAINPID in ExecReload=");
    assert_eq!(daemon.main_pid("r.service"), Some(pid), "reload restarted");

    let out = daemon.cli(&["reload", "plain"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("plain.service") && stderr(&out).contains("ExecReload="),
        "{}",
        stderr(&out)
    );
    assert!(daemon.main_pid("plain.service").is_some());
}

#[test]
fn no_block_answers_while_the_job_still_runs() {
    let repo = Repo::new();
    // Ignores SIGTERM, so stopping takes TimeoutStopSec= before SIGKILL.
    repo.write(
        "slow.service",
        &service(
            "/bin/sh -c 'trap \"\" TERM; exec sleep 1000'",
            "TimeoutStopSec=4",
        ),
    );
    repo.commit("slow to stop");
    let daemon = Daemon::start(repo.path(), &[]);
    let pid = daemon.wait_running("slow.service");
    let started = Instant::now();
    let out = daemon.cli(&["stop", "--no-block", "--json", "slow"]);
    let took = started.elapsed();
    ok(&out);
    assert!(took < Duration::from_secs(3), "--no-block waited {took:?}");
    let reply: Value = serde_json::from_slice(&out.stdout).expect("--json reply");
    assert_eq!(reply["data"]["queued"][0], "slow.service", "{reply:#}");
    let unit = daemon.unit("slow.service");
    assert_eq!(unit["active_state"], "deactivating", "{unit:#}");
    assert!(alive(pid));
    // The job goes on without the client and ends with the SIGKILL escalation.
    daemon.wait_unit("slow.service", "stopped", |u| {
        matches!(u["active_state"].as_str(), Some("inactive" | "failed"))
    });
    assert!(!alive(pid));
}

#[test]
fn unknown_units_exit_4_and_failed_jobs_exit_1() {
    let repo = Repo::new();
    repo.write("a.service", &service("/bin/sleep 1000", ""));
    // A oneshot's start job waits for it to finish, so its failure is the job's (a simple
    // service's job is done once it is forked, as in systemd).
    repo.write(
        "bad.service",
        &service("/bin/sh -c 'exit 3'", "Type=oneshot"),
    );
    repo.commit("units");
    let daemon = Daemon::start(repo.path(), &[]);
    let pid = daemon.wait_running("a.service");
    for verb in ["start", "stop", "restart", "reload"] {
        let out = daemon.cli(&[verb, "nope"]);
        assert_eq!(out.status.code(), Some(4), "{verb}: {}", stderr(&out));
        assert!(stderr(&out).contains("nope.service"), "{}", stderr(&out));
    }
    // One unknown name refuses the whole request: a is untouched.
    let out = daemon.cli(&["stop", "a", "nope"]);
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(daemon.main_pid("a.service"), Some(pid));

    daemon.wait_unit("bad.service", "failed", |u| u["active_state"] == "failed");
    let out = daemon.cli(&["start", "bad"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Job for bad.service failed"),
        "{}",
        stderr(&out)
    );
}

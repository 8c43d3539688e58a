//! Stopping, end to end (systemd.kill(5)): TimeoutStopSec= escalation to SIGKILL,
//! `KillMode=control-group` and `KillMode=process`, `ExecStop=`, `SendSIGHUP=`.

use crate::support;

use std::process::Command;

use crate::support::{Daemon, KillPids, Repo, WAIT, alive, pids_in, script, service, wait_for};

/// Whether `pid` ignores SIGTERM (its SigIgn mask in /proc).
fn ignores_sigterm(pid: i32) -> bool {
    signal_mask(pid, "SigIgn").is_some_and(|mask| mask & (1 << (libc::SIGTERM - 1)) != 0)
}

#[test]
fn a_service_ignoring_sigterm_is_sigkilled_after_timeout_stop_sec() {
    let repo = Repo::new();
    // SIG_IGN is inherited across exec: the `sleep`s ignore SIGTERM too.
    repo.write(
        "stubborn.service",
        &service(
            "/bin/sh -c 'trap \"\" TERM; while :; do sleep 0.1; done'",
            "TimeoutStopSec=1",
        ),
    );
    repo.commit("ignores SIGTERM");
    let daemon = Daemon::start(repo.path(), &[]);
    let pid = daemon.wait_running("stubborn.service");
    wait_for("the service to ignore SIGTERM (its trap ran)", WAIT, || {
        ignores_sigterm(pid).then_some(())
    });
    let mut stop = Command::new(support::bin())
        .args(["stop", "stubborn.service", "--state-dir"])
        .arg(daemon.state.path())
        .spawn()
        .expect("run gitproc stop");
    daemon.wait_unit("stubborn.service", "stop-sigterm", |u| {
        u["sub_state"] == "stop-sigterm"
    });
    assert!(alive(pid), "SIGTERM should not have killed {pid}");
    let status = wait_for("`gitproc stop` to return", WAIT, || {
        stop.try_wait().expect("wait for gitproc stop")
    });
    assert!(status.success(), "gitproc stop: {status}");
    let unit = daemon.wait_unit("stubborn.service", "stopped", |u| {
        u["active_state"] == "failed" || u["active_state"] == "inactive"
    });
    assert!(!alive(pid), "{pid} survived the stop: {unit:#}");
    // systemd: a stop that needed SIGKILL ends `failed` with result `timeout`.
    assert_eq!(unit["result"], "timeout", "{unit:#}");
    assert_eq!(unit["exec_main_code"], "killed", "{unit:#}");
    assert_eq!(unit["exec_main_status"], 9, "{unit:#}");
    let error = unit["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("TimeoutStopSec=") && error.contains("SIGKILL"),
        "status should say why it was SIGKILLed: {unit:#}"
    );
    let log = daemon.log_text();
    assert!(
        log.contains("Stopping stubborn.service") && log.contains("sending SIGKILL"),
        "the daemon log should say why it escalated:\n{log}"
    );
}

#[test]
fn kill_mode_control_group_leaves_no_process_behind() {
    let repo = Repo::new();
    let pids = repo.path().join("pids");
    // A background child, a child in a session of its own, and a daemonized grandchild
    // (its parent exits: it is reparented to the daemon, the subreaper, in a new session).
    let body = format!(
        r#"P={p}
sleep 1000 &
echo $! >> $P
setsid sh -c 'echo $$ >> "$0"; exec sleep 1000' "$P" &
sh -c 'setsid sh -c "echo \$\$ >> \"\$0\"; exec sleep 1000" "$0" &' "$P"
echo $$ >> $P
exec sleep 1000"#,
        p = pids.display()
    );
    let exec = script(&repo, "spawner.sh", &body);
    repo.write(
        "tree.service",
        &service(&exec, "KillMode=control-group\nTimeoutStopSec=2"),
    );
    repo.commit("a service with a process tree");
    let daemon = Daemon::start(repo.path(), &[]);
    let main = daemon.wait_running("tree.service");
    let all = pids_in(&pids, 4);
    let _guard = KillPids(all.clone());
    assert!(all.contains(&main), "main {main} not in {all:?}");
    for &pid in &all {
        assert!(alive(pid), "{pid} of {all:?} is not running");
    }
    let out = daemon.cli(&["stop", "tree.service"]);
    assert!(out.status.success(), "{out:?}");
    let unit = daemon.wait_unit("tree.service", "inactive", |u| {
        u["active_state"] == "inactive"
    });
    assert_eq!(unit["result"], "success", "{unit:#}");
    wait_for(
        &format!("every process of the service ({all:?}) to be gone"),
        WAIT,
        || all.iter().all(|&p| !alive(p)).then_some(()),
    );
}

#[test]
fn kill_mode_process_leaves_the_child_alive() {
    let repo = Repo::new();
    let pids = repo.path().join("pids");
    let body = format!(
        "sleep 1000 &\necho $! >> {p}\necho $$ >> {p}\nexec sleep 1000",
        p = pids.display()
    );
    let exec = script(&repo, "parent.sh", &body);
    repo.write(
        "parent.service",
        &service(&exec, "KillMode=process\nTimeoutStopSec=2"),
    );
    repo.commit("KillMode=process");
    let daemon = Daemon::start(repo.path(), &[]);
    let main = daemon.wait_running("parent.service");
    let all = pids_in(&pids, 2);
    let _guard = KillPids(all.clone());
    let child = all[0];
    assert_eq!(all[1], main);
    let out = daemon.cli(&["stop", "parent.service"]);
    assert!(out.status.success(), "{out:?}");
    daemon.wait_unit("parent.service", "inactive", |u| {
        u["active_state"] == "inactive"
    });
    wait_for("the main process to be gone", WAIT, || {
        (!alive(main)).then_some(())
    });
    assert!(
        alive(child),
        "KillMode=process must leave the child {child} running"
    );
}

#[test]
fn exec_stop_runs_with_mainpid_and_stops_the_service() {
    let repo = Repo::new();
    let marker = repo.path().join("exec-stop-ran");
    // ExecStop= stops the service itself; the kill signal then finds nothing left.
    let stop = script(
        &repo,
        "stop.sh",
        &format!(
            "echo \"$MAINPID\" > {}\nkill \"$MAINPID\"",
            marker.display()
        ),
    );
    repo.write(
        "graceful.service",
        &service(
            "/bin/sleep 1000",
            &format!("ExecStop={stop}\nTimeoutStopSec=2"),
        ),
    );
    repo.commit("ExecStop=");
    let daemon = Daemon::start(repo.path(), &[]);
    let main = daemon.wait_running("graceful.service");
    let out = daemon.cli(&["stop", "graceful.service"]);
    assert!(out.status.success(), "{out:?}");
    let unit = daemon.wait_unit("graceful.service", "inactive", |u| {
        u["active_state"] == "inactive" || u["active_state"] == "failed"
    });
    assert_eq!(unit["active_state"], "inactive", "{unit:#}");
    let written = std::fs::read_to_string(&marker).expect("ExecStop= did not run");
    assert_eq!(
        written.trim(),
        main.to_string(),
        "MAINPID given to ExecStop="
    );
    assert!(!alive(main));
}

#[test]
fn send_sighup_follows_the_kill_signal() {
    let repo = Repo::new();
    let marker = repo.path().join("got-hup");
    // Exits cleanly only once it got both SIGTERM and SIGHUP; without the SIGHUP it would
    // be SIGKILLed after TimeoutStopSec= (result timeout).
    let body = format!(
        "trap 'echo hup >> {m}; H=1' HUP\ntrap 'T=1' TERM\n\
         while [ -z \"$H\" ] || [ -z \"$T\" ]; do sleep 0.1 & wait $!; done\nexit 0",
        m = marker.display()
    );
    let exec = script(&repo, "hup.sh", &body);
    repo.write(
        "hup.service",
        &service(&exec, "SendSIGHUP=yes\nTimeoutStopSec=3"),
    );
    repo.commit("SendSIGHUP=");
    let daemon = Daemon::start(repo.path(), &[]);
    let main = daemon.wait_running("hup.service");
    wait_signals_caught(main, &[libc::SIGHUP, libc::SIGTERM]);
    let out = daemon.cli(&["stop", "hup.service"]);
    assert!(out.status.success(), "{out:?}");
    let unit = daemon.wait_unit("hup.service", "stopped", |u| {
        u["active_state"] == "inactive" || u["active_state"] == "failed"
    });
    assert_eq!(unit["result"], "success", "{unit:#}");
    assert!(
        std::fs::read_to_string(&marker)
            .unwrap_or_default()
            .contains("hup"),
        "no SIGHUP arrived"
    );
    assert!(!alive(main));
}

/// A main process that exits on SIGTERM with a child that ignores it: with `mode`, the
/// stop must not end while the child lives; after TimeoutStopSec= the child gets SIGKILL.
fn lingering_child_is_killed(mode: &str) {
    let repo = Repo::new();
    let pids = repo.path().join("pids");
    let body = format!(
        "(trap '' TERM; echo $(exec sh -c 'echo $PPID') >> {p}; exec sleep 1000) &\n\
         echo $$ >> {p}\nexec sleep 1000",
        p = pids.display()
    );
    let exec = script(&repo, "lingering.sh", &body);
    repo.write(
        "linger.service",
        &service(&exec, &format!("KillMode={mode}\nTimeoutStopSec=1")),
    );
    repo.commit("a child that ignores SIGTERM");
    let daemon = Daemon::start(repo.path(), &[]);
    let main = daemon.wait_running("linger.service");
    let all = pids_in(&pids, 2);
    let _guard = KillPids(all.clone());
    let child = *all.iter().find(|&&p| p != main).expect("child pid");
    wait_for("the child to ignore SIGTERM", WAIT, || {
        ignores_sigterm(child).then_some(())
    });
    let mut stop = Command::new(support::bin())
        .args(["stop", "linger.service", "--state-dir"])
        .arg(daemon.state.path())
        .spawn()
        .expect("run gitproc stop");
    // The main process exits on SIGTERM; the daemon sees it ...
    let unit = daemon.wait_unit("linger.service", "without its main process", |u| {
        !alive(main) && u["main_pid"].is_null()
    });
    // ... but the service is not stopped while its child lives.
    if alive(child) {
        assert_eq!(
            unit["active_state"], "deactivating",
            "stopped while {child} still runs: {unit:#}"
        );
    }
    let status = wait_for("`gitproc stop` to return", WAIT, || {
        stop.try_wait().expect("wait for gitproc stop")
    });
    assert!(status.success(), "gitproc stop: {status}");
    let unit = daemon.unit("linger.service");
    assert!(
        !alive(child),
        "the child {child} that ignores SIGTERM survived the stop: {unit:#}"
    );
    assert_eq!(unit["result"], "timeout", "{unit:#}");
}

#[test]
fn kill_mode_control_group_sigkills_a_lingering_child_after_timeout_stop_sec() {
    lingering_child_is_killed("control-group");
}

#[test]
fn kill_mode_mixed_sigkills_a_lingering_child_after_timeout_stop_sec() {
    lingering_child_is_killed("mixed");
}

#[test]
fn a_service_adopted_after_a_daemon_restart_is_stopped_with_its_children() {
    let repo = Repo::new();
    let pids = repo.path().join("pids");
    let body = format!(
        "sleep 1000 &\necho $! >> {p}\necho $$ >> {p}\nexec sleep 1000",
        p = pids.display()
    );
    let exec = script(&repo, "adoptee.sh", &body);
    repo.write(
        "adoptee.service",
        &service(&exec, "KillMode=control-group\nTimeoutStopSec=2"),
    );
    repo.commit("a service to adopt");
    let mut daemon = Daemon::start(repo.path(), &[]);
    let main = daemon.wait_running("adoptee.service");
    let all = pids_in(&pids, 2);
    let _guard = KillPids(all.clone());
    // Once the state file knows the main pid, the daemon dies; its services run on; the
    // next daemon adopts them.
    let state = daemon.state.path().join("state.json");
    wait_for("state.json to record the main pid", WAIT, || {
        let text = std::fs::read_to_string(&state).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        (v["units"]["adoptee.service"]["main_pid"] == main).then_some(())
    });
    daemon.restart();
    let unit = daemon.wait_running("adoptee.service");
    assert_eq!(unit, main, "the restarted daemon should adopt {main}");
    let out = daemon.cli(&["stop", "adoptee.service"]);
    assert!(out.status.success(), "{out:?}");
    let unit = daemon.wait_unit("adoptee.service", "stopped", |u| {
        u["active_state"] == "inactive" || u["active_state"] == "failed"
    });
    assert_eq!(
        unit["result"], "success",
        "stopped by SIGTERM, no timeout: {unit:#}"
    );
    wait_for(
        &format!("every process of the adopted service ({all:?}) to be gone"),
        WAIT,
        || all.iter().all(|&p| !alive(p)).then_some(()),
    );
}

/// The signal mask `field` (`SigCgt`, `SigIgn`, `SigBlk`) of `pid` from /proc/<pid>/status.
fn signal_mask(pid: i32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    u64::from_str_radix(line.split_once(':')?.1.trim(), 16).ok()
}

/// Waits until `pid` catches every signal in `signals` (a shell script's `trap`s have run),
/// so a test never signals a script that has not installed its handlers yet.
fn wait_signals_caught(pid: i32, signals: &[i32]) {
    let want = signals.iter().fold(0u64, |m, &s| m | 1 << (s - 1));
    wait_for(
        &format!("pid {pid} to catch signals {signals:?} (its traps installed)"),
        WAIT,
        || (signal_mask(pid, "SigCgt")? & want == want).then_some(()),
    );
}

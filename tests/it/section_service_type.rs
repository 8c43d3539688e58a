//! `Type=` end to end: forking with `PIDFile=`, notify (late READY=1, none at all,
//! `systemd-notify` as the client), oneshot with `RemainAfterExit=`, exec with a missing
//! binary; and `ExecCondition=`.

use std::path::Path;

use crate::support::{Daemon, Repo, WAIT, alive, script, service, wait_for};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[test]
fn forking_with_pid_file_is_supervised_and_restarted_after_kill_9() {
    let repo = Repo::new();
    let pid_file = repo.path().join("daemon.pid");
    // The classic double fork: the parent starts an intermediate that starts the daemon in
    // a new session and exits; the parent exits 0 right away, before the PID file exists.
    let exec = script(
        &repo,
        "forker.sh",
        &format!(
            "#!/bin/sh\n( setsid sh -c 'echo $$ > \"$0.tmp\" && mv \"$0.tmp\" \"$0\"; exec sleep 1000' {p} & )\nexit 0\n",
            p = pid_file.display()
        ),
    );
    repo.write(
        "forker.service",
        &service(
            &exec,
            &format!(
                "Type=forking\nPIDFile={}\nRestart=on-failure\nRestartSec=0\nTimeoutStartSec=5",
                pid_file.display()
            ),
        ),
    );
    repo.commit("Type=forking");
    let daemon = Daemon::start(repo.path(), &[]);
    let first = daemon.wait_running("forker.service");
    assert_eq!(
        read_pid(&pid_file),
        Some(first),
        "main pid is the PID file's"
    );
    assert!(alive(first));
    kill(Pid::from_raw(first), Signal::SIGKILL).expect("kill -9");
    let unit = daemon.wait_unit("forker.service", "restarted with a new daemon", |u| {
        u["sub_state"] == "running"
            && u["n_restarts"] == 1
            && u["main_pid"].as_i64().is_some_and(|p| p as i32 != first)
    });
    let second = unit["main_pid"].as_i64().unwrap_or_default() as i32;
    assert!(alive(second), "{unit:#}");
    assert_eq!(read_pid(&pid_file), Some(second), "{unit:#}");
    // And it is stopped like any main process.
    let out = daemon.cli(&["stop", "forker.service"]);
    assert!(out.status.success(), "{out:?}");
    wait_for("the forked daemon to be stopped", WAIT, || {
        (!alive(second)).then_some(())
    });
}

/// A double-forking shell daemon for `Type=forking` without `PIDFile=`: the parent waits
/// for an intermediate that starts `copies` daemons in new sessions and exits, then exits 0
/// (so every daemon is an orphan of the subreaper when the parent is gone). Each daemon
/// appends its pid to `pids` and `hup` to `hups` on SIGHUP.
fn guessing_forker(repo: &Repo, pids: &Path, hups: &Path, copies: usize) -> String {
    let daemon = format!(
        "trap 'echo hup >> {hups}' HUP; echo \\$\\$ >> {pids}; while :; do sleep 0.1; done",
        hups = hups.display(),
        pids = pids.display()
    );
    let starts = format!("setsid sh -c \"{daemon}\" &\n").repeat(copies);
    script(
        repo,
        "guesser.sh",
        &format!("#!/bin/sh\n( {starts} )\nexit 0\n"),
    )
}

#[test]
fn forking_without_pid_file_guesses_the_main_pid_for_reload_and_restart() {
    let repo = Repo::new();
    let pids = repo.path().join("pids");
    let hups = repo.path().join("hups");
    let exec = guessing_forker(&repo, &pids, &hups, 1);
    repo.write(
        "guess.service",
        &service(
            &exec,
            "Type=forking\nExecReload=/bin/kill -HUP $MAINPID\nKillMode=mixed\n\
             Restart=on-failure\nRestartSec=0\nTimeoutStartSec=5",
        ),
    );
    repo.commit("Type=forking without PIDFile=");
    let daemon = Daemon::start(repo.path(), &[]);
    let first = daemon.wait_running("guess.service");
    assert_eq!(
        crate::support::pids_in(&pids, 1),
        vec![first],
        "main pid is the daemon's"
    );
    // ExecReload= reaches it through $MAINPID.
    let out = daemon.cli(&["reload", "guess.service"]);
    assert!(out.status.success(), "{out:?}");
    wait_for("the reload's SIGHUP to reach the daemon", WAIT, || {
        std::fs::read_to_string(&hups)
            .is_ok_and(|t| t.contains("hup"))
            .then_some(())
    });
    // Its death is the main process's: Restart=on-failure brings the service back.
    kill(Pid::from_raw(first), Signal::SIGKILL).expect("kill -9");
    let unit = daemon.wait_unit("guess.service", "restarted with a new daemon", |u| {
        u["sub_state"] == "running"
            && u["n_restarts"] == 1
            && u["main_pid"].as_i64().is_some_and(|p| p as i32 != first)
    });
    let second = unit["main_pid"].as_i64().unwrap_or_default() as i32;
    assert_eq!(crate::support::pids_in(&pids, 2)[1], second, "{unit:#}");
    let out = daemon.cli(&["stop", "guess.service"]);
    assert!(out.status.success(), "{out:?}");
    wait_for("the guessed daemon to be stopped", WAIT, || {
        (!alive(second)).then_some(())
    });
}

#[test]
fn forking_without_pid_file_and_two_daemons_runs_without_a_main_pid_and_says_why() {
    let repo = Repo::new();
    let pids = repo.path().join("pids");
    let exec = guessing_forker(&repo, &pids, &repo.path().join("hups"), 2);
    repo.write(
        "ambiguous.service",
        &service(&exec, "Type=forking\nTimeoutStartSec=5"),
    );
    repo.commit("two daemons");
    let daemon = Daemon::start(repo.path(), &[]);
    let unit = daemon.wait_unit("ambiguous.service", "running", |u| {
        u["sub_state"] == "running"
    });
    assert!(
        unit["main_pid"].is_null(),
        "ambiguous: no main pid: {unit:#}"
    );
    let both = crate::support::pids_in(&pids, 2);
    let logs = daemon.cli(&["logs", "ambiguous.service"]);
    let text = String::from_utf8_lossy(&logs.stdout);
    assert!(
        text.contains("cannot guess the main process (GuessMainPID=)"),
        "{text}"
    );
    let out = daemon.cli(&["stop", "ambiguous.service"]);
    assert!(out.status.success(), "{out:?}");
    wait_for("both daemons to be stopped", WAIT, || {
        both.iter().all(|&p| !alive(p)).then_some(())
    });
}

/// A notify service in python that says READY=1 once `go` exists.
fn late_notifier(repo: &Repo, go: &Path) -> String {
    script(
        repo,
        "notifier.py",
        &format!(
            r#"#!/usr/bin/python3
import os, socket, time
while not os.path.exists({go:?}):
    time.sleep(0.01)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"READY=1\nSTATUS=serving", os.environ["NOTIFY_SOCKET"])
time.sleep(1000)
"#,
            go = go.display().to_string()
        ),
    )
}

#[test]
fn notify_is_activating_until_ready_then_active() {
    let repo = Repo::new();
    let go = repo.path().join("go");
    let exec = late_notifier(&repo, &go);
    repo.write(
        "late.service",
        &service(&exec, "Type=notify\nTimeoutStartSec=20"),
    );
    repo.commit("Type=notify");
    let daemon = Daemon::start(repo.path(), &[]);
    let unit = daemon.wait_unit("late.service", "started, not ready", |u| {
        u["main_pid"].is_i64()
    });
    assert_eq!(unit["active_state"], "activating", "{unit:#}");
    assert_eq!(unit["sub_state"], "start", "{unit:#}");
    let pid = unit["main_pid"].as_i64().unwrap_or_default() as i32;
    // Still activating while it has not said READY=1 (it cannot: `go` does not exist).
    assert_eq!(daemon.unit("late.service")["active_state"], "activating");
    std::fs::write(&go, "").expect("create go");
    let unit = daemon.wait_unit("late.service", "active after READY=1", |u| {
        u["active_state"] == "active"
    });
    assert_eq!(unit["sub_state"], "running", "{unit:#}");
    assert_eq!(unit["main_pid"], pid, "{unit:#}");
    assert_eq!(unit["status_text"], "serving", "{unit:#}");
}

#[test]
fn notify_without_ready_hits_timeout_start_sec() {
    let repo = Repo::new();
    repo.write(
        "mute.service",
        &service("/bin/sleep 1000", "Type=notify\nTimeoutStartSec=1"),
    );
    repo.commit("never ready");
    let daemon = Daemon::start(repo.path(), &[]);
    let pid = daemon.wait_unit("mute.service", "started", |u| u["main_pid"].is_i64())["main_pid"]
        .as_i64()
        .unwrap_or_default() as i32;
    let unit = daemon.wait_unit("mute.service", "failed", |u| u["active_state"] == "failed");
    assert_eq!(unit["result"], "timeout", "{unit:#}");
    let error = unit["error"].as_str().unwrap_or_default();
    assert!(error.contains("TimeoutStartSec="), "{unit:#}");
    assert!(
        !alive(pid),
        "the process that never got ready is still running"
    );
}

#[test]
fn systemd_notify_ready_works_as_a_client() {
    if !crate::support::require(
        "systemd-notify (package systemd)",
        crate::support::have_program("systemd-notify"),
    ) {
        return;
    }
    let repo = Repo::new();
    // systemd-notify runs in a background subshell of the main process, which has already
    // exec'd `sleep`: the message comes from another process of the service (accepted by
    // session, which NotifyAccess=all allows, as in systemd; as root, systemd-notify may
    // also claim its parent's pid).
    repo.write(
        "client.service",
        &service(
            "/bin/sh -c '( /usr/bin/systemd-notify --ready --status=from-systemd-notify; true ) & exec sleep 1000'",
            "Type=notify\nNotifyAccess=all\nTimeoutStartSec=20",
        ),
    );
    repo.commit("systemd-notify");
    let daemon = Daemon::start(repo.path(), &[]);
    let unit = daemon.wait_unit("client.service", "active", |u| {
        u["active_state"] == "active" || u["active_state"] == "failed"
    });
    assert_eq!(unit["sub_state"], "running", "{unit:#}");
    assert_eq!(unit["status_text"], "from-systemd-notify", "{unit:#}");
    let pid = unit["main_pid"].as_i64().unwrap_or_default() as i32;
    assert!(alive(pid), "{unit:#}");
}

#[test]
fn oneshot_with_remain_after_exit_stays_active_exited() {
    let repo = Repo::new();
    let marker = repo.path().join("ran");
    repo.write(
        "setup.service",
        &service(
            &format!("/bin/sh -c 'echo ran >> {}'", marker.display()),
            "Type=oneshot\nRemainAfterExit=yes",
        ),
    );
    repo.write("once.service", &service("/bin/true", "Type=oneshot"));
    repo.commit("oneshots");
    let daemon = Daemon::start(repo.path(), &[]);
    let unit = daemon.wait_unit("setup.service", "active (exited)", |u| {
        u["active_state"] == "active" && u["sub_state"] == "exited"
    });
    assert!(unit["main_pid"].is_null(), "{unit:#}");
    assert_eq!(unit["result"], "success", "{unit:#}");
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap_or_default(),
        "ran\n"
    );
    // Without RemainAfterExit= it goes back to inactive (dead), successfully.
    let once = daemon.wait_unit("once.service", "inactive", |u| {
        u["active_state"] == "inactive"
    });
    assert_eq!(once["result"], "success", "{once:#}");
    assert_eq!(once["sub_state"], "dead", "{once:#}");
    // Stopping the remaining one runs nothing again and makes it inactive.
    let out = daemon.cli(&["stop", "setup.service"]);
    assert!(out.status.success(), "{out:?}");
    daemon.wait_unit("setup.service", "inactive", |u| {
        u["active_state"] == "inactive"
    });
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap_or_default(),
        "ran\n"
    );
}

#[test]
fn exec_with_a_missing_binary_reports_exec_failed() {
    let repo = Repo::new();
    repo.write(
        "ghost.service",
        &service("/nonexistent/gitproc-ghost --flag", "Type=exec"),
    );
    repo.commit("missing binary");
    let daemon = Daemon::start(repo.path(), &[]);
    let unit = daemon.wait_unit("ghost.service", "failed", |u| u["active_state"] == "failed");
    let expected = "exec failed: /nonexistent/gitproc-ghost: No such file or directory";
    assert_eq!(unit["error"], expected, "{unit:#}");
    assert_eq!(unit["result"], "exit-code", "{unit:#}");
    // It shows in `gitproc status` (human form) and in the unit's log.
    let out = daemon.cli(&["status", "ghost.service"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(expected), "gitproc status:\n{text}");
    // The unit log is written by the log thread: wait for the line.
    let log_path = daemon.state.path().join("logs/ghost.service.log");
    crate::support::wait_for(
        &format!("{expected:?} in {}", log_path.display()),
        crate::support::WAIT,
        || {
            std::fs::read_to_string(&log_path)
                .ok()
                .filter(|log| log.contains(expected))
                .map(|_| ())
        },
    );
}

#[test]
fn exec_condition_exit_1_skips_without_failure() {
    let repo = Repo::new();
    let marker = repo.path().join("main-ran");
    repo.write(
        "maybe.service",
        &service(
            &format!("/bin/sh -c 'touch {}; exec sleep 1000'", marker.display()),
            "ExecCondition=/bin/sh -c 'exit 1'",
        ),
    );
    // Exit 255 (or a signal) from ExecCondition= is a failure, unlike 1-254.
    repo.write(
        "broken.service",
        &service("/bin/sleep 1000", "ExecCondition=/bin/sh -c 'exit 255'"),
    );
    repo.commit("ExecCondition=");
    let daemon = Daemon::start(repo.path(), &[]);
    wait_for("the daemon to log the skipped start", WAIT, || {
        daemon
            .log_text()
            .contains("ExecCondition= exited with 1")
            .then_some(())
    });
    let unit = daemon.unit("maybe.service");
    assert_eq!(unit["active_state"], "inactive", "{unit:#}");
    assert_eq!(unit["result"], "success", "{unit:#}");
    assert!(unit["main_pid"].is_null(), "{unit:#}");
    assert!(
        !marker.exists(),
        "ExecStart= ran although the condition failed"
    );
    let broken = daemon.wait_unit("broken.service", "failed", |u| {
        u["active_state"] == "failed"
    });
    assert_eq!(broken["result"], "exit-code", "{broken:#}");
}

#[test]
fn watchdog_pings_keep_a_notify_service_alive_and_silence_kills_it() {
    let repo = Repo::new();
    let pings = repo.path().join("pings");
    // READY=1, then WATCHDOG=1 every 0.1 s, counting them in `pings`; `limit` pings, then
    // silence (the process keeps running).
    let exec = script(
        &repo,
        "pinger.py",
        &format!(
            r#"#!/usr/bin/python3
import os, socket, sys, time
limit, out = int(sys.argv[1]), {pings:?} + sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])
for i in range(limit):
    s.sendto(b"WATCHDOG=1", os.environ["NOTIFY_SOCKET"])
    with open(out, "a") as f:
        f.write("ping\n")
    time.sleep(0.1)
time.sleep(1000)
"#,
            pings = pings.display().to_string()
        ),
    );
    let extra = "Type=notify\nWatchdogSec=1\nTimeoutStartSec=20\nTimeoutStopSec=2";
    repo.write("steady.service", &service(&format!("{exec} 100000"), extra));
    repo.write("silent.service", &service(&format!("{exec} 3"), extra));
    repo.commit("watchdog pingers");
    let daemon = Daemon::start(repo.path(), &[]);
    let steady = daemon.wait_running("steady.service");
    let count = |limit: &str| {
        std::fs::read_to_string(format!("{}{limit}", pings.display()))
            .unwrap_or_default()
            .lines()
            .count()
    };
    // The silent one stops pinging after 3 pings and is killed by the watchdog.
    let silent = daemon.wait_unit("silent.service", "failed by its watchdog", |u| {
        u["active_state"] == "failed"
    });
    assert_eq!(silent["result"], "watchdog", "{silent:#}");
    assert_eq!(count("3"), 3);
    // Meanwhile the steady one pinged for well over WatchdogSec= (30 pings = 3 s) and
    // still runs as the same process.
    wait_for("30 pings from steady.service", WAIT, || {
        (count("100000") >= 30).then_some(())
    });
    let unit = daemon.unit("steady.service");
    assert_eq!(unit["sub_state"], "running", "{unit:#}");
    assert_eq!(unit["main_pid"], steady, "{unit:#}");
    assert_eq!(unit["n_restarts"], 0, "{unit:#}");
}

//! `Restart=` and friends, end to end: systemd.service(5)'s restart table, one test per row,
//! against every exit cause a real process can produce; `SuccessExitStatus=`,
//! `RestartPreventExitStatus=`, `RestartForceExitStatus=`; start limits; `RestartSec=0`.

use std::time::Duration;

use crate::support::{Daemon, Repo, WAIT, alive, service, wait_for};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

/// A main process that exits 0 on SIGUSR1 and 3 on SIGUSR2, and otherwise dies of whatever
/// signal it gets (dash keeps default dispositions for SIGTERM, SIGKILL and SIGABRT).
/// `wait` returns as soon as a trapped signal arrives, so the trap runs at once.
const TRAPPER: &str =
    r#"/bin/sh -c 'trap "exit 0" USR1; trap "exit 3" USR2; while :; do sleep 0.2 & wait $!; done'"#;

/// The ways a run can end (the columns of systemd's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    /// Exit code 0.
    Clean,
    /// Exit code 3.
    ExitCode,
    /// SIGKILL: an unclean signal.
    Kill9,
    /// SIGABRT: an unclean signal (systemd's "abort").
    Abort,
    /// SIGTERM from outside: counts as clean for non-oneshot services.
    Term,
    /// TimeoutStartSec= hit (Type=notify that never says READY=1).
    Timeout,
    /// WatchdogSec= hit (never sends WATCHDOG=1).
    Watchdog,
}

const CAUSES: [Cause; 7] = [
    Cause::Clean,
    Cause::ExitCode,
    Cause::Kill9,
    Cause::Abort,
    Cause::Term,
    Cause::Timeout,
    Cause::Watchdog,
];

impl Cause {
    fn unit(self) -> String {
        format!("{self:?}.service").to_lowercase()
    }

    /// Expected `result` of the run that ended this way.
    fn result(self) -> &'static str {
        match self {
            Cause::Clean | Cause::Term => "success",
            Cause::ExitCode => "exit-code",
            Cause::Kill9 => "signal",
            // SIGABRT dumps core where the core limit allows it.
            Cause::Abort => "signal|core-dump",
            Cause::Timeout => "timeout",
            Cause::Watchdog => "watchdog",
        }
    }

    fn unit_text(self, restart: &str) -> String {
        let common = format!("Restart={restart}\nRestartSec=0\nTimeoutStopSec=2\n");
        match self {
            Cause::Timeout => service(
                "/bin/sleep 1000",
                &format!("Type=notify\nTimeoutStartSec=1\n{common}"),
            ),
            Cause::Watchdog => service("/bin/sleep 1000", &format!("WatchdogSec=1\n{common}")),
            _ => service(TRAPPER, &common),
        }
    }

    /// Makes the running main process `pid` end this way (timeouts end on their own).
    fn trigger(self, pid: i32) {
        let signal = match self {
            Cause::Clean => Signal::SIGUSR1,
            Cause::ExitCode => Signal::SIGUSR2,
            Cause::Kill9 => Signal::SIGKILL,
            Cause::Abort => Signal::SIGABRT,
            Cause::Term => Signal::SIGTERM,
            Cause::Timeout | Cause::Watchdog => return,
        };
        kill(Pid::from_raw(pid), signal).expect("signal the service");
    }
}

fn result_matches(unit: &Value, expected: &str) -> bool {
    expected.split('|').any(|r| unit["result"] == r)
}

/// Runs one row of the table: one unit per cause, all with `Restart=restart`, and checks
/// that exactly the causes in `restarts` lead to an automatic restart.
fn row(restart: &str, restarts: &[Cause]) {
    let repo = Repo::new();
    for cause in CAUSES {
        repo.write(&cause.unit(), &cause.unit_text(restart));
    }
    repo.commit(&format!("Restart={restart} row"));
    let daemon = Daemon::start(repo.path(), &[]);
    // The first main pid of every unit. Timeouts and watchdogs fire on their own (after 1 s),
    // maybe before we look: their first pid is then unknown, which only skips the pid check.
    let firsts: Vec<Option<i32>> = CAUSES
        .iter()
        .map(|cause| {
            let name = cause.unit();
            if matches!(cause, Cause::Timeout | Cause::Watchdog) {
                let unit = daemon.wait_unit(&name, "started once", |u| {
                    u["main_pid"].is_i64() || u["n_restarts"] != 0 || u["result"] != "success"
                });
                unit["main_pid"]
                    .as_i64()
                    .filter(|_| unit["n_restarts"] == 0)
                    .map(|p| p as i32)
            } else {
                let pid = daemon.wait_running(&name);
                wait_signals_caught(pid, &[libc::SIGUSR1, libc::SIGUSR2]);
                Some(pid)
            }
        })
        .collect();
    for (cause, first) in CAUSES.into_iter().zip(firsts) {
        let name = cause.unit();
        if let Some(first) = first {
            cause.trigger(first);
        }
        let expected = cause.result();
        if restarts.contains(&cause) {
            let unit = daemon.wait_unit(&name, "restarted once with a new main process", |u| {
                u["n_restarts"].as_u64() >= Some(1)
                    && u["main_pid"]
                        .as_i64()
                        .is_some_and(|p| Some(p as i32) != first)
            });
            assert!(
                unit["active_state"] == "active" || unit["active_state"] == "activating",
                "{name}: {unit:#}"
            );
        } else {
            let end = if expected == "success" {
                "inactive"
            } else {
                "failed"
            };
            let unit = daemon.wait_unit(&name, &format!("{end} without a restart"), |u| {
                u["active_state"] == end
            });
            assert!(
                result_matches(&unit, expected),
                "{name}: expected result {expected}: {unit:#}"
            );
            assert_eq!(unit["n_restarts"], 0, "{name} was restarted: {unit:#}");
            assert!(unit["main_pid"].is_null(), "{name}: {unit:#}");
        }
        if let Some(first) = first {
            wait_for(
                &format!("{name}'s first main process {first} to be gone"),
                WAIT,
                || (!alive(first)).then_some(()),
            );
        }
    }
}

#[test]
fn restart_no_never_restarts() {
    row("no", &[]);
}

#[test]
fn restart_always_restarts_after_every_cause() {
    row("always", &CAUSES);
}

#[test]
fn restart_on_success_restarts_after_clean_exit_and_sigterm_only() {
    row("on-success", &[Cause::Clean, Cause::Term]);
}

#[test]
fn restart_on_failure_restarts_after_unclean_exits_timeouts_and_watchdog() {
    row(
        "on-failure",
        &[
            Cause::ExitCode,
            Cause::Kill9,
            Cause::Abort,
            Cause::Timeout,
            Cause::Watchdog,
        ],
    );
}

#[test]
fn restart_on_abnormal_restarts_after_signals_timeouts_and_watchdog() {
    row(
        "on-abnormal",
        &[Cause::Kill9, Cause::Abort, Cause::Timeout, Cause::Watchdog],
    );
}

#[test]
fn restart_on_abort_restarts_after_unclean_signals_only() {
    row("on-abort", &[Cause::Kill9, Cause::Abort]);
}

#[test]
fn restart_on_watchdog_restarts_after_watchdog_only() {
    row("on-watchdog", &[Cause::Watchdog]);
}

/// Starts one unit, makes its main process exit with `sig` and waits for the end state.
fn one(text: &str, sig: Signal, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let repo = Repo::new();
    repo.write("one.service", text);
    repo.commit("one unit");
    let daemon = Daemon::start(repo.path(), &[]);
    let pid = daemon.wait_running("one.service");
    wait_signals_caught(pid, &[libc::SIGUSR1, libc::SIGUSR2]);
    kill(Pid::from_raw(pid), sig).expect("signal the service");
    daemon.wait_unit("one.service", what, pred)
}

#[test]
fn success_exit_status_makes_an_exit_code_clean() {
    let text = service(
        TRAPPER,
        "Restart=on-failure\nRestartSec=0\nSuccessExitStatus=3",
    );
    // Exit 3 (SIGUSR2) is a success: inactive, no restart.
    let unit = one(&text, Signal::SIGUSR2, "inactive", |u| {
        u["active_state"] == "inactive" || u["active_state"] == "failed"
    });
    assert_eq!(unit["active_state"], "inactive", "{unit:#}");
    assert_eq!(unit["result"], "success", "{unit:#}");
    assert_eq!(unit["n_restarts"], 0, "{unit:#}");
    assert_eq!(unit["exec_main_status"], 3, "{unit:#}");
}

#[test]
fn success_exit_status_accepts_signal_names() {
    let text = service(
        TRAPPER,
        "Restart=on-failure\nRestartSec=0\nSuccessExitStatus=SIGKILL",
    );
    let unit = one(&text, Signal::SIGKILL, "inactive", |u| {
        u["active_state"] == "inactive" || u["active_state"] == "failed"
    });
    assert_eq!(unit["active_state"], "inactive", "{unit:#}");
    assert_eq!(unit["n_restarts"], 0, "{unit:#}");
}

#[test]
fn restart_prevent_exit_status_wins_over_restart_always() {
    let text = service(
        TRAPPER,
        "Restart=always\nRestartSec=0\nRestartPreventExitStatus=3",
    );
    let unit = one(&text, Signal::SIGUSR2, "failed", |u| {
        u["active_state"] == "failed" || u["n_restarts"] != 0
    });
    assert_eq!(unit["active_state"], "failed", "{unit:#}");
    assert_eq!(unit["result"], "exit-code", "{unit:#}");
    assert_eq!(unit["n_restarts"], 0, "{unit:#}");
}

#[test]
fn restart_force_exit_status_restarts_even_with_restart_no() {
    let text = service(
        TRAPPER,
        "Restart=no\nRestartSec=0\nRestartForceExitStatus=3",
    );
    let unit = one(&text, Signal::SIGUSR2, "restarted", |u| {
        u["active_state"] == "failed" || u["n_restarts"] == 1
    });
    assert_eq!(unit["n_restarts"], 1, "{unit:#}");
}

#[test]
fn start_limit_ends_in_failed_start_limit_hit_and_stops_restarting() {
    let repo = Repo::new();
    // Each start appends a line: the count is the number of starts that really happened.
    let starts = repo.path().join("starts");
    repo.write(
        "crash.service",
        &service(
            &format!("/bin/sh -c 'echo start >> {}; exit 1'", starts.display()),
            "Restart=always\nRestartSec=0\n\n[Unit]\nStartLimitBurst=3\nStartLimitIntervalSec=10",
        ),
    );
    repo.commit("crash loop");
    let daemon = Daemon::start(repo.path(), &[]);
    let unit = daemon.wait_unit("crash.service", "failed with start-limit-hit", |u| {
        u["active_state"] == "failed" && u["result"] == "start-limit-hit"
    });
    let count = |_: ()| {
        std::fs::read_to_string(&starts)
            .unwrap_or_default()
            .lines()
            .count()
    };
    // Three starts were allowed within the interval, the fourth was refused.
    assert_eq!(count(()), 3, "{unit:#}");
    assert_eq!(unit["sub_state"], "failed", "{unit:#}");
    assert!(unit["main_pid"].is_null(), "{unit:#}");
    let n = unit["n_restarts"].clone();
    let error = unit["error"].as_str().unwrap_or_default();
    assert!(error.contains("start limit"), "{unit:#}");
    // `failed` is final: no restart is scheduled. Watch it for a while to be sure nothing
    // else starts it (a negative check: only time can show it).
    let until = std::time::Instant::now() + Duration::from_millis(600);
    while std::time::Instant::now() < until {
        let now = daemon.unit("crash.service");
        assert_eq!(now["active_state"], "failed", "{now:#}");
        assert_eq!(now["n_restarts"], n, "{now:#}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(count(()), 3);
    assert!(daemon.log_text().contains("start limit hit"));
}

#[test]
fn restart_sec_zero_replaces_a_killed_service_at_once() {
    let repo = Repo::new();
    repo.write(
        "fast.service",
        &service(
            "/bin/sleep 1000",
            "Restart=always\nRestartSec=0\n\n[Unit]\nStartLimitIntervalSec=0",
        ),
    );
    repo.commit("fast restarts");
    let daemon = Daemon::start(repo.path(), &[]);
    let mut pid = daemon.wait_running("fast.service");
    // Several kills in a row: with RestartSec=0 there is no hidden delay that a burst would
    // run into (the start limit is off); each one is replaced.
    for i in 1..=5u64 {
        kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill -9");
        let unit = daemon.wait_unit("fast.service", "replaced by a new process", |u| {
            u["sub_state"] == "running" && u["main_pid"].as_i64().is_some_and(|p| p as i32 != pid)
        });
        assert_eq!(unit["n_restarts"], i, "{unit:#}");
        pid = unit["main_pid"].as_i64().unwrap_or_default() as i32;
    }
}

#[test]
fn an_operator_stop_never_restarts() {
    let repo = Repo::new();
    repo.write(
        "keep.service",
        &service("/bin/sleep 1000", "Restart=always\nRestartSec=0"),
    );
    repo.commit("restart always");
    let daemon = Daemon::start(repo.path(), &[]);
    let pid = daemon.wait_running("keep.service");
    let out = daemon.cli(&["stop", "keep.service"]);
    assert!(out.status.success(), "{out:?}");
    let unit = daemon.wait_unit("keep.service", "inactive", |u| {
        u["active_state"] == "inactive"
    });
    assert_eq!(unit["n_restarts"], 0, "{unit:#}");
    assert!(!alive(pid));
}

#[test]
fn sigterm_is_unclean_for_a_oneshot() {
    let repo = Repo::new();
    repo.write(
        "job.service",
        &service(
            "/bin/sleep 1000",
            "Type=oneshot\nRestart=on-failure\nRestartSec=0",
        ),
    );
    repo.commit("a oneshot");
    let daemon = Daemon::start(repo.path(), &[]);
    let unit = daemon.wait_unit("job.service", "starting", |u| u["main_pid"].is_i64());
    assert_eq!(unit["active_state"], "activating", "{unit:#}");
    let first = unit["main_pid"].as_i64().unwrap_or_default() as i32;
    kill(Pid::from_raw(first), Signal::SIGTERM).expect("signal the oneshot");
    // Unclean for a oneshot: Restart=on-failure restarts it.
    let unit = daemon.wait_unit("job.service", "restarted", |u| {
        u["n_restarts"] == 1 && u["main_pid"].as_i64().is_some_and(|p| p as i32 != first)
    });
    assert_eq!(unit["exec_main_code"], "killed", "{unit:#}");
    assert_eq!(unit["exec_main_status"], 15, "{unit:#}");
}

#[test]
fn restart_sec_delays_the_restart() {
    let repo = Repo::new();
    repo.write(
        "slow.service",
        &service("/bin/sleep 1000", "Restart=always\nRestartSec=300"),
    );
    repo.commit("slow restarts");
    let daemon = Daemon::start(repo.path(), &[]);
    let pid = daemon.wait_running("slow.service");
    kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill -9");
    // Waiting out its RestartSec= (far longer than this test): activating/auto-restart,
    // with no process and no restart counted yet.
    let unit = daemon.wait_unit("slow.service", "auto-restart", |u| {
        u["sub_state"] == "auto-restart"
    });
    assert_eq!(unit["active_state"], "activating", "{unit:#}");
    assert_eq!(unit["result"], "signal", "{unit:#}");
    assert_eq!(unit["n_restarts"], 0, "{unit:#}");
    assert!(unit["main_pid"].is_null(), "{unit:#}");
    assert!(daemon.log_text().contains("restarting in 300s"));
    // An operator stop cancels the pending restart: inactive, as asked (as systemd).
    let out = daemon.cli(&["stop", "slow.service"]);
    assert!(out.status.success(), "{out:?}");
    let unit = daemon.wait_unit("slow.service", "stopped", |u| {
        u["sub_state"] != "auto-restart"
    });
    assert_eq!(unit["active_state"], "inactive", "{unit:#}");
    assert_eq!(unit["sub_state"], "dead", "{unit:#}");
    assert_eq!(unit["n_restarts"], 0, "{unit:#}");
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

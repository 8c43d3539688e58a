//! Units whose numbers are hostile (issue 10, item 1): a time span so large that adding it to
//! the clock overflows. Such a commit used to pass `gitproc check` and then panic the event
//! loop (`overflow when adding duration to instant`), taking down every service's supervisor.
//!
//! systemd keeps time spans in a `usec_t` and saturates them at `infinity`
//! (`USEC_INFINITY`): a span at or beyond 2^64-1 µs (about 584,542 years) *is* infinity. gitproc
//! does the same, so `RestartSec=300000000000y` means "restart never comes due" (the unit waits
//! in `activating/auto-restart`, as systemd's does with `RestartSec=infinity`) and a huge
//! `TimeoutStartSec=`/`TimeoutStopSec=`/`WatchdogSec=` means no timeout at all.

use std::process::Command;

use crate::support::{Daemon, Repo, bin, service, unique, unique_sleep_secs};

/// Far beyond what a `usec_t` or a `std::time::Instant` can hold.
const HUGE: &str = "300000000000y";

#[test]
fn huge_time_spans_are_accepted_and_leave_the_daemon_serving() {
    let repo = Repo::new();
    let good = format!("{}.service", unique("good"));
    let restarts = format!("{}.service", unique("hugerestart"));
    let timeouts = format!("{}.service", unique("hugetimeouts"));
    let good_secs = unique_sleep_secs();
    repo.write(&good, &service(&format!("/bin/sleep {good_secs}"), ""));
    repo.commit("a good unit");
    let daemon = Daemon::start(repo.path(), &[]);
    let good_pid = daemon.wait_running(&good);

    repo.write(
        &restarts,
        &service("/bin/false", &format!("Restart=always\nRestartSec={HUGE}")),
    );
    repo.write(
        &timeouts,
        &service(
            &format!("/bin/sleep {}", unique_sleep_secs()),
            &format!(
                "TimeoutStartSec={HUGE}\nTimeoutStopSec={HUGE}\nWatchdogSec={HUGE}\n\
                 RuntimeMaxSec={HUGE}\n[Unit]\nStartLimitIntervalSec={HUGE}\nStartLimitBurst=3"
            ),
        ),
    );

    // `gitproc check` accepts them: a huge span is a valid (infinite) span, as for systemd.
    let out = Command::new(bin())
        .current_dir(repo.path())
        .args(["check", "."])
        .output()
        .expect("run gitproc check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.contains("0 error(s)"),
        "check: {out:?}"
    );

    let commit = repo.commit("units with huge time spans");
    daemon.sync_to(&commit);

    // The restart never comes due: the unit failed once and waits in auto-restart.
    let unit = daemon.wait_unit(&restarts, "waiting for an infinite RestartSec=", |u| {
        u["sub_state"] == "auto-restart"
    });
    assert_eq!(unit["active_state"], "activating", "{unit:#}");
    assert_eq!(unit["n_restarts"], 0, "{unit:#}");
    // The unit with huge timeouts runs, its watchdog and timeouts armed at "never".
    let timeouts_pid = daemon.wait_running(&timeouts);
    assert!(timeouts_pid > 0);

    // Several more loop iterations (status requests, a sync) with every deadline computed:
    // the daemon still answers and the good unit kept its process.
    for _ in 0..5 {
        daemon.sync();
        let status = daemon.status();
        assert_eq!(status["daemon"]["commit"], commit, "{status:#}");
    }
    assert_eq!(
        daemon.main_pid(&good),
        Some(good_pid),
        "good unit restarted"
    );
    assert_eq!(
        daemon.unit(&restarts)["sub_state"],
        "auto-restart",
        "an infinite RestartSec= came due"
    );

    // Stopping the unit with the infinite TimeoutStopSec= arms that deadline too; it stops
    // on SIGTERM, and an operator stop of the waiting one cancels its restart.
    daemon.cli_ok(&["stop", &timeouts]);
    daemon.cli_ok(&["stop", &restarts]);
    let unit = daemon.wait_unit(&restarts, "stopped", |u| u["active_state"] == "inactive");
    assert_eq!(unit["sub_state"], "dead", "{unit:#}");
    assert_eq!(
        daemon.main_pid(&good),
        Some(good_pid),
        "good unit restarted"
    );
    assert!(daemon.try_status().is_some(), "daemon stopped answering");
}

//! The daemon never leaves a zombie (it is the child subreaper of everything its services
//! orphan) and never leaks file descriptors, into services or of its own.

use std::collections::BTreeSet;

use crate::support::{Daemon, Repo, WAIT, alive, all_pids, service, wait_for};

/// Zombie processes whose parent is `ppid`.
fn zombie_children(ppid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for pid in all_pids() {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let parent = fields.next().and_then(|p| p.parse::<i32>().ok());
        if state == Some("Z") && parent == Some(ppid) {
            out.push(pid);
        }
    }
    out
}

fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn no_zombies_after_a_thousand_orphaned_children() {
    let repo = Repo::new();
    let done = repo.path().join("done");
    // `(true &)`: the subshell starts `true` and exits at once, so `true` is orphaned and
    // reparented to the daemon (the subreaper), which must reap it. 1,000 of them.
    repo.write(
        "spawner.service",
        &service(
            &format!(
                "/bin/sh -c 'i=0; while [ $i -lt 1000 ]; do (true &); i=$((i+1)); done; touch {}; exec sleep 1000'",
                done.display()
            ),
            "",
        ),
    );
    repo.commit("a service that orphans 1000 children");
    let daemon = Daemon::start(repo.path(), &[]);
    let main = daemon.wait_running("spawner.service");
    wait_for(
        "the service to have forked its 1,000 children",
        WAIT,
        || done.exists().then_some(()),
    );
    let pid = daemon.pid();
    wait_for(
        "no zombie child of the daemon (orphans reaped)",
        WAIT,
        || zombie_children(pid).is_empty().then_some(()),
    );
    // The orphans' exits did not disturb the service itself.
    let unit = daemon.unit("spawner.service");
    assert_eq!(unit["sub_state"], "running", "{unit:#}");
    assert_eq!(unit["main_pid"], main, "{unit:#}");
    assert_eq!(unit["n_restarts"], 0, "{unit:#}");
    assert!(alive(main));
}

#[test]
fn no_zombies_from_a_crash_loop_of_short_lived_services() {
    let repo = Repo::new();
    repo.write(
        "blink.service",
        &service(
            "/bin/sh -c 'true & exit 1'",
            "Restart=always\nRestartSec=0\n\n[Unit]\nStartLimitBurst=100\nStartLimitIntervalSec=60",
        ),
    );
    repo.commit("100 short runs");
    let daemon = Daemon::start(repo.path(), &[]);
    daemon.wait_unit("blink.service", "stopped by its start limit", |u| {
        u["result"] == "start-limit-hit"
    });
    let pid = daemon.pid();
    wait_for("no zombie child of the daemon", WAIT, || {
        zombie_children(pid).is_empty().then_some(())
    });
}

/// The fds listed by `ls -l /proc/self/fd` in a log: fd number -> target.
fn listed_fds(log: &str) -> Vec<(u32, String)> {
    log.lines()
        .filter_map(|line| {
            let (left, target) = line.split_once(" -> ")?;
            let fd = left.split_whitespace().last()?.parse().ok()?;
            Some((fd, target.trim().to_string()))
        })
        .collect()
}

#[test]
fn services_inherit_only_stdin_stdout_and_stderr() {
    let repo = Repo::new();
    // Other services run first, so the daemon holds their log pipes, pidfds and the like
    // while it spawns the lister: none of it may reach the lister.
    repo.write("busy.service", &service("/bin/sleep 1000", ""));
    repo.write(
        "notifier.service",
        &service("/bin/sleep 1000", "WatchdogSec=100"),
    );
    repo.write(
        "fds.service",
        &service(
            "/bin/ls -l /proc/self/fd",
            "Type=oneshot\nRemainAfterExit=yes\nWatchdogSec=100\n\n[Unit]\nAfter=busy.service notifier.service",
        ),
    );
    repo.commit("an fd lister");
    let daemon = Daemon::start(repo.path(), &[]);
    daemon.wait_running("busy.service");
    daemon.wait_unit("fds.service", "done", |u| u["sub_state"] == "exited");
    let path = daemon.state.path().join("logs/fds.service.log");
    let fds = wait_for("the lister's output in its log", WAIT, || {
        let fds = listed_fds(&std::fs::read_to_string(&path).unwrap_or_default());
        (fds.len() >= 3).then_some(fds)
    });
    let numbers: BTreeSet<u32> = fds.iter().map(|(fd, _)| *fd).collect();
    assert!(
        numbers.is_superset(&BTreeSet::from([0, 1, 2])),
        "stdin/stdout/stderr missing: {fds:?}"
    );
    for (fd, target) in &fds {
        // ls itself opens /proc/self/fd (shown as /proc/<pid>/fd) to list it.
        let own = target.starts_with("/proc/") && target.ends_with("/fd");
        assert!(
            *fd <= 2 || own,
            "fd {fd} -> {target} leaked into the service: {fds:?}"
        );
    }
    assert!(
        fds.iter().any(|(fd, t)| *fd == 0 && t == "/dev/null"),
        "stdin is not /dev/null: {fds:?}"
    );
}

#[test]
fn the_daemon_closes_what_each_run_opened() {
    let repo = Repo::new();
    repo.write("README", "no units yet\n");
    repo.commit("empty");
    let daemon = Daemon::start(repo.path(), &[]);
    let pid = daemon.pid();
    let baseline = fd_count(pid);
    repo.write(
        "churn.service",
        &service(
            "/bin/sh -c 'echo out; echo err >&2; exit 1'",
            "Restart=always\nRestartSec=0\n\n[Unit]\nStartLimitBurst=100\nStartLimitIntervalSec=60",
        ),
    );
    repo.commit("100 runs with output");
    daemon.sync();
    let unit = daemon.wait_unit("churn.service", "stopped by its start limit", |u| {
        u["result"] == "start-limit-hit"
    });
    assert_eq!(unit["n_restarts"], 100, "{unit:#}");
    // Each run had two pipes (and a pidfd or two): all closed once the runs are over. The
    // unit's log file may stay open, hence a small allowance.
    let slack = 3;
    wait_for(
        &format!("the daemon's fds to come back near {baseline} (+{slack})"),
        WAIT,
        || (fd_count(pid) <= baseline + slack).then_some(()),
    );
}

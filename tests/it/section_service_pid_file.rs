//! `PIDFile=` trust and failure, as systemd decides: a PID file naming a process that is
//! not the service's is refused with result `protocol`; a dead pid with nothing of the
//! service left fails at once (not after TimeoutStartSec=) and Restart= applies.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use crate::support::{Daemon, Repo, alive, script, service, wait_for};

#[test]
fn a_pid_file_naming_a_foreign_process_is_refused() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("User=nobody needs root; skipped");
        return;
    }
    let mut foreign = Command::new("sleep")
        .arg("1000")
        .stdin(Stdio::null())
        .spawn()
        .expect("start a process outside gitproc");
    let repo = Repo::new();
    // nobody writes the PID file (so it is not root's) and runs the script.
    std::fs::set_permissions(repo.path(), std::fs::Permissions::from_mode(0o777))
        .expect("chmod the repo");
    let pid_file = repo.path().join("foreign.pid");
    let exec = script(
        &repo,
        "liar.sh",
        &format!("echo {} > {}\nexit 0", foreign.id(), pid_file.display()),
    );
    repo.write(
        "liar.service",
        &service(
            &exec,
            &format!(
                "Type=forking\nUser=nobody\nPIDFile={}\nTimeoutStartSec=300",
                pid_file.display()
            ),
        ),
    );
    repo.commit("a PID file naming someone else");
    let daemon = Daemon::start(repo.path(), &[]);
    let unit = daemon.wait_unit("liar.service", "failed", |u| u["active_state"] == "failed");
    assert_eq!(unit["result"], "protocol", "{unit:#}");
    let error = unit["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("pid {}", foreign.id())) && error.contains("does not belong"),
        "{unit:#}"
    );
    assert!(
        alive(foreign.id() as i32),
        "the foreign process was signalled"
    );
    let _ = foreign.kill();
    let _ = foreign.wait();
}

#[test]
fn a_dead_pid_file_pid_fails_at_once_and_restart_restarts_it() {
    // A pid that existed and is gone (reaped by us: not reused within the test).
    let mut gone = Command::new("true").spawn().expect("spawn true");
    let dead = gone.id();
    let _ = gone.wait();
    let repo = Repo::new();
    let pid_file = repo.path().join("dead.pid");
    let runs = repo.path().join("runs");
    let exec = script(
        &repo,
        "dead.sh",
        &format!(
            "echo run >> {}\necho {dead} > {}\nexit 0",
            runs.display(),
            pid_file.display()
        ),
    );
    repo.write(
        "dead.service",
        &service(
            &exec,
            &format!(
                "Type=forking\nPIDFile={}\nTimeoutStartSec=300\nRestart=on-failure\nRestartSec=1",
                pid_file.display()
            ),
        ),
    );
    repo.commit("a PID file naming a dead pid");
    let daemon = Daemon::start(repo.path(), &[]);
    // Needs the unit's cgroup: without one, "nothing of the service is left" cannot be
    // proven (a daemon that called setsid() is in no session of ours).
    let unit = daemon.wait_unit("dead.service", "failed with protocol", |u| {
        u["result"] == "protocol"
    });
    let error = unit["error"].as_str().unwrap_or_default();
    assert!(error.contains(&format!("pid {dead}")), "{unit:#}");
    wait_for(
        "Restart=on-failure to run it again",
        std::time::Duration::from_secs(20),
        || {
            let n = std::fs::read_to_string(&runs).ok()?.lines().count();
            (n >= 2).then_some(())
        },
    );
}

//! `KillMode=` where no writable cgroup2 hierarchy exists (many containers): the daemon
//! then tracks a service's processes by session only. The daemon runs in a mount namespace
//! where every cgroup2 mount is read-only, so its cgroup probe fails as it would there.
//!
//! Known limit (documented in `runtime::cgroup`): without cgroups, a process that leaves the
//! service's session with setsid() and whose parent exits cannot be attributed to it.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::{Daemon, KillPids, Repo, WAIT, alive, pids_in, script, service, wait_for};

/// Mount points of cgroup2 filesystems.
fn cgroup2_mounts() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            (post.split_whitespace().next()? == "cgroup2")
                .then(|| pre.split_whitespace().nth(4).map(str::to_string))?
        })
        .collect()
}

/// Whether this machine can run a daemon without cgroups (root, unshare, remount).
fn can_hide_cgroups() -> bool {
    Command::new("unshare")
        .args(["-m", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A `gitproc daemon` in a mount namespace whose cgroup2 mounts are read-only (the harness's
/// `Daemon`, run under `unshare`, which execs it; stopped and cleaned up on drop).
fn start_without_cgroups(repo: &Path) -> Daemon {
    let remounts: String = cgroup2_mounts()
        .iter()
        .map(|m| format!("mount -o remount,bind,ro '{m}' && "))
        .collect();
    let wrapper = vec![
        "unshare".to_string(),
        "-m".to_string(),
        "sh".to_string(),
        "-c".to_string(),
        format!("{remounts}exec \"$0\" \"$@\""),
    ];
    let args = vec!["--repo".to_string(), repo.display().to_string()];
    let state = tempfile::tempdir().expect("state dir");
    let daemon = Daemon::start_wrapped(args, state, wrapper, "debug");
    assert!(
        daemon.log_text().contains("tracking by session only"),
        "the daemon should run without cgroups:\n{}",
        daemon.log_text()
    );
    daemon
}

fn all_gone(all: &[i32]) {
    wait_for(
        &format!("every process of the service ({all:?}) to be gone"),
        WAIT,
        || all.iter().all(|&p| !alive(p)).then_some(()),
    );
}

macro_rules! require_unshare {
    () => {
        if !crate::support::require(
            "a mount namespace (`unshare -m` of util-linux, as root)",
            can_hide_cgroups(),
        ) {
            return;
        }
    };
}

#[test]
fn control_group_stop_kills_children_and_a_sigterm_ignoring_one() {
    require_unshare!();
    let repo = Repo::new();
    let pids = repo.path().join("pids");
    let body = format!(
        "sleep 1000 &\necho $! >> {p}\n\
         (trap '' TERM; echo $(exec sh -c 'echo $PPID') >> {p}; exec sleep 1000) &\n\
         echo $$ >> {p}\nexec sleep 1000",
        p = pids.display()
    );
    let exec = script(&repo, "tree.sh", &body);
    repo.write(
        "tree.service",
        &service(&exec, "KillMode=control-group\nTimeoutStopSec=1"),
    );
    repo.commit("a process tree");
    let daemon = start_without_cgroups(repo.path());
    daemon.wait_running("tree.service");
    let all = pids_in(&pids, 3);
    let _guard = KillPids(all.clone());
    daemon.cli_ok(&["stop", "tree.service"]);
    all_gone(&all);
}

#[test]
fn a_forking_daemon_in_its_own_session_is_stopped() {
    require_unshare!();
    let repo = Repo::new();
    let pid_file = repo.path().join("daemon.pid");
    let exec = script(
        &repo,
        "forker.sh",
        &format!(
            "( setsid sh -c 'echo $$ > \"$0.tmp\" && mv \"$0.tmp\" \"$0\"; exec sleep 1000' {p} & )\nexit 0",
            p = pid_file.display()
        ),
    );
    repo.write(
        "forker.service",
        &service(
            &exec,
            &format!(
                "Type=forking\nPIDFile={}\nTimeoutStopSec=2",
                pid_file.display()
            ),
        ),
    );
    repo.commit("Type=forking");
    let daemon = start_without_cgroups(repo.path());
    let main = daemon.wait_running("forker.service");
    let _guard = KillPids(vec![main]);
    daemon.cli_ok(&["stop", "forker.service"]);
    let unit = daemon.wait_unit("forker.service", "stopped", |u| {
        u["active_state"] == "inactive" || u["active_state"] == "failed"
    });
    assert_eq!(unit["result"], "success", "{unit:#}");
    all_gone(&[main]);
}

#[test]
fn a_forking_daemon_without_pid_file_is_guessed_by_its_markers() {
    require_unshare!();
    let repo = Repo::new();
    let pids = repo.path().join("pids");
    // The daemon leaves the service's session: only its environment says whose it is.
    let exec = script(
        &repo,
        "forker.sh",
        &format!(
            "( setsid sh -c 'echo $$ >> \"$0\"; exec sleep 1000' {p} & )\nexit 0",
            p = pids.display()
        ),
    );
    repo.write(
        "guessed.service",
        &service(&exec, "Type=forking\nTimeoutStopSec=2"),
    );
    repo.commit("Type=forking without PIDFile=");
    let daemon = start_without_cgroups(repo.path());
    let main = daemon.wait_running("guessed.service");
    let _guard = KillPids(vec![main]);
    assert_eq!(pids_in(&pids, 1), vec![main], "the guessed main pid");
    daemon.cli_ok(&["stop", "guessed.service"]);
    all_gone(&[main]);
}

#[test]
fn an_adopted_service_is_stopped_with_its_children() {
    require_unshare!();
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
    let mut daemon = start_without_cgroups(repo.path());
    let main = daemon.wait_running("adoptee.service");
    let all = pids_in(&pids, 2);
    let _guard = KillPids(all.clone());
    let state = daemon.state.path().join("state.json");
    wait_for("state.json to record the main pid", WAIT, || {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&state).ok()?).ok()?;
        (v["units"]["adoptee.service"]["main_pid"] == main).then_some(())
    });
    daemon.restart();
    assert_eq!(daemon.wait_running("adoptee.service"), main, "not adopted");
    daemon.cli_ok(&["stop", "adoptee.service"]);
    let unit = daemon.wait_unit("adoptee.service", "stopped", |u| {
        u["active_state"] == "inactive" || u["active_state"] == "failed"
    });
    assert_eq!(unit["result"], "success", "{unit:#}");
    all_gone(&all);
}

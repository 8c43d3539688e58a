//! One daemon per state directory, for real (issue 10, item 4): the lock is on the state
//! directory itself, so deleting `daemon.lock` admits no second daemon; and a daemon never
//! replaces a control socket that still answers.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Daemon, Repo, bin, service, unique};

/// Runs a second `gitproc daemon` on `state_dir`; it must exit by itself (refused) within
/// the deadline; one that keeps running is killed and reported.
fn second_daemon(repo: &Path, state_dir: &Path) -> Output {
    let mut child = Command::new(bin())
        .arg("daemon")
        .arg("--repo")
        .arg(repo)
        .arg("--state-dir")
        .arg(state_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn a second gitproc daemon");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return child.wait_with_output().expect("its output");
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("its output");
            panic!(
                "a second daemon was admitted and kept running; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn deleting_daemon_lock_does_not_admit_a_second_daemon() {
    let repo = Repo::new();
    let unit = format!("{}.service", unique("locked"));
    repo.write(&unit, &service("/bin/sleep 1000", ""));
    repo.commit("initial");
    let daemon = Daemon::start(repo.path(), &[]);
    let pid = daemon.wait_running(&unit);
    std::fs::remove_file(daemon.state.path().join("daemon.lock")).expect("delete daemon.lock");
    let out = second_daemon(repo.path(), daemon.state.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "refused with a failure status: {stderr}"
    );
    assert!(
        stderr.contains("another gitproc daemon") && stderr.contains("holds"),
        "the refusal says why: {stderr}"
    );
    // The first daemon is untouched: same service pid, still answering.
    assert_eq!(daemon.main_pid(&unit), Some(pid));
}

#[test]
fn a_daemon_refuses_to_replace_a_control_socket_that_answers() {
    let repo = Repo::new();
    repo.write(
        &format!("{}.service", unique("sock")),
        &service("/bin/sleep 1000", ""),
    );
    repo.commit("initial");
    let daemon = Daemon::start(repo.path(), &[]);
    // Another state directory whose socket path reaches the running daemon (as after the
    // state directory was moved aside and recreated under the running daemon).
    let other = tempfile::tempdir().expect("state dir");
    std::fs::hard_link(daemon.socket(), other.path().join("gitproc.sock"))
        .expect("link the socket");
    let out = second_daemon(repo.path(), other.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused: {stderr}");
    assert!(
        stderr.contains("answers on") && stderr.contains("gitproc.sock"),
        "the refusal names the socket: {stderr}"
    );
    assert!(
        daemon.try_status().is_some(),
        "the first daemon still answers"
    );
}

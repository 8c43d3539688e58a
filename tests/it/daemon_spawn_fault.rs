//! A service whose child dies before execve (through the debug-only test hook
//! `GITPROC_TEST_FAULT_BEFORE_EXEC=<unit>`, read by the daemon's spawner) is a failed
//! start with an error naming the spawn failure, never an active service; other units of
//! the same daemon start normally. The hook exists only in debug builds, so the module is
//! compiled only there (tests/it/main.rs).

use crate::support::{Daemon, Repo, service};

#[test]
fn a_child_that_faults_before_exec_fails_the_unit() {
    let repo = Repo::new();
    repo.write("crash.service", &service("/bin/sleep 1000", ""));
    repo.write("fine.service", &service("/bin/sleep 1000", ""));
    repo.commit("two units, one whose child faults");
    let state = tempfile::tempdir().expect("state dir");
    let args = vec!["--repo".to_string(), repo.path().display().to_string()];
    let wrapper = vec![
        "env".to_string(),
        "GITPROC_TEST_FAULT_BEFORE_EXEC=crash.service".to_string(),
    ];
    let daemon = Daemon::start_wrapped(args, state, wrapper, "info");
    let unit = daemon.wait_unit("crash.service", "failed", |u| u["active_state"] == "failed");
    let expected = "child died before exec: signal SIGSEGV (during the GITPROC_TEST_FAULT_BEFORE_EXEC test hook)";
    assert_eq!(unit["error"], expected, "{unit:#}");
    assert!(unit["main_pid"].is_null(), "{unit:#}");
    let out = daemon.cli(&["status", "crash.service"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(expected), "gitproc status:\n{text}");
    assert!(
        !text.contains("active (running)"),
        "gitproc status:\n{text}"
    );
    daemon.wait_running("fine.service");
}

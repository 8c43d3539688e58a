//! One daemon per state directory: `daemon.lock`.
//!
//! The cross-process tests re-run this test binary as a child (filtered to
//! `child_lock_holder`, which does nothing unless `GITPROC_TEST_LOCK_CHILD` is set).

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gitproc::state::{DaemonLock, LockError};

const CHILD_ENV: &str = "GITPROC_TEST_LOCK_CHILD";
/// Prefix of the child's verdict line.
const MARK: &str = "@@lock-verdict: ";

/// Kills and reaps the child on drop, whatever the test outcome.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Child side: try to take the lock, report on stdout, then hold it until stdin closes.
#[test]
fn child_lock_holder() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let mut out = std::io::stdout();
    match DaemonLock::acquire(Path::new(&dir)) {
        Ok(lock) => {
            writeln!(out, "{MARK}ACQUIRED").unwrap();
            out.flush().unwrap();
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            drop(lock);
        }
        Err(e) => {
            writeln!(out, "{MARK}REFUSED {e}").unwrap();
            out.flush().unwrap();
        }
    }
}

fn spawn_child(dir: &Path) -> (ChildGuard, BufReader<std::process::ChildStdout>) {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "state_lock::child_lock_holder",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    (ChildGuard(child), stdout)
}

/// Reads the child's verdict line (after [`MARK`]), failing after 10 s instead of hanging if
/// the child never reports.
fn verdict(out: BufReader<std::process::ChildStdout>) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in out.lines() {
            let Ok(line) = line else { break };
            // libtest may print "test child_lock_holder ... " on the same line first.
            if let Some(at) = line.find(MARK) {
                let _ = tx.send(line[at + MARK.len()..].trim_end().to_owned());
                return;
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(v) => v,
        Err(e) => panic!("child did not report whether it got the lock within 10 s: {e}"),
    }
}

#[test]
fn second_acquire_in_same_process_is_refused_with_holder_pid() {
    let tmp = tempfile::tempdir().unwrap();
    let lock = DaemonLock::acquire(tmp.path()).unwrap();
    let me = std::process::id() as i32;
    match DaemonLock::acquire(tmp.path()) {
        Err(e @ LockError::Held { .. }) => {
            assert_eq!(
                e.to_string(),
                format!(
                    "another gitproc daemon (pid {me}) holds {}",
                    tmp.path().display()
                )
            );
        }
        other => panic!("second acquire must be refused, got {other:?}"),
    }
    let path = tmp.path().join("daemon.lock");
    assert_eq!(lock.path(), path);
    assert_eq!(fs::read_to_string(&path).unwrap(), format!("{me}\n"));
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    drop(lock);
    let again = DaemonLock::acquire(tmp.path()).expect("lock is released on drop");
    drop(again);
}

#[test]
fn stale_lock_file_from_a_dead_daemon_does_not_block() {
    let tmp = tempfile::tempdir().unwrap();
    // A long pid from a previous daemon: must be fully replaced, not partially overwritten.
    fs::write(tmp.path().join("daemon.lock"), "4194303999\n").unwrap();
    let _lock = DaemonLock::acquire(tmp.path()).unwrap();
    assert_eq!(
        fs::read_to_string(tmp.path().join("daemon.lock")).unwrap(),
        format!("{}\n", std::process::id())
    );
}

#[test]
fn lock_held_by_another_process_is_refused_until_it_dies() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut child, out) = spawn_child(tmp.path());
    assert_eq!(verdict(out), "ACQUIRED");
    let child_pid = child.0.id() as i32;

    match DaemonLock::acquire(tmp.path()) {
        Err(LockError::Held { pid, dir }) => {
            assert_eq!(pid, Some(child_pid));
            assert_eq!(dir, tmp.path());
        }
        other => panic!("lock held by child {child_pid} but got {other:?}"),
    }

    // kill -9 the holder: the kernel releases the lock; the next daemon starts.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let lock = loop {
        match DaemonLock::acquire(tmp.path()) {
            Ok(l) => break l,
            Err(LockError::Held { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("lock not released 10 s after the holder died: {e}"),
        }
    };
    drop(lock);
}

#[test]
fn other_process_is_refused_while_we_hold_the_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let _lock = DaemonLock::acquire(tmp.path()).unwrap();
    let (_child, out) = spawn_child(tmp.path());
    assert_eq!(
        verdict(out),
        format!(
            "REFUSED another gitproc daemon (pid {}) holds {}",
            std::process::id(),
            tmp.path().display()
        )
    );
}

#[test]
fn missing_state_dir_is_an_io_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let err = DaemonLock::acquire(&tmp.path().join("absent")).unwrap_err();
    assert!(matches!(err, LockError::Io { .. }));
    assert!(err.to_string().contains("absent/daemon.lock"), "{err}");
}

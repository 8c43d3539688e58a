//! Process identity (pid + start time): the guard against adopting or signalling a process
//! that merely reused a recorded pid.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use gitproc::state::ProcessIdentity;

/// Kills and reaps the child on drop.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

#[test]
fn live_child_matches_and_a_different_start_time_does_not() {
    let mut child = ChildGuard(Command::new("sleep").arg("30").spawn().unwrap());
    let pid = child.0.id() as i32;
    let id = ProcessIdentity::read(pid).expect("live child has an identity");
    assert_eq!(id.pid, pid);
    assert!(id.is_running_same());

    // Same pid, other start time: what a reused pid looks like. Never "the same".
    let impostor = ProcessIdentity {
        pid,
        start_time: id.start_time.wrapping_add(1),
    };
    assert!(!impostor.is_running_same());

    // Killed but not yet reaped: a zombie is gone for our purposes.
    child.0.kill().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while proc_state(pid) != Some('Z') {
        assert!(
            Instant::now() < deadline,
            "child {pid} did not become a zombie in 10 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(ProcessIdentity::read(pid), None, "zombie must read as gone");
    assert!(!id.is_running_same());

    child.0.wait().unwrap();
    assert_eq!(ProcessIdentity::read(pid), None, "reaped process is gone");
    assert!(!id.is_running_same());
}

#[test]
fn start_time_is_stable_and_distinguishes_processes() {
    let a = ChildGuard(Command::new("sleep").arg("30").spawn().unwrap());
    let first = ProcessIdentity::read(a.0.id() as i32).unwrap();
    let again = ProcessIdentity::read(a.0.id() as i32).unwrap();
    assert_eq!(first, again, "start time of a living process never changes");
    let me = ProcessIdentity::read(std::process::id() as i32).unwrap();
    assert!(
        me.start_time <= first.start_time,
        "the parent started before its child"
    );
}

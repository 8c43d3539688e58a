//! Signalling real processes: verified kills, sessions, cgroups, pidfd watching.

use crate::runtime_support::{Guard, exec, read_to_end, sh, wait_exit, wait_for};
use gitproc::runtime::{
    self, CgroupRoot, Dirs, PidfdWatcher, ProcessTracker, SpawnRequest, Spawned,
};
use gitproc::unit::model::{ExecCommand, ServiceSection};

fn start(cmd: &ExecCommand, guard: &mut Guard) -> Spawned {
    let svc = ServiceSection::default();
    let dirs = Dirs::default();
    let req = SpawnRequest::new("kill-test.service", cmd, &svc, "id", &dirs);
    let s = runtime::spawn(&req).unwrap_or_else(|e| panic!("spawn: {e}"));
    guard.track(s.pid);
    s
}

fn alive(pid: i32) -> bool {
    runtime::read_stat(pid)
        .map(|s| s.state != b'Z')
        .unwrap_or(false)
}

#[test]
fn signal_verified_refuses_a_mismatched_start_time() {
    let mut guard = Guard::new();
    let s = start(&exec(&["/bin/sleep", "1000"]), &mut guard);
    let sent = runtime::signal_verified(s.pid, s.start_time + 1, libc::SIGKILL).expect("signal");
    assert!(!sent, "a different start time means a different process");
    assert!(alive(s.pid));
    let sent = runtime::signal_verified(s.pid, s.start_time, libc::SIGKILL).expect("signal");
    assert!(sent);
    let exit = wait_exit(s.pid, 10);
    assert_eq!(exit.signal, Some(libc::SIGKILL));
    // Reaped: the pid no longer names that process.
    let sent = runtime::signal_verified(s.pid, s.start_time, libc::SIGKILL).expect("signal");
    assert!(!sent);
}

#[test]
fn control_group_kill_reaches_grandchildren_in_other_process_groups() {
    let mut guard = Guard::new();
    // One grandchild makes its own process group (as a job-control shell would); `( ... &)`
    // orphans another.
    let script = "python3 -c 'import os, time; os.setpgid(0, 0); time.sleep(1000)' & \
                  (sleep 1000 &); echo ready; wait";
    let mut s = start(&sh(script), &mut guard);
    let out = s.stdout.take().expect("stdout");
    let mut tracker = ProcessTracker::new(None);
    tracker.add_session(s.pid);
    let members = wait_for(10, "sh + 2 sleeps in the session", || {
        let m = tracker.members();
        (m.len() == 3).then_some(m)
    });
    let own_group = wait_for(10, "the python grandchild to call setpgid", || {
        members
            .iter()
            .copied()
            .find(|&p| runtime::read_stat(p).is_ok_and(|st| st.pgrp == p && p != s.pid))
    });
    assert!(members.contains(&own_group));
    assert_eq!(tracker.signal_all(libc::SIGKILL), 3);
    wait_for(10, "every process of the session to die", || {
        tracker.members().is_empty().then_some(())
    });
    wait_exit(s.pid, 10);
    drop(read_to_end(out, 10));
    tracker.prune();
    assert!(tracker.sessions().is_empty());
}

/// Removes the test's cgroup subtree even when the test fails.
struct CgroupCleanup(Option<CgroupRoot>, Vec<runtime::Cgroup>);

impl Drop for CgroupCleanup {
    fn drop(&mut self) {
        for cg in &self.1 {
            for p in cg.procs() {
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
            let _ = wait_for_removal(cg);
        }
        if let Some(root) = &self.0 {
            let _ = root.remove();
        }
    }
}

fn wait_for_removal(cg: &runtime::Cgroup) -> std::io::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match cg.remove() {
            Ok(()) => return Ok(()),
            Err(e) if std::time::Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(2)),
        }
    }
}

#[test]
fn cgroup_catches_processes_that_left_the_session() {
    let name = format!("gitproc-test-{}", std::process::id());
    let root = CgroupRoot::probe(&name);
    if !crate::support::require(
        "a writable cgroup2 hierarchy (root on a cgroup2 host)",
        root.is_some(),
    ) {
        return;
    }
    let Some(root) = root else { return };
    let mut cleanup = CgroupCleanup(Some(root.clone()), Vec::new());
    let cg = root.unit("escape.service").expect("unit cgroup");
    cleanup.1.push(cg.clone());
    let mut guard = Guard::new();
    let svc = ServiceSection::default();
    let dirs = Dirs::default();
    let cmd = sh("setsid sleep 1000 & echo ready; wait");
    let mut req = SpawnRequest::new("escape.service", &cmd, &svc, "id", &dirs);
    req.cgroup = Some(&cg);
    let s = runtime::spawn(&req).unwrap_or_else(|e| panic!("spawn: {e}"));
    guard.track(s.pid);
    let mut tracker = ProcessTracker::new(Some(cg.clone()));
    tracker.add_session(s.pid);
    let escaped = wait_for(10, "the setsid'd sleep in the cgroup", || {
        cg.procs()
            .into_iter()
            .find(|&p| p != s.pid && runtime::read_stat(p).is_ok_and(|st| st.session == p))
    });
    assert!(
        !runtime::SessionSnapshot::scan()
            .members(s.pid)
            .contains(&escaped)
    );
    assert!(tracker.members().contains(&escaped), "the cgroup finds it");
    tracker.signal_all(libc::SIGKILL);
    wait_for(10, "the cgroup to be empty", || {
        cg.procs().is_empty().then_some(())
    });
    wait_exit(s.pid, 10);
}

#[test]
fn pidfd_watcher_reports_exits_of_non_children_too() {
    let mut guard = Guard::new();
    let (watcher, exits) = PidfdWatcher::start().expect("watcher");
    let a = start(&exec(&["/bin/sleep", "1000"]), &mut guard);
    let b = start(&exec(&["/bin/sleep", "1000"]), &mut guard);
    watcher.watch(a.pid, a.start_time).expect("watch a");
    watcher.watch(b.pid, b.start_time).expect("watch b");
    unsafe { libc::kill(b.pid, libc::SIGKILL) };
    let got = exits
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("exit of b reported");
    assert_eq!(got, b.pid);
    // A stale identity (wrong start time) is reported at once rather than watched.
    watcher.watch(a.pid, a.start_time + 1).expect("watch stale");
    let got = exits
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("stale identity reported");
    assert_eq!(got, a.pid);
    unsafe { libc::kill(a.pid, libc::SIGKILL) };
    wait_exit(a.pid, 10);
    wait_exit(b.pid, 10);
}

/// Cost of one /proc scan (the fallback when no cgroup is available). Run with
/// `--ignored --nocapture`.
#[test]
#[ignore]
fn session_scan_cost() {
    let n = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|s| s.parse::<i32>().is_ok())
        })
        .count();
    let mut v: Vec<std::time::Duration> = (0..50)
        .map(|_| {
            let t = std::time::Instant::now();
            let _ = runtime::kill::SessionSnapshot::scan();
            t.elapsed()
        })
        .collect();
    v.sort();
    println!(
        "/proc scan with {n} processes: p50 {:?} p95 {:?}",
        v[25], v[47]
    );
}

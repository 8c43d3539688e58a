//! Reaping without stealing the children of the daemon's other threads.
//!
//! The source worker runs subprocesses through gix (`git-upload-pack` for local remotes,
//! `ssh`, `ssh-keygen` to verify signatures) and waits for them itself. A plain
//! `waitpid(-1)` sweep in the event loop collected those too, so the worker's wait failed
//! with ECHILD ("No child processes") and a correctly signed commit was refused until the
//! next poll.
//!
//! The worker's children are told apart by pid, from the kernel's own record: a thread that
//! waits for its children itself calls [`leave_my_children`] once, and the sweep leaves
//! alone exactly the pids listed in `/proc/self/task/<tid>/children` of those threads (the
//! children a thread forked stay on its list until reaped, so there is no window in which
//! one is unlisted; orphans re-parented to the daemon go to its main thread, never to the
//! worker). Everything else that has exited is collected: the loop's pids and any orphan,
//! whatever its session. The previous rule, "unknown and in the daemon's session means the
//! worker's", stalled as PID 1 of a pid namespace, where orphans share the daemon's
//! session: the first such zombie blocked the `WNOWAIT` peek and reaping stopped for good.
//!
//! Why not a helper process for git, or registering pids from inside gix: gix forks where
//! the worker cannot hook in, and a helper process would need a protocol for units,
//! errors and signatures; the kernel already keeps the list.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::runtime::reap::{ExitInfo, reap_pid};
use crate::sys::retry_eintr;

/// Threads (kernel tids) whose children the sweep must leave to them.
static WAITING_THREADS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// Called by a thread that waits for its own subprocesses (the source worker): the sweep
/// never collects a child this thread forked.
pub fn leave_my_children() {
    // SAFETY: gettid has no memory effects.
    let tid = unsafe { libc::gettid() };
    if let Ok(mut threads) = WAITING_THREADS.lock() {
        threads.push(tid);
    }
}

/// Collects every exited child that is the loop's to collect: its own pids and orphans.
/// `known` is the loop's pid table (used to say what a stalled peek can still collect).
pub fn reap(known: &HashMap<i32, String>) -> Vec<(i32, ExitInfo)> {
    let mut out = Vec::new();
    // Bounded: each round collects one child or stops; a burst of orphans larger than
    // this is finished on the next wakeup rather than holding the loop.
    for _ in 0..4096 {
        let Some(pid) = peek_exited() else {
            return out;
        };
        if !known.contains_key(&pid) && others_children().contains(&pid) {
            // A waiting thread's child is first in line; the peek cannot see past it, so
            // collect every other child by pid.
            sweep_by_pid(&mut out);
            return out;
        }
        match reap_pid(pid) {
            Ok(Some(exit)) => out.push((pid, exit)),
            // Its owner collected it between the peek and here: look again next time.
            _ => return out,
        }
    }
    out
}

/// Collects by pid every exited child of every thread except the waiting ones.
fn sweep_by_pid(out: &mut Vec<(i32, ExitInfo)>) {
    let waiting = waiting_threads();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return;
    };
    for task in tasks.flatten() {
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<i32>().ok())
        else {
            continue;
        };
        if waiting.contains(&tid) {
            continue;
        }
        for pid in children_of_thread(tid) {
            if let Ok(Some(exit)) = reap_pid(pid) {
                out.push((pid, exit));
            }
        }
    }
}

fn waiting_threads() -> Vec<i32> {
    WAITING_THREADS
        .lock()
        .map(|t| t.clone())
        .unwrap_or_default()
}

/// The children of the waiting threads right now.
fn others_children() -> Vec<i32> {
    waiting_threads()
        .into_iter()
        .flat_map(children_of_thread)
        .collect()
}

/// `/proc/self/task/<tid>/children`: the pids of the children `tid` forked (or inherited).
fn children_of_thread(tid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/children"))
        .map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The pid of an exited child, left unreaped; `None` when no child has exited.
pub(super) fn peek_exited() -> Option<i32> {
    // SAFETY: an all-zero siginfo_t is valid; waitid writes into it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer; WNOWAIT leaves the child waitable.
    let r = retry_eintr(|| unsafe {
        libc::waitid(
            libc::P_ALL,
            0,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    });
    if r.is_err() {
        return None; // ECHILD: no children at all
    }
    // SAFETY: waitid succeeded, so si_pid is initialised (0 when none has exited).
    let pid = unsafe { info.si_pid() };
    (pid > 0).then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHILD_ENV: &str = "GITPROC_TEST_REAPER_CHILD";

    /// The sweep collects every unknown child of the process, so it runs in a process of
    /// its own (this test binary re-run on one test): other tests' children are safe.
    #[test]
    fn a_waiting_threads_child_is_left_to_it_and_unknown_children_are_collected() {
        if std::env::var_os(CHILD_ENV).is_none() {
            let exe = std::env::current_exe().expect("test binary");
            let out = std::process::Command::new(exe)
                .args([
                    "--exact",
                    "daemon::reaper::tests::a_waiting_threads_child_is_left_to_it_and_unknown_children_are_collected",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, "1")
                .output()
                .expect("re-run the test binary");
            assert!(
                out.status.success() && String::from_utf8_lossy(&out.stdout).contains("1 passed"),
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        }
        // The "worker" forks a child and waits for it only after the sweep ran; the
        // sweep must collect the unknown child (an orphan stand-in) behind it.
        let (forked_tx, forked_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let worker = std::thread::spawn(move || {
            leave_my_children();
            let mut child = std::process::Command::new("/bin/true")
                .spawn()
                .expect("spawn /bin/true");
            forked_tx.send(child.id() as i32).expect("send pid");
            go_rx.recv().expect("go");
            child
                .wait()
                .expect("the worker can still wait for its child")
        });
        let worker_child = forked_rx.recv().expect("worker pid");
        // Not in `known`: stands for an orphan re-parented to the daemon.
        #[allow(clippy::zombie_processes)]
        let orphan = std::process::Command::new("/bin/true")
            .spawn()
            .expect("spawn /bin/true");
        let orphan_pid = orphan.id() as i32;
        let known = HashMap::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut collected = Vec::new();
        while !collected.iter().any(|(p, _)| *p == orphan_pid) {
            assert!(std::time::Instant::now() < deadline, "orphan not reaped");
            collected.extend(reap(&known));
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert!(
            !collected.iter().any(|(p, _)| *p == worker_child),
            "the sweep took the waiting thread's child"
        );
        go_tx.send(()).expect("go");
        assert!(worker.join().expect("worker thread").success());
    }
}

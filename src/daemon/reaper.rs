//! Reaping without stealing the children of the daemon's other threads.
//!
//! The source worker runs subprocesses through gix (`git-upload-pack` for local remotes,
//! `ssh`, `ssh-keygen` to verify signatures) and waits for them itself. A plain
//! `waitpid(-1)` sweep in the event loop collected those too, so the worker's wait failed
//! with ECHILD ("No child processes") and a correctly signed commit was refused until the
//! next poll. The loop now peeks at exited children first (`WNOWAIT`) and leaves alone the
//! ones that belong to another thread: not in the loop's pid table and still in the
//! daemon's own session (services and everything they fork run in sessions of their own, so
//! orphans re-parented to us, as child subreaper, are still collected).

use std::collections::HashMap;

use crate::runtime::reap::{ExitInfo, reap_pid};
use crate::sys::{procstat, retry_eintr};

/// Collects every exited child that is the loop's to collect: its own pids and orphans.
/// `known` is the loop's pid table.
pub fn reap(known: &HashMap<i32, String>) -> Vec<(i32, ExitInfo)> {
    // SAFETY: getsid(0) has no memory effects.
    let own_session = unsafe { libc::getsid(0) };
    let mut out = Vec::new();
    loop {
        let Some(pid) = peek_exited() else {
            return out;
        };
        let foreign = !known.contains_key(&pid) && session_of(pid) == Some(own_session);
        if !foreign {
            match reap_pid(pid) {
                Ok(Some(exit)) => {
                    out.push((pid, exit));
                    continue;
                }
                // Its owner collected it between the peek and here: look again next time.
                _ => return out,
            }
        }
        // Another thread's child is first in line and will be waited for by that thread;
        // the peek cannot see past it, so collect the loop's own pids one by one.
        for &pid in known.keys() {
            if out.iter().any(|(p, _)| *p == pid) {
                continue;
            }
            if let Ok(Some(exit)) = reap_pid(pid) {
                out.push((pid, exit));
            }
        }
        return out;
    }
}

/// The pid of an exited child, left unreaped; `None` when no child has exited.
fn peek_exited() -> Option<i32> {
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

/// The session id of `pid` from `/proc/PID/stat` (a zombie still has one).
fn session_of(pid: i32) -> Option<i32> {
    procstat::read_stat(pid).ok().map(|st| st.session)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_of_another_thread_is_left_to_it_and_a_known_child_is_collected() {
        // Both children stay in this process's session: one is "known" to the loop.
        let mut foreign = std::process::Command::new("/bin/true")
            .spawn()
            .expect("spawn /bin/true");
        // Reaped by `reap` below, not by `wait()`.
        #[allow(clippy::zombie_processes)]
        let known_child = std::process::Command::new("/bin/true")
            .spawn()
            .expect("spawn /bin/true");
        let known_pid = known_child.id() as i32;
        let known: HashMap<i32, String> = [(known_pid, "k.service".to_string())].into();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut collected = Vec::new();
        while collected.is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "known child not reaped"
            );
            collected.extend(reap(&known));
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert_eq!(collected.len(), 1);
        assert_eq!(collected[0].0, known_pid);
        // The other child is still there for its owner to wait for.
        let status = foreign
            .wait()
            .expect("the owner can still wait for its child");
        assert!(status.success());
    }
}

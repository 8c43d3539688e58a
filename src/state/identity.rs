//! The identity of a process across daemon restarts: pid plus start time.
//!
//! A pid alone is not an identity: after a service dies, the kernel may give its pid to an
//! unrelated process. The start time (field 22 of `/proc/PID/stat`, clock ticks since boot)
//! cannot change for a living process, so (pid, start time) identifies one process for the
//! life of the boot. The daemon records both and, before adopting or signalling a recorded pid,
//! checks that both still match. Never signal a pid whose identity does not match.

use serde::{Deserialize, Serialize};

/// A process identified by pid and start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProcessIdentity {
    /// Process id.
    pub pid: i32,
    /// Field 22 of `/proc/PID/stat`: start time in clock ticks since boot.
    pub start_time: u64,
}

impl ProcessIdentity {
    /// Reads the identity of the live process `pid` from `/proc/PID/stat`.
    ///
    /// Returns `None` when the process does not exist, cannot be read, or is a zombie (`Z`) or
    /// dead (`X`): a zombie has already exited, so there is nothing to adopt and nothing that a
    /// signal would reach. Non-positive pids (which `kill` interprets as process groups or
    /// "everyone") are rejected outright.
    pub fn read(pid: i32) -> Option<ProcessIdentity> {
        if pid <= 0 {
            return None;
        }
        let stat = crate::sys::procstat::read_stat(pid).ok()?;
        if matches!(stat.state, b'Z' | b'X' | b'x') {
            return None;
        }
        Some(ProcessIdentity {
            pid,
            start_time: stat.start_time,
        })
    }

    /// Whether the process recorded in `self` is still alive (not a zombie) with the same start
    /// time, i.e. it is the same process and may be adopted or signalled.
    pub fn is_running_same(&self) -> bool {
        ProcessIdentity::read(self.pid).is_some_and(|now| now.start_time == self.start_time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_positive_pids_have_no_identity() {
        assert_eq!(ProcessIdentity::read(0), None);
        assert_eq!(ProcessIdentity::read(-1), None);
    }

    #[test]
    fn own_process_reads_and_matches() {
        let me = ProcessIdentity::read(std::process::id() as i32).unwrap();
        assert!(me.is_running_same());
        let other = ProcessIdentity {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!other.is_running_same());
    }
}

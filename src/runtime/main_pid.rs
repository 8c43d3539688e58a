//! Whether a pid named as a service's main process (by its `PIDFile=` or a `MAINPID=`
//! message) may be trusted, as systemd decides: it must be a process of the service (in
//! its cgroup; without one, in one of its sessions, a descendant of such a process, or an
//! orphan reparented to the daemon), unless the PID file is root's and the service runs as
//! root. Otherwise a `User=nobody` unit could name a root process, which status would then
//! describe and a stop would signal.
//!
//! Runs on the spawner for PID files (the path is unit-named, see `runtime::host`) and on
//! the loop for `MAINPID=` (only `/proc` is read, which does not block).

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use super::notify_socket::cgroup_within;
use super::procstat::read_stat;

/// What the service is, for the trust check; taken by the loop from its tracker.
#[derive(Debug, Clone, Default)]
pub struct PidTrust {
    /// The unit's cgroup (absolute path), when gitproc has one.
    pub cgroup: Option<PathBuf>,
    /// The sessions of the service's processes (without a cgroup).
    pub sessions: Vec<i32>,
    /// The service runs as root (the daemon is root and no `User=` other than root).
    pub runs_as_root: bool,
}

/// The outcome of reading a `PIDFile=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PidRead {
    /// A live process of the service.
    Pid(i32),
    /// Not (yet) usable: read again later, until TimeoutStartSec=.
    NotYet(String),
    /// Never usable: the start fails with result `protocol`.
    Refused(String),
}

impl PidTrust {
    /// Whether `pid` is a process of the service.
    pub fn belongs(&self, pid: i32) -> bool {
        if let Some(cgroup) = &self.cgroup {
            return std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .ok()
                .and_then(|t| {
                    t.lines()
                        .find_map(|l| l.strip_prefix("0::"))
                        .map(|rel| cgroup_within(rel, cgroup))
                })
                .unwrap_or(false);
        }
        let daemon = std::process::id() as i32;
        let mut p = pid;
        // Up the parent chain (bounded: pids can be reused under us).
        for _ in 0..64 {
            let Ok(stat) = read_stat(p) else {
                return false;
            };
            if self.sessions.contains(&stat.session) {
                return true;
            }
            if stat.ppid == daemon {
                // An orphan the daemon (a subreaper) adopted: a double-forking service's
                // daemon that left the session with setsid().
                return p == pid;
            }
            if stat.ppid <= 1 {
                return false;
            }
            p = stat.ppid;
        }
        false
    }

    /// Whether nothing of the service is left. Only known with a cgroup: without one, a
    /// daemon that called setsid() is in no session of ours, so "none seen" proves nothing.
    fn nothing_left(&self) -> bool {
        self.cgroup.as_ref().is_some_and(|cg| {
            std::fs::read_to_string(cg.join("cgroup.procs")).is_ok_and(|t| t.trim().is_empty())
        })
    }
}

/// Reads `path` and checks the pid it names (see the module doc). A missing file or a dead
/// pid is [`PidRead::NotYet`] while the service has processes that may still write it, and
/// [`PidRead::Refused`] once nothing of it is left (systemd fails the start at once then,
/// whatever TimeoutStartSec= says).
pub fn read_trusted_pid_file(path: &str, trust: &PidTrust) -> PidRead {
    let pid = match super::host::read_pid_file(path) {
        Ok(pid) => pid,
        Err(e) if trust.nothing_left() => {
            return PidRead::Refused(format!("{e}, and no process of the service is left"));
        }
        Err(e) => return PidRead::NotYet(e),
    };
    if trust.belongs(pid) {
        return PidRead::Pid(pid);
    }
    let root_file = std::fs::symlink_metadata(path).is_ok_and(|m| m.uid() == 0);
    if root_file && trust.runs_as_root {
        return PidRead::Pid(pid);
    }
    PidRead::Refused(format!(
        "PIDFile={path} names pid {pid}, which does not belong to the service{}",
        if trust.runs_as_root {
            " (and the file is not owned by root)"
        } else {
            " (a PID file naming another process is trusted only from root for a root service)"
        }
    ))
}

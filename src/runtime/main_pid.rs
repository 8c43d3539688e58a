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

/// Where [`guess_main_pid`] looks, for one run of a `Type=forking` service without
/// `PIDFile=`.
#[derive(Debug, Clone, Default)]
pub struct GuessScope {
    /// The service's cgroup and sessions.
    pub trust: PidTrust,
    /// Environment entries every process of this run inherits (the unit marker and its
    /// `INVOCATION_ID`). Without a cgroup, a daemon that called setsid() is in no session
    /// of ours; these tell the daemon's orphans of this run from anyone else's.
    pub markers: Vec<(String, String)>,
    /// Processes the loop already knows as the service's other roles (a control process):
    /// never the main one.
    pub known: Vec<i32>,
}

/// The answer of [`guess_main_pid`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guess {
    /// The main process and its start time, when exactly one candidate was found.
    pub main: Option<(i32, u64)>,
    /// Why no main pid was guessed although processes are left (more than one candidate),
    /// for the unit's log.
    pub warning: Option<String>,
}

/// systemd's `GuessMainPID=yes`: once the forking parent exited successfully, the main
/// process is the one process of the service whose parent is the daemon (a child subreaper:
/// the double-forked daemon is reparented to us). None when there is no such process or
/// more than one (ambiguous: `$MAINPID` would name the wrong one). Reads `/proc` and the
/// cgroup; runs on the spawner like the PID file reads.
pub fn guess_main_pid(scope: &GuessScope) -> Guess {
    let daemon = std::process::id() as i32;
    let candidates: Vec<i32> = match &scope.trust.cgroup {
        Some(cg) => std::fs::read_to_string(cg.join("cgroup.procs"))
            .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default(),
        None => crate::sys::procstat::pids(),
    };
    let mut found: Vec<(i32, u64)> = Vec::new();
    for pid in candidates {
        if pid == daemon || scope.known.contains(&pid) {
            continue;
        }
        let Ok(stat) = read_stat(pid) else {
            continue;
        };
        if stat.ppid != daemon || matches!(stat.state, b'Z' | b'X' | b'x') {
            continue;
        }
        let ours = scope.trust.cgroup.is_some()
            || scope.trust.sessions.contains(&stat.session)
            || std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| carries(&env, &scope.markers));
        if ours {
            found.push((pid, stat.start_time));
        }
    }
    match found.as_slice() {
        [one] => Guess {
            main: Some(*one),
            warning: None,
        },
        [] => Guess {
            main: None,
            warning: None,
        },
        many => Guess {
            main: None,
            warning: Some(format!(
                "cannot guess the main process (GuessMainPID=): {} processes of the service \
                 were started by the forking parent (pids {}); running without a main pid \
                 ($MAINPID is empty, KillMode=mixed acts like control-group); set PIDFile=",
                many.len(),
                many.iter()
                    .map(|(p, _)| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        },
    }
}

/// Whether the NUL-separated environment block `env` holds every `NAME=value` of `markers`
/// (an empty list matches nothing: without markers, no orphan is provably ours).
fn carries(env: &[u8], markers: &[(String, String)]) -> bool {
    !markers.is_empty()
        && markers.iter().all(|(name, value)| {
            env.split(|&b| b == 0).any(|entry| {
                entry
                    .strip_prefix(name.as_bytes())
                    .and_then(|rest| rest.strip_prefix(b"="))
                    .is_some_and(|v| v == value.as_bytes())
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_must_all_match_exactly() {
        let env = b"PATH=/bin\0GITPROC_UNIT=web.service\0INVOCATION_ID=abc\0";
        let m = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert!(carries(
            env,
            &m(&[("GITPROC_UNIT", "web.service"), ("INVOCATION_ID", "abc")])
        ));
        assert!(!carries(env, &m(&[("GITPROC_UNIT", "web")])));
        assert!(!carries(env, &m(&[("INVOCATION_ID", "abcd")])));
        assert!(!carries(env, &m(&[("GITPROC_UNI", "web.service")])));
        assert!(!carries(env, &[]));
    }

    #[test]
    fn no_child_of_ours_means_no_guess() {
        // The test process has no children whose parent is it and that carry this marker.
        let scope = GuessScope {
            markers: vec![("GITPROC_TEST_MARKER".into(), "none-such".into())],
            ..Default::default()
        };
        assert_eq!(
            guess_main_pid(&scope),
            Guess {
                main: None,
                warning: None
            }
        );
    }
}

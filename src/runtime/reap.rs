//! Reaping: the daemon is a child subreaper, so orphaned descendants of services are
//! re-parented to it, and it collects their exits. The sweep itself is `daemon::reaper`
//! (it must leave the source worker's children alone); this module has the pieces: the
//! subreaper switch, collecting one pid, and decoding a wait status.
//!
//! Reap from the thread that spawns (see the module docs of `runtime`).

use std::fmt;
use std::io;

use crate::sys::retry_eintr;

/// How a process ended (only exits and deaths by signal: stopped/continued children are
/// not reported because `WUNTRACED`/`WCONTINUED` are not requested).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExitInfo {
    /// Exit code when the process called exit().
    pub code: Option<i32>,
    /// Signal number when it was killed by a signal.
    pub signal: Option<i32>,
    pub core_dumped: bool,
}

impl ExitInfo {
    /// Decodes a wait(2) status word.
    pub fn from_wait_status(status: i32) -> ExitInfo {
        if libc::WIFSIGNALED(status) {
            ExitInfo {
                code: None,
                signal: Some(libc::WTERMSIG(status)),
                core_dumped: libc::WCOREDUMP(status),
            }
        } else {
            ExitInfo {
                code: Some(libc::WEXITSTATUS(status)),
                signal: None,
                core_dumped: false,
            }
        }
    }
}

impl fmt::Display for ExitInfo {
    /// `exited with code 3`, `killed by SIGKILL`, `killed by SIGSEGV (core dumped)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (_, Some(sig)) => {
                match nix::sys::signal::Signal::try_from(sig) {
                    Ok(s) => write!(f, "killed by {}", s.as_str())?,
                    Err(_) => write!(f, "killed by signal {sig}")?,
                }
                if self.core_dumped {
                    write!(f, " (core dumped)")?;
                }
                Ok(())
            }
            (Some(code), None) => write!(f, "exited with code {code}"),
            (None, None) => write!(f, "ended"),
        }
    }
}

/// Makes the calling process a child subreaper (prctl PR_SET_CHILD_SUBREAPER): orphaned
/// descendants are re-parented to it instead of PID 1.
pub fn set_child_subreaper() -> io::Result<()> {
    // SAFETY: plain prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Collects `pid` if it has exited (`Ok(None)` while it runs).
pub fn reap_pid(pid: i32) -> io::Result<Option<ExitInfo>> {
    let mut status = 0;
    // SAFETY: waitpid with a valid status pointer.
    let r = retry_eintr(|| unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) })?;
    Ok((r != 0).then(|| ExitInfo::from_wait_status(status)))
}

#[cfg(test)]
mod tests {
    use super::*;

    impl ExitInfo {
        /// An exit with `code`.
        pub fn exited(code: i32) -> ExitInfo {
            ExitInfo {
                code: Some(code),
                signal: None,
                core_dumped: false,
            }
        }

        /// A death by `signal`.
        pub fn killed(signal: i32) -> ExitInfo {
            ExitInfo {
                code: None,
                signal: Some(signal),
                core_dumped: false,
            }
        }
    }

    #[test]
    fn displays_like_systemd_logs() {
        assert_eq!(ExitInfo::exited(3).to_string(), "exited with code 3");
        assert_eq!(
            ExitInfo::killed(libc::SIGKILL).to_string(),
            "killed by SIGKILL"
        );
        let core = ExitInfo {
            core_dumped: true,
            ..ExitInfo::killed(libc::SIGSEGV)
        };
        assert_eq!(core.to_string(), "killed by SIGSEGV (core dumped)");
    }

    #[test]
    fn decodes_wait_statuses() {
        assert_eq!(ExitInfo::from_wait_status(3 << 8), ExitInfo::exited(3));
        assert_eq!(ExitInfo::from_wait_status(9), ExitInfo::killed(9));
        let core = ExitInfo::from_wait_status(11 | 0x80);
        assert_eq!(core.signal, Some(11));
        assert!(core.core_dumped);
    }
}

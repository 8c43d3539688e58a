//! [`SpawnError`] and the texts operators read: each names the unit setting that failed
//! (`User=foo: no such user`), or the program (`exec failed: /bin/x: ...`), or how the child
//! died before it could exec.

use std::io;
use std::path::Path;

use crate::unit::model::RLimit;

use super::SpawnRequest;
use super::child::{ChildReport, Step};

/// Why a process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// execve failed (or the binary was not found in PATH).
    #[error("exec failed: {path}: {reason}")]
    Exec {
        path: String,
        errno: i32,
        reason: String,
    },
    /// A setting could not be applied; `setting` is written as in the unit, e.g. `User=foo`.
    #[error("{setting}: {reason}")]
    Setup { setting: String, reason: String },
    /// The system refused to create the process (fork, pipe): retry later.
    #[error("cannot spawn {path}: {source}")]
    Os {
        path: String,
        #[source]
        source: io::Error,
    },
    /// The child was killed (say by SIGSEGV) or exited without a report before it reached
    /// execve; `step` is the setup step it was in, as in [`SpawnError::Setup`].
    #[error("child died before exec: {how} (during {step})")]
    ChildDied { how: String, step: String },
}

impl SpawnError {
    pub(super) fn setup(setting: impl Into<String>, reason: impl std::fmt::Display) -> SpawnError {
        SpawnError::Setup {
            setting: setting.into(),
            reason: reason.to_string(),
        }
    }

    pub(super) fn os(exe: &Path, source: io::Error) -> SpawnError {
        SpawnError::Os {
            path: exe.display().to_string(),
            source,
        }
    }

    /// The error for what the child reported (`Failed`) or how it died (`Died`).
    pub(super) fn from_child(report: &ChildReport, exe: &Path, req: &SpawnRequest) -> SpawnError {
        match *report {
            ChildReport::Failed {
                step: Step::Exec,
                errno,
                ..
            } => {
                if errno == libc::EAGAIN || errno == libc::ENOMEM {
                    SpawnError::os(exe, io::Error::from_raw_os_error(errno))
                } else {
                    SpawnError::Exec {
                        path: exe.display().to_string(),
                        errno,
                        reason: errno_text(errno),
                    }
                }
            }
            ChildReport::Failed { step, index, errno } => SpawnError::Setup {
                setting: setting_of(step, index, req),
                reason: errno_text(errno),
            },
            ChildReport::Died {
                step,
                index,
                status,
            } => SpawnError::ChildDied {
                how: describe_status(status),
                step: match step {
                    Some(step) => setting_of(step, index, req),
                    None => "the start of setup".to_string(),
                },
            },
        }
    }
}

/// strerror(3) text of an errno value, e.g. "No such file or directory".
pub(crate) fn errno_text(errno: i32) -> String {
    nix::errno::Errno::from_raw(errno).desc().to_string()
}

/// `signal SIGSEGV` or `exit status 3`, from a waitpid(2) status.
fn describe_status(status: Option<i32>) -> String {
    let Some(status) = status else {
        return "it exited, status unknown".to_string();
    };
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        match nix::sys::signal::Signal::try_from(sig) {
            Ok(s) => format!("signal {}", s.as_str()),
            Err(_) => format!("signal {sig}"),
        }
    } else if libc::WIFEXITED(status) {
        format!(
            "exit status {} without an error report",
            libc::WEXITSTATUS(status)
        )
    } else {
        format!("wait status {status:#x}")
    }
}

/// The unit setting (or the step) a child setup step applies, as the operator wrote it.
fn setting_of(step: Step, index: usize, req: &SpawnRequest) -> String {
    let svc = req.service;
    match step {
        Step::Entry => "the start of setup".to_string(),
        Step::Setsid => "setsid".to_string(),
        Step::Signals => "signal reset".to_string(),
        Step::Cgroup => format!(
            "cgroup {}",
            req.cgroup
                .map(|c| c.path().display().to_string())
                .unwrap_or_default()
        ),
        Step::Rlimit => svc
            .limits
            .iter()
            .nth(index)
            .map(|(k, v)| format!("Limit{k}={}", fmt_rlimit(v)))
            .unwrap_or_else(|| "Limit*=".to_string()),
        Step::Nice => format!("Nice={}", svc.nice.unwrap_or(0)),
        Step::OomScoreAdjust => format!("OOMScoreAdjust={}", svc.oom_score_adjust.unwrap_or(0)),
        Step::Groups => format!("SupplementaryGroups={}", svc.supplementary_groups.join(" ")),
        Step::Setgid => format!(
            "Group={}",
            svc.group.as_deref().or(svc.user.as_deref()).unwrap_or("")
        ),
        Step::Setuid => format!("User={}", svc.user.as_deref().unwrap_or("")),
        Step::Chdir => format!(
            "WorkingDirectory={}",
            svc.working_directory.as_deref().unwrap_or("")
        ),
        Step::NoNewPrivileges => "NoNewPrivileges=yes".to_string(),
        Step::CloseFds => "closing inherited file descriptors".to_string(),
        Step::Stdio => match index {
            0 => "StandardInput=null".to_string(),
            1 => "StandardOutput=".to_string(),
            _ => "StandardError=".to_string(),
        },
        Step::TestFault => format!("the {} test hook", super::TEST_FAULT_VAR),
        Step::Exec => format!("execve of {}", req.command.path),
    }
}

/// `1024:infinity`, as a `Limit*=` value.
pub(super) fn fmt_rlimit(l: &RLimit) -> String {
    let f = |v: Option<u64>| {
        v.map(|n| n.to_string())
            .unwrap_or_else(|| "infinity".into())
    };
    format!("{}:{}", f(l.soft), f(l.hard))
}

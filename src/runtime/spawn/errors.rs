//! [`SpawnError`] and the texts operators read: each names the unit setting that failed
//! (`User=foo: no such user`), or the program (`exec failed: /bin/x: ...`), or how the child
//! died before it could exec.

use std::io;
use std::path::Path;

use crate::unit::capability;
use crate::unit::model::RLimit;

use super::SpawnRequest;
use super::child::{ChildReport, Started, Step};
use super::plan::ChildPlan;
use crate::service::exit_code;

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
    /// A setting could not be applied; `setting` is written as in the unit, e.g. `User=foo`;
    /// `exit_status` is systemd's code for that step (217/USER for `User=`).
    #[error("{setting}: {reason}")]
    Setup {
        setting: String,
        reason: String,
        exit_status: i32,
    },
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
    ChildDied {
        /// The dead child's pid, so a status reaped by another thread can be filled in
        /// ([`SpawnError::with_reaped_status`]).
        pid: i32,
        /// Whether `how` came from our own waitpid.
        status_known: bool,
        how: String,
        step: String,
        exit_status: i32,
    },
}

impl SpawnError {
    /// A setting the parent could not prepare; the exit status follows from its key.
    pub(super) fn setup(setting: impl Into<String>, reason: impl std::fmt::Display) -> SpawnError {
        let setting = setting.into();
        SpawnError::Setup {
            exit_status: exit_status_of_setting(&setting),
            setting,
            reason: reason.to_string(),
        }
    }

    /// systemd's exit status for this failure (systemd.exec(5), "PROCESS EXIT CODES"),
    /// recorded as the process's: 203/EXEC for execve and fork, the step's code for a
    /// setup step (217/USER, 200/CHDIR, 205/LIMITS, ...).
    pub fn exit_status(&self) -> i32 {
        match self {
            SpawnError::Exec { .. } | SpawnError::Os { .. } => exit_code::EXEC,
            SpawnError::Setup { exit_status, .. } | SpawnError::ChildDied { exit_status, .. } => {
                *exit_status
            }
        }
    }

    /// The pid of a child that died before exec whose status someone else reaped (the
    /// daemon's reaper may collect it before the spawning thread waits for it).
    pub fn unreaped_child(&self) -> Option<i32> {
        match self {
            SpawnError::ChildDied {
                pid,
                status_known: false,
                ..
            } => Some(*pid),
            _ => None,
        }
    }

    /// The same error with the child's wait status as the reaper saw it
    /// (`WIFSIGNALED`-style raw status), e.g. `signal SIGSEGV` instead of "status unknown".
    pub fn with_reaped_status(self, raw_status: i32) -> SpawnError {
        match self {
            SpawnError::ChildDied {
                pid,
                step,
                exit_status,
                ..
            } => SpawnError::ChildDied {
                pid,
                status_known: true,
                how: describe_status(Some(raw_status)),
                step,
                exit_status,
            },
            other => other,
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
                exit_status: exit_status_of_step(step, index),
            },
            ChildReport::Died {
                pid,
                step,
                index,
                status,
            } => SpawnError::ChildDied {
                pid,
                status_known: status.is_some(),
                how: describe_status(status),
                step: match step {
                    Some(step) => setting_of(step, index, req),
                    None => "the start of setup".to_string(),
                },
                exit_status: step.map_or(exit_code::EXEC, |s| exit_status_of_step(s, index)),
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
            match index.checked_sub(1) {
                None => req
                    .cgroup
                    .map(|c| c.path().display().to_string())
                    .unwrap_or_default(),
                Some(i) => req
                    .v1_cgroups
                    .get(i)
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            }
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
        Step::Capabilities if index == 0 => format!(
            "CapabilityBoundingSet={}",
            capability::format_set(svc.capability_bounding_set.unwrap_or(0))
        ),
        Step::Capabilities => format!(
            "AmbientCapabilities={}",
            capability::format_set(svc.ambient_capabilities)
        ),
        Step::CloseFds if index == 1 => "passing the listening sockets (LISTEN_FDS)".to_string(),
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

/// systemd's exit status for a setting the parent could not prepare, from the setting's
/// key as [`SpawnError::setup`] was given it (`User=foo` -> 217/USER). Settings systemd
/// checks before it forks (`EnvironmentFile=`, the command line) keep 203/EXEC.
fn exit_status_of_setting(setting: &str) -> i32 {
    let key = setting.split(['=', ' ']).next().unwrap_or(setting);
    match key {
        "User" => exit_code::USER,
        "Group" | "SupplementaryGroups" => exit_code::GROUP,
        "WorkingDirectory" => exit_code::CHDIR,
        "Nice" => exit_code::NICE,
        "OOMScoreAdjust" => exit_code::OOM_ADJUST,
        "RuntimeDirectory" => exit_code::RUNTIME_DIRECTORY,
        "StateDirectory" => exit_code::STATE_DIRECTORY,
        "LogsDirectory" => exit_code::LOGS_DIRECTORY,
        "StandardInput" => exit_code::STDIN,
        "StandardOutput" => exit_code::STDOUT,
        "StandardError" => exit_code::STDERR,
        "cgroup" => exit_code::CGROUP,
        "AmbientCapabilities" | "CapabilityBoundingSet" => exit_code::CAPABILITIES,
        k if k.starts_with("Limit") => exit_code::LIMITS,
        _ => exit_code::EXEC,
    }
}

/// systemd's exit status for a child setup step that failed (systemd.exec(5)).
fn exit_status_of_step(step: Step, index: usize) -> i32 {
    match step {
        Step::Entry | Step::TestFault | Step::Exec => exit_code::EXEC,
        Step::Stdio => match index {
            0 => exit_code::STDIN,
            1 => exit_code::STDOUT,
            _ => exit_code::STDERR,
        },
        Step::Setsid => exit_code::SETSID,
        Step::Signals => exit_code::SIGNAL_MASK,
        Step::Cgroup => exit_code::CGROUP,
        Step::Rlimit => exit_code::LIMITS,
        Step::Nice => exit_code::NICE,
        Step::OomScoreAdjust => exit_code::OOM_ADJUST,
        Step::Groups | Step::Setgid => exit_code::GROUP,
        Step::Setuid => exit_code::USER,
        Step::Capabilities => exit_code::CAPABILITIES,
        Step::Chdir => exit_code::CHDIR,
        Step::NoNewPrivileges => exit_code::NO_NEW_PRIVILEGES,
        Step::CloseFds => exit_code::FDS,
    }
}

/// The unit-log warning for a `Limit*=` the child clamped to the daemon's hard limit
/// (systemd's `setrlimit_closest()`): the key, what was asked and what was used. The
/// kernel refuses a hard limit above the current one without CAP_SYS_RESOURCE, and any
/// NOFILE above fs.nr_open.
pub(super) fn clamped_limit_warning(key: &str, asked: &RLimit, used: &RLimit) -> String {
    format!(
        "Limit{key}={}: above the hard limit, which may not be raised here; using {} as systemd does",
        fmt_rlimit(asked),
        fmt_rlimit(used)
    )
}

/// The unit-log warning for an `OOMScoreAdjust=` the kernel refused with EPERM/EACCES, which
/// systemd ignores (an unprivileged or containerised manager may not lower the score).
pub(super) fn oom_ignored_warning(value: i32, errno: i32) -> String {
    format!(
        "OOMScoreAdjust={value}: {}: ignored, as systemd does",
        errno_text(errno)
    )
}

/// The warnings for what the child applied differently from the plan ([`Started`]).
pub(super) fn warnings_of(started: &Started, plan: &ChildPlan, req: &SpawnRequest) -> Vec<String> {
    let mut out = Vec::new();
    for (i, ((key, asked), lim)) in req.service.limits.iter().zip(&plan.rlimits).enumerate() {
        let clamped = started.clamped & 1u32.checked_shl(i as u32).unwrap_or(0) != 0;
        if let Some(used) = lim.fallback_rlimit().filter(|_| clamped) {
            out.push(clamped_limit_warning(key, asked, &used));
        }
    }
    if started.oom_ignored_errno != 0 {
        let value = req.service.oom_score_adjust.unwrap_or(0);
        out.push(oom_ignored_warning(value, started.oom_ignored_errno));
    }
    out
}

/// `1024:infinity`, or `65535` when soft and hard agree, as a `Limit*=` value.
pub(super) fn fmt_rlimit(l: &RLimit) -> String {
    let f = |v: Option<u64>| {
        v.map(|n| n.to_string())
            .unwrap_or_else(|| "infinity".into())
    };
    if l.soft == l.hard {
        f(l.soft)
    } else {
        format!("{}:{}", f(l.soft), f(l.hard))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_side_settings_carry_systemd_exit_codes() {
        for (setting, code) in [
            ("User=nosuch", 217),
            ("Group=nosuch", 216),
            ("SupplementaryGroups=nosuch", 216),
            ("WorkingDirectory=/x\0", 200),
            ("LimitNOFILE=1:2", 205),
            ("RuntimeDirectory=a", 233),
            ("StateDirectory=a", 238),
            ("LogsDirectory=a", 240),
            ("StandardOutput=file:/x", 209),
            ("StandardError=append:/x", 222),
            ("cgroup /sys/fs/cgroup/x", 219),
            ("EnvironmentFile=/etc/default/x", 203),
            ("ExecStart=", 203),
        ] {
            let err = SpawnError::setup(setting, "boom");
            assert_eq!(err.exit_status(), code, "{setting}");
        }
    }

    #[test]
    fn every_child_step_has_an_exit_code() {
        use crate::service::exit_code::name;
        for step in Step::ALL {
            for index in 0..3 {
                let code = exit_status_of_step(step, index);
                assert!(name(code).is_some() && code >= 200, "{step:?}: {code}");
            }
        }
        assert_eq!(exit_status_of_step(Step::Setuid, 0), 217);
        assert_eq!(exit_status_of_step(Step::Chdir, 0), 200);
        assert_eq!(exit_status_of_step(Step::Rlimit, 2), 205);
        assert_eq!(exit_status_of_step(Step::Stdio, 2), 222);
    }

    #[test]
    fn warnings_name_the_key_and_the_value_used() {
        let asked = RLimit {
            soft: Some(65535),
            hard: Some(65535),
        };
        let used = RLimit {
            soft: Some(20000),
            hard: Some(20000),
        };
        assert_eq!(
            clamped_limit_warning("NOFILE", &asked, &used),
            "LimitNOFILE=65535: above the hard limit, which may not be raised here; using 20000 as systemd does"
        );
        assert_eq!(
            oom_ignored_warning(-500, libc::EPERM),
            "OOMScoreAdjust=-500: Operation not permitted: ignored, as systemd does"
        );
    }
}

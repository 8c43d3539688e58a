//! The environment block of a new process, built in the parent in systemd's order of
//! precedence. Absolute `EnvironmentFile=`s are read here, at each start, as systemd reads
//! them (relative ones come from the tree and were read by the loader), with the one
//! parser, [`crate::unit::environment::parse_env_file`].

use std::collections::BTreeMap;
use std::fs;
use std::io;

use crate::unit::environment::parse_env_file;

use super::creds::Credentials;
use super::{SpawnError, SpawnRequest};

/// systemd's default `PATH` for services.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The value [`build_environment`] gives `WATCHDOG_PID`: the pid of the new process is only
/// known in the child, which writes it into a slot the plan reserves for this entry
/// (`child::PidSlot`).
pub(super) const CHILD_PID: &str = "(the pid of the new process)";

/// The environment of the new process, in systemd's precedence: default PATH, then
/// PassEnvironment= (from the daemon), Environment=, EnvironmentFile= (files override
/// Environment=), the user's HOME/USER/LOGNAME/SHELL when User= is set, then MAINPID,
/// INVOCATION_ID, NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID (with `WatchdogSec=`, for
/// every process of the service as systemd; the pid is [`CHILD_PID`]), then `extra_env`;
/// UnsetEnvironment= removes last (a `NAME` removes the variable, a `NAME=VALUE` only that
/// exact assignment).
pub(super) fn build_environment(
    req: &SpawnRequest,
    creds: Option<&Credentials>,
) -> Result<BTreeMap<String, String>, SpawnError> {
    let svc = req.service;
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert("PATH".into(), DEFAULT_PATH.into());
    for name in &svc.pass_environment {
        if let Some(v) = std::env::var_os(name) {
            env.insert(name.clone(), v.to_string_lossy().into_owned());
        }
    }
    for (k, v) in &svc.environment {
        env.insert(k.clone(), v.clone());
    }
    for ef in &svc.environment_files {
        // Relative paths are resolved from the repository by the loader and already merged
        // into `environment`.
        if !ef.path.starts_with('/') {
            continue;
        }
        match fs::read(&ef.path) {
            Ok(bytes) => {
                let Ok(text) = std::str::from_utf8(&bytes) else {
                    return Err(SpawnError::setup(
                        format!("EnvironmentFile={}", ef.path),
                        "not valid UTF-8",
                    ));
                };
                let parsed = parse_env_file(text);
                for (line, msg) in &parsed.warnings {
                    tracing::warn!("{}: {}:{line}: {msg}", req.unit_name, ef.path);
                }
                env.extend(parsed.vars);
            }
            Err(e) if ef.optional && e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(SpawnError::setup(format!("EnvironmentFile={}", ef.path), e));
            }
        }
    }
    if let Some(u) = creds.and_then(|c| c.user.as_ref()) {
        env.insert("HOME".into(), u.home.display().to_string());
        env.insert("USER".into(), u.name.clone());
        env.insert("LOGNAME".into(), u.name.clone());
        env.insert("SHELL".into(), u.shell.display().to_string());
    }
    if let Some(pid) = req.main_pid {
        env.insert("MAINPID".into(), pid.to_string());
    }
    env.insert("INVOCATION_ID".into(), req.invocation_id.to_string());
    if let Some(sock) = req.notify_socket {
        env.insert("NOTIFY_SOCKET".into(), sock.display().to_string());
    }
    if let Some(w) = svc.watchdog.filter(|w| !w.is_zero()) {
        let usec = u64::try_from(w.as_micros()).unwrap_or(u64::MAX);
        env.insert("WATCHDOG_USEC".into(), usec.to_string());
        env.insert("WATCHDOG_PID".into(), CHILD_PID.into());
    }
    if !req.listen_fds.is_empty() {
        // Socket activation (sd_listen_fds(3)): fds 3.. are the sockets, in this order.
        env.insert("LISTEN_FDS".into(), req.listen_fds.len().to_string());
        env.insert("LISTEN_PID".into(), CHILD_PID.into());
        env.insert("LISTEN_FDNAMES".into(), req.listen_fd_names.join(":"));
    }
    for (k, v) in req.extra_env {
        env.insert(k.clone(), v.clone());
    }
    for u in &svc.unset_environment {
        match u.split_once('=') {
            Some((k, v)) => {
                if env.get(k).map(String::as_str) == Some(v) {
                    env.remove(k);
                }
            }
            None => {
                env.remove(u.as_str());
            }
        }
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::spawn::Dirs;
    use crate::unit::model::{EnvironmentFile, ExecCommand, ServiceSection};

    #[test]
    fn environment_precedence_and_unset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("env");
        fs::write(&file, "FROMFILE=1\nOVER=file\nexport SKIPPED=1\n").expect("write env file");
        let svc = ServiceSection {
            environment: vec![
                ("OVER".into(), "env".into()),
                ("KEEP".into(), "k".into()),
                ("GONE".into(), "x".into()),
                ("GONE2".into(), "y".into()),
            ],
            environment_files: vec![
                EnvironmentFile {
                    path: file.display().to_string(),
                    optional: false,
                },
                EnvironmentFile {
                    path: "/nonexistent/gitproc-env".into(),
                    optional: true,
                },
                EnvironmentFile {
                    path: "relative/env".into(),
                    optional: false,
                },
            ],
            unset_environment: vec!["GONE".into(), "GONE2=nope".into()],
            ..ServiceSection::default()
        };
        let cmd = ExecCommand::default();
        let dirs = Dirs::default();
        let mut req = SpawnRequest::new("a.service", &cmd, &svc, "abc", &dirs);
        req.main_pid = Some(42);
        let env = build_environment(&req, None).expect("env");
        assert_eq!(env["PATH"], DEFAULT_PATH);
        assert_eq!(env["OVER"], "file");
        assert_eq!(env["FROMFILE"], "1");
        assert!(!env.contains_key("SKIPPED") && !env.contains_key("export SKIPPED"));
        assert_eq!(env["KEEP"], "k");
        assert_eq!(env["MAINPID"], "42");
        assert_eq!(env["INVOCATION_ID"], "abc");
        assert!(!env.contains_key("GONE"));
        assert_eq!(env["GONE2"], "y");
        assert!(!env.contains_key("NOTIFY_SOCKET"));
        assert!(!env.contains_key("WATCHDOG_USEC") && !env.contains_key("WATCHDOG_PID"));
    }

    #[test]
    fn watchdog_sec_exports_usec_and_the_pid_slot() {
        let svc = ServiceSection {
            watchdog: Some(std::time::Duration::from_millis(2500)),
            ..ServiceSection::default()
        };
        let cmd = ExecCommand::default();
        let dirs = Dirs::default();
        let req = SpawnRequest::new("a.service", &cmd, &svc, "abc", &dirs);
        let env = build_environment(&req, None).expect("env");
        assert_eq!(env["WATCHDOG_USEC"], "2500000");
        assert_eq!(env["WATCHDOG_PID"], CHILD_PID);
        let off = ServiceSection {
            watchdog: Some(std::time::Duration::ZERO),
            ..ServiceSection::default()
        };
        let req = SpawnRequest::new("a.service", &cmd, &off, "abc", &dirs);
        let env = build_environment(&req, None).expect("env");
        assert!(!env.contains_key("WATCHDOG_USEC"), "WatchdogSec=0 is off");
    }

    #[test]
    fn missing_mandatory_environment_file_names_the_setting() {
        let svc = ServiceSection {
            environment_files: vec![EnvironmentFile {
                path: "/nonexistent/gitproc-env".into(),
                optional: false,
            }],
            ..ServiceSection::default()
        };
        let cmd = ExecCommand::default();
        let dirs = Dirs::default();
        let req = SpawnRequest::new("a.service", &cmd, &svc, "abc", &dirs);
        let err = build_environment(&req, None).expect_err("missing file");
        assert_eq!(
            err.to_string(),
            "EnvironmentFile=/nonexistent/gitproc-env: No such file or directory (os error 2)"
        );
    }
}

//! `[Service]` (systemd.service(5), systemd.exec(5), systemd.kill(5)): type, restart
//! policy, timeouts, killing, credentials, environment, directories, standard streams and
//! resource limits. `Exec*=` lines are parsed later (see `passes::exec_lines`).

use super::{push_words, timeout, timespan};
use crate::unit::capability;
use crate::unit::environment::parse_environment;
use crate::unit::exec::env_name_is_valid;
use crate::unit::load::{Builder, Located};
use crate::unit::model::{
    EnvironmentFile, KillMode, NotifyAccess, RestartPolicy, ServiceType, StdInput, StdOutput,
    defaults,
};
use crate::unit::name::parse_unit_name;
use crate::unit::specifier::{SpecifierUnit, expand};
use crate::unit::value::{
    limit_resource, parse_bool, parse_exit_status_set, parse_int_range, parse_mode, parse_rlimit,
    parse_signal,
};

impl Builder<'_> {
    pub(super) fn apply_service(
        &mut self,
        loc: &Located<'_>,
        key: &str,
        v: &str,
    ) -> Result<(), String> {
        if matches!(
            key,
            "StartLimitIntervalSec" | "StartLimitInterval" | "StartLimitBurst"
        ) {
            // Accepted in [Service] for compatibility with old units (systemd moved them to [Unit]).
            return self.apply_unit(key, v);
        }
        let pos = || (loc.file.to_string(), loc.entry.line, loc.entry.value_column);
        let mut warn: Option<String> = None;
        if matches!(key, "TimeoutStartSec" | "TimeoutSec") {
            self.timeout_start_set = !v.is_empty();
        }
        let s = &mut self.unit.service;
        match key {
            "Type" => {
                self.type_pos = Some(pos());
                s.service_type = match v {
                    "" | "simple" => ServiceType::Simple,
                    "exec" => ServiceType::Exec,
                    "forking" => ServiceType::Forking,
                    "oneshot" => ServiceType::Oneshot,
                    "notify" => ServiceType::Notify,
                    "notify-reload" => {
                        warn = Some(
                            "Type=notify-reload is treated as notify (reload uses ExecReload=)"
                                .into(),
                        );
                        ServiceType::Notify
                    }
                    "dbus" | "idle" => {
                        warn = Some(format!(
                            "Type={v} is not enforced by gitproc: treated as simple"
                        ));
                        ServiceType::Simple
                    }
                    _ => {
                        return Err(format!(
                            "invalid service type {v:?}: expected simple, exec, forking, oneshot or notify"
                        ));
                    }
                }
            }
            "NotifyAccess" => {
                s.notify_access = match v {
                    "" => None,
                    "none" => Some(NotifyAccess::None),
                    "main" => Some(NotifyAccess::Main),
                    "exec" => Some(NotifyAccess::Exec),
                    "all" => Some(NotifyAccess::All),
                    _ => {
                        return Err(format!(
                            "invalid NotifyAccess= {v:?}: expected none, main, exec or all"
                        ));
                    }
                }
            }
            "GuessMainPID" => s.guess_main_pid = v.is_empty() || parse_bool(v)?,
            "PermissionsStartOnly" => s.permissions_start_only = !v.is_empty() && parse_bool(v)?,
            "RemainAfterExit" => s.remain_after_exit = !v.is_empty() && parse_bool(v)?,
            "SendSIGKILL" => s.send_sigkill = v.is_empty() || parse_bool(v)?,
            "SendSIGHUP" => s.send_sighup = !v.is_empty() && parse_bool(v)?,
            "NoNewPrivileges" => s.no_new_privileges = !v.is_empty() && parse_bool(v)?,
            "IgnoreSIGPIPE" => s.ignore_sigpipe = v.is_empty() || parse_bool(v)?,
            "AmbientCapabilities" | "CapabilityBoundingSet" => {
                let set = if key == "AmbientCapabilities" {
                    let cur = s.ambient_capabilities;
                    let (next, unknown) =
                        capability::apply_assignment((cur != 0).then_some(cur), v);
                    s.ambient_capabilities = next;
                    unknown
                } else {
                    let (next, unknown) =
                        capability::apply_assignment(s.capability_bounding_set, v);
                    s.capability_bounding_set = Some(next);
                    unknown
                };
                if !set.is_empty() {
                    warn = Some(format!("unknown capability {}: ignored", set.join(", ")));
                }
            }
            "PIDFile" => {
                s.pid_file = if v.is_empty() {
                    None
                } else if v.starts_with('/') {
                    Some(v.to_string())
                } else {
                    warn = Some(format!(
                        "relative path {v:?} is taken below {}",
                        self.ctx.runtime_dir
                    ));
                    Some(format!("{}/{v}", self.ctx.runtime_dir))
                }
            }
            "Restart" => {
                self.restart_pos = Some(pos());
                s.restart = match v {
                    "" | "no" => RestartPolicy::No,
                    "on-success" => RestartPolicy::OnSuccess,
                    "on-failure" => RestartPolicy::OnFailure,
                    "on-abnormal" => RestartPolicy::OnAbnormal,
                    "on-watchdog" => RestartPolicy::OnWatchdog,
                    "on-abort" => RestartPolicy::OnAbort,
                    "always" => RestartPolicy::Always,
                    _ => {
                        return Err(format!(
                            "invalid restart policy {v:?}: expected no, on-success, on-failure, on-abnormal, on-watchdog, on-abort or always"
                        ));
                    }
                }
            }
            "RestartSec" => {
                s.restart_sec = if v.is_empty() {
                    defaults::RESTART_SEC
                } else {
                    // infinity (or a span that saturates there): the restart never comes
                    // due, the unit waits in auto-restart (as systemd's timer never fires).
                    timespan(v)?.unwrap_or(std::time::Duration::MAX)
                }
            }
            "RestartSteps" => {
                s.restart_steps = if v.is_empty() {
                    0
                } else {
                    parse_int_range(v, 0, 3600, "step count")? as u32
                }
            }
            "RestartMaxDelaySec" => {
                s.restart_max_delay = if v.is_empty() { None } else { timespan(v)? }
            }
            "SuccessExitStatus" | "RestartPreventExitStatus" | "RestartForceExitStatus" => {
                let set = match key {
                    "SuccessExitStatus" => &mut s.success_exit_status,
                    "RestartPreventExitStatus" => &mut s.restart_prevent_exit_status,
                    _ => &mut s.restart_force_exit_status,
                };
                if v.is_empty() {
                    *set = Default::default();
                } else {
                    parse_exit_status_set(v, set)?;
                }
            }
            "TimeoutStartSec" => {
                s.timeout_start = if v.is_empty() {
                    Some(defaults::TIMEOUT_START)
                } else {
                    timeout(v)?
                }
            }
            "TimeoutStopSec" => {
                s.timeout_stop = if v.is_empty() {
                    Some(defaults::TIMEOUT_STOP)
                } else {
                    timeout(v)?
                }
            }
            "TimeoutSec" => {
                let (start, stop) = if v.is_empty() {
                    (Some(defaults::TIMEOUT_START), Some(defaults::TIMEOUT_STOP))
                } else {
                    let t = timeout(v)?;
                    (t, t)
                };
                s.timeout_start = start;
                s.timeout_stop = stop;
            }
            "WatchdogSec" => s.watchdog = if v.is_empty() { None } else { timeout(v)? },
            "KillMode" => {
                s.kill_mode = match v {
                    "" | "control-group" => KillMode::ControlGroup,
                    "mixed" => KillMode::Mixed,
                    "process" => KillMode::Process,
                    "none" => KillMode::None,
                    _ => {
                        return Err(format!(
                            "invalid kill mode {v:?}: expected control-group, mixed, process or none"
                        ));
                    }
                }
            }
            "KillSignal" => {
                s.kill_signal = if v.is_empty() {
                    defaults::KILL_SIGNAL
                } else {
                    parse_signal(v)?
                }
            }
            "FinalKillSignal" => {
                s.final_kill_signal = if v.is_empty() {
                    defaults::FINAL_KILL_SIGNAL
                } else {
                    parse_signal(v)?
                }
            }
            "WorkingDirectory" => {
                let (optional, p) = match v.strip_prefix('-') {
                    Some(p) => (true, p),
                    None => (false, v),
                };
                if v.is_empty() {
                    s.working_directory = None;
                    s.working_directory_optional = false;
                } else if p == "~" || p.starts_with('/') {
                    s.working_directory = Some(p.to_string());
                    s.working_directory_optional = optional;
                } else {
                    return Err(format!("{p:?} must be an absolute path or ~"));
                }
            }
            "RootDirectory" => {
                s.root_directory = (!v.is_empty()).then(|| v.to_string());
                if !v.is_empty() {
                    warn = Some(
                        "not enforced by gitproc: the service does not run in a chroot".into(),
                    );
                }
            }
            "User" | "Group" => {
                let field = if key == "User" {
                    &mut s.user
                } else {
                    &mut s.group
                };
                if v.is_empty() {
                    *field = None;
                } else if user_or_group_ok(v) {
                    *field = Some(v.to_string());
                } else {
                    return Err(format!("invalid {} name {v:?}", key.to_ascii_lowercase()));
                }
            }
            "SupplementaryGroups" => {
                if let Some(bad) = v.split_ascii_whitespace().find(|g| !user_or_group_ok(g)) {
                    return Err(format!("invalid group name {bad:?}"));
                }
                push_words(&mut s.supplementary_groups, v);
            }
            "UMask" => {
                s.umask = if v.is_empty() {
                    0o022
                } else {
                    parse_mode(v, 0o777)?
                }
            }
            "Environment" => {
                if v.is_empty() {
                    s.environment.clear();
                } else {
                    let (name, path) = (self.name, self.path);
                    let ctx = self.ctx;
                    let mut spec =
                        |w: &str| expand(w, &SpecifierUnit { name, path }, ctx).map_err(|(_, m)| m);
                    match parse_environment(v, &mut spec) {
                        Ok(vars) => s.environment.extend(vars),
                        Err((off, msg)) => {
                            self.diags.push(loc.error_at(off, msg));
                            return Ok(());
                        }
                    }
                }
            }
            "EnvironmentFile" => {
                if v.is_empty() {
                    s.environment_files.clear();
                    self.env_file_pos.clear();
                } else {
                    let (optional, p) = match v.strip_prefix('-') {
                        Some(p) => (true, p),
                        None => (false, v),
                    };
                    if p.is_empty() {
                        return Err("missing path after '-'".into());
                    }
                    s.environment_files.push(EnvironmentFile {
                        path: p.to_string(),
                        optional,
                    });
                    self.env_file_pos.push(pos());
                }
            }
            "PassEnvironment" | "UnsetEnvironment" => {
                let unset = key == "UnsetEnvironment";
                for w in v.split_ascii_whitespace() {
                    let name = if unset {
                        w.split('=').next().unwrap_or(w)
                    } else {
                        w
                    };
                    if !env_name_is_valid(name) {
                        return Err(format!("invalid variable name {w:?}"));
                    }
                }
                let list = if unset {
                    &mut s.unset_environment
                } else {
                    &mut s.pass_environment
                };
                push_words(list, v);
            }
            "Nice" => {
                s.nice = if v.is_empty() {
                    None
                } else {
                    Some(parse_int_range(v, -20, 19, "nice level")? as i32)
                }
            }
            "OOMScoreAdjust" => {
                s.oom_score_adjust = if v.is_empty() {
                    None
                } else {
                    Some(parse_int_range(v, -1000, 1000, "OOM score adjustment")? as i32)
                }
            }
            "RuntimeDirectory" | "StateDirectory" | "LogsDirectory" => {
                let list = match key {
                    "RuntimeDirectory" => &mut s.runtime_directory,
                    "StateDirectory" => &mut s.state_directory,
                    _ => &mut s.logs_directory,
                };
                if v.is_empty() {
                    list.clear();
                } else {
                    list.extend(directory_names(v)?);
                }
            }
            "RuntimeDirectoryMode" | "StateDirectoryMode" | "LogsDirectoryMode" => {
                let m = if v.is_empty() {
                    defaults::DIRECTORY_MODE
                } else {
                    parse_mode(v, 0o7777)?
                };
                match key {
                    "RuntimeDirectoryMode" => s.runtime_directory_mode = m,
                    "StateDirectoryMode" => s.state_directory_mode = m,
                    _ => s.logs_directory_mode = m,
                }
            }
            "StandardInput" => {
                s.standard_input = match v {
                    "" | "null" => StdInput::Null,
                    "tty" | "tty-force" | "tty-fail" | "data" | "socket" => {
                        warn = Some("not enforced by gitproc: stdin is /dev/null".into());
                        StdInput::Other(v.to_string())
                    }
                    _ if v.starts_with("file:") || v.starts_with("fd:") => {
                        warn = Some("not enforced by gitproc: stdin is /dev/null".into());
                        StdInput::Other(v.to_string())
                    }
                    _ => {
                        return Err(format!(
                            "invalid value {v:?}: expected null, tty, data, socket, file:PATH or fd:NAME"
                        ));
                    }
                }
            }
            "StandardOutput" => {
                s.standard_output = if v.is_empty() {
                    StdOutput::Journal
                } else {
                    let (o, enforced) = parse_std_output(v)?;
                    if !enforced {
                        warn = Some(format!(
                            "{v} is not enforced by gitproc: output goes to the unit's log"
                        ));
                    }
                    o
                }
            }
            "StandardError" => {
                s.standard_error = if v.is_empty() || v == "inherit" {
                    None
                } else {
                    let (o, enforced) = parse_std_output(v)?;
                    if !enforced {
                        warn = Some(format!(
                            "{v} is not enforced by gitproc: output goes to the unit's log"
                        ));
                    }
                    Some(o)
                }
            }
            "SyslogIdentifier" => s.syslog_identifier = (!v.is_empty()).then(|| v.to_string()),
            "Sockets" => {
                if v.is_empty() {
                    s.sockets.clear();
                }
                for name in v.split_ascii_whitespace() {
                    if !name.ends_with(".socket") {
                        return Err(format!("{name} is not a .socket unit"));
                    }
                    parse_unit_name(name)?;
                    if !s.sockets.iter().any(|n| n == name) {
                        s.sockets.push(name.to_string());
                    }
                }
            }
            _ if crate::unit::resources::assign(&mut s.resources, key, v)? => {}
            _ => {
                if let Some(res) = limit_resource(key) {
                    if v.is_empty() {
                        s.limits.remove(res);
                    } else {
                        let l = parse_rlimit(res, v)?;
                        s.limits.insert(res.to_string(), l);
                    }
                }
            }
        }
        if let Some(w) = warn {
            self.diags.push(loc.warning(w));
        }
        Ok(())
    }
}

fn parse_std_output(v: &str) -> Result<(StdOutput, bool), String> {
    // Returns the output and whether it is enforced as written.
    Ok(match v {
        "journal" | "syslog" | "kmsg" => (StdOutput::Journal, true),
        "journal+console" | "syslog+console" | "kmsg+console" | "tty" | "socket" => {
            (StdOutput::Journal, false)
        }
        "null" => (StdOutput::Null, true),
        "inherit" => (StdOutput::Inherit, true),
        _ => {
            if let Some(p) = v.strip_prefix("file:") {
                (StdOutput::File(abs_path(p)?), true)
            } else if let Some(p) = v.strip_prefix("append:") {
                (StdOutput::Append(abs_path(p)?), true)
            } else if let Some(p) = v.strip_prefix("truncate:") {
                (StdOutput::Truncate(abs_path(p)?), true)
            } else if v.starts_with("fd:") {
                (StdOutput::Journal, false)
            } else {
                return Err(format!(
                    "invalid value {v:?}: expected null, inherit, journal, file:PATH, append:PATH or truncate:PATH"
                ));
            }
        }
    })
}

fn abs_path(p: &str) -> Result<String, String> {
    if p.starts_with('/') {
        Ok(p.to_string())
    } else {
        Err(format!("path {p:?} must be absolute"))
    }
}

fn user_or_group_ok(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 256
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '$'))
        && !v.starts_with('-')
}

fn directory_names(v: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for w in v.split_ascii_whitespace() {
        // `dir:symlink` (systemd 250+): gitproc creates the directory and ignores the symlink.
        let dir = w.split(':').next().unwrap_or(w);
        if !crate::tree::stays_below(dir) {
            return Err(format!(
                "{w:?} must be a relative path below the base directory, without . or .."
            ));
        }
        out.push(dir.to_string());
    }
    Ok(out)
}

//! Building the typed [`Unit`] from a unit file and its drop-ins, and loading a whole unit
//! directory ([`FileTree`]) with templates instantiated.
//!
//! Rules (systemd.unit(5), systemd.service(5)): entries of the main file then of each drop-in
//! (lexical order) apply in order; an empty assignment resets a list (or a scalar to its
//! default); `Exec*=` lines are resolved after all `Environment=`/`EnvironmentFile=` lines so
//! `$VAR` sees the final environment wherever the lines are. An error anywhere rejects this
//! unit only (`unit: None`); warnings never do.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use super::LoadedUnit;
use super::diagnostic::Diagnostic;
use super::directives::{SectionKind, Support, classify, section_kind};
use super::environment::{parse_env_file, parse_environment};
use super::exec::{env_name_is_valid, parse_exec};
use super::model::{
    EnvironmentFile, ExecCommand, KillMode, RestartPolicy, ServiceType, StdInput, StdOutput, Unit,
    UnitName, defaults,
};
use super::name::{is_template, parse_unit_name, template_of};
use super::specifier::{SpecifierContext, SpecifierUnit, expand};
use super::syntax::{self, Entry};
use super::value::{
    SEC, limit_resource, parse_bool, parse_exit_status_set, parse_int_range, parse_mode,
    parse_rlimit, parse_signal, parse_timespan,
};
use crate::tree::{Entry as TreeEntry, FileTree};

/// A stable 128-bit FNV-1a hash (std's hashers are not stable across Rust versions; this
/// one is defined by its constants, so a hash stored in the state file stays comparable).
struct Fnv128(u128);

impl Fnv128 {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;

    fn new() -> Self {
        Fnv128(Self::OFFSET)
    }

    fn bytes(&mut self, b: &[u8]) {
        let mut h = self.0;
        for &x in b {
            h ^= u128::from(x);
            h = h.wrapping_mul(Self::PRIME);
        }
        self.0 = h;
    }

    /// Length-framed, so `("ab","c")` and `("a","bc")` differ.
    fn part(&mut self, b: &[u8]) {
        self.bytes(&(b.len() as u64).to_le_bytes());
        self.bytes(b);
    }

    fn hex(&self) -> String {
        format!("{:032x}", self.0)
    }
}

/// An entry with the file it came from.
struct Located<'a> {
    file: &'a str,
    entry: Entry<'a>,
}

impl Located<'_> {
    /// Column of a character offset inside the value (exact on single-line values).
    fn column_at(&self, offset: usize) -> u32 {
        match self.entry.value {
            Cow::Borrowed(_) => self.entry.value_column + offset as u32,
            Cow::Owned(_) => self.entry.value_column,
        }
    }

    fn error(&self, msg: impl std::fmt::Display) -> Diagnostic {
        self.error_at(0, msg)
    }

    fn error_at(&self, offset: usize, msg: impl std::fmt::Display) -> Diagnostic {
        Diagnostic::error(
            self.file,
            self.entry.line,
            self.column_at(offset),
            format!("{}=: {msg}", self.entry.key),
        )
    }

    fn warning(&self, msg: impl std::fmt::Display) -> Diagnostic {
        Diagnostic::warning(
            self.file,
            self.entry.line,
            self.entry.column,
            format!("{}=: {msg}", self.entry.key),
        )
    }
}

/// Which `Exec*=` list a key fills.
fn exec_list<'u>(unit: &'u mut Unit, key: &str) -> Option<&'u mut Vec<ExecCommand>> {
    let s = &mut unit.service;
    Some(match key {
        "ExecCondition" => &mut s.exec_condition,
        "ExecStartPre" => &mut s.exec_start_pre,
        "ExecStart" => &mut s.exec_start,
        "ExecStartPost" => &mut s.exec_start_post,
        "ExecReload" => &mut s.exec_reload,
        "ExecStop" => &mut s.exec_stop,
        "ExecStopPost" => &mut s.exec_stop_post,
        _ => return None,
    })
}

fn push_words(list: &mut Vec<String>, v: &str) {
    if v.is_empty() {
        list.clear();
    } else {
        list.extend(v.split_ascii_whitespace().map(str::to_string));
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

fn timespan(v: &str) -> Result<Option<Duration>, String> {
    parse_timespan(v, SEC)
}

/// A timeout where both `0` and `infinity` disable it (systemd.service(5)).
fn timeout(v: &str) -> Result<Option<Duration>, String> {
    Ok(timespan(v)?.filter(|d| !d.is_zero()))
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
        if dir.is_empty() || dir.starts_with('/') || dir.split('/').any(|c| c == ".." || c == ".") {
            return Err(format!(
                "{w:?} must be a relative path below the base directory, without . or .."
            ));
        }
        out.push(dir.to_string());
    }
    Ok(out)
}

/// State while applying entries.
struct Builder<'a> {
    unit: Unit,
    diags: Vec<Diagnostic>,
    ctx: &'a SpecifierContext,
    name: &'a UnitName,
    path: &'a str,
    /// Where ExecStart= / Type= were last set, for whole-unit checks.
    exec_start_lines: Vec<(String, u32, u32)>,
    type_pos: Option<(String, u32, u32)>,
    restart_pos: Option<(String, u32, u32)>,
    /// Where each `environment_files` entry was written (kept parallel to that list).
    env_file_pos: Vec<(String, u32, u32)>,
    /// The first `[Service]` header, for errors about the whole service.
    service_pos: Option<(String, u32, u32)>,
    /// Whether TimeoutStartSec=/TimeoutSec= was written (oneshot's default differs).
    timeout_start_set: bool,
}

impl<'a> Builder<'a> {
    fn spec(&self, s: &str) -> Result<String, (usize, String)> {
        expand(
            s,
            &SpecifierUnit {
                name: self.name,
                path: self.path,
            },
            self.ctx,
        )
    }

    /// Applies one enforced non-Exec key. Values are specifier-expanded first.
    fn apply(&mut self, loc: &Located<'_>, section: SectionKind) {
        let key = loc.entry.key;
        let raw: &str = &loc.entry.value;
        let v = match key {
            "Environment" => raw.to_string(),
            _ => match self.spec(raw) {
                Ok(v) => v,
                Err((off, msg)) => {
                    self.diags.push(loc.error_at(off, msg));
                    return;
                }
            },
        };
        let v = v.as_str();
        let r: Result<(), String> = match section {
            SectionKind::Unit => self.apply_unit(key, v),
            SectionKind::Service => self.apply_service(loc, key, v),
            SectionKind::Install => {
                let i = &mut self.unit.install;
                match key {
                    "WantedBy" => push_words(&mut i.wanted_by, v),
                    "RequiredBy" => push_words(&mut i.required_by, v),
                    "Alias" => push_words(&mut i.alias, v),
                    _ => {}
                }
                Ok(())
            }
            _ => Ok(()),
        };
        if let Err(msg) = r {
            self.diags.push(loc.error(msg));
        }
    }

    fn apply_unit(&mut self, key: &str, v: &str) -> Result<(), String> {
        let u = &mut self.unit.unit;
        match key {
            "Description" => u.description = (!v.is_empty()).then(|| v.to_string()),
            "After" | "Before" | "Requires" | "Wants" | "BindsTo" | "BindTo" | "PartOf"
            | "Conflicts" => {
                let list = match key {
                    "After" => &mut u.after,
                    "Before" => &mut u.before,
                    "Requires" => &mut u.requires,
                    "Wants" => &mut u.wants,
                    "PartOf" => &mut u.part_of,
                    "Conflicts" => &mut u.conflicts,
                    _ => &mut u.binds_to,
                };
                if v.is_empty() {
                    list.clear();
                }
                for w in v.split_ascii_whitespace() {
                    parse_unit_name(w)?;
                    list.push(w.to_string());
                }
            }
            "ConditionHost" => push_words(&mut u.condition_host, v),
            "ConditionPathExists" | "AssertPathExists" => {
                let list = if key == "AssertPathExists" {
                    &mut u.assert_path_exists
                } else {
                    &mut u.condition_path_exists
                };
                if v.is_empty() {
                    list.clear();
                } else {
                    let p = v.trim_start_matches(['|', '!']);
                    if !p.starts_with('/') {
                        return Err(format!(
                            "path {p:?} must be absolute (optionally prefixed with | or !)"
                        ));
                    }
                    list.push(v.to_string());
                }
            }
            "StartLimitIntervalSec" | "StartLimitInterval" => {
                u.start_limit_interval = if v.is_empty() {
                    defaults::START_LIMIT_INTERVAL
                } else {
                    timespan(v)?.unwrap_or(Duration::MAX)
                }
            }
            "StartLimitBurst" => {
                u.start_limit_burst = if v.is_empty() {
                    defaults::START_LIMIT_BURST
                } else {
                    v.parse().map_err(|_| {
                        format!("invalid count {v:?}: expected a non-negative integer")
                    })?
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn apply_service(&mut self, loc: &Located<'_>, key: &str, v: &str) -> Result<(), String> {
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
            "RemainAfterExit" => s.remain_after_exit = !v.is_empty() && parse_bool(v)?,
            "SendSIGKILL" => s.send_sigkill = v.is_empty() || parse_bool(v)?,
            "SendSIGHUP" => s.send_sighup = !v.is_empty() && parse_bool(v)?,
            "NoNewPrivileges" => s.no_new_privileges = !v.is_empty() && parse_bool(v)?,
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
                    timespan(v)?.ok_or("RestartSec= must be finite")?
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

/// Parses one unit: see [`super::parse_unit`].
pub fn parse_unit(
    name: &str,
    path: &str,
    bytes: &[u8],
    dropins: &[(String, Vec<u8>)],
    ctx: &SpecifierContext,
    env_file: &dyn Fn(&str) -> Option<Vec<u8>>,
) -> LoadedUnit {
    let mut hash = Fnv128::new();
    hash.part(b"gitproc-unit-v1");
    hash.part(name.as_bytes());
    hash.part(bytes);
    for (p, b) in dropins {
        hash.part(p.as_bytes());
        hash.part(b);
    }
    let mut inputs: Vec<String> = Vec::with_capacity(1 + dropins.len());
    inputs.push(path.to_string());
    inputs.extend(dropins.iter().map(|(p, _)| p.clone()));
    let mut out = LoadedUnit {
        name: name.to_string(),
        path: path.to_string(),
        unit: None,
        diagnostics: Vec::new(),
        content_hash: String::new(),
        inputs,
    };
    let unit_name = match parse_unit_name(name) {
        Ok(n) if n.suffix == "service" => n,
        Ok(_) => {
            out.diagnostics.push(Diagnostic::error(
                path,
                1,
                1,
                format!("{name}: gitproc only runs .service units"),
            ));
            out.content_hash = hash.hex();
            return out;
        }
        Err(e) => {
            out.diagnostics.push(Diagnostic::error(path, 1, 1, e));
            out.content_hash = hash.hex();
            return out;
        }
    };

    // Lex every file; entries keep their file for diagnostics.
    let mut files: Vec<(&str, &[u8])> = Vec::with_capacity(1 + dropins.len());
    files.push((path, bytes));
    files.extend(dropins.iter().map(|(p, b)| (p.as_str(), b.as_slice())));
    let mut entries: Vec<Located<'_>> = Vec::new();
    let mut has_service_section = false;
    let mut service_pos: Option<(String, u32, u32)> = None;
    for (file, b) in &files {
        let text = match syntax::decode(file, b) {
            Ok(t) => t,
            Err(d) => {
                out.diagnostics.push(d);
                continue;
            }
        };
        let lexed = syntax::parse(file, text);
        out.diagnostics.extend(lexed.diagnostics);
        for s in &lexed.sections {
            match section_kind(s.name) {
                SectionKind::Unknown => out.diagnostics.push(Diagnostic::warning(
                    file,
                    s.line,
                    s.column,
                    format!(
                        "unknown section [{}] in a .service unit: ignored (gitproc extensions use [X-Name])",
                        s.name
                    ),
                )),
                SectionKind::Service => {
                    has_service_section = true;
                    if service_pos.is_none() {
                        service_pos = Some((file.to_string(), s.line, s.column));
                    }
                }
                _ => {}
            }
        }
        entries.extend(
            lexed
                .entries
                .into_iter()
                .map(|entry| Located { file, entry }),
        );
    }

    let mut b = Builder {
        unit: Unit {
            name: name.to_string(),
            path: path.to_string(),
            dropins: dropins.iter().map(|(p, _)| p.clone()).collect(),
            ..Unit::default()
        },
        diags: Vec::new(),
        ctx,
        name: &unit_name,
        path,
        exec_start_lines: Vec::new(),
        timeout_start_set: false,
        type_pos: None,
        restart_pos: None,
        env_file_pos: Vec::new(),
        service_pos,
    };

    // Pass 1: everything but Exec*=.
    let mut exec_entries: Vec<&Located<'_>> = Vec::new();
    for loc in &entries {
        let sk = section_kind(loc.entry.section);
        let key = loc.entry.key;
        match sk {
            SectionKind::Unknown => continue,
            SectionKind::Extension => {
                let v = loc.entry.value.to_string();
                let keys = b
                    .unit
                    .extensions
                    .entry(loc.entry.section.to_string())
                    .or_default();
                let list = keys.entry(key.to_string()).or_default();
                if v.is_empty() {
                    list.clear();
                } else {
                    list.push(v);
                }
                continue;
            }
            _ => {}
        }
        match classify(sk, key) {
            None => {
                let hint = if sk != SectionKind::Service
                    && classify(SectionKind::Service, key).is_some()
                {
                    " (it belongs in [Service])"
                } else if sk != SectionKind::Unit && classify(SectionKind::Unit, key).is_some() {
                    " (it belongs in [Unit])"
                } else {
                    ""
                };
                b.diags.push(Diagnostic::warning(
                    loc.file,
                    loc.entry.line,
                    loc.entry.column,
                    format!(
                        "unknown key {key}= in section [{}]: ignored{hint}",
                        loc.entry.section
                    ),
                ));
            }
            Some(Support::Informational) => {}
            Some(Support::NotEnforced) => b.diags.push(Diagnostic::warning(
                loc.file,
                loc.entry.line,
                loc.entry.column,
                format!("{key}= is not enforced by gitproc: accepted and ignored"),
            )),
            Some(Support::Enforced) => {
                if sk == SectionKind::Service && key.starts_with("Exec") {
                    exec_entries.push(loc);
                } else {
                    b.apply(loc, sk);
                }
            }
        }
    }

    // Environment files, read once, in order; their variables override Environment=.
    let mut file_vars: Vec<(String, String)> = Vec::new();
    let env_files = b.unit.service.environment_files.clone();
    let env_file_pos = std::mem::take(&mut b.env_file_pos);
    for (k, ef) in env_files.iter().enumerate() {
        let (ofile, oline, ocol) = env_file_pos
            .get(k)
            .map(|(f, l, c)| (f.as_str(), *l, *c))
            .unwrap_or((path, 1, 1));
        match env_file(&ef.path) {
            Some(content) => {
                hash.part(ef.path.as_bytes());
                hash.part(&content);
                if !ef.path.starts_with('/') {
                    out.inputs.push(ef.path.clone());
                }
                match std::str::from_utf8(&content) {
                    Ok(text) => {
                        let parsed = parse_env_file(text);
                        file_vars.extend(parsed.vars);
                        for (line, msg) in parsed.warnings {
                            b.diags.push(Diagnostic::warning(
                                &ef.path,
                                line,
                                1,
                                format!("environment file (used by {ofile}:{oline}): {msg}"),
                            ));
                        }
                    }
                    Err(_) => b.diags.push(Diagnostic::error(
                        &ef.path,
                        1,
                        1,
                        format!("environment file (used by {ofile}:{oline}) is not valid UTF-8"),
                    )),
                }
            }
            None if ef.optional => {
                hash.part(ef.path.as_bytes());
                hash.part(b"\0missing");
            }
            None if ef.path.starts_with('/') => b.diags.push(Diagnostic::warning(
                ofile,
                oline,
                ocol,
                format!(
                    "EnvironmentFile=: {} cannot be read on this host; the service will fail to start unless it exists (prefix it with '-' if it is optional)",
                    ef.path
                ),
            )),
            None => b.diags.push(Diagnostic::error(
                ofile,
                oline,
                ocol,
                format!(
                    "EnvironmentFile=: {} is not in the tree (relative paths are looked up next to the units; prefix with '-' if optional)",
                    ef.path
                ),
            )),
        }
    }
    b.unit.service.environment_from_files = file_vars;

    // Pass 2: Exec*= lines with the final environment.
    {
        let env_pairs: Vec<(&str, &str)> = b
            .unit
            .service
            .environment
            .iter()
            .chain(b.unit.service.environment_from_files.iter())
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        // UnsetEnvironment= removes variables from the final environment (systemd.exec(5)).
        // `NAME=VALUE` only unsets when the value matches.
        let unset = &b.unit.service.unset_environment;
        let env = |n: &str| {
            let found = env_pairs
                .iter()
                .rev()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| *v);
            let removed = unset.iter().any(|u| match u.split_once('=') {
                Some((k, val)) => k == n && found == Some(val),
                None => u == n,
            });
            if removed { Some("") } else { found }
        };
        // PassEnvironment= names come from the manager's environment at spawn time.
        let pass = &b.unit.service.pass_environment;
        let keep = |n: &str| pass.iter().any(|p| p == n);
        let (un, up) = (&unit_name, path);
        let mut spec =
            |w: &str| expand(w, &SpecifierUnit { name: un, path: up }, ctx).map_err(|(_, m)| m);
        let mut parsed: Vec<(usize, Result<Vec<ExecCommand>, Diagnostic>)> = Vec::new();
        for (i, loc) in exec_entries.iter().enumerate() {
            if loc.entry.value.is_empty() {
                parsed.push((i, Ok(Vec::new())));
                continue;
            }
            let origin = format!("{}:{}", loc.file, loc.entry.line);
            let r = parse_exec(&loc.entry.value, &origin, &mut spec, &env, &keep)
                .map_err(|(off, msg)| loc.error_at(off, msg));
            parsed.push((i, r));
        }
        for (i, r) in parsed {
            let loc = exec_entries[i];
            let key = loc.entry.key;
            match r {
                Ok(cmds) => {
                    if key == "ExecStart" && !cmds.is_empty() {
                        b.exec_start_lines.push((
                            loc.file.to_string(),
                            loc.entry.line,
                            loc.entry.column,
                        ));
                    }
                    if key == "ExecStart" && loc.entry.value.is_empty() {
                        b.exec_start_lines.clear();
                    }
                    if let Some(list) = exec_list(&mut b.unit, key) {
                        if loc.entry.value.is_empty() {
                            list.clear();
                        } else {
                            list.extend(cmds);
                        }
                    }
                }
                Err(d) => b.diags.push(d),
            }
        }
    }

    // Whole-unit rules (systemd.service(5)).
    let oneshot = b.unit.service.service_type == ServiceType::Oneshot;
    if oneshot && !b.timeout_start_set {
        // systemd disables the start timeout for oneshot services unless one is set.
        b.unit.service.timeout_start = None;
    }
    let s = &b.unit.service;
    if s.exec_start.len() > 1 && !oneshot {
        let (f, l, c) = b
            .exec_start_lines
            .get(1)
            .cloned()
            .unwrap_or((path.to_string(), 1, 1));
        b.diags.push(Diagnostic::error(
            &f,
            l,
            c,
            format!(
                "ExecStart= given {} times: only Type=oneshot services may have more than one command (reset with an empty ExecStart= in a drop-in to replace it)",
                s.exec_start.len()
            ),
        ));
    }
    if s.exec_start.is_empty() && !b.diags.iter().any(|d| d.is_error()) {
        if !oneshot {
            let (f, l, c) = (b.type_pos.clone())
                .or_else(|| b.service_pos.clone())
                .unwrap_or((path.to_string(), 1, 1));
            b.diags.push(Diagnostic::error(
                &f,
                l,
                c,
                if has_service_section {
                    "service has no ExecStart=: only Type=oneshot services may omit it".to_string()
                } else {
                    "unit has no [Service] section with ExecStart=".to_string()
                },
            ));
        } else if s.exec_stop.is_empty() {
            let (f, l, c) = b.type_pos.clone().unwrap_or((path.to_string(), 1, 1));
            b.diags.push(Diagnostic::error(
                &f,
                l,
                c,
                "service has neither ExecStart= nor ExecStop=: nothing to run",
            ));
        }
    }
    if oneshot && matches!(s.restart, RestartPolicy::Always | RestartPolicy::OnSuccess) {
        let (f, l, c) = b.restart_pos.clone().unwrap_or((path.to_string(), 1, 1));
        b.diags.push(Diagnostic::error(
            &f,
            l,
            c,
            "Restart=always and Restart=on-success are not allowed for Type=oneshot services",
        ));
    }

    out.diagnostics.extend(b.diags);
    out.content_hash = hash.hex();
    if !out.diagnostics.iter().any(Diagnostic::is_error) {
        out.unit = Some(b.unit);
    }
    out
}

/// Reads a file of the tree, following one level of in-tree symlink.
fn tree_file<'t>(tree: &'t FileTree, path: &str) -> Option<&'t [u8]> {
    let path = path.strip_prefix("./").unwrap_or(path);
    match tree.entries.get(path)? {
        TreeEntry::File(b) => Some(b),
        TreeEntry::Symlink(t) => {
            let target = if t.starts_with('/') {
                return None;
            } else if let Some((dir, _)) = path.rsplit_once('/') {
                format!("{dir}/{t}")
            } else {
                t.clone()
            };
            tree.file(target.strip_prefix("./").unwrap_or(&target))
        }
    }
}

/// `name.service.d/*.conf` drop-ins in lexical order of file name; for an instance, the
/// template's directory too (a file of the same name in the instance's directory wins).
fn dropins_for(tree: &FileTree, dirs: &[&str]) -> Vec<(String, Vec<u8>)> {
    let mut by_name: BTreeMap<&str, (&str, &[u8])> = BTreeMap::new();
    for unit in dirs {
        let prefix = format!("{unit}.d/");
        for (p, _) in tree.entries.range(prefix.clone()..) {
            if !p.starts_with(&prefix) {
                break;
            }
            let file = &p[prefix.len()..];
            if file.contains('/') || !file.ends_with(".conf") {
                continue;
            }
            if let Some(bytes) = tree_file(tree, p) {
                by_name.insert(file, (p.as_str(), bytes));
            }
        }
    }
    by_name
        .into_values()
        .map(|(p, b)| (p.to_string(), b.to_vec()))
        .collect()
}

/// The `EnvironmentFile=` resolver used for trees: relative paths are read from the tree
/// (the commit), absolute ones from the host's filesystem at load time. Absolute files stay
/// host configuration (like `/etc/default/ssh` of a Debian unit); their bytes are part of the
/// content hash so a change to them is noticed at the next load.
fn tree_env_file(tree: &FileTree) -> impl Fn(&str) -> Option<Vec<u8>> + '_ {
    move |p: &str| {
        if p.starts_with('/') {
            std::fs::read(p).ok()
        } else {
            tree_file(tree, p).map(<[u8]>::to_vec)
        }
    }
}

/// Loads every top-level `*.service` of the tree: see [`super::load_tree`].
pub fn load_tree(tree: &FileTree, ctx: &SpecifierContext) -> BTreeMap<String, LoadedUnit> {
    let env_file = tree_env_file(tree);
    let mut out = BTreeMap::new();
    for (path, entry) in &tree.entries {
        if path.contains('/') || !path.ends_with(".service") || is_template(path) {
            continue;
        }
        let name = path.as_str();
        let loaded = match entry {
            TreeEntry::File(bytes) => {
                let dropins = dropins_for(tree, &[name]);
                parse_unit(name, path, bytes, &dropins, ctx, &env_file)
            }
            TreeEntry::Symlink(target) => load_symlink(tree, ctx, name, target, &env_file),
        };
        out.insert(name.to_string(), loaded);
    }
    out
}

fn load_symlink(
    tree: &FileTree,
    ctx: &SpecifierContext,
    name: &str,
    target: &str,
    env_file: &dyn Fn(&str) -> Option<Vec<u8>>,
) -> LoadedUnit {
    let base = target.rsplit('/').next().unwrap_or(target);
    let template = template_of(name);
    let fail = |msg: String| LoadedUnit {
        name: name.to_string(),
        path: name.to_string(),
        unit: None,
        diagnostics: vec![Diagnostic::error(name, 1, 1, msg)],
        content_hash: {
            let mut h = Fnv128::new();
            h.part(b"gitproc-symlink-v1");
            h.part(name.as_bytes());
            h.part(target.as_bytes());
            h.hex()
        },
        inputs: vec![name.to_string()],
    };
    let Some(template) = template else {
        return fail(format!(
            "symlink to {target:?}: only template instances (name@instance.service -> name@.service) may be symlinks; list aliases in Alias= instead"
        ));
    };
    if base != template {
        return fail(format!(
            "symlink to {target:?}: an instance must point at its template {template}"
        ));
    }
    let Some(bytes) = tree_file(tree, &template) else {
        return fail(format!(
            "symlink to {target:?}: the template {template} is not a file at the top of the unit directory"
        ));
    };
    let dropins = dropins_for(tree, &[&template, name]);
    let mut loaded = parse_unit(name, &template, bytes, &dropins, ctx, env_file);
    loaded.inputs.insert(0, name.to_string());
    loaded
}

/// Parses every template (`name@.service`) of the tree as itself (`%i` empty), so `check`
/// reports problems of templates that no instance uses yet.
pub fn load_templates(tree: &FileTree, ctx: &SpecifierContext) -> BTreeMap<String, LoadedUnit> {
    let env_file = tree_env_file(tree);
    let mut out = BTreeMap::new();
    for (path, entry) in &tree.entries {
        if path.contains('/') || !path.ends_with(".service") || !is_template(path) {
            continue;
        }
        if let TreeEntry::File(bytes) = entry {
            let dropins = dropins_for(tree, &[path]);
            out.insert(
                path.clone(),
                parse_unit(path, path, bytes, &dropins, ctx, &env_file),
            );
        }
    }
    out
}

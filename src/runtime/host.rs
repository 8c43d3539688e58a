//! Questions the daemon asks the host it runs on: does a unit's `Condition*=` hold here,
//! what pid does a `PIDFile=` name, who is a peer uid, which session does a reported main
//! pid lead. Each reads host files (`/etc/machine-id`, paths, `/proc`, NSS), which is why
//! they live in the adapter layer and not in the loop.
//!
//! Which thread asks: [`read_pid_file`] runs on the spawner (`daemon::spawner`: a PID file
//! is a unit-named path, which may be a FIFO or on a hung mount), [`user_name`] on the
//! control server's connection thread (NSS may wait on a directory server),
//! [`track_main_session`] on the loop (it reads `/proc` only, which does not block).
//! [`check_conditions`] and [`check_asserts`] still run on the loop: they read
//! `/etc/machine-id`, `/proc/cmdline`, `/etc/passwd` or `/etc/group` and stat() the paths
//! named, which only a hung mount or an automount could delay (no NSS lookup).

use std::path::Path;

use super::kill::ProcessTracker;
use super::procstat::read_stat;
use crate::unit::model::{Condition, Unit};

/// The `Condition*=` lines of `unit` (those gitproc evaluates, [`Condition::EVALUATED`]). A
/// failed condition is not an error: the unit is simply not for this host, and the message
/// names the line that failed.
pub fn check_conditions(unit: &Unit, hostname: &str) -> Result<(), String> {
    check_family(unit, hostname, false)
}

/// The `Assert*=` lines of `unit`: unlike a condition, a failed assert fails the start; the
/// message names the line and starts with `Assert` (status tells the two apart by it).
pub fn check_asserts(unit: &Unit, hostname: &str) -> Result<(), String> {
    check_family(unit, hostname, true)
}

fn check_family(unit: &Unit, hostname: &str, assert: bool) -> Result<(), String> {
    let mut triggering: Vec<(bool, String)> = Vec::new();
    for c in unit.unit.conditions.iter().filter(|c| c.assert == assert) {
        let ok = holds(c, hostname) != c.negate;
        if c.trigger {
            triggering.push((ok, c.directive()));
        } else if !ok {
            return Err(failed(c, hostname));
        }
    }
    if !triggering.is_empty() && !triggering.iter().any(|(ok, _)| *ok) {
        let list: Vec<String> = triggering.into_iter().map(|(_, d)| d).collect();
        let family = if assert { "Assert" } else { "Condition" };
        return Err(format!(
            "{family}: none of the triggering lines held: {}",
            list.join(", ")
        ));
    }
    Ok(())
}

fn failed(c: &Condition, hostname: &str) -> String {
    match c.check.as_str() {
        "Host" => format!("{} (this host is {hostname})", c.directive()),
        "Architecture" => format!("{} (this host is {})", c.directive(), architecture()),
        _ => c.directive(),
    }
}

/// Whether the test of `c` holds, before its `!`. Each reads at most one small host file
/// or stat()s one path.
fn holds(c: &Condition, hostname: &str) -> bool {
    let v = c.value.as_str();
    let path = Path::new(v);
    match c.check.as_str() {
        "PathExists" => path.exists(),
        "PathIsDirectory" => path.is_dir(),
        "PathIsSymbolicLink" => path.is_symlink(),
        "PathIsReadWrite" => nix::sys::statvfs::statvfs(path)
            .is_ok_and(|s| !s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY)),
        "DirectoryNotEmpty" => std::fs::read_dir(path).is_ok_and(|mut d| d.next().is_some()),
        "FileNotEmpty" => std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() > 0),
        "FileIsExecutable" => {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(path)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        }
        "Host" => {
            globset::Glob::new(v)
                .map(|g| g.compile_matcher().is_match(hostname))
                .unwrap_or(false)
                || machine_id().trim() == v
        }
        "KernelCommandLine" => {
            let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
            // `word` matches `word` and `word=...`; `word=value` matches exactly.
            cmdline.split_whitespace().any(|w| {
                w == v || (!v.contains('=') && w.split_once('=').is_some_and(|(k, _)| k == v))
            })
        }
        "Environment" => match v.split_once('=') {
            Some((k, val)) => std::env::var_os(k).is_some_and(|x| x == val),
            None => std::env::var_os(v).is_some(),
        },
        "Architecture" => v == architecture() || v == "native",
        "User" => user_matches(v),
        "Group" => group_matches(v),
        _ => true, // not evaluated (rejected at load)
    }
}

/// systemd's name for the architecture gitproc was built for (systemd.unit(5)).
fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x86-64",
        "aarch64" => "arm64",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64-le",
        "riscv64" => "riscv64",
        "loongarch64" => "loongarch64",
        other => other,
    }
}

/// `ConditionUser=`: the daemon's own user, by uid, by name (from `/etc/passwd`, not NSS:
/// this runs on the loop) or `@system` (a system user, uid below 1000).
fn user_matches(v: &str) -> bool {
    let uid = nix::unistd::getuid().as_raw();
    if v == "@system" {
        return uid < 1000;
    }
    if let Ok(n) = v.parse::<u32>() {
        return n == uid;
    }
    db_id("/etc/passwd", v) == Some(uid)
}

/// `ConditionGroup=`: the daemon's group or one of its supplementary groups, by gid or by
/// name (from `/etc/group`).
fn group_matches(v: &str) -> bool {
    let Some(gid) = v.parse::<u32>().ok().or_else(|| db_id("/etc/group", v)) else {
        return false;
    };
    nix::unistd::getgid().as_raw() == gid
        || nix::unistd::getegid().as_raw() == gid
        || nix::unistd::getgroups().is_ok_and(|g| g.iter().any(|x| x.as_raw() == gid))
}

/// The id (third field) of `name` in a colon-separated database such as `/etc/passwd`.
fn db_id(file: &str, name: &str) -> Option<u32> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then_some(())?;
        f.nth(1)?.parse().ok()
    })
}

/// This machine's id (`/etc/machine-id`, untrimmed), or empty when there is none:
/// `ConditionHost=` matches it as well as the host name.
pub(crate) fn machine_id() -> String {
    std::fs::read_to_string("/etc/machine-id").unwrap_or_default()
}

/// The pid a `PIDFile=` names, if it is a live process.
pub fn read_pid_file(path: &str) -> Result<i32, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("PIDFile={path}: {e}"))?;
    let pid = text
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|&pid| pid > 1)
        .ok_or_else(|| {
            format!(
                "PIDFile={path}: does not hold a valid pid: {:?}",
                text.trim()
            )
        })?;
    // Only a pid that exists and is not a zombie (systemd refuses those too): a file left
    // from an earlier run names a dead or reused pid; the machine reads again until the
    // service writes a fresh one or TimeoutStartSec= passes.
    match read_stat(pid) {
        Ok(stat) if stat.state != b'Z' => Ok(pid),
        _ => Err(format!(
            "PIDFile={path}: pid {pid} does not exist or is a zombie"
        )),
    }
}

/// The user name of `uid` (an NSS lookup), or `uid N` when it has none; for the log lines
/// and overrides that say which operator did what. May block: not for the event loop.
pub fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// A main pid the service reported (`PIDFile=`, `MAINPID=`) may lead a session of its own: a
/// forking daemon calls setsid(). Where there is no cgroup, that session is invisible to
/// `KillMode=control-group`, and the stop would signal neither the daemon nor its workers.
/// Track it when the process provably descends from the service: it leads its session and
/// is an orphan reparented to us (the subreaper) or the child of a tracked process.
pub fn track_main_session(tracker: &mut ProcessTracker, pid: i32) {
    if tracker.sessions().contains(&pid) {
        return; // the usual case: a main process we spawned (it called setsid())
    }
    let Ok(stat) = read_stat(pid) else {
        return;
    };
    if stat.session != pid {
        return;
    }
    let ours = stat.ppid == std::process::id() as i32
        || read_stat(stat.ppid).is_ok_and(|parent| tracker.sessions().contains(&parent.session));
    if ours {
        tracker.add_session(pid);
    }
}

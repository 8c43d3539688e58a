//! Questions the daemon asks the host it runs on: does a unit's `Condition*=` hold here,
//! what pid does a `PIDFile=` name, who is a peer uid, which session does a reported main
//! pid lead. Each reads host files (`/etc/machine-id`, paths, `/proc`, NSS), which is why
//! they live in the adapter layer and not in the loop.
//!
//! Which thread asks: [`read_pid_file`] runs on the spawner (`daemon::spawner`: a PID file
//! is a unit-named path, which may be a FIFO or on a hung mount), [`user_name`] on the
//! control server's connection thread (NSS may wait on a directory server),
//! [`track_main_session`] on the loop (it reads `/proc` only, which does not block).
//! [`check_conditions`] still runs on the loop: it reads `/etc/machine-id` and stat()s the
//! `ConditionPathExists=` paths, which only a hung mount or an automount could delay.

use std::path::Path;

use super::kill::ProcessTracker;
use super::procstat::read_stat;
use crate::unit::model::Unit;

/// `ConditionHost=` and `ConditionPathExists=` (the conditions gitproc evaluates). A failed
/// condition is not an error: the unit is simply not for this host.
pub fn check_conditions(unit: &Unit, hostname: &str) -> Result<(), String> {
    let cond = &unit.unit;
    if !cond.condition_host.is_empty() {
        let machine_id = machine_id();
        for pattern in &cond.condition_host {
            let (negate, pat) = match pattern.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, pattern.as_str()),
            };
            let matches = globset::Glob::new(pat)
                .map(|g| g.compile_matcher().is_match(hostname))
                .unwrap_or(false)
                || machine_id.trim() == pat;
            if matches == negate {
                return Err(format!("ConditionHost={pattern} (this host is {hostname})"));
            }
        }
    }
    let mut triggering: Vec<(bool, &str)> = Vec::new();
    for raw in &cond.condition_path_exists {
        let (trigger, rest) = match raw.strip_prefix('|') {
            Some(rest) => (true, rest),
            None => (false, raw.as_str()),
        };
        let (negate, path) = match rest.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, rest),
        };
        let ok = Path::new(path).exists() != negate;
        if trigger {
            triggering.push((ok, raw));
        } else if !ok {
            return Err(format!("ConditionPathExists={raw}"));
        }
    }
    if !triggering.is_empty() && !triggering.iter().any(|(ok, _)| *ok) {
        return Err(format!(
            "none of the triggering conditions held: {}",
            triggering
                .iter()
                .map(|(_, raw)| format!("ConditionPathExists={raw}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(())
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

//! Finding every process a previous daemon on this state directory started, so that none
//! runs twice after a `kill -9` of the daemon or with a lost `state.json`.
//!
//! Every process the daemon spawns carries a marker in its environment: `INVOCATION_ID`
//! (one per start, as systemd sets it), [`UNIT_VAR`] naming the unit and [`STATE_VAR`]
//! naming the state directory (the same stable hash as its cgroup, see
//! [`crate::runtime::cgroup::cgroup_name`]), inherited by everything it forks. Where the
//! units have cgroups their membership counts too (a process that cleared its environment
//! or overwrote it with a process title is still in its cgroup).
//!
//! At startup, before the event loop runs (it is a `/proc` scan and may wait for processes
//! to exit), [`stop_strays`] keeps what the state file says to adopt (a recorded main
//! process, pid *and* start time, and the processes of the same invocation) and stops
//! everything else of ours: a process started after the last save, a control process, a
//! unit removed from git, every process when the state file is missing or unreadable. It
//! cannot tell which of those would be the main process, so it stops them before the loop
//! starts the units fresh: never two copies, never one unsupervised.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::runtime::cgroup::CgroupRoot;
use crate::state::format::PersistedState;
use crate::state::identity::ProcessIdentity;

/// Environment variable naming the unit a process belongs to.
pub const UNIT_VAR: &str = "GITPROC_UNIT";
/// Environment variable naming the daemon instance (state directory) that started it.
pub const STATE_VAR: &str = "GITPROC_STATE";

/// How long strays get to exit on SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(5);
/// A process forked by the previous daemon just before it died may not have executed its
/// service yet (its environment is still the daemon's): look again after this.
const SECOND_LOOK: Duration = Duration::from_millis(150);

/// One process found carrying our marker or in one of our cgroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub id: ProcessIdentity,
    /// Its `INVOCATION_ID`, when its environment could be read.
    pub invocation: Option<String>,
}

/// The marker variables of one unit's processes, for the spawn environment.
pub fn marker_env(unit: &str, instance: &str) -> [(String, String); 2] {
    [
        (UNIT_VAR.to_string(), unit.to_string()),
        (STATE_VAR.to_string(), instance.to_string()),
    ]
}

/// Every live process of ours, by unit. `instance` is this state directory's marker.
pub fn discover(instance: &str, cgroups: Option<&CgroupRoot>) -> BTreeMap<String, Vec<Found>> {
    let me = std::process::id() as i32;
    let mut found: BTreeMap<String, Vec<Found>> = BTreeMap::new();
    for pid in crate::sys::procstat::pids() {
        if pid == me {
            continue;
        }
        let Some(env) = read_environ(pid) else {
            continue;
        };
        if marker_value(&env, STATE_VAR) != Some(instance) {
            continue;
        }
        let (Some(unit), Some(id)) = (marker_value(&env, UNIT_VAR), ProcessIdentity::read(pid))
        else {
            continue;
        };
        let invocation = marker_value(&env, "INVOCATION_ID").map(str::to_string);
        found
            .entry(unit.to_string())
            .or_default()
            .push(Found { id, invocation });
    }
    if let Some(root) = cgroups {
        for dir in std::fs::read_dir(root.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let Some(unit) = dir.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let Ok(cgroup) = root.unit(&unit) else {
                continue;
            };
            for pid in cgroup.procs() {
                let list = found.entry(unit.clone()).or_default();
                if pid == me || list.iter().any(|f| f.id.pid == pid) {
                    continue;
                }
                let Some(id) = ProcessIdentity::read(pid) else {
                    continue;
                };
                let invocation = read_environ(pid)
                    .and_then(|env| marker_value(&env, "INVOCATION_ID").map(str::to_string));
                list.push(Found { id, invocation });
            }
            if found.get(&unit).is_some_and(Vec::is_empty) {
                found.remove(&unit);
            }
        }
    }
    found
}

/// Which of `found` are not to be adopted: for a unit whose recorded main process still
/// runs, the processes of other invocations; for every other unit, all of them.
pub fn strays(
    found: &BTreeMap<String, Vec<Found>>,
    restored: Option<&PersistedState>,
) -> Vec<(String, ProcessIdentity)> {
    let mut out = Vec::new();
    for (unit, procs) in found {
        let main = restored
            .and_then(|s| s.units.get(unit))
            .and_then(|u| u.main_identity())
            .and_then(|id| procs.iter().find(|f| f.id == id));
        for f in procs {
            let keep = match main {
                // The adopted main and its own invocation (its children, a control process
                // it runs). A process whose environment cannot be read is its unit's (it is
                // in the cgroup) and left to the adopted unit's stop.
                Some(main) => {
                    f.id == main.id
                        || main.invocation.is_none()
                        || f.invocation.is_none()
                        || f.invocation == main.invocation
                }
                None => false,
            };
            if !keep {
                out.push((unit.clone(), f.id));
            }
        }
    }
    out
}

/// Finds and stops every process of a previous daemon that will not be adopted (see the
/// module docs). Blocks for up to [`TERM_GRACE`] plus a moment: run it before the loop.
///
/// The second look ([`SECOND_LOOK`] later) is for a spawn the previous daemon had in
/// flight when it died; it is skipped when nothing says a daemon ran here before (no
/// control socket file left, no state file, nothing found), which keeps a first start
/// fast.
pub fn stop_strays(
    instance: &str,
    cgroups: Option<&CgroupRoot>,
    restored: Option<&PersistedState>,
    previous_daemon: bool,
) {
    let mut stopped = 0usize;
    let mut found_any = false;
    for round in 0..2 {
        if round > 0 {
            if !(previous_daemon || restored.is_some() || found_any) {
                break;
            }
            std::thread::sleep(SECOND_LOOK);
        }
        let found = discover(instance, cgroups);
        found_any |= !found.is_empty();
        let strays = strays(&found, restored);
        for (unit, id) in &strays {
            tracing::warn!(
                "{unit}: pid {} was started by a previous daemon and is not recorded as its main process; stopping it before the unit starts fresh",
                id.pid
            );
        }
        stopped += strays.len();
        terminate(&strays);
    }
    if stopped > 0 {
        tracing::info!("stopped {stopped} process(es) a previous daemon left running");
    }
}

/// SIGTERM, up to [`TERM_GRACE`] to exit, then SIGKILL; only the very processes found
/// (pid and start time).
fn terminate(strays: &[(String, ProcessIdentity)]) {
    if strays.is_empty() {
        return;
    }
    let send = |sig: i32| {
        for (unit, id) in strays {
            if let Err(err) = crate::runtime::kill::signal_verified(id.pid, id.start_time, sig) {
                tracing::debug!("{unit}: signal {sig} to pid {}: {err}", id.pid);
            }
        }
    };
    let all_gone = || strays.iter().all(|(_, id)| !id.is_running_same());
    send(libc::SIGTERM);
    let deadline = Instant::now() + TERM_GRACE;
    while !all_gone() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if !all_gone() {
        send(libc::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(2);
        while !all_gone() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// `/proc/PID/environ`, `None` when unreadable (gone, another user's, a kernel thread).
fn read_environ(pid: i32) -> Option<Vec<u8>> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .ok()
        .filter(|e| !e.is_empty())
}

/// The value of `name` in a NUL-separated environment block.
fn marker_value<'a>(env: &'a [u8], name: &str) -> Option<&'a str> {
    env.split(|&b| b == 0).find_map(|entry| {
        let rest = entry.strip_prefix(name.as_bytes())?.strip_prefix(b"=")?;
        std::str::from_utf8(rest).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::format::UnitState;

    fn found(pid: i32, start: u64, inv: Option<&str>) -> Found {
        Found {
            id: ProcessIdentity {
                pid,
                start_time: start,
            },
            invocation: inv.map(str::to_string),
        }
    }

    #[test]
    fn reads_a_marker_from_an_environment_block() {
        let env = b"PATH=/bin\0GITPROC_UNIT=web.service\0GITPROC_STATE=gitproc-1\0";
        assert_eq!(marker_value(env, UNIT_VAR), Some("web.service"));
        assert_eq!(marker_value(env, STATE_VAR), Some("gitproc-1"));
        assert_eq!(marker_value(b"GITPROC_UNITX=a\0", UNIT_VAR), None);
    }

    #[test]
    fn without_a_state_file_every_process_is_a_stray() {
        let found: BTreeMap<_, _> =
            [("a.service".to_string(), vec![found(10, 1, Some("x"))])].into();
        assert_eq!(strays(&found, None).len(), 1);
    }

    #[test]
    fn the_recorded_main_and_its_invocation_are_kept_other_invocations_stopped() {
        let found: BTreeMap<_, _> = [(
            "a.service".to_string(),
            vec![
                found(10, 1, Some("run1")),
                found(11, 2, Some("run1")),
                found(12, 3, Some("run2")),
            ],
        )]
        .into();
        let mut state = PersistedState::default();
        state.units.insert(
            "a.service".into(),
            UnitState {
                main_pid: Some(10),
                main_pid_start_time: Some(1),
                ..UnitState::default()
            },
        );
        let s = strays(&found, Some(&state));
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].1.pid, 12);
        // A reused pid (other start time) is not the recorded main: all are strays.
        if let Some(u) = state.units.get_mut("a.service") {
            u.main_pid_start_time = Some(9);
        }
        assert_eq!(strays(&found, Some(&state)).len(), 3);
    }
}

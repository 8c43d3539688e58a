//! What the loop keeps per unit around the pure [`Service`]: where it came from, its
//! processes, the operator's override and the last good version for rollback.

use std::sync::Arc;
use std::time::Instant;

use crate::runtime::kill::ProcessTracker;
use crate::service::Service;
use crate::state::format::Override;
use crate::unit::model::Unit;

/// A version of a unit that is known to work (it started and stayed up).
#[derive(Debug, Clone)]
pub struct GoodVersion {
    pub unit: Arc<Unit>,
    pub hash: String,
    pub commit: Option<String>,
}

/// A new version started by a sync and not yet proven: if it fails, roll back.
#[derive(Debug, Clone)]
pub struct Trial {
    pub commit: Option<String>,
    /// When it became active; proven after [`super::supervisor::TRIAL_PERIOD`] of that.
    pub active_since: Option<Instant>,
}

/// One unit the daemon knows about.
pub struct Managed {
    /// `None` when the unit has never loaded without errors (it is shown with its error).
    pub service: Option<Service>,
    /// Path of the unit file in the tree.
    pub path: String,
    /// Content hash of the version the service runs (or would run).
    pub hash: Option<String>,
    /// Commit the running version came from.
    pub commit: Option<String>,
    /// Why the newest version in git is not applied (parse error, dependency error).
    pub load_error: Option<String>,
    /// Why the last start was skipped by a `Condition*=` (sub-state `condition`).
    pub condition_failed: Option<String>,
    pub tracker: ProcessTracker,
    pub operator_override: Option<Override>,
    pub last_good: Option<GoodVersion>,
    pub trial: Option<Trial>,
    /// The commit whose version of this unit failed and was rolled back.
    pub failed_commit: Option<String>,
    /// Content hash of that failed version: a later commit still carrying it does not try
    /// it again (an unrelated commit must not restart a rolled-back unit).
    pub failed_hash: Option<String>,
    /// Gone from git: stopped, then forgotten once inactive.
    pub removed: bool,
    pub invocation_id: String,
    /// Start time of the main pid, for verified signalling and the state file.
    pub main_start_time: Option<(i32, u64)>,
    /// When the main process was last seen exiting, for the reap-to-restart histogram.
    pub exited_at: Option<Instant>,
    /// Wall-clock time the current active state was entered (for `since`).
    pub since_unix: Option<u64>,
    /// The resource limits written for the current run (`status`).
    pub limits: Vec<crate::runtime::resources::limits::Write>,
    /// The memory cgroup's OOM kill count when the main process was spawned.
    pub oom_kills: Option<u64>,
    /// The cgroup v1 directories the main process joined.
    pub v1_cgroups: Vec<std::path::PathBuf>,
    /// Set when another unit's `OnFailure=`/`OnSuccess=` queued this unit's start; taken
    /// when that run ends (see `supervisor::hooks`).
    pub hook_start: Option<HookStart>,
}

/// A start asked for by a hook trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookStart {
    /// `MONITOR_*` for this start's `ExecCondition=`, `ExecStartPre=` and `ExecStart=`
    /// processes (those systemd gives them to).
    pub env: Vec<(String, String)>,
    /// The units whose hooks led to this start, oldest first: a hook that would start one
    /// of them again (a loop) is not started.
    pub chain: Vec<String>,
}

impl Managed {
    pub fn new(service: Option<Service>, path: String, tracker: ProcessTracker) -> Managed {
        Managed {
            service,
            path,
            hash: None,
            commit: None,
            load_error: None,
            condition_failed: None,
            tracker,
            operator_override: None,
            last_good: None,
            trial: None,
            failed_commit: None,
            failed_hash: None,
            removed: false,
            invocation_id: new_invocation_id(),
            main_start_time: None,
            exited_at: None,
            since_unix: None,
            limits: Vec::new(),
            oom_kills: None,
            v1_cgroups: Vec::new(),
            hook_start: None,
        }
    }

    /// Whether an operator `stop` holds this unit down.
    pub fn held_stopped(&self) -> bool {
        matches!(
            self.operator_override,
            Some(Override {
                kind: crate::state::format::OverrideKind::Stopped,
                ..
            })
        )
    }
}

/// 32 lowercase hex digits, like systemd's `INVOCATION_ID`: 128 random bits from
/// getrandom(2) (non-blocking: it never waits for entropy, so the loop may call it), or,
/// if that fails, the clock, our pid and a counter (unique per daemon run, which is all
/// discovery and `MONITOR_INVOCATION_ID` need).
pub fn new_invocation_id() -> String {
    use std::fmt::Write;
    use std::sync::atomic::{AtomicU64, Ordering};
    let mut bytes = [0u8; 16];
    // SAFETY: the buffer is valid for writes of its length.
    let got =
        unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), libc::GRND_NONBLOCK) };
    if usize::try_from(got).is_ok_and(|n| n == bytes.len()) {
        let mut out = String::with_capacity(32);
        for b in bytes {
            let _ = write!(out, "{b:02x}");
        }
        return out;
    }
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!("{:016x}{:08x}{:08x}", now, std::process::id(), n as u32)
}

#[cfg(test)]
mod tests {
    #[test]
    fn invocation_ids_are_32_hex_digits_and_differ() {
        let a = super::new_invocation_id();
        let b = super::new_invocation_id();
        assert_eq!(a.len(), 32, "{a}");
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
    }
}

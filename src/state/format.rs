//! The on-disk schema of `state.json` and loading it with recovery.
//!
//! Compatibility rules (why so many `#[serde(default)]`): a field added in a later gitproc must
//! not make an older file unreadable, and unknown fields are ignored, so adding a field never
//! needs a version bump. [`FORMAT_VERSION`] is bumped only when an existing field changes
//! meaning; a daemon then refuses a file newer than it understands rather than silently
//! dropping what it cannot represent.
//!
//! The file is written compactly (no indentation, absent values omitted): its size grows with
//! the number of units and it is rewritten on every batch of changes.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::identity::ProcessIdentity;

/// The format version this gitproc writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;

/// Everything persisted in `state.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedState {
    /// Schema version; see [`FORMAT_VERSION`]. Required: a JSON file without it is not ours.
    pub format_version: u32,
    /// Daemon-wide facts.
    #[serde(default)]
    pub daemon: DaemonState,
    /// Per-unit facts, by unit name (e.g. `web.service`). Sorted for stable, diffable output.
    #[serde(default)]
    pub units: BTreeMap<String, UnitState>,
    /// Per-timer facts, by timer name (e.g. `backup.timer`); absent in files written before
    /// timers existed, and omitted when there are none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub timers: BTreeMap<String, TimerState>,
    /// Per-socket facts, by socket unit name (e.g. `web.socket`); absent in files written
    /// before socket units existed, and omitted when there are none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sockets: BTreeMap<String, SocketState>,
}

impl Default for PersistedState {
    fn default() -> Self {
        PersistedState {
            format_version: FORMAT_VERSION,
            daemon: DaemonState::default(),
            units: BTreeMap::new(),
            timers: BTreeMap::new(),
            sockets: BTreeMap::new(),
        }
    }
}

/// What a timer keeps across daemon restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TimerState {
    /// Wall-clock time of the last trigger, microseconds since the Unix epoch: what
    /// `Persistent=yes` counts a missed run from, and `LAST` in `list-timers`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_trigger_usec: Option<i64>,
    /// An operator's `gitproc stop NAME.timer`, held until `gitproc start`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator_override: Option<Override>,
}

/// What a socket unit keeps across daemon restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SocketState {
    /// An operator's `gitproc stop NAME.socket`, held until `gitproc start`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator_override: Option<Override>,
}

/// Daemon-wide facts: which commit is applied and when the source is next polled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DaemonState {
    /// Commit whose units are currently applied (running set matches it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_commit: Option<String>,
    /// Last commit fetched from the remote (may be ahead of `applied_commit`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetched_commit: Option<String>,
    /// Last commit that passed verification (parse/signature checks), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified_commit: Option<String>,
    /// Poll interval in seconds in force when the state was saved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll_interval_s: Option<u64>,
    /// Next scheduled check of the source, unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_check: Option<u64>,
    /// Last completed check of the source, unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_check: Option<u64>,
    /// `gitproc freeze`: while set, commits are fetched but none is applied (added after
    /// format 1, like every field below: optional, so older files load unchanged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub freeze: Option<Freeze>,
    /// The fetched commit waiting for its rollout wave (or a thaw), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_commit: Option<String>,
    /// When this host first fetched `pending_commit`, ms since the epoch: the rollout
    /// delay's clock-skew bound counts from it, so a restart must not reset it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_first_seen_ms: Option<i64>,
    /// Digests of the unit sets applied last (newest last, see `rollout::HISTORY`): a
    /// commit equal to one of them is a revert and applies at once.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub applied_digests: Vec<String>,
}

/// An operator's freeze of this host, with its provenance for `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freeze {
    /// `--reason`, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The user who froze it (peer credentials of the control socket).
    #[serde(default)]
    pub by: String,
    /// When, unix seconds.
    #[serde(default)]
    pub at: u64,
}

/// What the operator asked for with `gitproc stop` / `gitproc start`; it persists across daemon
/// restarts and new commits until the opposite command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OverrideKind {
    /// Kept stopped even though git says it should run.
    Stopped,
    /// Kept running (e.g. started by hand although not enabled by git).
    Started,
}

/// An operator override with its provenance, shown by `status` so nobody wonders why a unit is
/// down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    /// Stopped or started.
    pub kind: OverrideKind,
    /// The user who issued the command (peer credentials of the control socket).
    #[serde(default)]
    pub by: String,
    /// When, unix seconds.
    #[serde(default)]
    pub at: u64,
}

fn default_active_state() -> String {
    "inactive".to_owned()
}
fn default_sub_state() -> String {
    "dead".to_owned()
}
fn default_result() -> String {
    "success".to_owned()
}
fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Per-unit facts. States are plain strings in systemd's spelling (`active`, `running`,
/// `exit-code`, ...) so this schema does not depend on the state machine's Rust types.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitState {
    /// Operator override (`override` in the file; `override` is a Rust keyword).
    #[serde(rename = "override", default, skip_serializing_if = "Option::is_none")]
    pub operator_override: Option<Override>,
    /// systemd `ActiveState`.
    #[serde(default = "default_active_state")]
    pub active_state: String,
    /// systemd `SubState`.
    #[serde(default = "default_sub_state")]
    pub sub_state: String,
    /// systemd `Result`.
    #[serde(default = "default_result")]
    pub result: String,
    /// Main pid, if a main process is (believed to be) running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_pid: Option<i32>,
    /// Start time of `main_pid`: field 22 of `/proc/PID/stat` (clock ticks since boot). Together
    /// with the pid it identifies the process; see [`ProcessIdentity`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_pid_start_time: Option<u64>,
    /// Automatic restarts so far (systemd `NRestarts`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub n_restarts: u32,
    /// Exit status (or signal number) of the last main process exit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_main_status: Option<i32>,
    /// Hash of the unit's effective content that is applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
    /// Commit the applied content came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Hash of the last content that started successfully (rollback target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_good_hash: Option<String>,
    /// Commit of `last_good_hash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_good_commit: Option<String>,
    /// Hash of a version that failed on trial and was rolled back: a restarted daemon must
    /// not try it again while git still carries it (added after format 1; optional, so no
    /// version bump: an older gitproc ignores it, an older file just has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_hash: Option<String>,
    /// Commit of `failed_hash`, for `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_commit: Option<String>,
}

impl Default for UnitState {
    fn default() -> Self {
        UnitState {
            operator_override: None,
            active_state: default_active_state(),
            sub_state: default_sub_state(),
            result: default_result(),
            main_pid: None,
            main_pid_start_time: None,
            n_restarts: 0,
            exec_main_status: None,
            content_hash: None,
            commit: None,
            last_good_hash: None,
            last_good_commit: None,
            failed_hash: None,
            failed_commit: None,
        }
    }
}

impl UnitState {
    /// The recorded main process as an identity to re-adopt, when both pid and start time were
    /// recorded. A pid without a start time is never trusted (it could be anyone by now).
    pub fn main_identity(&self) -> Option<ProcessIdentity> {
        Some(ProcessIdentity {
            pid: self.main_pid?,
            start_time: self.main_pid_start_time?,
        })
    }
}

impl PersistedState {
    /// Serializes to the compact on-disk form.
    pub fn to_bytes(&self) -> Result<Vec<u8>, StateError> {
        let mut out = serde_json::to_vec(self).map_err(|e| StateError::Encode {
            message: e.to_string(),
        })?;
        out.push(b'\n');
        Ok(out)
    }
}

/// Errors of the state module. Each names the file involved and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file was written by a newer gitproc. The daemon must refuse to start (and never
    /// overwrite the file), since saving would drop what this version cannot represent.
    #[error(
        "state file {} has format version {found}, newer than the {supported} this gitproc \
         understands; run a newer gitproc, or move the file aside to start from git",
        path.display()
    )]
    TooNew {
        /// Version found in the file.
        found: u32,
        /// [`FORMAT_VERSION`].
        supported: u32,
        /// The state file.
        path: PathBuf,
    },
    /// A file system operation failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `write temporary state file`.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A corrupt state file could not be moved aside, so loading cannot safely continue (the
    /// next save would destroy the evidence).
    #[error(
        "state file {} is corrupt ({reason}) and cannot be moved aside to {}: {source}; \
         fix the permissions of the state directory or remove the file",
        path.display(), to.display()
    )]
    MoveAside {
        /// The corrupt file.
        path: PathBuf,
        /// Where it should have gone.
        to: PathBuf,
        /// Why it is considered corrupt.
        reason: String,
        /// The rename error.
        #[source]
        source: io::Error,
    },
    /// Serialization failed (should not happen for this schema).
    #[error("cannot encode state: {message}")]
    Encode {
        /// serde_json's message.
        message: String,
    },
    /// The writer thread is gone (it panicked or was shut down), so the state was not saved.
    #[error("the state writer thread has stopped; state changes are no longer saved")]
    WriterGone,
}

impl Clone for StateError {
    /// `io::Error` is not `Clone`; the copy keeps its errno (or kind and message), which is all
    /// callers (a flush result fanned out to several waiters) need.
    fn clone(&self) -> Self {
        let io_copy = |e: &io::Error| match e.raw_os_error() {
            Some(errno) => io::Error::from_raw_os_error(errno),
            None => io::Error::new(e.kind(), e.to_string()),
        };
        match self {
            StateError::TooNew {
                found,
                supported,
                path,
            } => StateError::TooNew {
                found: *found,
                supported: *supported,
                path: path.clone(),
            },
            StateError::Io { op, path, source } => StateError::Io {
                op,
                path: path.clone(),
                source: io_copy(source),
            },
            StateError::MoveAside {
                path,
                to,
                reason,
                source,
            } => StateError::MoveAside {
                path: path.clone(),
                to: to.clone(),
                reason: reason.clone(),
                source: io_copy(source),
            },
            StateError::Encode { message } => StateError::Encode {
                message: message.clone(),
            },
            StateError::WriterGone => StateError::WriterGone,
        }
    }
}

/// Result of [`load`] when the daemon may start.
// One value per daemon start, moved straight into the loop: boxing the big variant would
// buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadOutcome {
    /// No state file: first start (or state dir wiped). Start from git.
    Fresh,
    /// The state file was read.
    Loaded(PersistedState),
    /// The file could not be read or parsed; it was renamed to `moved_to`. The caller logs one
    /// error with `error` and starts from git.
    Corrupt {
        /// `state.json.corrupt-<unix seconds>` (with `.N` appended if that name was taken).
        moved_to: PathBuf,
        /// Why the file was rejected (read or parse error with position).
        error: String,
    },
}

/// Only the version, read before the full parse: a newer file may not parse as this schema at
/// all, and must be reported as too new rather than as corrupt (which would move it aside).
#[derive(Deserialize)]
struct VersionProbe {
    format_version: u32,
}

/// Loads the state file at `path` (normally `<state-dir>/state.json`).
///
/// Never panics on any content. Returns `Err` only for [`StateError::TooNew`] (the daemon must
/// refuse to start) or when a corrupt file cannot be moved aside ([`StateError::MoveAside`]).
pub fn load(path: &Path) -> Result<LoadOutcome, StateError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(LoadOutcome::Fresh),
        Err(e) => return move_aside(path, format!("cannot read: {e}")),
    };
    match parse(path, &bytes) {
        Ok(state) => Ok(LoadOutcome::Loaded(state)),
        Err(ParseError::TooNew(e)) => Err(e),
        Err(ParseError::Corrupt(reason)) => move_aside(path, reason),
    }
}

enum ParseError {
    TooNew(StateError),
    Corrupt(String),
}

fn parse(path: &Path, bytes: &[u8]) -> Result<PersistedState, ParseError> {
    let probe: VersionProbe =
        serde_json::from_slice(bytes).map_err(|e| ParseError::Corrupt(e.to_string()))?;
    if probe.format_version > FORMAT_VERSION {
        return Err(ParseError::TooNew(StateError::TooNew {
            found: probe.format_version,
            supported: FORMAT_VERSION,
            path: path.to_owned(),
        }));
    }
    serde_json::from_slice(bytes).map_err(|e| ParseError::Corrupt(e.to_string()))
}

fn move_aside(path: &Path, reason: String) -> Result<LoadOutcome, StateError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let base = corrupt_name(path, now);
    let mut to = base.clone();
    // Never clobber an earlier corrupt copy (two failures within one second).
    let mut n = 1;
    while std::fs::symlink_metadata(&to).is_ok() {
        let mut name = base.clone().into_os_string();
        name.push(format!(".{n}"));
        to = PathBuf::from(name);
        n += 1;
    }
    match std::fs::rename(path, &to) {
        Ok(()) => Ok(LoadOutcome::Corrupt {
            moved_to: to,
            error: format!("state file {} is unusable: {reason}", path.display()),
        }),
        Err(source) => Err(StateError::MoveAside {
            path: path.to_owned(),
            to,
            reason,
            source,
        }),
    }
}

fn corrupt_name(path: &Path, unix: u64) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".corrupt-{unix}"));
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PersistedState {
        let mut s = PersistedState::default();
        s.daemon.applied_commit = Some("a".repeat(40));
        s.daemon.poll_interval_s = Some(60);
        s.units.insert(
            "web.service".into(),
            UnitState {
                operator_override: Some(Override {
                    kind: OverrideKind::Stopped,
                    by: "alice".into(),
                    at: 1_700_000_000,
                }),
                main_pid: Some(42),
                main_pid_start_time: Some(12345),
                n_restarts: 3,
                ..UnitState::default()
            },
        );
        s.timers.insert(
            "backup.timer".into(),
            TimerState {
                last_trigger_usec: Some(1_700_000_000_123_456),
                operator_override: None,
            },
        );
        s
    }

    #[test]
    fn round_trips_and_omits_absent_values() {
        let s = sample();
        let bytes = s.to_bytes().unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.contains(r#""override":{"kind":"stopped","by":"alice""#),
            "{text}"
        );
        assert!(!text.contains("exec_main_status"), "{text}");
        assert!(!text.contains("fetched_commit"), "{text}");
        let back: PersistedState = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn missing_fields_take_defaults_and_unknown_fields_are_ignored() {
        let text =
            r#"{"format_version":1,"units":{"a.service":{"main_pid":7,"future":true}},"later":1}"#;
        let s = parse(Path::new("x"), text.as_bytes()).ok().unwrap();
        let u = &s.units["a.service"];
        assert_eq!(u.main_pid, Some(7));
        assert_eq!(u.active_state, "inactive");
        assert_eq!(u.sub_state, "dead");
        assert_eq!(u.result, "success");
        assert_eq!(u.main_identity(), None, "no start time recorded");
        assert_eq!(s.daemon, DaemonState::default());
        assert!(s.timers.is_empty(), "a file from before timers has none");
        // And a state without timers writes no `timers` key (older readers see nothing new).
        assert!(
            !String::from_utf8(s.to_bytes().unwrap())
                .unwrap()
                .contains("timers")
        );
    }

    #[test]
    fn freeze_and_pending_rollout_round_trip_and_old_files_have_none() {
        let mut s = sample();
        s.daemon.freeze = Some(Freeze {
            reason: Some("incident 42".into()),
            by: "alice".into(),
            at: 1_700_000_100,
        });
        s.daemon.pending_commit = Some("b".repeat(40));
        s.daemon.pending_first_seen_ms = Some(1_700_000_100_250);
        s.daemon.applied_digests = vec!["d1".into(), "d2".into()];
        let bytes = s.to_bytes().unwrap();
        let back: PersistedState = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, s);
        // A file written before freeze and rollouts existed loads with neither.
        let old =
            br#"{"format_version":1,"daemon":{"applied_commit":"aaaa","poll_interval_s":60}}"#;
        let d = parse(Path::new("x"), old).ok().unwrap().daemon;
        assert_eq!(d.applied_commit.as_deref(), Some("aaaa"));
        assert_eq!((d.freeze, d.pending_commit), (None, None));
        assert!(d.applied_digests.is_empty());
        let text = String::from_utf8(sample().to_bytes().unwrap()).unwrap();
        assert!(
            !text.contains("freeze") && !text.contains("pending"),
            "{text}"
        );
    }

    #[test]
    fn missing_version_is_corrupt() {
        assert!(matches!(
            parse(Path::new("x"), br#"{"units":{}}"#),
            Err(ParseError::Corrupt(_))
        ));
    }

    #[test]
    fn newer_version_is_too_new_even_if_schema_differs() {
        let r = parse(
            Path::new("/s/state.json"),
            br#"{"format_version":2,"units":[1,2]}"#,
        );
        match r {
            Err(ParseError::TooNew(e)) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("/s/state.json") && msg.contains("version 2"),
                    "{msg}"
                );
            }
            _ => panic!("expected TooNew"),
        }
    }

    #[test]
    fn corrupt_name_appends_timestamp() {
        assert_eq!(
            corrupt_name(Path::new("/d/state.json"), 17),
            PathBuf::from("/d/state.json.corrupt-17")
        );
    }
}

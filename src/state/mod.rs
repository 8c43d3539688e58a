//! Durable state: what the daemon knows that git does not.
//!
//! Git is the source of truth for *what should run*; this module is the daemon's memory of *what
//! is running and what the operator said*: main pids with their start times (so a restarted
//! daemon re-adopts its services instead of starting second copies, and never signals a process
//! that merely reused a pid), restart counts, last results, operator overrides and the applied
//! commit.
//!
//! - [`format`]: the on-disk schema (`state.json`) and [`load`] with corrupt-file recovery.
//! - [`atomic`]: crash-safe replacement of the file (temp file, fsync, rename, fsync dir).
//! - [`writer`]: the batched writer thread ([`StateWriter`]) that keeps the event loop off the disk.
//! - [`lock`]: one daemon per state directory ([`DaemonLock`]).
//! - [`identity`]: pid + start time, the identity of a process across daemon restarts.
//!
//! Paths inside the state directory are named by the constants below so the CLI, the daemon and
//! tests agree on them.

pub mod atomic;
pub mod format;
pub mod identity;
pub mod lock;
pub mod writer;

use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

pub use atomic::{DirectWrite, SaveStats, WriteStep, save, save_with};
pub use format::{
    DaemonState, FORMAT_VERSION, LoadOutcome, Override, OverrideKind, PersistedState, StateError,
    UnitState, load,
};
pub use identity::ProcessIdentity;
pub use lock::{DaemonLock, LockError};
pub use writer::{StateWriter, WriterConfig, WriterStats};

/// File name of the persisted state inside the state directory.
pub const STATE_FILE: &str = "state.json";
/// File name of the daemon lock inside the state directory.
pub const LOCK_FILE: &str = "daemon.lock";
/// Directory holding per-unit logs inside the state directory.
pub const LOGS_DIR: &str = "logs";

/// `<dir>/state.json`.
pub fn state_file(dir: &Path) -> PathBuf {
    dir.join(STATE_FILE)
}

/// Creates the state directory (mode 0700: it holds pids, the control socket and the fetched
/// repository, none of which other users need) and its `logs/` subdirectory (mode 0750, so an
/// operator group can be given read access to logs later without opening the rest).
///
/// Modes apply only to directories this call creates: an existing directory keeps the mode its
/// administrator chose.
pub fn ensure_state_dir(dir: &Path) -> io::Result<()> {
    let mk = |path: &Path, mode: u32| -> io::Result<()> {
        match std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(path)
        {
            Ok(()) => Ok(()),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("cannot create state directory {}: {e}", path.display()),
            )),
        }
    };
    mk(dir, 0o700)?;
    mk(&dir.join(LOGS_DIR), 0o750)
}

/// The state directory used when neither `--state-dir` nor `GITPROC_STATE_DIR` is given:
/// `/var/lib/gitproc` as root, else `$XDG_STATE_HOME/gitproc`, else `~/.local/state/gitproc`
/// (home from `$HOME`, then from the password database).
pub fn default_state_dir() -> PathBuf {
    let uid = nix::unistd::geteuid();
    if uid.is_root() {
        return PathBuf::from("/var/lib/gitproc");
    }
    default_user_state_dir(
        std::env::var_os("XDG_STATE_HOME").map(PathBuf::from),
        std::env::var_os("HOME").map(PathBuf::from),
    )
    .or_else(|| {
        nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map(|u| u.dir.join(".local/state/gitproc"))
    })
    // No usable home at all (a stripped-down service account): a per-uid directory under the
    // temp dir is still private (mode 0700 when created) and better than failing to start.
    .unwrap_or_else(|| std::env::temp_dir().join(format!("gitproc-{uid}")))
}

/// Pure part of [`default_state_dir`] for a non-root user. The XDG spec says relative values
/// of `XDG_STATE_HOME` are invalid and must be ignored; the same holds for `HOME`.
fn default_user_state_dir(
    xdg_state_home: Option<PathBuf>,
    home: Option<PathBuf>,
) -> Option<PathBuf> {
    if let Some(x) = xdg_state_home.filter(|p| p.is_absolute()) {
        return Some(x.join("gitproc"));
    }
    home.filter(|p| p.is_absolute())
        .map(|h| h.join(".local/state/gitproc"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn user_state_dir_prefers_absolute_xdg_then_home() {
        assert_eq!(
            default_user_state_dir(Some("/x/state".into()), Some("/home/u".into())),
            Some(PathBuf::from("/x/state/gitproc"))
        );
        assert_eq!(
            default_user_state_dir(Some("relative".into()), Some("/home/u".into())),
            Some(PathBuf::from("/home/u/.local/state/gitproc"))
        );
        assert_eq!(default_user_state_dir(None, Some("".into())), None);
        assert_eq!(default_user_state_dir(None, None), None);
    }

    #[test]
    fn ensure_state_dir_creates_private_dirs_and_is_idempotent() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/gitproc");
        ensure_state_dir(&dir).unwrap();
        ensure_state_dir(&dir).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("logs")), 0o750);
    }

    #[test]
    fn ensure_state_dir_names_the_path_on_failure() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("plain-file");
        std::fs::write(&file, b"x").unwrap();
        let err = ensure_state_dir(&file.join("sub")).unwrap_err();
        assert!(err.to_string().contains("plain-file"), "{err}");
    }
}

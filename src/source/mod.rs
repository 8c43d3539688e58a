//! Where desired state comes from: a git branch fetched with gix into a private bare mirror.
//!
//! - [`git`]: [`GitSource`] fetches the branch tip into `<state-dir>/repo.git` (only when the
//!   tip moved, after one cheap ref advertisement) and reads the units directory of a commit.
//! - [`poll`]: [`PollSchedule`], the pure adaptive poll timer.
//! - [`dir`]: a plain directory read as a [`crate::tree::FileTree`] (check, `--dir`).
//! - [`diff`]: [`diff()`], the pure comparison of two unit sets by content hash.
//! - [`watch`]: [`RefWatcher`], the inotify fast path for repositories on the local disk.
//! - [`signature`]: opt-in verification of signed commits with explicit trust roots.
//!
//! Nothing here touches a working tree the user owns: local repositories are read through
//! `git-upload-pack` like any remote, and units come from committed trees only.
//!
//! Runtime dependencies (gix spawns them): `git-upload-pack` for local paths and `file://`,
//! `ssh` for `ssh://` and scp-style URLs (authentication is the system ssh's: keys, agent,
//! `~/.ssh/config`); `ssh-keygen` (or `gpg`) only when signed commits are required. HTTPS
//! is built in (rustls) and uses git credential helpers from the user's git config.
//!
//! A check can block for as long as the remote takes (HTTP has gix's 20 s connect timeout;
//! ssh has its own), so the daemon should run [`GitSource::check`] off the event loop.

use std::path::PathBuf;

pub mod diff;
pub mod dir;
pub mod git;
pub mod poll;
pub mod signature;
pub mod watch;

pub use diff::{UnitDiff, diff};
pub use git::{CheckOutcome, CommitInfo, GitSource, SourceConfig};
pub use poll::{PollConfig, PollSchedule};
pub use signature::{SignatureError, SignaturePolicy, verify_commit_signature};
pub use watch::{RefWatcher, resolve_git_dir, watch};

/// Why the git source could not produce a commit or a tree.
///
/// The daemon keeps running on every one of these and retries; [`SourceError::kind`] gives a
/// stable label so it can log once per state change instead of once per poll.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The repository URL/path cannot be parsed.
    #[error(
        "invalid repository URL {url:?}: {message} (use a local path, file://, https://, ssh:// or user@host:path)"
    )]
    InvalidUrl { url: String, message: String },
    /// The configured branch is not a valid ref name.
    #[error("invalid branch name {branch:?}: {message} (use a branch name like `main`)")]
    InvalidBranch { branch: String, message: String },
    /// The mirror at `<state-dir>/repo.git` cannot be created or opened.
    #[error(
        "cannot open the git mirror {}: {message} (check permissions of the state directory, or delete the mirror to have it re-created)",
        mirror.display()
    )]
    Mirror { mirror: PathBuf, message: String },
    /// Connecting or the ref advertisement failed (network, authentication, missing repository).
    #[error(
        "remote {url} is unreachable: {message} (check the URL, network and credentials; will retry)"
    )]
    Unreachable { url: String, message: String },
    /// The configured branch is not advertised by the remote (deleted or misspelt).
    #[error(
        "branch {branch:?} does not exist on remote {url} (was it deleted? fix `branch` or push it; the last good commit stays applied)"
    )]
    BranchNotFound { url: String, branch: String },
    /// No branch was configured and the remote's HEAD is unborn or not advertised.
    #[error("remote {url} has no HEAD pointing at a commit (set `branch` explicitly)")]
    NoRemoteHead { url: String },
    /// Objects could not be received or the mirror's ref could not be updated.
    #[error("fetching {branch} from {url} failed: {message} (will retry)")]
    Fetch {
        url: String,
        branch: String,
        message: String,
    },
    /// A commit id that is neither full hex nor a ref known to the mirror.
    #[error(
        "{rev:?} is not a commit id or a ref in the mirror of {url} (use a full commit id or a branch name)"
    )]
    UnknownRevision { url: String, rev: String },
    /// An object is missing or corrupt in the mirror.
    #[error(
        "object {id} of commit {commit} is missing or corrupt in the mirror of {url}: {message} (delete the mirror to refetch)"
    )]
    Object {
        url: String,
        commit: String,
        id: String,
        message: String,
    },
    /// `units_dir` does not name a directory in the commit's tree.
    #[error(
        "commit {commit} has no directory {units_dir:?} (check `units_dir`; the last good commit stays applied)"
    )]
    UnitsDirMissing { commit: String, units_dir: String },
    /// The inotify watch on a local repository could not be set up.
    #[error("cannot watch the refs of {}: {message} (polling continues)", path.display())]
    Watch { path: PathBuf, message: String },
}

impl SourceError {
    /// A stable label of the failure state (`"unreachable"`, `"branch-not-found"`, ...),
    /// for logging once per state change.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceError::InvalidUrl { .. } => "invalid-url",
            SourceError::InvalidBranch { .. } => "invalid-branch",
            SourceError::Mirror { .. } => "mirror",
            SourceError::Unreachable { .. } => "unreachable",
            SourceError::BranchNotFound { .. } => "branch-not-found",
            SourceError::NoRemoteHead { .. } => "no-remote-head",
            SourceError::Fetch { .. } => "fetch",
            SourceError::UnknownRevision { .. } => "unknown-revision",
            SourceError::Object { .. } => "corrupt-object",
            SourceError::UnitsDirMissing { .. } => "units-dir-missing",
            SourceError::Watch { .. } => "watch",
        }
    }
}

/// Renders an error and all its causes on one line (`a: b: c`), since gix errors carry the
/// useful detail (the server's message, the missing object) in their sources.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}

//! [`GitSource`]: one branch of one remote, mirrored into a private bare repository.
//!
//! Why a bare mirror: gitproc must never touch a working tree the user owns, and reading
//! units from committed trees makes "uncommitted edits are ignored" true by construction.
//! Why check before fetching: a ref advertisement costs one round trip and moves no objects,
//! so a quiet branch costs the remote (and us) almost nothing per poll.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use gix::ObjectId;
use gix::bstr::ByteSlice;
use gix::remote::Direction;

use super::{SourceError, error_chain};
use crate::tree::{Entry, FileTree, MAX_FILE_BYTES};

/// The mirror's ref that tracks the remote's HEAD when no branch is configured.
const REMOTE_HEAD_REF: &str = "refs/gitproc/remote-head";

/// Packs in the mirror past which they are packed into one (git's `gc.autoPackLimit`).
pub const MAX_PACKS: usize = 50;

/// Each fetch adds one pack to the mirror and gix never merges them; every open and lookup
/// then walks them all. After 600 commits (the soak) a check took 285 ms instead of 13 and
/// held 0.4 MiB more heap. So past [`MAX_PACKS`] packs, `git repack -a -d -k` makes one:
/// `-k` keeps unreachable objects too, because a commit force-pushed away may still be a
/// unit's last good version. Runs on the source worker (a subprocess, never on the loop);
/// a failure is logged and changes nothing (the packs stay as they were).
fn consolidate_packs(mirror: &Path) {
    let packs = std::fs::read_dir(mirror.join("objects/pack"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
                .count()
        })
        .unwrap_or(0);
    if packs <= MAX_PACKS {
        return;
    }
    let started = std::time::Instant::now();
    let out = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(mirror)
        .args(["repack", "-a", "-d", "-k", "-q"])
        .stdin(std::process::Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => tracing::info!(
            mirror = %mirror.display(),
            packs,
            ms = started.elapsed().as_millis() as u64,
            "packed the mirror's objects into one pack"
        ),
        Ok(o) => tracing::warn!(
            mirror = %mirror.display(),
            packs,
            "git repack failed ({}): {}; fetching goes on with the packs as they are",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => tracing::warn!(
            mirror = %mirror.display(),
            packs,
            "could not run git repack: {e}; fetching goes on with the packs as they are"
        ),
    }
}

/// Where units come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConfig {
    /// A local path, `file://`, `https://`, `ssh://`, `git://` or scp-style `user@host:path`.
    pub url: String,
    /// The branch to follow (`main` or `refs/heads/main`); `None` follows the remote's HEAD.
    pub branch: Option<String>,
    /// The directory of the tree that holds the units (`"."` for the root).
    pub units_dir: String,
    /// The private bare mirror, normally `<state-dir>/repo.git`.
    pub mirror: PathBuf,
}

/// The result of [`GitSource::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    /// The branch tip's commit id (40 hex digits), present in the mirror.
    pub tip: String,
    /// The tip differs from the previous successful check of this `GitSource` (always true
    /// for the first check: the caller compares with its applied commit anyway).
    pub changed: bool,
    /// Objects were requested from the remote because the mirror's ref lagged behind.
    pub fetched: bool,
    /// The remote was asked for its refs (a ref advertisement). False when a local
    /// repository's ref was read from its files and matched the mirror.
    pub advertised: bool,
}

/// What `gitproc status` shows about a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    /// Full hex id.
    pub id: String,
    /// Abbreviated hex id (7 digits, longer if needed to be unique in the mirror).
    pub short_id: String,
    /// The first line of the message.
    pub subject: String,
    /// The author's name.
    pub author: String,
    /// The author time, seconds since the Unix epoch.
    pub author_time: i64,
    /// The committer time, seconds since the Unix epoch: when the commit was made (a
    /// rebase or cherry-pick keeps the author time), which rollout delays count from.
    pub committer_time: i64,
}

/// A followed branch and its mirror. `Send`, so the daemon can own it from a fetcher thread
/// (a slow remote must never block the event loop).
///
/// The mirror is opened per operation rather than held: gix's `Repository` is not `Send`
/// without its `parallel` feature, and opening a bare repository costs well under a
/// millisecond next to a ref advertisement.
pub struct GitSource {
    cfg: SourceConfig,
    /// The refspec source on the remote (`refs/heads/B` or `HEAD`).
    remote_ref: String,
    /// Where the mirror keeps the fetched tip.
    local_ref: String,
    last_tip: Option<ObjectId>,
    /// A local tip handed out by [`GitSource::local_unmirrored_tip`] and not fetched yet.
    unmirrored: Option<ObjectId>,
    /// What gix's fetch polls to abort; nothing sets it (shutdown does not wait for a fetch).
    interrupt: AtomicBool,
}

impl std::fmt::Debug for GitSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitSource")
            .field("cfg", &self.cfg)
            .field("local_ref", &self.local_ref)
            .field("last_tip", &self.last_tip)
            .finish()
    }
}

impl GitSource {
    /// Creates (or reopens) the bare mirror. Contacts no remote.
    pub fn open(mut cfg: SourceConfig) -> Result<GitSource, SourceError> {
        cfg.url = normalize_url(&cfg.url)?;
        cfg.units_dir = crate::tree::normalize_path(&cfg.units_dir);
        let (remote_ref, local_ref) = match &cfg.branch {
            Some(b) => {
                let b = b.trim();
                let full = if b.starts_with("refs/") {
                    b.to_string()
                } else {
                    format!("refs/heads/{b}")
                };
                gix::refs::FullName::try_from(full.as_str()).map_err(|e| {
                    SourceError::InvalidBranch {
                        branch: b.to_string(),
                        message: e.to_string(),
                    }
                })?;
                (full.clone(), full)
            }
            None => ("HEAD".to_string(), REMOTE_HEAD_REF.to_string()),
        };
        open_or_init_mirror(&cfg.mirror)?;
        Ok(GitSource {
            cfg,
            remote_ref,
            local_ref,
            last_tip: None,
            unmirrored: None,
            interrupt: AtomicBool::new(false),
        })
    }

    /// The configuration (URL made absolute for local paths, `units_dir` normalised).
    pub fn config(&self) -> &SourceConfig {
        &self.cfg
    }

    /// The ref followed on the remote: `refs/heads/B`, or `HEAD` when no branch is set.
    pub fn remote_ref(&self) -> &str {
        &self.remote_ref
    }

    /// Cheap check: one ref advertisement; objects are fetched only when the remote's tip
    /// differs from the mirror's (a force-push is fetched like any new tip). Returns the tip.
    pub fn check(&mut self) -> Result<CheckOutcome, SourceError> {
        if let Some((tip, true)) = self.local_tip() {
            let changed = self.last_tip != Some(tip);
            self.last_tip = Some(tip);
            self.unmirrored = None;
            return Ok(CheckOutcome {
                tip: tip.to_string(),
                changed,
                fetched: false,
                advertised: false,
            });
        }
        let url = self.cfg.url.clone();
        let unreachable = |e: &gix::Error| SourceError::Unreachable {
            url: url.clone(),
            message: error_chain(e),
        };
        // `+` allows non-fast-forward updates: a force-pushed branch is applied like any tip.
        let refspec = format!("+{}:{}", self.remote_ref, self.local_ref);
        let repo = self.repo()?;
        self.drop_dangling_mirror_ref(&repo)?;
        let remote = repo
            .remote_at(self.cfg.url.as_str())
            .map_err(|e| SourceError::InvalidUrl {
                url: url.clone(),
                message: error_chain(&e),
            })?
            .with_fetch_tags(gix::remote::fetch::Tags::None)
            .with_refspecs([refspec.as_str()], Direction::Fetch)
            .map_err(|e| SourceError::InvalidUrl {
                url: url.clone(),
                message: format!("refspec {refspec}: {}", error_chain(&e)),
            })?;
        let connection = remote
            .connect(Direction::Fetch)
            .map_err(|e| unreachable(&e))?;
        // `prepare_fetch` performs the handshake and the ref advertisement (ls-refs) only.
        let prepare = connection
            .prepare_fetch(gix::progress::Discard, Default::default())
            .map_err(|e| unreachable(&e))?;
        let advertised = prepare
            .ref_map()
            .mappings
            .iter()
            .find(|m| {
                m.local
                    .as_ref()
                    .is_some_and(|l| l == self.local_ref.as_str())
            })
            .and_then(|m| m.remote.as_id().map(|id| id.to_owned()));
        let Some(tip) = advertised else {
            return Err(match &self.cfg.branch {
                Some(_) => SourceError::BranchNotFound {
                    url,
                    branch: self.remote_ref.clone(),
                },
                None => SourceError::NoRemoteHead { url },
            });
        };
        let mirrored = mirror_tip(&repo, &self.local_ref);
        let fetched = if mirrored == Some(tip) && repo.has_object(tip) {
            // Dropping `prepare` ends the conversation without negotiating a pack.
            drop(prepare);
            false
        } else {
            prepare
                .receive(gix::progress::Discard, &self.interrupt)
                .map_err(|e| SourceError::Fetch {
                    url: url.clone(),
                    branch: self.remote_ref.clone(),
                    message: error_chain(&e),
                })?;
            if !repo.has_object(tip) {
                return Err(SourceError::Fetch {
                    url,
                    branch: self.remote_ref.clone(),
                    message: format!("the remote did not send commit {tip}"),
                });
            }
            drop(repo);
            consolidate_packs(&self.cfg.mirror);
            true
        };
        let changed = self.last_tip != Some(tip);
        self.last_tip = Some(tip);
        self.unmirrored = None;
        Ok(CheckOutcome {
            tip: tip.to_string(),
            changed,
            fetched,
            advertised: true,
        })
    }

    /// For a repository on this machine, reads the followed ref straight from its files
    /// (no `git-upload-pack` process: the idle poll of a local repository, which inotify
    /// already watches, costs a file read) and returns it with whether the mirror already
    /// holds exactly that commit. Anything unusual (not local, unreadable, a repository gix
    /// will not open) returns `None`, and the normal fetch runs.
    fn local_tip(&self) -> Option<(ObjectId, bool)> {
        let path = self.local_path()?;
        let remote = gix::open(&path).ok()?;
        let tip = if self.remote_ref == "HEAD" {
            remote.head_id().ok()?.detach()
        } else {
            let mut r = remote.try_find_reference(self.remote_ref.as_str()).ok()??;
            r.peel_to_id().ok()?.detach()
        };
        let mirror = self.repo().ok()?;
        let mirrored = mirror_tip(&mirror, &self.local_ref) == Some(tip) && mirror.has_object(tip);
        Some((tip, mirrored))
    }

    /// For a repository on this machine: its followed tip, read from its files, when the
    /// mirror does not hold that commit yet. The commit can be read at once (the reads
    /// below fall back to the repository itself, see [`GitSource::repo_for`]) and fetched
    /// into the mirror afterwards with [`GitSource::check`]: the fetch runs
    /// `git-upload-pack` and `git pack-objects`, most of the time from a daemon's launch
    /// to its first child otherwise.
    pub fn local_unmirrored_tip(&mut self) -> Option<String> {
        match self.local_tip()? {
            (tip, false) => {
                self.unmirrored = Some(tip);
                Some(tip.to_string())
            }
            (_, true) => None,
        }
    }

    /// Whether a tip handed out by [`GitSource::local_unmirrored_tip`] still waits for its
    /// fetch into the mirror (a successful [`GitSource::check`] ends that).
    pub fn mirror_behind(&self) -> bool {
        self.unmirrored.is_some()
    }

    /// The tip last fetched into the mirror (survives restarts), if any.
    pub fn mirrored_tip(&self) -> Option<String> {
        let repo = self.repo().ok()?;
        mirror_tip(&repo, &self.local_ref).map(|id| id.to_string())
    }

    /// Resolves a full commit id, or a branch/ref name known to the mirror, to a commit id.
    pub fn resolve(&self, rev: &str) -> Result<String, SourceError> {
        let unknown = || SourceError::UnknownRevision {
            url: self.cfg.url.clone(),
            rev: rev.to_string(),
        };
        let repo = self.repo()?;
        if let Ok(id) = ObjectId::from_hex(rev.as_bytes()) {
            return repo
                .find_commit(id)
                .map(|c| c.id.to_string())
                .map_err(|_| unknown());
        }
        let mut reference = repo
            .try_find_reference(rev)
            .ok()
            .flatten()
            .ok_or_else(unknown)?;
        let id = reference.peel_to_id().map_err(|_| unknown())?;
        let commit = repo.find_commit(id.detach()).map_err(|_| unknown())?;
        Ok(commit.id.to_string())
    }

    /// Reads every file and symlink under `units_dir` of `commit`'s tree, keyed by path
    /// relative to `units_dir`. Submodules are skipped (they have no content here).
    pub fn read_units(&self, commit: &str) -> Result<FileTree, SourceError> {
        let repo = match ObjectId::from_hex(commit.trim().as_bytes()) {
            Ok(id) => self.repo_for(id)?,
            Err(_) => self.repo()?,
        };
        read_units_in(&repo, &self.cfg.url, commit, &self.cfg.units_dir)
    }

    /// One file of `commit`'s tree by its path from the repository root (not from
    /// `units_dir`), e.g. an `EnvironmentFile=` outside the units directory. `Ok(None)` if the
    /// path does not exist or names a directory or submodule.
    pub fn read_path(&self, commit: &str, path: &str) -> Result<Option<Entry>, SourceError> {
        let commit_id = self.parse_id(commit)?;
        let repo = self.repo_for(commit_id)?;
        let tree_id = repo
            .find_commit(commit_id)
            .and_then(|c| c.tree_id().map(|id| id.detach()))
            .map_err(|e| self.object_error(commit, commit_id, &e))?;
        let tree = repo
            .find_tree(tree_id)
            .map_err(|e| self.object_error(commit, tree_id, &e))?;
        let rel = crate::tree::normalize_path(path);
        if !crate::tree::stays_below(&rel) {
            return Ok(None);
        }
        let Some(entry) = tree
            .lookup_entry_by_path(&rel)
            .map_err(|e| self.object_error(commit, tree_id, &e))?
        else {
            return Ok(None);
        };
        let oid = entry.object_id();
        let mode = entry.mode();
        if mode.is_link() || mode.is_blob() {
            let mut blob = repo
                .find_blob(oid)
                .map_err(|e| self.object_error(commit, oid, &e))?;
            if mode.is_link() {
                return Ok(Some(Entry::Symlink(blob.data.to_str_lossy().into_owned())));
            }
            return Ok(Some(Entry::File(blob.take_data())));
        }
        Ok(None)
    }

    /// Id, subject, author and time of `commit`.
    pub fn commit_info(&self, commit: &str) -> Result<CommitInfo, SourceError> {
        let id = self.parse_id(commit)?;
        let repo = self.repo_for(id)?;
        let c = repo
            .find_commit(id)
            .map_err(|e| self.object_error(commit, id, &e))?;
        let subject = c
            .message()
            .map(|m| m.summary().to_str_lossy().into_owned())
            .map_err(|e| self.object_error(commit, id, &e))?;
        let author = c.author().map_err(|e| self.object_error(commit, id, &e))?;
        let author_time = author
            .time()
            .map(|t| t.seconds)
            .map_err(|e| self.object_error(commit, id, &e))?;
        let committer_time = c
            .committer()
            .map_err(|e| self.object_error(commit, id, &e))?
            .time()
            .map(|t| t.seconds)
            .map_err(|e| self.object_error(commit, id, &e))?;
        let short_id = c
            .short_id()
            .map(|p| p.to_string())
            .unwrap_or_else(|_| id.to_hex_with_len(7).to_string());
        Ok(CommitInfo {
            id: id.to_string(),
            short_id,
            subject,
            author: author.name.to_str_lossy().into_owned(),
            author_time,
            committer_time,
        })
    }

    /// Opens the mirror repository, e.g. for [`super::verify_commit_signature`].
    pub fn repository(&self) -> Result<gix::Repository, SourceError> {
        self.repo()
    }

    /// Verifies `commit`'s signature under `policy` (see [`super::verify_commit_signature`]).
    pub fn verify_signature(
        &self,
        commit: &str,
        policy: &super::SignaturePolicy,
    ) -> Result<super::signature::Verified, super::SignatureError> {
        let repo = self.repo().map_err(|e| super::SignatureError::Commit {
            commit: commit.to_string(),
            message: e.to_string(),
        })?;
        super::verify_commit_signature(&repo, commit, policy)
    }

    /// True when the remote is on the local filesystem (a path or `file://`), where the
    /// inotify fast path applies.
    pub fn is_local(&self) -> bool {
        self.local_path().is_some()
    }

    /// The local repository's path (worktree or bare), for [`super::watch()`].
    pub fn local_path(&self) -> Option<PathBuf> {
        local_path_of(&self.cfg.url)
    }

    /// If the mirror's ref names a commit whose objects are gone (a damaged mirror), deletes
    /// the ref so the next negotiation asks for the objects again instead of skipping them.
    fn drop_dangling_mirror_ref(&self, repo: &gix::Repository) -> Result<(), SourceError> {
        let Ok(Some(mut r)) = repo.try_find_reference(self.local_ref.as_str()) else {
            return Ok(());
        };
        let dangling = match r.peel_to_id() {
            Ok(id) => !repo.has_object(id.detach()),
            Err(_) => true,
        };
        if dangling {
            r.delete().map_err(|e| SourceError::Mirror {
                mirror: self.cfg.mirror.clone(),
                message: format!(
                    "cannot reset {} to refetch its missing objects: {}",
                    self.local_ref,
                    error_chain(&e)
                ),
            })?;
        }
        Ok(())
    }

    /// The repository to read the commit `id` from: the mirror, or, for the local tip
    /// [`GitSource::local_unmirrored_tip`] returned while the mirror has not fetched it
    /// yet, that repository itself. Objects are named by their hash: either gives the same
    /// content. Only objects are read from it, never its configuration (signatures are
    /// verified on the mirror's copy only). Any other commit the mirror lacks is an error
    /// of the mirror's, reported as such.
    fn repo_for(&self, id: ObjectId) -> Result<gix::Repository, SourceError> {
        let mirror = self.repo()?;
        if self.unmirrored == Some(id)
            && !mirror.has_object(id)
            && let Some(path) = self.local_path()
            && let Ok(source) = gix::open(&path)
            && source.has_object(id)
        {
            return Ok(source);
        }
        Ok(mirror)
    }

    fn repo(&self) -> Result<gix::Repository, SourceError> {
        gix::open(&self.cfg.mirror).map_err(|e| SourceError::Mirror {
            mirror: self.cfg.mirror.clone(),
            message: error_chain(&e),
        })
    }

    fn parse_id(&self, commit: &str) -> Result<ObjectId, SourceError> {
        ObjectId::from_hex(commit.trim().as_bytes()).map_err(|_| SourceError::UnknownRevision {
            url: self.cfg.url.clone(),
            rev: commit.to_string(),
        })
    }

    fn object_error(&self, commit: &str, id: ObjectId, e: &gix::Error) -> SourceError {
        object_error(&self.cfg.url, commit, id, e)
    }
}

fn object_error(url: &str, commit: &str, id: ObjectId, e: &gix::Error) -> SourceError {
    SourceError::Object {
        url: url.to_string(),
        commit: commit.to_string(),
        id: id.to_string(),
        message: error_chain(e),
    }
}

/// Reads every file and symlink under `units_dir` of `commit`'s tree in `repo` (the mirror,
/// or a local repository for `gitproc plan`), keyed by path relative to `units_dir`. Submodules are skipped (they have no content here).
pub fn read_units_in(
    repo: &gix::Repository,
    url: &str,
    commit: &str,
    units_dir: &str,
) -> Result<FileTree, SourceError> {
    let commit_id =
        ObjectId::from_hex(commit.trim().as_bytes()).map_err(|_| SourceError::UnknownRevision {
            url: url.to_string(),
            rev: commit.to_string(),
        })?;
    let units_dir = crate::tree::normalize_path(units_dir);
    let commit_obj = repo
        .find_commit(commit_id)
        .map_err(|e| object_error(url, commit, commit_id, &e))?;
    let tree_id = commit_obj
        .tree_id()
        .map_err(|e| object_error(url, commit, commit_id, &e))?
        .detach();
    let root = if units_dir.is_empty() {
        tree_id
    } else {
        let tree = repo
            .find_tree(tree_id)
            .map_err(|e| object_error(url, commit, tree_id, &e))?;
        let entry = tree
            .lookup_entry_by_path(&units_dir)
            .map_err(|e| object_error(url, commit, tree_id, &e))?;
        match entry {
            Some(entry) if entry.mode().is_tree() => entry.object_id(),
            _ => {
                return Err(SourceError::UnitsDirMissing {
                    commit: commit.to_string(),
                    units_dir: units_dir.clone(),
                });
            }
        }
    };
    let mut out = FileTree::default();
    let mut stack = vec![(root, String::new())];
    while let Some((tree_id, prefix)) = stack.pop() {
        let tree = repo
            .find_tree(tree_id)
            .map_err(|e| object_error(url, commit, tree_id, &e))?;
        let decoded = tree
            .decode()
            .map_err(|e| object_error(url, commit, tree_id, &e))?;
        for entry in &decoded.entries {
            let name = entry.filename.to_str_lossy();
            let path = if prefix.is_empty() {
                name.into_owned()
            } else {
                format!("{prefix}/{name}")
            };
            let oid = entry.oid.to_owned();
            if entry.mode.is_tree() {
                stack.push((oid, path));
            } else if entry.mode.is_link() {
                let blob = repo
                    .find_blob(oid)
                    .map_err(|e| object_error(url, commit, oid, &e))?;
                let target = blob.data.to_str_lossy().into_owned();
                out.entries.insert(path, Entry::Symlink(target));
            } else if entry.mode.is_blob() {
                // The size from the object header: an oversized blob is never inflated.
                let size = repo
                    .find_header(oid)
                    .map_err(|e| object_error(url, commit, oid, &e))?
                    .size();
                if size > MAX_FILE_BYTES {
                    out.oversized.insert(path, size);
                    continue;
                }
                let mut blob = repo
                    .find_blob(oid)
                    .map_err(|e| object_error(url, commit, oid, &e))?;
                out.entries.insert(path, Entry::File(blob.take_data()));
            }
        }
    }
    Ok(out)
}

fn mirror_tip(repo: &gix::Repository, local_ref: &str) -> Option<ObjectId> {
    let mut r = repo.try_find_reference(local_ref).ok()??;
    r.peel_to_id().ok().map(|id| id.detach())
}

fn open_or_init_mirror(mirror: &Path) -> Result<gix::Repository, SourceError> {
    let fail = |message: String| SourceError::Mirror {
        mirror: mirror.to_path_buf(),
        message,
    };
    if mirror.join("HEAD").exists() {
        let repo = gix::open(mirror).map_err(|e| fail(error_chain(&e)))?;
        if !repo.is_bare() {
            return Err(fail(
                "it is not a bare repository; gitproc only uses a private bare mirror".into(),
            ));
        }
        return Ok(repo);
    }
    // Never initialise a repository over someone else's files.
    if let Ok(mut entries) = std::fs::read_dir(mirror)
        && entries.next().is_some()
    {
        return Err(fail(
            "the directory exists, is not empty and is not a git repository; point the mirror at a new path".into(),
        ));
    }
    if let Some(parent) = mirror.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| fail(format!("creating {}: {e}", parent.display())))?;
    }
    gix::init_bare(mirror).map_err(|e| fail(error_chain(&e)))
}

/// Makes relative local paths absolute so the mirror keeps working whatever the cwd is.
fn normalize_url(url: &str) -> Result<String, SourceError> {
    let trimmed = url.trim();
    let invalid = |message: String| SourceError::InvalidUrl {
        url: url.to_string(),
        message,
    };
    if trimmed.is_empty() {
        return Err(invalid("it is empty".into()));
    }
    let parsed =
        gix::url::parse(trimmed.as_bytes().as_bstr()).map_err(|e| invalid(e.to_string()))?;
    if parsed.scheme == gix::url::Scheme::File && !trimmed.starts_with("file://") {
        let path = Path::new(trimmed);
        if path.is_relative() {
            let cwd = std::env::current_dir()
                .map_err(|e| invalid(format!("cannot resolve a relative path: {e}")))?;
            return Ok(cwd.join(path).to_string_lossy().into_owned());
        }
    }
    Ok(trimmed.to_string())
}

fn local_path_of(url: &str) -> Option<PathBuf> {
    let parsed = gix::url::parse(url.as_bytes().as_bstr()).ok()?;
    if parsed.scheme != gix::url::Scheme::File {
        return None;
    }
    gix::path::from_bstr(parsed.path.as_bstr())
        .ok()
        .map(|p| p.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The daemon moves the source into a fetcher thread so a slow remote never blocks the
    /// event loop; that needs `Send`.
    #[test]
    fn source_and_watcher_can_move_to_another_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<GitSource>();
        assert_send::<crate::source::RefWatcher>();
    }

    #[test]
    fn local_paths_are_recognised() {
        assert_eq!(
            local_path_of("/srv/units.git"),
            Some(PathBuf::from("/srv/units.git"))
        );
        assert_eq!(
            local_path_of("file:///srv/units"),
            Some(PathBuf::from("/srv/units"))
        );
        assert_eq!(local_path_of("https://example.com/u.git"), None);
        assert_eq!(local_path_of("git@example.com:u.git"), None);
        assert_eq!(local_path_of("ssh://example.com/u.git"), None);
    }

    #[test]
    fn relative_paths_become_absolute_and_empty_urls_are_refused() {
        let abs = normalize_url("some/repo").unwrap();
        assert!(Path::new(&abs).is_absolute(), "{abs}");
        assert!(matches!(
            normalize_url("  "),
            Err(SourceError::InvalidUrl { .. })
        ));
        assert_eq!(
            normalize_url("https://example.com/u.git").unwrap(),
            "https://example.com/u.git"
        );
    }
}

//! The fast path for a repository on the local disk: inotify on its refs.
//!
//! A commit to a local repository moves a ref file (`refs/heads/B`, written through a
//! `.lock` file and renamed), rewrites `packed-refs`, or changes `HEAD`. Watching those turns
//! "commit to applied" from a poll interval into milliseconds; polling stays the safety net
//! (inotify can overflow, and the watch cannot follow a repository that is replaced).

use std::path::{Path, PathBuf};

use crossbeam_channel::{Sender, TrySendError};
use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecursiveMode, Watcher};

use super::SourceError;

/// Keeps the inotify watches alive; dropping it stops watching.
pub struct RefWatcher {
    _watcher: notify::RecommendedWatcher,
    git_dir: PathBuf,
}

impl std::fmt::Debug for RefWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefWatcher")
            .field("git_dir", &self.git_dir)
            .finish()
    }
}

impl RefWatcher {
    /// The git directory being watched.
    pub fn git_dir(&self) -> &Path {
        &self.git_dir
    }
}

/// Watches `HEAD`, `packed-refs` and `refs/heads/**` of the repository at `repo` (a
/// worktree, its `.git`, or a bare repository) and sends `()` on `tx` whenever one changes.
///
/// Sending uses `try_send`: give it a `bounded(1)` channel and a burst of ref updates
/// collapses into one wake-up (a light debounce); the receiver then checks the remote once.
/// Reads (git itself opening `HEAD`) and lock files are ignored, so the daemon's own fetch
/// does not wake it.
pub fn watch(repo: &Path, tx: Sender<()>) -> Result<RefWatcher, SourceError> {
    let (git_dir, common_dir) = resolve_git_dirs(repo)?;
    let fail = |path: &Path, e: notify::Error| SourceError::Watch {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let heads = common_dir.join("refs").join("heads");
    let filter_heads = heads.clone();
    let handler = move |res: notify::Result<Event>| {
        let Ok(event) = res else {
            // An error (e.g. queue overflow) may hide a change: wake the receiver to check.
            let _ = tx.try_send(());
            return;
        };
        if is_ref_change(&event, &filter_heads) {
            match tx.try_send(()) {
                Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
            }
        }
    };
    let mut watcher = notify::RecommendedWatcher::new(handler, notify::Config::default())
        .map_err(|e| fail(&git_dir, e))?;
    watcher
        .watch(&git_dir, RecursiveMode::NonRecursive)
        .map_err(|e| fail(&git_dir, e))?;
    if common_dir != git_dir {
        watcher
            .watch(&common_dir, RecursiveMode::NonRecursive)
            .map_err(|e| fail(&common_dir, e))?;
    }
    if heads.is_dir() {
        watcher
            .watch(&heads, RecursiveMode::Recursive)
            .map_err(|e| fail(&heads, e))?;
    }
    Ok(RefWatcher {
        _watcher: watcher,
        git_dir,
    })
}

/// True for a write, creation, rename or removal of `HEAD`, `packed-refs` or a branch ref.
fn is_ref_change(event: &Event, heads: &Path) -> bool {
    let relevant_kind = match event.kind {
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Any | EventKind::Other => false,
    };
    relevant_kind
        && event.paths.iter().any(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(".lock") {
                return false;
            }
            name == "HEAD" || name == "packed-refs" || p.starts_with(heads)
        })
}

/// The git directory of `repo`: `repo/.git` (a directory, or a `gitdir:` file), or `repo`
/// itself if it is a bare repository.
pub fn resolve_git_dir(repo: &Path) -> Result<PathBuf, SourceError> {
    resolve_git_dirs(repo).map(|(git_dir, _)| git_dir)
}

/// The git directory and the common directory (they differ for linked worktrees, whose
/// branches live in the main repository).
fn resolve_git_dirs(repo: &Path) -> Result<(PathBuf, PathBuf), SourceError> {
    let fail = |message: String| SourceError::Watch {
        path: repo.to_path_buf(),
        message,
    };
    let dot_git = repo.join(".git");
    let git_dir = if dot_git.is_dir() {
        dot_git
    } else if dot_git.is_file() {
        let text = std::fs::read_to_string(&dot_git)
            .map_err(|e| fail(format!("reading {}: {e}", dot_git.display())))?;
        let target = text
            .lines()
            .find_map(|l| l.strip_prefix("gitdir:"))
            .map(str::trim)
            .ok_or_else(|| fail(format!("{} has no `gitdir:` line", dot_git.display())))?;
        repo.join(target)
    } else if repo.join("HEAD").is_file() && repo.join("objects").is_dir() {
        repo.to_path_buf()
    } else {
        return Err(fail(
            "not a git repository (no .git and no HEAD/objects); polling continues".into(),
        ));
    };
    let common_dir = match std::fs::read_to_string(git_dir.join("commondir")) {
        Ok(text) => git_dir.join(text.trim()),
        Err(_) => git_dir.clone(),
    };
    Ok((git_dir, common_dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, ModifyKind, RenameMode};

    fn ev(kind: EventKind, path: &str) -> Event {
        Event::new(kind).add_path(PathBuf::from(path))
    }

    #[test]
    fn only_ref_writes_count() {
        let heads = Path::new("/r/.git/refs/heads");
        let rename = EventKind::Modify(ModifyKind::Name(RenameMode::To));
        assert!(is_ref_change(&ev(rename, "/r/.git/refs/heads/main"), heads));
        assert!(is_ref_change(
            &ev(rename, "/r/.git/refs/heads/team/x"),
            heads
        ));
        assert!(is_ref_change(&ev(rename, "/r/.git/HEAD"), heads));
        assert!(is_ref_change(&ev(rename, "/r/.git/packed-refs"), heads));
        assert!(!is_ref_change(
            &ev(
                EventKind::Create(CreateKind::File),
                "/r/.git/refs/heads/main.lock"
            ),
            heads
        ));
        assert!(!is_ref_change(
            &ev(
                EventKind::Access(AccessKind::Open(AccessMode::Any)),
                "/r/.git/HEAD"
            ),
            heads
        ));
        assert!(!is_ref_change(&ev(rename, "/r/.git/index"), heads));
        assert!(!is_ref_change(&ev(rename, "/r/.git/ORIG_HEAD"), heads));
    }

    #[test]
    fn git_dir_of_a_plain_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve_git_dir(dir.path()).unwrap_err();
        assert!(err.to_string().contains("not a git repository"), "{err}");
    }
}

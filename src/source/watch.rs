//! The fast path for a repository on the local disk: inotify on its refs.
//!
//! A commit to a local repository moves a ref file (`refs/heads/B`, written through a
//! `.lock` file and renamed), rewrites `packed-refs`, or changes `HEAD`. Watching those turns
//! "commit to applied" from a poll interval into milliseconds; polling stays the safety net
//! (inotify can overflow, and the watch cannot follow a repository that is replaced).
//!
//! The watch uses inotify directly with a mask of writes, renames, creations and removals
//! only. Reads are left out on purpose: the daemon's own check reads `HEAD` and
//! `packed-refs` on every poll, and a mask with `IN_OPEN` (which general-purpose watcher
//! crates always add) would wake this thread for each of those reads of an idle daemon.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use crossbeam_channel::{Sender, TrySendError};
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::SourceError;

/// Keeps the watch alive; dropping it stops the watching thread.
#[derive(Debug)]
pub struct RefWatcher {
    git_dir: PathBuf,
    /// The thread polls the other end: when this end closes, it hangs up and returns.
    _stop: UnixStream,
}

impl RefWatcher {
    /// The git directory being watched.
    pub fn git_dir(&self) -> &Path {
        &self.git_dir
    }
}

/// What a watched directory holds, which decides which names in it are refs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DirKind {
    /// The git (or common) directory: only `HEAD` and `packed-refs` count.
    GitDir,
    /// `refs/heads` or one of its subdirectories: every name but a `.lock` is a branch.
    Heads,
}

/// The events that can mean a ref moved: a file written and closed, renamed in or out,
/// created or removed. Not `IN_OPEN`, `IN_ACCESS` or `IN_CLOSE_NOWRITE` (reads).
fn mask() -> WatchMask {
    WatchMask::CLOSE_WRITE
        | WatchMask::MOVED_TO
        | WatchMask::MOVED_FROM
        | WatchMask::CREATE
        | WatchMask::DELETE
}

/// Watches `HEAD`, `packed-refs` and `refs/heads/**` of the repository at `repo` (a
/// worktree, its `.git`, or a bare repository) and sends `()` on `tx` whenever one changes.
///
/// Sending uses `try_send`: give it a `bounded(1)` channel and a burst of ref updates
/// collapses into one wake-up (a light debounce); the receiver then checks the remote once.
/// Reads and lock files are ignored, so the daemon's own checks do not wake it. A branch
/// directory created later (`refs/heads/team/`) is watched as it appears.
pub fn watch(repo: &Path, tx: Sender<()>) -> Result<RefWatcher, SourceError> {
    let (git_dir, common_dir) = resolve_git_dirs(repo)?;
    let fail = |path: &Path, e: io::Error| SourceError::Watch {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let inotify = Inotify::init().map_err(|e| fail(&git_dir, e))?;
    let mut watches = inotify.watches();
    let mut dirs = HashMap::new();
    for dir in [&git_dir, &common_dir] {
        let wd = watches.add(dir, mask()).map_err(|e| fail(dir, e))?;
        dirs.insert(wd, (dir.clone(), DirKind::GitDir));
    }
    let heads = common_dir.join("refs").join("heads");
    if heads.is_dir() {
        add_heads_tree(&mut watches, &heads, &mut dirs).map_err(|e| fail(&heads, e))?;
    }
    let (stop, stop_rx) = UnixStream::pair().map_err(|e| fail(&git_dir, e))?;
    let thread = Watching {
        inotify,
        watches,
        dirs,
        tx,
    };
    std::thread::Builder::new()
        .name("inotify".into())
        .spawn(move || thread.run(&stop_rx))
        .map_err(|e| fail(&git_dir, e))?;
    Ok(RefWatcher {
        git_dir,
        _stop: stop,
    })
}

/// Adds a watch on `dir` and every directory below it (a `refs/heads` tree).
fn add_heads_tree(
    watches: &mut Watches,
    dir: &Path,
    dirs: &mut HashMap<WatchDescriptor, (PathBuf, DirKind)>,
) -> io::Result<()> {
    let wd = watches.add(dir, mask())?;
    dirs.insert(wd, (dir.to_path_buf(), DirKind::Heads));
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            add_heads_tree(watches, &entry.path(), dirs)?;
        }
    }
    Ok(())
}

/// The watching thread's state.
struct Watching {
    inotify: Inotify,
    watches: Watches,
    dirs: HashMap<WatchDescriptor, (PathBuf, DirKind)>,
    tx: Sender<()>,
}

impl Watching {
    /// Blocks until the inotify fd or the stop socket is ready; returns when the
    /// [`RefWatcher`] is dropped (the socket hangs up) or the receiver is gone.
    fn run(mut self, stop: &UnixStream) {
        let mut buf = [0u8; 4096];
        loop {
            let mut fds = [
                PollFd::new(self.inotify.as_fd(), PollFlags::POLLIN),
                PollFd::new(stop.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => return,
            }
            if fds[1].revents().is_some_and(|r| !r.is_empty()) {
                return;
            }
            let mut wake = false;
            let mut new_dirs = Vec::new();
            match self.inotify.read_events(&mut buf) {
                Ok(events) => {
                    for event in events {
                        if event.mask.contains(EventMask::Q_OVERFLOW) {
                            // Lost events may hide a change: have the receiver check.
                            wake = true;
                            continue;
                        }
                        if event.mask.contains(EventMask::IGNORED) {
                            self.dirs.remove(&event.wd);
                            continue;
                        }
                        let Some((dir, kind)) = self.dirs.get(&event.wd) else {
                            continue;
                        };
                        if *kind == DirKind::Heads
                            && event.mask.contains(EventMask::ISDIR)
                            && event
                                .mask
                                .intersects(EventMask::CREATE | EventMask::MOVED_TO)
                            && let Some(name) = event.name
                        {
                            // A new branch directory: watch it, and check (it may already
                            // hold a ref written before the watch was in place).
                            new_dirs.push(dir.join(name));
                            wake = true;
                        } else if is_ref_change(*kind, event.mask, event.name) {
                            wake = true;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => wake = true,
            }
            for dir in new_dirs {
                // A directory gone again before it was watched needs no watch.
                let _ = add_heads_tree(&mut self.watches, &dir, &mut self.dirs);
            }
            if wake {
                match self.tx.try_send(()) {
                    Ok(()) | Err(TrySendError::Full(())) => {}
                    Err(TrySendError::Disconnected(())) => return,
                }
            }
        }
    }
}

/// True for an event in a watched directory that can mean a ref moved: `HEAD` or
/// `packed-refs` of the git directory, or any branch file under `refs/heads`, written,
/// renamed, created or removed. Lock files (`main.lock`, `HEAD.lock`) never count: the
/// rename that completes the update does.
fn is_ref_change(kind: DirKind, mask: EventMask, name: Option<&OsStr>) -> bool {
    let relevant = EventMask::CLOSE_WRITE
        | EventMask::MOVED_TO
        | EventMask::MOVED_FROM
        | EventMask::CREATE
        | EventMask::DELETE;
    if !mask.intersects(relevant) || mask.contains(EventMask::ISDIR) {
        return false;
    }
    let Some(name) = name.and_then(OsStr::to_str) else {
        return false;
    };
    if name.ends_with(".lock") {
        return false;
    }
    match kind {
        DirKind::GitDir => name == "HEAD" || name == "packed-refs",
        DirKind::Heads => true,
    }
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
    use std::time::{Duration, Instant};

    fn name(n: &str) -> Option<&OsStr> {
        Some(OsStr::new(n))
    }

    #[test]
    fn only_ref_writes_count() {
        let moved = EventMask::MOVED_TO;
        assert!(is_ref_change(DirKind::Heads, moved, name("main")));
        assert!(is_ref_change(
            DirKind::Heads,
            EventMask::DELETE,
            name("old")
        ));
        assert!(is_ref_change(DirKind::GitDir, moved, name("HEAD")));
        assert!(is_ref_change(DirKind::GitDir, moved, name("packed-refs")));
        assert!(is_ref_change(
            DirKind::GitDir,
            EventMask::CLOSE_WRITE,
            name("HEAD")
        ));
        assert!(!is_ref_change(
            DirKind::Heads,
            EventMask::CREATE,
            name("main.lock")
        ));
        assert!(!is_ref_change(DirKind::GitDir, moved, name("index")));
        assert!(!is_ref_change(DirKind::GitDir, moved, name("ORIG_HEAD")));
        assert!(!is_ref_change(
            DirKind::GitDir,
            EventMask::OPEN,
            name("HEAD")
        ));
        assert!(!is_ref_change(
            DirKind::GitDir,
            EventMask::CLOSE_NOWRITE,
            name("HEAD")
        ));
        assert!(!is_ref_change(DirKind::Heads, moved, None));
    }

    #[test]
    fn git_dir_of_a_plain_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve_git_dir(dir.path()).unwrap_err();
        assert!(err.to_string().contains("not a git repository"), "{err}");
    }

    /// A bare repository's skeleton is enough for the watch: `HEAD`, `objects/`, `refs/heads/`.
    fn bare_skeleton() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("objects")).unwrap();
        std::fs::create_dir_all(dir.path().join("refs/heads")).unwrap();
        std::fs::write(dir.path().join("HEAD"), "ref: refs/heads/main\n").unwrap();
        dir
    }

    /// Writes a ref the way git does: a `.lock` file renamed into place.
    fn write_ref(path: &Path) {
        let lock = path.with_extension("lock");
        std::fs::write(&lock, "0123456789012345678901234567890123456789\n").unwrap();
        std::fs::rename(&lock, path).unwrap();
    }

    fn expect_wake(rx: &crossbeam_channel::Receiver<()>, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        match rx.recv_deadline(deadline) {
            Ok(()) => {}
            Err(e) => panic!("no wake-up within 10 s after {what}: {e}"),
        }
    }

    /// The tids of this process's threads named `inotify`.
    fn inotify_threads() -> std::collections::HashSet<String> {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|e| {
                let tid = e.ok()?.file_name().into_string().ok()?;
                let comm = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).ok()?;
                (comm.trim() == "inotify").then_some(tid)
            })
            .collect()
    }

    /// The thread's scheduler state letter and its voluntary context switches.
    fn thread_sleep_state(tid: &str) -> (char, u64) {
        let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap();
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(str::trim)
                .unwrap_or_default()
                .to_string()
        };
        let state = field("State:").chars().next().unwrap_or('?');
        let switches = field("voluntary_ctxt_switches:").parse().unwrap_or(0);
        (state, switches)
    }

    /// Tests that count `inotify` threads must not overlap.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn reads_of_head_do_not_wake_the_thread() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let repo = bare_skeleton();
        std::fs::write(
            repo.path().join("packed-refs"),
            "# pack-refs with: peeled\n",
        )
        .unwrap();
        let before = inotify_threads();
        let (tx, _rx) = crossbeam_channel::bounded(1);
        let _watcher = watch(repo.path(), tx).unwrap();
        // The thread names itself once it runs.
        let deadline = Instant::now() + Duration::from_secs(10);
        let new = loop {
            let new: Vec<String> = inotify_threads().difference(&before).cloned().collect();
            if !new.is_empty() || Instant::now() >= deadline {
                break new;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        assert_eq!(
            new.len(),
            1,
            "expected one new `inotify` thread, found {new:?}"
        );
        let tid = &new[0];
        let asleep = loop {
            let (state, switches) = thread_sleep_state(tid);
            if state == 'S' {
                break switches;
            }
            assert!(
                Instant::now() < deadline,
                "the watching thread never went to sleep"
            );
            std::thread::sleep(Duration::from_millis(2));
        };
        // What every poll of an idle daemon does: read HEAD and packed-refs.
        for _ in 0..20 {
            std::fs::read_to_string(repo.path().join("HEAD")).unwrap();
            std::fs::read_to_string(repo.path().join("packed-refs")).unwrap();
        }
        // An absence check: a watch that saw reads would have been woken well within this.
        std::thread::sleep(Duration::from_millis(200));
        let (_, after) = thread_sleep_state(tid);
        assert_eq!(
            after, asleep,
            "reads of HEAD/packed-refs woke the watching thread"
        );
    }

    #[test]
    fn a_ref_update_wakes_the_receiver() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let repo = bare_skeleton();
        let (tx, rx) = crossbeam_channel::bounded(1);
        let watcher = watch(repo.path(), tx).unwrap();
        assert_eq!(watcher.git_dir(), repo.path());
        write_ref(&repo.path().join("refs/heads/main"));
        expect_wake(&rx, "writing refs/heads/main");
        // A branch directory created after the watch started is watched too.
        std::fs::create_dir(repo.path().join("refs/heads/team")).unwrap();
        expect_wake(&rx, "creating refs/heads/team/");
        while rx.try_recv().is_ok() {}
        write_ref(&repo.path().join("refs/heads/team/x"));
        expect_wake(&rx, "writing refs/heads/team/x");
    }

    #[test]
    fn dropping_the_watcher_ends_its_thread() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let repo = bare_skeleton();
        let (tx, rx) = crossbeam_channel::bounded(1);
        let watcher = watch(repo.path(), tx).unwrap();
        drop(watcher);
        // The thread owns the only sender: it is dropped when the thread returns.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match rx.recv_deadline(deadline) {
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    panic!("the watching thread did not end within 10 s of the drop")
                }
                Ok(()) => {}
            }
        }
    }
}

//! One daemon per state directory.
//!
//! Two daemons on one state directory would each start every service and overwrite each
//! other's state. The daemon therefore holds an exclusive `flock` (std `File::try_lock`) on
//! `<state-dir>/daemon.lock` for its whole life. The kernel releases the lock when the process
//! dies, however it dies, so a stale lock file never blocks a restart. The file also records the
//! holder's pid so the refusal can name it.
//!
//! `flock` locks belong to an open file description: a second `open` + `try_lock` of the same
//! file conflicts even inside the same process, which the tests rely on.
//!
//! The lock that counts is on the state directory itself (an `O_RDONLY|O_DIRECTORY` fd;
//! Linux `flock`s directories like files): a lock on `daemon.lock` alone was defeated by
//! deleting the file, after which a second daemon locked a fresh inode and both ran every
//! service. The directory cannot be replaced while it holds the state, the socket and the
//! logs, so its lock is the state directory's identity. `daemon.lock` is still locked (an
//! older gitproc checks only the file) and still carries the holder's pid for the message.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::LOCK_FILE;

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another daemon holds the lock.
    #[error("another gitproc daemon (pid {}) holds {}", fmt_pid(*pid), dir.display())]
    Held {
        /// Pid recorded by the holder; `None` if it had not written it yet or it is unreadable.
        pid: Option<i32>,
        /// The state directory.
        dir: PathBuf,
    },
    /// The lock file could not be opened, locked or written.
    #[error("cannot {op} lock file {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The lock file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

fn fmt_pid(pid: Option<i32>) -> String {
    pid.map_or_else(|| "unknown".to_owned(), |p| p.to_string())
}

/// The held lock; released when dropped (or when the process exits).
#[derive(Debug)]
pub struct DaemonLock {
    file: File,
    /// The locked state directory (see the module docs); held open for the lock's life.
    _dir: File,
    path: PathBuf,
}

impl DaemonLock {
    /// Takes the exclusive lock on `<state_dir>/daemon.lock` without waiting, and writes this
    /// process's pid into it. The state directory must exist (see
    /// [`super::ensure_state_dir`]).
    pub fn acquire(state_dir: &Path) -> Result<DaemonLock, LockError> {
        let path = state_dir.join(LOCK_FILE);
        let io_err = |op: &'static str| {
            let path = path.clone();
            move |source| LockError::Io { op, path, source }
        };
        let held = |file: &mut File| LockError::Held {
            pid: read_pid(file),
            dir: state_dir.to_owned(),
        };
        let dir_err = io_err;
        let dir = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(state_dir)
            .map_err(dir_err("open the state directory for"))?;
        // No truncate: the file may belong to a live holder whose pid we want to report.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io_err("open"))?;
        match dir.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(held(&mut file)),
            Err(TryLockError::Error(e)) => return Err(dir_err("lock the state directory for")(e)),
        }
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(held(&mut file)),
            Err(TryLockError::Error(e)) => return Err(io_err("lock")(e)),
        }
        file.set_len(0).map_err(io_err("truncate"))?;
        file.rewind().map_err(io_err("rewind"))?;
        writeln!(file, "{}", std::process::id()).map_err(io_err("write pid to"))?;
        Ok(DaemonLock {
            file,
            _dir: dir,
            path,
        })
    }

    /// Path of the lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open, locked file (kept open for the daemon's lifetime).
    pub fn file(&self) -> &File {
        &self.file
    }
}

fn read_pid(file: &mut File) -> Option<i32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok().filter(|p: &i32| *p > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deleting_the_lock_file_does_not_release_the_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = DaemonLock::acquire(dir.path()).expect("first lock");
        std::fs::remove_file(first.path()).expect("remove daemon.lock");
        match DaemonLock::acquire(dir.path()) {
            Err(LockError::Held { .. }) => {}
            other => panic!("a second lock was admitted after deleting daemon.lock: {other:?}"),
        }
        drop(first);
        DaemonLock::acquire(dir.path()).expect("free again once the holder is gone");
    }

    #[test]
    fn held_message_is_exact() {
        let e = LockError::Held {
            pid: Some(42),
            dir: "/var/lib/gitproc".into(),
        };
        assert_eq!(
            e.to_string(),
            "another gitproc daemon (pid 42) holds /var/lib/gitproc"
        );
        let e = LockError::Held {
            pid: None,
            dir: "/d".into(),
        };
        assert_eq!(
            e.to_string(),
            "another gitproc daemon (pid unknown) holds /d"
        );
    }
}

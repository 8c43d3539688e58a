//! pidfds: exit notification for processes that are not our children (adopted from the
//! state file after a daemon restart, or main pids read from a PIDFile=).
//!
//! [`PidfdWatcher`] runs one thread ([`crate::sys::worker`]) that polls all watched pidfds
//! and is woken to take new ones; each exit is sent once as the pid on a crossbeam channel.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crossbeam_channel::{Receiver, Sender};

use crate::sys::procstat;
use crate::sys::worker::{Inbox, Worker};

/// `pidfd_open(2)`: a close-on-exec fd that becomes readable when `pid` exits.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: raw syscall with integer arguments; on success it returns a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor returned by the kernel (pidfds are O_CLOEXEC).
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// A pidfd to watch, with its pid.
struct Watch(i32, OwnedFd);

/// One thread watching many pidfds. Dropping it stops the thread.
pub struct PidfdWatcher {
    worker: Worker<Watch>,
    exits: Sender<i32>,
}

impl PidfdWatcher {
    /// Starts the watcher thread. Exits arrive on the returned receiver as pids.
    pub fn start() -> io::Result<(PidfdWatcher, Receiver<i32>)> {
        let (exit_tx, exit_rx) = crossbeam_channel::unbounded();
        let thread_exits = exit_tx.clone();
        let worker = Worker::spawn("gitproc-pidfd", "pidfd watcher", move |inbox| {
            watch_loop(inbox, thread_exits)
        })?;
        Ok((
            PidfdWatcher {
                worker,
                exits: exit_tx,
            },
            exit_rx,
        ))
    }

    /// Watches `pid` if it is still the process started at `start_time`. If it is already
    /// gone (or the pid was reused) its exit is reported at once, so the caller always gets
    /// exactly one notification.
    pub fn watch(&self, pid: i32, start_time: u64) -> io::Result<()> {
        let fd = match pidfd_open(pid) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                let _ = self.exits.send(pid);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        // Checked after opening: the pidfd pins the identity we verify.
        match procstat::start_time(pid) {
            Ok(t) if t == start_time => {}
            _ => {
                let _ = self.exits.send(pid);
                return Ok(());
            }
        }
        self.worker.send(Watch(pid, fd))
    }
}

fn watch_loop(inbox: Inbox<Watch>, exits: Sender<i32>) {
    let mut watched: HashMap<i32, OwnedFd> = HashMap::new();
    loop {
        let mut pids = Vec::with_capacity(watched.len());
        let mut fds = Vec::with_capacity(watched.len() + 1);
        for (pid, fd) in &watched {
            pids.push(*pid);
            fds.push(libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let woken = match inbox.poll(&mut fds) {
            Ok(woken) => woken,
            Err(e) => {
                tracing::error!("pidfd watcher: poll failed: {e}");
                return;
            }
        };
        if woken {
            let running = inbox.take(|Watch(pid, fd)| {
                watched.insert(pid, fd);
            });
            if !running {
                return;
            }
        }
        for (p, pid) in fds.iter().zip(&pids) {
            if p.revents != 0 && watched.remove(pid).is_some() {
                let _ = exits.send(*pid);
            }
        }
    }
}

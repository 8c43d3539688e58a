//! pidfds: exit notification for processes that are not our children (adopted from the
//! state file after a daemon restart, or main pids read from a PIDFile=).
//!
//! [`PidfdWatcher`] runs one thread that polls all watched pidfds plus an eventfd used to
//! hand it new ones; each exit is sent once as the pid on a crossbeam channel.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use super::procstat;

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

enum Cmd {
    Watch(i32, OwnedFd),
    Unwatch(i32),
}

/// One thread watching many pidfds.
pub struct PidfdWatcher {
    cmds: Sender<Cmd>,
    exits: Sender<i32>,
    wake: OwnedFd,
    thread: Option<JoinHandle<()>>,
}

impl PidfdWatcher {
    /// Starts the watcher thread. Exits arrive on the returned receiver as pids.
    pub fn start() -> io::Result<(PidfdWatcher, Receiver<i32>)> {
        let wake = eventfd()?;
        let thread_wake = wake.try_clone()?;
        let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
        let (exit_tx, exit_rx) = crossbeam_channel::unbounded();
        let thread_exits = exit_tx.clone();
        let thread = std::thread::Builder::new()
            .name("gitproc-pidfd".into())
            .spawn(move || watch_loop(thread_wake, cmd_rx, thread_exits))?;
        Ok((
            PidfdWatcher {
                cmds: cmd_tx,
                exits: exit_tx,
                wake,
                thread: Some(thread),
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
        self.send(Cmd::Watch(pid, fd))
    }

    /// Stops watching `pid` (no notification for it afterwards).
    pub fn unwatch(&self, pid: i32) -> io::Result<()> {
        self.send(Cmd::Unwatch(pid))
    }

    fn send(&self, cmd: Cmd) -> io::Result<()> {
        self.cmds
            .send(cmd)
            .map_err(|_| io::Error::other("pidfd watcher thread has stopped"))?;
        wake(&self.wake)
    }
}

impl Drop for PidfdWatcher {
    fn drop(&mut self) {
        // Closing the command channel and waking the thread makes it return.
        let (dead, _) = crossbeam_channel::bounded(0);
        self.cmds = dead;
        let _ = wake(&self.wake);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd returns a new fd or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(crate) fn wake(fd: &OwnedFd) -> io::Result<()> {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a valid u64 to an eventfd.
    let r = unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    if r < 0 {
        let e = io::Error::last_os_error();
        // EAGAIN: the counter is saturated, the reader is woken anyway.
        if e.raw_os_error() != Some(libc::EAGAIN) {
            return Err(e);
        }
    }
    Ok(())
}

pub(crate) fn drain(fd: &OwnedFd) {
    let mut v: u64 = 0;
    // SAFETY: reads 8 bytes into a valid u64 from a non-blocking eventfd.
    unsafe { libc::read(fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
}

fn watch_loop(wake_fd: OwnedFd, cmds: Receiver<Cmd>, exits: Sender<i32>) {
    let mut watched: HashMap<i32, OwnedFd> = HashMap::new();
    loop {
        let mut pids = Vec::with_capacity(watched.len());
        let mut fds = Vec::with_capacity(watched.len() + 1);
        fds.push(libc::pollfd {
            fd: wake_fd.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        for (pid, fd) in &watched {
            pids.push(*pid);
            fds.push(libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // SAFETY: fds is a valid array of pollfd for its length.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if r < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            tracing::error!("pidfd watcher: poll failed: {}", io::Error::last_os_error());
            return;
        }
        // Commands first: an `unwatch` sent before the process died must win over its exit,
        // which this same poll may report.
        if fds[0].revents != 0 {
            drain(&wake_fd);
            loop {
                match cmds.try_recv() {
                    Ok(Cmd::Watch(pid, fd)) => {
                        watched.insert(pid, fd);
                    }
                    Ok(Cmd::Unwatch(pid)) => {
                        watched.remove(&pid);
                    }
                    Err(crossbeam_channel::TryRecvError::Empty) => break,
                    Err(crossbeam_channel::TryRecvError::Disconnected) => return,
                }
            }
        }
        for (i, p) in fds.iter().enumerate().skip(1) {
            let pid = pids[i - 1];
            if p.revents != 0 && watched.remove(&pid).is_some() {
                let _ = exits.send(pid);
            }
        }
    }
}

//! The log collector: ONE thread, one epoll set over every service's stdout/stderr pipe.
//!
//! Flow control: for each ready pipe the thread reads at most one chunk, writes the lines
//! to the unit's file synchronously, then moves on to the next ready pipe (level-triggered
//! epoll, so a pipe that still has data comes back on the next round). Nothing is buffered
//! beyond one chunk and one partial line per pipe: a service that writes faster than its
//! file takes it fills its own pipe and blocks in write(2) (backpressure), while the other
//! services' pipes are served every round. The daemon never writes into these pipes.
//! Lines are dropped only when the file write fails (disk full): see [`super::rotate`].
//!
//! Cost of a flood: a `yes`-style writer is read in chunks of up to [`CHUNK`] from a pipe
//! enlarged to [`PIPE_BYTES`] (one read and one write(2) per chunk, newlines found with
//! `memchr`), and each pipe may write at most [`LogConfig::rate_bytes_per_s`] to its log
//! per second: beyond that its pipe is taken out of the epoll set until the second is
//! over, so the service blocks in write(2) instead of taking the daemon's CPU (nothing is
//! dropped; the service is slowed to what its log is allowed to take).

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::Sender;

use super::format_timestamp;
use super::rotate::RotatingFile;
use crate::sys::retry_eintr;
use crate::sys::worker::{Inbox, Worker};

/// Default rotation size: 10 MiB.
const DEFAULT_MAX_BYTES: u64 = 10 << 20;
/// Default number of rotated files kept.
const DEFAULT_KEEP: u32 = 5;
/// Default output budget of one pipe: 4 MiB of log per second.
const DEFAULT_RATE: u64 = 4 << 20;
/// Bytes read from one pipe per round.
const CHUNK: usize = 256 << 10;
/// Capacity asked for each pipe (F_SETPIPE_SZ; the default is 64 KiB): a burst up to this
/// size does not block the service, and a flood is read in few large chunks.
const PIPE_BYTES: i32 = 1 << 20;
/// The window of [`LogConfig::rate_bytes_per_s`].
const RATE_WINDOW: Duration = Duration::from_secs(1);
/// A line longer than this without a newline is written in pieces (systemd's LineMax=).
const MAX_LINE: usize = 48 << 10;

/// Where and how logs are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `<state-dir>/logs`; created if missing.
    pub dir: PathBuf,
    /// Rotate when `<unit>.log` would exceed this size.
    pub max_bytes: u64,
    /// Rotated files kept (`<unit>.log.1` ... `.keep`).
    pub keep: u32,
    /// Most bytes one pipe may write to its log per second (default 4 MiB) before its pipe
    /// is paused for the rest of the second (backpressure, no loss).
    pub rate_bytes_per_s: u64,
}

impl LogConfig {
    /// `dir` with the default size (10 MiB) and count (5).
    pub fn new(dir: impl Into<PathBuf>) -> LogConfig {
        LogConfig {
            dir: dir.into(),
            max_bytes: DEFAULT_MAX_BYTES,
            keep: DEFAULT_KEEP,
            rate_bytes_per_s: DEFAULT_RATE,
        }
    }
}

/// Which output of the service a pipe carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

enum Cmd {
    Add(String, OwnedFd, Stream),
    Note(String, String),
    Barrier(Sender<()>),
}

/// Handle to the collector thread ([`crate::sys::worker`]). Dropping it drains what is
/// readable and stops it.
pub struct LogCollector {
    worker: Worker<Cmd>,
    dropped: Arc<Mutex<HashMap<String, u64>>>,
}

impl LogCollector {
    /// Creates the log directory and starts the collector thread.
    pub fn start(cfg: LogConfig) -> io::Result<LogCollector> {
        std::fs::create_dir_all(&cfg.dir).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("log directory {}: {e}", cfg.dir.display()),
            )
        })?;
        // SAFETY: epoll_create1 returns a new fd or -1.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh fd we own.
        let ep = unsafe { OwnedFd::from_raw_fd(ep) };
        let dropped = Arc::new(Mutex::new(HashMap::new()));
        let mut collector = Collector {
            cfg,
            ep,
            sources: Vec::new(),
            free: Vec::new(),
            paused: Vec::new(),
            files: HashMap::new(),
            dropped: Arc::clone(&dropped),
            buf: vec![0u8; CHUNK],
            out: Vec::with_capacity(CHUNK * 2),
        };
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
        let worker = Worker::spawn("gitproc-logs", "log collector", move |inbox| {
            let registered = epoll_add(&collector.ep, inbox.fd(), WAKE_TOKEN);
            let ok = registered.is_ok();
            let _ = ready_tx.send(registered);
            if ok {
                collector.run(&inbox);
            }
        })?;
        ready_rx
            .recv()
            .map_err(|_| io::Error::other("log collector thread has stopped"))??;
        Ok(LogCollector { worker, dropped })
    }

    /// Collects `fd` (a pipe's read end) into `<dir>/<unit>.log` until EOF.
    pub fn add(&self, unit: &str, fd: OwnedFd, stream: Stream) -> io::Result<()> {
        set_nonblocking(&fd)?;
        // Best effort: over /proc/sys/fs/pipe-max-size (unprivileged) the pipe stays as is.
        // SAFETY: fcntl on a valid fd.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BYTES) };
        self.send(Cmd::Add(unit.to_string(), fd, stream))
    }

    /// Appends one line written by gitproc itself (e.g. `exec failed: ...`) to the unit's
    /// log, in order with the service's own lines.
    pub fn note(&self, unit: &str, line: &str) -> io::Result<()> {
        self.send(Cmd::Note(unit.to_string(), line.to_string()))
    }

    /// Waits until the collector has handled every command sent before (tests, shutdown).
    pub fn barrier(&self) -> io::Result<()> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.send(Cmd::Barrier(tx))?;
        rx.recv()
            .map_err(|_| io::Error::other("log collector thread has stopped"))
    }

    /// Lines dropped for `unit` since start (write failures such as a full disk).
    pub fn dropped_lines(&self, unit: &str) -> u64 {
        self.dropped
            .lock()
            .map(|m| m.get(unit).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    fn send(&self, cmd: Cmd) -> io::Result<()> {
        self.worker.send(cmd)
    }
}

const WAKE_TOKEN: u64 = u64::MAX;

fn epoll_add(ep: &OwnedFd, fd: i32, token: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
        u64: token,
    };
    // SAFETY: valid epoll fd, fd and event.
    if unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl on a valid fd.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

struct Source {
    unit: String,
    fd: OwnedFd,
    #[allow(dead_code)]
    stream: Stream,
    /// Bytes after the last newline, waiting for the rest of their line.
    partial: Vec<u8>,
    /// Start of the current rate window and the log bytes written in it.
    window_start: Instant,
    spent: u64,
    /// Out of the epoll set until this instant (over its rate).
    paused_until: Option<Instant>,
}

/// The collector thread's state.
struct Collector {
    cfg: LogConfig,
    ep: OwnedFd,
    /// Indexed by epoll token.
    sources: Vec<Option<Source>>,
    free: Vec<usize>,
    /// Sources over their rate, out of the epoll set until their `paused_until`.
    paused: Vec<usize>,
    /// Open log files and how many pipes feed each.
    files: HashMap<String, (RotatingFile, usize)>,
    dropped: Arc<Mutex<HashMap<String, u64>>>,
    buf: Vec<u8>,
    out: Vec<u8>,
}

impl Collector {
    fn run(&mut self, inbox: &Inbox<Cmd>) {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        loop {
            let timeout = self.resume_paused(Instant::now());
            // SAFETY: events is a valid buffer of its length.
            let n = match retry_eintr(|| unsafe {
                libc::epoll_wait(
                    self.ep.as_raw_fd(),
                    events.as_mut_ptr(),
                    events.len() as i32,
                    timeout,
                )
            }) {
                Ok(n) => n as usize,
                Err(e) => {
                    tracing::error!("log collector: epoll_wait failed: {e}");
                    return;
                }
            };
            let prefix = format!("{} ", format_timestamp(SystemTime::now()));
            let mut commands = false;
            for ev in &events[..n] {
                let token = ev.u64;
                if token == WAKE_TOKEN {
                    commands = true;
                } else {
                    self.read_source(token as usize, &prefix);
                }
            }
            if commands && !inbox.take(|cmd| self.handle_command(cmd, &prefix)) {
                // The handle was dropped.
                self.shutdown(&prefix);
                return;
            }
        }
    }

    fn handle_command(&mut self, cmd: Cmd, prefix: &str) {
        match cmd {
            Cmd::Add(unit, fd, stream) => self.add(unit, fd, stream),
            Cmd::Note(unit, line) => {
                let mut out = Vec::with_capacity(prefix.len() + line.len() + 1);
                push_line(&mut out, prefix, line.as_bytes());
                let (file, _) = self.file_for(&unit);
                let n = file.append(prefix, &out);
                self.publish_dropped(&unit, n);
                self.release_if_unused(&unit);
            }
            Cmd::Barrier(done) => {
                let _ = done.send(());
            }
        }
    }

    fn file_for(&mut self, unit: &str) -> &mut (RotatingFile, usize) {
        let cfg = &self.cfg;
        self.files.entry(unit.to_string()).or_insert_with(|| {
            (
                RotatingFile::new(&cfg.dir, unit, cfg.max_bytes, cfg.keep),
                0,
            )
        })
    }

    fn release_if_unused(&mut self, unit: &str) {
        // Keep a file with unreported drops open so the report is not lost.
        if let Some((f, users)) = self.files.get(unit)
            && *users == 0
            && f.pending_dropped() == 0
        {
            self.files.remove(unit);
        }
    }

    fn add(&mut self, unit: String, fd: OwnedFd, stream: Stream) {
        let idx = self.free.pop().unwrap_or_else(|| {
            self.sources.push(None);
            self.sources.len() - 1
        });
        if let Err(e) = epoll_add(&self.ep, fd.as_raw_fd(), idx as u64) {
            tracing::error!("log collector: cannot watch the output of {unit}: {e}");
            self.free.push(idx);
            return;
        }
        self.file_for(&unit).1 += 1;
        self.sources[idx] = Some(Source {
            unit,
            fd,
            stream,
            partial: Vec::new(),
            window_start: Instant::now(),
            spent: 0,
            paused_until: None,
        });
    }

    /// Reads one chunk from a ready pipe and writes its complete lines.
    fn read_source(&mut self, idx: usize, prefix: &str) {
        let Some(Some(src)) = self.sources.get_mut(idx) else {
            return;
        };
        // No more than the rest of this second's budget (at least a page, so a pipe over
        // its rate still makes progress once resumed): the log of one window exceeds the
        // rate by at most one read's worth of lines.
        let left = self
            .cfg
            .rate_bytes_per_s
            .saturating_sub(src.spent)
            .max(4096);
        let len = self
            .buf
            .len()
            .min(usize::try_from(left).unwrap_or(usize::MAX));
        // SAFETY: reads into our own buffer, at most its length.
        let n = unsafe { libc::read(src.fd.as_raw_fd(), self.buf.as_mut_ptr().cast(), len) };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => return,
                _ => {
                    tracing::warn!("log collector: reading the output of {}: {e}", src.unit);
                }
            }
        }
        if n <= 0 {
            self.close_source(idx, prefix);
            return;
        }
        let data = &self.buf[..n as usize];
        self.out.clear();
        let mut rest = data;
        while let Some(pos) = memchr::memchr(b'\n', rest) {
            if src.partial.is_empty() {
                push_line(&mut self.out, prefix, &rest[..pos]);
            } else {
                src.partial.extend_from_slice(&rest[..pos]);
                push_line(&mut self.out, prefix, &src.partial);
                src.partial.clear();
            }
            rest = &rest[pos + 1..];
        }
        src.partial.extend_from_slice(rest);
        while src.partial.len() >= MAX_LINE {
            let line: Vec<u8> = src.partial.drain(..MAX_LINE).collect();
            push_line(&mut self.out, prefix, &line);
        }
        if self.out.is_empty() {
            return;
        }
        let now = Instant::now();
        if now.saturating_duration_since(src.window_start) >= RATE_WINDOW {
            src.window_start = now;
            src.spent = 0;
        }
        src.spent = src.spent.saturating_add(self.out.len() as u64);
        let over = src.spent >= self.cfg.rate_bytes_per_s && src.paused_until.is_none();
        if over {
            let until = src.window_start + RATE_WINDOW;
            src.paused_until = Some(until);
            epoll_del(&self.ep, &src.fd);
            self.paused.push(idx);
        }
        let unit = src.unit.clone();
        let out = std::mem::take(&mut self.out);
        let (file, _) = self.file_for(&unit);
        let dropped = file.append(prefix, &out);
        self.out = out;
        self.publish_dropped(&unit, dropped);
    }

    /// Puts paused sources whose window is over back into the epoll set; returns the
    /// epoll_wait timeout in ms until the next one is due (-1: none paused).
    fn resume_paused(&mut self, now: Instant) -> i32 {
        let mut next: Option<Instant> = None;
        let mut i = 0;
        while i < self.paused.len() {
            let idx = self.paused[i];
            let Some(Some(src)) = self.sources.get_mut(idx) else {
                self.paused.swap_remove(i);
                continue;
            };
            match src.paused_until {
                Some(until) if until > now => {
                    next = Some(next.map_or(until, |n| n.min(until)));
                    i += 1;
                }
                _ => {
                    src.paused_until = None;
                    src.window_start = now;
                    src.spent = 0;
                    if let Err(e) = epoll_add(&self.ep, src.fd.as_raw_fd(), idx as u64) {
                        tracing::error!(
                            "log collector: cannot watch the output of {} again: {e}",
                            src.unit
                        );
                    }
                    self.paused.swap_remove(i);
                }
            }
        }
        match next {
            None => -1,
            // Rounded up so the wake-up is never early.
            Some(t) => {
                let ms = t.saturating_duration_since(now).as_micros().div_ceil(1000);
                i32::try_from(ms).unwrap_or(i32::MAX).max(1)
            }
        }
    }

    fn close_source(&mut self, idx: usize, prefix: &str) {
        let Some(src) = self.sources.get_mut(idx).and_then(Option::take) else {
            return;
        };
        self.paused.retain(|&p| p != idx);
        self.free.push(idx);
        epoll_del(&self.ep, &src.fd);
        let (file, users) = self.file_for(&src.unit);
        let mut dropped = 0;
        if !src.partial.is_empty() {
            let mut out = Vec::new();
            push_line(&mut out, prefix, &src.partial);
            dropped = file.append(prefix, &out);
        }
        *users = users.saturating_sub(1);
        self.publish_dropped(&src.unit, dropped);
        self.release_if_unused(&src.unit);
    }

    fn publish_dropped(&mut self, unit: &str, n: u64) {
        if n == 0 {
            return;
        }
        if let Ok(mut m) = self.dropped.lock() {
            *m.entry(unit.to_string()).or_insert(0) += n;
        }
    }

    /// Drains what the pipes still hold (without blocking) and stops.
    fn shutdown(&mut self, prefix: &str) {
        for idx in 0..self.sources.len() {
            // Bounded: at most 16 chunks per pipe, a writer that keeps writing is cut off.
            for _ in 0..16 {
                let before = self.sources[idx].as_ref().map(|s| s.partial.len());
                if before.is_none() {
                    break;
                }
                let n = self.read_probe(idx);
                if n <= 0 {
                    break;
                }
                self.read_source(idx, prefix);
            }
            self.close_source(idx, prefix);
        }
    }

    /// Whether a pipe has data right now (>0), is empty (0) or at EOF/error (<0).
    fn read_probe(&self, idx: usize) -> i32 {
        let Some(Some(src)) = self.sources.get(idx) else {
            return -1;
        };
        let mut p = libc::pollfd {
            fd: src.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        let r = unsafe { libc::poll(&mut p, 1, 0) };
        if r > 0 && p.revents & libc::POLLIN != 0 {
            1
        } else {
            0
        }
    }
}

fn push_line(out: &mut Vec<u8>, prefix: &str, line: &[u8]) {
    out.extend_from_slice(prefix.as_bytes());
    out.extend_from_slice(line);
    out.push(b'\n');
}

/// Takes `fd` out of the epoll set `ep` (an fd that is not in it is no error worth a word:
/// the collector only removes what it added).
fn epoll_del(ep: &impl AsRawFd, fd: &impl AsRawFd) {
    // SAFETY: EPOLL_CTL_DEL on fds we own; the event pointer may be null for DEL.
    unsafe {
        libc::epoll_ctl(
            ep.as_raw_fd(),
            libc::EPOLL_CTL_DEL,
            fd.as_raw_fd(),
            std::ptr::null_mut(),
        )
    };
}

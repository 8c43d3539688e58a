//! The control socket server: accepts connections, admits only permitted peers, frames JSON
//! lines and hands each request to the event loop with a reply channel.
//!
//! Each connection gets its own small thread, so a slow, silent or vanished client only
//! ever blocks itself; the event loop never reads from or writes to a socket. Requests are
//! bounded in size, a request line must be complete within [`REQUEST_DEADLINE`] (counted
//! for the whole line, not per read), connections are bounded overall and per peer uid
//! ([`Limits`]), and the accept thread refuses the excess at once instead of waiting.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};

use super::protocol::{self, MAX_REQUEST_BYTES, Reply, Verb};

/// Most connections served at once (fewer when the fd limit is low: see [`Limits`]).
pub const MAX_CLIENTS: usize = 1024;
/// Time a client has to deliver one whole request line, counted from the accept (or from
/// the previous reply), not per read: a client trickling a byte a second is cut off just
/// like a silent one.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// Time a client has to take a reply before it is dropped.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(5);
/// Stack of a connection thread: it only frames lines and parses one bounded request
/// (serde_json's recursion limit keeps that shallow), so hundreds of them stay cheap.
const CONN_STACK: usize = 256 << 10;

/// How many connections are admitted: overall, and per peer uid. One uid gets at most
/// three quarters of the slots, so a single misbehaving user (even the daemon's own) leaves
/// room for another (root, the operator group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub total: usize,
    pub per_uid: usize,
}

impl Limits {
    /// Limits for a process whose soft `RLIMIT_NOFILE` is `fd_limit`: 256 fds are kept for
    /// the rest of the daemon (pipes, pidfds, log files, the state writer).
    pub fn for_fd_limit(fd_limit: u64) -> Limits {
        let usable = usize::try_from(fd_limit.saturating_sub(256)).unwrap_or(usize::MAX);
        let total = usable.clamp(16, MAX_CLIENTS);
        Limits {
            total,
            per_uid: (total * 3 / 4).max(1),
        }
    }

    /// The limits for this process's current fd limit.
    pub fn current() -> Limits {
        let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map(|(soft, _)| soft)
            .unwrap_or(1024);
        Limits::for_fd_limit(soft)
    }
}

/// Who is on the other end of a connection (from SO_PEERCRED).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// One request for the event loop; it answers on `reply` (now or later, e.g. when a job ends).
#[derive(Debug)]
pub struct ControlRequest {
    pub verb: Verb,
    pub peer: Peer,
    /// The peer's user name for the jobs that record who asked (`stop` leaves an override
    /// naming the operator): looked up here, on the connection's thread, because an NSS
    /// lookup may wait on a directory server and the event loop must not.
    pub peer_name: Option<String>,
    pub reply: Sender<Reply>,
}

/// Who may connect besides root.
#[derive(Debug, Clone)]
pub struct AccessPolicy {
    /// The daemon's own effective uid.
    pub owner_uid: u32,
    /// Members of this group (primary or supplementary) are admitted too.
    pub group_gid: Option<u32>,
}

impl AccessPolicy {
    /// Root and the daemon's own user always; a configured group's members too.
    pub fn admits(&self, peer: &Peer) -> bool {
        if peer.uid == 0 || peer.uid == self.owner_uid {
            return true;
        }
        match self.group_gid {
            Some(gid) => peer.gid == gid || supplementary_groups(peer.pid).contains(&gid),
            None => false,
        }
    }
}

/// The supplementary groups of a process, from `/proc/PID/status`.
fn supplementary_groups(pid: i32) -> Vec<u32> {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("Groups:"))
        .map(|groups| {
            groups
                .split_whitespace()
                .filter_map(|g| g.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The listening side. Dropping it does not stop the accept thread; the daemon exits instead.
pub struct Server {
    pub path: PathBuf,
}

/// Binds the socket (replacing a stale one: the caller holds the daemon lock, so no live
/// daemon owns it), sets its mode, and starts the accept thread.
pub fn start(
    path: &Path,
    policy: AccessPolicy,
    to_loop: Sender<ControlRequest>,
) -> std::io::Result<Server> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    let listener = UnixListener::bind(path)?;
    let mode = if policy.group_gid.is_some() {
        0o660
    } else {
        0o600
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    if let Some(gid) = policy.group_gid {
        std::os::unix::fs::chown(path, None, Some(gid))?;
    }
    let policy = Arc::new(policy);
    let slots = Arc::new(Slots::new(Limits::current()));
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || accept_loop(listener, policy, to_loop, slots))?;
    Ok(Server {
        path: path.to_path_buf(),
    })
}

/// The accept thread. It never waits on a client: refusals (permission, limits) are a
/// reply written without blocking, then a close. Each admitted connection gets a small
/// thread of its own that only ever blocks itself, bounded by [`Slots`] and by
/// [`REQUEST_DEADLINE`]; a single poll thread would bound the same but needs its own
/// framing and a way to wait for the loop's (possibly late) replies.
fn accept_loop(
    listener: UnixListener,
    policy: Arc<AccessPolicy>,
    to_loop: Sender<ControlRequest>,
    slots: Arc<Slots>,
) {
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(stream) => stream,
            Err(err) => {
                // EMFILE and friends: back off instead of spinning on the same error.
                tracing::warn!("control: accept failed: {err}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let peer = match getsockopt(&stream, PeerCredentials) {
            Ok(cred) => Peer {
                pid: cred.pid(),
                uid: cred.uid(),
                gid: cred.gid(),
            },
            Err(err) => {
                tracing::warn!("control: cannot read peer credentials: {err}; connection dropped");
                continue;
            }
        };
        if !policy.admits(&peer) {
            tracing::warn!(
                "control: permission denied for uid {} (pid {}); only root, uid {} or the configured group may connect",
                peer.uid,
                peer.pid,
                policy.owner_uid
            );
            refuse(
                stream,
                "permission denied: only root, the daemon's user or the control group may use this socket",
            );
            continue;
        }
        if let Err(full) = slots.acquire(peer.uid) {
            refuse(stream, &full.message(peer.uid));
            continue;
        }
        let to_loop = to_loop.clone();
        let conn_slots = Arc::clone(&slots);
        let uid = peer.uid;
        let spawned = std::thread::Builder::new()
            .name("control-conn".into())
            .stack_size(CONN_STACK)
            .spawn(move || {
                serve(stream, peer, &to_loop);
                conn_slots.release(uid);
            });
        if spawned.is_err() {
            slots.release(uid);
            tracing::warn!("control: cannot start a connection thread; connection dropped");
        }
    }
}

/// Answers a refused client with one error line, without ever blocking (a fresh socket's
/// buffer takes one short line; if it does not, the client just sees the close).
fn refuse(mut stream: UnixStream, message: &str) {
    if stream.set_nonblocking(true).is_ok() {
        let _ = write_reply(&mut stream, &Reply::error(1, message));
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Full {
    Total(usize),
    Uid(usize),
}

impl Full {
    fn message(self, uid: u32) -> String {
        match self {
            Full::Total(n) => {
                tracing::warn!("control: {n} connections open; refused a client of uid {uid}");
                format!("too many clients (limit {n}); retry")
            }
            Full::Uid(n) => {
                tracing::warn!("control: uid {uid} has {n} connections open; refused another");
                format!("too many clients of uid {uid} (limit {n} per user); retry")
            }
        }
    }
}

/// Open connections, overall and per peer uid.
struct Slots {
    limits: Limits,
    open: Mutex<(usize, HashMap<u32, usize>)>,
}

impl Slots {
    fn new(limits: Limits) -> Slots {
        Slots {
            limits,
            open: Mutex::new((0, HashMap::new())),
        }
    }

    /// Takes a slot for `uid` at once, or says which limit is reached.
    fn acquire(&self, uid: u32) -> Result<(), Full> {
        let mut g = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let (total, per_uid) = &mut *g;
        if *total >= self.limits.total {
            return Err(Full::Total(self.limits.total));
        }
        let mine = per_uid.entry(uid).or_insert(0);
        if *mine >= self.limits.per_uid {
            return Err(Full::Uid(self.limits.per_uid));
        }
        *mine += 1;
        *total += 1;
        Ok(())
    }

    fn release(&self, uid: u32) {
        let mut g = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let (total, per_uid) = &mut *g;
        *total = total.saturating_sub(1);
        if let Some(mine) = per_uid.get_mut(&uid) {
            *mine = mine.saturating_sub(1);
            if *mine == 0 {
                per_uid.remove(&uid);
            }
        }
    }
}

/// Serves one connection: request lines in, reply lines out, until EOF, a missed
/// [`REQUEST_DEADLINE`] or an error. Malformed requests get an error reply and the
/// connection stays usable.
fn serve(stream: UnixStream, peer: Peer, to_loop: &Sender<ControlRequest>) {
    let _ = stream.set_write_timeout(Some(WRITE_DEADLINE));
    let mut lines = LineReader::new(stream);
    loop {
        let deadline = Instant::now() + REQUEST_DEADLINE;
        let line = match lines.next_line(deadline) {
            Ok(Some(line)) => line,
            Ok(None) | Err(LineError::Io) => return,
            Err(LineError::TooLong) => {
                let _ = write_reply(
                    &mut lines.stream,
                    &Reply::error(
                        1,
                        format!("request too large (limit {MAX_REQUEST_BYTES} bytes)"),
                    ),
                );
                return;
            }
            Err(LineError::Deadline) => {
                let _ = lines.stream.set_nonblocking(true);
                let _ = write_reply(
                    &mut lines.stream,
                    &Reply::error(
                        1,
                        format!(
                            "no complete request line within {} s; connection closed",
                            REQUEST_DEADLINE.as_secs()
                        ),
                    ),
                );
                return;
            }
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let reply = match protocol::parse_request(&line) {
            Ok(request) => dispatch(request.verb, peer, to_loop),
            Err(message) => Reply::error(1, message),
        };
        if write_reply(&mut lines.stream, &reply).is_err() {
            return;
        }
    }
}

fn dispatch(verb: Verb, peer: Peer, to_loop: &Sender<ControlRequest>) -> Reply {
    let (reply_tx, reply_rx): (Sender<Reply>, Receiver<Reply>) = bounded(1);
    if to_loop
        .send(ControlRequest {
            peer_name: matches!(
                verb,
                Verb::Start(_)
                    | Verb::Stop(_)
                    | Verb::Restart(_)
                    | Verb::Reload(_)
                    | Verb::Freeze { .. }
                    | Verb::Thaw
            )
            .then(|| crate::runtime::host::user_name(peer.uid)),
            verb,
            peer,
            reply: reply_tx,
        })
        .is_err()
    {
        return Reply::error(1, "the daemon is shutting down");
    }
    reply_rx
        .recv()
        .unwrap_or_else(|_| Reply::error(1, "the daemon dropped the request (shutting down?)"))
}

enum LineError {
    TooLong,
    Deadline,
    Io,
}

/// Frames `\n`-terminated lines of at most [`MAX_REQUEST_BYTES`] under a whole-line
/// deadline: each read waits only for what is left of it.
struct LineReader {
    stream: UnixStream,
    buf: Vec<u8>,
}

impl LineReader {
    fn new(stream: UnixStream) -> LineReader {
        LineReader {
            stream,
            buf: Vec::new(),
        }
    }

    /// The next line (without its `\n`); `None` at a clean EOF. A line cut off by EOF
    /// counts if it is non-empty (a client may close its write half after the request).
    fn next_line(&mut self, deadline: Instant) -> Result<Option<Vec<u8>>, LineError> {
        let mut scanned = 0;
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(pos) = self.buf[scanned..].iter().position(|&b| b == b'\n') {
                let end = scanned + pos;
                if end > MAX_REQUEST_BYTES {
                    return Err(LineError::TooLong);
                }
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                return Ok(Some(line));
            }
            scanned = self.buf.len();
            if self.buf.len() > MAX_REQUEST_BYTES {
                return Err(LineError::TooLong);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(LineError::Deadline);
            }
            // set_read_timeout rejects zero; `left` is not zero here.
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|_| LineError::Io)?;
            match self.stream.read(&mut chunk) {
                Ok(0) if self.buf.is_empty() => return Ok(None),
                Ok(0) => return Ok(Some(std::mem::take(&mut self.buf))),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(LineError::Deadline);
                }
                Err(_) => return Err(LineError::Io),
            }
        }
    }
}

fn write_reply(stream: &mut UnixStream, reply: &Reply) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    stream.write_all(&bytes)
}

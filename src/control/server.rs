//! The control socket server: accepts connections, admits only permitted peers, frames JSON
//! lines and hands each request to the event loop with a reply channel.
//!
//! Each connection gets its own small thread, so a slow, silent or vanished client only
//! ever blocks itself; the event loop never reads from or writes to a socket. Requests are
//! bounded in size and a half-written request times out.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};

use super::protocol::{self, MAX_REQUEST_BYTES, Reply, Verb};

/// Connections served at once. One more waits up to [`SLOT_WAIT`] for a slot (a client that
/// just got its reply may not have closed yet), then is answered with an error and closed.
pub const MAX_CLIENTS: usize = 128;
/// How long a connection over [`MAX_CLIENTS`] waits for a free slot before being refused.
pub const SLOT_WAIT: Duration = Duration::from_secs(2);
/// A client that sends nothing for this long is dropped.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

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
    let active = Arc::new(Slots::default());
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || accept_loop(listener, policy, to_loop, active))?;
    Ok(Server {
        path: path.to_path_buf(),
    })
}

fn accept_loop(
    listener: UnixListener,
    policy: Arc<AccessPolicy>,
    to_loop: Sender<ControlRequest>,
    active: Arc<Slots>,
) {
    for stream in listener.incoming() {
        let mut stream = match stream {
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
            let _ = write_reply(
                &mut stream,
                &Reply::error(
                    1,
                    "permission denied: only root, the daemon's user or the control group may use this socket",
                ),
            );
            continue;
        }
        if !active.acquire(SLOT_WAIT) {
            tracing::warn!(
                "control: {MAX_CLIENTS} connections open; refused pid {}",
                peer.pid
            );
            let _ = write_reply(
                &mut stream,
                &Reply::error(1, format!("too many clients (limit {MAX_CLIENTS}); retry")),
            );
            continue;
        }
        let to_loop = to_loop.clone();
        let active_conn = Arc::clone(&active);
        let spawned = std::thread::Builder::new()
            .name("control-conn".into())
            .spawn(move || {
                serve(stream, peer, &to_loop);
                active_conn.release();
            });
        if spawned.is_err() {
            active.release();
            tracing::warn!("control: cannot start a connection thread; connection dropped");
        }
    }
}

/// Counts open connections; the accept thread waits on `freed` for a slot.
#[derive(Default)]
struct Slots {
    open: Mutex<usize>,
    freed: Condvar,
}

impl Slots {
    /// Takes a slot, waiting up to `wait` for one; false when none came free.
    fn acquire(&self, wait: Duration) -> bool {
        let Ok(open) = self.open.lock() else {
            return false;
        };
        match self
            .freed
            .wait_timeout_while(open, wait, |open| *open >= MAX_CLIENTS)
        {
            Ok((mut open, _)) if *open < MAX_CLIENTS => {
                *open += 1;
                true
            }
            _ => false,
        }
    }

    fn release(&self) {
        if let Ok(mut open) = self.open.lock() {
            *open = open.saturating_sub(1);
        }
        self.freed.notify_one();
    }
}

/// Serves one connection: request lines in, reply lines out, until EOF, an idle timeout or
/// an error. Malformed requests get an error reply and the connection stays usable.
fn serve(stream: UnixStream, peer: Peer, to_loop: &Sender<ControlRequest>) {
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IDLE_TIMEOUT));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let line = match read_line_bounded(&mut reader) {
            Ok(Some(line)) => line,
            Ok(None) => return,
            Err(LineError::TooLong) => {
                let _ = write_reply(
                    &mut writer,
                    &Reply::error(
                        1,
                        format!("request too large (limit {MAX_REQUEST_BYTES} bytes)"),
                    ),
                );
                return;
            }
            Err(LineError::Io) => return,
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let reply = match protocol::parse_request(&line) {
            Ok(request) => dispatch(request.verb, peer, to_loop),
            Err(message) => Reply::error(1, message),
        };
        if write_reply(&mut writer, &reply).is_err() {
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
                Verb::Start(_) | Verb::Stop(_) | Verb::Restart(_) | Verb::Reload(_)
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
    Io,
}

/// Reads one `\n`-terminated line of at most [`MAX_REQUEST_BYTES`]; `None` at a clean EOF.
/// A line cut off by EOF is treated as complete only if it is non-empty (a client may close
/// its write half right after the request).
fn read_line_bounded(reader: &mut BufReader<UnixStream>) -> Result<Option<Vec<u8>>, LineError> {
    let mut line = Vec::new();
    let limit = (MAX_REQUEST_BYTES + 1) as u64;
    let read = reader
        .by_ref()
        .take(limit)
        .read_until(b'\n', &mut line)
        .map_err(|_| LineError::Io)?;
    if read == 0 {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    } else if line.len() as u64 >= limit {
        return Err(LineError::TooLong);
    }
    Ok(Some(line))
}

fn write_reply(stream: &mut UnixStream, reply: &Reply) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    stream.write_all(&bytes)
}

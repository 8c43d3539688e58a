//! The `NOTIFY_SOCKET` of sd_notify(3): a datagram unix socket (filesystem path only, no
//! abstract namespace) receiving `READY=1`, `STATUS=...`, `MAINPID=...`, ... from services.
//!
//! Permissions: like systemd, the socket is mode 0666 so services running as any `User=`
//! can send; trust comes from the kernel-supplied sender credentials (SO_PASSCRED), not from
//! the file mode. Every datagram is delivered with the sender's pid, uid and gid, and the
//! session it belonged to when received (read at once, because helpers such as
//! `systemd-notify` exit right after sending). The event loop must accept a message only
//! if that pid or session belongs to the unit it claims to be from.
//!
//! One thread receives ([`crate::sys::worker`]): it polls the socket and is stopped on drop.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crossbeam_channel::{Receiver, Sender};

use crate::sys::worker::{Inbox, Worker};
use crate::sys::{procstat, retry_eintr};

/// Largest datagram accepted (systemd uses the same bound); longer ones are dropped.
const MAX_DATAGRAM: usize = 4096;

/// One received notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyDatagram {
    /// Sender pid from SCM_CREDENTIALS (0 if the kernel gave none).
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
    /// The sender's session id when the datagram was received, if it was still alive.
    pub session: Option<i32>,
    /// The raw payload: newline-separated `KEY=VALUE` assignments, parsed by the loop with
    /// `service::notify::NotifyMessage::parse`.
    pub data: Vec<u8>,
}

/// The bound socket and its receiver thread. Dropping it stops the thread and removes the
/// socket file.
pub struct NotifySocket {
    path: PathBuf,
    /// Dropped (the thread stopped and joined) before the socket file is removed.
    worker: Option<Worker>,
}

impl NotifySocket {
    /// Binds `path` (a stale socket file there is replaced), sets mode 0666 and SO_PASSCRED,
    /// and starts the receiver thread.
    pub fn bind(path: &Path) -> io::Result<(NotifySocket, Receiver<NotifyDatagram>)> {
        let ctx = |what: &str, e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("notify socket {}: {what}: {e}", path.display()),
            )
        };
        let bytes = path.as_os_str().as_bytes();
        // SAFETY: sockaddr_un is plain data; zeroed is a valid initial value.
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        if bytes.is_empty() || bytes.len() >= addr.sun_path.len() || bytes[0] != b'/' {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "notify socket {}: must be an absolute path shorter than {} bytes",
                    path.display(),
                    addr.sun_path.len()
                ),
            ));
        }
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
            *d = *s as libc::c_char;
        }
        // SAFETY: socket(2) returns a new fd or -1.
        let raw = unsafe {
            libc::socket(
                libc::AF_UNIX,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            )
        };
        if raw < 0 {
            return Err(ctx("socket", io::Error::last_os_error()));
        }
        // SAFETY: fresh fd we own.
        let sock = unsafe { OwnedFd::from_raw_fd(raw) };
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ctx("removing the stale socket", e)),
        }
        let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
        // SAFETY: addr is a valid sockaddr_un of at least `len` bytes.
        let r = unsafe {
            libc::bind(
                sock.as_raw_fd(),
                (&addr as *const libc::sockaddr_un).cast(),
                len as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(ctx("bind", io::Error::last_os_error()));
        }
        fs::set_permissions(path, fs::Permissions::from_mode(0o666))
            .map_err(|e| ctx("chmod 0666", e))?;
        let one: libc::c_int = 1;
        // SAFETY: setsockopt with a valid int option value.
        let r = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PASSCRED,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(ctx("SO_PASSCRED", io::Error::last_os_error()));
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        let worker = Worker::spawn("gitproc-notify", "notify socket", move |inbox| {
            receive_loop(sock, inbox, tx)
        })?;
        Ok((
            NotifySocket {
                path: path.to_path_buf(),
                worker: Some(worker),
            },
            rx,
        ))
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        drop(self.worker.take());
        let _ = fs::remove_file(&self.path);
    }
}

fn receive_loop(sock: OwnedFd, inbox: Inbox<std::convert::Infallible>, tx: Sender<NotifyDatagram>) {
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    // Room for credentials plus some passed fds (which we close: no FDSTORE support).
    let mut cbuf = [0u64; 64];
    let mut fds = Vec::with_capacity(2);
    loop {
        fds.clear();
        fds.push(libc::pollfd {
            fd: sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        let woken = match inbox.poll(&mut fds) {
            Ok(woken) => woken,
            Err(e) => {
                tracing::error!("notify socket: poll failed: {e}");
                return;
            }
        };
        // The owner sends no commands: a wakeup only ever means "stop".
        if woken && !inbox.take(|never| match never {}) {
            return;
        }
        // Drain every queued datagram.
        loop {
            match recv_one(&sock, &mut buf, &mut cbuf) {
                Ok(Some(d)) => {
                    if tx.send(d).is_err() {
                        return;
                    }
                }
                Ok(None) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::warn!("notify socket: recvmsg: {e}");
                    break;
                }
            }
        }
    }
}

/// Receives one datagram. `Ok(None)` for a dropped (oversized) one.
fn recv_one(
    sock: &OwnedFd,
    buf: &mut [u8],
    cbuf: &mut [u64; 64],
) -> io::Result<Option<NotifyDatagram>> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; every pointer set below is valid for its length.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(cbuf) as _;
    // SAFETY: msg points to valid buffers.
    let n = retry_eintr(|| unsafe {
        libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC)
    })?;
    let mut cred: Option<libc::ucred> = None;
    // SAFETY: walking the control messages the kernel wrote into cbuf.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let h = &*c;
            if h.cmsg_level == libc::SOL_SOCKET && h.cmsg_type == libc::SCM_CREDENTIALS {
                cred = Some(std::ptr::read_unaligned(libc::CMSG_DATA(c).cast()));
            } else if h.cmsg_level == libc::SOL_SOCKET && h.cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c) as *const libc::c_int;
                let count = (h.cmsg_len as usize - libc::CMSG_LEN(0) as usize)
                    / std::mem::size_of::<libc::c_int>();
                for i in 0..count {
                    libc::close(std::ptr::read_unaligned(data.add(i)));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    let n = n as usize;
    if n > MAX_DATAGRAM || msg.msg_flags & libc::MSG_TRUNC != 0 {
        tracing::warn!("notify socket: dropped a datagram longer than {MAX_DATAGRAM} bytes");
        return Ok(None);
    }
    let (pid, uid, gid) = cred.map(|c| (c.pid, c.uid, c.gid)).unwrap_or((0, 0, 0));
    let session = if pid > 0 {
        procstat::read_stat(pid).ok().map(|s| s.session)
    } else {
        None
    };
    Ok(Some(NotifyDatagram {
        pid,
        uid,
        gid,
        session,
        data: buf[..n].to_vec(),
    }))
}

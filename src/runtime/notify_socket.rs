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

/// Where the notify socket of the daemon on `state_dir` lives: `<base>/gitproc/<hash of the
/// state dir>/notify.sock`, `<base>` being `/run` for root, else `$XDG_RUNTIME_DIR`. The
/// state directory is 0700, so a service with `User=` could not reach a socket there
/// (sd_notify fails with EACCES and the service never becomes ready); these directories
/// are created 0755 (searchable by all, writable by us only). The hash keeps daemons on
/// other state directories apart and is stable, so re-adopted services keep a valid
/// `NOTIFY_SOCKET`. Without a runtime directory (non-root, no `$XDG_RUNTIME_DIR`) the state
/// directory is used: services then run as the daemon's own user and can reach it.
/// Returns the socket path and the directory to remove at exit.
pub fn socket_path(state_dir: &Path, file_name: &str) -> io::Result<(PathBuf, Option<PathBuf>)> {
    let base = if nix::unistd::geteuid().is_root() {
        Some(PathBuf::from("/run"))
    } else {
        std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute() && p.is_dir())
    };
    let Some(base) = base else {
        return Ok((state_dir.join(file_name), None));
    };
    let top = base.join("gitproc");
    let h = crate::unit::load::hash::fnv1a_64(state_dir.as_os_str().as_encoded_bytes());
    let dir = top.join(format!("{h:016x}"));
    for d in [&top, &dir] {
        match fs::create_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("creating the notify socket directory {}: {e}", d.display()),
                ));
            }
        }
        // Never follow a symlink or trust a directory someone else made: the socket's
        // senders are authenticated, but its path must not be redirected.
        let meta = fs::symlink_metadata(d)?;
        let ours = std::os::unix::fs::MetadataExt::uid(&meta) == nix::unistd::geteuid().as_raw();
        if !meta.is_dir() || !ours {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "notify socket directory {} is not a directory owned by this user; remove it",
                    d.display()
                ),
            ));
        }
        fs::set_permissions(d, fs::Permissions::from_mode(0o755))
            .map_err(|e| io::Error::new(e.kind(), format!("chmod 0755 {}: {e}", d.display())))?;
    }
    Ok((dir.join(file_name), Some(dir)))
}

/// Whether a process in cgroup `sender` (as in `/proc/<pid>/cgroup`, relative to the
/// cgroup2 mount) is inside the unit cgroup at the absolute path `unit`: some ancestor of
/// `sender` (or itself) of at least two components is a suffix of `unit`. Two components
/// (`gitproc-<hash>/<unit name>`) name one unit of one daemon; a service's own sub-cgroups
/// are ancestors' descendants and match too. Works without knowing the cgroup2 mount point.
pub fn cgroup_within(sender: &str, unit: &Path) -> bool {
    let mut rel = Path::new(sender.trim_start_matches('/'));
    while rel.components().count() >= 2 {
        if unit.ends_with(rel) {
            return true;
        }
        match rel.parent() {
            Some(p) => rel = p,
            None => break,
        }
    }
    false
}

/// One received notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyDatagram {
    /// Sender pid from SCM_CREDENTIALS (0 if the kernel gave none).
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
    /// The sender's session id when the datagram was received, if it was still alive.
    pub session: Option<i32>,
    /// The sender's cgroup v2 path (`/proc/<pid>/cgroup`, relative to the cgroup2 mount,
    /// e.g. `/gitproc-…/a.service`), read with the session for the same reason.
    pub cgroup: Option<String>,
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
    let (session, cgroup) = if pid > 0 {
        (
            procstat::read_stat(pid).ok().map(|s| s.session),
            fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .ok()
                .and_then(|t| {
                    t.lines()
                        .find_map(|l| l.strip_prefix("0::"))
                        .map(String::from)
                }),
        )
    } else {
        (None, None)
    };
    Ok(Some(NotifyDatagram {
        pid,
        uid,
        gid,
        session,
        cgroup,
        data: buf[..n].to_vec(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cgroup_matches_its_unit_and_its_sub_cgroups_only() {
        let unit = Path::new("/sys/fs/cgroup/system.slice/x/gitproc-ab/a.service");
        assert!(cgroup_within("/system.slice/x/gitproc-ab/a.service", unit));
        assert!(cgroup_within(
            "/system.slice/x/gitproc-ab/a.service/sub",
            unit
        ));
        assert!(!cgroup_within("/system.slice/x/gitproc-ab/b.service", unit));
        assert!(!cgroup_within("/system.slice/x/gitproc-cd/a.service", unit));
        assert!(!cgroup_within("/", unit));
        assert!(!cgroup_within("/a.service", unit));
    }
}

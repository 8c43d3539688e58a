//! Creating the listening sockets of a `.socket` unit (systemd.socket(5)). Runs on the
//! spawner pool, never on the event loop: a unix socket is a unit-named path (its parent
//! directories are created, a stale socket file is removed) and `SocketUser=`/
//! `SocketGroup=` go through NSS.
//!
//! Every socket is made as systemd makes it: close-on-exec and non-blocking (the daemon
//! only watches it; the service gets a copy without close-on-exec at spawn),
//! `SO_REUSEADDR` on IP sockets, a bare port listening on IPv6 and IPv4 both
//! (`IPV6_V6ONLY` off, plain IPv4 where the host has no IPv6; `BindIPv6Only=` overrides it
//! on every IPv6 socket), `Backlog=` for stream and
//! sequential-packet sockets, then `SocketMode=` and the owner on a unix path.
//!
//! Test hook (debug builds only): when the daemon's environment has
//! `GITPROC_TEST_SLOW_BIND=<socket unit>`, that unit's binds wait 1 s first, so that tests
//! can see that a service which needs the socket waits for it.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::Path;

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, SockaddrIn6, UnixAddr, bind, listen,
    socket,
};

use crate::unit::model::{BindIpv6Only, Listen, ListenAddress, SocketSection, SocketType};

/// One listening socket, in `Listen*=` order.
#[derive(Debug)]
pub struct Bound {
    pub fd: OwnedFd,
    pub listen: Listen,
}

/// What a failed bind says: `ListenStream=127.0.0.1:8080: EADDRINUSE: 127.0.0.1:8080 is in
/// use`, or `ListenStream=/run/x/sock: bind: EACCES: Permission denied`.
fn failure(l: &Listen, step: &str, e: Errno) -> String {
    let addr = l.address.to_string();
    if e == Errno::EADDRINUSE {
        format!(
            "{}={addr}: EADDRINUSE: {addr} is in use",
            l.socket_type.key()
        )
    } else {
        format!(
            "{}={addr}: {step}: {e:?}: {}",
            l.socket_type.key(),
            e.desc()
        )
    }
}

fn set_flag(fd: RawFd, level: i32, name: i32) -> Result<(), Errno> {
    set_int(fd, level, name, 1)
}

fn set_int(fd: RawFd, level: i32, name: i32, v: libc::c_int) -> Result<(), Errno> {
    // SAFETY: setsockopt on our own socket with a pointer to a live c_int and its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    Errno::result(r).map(drop)
}

fn sock_type(t: SocketType) -> SockType {
    match t {
        SocketType::Stream => SockType::Stream,
        SocketType::Datagram => SockType::Datagram,
        SocketType::SequentialPacket => SockType::SeqPacket,
    }
}

/// Creates, binds and (for stream and seqpacket) listens on every socket of `s`; on the
/// first failure, closes what was made and says which address failed and why. `unit` is
/// for the warnings of settings applied differently.
pub fn bind_all(unit: &str, s: &SocketSection) -> Result<Vec<Bound>, String> {
    #[cfg(debug_assertions)]
    if slow_bind_wanted(unit) {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    let owner = resolve_owner(s)?;
    let mut out = Vec::with_capacity(s.listen.len());
    for l in &s.listen {
        out.push(bind_with_retry(unit, l, s, owner)?);
    }
    Ok(out)
}

/// Whether the test hook (see the module docs) slows `unit`'s binds; read once.
#[cfg(debug_assertions)]
fn slow_bind_wanted(unit: &str) -> bool {
    static WANTED: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    WANTED
        .get_or_init(|| std::env::var("GITPROC_TEST_SLOW_BIND").ok())
        .as_deref()
        == Some(unit)
}

/// How long an address in use is tried again: when the socket unit is bound again (an
/// operator's restart, a new version), the daemon's other threads may still hold the old
/// socket for a moment (the watcher takes its unwatch command, a spawn finishes).
const IN_USE_RETRY: std::time::Duration = std::time::Duration::from_millis(500);

fn bind_with_retry(
    unit: &str,
    l: &Listen,
    s: &SocketSection,
    owner: Option<Owner>,
) -> Result<Bound, String> {
    let started = std::time::Instant::now();
    loop {
        match bind_one(unit, l, s, owner) {
            Err(e) if e.contains("EADDRINUSE") && started.elapsed() < IN_USE_RETRY => {
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            other => return other,
        }
    }
}

/// `SocketUser=`/`SocketGroup=` as numbers (`None`: leave that id as it is).
type Owner = (Option<u32>, Option<u32>);

/// `SocketUser=`/`SocketGroup=` as numbers (NSS; a number is taken as is).
fn resolve_owner(s: &SocketSection) -> Result<Option<Owner>, String> {
    if s.socket_user.is_none() && s.socket_group.is_none() {
        return Ok(None);
    }
    let uid = match &s.socket_user {
        None => None,
        Some(u) => Some(match u.parse::<u32>() {
            Ok(n) => n,
            Err(_) => nix::unistd::User::from_name(u)
                .map_err(|e| format!("SocketUser={u}: {e}"))?
                .ok_or_else(|| format!("SocketUser={u}: no such user"))?
                .uid
                .as_raw(),
        }),
    };
    let gid = match &s.socket_group {
        None => None,
        Some(g) => Some(match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => nix::unistd::Group::from_name(g)
                .map_err(|e| format!("SocketGroup={g}: {e}"))?
                .ok_or_else(|| format!("SocketGroup={g}: no such group"))?
                .gid
                .as_raw(),
        }),
    };
    Ok(Some((uid, gid)))
}

fn new_socket(family: AddressFamily, l: &Listen) -> Result<OwnedFd, Errno> {
    socket(
        family,
        sock_type(l.socket_type),
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
}

fn bind_one(
    unit: &str,
    l: &Listen,
    s: &SocketSection,
    owner: Option<Owner>,
) -> Result<Bound, String> {
    let fd = match &l.address {
        ListenAddress::AnyPort(port) => match new_socket(AddressFamily::Inet6, l) {
            Ok(fd) => {
                let any = std::net::SocketAddrV6::new(std::net::Ipv6Addr::UNSPECIFIED, *port, 0, 0);
                set_int(fd.as_raw_fd(), libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 0)
                    .map_err(|e| failure(l, "IPV6_V6ONLY", e))?;
                bind_ip(&fd, l, s, &SockaddrIn6::from(any), true)?;
                fd
            }
            Err(Errno::EAFNOSUPPORT) => {
                let any = std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, *port);
                let fd = new_socket(AddressFamily::Inet, l).map_err(|e| failure(l, "socket", e))?;
                bind_ip(&fd, l, s, &SockaddrIn::from(any), false)?;
                fd
            }
            Err(e) => return Err(failure(l, "socket", e)),
        },
        ListenAddress::Inet(std::net::SocketAddr::V4(a)) => {
            let fd = new_socket(AddressFamily::Inet, l).map_err(|e| failure(l, "socket", e))?;
            bind_ip(&fd, l, s, &SockaddrIn::from(*a), false)?;
            fd
        }
        ListenAddress::Inet(std::net::SocketAddr::V6(a)) => {
            let fd = new_socket(AddressFamily::Inet6, l).map_err(|e| failure(l, "socket", e))?;
            bind_ip(&fd, l, s, &SockaddrIn6::from(*a), true)?;
            fd
        }
        ListenAddress::Abstract(name) => {
            let fd = new_socket(AddressFamily::Unix, l).map_err(|e| failure(l, "socket", e))?;
            let addr =
                UnixAddr::new_abstract(name.as_bytes()).map_err(|e| failure(l, "address", e))?;
            bind(fd.as_raw_fd(), &addr).map_err(|e| failure(l, "bind", e))?;
            fd
        }
        ListenAddress::Unix(path) => bind_path(unit, l, s, Path::new(path), owner)?,
    };
    if l.socket_type != SocketType::Datagram {
        let backlog = Backlog::new(
            i32::try_from(s.backlog)
                .unwrap_or(i32::MAX)
                .min(Backlog::MAXCONN.into()),
        )
        .unwrap_or(Backlog::MAXCONN);
        listen(&fd, backlog).map_err(|e| failure(l, "listen", e))?;
    }
    Ok(Bound {
        fd,
        listen: l.clone(),
    })
}

fn bind_ip(
    fd: &OwnedFd,
    l: &Listen,
    s: &SocketSection,
    addr: &dyn nix::sys::socket::SockaddrLike,
    v6: bool,
) -> Result<(), String> {
    let raw = fd.as_raw_fd();
    set_flag(raw, libc::SOL_SOCKET, libc::SO_REUSEADDR)
        .map_err(|e| failure(l, "SO_REUSEADDR", e))?;
    if s.reuse_port {
        set_flag(raw, libc::SOL_SOCKET, libc::SO_REUSEPORT)
            .map_err(|e| failure(l, "ReusePort=", e))?;
    }
    let v6only = match s.bind_ipv6_only {
        BindIpv6Only::Default => None,
        BindIpv6Only::Both => Some(0),
        BindIpv6Only::Ipv6Only => Some(1),
    };
    if let (true, Some(on)) = (v6, v6only) {
        set_int(raw, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, on)
            .map_err(|e| failure(l, "BindIPv6Only=", e))?;
    }
    if s.free_bind {
        let r = if v6 {
            set_flag(raw, libc::IPPROTO_IPV6, libc::IPV6_FREEBIND)
        } else {
            set_flag(raw, libc::IPPROTO_IP, libc::IP_FREEBIND)
        };
        r.map_err(|e| failure(l, "FreeBind=", e))?;
    }
    bind(raw, addr).map_err(|e| failure(l, "bind", e))
}

/// A unix socket in the file system: parents made with `DirectoryMode=`, a stale socket
/// file replaced (anything else there is an error, never removed), then `SocketMode=` and
/// the owner.
fn bind_path(
    _unit: &str,
    l: &Listen,
    s: &SocketSection,
    path: &Path,
    owner: Option<Owner>,
) -> Result<OwnedFd, String> {
    let err = |what: &str, e: std::io::Error| {
        format!("{}={}: {what}: {e}", l.socket_type.key(), path.display())
    };
    if let Some(parent) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(s.directory_mode)
            .create(parent)
            .map_err(|e| err("creating its directory", e))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            std::fs::remove_file(path).map_err(|e| err("removing the old socket", e))?;
        }
        Ok(_) => {
            return Err(format!(
                "{}={}: exists and is not a socket; not replaced",
                l.socket_type.key(),
                path.display()
            ));
        }
        Err(_) => {}
    }
    let fd = new_socket(AddressFamily::Unix, l).map_err(|e| failure(l, "socket", e))?;
    let addr = UnixAddr::new(path).map_err(|e| failure(l, "address", e))?;
    bind(fd.as_raw_fd(), &addr).map_err(|e| failure(l, "bind", e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(s.socket_mode))
        .map_err(|e| err("SocketMode=", e))?;
    if let Some((uid, gid)) = owner {
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| format!("{}: contains a NUL byte", path.display()))?;
        // SAFETY: lchown on a NUL-terminated path; -1 leaves an id unchanged.
        let r =
            unsafe { libc::lchown(c.as_ptr(), uid.unwrap_or(u32::MAX), gid.unwrap_or(u32::MAX)) };
        Errno::result(r).map_err(|e| failure(l, "SocketUser=/SocketGroup=", e))?;
    }
    Ok(fd)
}

/// `RemoveOnStop=yes`: the unix socket files of a stopped socket unit go (only sockets;
/// anything else at the path is left alone).
pub fn remove_paths(s: &SocketSection) {
    for l in &s.listen {
        if let ListenAddress::Unix(p) = &l.address
            && std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_socket())
            && let Err(e) = std::fs::remove_file(p)
        {
            tracing::warn!("{}={p}: RemoveOnStop=: {e}", l.socket_type.key());
        }
    }
}

//! The socket side of a probe: a non-blocking connect into the prober's epoll set, and one
//! probe's steps on its socket (connect, send the request, read the answer) as far as the
//! socket allows, retrying once on a fresh connection when a kept one turns out closed.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::http::{BODY_KEPT, Framing, HEAD_MAX, Response, body_complete, judge, parse_head};
use super::{NetProbe, Phase, Step, Target};
use crate::service::health::ProbeOutcome;
use crate::sys::retry_eintr;

/// Whether a kept connection is still usable: no EOF and no stray bytes waiting.
pub(super) fn still_open(c: &TcpStream) -> bool {
    let mut b = [0u8; 1];
    match c.peek(&mut b) {
        Ok(_) => false, // 0: closed by the server; >0: bytes nobody asked for
        Err(e) => e.kind() == io::ErrorKind::WouldBlock,
    }
}

pub(super) fn resolve(host: &str, port: u16) -> io::Result<SocketAddr> {
    let ip = if host == "localhost" {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse::<IpAddr>()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "not an IP address"))?
    };
    Ok(SocketAddr::new(ip, port))
}

/// The command queue's entry in the epoll set.
pub(super) const WAKE: u64 = u64::MAX;

pub(super) fn epoll_add(epfd: RawFd, fd: RawFd, mut ev: libc::epoll_event) -> io::Result<()> {
    // SAFETY: valid fds and a valid event.
    retry_eintr(|| unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) }).map(drop)
}

/// A non-blocking connect begun (EINPROGRESS is the normal case), its socket in the epoll
/// set `epfd` (edge-triggered, data `id`) for as long as it is open: closing it removes it.
pub(super) fn connect(probe: &NetProbe, epfd: RawFd, id: u64) -> io::Result<TcpStream> {
    let (host, port) = probe.target();
    let addr = resolve(host, port)?;
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket we own.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let sa = nix::sys::socket::SockaddrStorage::from(addr);
    match nix::sys::socket::connect(owned.as_raw_fd(), &sa) {
        Ok(()) | Err(nix::errno::Errno::EINPROGRESS) => {}
        Err(e) => return Err(io::Error::from(e)),
    }
    let stream = TcpStream::from(owned);
    let _ = stream.set_nodelay(true);
    let events = libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET;
    epoll_add(
        epfd,
        stream.as_raw_fd(),
        libc::epoll_event {
            events: events as u32,
            u64: id,
        },
    )?;
    Ok(stream)
}

pub(super) fn connect_error(probe: &NetProbe, e: &io::Error) -> String {
    let (host, port) = probe.target();
    let what = match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        _ => e.to_string(),
    };
    format!("{what} ({host}:{port})")
}

/// One probe's next steps on its socket.
pub(super) fn step(t: &mut Target) -> Step {
    loop {
        let Some(conn) = t.conn.as_mut() else {
            return Step::Done(ProbeOutcome::new(false, "no connection", ""));
        };
        match &mut t.phase {
            Phase::Idle => return Step::Wait,
            Phase::Connecting => {
                let err = match nix::sys::socket::getsockopt(
                    &*conn,
                    nix::sys::socket::sockopt::SocketError,
                ) {
                    Ok(0) => None,
                    Ok(errno) => Some(io::Error::from_raw_os_error(errno)),
                    Err(e) => Some(io::Error::from(e)),
                };
                if let Some(e) = err {
                    let summary = connect_error(&t.probe, &e);
                    t.conn = None;
                    return Step::Done(ProbeOutcome::new(false, summary, ""));
                }
                // Not connected yet: still in progress (poll said writable or it is the
                // first look right after connect()).
                if conn.peer_addr().is_err() {
                    return Step::Wait;
                }
                t.connections += 1;
                match &t.probe {
                    NetProbe::Tcp { host, port } => {
                        // TCP=: connected is healthy; the connection is not kept.
                        let summary = format!("TCP connect to {host}:{port} succeeded");
                        t.conn = None;
                        return Step::Done(ProbeOutcome::new(true, summary, ""));
                    }
                    NetProbe::Http(_) => t.phase = Phase::Sending { sent: 0 },
                }
            }
            Phase::Sending { sent } => {
                let req = &t.request;
                if req.is_empty() {
                    return Step::Done(ProbeOutcome::new(false, "not an HTTP probe", ""));
                }
                while *sent < req.len() {
                    match conn.write(&req[*sent..]) {
                        Ok(0) => return retry_or_fail(t, "connection closed while sending"),
                        Ok(n) => *sent += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            return Step::Wait;
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return retry_or_fail(t, &format!("send failed: {e}")),
                    }
                }
                t.phase = Phase::Reading(Response::default());
            }
            Phase::Reading(resp) => {
                let mut chunk = [0u8; 8192];
                match conn.read(&mut chunk) {
                    Ok(0) => {
                        if resp.buf.is_empty() {
                            return retry_or_fail(t, "connection closed before an answer");
                        }
                        let outcome = match resp.head {
                            Some(h) if h.framing == Framing::UntilClose => judge_target(t),
                            _ => ProbeOutcome::new(false, "connection closed mid-answer", ""),
                        };
                        t.conn = None;
                        return Step::Done(outcome);
                    }
                    Ok(n) => {
                        let room = BODY_KEPT.saturating_sub(resp.buf.len());
                        let keep = n.min(room);
                        resp.buf.extend_from_slice(&chunk[..keep]);
                        resp.dropped += n - keep;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        return Step::Wait;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return retry_or_fail(t, &format!("receive failed: {e}")),
                }
                let Phase::Reading(resp) = &mut t.phase else {
                    continue;
                };
                if resp.head.is_none() {
                    match parse_head(&resp.buf) {
                        Ok(Some(h)) => resp.head = Some(h),
                        Ok(None) if resp.buf.len() < HEAD_MAX => continue,
                        Ok(None) => {
                            t.conn = None;
                            return Step::Done(ProbeOutcome::new(
                                false,
                                "HTTP answer head too long",
                                "",
                            ));
                        }
                        Err(e) => {
                            t.conn = None;
                            return Step::Done(ProbeOutcome::new(
                                false,
                                format!("not an HTTP answer: {e}"),
                                "",
                            ));
                        }
                    }
                }
                if body_complete(resp) {
                    let close = resp.head.is_some_and(|h| h.close) || resp.dropped > 0;
                    let outcome = judge_target(t);
                    if close {
                        t.conn = None;
                    }
                    return Step::Done(outcome);
                }
            }
        }
    }
}

/// A kept connection the server closed between probes fails the first byte: connect again
/// once (this probe's timeout still runs) instead of counting a failure.
pub(super) fn retry_or_fail(t: &mut Target, why: &str) -> Step {
    t.conn = None;
    if t.reused {
        t.reused = false;
        match connect(&t.probe, t.epoll, t.id) {
            Ok(c) => {
                t.conn = Some(c);
                t.phase = Phase::Connecting;
                return step(t);
            }
            Err(e) => {
                return Step::Done(ProbeOutcome::new(false, connect_error(&t.probe, &e), ""));
            }
        }
    }
    Step::Done(ProbeOutcome::new(false, why.to_string(), ""))
}

/// The verdict on the response a target has read.
fn judge_target(t: &Target) -> ProbeOutcome {
    match (&t.probe, &t.phase) {
        (NetProbe::Http(http), Phase::Reading(resp)) => judge(http, resp),
        _ => ProbeOutcome::new(false, "no answer", ""),
    }
}

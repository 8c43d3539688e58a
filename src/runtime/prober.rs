//! The prober: every network health probe (`[X-Health]` `HTTP=` and `TCP=`) of every unit,
//! run from deadlines on ONE thread ([`crate::sys::worker`]) with non-blocking sockets and
//! epoll(7). It reports each probe's outcome to the loop as a message; the loop never waits
//! on a probe. (`Exec=` probes are processes: the loop spawns and reaps them like any
//! child, see `daemon::supervisor::health`.)
//!
//! Schedule: the first probe of a watch runs one `IntervalSec=` after the watch began (the
//! service has just been spawned and is not listening yet), each next one `IntervalSec=`
//! after the previous one ended. A probe that takes longer than `TimeoutSec=` fails and its
//! connection is closed.
//!
//! HTTP keeps ONE HTTP/1.1 keep-alive connection per unit and reuses it for every probe:
//! the response is read whole (`Content-Length`, chunked, or to the end when the server says
//! `Connection: close`), so the next request can follow on the same connection. When the
//! server closes it between probes (its event arrives while idle), and after a timeout or
//! an error, the next probe connects again. Response heads are parsed with
//! `httparse` (already in the build through the git HTTP transport), a parser that takes
//! bytes as they come and never allocates.
//!
//! Cost: every connection is in one edge-triggered epoll set from its connect to its close,
//! so a wakeup costs only the sockets that are ready (no per-probe registration, no scan of
//! idle connections); deadlines sit in one ordered set, so finding the next one is O(log n). Probe
//! start times are rounded up to a grid of 1/10 of their interval (at most 100 ms), so
//! probes of many units begin, and their results reach the loop, in batches: 1,000 units
//! probed every second wake the thread and the loop about 10 times a second, not 1,000
//! (each loop wakeup costs a `waitid` over all the daemon's children, and more). A probe
//! runs at most 10% of its interval late. Results go to the loop in batches too: a
//! batch is sent once no probe is in flight, or [`HOLD`] after its first result, and at
//! once when it holds a failure (a failure may lead to a restart decision, whose latency
//! is measured from the probe's end).

use std::collections::{BTreeSet, HashMap};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::service::health::ProbeOutcome;
use crate::sys::retry_eintr;
use crate::sys::time::deadline;
use crate::sys::worker::{Inbox, Worker};
use crate::unit::model::{HealthProbe, HttpProbe};

/// Most bytes of a response kept (head and body); a longer body is read on and dropped.
const BODY_KEPT: usize = 64 * 1024;
/// Most bytes of a response head.
const HEAD_MAX: usize = 16 * 1024;

/// A network probe: what a unit's `[X-Health]` says, minus `Exec=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetProbe {
    Http(HttpProbe),
    Tcp { host: String, port: u16 },
}

impl NetProbe {
    /// The network part of a probe (`None` for `Exec=`).
    pub fn of(probe: &HealthProbe) -> Option<NetProbe> {
        match probe {
            HealthProbe::Http(h) => Some(NetProbe::Http(h.clone())),
            HealthProbe::Tcp { host, port } => Some(NetProbe::Tcp {
                host: host.clone(),
                port: *port,
            }),
            HealthProbe::Exec(_) => None,
        }
    }

    fn target(&self) -> (&str, u16) {
        match self {
            NetProbe::Http(h) => (&h.host, h.port),
            NetProbe::Tcp { host, port } => (host, *port),
        }
    }
}

/// The outcome of one probe of `unit`'s watch number `generation`.
#[derive(Debug, Clone)]
pub struct ProbeResult {
    pub unit: String,
    pub generation: u64,
    pub outcome: ProbeOutcome,
    /// From the probe's start to its end.
    pub latency: Duration,
    /// When it ended (the loop measures the probe-to-decision latency from here).
    pub finished: Instant,
    /// Connections this watch has established so far (keep-alive: stays at 1 while the
    /// server keeps the connection; refused attempts do not count).
    pub connections: u64,
}

enum Command {
    Watch {
        unit: String,
        generation: u64,
        probe: NetProbe,
        interval: Duration,
        timeout: Duration,
    },
    Unwatch {
        unit: String,
    },
}

/// The prober thread. Dropping it stops the thread.
pub struct Prober {
    worker: Worker<Command>,
}

impl Prober {
    /// Starts the thread; results arrive on the returned receiver, in batches.
    pub fn start() -> io::Result<(Prober, Receiver<Vec<ProbeResult>>)> {
        let (tx, rx) = crossbeam_channel::unbounded();
        // SAFETY: plain epoll_create1(2); the fd is owned right away.
        let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epfd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd we own.
        let epoll = unsafe { OwnedFd::from_raw_fd(epfd) };
        let worker = Worker::spawn("gitproc-prober", "prober", move |inbox| {
            Probing::new(tx, epoll).run(inbox)
        })?;
        Ok((Prober { worker }, rx))
    }

    /// Probes `unit` every `interval` (replacing an earlier watch of it).
    pub fn watch(
        &self,
        unit: &str,
        generation: u64,
        probe: NetProbe,
        interval: Duration,
        timeout: Duration,
    ) -> io::Result<()> {
        self.worker.send(Command::Watch {
            unit: unit.to_string(),
            generation,
            probe,
            interval,
            timeout,
        })
    }

    /// Stops probing `unit` (its connection is closed).
    pub fn unwatch(&self, unit: &str) -> io::Result<()> {
        self.worker.send(Command::Unwatch {
            unit: unit.to_string(),
        })
    }
}

/// Where a probe in flight is.
enum Phase {
    /// Waiting for the next probe (the connection, if any, kept open).
    Idle,
    /// Non-blocking connect in progress.
    Connecting,
    /// Writing the request (`sent` bytes so far).
    Sending { sent: usize },
    /// Reading the response.
    Reading(Response),
}

/// A response being read.
#[derive(Default)]
struct Response {
    buf: Vec<u8>,
    /// Parsed head: status, head length, body framing, whether the server closes.
    head: Option<Head>,
    /// Body bytes seen beyond [`BODY_KEPT`] (read and dropped).
    dropped: usize,
}

#[derive(Clone, Copy)]
struct Head {
    status: u16,
    len: usize,
    framing: Framing,
    close: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

struct Target {
    /// The key of this target in `targets`, and the data of its connection's epoll entry.
    id: u64,
    /// The prober's epoll set (connections are added as they are made).
    epoll: RawFd,
    unit: String,
    generation: u64,
    probe: NetProbe,
    /// The HTTP request, built once per watch (empty for `TCP=`).
    request: Vec<u8>,
    interval: Duration,
    timeout: Duration,
    conn: Option<TcpStream>,
    phase: Phase,
    started: Instant,
    /// The entry of this target in the deadline set.
    timer: Option<Instant>,
    connections: u64,
    /// The current probe reuses a connection (a close before any byte is then retried once
    /// on a new connection, not counted as a failure).
    reused: bool,
}

/// The coarsest schedule grid (see the module comment).
const GRID_MAX: Duration = Duration::from_millis(100);

/// Longest a successful result waits for others to be sent with (see the module comment).
pub const HOLD: Duration = Duration::from_millis(50);

struct Probing {
    /// The origin of the schedule grid.
    base: Instant,
    results: Sender<Vec<ProbeResult>>,
    /// Results not sent yet, since when, and whether one is a failure.
    pending: Vec<ProbeResult>,
    pending_since: Option<Instant>,
    pending_failure: bool,
    /// Targets with a probe in flight.
    in_flight: BTreeSet<u64>,
    /// Every connection, registered once (edge-triggered), and the command queue's fd.
    epoll: OwnedFd,
    targets: HashMap<u64, Target>,
    by_unit: HashMap<String, u64>,
    timers: BTreeSet<(Instant, u64)>,
    next_id: u64,
}

/// Why a probe step stopped.
enum Step {
    /// Waiting for the socket (the phase says which events to poll for).
    Wait,
    Done(ProbeOutcome),
}

impl Probing {
    fn new(results: Sender<Vec<ProbeResult>>, epoll: OwnedFd) -> Probing {
        Probing {
            epoll,
            base: Instant::now(),
            results,
            pending: Vec::new(),
            pending_since: None,
            pending_failure: false,
            in_flight: BTreeSet::new(),
            targets: HashMap::new(),
            by_unit: HashMap::new(),
            timers: BTreeSet::new(),
            next_id: 1,
        }
    }

    fn run(mut self, inbox: Inbox<Command>) {
        let wake = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: WAKE,
        };
        if let Err(e) = epoll_add(self.epoll.as_raw_fd(), inbox.fd(), wake) {
            tracing::error!("prober: cannot watch its command queue: {e}; health probes stop");
            return;
        }
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        let mut ready: Vec<(u64, u32)> = Vec::new();
        loop {
            let now = Instant::now();
            let flush_at = self.pending_since.and_then(|since| deadline(since, HOLD));
            let timeout = [self.timers.first().map(|(at, _)| *at), flush_at]
                .into_iter()
                .flatten()
                .min()
                .map(|at| at.saturating_duration_since(now));
            let ms: libc::c_int = match timeout {
                None => -1,
                Some(d) => {
                    libc::c_int::try_from(d.as_micros().div_ceil(1000)).unwrap_or(libc::c_int::MAX)
                }
            };
            let epfd = self.epoll.as_raw_fd();
            let cap = libc::c_int::try_from(events.len()).unwrap_or(libc::c_int::MAX);
            // SAFETY: `events` is a valid buffer of `cap` epoll_event.
            let n = match retry_eintr(|| unsafe {
                libc::epoll_wait(epfd, events.as_mut_ptr(), cap, ms)
            }) {
                Ok(n) => usize::try_from(n).unwrap_or(0),
                Err(e) => {
                    tracing::error!("prober: epoll_wait failed: {e}; health probes stop");
                    return;
                }
            };
            let mut woken = false;
            ready.clear();
            for ev in events.iter().take(n) {
                // Copies out of the (packed) struct.
                let (data, flags) = (ev.u64, ev.events);
                if data == WAKE {
                    woken = true;
                } else {
                    ready.push((data, flags));
                }
            }
            if woken && !inbox.take(|cmd| self.command(cmd)) {
                return;
            }
            for &(id, flags) in &ready {
                self.ready(id, flags);
            }
            self.due(Instant::now());
            self.flush(Instant::now());
        }
    }

    /// An event on a target's connection: move its probe on, or, between probes, notice
    /// that the server closed the kept connection (so the next probe connects afresh).
    fn ready(&mut self, id: u64, flags: u32) {
        let Some(t) = self.targets.get_mut(&id) else {
            return;
        };
        if matches!(t.phase, Phase::Idle) {
            let closing =
                (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
            if flags & closing != 0 && t.conn.as_ref().is_some_and(|c| !still_open(c)) {
                t.conn = None;
            }
            return;
        }
        self.advance(id);
    }

    /// Sends the pending results when the batch is complete, old enough, or holds a failure.
    fn flush(&mut self, now: Instant) {
        let Some(since) = self.pending_since else {
            return;
        };
        let old = now.saturating_duration_since(since) >= HOLD;
        if self.pending_failure || self.in_flight.is_empty() || old {
            let batch = std::mem::take(&mut self.pending);
            self.pending_since = None;
            self.pending_failure = false;
            let _ = self.results.send(batch);
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Watch {
                unit,
                generation,
                probe,
                interval,
                timeout,
            } => {
                self.remove(&unit);
                let id = self.next_id;
                self.next_id += 1;
                let now = Instant::now();
                let request = match &probe {
                    NetProbe::Http(http) => request(http).into_bytes(),
                    NetProbe::Tcp { .. } => Vec::new(),
                };
                let mut t = Target {
                    id,
                    epoll: self.epoll.as_raw_fd(),
                    unit: unit.clone(),
                    generation,
                    probe,
                    request,
                    interval,
                    timeout,
                    conn: None,
                    phase: Phase::Idle,
                    started: now,
                    timer: None,
                    connections: 0,
                    reused: false,
                };
                let first = on_grid(self.base, deadline(now, interval), interval);
                set_timer(&mut self.timers, id, &mut t, first);
                self.targets.insert(id, t);
                self.by_unit.insert(unit, id);
            }
            Command::Unwatch { unit } => self.remove(&unit),
        }
    }

    fn remove(&mut self, unit: &str) {
        if let Some(id) = self.by_unit.remove(unit)
            && let Some(mut t) = self.targets.remove(&id)
        {
            set_timer(&mut self.timers, id, &mut t, None);
            self.in_flight.remove(&id);
        }
    }

    /// Deadlines that passed: probes to begin, probes that timed out.
    fn due(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            let Some(t) = self.targets.get_mut(&id) else {
                continue;
            };
            t.timer = None;
            match t.phase {
                Phase::Idle => self.begin(id, now),
                _ => {
                    let secs = t.timeout.as_secs_f64();
                    let what = match t.phase {
                        Phase::Connecting => "connecting",
                        _ => "waiting for the answer",
                    };
                    t.conn = None;
                    let outcome =
                        ProbeOutcome::new(false, format!("timed out after {secs}s ({what})"), "");
                    self.finish(id, outcome);
                }
            }
        }
    }

    /// Starts a probe: on the kept connection if it is still open, else on a new one.
    fn begin(&mut self, id: u64, now: Instant) {
        let Some(t) = self.targets.get_mut(&id) else {
            return;
        };
        t.started = now;
        // A kept connection the server closed was dropped when its event came (`ready`);
        // one closed unnoticed fails the first byte and is retried once (`retry_or_fail`).
        t.reused = t.conn.is_some();
        if t.conn.is_none() {
            match connect(&t.probe, t.epoll, t.id) {
                Ok(c) => {
                    t.conn = Some(c);
                    t.phase = Phase::Connecting;
                }
                Err(e) => {
                    let outcome = ProbeOutcome::new(false, connect_error(&t.probe, &e), "");
                    return self.finish(id, outcome);
                }
            }
        } else {
            t.phase = Phase::Sending { sent: 0 };
        }
        let timeout = deadline(now, t.timeout);
        set_timer(&mut self.timers, id, t, timeout);
        self.in_flight.insert(id);
        self.advance(id);
    }

    /// Moves a probe on as far as the socket allows.
    fn advance(&mut self, id: u64) {
        let Some(t) = self.targets.get_mut(&id) else {
            return;
        };
        match step(t) {
            Step::Wait => {}
            Step::Done(outcome) => self.finish(id, outcome),
        }
    }

    fn finish(&mut self, id: u64, outcome: ProbeOutcome) {
        let Some(t) = self.targets.get_mut(&id) else {
            return;
        };
        let now = Instant::now();
        t.phase = Phase::Idle;
        let result = ProbeResult {
            unit: t.unit.clone(),
            generation: t.generation,
            outcome,
            latency: now.saturating_duration_since(t.started),
            finished: now,
            connections: t.connections,
        };
        let next = on_grid(self.base, deadline(now, t.interval), t.interval);
        set_timer(&mut self.timers, id, t, next);
        self.in_flight.remove(&id);
        self.pending_failure |= !result.outcome.ok;
        self.pending_since.get_or_insert(now);
        self.pending.push(result);
    }
}

/// `at` rounded up to the schedule grid of `interval` (1/10 of it, at most [`GRID_MAX`]).
fn on_grid(base: Instant, at: Option<Instant>, interval: Duration) -> Option<Instant> {
    let at = at?;
    let grid = (interval / 10).min(GRID_MAX).as_micros();
    if grid == 0 {
        return Some(at);
    }
    let offset = at.saturating_duration_since(base).as_micros();
    let rounded = offset.div_ceil(grid).saturating_mul(grid);
    let extra = u64::try_from(rounded - offset).unwrap_or(0);
    deadline(at, Duration::from_micros(extra)).or(Some(at))
}

fn set_timer(timers: &mut BTreeSet<(Instant, u64)>, id: u64, t: &mut Target, at: Option<Instant>) {
    if let Some(old) = t.timer.take() {
        timers.remove(&(old, id));
    }
    if let Some(at) = at {
        timers.insert((at, id));
        t.timer = Some(at);
    }
}

/// Whether a kept connection is still usable: no EOF and no stray bytes waiting.
fn still_open(c: &TcpStream) -> bool {
    let mut b = [0u8; 1];
    match c.peek(&mut b) {
        Ok(_) => false, // 0: closed by the server; >0: bytes nobody asked for
        Err(e) => e.kind() == io::ErrorKind::WouldBlock,
    }
}

fn resolve(host: &str, port: u16) -> io::Result<SocketAddr> {
    let ip = if host == "localhost" {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse::<IpAddr>()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "not an IP address"))?
    };
    Ok(SocketAddr::new(ip, port))
}

/// The command queue's entry in the epoll set.
const WAKE: u64 = u64::MAX;

fn epoll_add(epfd: RawFd, fd: RawFd, mut ev: libc::epoll_event) -> io::Result<()> {
    // SAFETY: valid fds and a valid event.
    retry_eintr(|| unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) }).map(drop)
}

/// A non-blocking connect begun (EINPROGRESS is the normal case), its socket in the epoll
/// set `epfd` (edge-triggered, data `id`) for as long as it is open: closing it removes it.
fn connect(probe: &NetProbe, epfd: RawFd, id: u64) -> io::Result<TcpStream> {
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

fn connect_error(probe: &NetProbe, e: &io::Error) -> String {
    let (host, port) = probe.target();
    let what = match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        _ => e.to_string(),
    };
    format!("{what} ({host}:{port})")
}

/// One probe's next steps on its socket.
fn step(t: &mut Target) -> Step {
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
                            Some(h) if h.framing == Framing::UntilClose => judge(t),
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
                    let outcome = judge(t);
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
fn retry_or_fail(t: &mut Target, why: &str) -> Step {
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

fn request(http: &HttpProbe) -> String {
    let host = if http.host.contains(':') {
        format!("[{}]", http.host)
    } else {
        http.host.clone()
    };
    format!(
        "GET {} HTTP/1.1\r\nHost: {host}:{}\r\nUser-Agent: gitproc-health\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n",
        http.path, http.port
    )
}

/// The response head, once complete.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let status = resp.code.unwrap_or(0);
    let mut length = None;
    let mut chunked = false;
    let mut close = resp.version == Some(0);
    for h in resp.headers.iter() {
        let value = String::from_utf8_lossy(h.value);
        let value = value.trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().ends_with("chunked");
        } else if h.name.eq_ignore_ascii_case("connection") {
            let v = value.to_ascii_lowercase();
            if v.contains("close") {
                close = true;
            } else if v.contains("keep-alive") {
                close = false;
            }
        }
    }
    let no_body = (100..200).contains(&status) || status == 204 || status == 304;
    let framing = if no_body {
        Framing::Length(0)
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        close = true;
        Framing::UntilClose
    };
    Ok(Some(Head {
        status,
        len,
        framing,
        close,
    }))
}

/// Whether the whole body is in (or counted as dropped).
fn body_complete(resp: &Response) -> bool {
    let Some(h) = resp.head else {
        return false;
    };
    let body = resp.buf.len().saturating_sub(h.len) + resp.dropped;
    match h.framing {
        Framing::Length(n) => body >= n,
        Framing::UntilClose => false,
        Framing::Chunked => {
            if resp.dropped > 0 {
                // Too long to follow the chunks: judge on what is kept, then close.
                return true;
            }
            dechunk(&resp.buf[h.len..]).is_some()
        }
    }
}

/// The body of a complete chunked encoding, `None` while incomplete.
fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        match httparse::parse_chunk_size(b) {
            Ok(httparse::Status::Complete((used, size))) => {
                b = &b[used..];
                let size = usize::try_from(size).ok()?;
                if size == 0 {
                    // Trailers end with an empty line.
                    return memchr::memmem::find(b, b"\r\n").map(|_| out);
                }
                if b.len() < size + 2 {
                    return None;
                }
                out.extend_from_slice(&b[..size]);
                b = &b[size + 2..];
            }
            _ => return None,
        }
    }
}

/// The verdict on a complete response.
fn judge(t: &Target) -> ProbeOutcome {
    let (NetProbe::Http(http), Phase::Reading(resp)) = (&t.probe, &t.phase) else {
        return ProbeOutcome::new(false, "no answer", "");
    };
    let Some(h) = resp.head else {
        return ProbeOutcome::new(false, "no HTTP answer", "");
    };
    let raw = &resp.buf[h.len.min(resp.buf.len())..];
    let body = match h.framing {
        Framing::Chunked => dechunk(raw).unwrap_or_else(|| raw.to_vec()),
        Framing::Length(n) => raw[..n.min(raw.len())].to_vec(),
        Framing::UntilClose => raw.to_vec(),
    };
    let text = String::from_utf8_lossy(&body);
    let status_ok = http
        .expect_status
        .iter()
        .any(|&(lo, hi)| (lo..=hi).contains(&h.status));
    if !status_ok {
        return ProbeOutcome::new(false, format!("HTTP {}", h.status), &text);
    }
    if let Some(want) = &http.expect_body
        && !text.contains(want.as_str())
    {
        return ProbeOutcome::new(
            false,
            format!("HTTP {}: body lacks {want:?} (ExpectBody=)", h.status),
            &text,
        );
    }
    ProbeOutcome::new(true, format!("HTTP {}", h.status), &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_are_rounded_up_to_the_grid() {
        let base = Instant::now();
        let at = base + Duration::from_millis(1001);
        let rounded = on_grid(base, Some(at), Duration::from_secs(1)).unwrap();
        assert_eq!(rounded - base, Duration::from_millis(1100));
        let exact = base + Duration::from_millis(1100);
        assert_eq!(
            on_grid(base, Some(exact), Duration::from_secs(1)),
            Some(exact)
        );
        assert_eq!(on_grid(base, None, Duration::from_secs(1)), None);
    }

    #[test]
    fn heads_and_bodies() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let h = parse_head(r).unwrap().unwrap();
        assert_eq!(h.status, 200);
        assert!(h.framing == Framing::Length(2) && !h.close);
        let h = parse_head(b"HTTP/1.0 503 x\r\n\r\n").unwrap().unwrap();
        assert!(h.close && h.framing == Framing::UntilClose);
        assert!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-")
                .unwrap()
                .is_none()
        );
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
        assert_eq!(
            dechunk(b"2\r\nok\r\n3\r\n!!!\r\n0\r\n\r\n").as_deref(),
            Some(&b"ok!!!"[..])
        );
        assert_eq!(dechunk(b"2\r\nok\r\n"), None);
    }
}

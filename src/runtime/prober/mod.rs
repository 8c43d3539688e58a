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
//! idle connections); deadlines sit in one ordered set, so finding the next one is
//! O(log n). Probe start times are rounded up to a grid of 1/10 of their interval (at most 100 ms), so
//! probes of many units begin, and their results reach the loop, in batches: 1,000 units
//! probed every second wake the thread and the loop about 10 times a second, not 1,000
//! (each loop wakeup costs a `waitid` over all the daemon's children, and more). A probe
//! runs at most 10% of its interval late. Results go to the loop in batches too: a
//! batch is sent once no probe is in flight, or [`HOLD`] after its first result, and at
//! once when it holds a failure (a failure may lead to a restart decision).
//!
//! Where things are: this file holds the thread, its commands, the schedule and the
//! batching; [`conn`] the sockets (connect into the epoll set, one probe's steps, the retry
//! on a closed kept connection); [`http`] the request, the response head and body framing,
//! and the verdict against `ExpectStatus=`/`ExpectBody=`.

mod conn;
mod http;

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::service::health::ProbeOutcome;
use crate::sys::retry_eintr;
use crate::sys::time::deadline;
use crate::sys::worker::{Inbox, Worker};
use crate::unit::model::{HealthProbe, HttpProbe};
use conn::{WAKE, connect, connect_error, epoll_add, step, still_open};
use http::request;

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
    Reading(http::Response),
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
}

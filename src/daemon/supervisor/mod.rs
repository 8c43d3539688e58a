//! The event loop. One thread owns every [`Managed`] unit, the pid table, the start queue,
//! the operator's waiting jobs and the perf histograms; everything else talks to it through
//! channels (see ARCHITECTURE.md).
//!
//! This file holds the state and the loop (select over the inputs, then the deadlines);
//! each child module adds the methods of one responsibility to [`Supervisor`]:
//!
//! - [`effects`]: feeding events to a unit's state machine and performing its effects
//!   (spawn, signal, PID files, lifecycle lines), forgetting removed units once stopped;
//! - [`hooks`]: `OnFailure=`/`OnSuccess=`: starting a unit's hooks when its run ends;
//! - [`children`]: exits (reaping, emptied process groups), notify datagrams, adoption of
//!   processes a previous daemon left running;
//! - [`queues`]: the start and stop queues, gated by the dependency graph, and conditions;
//! - [`source`]: asking the source worker for a check, and what its updates bring;
//! - [`jobs`]: control requests, operator jobs and the replies waiting for them;
//! - [`trial`]: versions on trial, their promotion to "last good" and rollback;
//! - [`health`]: `[X-Health]` checks: which runs are probed, probe results (the prober
//!   thread's, and `Exec=` probe processes), and what a change of health does;
//! - [`timers`]: timer units (their own kind: a pure state each, one deadline each);
//! - [`sockets`]: socket units (their own kind: listening fds, activation of their service);
//! - [`rollout`]: the commit waiting for this host's rollout wave, and the freeze;
//! - [`status`]: the JSON of `status` and `perf`; [`persist`]: the `state.json` snapshot;
//! - [`metrics`]: the snapshot `/metrics` renders, and the facts only metrics need;
//! - [`shutdown`]: stopping everything in reverse dependency order, the final save;
//! - [`spawns`]: spawns in flight on the spawner's threads, their reports, and the
//!   processes of spawns a service gave up on.
//!
//! Nothing here blocks: every input is a channel in the select below, and whatever may wait
//! on the host (spawning, PID files, directories, the fsync of a save) is handed to another
//! thread whose answer comes back as one more input.

mod children;
mod deadlines;
mod effects;
mod health;
mod hooks;
mod jobs;
mod metrics;
mod persist;
mod queues;
mod resources;
mod rollout;
mod shutdown;
mod sockets;
mod source;
mod spawns;
mod status;
mod timers;
mod trial;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Select, Sender};

use super::managed::{Managed, Trial};
use super::signals::SignalEvent;
use super::spawner::{Report, Spawner};
use super::worker::{SourceUpdate, WorkerCommand};
use crate::control::protocol::Reply;
use crate::control::server::ControlRequest;
use crate::deps::Graph;
use crate::logs::collector::LogCollector;
use crate::perf::{Op, Perf};
use crate::runtime::kill::ProcessTracker;
use crate::runtime::notify_socket::NotifyDatagram;
use crate::runtime::sd_notify::{sd_notify, watchdog_period};
use crate::runtime::spawn::Dirs;
use crate::service::Event;
use crate::state::StateError;
use crate::state::format::PersistedState;
use crate::state::writer::StateWriter;
use crate::sys::time::deadline;
pub(crate) use trial::TRIAL_PERIOD;

/// How often a stopping unit's process group is looked at again when the fallback sweep is
/// switched off (`fallback_reap_ms = 0`); otherwise the sweep period is used.
const GROUP_RECHECK: Duration = Duration::from_millis(200);

/// Everything the loop receives from.
pub struct Inputs {
    pub signals: Receiver<SignalEvent>,
    pub control: Receiver<ControlRequest>,
    pub notify: Receiver<NotifyDatagram>,
    pub source: Receiver<SourceUpdate>,
    pub adopted_exits: Receiver<i32>,
    /// `/metrics` scrapes from the HTTP listener (`never()` when it is off).
    pub metrics: Receiver<crate::metrics::MetricsQuery>,
}

/// Fixed settings of this daemon run.
pub struct Settings {
    pub fallback_reap: Option<Duration>,
    pub rollback: bool,
    pub keep_services: bool,
    /// What `Condition*=` compare against (host name, virtualization: read once).
    pub host: crate::runtime::host::HostFacts,
    pub notify_socket: PathBuf,
    pub dirs: Dirs,
    pub repo: String,
    pub branch: Option<String>,
    pub state_dir: PathBuf,
    /// This state directory's marker in every service's environment and the name of its
    /// cgroup (see [`crate::daemon::discovery`]).
    pub instance: String,
}

/// Source facts for `status`.
#[derive(Default)]
struct SourceView {
    applied_commit: Option<String>,
    subject: Option<String>,
    commit_time: Option<i64>,
    fetched_tip: Option<String>,
    /// The newest tip that passed verification (signature, parse) and was handed to apply.
    verified_commit: Option<String>,
    last_check: Option<SystemTime>,
    next_check: Option<SystemTime>,
    poll_interval: Duration,
    error: Option<String>,
}

/// An operator waiting for jobs to finish.
struct Waiter {
    units: Vec<String>,
    stopping: bool,
    reply: Sender<Reply>,
    deadline: Instant,
}

/// The answer to an operator job, held until the forced save that makes the job durable is
/// on disk: `saved` yields through the loop's select, then `answer` goes out.
struct JobSave {
    saved: Receiver<Result<(), StateError>>,
    what: String,
    reply: Sender<Reply>,
    answer: Reply,
}

/// One input of the loop's select.
enum Input {
    Signal(Result<SignalEvent, crossbeam_channel::RecvError>),
    Control(ControlRequest),
    Notify(NotifyDatagram),
    Source(SourceUpdate),
    AdoptedExit(i32),
    Spawner(Report),
    /// A health probe's result from the prober thread (see [`health`]).
    Probe(Vec<crate::runtime::prober::ProbeResult>),
    /// The prober thread is gone (its channel closed): stop selecting on it, or the
    /// select would return at once forever.
    ProberGone,
    /// A socket unit's listening fd is readable (see [`sockets`]).
    SocketReadable(crate::runtime::socket_watch::Readable),
    Saved(usize, Result<(), StateError>),
    Metrics(crate::metrics::MetricsQuery),
    /// A deadline passed (or a channel other than the signals' closed).
    Tick,
}

pub struct Supervisor {
    settings: Settings,
    units: BTreeMap<String, Managed>,
    /// Our processes: pid -> unit. Main and control processes, spawned or adopted.
    pids: HashMap<i32, String>,
    graph: Graph,
    /// Units to start once what they are ordered after has settled.
    start_queue: Vec<String>,
    /// Units to stop once what is ordered after them has stopped (shutdown, removal).
    stop_queue: Vec<String>,
    waiters: Vec<Waiter>,
    syncs: HashMap<u64, Sender<Reply>>,
    next_token: u64,
    source: SourceView,
    worker: Sender<WorkerCommand>,
    logs: LogCollector,
    pidfds: crate::runtime::pidfd::PidfdWatcher,
    writer: StateWriter,
    /// State restored from the previous run, consumed by the first unit set applied.
    restored: Option<PersistedState>,
    perf: Perf,
    dirty: bool,
    shutting_down: bool,
    first_applied: bool,
    watchdog: Option<(Duration, Instant)>,
    cgroups: Option<crate::runtime::cgroup::CgroupRoot>,
    /// Where resource settings go (cgroup v2 controllers, else v1 hierarchies).
    resource_roots: crate::runtime::resources::ResourceRoots,
    /// Timer units, by name; and those that never loaded, with their error.
    timers: BTreeMap<String, timers::ManagedTimer>,
    broken_timers: BTreeMap<String, String>,
    timer_clock: timers::TimerClock,
    /// Socket units, by name; and those that never loaded, with their error.
    sockets: BTreeMap<String, sockets::ManagedSocket>,
    broken_sockets: BTreeMap<String, String>,
    /// The readiness watcher of the listening sockets (`None` if its thread cannot start).
    socket_watcher: Option<crate::runtime::socket_watch::SocketWatcher>,
    socket_readable: Receiver<crate::runtime::socket_watch::Readable>,
    spawner: Spawner,
    /// The spawn each unit's machine waits for (see `spawns`).
    spawns: HashMap<String, spawns::PendingSpawn>,
    /// The `PIDFile=` read each unit waits for.
    pid_reads: HashMap<String, u64>,
    next_task_id: u64,
    /// Exits of pids not in the table, reaped while spawns were in flight: a spawned
    /// process can exit (and be reaped) before its spawn's report arrives.
    unclaimed_exits: Vec<(i32, crate::service::ExitStatus, Instant)>,
    /// Notify datagrams from no known process (or not yet allowed) while spawns are in
    /// flight: a fast service may send READY=1 before the loop reads its spawn report.
    /// Replayed after each spawn report (see `children`), dropped once the spawner is idle.
    early_notify: Vec<NotifyDatagram>,
    job_saves: Vec<JobSave>,
    /// The commit waiting for this host's rollout wave, and the freeze (see [`rollout`]).
    rollout: rollout::RolloutState,
    /// The prober thread (`None` if it cannot start: health checks are then not run).
    prober: Option<crate::runtime::prober::Prober>,
    probe_results: Receiver<Vec<crate::runtime::prober::ProbeResult>>,
    /// The health check of each probed unit's current run.
    health: HashMap<String, health::UnitHealth>,
    /// `Exec=` probe processes: pid -> unit.
    probe_pids: HashMap<i32, String>,
    /// Units probed by `Exec=` now: the only ones with probe deadlines in the loop.
    exec_probed: std::collections::BTreeSet<String>,
    /// Every unit's next deadline, so that a wakeup reads the earliest one (`deadlines`).
    deadlines: deadlines::Deadlines,
    metric_facts: metrics::MetricFacts,
}

impl Supervisor {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: Settings,
        worker: Sender<WorkerCommand>,
        logs: LogCollector,
        pidfds: crate::runtime::pidfd::PidfdWatcher,
        writer: StateWriter,
        restored: Option<PersistedState>,
    ) -> Supervisor {
        let watchdog = watchdog_period().map(|period| (period, Instant::now()));
        let cgroups = crate::runtime::cgroup::CgroupRoot::probe(&settings.instance);
        let resource_roots = crate::runtime::resources::ResourceRoots::probe(
            &settings.instance,
            cgroups.as_ref().map(|c| c.path()),
        );
        let (socket_watcher, socket_readable) =
            match crate::runtime::socket_watch::SocketWatcher::start() {
                Ok((w, rx)) => (Some(w), rx),
                Err(e) => {
                    tracing::error!(
                        "cannot start the socket watcher thread: {e}; socket units will not activate their services"
                    );
                    (None, crossbeam_channel::never())
                }
            };
        let rollout = rollout::RolloutState::restore(restored.as_ref());
        let (prober, probe_results) = match crate::runtime::prober::Prober::start() {
            Ok((p, rx)) => (Some(p), rx),
            Err(e) => {
                tracing::error!(
                    "cannot start the prober thread: {e}; HTTP= and TCP= health checks will not run"
                );
                (None, crossbeam_channel::never())
            }
        };
        Supervisor {
            settings,
            units: BTreeMap::new(),
            pids: HashMap::new(),
            graph: Graph::default(),
            start_queue: Vec::new(),
            stop_queue: Vec::new(),
            waiters: Vec::new(),
            syncs: HashMap::new(),
            next_token: 1,
            source: SourceView::default(),
            worker,
            logs,
            pidfds,
            writer,
            restored,
            perf: Perf::new(),
            dirty: false,
            shutting_down: false,
            first_applied: false,
            watchdog,
            cgroups,
            resource_roots,
            timers: BTreeMap::new(),
            broken_timers: BTreeMap::new(),
            timer_clock: timers::TimerClock::read(),
            sockets: BTreeMap::new(),
            broken_sockets: BTreeMap::new(),
            socket_watcher,
            socket_readable,
            spawner: Spawner::start(),
            spawns: HashMap::new(),
            pid_reads: HashMap::new(),
            next_task_id: 1,
            unclaimed_exits: Vec::new(),
            early_notify: Vec::new(),
            job_saves: Vec::new(),
            rollout,
            prober,
            probe_results,
            health: HashMap::new(),
            probe_pids: HashMap::new(),
            exec_probed: std::collections::BTreeSet::new(),
            deadlines: deadlines::Deadlines::default(),
            metric_facts: metrics::MetricFacts::default(),
        }
    }

    /// Runs until shutdown; returns the exit code.
    pub fn run(mut self, inputs: Inputs) -> i32 {
        let reports = self.spawner.reports();
        loop {
            let now = Instant::now();
            self.refresh_deadlines();
            let timeout = self
                .next_deadline(now)
                .map(|at| at.saturating_duration_since(now))
                .unwrap_or(Duration::from_secs(3600));
            match self.wait_input(&inputs, &reports, timeout) {
                Input::Signal(sig) => match sig {
                    Ok(SignalEvent::Child) => self.reap(),
                    Ok(SignalEvent::Shutdown) => {
                        if self.begin_shutdown() {
                            return self.finish_shutdown();
                        }
                    }
                    Ok(SignalEvent::Reload) => self.request_check(None),
                    Err(_) => return self.finish_shutdown(),
                },
                Input::Control(req) => {
                    let started = Instant::now();
                    self.on_control(req);
                    self.perf.record(Op::Control, started.elapsed());
                }
                Input::Notify(dgram) => self.on_notify(dgram),
                Input::Source(update) => self.on_source_update(update),
                Input::AdoptedExit(pid) => self.on_adopted_exit(pid),
                Input::Spawner(report) => self.on_spawner_report(report),
                Input::SocketReadable(r) => self.on_socket_readable(r),
                Input::Probe(r) => self.on_probe_results(r),
                Input::ProberGone => {
                    tracing::error!(
                        "the prober thread has stopped; HTTP= and TCP= health checks no longer run"
                    );
                    self.prober = None;
                    self.probe_results = crossbeam_channel::never();
                }
                Input::Saved(index, result) => {
                    let save = self.job_saves.remove(index);
                    self.job_saved(save, result);
                }
                Input::Metrics(query) => {
                    // Counted with the control requests: the loop's time answering outsiders.
                    let started = Instant::now();
                    self.on_metrics(query);
                    self.perf.record(Op::Control, started.elapsed());
                }
                Input::Tick => {}
            }
            let now = Instant::now();
            // Reaping is cheap (one waitid when nothing is there): do it on every wakeup;
            // the sweep thread wakes the loop for the exit whose SIGCHLD was lost.
            self.reap();
            self.fire_timers(now);
            self.run_exec_probes(now);
            self.tick_timers();
            self.apply_due();
            self.process_queues();
            self.tick_sockets();
            self.check_trials(now);
            self.settle_waiters(now);
            self.feed_watchdog(now);
            if self.dirty && self.save_held_until(now).is_none() {
                self.writer.submit(self.persisted());
                self.dirty = false;
            }
            self.observe_saves();
            // A spawn still in flight (cancelled or not) may yet produce a process: wait
            // for its report, so that the process is killed before the daemon exits.
            if self.shutting_down && self.all_stopped() && !self.spawner.is_busy() {
                return self.finish_shutdown();
            }
        }
    }

    /// Waits for the next input or `timeout`: the fixed channels, the spawner's reports,
    /// and the forced saves operator jobs wait for (a dynamic set, hence `Select`).
    fn wait_input(&self, inputs: &Inputs, reports: &Receiver<Report>, timeout: Duration) -> Input {
        let saves: Vec<Receiver<Result<(), StateError>>> =
            self.job_saves.iter().map(|s| s.saved.clone()).collect();
        let mut sel = Select::new();
        let signals = sel.recv(&inputs.signals);
        let control = sel.recv(&inputs.control);
        let notify = sel.recv(&inputs.notify);
        let source = sel.recv(&inputs.source);
        let adopted = sel.recv(&inputs.adopted_exits);
        let spawner = sel.recv(reports);
        let readable = sel.recv(&self.socket_readable);
        let probe = sel.recv(&self.probe_results);
        let metrics = sel.recv(&inputs.metrics);
        let first_save = metrics + 1;
        for rx in &saves {
            sel.recv(rx);
        }
        let Ok(op) = sel.select_timeout(timeout) else {
            return Input::Tick;
        };
        let i = op.index();
        // A closed channel (other than the signals') reads as a tick, as before.
        if i == signals {
            Input::Signal(op.recv(&inputs.signals))
        } else if i == control {
            op.recv(&inputs.control).map_or(Input::Tick, Input::Control)
        } else if i == notify {
            op.recv(&inputs.notify).map_or(Input::Tick, Input::Notify)
        } else if i == source {
            op.recv(&inputs.source).map_or(Input::Tick, Input::Source)
        } else if i == adopted {
            op.recv(&inputs.adopted_exits)
                .map_or(Input::Tick, Input::AdoptedExit)
        } else if i == spawner {
            op.recv(reports).map_or(Input::Tick, Input::Spawner)
        } else if i == readable {
            op.recv(&self.socket_readable)
                .map_or(Input::Tick, Input::SocketReadable)
        } else if i == probe {
            op.recv(&self.probe_results)
                .map_or(Input::ProberGone, Input::Probe)
        } else if i == metrics {
            op.recv(&inputs.metrics).map_or(Input::Tick, Input::Metrics)
        } else {
            let k = i - first_save;
            // A writer that went away answers like a failed save.
            let result = op.recv(&saves[k]).unwrap_or(Err(StateError::WriterGone));
            Input::Saved(k, result)
        }
    }

    fn next_deadline(&self, now: Instant) -> Option<Instant> {
        // The fallback sweep runs on its own thread (`daemon::sweep`) and wakes the loop
        // only when a child is waiting, so an idle loop sleeps until a real deadline.
        let mut next = None;
        let mut consider = |at: Option<Instant>| {
            if let Some(at) = at {
                next = Some(next.map_or(at, |n: Instant| n.min(at)));
            }
        };
        consider(self.deadlines.first());
        let stopping = self.deadlines.any_stopping();
        for m in self.units.values() {
            if let Some(Trial {
                active_since: Some(since),
                ..
            }) = &m.trial
            {
                consider(deadline(*since, TRIAL_PERIOD));
            }
        }
        consider(self.health_deadline());
        consider(self.health_trial_deadline());
        if stopping {
            // A stopping unit waits for its whole process group, which may hold processes
            // that are not our children (no SIGCHLD for them): look again periodically.
            let recheck = self.settings.fallback_reap.unwrap_or(GROUP_RECHECK);
            consider(deadline(now, recheck));
        }
        if !self.waiters.is_empty() {
            consider(deadline(now, Duration::from_millis(50)));
        }
        if let Some((period, last)) = self.watchdog {
            consider(deadline(last, period));
        }
        consider(self.timers_deadline());
        if !self.shutting_down {
            // While shutting down nothing is applied: a due commit must not spin the loop.
            consider(self.rollout.deadline(now));
        }
        if self.dirty {
            consider(self.save_held_until(now));
        }
        next
    }

    fn fire_timers(&mut self, now: Instant) {
        self.refresh_deadlines();
        for name in self.deadlines.due(now) {
            // A start timeout that hits a pending spawn names the step it is stuck in.
            if let Some(p) = self.spawns.get(&name) {
                let step = p.progress.step();
                if let Some(svc) = self.units.get_mut(&name).and_then(|m| m.service.as_mut()) {
                    svc.set_spawn_step(step);
                }
            }
            self.feed(&name, Event::Timer);
        }
    }

    /// Records the writer's saves in the perf histograms (it runs on its own thread).
    fn observe_saves(&mut self) {
        let saved = self.writer.stats();
        self.perf.record_saves(saved.saves, saved.last_duration);
    }

    fn feed_watchdog(&mut self, now: Instant) {
        if let Some((period, last)) = self.watchdog
            && deadline(last, period).is_some_and(|due| now >= due)
        {
            sd_notify("WATCHDOG=1");
            self.watchdog = Some((period, now));
        }
    }

    pub(in crate::daemon) fn record(&mut self, op: Op, took: Duration) {
        self.perf.record(op, took);
    }

    /// The units, for `apply`: whatever it changes, the deadline index is rebuilt after.
    pub(in crate::daemon) fn units_mut(&mut self) -> &mut BTreeMap<String, Managed> {
        self.deadlines.mark_stale();
        &mut self.units
    }

    pub(in crate::daemon) fn new_tracker(&self, name: &str) -> ProcessTracker {
        let cgroup = self.cgroups.as_ref().and_then(|root| root.unit(name).ok());
        ProcessTracker::new(cgroup)
    }

    pub(in crate::daemon) fn cgroup_root(&self) -> Option<&crate::runtime::cgroup::CgroupRoot> {
        self.cgroups.as_ref()
    }

    pub(in crate::daemon) fn take_restored(&mut self) -> Option<PersistedState> {
        self.restored.take()
    }

    pub(in crate::daemon) fn set_graph(&mut self, graph: Graph) {
        let old = std::mem::replace(&mut self.graph, graph);
        self.stop_with_removed(&old);
    }
}

fn unix_now() -> u64 {
    unix_of(SystemTime::now())
}

fn unix_of(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

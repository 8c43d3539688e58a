//! The event loop. One thread owns every [`Managed`] unit, the pid table, the start queue,
//! the operator's waiting jobs and the perf histograms; everything else talks to it through
//! channels (see ARCHITECTURE.md).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, select};

use super::managed::{GoodVersion, Managed, Trial, new_invocation_id};
use super::signals::SignalEvent;
use super::worker::{SourceUpdate, WorkerCommand};
use crate::control::protocol::{JobRequest, Reply, Verb, exit};
use crate::control::server::{ControlRequest, Peer};
use crate::deps::Graph;
use crate::logs::collector::{LogCollector, Stream};
use crate::perf::{Op, Perf};
use crate::runtime::cgroup::cgroup_name;
use crate::runtime::host::{check_conditions, read_pid_file, track_main_session, user_name};
use crate::runtime::kill::ProcessTracker;
use crate::runtime::notify_socket::NotifyDatagram;
use crate::runtime::sd_notify::{sd_notify, watchdog_period};
use crate::runtime::spawn::{Dirs, SpawnRequest};
use crate::service::{
    ActiveState, Effect, Event, ExitStatus, KillTarget, NotifyMessage, ProcessRole, Service,
    SubState,
};
use crate::state::format::{DaemonState, Override, OverrideKind, PersistedState, UnitState};
use crate::state::writer::StateWriter;
use crate::unit::model::ServiceType;

/// How long a new version must stay active before it counts as good (no rollback after).
pub const TRIAL_PERIOD: Duration = Duration::from_secs(1);

/// Everything the loop receives from.
pub struct Inputs {
    pub signals: Receiver<SignalEvent>,
    pub control: Receiver<ControlRequest>,
    pub notify: Receiver<NotifyDatagram>,
    pub source: Receiver<SourceUpdate>,
    pub adopted_exits: Receiver<i32>,
}

/// Fixed settings of this daemon run.
pub struct Settings {
    pub fallback_reap: Option<Duration>,
    pub rollback: bool,
    pub keep_services: bool,
    pub hostname: String,
    pub notify_socket: PathBuf,
    pub dirs: Dirs,
    pub repo: String,
    pub branch: Option<String>,
    pub state_dir: PathBuf,
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

/// Most a blocking job waits before answering "still running" (the job goes on).
const JOB_WAIT_LIMIT: Duration = Duration::from_secs(600);

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
        let settings_state_dir = settings.state_dir.clone();
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
            cgroups: crate::runtime::cgroup::CgroupRoot::probe(&cgroup_name(
                &settings_state_dir,
                &crate::state::default_state_dir(),
            )),
        }
    }

    /// Runs until shutdown; returns the exit code.
    pub fn run(mut self, inputs: Inputs) -> i32 {
        loop {
            let now = Instant::now();
            let timeout = self
                .next_deadline(now)
                .map(|at| at.saturating_duration_since(now))
                .unwrap_or(Duration::from_secs(3600));
            select! {
                recv(inputs.signals) -> sig => match sig {
                    Ok(SignalEvent::Child) => self.reap(),
                    Ok(SignalEvent::Shutdown) => {
                        if self.begin_shutdown() {
                            return self.finish_shutdown();
                        }
                    }
                    Ok(SignalEvent::Reload) => self.request_check(None),
                    Err(_) => return self.finish_shutdown(),
                },
                recv(inputs.control) -> req => if let Ok(req) = req {
                    let started = Instant::now();
                    self.on_control(req);
                    self.perf.record(Op::Control, started.elapsed());
                },
                recv(inputs.notify) -> dgram => if let Ok(dgram) = dgram {
                    self.on_notify(dgram);
                },
                recv(inputs.source) -> update => if let Ok(update) = update {
                    self.on_source_update(update);
                },
                recv(inputs.adopted_exits) -> pid => if let Ok(pid) = pid {
                    self.on_adopted_exit(pid);
                },
                default(timeout) => {}
            }
            let now = Instant::now();
            // The fallback sweep is cheap (one waitpid when nothing is there): do it on
            // every wakeup, which also covers the periodic tick.
            self.reap();
            self.fire_timers(now);
            self.process_queues();
            self.check_trials(now);
            self.settle_waiters(now);
            self.feed_watchdog(now);
            if self.dirty {
                self.writer.submit(self.persisted());
                self.dirty = false;
            }
            self.observe_saves();
            if self.shutting_down && self.all_stopped() {
                return self.finish_shutdown();
            }
        }
    }

    // ----- time -----

    fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let mut next = self.settings.fallback_reap.map(|tick| now + tick);
        let mut consider = |at: Option<Instant>| {
            if let Some(at) = at {
                next = Some(next.map_or(at, |n: Instant| n.min(at)));
            }
        };
        for m in self.units.values() {
            if let Some(svc) = &m.service {
                consider(svc.next_deadline());
            }
            if let Some(Trial {
                active_since: Some(since),
                ..
            }) = &m.trial
            {
                consider(Some(*since + TRIAL_PERIOD));
            }
        }
        if !self.waiters.is_empty() {
            consider(Some(now + Duration::from_millis(50)));
        }
        if let Some((period, last)) = self.watchdog {
            consider(Some(last + period));
        }
        next
    }

    fn fire_timers(&mut self, now: Instant) {
        let due: Vec<String> = self
            .units
            .iter()
            .filter(|(_, m)| {
                m.service
                    .as_ref()
                    .and_then(Service::next_deadline)
                    .is_some_and(|at| at <= now)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in due {
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
            && now >= last + period
        {
            sd_notify("WATCHDOG=1");
            self.watchdog = Some((period, now));
        }
    }

    // ----- the pure core and its effects -----

    /// Feeds one event to a unit's state machine and performs the effects, including the
    /// events they produce (spawn results) until none are left.
    fn feed(&mut self, name: &str, event: Event) {
        let mut queue = VecDeque::from([event]);
        while let Some(event) = queue.pop_front() {
            let now = Instant::now();
            let Some(m) = self.units.get_mut(name) else {
                return;
            };
            let Some(svc) = m.service.as_mut() else {
                return;
            };
            let before = svc.status().active_state;
            let effects = svc.on_event(event, now);
            let after = svc.status();
            if after.active_state != before {
                m.since_unix = Some(unix_now());
                self.dirty = true;
                let stopped = matches!(
                    after.active_state,
                    ActiveState::Inactive | ActiveState::Failed
                );
                // systemd removes RuntimeDirectory= when the service stops; so do we.
                if stopped && !svc.unit().service.runtime_directory.is_empty() {
                    let unit = Arc::clone(svc.unit());
                    if let Err(err) = crate::runtime::spawn::remove_runtime_directories(
                        &unit.service,
                        &self.settings.dirs,
                    ) {
                        tracing::warn!("{name}: removing RuntimeDirectory=: {err}");
                    }
                }
            }
            if let Some(pid) = after.main_pid {
                self.pids.entry(pid).or_insert_with(|| name.to_string());
            }
            if let Some(pid) = after.main_pid {
                track_main_session(&mut m.tracker, pid);
            }
            for effect in effects {
                if let Some(next) = self.perform(name, effect, now) {
                    queue.push_back(next);
                }
            }
        }
        self.after_change(name);
    }

    fn perform(&mut self, name: &str, effect: Effect, now: Instant) -> Option<Event> {
        match effect {
            Effect::Spawn { role, command } => Some(self.spawn(name, role, &command, now)),
            Effect::Signal { target, signal } => self.signal(name, target, signal),
            Effect::ReadPidFile { path } => Some(Event::PidFile(read_pid_file(&path))),
            Effect::RemovePidFile { path } => {
                match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        tracing::warn!("{name}: cannot remove PIDFile={path}: {e}")
                    }
                    _ => {}
                }
                None
            }
            Effect::Lifecycle { kind, pid, reason } => {
                match pid {
                    Some(pid) => tracing::info!("{kind} {name} (pid {pid}): {reason}"),
                    None => tracing::info!("{kind} {name}: {reason}"),
                }
                let line = format!("gitproc: {kind}: {reason}");
                let _ = self.logs.note(name, &line);
                None
            }
            Effect::StatusChanged => {
                self.dirty = true;
                None
            }
        }
    }

    fn spawn(
        &mut self,
        name: &str,
        role: ProcessRole,
        command: &crate::unit::model::ExecCommand,
        now: Instant,
    ) -> Event {
        let Some(m) = self.units.get_mut(name) else {
            return Event::SpawnFailed {
                role,
                error: "unit vanished".into(),
            };
        };
        let Some(svc) = m.service.as_ref() else {
            return Event::SpawnFailed {
                role,
                error: "unit not loaded".into(),
            };
        };
        let unit = Arc::clone(svc.unit());
        let main_pid = svc.status().main_pid;
        if role == ProcessRole::Main {
            m.invocation_id = new_invocation_id();
        }
        let wants_notify = unit.service.service_type == ServiceType::Notify
            || unit.service.watchdog.is_some_and(|w| !w.is_zero());
        // Variables only known now ($MAINPID, PassEnvironment= names) are expanded at spawn.
        let expanded;
        let command = if command.runtime_vars.is_empty() {
            command
        } else {
            let lookup = |var: &str| match var {
                "MAINPID" => main_pid.map(|p| p.to_string()),
                _ => std::env::var(var).ok(),
            };
            expanded = crate::unit::model::ExecCommand {
                argv: crate::unit::exec::expand_runtime(command, &lookup),
                ..command.clone()
            };
            &expanded
        };
        let mut request = SpawnRequest::new(
            name,
            command,
            &unit.service,
            &m.invocation_id,
            &self.settings.dirs,
        );
        request.notify_socket = wants_notify.then_some(self.settings.notify_socket.as_path());
        request.main_pid = if role == ProcessRole::Main {
            None
        } else {
            main_pid
        };
        request.cgroup = m.tracker.cgroup();
        // Values read by the loader from EnvironmentFile=s in the commit.
        request.extra_env = &unit.service.environment_from_files;
        let started = Instant::now();
        let result = crate::runtime::spawn::spawn(&request);
        self.perf.record(Op::Spawn, started.elapsed());
        match result {
            Ok(spawned) => {
                let pid = spawned.pid;
                m.tracker.add_session(pid);
                if role == ProcessRole::Main {
                    m.main_start_time = Some((pid, spawned.start_time));
                    if let Some(exited) = m.exited_at.take() {
                        self.perf
                            .record(Op::ReapToRestart, now.saturating_duration_since(exited));
                    }
                }
                self.pids.insert(pid, name.to_string());
                if let Some(fd) = spawned.stdout {
                    let _ = self.logs.add(name, fd, Stream::Stdout);
                }
                if let Some(fd) = spawned.stderr {
                    let _ = self.logs.add(name, fd, Stream::Stderr);
                }
                Event::Spawned { role, pid }
            }
            Err(err) => {
                let error = err.to_string();
                tracing::error!("{name}: {error}");
                let _ = self.logs.note(name, &format!("gitproc: {error}"));
                Event::SpawnFailed { role, error }
            }
        }
    }

    /// Sends a signal; answers `GroupEmpty` when a group signal found nobody left.
    fn signal(&mut self, name: &str, target: KillTarget, signal: i32) -> Option<Event> {
        let m = self.units.get_mut(name)?;
        match target {
            KillTarget::Main(pid) | KillTarget::Control(pid) => {
                let start_time = match m.main_start_time {
                    Some((p, t)) if p == pid => Some(t),
                    _ => crate::state::identity::ProcessIdentity::read(pid)
                        .filter(|_| self.pids.get(&pid).map(String::as_str) == Some(name))
                        .map(|id| id.start_time),
                };
                match start_time {
                    Some(t) => {
                        if let Err(err) = crate::runtime::kill::signal_verified(pid, t, signal) {
                            tracing::debug!("{name}: signal {signal} to {pid}: {err}");
                        }
                    }
                    None => tracing::warn!(
                        "{name}: not signalling pid {pid}: it is not a process this daemon started or adopted"
                    ),
                }
            }
            KillTarget::Group => {
                if m.tracker.signal_all(signal) == 0 {
                    return Some(Event::GroupEmpty);
                }
            }
        }
        None
    }

    /// Post-event bookkeeping: forget removed units once stopped; start what a rollback needs.
    fn after_change(&mut self, name: &str) {
        let Some(m) = self.units.get_mut(name) else {
            return;
        };
        let Some(svc) = m.service.as_ref() else {
            return;
        };
        let status = svc.status();
        if m.removed
            && matches!(
                status.active_state,
                ActiveState::Inactive | ActiveState::Failed
            )
        {
            tracing::info!("{name}: removed from the repository and stopped; forgotten");
            if let Some(cgroup) = m.tracker.cgroup() {
                let _ = cgroup.remove(); // empty now; rmdir refuses otherwise
            }
            self.units.remove(name);
            self.pids.retain(|_, unit| unit != name);
            self.dirty = true;
            return;
        }
        // A version on trial that failed: roll back to the last good one.
        let failed = matches!(status.active_state, ActiveState::Failed)
            || (status.sub_state == SubState::AutoRestart);
        if failed && m.trial.is_some() {
            let trial = m.trial.take();
            if self.settings.rollback
                && let Some(good) = m.last_good.clone()
            {
                let failed_commit = trial.and_then(|t| t.commit);
                tracing::error!(
                    "Rolling back {name} to its last good version (commit {}): the version from commit {} failed to start: {}",
                    short(good.commit.as_deref()),
                    short(failed_commit.as_deref()),
                    status.error.as_deref().unwrap_or(status.result.as_str())
                );
                m.failed_commit = failed_commit;
                m.failed_hash = m.hash.take();
                m.hash = Some(good.hash.clone());
                m.commit = good.commit.clone();
                if let Some(svc) = m.service.as_mut() {
                    svc.set_unit(Arc::clone(&good.unit));
                }
                self.dirty = true;
                self.feed(name, Event::Restart);
            }
        }
    }

    /// Promotes versions that stayed active long enough to "last good".
    fn check_trials(&mut self, now: Instant) {
        for m in self.units.values_mut() {
            let (Some(svc), Some(trial)) = (m.service.as_ref(), m.trial.as_mut()) else {
                continue;
            };
            let status = svc.status();
            let good_now = match status.active_state {
                ActiveState::Active => true,
                ActiveState::Inactive => {
                    status.result == crate::service::ServiceResult::Success
                        && svc.unit().service.service_type == ServiceType::Oneshot
                }
                _ => false,
            };
            if !good_now {
                trial.active_since = None;
                continue;
            }
            let since = *trial.active_since.get_or_insert(now);
            let oneshot_done = status.active_state == ActiveState::Inactive
                || status.sub_state == SubState::Exited;
            if oneshot_done || now.duration_since(since) >= TRIAL_PERIOD {
                m.last_good = Some(GoodVersion {
                    unit: Arc::clone(svc.unit()),
                    hash: m.hash.clone().unwrap_or_default(),
                    commit: m.commit.clone(),
                });
                m.trial = None;
                m.failed_commit = None;
                m.failed_hash = None;
                self.dirty = true;
            }
        }
    }

    // ----- children -----

    fn reap(&mut self) {
        for (pid, info) in super::reaper::reap(&self.pids) {
            let status = if let Some(sig) = info.signal {
                ExitStatus::Signaled {
                    signal: sig,
                    core_dumped: info.core_dumped,
                }
            } else {
                ExitStatus::Exited(info.code.unwrap_or(0))
            };
            self.on_exit(pid, status);
        }
        self.check_groups();
    }

    /// Services stopping wait for their whole process group (as systemd waits for the
    /// cgroup): tell them when it has emptied. Only stopping services are checked, so the
    /// /proc scan stays off the restart path.
    fn check_groups(&mut self) {
        let stopping: Vec<String> = self
            .units
            .iter()
            .filter(|(_, m)| {
                m.service
                    .as_ref()
                    .is_some_and(|s| s.status().active_state == ActiveState::Deactivating)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in stopping {
            let empty = self.units.get_mut(&name).is_some_and(|m| {
                m.tracker.prune();
                m.tracker.members().is_empty()
            });
            if empty {
                self.feed(&name, Event::GroupEmpty);
            }
        }
    }

    fn on_exit(&mut self, pid: i32, status: ExitStatus) {
        let Some(name) = self.pids.remove(&pid) else {
            return; // an orphaned grandchild we reaped as subreaper
        };
        if let Some(m) = self.units.get_mut(&name) {
            if m.main_start_time.is_some_and(|(p, _)| p == pid) {
                m.exited_at = Some(Instant::now());
            }
            m.tracker.prune();
        }
        self.feed(&name, Event::Exited { pid, status });
    }

    fn on_adopted_exit(&mut self, pid: i32) {
        self.on_exit(pid, ExitStatus::Unknown);
    }

    fn on_notify(&mut self, dgram: NotifyDatagram) {
        let owner = self.pids.get(&dgram.pid).cloned().or_else(|| {
            let session = dgram.session?;
            self.units
                .iter()
                .find(|(_, m)| m.tracker.sessions().contains(&session))
                .map(|(name, _)| name.clone())
        });
        let Some(name) = owner else {
            tracing::debug!(
                "notify message from pid {} that is not ours; ignored",
                dgram.pid
            );
            return;
        };
        let message = NotifyMessage::parse(&dgram.data);
        self.feed(
            &name,
            Event::Notify {
                pid: dgram.pid,
                message,
            },
        );
    }

    // ----- queues (dependency ordering) -----

    /// Asks for a unit to start once its ordering allows; pulls in its requirements.
    fn queue_start(&mut self, name: &str) {
        let closure = self.graph.requirement_closure(&[name.to_string()]);
        for unit in closure {
            let Some(m) = self.units.get(&unit) else {
                continue;
            };
            if unit != name && m.held_stopped() {
                continue;
            }
            if m.load_error.is_some() && m.service.is_none() {
                continue;
            }
            if !self.start_queue.contains(&unit) {
                self.start_queue.push(unit);
            }
        }
    }

    fn unit_is_busy(&self, name: &str) -> bool {
        if self.start_queue.iter().any(|n| n == name) {
            return true;
        }
        self.units
            .get(name)
            .and_then(|m| m.service.as_ref())
            .is_some_and(|svc| {
                matches!(svc.status().active_state, ActiveState::Activating)
                    && svc.status().sub_state != SubState::AutoRestart
            })
    }

    fn process_queues(&mut self) {
        if !self.start_queue.is_empty() && !self.shutting_down {
            let mut progressed = true;
            while progressed {
                progressed = false;
                let queue = std::mem::take(&mut self.start_queue);
                let mut keep = Vec::new();
                for name in queue {
                    let blockers = self.graph.start_blockers(&name, &|n| {
                        n != name && (keep.contains(&n.to_string()) || self.unit_is_busy(n))
                    });
                    if blockers.is_empty() {
                        self.start_now(&name);
                        progressed = true;
                    } else {
                        keep.push(name);
                    }
                }
                self.start_queue = keep;
                if self.start_queue.is_empty() {
                    break;
                }
            }
        }
        if !self.stop_queue.is_empty() {
            let queue = std::mem::take(&mut self.stop_queue);
            let mut keep = Vec::new();
            for name in &queue {
                // Stop `name` only when nothing ordered after it still runs: queued or
                // already stopping (a unit leaves the queue when its stop begins, not ends).
                let blocked = !self
                    .graph
                    .stop_blockers(name, &|n| n != name && self.is_running(n))
                    .is_empty();
                if blocked {
                    keep.push(name.clone());
                } else {
                    self.feed(name, Event::Stop);
                }
            }
            self.stop_queue = keep;
        }
    }

    fn is_running(&self, name: &str) -> bool {
        self.units
            .get(name)
            .and_then(|m| m.service.as_ref())
            .is_some_and(|svc| {
                !matches!(
                    svc.status().active_state,
                    ActiveState::Inactive | ActiveState::Failed
                )
            })
    }

    /// Starts a unit now, unless a condition says it does not belong on this host.
    fn start_now(&mut self, name: &str) {
        let Some(m) = self.units.get_mut(name) else {
            return;
        };
        let Some(svc) = m.service.as_ref() else {
            return;
        };
        match check_conditions(svc.unit(), &self.settings.hostname) {
            Ok(()) => m.condition_failed = None,
            Err(why) => {
                if m.condition_failed.as_deref() != Some(why.as_str()) {
                    tracing::info!("{name}: start condition not met, skipped: {why}");
                }
                m.condition_failed = Some(why);
                self.dirty = true;
                return;
            }
        }
        for other in self.graph.conflicts(name) {
            if self.is_running(&other) {
                self.feed(&other, Event::Stop);
            }
        }
        self.feed(name, Event::Start);
    }

    // ----- git -----

    fn request_check(&mut self, token: Option<u64>) {
        if self.worker.send(WorkerCommand::CheckNow { token }).is_err() {
            tracing::error!("the source worker is gone; git updates stop until restart");
        }
    }

    fn on_source_update(&mut self, update: SourceUpdate) {
        self.source.last_check = Some(update.checked_at);
        self.source.next_check = update.next_check;
        // Only what the state file keeps makes it dirty: an unchanged poll writes nothing.
        if self.source.poll_interval.as_secs() != update.poll_interval.as_secs() {
            self.dirty = true;
        }
        self.source.poll_interval = update.poll_interval;
        if update.tip.is_some() && update.tip != self.source.fetched_tip {
            self.source.fetched_tip = update.tip.clone();
            self.dirty = true;
        }
        self.source.error = update.error.clone();
        let mut summary = serde_json::json!({
            "commit": self.source.applied_commit,
            "changed": false,
        });
        if let Some(snapshot) = update.snapshot
            && !self.shutting_down
        {
            self.source.verified_commit = snapshot.commit.clone();
            self.perf.record(Op::Fetch, snapshot.fetch_time);
            self.perf.record(Op::Parse, snapshot.parse_time);
            let started = Instant::now();
            summary = super::apply::apply(self, snapshot);
            self.perf.record(Op::Apply, started.elapsed());
            if !self.first_applied {
                self.first_applied = true;
                sd_notify("READY=1");
            }
        }
        if let Some(error) = &update.error {
            summary["error"] = serde_json::Value::String(error.clone());
        }
        if let Some(token) = update.token
            && let Some(reply) = self.syncs.remove(&token)
        {
            let _ = reply.send(match &update.error {
                Some(error) => Reply::partial(exit::FAILURE, error.clone(), summary),
                None => Reply::ok(summary),
            });
        }
    }

    // ----- control -----

    fn on_control(&mut self, req: ControlRequest) {
        let ControlRequest { verb, peer, reply } = req;
        let answer = match verb {
            Verb::Ping => Reply::ok(serde_json::json!({"pong": true})),
            Verb::Status { units } => self.status_reply(&units),
            Verb::Perf => Reply::ok(self.perf_json()),
            Verb::Sync => {
                let token = self.next_token;
                self.next_token += 1;
                self.syncs.insert(token, reply);
                self.request_check(Some(token));
                return;
            }
            Verb::Start(job) => return self.job(job, JobKind::Start, peer, reply),
            Verb::Stop(job) => return self.job(job, JobKind::Stop, peer, reply),
            Verb::Restart(job) => return self.job(job, JobKind::Restart, peer, reply),
            Verb::Reload(job) => return self.job(job, JobKind::Reload, peer, reply),
        };
        let _ = reply.send(answer);
    }

    fn job(&mut self, job: JobRequest, kind: JobKind, peer: Peer, reply: Sender<Reply>) {
        if self.shutting_down {
            let _ = reply.send(Reply::error(exit::FAILURE, "the daemon is shutting down"));
            return;
        }
        let unknown: Vec<&String> = job
            .units
            .iter()
            .filter(|u| self.units.get(*u).is_none_or(|m| m.service.is_none()))
            .collect();
        if let Some(name) = unknown.first() {
            let why = match self.units.get(*name).and_then(|m| m.load_error.clone()) {
                Some(err) => format!("Unit {name} failed to load: {err}"),
                None => format!("Unit {name} not found."),
            };
            let _ = reply.send(Reply::error(exit::NO_SUCH_UNIT, why));
            return;
        }
        if let JobKind::Reload = kind
            && let Some(name) = job.units.iter().find(|u| {
                self.units
                    .get(*u)
                    .and_then(|m| m.service.as_ref())
                    .is_some_and(|s| !s.can_reload())
            })
        {
            let _ = reply.send(Reply::error(
                1,
                format!("Job for {name} failed: it has no ExecReload= to reload with."),
            ));
            return;
        }
        let by = user_name(peer.uid);
        for name in &job.units {
            let Some(m) = self.units.get_mut(name) else {
                continue;
            };
            match kind {
                JobKind::Start | JobKind::Restart => {
                    if m.operator_override.is_some() {
                        m.operator_override = None;
                    }
                    tracing::info!("operator {by} asked to {} {name}", kind.verb());
                }
                JobKind::Stop => {
                    m.operator_override = Some(Override {
                        kind: OverrideKind::Stopped,
                        by: by.clone(),
                        at: unix_now(),
                    });
                    tracing::info!(
                        "operator {by} stopped {name}; it stays stopped until `gitproc start`"
                    );
                }
                JobKind::Reload => {}
            }
            self.start_queue.retain(|n| n != name);
            match kind {
                JobKind::Start => {
                    if !self.is_running(name) {
                        self.queue_start(name);
                    }
                }
                JobKind::Stop => self.feed(name, Event::Stop),
                JobKind::Restart => {
                    if self.is_running(name) {
                        self.feed(name, Event::Restart)
                    } else {
                        self.queue_start(name)
                    }
                }
                JobKind::Reload => self.feed(name, Event::Reload),
            }
        }
        self.process_queues();
        // Operator start/stop is durable before we answer.
        self.writer.submit(self.persisted());
        self.dirty = false;
        if let Err(err) = self.writer.flush_async().recv().unwrap_or(Ok(())) {
            tracing::error!("state save after operator {} failed: {err}", kind.verb());
        }
        let waiter = Waiter {
            units: job.units.clone(),
            stopping: matches!(kind, JobKind::Stop),
            reply,
            deadline: Instant::now() + JOB_WAIT_LIMIT,
        };
        if job.wait {
            self.waiters.push(waiter);
            self.settle_waiters(Instant::now());
        } else {
            let _ = waiter.reply.send(Reply::ok(serde_json::json!({
                "queued": job.units,
            })));
        }
    }

    /// Answers operators whose jobs have finished.
    fn settle_waiters(&mut self, now: Instant) {
        let waiters = std::mem::take(&mut self.waiters);
        for w in waiters {
            let states: Vec<(String, Option<crate::service::Status>)> = w
                .units
                .iter()
                .map(|u| {
                    (
                        u.clone(),
                        self.units
                            .get(u)
                            .and_then(|m| m.service.as_ref())
                            .map(Service::status),
                    )
                })
                .collect();
            let settled = states.iter().all(|(name, st)| match st {
                None => true,
                Some(st) => {
                    let queued = self.start_queue.contains(name);
                    if w.stopping {
                        matches!(st.active_state, ActiveState::Inactive | ActiveState::Failed)
                    } else {
                        !queued
                            && !matches!(
                                st.active_state,
                                ActiveState::Activating
                                    | ActiveState::Deactivating
                                    | ActiveState::Reloading
                            )
                    }
                }
            });
            if !settled && now < w.deadline {
                self.waiters.push(w);
                continue;
            }
            let failed: Vec<String> = states
                .iter()
                .filter(|(name, st)| {
                    let held = self
                        .units
                        .get(name)
                        .is_some_and(|m| m.condition_failed.is_some());
                    match st {
                        None => true,
                        Some(st) if w.stopping => st.active_state == ActiveState::Activating,
                        Some(st) => {
                            let reached = matches!(
                                st.active_state,
                                ActiveState::Active | ActiveState::Reloading
                            ) || (st.active_state == ActiveState::Inactive
                                && st.result == crate::service::ServiceResult::Success);
                            !held && !reached
                        }
                    }
                })
                .map(|(name, _)| name.clone())
                .collect();
            let data = serde_json::json!({ "units": w.units, "failed": failed });
            let reply = if !settled {
                Reply::partial(
                    exit::FAILURE,
                    "timed out waiting for the job; it continues in the background",
                    data,
                )
            } else if failed.is_empty() {
                Reply::ok(data)
            } else {
                Reply::partial(
                    exit::FAILURE,
                    format!(
                        "Job for {} failed. See `gitproc status {}` and `gitproc logs {}` for details.",
                        failed.join(", "),
                        failed[0],
                        failed[0]
                    ),
                    data,
                )
            };
            let _ = w.reply.send(reply);
        }
    }

    // ----- status and persistence -----

    fn status_reply(&self, names: &[String]) -> Reply {
        let units: Vec<serde_json::Value> = self
            .units
            .iter()
            .filter(|(name, _)| names.is_empty() || names.contains(name))
            .map(|(name, m)| super::status::unit_json(name, m))
            .collect();
        let data = serde_json::json!({
            "daemon": self.daemon_json(),
            "units": units,
        });
        let missing: Vec<&String> = names
            .iter()
            .filter(|n| !self.units.contains_key(*n))
            .collect();
        if let Some(name) = missing.first() {
            return Reply::partial(
                exit::NO_SUCH_UNIT,
                format!("Unit {name} could not be found."),
                data,
            );
        }
        Reply::ok(data)
    }

    fn daemon_json(&self) -> serde_json::Value {
        let s = &self.source;
        serde_json::json!({
            "pid": std::process::id(),
            "version": env!("CARGO_PKG_VERSION"),
            "repo": self.settings.repo,
            "branch": self.settings.branch,
            "state_dir": self.settings.state_dir,
            "commit": s.applied_commit,
            "commit_subject": s.subject,
            "commit_time": s.commit_time,
            "fetched_commit": s.fetched_tip,
            "verified_commit": s.verified_commit,
            "last_check": s.last_check.map(unix_of),
            "next_check": s.next_check.map(unix_of),
            "poll_interval_s": s.poll_interval.as_secs_f64(),
            "source_error": s.error,
            "shutting_down": self.shutting_down,
        })
    }

    fn perf_json(&self) -> serde_json::Value {
        let w = self.writer.stats();
        serde_json::json!({
            "operations": self.perf.stats(),
            "state_writer": {
                "saves": w.saves,
                "forced_saves": w.forced_saves,
                "failures": w.failures,
                "last_duration_us": w.last_duration.map(|d| d.as_micros() as u64),
                "last_bytes": w.last_bytes,
                "last_error": w.last_error,
            },
            "units": self.units.len(),
        })
    }

    fn persisted(&self) -> PersistedState {
        let mut state = PersistedState {
            daemon: DaemonState {
                applied_commit: self.source.applied_commit.clone(),
                fetched_commit: self.source.fetched_tip.clone(),
                verified_commit: self.source.verified_commit.clone(),
                poll_interval_s: Some(self.source.poll_interval.as_secs()),
                next_check: self.source.next_check.map(unix_of),
                last_check: self.source.last_check.map(unix_of),
            },
            ..PersistedState::default()
        };
        for (name, m) in &self.units {
            let mut unit = UnitState {
                operator_override: m.operator_override.clone(),
                content_hash: m.hash.clone(),
                commit: m.commit.clone(),
                last_good_hash: m.last_good.as_ref().map(|g| g.hash.clone()),
                last_good_commit: m.last_good.as_ref().and_then(|g| g.commit.clone()),
                ..UnitState::default()
            };
            if let Some(svc) = &m.service {
                let st = svc.status();
                unit.active_state = st.active_state.to_string();
                unit.sub_state = st.sub_state.to_string();
                unit.result = st.result.to_string();
                unit.main_pid = st.main_pid;
                unit.main_pid_start_time = match (st.main_pid, m.main_start_time) {
                    (Some(pid), Some((p, t))) if p == pid => Some(t),
                    _ => None,
                };
                unit.n_restarts = st.n_restarts;
                unit.exec_main_status = st.exec_main_status;
            }
            state.units.insert(name.clone(), unit);
        }
        state
    }

    // ----- shutdown -----

    /// Starts an orderly shutdown; returns true when the daemon can exit right away.
    fn begin_shutdown(&mut self) -> bool {
        if self.shutting_down {
            tracing::warn!("second shutdown signal: exiting now");
            return true;
        }
        self.shutting_down = true;
        for (_, reply) in self.syncs.drain() {
            let _ = reply.send(Reply::error(exit::FAILURE, "the daemon is shutting down"));
        }
        self.start_queue.clear();
        if self.settings.keep_services {
            tracing::info!("shutting down, leaving services running for the next daemon to adopt");
            return true;
        }
        tracing::info!("shutting down: stopping all services in reverse dependency order");
        let names: Vec<String> = self.units.keys().cloned().collect();
        self.stop_queue = self.graph.stop_order(&names);
        for name in &names {
            if !self.stop_queue.contains(name) {
                self.stop_queue.push(name.clone());
            }
        }
        self.process_queues();
        self.all_stopped()
    }

    fn all_stopped(&self) -> bool {
        self.stop_queue.is_empty() && !self.units.keys().any(|n| self.is_running(n))
    }

    fn finish_shutdown(mut self) -> i32 {
        self.reap();
        self.writer.submit(self.persisted());
        for w in self.waiters.drain(..) {
            let _ = w
                .reply
                .send(Reply::error(exit::FAILURE, "the daemon shut down"));
        }
        if let Err(err) = self.writer.flush_async().recv().unwrap_or(Ok(())) {
            tracing::error!("final state save failed: {err}");
            return 1;
        }
        if !self.settings.keep_services {
            // Best effort: empty cgroups are harmless but would pile up, one per state dir.
            for m in self.units.values() {
                if let Some(cgroup) = m.tracker.cgroup() {
                    let _ = cgroup.remove();
                }
            }
            if let Some(root) = &self.cgroups {
                let _ = root.remove();
            }
        }
        tracing::info!("shutdown complete");
        0
    }

    // ----- accessors for apply -----

    pub(super) fn record(&mut self, op: Op, took: Duration) {
        self.perf.record(op, took);
    }

    pub(super) fn units_mut(&mut self) -> &mut BTreeMap<String, Managed> {
        &mut self.units
    }

    pub(super) fn new_tracker(&self, name: &str) -> ProcessTracker {
        let cgroup = self.cgroups.as_ref().and_then(|root| root.unit(name).ok());
        ProcessTracker::new(cgroup)
    }

    pub(super) fn take_restored(&mut self) -> Option<PersistedState> {
        self.restored.take()
    }

    pub(super) fn set_graph(&mut self, graph: Graph) {
        self.graph = graph;
    }

    pub(super) fn set_applied(
        &mut self,
        commit: Option<String>,
        subject: Option<String>,
        time: Option<i64>,
    ) {
        self.source.applied_commit = commit;
        self.source.subject = subject;
        self.source.commit_time = time;
        self.dirty = true;
    }

    pub(super) fn adopt(&mut self, name: &str, pid: i32, start_time: u64) {
        let Some(m) = self.units.get_mut(name) else {
            return;
        };
        let Some(svc) = m.service.as_mut() else {
            return;
        };
        let effects = svc.adopt(pid, Instant::now());
        m.main_start_time = Some((pid, start_time));
        m.tracker.add_session(pid);
        m.since_unix = Some(unix_now());
        self.pids.insert(pid, name.to_string());
        if let Err(err) = self.pidfds.watch(pid, start_time) {
            tracing::warn!("{name}: cannot watch adopted pid {pid}: {err}");
        }
        // Its output pipes outlived the previous daemon (see `ChildCtx::run`): read them on.
        use crate::runtime::spawn::{OutputTarget, reopen_log_pipes};
        let unit = &svc.unit().service;
        let stdout = OutputTarget::stdout_of(unit) == OutputTarget::Pipe;
        let stderr = OutputTarget::stderr_of(unit) == OutputTarget::Pipe;
        for (fd, is_stderr) in reopen_log_pipes(pid, stdout, stderr) {
            let stream = if is_stderr {
                Stream::Stderr
            } else {
                Stream::Stdout
            };
            let _ = self.logs.add(name, fd, stream);
        }
        tracing::info!("Adopted {name} (pid {pid}) from the previous daemon");
        let now = Instant::now();
        for effect in effects {
            if let Some(ev) = self.perform(name, effect, now) {
                self.feed(name, ev);
            }
        }
        self.dirty = true;
    }

    pub(super) fn request_start(&mut self, name: &str) {
        self.queue_start(name);
    }

    pub(super) fn request_restart(&mut self, name: &str) {
        let blocked = self
            .units
            .get(name)
            .and_then(|m| m.service.as_ref())
            .and_then(|svc| check_conditions(svc.unit(), &self.settings.hostname).err());
        if let (Some(why), true) = (blocked, self.is_running(name)) {
            // The new version is not for this host: stop it rather than restart it (a
            // restart inside the state machine would skip the condition check).
            tracing::info!("{name}: new version's start condition not met, stopping: {why}");
            if let Some(m) = self.units.get_mut(name) {
                m.condition_failed = Some(why);
            }
            self.request_stop(name);
        } else if self.is_running(name) {
            self.feed(name, Event::Restart);
        } else {
            self.queue_start(name);
        }
    }

    pub(super) fn request_stop(&mut self, name: &str) {
        self.start_queue.retain(|n| n != name);
        if self.is_running(name) {
            self.feed(name, Event::Stop);
        } else {
            self.after_change(name);
        }
    }

    pub(super) fn begin_trial(&mut self, name: &str, commit: Option<String>) {
        if let Some(m) = self.units.get_mut(name) {
            m.trial = Some(Trial {
                commit,
                active_since: None,
            });
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum JobKind {
    Start,
    Stop,
    Restart,
    Reload,
}

impl JobKind {
    fn verb(self) -> &'static str {
        match self {
            JobKind::Start => "start",
            JobKind::Stop => "stop",
            JobKind::Restart => "restart",
            JobKind::Reload => "reload",
        }
    }
}

pub fn unix_now() -> u64 {
    unix_of(SystemTime::now())
}

fn unix_of(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn short(commit: Option<&str>) -> &str {
    commit.map(|c| c.get(..10).unwrap_or(c)).unwrap_or("-")
}

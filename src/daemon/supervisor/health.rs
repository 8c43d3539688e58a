//! Health checks (`[X-Health]`) in the loop: which runs are probed, the probe results, and
//! what a change of health does.
//!
//! A run is probed from the moment its main process exists (sub-state `start` with a main
//! pid, `start-post`, `running`, `reload`) until it leaves those states; each run (each
//! invocation) starts `starting` with fresh counters ([`Health`], pure). Network probes
//! (`HTTP=`, `TCP=`) run on the one prober thread ([`crate::runtime::prober`]), which sends
//! every result back as an input of the select. `Exec=` probes are processes like any
//! other of the unit's: spawned on the spawner pool with the unit's `User=`, `Group=`,
//! environment, working directory and cgroup (under a spawner key of their own, so a stuck
//! probe never holds up the unit's own starts), reaped by the loop, killed at `TimeoutSec=`;
//! their output (when the unit's goes to its log) is read, without blocking, once they
//! have exited, for `last_probe_output`. The loop never waits on a probe.
//!
//! A change of health is logged in the unit's log (`Health: unhealthy: HTTP 503 after 3
//! probes`) and fed to the machine (`Event::Healthy`/`Event::Unhealthy`), which acts on
//! `ReadyOnHealthy=` and `OnUnhealthy=`. A version on trial that turns unhealthy is rolled
//! back ([`super::trial`]).

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::Supervisor;
use crate::daemon::spawner::{SpawnJob, Task};
use crate::perf::Op;
use crate::runtime::prober::{NetProbe, ProbeResult};
use crate::runtime::spawn::{SpawnProgress, Spawned};
use crate::service::health::{Change, Health, ProbeOutcome};
use crate::service::{Event, ExecKind, ExitStatus, ProcessRole, SubState};
use crate::sys::time::deadline;
use crate::unit::model::{HealthCheck, HealthProbe};

/// The spawner key of a unit's `Exec=` probes (a NUL never appears in a unit name).
const PROBE_KEY_SUFFIX: &str = "\0health";

/// An `Exec=` probe process in flight.
pub(super) struct ExecInFlight {
    /// The spawn task, until its report arrives.
    task: u64,
    pid: Option<(i32, u64)>,
    started: Instant,
    timeout_at: Option<Instant>,
    /// Read ends of its stdout/stderr pipes (when the unit's output goes to its log): read,
    /// without blocking, once it has exited, for `last_probe_output`.
    output: Vec<OwnedFd>,
}

/// Most bytes of an `Exec=` probe's output read (status keeps fewer, see
/// [`crate::service::health::OUTPUT_KEPT`]).
const EXEC_OUTPUT_READ: usize = 4096;

/// What the exited probe wrote, read without blocking (a pipe still held by a process it
/// left behind gives what is there).
fn read_output(fds: &[OwnedFd]) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    for fd in fds {
        while out.len() < EXEC_OUTPUT_READ {
            match nix::unistd::read(fd, &mut buf) {
                Ok(0) | Err(_) => break, // EOF, EAGAIN (nothing more now), or an error
                Ok(n) => out.extend_from_slice(&buf[..n.min(buf.len())]),
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Makes a pipe's read end non-blocking (the loop reads it).
fn nonblocking(fd: OwnedFd) -> Option<OwnedFd> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = fcntl(&fd, FcntlArg::F_GETFL).ok()?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(&fd, FcntlArg::F_SETFL(flags)).ok()?;
    Some(fd)
}

/// The health check of one unit's current run.
pub(super) struct UnitHealth {
    /// The run (invocation) probed; a new run starts a new [`UnitHealth`].
    invocation: String,
    /// Watch number: results of an older watch are ignored.
    generation: u64,
    pub(super) check: HealthCheck,
    pub(super) health: Health,
    /// `Exec=` probes: when the next one is due, and the one in flight.
    next_exec: Option<Instant>,
    exec: Option<ExecInFlight>,
    /// Connections the prober has opened for this run (keep-alive: 1).
    pub(super) connections: u64,
    /// The run is being probed; once it ends, the entry stays for `status` (the last
    /// verdict) until the next run replaces it.
    probing: bool,
}

impl UnitHealth {
    /// The loop's deadlines for this unit's `Exec=` probes.
    pub(super) fn deadline(&self) -> Option<Instant> {
        if !self.probing {
            return None;
        }
        match &self.exec {
            Some(e) => e.timeout_at,
            None => self.next_exec,
        }
    }
}

/// Wall-clock seconds of a past `Instant`, for status.
pub(super) fn unix_at(at: Instant) -> u64 {
    let ago = Instant::now().saturating_duration_since(at);
    super::unix_of(SystemTime::now() - ago)
}

fn probed(sub: SubState, has_main: bool) -> bool {
    match sub {
        SubState::Start => has_main,
        SubState::StartPost | SubState::Running | SubState::Reload => true,
        _ => false,
    }
}

fn exit_words(status: ExitStatus) -> String {
    match status {
        ExitStatus::Exited(code) => format!("exit status {code}"),
        ExitStatus::Signaled { signal, .. } => format!("killed by signal {signal}"),
        ExitStatus::Unknown => "exit status unknown".to_string(),
    }
}

impl Supervisor {
    /// After an event: starts probing a run that is up, stops probing one that is not.
    pub(super) fn sync_health(&mut self, name: &str) {
        let wanted = self.units.get(name).and_then(|m| {
            let svc = m.service.as_ref()?;
            let check = svc.running_unit().health.clone()?;
            let st = svc.status();
            probed(st.sub_state, st.main_pid.is_some()).then(|| (check, m.invocation_id.clone()))
        });
        let current = self
            .health
            .get(name)
            .filter(|h| h.probing)
            .map(|h| h.invocation.clone());
        match (wanted, current) {
            (Some((_, invocation)), Some(cur)) if invocation == cur => {}
            (Some((check, invocation)), _) => self.begin_health(name, check, invocation),
            (None, Some(_)) => self.end_health(name),
            (None, None) => {}
        }
    }

    fn begin_health(&mut self, name: &str, check: HealthCheck, invocation: String) {
        self.end_health(name);
        let now = Instant::now();
        let generation = self.next_task_id;
        self.next_task_id += 1;
        let net = NetProbe::of(&check.probe);
        if let (Some(probe), Some(prober)) = (&net, &self.prober)
            && let Err(e) = prober.watch(
                name,
                generation,
                probe.clone(),
                check.interval,
                check.timeout,
            )
        {
            tracing::error!("{name}: cannot hand the health check to the prober: {e}");
        }
        let next_exec = match check.probe {
            HealthProbe::Exec(_) => {
                self.exec_probed.insert(name.to_string());
                deadline(now, check.interval)
            }
            _ => None,
        };
        self.health.insert(
            name.to_string(),
            UnitHealth {
                invocation,
                generation,
                health: Health::new(&check, now),
                check,
                next_exec,
                exec: None,
                connections: 0,
                probing: true,
            },
        );
    }

    fn end_health(&mut self, name: &str) {
        let Some(h) = self.health.get_mut(name).filter(|h| h.probing) else {
            return;
        };
        h.probing = false;
        h.next_exec = None;
        let exec = h.exec.take();
        self.exec_probed.remove(name);
        if NetProbe::of(&h.check.probe).is_some()
            && let Some(prober) = &self.prober
        {
            let _ = prober.unwatch(name);
        }
        if let Some(ExecInFlight {
            pid: Some((pid, start_time)),
            ..
        }) = exec
        {
            // The run is over: so is its probe.
            let _ = crate::runtime::kill::signal_verified(pid, start_time, libc::SIGKILL);
        }
    }

    /// A batch of results from the prober thread, and every other batch already queued:
    /// one loop iteration per batch costs far less than one per result (see the prober's
    /// schedule grid and `HOLD`).
    pub(super) fn on_probe_results(&mut self, first: Vec<ProbeResult>) {
        for r in first {
            self.on_probe_result(r);
        }
        while let Ok(batch) = self.probe_results.try_recv() {
            for r in batch {
                self.on_probe_result(r);
            }
        }
    }

    fn on_probe_result(&mut self, r: ProbeResult) {
        let Some(h) = self.health.get_mut(&r.unit) else {
            return;
        };
        if h.generation != r.generation || !h.probing {
            return;
        }
        h.connections = r.connections;
        self.perf.record_probe(&r.unit, r.latency, r.outcome.ok);
        self.probe_done(&r.unit, r.outcome, r.finished);
    }

    /// One probe's verdict, from either kind of probe. `finished` is when the probe ended
    /// (the health state's clock); the `probe_to_restart` histogram runs from now, when
    /// the loop takes the verdict up, to the machine's decision: the time the daemon
    /// itself takes, not the wait for the loop thread to be scheduled (a loaded host) or to
    /// finish an earlier input (a large `status`).
    fn probe_done(&mut self, name: &str, outcome: ProbeOutcome, finished: Instant) {
        let taken_up = Instant::now();
        let Some(h) = self.health.get_mut(name).filter(|h| h.probing) else {
            return;
        };
        // Not persisted (a new daemon probes afresh), so no state save: a save per probe
        // would cost more than the probe.
        let change = h.health.record(outcome, finished);
        let Some(change) = change else {
            return;
        };
        let (line, event) = match change {
            Change::Healthy { message } => (format!("healthy: {message}"), Event::Healthy),
            Change::Unhealthy { message } => {
                let event = Event::Unhealthy(message.clone());
                (format!("unhealthy: {message}"), event)
            }
        };
        let unhealthy = matches!(event, Event::Unhealthy(_));
        if unhealthy {
            tracing::warn!("{name}: Health: {line}");
        } else {
            tracing::info!("{name}: Health: {line}");
        }
        let _ = self.logs.note(name, &format!("gitproc: Health: {line}"));
        self.feed(name, event);
        if unhealthy {
            self.perf.record(Op::ProbeToRestart, taken_up.elapsed());
            // OnUnhealthy=none leaves the run as it is; a version on trial is rolled back
            // all the same (a stop or restart was rolled back by `after_change`).
            if let Some(m) = self.units.get(name)
                && m.trial.is_some()
                && let Some(status) = m.service.as_ref().map(|s| s.status())
            {
                self.roll_back(name, &status);
            }
        }
    }

    /// `Exec=` probes due now: spawn them; probes past `TimeoutSec=`: kill them and fail.
    pub(super) fn run_exec_probes(&mut self, now: Instant) {
        let due: Vec<String> = self
            .exec_probed
            .iter()
            .filter(|n| {
                self.health
                    .get(*n)
                    .and_then(UnitHealth::deadline)
                    .is_some_and(|at| at <= now)
            })
            .cloned()
            .collect();
        for name in due {
            let timed_out = self.health.get_mut(&name).and_then(|h| {
                let e = h.exec.take()?;
                h.next_exec = deadline(now, h.check.interval);
                Some((e, h.check.timeout))
            });
            if let Some((e, timeout)) = timed_out {
                if let Some((pid, start_time)) = e.pid {
                    let _ = crate::runtime::kill::signal_verified(pid, start_time, libc::SIGKILL);
                }
                self.perf
                    .record_probe(&name, now.saturating_duration_since(e.started), false);
                let summary = format!("Exec= timed out after {}s", timeout.as_secs_f64());
                self.probe_done(&name, ProbeOutcome::new(false, summary, ""), now);
                continue;
            }
            self.spawn_exec_probe(&name, now);
        }
    }

    fn spawn_exec_probe(&mut self, name: &str, now: Instant) {
        let Some(m) = self.units.get(name) else {
            return;
        };
        let Some(svc) = m.service.as_ref() else {
            return;
        };
        let unit = Arc::clone(svc.running_unit());
        let Some(h) = self.health.get_mut(name) else {
            return;
        };
        let HealthProbe::Exec(command) = &h.check.probe else {
            return;
        };
        let id = self.next_task_id;
        self.next_task_id += 1;
        h.next_exec = None;
        h.exec = Some(ExecInFlight {
            task: id,
            pid: None,
            started: now,
            timeout_at: deadline(now, h.check.timeout),
            output: Vec::new(),
        });
        let job = SpawnJob {
            id,
            unit_name: Some(name.to_string()),
            role: ProcessRole::Control(ExecKind::Health),
            command: command.clone(),
            invocation_id: m.invocation_id.clone(),
            instance: self.settings.instance.clone(),
            notify_socket: None,
            main_pid: svc.status().main_pid,
            cgroup: m.tracker.cgroup().cloned(),
            resources: None,
            dirs: self.settings.dirs.clone(),
            listen: Vec::new(),
            // A hook's MONITOR_* variables are for its own start, not its probes.
            monitor_env: Vec::new(),
            unit,
            progress: Arc::new(SpawnProgress::new()),
        };
        let key = format!("{name}{PROBE_KEY_SUFFIX}");
        self.spawner.submit(&key, Task::Spawn(Box::new(job)));
    }

    /// The spawner's report of an `Exec=` probe spawn; `false` when `key` is not a probe's.
    pub(super) fn on_probe_spawned(
        &mut self,
        key: &str,
        id: u64,
        result: Result<Spawned, crate::runtime::spawn::SpawnError>,
        began: Instant,
    ) -> bool {
        let Some(name) = key.strip_suffix(PROBE_KEY_SUFFIX) else {
            return false;
        };
        let name = name.to_string();
        let wanted = self
            .health
            .get(&name)
            .and_then(|h| h.exec.as_ref())
            .is_some_and(|e| e.task == id && e.pid.is_none());
        match result {
            Ok(spawned) => {
                let pid = spawned.pid;
                let early = self.claim_exit(pid, began);
                let start_time = spawned.start_time;
                let output: Vec<OwnedFd> = [spawned.stdout, spawned.stderr]
                    .into_iter()
                    .flatten()
                    .filter_map(nonblocking)
                    .collect();
                if !wanted {
                    if early.is_none() {
                        let _ =
                            crate::runtime::kill::signal_verified(pid, start_time, libc::SIGKILL);
                        self.probe_pids.insert(pid, name);
                    }
                    return true;
                }
                if let Some(m) = self.units.get_mut(&name) {
                    m.tracker.add_session(pid);
                }
                if let Some(e) = self.health.get_mut(&name).and_then(|h| h.exec.as_mut()) {
                    e.pid = Some((pid, start_time));
                    e.output = output;
                }
                self.probe_pids.insert(pid, name);
                if let Some(status) = early {
                    self.on_probe_exit(pid, status);
                }
            }
            Err(err) if wanted => {
                let now = Instant::now();
                if let Some(h) = self.health.get_mut(&name) {
                    h.exec = None;
                    h.next_exec = deadline(now, h.check.interval);
                }
                let summary = format!("Exec= could not start: {err}");
                self.probe_done(&name, ProbeOutcome::new(false, summary, ""), now);
            }
            Err(_) => {}
        }
        true
    }

    /// A reaped pid that was an `Exec=` probe's: its verdict. `false` when it was not one.
    pub(super) fn on_probe_exit(&mut self, pid: i32, status: ExitStatus) -> bool {
        let Some(name) = self.probe_pids.remove(&pid) else {
            return false;
        };
        let now = Instant::now();
        let Some(h) = self.health.get_mut(&name) else {
            return true;
        };
        let Some(e) = h.exec.take_if(|e| e.pid.is_some_and(|(p, _)| p == pid)) else {
            return true; // a probe given up on (timed out, or of an earlier run)
        };
        h.next_exec = deadline(now, h.check.interval);
        let ignore = matches!(&h.check.probe, HealthProbe::Exec(c) if c.flags.ignore_failure);
        let ok = ignore || status == ExitStatus::Exited(0);
        let latency = now.saturating_duration_since(e.started);
        let output = read_output(&e.output);
        self.perf.record_probe(&name, latency, ok);
        self.probe_done(
            &name,
            ProbeOutcome::new(ok, exit_words(status), &output),
            now,
        );
        true
    }

    /// The loop's earliest `Exec=` probe deadline (network probes have none in the loop).
    pub(super) fn health_deadline(&self) -> Option<Instant> {
        self.exec_probed
            .iter()
            .filter_map(|n| self.health.get(n).and_then(UnitHealth::deadline))
            .min()
    }

    /// What `status` shows of a unit's health (`None` without a check).
    pub(super) fn health_view(&self, name: &str) -> Option<super::status::HealthView<'_>> {
        let h = self.health.get(name)?;
        let last = h.health.last();
        Some(super::status::HealthView {
            state: h.health.state().as_str(),
            since: unix_at(h.health.since()),
            probe: h.check.probe.kind(),
            probing: h.probing,
            last_at: last.map(|(at, _)| unix_at(*at)),
            last: last.map(|(_, o)| o),
            probes: h.health.probes,
            failed_probes: h.health.failed_probes,
            connections: h.connections,
        })
    }

    /// Forgets the health of a unit gone from the repository.
    pub(super) fn forget_health(&mut self, name: &str) {
        self.end_health(name);
        self.health.remove(name);
    }

    /// How long a unit with a health check must have been healthy to leave its trial.
    pub(super) fn healthy_for(&self, name: &str, now: Instant) -> Option<(Duration, Duration)> {
        let h = self.health.get(name)?;
        let healthy = h.health.state() == crate::service::health::HealthState::Healthy;
        Some((
            if healthy {
                now.saturating_duration_since(h.health.since())
            } else {
                Duration::ZERO
            },
            h.check.interval,
        ))
    }
}

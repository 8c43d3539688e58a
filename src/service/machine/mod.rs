//! The state machine of one service, after systemd.service(5) and systemd.kill(5).
//!
//! A run goes `condition -> start-pre -> start -> start-post -> running|exited`, each phase
//! running its `Exec*=` commands one after the other as control processes; a stop goes
//! `stop (ExecStop=) -> stop-sigterm -> stop-sigkill -> stop-post (ExecStopPost=) ->
//! final-sigterm -> final-sigkill -> dead|failed|auto-restart`, skipping phases with nothing
//! to do. Each phase has its deadline (TimeoutStartSec= for starting and reloading phases,
//! TimeoutStopSec= for stopping ones); the loop calls back with [`Event::Timer`].
//!
//! Where each part lives: this file holds [`Service`] (what survives across runs), event
//! dispatch, accessors and the state transition itself; [`run`] the per-run value replaced
//! at each start; [`start`] the way up (start limit, condition/start-pre/start/start-post,
//! the exec queues); [`reload`] `ExecReload=`; [`stop`] the way down (ExecStop=, the kill
//! sequence per KillMode=, stop-post, final-sigterm, and the end of a run with its restart
//! decision); [`exits`] what a process exit or failed spawn means in each sub-state;
//! [`notifications`] what an sd_notify message does (parsing is [`crate::service::notify`]);
//! [`timers`] the deadlines and what happens when one passes; [`health`] what the
//! `[X-Health]` check's verdicts do (`ReadyOnHealthy=`, `OnUnhealthy=`).
//!
//! Where gitproc differs from systemd (said here once):
//! - Unless the loop reports empty groups ([`Service::set_group_tracking`]), the machine
//!   only waits for processes it knows (main and control). Once they are gone, the rest of
//!   the group has had the kill signal (with KillMode=control-group) and the stop moves on
//!   instead of waiting for the group to empty; with KillMode=mixed the rest gets
//!   FinalKillSignal at that moment. The final-sigterm/final-sigkill phases only follow
//!   `ExecStopPost=` (to kill its leftovers); without it there is nothing new to signal.
//! - Watchdog expiry uses sub-state `stop-sigterm` with SIGABRT (systemd's `WatchdogSignal=`
//!   default; systemd names the phase `stop-watchdog`, which is not in gitproc's vocabulary).
//! - `ExecStart=` of `Type=oneshot` runs as the main role, one line after the other.
//! - `Type=forking` without `PIDFile=`: systemd guesses the main pid from the cgroup; a pure
//!   machine cannot. The service becomes `active/running` with no main pid once the forking
//!   parent exits 0 (a later `MAINPID=` notification sets it); it ends when stopped or, with
//!   group tracking, when its group empties.
//! - The restart backoff resets once the service stayed up, see
//!   [`super::restart::stay_up_period`].
//! - `n_restarts` is not reset by an operator start (it is what was persisted); `restore`
//!   sets it.
//! - A failed exec is reported as systemd does (exit status 203, result `exit-code`), with
//!   the runtime's message in `error`.

mod exits;
mod health;
mod notifications;
mod reload;
mod run;
mod start;
mod stop;
mod timers;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::event::{Effect, Event, ExitStatus, Lifecycle, ProcessRole, Status};
use super::state::{ActiveState, ServiceResult, SubState};
use crate::unit::model::{ServiceSection, Unit};
use run::Run;

pub(crate) use timers::PID_FILE_RETRY;

/// One service: its unit and where it is in its lifecycle.
///
/// Fields here survive from one run to the next; everything that belongs to one run is in
/// `Run` (see `machine::run`), replaced at each start.
#[derive(Debug)]
pub struct Service {
    /// The newest unit given; becomes `cfg` at the next start.
    unit: Arc<Unit>,
    /// The unit of the current (or last) run.
    cfg: Arc<Unit>,
    sub: SubState,
    /// Deadline of the current phase (also the restart delay in `auto-restart`).
    deadline: Option<Instant>,
    /// When the current active state was entered.
    active_enter: Option<Instant>,
    /// The current (or last) run.
    run: Run,
    n_restarts: u32,
    /// Automatic restarts in the current crash streak (drives the backoff).
    streak: u32,
    /// Instants of recent starts, for StartLimitIntervalSec=/StartLimitBurst=.
    start_times: VecDeque<Instant>,
    /// The last main exit, as status shows it (kept across starts, as systemd does).
    exec_main: Option<ExitStatus>,
    /// Why the machine is doing what it does now, for the lifecycle log lines. An automatic
    /// restart keeps the reason the restart timer gave.
    reason: String,
    /// The loop promised [`Event::GroupEmpty`] (see [`Service::set_group_tracking`]).
    group_tracking: bool,
    /// The last word from the loop: no process of the service is left (reset by each spawn).
    /// Processes can outlive a run, so this is not part of [`Run`].
    group_empty: bool,
}

fn is_deactivating(s: SubState) -> bool {
    s.active_state() == ActiveState::Deactivating
}

fn secs(d: Duration) -> String {
    if d == Duration::MAX {
        return "infinity".to_string();
    }
    format!("{}s", d.as_secs_f64())
}

impl Service {
    /// A service that has not run yet: `inactive/dead`, result `success`.
    pub fn new(unit: Arc<Unit>) -> Service {
        Service {
            cfg: unit.clone(),
            unit,
            sub: SubState::Dead,
            deadline: None,
            active_enter: None,
            run: Run::default(),
            n_restarts: 0,
            streak: 0,
            start_times: VecDeque::new(),
            exec_main: None,
            reason: String::new(),
            group_tracking: false,
            group_empty: true,
        }
    }

    /// The newest unit given (what the next start uses).
    pub fn unit(&self) -> &Arc<Unit> {
        &self.unit
    }

    /// The unit of the current (or last) run: what its processes were started with.
    pub fn running_unit(&self) -> &Arc<Unit> {
        &self.cfg
    }

    /// A new version of the unit; takes effect at the next start (the loop restarts the
    /// service when the change needs it). A stop in progress uses the unit it started with.
    pub fn set_unit(&mut self, unit: Arc<Unit>) {
        if matches!(self.sub, SubState::Dead | SubState::Failed) {
            self.cfg = unit.clone();
        }
        self.unit = unit;
    }

    /// Reacts to `event` happening at `now`; returns what the runtime must do, in order.
    pub fn on_event(&mut self, event: Event, now: Instant) -> Vec<Effect> {
        let before = self.persisted();
        let mut fx = Vec::new();
        match event {
            Event::Start => self.op_start(now, &mut fx),
            Event::Stop => {
                self.run.start_after_stop = false;
                self.op_stop(now, &mut fx);
            }
            Event::Restart => self.op_restart(now, &mut fx),
            Event::Reload => self.op_reload(now, &mut fx),
            Event::Spawned { role, pid } => {
                self.spawn_answered(role);
                self.spawned(role, pid, now, &mut fx)
            }
            Event::SpawnFailed {
                role,
                error,
                exit_status,
            } => {
                self.spawn_answered(role);
                self.spawn_failed(role, error, exit_status, now, &mut fx)
            }
            Event::Exited { pid, status } => {
                if self.run.main_pid == Some(pid) {
                    self.main_exited(status, now, &mut fx);
                } else if self.run.control.pid == Some(pid) {
                    self.control_exited(status, now, &mut fx);
                }
            }
            Event::OomKilled { pid } => {
                if self.run.main_pid == Some(pid) {
                    self.run.oom_killed = Some(pid);
                }
            }
            Event::PidFile(read) => self.pid_file(read, now, &mut fx),
            Event::PidFileRefused(error) => self.pid_file_refused(error, now, &mut fx),
            Event::MainPidGuessed(pid) => self.main_pid_guessed(pid, now, &mut fx),
            Event::Notify { pid, message } => self.notify(pid, message, now, &mut fx),
            Event::Timer => self.timer(now, &mut fx),
            Event::GroupEmpty => self.on_group_empty(now, &mut fx),
            Event::Healthy => self.healthy(now, &mut fx),
            Event::Unhealthy(message) => self.unhealthy(message, now, &mut fx),
        }
        if self.persisted() != before {
            fx.push(Effect::StatusChanged);
        }
        fx
    }

    /// Earliest instant at which the machine wants [`Event::Timer`]: restart delay,
    /// start/stop/reload timeout, watchdog, PID file retry.
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.deadline,
            self.run.watchdog_deadline,
            self.run.pid_file_retry,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// What `gitproc status` shows and the state file records.
    pub fn status(&self) -> Status {
        Status {
            active_state: self.sub.active_state(),
            sub_state: self.sub,
            result: self.run.result,
            main_pid: self.run.main_pid,
            control_pid: self.run.control.pid,
            n_restarts: self.n_restarts,
            exec_main_status: self.exec_main.and_then(|s| match s {
                ExitStatus::Exited(code) => Some(code),
                ExitStatus::Signaled { signal, .. } => Some(signal),
                ExitStatus::Unknown => None,
            }),
            exec_main_code: self.exec_main.and_then(|s| match s {
                ExitStatus::Exited(_) => Some("exited"),
                ExitStatus::Signaled {
                    core_dumped: true, ..
                } => Some("dumped"),
                ExitStatus::Signaled { .. } => Some("killed"),
                ExitStatus::Unknown => None,
            }),
            active_enter: self.active_enter,
            status_text: self.run.status_text.clone(),
            status_errno: self.run.status_errno,
            error: self.run.error.clone(),
            next_restart: if self.sub == SubState::AutoRestart {
                self.deadline
            } else {
                None
            },
        }
    }

    /// The role of the spawn whose answer the machine still waits for, if any. The loop
    /// spawns off its thread: between [`Effect::Spawn`] and [`Event::Spawned`] other events
    /// arrive (a stop, a timeout, a new version). When this turns `None` (or a new
    /// [`Effect::Spawn`] is asked for) while the loop still has that spawn in flight, the
    /// machine has given up on it: the loop cancels it and kills the process if it appears.
    pub fn spawn_pending(&self) -> Option<ProcessRole> {
        self.run.spawning
    }

    /// What the pending spawn is blocked on, in words (`opening StandardOutput=file:/x`),
    /// for the error of a start timeout that hits it. Ignored when no spawn is pending.
    pub fn set_spawn_step(&mut self, step: Option<String>) {
        if self.run.spawning.is_some() {
            self.run.spawn_step = step;
        }
    }

    /// Which of our processes `pid` is, so the loop routes exits (and accepts notify
    /// datagrams). `None` for anything else (e.g. reaped orphans of the subreaper).
    pub fn role_of(&self, pid: i32) -> Option<ProcessRole> {
        if self.run.main_pid == Some(pid) {
            Some(ProcessRole::Main)
        } else if self.run.control.pid == Some(pid) {
            self.run.control.kind.map(ProcessRole::Control)
        } else {
            None
        }
    }

    /// Whether [`Event::Reload`] would do something: the service is active and has
    /// `ExecReload=` (systemd refuses a reload otherwise).
    pub fn can_reload(&self) -> bool {
        matches!(self.sub, SubState::Running | SubState::Exited)
            && !self.cfg.service.exec_reload.is_empty()
    }

    /// Re-adoption after a daemon restart: `pid` (the main process of the previous daemon)
    /// still runs but is no longer our child; its exit arrives as [`ExitStatus::Unknown`].
    ///
    /// The current run (`Run`) is kept, not replaced: what [`Service::restore`] put back (the
    /// last result) stays visible.
    pub fn adopt(&mut self, pid: i32, now: Instant) -> Vec<Effect> {
        let mut fx = Vec::new();
        self.cfg = self.unit.clone();
        self.run.main_pid = Some(pid);
        self.group_empty = false;
        self.reason = "adopted after a daemon restart".to_string();
        self.run.watchdog = run::watchdog_period(&self.cfg.service);
        self.set_state(SubState::Running, now, &mut fx);
        self.run.running_since = Some(now);
        self.arm_watchdog(now);
        fx.push(Effect::StatusChanged);
        fx
    }

    /// The loop promises to send [`Event::GroupEmpty`] whenever it sees that no process of
    /// this service is left (after reaping one of its processes, and after a
    /// `Signal { target: Group }` that found nobody). Then, with KillMode=control-group or
    /// mixed, stop phases also wait for the whole group (escalating to FinalKillSignal after
    /// TimeoutStopSec= as systemd does), and a `Type=forking` service without `PIDFile=`
    /// counts as exited when its group empties. Without it (the default), the machine waits
    /// only for the main and control processes.
    pub fn set_group_tracking(&mut self, on: bool) {
        self.group_tracking = on;
    }

    /// Restores what the state file remembers: the restart counter and the last result
    /// (a failed result shows as `failed` until the next start).
    pub fn restore(&mut self, n_restarts: u32, result: ServiceResult) {
        self.n_restarts = n_restarts;
        self.run.result = result;
        if self.sub == SubState::Dead && result != ServiceResult::Success {
            self.sub = SubState::Failed;
        }
    }

    // ----- internals shared by the submodules ----------------------------------------

    fn spawn_answered(&mut self, role: ProcessRole) {
        if self.run.spawning == Some(role) {
            self.run.spawning = None;
            self.run.spawn_step = None;
        }
    }

    fn persisted(&self) -> (SubState, ServiceResult, Option<i32>, u32) {
        (
            self.sub,
            self.run.result,
            self.run.main_pid,
            self.n_restarts,
        )
    }

    fn svc(&self) -> &ServiceSection {
        &self.cfg.service
    }

    /// Records `f` as the run's result unless it is `success` (a later success never hides
    /// an earlier failure).
    fn fail(&mut self, f: ServiceResult) {
        if f != ServiceResult::Success {
            self.run.result = f;
        }
    }

    fn lifecycle(&self, kind: Lifecycle, fx: &mut Vec<Effect>) {
        fx.push(Effect::Lifecycle {
            kind,
            pid: self.run.main_pid.or(self.run.last_main_pid),
            reason: self.reason.clone(),
        });
    }

    /// Enters `new`, arming the phase deadline and logging the lifecycle transitions
    /// (`Started`, `Stopping`, `Stopped`, `Failed`).
    fn set_state(&mut self, new: SubState, now: Instant, fx: &mut Vec<Effect>) {
        let old = self.sub;
        self.sub = new;
        if old != new {
            // A spawn asked for by the phase being left is no longer wanted.
            self.run.spawning = None;
            self.run.spawn_step = None;
        }
        if old.active_state() != new.active_state() {
            self.active_enter = Some(now);
        }
        self.deadline = self.phase_deadline(new, now);
        if !timers::watchdog_runs_in(new) {
            self.run.watchdog_deadline = None;
        }
        if !matches!(new, SubState::Running | SubState::Exited) {
            self.run.running_since = None;
        }
        let was_up = matches!(old, SubState::Running | SubState::Exited | SubState::Reload);
        match new {
            SubState::Running | SubState::Exited if !was_up => {
                self.run.running_since = Some(now);
                self.lifecycle(Lifecycle::Started, fx);
            }
            s if is_deactivating(s) && !is_deactivating(old) => {
                self.lifecycle(Lifecycle::Stopping, fx)
            }
            SubState::Dead if old != SubState::Dead => self.lifecycle(Lifecycle::Stopped, fx),
            SubState::Failed if old != SubState::Failed => self.lifecycle(Lifecycle::Failed, fx),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;

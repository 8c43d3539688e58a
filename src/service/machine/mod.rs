//! The state machine of one service, after systemd.service(5) and systemd.kill(5).
//!
//! A run goes `condition -> start-pre -> start -> start-post -> running|exited`, each phase
//! running its `Exec*=` commands one after the other as control processes; a stop goes
//! `stop (ExecStop=) -> stop-sigterm -> stop-sigkill -> stop-post (ExecStopPost=) ->
//! final-sigterm -> final-sigkill -> dead|failed|auto-restart`, skipping phases with nothing
//! to do. Each phase has its deadline (TimeoutStartSec= for starting and reloading phases,
//! TimeoutStopSec= for stopping ones); the loop calls back with [`Event::Timer`].
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

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::event::{
    Effect, Event, ExecKind, ExitStatus, KillTarget, Lifecycle, ProcessRole, Status,
};
use super::notify::NotifyMessage;
use super::restart;
use super::state::{ActiveState, ServiceResult, SubState};
use crate::unit::model::{ExecCommand, KillMode, ServiceType, Unit};

/// How often a `PIDFile=` that could not be read yet is read again (forking parents may
/// exit before the daemon wrote its pid file), until TimeoutStartSec=.
pub const PID_FILE_RETRY: Duration = Duration::from_millis(50);

/// systemd's `WatchdogSignal=` default.
const WATCHDOG_SIGNAL: i32 = libc::SIGABRT;

/// One service: its unit and where it is in its lifecycle.
#[derive(Debug)]
pub struct Service {
    /// The newest unit given; becomes `cfg` at the next start.
    unit: Arc<Unit>,
    /// The unit of the current (or last) run.
    cfg: Arc<Unit>,
    sub: SubState,
    result: ServiceResult,
    main_pid: Option<i32>,
    control_pid: Option<i32>,
    control_kind: Option<ExecKind>,
    /// `-` prefix on the running control command.
    control_ignore: bool,
    /// `-` prefix on the running oneshot main command.
    main_ignore: bool,
    /// The commands of the current phase still to run.
    queue: VecDeque<ExecCommand>,
    /// Deadline of the current phase.
    deadline: Option<Instant>,
    /// Effective watchdog period (WatchdogSec=, or WATCHDOG_USEC= from the service).
    watchdog: Option<Duration>,
    watchdog_deadline: Option<Instant>,
    /// Forking: when to read the PID file again.
    pid_file_retry: Option<Instant>,
    /// Forking: the parent exited and the PID file is awaited.
    awaiting_pid_file: bool,
    last_pid_file_error: Option<String>,
    /// Forking without PIDFile=: running with no main pid is legitimate.
    running_without_main: bool,
    /// The current stop-sigterm phase uses the watchdog signal.
    watchdog_abort: bool,
    /// A notify service said RELOADING=1 (the reload ends at READY=1).
    notify_reloading: bool,
    /// An operator stop: no automatic restart at the end.
    forbid_restart: bool,
    /// Start again once the stop completes (operator restart, or start during a stop).
    start_after_stop: bool,
    n_restarts: u32,
    /// Automatic restarts in the current crash streak (drives the backoff).
    streak: u32,
    /// Instants of recent starts, for StartLimitIntervalSec=/StartLimitBurst=.
    start_times: VecDeque<Instant>,
    running_since: Option<Instant>,
    active_enter: Option<Instant>,
    exec_main: Option<ExitStatus>,
    /// The main exit of this run (for RestartPreventExitStatus=/RestartForceExitStatus=).
    run_main_status: Option<ExitStatus>,
    status_text: Option<String>,
    status_errno: Option<i32>,
    error: Option<String>,
    /// Why the machine is doing what it does now, for the lifecycle log lines.
    reason: String,
    /// The loop promised [`Event::GroupEmpty`] (see [`Service::set_group_tracking`]).
    group_tracking: bool,
    /// The last word from the loop: no process of the service is left (reset by each spawn).
    group_empty: bool,
    /// The main pid of this run after it exited, so the log lines about its end name it.
    last_main_pid: Option<i32>,
}

fn is_deactivating(s: SubState) -> bool {
    s.active_state() == ActiveState::Deactivating
}

fn describe(status: ExitStatus) -> String {
    match status {
        ExitStatus::Exited(code) => format!("code=exited, status={code}"),
        ExitStatus::Signaled {
            signal,
            core_dumped,
        } => {
            let name = nix::sys::signal::Signal::try_from(signal)
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|_| signal.to_string());
            let code = if core_dumped { "dumped" } else { "killed" };
            format!("code={code}, signal={name}")
        }
        ExitStatus::Unknown => "status unknown (not our child)".to_string(),
    }
}

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

impl Service {
    /// A service that has not run yet: `inactive/dead`, result `success`.
    pub fn new(unit: Arc<Unit>) -> Service {
        Service {
            cfg: unit.clone(),
            unit,
            sub: SubState::Dead,
            result: ServiceResult::Success,
            main_pid: None,
            control_pid: None,
            control_kind: None,
            control_ignore: false,
            main_ignore: false,
            queue: VecDeque::new(),
            deadline: None,
            watchdog: None,
            watchdog_deadline: None,
            pid_file_retry: None,
            awaiting_pid_file: false,
            last_pid_file_error: None,
            running_without_main: false,
            watchdog_abort: false,
            notify_reloading: false,
            forbid_restart: false,
            start_after_stop: false,
            n_restarts: 0,
            streak: 0,
            start_times: VecDeque::new(),
            running_since: None,
            active_enter: None,
            exec_main: None,
            run_main_status: None,
            status_text: None,
            status_errno: None,
            error: None,
            reason: String::new(),
            group_tracking: false,
            group_empty: true,
            last_main_pid: None,
        }
    }

    /// The newest unit given (what the next start uses).
    pub fn unit(&self) -> &Arc<Unit> {
        &self.unit
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
                self.start_after_stop = false;
                self.op_stop(now, &mut fx);
            }
            Event::Restart => {
                if matches!(
                    self.sub,
                    SubState::Dead | SubState::Failed | SubState::AutoRestart
                ) {
                    self.start(now, true, &mut fx);
                } else {
                    self.start_after_stop = true;
                    self.op_stop(now, &mut fx);
                }
            }
            Event::Reload => self.op_reload(now, &mut fx),
            Event::Spawned { role, pid } => self.spawned(role, pid, now, &mut fx),
            Event::SpawnFailed { role, error } => match role {
                ProcessRole::Main => {
                    if !self.main_ignore {
                        self.error = Some(error);
                    }
                    // What systemd reports for a failed exec: status 203/EXEC.
                    self.main_exited(ExitStatus::Exited(203), now, &mut fx);
                }
                ProcessRole::Control(_) => {
                    if !self.control_ignore {
                        self.error = Some(error);
                    }
                    self.control_exited(ExitStatus::Exited(203), now, &mut fx);
                }
            },
            Event::Exited { pid, status } => {
                if self.main_pid == Some(pid) {
                    self.main_exited(status, now, &mut fx);
                } else if self.control_pid == Some(pid) {
                    self.control_exited(status, now, &mut fx);
                }
            }
            Event::PidFile(read) => self.pid_file(read, now, &mut fx),
            Event::Notify { pid, message } => self.notify(pid, message, now, &mut fx),
            Event::Timer => self.timer(now, &mut fx),
            Event::GroupEmpty => self.on_group_empty(now, &mut fx),
        }
        if self.persisted() != before {
            fx.push(Effect::StatusChanged);
        }
        fx
    }

    /// Earliest instant at which the machine wants [`Event::Timer`]: restart delay,
    /// start/stop/reload timeout, watchdog, PID file retry.
    pub fn next_deadline(&self) -> Option<Instant> {
        [self.deadline, self.watchdog_deadline, self.pid_file_retry]
            .into_iter()
            .flatten()
            .min()
    }

    /// What `gitproc status` shows and the state file records.
    pub fn status(&self) -> Status {
        Status {
            active_state: self.sub.active_state(),
            sub_state: self.sub,
            result: self.result,
            main_pid: self.main_pid,
            control_pid: self.control_pid,
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
            status_text: self.status_text.clone(),
            status_errno: self.status_errno,
            error: self.error.clone(),
            next_restart: if self.sub == SubState::AutoRestart {
                self.deadline
            } else {
                None
            },
        }
    }

    /// Which of our processes `pid` is, so the loop routes exits (and accepts notify
    /// datagrams). `None` for anything else (e.g. reaped orphans of the subreaper).
    pub fn role_of(&self, pid: i32) -> Option<ProcessRole> {
        if self.main_pid == Some(pid) {
            Some(ProcessRole::Main)
        } else if self.control_pid == Some(pid) {
            self.control_kind.map(ProcessRole::Control)
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
    pub fn adopt(&mut self, pid: i32, now: Instant) -> Vec<Effect> {
        let mut fx = Vec::new();
        self.cfg = self.unit.clone();
        self.main_pid = Some(pid);
        self.group_empty = false;
        self.reason = "adopted after a daemon restart".to_string();
        self.watchdog = self.cfg.service.watchdog.filter(|d| !d.is_zero());
        self.set_state(SubState::Running, now, &mut fx);
        self.running_since = Some(now);
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
        self.result = result;
        if self.sub == SubState::Dead && result != ServiceResult::Success {
            self.sub = SubState::Failed;
        }
    }

    // ----- internals -------------------------------------------------------------------

    fn persisted(&self) -> (SubState, ServiceResult, Option<i32>, u32) {
        (self.sub, self.result, self.main_pid, self.n_restarts)
    }

    fn svc(&self) -> &crate::unit::model::ServiceSection {
        &self.cfg.service
    }

    fn lifecycle(&self, kind: Lifecycle, fx: &mut Vec<Effect>) {
        fx.push(Effect::Lifecycle {
            kind,
            pid: self.main_pid.or(self.last_main_pid),
            reason: self.reason.clone(),
        });
    }

    /// Enters `new`, arming the phase deadline and logging the lifecycle transitions
    /// (`Started`, `Stopping`, `Stopped`, `Failed`).
    fn set_state(&mut self, new: SubState, now: Instant, fx: &mut Vec<Effect>) {
        let old = self.sub;
        self.sub = new;
        if old.active_state() != new.active_state() {
            self.active_enter = Some(now);
        }
        self.deadline = match new {
            SubState::Condition
            | SubState::StartPre
            | SubState::Start
            | SubState::StartPost
            | SubState::Reload => self.svc().timeout_start.map(|d| now + d),
            SubState::Stop
            | SubState::StopSigterm
            | SubState::StopSigkill
            | SubState::StopPost
            | SubState::FinalSigterm
            | SubState::FinalSigkill => self.svc().timeout_stop.map(|d| now + d),
            _ => None,
        };
        if !matches!(
            new,
            SubState::Start | SubState::StartPost | SubState::Running | SubState::Reload
        ) {
            self.watchdog_deadline = None;
        }
        if !matches!(new, SubState::Running | SubState::Exited) {
            self.running_since = None;
        }
        let was_up = matches!(old, SubState::Running | SubState::Exited | SubState::Reload);
        match new {
            SubState::Running | SubState::Exited if !was_up => {
                self.running_since = Some(now);
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

    fn op_start(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        match self.sub {
            SubState::Dead | SubState::Failed | SubState::AutoRestart => self.start(now, true, fx),
            s if is_deactivating(s) => self.start_after_stop = true,
            _ => {}
        }
    }

    fn op_stop(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        self.forbid_restart = true;
        self.reason = "stop requested".to_string();
        match self.sub {
            SubState::Dead | SubState::Failed => {}
            SubState::AutoRestart => {
                // As systemd: the stop cancels the pending restart and the unit is inactive
                // (dead), as asked; the result of the run that ended stays visible.
                self.reason = "stop requested while waiting to restart".to_string();
                self.deadline = None;
                self.set_state(SubState::Dead, now, fx);
                self.after_dead(now, fx);
            }
            SubState::Condition
            | SubState::StartPre
            | SubState::Start
            | SubState::StartPost
            | SubState::Reload => {
                self.enter_signal(SubState::StopSigterm, ServiceResult::Success, now, fx)
            }
            SubState::Running | SubState::Exited => {
                self.enter_stop(ServiceResult::Success, now, fx)
            }
            _ => {} // already stopping
        }
    }

    fn op_reload(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        if !self.can_reload() {
            return;
        }
        let cmds = self.svc().exec_reload.clone();
        self.set_state(SubState::Reload, now, fx);
        self.run_commands(ExecKind::Reload, cmds, fx);
    }

    /// Begins a run. `operator`: an explicit start, which clears the start-limit history.
    fn start(&mut self, now: Instant, operator: bool, fx: &mut Vec<Effect>) {
        self.cfg = self.unit.clone();
        if operator {
            self.start_times.clear();
            self.streak = 0;
        }
        self.forbid_restart = false;
        self.start_after_stop = false;
        let interval = self.cfg.unit.start_limit_interval;
        let burst = self.cfg.unit.start_limit_burst;
        if !interval.is_zero() && burst > 0 {
            while let Some(first) = self.start_times.front() {
                if now.saturating_duration_since(*first) >= interval {
                    self.start_times.pop_front();
                } else {
                    break;
                }
            }
            if self.start_times.len() >= burst as usize {
                self.result = ServiceResult::StartLimitHit;
                let msg = format!(
                    "start limit hit: more than {burst} starts within {} \
                     (StartLimitBurst=, StartLimitIntervalSec=); `gitproc start` resets it",
                    secs(interval)
                );
                self.error = Some(msg.clone());
                self.reason = msg;
                self.deadline = None;
                self.set_state(SubState::Failed, now, fx);
                return;
            }
            self.start_times.push_back(now);
        }
        self.result = ServiceResult::Success;
        self.last_main_pid = None;
        self.error = None;
        self.status_text = None;
        self.status_errno = None;
        self.run_main_status = None;
        self.running_without_main = false;
        self.awaiting_pid_file = false;
        self.pid_file_retry = None;
        self.last_pid_file_error = None;
        self.notify_reloading = false;
        self.watchdog_abort = false;
        self.main_ignore = false;
        self.watchdog = self.svc().watchdog.filter(|d| !d.is_zero());
        if operator {
            // An automatic restart keeps the reason the timer gave (and logged Restarting).
            self.reason = "start requested".to_string();
            self.lifecycle(Lifecycle::Starting, fx);
        }
        self.enter_condition(now, fx);
    }

    fn run_commands(&mut self, kind: ExecKind, cmds: Vec<ExecCommand>, fx: &mut Vec<Effect>) {
        self.queue = cmds.into();
        self.control_kind = Some(kind);
        self.spawn_next_control(kind, fx);
    }

    /// Spawns the next queued control command; false when the phase is done.
    fn spawn_next_control(&mut self, kind: ExecKind, fx: &mut Vec<Effect>) -> bool {
        match self.queue.pop_front() {
            Some(command) => {
                self.control_kind = Some(kind);
                self.control_ignore = command.flags.ignore_failure;
                self.group_empty = false;
                fx.push(Effect::Spawn {
                    role: ProcessRole::Control(kind),
                    command,
                });
                true
            }
            None => false,
        }
    }

    fn enter_condition(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        let cmds = self.svc().exec_condition.clone();
        if cmds.is_empty() {
            return self.enter_start_pre(now, fx);
        }
        self.set_state(SubState::Condition, now, fx);
        self.run_commands(ExecKind::Condition, cmds, fx);
    }

    fn enter_start_pre(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        let cmds = self.svc().exec_start_pre.clone();
        if cmds.is_empty() {
            return self.enter_start(now, fx);
        }
        self.set_state(SubState::StartPre, now, fx);
        self.run_commands(ExecKind::StartPre, cmds, fx);
    }

    fn enter_start(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        let mut cmds: VecDeque<ExecCommand> = self.svc().exec_start.clone().into();
        let Some(first) = cmds.pop_front() else {
            if self.svc().service_type == ServiceType::Oneshot {
                return self.enter_start_post(now, fx);
            }
            self.error = Some(format!(
                "{}: no ExecStart= (only Type=oneshot may omit it); add ExecStart=",
                self.cfg.name
            ));
            self.reason = "no ExecStart=".to_string();
            return self.enter_signal(SubState::StopSigterm, ServiceResult::Resources, now, fx);
        };
        self.set_state(SubState::Start, now, fx);
        self.queue = cmds;
        self.spawn_main(first, fx);
    }

    fn spawn_main(&mut self, command: ExecCommand, fx: &mut Vec<Effect>) {
        self.main_ignore = command.flags.ignore_failure;
        self.group_empty = false;
        fx.push(Effect::Spawn {
            role: ProcessRole::Main,
            command,
        });
    }

    fn enter_start_post(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        let cmds = self.svc().exec_start_post.clone();
        if cmds.is_empty() {
            return self.enter_running(ServiceResult::Success, now, fx);
        }
        self.set_state(SubState::StartPost, now, fx);
        self.run_commands(ExecKind::StartPost, cmds, fx);
    }

    fn enter_running(&mut self, f: ServiceResult, now: Instant, fx: &mut Vec<Effect>) {
        if f != ServiceResult::Success {
            self.result = f;
        }
        if self.result != ServiceResult::Success {
            return self.enter_signal(SubState::StopSigterm, ServiceResult::Success, now, fx);
        }
        if self.main_pid.is_some() || self.running_without_main {
            self.reason = "main process running".to_string();
            self.set_state(SubState::Running, now, fx);
            if self.watchdog_deadline.is_none() {
                self.arm_watchdog(now);
            }
        } else if self.svc().remain_after_exit {
            self.reason = "finished, RemainAfterExit=yes".to_string();
            self.set_state(SubState::Exited, now, fx);
        } else {
            if self.reason.is_empty() {
                self.reason = "finished".to_string();
            }
            self.enter_stop(ServiceResult::Success, now, fx);
        }
    }

    fn arm_watchdog(&mut self, now: Instant) {
        self.watchdog_deadline = self.watchdog.map(|d| now + d);
    }

    /// ExecStop= if any, then the kill sequence. A control process still running (e.g. an
    /// ExecStartPost=) is killed and forgotten first.
    fn enter_stop(&mut self, f: ServiceResult, now: Instant, fx: &mut Vec<Effect>) {
        if f != ServiceResult::Success {
            self.result = f;
        }
        if let Some(pid) = self.control_pid.take() {
            fx.push(Effect::Signal {
                target: KillTarget::Control(pid),
                signal: libc::SIGKILL,
            });
        }
        let cmds = self.svc().exec_stop.clone();
        if cmds.is_empty() {
            return self.enter_signal(SubState::StopSigterm, ServiceResult::Success, now, fx);
        }
        self.set_state(SubState::Stop, now, fx);
        self.run_commands(ExecKind::Stop, cmds, fx);
    }

    /// Sends the phase's signal per KillMode= and waits for the main and control processes.
    fn enter_signal(
        &mut self,
        state: SubState,
        f: ServiceResult,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        if f != ServiceResult::Success {
            self.result = f;
        }
        self.queue.clear();
        let sigterm_phase = matches!(state, SubState::StopSigterm | SubState::FinalSigterm);
        let signal = if state == SubState::StopSigterm && self.watchdog_abort {
            WATCHDOG_SIGNAL
        } else if sigterm_phase {
            self.svc().kill_signal
        } else {
            self.svc().final_kill_signal
        };
        let mode = self.svc().kill_mode;
        let send_sighup = self.svc().send_sighup;
        let mut targets = Vec::new();
        let group = match mode {
            KillMode::ControlGroup => true,
            KillMode::Mixed => !sigterm_phase,
            KillMode::Process | KillMode::None => false,
        };
        if group {
            targets.push(KillTarget::Group);
        } else if mode != KillMode::None {
            targets.extend(self.main_pid.map(KillTarget::Main));
            targets.extend(self.control_pid.map(KillTarget::Control));
        }
        for target in &targets {
            fx.push(Effect::Signal {
                target: *target,
                signal,
            });
        }
        if sigterm_phase && send_sighup && signal != libc::SIGHUP {
            for target in &targets {
                fx.push(Effect::Signal {
                    target: *target,
                    signal: libc::SIGHUP,
                });
            }
        }
        self.set_state(state, now, fx);
        if mode == KillMode::None {
            // Nothing was signalled: nothing to wait for (the processes are left alone).
            self.main_pid = None;
            self.control_pid = None;
        }
        self.maybe_signal_done(now, fx);
    }

    /// Whether stop phases wait for the whole group, not only for main and control.
    fn waits_for_group(&self) -> bool {
        self.group_tracking
            && matches!(
                self.svc().kill_mode,
                KillMode::ControlGroup | KillMode::Mixed
            )
    }

    /// Leaves a signal phase once everything it waits for is gone.
    fn maybe_signal_done(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        let is_signal_phase = matches!(
            self.sub,
            SubState::StopSigterm
                | SubState::StopSigkill
                | SubState::FinalSigterm
                | SubState::FinalSigkill
        );
        if is_signal_phase
            && self.main_pid.is_none()
            && self.control_pid.is_none()
            && (self.group_empty || !self.waits_for_group())
        {
            self.signal_done(now, fx);
        }
    }

    /// The processes the phase waited for are gone.
    ///
    /// KillMode=mixed: the main process got the kill signal and is gone; what remains of the
    /// group gets FinalKillSignal now (systemd waits for the cgroup to empty first, up to
    /// TimeoutStopSec=; the machine cannot see the group, so it does not wait).
    fn signal_done(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        if self.sub == SubState::StopSigterm
            && self.svc().kill_mode == KillMode::Mixed
            && self.svc().send_sigkill
            && !self.group_tracking
        {
            fx.push(Effect::Signal {
                target: KillTarget::Group,
                signal: self.svc().final_kill_signal,
            });
        }
        match self.sub {
            SubState::StopSigterm | SubState::StopSigkill => self.enter_stop_post(now, fx),
            SubState::FinalSigterm | SubState::FinalSigkill => self.enter_dead(now, fx),
            _ => {}
        }
    }

    fn enter_stop_post(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        self.watchdog_abort = false;
        let cmds = self.svc().exec_stop_post.clone();
        if cmds.is_empty() {
            // The group just got the kill signal and nothing was spawned since: a final
            // SIGTERM would only repeat it (final-sigterm follows ExecStopPost= only).
            return self.enter_dead(now, fx);
        }
        self.set_state(SubState::StopPost, now, fx);
        self.run_commands(ExecKind::StopPost, cmds, fx);
    }

    /// The run is over: dead, failed, or auto-restart per Restart=.
    fn enter_dead(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        if let Some(path) = self.svc().pid_file.clone() {
            fx.push(Effect::RemovePidFile { path });
        }
        self.main_pid = None;
        self.control_pid = None;
        self.control_kind = None;
        self.queue.clear();
        self.pid_file_retry = None;
        let restart = !self.forbid_restart
            && !self.start_after_stop
            && restart::shall_restart(self.svc(), self.result, self.run_main_status);
        if restart {
            let delay = restart::restart_delay(self.svc(), self.streak);
            let kind = if self.result == ServiceResult::Success {
                Lifecycle::Stopped
            } else {
                Lifecycle::Failed
            };
            self.reason = format!(
                "{} (result {}); restarting in {}",
                self.reason,
                self.result,
                secs(delay)
            );
            self.set_state(SubState::AutoRestart, now, fx);
            self.lifecycle(kind, fx);
            self.deadline = Some(now + delay);
            return;
        }
        let end = if self.result == ServiceResult::Success {
            SubState::Dead
        } else {
            SubState::Failed
        };
        if end == SubState::Failed {
            self.reason = format!("{} (result {})", self.reason, self.result);
        }
        self.set_state(end, now, fx);
        self.after_dead(now, fx);
    }

    fn after_dead(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        if self.start_after_stop {
            self.start(now, true, fx);
        }
    }

    fn spawned(&mut self, role: ProcessRole, pid: i32, now: Instant, fx: &mut Vec<Effect>) {
        match role {
            ProcessRole::Control(kind) => {
                self.control_pid = Some(pid);
                self.control_kind = Some(kind);
            }
            ProcessRole::Main => {
                self.main_pid = Some(pid);
                if self.sub == SubState::Start {
                    if self.watchdog_deadline.is_none() {
                        self.arm_watchdog(now);
                    }
                    if matches!(
                        self.svc().service_type,
                        ServiceType::Simple | ServiceType::Exec
                    ) {
                        self.enter_start_post(now, fx);
                    }
                }
            }
        }
    }

    fn main_exited(&mut self, status: ExitStatus, now: Instant, fx: &mut Vec<Effect>) {
        self.last_main_pid = self.main_pid.take();
        self.exec_main = Some(status);
        self.run_main_status = Some(status);
        let ty = self.svc().service_type;
        let oneshot = ty == ServiceType::Oneshot;
        let mut f = restart::main_exit_result(status, oneshot, &self.svc().success_exit_status);
        // An adopted process (not our child: status unknown) that exits on its own, not
        // because we stopped it, is treated as a failure (issue 5): Restart=on-failure
        // brings it back and Restart=no shows it failed rather than cleanly finished.
        if status == ExitStatus::Unknown
            && matches!(
                self.sub,
                SubState::StartPost | SubState::Running | SubState::Reload
            )
        {
            f = ServiceResult::ExitCode;
        }
        if self.main_ignore {
            f = ServiceResult::Success;
        }
        self.reason = format!("main process exited, {}", describe(status));
        if let Some(since) = self.running_since {
            // Stayed up long enough: the crash streak is over, the backoff starts over.
            if now.saturating_duration_since(since) >= restart::stay_up_period(self.svc()) {
                self.streak = 0;
            }
        }
        match self.sub {
            SubState::Start => match ty {
                ServiceType::Forking => {
                    if f != ServiceResult::Success {
                        return self.enter_signal(SubState::StopSigterm, f, now, fx);
                    }
                    match self.svc().pid_file.clone() {
                        Some(path) => {
                            self.awaiting_pid_file = true;
                            fx.push(Effect::ReadPidFile { path });
                        }
                        None => {
                            self.running_without_main = true;
                            self.enter_start_post(now, fx);
                        }
                    }
                }
                ServiceType::Oneshot => {
                    if f != ServiceResult::Success {
                        return self.enter_signal(SubState::StopSigterm, f, now, fx);
                    }
                    match self.queue.pop_front() {
                        Some(next) => self.spawn_main(next, fx),
                        None => self.enter_start_post(now, fx),
                    }
                }
                ServiceType::Notify => {
                    if f == ServiceResult::Success {
                        self.error = Some(
                            "main process exited before sending READY=1 (Type=notify)".to_string(),
                        );
                        f = ServiceResult::Protocol;
                    }
                    self.enter_signal(SubState::StopSigterm, f, now, fx);
                }
                ServiceType::Simple | ServiceType::Exec => self.enter_running(f, now, fx),
            },
            SubState::StartPost | SubState::Running | SubState::Reload => {
                if self.sub == SubState::Reload && self.control_pid.is_none() {
                    self.notify_reloading = false;
                }
                self.enter_running(f, now, fx)
            }
            SubState::Stop => {
                if f != ServiceResult::Success {
                    self.result = f;
                }
                if self.control_pid.is_none() && self.queue.is_empty() {
                    // STOPPING=1 from a notify service: it exited on its own.
                    self.enter_signal(SubState::StopSigterm, ServiceResult::Success, now, fx);
                }
            }
            SubState::StopSigterm
            | SubState::StopSigkill
            | SubState::FinalSigterm
            | SubState::FinalSigkill => {
                if f != ServiceResult::Success && self.result == ServiceResult::Success {
                    self.result = f;
                }
                self.maybe_signal_done(now, fx);
            }
            _ => {}
        }
    }

    fn control_exited(&mut self, status: ExitStatus, now: Instant, fx: &mut Vec<Effect>) {
        let kind = self.control_kind;
        self.control_pid = None;
        let mut f = restart::control_exit_result(status);
        let ignored = self.control_ignore && f != ServiceResult::Success;
        if self.control_ignore {
            f = ServiceResult::Success;
        }
        if let Some(kind) = kind
            && (f != ServiceResult::Success || ignored)
        {
            self.reason = format!("{} exited, {}", kind.key(), describe(status));
        }
        match self.sub {
            SubState::Condition => {
                if let (false, ExitStatus::Exited(code @ 1..=254)) = (self.control_ignore, status) {
                    self.reason =
                        format!("condition not met (ExecCondition= exited with {code}); skipped");
                    self.queue.clear();
                    self.set_state(SubState::Dead, now, fx);
                    return self.after_dead(now, fx);
                }
                if f != ServiceResult::Success {
                    return self.enter_signal(SubState::StopSigterm, f, now, fx);
                }
                if !self.spawn_next_control(ExecKind::Condition, fx) {
                    self.enter_start_pre(now, fx);
                }
            }
            SubState::StartPre => {
                if f != ServiceResult::Success {
                    return self.enter_signal(SubState::StopSigterm, f, now, fx);
                }
                if !self.spawn_next_control(ExecKind::StartPre, fx) {
                    self.enter_start(now, fx);
                }
            }
            SubState::StartPost => {
                if f != ServiceResult::Success {
                    return self.enter_stop(f, now, fx);
                }
                if !self.spawn_next_control(ExecKind::StartPost, fx) {
                    self.enter_running(ServiceResult::Success, now, fx);
                }
            }
            SubState::Reload => {
                if f == ServiceResult::Success && self.spawn_next_control(ExecKind::Reload, fx) {
                    return;
                }
                if f != ServiceResult::Success {
                    self.error = Some(format!("reload failed: ExecReload= {}", describe(status)));
                }
                self.queue.clear();
                self.back_from_reload(now, fx);
            }
            SubState::Stop => {
                if f == ServiceResult::Success && self.spawn_next_control(ExecKind::Stop, fx) {
                    return;
                }
                self.enter_signal(SubState::StopSigterm, f, now, fx);
            }
            SubState::StopPost => {
                if f == ServiceResult::Success && self.spawn_next_control(ExecKind::StopPost, fx) {
                    return;
                }
                self.enter_signal(SubState::FinalSigterm, f, now, fx);
            }
            _ => self.maybe_signal_done(now, fx),
        }
    }

    fn back_from_reload(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        self.notify_reloading = false;
        let back = if self.main_pid.is_some() || self.running_without_main {
            SubState::Running
        } else {
            SubState::Exited
        };
        let since = self.running_since;
        self.set_state(back, now, fx);
        self.running_since = since.or(Some(now));
    }

    fn pid_file(&mut self, read: Result<i32, String>, now: Instant, fx: &mut Vec<Effect>) {
        if !self.awaiting_pid_file || self.sub != SubState::Start {
            return;
        }
        match read {
            Ok(pid) if pid > 1 => {
                self.awaiting_pid_file = false;
                self.pid_file_retry = None;
                self.main_pid = Some(pid);
                self.enter_start_post(now, fx);
            }
            Ok(pid) => {
                self.last_pid_file_error = Some(format!("PIDFile= holds an invalid pid {pid}"));
                self.pid_file_retry = Some(now + PID_FILE_RETRY);
            }
            Err(e) => {
                self.last_pid_file_error = Some(e);
                self.pid_file_retry = Some(now + PID_FILE_RETRY);
            }
        }
    }

    fn notify(&mut self, pid: i32, msg: NotifyMessage, now: Instant, fx: &mut Vec<Effect>) {
        if matches!(
            self.sub,
            SubState::Dead | SubState::Failed | SubState::AutoRestart
        ) {
            return;
        }
        if let Some(text) = msg.status {
            self.status_text = Some(text);
        }
        if msg.errno.is_some() {
            self.status_errno = msg.errno;
        }
        if let Some(new_main) = msg.main_pid {
            // Sanity: a real process (not init, not a negative group id), set while starting
            // or running, by the current main process or a control process.
            let from_ours = self.main_pid == Some(pid)
                || self.control_pid == Some(pid)
                || self.main_pid.is_none();
            let live_phase = matches!(
                self.sub,
                SubState::Start | SubState::StartPost | SubState::Running | SubState::Reload
            );
            if new_main > 1 && from_ours && live_phase {
                self.main_pid = Some(new_main);
                self.running_without_main = false;
                if self.awaiting_pid_file {
                    self.awaiting_pid_file = false;
                    self.pid_file_retry = None;
                    self.enter_start_post(now, fx);
                }
            }
        }
        if let Some(usec) = msg.watchdog_usec {
            self.watchdog = Some(usec).filter(|d| !d.is_zero());
            if self.watchdog_deadline.is_some() || self.watchdog.is_some() {
                self.arm_watchdog(now);
            }
        }
        if msg.watchdog_ping && self.watchdog_deadline.is_some() {
            self.arm_watchdog(now);
        }
        if let Some(extend) = msg.extend_timeout {
            let phase_has_timeout = self.sub.active_state() != ActiveState::Active;
            if let (true, Some(deadline)) = (phase_has_timeout, self.deadline) {
                self.deadline = Some(deadline.max(now + extend));
            }
        }
        if msg.watchdog_trigger {
            return self.watchdog_expired(now, fx);
        }
        if msg.stopping
            && matches!(
                self.sub,
                SubState::Start | SubState::StartPost | SubState::Running | SubState::Reload
            )
        {
            self.reason = "service sent STOPPING=1".to_string();
            if let Some(pid) = self.control_pid.take() {
                fx.push(Effect::Signal {
                    target: KillTarget::Control(pid),
                    signal: libc::SIGKILL,
                });
            }
            self.queue.clear();
            self.set_state(SubState::Stop, now, fx);
            if self.main_pid.is_none() {
                self.enter_signal(SubState::StopSigterm, ServiceResult::Success, now, fx);
            }
            return;
        }
        if msg.reloading && self.sub == SubState::Running {
            self.notify_reloading = true;
            let since = self.running_since;
            self.set_state(SubState::Reload, now, fx);
            self.running_since = since;
            return;
        }
        if msg.ready {
            let ty = self.svc().service_type;
            if self.sub == SubState::Start && ty == ServiceType::Notify && self.main_pid.is_some() {
                self.enter_start_post(now, fx);
            } else if self.sub == SubState::Reload && self.notify_reloading {
                self.back_from_reload(now, fx);
            }
        }
    }

    fn on_group_empty(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        if !self.group_tracking {
            return;
        }
        self.group_empty = true;
        if self.sub == SubState::Running && self.running_without_main && self.main_pid.is_none() {
            // Type=forking without PIDFile=: the daemon is gone.
            self.reason = "no process left (Type=forking without PIDFile=)".to_string();
            self.running_without_main = false;
            return self.enter_running(ServiceResult::Success, now, fx);
        }
        self.maybe_signal_done(now, fx);
    }

    fn watchdog_expired(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        self.watchdog_deadline = None;
        let period = self.watchdog.map(secs).unwrap_or_default();
        self.error = Some(format!(
            "watchdog timeout: no WATCHDOG=1 within {period} (WatchdogSec=)"
        ));
        self.reason = "watchdog timeout".to_string();
        self.watchdog_abort = true;
        if let Some(pid) = self.control_pid.take() {
            fx.push(Effect::Signal {
                target: KillTarget::Control(pid),
                signal: libc::SIGKILL,
            });
        }
        self.enter_signal(SubState::StopSigterm, ServiceResult::Watchdog, now, fx);
    }

    fn timer(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        if self.watchdog_deadline.is_some_and(|d| now >= d) {
            return self.watchdog_expired(now, fx);
        }
        if self.pid_file_retry.is_some_and(|d| now >= d) && self.deadline.is_none_or(|d| now < d) {
            self.pid_file_retry = None;
            if let Some(path) = self.svc().pid_file.clone() {
                fx.push(Effect::ReadPidFile { path });
            }
            return;
        }
        if self.deadline.is_none_or(|d| now < d) {
            return;
        }
        self.deadline = None;
        let timeout_start = self.svc().timeout_start.map(secs).unwrap_or_default();
        let timeout_stop = self.svc().timeout_stop.map(secs).unwrap_or_default();
        match self.sub {
            SubState::Condition | SubState::StartPre | SubState::Start => {
                let mut msg = format!("start timed out after {timeout_start} (TimeoutStartSec=)");
                if let Some(e) = self.last_pid_file_error.take() {
                    msg = format!("{msg}; PID file not read: {e}");
                }
                self.pid_file_retry = None;
                self.awaiting_pid_file = false;
                self.error = Some(msg.clone());
                self.reason = msg;
                self.enter_signal(SubState::StopSigterm, ServiceResult::Timeout, now, fx);
            }
            SubState::StartPost => {
                let msg =
                    format!("ExecStartPost= timed out after {timeout_start} (TimeoutStartSec=)");
                self.error = Some(msg.clone());
                self.reason = msg;
                self.enter_stop(ServiceResult::Timeout, now, fx);
            }
            SubState::Reload => {
                if let Some(pid) = self.control_pid.take() {
                    fx.push(Effect::Signal {
                        target: KillTarget::Control(pid),
                        signal: libc::SIGKILL,
                    });
                }
                self.queue.clear();
                self.error = Some(format!(
                    "reload timed out after {timeout_start} (TimeoutStartSec=)"
                ));
                self.back_from_reload(now, fx);
            }
            SubState::Stop => {
                self.reason = format!("stop timed out after {timeout_stop} (TimeoutStopSec=)");
                if let Some(pid) = self.control_pid.take() {
                    fx.push(Effect::Signal {
                        target: KillTarget::Control(pid),
                        signal: libc::SIGKILL,
                    });
                }
                self.enter_signal(SubState::StopSigterm, ServiceResult::Timeout, now, fx);
            }
            SubState::StopSigterm => {
                self.reason =
                    format!("still running {timeout_stop} after the kill signal (TimeoutStopSec=)");
                if self.svc().send_sigkill {
                    self.log_escalation(fx);
                    self.enter_signal(SubState::StopSigkill, ServiceResult::Timeout, now, fx);
                } else {
                    self.result = ServiceResult::Timeout;
                    self.forget_processes();
                    self.enter_stop_post(now, fx);
                }
            }
            SubState::StopSigkill => {
                self.forget_processes();
                self.enter_stop_post(now, fx);
            }
            SubState::StopPost => {
                if let Some(pid) = self.control_pid {
                    fx.push(Effect::Signal {
                        target: KillTarget::Control(pid),
                        signal: self.svc().kill_signal,
                    });
                }
                self.enter_signal(SubState::FinalSigterm, ServiceResult::Timeout, now, fx);
            }
            SubState::FinalSigterm => {
                if self.svc().send_sigkill {
                    self.reason = format!(
                        "processes still running {timeout_stop} after the kill signal (TimeoutStopSec=)"
                    );
                    self.log_escalation(fx);
                    self.enter_signal(SubState::FinalSigkill, ServiceResult::Timeout, now, fx);
                } else {
                    self.result = ServiceResult::Timeout;
                    self.forget_processes();
                    self.enter_dead(now, fx);
                }
            }
            SubState::FinalSigkill => {
                self.forget_processes();
                self.enter_dead(now, fx);
            }
            SubState::AutoRestart => {
                self.n_restarts += 1;
                self.streak += 1;
                self.reason = format!("automatic restart #{} (Restart=)", self.n_restarts);
                self.last_main_pid = None;
                self.lifecycle(Lifecycle::Restarting, fx);
                self.start(now, false, fx);
            }
            _ => {}
        }
    }

    /// Says (in the lifecycle log and in status) that a stop escalates to FinalKillSignal=:
    /// the exit that follows reads only "killed by SIGKILL", which does not say why.
    fn log_escalation(&mut self, fx: &mut Vec<Effect>) {
        let signal = nix::sys::signal::Signal::try_from(self.svc().final_kill_signal)
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|_| self.svc().final_kill_signal.to_string());
        self.reason = format!("{}; sending {signal}", self.reason);
        self.error = Some(format!("stop timed out: {}", self.reason));
        self.lifecycle(Lifecycle::Stopping, fx);
    }

    /// Processes that survived the final kill signal: systemd logs and ignores them too.
    fn forget_processes(&mut self) {
        self.main_pid = None;
        self.control_pid = None;
    }
}

//! [`Run`]: what the machine knows about one run of a service, from its start to the next.
//!
//! A start replaces the whole value (`self.run = Run::new(..)`), so nothing of the previous
//! run leaks into the next one by a forgotten reset. What must survive a start lives on
//! [`super::Service`] instead: the phase (sub-state, its deadline, `active_enter`), the
//! restart counter and crash streak, the start-limit window, the last main exit shown in
//! status, the lifecycle `reason`, and the loop's word on whether the group is empty (real
//! processes outlive a run).
//!
//! The run stays in place after it ended: its `result`, `error` and `STATUS=` are what
//! `gitproc status` shows until the next start.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::service::event::{ExecKind, ExitStatus, ProcessRole};
use crate::service::state::ServiceResult;
use crate::unit::model::{ExecCommand, ServiceSection};

/// The running control process (`ExecStartPre=`, `ExecStop=`, ...), if any.
#[derive(Debug, Default)]
pub(crate) struct Control {
    pub(crate) pid: Option<i32>,
    /// Which list the current (or last) control command came from.
    pub(crate) kind: Option<ExecKind>,
    /// `-` prefix on the running control command.
    pub(crate) ignore: bool,
}

/// One run of a service. See the module comment for what is not in here and why.
#[derive(Debug, Default)]
pub(crate) struct Run {
    /// Why this run ended (or `success` while it goes well); systemd's `Result=`.
    pub(crate) result: ServiceResult,
    /// Why the run failed, in words.
    pub(crate) error: Option<String>,
    /// `STATUS=` from sd_notify.
    pub(crate) status_text: Option<String>,
    /// `ERRNO=` from sd_notify.
    pub(crate) status_errno: Option<i32>,
    pub(crate) main_pid: Option<i32>,
    /// The main pid after it exited, so the log lines about its end name it.
    pub(crate) last_main_pid: Option<i32>,
    /// `-` prefix on the running oneshot main command.
    pub(crate) main_ignore: bool,
    /// The main exit of this run (for RestartPreventExitStatus=/RestartForceExitStatus=).
    pub(crate) main_status: Option<ExitStatus>,
    /// The main pid the loop saw killed by the OOM killer ([`crate::service::Event::OomKilled`]),
    /// so that its exit by a signal ends the run with result `oom-kill`.
    pub(crate) oom_killed: Option<i32>,
    pub(crate) control: Control,
    /// The commands of the current phase still to run.
    pub(crate) queue: VecDeque<ExecCommand>,
    /// When the service last became `running`/`exited` (drives the backoff reset).
    pub(crate) running_since: Option<Instant>,
    /// Effective watchdog period (WatchdogSec=, or WATCHDOG_USEC= from the service).
    pub(crate) watchdog: Option<Duration>,
    pub(crate) watchdog_deadline: Option<Instant>,
    /// The current stop-sigterm phase uses the watchdog signal.
    pub(crate) watchdog_abort: bool,
    /// Forking: when to read the PID file again.
    pub(crate) pid_file_retry: Option<Instant>,
    /// Forking: the parent exited and the PID file is awaited.
    pub(crate) awaiting_pid_file: bool,
    pub(crate) last_pid_file_error: Option<String>,
    /// Forking without PIDFile=: the parent exited and the guess of the main pid is awaited.
    pub(crate) awaiting_main_guess: bool,
    /// Forking without PIDFile=: running with no main pid is legitimate.
    pub(crate) running_without_main: bool,
    /// A notify service said RELOADING=1 (the reload ends at READY=1).
    pub(crate) notify_reloading: bool,
    /// An operator stop: no automatic restart at the end of this run.
    pub(crate) forbid_restart: bool,
    /// Start again once the stop of this run completes (operator restart, or a start
    /// during a stop).
    pub(crate) start_after_stop: bool,
    /// A spawn was asked for (`Effect::Spawn`) and its answer (`Spawned`/`SpawnFailed`) has
    /// not come back yet: the loop spawns off its thread, so the answer arrives later, as a
    /// separate event. Cleared by the answer and by leaving the phase that asked for it
    /// (the loop then kills the process as soon as its pid arrives).
    pub(crate) spawning: Option<ProcessRole>,
    /// What that pending spawn is doing, as the loop last said (e.g. `opening
    /// StandardOutput=file:/x`), named by the start timeout's error.
    pub(crate) spawn_step: Option<String>,
    /// `ReadyOnHealthy=yes`: the start phases are done and the run waits in `activating`
    /// for its first healthy probe ([`crate::service::Event::Healthy`]).
    pub(crate) awaiting_healthy: bool,
    /// The health check found this run healthy at least once.
    pub(crate) healthy_seen: bool,
    /// `OnUnhealthy=restart` stopped this run: restart it whatever `Restart=` says.
    pub(crate) health_restart: bool,
}

impl Run {
    /// A run about to start with `svc`: nothing spawned yet, result `success`.
    pub(crate) fn new(svc: &ServiceSection) -> Run {
        Run {
            watchdog: watchdog_period(svc),
            ..Run::default()
        }
    }
}

/// WatchdogSec= as the machine uses it: zero means off.
pub(crate) fn watchdog_period(svc: &ServiceSection) -> Option<Duration> {
    svc.watchdog.filter(|d| !d.is_zero())
}

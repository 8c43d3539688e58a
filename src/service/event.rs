//! What goes into the state machine ([`Event`]) and what comes out ([`Effect`]), plus the
//! read-only [`Status`] the control plane shows.

use std::fmt;
use std::time::Instant;

use super::notify::NotifyMessage;
use super::state::{ActiveState, ServiceResult, SubState};
use crate::unit::model::ExecCommand;

/// Which `Exec*=` list a control process comes from.
///
/// `ExecStart=` processes are always [`ProcessRole::Main`], also for `Type=oneshot` where
/// each `ExecStart=` line in turn is the main process (as systemd shows `Main PID` for it),
/// and for `Type=forking` where the main role is first the forking parent, then the pid
/// read from `PIDFile=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExecKind {
    Condition,
    StartPre,
    StartPost,
    Reload,
    Stop,
    StopPost,
    /// An `[X-Health]` `Exec=` probe (run by the loop, never by the machine).
    Health,
}

impl ExecKind {
    /// The unit file key, for messages (`ExecStartPre`).
    pub fn key(self) -> &'static str {
        match self {
            ExecKind::Condition => "ExecCondition",
            ExecKind::StartPre => "ExecStartPre",
            ExecKind::StartPost => "ExecStartPost",
            ExecKind::Reload => "ExecReload",
            ExecKind::Stop => "ExecStop",
            ExecKind::StopPost => "ExecStopPost",
            ExecKind::Health => "X-Health Exec",
        }
    }
}

/// What a process is to its service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProcessRole {
    /// The main process (`ExecStart=`).
    Main,
    /// A helper command run to completion (`ExecStartPre=`, `ExecStop=`, ...).
    Control(ExecKind),
}

impl fmt::Display for ProcessRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcessRole::Main => f.write_str("ExecStart"),
            ProcessRole::Control(kind) => f.write_str(kind.key()),
        }
    }
}

/// How a process ended, as `waitpid` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(i32),
    Signaled {
        signal: i32,
        core_dumped: bool,
    },
    /// The process was not our child (adopted after a daemon restart, or a `MAINPID=` /
    /// `PIDFile=` process reaped by someone else): it is gone but its status is unknown.
    /// Treated like a clean exit for the restart table.
    Unknown,
}

/// An input to [`super::Service::on_event`].
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Operator (or dependency) start. Also clears the start-limit history.
    Start,
    /// Operator stop: never followed by an automatic restart.
    Stop,
    /// Operator restart: stop if running, then start.
    Restart,
    /// Operator reload: runs `ExecReload=` (ignored when there is none, see
    /// [`super::Service::can_reload`]).
    Reload,
    /// Answer to [`Effect::Spawn`]: the process exists (for `Type=exec` and every role, the
    /// runtime may send this once `execve` succeeded).
    Spawned { role: ProcessRole, pid: i32 },
    /// Answer to [`Effect::Spawn`]: fork or exec failed; `error` is the full message,
    /// e.g. `exec failed: /bin/x: No such file or directory`; `exit_status` is systemd's
    /// code for the step that failed ([`super::exit_code`]: 203/EXEC, 217/USER, ...),
    /// recorded as the process's exit status.
    SpawnFailed {
        role: ProcessRole,
        error: String,
        exit_status: i32,
    },
    /// A process of this service ended (route with [`super::Service::role_of`]).
    Exited { pid: i32, status: ExitStatus },
    /// The main process `pid` is gone and the OOM killer killed a process of the service's
    /// memory cgroup meanwhile (its `oom_kill` counter rose): sent just before the pid's
    /// [`Event::Exited`], whose signal exit then ends the run with result `oom-kill`.
    OomKilled { pid: i32 },
    /// Answer to [`Effect::ReadPidFile`]: the pid read, or why it could not be read.
    PidFile(Result<i32, String>),
    /// Answer to [`Effect::ReadPidFile`]: the PID file names a pid that is not the
    /// service's, or none is usable and nothing of the service is left: the start fails
    /// with result `protocol` (the message names the pid).
    PidFileRefused(String),
    /// Answer to [`Effect::GuessMainPid`]: the one process of the service whose parent is
    /// the daemon, or `None` when there is none or more than one (GuessMainPID=).
    MainPidGuessed(Option<i32>),
    /// An sd_notify datagram from one of the service's own processes.
    Notify { pid: i32, message: NotifyMessage },
    /// [`super::Service::next_deadline`] has passed (spurious timers are harmless).
    Timer,
    /// No process of the service is left (only with [`super::Service::set_group_tracking`];
    /// ignored otherwise, and harmless when repeated).
    GroupEmpty,
    /// The `[X-Health]` check found the run healthy ([`super::health`]): a
    /// `ReadyOnHealthy=yes` service waiting in `activating` becomes `active`.
    Healthy,
    /// The `[X-Health]` check found the run unhealthy; the message says why (`HTTP 503
    /// after 3 probes`). `OnUnhealthy=restart` stops and restarts it with result `health`
    /// (whatever `Restart=` says; the start limit applies), `stop` stops it (`failed`,
    /// result `health`), `none` does nothing.
    Unhealthy(String),
}

/// Which processes a signal goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillTarget {
    /// The main process only.
    Main(i32),
    /// The running control process only.
    Control(i32),
    /// Every process of the service, main and control included (process group, session,
    /// cgroup: however the runtime tracks them).
    Group,
}

/// The lifecycle moments that get one line each in the daemon's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lifecycle {
    Starting,
    Started,
    Restarting,
    Stopping,
    Stopped,
    Failed,
}

impl fmt::Display for Lifecycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Lifecycle::Starting => "Starting",
            Lifecycle::Started => "Started",
            Lifecycle::Restarting => "Restarting",
            Lifecycle::Stopping => "Stopping",
            Lifecycle::Stopped => "Stopped",
            Lifecycle::Failed => "Failed",
        })
    }
}

/// An output of the state machine, for the runtime to perform.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Spawn `command`; answer with [`Event::Spawned`] or [`Event::SpawnFailed`] right away.
    Spawn {
        role: ProcessRole,
        command: ExecCommand,
    },
    /// Send `signal` to `target`. Sending to a process already gone is not an error.
    Signal { target: KillTarget, signal: i32 },
    /// Read the pid from this file; answer with [`Event::PidFile`].
    ReadPidFile { path: String },
    /// `Type=forking` without `PIDFile=` (GuessMainPID=yes): find the main process among the
    /// service's processes; answer with [`Event::MainPidGuessed`].
    GuessMainPid,
    /// Remove this `PIDFile=` (the run is over). As systemd does: a stale file would make the
    /// next start read a dead, or worse a reused, pid. A missing file is not an error.
    RemovePidFile { path: String },
    /// One line in the daemon's log.
    Lifecycle {
        kind: Lifecycle,
        pid: Option<i32>,
        reason: String,
    },
    /// Something persisted (n_restarts, result, main pid, state) changed: mark state dirty.
    StatusChanged,
}

/// A snapshot of a service, for `gitproc status` and the state file.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub active_state: ActiveState,
    pub sub_state: SubState,
    pub result: ServiceResult,
    pub main_pid: Option<i32>,
    pub control_pid: Option<i32>,
    /// Automatic restarts so far (operator starts do not count, nor reset it).
    pub n_restarts: u32,
    /// Exit code or signal number of the last main process, as systemd shows it.
    pub exec_main_status: Option<i32>,
    /// `exited`, `killed` or `dumped`.
    pub exec_main_code: Option<&'static str>,
    /// When the current active state was entered.
    pub active_enter: Option<Instant>,
    /// `STATUS=` from sd_notify.
    pub status_text: Option<String>,
    /// `ERRNO=` from sd_notify.
    pub status_errno: Option<i32>,
    /// Why the last run failed, in words (e.g. `exec failed: /bin/x: No such file or directory`).
    pub error: Option<String>,
    /// When an automatic restart is scheduled (sub-state `auto-restart`).
    pub next_restart: Option<Instant>,
}

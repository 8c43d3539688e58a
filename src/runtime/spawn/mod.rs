//! Spawning a service process with the execution settings of systemd.exec(5) that
//! gitproc supports.
//!
//! Split in two halves:
//! - the parent prepares everything that allocates or reads files *before* creating the
//!   child ([`plan`]: user and group lookup in [`creds`], the environment in [`env`], the
//!   service directories in [`dirs`], the standard streams in [`stdio`], the rlimit table,
//!   C strings for argv/envp) and turns every problem into a [`SpawnError`] naming the
//!   setting ([`errors`]);
//! - the child ([`child`], the only `unsafe` and async-signal-safe zone) only makes plain
//!   system calls with the prepared values, then execve.
//!
//! The child is created with `clone(CLONE_VM | CLONE_VFORK)` as posix_spawn(3) does, rather
//! than std's `Command` + `pre_exec` (which forks): measured in this crate's test binary on
//! a loaded 2-core machine, fork-based spawns took p50 1.5-3 ms / p95 8-12 ms against
//! p50 0.2-0.7 ms / p95 0.8 ms here (`cargo test --test runtime_spawn spawn_latency --
//! --ignored --nocapture`), and spawning is on the restart-latency path. The parent thread
//! is suspended until the child has called execve or exited, so [`spawn`] returns only
//! once execve succeeded (`Type=exec` semantics for every type, at no extra cost) or with
//! the child's error: `exec failed: <path>: <errno text>` for execve itself, `<setting>:
//! <errno text>` for a setup step, and `child died before exec: signal SIGSEGV (during
//! <setting>)` for a child that was killed or exited in setup without a report.
//!
//! Test hook (debug builds only): when the daemon's environment has
//! `GITPROC_TEST_FAULT_BEFORE_EXEC=<unit name>`, every child spawned for that unit raises
//! SIGSEGV in the middle of its setup (after the signal reset, before the limits), so that
//! tests can see a child that dies before execve reported as a failed spawn. The variable
//! is read once per process, in the parent, at the first [`SpawnRequest::new`]; the field
//! [`SpawnRequest::fault_before_exec`] is the same hook for library callers.

mod child;
mod creds;
mod dirs;
mod env;
mod errors;
mod plan;
mod progress;
mod stdio;

use std::os::fd::OwnedFd;
use std::path::Path;

use crate::unit::model::{ExecCommand, ServiceSection};

use super::cgroup::Cgroup;
use super::procstat;

pub use dirs::{Dirs, remove_runtime_directories};
pub use env::DEFAULT_PATH;
pub use errors::SpawnError;
pub use progress::SpawnProgress;
pub use stdio::OutputTarget;
pub(crate) use stdio::reopen_log_pipes;

/// The environment variable of the test hook (see the module docs).
const TEST_FAULT_VAR: &str = "GITPROC_TEST_FAULT_BEFORE_EXEC";

/// Whether the test hook asks `unit_name`'s children to fault; the variable is read once.
#[cfg(debug_assertions)]
fn test_fault_wanted(unit_name: &str) -> bool {
    static WANTED: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    WANTED
        .get_or_init(|| std::env::var(TEST_FAULT_VAR).ok())
        .as_deref()
        == Some(unit_name)
}

/// Everything needed to start one process of a service.
#[derive(Debug, Clone)]
pub struct SpawnRequest<'a> {
    /// For messages and the cgroup name.
    pub unit_name: &'a str,
    /// The command line to run (any of ExecStart=, ExecStartPre=, ExecStop=, ...).
    pub command: &'a ExecCommand,
    /// The execution settings (User=, Environment=, Limit*=, ...).
    pub service: &'a ServiceSection,
    /// `INVOCATION_ID` (32 lowercase hex characters in systemd).
    pub invocation_id: &'a str,
    /// `NOTIFY_SOCKET` to export, when the service may notify.
    pub notify_socket: Option<&'a Path>,
    /// `MAINPID` to export (for ExecStop=, ExecReload=, ExecStartPost=).
    pub main_pid: Option<i32>,
    /// Extra variables set last (override everything but `UnsetEnvironment=`).
    pub extra_env: &'a [(String, String)],
    /// Listening sockets handed over as fds 3, 4, ... with `LISTEN_FDS`, `LISTEN_PID` and
    /// `LISTEN_FDNAMES` (socket activation); the caller keeps them open during the spawn.
    pub listen_fds: &'a [std::os::fd::RawFd],
    /// One name per entry of `listen_fds` (`FileDescriptorName=`).
    pub listen_fd_names: &'a [String],
    pub stdout: OutputTarget,
    pub stderr: OutputTarget,
    /// `Type=exec`: succeed only once execve succeeded. Informational: [`spawn`] always
    /// returns after execve (see the module docs), which costs nothing extra.
    pub wait_exec: bool,
    /// Bases for RuntimeDirectory=/StateDirectory=/LogsDirectory=.
    pub dirs: &'a Dirs,
    /// A cgroup to move the child into before it executes (see [`super::cgroup`]).
    pub cgroup: Option<&'a Cgroup>,
    /// cgroup v1 directories (memory, pids, cpu, ...) the child joins too, after
    /// [`Self::cgroup`], by writing `0` to their `cgroup.procs` (see `super::resources`).
    pub v1_cgroups: &'a [std::path::PathBuf],
    /// Where the caller follows the steps and may cancel (see [`SpawnProgress`]); `None`
    /// for a plain synchronous spawn.
    pub progress: Option<&'a SpawnProgress>,
    /// Test hook, debug builds only: the child dies by SIGSEGV in the middle of its setup
    /// (see the module docs). [`SpawnRequest::new`] sets it from
    /// `GITPROC_TEST_FAULT_BEFORE_EXEC`.
    #[cfg(debug_assertions)]
    pub fault_before_exec: bool,
}

impl<'a> SpawnRequest<'a> {
    /// A request with the usual defaults: output per StandardOutput=/StandardError=, no
    /// notify socket, no MAINPID, no extra environment, default directories.
    pub fn new(
        unit_name: &'a str,
        command: &'a ExecCommand,
        service: &'a ServiceSection,
        invocation_id: &'a str,
        dirs: &'a Dirs,
    ) -> SpawnRequest<'a> {
        SpawnRequest {
            unit_name,
            command,
            service,
            invocation_id,
            notify_socket: None,
            main_pid: None,
            extra_env: &[],
            listen_fds: &[],
            listen_fd_names: &[],
            stdout: OutputTarget::stdout_of(service),
            stderr: OutputTarget::stderr_of(service),
            wait_exec: true,
            dirs,
            cgroup: None,
            v1_cgroups: &[],
            progress: None,
            #[cfg(debug_assertions)]
            fault_before_exec: test_fault_wanted(unit_name),
        }
    }
}

/// A started process.
#[derive(Debug)]
pub struct Spawned {
    pub pid: i32,
    /// `/proc/<pid>/stat` start time (clock ticks since boot); with `pid`, identifies the
    /// process across pid reuse (see [`super::kill::signal_verified`]). 0 if it could not
    /// be read (never observed: the child is not reaped before we read it).
    pub start_time: u64,
    /// Read end of the stdout pipe when `stdout` was [`OutputTarget::Pipe`].
    pub stdout: Option<OwnedFd>,
    /// Read end of the stderr pipe when `stderr` was [`OutputTarget::Pipe`].
    pub stderr: Option<OwnedFd>,
    /// Settings applied differently from the unit, as systemd would, for the unit's log:
    /// a `Limit*=` clamped to the hard limit, an `OOMScoreAdjust=` the kernel refused.
    pub warnings: Vec<String>,
}

/// Starts the process described by `req`. Returns once execve succeeded.
pub fn spawn(req: &SpawnRequest) -> Result<Spawned, SpawnError> {
    let prepared = plan::prepare(req)?;
    // Preparing may wait (a FIFO's reader, see `stdio`); a start given up meanwhile must
    // not run at all, even when the wait ended well just after the loop gave up.
    if req.progress.is_some_and(SpawnProgress::is_cancelled) {
        return Err(SpawnError::setup(
            "the start",
            "given up by the supervisor before the process was created",
        ));
    }
    let started = match child::spawn(&prepared.child) {
        Ok(Ok(started)) => started,
        Ok(Err(report)) => return Err(SpawnError::from_child(&report, &prepared.exe, req)),
        Err(e) => return Err(SpawnError::os(&prepared.exe, e)),
    };
    // The parent's copies of the write ends close here.
    let (stdout, stderr) = prepared.stdio.into_read_ends();
    let pid = started.pid;
    let start_time = procstat::start_time(pid).unwrap_or(0);
    Ok(Spawned {
        pid,
        start_time,
        stdout,
        stderr,
        warnings: errors::warnings_of(&started, &prepared.child, req),
    })
}

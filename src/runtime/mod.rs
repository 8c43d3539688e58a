//! The OS side of services: spawning, signalling, reaping, the notify socket, pidfds, cgroups.
//!
//! Everything here is a thin shell over system calls. It holds no supervisor state: the
//! event loop owns that and calls these functions to carry out the effects the per-service
//! state machine returns.
//!
//! Threading contract: [`spawn::spawn`] and the reaping of children (`daemon::reaper`, over
//! [`reap_pid`]) must happen on the same thread (the event loop). When the child fails or
//! dies before execve, `spawn` waits for it itself (its pid is never returned); a
//! concurrent `waitpid(-1)` on another thread could steal that status first, which would
//! only cost a spurious "unknown pid exited" for the caller (and, for a child that died
//! without a report, a vaguer error text).
//!
//! Wiring, as the event loop is expected to use it:
//! - at startup: [`set_child_subreaper`], [`CgroupRoot::probe`] (optional),
//!   [`NotifySocket::bind`], [`PidfdWatcher::start`], `logs::LogCollector::start`;
//! - to start a process: build a [`SpawnRequest`] (usually [`SpawnRequest::new`] and set
//!   `notify_socket`, `main_pid`, `cgroup`), call [`spawn()`], hand `stdout`/`stderr` read ends
//!   to the collector, `ProcessTracker::add_session(pid)`, keep `(pid, start_time)`;
//!   on [`SpawnError`], write its text to the unit's log (`LogCollector::note`) and status;
//! - on SIGCHLD and on the fallback tick: reap (`daemon::reaper`), then map pids to services;
//! - to stop: [`signal_verified`] for the main process (KillMode=process/mixed), and
//!   [`ProcessTracker::signal_all`] for control-group (share one [`SessionSnapshot`] via
//!   `signal_all_in` when stopping many services without cgroups);
//! - notify datagrams: accept one only if its `pid` is a known process of the unit or its
//!   `session` is one of the unit's tracked sessions (or the pid is in the unit's cgroup).
//!
//! Everything this module opens is `O_CLOEXEC`, and the child additionally marks every fd
//! >= 3 close-on-exec before `execve`, so nothing the daemon holds leaks into services.

pub mod cgroup;
pub(crate) mod host;
pub mod kill;
pub mod main_pid;
pub mod notify_socket;
pub mod pidfd;
pub mod prober;
pub mod reap;
pub mod resources;
pub(crate) mod sd_notify;
pub mod socket_bind;
pub mod socket_watch;
pub mod spawn;
pub(crate) mod unit_host;
pub mod virt;

/// The one `/proc/PID/stat` parser lives in `sys`; re-exported here for the integration tests
/// and the code that reaches it as `runtime::procstat`.
pub use crate::sys::procstat;
pub use cgroup::{Cgroup, CgroupRoot};
pub use kill::{ProcessTracker, SessionSnapshot, signal_verified};
pub use notify_socket::{NotifyDatagram, NotifySocket};
pub use pidfd::{PidfdWatcher, pidfd_open};
pub use procstat::{ProcStat, read_stat, start_time};
pub use reap::{ExitInfo, reap_pid, set_child_subreaper};
pub use spawn::{
    Dirs, OutputTarget, SpawnError, SpawnRequest, Spawned, remove_runtime_directories, spawn,
};

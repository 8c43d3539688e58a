//! The OS side of services: spawning, signalling, reaping, the notify socket, pidfds, cgroups.
//!
//! Everything here is a thin shell over system calls. It holds no supervisor state: the
//! event loop owns that and calls these functions to carry out the effects the per-service
//! state machine returns.
//!
//! Threading contract: [`spawn::spawn`] and [`reap::reap_all`] must be called from the same
//! thread (the event loop). On an exec failure `spawn` waits for the failed child itself
//! (its pid is never returned); a concurrent `waitpid(-1)` on another thread could steal
//! that status first, which would only cost a spurious "unknown pid exited" for the caller.
//!
//! Wiring, as the event loop is expected to use it:
//! - at startup: [`set_child_subreaper`], [`CgroupRoot::probe`] (optional),
//!   [`NotifySocket::bind`], [`PidfdWatcher::start`], `logs::LogCollector::start`;
//! - to start a process: build a [`SpawnRequest`] (usually [`SpawnRequest::new`] and set
//!   `notify_socket`, `main_pid`, `cgroup`), call [`spawn()`], hand `stdout`/`stderr` read ends
//!   to the collector, `ProcessTracker::add_session(pid)`, keep `(pid, start_time)`;
//!   on [`SpawnError`], write its text to the unit's log (`LogCollector::note`) and status;
//! - on SIGCHLD and on the fallback tick: [`reap_all`], then map pids to services;
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
pub mod notify_socket;
pub mod pidfd;
pub mod procstat;
pub mod reap;
pub(crate) mod sd_notify;
pub mod spawn;
pub(crate) mod unit_host;

pub use cgroup::{Cgroup, CgroupRoot};
pub use kill::{
    ProcessTracker, SessionSnapshot, processes_of_session, signal_group, signal_verified,
};
pub use notify_socket::{NotifyDatagram, NotifySocket};
pub use pidfd::{PidfdWatcher, pidfd_open};
pub use procstat::{ProcStat, read_stat, start_time};
pub use reap::{ExitInfo, reap_all, reap_pid, set_child_subreaper};
pub use spawn::{
    Dirs, OutputTarget, SpawnError, SpawnRequest, Spawned, remove_runtime_directories, spawn,
};

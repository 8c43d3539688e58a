//! The spawner: everything a unit's start or stop does to the host that may block, done off
//! the event loop. The loop hands it [`Task`]s and goes on; each task answers with one
//! [`Report`] on a channel the loop selects on.
//!
//! What may block, and why it is here: a spawn resolves `User=`/`Group=` through NSS (files,
//! but also LDAP or sssd that may not answer), creates `RuntimeDirectory=`/`StateDirectory=`/
//! `LogsDirectory=` (a slow or hung mount), opens `StandardOutput=file:` paths (a FIFO with
//! no reader waits for one; see `runtime::spawn` for how that wait is made cancellable) and
//! clones with `CLONE_VFORK`, which suspends the calling thread until the child has called
//! execve. Reading a `PIDFile=` or removing it, and removing `RuntimeDirectory=`, touch unit-
//! named paths the same way.
//!
//! Shape: an elastic pool of threads. One thread stays warm so that a restart pays only a
//! channel hop (no thread creation); a task that finds every thread busy gets a new one, up
//! to [`MAX_THREADS`], so a spawn stuck in a system call never holds up another unit's.
//! Threads idle for [`IDLE_EXIT`] go away again. The tasks of one unit run one after the
//! other in the order they were asked for (the loop keeps a backlog per unit): removing a
//! unit's runtime directory and the next start's creating it must not overtake each other.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::runtime::cgroup::Cgroup;
use crate::runtime::resources::{Prepared, ResourceRoots, UnitCgroups};
use crate::runtime::socket_bind::Bound;
use crate::runtime::spawn::{Dirs, SpawnError, SpawnProgress, SpawnRequest, Spawned};
use crate::service::ProcessRole;
use crate::unit::model::{ExecCommand, SocketSection, Unit};
use std::os::fd::{AsRawFd, OwnedFd};

/// Most threads the pool runs at once. Only spawns stuck for good (a hung mount, an NSS
/// server that never answers) keep a thread that long; past this many, new tasks wait in
/// the queue for a thread to come free.
pub const MAX_THREADS: usize = 64;

/// A pool thread with nothing to do for this long exits (the last one stays). Short: a
/// burst (a commit starting 100 units) grows the pool to dozens of threads, and each one
/// kept idle holds its touched stack and its kernel task; creating a thread again costs
/// tens of microseconds, which only a burst after a quiet second pays. With 30 s an idle
/// daemon of 100 units kept 64 threads and 0.8 MiB more anonymous memory for half a minute.
const IDLE_EXIT: Duration = Duration::from_secs(1);

/// One process to start, with everything the spawn needs owned (it runs on another thread).
pub struct SpawnJob {
    /// Matches the report to what the loop is waiting for.
    pub id: u64,
    /// The unit the process belongs to, when the spawner key it was submitted under is not
    /// the unit's name (health probes run under a key of their own, so that a stuck probe
    /// never holds up the unit's own starts and stops).
    pub unit_name: Option<String>,
    pub role: ProcessRole,
    /// The command line, `$MAINPID` and friends already expanded by the loop.
    pub command: ExecCommand,
    pub unit: Arc<Unit>,
    pub invocation_id: String,
    /// The state directory's marker (see [`super::discovery`]), exported with the unit name.
    pub instance: String,
    pub notify_socket: Option<PathBuf>,
    pub main_pid: Option<i32>,
    pub cgroup: Option<Cgroup>,
    /// Where the unit's resource settings go (see `runtime::resources`): its v1
    /// directories are made and every limit written here, before the spawn.
    pub resources: Option<(ResourceRoots, UnitCgroups)>,
    pub dirs: Dirs,
    /// The step in progress, read by the loop; cancelled when the service gives up.
    pub progress: Arc<SpawnProgress>,
    /// Socket activation: the listening sockets handed to the main process as fds 3..,
    /// with their `FileDescriptorName=`s (empty for other processes).
    pub listen: Vec<(Arc<OwnedFd>, String)>,
    /// `MONITOR_*` of a start asked for by another unit's `OnFailure=`/`OnSuccess=`
    /// (empty otherwise; see `supervisor::hooks`).
    pub monitor_env: Vec<(String, String)>,
}

/// What the loop asks the spawner to do for a unit.
pub enum Task {
    Spawn(Box<SpawnJob>),
    /// `PIDFile=` of a `Type=forking` service, `id` to tell a fresh answer from a stale one.
    ReadPidFile {
        id: u64,
        path: String,
        /// What the pid read must belong to (see `runtime::main_pid`).
        trust: crate::runtime::main_pid::PidTrust,
    },
    RemovePidFile {
        path: String,
    },
    /// `Type=forking` without `PIDFile=`: guess the main process (GuessMainPID=).
    GuessMainPid {
        id: u64,
        scope: crate::runtime::main_pid::GuessScope,
    },
    /// `RuntimeDirectory=` of a service that stopped.
    RemoveRuntimeDirectories {
        unit: Arc<Unit>,
        dirs: Dirs,
    },
    /// The (empty) cgroup v1 directories of a unit that stopped.
    RemoveCgroups {
        cgroups: UnitCgroups,
    },
    /// A commit changed only resource settings of a running unit: write them in place;
    /// `pids` (the unit's processes) join any v1 directory not in `joined` yet.
    UpdateResources {
        roots: ResourceRoots,
        cgroups: UnitCgroups,
        resources: Box<crate::unit::resources::Resources>,
        pids: Vec<i32>,
        joined: Vec<PathBuf>,
    },
    /// The listening sockets of a socket unit (unit-named paths, NSS for `SocketUser=`).
    BindSockets {
        id: u64,
        socket: Arc<SocketSection>,
    },
    /// `RemoveOnStop=yes` of a socket unit that stopped.
    RemoveSocketPaths {
        socket: Arc<SocketSection>,
    },
}

/// The answer to one [`Task`]; every task gets exactly one.
pub enum Report {
    Spawn {
        unit: String,
        id: u64,
        role: ProcessRole,
        result: Result<Spawned, SpawnError>,
        /// Just before the spawn began: an exit reaped after this with the spawned pid is
        /// the spawned process's (see `Supervisor::on_spawn_report`).
        began: Instant,
        took: Duration,
        /// What resource control did before the spawn (limits, warnings, OOM counter).
        cgroups: Option<Prepared>,
    },
    PidFile {
        unit: String,
        id: u64,
        result: crate::runtime::main_pid::PidRead,
    },
    /// The answer to [`Task::UpdateResources`].
    Resources { unit: String, prepared: Prepared },
    /// The sockets of [`Task::BindSockets`], or why one could not be made.
    Sockets {
        unit: String,
        id: u64,
        result: Result<Vec<Bound>, String>,
    },
    MainPidGuess {
        unit: String,
        id: u64,
        guess: crate::runtime::main_pid::Guess,
    },
    /// A task with nothing to answer (removals); it ends the unit's turn.
    Done { unit: String },
}

impl Report {
    pub fn unit(&self) -> &str {
        match self {
            Report::Spawn { unit, .. }
            | Report::PidFile { unit, .. }
            | Report::Resources { unit, .. }
            | Report::Sockets { unit, .. }
            | Report::MainPidGuess { unit, .. }
            | Report::Done { unit } => unit,
        }
    }
}

/// The loop's side: submits tasks, keeps each unit's in order.
pub struct Spawner {
    pool: Pool,
    reports: Receiver<Report>,
    /// Units with a task on a pool thread now.
    busy: HashSet<String>,
    /// Tasks waiting for the unit's current one to finish.
    backlog: HashMap<String, VecDeque<Task>>,
}

impl Spawner {
    /// Starts the pool with its one warm thread (if that thread cannot start now, the
    /// first task tries again).
    pub fn start() -> Spawner {
        let (reports_tx, reports) = crossbeam_channel::unbounded();
        Spawner {
            pool: Pool::new(reports_tx),
            reports,
            busy: HashSet::new(),
            backlog: HashMap::new(),
        }
    }

    /// The channel the loop selects on.
    pub fn reports(&self) -> Receiver<Report> {
        self.reports.clone()
    }

    /// Runs `task` for `unit` once the unit's earlier tasks are done. Never blocks.
    pub fn submit(&mut self, unit: &str, task: Task) {
        if self.busy.contains(unit) {
            self.backlog
                .entry(unit.to_string())
                .or_default()
                .push_back(task);
            return;
        }
        self.busy.insert(unit.to_string());
        self.pool.submit(unit.to_string(), task);
    }

    /// The loop got the report of `unit`'s task: its next task, if any, may run.
    pub fn finished(&mut self, unit: &str) {
        let next = self.backlog.get_mut(unit).and_then(VecDeque::pop_front);
        if self.backlog.get(unit).is_some_and(VecDeque::is_empty) {
            self.backlog.remove(unit);
        }
        match next {
            Some(task) => self.pool.submit(unit.to_string(), task),
            None => {
                self.busy.remove(unit);
            }
        }
    }

    /// Whether any task is still running or waiting.
    pub fn is_busy(&self) -> bool {
        !self.busy.is_empty()
    }
}

/// One unit's task for a pool thread.
struct Work {
    unit: String,
    task: Task,
}

#[derive(Default)]
struct PoolState {
    /// Threads waiting for work that no queued task has claimed yet.
    idle: usize,
    threads: usize,
}

struct Pool {
    work_tx: Sender<Work>,
    work_rx: Receiver<Work>,
    reports: Sender<Report>,
    state: Arc<Mutex<PoolState>>,
}

fn lock(state: &Mutex<PoolState>) -> std::sync::MutexGuard<'_, PoolState> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Pool {
    fn new(reports: Sender<Report>) -> Pool {
        let (work_tx, work_rx) = crossbeam_channel::unbounded();
        let pool = Pool {
            work_tx,
            work_rx,
            reports,
            state: Arc::new(Mutex::new(PoolState::default())),
        };
        match pool.start_thread() {
            Ok(()) => {
                let mut st = lock(&pool.state);
                st.threads = 1;
                st.idle = 1;
            }
            Err(err) => tracing::warn!("cannot start the spawner thread yet: {err}"),
        }
        pool
    }

    /// Queues `unit`'s task and makes sure a thread is free to take it: an idle one is
    /// claimed, else a new one starts (up to [`MAX_THREADS`]). The lock is held for a few
    /// counter updates only.
    fn submit(&self, unit: String, task: Task) {
        let new_thread = {
            let mut st = lock(&self.state);
            if st.idle > 0 {
                st.idle -= 1;
                false
            } else if st.threads < MAX_THREADS {
                st.threads += 1;
                true
            } else {
                false
            }
        };
        if self.work_tx.send(Work { unit, task }).is_err() {
            return; // cannot happen: the pool holds a receiver
        }
        if new_thread && let Err(err) = self.start_thread() {
            lock(&self.state).threads -= 1;
            tracing::error!("cannot start a spawner thread: {err}; the task waits for a busy one");
        }
    }

    fn start_thread(&self) -> std::io::Result<()> {
        let work = self.work_rx.clone();
        let reports = self.reports.clone();
        let state = Arc::clone(&self.state);
        std::thread::Builder::new()
            .name("spawner".into())
            .spawn(move || worker(&work, &reports, &state))
            .map(drop)
    }
}

fn worker(work: &Receiver<Work>, reports: &Sender<Report>, state: &Mutex<PoolState>) {
    loop {
        // The last thread waits without a timeout: it never leaves, so waking every
        // IDLE_EXIT only to stay would be an idle daemon's one wakeup per second. The
        // count can grow while it waits; then the newer threads time out and leave.
        let received = if lock(state).threads > 1 {
            work.recv_timeout(IDLE_EXIT)
        } else {
            work.recv().map_err(|_| RecvTimeoutError::Disconnected)
        };
        match received {
            Ok(Work { unit, task }) => {
                let report = run(unit, task);
                lock(state).idle += 1;
                if reports.send(report).is_err() {
                    return; // the loop is gone: the daemon is exiting
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                let mut st = lock(state);
                // Leave only when no queued task counts on this thread (idle > 0) and
                // another thread stays.
                if st.idle > 0 && st.threads > 1 {
                    st.idle -= 1;
                    st.threads -= 1;
                    return;
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Performs one task on a pool thread.
fn run(unit: String, task: Task) -> Report {
    match task {
        Task::Spawn(job) => {
            let began = Instant::now();
            let cgroups = job
                .resources
                .as_ref()
                .map(|(roots, cgroups)| roots.prepare(cgroups, &job.unit.service.resources));
            let join = cgroups.as_ref().map_or(&[][..], |c| &c.join[..]);
            let result = spawn(&unit, &job, join);
            Report::Spawn {
                unit,
                id: job.id,
                role: job.role,
                result,
                began,
                took: began.elapsed(),
                cgroups,
            }
        }
        Task::ReadPidFile { id, path, trust } => Report::PidFile {
            unit,
            id,
            result: crate::runtime::main_pid::read_trusted_pid_file(&path, &trust),
        },
        Task::GuessMainPid { id, scope } => Report::MainPidGuess {
            unit,
            id,
            guess: crate::runtime::main_pid::guess_main_pid(&scope),
        },
        Task::RemovePidFile { path } => {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    tracing::warn!("{unit}: cannot remove PIDFile={path}: {e}")
                }
                _ => {}
            }
            Report::Done { unit }
        }
        Task::RemoveRuntimeDirectories { unit: u, dirs } => {
            if let Err(err) = crate::runtime::spawn::remove_runtime_directories(&u.service, &dirs) {
                tracing::warn!("{unit}: removing RuntimeDirectory=: {err}");
            }
            Report::Done { unit }
        }
        Task::RemoveCgroups { cgroups } => {
            cgroups.remove();
            Report::Done { unit }
        }
        Task::UpdateResources {
            roots,
            cgroups,
            resources,
            pids,
            joined,
        } => {
            let mut prepared = roots.prepare(&cgroups, &resources);
            for dir in prepared.join.iter().filter(|d| !joined.contains(d)) {
                for pid in &pids {
                    if let Err(e) = std::fs::write(dir.join("cgroup.procs"), pid.to_string()) {
                        prepared.warnings.push(format!(
                            "moving pid {pid} into cgroup {}: {e}",
                            dir.display()
                        ));
                    }
                }
            }
            Report::Resources { unit, prepared }
        }
        Task::BindSockets { id, socket } => {
            let result = crate::runtime::socket_bind::bind_all(&unit, &socket);
            Report::Sockets { unit, id, result }
        }
        Task::RemoveSocketPaths { socket } => {
            crate::runtime::socket_bind::remove_paths(&socket);
            Report::Done { unit }
        }
    }
}

fn spawn(unit: &str, job: &SpawnJob, v1_cgroups: &[PathBuf]) -> Result<Spawned, SpawnError> {
    let unit = job.unit_name.as_deref().unwrap_or(unit);
    let mut request = SpawnRequest::new(
        unit,
        &job.command,
        &job.unit.service,
        &job.invocation_id,
        &job.dirs,
    );
    request.notify_socket = job.notify_socket.as_deref();
    request.main_pid = job.main_pid;
    request.cgroup = job.cgroup.as_ref();
    request.v1_cgroups = v1_cgroups;
    // Values read by the loader from EnvironmentFile=s in the commit, then the marker a
    // later daemon finds this process by.
    let extra_env: Vec<(String, String)> = job
        .unit
        .service
        .environment_from_files
        .iter()
        .cloned()
        .chain(job.monitor_env.iter().cloned())
        .chain(super::discovery::marker_env(unit, &job.instance))
        .collect();
    request.extra_env = &extra_env;
    request.progress = Some(&job.progress);
    let listen_fds: Vec<std::os::fd::RawFd> =
        job.listen.iter().map(|(fd, _)| fd.as_raw_fd()).collect();
    let listen_names: Vec<String> = job.listen.iter().map(|(_, n)| n.clone()).collect();
    request.listen_fds = &listen_fds;
    request.listen_fd_names = &listen_names;
    crate::runtime::spawn::spawn(&request)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tasks of one unit run in order; a unit whose task is stuck does not hold up another.
    #[test]
    fn a_stuck_unit_does_not_hold_up_another_and_one_units_tasks_keep_their_order() {
        let mut spawner = Spawner::start();
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        // A "PID file" that is a FIFO with no writer: reading it blocks until one comes.
        spawner.submit(
            "stuck.service",
            Task::ReadPidFile {
                id: 1,
                path: fifo.display().to_string(),
                trust: Default::default(),
            },
        );
        spawner.submit(
            "stuck.service",
            Task::RemovePidFile {
                path: dir.path().join("none").display().to_string(),
            },
        );
        let pid_file = dir.path().join("ok.pid");
        std::fs::write(&pid_file, format!("{}\n", std::process::id())).expect("write");
        spawner.submit(
            "ok.service",
            Task::ReadPidFile {
                id: 2,
                path: pid_file.display().to_string(),
                trust: crate::runtime::main_pid::PidTrust {
                    runs_as_root: true,
                    ..Default::default()
                },
            },
        );
        let reports = spawner.reports();
        let first = reports
            .recv_timeout(Duration::from_secs(10))
            .expect("the other unit's task is answered while the first is stuck");
        match &first {
            Report::PidFile { unit, id, result } => {
                assert_eq!((unit.as_str(), *id), ("ok.service", 2));
                assert_eq!(
                    result,
                    &crate::runtime::main_pid::PidRead::Pid(std::process::id() as i32)
                );
            }
            _ => panic!("unexpected report for {}", first.unit()),
        }
        spawner.finished("ok.service");
        assert!(spawner.is_busy(), "stuck.service still has its tasks");
        // Unblock the stuck read: open the FIFO for writing and close it (EOF).
        drop(
            std::fs::OpenOptions::new()
                .write(true)
                .open(&fifo)
                .expect("open fifo"),
        );
        let second = reports.recv_timeout(Duration::from_secs(10)).expect("read");
        assert!(matches!(second, Report::PidFile { id: 1, .. }));
        spawner.finished("stuck.service");
        let third = reports
            .recv_timeout(Duration::from_secs(10))
            .expect("removal");
        assert!(matches!(third, Report::Done { .. }));
        spawner.finished("stuck.service");
        assert!(!spawner.is_busy());
    }
}

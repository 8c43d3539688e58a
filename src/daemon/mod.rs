//! `gitproc daemon`: set-up, the threads around the event loop, and shutdown.
//!
//! - [`supervisor`]: the event loop that owns all supervisor state.
//! - [`apply`]: applying a new unit set: gathers what [`crate::reconcile`] decides on and
//!   carries out its actions (versions, errors, starts, stops, adoptions).
//! - [`worker`]: the source thread (git fetch, parse) so the loop never waits on git.
//! - [`reaper`]: collecting exits without stealing the worker's subprocesses.
//! - [`discovery`]: finding the processes a previous daemon left, stopping what is not adopted.
//! - [`spawner`]: the thread pool that spawns and does the other host I/O of starts and
//!   stops, so the loop never blocks on it.
//! - [`signals`]: the signal thread. [`managed`]: what the loop keeps per unit.

pub(crate) mod apply;
pub(crate) mod discovery;
pub(crate) mod managed;
pub(crate) mod reaper;
pub(crate) mod signals;
pub(crate) mod spawner;
pub(crate) mod supervisor;
pub(crate) mod sweep;
pub(crate) mod worker;

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::config::{Config, secs};
use crate::control::protocol::exit;
use crate::control::server::AccessPolicy;
use crate::source::{PollConfig, SignaturePolicy, SourceConfig};
use crate::state::format::LoadOutcome;
use crate::state::lock::{DaemonLock, LockError};
use crate::state::writer::{StateWriter, WriterConfig};
use supervisor::{Inputs, Settings, Supervisor};
use worker::{Origin, WorkerConfig};

/// The notify socket's file name (in the directory [`crate::runtime::notify_socket::socket_path`]
/// picks).
pub const NOTIFY_SOCKET_NAME: &str = "notify.sock";

/// What `gitproc daemon` runs with, resolved by the caller (the CLI merges its flags into
/// the configuration file's values). Plain data, so the daemon does not depend on clap or
/// on the command line that produced it.
#[derive(Debug, Clone, Default)]
pub struct DaemonOptions {
    /// The configuration, with command-line overrides already applied.
    pub config: Config,
    /// The state directory (may be relative; the daemon makes it absolute).
    pub state_dir: PathBuf,
    /// Development mode: read units from this plain directory instead of git.
    pub dir: Option<PathBuf>,
    /// Write the daemon's own log here (appended) instead of stderr.
    pub log_file: Option<PathBuf>,
    /// Whether the log on stderr gets ANSI colours (the caller knows about `NO_COLOR` and
    /// whether stderr is a terminal).
    pub log_color: bool,
    /// On SIGTERM/SIGINT exit without stopping the services (the next daemon re-adopts them).
    pub keep_services: bool,
}

/// Runs the daemon in the foreground until SIGTERM/SIGINT; returns the exit code.
pub fn run(options: DaemonOptions) -> anyhow::Result<i32> {
    let DaemonOptions {
        config,
        state_dir,
        dir,
        log_file,
        log_color,
        keep_services,
    } = options;
    // Sockets inside it need absolute paths (NOTIFY_SOCKET is read by children in other
    // working directories), so `--state-dir ./st` must work like an absolute one.
    let state_dir = absolute(&state_dir)?;
    init_tracing(log_file.as_deref(), log_color, &config.logs)?;

    // Secrets are read before anything starts: a missing file is a configuration error.
    let http = crate::http::HttpConfig::load(&config.http, config.branch.clone())?;

    crate::state::ensure_state_dir(&state_dir)?;
    let _lock = match acquire_lock(&state_dir) {
        Ok(lock) => lock,
        Err(err @ LockError::Held { .. }) => {
            eprintln!("gitproc: {err}");
            return Ok(exit::FAILURE);
        }
        Err(err) => return Err(err.into()),
    };

    let origin = match &dir {
        Some(dir) => Origin::Dir(absolute(dir)?),
        None => {
            let Some(repo) = config.repo.clone() else {
                anyhow::bail!(
                    "no repository to follow: pass --repo URL_OR_PATH (or --dir PATH for a plain directory), or set `repo` in the config file"
                );
            };
            let url = match worker::local_repo_path(&repo) {
                Some(path) if !repo.starts_with("file://") => {
                    absolute(&path)?.to_string_lossy().into_owned()
                }
                _ => repo,
            };
            Origin::Git(SourceConfig {
                url,
                branch: config.branch.clone(),
                units_dir: config.units_dir.clone(),
                mirror: state_dir.join("repo.git"),
            })
        }
    };
    let repo_label = match &origin {
        Origin::Git(cfg) => cfg.url.clone(),
        Origin::Dir(dir) => format!("dir:{}", dir.display()),
    };

    let state_path = crate::state::state_file(&state_dir);
    let restored = match crate::state::format::load(&state_path) {
        Ok(LoadOutcome::Fresh) => None,
        Ok(LoadOutcome::Loaded(state)) => Some(state),
        Ok(LoadOutcome::Corrupt { moved_to, error }) => {
            // `error` already names the file and why it is unusable.
            tracing::error!(
                "{error}; moved it to {} and starting from git (processes a previous daemon left running are found by their marker and stopped before their units start fresh)",
                moved_to.display()
            );
            None
        }
        Err(err) => {
            eprintln!("gitproc: {err}");
            return Ok(exit::FAILURE);
        }
    };

    crate::runtime::reap::set_child_subreaper().context("PR_SET_CHILD_SUBREAPER")?;

    // One malloc arena for the whole daemon: glibc gives each thread that allocates its own
    // arena (control, logs, state, source...), and memory freed there (e.g. a `status`
    // reply for 500 units) stays mapped. The threads rarely allocate at the same time, so
    // the lock costs nothing measurable; PSS with 500 services: 16.9 -> 15.4 MiB.
    // SAFETY: mallopt only sets an allocator parameter.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }

    let mut ctx = crate::unit::SpecifierContext::detect();
    if let Some(hostname) = &config.hostname {
        ctx.hostname = hostname.clone();
    }
    let hostname = ctx.hostname.clone();

    let (signal_tx, signal_rx) = crossbeam_channel::unbounded();
    if let Some(period) = config.fallback_reap() {
        sweep::start(period, signal_tx.clone()).context("starting the fallback sweep")?;
    }
    signals::start(signal_tx).context("installing signal handlers")?;

    let (control_tx, control_rx) = crossbeam_channel::bounded(256);
    let policy = AccessPolicy {
        owner_uid: nix::unistd::geteuid().as_raw(),
        group_gid: match &config.control.group {
            Some(group) => Some(
                nix::unistd::Group::from_name(group)
                    .ok()
                    .flatten()
                    .with_context(|| format!("[control] group {group:?} does not exist"))?
                    .gid
                    .as_raw(),
            ),
            None => None,
        },
    };
    let socket_path = state_dir.join(crate::control::SOCKET_NAME);
    // A socket file left behind says a daemon ran here before (it is made before any
    // service is spawned): discovery must then look twice for its last spawns.
    let previous_daemon = socket_path.exists();
    if socket_answers(&socket_path) {
        eprintln!(
            "gitproc: another gitproc daemon answers on {}; not replacing its control socket (stop that daemon first)",
            socket_path.display()
        );
        return Ok(exit::FAILURE);
    }
    let http_control = http.as_ref().map(|_| control_tx.clone());
    crate::control::server::start(&socket_path, policy, control_tx)
        .with_context(|| format!("control socket {}", socket_path.display()))?;
    // The HTTP listener asks the loop what the control socket asks (status, sync, ping)
    // through the same channel, and scrapes through its own.
    // This end of the metrics channel lives as long as the loop: a disconnected receiver
    // is always ready, and would make the loop's select spin if the listener's threads died.
    let (_metrics_keep, metrics_rx) = match (http, http_control) {
        (Some(http), Some(to_loop)) => {
            let (metrics_tx, metrics_rx) = crossbeam_channel::bounded(16);
            crate::http::server::start(http, to_loop, metrics_tx.clone())?;
            (Some(metrics_tx), metrics_rx)
        }
        _ => (None, crossbeam_channel::never()),
    };

    let (notify_path, notify_dir) =
        crate::runtime::notify_socket::socket_path(&state_dir, NOTIFY_SOCKET_NAME)?;
    let (notify_socket, notify_rx) =
        crate::runtime::notify_socket::NotifySocket::bind(&notify_path)?;

    let logs = crate::logs::collector::LogCollector::start(crate::logs::collector::LogConfig {
        dir: state_dir.join(crate::state::LOGS_DIR),
        max_bytes: config.logs.max_bytes,
        keep: config.logs.keep,
        rate_bytes_per_s: config.logs.rate_bytes_per_s,
    })
    .context("starting the log collector")?;

    let (pidfds, adopted_rx) =
        crate::runtime::pidfd::PidfdWatcher::start().context("starting the pidfd watcher")?;

    let writer = StateWriter::spawn(
        state_path,
        WriterConfig {
            interval: secs(config.state.save_interval_s),
            min_gap: secs(config.state.save_min_gap_s),
        },
    )?;

    let (worker_tx, worker_rx) = crossbeam_channel::unbounded();
    let (update_tx, update_rx) = crossbeam_channel::bounded(4);
    let signing = if config.signing.require_signed {
        config
            .signing
            .allowed_signers
            .clone()
            .map(|allowed_signers| SignaturePolicy::Ssh {
                allowed_signers,
                revocation_file: None,
            })
    } else {
        None
    };
    worker::start(
        WorkerConfig {
            origin,
            poll: PollConfig {
                min_interval: secs(config.poll.min_interval_s),
                max_interval: secs(config.poll.max_interval_s),
                unchanged_before_growth: config.poll.unchanged_before_growth,
                step: secs(config.poll.step_s),
                jitter: config.poll.jitter,
            },
            signing,
            ctx,
            baseline: restored
                .as_ref()
                .and_then(|r| r.daemon.applied_commit.clone()),
            frozen: restored.as_ref().is_some_and(|r| r.daemon.freeze.is_some()),
        },
        worker_rx,
        update_tx,
    )?;

    tracing::info!(
        "gitproc {} daemon (pid {}) following {repo_label}, state in {}",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        state_dir.display()
    );
    let instance =
        crate::runtime::cgroup::cgroup_name(&state_dir, &crate::state::default_state_dir());
    let restored_for_discovery = restored.clone();
    let supervisor = Supervisor::new(
        Settings {
            fallback_reap: config.fallback_reap(),
            rollback: config.rollback,
            keep_services,
            host: crate::runtime::host::HostFacts::detect(hostname),
            notify_socket: notify_path,
            dirs: crate::runtime::spawn::Dirs::default(),
            repo: repo_label,
            branch: config.branch.clone(),
            state_dir: state_dir.clone(),
            instance: instance.clone(),
        },
        worker_tx,
        logs,
        pidfds,
        writer,
        restored,
    );
    // Before the loop runs (it blocks while strays exit): nothing of a previous daemon
    // that will not be adopted may still run when the first unit set starts units.
    discovery::stop_strays(
        &instance,
        supervisor.cgroup_root(),
        restored_for_discovery.as_ref(),
        previous_daemon,
    );
    drop(restored_for_discovery);
    let code = supervisor.run(Inputs {
        signals: signal_rx,
        control: control_rx,
        notify: notify_rx,
        source: update_rx,
        adopted_exits: adopted_rx,
        metrics: metrics_rx,
    });
    let _ = std::fs::remove_file(&socket_path);
    drop(notify_socket);
    if let Some(dir) = notify_dir {
        // Empty once the socket is gone; services kept running (--keep-services) lose
        // nothing: the next daemon on this state directory binds the same path.
        let _ = std::fs::remove_dir(dir);
    }
    Ok(code)
}

/// Takes the daemon lock. When the pid recorded in it is dead, the lock is about to be
/// released: a child the previous daemon forked just before it was killed (a git transport
/// helper between fork and exec) briefly shares its open lock file. Waiting a moment then
/// makes `kill -9` + restart (systemd's Restart=) work instead of failing with "held".
fn acquire_lock(state_dir: &Path) -> Result<DaemonLock, LockError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match DaemonLock::acquire(state_dir) {
            Err(LockError::Held { pid: Some(pid), .. })
                if std::time::Instant::now() < deadline
                    && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
                        == Err(nix::errno::Errno::ESRCH) =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// Whether something accepts connections on `path`. We hold the lock, so a listener there
/// is a daemon that no longer holds it (its state directory was moved or recreated, or it
/// predates the directory lock): replacing its socket would leave two daemons running the
/// same services with one of them unreachable. A refused or missing socket is stale.
fn socket_answers(path: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))
}

/// The daemon's own log: stderr, or `--log-file` (appended, rotated by `[logs]
/// daemon_max_bytes`/`daemon_keep`, repeated messages rate-limited: see
/// [`crate::logs::daemon_log`]). `RUST_LOG` refines the level.
fn init_tracing(
    log_file: Option<&Path>,
    color: bool,
    logs: &crate::config::LogsSection,
) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match log_file {
        Some(path) => {
            use crate::logs::daemon_log::DaemonLog;
            DaemonLog::check(path)
                .with_context(|| format!("opening log file {}", path.display()))?;
            builder
                .with_ansi(false)
                .with_writer(DaemonLog::new(
                    path.to_path_buf(),
                    logs.daemon_max_bytes,
                    logs.daemon_keep,
                ))
                .init();
        }
        None => builder.with_ansi(color).with_writer(std::io::stderr).init(),
    }
    Ok(())
}

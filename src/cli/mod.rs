//! The `gitproc` command line: clap definitions and dispatch to one module per verb group.
//!
//! Every verb but `daemon`, `check`, `plan` and `completions` talks to a running daemon
//! through its control socket in the state directory.
//!
//! Two executables share these definitions (ARCHITECTURE.md, "Two executables"): `gitproc`,
//! the front an operator types, runs the client verbs itself ([`run_client`]) and replaces
//! itself with `gitprocd`, the engine, for the verbs that need git, the unit loader or the
//! supervisor ([`needs_engine`], [`engine::exec`]); `gitprocd` runs every verb ([`run`]).
//! The front links none of the engine's code, so a `status` pays for loading a small
//! binary, not the whole supervisor.

pub mod check;
pub mod engine;
pub mod freeze;
pub mod jobs;
pub mod logs;
pub mod output;
pub mod perf;
pub mod plan;
pub mod sockets;
pub mod status;
pub mod timers;

use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::config::Config;
use crate::daemon::DaemonOptions;

// The verb modules take the exit codes from here (`use super::exit`); they are defined with
// the control protocol, which the daemon's replies carry them in.
use crate::control::protocol::exit;
pub use output::JsonFormat;

#[derive(Debug, Parser)]
#[command(
    name = "gitproc",
    version,
    about = "A process supervisor driven by a git repository"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every verb accepts, before or after the verb.
#[derive(Debug, Args, Clone, Default)]
pub struct GlobalArgs {
    /// State directory (state.json, gitproc.sock, repo.git, logs/, daemon.lock).
    #[arg(long, global = true, env = "GITPROC_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Configuration file (TOML). Default: /etc/gitproc/gitproc.toml if it exists.
    #[arg(long, global = true, env = "GITPROC_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the supervisor in the foreground.
    Daemon(DaemonArgs),
    /// Start units (an operator start also clears a `stop` override).
    Start(JobArgs),
    /// Stop units; they stay stopped across git syncs and daemon restarts until `start`.
    Stop(JobArgs),
    /// Restart units.
    Restart(JobArgs),
    /// Reload units (ExecReload=).
    Reload(JobArgs),
    /// Show the daemon and all units, or named units in detail (exit 3: not active, 4: unknown).
    Status(StatusArgs),
    /// One line per unit.
    List(ListArgs),
    /// Timers by next elapse, like `systemctl list-timers` (NEXT, LEFT, LAST, PASSED, UNIT, ACTIVATES).
    ListTimers(ListTimersArgs),
    /// Socket units by listening address, like `systemctl list-sockets` (LISTEN, UNIT, ACTIVATES).
    ListSockets(ListSocketsArgs),
    /// Show a unit's log.
    Logs(LogsArgs),
    /// Make the daemon check git now and print what it applied.
    Sync(JsonArgs),
    /// Keep fetching but apply no new commit on this host until `thaw` (survives restarts).
    Freeze(FreezeArgs),
    /// Lift a freeze: the pending commit applies once its rollout wave is due.
    Thaw(JsonArgs),
    /// Check unit files (like `systemd-analyze verify`): files or directories.
    Check(CheckArgs),
    /// Show what applying a commit would do (start/stop/restart per unit), without a daemon.
    Plan(PlanArgs),
    /// Latency statistics of the daemon's own operations.
    Perf {
        #[command(subcommand)]
        command: PerfCommand,
    },
    /// Print a shell completion script.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args, Clone, Default)]
pub struct DaemonArgs {
    /// Repository to follow: a local path, file://, https://, ssh://, git:// or scp-style URL.
    #[arg(long, value_name = "URL_OR_PATH")]
    pub repo: Option<String>,
    /// Branch to follow (default: the remote's HEAD).
    #[arg(long)]
    pub branch: Option<String>,
    /// Directory inside the repository's tree that holds the units (default: the top).
    #[arg(long, value_name = "DIR_IN_TREE")]
    pub units_dir: Option<String>,
    /// Development mode: read units from a plain directory instead of git.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["repo", "branch", "units_dir"])]
    pub dir: Option<PathBuf>,
    /// Write the daemon's own log here instead of stderr.
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// Host name for ConditionHost=, %H and the rollout wave (default: the detected one).
    #[arg(long)]
    pub hostname: Option<String>,
    /// On SIGTERM/SIGINT exit without stopping the services (the next daemon re-adopts them).
    #[arg(long)]
    pub keep_services: bool,
}

#[derive(Debug, Args, Clone)]
pub struct JobArgs {
    /// Unit names, with or without `.service`.
    #[arg(required = true)]
    pub units: Vec<String>,
    /// Return once the jobs are queued instead of waiting for them to finish.
    #[arg(long)]
    pub no_block: bool,
    /// JSON output: `pretty` (indented), `short` (one line); a bare `--json` is `auto`:
    /// pretty on a terminal, one line otherwise.
    #[arg(long, value_name = "FORMAT", num_args = 0..=1, require_equals = true, default_missing_value = "auto")]
    pub json: Option<JsonFormat>,
}

#[derive(Debug, Args, Clone)]
pub struct StatusArgs {
    pub units: Vec<String>,
    /// JSON output: `pretty` (indented), `short` (one line); a bare `--json` is `auto`:
    /// pretty on a terminal, one line otherwise.
    #[arg(long, value_name = "FORMAT", num_args = 0..=1, require_equals = true, default_missing_value = "auto")]
    pub json: Option<JsonFormat>,
    /// Log lines shown per unit.
    #[arg(short = 'n', long, default_value_t = 10)]
    pub lines: usize,
}

#[derive(Debug, Args, Clone)]
pub struct ListArgs {
    /// JSON output: `pretty` (indented), `short` (one line); a bare `--json` is `auto`:
    /// pretty on a terminal, one line otherwise.
    #[arg(long, value_name = "FORMAT", num_args = 0..=1, require_equals = true, default_missing_value = "auto")]
    pub json: Option<JsonFormat>,
}

#[derive(Debug, Args, Clone)]
pub struct ListTimersArgs {
    /// Also timers that are not active (stopped, or elapsed for good).
    #[arg(long)]
    pub all: bool,
    /// JSON output: `pretty` (indented), `short` (one line); a bare `--json` is `auto`:
    /// pretty on a terminal, one line otherwise.
    #[arg(long, value_name = "FORMAT", num_args = 0..=1, require_equals = true, default_missing_value = "auto")]
    pub json: Option<JsonFormat>,
}

#[derive(Debug, Args, Clone)]
pub struct ListSocketsArgs {
    /// Also sockets that are not active (stopped, failed).
    #[arg(long)]
    pub all: bool,
    /// JSON output: `pretty` (indented), `short` (one line); a bare `--json` is `auto`:
    /// pretty on a terminal, one line otherwise.
    #[arg(long, value_name = "FORMAT", num_args = 0..=1, require_equals = true, default_missing_value = "auto")]
    pub json: Option<JsonFormat>,
}

#[derive(Debug, Args, Clone)]
pub struct FreezeArgs {
    /// Why, shown in `status` (e.g. an incident number).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// JSON output: `pretty` (indented), `short` (one line); a bare `--json` is `auto`:
    /// pretty on a terminal, one line otherwise.
    #[arg(long, value_name = "FORMAT", num_args = 0..=1, require_equals = true, default_missing_value = "auto")]
    pub json: Option<JsonFormat>,
}

#[derive(Debug, Args, Clone)]
pub struct JsonArgs {
    /// JSON output: `pretty` (indented), `short` (one line); a bare `--json` is `auto`:
    /// pretty on a terminal, one line otherwise.
    #[arg(long, value_name = "FORMAT", num_args = 0..=1, require_equals = true, default_missing_value = "auto")]
    pub json: Option<JsonFormat>,
}

#[derive(Debug, Args, Clone)]
pub struct LogsArgs {
    pub unit: String,
    /// Show only the last N lines.
    #[arg(short = 'n', long)]
    pub lines: Option<usize>,
    /// Keep printing new lines as they are written (survives rotation).
    #[arg(short = 'f', long)]
    pub follow: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Unit files or directories holding them.
    #[arg(required_unless_present = "calendar")]
    pub paths: Vec<PathBuf>,
    /// Instead of files: print a calendar expression's normalized form and next elapses
    /// (like `systemd-analyze calendar`); may repeat.
    #[arg(long, value_name = "EXPR")]
    pub calendar: Vec<String>,
    /// With --calendar: how many elapses to show.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub iterations: usize,
    /// Print diagnostics as JSON (`--json=pretty|short`; bare: pretty on a terminal,
    /// one line otherwise).
    #[arg(long, value_name = "FORMAT", num_args = 0..=1, require_equals = true, default_missing_value = "auto")]
    pub json: Option<JsonFormat>,
}

#[derive(Debug, Args, Clone)]
pub struct PlanArgs {
    /// A local git repository (its committed trees are read, never its working tree).
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// The commit currently applied (default: the first parent of --to).
    #[arg(long, value_name = "REV")]
    pub from: Option<String>,
    /// The commit to apply (default: HEAD).
    #[arg(long, value_name = "REV")]
    pub to: Option<String>,
    /// Directory inside the tree that holds the units.
    #[arg(long, default_value = ".", value_name = "DIR_IN_TREE")]
    pub units_dir: String,
    /// JSON output: `pretty` (indented), `short` (one line); a bare `--json` is `auto`:
    /// pretty on a terminal, one line otherwise.
    #[arg(long, value_name = "FORMAT", num_args = 0..=1, require_equals = true, default_missing_value = "auto")]
    pub json: Option<JsonFormat>,
}

#[derive(Debug, Subcommand, Clone)]
pub enum PerfCommand {
    /// Counts and p50/p95/p99 per operation.
    Stats(JsonArgs),
    /// Export in a machine format.
    Export {
        #[arg(long, value_enum, default_value = "json")]
        format: ExportFormat,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    Json,
    Prometheus,
}

/// The verbs that run in the engine (`gitprocd`): the supervisor itself, and the two that
/// read units and git the way the daemon does.
pub fn needs_engine(command: &Command) -> bool {
    matches!(
        command,
        Command::Daemon(_) | Command::Check(_) | Command::Plan(_)
    )
}

/// Runs any verb (the engine's entry point); returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    let global = cli.global;
    match cli.command {
        Command::Check(args) => check::run(&args),
        Command::Plan(args) => plan::run(&args),
        Command::Daemon(args) => {
            let config = Config::load(global.config.as_deref())?;
            crate::daemon::run(daemon_options(config, &global, args))
        }
        command => run_client(&global, command),
    }
}

/// Runs a client verb (the front's entry point): everything but [`needs_engine`]'s verbs,
/// which it refuses (the front has exec'd the engine for them before getting here).
pub fn run_client(global: &GlobalArgs, command: Command) -> anyhow::Result<i32> {
    match command {
        Command::Daemon(_) | Command::Check(_) | Command::Plan(_) => {
            anyhow::bail!("this verb runs in gitprocd, not in the client")
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "gitproc",
                &mut std::io::stdout(),
            );
            Ok(exit::OK)
        }
        Command::Start(args) => jobs::run(global, jobs::Kind::Start, &args),
        Command::Stop(args) => jobs::run(global, jobs::Kind::Stop, &args),
        Command::Restart(args) => jobs::run(global, jobs::Kind::Restart, &args),
        Command::Reload(args) => jobs::run(global, jobs::Kind::Reload, &args),
        Command::Status(args) => status::run(global, &args),
        Command::List(args) => status::list(global, &args),
        Command::ListTimers(args) => timers::list(global, &args),
        Command::ListSockets(args) => sockets::list(global, &args),
        Command::Logs(args) => logs::run(global, &args),
        Command::Sync(args) => jobs::sync(global, &args),
        Command::Freeze(args) => freeze::freeze(global, &args),
        Command::Thaw(args) => freeze::thaw(global, &args),
        Command::Perf { command } => perf::run(global, &command),
    }
}

/// The daemon's options: the configuration file's values with the command line's on top.
fn daemon_options(mut config: Config, global: &GlobalArgs, args: DaemonArgs) -> DaemonOptions {
    use std::io::IsTerminal;
    let DaemonArgs {
        repo,
        branch,
        units_dir,
        dir,
        log_file,
        hostname,
        keep_services,
    } = args;
    if let Some(repo) = repo {
        config.repo = Some(repo);
    }
    if let Some(branch) = branch {
        config.branch = Some(branch);
    }
    if let Some(units_dir) = units_dir {
        config.units_dir = units_dir;
    }
    if let Some(hostname) = hostname {
        config.hostname = Some(hostname);
    }
    let state_dir = match &global.state_dir {
        Some(dir) => dir.clone(),
        None => config
            .state_dir
            .clone()
            .unwrap_or_else(crate::state::default_state_dir),
    };
    DaemonOptions {
        config,
        state_dir,
        dir,
        log_file,
        log_color: output::color_on(std::io::stderr().is_terminal()),
        keep_services,
    }
}

/// The state directory: `--state-dir`/`GITPROC_STATE_DIR`, else the config file's, else the
/// default (`/var/lib/gitproc` as root, `$XDG_STATE_HOME/gitproc` otherwise).
pub fn state_dir(global: &GlobalArgs) -> anyhow::Result<PathBuf> {
    if let Some(dir) = &global.state_dir {
        return Ok(dir.clone());
    }
    let config = Config::load(global.config.as_deref())?;
    Ok(config
        .state_dir
        .unwrap_or_else(crate::state::default_state_dir))
}

/// The control socket of the daemon owning the state directory.
pub fn socket_path(global: &GlobalArgs) -> anyhow::Result<PathBuf> {
    Ok(state_dir(global)?.join(crate::control::SOCKET_NAME))
}

/// Unit type suffixes systemd knows; a name without one gets `.service` (as `systemctl`).
const UNIT_SUFFIXES: [&str; 11] = [
    "service",
    "socket",
    "target",
    "timer",
    "mount",
    "automount",
    "path",
    "slice",
    "scope",
    "device",
    "swap",
];

/// `web` -> `web.service`; names with a unit suffix are kept.
pub fn unit_name(name: &str) -> String {
    match name.rsplit_once('.') {
        Some((stem, suffix)) if !stem.is_empty() && UNIT_SUFFIXES.contains(&suffix) => {
            name.to_string()
        }
        _ => format!("{name}.service"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names_get_service_suffix_like_systemctl() {
        assert_eq!(unit_name("web"), "web.service");
        assert_eq!(unit_name("web.service"), "web.service");
        assert_eq!(unit_name("api.v2"), "api.v2.service");
        assert_eq!(unit_name("getty@tty1"), "getty@tty1.service");
        assert_eq!(unit_name("multi-user.target"), "multi-user.target");
    }

    fn status_args(argv: &[&str]) -> StatusArgs {
        match Cli::try_parse_from(argv).map(|cli| cli.command) {
            Ok(Command::Status(args)) => args,
            other => panic!("{argv:?} did not parse as status: {other:?}"),
        }
    }

    #[test]
    fn json_takes_a_format_only_after_an_equals_sign() {
        let bare = status_args(&["gitproc", "status", "--json", "web"]);
        assert_eq!(bare.json, Some(JsonFormat::Auto));
        assert_eq!(
            bare.units,
            ["web"],
            "the word after a bare --json is a unit"
        );
        let short = status_args(&["gitproc", "status", "--json=short"]);
        assert_eq!(short.json, Some(JsonFormat::Short));
        let pretty = status_args(&["gitproc", "status", "--json=pretty"]);
        assert_eq!(pretty.json, Some(JsonFormat::Pretty));
        assert_eq!(status_args(&["gitproc", "status"]).json, None);
        assert!(Cli::try_parse_from(["gitproc", "status", "--json=wide"]).is_err());
    }
}

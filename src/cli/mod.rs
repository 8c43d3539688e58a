//! The `gitproc` command line: clap definitions and dispatch to one module per verb group.

pub mod check;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Exit codes, as systemctl's.
pub mod exit {
    pub const OK: i32 = 0;
    pub const FAILURE: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const NOT_ACTIVE: i32 = 3;
    pub const NO_SUCH_UNIT: i32 = 4;
}

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
    /// Check unit files (like `systemd-analyze verify`): files or directories.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Unit files or directories holding them.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Print diagnostics as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs the parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Check(args) => check::run(&args),
    }
}

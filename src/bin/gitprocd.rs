//! `gitprocd`, the engine: every verb, including the ones only it can run (`daemon`,
//! `check`, `plan`). Operators type `gitproc`, which execs this binary for those verbs;
//! `gitprocd VERB` directly works the same.

use clap::Parser;

fn main() {
    let cli = gitproc::cli::Cli::parse();
    if !matches!(cli.command, gitproc::cli::Command::Daemon(_)) {
        // A verb piped into `head` should end quietly when the reader goes away, as other
        // Unix tools do. The daemon keeps Rust's default (SIGPIPE ignored) so a vanished
        // control client is an error, not a death.
        // SAFETY: called before any other thread exists; SIG_DFL is a valid disposition.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let code = match gitproc::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("gitproc: {err:#}");
            gitproc::control::protocol::exit::FAILURE
        }
    };
    std::process::exit(code);
}

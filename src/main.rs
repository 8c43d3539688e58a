//! `gitproc`, the front an operator types: parse the command line, run a client verb here,
//! or hand `daemon`, `check` and `plan` to the engine (`gitprocd`, beside this binary).
//!
//! Keeping the front free of the engine's code (git, the unit loader, the supervisor) is
//! what makes `gitproc status` cheap: the kernel and the dynamic loader map and relocate a
//! small binary (PERFORMANCE.md (i)).

use clap::Parser;

fn main() {
    let cli = gitproc::cli::Cli::parse();
    if gitproc::cli::needs_engine(&cli.command) {
        let err = gitproc::cli::engine::exec();
        eprintln!("gitproc: {err:#}");
        std::process::exit(gitproc::control::protocol::exit::FAILURE);
    }
    // A client verb piped into `head` should end quietly when the reader goes away, as
    // other Unix tools do, instead of panicking in `println!`.
    // SAFETY: called before any other thread exists; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let code = match gitproc::cli::run_client(&cli.global, cli.command) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("gitproc: {err:#}");
            gitproc::control::protocol::exit::FAILURE
        }
    };
    std::process::exit(code);
}

//! The `gitproc` binary: parse the command line, run the verb, exit with its code.

use clap::Parser;

fn main() {
    let cli = gitproc::cli::Cli::parse();
    let code = match gitproc::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("gitproc: {err:#}");
            gitproc::cli::exit::FAILURE
        }
    };
    std::process::exit(code);
}

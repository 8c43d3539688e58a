//! Handing a verb from the front (`gitproc`) to the engine (`gitprocd`).
//!
//! The engine is installed beside the front (same directory: `/usr/bin`, `target/release`),
//! so the front finds it from its own path, not from `$PATH`: a `gitproc` never runs
//! another installation's engine. The hand-over is an `execve` (same pid, same argv, same
//! environment and descriptors), so a service manager that started `gitproc daemon` keeps
//! supervising the daemon's pid, and `/proc/PID/cmdline` still reads `gitproc daemon ...`.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;

/// The engine's file name, next to the `gitproc` front.
pub const ENGINE_NAME: &str = "gitprocd";

/// Where the engine is: beside the running executable.
pub fn engine_path() -> std::io::Result<PathBuf> {
    Ok(std::env::current_exe()?.with_file_name(ENGINE_NAME))
}

/// Replaces this process with the engine, passing this process's own arguments. Returns
/// only when that fails, with an error that names the path and what to do.
pub fn exec() -> anyhow::Error {
    let path = match engine_path() {
        Ok(path) => path,
        Err(err) => {
            return anyhow::anyhow!(
                "cannot find the running executable to locate {ENGINE_NAME} beside it: {err}"
            );
        }
    };
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_else(|| "gitproc".into());
    let err = std::process::Command::new(&path)
        .arg0(argv0)
        .args(args)
        .exec();
    anyhow::anyhow!(
        "cannot run the engine {}: {err}; gitproc needs {ENGINE_NAME} installed beside it \
         (packaging/install.sh and the .deb install both; `cargo build` builds both)",
        path.display()
    )
}

//! The one place a test decides what to do when a tool, fixture or capability it needs is
//! missing. A developer's machine may lack `systemd-notify` or root, and a test there says
//! so and returns; under `CI=true` the same absence FAILS, because a CI run that passes by
//! skipping proves nothing (`.ci/run` installs everything the tests need).

use std::process::{Command, Stdio};

/// Whether this run is a CI run (`CI=true`, as `.ci/run` and most CI services set it).
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Returns `available`. When it is false: under CI panics naming `what` (so the run fails),
/// otherwise prints `SKIP: <what> missing` and the caller returns early.
///
/// ```ignore
/// if !require("systemd-notify (package systemd)", have_program("systemd-notify")) {
///     return;
/// }
/// ```
pub fn require(what: &str, available: bool) -> bool {
    if !available {
        if is_ci() {
            panic!("CI=true and {what} is missing: install it (see .ci/run)");
        }
        eprintln!("SKIP: {what} missing (under CI=true this test fails)");
    }
    available
}

/// Whether `program` is found on `PATH` (or, given as a path, exists) and is executable.
pub fn have_program(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &std::path::Path| {
        std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        return executable(std::path::Path::new(program));
    }
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| executable(&dir.join(program))))
        .unwrap_or(false)
}

/// Whether running `program args...` exits 0 (a capability probe such as `unshare -m true`).
pub fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether the tests run as root (needed to drop to another uid, mount, chattr).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

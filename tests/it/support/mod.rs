//! Shared harness for the end-to-end tests: a real git repository of units in a temp dir,
//! the real `gitproc daemon` on it, deadline waits, and cleanup of every process started.
//!
//! Used from every test module as `crate::support`.
#![allow(dead_code)]

pub mod fault;
pub mod git_fixture;
pub mod require;

pub use require::{have_program, is_root, require, succeeds};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use gitproc::control::client;
use gitproc::control::protocol::Verb;
use serde_json::Value;

/// Default deadline for conditions a test waits on.
pub const WAIT: Duration = Duration::from_secs(20);

/// Polls `f` every few milliseconds until it returns `Some`, or panics after `timeout`
/// saying what was awaited.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The `gitproc` binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gitproc"))
}

/// A git repository in a temp dir, with a committer identity of its own (so tests need no
/// global git config).
pub struct Repo {
    pub dir: tempfile::TempDir,
}

impl Repo {
    pub fn new() -> Repo {
        let dir = tempfile::tempdir().expect("temp dir");
        let repo = Repo { dir };
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs git in the repository; panics with git's stderr on failure.
    pub fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(self.path())
            .env("GIT_AUTHOR_NAME", "gitproc test")
            .env("GIT_AUTHOR_EMAIL", "test@gitproc.invalid")
            .env("GIT_COMMITTER_NAME", "gitproc test")
            .env("GIT_COMMITTER_EMAIL", "test@gitproc.invalid")
            .output()
            .expect("run git");
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn write(&self, rel: &str, content: &str) {
        let path = self.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(path, content).expect("write file");
    }

    pub fn remove(&self, rel: &str) {
        std::fs::remove_file(self.path().join(rel)).expect("remove file");
    }

    pub fn symlink(&self, rel: &str, target: &str) {
        std::os::unix::fs::symlink(target, self.path().join(rel)).expect("symlink");
    }

    /// Commits everything; returns the new commit id.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }
}

/// A running `gitproc daemon` with its own state directory. Dropping it stops it with
/// SIGTERM (which stops its services) and kills whatever is left.
pub struct Daemon {
    pub child: Option<Child>,
    pub state: tempfile::TempDir,
    pub log: PathBuf,
    args: Vec<String>,
    /// A command the daemon runs under (e.g. `unshare -m sh -c ...`); it must exec the
    /// daemon so that the child's pid is the daemon's. Empty: run the binary directly.
    wrapper: Vec<String>,
    /// `RUST_LOG` for the daemon.
    log_level: &'static str,
    /// Main pids seen through status: killed on drop if still alive.
    seen: std::cell::RefCell<Vec<i32>>,
}

impl Daemon {
    /// Starts a daemon following `repo` (extra daemon flags in `args`) and waits until it has
    /// applied its first unit set.
    pub fn start(repo: &Path, args: &[&str]) -> Daemon {
        let mut full = vec!["--repo".to_string(), repo.display().to_string()];
        full.extend(args.iter().map(|s| s.to_string()));
        Daemon::start_args(full, tempfile::tempdir().expect("state dir"))
    }

    /// Starts with exactly these daemon arguments and state directory.
    pub fn start_args(args: Vec<String>, state: tempfile::TempDir) -> Daemon {
        Daemon::start_wrapped(args, state, Vec::new(), "info")
    }

    /// Starts the daemon under `wrapper` (which must exec it) with `RUST_LOG=log_level`.
    pub fn start_wrapped(
        args: Vec<String>,
        state: tempfile::TempDir,
        wrapper: Vec<String>,
        log_level: &'static str,
    ) -> Daemon {
        let log = state.path().join("daemon.log");
        Daemon::start_full(args, state, wrapper, log_level, log)
    }

    /// Starts with the daemon's stdout/stderr going to `log` instead of
    /// `<state>/daemon.log`: for tests that fill or freeze the state directory, where the
    /// log must stay writable and readable.
    pub fn start_logged(args: Vec<String>, state: tempfile::TempDir, log: PathBuf) -> Daemon {
        Daemon::start_full(args, state, Vec::new(), "info", log)
    }

    fn start_full(
        args: Vec<String>,
        state: tempfile::TempDir,
        wrapper: Vec<String>,
        log_level: &'static str,
        log: PathBuf,
    ) -> Daemon {
        let mut daemon = Daemon {
            child: None,
            state,
            log,
            args,
            wrapper,
            log_level,
            seen: Default::default(),
        };
        daemon.spawn();
        daemon
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("daemon log");
        let mut command = match self.wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(bin());
                c
            }
            None => Command::new(bin()),
        };
        let child = command
            .arg("daemon")
            .args(&self.args)
            .arg("--state-dir")
            .arg(self.state.path())
            .env("RUST_LOG", self.log_level)
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn gitproc daemon");
        self.child = Some(child);
        wait_for("the daemon to apply its first unit set", WAIT, || {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "daemon exited early with {status}; log:\n{}",
                    self.log_text()
                );
            }
            let status = self.try_status()?;
            (status["daemon"]["last_check"].is_u64()).then_some(())
        });
    }

    /// Kills the daemon with SIGKILL (its services survive, in their own sessions).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the daemon again on the same state directory (after [`Daemon::kill9`]).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(-1)
    }

    pub fn socket(&self) -> PathBuf {
        self.state.path().join("gitproc.sock")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs the CLI against this daemon.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(bin())
            .args(args)
            .arg("--state-dir")
            .arg(self.state.path())
            .env_remove("GITPROC_CONFIG")
            .output()
            .expect("run gitproc")
    }

    pub fn try_status(&self) -> Option<Value> {
        let reply = client::call(&self.socket(), Verb::Status { units: vec![] }).ok()?;
        let data = reply.data;
        for u in data["units"].as_array().into_iter().flatten() {
            if let Some(pid) = u["main_pid"].as_i64() {
                let mut seen = self.seen.borrow_mut();
                if !seen.contains(&(pid as i32)) {
                    seen.push(pid as i32);
                }
            }
        }
        Some(data)
    }

    pub fn status(&self) -> Value {
        self.try_status()
            .unwrap_or_else(|| panic!("daemon does not answer; log:\n{}", self.log_text()))
    }

    /// The status object of one unit (`Value::Null` when unknown).
    pub fn unit(&self, name: &str) -> Value {
        self.status()["units"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|u| u["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// Waits until `pred` holds for unit `name`; panics with the unit's last status and the
    /// daemon log otherwise.
    pub fn wait_unit(&self, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_unit_for(name, what, WAIT, pred)
    }

    pub fn wait_unit_for(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let unit = self.unit(name);
            if pred(&unit) {
                return unit;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {name} to be {what}; last status: {unit:#}\ndaemon log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for `name` to be active/running and returns its main pid.
    pub fn wait_running(&self, name: &str) -> i32 {
        let unit = self.wait_unit(name, "running", |u| {
            u["sub_state"] == "running" && u["main_pid"].is_i64()
        });
        unit["main_pid"].as_i64().unwrap_or_default() as i32
    }

    /// Waits until the daemon's mirror (`repo.git` in its state directory) holds `commit`.
    /// A local repository's units run before the mirror fetches them, so a test that
    /// breaks the state directory, or asserts on the mirror, waits for this first.
    pub fn wait_mirror_holds(&self, commit: &str) {
        let mirror = self.state.path().join("repo.git");
        self.wait("the mirror to hold the applied commit", || {
            let out = Command::new("git")
                .arg("--git-dir")
                .arg(&mirror)
                .args(["cat-file", "-e", &format!("{commit}^{{commit}}")])
                .output()
                .ok()?;
            out.status.success().then_some(())
        });
    }

    pub fn main_pid(&self, name: &str) -> Option<i32> {
        self.unit(name)["main_pid"].as_i64().map(|p| p as i32)
    }

    /// Asks the daemon to check git now and waits for the answer.
    pub fn sync(&self) -> Value {
        let reply = client::call(&self.socket(), Verb::Sync).expect("sync");
        reply.data
    }

    /// Polls `f` until it returns `Some`; on timeout panics with what was awaited, the
    /// daemon's status and its log.
    pub fn wait<T>(&self, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(v) = f() {
                return v;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {WAIT:?} waiting for {what}; status: {:#}\nlog:\n{}",
                    self.try_status().unwrap_or(Value::Null),
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Asks the daemon to check git (again, until it has) and waits until it reports
    /// `commit` as applied. Covers both paths: a remote, where the sync is what applies it,
    /// and a local repository, where inotify may have applied it already.
    pub fn sync_to(&self, commit: &str) {
        self.wait(&format!("the daemon to apply commit {commit}"), || {
            self.sync();
            (self.status()["daemon"]["commit"] == commit).then_some(())
        });
    }

    /// Runs a CLI verb against this daemon and asserts that it succeeded.
    pub fn cli_ok(&self, args: &[&str]) -> Output {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "gitproc {args:?} failed: {}\nlog:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
        out
    }

    /// SIGTERM and wait for a clean exit; returns its exit code.
    pub fn shutdown(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.shutdown();
        for &pid in self.seen.borrow().iter() {
            kill_session_of(pid);
        }
    }
}

/// True while `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// The command line of a process, arguments joined by spaces ("" when it is gone).
pub fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// Waits (up to [`WAIT`]) for `pid` to run `expected` and returns its command line, which
/// differs from `expected` only on timeout. A `Type=simple` service counts as running once
/// forked, so right after a (re)start its exec may not have happened yet.
pub fn cmdline_once_exec(pid: i32, expected: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let seen = cmdline(pid);
        if seen == expected || Instant::now() >= deadline {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// SIGKILLs every process in the session `pid` belongs to (services run in their own
/// session), and `pid` itself.
pub fn kill_session_of(pid: i32) {
    let sid = session_of(pid);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    let Some(sid) = sid else { return };
    if sid <= 1 {
        return;
    }
    for p in pids_in_session(sid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

pub fn session_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

pub fn pids_in_session(sid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
            && session_of(pid) == Some(sid)
            && alive(pid)
        {
            out.push(pid);
        }
    }
    out
}

/// A minimal service unit running `exec_start`, plus extra `[Service]` lines.
pub fn service(exec_start: &str, extra: &str) -> String {
    format!("[Unit]\nDescription=test unit\n\n[Service]\nExecStart={exec_start}\n{extra}\n")
}

// ----- added for the recovery tests (tests/daemon_recovery.rs) -----

/// Every pid in `/proc` right now.
pub fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .collect()
}

/// Live (non-zombie) processes whose command line is exactly `argv`. Services in these
/// tests get a command line unique to the test process, so this counts copies of a service.
pub fn pids_with_cmdline(argv: &[&str]) -> Vec<i32> {
    let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    let mut out = Vec::new();
    for pid in all_pids() {
        if std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want) && alive(pid) {
            out.push(pid);
        }
    }
    out
}

/// A name unique to this test process and call: `<prefix><pid>x<n>`. Unit names must not
/// collide with other tests running at the same time on the machine (cgroups are named
/// after units).
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id())
}

/// A `sleep` argument (seconds) unique to this test process and call, so that
/// `/bin/sleep <it>` identifies exactly one service's processes in `/proc`.
pub fn unique_sleep_secs() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("9{:07}{n:04}", std::process::id())
}

/// A process started by a test that is killed (and reaped) when dropped.
pub struct KillOnDrop(pub Child);

impl KillOnDrop {
    pub fn spawn(cmd: &mut Command) -> KillOnDrop {
        KillOnDrop(cmd.spawn().expect("spawn helper process"))
    }

    pub fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Daemon {
    /// `<state-dir>/state.json` parsed (`None` while missing or unparsable).
    pub fn try_state_file(&self) -> Option<Value> {
        let bytes = std::fs::read(self.state.path().join("state.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Whether the daemon process started by the harness has not exited yet.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

/// SIGKILLs the given pids when dropped (processes a test deliberately leaves running).
pub struct KillPids(pub Vec<i32>);

impl Drop for KillPids {
    fn drop(&mut self) {
        for &pid in &self.0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Writes an executable shell script into the repository's directory (a `#!/bin/sh` line is
/// added unless `body` has its own) and returns its path.
pub fn script(repo: &Repo, name: &str, body: &str) -> String {
    let path = repo.path().join(name);
    let text = if body.starts_with("#!") {
        body.to_string()
    } else {
        format!("#!/bin/sh\n{body}\n")
    };
    std::fs::write(&path, text).expect("write script");
    let mut perms = std::fs::metadata(&path).expect("stat").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&path, perms).expect("chmod");
    path.display().to_string()
}

/// The pids listed one per line in `file`, once it has at least `n`.
pub fn pids_in(file: &Path, n: usize) -> Vec<i32> {
    wait_for(&format!("{n} pids in {}", file.display()), WAIT, || {
        let pids: Vec<i32> = std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        (pids.len() >= n).then_some(pids)
    })
}

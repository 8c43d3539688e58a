//! `KillMode=` where no writable cgroup2 hierarchy exists (many containers): the daemon
//! then tracks a service's processes by session only. The daemon runs in a mount namespace
//! where every cgroup2 mount is read-only, so its cgroup probe fails as it would there.
//!
//! Known limit (documented in `runtime::cgroup`): without cgroups, a process that leaves the
//! service's session with setsid() and whose parent exits cannot be attributed to it.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gitproc::control::client;
use gitproc::control::protocol::Verb;
use serde_json::Value;
use support::{KillPids, Repo, WAIT, alive, kill_session_of, pids_in, script, service, wait_for};

/// Mount points of cgroup2 filesystems.
fn cgroup2_mounts() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            (post.split_whitespace().next()? == "cgroup2")
                .then(|| pre.split_whitespace().nth(4).map(str::to_string))?
        })
        .collect()
}

/// Whether this machine can run a daemon without cgroups (root, unshare, remount).
fn can_hide_cgroups() -> bool {
    Command::new("unshare")
        .args(["-m", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A `gitproc daemon` whose cgroup2 mounts are read-only; stopped and cleaned up on drop.
struct PlainDaemon {
    child: Option<Child>,
    repo: PathBuf,
    state: tempfile::TempDir,
    seen: Vec<i32>,
}

impl PlainDaemon {
    fn start(repo: &Path) -> PlainDaemon {
        let mut d = PlainDaemon {
            child: None,
            repo: repo.to_path_buf(),
            state: tempfile::tempdir().expect("state dir"),
            seen: Vec::new(),
        };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        let remounts: String = cgroup2_mounts()
            .iter()
            .map(|m| format!("mount -o remount,bind,ro '{m}' && "))
            .collect();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.state.path().join("daemon.log"))
            .expect("daemon log");
        let child = Command::new("unshare")
            .args(["-m", "sh", "-c"])
            .arg(format!("{remounts}exec \"$0\" \"$@\""))
            .arg(support::bin())
            .arg("daemon")
            .arg("--repo")
            .arg(&self.repo)
            .arg("--state-dir")
            .arg(self.state.path())
            .env("RUST_LOG", "debug")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn the daemon in a mount namespace");
        self.child = Some(child);
        wait_for("the daemon to apply its first unit set", WAIT, || {
            let s = self.try_status()?;
            s["daemon"]["last_check"].is_u64().then_some(())
        });
        assert!(
            self.log().contains("tracking by session only"),
            "the daemon should run without cgroups:\n{}",
            self.log()
        );
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.state.path().join("daemon.log")).unwrap_or_default()
    }

    fn try_status(&self) -> Option<Value> {
        let socket = self.state.path().join("gitproc.sock");
        client::call(&socket, Verb::Status { units: vec![] })
            .ok()
            .map(|r| r.data)
    }

    fn wait_unit(&mut self, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let unit = self
                .try_status()
                .and_then(|s| {
                    s["units"]
                        .as_array()?
                        .iter()
                        .find(|u| u["name"] == name)
                        .cloned()
                })
                .unwrap_or(Value::Null);
            if let Some(pid) = unit["main_pid"].as_i64() {
                self.seen.push(pid as i32);
            }
            if pred(&unit) {
                return unit;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {name} to be {what}: {unit:#}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn wait_running(&mut self, name: &str) -> i32 {
        let unit = self.wait_unit(name, "running", |u| {
            u["sub_state"] == "running" && u["main_pid"].is_i64()
        });
        unit["main_pid"].as_i64().unwrap_or_default() as i32
    }

    fn stop(&self, name: &str) {
        let out = Command::new(support::bin())
            .args(["stop", name, "--state-dir"])
            .arg(self.state.path())
            .output()
            .expect("run gitproc stop");
        assert!(out.status.success(), "{out:?}");
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PlainDaemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(30);
            while !matches!(child.try_wait(), Ok(Some(_))) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        for &pid in &self.seen {
            kill_session_of(pid);
        }
    }
}

fn all_gone(all: &[i32]) {
    wait_for(
        &format!("every process of the service ({all:?}) to be gone"),
        WAIT,
        || all.iter().all(|&p| !alive(p)).then_some(()),
    );
}

macro_rules! require_unshare {
    () => {
        if !can_hide_cgroups() {
            eprintln!("cannot create a mount namespace here; skipped");
            return;
        }
    };
}

#[test]
fn control_group_stop_kills_children_and_a_sigterm_ignoring_one() {
    require_unshare!();
    let repo = Repo::new();
    let pids = repo.path().join("pids");
    let body = format!(
        "sleep 1000 &\necho $! >> {p}\n\
         (trap '' TERM; echo $(exec sh -c 'echo $PPID') >> {p}; exec sleep 1000) &\n\
         echo $$ >> {p}\nexec sleep 1000",
        p = pids.display()
    );
    let exec = script(&repo, "tree.sh", &body);
    repo.write(
        "tree.service",
        &service(&exec, "KillMode=control-group\nTimeoutStopSec=1"),
    );
    repo.commit("a process tree");
    let mut daemon = PlainDaemon::start(repo.path());
    daemon.wait_running("tree.service");
    let all = pids_in(&pids, 3);
    let _guard = KillPids(all.clone());
    daemon.stop("tree.service");
    all_gone(&all);
}

#[test]
fn a_forking_daemon_in_its_own_session_is_stopped() {
    require_unshare!();
    let repo = Repo::new();
    let pid_file = repo.path().join("daemon.pid");
    let exec = script(
        &repo,
        "forker.sh",
        &format!(
            "( setsid sh -c 'echo $$ > \"$0.tmp\" && mv \"$0.tmp\" \"$0\"; exec sleep 1000' {p} & )\nexit 0",
            p = pid_file.display()
        ),
    );
    repo.write(
        "forker.service",
        &service(
            &exec,
            &format!(
                "Type=forking\nPIDFile={}\nTimeoutStopSec=2",
                pid_file.display()
            ),
        ),
    );
    repo.commit("Type=forking");
    let mut daemon = PlainDaemon::start(repo.path());
    let main = daemon.wait_running("forker.service");
    let _guard = KillPids(vec![main]);
    daemon.stop("forker.service");
    let unit = daemon.wait_unit("forker.service", "stopped", |u| {
        u["active_state"] == "inactive" || u["active_state"] == "failed"
    });
    assert_eq!(unit["result"], "success", "{unit:#}");
    all_gone(&[main]);
}

#[test]
fn an_adopted_service_is_stopped_with_its_children() {
    require_unshare!();
    let repo = Repo::new();
    let pids = repo.path().join("pids");
    let body = format!(
        "sleep 1000 &\necho $! >> {p}\necho $$ >> {p}\nexec sleep 1000",
        p = pids.display()
    );
    let exec = script(&repo, "adoptee.sh", &body);
    repo.write(
        "adoptee.service",
        &service(&exec, "KillMode=control-group\nTimeoutStopSec=2"),
    );
    repo.commit("a service to adopt");
    let mut daemon = PlainDaemon::start(repo.path());
    let main = daemon.wait_running("adoptee.service");
    let all = pids_in(&pids, 2);
    let _guard = KillPids(all.clone());
    let state = daemon.state.path().join("state.json");
    wait_for("state.json to record the main pid", WAIT, || {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&state).ok()?).ok()?;
        (v["units"]["adoptee.service"]["main_pid"] == main).then_some(())
    });
    daemon.kill9();
    daemon.spawn();
    assert_eq!(daemon.wait_running("adoptee.service"), main, "not adopted");
    daemon.stop("adoptee.service");
    let unit = daemon.wait_unit("adoptee.service", "stopped", |u| {
        u["active_state"] == "inactive" || u["active_state"] == "failed"
    });
    assert_eq!(unit["result"], "success", "{unit:#}");
    all_gone(&all);
}

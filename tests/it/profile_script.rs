//! `profile/profile_daemon.py`: the operator's tool to check what the daemon costs.
//! Run against stand-in processes (a `sleep`), and, once the daemon exists, a live daemon.

use std::os::unix::process::CommandExt;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("profile/profile_daemon.py")
}

/// Kills the child's whole process group (it leads one) and reaps the child on drop, so a
/// failing assertion leaves no process behind, grandchildren included.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(cmd: &mut Command) -> Guard {
    Guard(
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn stand-in process"),
    )
}

fn run_script(args: &[&str]) -> Output {
    Command::new("python3")
        .arg(script())
        .args(args)
        .output()
        .expect("run python3 profile/profile_daemon.py")
}

fn json_of(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

const METRICS: [&str; 14] = [
    "cpu_user_pct",
    "cpu_sys_pct",
    "cpu_total_pct",
    "rss_kib",
    "pss_kib",
    "threads",
    "fds",
    "vol_ctxt_per_s",
    "invol_ctxt_per_s",
    "read_bytes_per_s",
    "write_bytes_per_s",
    "rchar_per_s",
    "wchar_per_s",
    "processes",
];

#[test]
fn json_summary_has_every_metric_for_a_sleeping_process() {
    let child = spawn(Command::new("sleep").arg("30"));
    let pid = child.0.id().to_string();
    let out = run_script(&[
        "--pid",
        &pid,
        "--duration",
        "2",
        "--interval",
        "0.2",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "exit {}; stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json_of(&out);
    assert_eq!(v["pid"].as_u64(), Some(u64::from(child.0.id())));
    assert_eq!(v["complete"], true);
    let n = v["n_samples"].as_u64().expect("n_samples");
    assert!(
        (8..=11).contains(&n),
        "2 s at 0.2 s should give ~10 samples, got {n}"
    );
    for m in METRICS {
        let s = &v["metrics"][m];
        for k in ["min", "avg", "p95", "max"] {
            assert!(s[k].is_number(), "metrics.{m}.{k} missing: {s}");
        }
        let series = v["series"][m].as_array().expect("series");
        assert_eq!(series.len() as u64, n, "series.{m} length");
    }
    // A sleeping `sleep` is one single-threaded process that uses (almost) no CPU.
    assert_eq!(v["metrics"]["threads"]["max"].as_f64(), Some(1.0));
    assert_eq!(v["metrics"]["processes"]["max"].as_f64(), Some(1.0));
    assert!(v["metrics"]["rss_kib"]["min"].as_f64().expect("rss") > 0.0);
    assert!(v["metrics"]["cpu_total_pct"]["avg"].as_f64().expect("cpu") < 5.0);
}

#[test]
fn children_are_summed_over_the_process_tree() {
    // sh with two sleeping children: three processes.
    let child = spawn(Command::new("sh").args(["-c", "sleep 30 & sleep 30 & wait"]));
    let pid = child.0.id();
    // Wait until both children exist (they are forked asynchronously).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let kids =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        if kids.split_whitespace().count() == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sh {pid} did not fork its 2 sleeps in 5 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = run_script(&[
        "--pid",
        &pid.to_string(),
        "--children",
        "--duration",
        "0.6",
        "--interval",
        "0.2",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json_of(&out);
    assert_eq!(
        v["metrics"]["processes"]["min"].as_f64(),
        Some(3.0),
        "{}",
        v["metrics"]
    );
    assert_eq!(v["metrics"]["threads"]["min"].as_f64(), Some(3.0));
}

#[test]
fn a_process_exiting_mid_run_gives_the_partial_summary_and_exit_1() {
    // Long enough that the script (a Python start-up on a loaded machine) samples it at
    // least once, short enough to end well inside --duration.
    let child = spawn(Command::new("sleep").arg("3"));
    let pid = child.0.id().to_string();
    let started = Instant::now();
    let out = run_script(&[
        "--pid",
        &pid,
        "--duration",
        "20",
        "--interval",
        "0.1",
        "--json",
    ]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the script did not stop early"
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json_of(&out);
    assert_eq!(v["complete"], false);
    assert!(
        v["error"].as_str().expect("error").contains("exited"),
        "{}",
        v["error"]
    );
    assert!(v["n_samples"].as_u64().expect("n_samples") >= 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("gone"),
        "stderr should say the process is gone: {err}"
    );
}

#[test]
fn auto_detection_finds_a_gitproc_daemon_process() {
    // A stand-in whose argv is `gitproc daemon`: `cat` blocked opening a FIFO named daemon.
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("daemon");
    let st = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(st.success(), "mkfifo {fifo:?}");
    let child = spawn(
        Command::new("cat")
            .arg0("gitproc")
            .arg("daemon")
            .current_dir(dir.path()),
    );
    let pid = child.0.id();
    let out = run_script(&["--duration", "0.3", "--interval", "0.1", "--json"]);
    if out.status.success() {
        assert_eq!(json_of(&out)["pid"].as_u64(), Some(u64::from(pid)));
    } else {
        // Another gitproc daemon runs on this machine (e.g. a concurrent test): then the
        // script must refuse to guess and list both.
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "stderr:\n{err}");
        assert!(
            err.contains("--pid") && err.contains(&pid.to_string()),
            "{err}"
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    let out = run_script(&["--pid", "1", "--interval", "0"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run_script(&["--help"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--children"));
}

/// A live daemon supervising a unit: the script finds it and samples it with its children.
#[test]
fn profiles_a_live_daemon_with_its_services() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let state = tempfile::tempdir().expect("tempdir");
    let repo = tempfile::tempdir().expect("tempdir");
    // A repository with one sleep unit.
    let git = |args: &[&str]| {
        let st = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t.invalid"])
            .args(args)
            .current_dir(repo.path())
            .stdout(Stdio::null())
            .status()
            .expect("git");
        assert!(st.success(), "git {args:?}");
    };
    git(&["init", "-q", "-b", "main"]);
    // A sleep length no other process on the machine uses, to find leftovers by cmdline.
    let sleep_cmd = format!("/bin/sleep {}", 500_000 + std::process::id());
    std::fs::write(
        repo.path().join("sleeper.service"),
        format!("[Service]\nExecStart={sleep_cmd}\nRestart=always\n"),
    )
    .expect("write unit");
    git(&["add", "."]);
    git(&["commit", "-qm", "one sleeper"]);

    let bin = PathBuf::from(env!("CARGO_BIN_EXE_gitproc"));
    let daemon = spawn(
        Command::new(&bin)
            .arg("daemon")
            .arg("--repo")
            .arg(repo.path())
            .arg("--state-dir")
            .arg(state.path())
            .current_dir(&root),
    );
    let pid = daemon.0.id();
    // Wait until the daemon has started the unit (status --json shows a main pid).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = Command::new(&bin)
            .args(["status", "--json", "--state-dir"])
            .arg(state.path())
            .output()
            .expect("gitproc status");
        let up = serde_json::from_slice::<serde_json::Value>(&st.stdout)
            .ok()
            .and_then(|v| v["units"].as_array().cloned())
            .is_some_and(|u| u.iter().any(|x| x["main_pid"].is_number()));
        if up {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sleeper.service not running within 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = run_script(&[
        "--pid",
        &pid.to_string(),
        "--children",
        "--duration",
        "3",
        "--interval",
        "0.5",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json_of(&out);
    assert!(
        v["metrics"]["processes"]["min"]
            .as_f64()
            .expect("processes")
            >= 2.0
    );
    assert!(v["metrics"]["pss_kib"]["max"].is_number());
    // Stop the daemon with SIGTERM (it stops its services), then the guard reaps it.
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut daemon = daemon;
    while daemon.0.try_wait().ok().flatten().is_none() {
        assert!(
            Instant::now() < deadline,
            "daemon did not exit on SIGTERM within 15 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let leftover = Command::new("pgrep")
        .args(["-f", &format!("^{sleep_cmd}$")])
        .output()
        .expect("pgrep");
    assert!(
        leftover.stdout.is_empty(),
        "sleeper left running after the daemon stopped"
    );
}

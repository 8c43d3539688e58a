//! The state directory fails under a running daemon: full (ENOSPC: the state directory on a
//! small tmpfs that a test fills) or frozen (`chattr +i`, or a read-only bind mount where the
//! file system has no immutable flag). Either way the daemon keeps supervising (a killed
//! service is restarted, twice), the previous `state.json` stays byte for byte intact, the
//! failure is visible (the writer's counters in `gitproc perf`, the daemon log, and
//! `status`'s `daemon.save_error` once the daemon has it), and once the directory is writable
//! again the next save succeeds and records the current pid.
//!
//! Under `CI=true` a machine that cannot mount or freeze fails these tests
//! (`support::require`). The long version is `bench/torture_state.py`.

use gitproc::control::client;
use gitproc::control::protocol::Verb;
use serde_json::Value;
use std::path::Path;

use crate::support::fault::{Filler, Frozen, Tmpfs};
use crate::support::{Daemon, Repo, WAIT, alive, service, unique, unique_sleep_secs, wait_for};

/// Saves retried every 200 ms instead of 5 s, so recovery shows within the test's deadline.
const FAST_SAVES: &str = "[state]\nsave_interval_s = 0.2\nsave_min_gap_s = 0.1\n";

struct Setup {
    repo: Repo,
    unit: String,
    /// The one commit, which the daemon applies from the repository before its mirror has it.
    commit: String,
    /// Holds the daemon log and the config, outside the state directory under test.
    aside: tempfile::TempDir,
}

fn setup() -> Setup {
    let repo = Repo::new();
    let unit = format!("{}.service", unique("sf"));
    repo.write(
        &unit,
        &service(
            &format!("/bin/sleep {}", unique_sleep_secs()),
            "Restart=always\nRestartSec=0",
        ),
    );
    let commit = repo.commit("one restarting service");
    let aside = tempfile::tempdir().expect("temp dir");
    std::fs::write(aside.path().join("gitproc.toml"), FAST_SAVES).expect("write config");
    Setup {
        repo,
        unit,
        commit,
        aside,
    }
}

fn start(s: &Setup, state: tempfile::TempDir) -> Daemon {
    let config = s.aside.path().join("gitproc.toml");
    let args = vec![
        "--repo".to_string(),
        s.repo.path().display().to_string(),
        "--config".to_string(),
        config.display().to_string(),
    ];
    Daemon::start_logged(args, state, s.aside.path().join("daemon.log"))
}

fn state_file(d: &Daemon) -> Vec<u8> {
    std::fs::read(d.state.path().join("state.json")).unwrap_or_default()
}

fn saved_pid(bytes: &[u8], unit: &str) -> Option<i64> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    v["units"][unit]["main_pid"].as_i64()
}

/// The state writer's counters (`gitproc perf`).
fn writer(d: &Daemon) -> Value {
    let reply = client::call(&d.socket(), Verb::Perf)
        .unwrap_or_else(|e| panic!("perf: {e}; log:\n{}", d.log_text()));
    reply.data["state_writer"].clone()
}

/// Kills the unit's main process and waits for the daemon to run a new one.
fn kill_and_see_restart(d: &Daemon, unit: &str, pid: i32) -> i32 {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the service");
    let u = d.wait_unit(unit, "restarted with a new pid", |u| {
        u["sub_state"] == "running" && u["main_pid"].is_i64() && u["main_pid"] != pid
    });
    let new = u["main_pid"].as_i64().unwrap_or_default() as i32;
    assert!(alive(new), "the restarted pid {new} is not alive");
    new
}

/// The whole scenario; `fault` breaks the state directory (false: it cannot here, SKIP),
/// `repair` fixes it, and `error_says` is what the failed save's error must mention.
fn keeps_supervising_and_recovers(
    s: &Setup,
    daemon: &Daemon,
    fault: &mut dyn FnMut(&Path) -> bool,
    repair: &mut dyn FnMut(),
    error_says: &[&str],
) {
    let first = daemon.wait_running(&s.unit);
    let before = wait_for("state.json to record the first pid", WAIT, || {
        let bytes = state_file(daemon);
        (saved_pid(&bytes, &s.unit) == Some(first as i64)).then_some(bytes)
    });
    // The mirror fetch runs after the first apply; a fault during it would fail the fetch
    // instead (and a full disk would get the failed fetch's space back).
    daemon.wait_mirror_holds(&s.commit);
    let failures_before = writer(daemon)["failures"].as_u64().unwrap_or(0);

    if !fault(daemon.state.path()) {
        return;
    }
    let second = kill_and_see_restart(daemon, &s.unit, first);
    let w = daemon.wait("a failed save after the fault", || {
        let w = writer(daemon);
        (w["failures"].as_u64().unwrap_or(0) > failures_before && w["last_error"].is_string())
            .then_some(w)
    });
    let error = w["last_error"].as_str().unwrap_or_default().to_string();
    assert!(
        error_says.iter().any(|e| error.contains(e)),
        "the save error {error:?} should say one of {error_says:?}"
    );
    assert!(
        daemon.log_text().contains("Saving state failed"),
        "the daemon log does not report the failed save:\n{}",
        daemon.log_text()
    );
    // `daemon.save_error` in status (issue 10 item 6) where this daemon already has it.
    let status = daemon.status();
    if let Some(shown) = status["daemon"].get("save_error") {
        assert!(
            !shown.is_null(),
            "status hides the failing save: {status:#}"
        );
    }
    // Still supervising after failed saves: a second crash is restarted too.
    let third = kill_and_see_restart(daemon, &s.unit, second);
    assert_eq!(
        state_file(daemon),
        before,
        "state.json changed while the directory was broken"
    );

    repair();
    let saves = w["saves"].as_u64().unwrap_or(0);
    daemon.wait("a successful save once the directory is writable", || {
        let w = writer(daemon);
        (w["saves"].as_u64().unwrap_or(0) > saves
            && w["last_error"].is_null()
            && saved_pid(&state_file(daemon), &s.unit) == Some(third as i64))
        .then_some(())
    });
    if let Some(shown) = daemon.status()["daemon"].get("save_error") {
        assert!(shown.is_null(), "status still shows a save error: {shown}");
    }
}

#[test]
fn a_full_state_dir_keeps_supervising_keeps_the_old_state_and_recovers() {
    let Some(tmpfs) = Tmpfs::mount("2m") else {
        return;
    };
    let s = setup();
    let daemon = start(&s, tmpfs.subdir());
    let filler = std::cell::RefCell::new(None::<Filler>);
    keeps_supervising_and_recovers(
        &s,
        &daemon,
        &mut |dir| {
            *filler.borrow_mut() = Some(Filler::fill(dir));
            true
        },
        &mut || {
            if let Some(f) = filler.borrow_mut().as_mut() {
                f.release();
            }
        },
        &["No space left", "os error 28"],
    );
    drop(daemon);
    drop(tmpfs);
}

#[test]
fn a_frozen_state_dir_keeps_supervising_keeps_the_old_state_and_recovers() {
    let s = setup();
    let daemon = start(&s, tempfile::tempdir().expect("state dir"));
    let frozen = std::cell::RefCell::new(None::<Frozen>);
    keeps_supervising_and_recovers(
        &s,
        &daemon,
        &mut |dir| {
            *frozen.borrow_mut() = Frozen::freeze(dir);
            frozen.borrow().is_some()
        },
        &mut || {
            if let Some(f) = frozen.borrow_mut().as_mut() {
                eprintln!("state dir was frozen by {:?}", f.kind());
                f.thaw();
            }
        },
        &[
            "Operation not permitted",
            "Read-only file system",
            "os error 1",
            "os error 30",
        ],
    );
    // Thawed before the daemon (and its state dir) is dropped.
    drop(frozen);
    drop(daemon);
}

/// The filler really fills: a write into the full tmpfs fails with ENOSPC, and works again
/// after release (so the test above exercises ENOSPC, not something else).
#[test]
fn the_filler_makes_writes_fail_with_enospc_until_released() {
    let Some(tmpfs) = Tmpfs::mount("256k") else {
        return;
    };
    let mut filler = Filler::fill(tmpfs.path());
    let err = std::fs::write(tmpfs.path().join("x"), vec![1u8; 8192]).expect_err("write when full");
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    filler.release();
    std::fs::write(tmpfs.path().join("x"), vec![1u8; 8192]).expect("write after release");
}

//! The daemon surviving its own death (issue 5): `kill -9` and re-adoption of running services,
//! operator overrides and git changes across a restart, `--keep-services`, recorded pids that
//! now belong to someone else, corrupt and too-new state files, batched saves, and the ordered
//! shutdown with its final save.
//!
//! Every unit name and service command line is unique to the test process (see
//! `support::unique`), so `/proc` can be searched for copies of a service and tests running at
//! the same time never share a unit's cgroup.

use crate::support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::support::{
    Daemon, KillOnDrop, Repo, WAIT, alive, kill_session_of, pids_with_cmdline, service, unique,
    unique_sleep_secs, wait_for,
};
use serde_json::Value;

/// A unit running `/bin/sleep <secs>`: its command line identifies its processes.
struct Svc {
    name: String,
    secs: String,
}

impl Svc {
    fn new(prefix: &str) -> Svc {
        Svc {
            name: format!("{}.service", unique(prefix)),
            secs: unique_sleep_secs(),
        }
    }

    fn unit(&self, extra: &str) -> String {
        service(&format!("/bin/sleep {}", self.secs), extra)
    }

    /// Live processes running this service's command.
    fn copies(&self) -> Vec<i32> {
        pids_with_cmdline(&["/bin/sleep", &self.secs])
    }

    /// Waits until `pid` is the one process running this service's command. (A process
    /// just spawned shows an empty command line until its execve has set up the new
    /// stack, a moment after the spawn returned; a second copy never goes away.)
    fn assert_only_copy(&self, pid: i32) {
        let deadline = Instant::now() + WAIT;
        loop {
            let copies = self.copies();
            if copies == [pid] {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: expected exactly pid {pid} to run `/bin/sleep {}`, found {copies:?}",
                self.name,
                self.secs
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Kills every process still running one of `svcs`' commands when dropped (services the
/// harness never saw in a status reply, e.g. started by a daemon that should have refused).
struct Reaper(Vec<String>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for secs in &self.0 {
            for pid in pids_with_cmdline(&["/bin/sleep", secs]) {
                kill_session_of(pid);
            }
        }
    }
}

fn sigkill(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// The daemon log written after byte `offset` (a restart appends to the same file).
fn log_after(daemon: &Daemon, offset: usize) -> String {
    daemon
        .log_text()
        .get(offset..)
        .unwrap_or_default()
        .to_string()
}

/// Waits until state.json records `pid` (with a start time) as the main pid of every unit.
fn wait_recorded(daemon: &Daemon, pids: &[(&str, i32)]) {
    wait_for("state.json to record the running main pids", WAIT, || {
        let state = daemon.try_state_file()?;
        pids.iter()
            .all(|(name, pid)| {
                let u = &state["units"][*name];
                u["main_pid"].as_i64() == Some(i64::from(*pid)) && u["main_pid_start_time"].is_u64()
            })
            .then_some(())
    });
}

#[test]
fn kill9_with_20_running_services_adopts_the_same_pids_and_runs_no_second_copy() {
    let repo = Repo::new();
    // Even: Restart=always (2: on-failure); odd: Restart=no.
    let svcs: Vec<Svc> = (0..20).map(|_| Svc::new("adopt")).collect();
    for (i, s) in svcs.iter().enumerate() {
        let extra = match i {
            2 => "Restart=on-failure\nRestartSec=0",
            _ if i.is_multiple_of(2) => "Restart=always\nRestartSec=0",
            _ => "Restart=no",
        };
        repo.write(&s.name, &s.unit(extra));
    }
    repo.commit("twenty services");
    let _reaper = Reaper(svcs.iter().map(|s| s.secs.clone()).collect());
    let mut daemon = Daemon::start(repo.path(), &[]);
    let before: Vec<i32> = svcs.iter().map(|s| daemon.wait_running(&s.name)).collect();
    let recorded: Vec<(&str, i32)> = svcs
        .iter()
        .map(|s| s.name.as_str())
        .zip(before.iter().copied())
        .collect();
    wait_recorded(&daemon, &recorded);

    let offset = daemon.log_text().len();
    daemon.restart();
    for (s, &pid) in svcs.iter().zip(&before) {
        let unit = daemon.wait_unit(&s.name, "adopted", |u| u["sub_state"] == "running");
        assert_eq!(
            unit["main_pid"].as_i64(),
            Some(i64::from(pid)),
            "{} was not adopted: {unit:#}\nlog:\n{}",
            s.name,
            daemon.log_text()
        );
        s.assert_only_copy(pid);
    }
    let log = log_after(&daemon, offset);
    assert_eq!(log.matches("Adopted ").count(), 20, "log:\n{log}");
    assert!(
        !log.contains("Starting "),
        "nothing may be started after re-adoption; log:\n{log}"
    );

    // An adopted process is not our child: its exit comes through its pidfd and Restart=
    // applies as for an exit of unknown status, which counts as a failure.
    for i in [0, 2] {
        let (restarting, old_pid) = (&svcs[i], before[i]);
        sigkill(old_pid);
        let unit = daemon.wait_unit(&restarting.name, "restarted with a new pid", |u| {
            u["sub_state"] == "running" && u["main_pid"].is_i64() && u["main_pid"] != old_pid
        });
        let new_pid = unit["main_pid"].as_i64().unwrap_or_default() as i32;
        restarting.assert_only_copy(new_pid);
        assert_eq!(unit["n_restarts"], 1, "{unit:#}");
    }

    let (no, no_pid) = (&svcs[1], before[1]);
    sigkill(no_pid);
    let unit = daemon.wait_unit(&no.name, "failed (Restart=no)", |u| {
        u["active_state"] == "failed" && u["main_pid"].is_null()
    });
    assert_eq!(unit["n_restarts"], 0, "{unit:#}");
    assert!(no.copies().is_empty(), "Restart=no must not start it again");

    // Everyone else is untouched.
    for (s, &pid) in svcs.iter().zip(&before).skip(3) {
        assert_eq!(daemon.main_pid(&s.name), Some(pid), "{}", s.name);
    }
}

#[test]
fn an_operator_stop_survives_kill9_and_restart() {
    let repo = Repo::new();
    let (stopped, other) = (Svc::new("opstop"), Svc::new("opother"));
    repo.write(&stopped.name, &stopped.unit(""));
    repo.write(&other.name, &other.unit(""));
    repo.commit("two services");
    let _reaper = Reaper(vec![stopped.secs.clone(), other.secs.clone()]);
    let mut daemon = Daemon::start(repo.path(), &[]);
    daemon.wait_running(&stopped.name);
    let other_pid = daemon.wait_running(&other.name);
    let out = daemon.cli(&["stop", &stopped.name]);
    assert!(out.status.success(), "{out:?}");
    assert!(stopped.copies().is_empty());

    daemon.restart();
    let unit = daemon.unit(&stopped.name);
    assert_eq!(unit["active_state"], "inactive", "{unit:#}");
    assert_eq!(unit["override"], "stopped", "{unit:#}");
    assert!(
        stopped.copies().is_empty(),
        "a stopped unit was started again"
    );
    assert_eq!(daemon.wait_running(&other.name), other_pid);

    // And a second restart, after the new daemon saved its own state.
    daemon.restart();
    assert_eq!(daemon.unit(&stopped.name)["override"], "stopped");
    assert!(stopped.copies().is_empty());
}

#[test]
fn a_service_still_stopping_when_the_daemon_died_is_stopped_after_adoption() {
    let repo = Repo::new();
    let svc = Svc::new("stopping");
    // Ignores SIGTERM (inherited by sleep): only the SIGKILL after TimeoutStopSec ends it,
    // which gives the test seconds to kill the daemon in the middle of the stop.
    let cmd = format!("/bin/sh -c 'trap \"\" TERM; exec /bin/sleep {}'", svc.secs);
    repo.write(&svc.name, &service(&cmd, "TimeoutStopSec=4"));
    repo.commit("slow to stop");
    let _reaper = Reaper(vec![svc.secs.clone()]);
    let mut daemon = Daemon::start(repo.path(), &[]);
    let pid = daemon.wait_running(&svc.name);
    let out = daemon.cli(&["stop", "--no-block", &svc.name]);
    assert!(out.status.success(), "{out:?}");
    // The stop's forced save happened before the answer: the file says "stopped" while the
    // process is still alive.
    let state = daemon
        .try_state_file()
        .expect("state.json after an operator stop");
    assert_eq!(state["units"][&svc.name]["override"]["kind"], "stopped");
    assert_eq!(state["units"][&svc.name]["main_pid"], pid);
    daemon.kill9();
    assert!(alive(pid), "the service must outlive the daemon");

    daemon.restart();
    wait_for(
        "the adopted, operator-stopped service to be stopped",
        WAIT,
        || (!alive(pid)).then_some(()),
    );
    daemon.wait_unit(&svc.name, "inactive and held stopped", |u| {
        matches!(u["active_state"].as_str(), Some("inactive" | "failed"))
            && u["override"] == "stopped"
    });
    assert!(svc.copies().is_empty());
}

#[test]
fn a_unit_changed_in_git_while_the_daemon_was_down_is_restarted_after_adoption() {
    let repo = Repo::new();
    let (changed, same) = (Svc::new("changed"), Svc::new("same"));
    repo.write(&changed.name, &changed.unit(""));
    repo.write(&same.name, &same.unit(""));
    repo.commit("v1");
    let new_version = Svc {
        name: changed.name.clone(),
        secs: unique_sleep_secs(),
    };
    let _reaper = Reaper(vec![
        changed.secs.clone(),
        same.secs.clone(),
        new_version.secs.clone(),
    ]);
    let mut daemon = Daemon::start(repo.path(), &[]);
    let old_pid = daemon.wait_running(&changed.name);
    let same_pid = daemon.wait_running(&same.name);
    wait_recorded(&daemon, &[(&changed.name, old_pid), (&same.name, same_pid)]);

    daemon.kill9();
    repo.write(&changed.name, &new_version.unit(""));
    let v2 = repo.commit("v2 while the daemon is down");
    daemon.restart();

    let unit = daemon.wait_unit(&changed.name, "running its new version", |u| {
        u["sub_state"] == "running" && u["main_pid"].is_i64() && u["main_pid"] != old_pid
    });
    assert_eq!(unit["commit"], v2.as_str());
    let new_pid = unit["main_pid"].as_i64().unwrap_or_default() as i32;
    wait_for("the old version's process to be stopped", WAIT, || {
        (!alive(old_pid)).then_some(())
    });
    new_version.assert_only_copy(new_pid);
    assert!(changed.copies().is_empty(), "the old version still runs");
    assert_eq!(daemon.main_pid(&same.name), Some(same_pid));
    same.assert_only_copy(same_pid);
}

#[test]
fn a_unit_removed_from_git_while_the_daemon_was_down_has_its_process_stopped() {
    let repo = Repo::new();
    let (gone, kept) = (Svc::new("gone"), Svc::new("kept"));
    repo.write(&gone.name, &gone.unit(""));
    repo.write(&kept.name, &kept.unit(""));
    repo.commit("two services");
    let _reaper = Reaper(vec![gone.secs.clone(), kept.secs.clone()]);
    let mut daemon = Daemon::start(repo.path(), &[]);
    let gone_pid = daemon.wait_running(&gone.name);
    let kept_pid = daemon.wait_running(&kept.name);
    wait_recorded(&daemon, &[(&gone.name, gone_pid), (&kept.name, kept_pid)]);

    daemon.kill9();
    repo.remove(&gone.name);
    repo.commit("remove one while the daemon is down");
    daemon.restart();
    wait_for(
        "the removed unit's leftover process to be stopped",
        WAIT,
        || (!alive(gone_pid)).then_some(()),
    );
    daemon.wait_unit(&gone.name, "forgotten", Value::is_null);
    assert!(gone.copies().is_empty());
    assert_eq!(daemon.wait_running(&kept.name), kept_pid);
}

#[test]
fn keep_services_on_sigterm_leaves_them_running_for_the_next_daemon_to_adopt() {
    let repo = Repo::new();
    let svcs = [Svc::new("keep"), Svc::new("keep")];
    for s in &svcs {
        repo.write(&s.name, &s.unit("Restart=always"));
    }
    repo.commit("two services");
    let _reaper = Reaper(svcs.iter().map(|s| s.secs.clone()).collect());
    let mut daemon = Daemon::start(repo.path(), &["--keep-services"]);
    let pids: Vec<i32> = svcs.iter().map(|s| daemon.wait_running(&s.name)).collect();
    assert_eq!(daemon.shutdown(), Some(0), "log:\n{}", daemon.log_text());
    for (s, &pid) in svcs.iter().zip(&pids) {
        s.assert_only_copy(pid);
    }
    // The final save recorded them for the next daemon.
    let state = daemon.try_state_file().expect("state.json after shutdown");
    for (s, &pid) in svcs.iter().zip(&pids) {
        assert_eq!(state["units"][&s.name]["main_pid"], pid, "{state:#}");
    }

    let offset = daemon.log_text().len();
    daemon.restart();
    for (s, &pid) in svcs.iter().zip(&pids) {
        assert_eq!(daemon.wait_running(&s.name), pid);
        s.assert_only_copy(pid);
    }
    assert_eq!(log_after(&daemon, offset).matches("Adopted ").count(), 2);
}

#[test]
fn a_recorded_pid_now_used_by_an_unrelated_process_is_never_signalled() {
    let repo = Repo::new();
    let svc = Svc::new("reused");
    repo.write(&svc.name, &svc.unit(""));
    repo.commit("one service");
    let _reaper = Reaper(vec![svc.secs.clone()]);
    let mut daemon = Daemon::start(repo.path(), &[]);
    let pid = daemon.wait_running(&svc.name);
    wait_recorded(&daemon, &[(&svc.name, pid)]);
    daemon.kill9();
    sigkill(pid);
    wait_for("the service to die", WAIT, || (!alive(pid)).then_some(()));

    // Simulate pid reuse: the state file now names an unrelated process's pid with the start
    // time recorded for the service (which cannot be the unrelated process's).
    let intruder = KillOnDrop::spawn(
        Command::new("/bin/sleep")
            .arg(unique_sleep_secs())
            .stdin(Stdio::null()),
    );
    let path = daemon.state.path().join("state.json");
    let mut state: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read state")).expect("parse state");
    state["units"][&svc.name]["main_pid"] = intruder.pid().into();
    std::fs::write(&path, serde_json::to_vec(&state).expect("encode")).expect("write state");

    let offset = daemon.log_text().len();
    daemon.restart();
    let fresh = daemon.wait_running(&svc.name);
    assert_ne!(fresh, intruder.pid());
    assert_ne!(fresh, pid);
    svc.assert_only_copy(fresh);
    let log = log_after(&daemon, offset);
    assert!(
        log.contains(&format!(
            "recorded pid {} now belongs to another process",
            intruder.pid()
        )),
        "log:\n{log}"
    );
    assert!(!log.contains("Adopted "), "log:\n{log}");
    // Not signalled on the way up, nor by the shutdown that stops every service.
    assert_eq!(daemon.shutdown(), Some(0), "log:\n{}", daemon.log_text());
    assert!(alive(intruder.pid()), "the unrelated process was signalled");
    assert!(svc.copies().is_empty());
}

/// Names of `state.json.corrupt-*` files in `dir`.
fn corrupt_copies(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("state.json.corrupt-"))
        .collect();
    names.sort();
    names
}

#[test]
fn a_corrupt_state_file_is_moved_aside_with_one_error_and_the_daemon_starts_from_git() {
    let repo = Repo::new();
    let svc = Svc::new("corrupt");
    repo.write(&svc.name, &svc.unit(""));
    repo.commit("one service");
    let _reaper = Reaper(vec![svc.secs.clone()]);
    let valid = format!(
        r#"{{"format_version":1,"units":{{"{}":{{"active_state":"active","sub_state":"running","main_pid":1,"main_pid_start_time":1}}}}}}"#,
        svc.name
    );
    let cases: [(&str, Vec<u8>); 3] = [
        ("empty", Vec::new()),
        ("truncated", valid.as_bytes()[..valid.len() / 2].to_vec()),
        ("garbage", vec![0xff, 0x00, b'{', 0x9c, b'\n']),
    ];
    for (what, bytes) in cases {
        let state = tempfile::tempdir().expect("state dir");
        std::fs::write(state.path().join("state.json"), &bytes).expect("write state");
        let args = vec!["--repo".to_string(), repo.path().display().to_string()];
        let mut daemon = Daemon::start_args(args, state);
        let pid = daemon.wait_running(&svc.name);
        assert_ne!(pid, 1);
        let dir = daemon.state.path().to_owned();
        let copies = corrupt_copies(&dir);
        assert_eq!(copies.len(), 1, "{what}: {copies:?}");
        assert_eq!(
            std::fs::read(dir.join(&copies[0])).expect("read corrupt copy"),
            bytes,
            "{what}: the corrupt file must be kept as it was"
        );
        let log = daemon.log_text();
        let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
        assert_eq!(errors.len(), 1, "{what}: exactly one error; log:\n{log}");
        assert!(
            errors[0].contains(&copies[0]) && errors[0].contains("starting from git"),
            "{what}: {}",
            errors[0]
        );
        assert_eq!(daemon.shutdown(), Some(0), "{what}: log:\n{log}");
        // The next save replaced it with a good file.
        let state = daemon.try_state_file().expect("a valid state.json");
        assert_eq!(state["format_version"], 1);
    }
}

#[test]
fn a_state_file_from_a_newer_gitproc_is_refused_and_left_untouched() {
    let repo = Repo::new();
    let svc = Svc::new("toonew");
    repo.write(&svc.name, &svc.unit(""));
    repo.commit("one service");
    let _reaper = Reaper(vec![svc.secs.clone()]);
    let state = tempfile::tempdir().expect("state dir");
    let path = state.path().join("state.json");
    let content = br#"{"format_version":999,"units":{"x.service":{"shape":"unknown"}}}"#;
    std::fs::write(&path, content).expect("write state");

    let mut child = KillOnDrop::spawn(
        Command::new(support::bin())
            .arg("daemon")
            .arg("--repo")
            .arg(repo.path())
            .arg("--state-dir")
            .arg(state.path())
            .env_remove("GITPROC_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let status = wait_for("the daemon to refuse the state file and exit", WAIT, || {
        child.0.try_wait().ok().flatten()
    });
    let mut stderr = String::new();
    if let Some(mut err) = child.0.stderr.take() {
        use std::io::Read;
        let _ = err.read_to_string(&mut stderr);
    }
    assert_eq!(status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("format version 999") && stderr.contains(&path.display().to_string()),
        "stderr: {stderr}"
    );
    assert_eq!(std::fs::read(&path).expect("read state"), content);
    assert!(corrupt_copies(state.path()).is_empty());
    assert!(svc.copies().is_empty(), "nothing may start");
}

/// One `Saving state` line of the daemon log: when the save began and whether it came after
/// the shutdown began (the forced final save).
struct SaveLine {
    began: SystemTime,
    after_shutdown: bool,
}

fn save_lines(log: &str) -> Vec<SaveLine> {
    let mut out = Vec::new();
    let mut shutting_down = false;
    for line in log.lines() {
        if line.contains("shutting down") {
            shutting_down = true;
        }
        if !line.contains("Saving state") {
            continue;
        }
        let stamp = line.split_whitespace().next().unwrap_or_default();
        let logged = humantime::parse_rfc3339(stamp)
            .unwrap_or_else(|e| panic!("timestamp of {line:?}: {e}"));
        let duration_us: u64 = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("duration_us="))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no duration_us in {line:?}"));
        out.push(SaveLine {
            began: logged - Duration::from_micros(duration_us),
            after_shutdown: shutting_down,
        });
    }
    out
}

#[test]
fn a_crash_looping_service_is_saved_at_most_once_per_min_gap_and_the_final_state_is_on_disk() {
    let repo = Repo::new();
    let loopers: Vec<String> = (0..2)
        .map(|_| format!("{}.service", unique("crashloop")))
        .collect();
    for name in &loopers {
        repo.write(
            name,
            &service(
                "/bin/false",
                "Restart=always\nRestartSec=0\nStartLimitIntervalSec=0",
            ),
        );
    }
    let steady = Svc::new("steady");
    repo.write(&steady.name, &steady.unit(""));
    let commit = repo.commit("crash loops");
    let _reaper = Reaper(vec![steady.secs.clone()]);
    // A save interval below the minimum gap: the gap (2 s) must still hold.
    let cfg = tempfile::tempdir().expect("config dir");
    let cfg_path = cfg.path().join("gitproc.toml");
    std::fs::write(
        &cfg_path,
        "[state]\nsave_interval_s = 0.5\nsave_min_gap_s = 2.0\n",
    )
    .expect("write config");
    let mut daemon = Daemon::start(
        repo.path(),
        &["--config", cfg_path.to_str().expect("utf-8 path")],
    );
    daemon.wait_running(&steady.name);

    // Many changes (each restart is several state changes) while the writer saves a few
    // times: both are awaited, so a slow machine only makes the test longer.
    let restarts = |d: &Daemon| -> u64 {
        loopers
            .iter()
            .map(|n| d.unit(n)["n_restarts"].as_u64().unwrap_or(0))
            .sum()
    };
    wait_for(
        "200 restarts of the crash loops and 3 saves",
        Duration::from_secs(60),
        || (restarts(&daemon) >= 200 && save_lines(&daemon.log_text()).len() >= 3).then_some(()),
    );
    let seen_restarts: Vec<u64> = loopers
        .iter()
        .map(|n| daemon.unit(n)["n_restarts"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(daemon.shutdown(), Some(0), "log:\n{}", daemon.log_text());

    let log = daemon.log_text();
    let saves = save_lines(&log);
    let unforced: Vec<&SaveLine> = saves.iter().filter(|s| !s.after_shutdown).collect();
    assert!(unforced.len() >= 3, "log:\n{log}");
    // Wall-clock stamps vs the writer's monotonic clock: allow a little slack.
    let min_gap = Duration::from_millis(1980);
    for pair in unforced.windows(2) {
        let gap = pair[1]
            .began
            .duration_since(pair[0].began)
            .unwrap_or_default();
        assert!(
            gap >= min_gap,
            "two unforced saves {gap:?} apart (minimum 2 s); log:\n{log}"
        );
    }
    assert!(
        saves.iter().any(|s| s.after_shutdown),
        "no final save at shutdown; log:\n{log}"
    );

    // The final save has what only the shutdown produced.
    let state = daemon.try_state_file().expect("state.json after shutdown");
    assert_eq!(state["daemon"]["applied_commit"], commit.as_str());
    let u = &state["units"][&steady.name];
    assert_eq!(u["active_state"], "inactive", "{state:#}");
    assert!(u["main_pid"].is_null(), "{state:#}");
    for (name, seen) in loopers.iter().zip(seen_restarts) {
        let u = &state["units"][name];
        assert!(
            matches!(u["active_state"].as_str(), Some("inactive" | "failed")),
            "{name}: {u:#}"
        );
        assert!(
            u["n_restarts"].as_u64().unwrap_or(0) >= seen,
            "{name}: {u:#}"
        );
    }
}

#[test]
fn operator_start_and_stop_are_saved_before_the_command_answers() {
    let repo = Repo::new();
    let svc = Svc::new("opsave");
    repo.write(&svc.name, &svc.unit(""));
    repo.commit("one service");
    let _reaper = Reaper(vec![svc.secs.clone()]);
    let daemon = Daemon::start(repo.path(), &[]);
    daemon.wait_running(&svc.name);
    let saves_before = save_lines(&daemon.log_text()).len();
    for round in 0..5 {
        let out = daemon.cli(&["stop", &svc.name]);
        assert!(out.status.success(), "round {round}: {out:?}");
        let state = daemon.try_state_file().expect("state.json");
        let u = &state["units"][&svc.name];
        assert_eq!(u["override"]["kind"], "stopped", "round {round}: {u:#}");

        let out = daemon.cli(&["start", &svc.name]);
        assert!(out.status.success(), "round {round}: {out:?}");
        let state = daemon.try_state_file().expect("state.json");
        let u = &state["units"][&svc.name];
        assert!(u["override"].is_null(), "round {round}: {u:#}");
        assert_eq!(u["active_state"], "active", "round {round}: {u:#}");
    }
    let forced = save_lines(&daemon.log_text()).len() - saves_before;
    assert!(forced >= 10, "each start/stop forces a save: {forced}");
}

#[test]
fn sigterm_stops_services_in_reverse_dependency_order_within_their_timeouts() {
    let repo = Repo::new();
    let (first, middle, last, stubborn) = (
        Svc::new("first"),
        Svc::new("middle"),
        Svc::new("last"),
        Svc::new("stubborn"),
    );
    // Start order first -> middle -> last, so the stop order is last -> middle -> first.
    // `middle` takes a while to stop, so stopping in parallel would show in the log.
    repo.write(&first.name, &first.unit(""));
    let slow = format!(
        "/bin/sh -c 'trap \"sleep 0.5; exit 0\" TERM; /bin/sleep {} & wait'",
        middle.secs
    );
    repo.write(
        &middle.name,
        &format!(
            "[Unit]\nAfter={}\n\n[Service]\nExecStart={slow}\n",
            first.name
        ),
    );
    repo.write(
        &last.name,
        &format!(
            "[Unit]\nAfter={}\n\n[Service]\nExecStart=/bin/sleep {}\n",
            middle.name, last.secs
        ),
    );
    // Ignores SIGTERM: killed after its TimeoutStopSec.
    let stubborn_cmd = format!(
        "/bin/sh -c 'trap \"\" TERM; exec /bin/sleep {}'",
        stubborn.secs
    );
    repo.write(&stubborn.name, &service(&stubborn_cmd, "TimeoutStopSec=1"));
    repo.commit("a chain and a stubborn one");
    let all = [&first, &middle, &last, &stubborn];
    let _reaper = Reaper(all.iter().map(|s| s.secs.clone()).collect());
    let mut daemon = Daemon::start(repo.path(), &[]);
    for s in all {
        daemon.wait_running(&s.name);
    }
    let offset = daemon.log_text().len();
    let began = Instant::now();
    assert_eq!(daemon.shutdown(), Some(0), "log:\n{}", daemon.log_text());
    let took = began.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "shutdown took {took:?}; TimeoutStopSec=1 bounds it"
    );

    let log = log_after(&daemon, offset);
    let at = |kind: &str, s: &Svc| -> usize {
        log.find(&format!("{kind} {} ", s.name))
            .unwrap_or_else(|| panic!("no `{kind} {}` line in log:\n{log}", s.name))
    };
    assert!(
        at("Stopped", &last) < at("Stopping", &middle),
        "log:\n{log}"
    );
    assert!(
        at("Stopped", &middle) < at("Stopping", &first),
        "log:\n{log}"
    );
    // Killed at its TimeoutStopSec: a failure (result timeout), but a bounded one.
    let stubborn_end = at("Failed", &stubborn);
    assert!(stubborn_end > at("Stopping", &stubborn), "log:\n{log}");
    assert!(log.contains("SIGKILL (result timeout)"), "log:\n{log}");
    for s in all {
        assert!(s.copies().is_empty(), "{} still runs", s.name);
    }
    // The final save comes after every stop.
    let last_save = log.rfind("Saving state").expect("a final save");
    for end in [
        at("Stopped", &first),
        at("Stopped", &middle),
        at("Stopped", &last),
        stubborn_end,
    ] {
        assert!(end < last_save, "log:\n{log}");
    }
    let state = daemon.try_state_file().expect("state.json after shutdown");
    for s in all {
        let u = &state["units"][&s.name];
        assert!(
            matches!(u["active_state"].as_str(), Some("inactive" | "failed"))
                && u["main_pid"].is_null(),
            "{}: {u:#}",
            s.name
        );
    }
}

/// Bytes `pid` has written so far (`wchar` of /proc/PID/io).
fn written_bytes(pid: i32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("wchar:"))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn a_service_writing_to_its_log_survives_kill9_and_its_log_continues_after_adoption() {
    let repo = Repo::new();
    let svc = Svc::new("chatty");
    let cmd = format!(
        "/bin/sh -c 'i=0; while :; do i=$((i+1)); echo tick $i; /bin/sleep 0.0{}; done'",
        "2"
    );
    repo.write(&svc.name, &service(&cmd, ""));
    repo.commit("a service that logs all the time");
    let mut daemon = Daemon::start(repo.path(), &[]);
    let pid = daemon.wait_running(&svc.name);
    wait_recorded(&daemon, &[(&svc.name, pid)]);
    daemon.kill9();
    // It keeps writing with no daemon reading (a pipe without readers would have killed it
    // with SIGPIPE at the first write).
    let before = written_bytes(pid).expect("/proc/PID/io of the service");
    wait_for(
        "the service to write while the daemon is down",
        WAIT,
        || {
            assert!(alive(pid), "the service died when the daemon did");
            (written_bytes(pid)? >= before + 100).then_some(())
        },
    );

    daemon.restart();
    assert_eq!(daemon.wait_running(&svc.name), pid, "not adopted");
    let log_file = daemon
        .state
        .path()
        .join("logs")
        .join(format!("{}.log", svc.name));
    let ticks = || -> Vec<u64> {
        std::fs::read_to_string(&log_file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.rsplit_once("tick ")?.1.trim().parse().ok())
            .collect()
    };
    let last_before = ticks().last().copied().unwrap_or(0);
    wait_for("the adopted service's lines in its log", WAIT, || {
        (ticks().last().copied().unwrap_or(0) > last_before + 5).then_some(())
    });
    kill_session_of(pid);
}

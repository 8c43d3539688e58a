//! `OnFailure=` and `OnSuccess=` (systemd.unit(5)) with the real daemon: a unit whose run
//! ends starts its hooks, which see systemd's `MONITOR_*` variables; templates are
//! instantiated with the monitored unit's name; hooks are not started by a commit; a hook
//! chain does not loop; a missing hook is a warning in `check`.

use std::collections::BTreeMap;
use std::path::Path;

use crate::support::{Daemon, Repo, WAIT, bin, script, unique, unique_sleep_secs, wait_for};

/// The script every hook runs: `$1` gets the `MONITOR_*` and `INVOCATION_ID` variables
/// (written to a temp file, then renamed, so a reader never sees half of it), and `$1.runs`
/// one line per run.
const DUMP: &str = r#"env | grep -E '^(MONITOR_|INVOCATION_ID=)' | sort > "$1.tmp" && mv "$1.tmp" "$1"
echo run >> "$1.runs""#;

/// A oneshot hook unit running the dump script into `out`, with extra `[Unit]` lines.
fn hook(dump: &str, out: &Path, unit_lines: &str) -> String {
    format!(
        "[Unit]\n{unit_lines}\n\n[Service]\nType=oneshot\nExecStart={dump} {}\n",
        out.display()
    )
}

/// Waits for the dump at `file` and parses it into variable -> value.
fn read_env(file: &Path) -> BTreeMap<String, String> {
    let text = wait_for(
        &format!("the hook's dump at {}", file.display()),
        WAIT,
        || std::fs::read_to_string(file).ok(),
    );
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// How many times the hook dumping to `file` ran.
fn runs(file: &Path) -> usize {
    std::fs::read_to_string(format!("{}.runs", file.display()))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

#[test]
fn a_failing_unit_starts_its_on_failure_hook_with_monitor_variables() {
    let repo = Repo::new();
    let out = tempfile::tempdir().expect("temp dir");
    let dump = script(&repo, "dump.sh", DUMP);
    let fail = script(&repo, "fail.sh", r#"echo "$INVOCATION_ID" > "$1"; exit 3"#);
    let web = format!("{}.service", unique("web"));
    let alert = format!("{}.service", unique("alert"));
    let hook_out = out.path().join("alert");
    let web_id = out.path().join("web-id");
    repo.write(
        &web,
        &format!(
            "[Unit]\nOnFailure={alert}\n\n[Service]\nExecStart={fail} {}\n",
            web_id.display()
        ),
    );
    repo.write(&alert, &hook(&dump, &hook_out, ""));
    repo.commit("a unit that fails, and its hook");
    let daemon = Daemon::start(repo.path(), &[]);

    let env = read_env(&hook_out);
    assert_eq!(env["MONITOR_SERVICE_RESULT"], "exit-code", "{env:?}");
    assert_eq!(env["MONITOR_EXIT_CODE"], "exited", "{env:?}");
    assert_eq!(env["MONITOR_EXIT_STATUS"], "3", "{env:?}");
    assert_eq!(env["MONITOR_UNIT"], web, "{env:?}");
    let failing_id = std::fs::read_to_string(&web_id).expect("the failing unit's id");
    assert_eq!(
        env["MONITOR_INVOCATION_ID"],
        failing_id.trim(),
        "MONITOR_INVOCATION_ID is the failing run's INVOCATION_ID: {env:?}"
    );
    let own = &env["INVOCATION_ID"];
    assert_eq!(own.len(), 32, "{env:?}");
    assert_ne!(own, &env["MONITOR_INVOCATION_ID"], "{env:?}");

    let unit = daemon.wait_unit(&web, "failed", |u| u["active_state"] == "failed");
    assert_eq!(unit["result"], "exit-code", "{unit:#}");
    daemon.wait_unit(&alert, "done", |u| {
        u["active_state"] == "inactive" && u["exec_main_status"] == 0
    });
    assert_eq!(runs(&hook_out), 1, "the hook ran once");
}

#[test]
fn a_unit_killed_before_its_automatic_restart_triggers_on_failure() {
    let repo = Repo::new();
    let out = tempfile::tempdir().expect("temp dir");
    let dump = script(&repo, "dump.sh", DUMP);
    let web = format!("{}.service", unique("killed"));
    let alert = format!("{}.service", unique("alert"));
    let hook_out = out.path().join("alert");
    let secs = unique_sleep_secs();
    repo.write(
        &web,
        &format!(
            "[Unit]\nOnFailure={alert}\n\n[Service]\nExecStart=/bin/sleep {secs}\nRestart=on-failure\nRestartSec=50ms\n"
        ),
    );
    repo.write(&alert, &hook(&dump, &hook_out, ""));
    repo.commit("a unit that restarts on failure, and its hook");
    let daemon = Daemon::start(repo.path(), &[]);
    let pid = daemon.wait_running(&web);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the service");

    let env = read_env(&hook_out);
    assert_eq!(env["MONITOR_SERVICE_RESULT"], "signal", "{env:?}");
    assert_eq!(env["MONITOR_EXIT_CODE"], "killed", "{env:?}");
    assert_eq!(env["MONITOR_EXIT_STATUS"], "KILL", "{env:?}");
    assert_eq!(env["MONITOR_UNIT"], web, "{env:?}");
    // It was restarted (systemd's RestartMode=normal: the failure is reported first).
    daemon.wait(&format!("{web} to run again"), || {
        daemon.main_pid(&web).filter(|p| *p != pid)
    });
}

#[test]
fn a_oneshot_that_succeeds_starts_on_success_and_not_on_failure() {
    let repo = Repo::new();
    let out = tempfile::tempdir().expect("temp dir");
    let dump = script(&repo, "dump.sh", DUMP);
    let job = format!("{}.service", unique("job"));
    let good = format!("{}.service", unique("good"));
    let bad = format!("{}.service", unique("bad"));
    let good_out = out.path().join("good");
    let bad_out = out.path().join("bad");
    repo.write(
        &job,
        &format!(
            "[Unit]\nOnSuccess={good}\nOnFailure={bad}\n\n[Service]\nType=oneshot\nExecStart=/bin/true\n"
        ),
    );
    repo.write(&good, &hook(&dump, &good_out, ""));
    repo.write(&bad, &hook(&dump, &bad_out, ""));
    repo.commit("a oneshot and its two hooks");
    let daemon = Daemon::start(repo.path(), &[]);

    let env = read_env(&good_out);
    assert_eq!(env["MONITOR_SERVICE_RESULT"], "success", "{env:?}");
    assert_eq!(env["MONITOR_EXIT_CODE"], "exited", "{env:?}");
    assert_eq!(env["MONITOR_EXIT_STATUS"], "0", "{env:?}");
    assert_eq!(env["MONITOR_UNIT"], job, "{env:?}");
    daemon.wait_unit(&good, "done", |u| {
        u["active_state"] == "inactive" && u["exec_main_status"] == 0
    });
    // OnSuccess= was queued in the same loop turn an OnFailure= would have been: the
    // failure hook never ran, and the commit itself started neither hook.
    let never = daemon.unit(&bad);
    assert_eq!(never["active_state"], "inactive", "{never:#}");
    assert!(never["exec_main_code"].is_null(), "{never:#}");
    assert!(!bad_out.exists(), "OnFailure= ran for a success");
    assert_eq!(runs(&good_out), 1, "the commit did not start the hook too");
}

#[test]
fn a_template_hook_is_instantiated_with_the_failing_units_name() {
    let repo = Repo::new();
    let out = tempfile::tempdir().expect("temp dir");
    let dump = script(&repo, "dump.sh", DUMP);
    let web = format!("{}.service", unique("web"));
    let notify = unique("notify");
    repo.write(
        &web,
        &format!(
            "[Unit]\nOnFailure={notify}@%n.service\n\n[Service]\nExecStart=/bin/sh -c 'exit 7'\n"
        ),
    );
    // The template writes to a file named after its instance (%i).
    repo.write(
        &format!("{notify}@.service"),
        &format!(
            "[Service]\nType=oneshot\nExecStart={dump} {}/%i\n",
            out.path().display()
        ),
    );
    repo.commit("a unit whose failures a template reports");
    let daemon = Daemon::start(repo.path(), &[]);

    let env = read_env(&out.path().join(&web));
    assert_eq!(env["MONITOR_UNIT"], web, "{env:?}");
    assert_eq!(env["MONITOR_EXIT_STATUS"], "7", "{env:?}");
    let instance = format!("{notify}@{web}.service");
    let unit = daemon.wait_unit(&instance, "done", |u| {
        u["active_state"] == "inactive" && u["exec_main_status"] == 0
    });
    assert!(unit["error"].is_null(), "{unit:#}");
}

#[test]
fn a_hook_that_fails_does_not_start_itself_again() {
    let repo = Repo::new();
    let out = tempfile::tempdir().expect("temp dir");
    let dump_fail = script(&repo, "dump-fail.sh", &format!("{DUMP}\nexit 1"));
    let web = format!("{}.service", unique("web"));
    let selfish = format!("{}.service", unique("selfish"));
    let hook_out = out.path().join("selfish");
    repo.write(
        &web,
        &format!("[Unit]\nOnFailure={selfish}\n\n[Service]\nExecStart=/bin/false\n"),
    );
    repo.write(
        &selfish,
        &hook(&dump_fail, &hook_out, &format!("OnFailure={selfish}")),
    );
    repo.commit("a hook that fails and names itself");
    let daemon = Daemon::start(repo.path(), &[]);

    daemon.wait_unit(&selfish, "failed", |u| u["active_state"] == "failed");
    daemon.wait("the loop to be refused in the log", || {
        daemon
            .log_text()
            .contains(&format!(
                "OnFailure={selfish} not started: it is in the chain"
            ))
            .then_some(())
    });
    assert_eq!(runs(&hook_out), 1, "the failing hook ran once");
}

#[test]
fn check_warns_about_a_missing_hook_and_passes() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("web.service"),
        "[Unit]\nOnFailure=gone.service\n\n[Service]\nExecStart=/bin/true\n",
    )
    .expect("write unit");
    let out = std::process::Command::new(bin())
        .arg("check")
        .arg(dir.path())
        .output()
        .expect("run gitproc check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("web.service:2:1: warning: OnFailure=gone.service: no such unit"),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
}

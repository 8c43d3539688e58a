//! `gitproc status [--json] [UNIT...]`: the daemon summary table, one unit in detail, the
//! JSON shape DESIGN.md promises, and systemctl's exit codes (3 not active, 4 unknown).

use crate::support;

use std::process::Output;

use crate::support::{Daemon, Repo, WAIT, service, wait_for};
use serde_json::Value;

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A repository with a long-running unit that logs, one that exits cleanly and one that fails.
fn three_units() -> (Repo, String) {
    let repo = Repo::new();
    repo.write(
        "units/web.service",
        "[Unit]\nDescription=the web thing\n\n[Service]\nExecStart=/bin/sh -c 'echo web says hello; exec sleep 1000'\n",
    );
    repo.write("units/done.service", &service("/bin/true", ""));
    repo.write("units/broken.service", &service("/bin/sh -c 'exit 7'", ""));
    let commit = repo.commit("three units");
    (repo, commit)
}

fn settled(daemon: &Daemon) -> i32 {
    let pid = daemon.wait_running("web.service");
    daemon.wait_unit("done.service", "finished", |u| {
        u["active_state"] == "inactive" && u["result"] == "success"
    });
    daemon.wait_unit("broken.service", "failed", |u| {
        u["active_state"] == "failed"
    });
    pid
}

#[test]
fn status_without_units_prints_the_daemon_summary_and_a_table() {
    let (repo, commit) = three_units();
    let daemon = Daemon::start(repo.path(), &["--units-dir", "units"]);
    let web = settled(&daemon);
    let out = daemon.cli(&["status"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(
        text.contains(&format!("gitproc daemon (pid {})", daemon.pid())),
        "{text}"
    );
    assert!(
        text.contains(&commit[..10]),
        "applied commit missing:\n{text}"
    );
    assert!(
        text.contains("Last check:") && text.contains("Next check:"),
        "{text}"
    );
    let row = |name: &str| {
        text.lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{text}"))
            .to_string()
    };
    let web_row = row("web.service");
    assert!(
        web_row.contains("active") && web_row.contains("running"),
        "{web_row}"
    );
    assert!(web_row.contains(&web.to_string()), "{web_row}");
    assert!(row("done.service").contains("inactive"), "{text}");
    assert!(row("broken.service").contains("failed"), "{text}");
    // Not a terminal: no escape codes.
    assert!(!text.contains('\x1b'), "colors on a pipe:\n{text:?}");
}

/// A name longer than the default column (hook instances are) widens the UNIT column for
/// every row, so the ACTIVE column stays aligned.
#[test]
fn the_unit_column_fits_the_longest_name() {
    let repo = Repo::new();
    let long = "a-rather-long-name-for-a-service-unit@instance.service";
    repo.write(&format!("units/{long}"), &service("/bin/sleep 1000", ""));
    repo.write("units/web.service", &service("/bin/sleep 1000", ""));
    repo.commit("a long name");
    let daemon = Daemon::start(repo.path(), &["--units-dir", "units"]);
    daemon.wait_running("web.service");
    daemon.wait_running(long);
    let text = stdout(&daemon.cli(&["status"]));
    let column = |name: &str| {
        let line = text
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{text}"));
        line.find(" active")
            .unwrap_or_else(|| panic!("no ACTIVE in {line:?}"))
    };
    assert_eq!(column(long), column("web.service"), "{text}");
}

#[test]
fn status_unit_shows_loaded_active_main_pid_and_recent_log_lines() {
    let (repo, commit) = three_units();
    let daemon = Daemon::start(repo.path(), &["--units-dir", "units"]);
    let web = settled(&daemon);
    // The log line reaches the file through the collector thread: wait for it.
    let text = wait_for("web's log line in `status web`", WAIT, || {
        let out = daemon.cli(&["status", "web"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let text = stdout(&out);
        text.contains("web says hello").then_some(text)
    });
    assert!(text.starts_with("● web.service - the web thing"), "{text}");
    // The path is relative to --units-dir, as the unit's name is.
    assert!(
        text.contains(&format!(
            "Loaded: loaded (web.service; commit {})",
            &commit[..10]
        )),
        "{text}"
    );
    assert!(text.contains("Active: active (running) since "), "{text}");
    assert!(text.contains(&format!("Main PID: {web} (sleep)")), "{text}");
    assert!(text.contains("Restarts: 0"), "{text}");
    // `-n 0` leaves the log out.
    let out = daemon.cli(&["status", "web.service", "-n", "0"]);
    assert!(!stdout(&out).contains("web says hello"), "{}", stdout(&out));
}

#[test]
fn status_json_has_the_documented_shape() {
    let (repo, commit) = three_units();
    let daemon = Daemon::start(repo.path(), &["--units-dir", "units"]);
    let web = settled(&daemon);
    let out = daemon.cli(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("status --json is JSON");
    // Into a pipe a bare --json is one line: the daemon's own bytes, passed through.
    assert_eq!(
        stdout(&out),
        format!("{}\n", serde_json::to_string(&v).expect("print")),
        "status --json into a pipe is not the one-line form of its document"
    );
    // --json=pretty re-indents the daemon's text as it reads it (no tree): the output must
    // be what pretty-printing the parsed document gives.
    let out = daemon.cli(&["status", "--json=pretty"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let pretty: Value = serde_json::from_slice(&out.stdout).expect("--json=pretty is JSON");
    assert_eq!(
        stdout(&out),
        format!(
            "{}\n",
            serde_json::to_string_pretty(&pretty).expect("print")
        ),
        "status --json=pretty is not the pretty form of its document"
    );
    assert_eq!(
        pretty["units"], v["units"],
        "the two forms hold the same units"
    );
    let out = daemon.cli(&["status", "--json=short"]);
    assert_eq!(stdout(&out).lines().count(), 1, "{}", stdout(&out));
    let d = &v["daemon"];
    assert_eq!(d["pid"], daemon.pid(), "{v:#}");
    assert_eq!(d["commit"], commit.as_str(), "{v:#}");
    assert!(d["last_check"].is_u64(), "{v:#}");
    assert!(d["next_check"].is_u64(), "{v:#}");
    assert!(
        d["poll_interval_s"].as_f64().is_some_and(|s| s > 0.0),
        "{v:#}"
    );
    let units = v["units"].as_array().expect("units array");
    let names: Vec<&str> = units.iter().filter_map(|u| u["name"].as_str()).collect();
    assert_eq!(names, ["broken.service", "done.service", "web.service"]);
    for u in units {
        for key in [
            "name",
            "active_state",
            "sub_state",
            "result",
            "main_pid",
            "n_restarts",
            "exec_main_status",
            "commit",
            "error",
        ] {
            assert!(u.get(key).is_some(), "unit lacks {key}: {u:#}");
        }
        assert_eq!(u["commit"], commit.as_str(), "{u:#}");
    }
    let by = |n: &str| units.iter().find(|u| u["name"] == n).cloned().unwrap();
    assert_eq!(by("web.service")["main_pid"], web);
    assert_eq!(by("web.service")["sub_state"], "running");
    assert_eq!(by("broken.service")["result"], "exit-code");
    assert_eq!(by("broken.service")["exec_main_status"], 7);
    assert!(by("done.service")["main_pid"].is_null());

    // Named units: only those.
    let out = daemon.cli(&["status", "--json", "web"]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["units"].as_array().map(Vec::len), Some(1), "{v:#}");
    assert_eq!(v["units"][0]["name"], "web.service");
}

#[test]
fn status_exit_codes_follow_systemctl() {
    let (repo, _) = three_units();
    let daemon = Daemon::start(repo.path(), &["--units-dir", "units"]);
    settled(&daemon);
    let code = |args: &[&str]| daemon.cli(args).status.code();
    assert_eq!(code(&["status", "web"]), Some(0));
    assert_eq!(
        code(&["status", "done"]),
        Some(3),
        "exited unit is not active"
    );
    assert_eq!(code(&["status", "broken.service"]), Some(3));
    assert_eq!(code(&["status", "web", "done"]), Some(3));
    let out = daemon.cli(&["status", "nope"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(stderr(&out).contains("nope.service"), "{}", stderr(&out));
    // Unknown wins over not active, as in systemctl.
    assert_eq!(code(&["status", "done", "nope"]), Some(4));
    let out = daemon.cli(&["status", "--json", "nope"]);
    assert_eq!(out.status.code(), Some(4));
    // Even on exit 4, --json prints valid JSON.
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON on exit 4");
    assert!(v["daemon"].is_object(), "{v:#}");
}

#[test]
fn status_without_a_daemon_says_how_to_start_one() {
    let state = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(support::bin())
        .args(["status", "--state-dir"])
        .arg(state.path())
        .output()
        .expect("run gitproc");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("gitproc.sock") && err.contains("gitproc daemon"),
        "{err}"
    );
    // The OS error appears once, not repeated by the error chain.
    assert_eq!(err.matches("os error").count(), 1, "{err}");
}

/// Runs the CLI inside a pseudo-terminal (util-linux `script`), so color decisions see a TTY.
fn in_tty(daemon: &Daemon, no_color: bool) -> String {
    let cmd = format!(
        "{} status --state-dir {}",
        support::bin().display(),
        daemon.state.path().display()
    );
    let mut command = std::process::Command::new("script");
    command
        .args(["-qec", &cmd, "/dev/null"])
        .env_remove("NO_COLOR");
    if no_color {
        command.env("NO_COLOR", "1");
    }
    let out = command.output().expect("run script(1)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn colors_only_on_a_terminal_and_never_with_no_color() {
    if !crate::support::require(
        "script(1) (package bsdutils), which gives the CLI a terminal",
        crate::support::succeeds("script", &["--version"]),
    ) {
        return;
    }
    let (repo, _) = three_units();
    let daemon = Daemon::start(repo.path(), &["--units-dir", "units"]);
    settled(&daemon);
    let colored = in_tty(&daemon, false);
    assert!(
        colored.contains("\x1b[32m●"),
        "no green dot on a TTY: {colored:?}"
    );
    assert!(
        colored.contains("\x1b[31m●"),
        "no red dot on a TTY: {colored:?}"
    );
    let plain = in_tty(&daemon, true);
    assert!(plain.contains("web.service"), "{plain:?}");
    assert!(!plain.contains("\x1b["), "NO_COLOR ignored: {plain:?}");
}

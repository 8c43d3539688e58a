//! Commit to deploy, end to end: the real daemon follows a real local repository, and each
//! commit starts, stops or restarts exactly the units it changed.

use std::time::Duration;

use crate::support::{Daemon, Repo, WAIT, alive, cmdline, cmdline_once_exec, service, wait_for};

/// Waits until `name` runs with a main pid other than `old`; returns the new pid.
fn wait_new_pid(daemon: &Daemon, name: &str, old: i32) -> i32 {
    let unit = daemon.wait_unit(name, &format!("running with a pid other than {old}"), |u| {
        u["sub_state"] == "running" && u["main_pid"].is_i64() && u["main_pid"] != old
    });
    unit["main_pid"].as_i64().unwrap_or_default() as i32
}

/// A config file that makes polling so slow that only inotify (or `sync`) can apply a commit.
fn slow_poll_config(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("gitproc.toml");
    std::fs::write(
        &path,
        "[poll]\nmin_interval_s = 600\nmax_interval_s = 600\njitter = 0\n",
    )
    .expect("write config");
    path
}

#[test]
fn a_commit_changing_one_of_five_units_restarts_only_that_one() {
    let repo = Repo::new();
    let names = ["a", "b", "c", "d", "e"];
    for (i, n) in names.iter().enumerate() {
        repo.write(
            &format!("{n}.service"),
            &service(&format!("/bin/sleep {}", 1000 + i), ""),
        );
    }
    repo.commit("five units");
    let daemon = Daemon::start(repo.path(), &[]);
    let before: Vec<i32> = names
        .iter()
        .map(|n| daemon.wait_running(&format!("{n}.service")))
        .collect();

    repo.write("c.service", &service("/bin/sleep 2002", ""));
    let commit = repo.commit("change c only");
    daemon.sync_to(&commit);
    let c = wait_new_pid(&daemon, "c.service", before[2]);
    assert_eq!(
        cmdline_once_exec(c, "/bin/sleep 2002"),
        "/bin/sleep 2002",
        "c runs its new command"
    );
    assert!(!alive(before[2]), "c's old process was stopped");
    for (i, n) in names.iter().enumerate() {
        if *n == "c" {
            continue;
        }
        let unit = daemon.unit(&format!("{n}.service"));
        assert_eq!(
            unit["main_pid"], before[i],
            "{n}.service was not changed and must keep its pid: {unit:#}"
        );
        assert!(alive(before[i]));
    }
    assert_eq!(daemon.unit("c.service")["commit"], commit);
}

#[test]
fn an_added_unit_starts_and_a_removed_unit_stops_and_disappears() {
    let repo = Repo::new();
    repo.write("keep.service", &service("/bin/sleep 1000", ""));
    repo.write("old.service", &service("/bin/sleep 1001", ""));
    repo.commit("two units");
    let daemon = Daemon::start(repo.path(), &[]);
    let keep = daemon.wait_running("keep.service");
    let old = daemon.wait_running("old.service");

    repo.remove("old.service");
    repo.write("new.service", &service("/bin/sleep 1002", ""));
    let commit = repo.commit("replace old by new");
    daemon.sync_to(&commit);
    let new = daemon.wait_running("new.service");
    assert_eq!(cmdline_once_exec(new, "/bin/sleep 1002"), "/bin/sleep 1002");
    wait_for("old.service to disappear from status", WAIT, || {
        daemon.unit("old.service").is_null().then_some(())
    });
    wait_for("old.service's process to exit", WAIT, || {
        (!alive(old)).then_some(())
    });
    assert_eq!(daemon.main_pid("keep.service"), Some(keep));
}

#[test]
fn a_broken_unit_keeps_its_old_version_running_until_it_is_fixed() {
    let repo = Repo::new();
    repo.write("web.service", &service("/bin/sleep 1000", ""));
    repo.write("other.service", &service("/bin/sleep 1001", ""));
    let good = repo.commit("good");
    let daemon = Daemon::start(repo.path(), &[]);
    let web = daemon.wait_running("web.service");
    let other = daemon.wait_running("other.service");

    // Line 6 has no '=': a syntax error that rejects this version of the unit.
    repo.write(
        "web.service",
        "[Unit]\nDescription=test unit\n\n[Service]\nExecStart=/bin/sleep 3000\nthis line is broken\n",
    );
    let bad = repo.commit("break web");
    daemon.sync_to(&bad);
    let unit = daemon.wait_unit("web.service", "showing its load error", |u| {
        u["error"].is_string()
    });
    let error = unit["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("web.service:6:"),
        "error names file:line: {error}"
    );
    assert!(
        error.contains(&bad[..10]),
        "error names the commit {bad}: {error}"
    );
    assert_eq!(unit["main_pid"], web, "the old version keeps running");
    assert_eq!(unit["sub_state"], "running");
    assert_eq!(unit["commit"], good, "the running version is from {good}");
    assert!(alive(web));
    assert_eq!(daemon.main_pid("other.service"), Some(other));

    // The CLI shows it too.
    let out = daemon.cli(&["status", "--json"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("web.service:6:"), "status --json: {text}");

    repo.write("web.service", &service("/bin/sleep 3001", ""));
    let fixed = repo.commit("fix web");
    daemon.sync_to(&fixed);
    let new = wait_new_pid(&daemon, "web.service", web);
    assert_eq!(
        cmdline_once_exec(new, "/bin/sleep 3001"),
        "/bin/sleep 3001",
        "the fixed content runs"
    );
    let unit = daemon.wait_unit("web.service", "without error", |u| u["error"].is_null());
    assert_eq!(unit["commit"], fixed);
    assert_eq!(daemon.main_pid("other.service"), Some(other));
}

#[test]
fn a_unit_stopped_by_the_operator_stays_stopped_across_a_sync_that_changes_it() {
    let repo = Repo::new();
    repo.write("held.service", &service("/bin/sleep 1000", ""));
    repo.commit("one unit");
    let daemon = Daemon::start(repo.path(), &[]);
    let pid = daemon.wait_running("held.service");
    let out = daemon.cli(&["stop", "held.service"]);
    assert!(out.status.success(), "{out:?}");
    daemon.wait_unit("held.service", "stopped", |u| {
        u["active_state"] == "inactive"
    });
    assert!(!alive(pid));

    repo.write("held.service", &service("/bin/sleep 1001", ""));
    let commit = repo.commit("change the held unit");
    daemon.sync_to(&commit);
    let unit = daemon.unit("held.service");
    assert_eq!(unit["active_state"], "inactive", "{unit:#}");
    assert!(unit["main_pid"].is_null(), "{unit:#}");
    assert_eq!(unit["override"], "stopped");

    // `start` runs the new version.
    let out = daemon.cli(&["start", "held.service"]);
    assert!(out.status.success(), "{out:?}");
    let pid = daemon.wait_running("held.service");
    assert_eq!(cmdline_once_exec(pid, "/bin/sleep 1001"), "/bin/sleep 1001");
}

#[test]
fn a_commit_to_a_local_repository_is_applied_without_sync() {
    let repo = Repo::new();
    repo.write("a.service", &service("/bin/sleep 1000", ""));
    repo.commit("one unit");
    let config_dir = tempfile::tempdir().expect("temp dir");
    let config = slow_poll_config(config_dir.path());
    let daemon = Daemon::start(
        repo.path(),
        &["--config", config.to_str().expect("utf-8 path")],
    );
    let old = daemon.wait_running("a.service");
    assert!(
        daemon.status()["daemon"]["poll_interval_s"].as_f64() >= Some(600.0),
        "polling is too slow to be what applies the commit"
    );
    repo.write("a.service", &service("/bin/sleep 1001", ""));
    let commit = repo.commit("change a");
    wait_for(
        "the ref watcher to apply the commit (no sync)",
        Duration::from_secs(10),
        || (daemon.status()["daemon"]["commit"] == commit).then_some(()),
    );
    let new = wait_new_pid(&daemon, "a.service", old);
    assert_eq!(cmdline_once_exec(new, "/bin/sleep 1001"), "/bin/sleep 1001");
}

#[test]
fn a_force_push_to_an_older_history_is_applied() {
    let repo = Repo::new();
    repo.write("a.service", &service("/bin/sleep 1000", ""));
    let first = repo.commit("first");
    repo.write("a.service", &service("/bin/sleep 1001", ""));
    repo.commit("second");
    let daemon = Daemon::start(repo.path(), &[]);
    let pid = daemon.wait_running("a.service");
    assert_eq!(cmdline(pid), "/bin/sleep 1001");

    // Rewrite history: back to the first commit, then a new commit on top of it.
    repo.git(&["reset", "-q", "--hard", &first]);
    repo.write("a.service", &service("/bin/sleep 1002", ""));
    let rewritten = repo.commit("rewritten second");
    daemon.sync_to(&rewritten);
    // The reset itself moved the ref (to `first`), which the daemon may apply on the way:
    // wait for the final command rather than for the first new pid.
    wait_for(
        "a.service to run the rewritten commit's command",
        WAIT,
        || {
            let pid = daemon.main_pid("a.service")?;
            (cmdline(pid) == "/bin/sleep 1002").then_some(())
        },
    );
}

#[test]
fn branch_flag_follows_a_non_default_branch() {
    let repo = Repo::new();
    repo.write("a.service", &service("/bin/sleep 1000", ""));
    repo.commit("main's unit");
    repo.git(&["checkout", "-q", "-b", "staging"]);
    repo.write("a.service", &service("/bin/sleep 1001", ""));
    repo.write("staging-only.service", &service("/bin/sleep 1002", ""));
    let staging = repo.commit("staging's units");
    repo.git(&["checkout", "-q", "main"]);
    let daemon = Daemon::start(repo.path(), &["--branch", "staging"]);
    let a = daemon.wait_running("a.service");
    assert_eq!(
        cmdline_once_exec(a, "/bin/sleep 1001"),
        "/bin/sleep 1001",
        "runs staging's version"
    );
    daemon.wait_running("staging-only.service");
    assert_eq!(daemon.status()["daemon"]["commit"], staging);

    // A commit on main changes nothing; a commit on staging is applied.
    repo.write("a.service", &service("/bin/sleep 1003", ""));
    repo.commit("main moves");
    daemon.sync();
    assert_eq!(daemon.status()["daemon"]["commit"], staging);
    assert_eq!(daemon.main_pid("a.service"), Some(a));
    repo.git(&["checkout", "-q", "staging"]);
    repo.write("a.service", &service("/bin/sleep 1004", ""));
    let next = repo.commit("staging moves");
    daemon.sync_to(&next);
    let new = wait_new_pid(&daemon, "a.service", a);
    assert_eq!(cmdline_once_exec(new, "/bin/sleep 1004"), "/bin/sleep 1004");
}

#[test]
fn a_template_symlink_runs_an_instance_with_the_instance_name_expanded() {
    let repo = Repo::new();
    repo.write("worker@.service", &service("/bin/sleep 100%i", ""));
    repo.symlink("worker@7.service", "worker@.service");
    repo.commit("template and one instance");
    let daemon = Daemon::start(repo.path(), &[]);
    let pid = daemon.wait_running("worker@7.service");
    // The shell execs sleep right after it starts: wait for that rather than race it.
    wait_for(
        "the instance to run `/bin/sleep 1007` (%i expanded to the instance name)",
        WAIT,
        || (cmdline(pid) == "/bin/sleep 1007").then_some(()),
    );
    let template = daemon.unit("worker@.service");
    assert!(
        template.is_null() || template["main_pid"].is_null(),
        "the template itself does not run: {template:#}"
    );
}

#[test]
fn a_unit_that_never_loaded_disappears_when_removed() {
    let repo = Repo::new();
    repo.write("good.service", &service("/bin/sleep 1000", ""));
    repo.write("broken.service", "[Service]\nnot an assignment\n");
    repo.commit("one good, one broken unit");
    let daemon = Daemon::start(repo.path(), &[]);
    let good = daemon.wait_running("good.service");
    daemon.wait_unit("broken.service", "shown with its error", |u| {
        u["error"]
            .as_str()
            .is_some_and(|e| e.contains("broken.service:2:"))
    });

    repo.remove("broken.service");
    let commit = repo.commit("remove the broken unit");
    daemon.sync_to(&commit);
    wait_for("broken.service to disappear from status", WAIT, || {
        daemon.unit("broken.service").is_null().then_some(())
    });
    assert_eq!(daemon.main_pid("good.service"), Some(good));
}

#[test]
fn a_deleted_branch_keeps_everything_running() {
    let repo = Repo::new();
    repo.write("a.service", &service("/bin/sleep 1000", ""));
    repo.commit("main");
    repo.git(&["branch", "prod"]);
    let daemon = Daemon::start(repo.path(), &["--branch", "prod"]);
    let pid = daemon.wait_running("a.service");

    repo.git(&["branch", "-D", "prod"]);
    daemon.sync();
    let error = wait_for("status to report the missing branch", WAIT, || {
        daemon.status()["daemon"]["source_error"]
            .as_str()
            .map(str::to_string)
    });
    assert!(error.contains("prod"), "{error}");
    assert_eq!(daemon.main_pid("a.service"), Some(pid));
    assert!(alive(pid));

    repo.write("a.service", &service("/bin/sleep 1001", ""));
    repo.commit("main moves on");
    repo.git(&["branch", "prod"]);
    let tip = repo.git(&["rev-parse", "prod"]);
    daemon.sync_to(&tip);
    let new = wait_new_pid(&daemon, "a.service", pid);
    assert_eq!(cmdline(new), "/bin/sleep 1001");
    assert!(daemon.status()["daemon"]["source_error"].is_null());
}

#[test]
fn changing_a_template_restarts_its_instances_and_a_new_link_starts_only_its_instance() {
    let repo = Repo::new();
    repo.write("worker@.service", &service("/bin/sleep 100%i", ""));
    repo.symlink("worker@1.service", "worker@.service");
    repo.commit("template and instance 1");
    let daemon = Daemon::start(repo.path(), &[]);
    let one = daemon.wait_running("worker@1.service");

    repo.symlink("worker@2.service", "worker@.service");
    let commit = repo.commit("instance 2");
    daemon.sync_to(&commit);
    let two = daemon.wait_running("worker@2.service");
    assert_eq!(cmdline(two), "/bin/sleep 1002");
    assert_eq!(
        daemon.main_pid("worker@1.service"),
        Some(one),
        "instance 1 untouched"
    );

    repo.write("worker@.service", &service("/bin/sleep 200%i", ""));
    let commit = repo.commit("change the template");
    daemon.sync_to(&commit);
    assert_eq!(
        cmdline(wait_new_pid(&daemon, "worker@1.service", one)),
        "/bin/sleep 2001"
    );
    assert_eq!(
        cmdline(wait_new_pid(&daemon, "worker@2.service", two)),
        "/bin/sleep 2002"
    );
}

#[test]
fn changing_an_environment_file_restarts_only_the_units_that_read_it() {
    let repo = Repo::new();
    repo.write("app.env", "SECS=1000\n");
    repo.write(
        "app.service",
        &service("/bin/sleep $SECS", "EnvironmentFile=app.env"),
    );
    repo.write("other.service", &service("/bin/sleep 1001", ""));
    repo.commit("app reads app.env");
    let daemon = Daemon::start(repo.path(), &[]);
    let app = daemon.wait_running("app.service");
    let other = daemon.wait_running("other.service");
    assert_eq!(cmdline(app), "/bin/sleep 1000");

    repo.write("app.env", "SECS=1002\n");
    let commit = repo.commit("change app.env only");
    daemon.sync_to(&commit);
    let new = wait_new_pid(&daemon, "app.service", app);
    assert_eq!(
        cmdline(new),
        "/bin/sleep 1002",
        "the new file's values are used"
    );
    assert_eq!(daemon.main_pid("other.service"), Some(other));
}

#[test]
fn a_commit_without_the_units_directory_keeps_the_last_good_units_running() {
    let repo = Repo::new();
    repo.write("units/a.service", &service("/bin/sleep 1000", ""));
    let good = repo.commit("units in units/");
    let daemon = Daemon::start(repo.path(), &["--units-dir", "units"]);
    let pid = daemon.wait_running("a.service");

    repo.git(&["mv", "units", "services"]);
    let moved = repo.commit("move the units away");
    daemon.sync();
    let error = wait_for("status to report the missing units directory", WAIT, || {
        daemon.status()["daemon"]["source_error"]
            .as_str()
            .map(str::to_string)
    });
    assert!(
        error.contains("units") && error.contains(&moved[..10]),
        "{error}"
    );
    assert_eq!(daemon.status()["daemon"]["commit"], good);
    assert_eq!(daemon.main_pid("a.service"), Some(pid));
    assert!(alive(pid));
}

#[test]
fn a_new_unit_that_fails_to_load_starts_once_it_is_fixed() {
    let repo = Repo::new();
    repo.write("good.service", &service("/bin/sleep 1000", ""));
    repo.commit("one unit");
    let daemon = Daemon::start(repo.path(), &[]);
    let good = daemon.wait_running("good.service");

    repo.write(
        "new.service",
        "[Service]\nExecStart=/bin/sleep 1001\nnonsense\n",
    );
    let bad = repo.commit("add a broken unit");
    daemon.sync_to(&bad);
    let unit = daemon.wait_unit("new.service", "shown with its error", |u| {
        u["error"].is_string()
    });
    let error = unit["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("new.service:3:") && error.contains(&bad[..10]),
        "{error}"
    );
    assert!(unit["main_pid"].is_null());

    repo.write("new.service", &service("/bin/sleep 1001", ""));
    let fixed = repo.commit("fix the new unit");
    daemon.sync_to(&fixed);
    let pid = daemon.wait_running("new.service");
    assert_eq!(cmdline_once_exec(pid, "/bin/sleep 1001"), "/bin/sleep 1001");
    assert!(daemon.unit("new.service")["error"].is_null());
    assert_eq!(daemon.main_pid("good.service"), Some(good));
}

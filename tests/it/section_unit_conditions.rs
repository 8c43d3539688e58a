//! `ConditionHost=` with `--hostname`: a unit meant for another host is simply inactive with
//! sub-state `condition` (not an error); a glob that matches this host runs it.

use crate::support::{Daemon, Repo, WAIT, alive, service, wait_for};

#[test]
fn condition_host_selects_units_by_the_given_hostname() {
    let repo = Repo::new();
    repo.write(
        "elsewhere.service",
        "[Unit]\nConditionHost=other\n\n[Service]\nExecStart=/bin/sleep 1000\n",
    );
    repo.write(
        "here.service",
        "[Unit]\nConditionHost=web-*\n\n[Service]\nExecStart=/bin/sleep 1001\n",
    );
    repo.write("everywhere.service", &service("/bin/sleep 1002", ""));
    repo.commit("units for several hosts");
    let daemon = Daemon::start(repo.path(), &["--hostname", "web-7"]);
    daemon.wait_running("here.service");
    daemon.wait_running("everywhere.service");
    let unit = daemon.wait_unit("elsewhere.service", "skipped by its condition", |u| {
        u["sub_state"] == "condition"
    });
    assert_eq!(unit["active_state"], "inactive", "{unit:#}");
    assert!(unit["main_pid"].is_null(), "{unit:#}");
    assert!(
        unit["error"].is_null(),
        "a failed condition is not an error: {unit:#}"
    );
    assert_eq!(unit["result"], "success", "{unit:#}");
    let condition = unit["condition"].as_str().unwrap_or_default();
    assert!(
        condition.contains("ConditionHost=other") && condition.contains("web-7"),
        "status says which condition failed: {unit:#}"
    );

    // `gitproc status --json` shows the same.
    let out = daemon.cli(&["status", "--json", "elsewhere.service"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\"condition\""), "{text}");
}

#[test]
fn a_commit_that_moves_a_running_unit_to_another_host_stops_it() {
    let repo = Repo::new();
    repo.write(
        "app.service",
        "[Unit]\nConditionHost=web-*\n\n[Service]\nExecStart=/bin/sleep 1000\n",
    );
    repo.commit("app runs on web hosts");
    let daemon = Daemon::start(repo.path(), &["--hostname", "web-7"]);
    let pid = daemon.wait_running("app.service");

    repo.write(
        "app.service",
        "[Unit]\nConditionHost=db-*\n\n[Service]\nExecStart=/bin/sleep 1000\n",
    );
    let commit = repo.commit("app moves to db hosts");
    daemon.sync();
    wait_for("the commit to be applied", WAIT, || {
        (daemon.status()["daemon"]["commit"] == commit).then_some(())
    });
    let unit = daemon.wait_unit("app.service", "stopped by its condition", |u| {
        u["sub_state"] == "condition"
    });
    assert!(unit["main_pid"].is_null(), "{unit:#}");
    wait_for("the old process to exit", WAIT, || {
        (!alive(pid)).then_some(())
    });
}

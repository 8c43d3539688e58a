//! `[Unit]` dependencies that act: `Requires=`, `BindsTo=` and `PartOf=` propagate stops
//! (and restarts), `BindsTo=` follows the bound unit's own exit, `Conflicts=` stops the
//! other side — as systemd.unit(5) says.

use crate::support::{Daemon, Repo, alive, service};

fn unit(unit_section: &str, exec: &str) -> String {
    format!("[Unit]\n{unit_section}\n\n[Service]\nExecStart={exec}\n")
}

fn inactive(u: &serde_json::Value) -> bool {
    u["active_state"] == "inactive" || u["active_state"] == "failed"
}

#[test]
fn stopping_a_required_unit_stops_its_requirers_but_not_its_wanters() {
    let repo = Repo::new();
    repo.write("db.service", &service("/bin/sleep 1000", ""));
    repo.write(
        "app.service",
        &unit("Requires=db.service\nAfter=db.service", "/bin/sleep 1000"),
    );
    repo.write(
        "fan.service",
        &unit("Wants=db.service\nAfter=db.service", "/bin/sleep 1000"),
    );
    repo.commit("db, its requirer and a wanter");
    let daemon = Daemon::start(repo.path(), &[]);
    daemon.wait_running("db.service");
    let app = daemon.wait_running("app.service");
    let fan = daemon.wait_running("fan.service");
    daemon.cli_ok(&["stop", "db.service"]);
    daemon.wait_unit("app.service", "stopped with db", inactive);
    daemon.wait("app's process gone", || (!alive(app)).then_some(()));
    assert!(inactive(&daemon.unit("db.service")));
    // Wants= does not propagate stops.
    assert_eq!(daemon.main_pid("fan.service"), Some(fan));
    assert_eq!(daemon.unit("fan.service")["active_state"], "active");
}

#[test]
fn removing_a_required_unit_stops_its_requirer() {
    let repo = Repo::new();
    repo.write("db.service", &service("/bin/sleep 1000", ""));
    repo.write(
        "app.service",
        &unit("Requires=db.service", "/bin/sleep 1000"),
    );
    repo.commit("db and app");
    let daemon = Daemon::start(repo.path(), &[]);
    daemon.wait_running("db.service");
    let app = daemon.wait_running("app.service");
    repo.remove("db.service");
    let commit = repo.commit("db goes");
    daemon.sync_to(&commit);
    daemon.wait_unit("app.service", "stopped with removed db", inactive);
    daemon.wait("app's process gone", || (!alive(app)).then_some(()));
}

#[test]
fn binds_to_stops_the_unit_when_the_bound_unit_exits_on_its_own() {
    let repo = Repo::new();
    // The bound unit exits by itself once the binder runs (Restart=no: it stays down).
    repo.write("vpn.service", &service("/bin/sleep 1000", ""));
    repo.write(
        "tunnel.service",
        &unit("BindsTo=vpn.service\nAfter=vpn.service", "/bin/sleep 1000"),
    );
    repo.commit("vpn and a tunnel bound to it");
    let daemon = Daemon::start(repo.path(), &[]);
    let vpn = daemon.wait_running("vpn.service");
    let tunnel = daemon.wait_running("tunnel.service");
    // Not a stop through gitproc: the process dies on its own.
    let st = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(vpn.to_string())
        .status()
        .expect("run kill");
    assert!(st.success());
    daemon.wait_unit("vpn.service", "exited", inactive);
    daemon.wait_unit("tunnel.service", "stopped with vpn", inactive);
    daemon.wait("tunnel's process gone", || (!alive(tunnel)).then_some(()));
}

#[test]
fn requires_alone_does_not_follow_an_exit() {
    // systemd: only BindsTo= follows the other unit's own exit; Requires= acts on jobs.
    let repo = Repo::new();
    repo.write("db.service", &service("/bin/sleep 1000", ""));
    repo.write(
        "app.service",
        &unit("Requires=db.service\nAfter=db.service", "/bin/sleep 1000"),
    );
    repo.write(
        "tunnel.service",
        &unit("BindsTo=db.service\nAfter=db.service", "/bin/sleep 1000"),
    );
    repo.commit("db, requirer, binder");
    let daemon = Daemon::start(repo.path(), &[]);
    let db = daemon.wait_running("db.service");
    let app = daemon.wait_running("app.service");
    daemon.wait_running("tunnel.service");
    let st = std::process::Command::new("kill")
        .arg(db.to_string())
        .status()
        .expect("run kill");
    assert!(st.success());
    // The binder stopping is the sign the exit was processed.
    daemon.wait_unit("tunnel.service", "stopped with db", inactive);
    assert_eq!(daemon.main_pid("app.service"), Some(app));
}

#[test]
fn restarting_a_unit_restarts_what_is_part_of_it() {
    let repo = Repo::new();
    repo.write("app.service", &service("/bin/sleep 1000", ""));
    repo.write(
        "web.service",
        &unit("PartOf=app.service\nAfter=app.service", "/bin/sleep 1000"),
    );
    repo.write("other.service", &service("/bin/sleep 1000", ""));
    repo.commit("app and its part");
    let daemon = Daemon::start(repo.path(), &[]);
    let app = daemon.wait_running("app.service");
    let web = daemon.wait_running("web.service");
    let other = daemon.wait_running("other.service");
    daemon.cli_ok(&["restart", "app.service"]);
    daemon.wait_unit("app.service", "restarted", |u| {
        u["main_pid"].as_i64().is_some_and(|p| p != i64::from(app)) && u["active_state"] == "active"
    });
    daemon.wait_unit("web.service", "restarted with app", |u| {
        u["main_pid"].as_i64().is_some_and(|p| p != i64::from(web)) && u["active_state"] == "active"
    });
    assert_eq!(daemon.main_pid("other.service"), Some(other));
    // PartOf= is one-way: stopping the part leaves the whole running.
    daemon.cli_ok(&["stop", "web.service"]);
    daemon.wait_unit("web.service", "stopped", inactive);
    assert_eq!(daemon.unit("app.service")["active_state"], "active");
}

#[test]
fn starting_a_unit_stops_what_conflicts_with_it_either_side() {
    let repo = Repo::new();
    repo.write("old.service", &service("/bin/sleep 1000", ""));
    repo.commit("one unit");
    let daemon = Daemon::start(repo.path(), &[]);
    let old = daemon.wait_running("old.service");
    // A new unit that conflicts with the running one: its start stops the other.
    repo.write(
        "new.service",
        &unit("Conflicts=old.service", "/bin/sleep 1000"),
    );
    let commit = repo.commit("a rival");
    daemon.sync_to(&commit);
    let new = daemon.wait_running("new.service");
    daemon.wait_unit("old.service", "stopped by the conflict", inactive);
    daemon.wait("old's process gone", || (!alive(old)).then_some(()));
    // The other way round: Conflicts= counts on both sides.
    daemon.cli_ok(&["start", "old.service"]);
    daemon.wait_running("old.service");
    daemon.wait_unit("new.service", "stopped by the conflict", inactive);
    daemon.wait("new's process gone", || (!alive(new)).then_some(()));
}

//! The notify socket end to end: reachable by a service with `User=` (the socket is 0666 in
//! a 0755 runtime directory, not in the 0700 state directory), and `NotifyAccess=`
//! honoured: `main` (the default for `Type=notify`) ignores a child's `READY=1`, `all`
//! accepts it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::{Daemon, Repo, alive, script, service};

const PYTHON: &str = "/usr/bin/python3";

/// A python3 sd_notify client (no libsystemd needed). As the main process it forks a child
/// that sends `READY=1` and exits a second later (a sender must still exist when its
/// datagram is read, so its cgroup and session can be looked up: systemd has the same
/// rule for processes outside the main pid); once the child is gone it sends `STATUS=child-sent` (the
/// datagrams arrive in order, so the child's was handled first), then waits for the file
/// named by argv[1] and sends `READY=1` itself.
const NOTIFIER: &str = r#"#!/usr/bin/python3
import os, socket, sys, time
def send(msg):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto(msg.encode(), os.environ["NOTIFY_SOCKET"])
    s.close()
child = os.fork()
if child == 0:
    send("READY=1\nSTATUS=from-child")
    time.sleep(1)
    os._exit(0)
os.waitpid(child, 0)
send("STATUS=child-sent")
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
send("READY=1\nSTATUS=from-main")
time.sleep(1000)
"#;

fn need_python() -> bool {
    crate::support::require(PYTHON, Path::new(PYTHON).exists())
}

fn notifier_unit(repo: &Repo, trigger: &Path, extra: &str) -> String {
    let exec = script(repo, "notifier.py", NOTIFIER);
    service(
        &format!("{exec} {}", trigger.display()),
        &format!("Type=notify\nTimeoutStartSec=30\n{extra}"),
    )
}

#[test]
fn a_user_nobody_notify_service_becomes_ready() {
    if !need_python() {
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("User=nobody needs root; skipped");
        return;
    }
    let repo = Repo::new();
    // nobody must be able to run the script and see the trigger: the temp dir is 0700.
    std::fs::set_permissions(repo.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod the repo");
    let trigger = repo.path().join("go");
    std::fs::write(&trigger, "").expect("write the trigger");
    repo.write(
        "nobody.service",
        &notifier_unit(&repo, &trigger, "User=nobody"),
    );
    repo.commit("a notify service as nobody");
    let daemon = Daemon::start(repo.path(), &[]);
    let unit = daemon.wait_unit("nobody.service", "active or failed", |u| {
        u["active_state"] == "active" || u["active_state"] == "failed"
    });
    assert_eq!(unit["sub_state"], "running", "{unit:#}");
    assert_eq!(unit["status_text"], "from-main", "{unit:#}");
    let pid = unit["main_pid"].as_i64().unwrap_or_default() as i32;
    assert!(alive(pid), "{unit:#}");
    let owner = std::fs::metadata(format!("/proc/{pid}"))
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap_or_default();
    assert_eq!(owner, 65534, "the main process does not run as nobody");
}

#[test]
fn notify_access_main_ignores_a_childs_ready() {
    if !need_python() {
        return;
    }
    let repo = Repo::new();
    let trigger = repo.path().join("go");
    repo.write("main.service", &notifier_unit(&repo, &trigger, ""));
    repo.commit("NotifyAccess=main (default)");
    let daemon = Daemon::start(repo.path(), &[]);
    let unit = daemon.wait_unit("main.service", "the child's datagram handled", |u| {
        u["status_text"] == "child-sent" || u["active_state"] != "activating"
    });
    assert_eq!(unit["active_state"], "activating", "{unit:#}");
    assert_eq!(unit["sub_state"], "start", "{unit:#}");
    std::fs::write(&trigger, "").expect("write the trigger");
    let unit = daemon.wait_unit("main.service", "active", |u| {
        u["active_state"] != "activating"
    });
    assert_eq!(unit["sub_state"], "running", "{unit:#}");
    assert_eq!(unit["status_text"], "from-main", "{unit:#}");
}

#[test]
fn notify_access_all_accepts_a_childs_ready() {
    if !need_python() {
        return;
    }
    let repo = Repo::new();
    let trigger = repo.path().join("go");
    repo.write(
        "all.service",
        &notifier_unit(&repo, &trigger, "NotifyAccess=all"),
    );
    repo.commit("NotifyAccess=all");
    let daemon = Daemon::start(repo.path(), &[]);
    let unit = daemon.wait_unit("all.service", "active", |u| {
        u["active_state"] != "activating"
    });
    assert_eq!(unit["sub_state"], "running", "{unit:#}");
    assert!(!trigger.exists());
}

#[test]
fn notify_access_none_ignores_even_the_main_process() {
    if !need_python() {
        return;
    }
    let repo = Repo::new();
    let trigger = repo.path().join("go");
    std::fs::write(&trigger, "").expect("write the trigger");
    repo.write(
        "none.service",
        &notifier_unit(&repo, &trigger, "NotifyAccess=none\nTimeoutStartSec=2"),
    );
    repo.commit("NotifyAccess=none");
    let daemon = Daemon::start(repo.path(), &[]);
    let unit = daemon.wait_unit("none.service", "failed", |u| u["active_state"] == "failed");
    assert_eq!(unit["result"], "timeout", "{unit:#}");
    assert!(unit["status_text"].is_null(), "{unit:#}");
}

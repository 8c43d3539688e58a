//! `gitproc freeze` / `gitproc thaw`: a frozen host keeps fetching but applies nothing,
//! across a daemon restart, until thawed.

use crate::support::{Daemon, Repo, cmdline, service};

#[test]
fn freeze_holds_commits_across_a_restart_and_thaw_applies_them() {
    let repo = Repo::new();
    repo.write("a.service", &service("/bin/sleep 1000", ""));
    let first = repo.commit("first");
    let mut daemon = Daemon::start(repo.path(), &[]);
    daemon.sync_to(&first);
    let pid = daemon.wait_running("a.service");

    let out = daemon.cli_ok(&["freeze", "--reason", "incident 7"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("frozen by") && text.contains("incident 7"),
        "{text}"
    );
    // Answered once on disk: the state file already carries the freeze.
    let state = daemon.try_state_file().expect("state.json");
    assert_eq!(
        state["daemon"]["freeze"]["reason"], "incident 7",
        "{state:#}"
    );

    repo.write("a.service", &service("/bin/sleep 1001", ""));
    let second = repo.commit("second");
    // It keeps fetching: the new commit is seen, shown as pending, and not applied.
    let status = daemon.wait("the frozen host to fetch the new commit", || {
        let s = daemon.status();
        (s["daemon"]["pending"]["commit"] == second.as_str()).then_some(s)
    });
    let d = &status["daemon"];
    assert_eq!(d["fetched_commit"], second.as_str(), "{d:#}");
    assert_eq!(d["commit"], first.as_str(), "{d:#}");
    assert_eq!(d["pending"]["held_by"], "freeze", "{d:#}");
    assert_eq!(d["frozen"]["reason"], "incident 7", "{d:#}");
    let sync = daemon.cli_ok(&["sync"]);
    let sync = String::from_utf8_lossy(&sync.stdout);
    assert!(
        sync.contains(&format!("up to date at {first}")) && sync.contains("pending: "),
        "{sync}"
    );
    let text = String::from_utf8_lossy(&daemon.cli(&["status"]).stdout).to_string();
    assert!(
        text.contains("Frozen: ")
            && text.contains("incident 7")
            && text.contains("held by the freeze"),
        "{text}"
    );

    // A restart (SIGKILL, no goodbye) comes back frozen, on the first commit, adopting the
    // service rather than starting the pending commit's version.
    daemon.restart();
    let status = daemon.wait(
        "the restarted daemon to come back on the first commit",
        || {
            let s = daemon.status();
            (s["daemon"]["commit"] == first.as_str()
                && s["daemon"]["pending"]["commit"] == second.as_str())
            .then_some(s)
        },
    );
    assert_eq!(status["daemon"]["frozen"]["reason"], "incident 7");
    assert_eq!(
        daemon.wait_running("a.service"),
        pid,
        "adopted, not restarted"
    );
    assert_eq!(daemon.status()["daemon"]["commit"], first.as_str());

    let out = daemon.cli_ok(&["thaw"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("thawed; applied {second}")),
        "{text}"
    );
    let d = daemon.status()["daemon"].clone();
    assert_eq!(d["commit"], second.as_str(), "{d:#}");
    assert!(d["frozen"].is_null() && d["pending"].is_null(), "{d:#}");
    let new_pid = daemon.wait("the new version to run", || {
        let p = daemon.main_pid("a.service")?;
        cmdline(p).contains("1001").then_some(p)
    });
    assert_ne!(new_pid, pid);
    let state = daemon.try_state_file().expect("state.json");
    assert!(state["daemon"]["freeze"].is_null(), "{state:#}");

    // Thawing a host that is not frozen says so and succeeds.
    let out = daemon.cli_ok(&["thaw"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("not frozen"));
}

//! Staged rollouts: `gitproc-rollout.toml` in the units directory, one repository, several
//! daemons with their own `--hostname`. Each host computes its wave and applies a commit
//! only when the wave's delay after the committer time has passed; `halt = true` stops the
//! hosts that have not applied yet; a revert reaches every host at once.

use std::time::{Duration, Instant};

use crate::support::{Daemon, Repo, service, wait_for};
use serde_json::Value;

/// The daemon's host bucket (FNV-1a 64 of `salt \0 host`, mod 10000), computed here
/// independently: the fleet depends on it staying the same across releases.
fn bucket(host: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in std::iter::once(0u8).chain(host.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h % 10_000
}

/// The first `host-NNN` inside (or outside) the first 10 % of the hash space.
fn host_where(inside: bool) -> String {
    (0..1000)
        .map(|i| format!("host-{i:03}"))
        .find(|h| (bucket(h) < 1000) == inside)
        .expect("a host name")
}

fn policy(ten_delay: f64, rest_delay: f64, halt: bool) -> String {
    format!(
        "halt = {halt}\n\
         [[wave]]\nname = \"canary\"\nhosts = [\"canary-*\"]\ndelay_s = 0\n\
         [[wave]]\nname = \"ten\"\npercent = 10\ndelay_s = {ten_delay}\n\
         [[wave]]\nname = \"rest\"\ndelay_s = {rest_delay}\n"
    )
}

struct Fleet {
    hosts: Vec<(String, Daemon)>,
}

impl Fleet {
    fn start(repo: &Repo, names: &[&str]) -> Fleet {
        let hosts = names
            .iter()
            .map(|h| {
                (
                    h.to_string(),
                    Daemon::start(repo.path(), &["--hostname", h]),
                )
            })
            .collect();
        Fleet { hosts }
    }

    fn commit_of(&self, i: usize) -> String {
        self.hosts[i].1.status()["daemon"]["commit"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    fn daemon(&self, i: usize) -> &Daemon {
        &self.hosts[i].1
    }

    /// Waits until every host has applied `commit`; returns when each was first seen so.
    fn wait_applied(&self, commit: &str, timeout: Duration) -> Vec<Instant> {
        let mut seen: Vec<Option<Instant>> = vec![None; self.hosts.len()];
        wait_for(&format!("every host to apply {commit}"), timeout, || {
            for (i, slot) in seen.iter_mut().enumerate() {
                if slot.is_none() && self.commit_of(i) == commit {
                    *slot = Some(Instant::now());
                }
            }
            seen.iter().copied().collect::<Option<Vec<_>>>()
        })
    }

    fn all_on(&self, commit: &str) {
        self.wait_applied(commit, Duration::from_secs(20));
    }
}

fn pending(d: &Daemon) -> Value {
    d.status()["daemon"]["pending"].clone()
}

#[test]
fn canary_first_then_ten_percent_then_the_rest() {
    let repo = Repo::new();
    repo.write("a.service", &service("/bin/sleep 1000", ""));
    let first = repo.commit("first");
    let ten = host_where(true);
    let rest = host_where(false);
    let fleet = Fleet::start(&repo, &["canary-1", &ten, &rest]);
    fleet.all_on(&first);

    repo.write("gitproc-rollout.toml", &policy(2.0, 4.0, false));
    repo.write("a.service", &service("/bin/sleep 1001", ""));
    let second = repo.commit("second, in waves");

    // While waiting, each host shows the pending commit and its own wave.
    for (i, wave) in [(1, "ten"), (2, "rest")] {
        let p = fleet
            .daemon(i)
            .wait(&format!("{wave} to show the pending commit"), || {
                let p = pending(fleet.daemon(i));
                (p["commit"] == second.as_str()).then_some(p)
            });
        assert_eq!(p["wave"], wave, "{p:#}");
        assert_eq!(p["reason"], "wave", "{p:#}");
        assert!(p["apply_at_ms"].is_i64(), "{p:#}");
    }
    let text = fleet.daemon(2).cli(&["status"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("Pending: ") && text.contains("wave rest: applies in"),
        "{text}"
    );

    let at = fleet.wait_applied(&second, Duration::from_secs(20));
    assert!(
        at[0] < at[1] && at[1] < at[2],
        "canary, ten, rest applied in that order: {:?}",
        [at[1] - at[0], at[2] - at[1]]
    );
    // The waves are 2 s apart (whole-second committer times: at least 1 s).
    assert!(at[2] - at[1] >= Duration::from_millis(900), "{at:?}");
    assert!(pending(fleet.daemon(2)).is_null());
    let pid = fleet.daemon(2).wait_running("a.service");
    assert!(crate::support::cmdline(pid).contains("1001"));
}

#[test]
fn halt_stops_the_rest_and_a_revert_reaches_everyone_at_once() {
    let repo = Repo::new();
    repo.write("a.service", &service("/bin/sleep 1000", ""));
    let first = repo.commit("first");
    let ten = host_where(true);
    let rest = host_where(false);
    let fleet = Fleet::start(&repo, &["canary-1", &ten, &rest]);
    fleet.all_on(&first);

    repo.write("gitproc-rollout.toml", &policy(3.0, 4.0, false));
    repo.write("a.service", &service("/bin/sleep 1002", ""));
    let bad = repo.commit("a bad change, in waves");
    let committed = Instant::now();
    fleet
        .daemon(0)
        .wait("the canary to apply the bad change", || {
            (fleet.commit_of(0) == bad).then_some(())
        });
    assert_eq!(fleet.commit_of(1), first, "the ten-percent host waits");

    // The operator halts: the same units, `halt = true`.
    repo.write("gitproc-rollout.toml", &policy(3.0, 4.0, true));
    let halt = repo.commit("halt the rollout");
    for i in [1, 2] {
        let d = fleet.daemon(i);
        d.wait("the halt to hold the host", || {
            let p = pending(d);
            (p["commit"] == halt.as_str() && p["held_by"] == "halt").then_some(())
        });
    }
    // The canary already runs these units: the halt commit itself changes nothing there.
    fleet
        .daemon(0)
        .wait("the canary to take the halt commit", || {
            (fleet.commit_of(0) == halt).then_some(())
        });
    let text = String::from_utf8_lossy(&fleet.daemon(2).cli(&["status"]).stdout).to_string();
    assert!(text.contains("halted by its rollout policy"), "{text}");

    // Past every wave's deadline of the bad commit, nobody else took it.
    let past = committed + Duration::from_secs(6);
    while Instant::now() < past {
        for i in [1, 2] {
            assert_eq!(
                fleet.commit_of(i),
                first,
                "host {i} applied during the halt"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    // A revert (units equal to what the hosts ran before) ignores long wave delays.
    repo.write("gitproc-rollout.toml", &policy(60.0, 60.0, false));
    repo.write("a.service", &service("/bin/sleep 1000", ""));
    let revert = repo.commit("revert the bad change");
    let at = fleet.wait_applied(&revert, Duration::from_secs(5));
    let reverted = Instant::now();
    assert!(
        at.iter().all(|t| reverted - *t < Duration::from_secs(5)),
        "{at:?}"
    );
    let pid = fleet
        .daemon(0)
        .wait("the canary's service to be reverted", || {
            let pid = fleet.daemon(0).main_pid("a.service")?;
            crate::support::cmdline(pid).contains("1000").then_some(pid)
        });
    assert!(pid > 0);
    for i in [1, 2] {
        assert!(pending(fleet.daemon(i)).is_null());
    }
}

#[test]
fn an_invalid_policy_holds_the_commit_and_names_the_error() {
    let repo = Repo::new();
    repo.write("a.service", &service("/bin/sleep 1000", ""));
    let first = repo.commit("first");
    let daemon = Daemon::start(repo.path(), &["--hostname", "web-1"]);
    daemon.sync_to(&first);
    repo.write("gitproc-rollout.toml", "[[wave]]\npercent = 140\n");
    repo.write("a.service", &service("/bin/sleep 1003", ""));
    let broken = repo.commit("broken policy");
    let p = daemon.wait("the invalid policy to be reported", || {
        let p = pending(&daemon);
        (p["commit"] == broken.as_str()).then_some(p)
    });
    assert_eq!(p["held_by"], "invalid-policy", "{p:#}");
    assert!(
        p["policy_error"]
            .as_str()
            .is_some_and(|e| e.contains("gitproc-rollout.toml") && e.contains("140")),
        "{p:#}"
    );
    assert_eq!(daemon.status()["daemon"]["commit"], first.as_str());
}

#[test]
fn a_restart_keeps_the_pending_commit_and_when_it_was_first_seen() {
    let repo = Repo::new();
    repo.write("a.service", &service("/bin/sleep 1000", ""));
    let first = repo.commit("first");
    let rest = host_where(false);
    let mut daemon = Daemon::start(repo.path(), &["--hostname", &rest]);
    daemon.sync_to(&first);
    let pid = daemon.wait_running("a.service");
    repo.write("gitproc-rollout.toml", &policy(60.0, 120.0, false));
    repo.write("a.service", &service("/bin/sleep 1004", ""));
    let second = repo.commit("slow wave");
    let before = daemon.wait("the commit to be pending", || {
        let p = pending(&daemon);
        (p["commit"] == second.as_str()).then_some(p)
    });
    // Saved with the pending commit (the next batch of the state writer).
    daemon.wait("state.json to record the pending commit", || {
        let s = daemon.try_state_file()?;
        (s["daemon"]["pending_commit"] == second.as_str()).then_some(())
    });

    daemon.restart();
    let after = daemon.wait("the restarted daemon to hold the same commit", || {
        let p = pending(&daemon);
        (p["commit"] == second.as_str()).then_some(p)
    });
    assert_eq!(after["first_seen_ms"], before["first_seen_ms"], "{after:#}");
    assert_eq!(after["apply_at_ms"], before["apply_at_ms"], "{after:#}");
    assert_eq!(daemon.status()["daemon"]["commit"], first.as_str());
    assert_eq!(
        daemon.wait_running("a.service"),
        pid,
        "adopted on the applied commit"
    );
}

#[test]
fn check_validates_the_policy_before_it_is_pushed() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("a.service"), service("/bin/sleep 1000", ""))
        .expect("write unit");
    let policy_path = dir.path().join("gitproc-rollout.toml");
    let run = || {
        std::process::Command::new(crate::support::bin())
            .arg("check")
            .arg(dir.path())
            .output()
            .expect("run gitproc check")
    };
    std::fs::write(&policy_path, policy(2.0, 4.0, false)).expect("write policy");
    let out = run();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    std::fs::write(&policy_path, "[[wave]]\nname = \"x\"\ndelay_s = -1\n").expect("write");
    let out = run();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stdout.contains(&format!(
            "{}: error: wave \"x\": delay_s",
            policy_path.display()
        )),
        "{stdout}"
    );
}

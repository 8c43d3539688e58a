//! `gitproc logs UNIT [-n N] [-f]`: a unit's output, the last N lines, and follow mode that
//! keeps going, without losing lines, when the log file is rotated under it.

use crate::support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::{Daemon, Repo, WAIT, service, wait_for};

fn lines(out: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn logs_prints_a_units_output_and_n_limits_it() {
    let repo = Repo::new();
    repo.write(
        "five.service",
        &service(
            "/bin/sh -c 'for i in 1 2 3 4 5; do echo line$i; done; exec sleep 1000'",
            "",
        ),
    );
    repo.commit("talkative");
    let daemon = Daemon::start(repo.path(), &[]);
    daemon.wait_running("five.service");
    let all = wait_for("all five lines in the log", WAIT, || {
        let out = daemon.cli(&["logs", "five"]);
        let all = lines(&out);
        all.iter().any(|l| l.ends_with(" line5")).then_some(all)
    });
    assert!(all.iter().any(|l| l.ends_with(" line1")), "{all:#?}");
    // Every line carries a timestamp.
    assert!(all.iter().all(|l| l.starts_with("20")), "{all:#?}");

    let out = daemon.cli(&["logs", "five.service", "-n", "2"]);
    assert_eq!(out.status.code(), Some(0));
    let last = lines(&out);
    assert_eq!(last, all[all.len() - 2..], "not the last two of {all:#?}");

    let out = daemon.cli(&["logs", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope.service"), "{err}");
}

/// Kills the follower on drop.
struct Follower(Child);

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn follow_survives_rotation_without_losing_lines() {
    let repo = Repo::new();
    // ~60 bytes every 5 ms: a 4 KiB log rotates a few times a second.
    repo.write(
        "ticker.service",
        &service(
            "/bin/sh -c 'i=0; while [ $i -lt 100000 ]; do i=$((i+1)); echo \"tick $i padding-padding-padding\"; sleep 0.005; done; exec sleep 1000'",
            "",
        ),
    );
    repo.commit("ticker");
    let config = repo.path().join("gitproc.toml");
    std::fs::write(&config, "[logs]\nmax_bytes = 4096\nkeep = 2\n").expect("write config");
    let daemon = Daemon::start(repo.path(), &["--config", &config.display().to_string()]);
    daemon.wait_running("ticker.service");
    let logs = daemon.state.path().join("logs");
    let mut follower = Follower(
        Command::new(support::bin())
            .args(["logs", "-f", "-n", "0", "ticker", "--state-dir"])
            .arg(daemon.state.path())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn logs -f"),
    );
    let stdout = follower.0.stdout.take().expect("piped stdout");
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let rotated_file = logs.join("ticker.service.log.1");
    let mut ticks: Vec<u64> = Vec::new();
    let mut rotations_seen = 0;
    let mut last_inode = None;
    let deadline = std::time::Instant::now() + WAIT;
    // Read until the log has been rotated at least three times while we followed.
    while rotations_seen < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "saw {rotations_seen} rotations and {} ticks before the deadline",
            ticks.len()
        );
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(50))
            && let Some(n) = line
                .split_whitespace()
                .skip_while(|w| *w != "tick")
                .nth(1)
                .and_then(|n| n.parse().ok())
        {
            ticks.push(n);
        }
        let inode = std::fs::metadata(&rotated_file)
            .ok()
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m));
        if inode.is_some() && inode != last_inode {
            last_inode = inode;
            rotations_seen += 1;
        }
    }
    assert!(ticks.len() > 100, "only {} ticks followed", ticks.len());
    let gaps: Vec<(u64, u64)> = ticks
        .windows(2)
        .filter(|w| w[1] != w[0] + 1)
        .map(|w| (w[0], w[1]))
        .collect();
    assert!(gaps.is_empty(), "follow lost or repeated lines at {gaps:?}");
}

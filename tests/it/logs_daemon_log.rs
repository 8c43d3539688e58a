//! The daemon's own `--log-file`: rotated by `[logs] daemon_max_bytes`/`daemon_keep`, and a
//! crash loop's repeated messages rate-limited with a count.

use std::time::Duration;

use crate::support::{Daemon, Repo, wait_for};

#[test]
fn a_crash_loop_rotates_the_daemon_log_and_suppresses_repeats() {
    let repo = Repo::new();
    repo.write(
        "crash.service",
        "[Unit]\nStartLimitIntervalSec=0\n\n[Service]\nExecStart=/bin/false\nRestart=always\nRestartSec=0\n",
    );
    repo.commit("a crash loop");
    let state = tempfile::tempdir().expect("state dir");
    let config = state.path().join("gitproc.toml");
    std::fs::write(
        &config,
        "[logs]\ndaemon_max_bytes = 4096\ndaemon_keep = 2\n",
    )
    .expect("config");
    let log = state.path().join("gitproc.log");
    let daemon = Daemon::start_args(
        vec![
            "--config".into(),
            config.display().to_string(),
            "--repo".into(),
            repo.path().display().to_string(),
            "--log-file".into(),
            log.display().to_string(),
        ],
        state,
    );
    let generation = |g: u32| {
        let mut p = log.clone().into_os_string();
        p.push(format!(".{g}"));
        std::path::PathBuf::from(p)
    };
    let read_all = || {
        [log.clone(), generation(1), generation(2)]
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("")
    };
    // The window is 10 s: a summary line appears once the first one is over.
    let text = wait_for(
        "a `suppressed N messages like:` line in the daemon log",
        Duration::from_secs(40),
        || {
            let text = read_all();
            text.contains("suppressed ").then_some(text)
        },
    );
    let line = text
        .lines()
        .find(|l| l.contains("suppressed "))
        .expect("summary line");
    let n: u64 = line
        .split("suppressed ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line:?}"));
    assert!(n > 0 && line.contains("messages like: "), "{line}");
    wait_for(
        "the daemon log to rotate twice",
        Duration::from_secs(40),
        || generation(2).exists().then_some(()),
    );
    assert!(
        !generation(3).exists(),
        "only daemon_keep = 2 generations kept"
    );
    for p in [log.clone(), generation(1), generation(2)] {
        let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        assert!(len <= 4096, "{} is {len} bytes (limit 4096)", p.display());
    }
    assert!(daemon.try_status().is_some(), "the daemon still serves");
}

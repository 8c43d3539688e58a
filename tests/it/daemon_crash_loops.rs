//! Five units that exit at once and are restarted at once, forever (`ExecStart=/bin/false`,
//! `Restart=always`, `RestartSec=0`, `StartLimitIntervalSec=0`): the daemon's own CPU stays
//! bounded and every unit's log stays bounded by rotation (each restart writes lifecycle
//! lines into the unit's log). The CPU bound asserted is loose (< 90 % of one core over
//! 10 s, on a shared machine) so that it cannot flake; the figure itself is printed.
//! The long version is `bench/torture_crash_loop.py`.

use std::time::{Duration, Instant};

use crate::support::fault::{cpu_ticks, ticks_per_second};
use crate::support::{Daemon, Repo, unique};

const UNITS: usize = 5;
const MAX_BYTES: u64 = 4096;
const KEEP: u64 = 1;
const WINDOW: Duration = Duration::from_secs(10);

fn total_restarts(d: &Daemon, names: &[String]) -> u64 {
    names
        .iter()
        .map(|n| d.unit(n)["n_restarts"].as_u64().unwrap_or(0))
        .sum()
}

#[test]
fn five_crash_looping_units_cost_bounded_cpu_and_bounded_logs() {
    let repo = Repo::new();
    let names: Vec<String> = (0..UNITS)
        .map(|_| format!("{}.service", unique("loop")))
        .collect();
    for name in &names {
        repo.write(
            name,
            "[Unit]\nStartLimitIntervalSec=0\n\n[Service]\nExecStart=/bin/false\nRestart=always\nRestartSec=0\n",
        );
    }
    repo.commit("crash loops");
    let aside = tempfile::tempdir().expect("temp dir");
    let config = aside.path().join("gitproc.toml");
    std::fs::write(
        &config,
        format!("[logs]\nmax_bytes = {MAX_BYTES}\nkeep = {KEEP}\n"),
    )
    .expect("write config");
    let daemon = Daemon::start(
        repo.path(),
        &["--config", config.to_str().expect("utf-8 path")],
    );
    daemon.wait("every unit to have restarted", || {
        names
            .iter()
            .all(|n| daemon.unit(n)["n_restarts"].as_u64().unwrap_or(0) >= 3)
            .then_some(())
    });

    let pid = daemon.pid();
    let restarts0 = total_restarts(&daemon, &names);
    let ticks0 = cpu_ticks(pid);
    let t0 = Instant::now();
    std::thread::sleep(WINDOW);
    let ticks = cpu_ticks(pid) - ticks0;
    let elapsed = t0.elapsed().as_secs_f64();
    let restarts = total_restarts(&daemon, &names) - restarts0;
    let cpu = ticks as f64 / ticks_per_second() as f64 / elapsed;
    let daemon_log = std::fs::metadata(&daemon.log).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "crash loop of {UNITS} units: {restarts} restarts in {elapsed:.1} s ({:.0}/s), \
         daemon CPU {:.1} % of one core, daemon log {daemon_log} bytes",
        restarts as f64 / elapsed,
        cpu * 100.0
    );
    assert!(
        restarts >= 10 * UNITS as u64,
        "the units are not crash-looping ({restarts} restarts in {elapsed:.1} s): the test would prove nothing"
    );
    assert!(
        cpu < 0.9,
        "the daemon used {:.0} % of a core over {elapsed:.1} s for {UNITS} crash loops",
        cpu * 100.0
    );

    let logs = daemon.state.path().join("logs");
    for name in &names {
        let files: Vec<(String, u64)> = std::fs::read_dir(&logs)
            .expect("logs dir")
            .flatten()
            .filter_map(|e| {
                let f = e.file_name().to_string_lossy().into_owned();
                f.starts_with(&format!("{name}.log"))
                    .then(|| (f, e.metadata().map(|m| m.len()).unwrap_or(0)))
            })
            .collect();
        let total: u64 = files.iter().map(|(_, n)| n).sum();
        assert!(
            files.iter().any(|(f, _)| f.ends_with(".log.1")),
            "{name}: its log never rotated, so rotation was not exercised: {files:?}"
        );
        assert!(
            files.len() as u64 <= KEEP + 1 && total <= (KEEP + 1) * MAX_BYTES,
            "{name}: logs beyond max_bytes = {MAX_BYTES} x (keep = {KEEP} + 1): {files:?}"
        );
    }
}

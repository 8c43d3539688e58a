//! `gitproc daemon --dir PATH` (development mode) and an idle daemon that stays idle.

use std::time::{Duration, Instant};

use crate::support::{Daemon, service};

/// CPU time (user + system) of a process and all its threads, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of proc(5); `rest` starts at field 3.
    let get = |n: usize| {
        fields
            .get(n - 3)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(14) + get(15)
}

#[test]
fn an_idle_daemon_without_a_ref_watcher_does_not_spin() {
    let units = tempfile::tempdir().expect("units dir");
    for i in 0..20 {
        std::fs::write(
            units.path().join(format!("s{i}.service")),
            service("/bin/sleep 1000", ""),
        )
        .expect("write unit");
    }
    let daemon = Daemon::start_args(
        vec!["--dir".into(), units.path().display().to_string()],
        tempfile::tempdir().expect("state dir"),
    );
    for i in 0..20 {
        daemon.wait_running(&format!("s{i}.service"));
    }
    let first_check = daemon.status()["daemon"]["last_check"].as_u64();
    // Measure over a window: a spinning source loop re-reads the directory back to back
    // and burns a whole CPU; an idle daemon wakes a few times a second for the reap tick.
    let window = Duration::from_secs(2);
    let before = cpu_ticks(daemon.pid());
    let started = Instant::now();
    while started.elapsed() < window {
        std::thread::sleep(Duration::from_millis(100));
    }
    let used = cpu_ticks(daemon.pid()) - before;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    assert!(
        used * 1000 / hz < 300,
        "idle daemon used {used} ticks ({hz}/s) of CPU in {window:?}"
    );
    // The poll interval (10 s by default) was respected: no new check in the window.
    assert_eq!(
        daemon.status()["daemon"]["last_check"].as_u64(),
        first_check,
        "the source was checked again within the poll interval"
    );
}

//! Resource control (systemd.resource-control(5)), end to end with real processes as root:
//! limits written to the unit's cgroups (cgroup v2 where its controller is enabled, else
//! the controller's v1 hierarchy), joined before execve, an OOM kill ending with result
//! `oom-kill`, status showing limits and use, and the cgroups removed after the stop.
//!
//! Needs root and a writable v1 memory hierarchy or a v2 hierarchy with the memory
//! controller (fails under CI=true without, skips otherwise).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::require::{have_program, is_root, require};
use crate::support::{Daemon, Repo, WAIT, alive, service, wait_for};

/// Whether this machine lets the tests put units under memory limits: root, and a v1
/// memory hierarchy writable at the test's own cgroup (where the daemon makes its own).
fn memory_cgroup_writable() -> bool {
    if !is_root() {
        return false;
    }
    let Ok(own) = std::fs::read_to_string("/proc/self/cgroup") else {
        return false;
    };
    let v1 = own.lines().find_map(|l| {
        let mut p = l.splitn(3, ':');
        let _ = p.next();
        let ctrl = p.next()?;
        let path = p.next()?;
        ctrl.split(',')
            .any(|c| c == "memory")
            .then(|| path.to_string())
    });
    match v1 {
        Some(path) => {
            let dir = Path::new("/sys/fs/cgroup/memory").join(path.trim_start_matches('/'));
            nix::unistd::access(&dir, nix::unistd::AccessFlags::W_OK).is_ok()
        }
        None => std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory")),
    }
}

fn required() -> bool {
    require(
        "root and a writable memory cgroup (v1 /sys/fs/cgroup/memory or v2 with memory)",
        memory_cgroup_writable(),
    ) && require("python3", have_program("python3"))
}

/// The limit `key` as status reports it: (value written, file).
fn limit(unit: &Value, key: &str) -> Option<(String, PathBuf)> {
    unit["resources"]["limits"]
        .as_array()?
        .iter()
        .find_map(|w| {
            (w["key"] == key).then(|| {
                (
                    w["value"].as_str().unwrap_or_default().to_string(),
                    PathBuf::from(w["file"].as_str().unwrap_or_default()),
                )
            })
        })
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

/// The unit's cgroup v1 directories, from status.
fn v1_dirs(unit: &Value) -> Vec<PathBuf> {
    unit["resources"]["cgroups_v1"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_str())
                .map(PathBuf::from)
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn memory_max_ends_a_memory_hog_with_oom_kill() {
    if !required() {
        return;
    }
    let repo = Repo::new();
    // 1 MiB at a time (zero-filled, so touched) until the kernel steps in; MemorySwapMax=0
    // so that swap cannot absorb it.
    repo.write(
        "hog.service",
        &service(
            "/usr/bin/python3 -c 'import itertools; b = [bytearray(1 << 20) for _ in itertools.count()]'",
            "MemoryMax=32M\nMemorySwapMax=0\n",
        ),
    );
    repo.commit("a memory hog under MemoryMax=32M");
    let daemon = Daemon::start(repo.path(), &[]);
    let unit = daemon.wait_unit("hog.service", "failed by the OOM killer", |u| {
        u["active_state"] == "failed"
    });
    assert_eq!(unit["result"], "oom-kill", "{unit:#}");
    assert_eq!(unit["exec_main_code"], "killed", "{unit:#}");
    assert_eq!(unit["exec_main_status"], 9, "{unit:#}");
    let (value, file) = limit(&unit, "MemoryMax").expect("MemoryMax in status");
    assert_eq!(value, (32u64 << 20).to_string(), "{unit:#}");
    assert!(
        file.ends_with("memory.limit_in_bytes") || file.ends_with("memory.max"),
        "{unit:#}"
    );
    let text = daemon.cli(&["status", "hog.service"]);
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    assert!(text.contains("Result: oom-kill"), "{text}");
    let log = daemon.log_text();
    assert!(log.contains("OOM killer"), "{log}");
}

#[test]
fn tasks_max_makes_fork_fail_past_the_limit() {
    if !required() {
        return;
    }
    let repo = Repo::new();
    let out = repo.path().join("forks");
    let script = format!(
        r#"import os, time
n, err = 0, None
for i in range(20):
    try:
        pid = os.fork()
    except OSError as e:
        err = e.errno
        break
    if pid == 0:
        time.sleep(1000)
        os._exit(0)
    n += 1
open({out:?}, "w").write("%d %s" % (n, err))
time.sleep(1000)
"#,
        out = out.display().to_string()
    );
    repo.write("forker.py", &script);
    repo.write(
        "forker.service",
        &service(
            &format!(
                "/usr/bin/python3 {}",
                repo.path().join("forker.py").display()
            ),
            "TasksMax=5\n",
        ),
    );
    repo.commit("a fork loop under TasksMax=5");
    let daemon = Daemon::start(repo.path(), &[]);
    let pid = daemon.wait_running("forker.service");
    let result = wait_for("the fork loop to hit the limit", WAIT, || {
        std::fs::read_to_string(&out).ok().filter(|s| !s.is_empty())
    });
    // The main process and 4 children are 5 tasks; the 5th fork fails with EAGAIN.
    assert_eq!(
        result,
        format!("4 {}", libc::EAGAIN),
        "forks made and errno"
    );
    let unit = daemon.unit("forker.service");
    let (value, file) = limit(&unit, "TasksMax").expect("TasksMax in status");
    assert_eq!(value, "5");
    assert_eq!(read(&file), "5", "{}", file.display());
    // Current use is read for the units named (`status forker.service`), not the overview.
    assert!(unit["resources"]["tasks_current"].is_null(), "{unit:#}");
    let out = daemon.cli_ok(&["status", "forker.service", "--json"]);
    let named: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    let named = &named["units"][0];
    assert_eq!(named["resources"]["tasks_current"], 5, "{named:#}");
    daemon.cli_ok(&["stop", "forker.service"]);
    assert!(!alive(pid));
}

#[test]
fn cpu_quota_weight_and_allowed_cpus_are_written_and_cgroups_removed_after_stop() {
    if !required() {
        return;
    }
    let repo = Repo::new();
    repo.write(
        "cpu.service",
        &service(
            "/bin/sleep 1000",
            "CPUQuota=20%\nCPUWeight=50\nAllowedCPUs=0\nMemoryMax=64M\n",
        ),
    );
    repo.commit("CPU limits");
    let mut daemon = Daemon::start(repo.path(), &[]);
    let pid = daemon.wait_running("cpu.service");
    let unit = daemon.unit("cpu.service");
    let (quota, quota_file) = limit(&unit, "CPUQuota").expect("CPUQuota in status");
    if quota_file.ends_with("cpu.cfs_quota_us") {
        assert_eq!(quota, "20000");
        assert_eq!(read(&quota_file), "20000");
        assert_eq!(
            read(&quota_file.with_file_name("cpu.cfs_period_us")),
            "100000"
        );
        let (shares, file) = limit(&unit, "CPUWeight").expect("CPUWeight in status");
        assert_eq!((shares.as_str(), read(&file).as_str()), ("512", "512"));
    } else {
        assert_eq!(read(&quota_file), "20000 100000");
    }
    let (cpus, file) = limit(&unit, "AllowedCPUs").expect("AllowedCPUs in status");
    assert_eq!((cpus.as_str(), read(&file).as_str()), ("0", "0"));
    // The process itself is in them, from its first instruction (joined before execve).
    let status = read(Path::new(&format!("/proc/{pid}/status")));
    assert!(
        status.lines().any(|l| l == "Cpus_allowed_list:\t0"),
        "{status}"
    );
    let dirs = v1_dirs(&unit);
    for dir in &dirs {
        let procs = read(&dir.join("cgroup.procs"));
        assert!(
            procs.lines().any(|l| l == pid.to_string()),
            "{pid} not in {}: {procs}",
            dir.display()
        );
    }
    let text = daemon.cli(&["status", "cpu.service"]);
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    assert!(
        text.contains("Limits:") && text.contains("CPUQuota=") && text.contains("(max: 64.0M)"),
        "{text}"
    );

    daemon.cli_ok(&["stop", "cpu.service"]);
    assert!(!alive(pid));
    wait_for("the unit's cgroup v1 directories to go", WAIT, || {
        dirs.iter().all(|d| !d.exists()).then_some(())
    });
    // Started again, they come back; at shutdown they go with gitproc's own.
    daemon.cli_ok(&["start", "cpu.service"]);
    daemon.wait_running("cpu.service");
    assert!(dirs.iter().all(|d| d.exists()));
    let bases: Vec<PathBuf> = dirs
        .iter()
        .filter_map(|d| d.parent().map(Path::to_path_buf))
        .collect();
    daemon.shutdown();
    for d in dirs.iter().chain(&bases) {
        assert!(!d.exists(), "{} left after shutdown", d.display());
    }
}

/// A commit that changes only resource settings rewrites them in place, as systemd's
/// daemon-reload does: the main process keeps running, the new limit is in its cgroup, and
/// a controller it did not use before (cpu) is joined by its processes. Any other change
/// still restarts it.
#[test]
fn a_resource_only_change_is_applied_in_place_without_a_restart() {
    if !required() {
        return;
    }
    let repo = Repo::new();
    repo.write("live.service", &service("/bin/sleep 1000", "TasksMax=5\n"));
    repo.commit("TasksMax=5");
    let daemon = Daemon::start(repo.path(), &[]);
    let pid = daemon.wait_running("live.service");
    let (_, pids_max) = limit(&daemon.unit("live.service"), "TasksMax").expect("TasksMax");
    assert_eq!(read(&pids_max), "5");

    repo.write(
        "live.service",
        &service("/bin/sleep 1000", "TasksMax=7\nCPUQuota=50%\n"),
    );
    let commit = repo.commit("TasksMax=7, CPUQuota=50%");
    daemon.sync_to(&commit);
    let unit = daemon.wait_unit("live.service", "the new limits in status", |u| {
        limit(u, "CPUQuota").is_some()
    });
    assert_eq!(unit["main_pid"], pid, "restarted: {unit:#}");
    assert_eq!(unit["n_restarts"], 0, "{unit:#}");
    assert_eq!(read(&pids_max), "7");
    let (_, quota_file) = limit(&unit, "CPUQuota").expect("CPUQuota");
    let procs = read(&quota_file.with_file_name("cgroup.procs"));
    assert!(
        procs.lines().any(|l| l == pid.to_string()),
        "{pid} should have joined {}: {procs}",
        quota_file.display()
    );
    let log = daemon.log_text();
    assert!(log.contains("limits rewritten in place"), "{log}");

    // Not only resources: a restart, as for any change.
    repo.write(
        "live.service",
        &service("/bin/sleep 999", "TasksMax=7\nCPUQuota=50%\n"),
    );
    let commit = repo.commit("a new command line");
    daemon.sync_to(&commit);
    let unit = daemon.wait_unit("live.service", "the restart", |u| {
        u["main_pid"].as_i64().is_some_and(|p| p as i32 != pid)
    });
    assert_eq!(unit["active_state"], "active", "{unit:#}");
    assert!(!alive(pid));
}

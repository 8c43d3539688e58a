//! Process setup as systemd does it, end to end with the real daemon: `Limit*=` clamped
//! to the hard limit (setrlimit_closest), `OOMScoreAdjust=`, `IgnoreSIGPIPE=`, the
//! watchdog variables, `AmbientCapabilities=` / `CapabilityBoundingSet=`, and systemd's exit
//! codes for setup steps that fail (`exit 217/USER`, `exit 200/CHDIR`).

use std::path::{Path, PathBuf};

use crate::support::{Daemon, Repo, service};

/// A directory every user may write to (services running as `nobody` report there).
fn world_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut perms = std::fs::metadata(dir.path()).expect("stat").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o777);
    std::fs::set_permissions(dir.path(), perms).expect("chmod 0777");
    dir
}

/// An executable script in `dir` (readable by every user, unlike the repository).
fn script_in(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).expect("write script");
    let mut perms = std::fs::metadata(&path).expect("stat").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&path, perms).expect("chmod");
    path.display().to_string()
}

/// The contents of `file` once it ends with a newline (written whole by the service).
fn wait_line(daemon: &Daemon, file: &Path) -> String {
    daemon.wait(&format!("{} to be written", file.display()), || {
        let text = std::fs::read_to_string(file).ok()?;
        text.ends_with('\n').then(|| text.trim().to_string())
    })
}

/// The hexadecimal mask of a `/proc/<pid>/status` line such as `SigIgn:` as the service
/// itself wrote it.
fn mask_of(line: &str, field: &str) -> u64 {
    let hex = line
        .strip_prefix(field)
        .unwrap_or_else(|| panic!("{line:?} is not a {field} line"))
        .trim();
    u64::from_str_radix(hex, 16).unwrap_or_else(|e| panic!("{line:?}: {e}"))
}

/// The test process's own hard RLIMIT_NOFILE.
fn own_hard_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we own.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim.rlim_max
}

#[test]
fn limit_nofile_above_the_hard_limit_is_clamped_with_a_warning() {
    // redis' LimitNOFILE=65535 under a lower hard limit that the daemon may not raise: the
    // daemon runs without CAP_SYS_RESOURCE (dropped from the bounding set by setpriv, so
    // this holds whatever the test runs with) and with a hard limit below 65535.
    let hard = own_hard_nofile().min(4096);
    let repo = Repo::new();
    let out = repo.path().join("limits");
    repo.write(
        "redisish.service",
        &service(
            &crate::support::script(
                &repo,
                "limits.sh",
                &format!(
                    "echo \"$(ulimit -n) $(ulimit -Hn)\" > {o}.tmp && mv {o}.tmp {o}\nexec sleep 1000",
                    o = out.display()
                ),
            ),
            "LimitNOFILE=65535",
        ),
    );
    repo.commit("a limit above the hard limit");
    let daemon = daemon_without_cap_sys_resource(&repo, &format!("ulimit -n {hard} &&"));
    daemon.wait_running("redisish.service");
    assert_eq!(
        wait_line(&daemon, &out),
        format!("{hard} {hard}"),
        "soft and hard clamped to the daemon's hard limit"
    );
    let warning = format!(
        "LimitNOFILE=65535: above the hard limit, which may not be raised here; using {hard} as systemd does"
    );
    daemon.wait("the clamp warning in the unit's log", || {
        let logs = daemon.cli(&["logs", "redisish.service"]);
        String::from_utf8_lossy(&logs.stdout)
            .contains(&warning)
            .then_some(())
    });
}

/// A daemon on `repo` without CAP_SYS_RESOURCE (dropped from the bounding set by setpriv,
/// so this holds whatever the test runs with), under `extra` shell setup.
fn daemon_without_cap_sys_resource(repo: &Repo, extra: &str) -> Daemon {
    let state = tempfile::tempdir().expect("state dir");
    let args = vec!["--repo".to_string(), repo.path().display().to_string()];
    let wrapper = [
        "setpriv",
        "--bounding-set",
        "-sys_resource",
        "--",
        "sh",
        "-c",
        &format!("{extra} exec \"$0\" \"$@\""),
    ]
    .map(String::from)
    .to_vec();
    Daemon::start_wrapped(args, state, wrapper, "info")
}

/// A service that reports its `oom_score_adj`, with `OOMScoreAdjust=value`.
fn oom_reporter(repo: &Repo, name: &str, value: i32) -> PathBuf {
    let out = repo.path().join(name);
    let exec = crate::support::script(
        repo,
        &format!("{name}.sh"),
        &format!(
            "cat /proc/self/oom_score_adj > {o}.tmp && mv {o}.tmp {o}\nexec sleep 1000",
            o = out.display()
        ),
    );
    repo.write(
        &format!("{name}.service"),
        &service(&exec, &format!("OOMScoreAdjust={value}")),
    );
    out
}

#[test]
fn oom_score_adjust_applies_and_a_refused_lowering_is_ignored() {
    // postgresql's OOMScoreAdjust=-900 under a manager that may not lower the score
    // (lowering needs CAP_SYS_RESOURCE): the kernel refuses, the service starts anyway with
    // a warning, as under systemd. Raising is always allowed and is applied.
    let own: i32 = std::fs::read_to_string("/proc/self/oom_score_adj")
        .expect("own oom_score_adj")
        .trim()
        .parse()
        .expect("a number");
    let repo = Repo::new();
    let lowered = oom_reporter(&repo, "pg", -900);
    let raised = oom_reporter(&repo, "cache", 500);
    repo.commit("OOM score adjustments");
    let daemon = daemon_without_cap_sys_resource(&repo, "");
    daemon.wait_running("pg.service");
    assert_eq!(
        wait_line(&daemon, &lowered),
        own.to_string(),
        "the refused value leaves the inherited score"
    );
    daemon.wait("the ignored OOMScoreAdjust= in the unit's log", || {
        let logs = daemon.cli(&["logs", "pg.service"]);
        let text = String::from_utf8_lossy(&logs.stdout).into_owned();
        (text.contains("OOMScoreAdjust=-900: ") && text.contains(": ignored, as systemd does"))
            .then_some(())
    });
    daemon.wait_running("cache.service");
    assert_eq!(wait_line(&daemon, &raised), "500");
}

#[test]
fn sigpipe_is_ignored_unless_ignore_sigpipe_no() {
    let repo = Repo::new();
    for (name, extra) in [("default", ""), ("keep", "IgnoreSIGPIPE=no")] {
        let out = repo.path().join(name);
        let exec = crate::support::script(
            &repo,
            &format!("{name}.sh"),
            &format!(
                "grep '^SigIgn:' /proc/self/status > {o}.tmp && mv {o}.tmp {o}\nexec sleep 1000",
                o = out.display()
            ),
        );
        repo.write(&format!("{name}.service"), &service(&exec, extra));
    }
    repo.commit("IgnoreSIGPIPE= default and no");
    let daemon = Daemon::start(repo.path(), &[]);
    let sigpipe_bit = 1u64 << (libc::SIGPIPE - 1);
    let default = mask_of(&wait_line(&daemon, &repo.path().join("default")), "SigIgn:");
    assert_ne!(
        default & sigpipe_bit,
        0,
        "SigIgn {default:#x}: SIGPIPE ignored"
    );
    let keep = mask_of(&wait_line(&daemon, &repo.path().join("keep")), "SigIgn:");
    assert_eq!(
        keep & sigpipe_bit,
        0,
        "SigIgn {keep:#x}: SIGPIPE at default"
    );
}

#[test]
fn watchdog_sec_exports_watchdog_usec_and_the_main_pid() {
    let repo = Repo::new();
    let out = repo.path().join("watchdog");
    let exec = crate::support::script(
        &repo,
        "wd.sh",
        &format!(
            "echo \"$WATCHDOG_USEC $WATCHDOG_PID $$\" > {o}.tmp && mv {o}.tmp {o}\nexec sleep 1000",
            o = out.display()
        ),
    );
    repo.write("kresd.service", &service(&exec, "WatchdogSec=5min"));
    repo.commit("a watchdog");
    let daemon = Daemon::start(repo.path(), &[]);
    let pid = daemon.wait_running("kresd.service");
    assert_eq!(
        wait_line(&daemon, &out),
        format!("300000000 {pid} {pid}"),
        "WATCHDOG_USEC, WATCHDOG_PID (the main pid) and the shell's own pid"
    );
}

/// A privileged port nothing listens on now (root may bind it; the services may not unless
/// given CAP_NET_BIND_SERVICE).
fn free_privileged_port() -> u16 {
    let start: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024);
    assert!(
        start > 700,
        "ip_unprivileged_port_start is {start}: every user may bind low ports here, so \
         AmbientCapabilities=CAP_NET_BIND_SERVICE cannot be shown"
    );
    let base = 700 + (std::process::id() % 200) as u16;
    (0..200u16)
        .map(|i| 700 + (base - 700 + i) % 200)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port in 700..900")
}

#[test]
fn ambient_capabilities_let_a_user_service_bind_a_low_port() {
    let port = free_privileged_port();
    let world = world_dir();
    let repo = Repo::new();
    let binder = |name: &str| -> (String, PathBuf) {
        let out = world.path().join(name);
        let exec = script_in(
            world.path(),
            &format!("{name}.py"),
            &format!(
                r#"#!/usr/bin/python3
import os, socket, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", {port}))
    result = "bound"
except OSError as e:
    result = type(e).__name__
s.close()
amb = [l.split()[1] for l in open("/proc/self/status") if l.startswith("CapAmb:")][0]
with open({tmp:?}, "w") as f:
    f.write("%s %s\n" % (result, amb))
os.rename({tmp:?}, {out:?})
time.sleep(1000)
"#,
                tmp = format!("{}.tmp", out.display()),
                out = out.display().to_string(),
            ),
        );
        (exec, out)
    };
    let (with_cap, with_out) = binder("withcap");
    let (without_cap, without_out) = binder("nocap");
    repo.write(
        "withcap.service",
        &service(
            &with_cap,
            "User=nobody\nAmbientCapabilities=CAP_NET_BIND_SERVICE",
        ),
    );
    repo.write("nocap.service", &service(&without_cap, "User=nobody"));
    repo.commit("a user service with and without CAP_NET_BIND_SERVICE");
    let daemon = Daemon::start(repo.path(), &[]);
    let bind_bit = 1u64 << 10;
    let with = wait_line(&daemon, &with_out);
    let (result, amb) = with.split_once(' ').expect("result and CapAmb");
    assert_eq!(result, "bound", "{with}");
    assert_eq!(u64::from_str_radix(amb, 16).ok(), Some(bind_bit), "{with}");
    let without = wait_line(&daemon, &without_out);
    assert!(
        without.starts_with("PermissionError "),
        "without the capability nobody may not bind port {port}: {without}"
    );
}

#[test]
fn capability_bounding_set_limits_the_bounding_set() {
    let repo = Repo::new();
    let out = repo.path().join("capbnd");
    let exec = crate::support::script(
        &repo,
        "bnd.sh",
        &format!(
            "grep '^CapBnd:' /proc/self/status > {o}.tmp && mv {o}.tmp {o}\nexec sleep 1000",
            o = out.display()
        ),
    );
    repo.write(
        "bounded.service",
        &service(
            &exec,
            "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\nCapabilityBoundingSet=CAP_KILL",
        ),
    );
    repo.commit("a bounding set");
    let daemon = Daemon::start(repo.path(), &[]);
    let bnd = mask_of(&wait_line(&daemon, &out), "CapBnd:");
    assert_eq!(bnd, (1 << 10) | (1 << 5), "CapBnd {bnd:#x}");
}

/// Waits for `name` to fail and returns its status JSON and `gitproc status` text.
fn failed(daemon: &Daemon, name: &str) -> (serde_json::Value, String) {
    let unit = daemon.wait_unit(name, "failed", |u| u["active_state"] == "failed");
    let out = daemon.cli(&["status", name]);
    (unit, String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn setup_failures_end_with_systemds_exit_codes() {
    let repo = Repo::new();
    repo.write(
        "nouser.service",
        &service("/bin/sleep 1000", "User=gitproc-no-such-user"),
    );
    repo.write(
        "nodir.service",
        &service(
            "/bin/sleep 1000",
            "WorkingDirectory=/nonexistent/gitproc-dir",
        ),
    );
    repo.commit("a bad User= and a bad WorkingDirectory=");
    let daemon = Daemon::start(repo.path(), &[]);
    let (unit, text) = failed(&daemon, "nouser.service");
    assert_eq!(unit["exec_main_status"], 217, "{unit:#}");
    assert_eq!(unit["exec_main_status_name"], "USER", "{unit:#}");
    assert_eq!(
        unit["error"], "User=gitproc-no-such-user: no such user",
        "{unit:#}"
    );
    assert!(text.contains("exit 217/USER"), "gitproc status:\n{text}");
    let (unit, text) = failed(&daemon, "nodir.service");
    assert_eq!(unit["exec_main_status"], 200, "{unit:#}");
    assert_eq!(unit["exec_main_status_name"], "CHDIR", "{unit:#}");
    assert_eq!(
        unit["error"], "WorkingDirectory=/nonexistent/gitproc-dir: No such file or directory",
        "{unit:#}"
    );
    assert!(text.contains("exit 200/CHDIR"), "gitproc status:\n{text}");
}

/// The diagnostics (as text) and the `[Service]` of a unit file.
fn load(text: &str) -> (Vec<String>, Option<gitproc::unit::model::ServiceSection>) {
    let loaded = gitproc::unit::parse_unit(
        "t.service",
        "t.service",
        text.as_bytes(),
        &[],
        &gitproc::unit::SpecifierContext::default(),
        &|_: &str| None,
    );
    let diags = loaded.diagnostics.iter().map(|d| d.to_string()).collect();
    (diags, loaded.unit.map(|u| u.service))
}

#[test]
fn the_loader_reads_capability_sets_and_ignore_sigpipe() {
    let (diags, svc) = load("[Service]\nExecStart=/bin/true\n");
    let svc = svc.expect("loads");
    assert!(svc.ignore_sigpipe, "IgnoreSIGPIPE= defaults to yes");
    assert_eq!(
        (svc.ambient_capabilities, svc.capability_bounding_set),
        (0, None)
    );
    assert!(diags.is_empty(), "{diags:#?}");

    let (diags, svc) = load(
        "[Service]\nExecStart=/bin/true\nIgnoreSIGPIPE=no\n\
         AmbientCapabilities=CAP_NET_BIND_SERVICE CAP_FROBNICATE\n\
         AmbientCapabilities=cap_net_raw\n\
         CapabilityBoundingSet=~CAP_SYS_ADMIN\n",
    );
    let svc = svc.expect("loads");
    assert!(!svc.ignore_sigpipe);
    assert_eq!(svc.ambient_capabilities, (1 << 10) | (1 << 13));
    assert_eq!(
        svc.capability_bounding_set,
        Some(gitproc::unit::capability::ALL & !(1 << 21))
    );
    assert_eq!(diags.len(), 1, "{diags:#?}");
    assert!(
        diags[0].contains("unknown capability CAP_FROBNICATE: ignored"),
        "{diags:#?}"
    );
    assert!(
        !diags.iter().any(|d| d.contains("not enforced")),
        "{diags:#?}"
    );

    // An empty bounding set drops everything, as in systemd.
    let (_, svc) = load("[Service]\nExecStart=/bin/true\nCapabilityBoundingSet=\n");
    assert_eq!(svc.expect("loads").capability_bounding_set, Some(0));
}

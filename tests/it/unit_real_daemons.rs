//! Real Debian 12 daemons run by the real `gitproc daemon` from their own, unmodified unit
//! files (copied from `/lib/systemd/system` into a git repository's `units/` directory):
//! each must become active with the right main pid, answer over its own protocol, and
//! stop cleanly with no process left. The packages are installed by `.ci/run` with a
//! `policy-rc.d` that keeps the installs from starting anything; under `CI=true` a missing
//! one fails the test.
//!
//! What each one exercises: redis-server (`Type=notify`, `User=`, `LimitNOFILE=` above the
//! hard limit, clamped), nginx (`Type=forking` with `PIDFile=`, `ExecStartPre=`,
//! `KillMode=mixed`), apache2 (`Type=forking` without `PIDFile=`: the main pid is guessed,
//! `ExecReload=`/`ExecStop=` through `apachectl`), memcached (`Type=simple` through a wrapper
//! that execs), ssh (`Type=notify` as root, `RuntimeDirectory=`, `ExecReload=` with
//! `$MAINPID`).
//!
//! They bind fixed ports (nginx and apache2 both 80), so they run one at a time: every
//! test holds [`one_at_a_time`] for its whole run.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::support::{Daemon, Repo, WAIT, alive, require, wait_for};

static PORTS: Mutex<()> = Mutex::new(());

/// Serializes the real-daemon tests (fixed ports, fixed PID files). A test that panicked
/// while holding it left nothing behind (its `Daemon` stopped everything on drop), so a
/// poisoned lock is taken as it is.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    PORTS.lock().unwrap_or_else(|e| e.into_inner())
}

const SYSTEM_UNITS: &str = "/lib/systemd/system";

/// A daemon's fixture: its unit files and the program the package installs.
struct Fixture {
    package: &'static str,
    units: &'static [&'static str],
    program: &'static str,
}

impl Fixture {
    /// Whether the package's files are here (under CI: fails the test when not).
    fn present(&self) -> bool {
        let have = self
            .units
            .iter()
            .all(|u| Path::new(SYSTEM_UNITS).join(u).is_file())
            && Path::new(self.program).is_file();
        require(
            &format!(
                "Debian package {} ({} and {}; `.ci/run` installs it)",
                self.package,
                self.units.join(", "),
                self.program
            ),
            have,
        )
    }

    /// A git repository whose `units/` holds the package's unit files, byte for byte.
    fn repo(&self) -> Repo {
        let repo = Repo::new();
        for unit in self.units {
            let text = std::fs::read_to_string(Path::new(SYSTEM_UNITS).join(unit))
                .unwrap_or_else(|e| panic!("reading {SYSTEM_UNITS}/{unit}: {e}"));
            repo.write(&format!("units/{unit}"), &text);
        }
        repo.commit(&format!("{} as Debian ships it", self.package));
        repo
    }

    /// Waits until `unit` is active with a main pid running the program; returns the pid.
    fn wait_main(&self, daemon: &Daemon, unit: &str) -> i32 {
        let program = self.program;
        let u = daemon.wait_unit_for(
            unit,
            &format!("{unit} to be active with {program} as its main process"),
            WAIT * 3,
            |u| {
                u["active_state"] == "active"
                    && u["main_pid"]
                        .as_i64()
                        .is_some_and(|p| is_program(p as i32, program))
            },
        );
        u["main_pid"].as_i64().unwrap_or_default() as i32
    }

    /// The live processes running the package's program right now.
    fn processes(&self) -> Vec<i32> {
        crate::support::all_pids()
            .into_iter()
            .filter(|&pid| is_program(pid, self.program) && alive(pid))
            .collect()
    }

    /// Starts `gitproc daemon` on a repository of the unit files and waits until `unit` is
    /// active with a main pid running the program. Returns the daemon and that pid.
    /// Processes of the program that were already running (none, normally) are ignored.
    fn run(&self, unit: &str) -> Running {
        let before = self.processes();
        let repo = self.repo();
        let daemon = Daemon::start(repo.path(), &["--units-dir", "units"]);
        let main = self.wait_main(&daemon, unit);
        Running {
            daemon,
            _repo: repo,
            main,
            before,
        }
    }
}

/// A daemon under gitproc, with what was there before it.
struct Running {
    daemon: Daemon,
    _repo: Repo,
    main: i32,
    before: Vec<i32>,
}

impl Running {
    /// `gitproc stop`, then: the unit is inactive with result success and no process of
    /// the program is left but those that ran before the test.
    fn stop_cleanly(&self, fixture: &Fixture, unit: &str) {
        let out = self.daemon.cli(&["stop", unit]);
        assert!(out.status.success(), "gitproc stop {unit}: {out:?}");
        let u = self.daemon.wait_unit(unit, "stopped", |u| {
            u["active_state"] == "inactive" || u["active_state"] == "failed"
        });
        assert_eq!(u["active_state"], "inactive", "a clean stop: {u:#}");
        assert_eq!(u["result"], "success", "a clean stop: {u:#}");
        wait_for(
            &format!("every {} process to be gone", fixture.program),
            WAIT,
            || {
                let left: Vec<i32> = fixture
                    .processes()
                    .into_iter()
                    .filter(|p| !self.before.contains(p))
                    .collect();
                left.is_empty().then_some(())
            },
        );
        assert!(!alive(self.main), "main pid {} is gone", self.main);
    }
}

/// Whether `pid` runs `program` (symlinks resolved: Debian's redis-server is a link to
/// redis-check-rdb).
fn is_program(pid: i32, program: &str) -> bool {
    let real = std::fs::canonicalize(program).unwrap_or_else(|_| PathBuf::from(program));
    exe(pid).is_some_and(|e| e == real || e == Path::new(program))
}

/// The executable of `pid` (`None` once it is gone).
/// (redis-server sets a process title: argv[0] is rewritten, so `/proc/PID/exe` counts;
/// where that cannot be read, argv[0].)
fn exe(pid: i32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .or_else(|| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let first = cmd.split(|&b| b == 0).next()?;
            let first = String::from_utf8_lossy(first);
            Some(PathBuf::from(first.split_whitespace().next()?))
        })
}

/// The pid a PID file holds.
fn pid_in(path: &str) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Connects to 127.0.0.1:`port`, sends `request`, and returns what the server answered
/// (until it closes, or `want` appears, or a second passes), retrying until `WAIT` while
/// the port is not open yet or the answer lacks `want`.
fn probe(port: u16, request: &[u8], want: &str) -> String {
    wait_for(
        &format!("127.0.0.1:{port} to answer {want:?}"),
        WAIT,
        || {
            let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
            s.write_all(request).ok()?;
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while got.len() < 64 * 1024 {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
                if String::from_utf8_lossy(&got).contains(want) {
                    break;
                }
            }
            let text = String::from_utf8_lossy(&got).into_owned();
            text.contains(want).then_some(text)
        },
    )
}

/// A field of `/proc/PID/status` (`Uid`, ...), its first value.
fn proc_status(pid: i32, field: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.split_whitespace().next())
        .map(str::to_string)
}

/// The soft `Max open files` limit of `pid`.
fn nofile_soft(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    text.lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
}

const REDIS: Fixture = Fixture {
    package: "redis-server",
    units: &["redis-server.service"],
    program: "/usr/bin/redis-server",
};

#[test]
fn redis_server_runs_as_redis_with_notify_and_its_nofile_limit() {
    if !REDIS.present() {
        return;
    }
    let _one = one_at_a_time();
    let run = REDIS.run("redis-server.service");
    // Type=notify with User=redis: READY=1 came from an unprivileged process.
    let uid = proc_status(run.main, "Uid").unwrap_or_default();
    let redis_uid = nix::unistd::User::from_name("redis")
        .ok()
        .flatten()
        .map(|u| u.uid.as_raw().to_string());
    assert_eq!(Some(uid), redis_uid, "User=redis");
    // LimitNOFILE=65535, clamped to the hard limit gitproc itself has (systemd does so).
    let hard = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(_, h)| h)
        .unwrap_or(0);
    assert_eq!(nofile_soft(run.main), Some(65535.min(hard)), "LimitNOFILE=");
    let pong = probe(6379, b"PING\r\n", "+PONG");
    assert!(pong.starts_with("+PONG"), "{pong}");
    run.stop_cleanly(&REDIS, "redis-server.service");
}

const NGINX: Fixture = Fixture {
    package: "nginx",
    units: &["nginx.service"],
    program: "/usr/sbin/nginx",
};

#[test]
fn nginx_forks_writes_its_pid_file_and_serves_http() {
    if !NGINX.present() {
        return;
    }
    let _one = one_at_a_time();
    let run = NGINX.run("nginx.service");
    assert_eq!(
        pid_in("/run/nginx.pid"),
        Some(run.main),
        "main pid from PIDFile="
    );
    let page = probe(80, b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n", "\r\n\r\n");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("Server: nginx"), "{page}");
    run.stop_cleanly(&NGINX, "nginx.service");
}

const APACHE: Fixture = Fixture {
    package: "apache2",
    units: &["apache2.service"],
    program: "/usr/sbin/apache2",
};

#[test]
fn apache2_forks_without_a_pid_file_and_its_main_pid_is_guessed() {
    if !APACHE.present() {
        return;
    }
    let _one = one_at_a_time();
    let run = APACHE.run("apache2.service");
    // No PIDFile= in the unit: GuessMainPID= found the process apache wrote to its own.
    assert_eq!(
        pid_in("/run/apache2/apache2.pid"),
        Some(run.main),
        "the guessed main pid is apache's parent process"
    );
    let page = probe(80, b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n", "\r\n\r\n");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("Server: Apache"), "{page}");
    // ExecReload=apachectl graceful: the same parent goes on serving.
    let out = run.daemon.cli(&["reload", "apache2.service"]);
    assert!(out.status.success(), "{out:?}");
    let u = run
        .daemon
        .wait_unit("apache2.service", "back from reload", |u| {
            u["sub_state"] == "running"
        });
    assert_eq!(u["main_pid"].as_i64(), Some(i64::from(run.main)), "{u:#}");
    probe(
        80,
        b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n",
        "HTTP/1.1 200",
    );
    run.stop_cleanly(&APACHE, "apache2.service");
}

const MEMCACHED: Fixture = Fixture {
    package: "memcached",
    units: &["memcached.service"],
    program: "/usr/bin/memcached",
};

#[test]
fn memcached_answers_version() {
    if !MEMCACHED.present() {
        return;
    }
    let _one = one_at_a_time();
    let run = MEMCACHED.run("memcached.service");
    let version = probe(11211, b"version\r\n", "\r\n");
    assert!(version.starts_with("VERSION 1."), "{version}");
    run.stop_cleanly(&MEMCACHED, "memcached.service");
}

const SSH: Fixture = Fixture {
    package: "openssh-server",
    units: &["ssh.service"],
    program: "/usr/sbin/sshd",
};

#[test]
fn sshd_is_ready_by_notify_greets_and_reloads_by_mainpid() {
    if !SSH.present() {
        return;
    }
    let _one = one_at_a_time();
    let run = SSH.run("ssh.service");
    assert!(
        Path::new("/run/sshd").is_dir(),
        "RuntimeDirectory=sshd exists while it runs"
    );
    let banner = probe(22, b"", "\r\n");
    assert!(banner.starts_with("SSH-2.0-OpenSSH"), "{banner}");
    // ExecReload=/bin/kill -HUP $MAINPID: sshd re-executes itself in place (same pid)
    // and says READY=1 again.
    let out = run.daemon.cli(&["reload", "ssh.service"]);
    assert!(out.status.success(), "{out:?}");
    let u = run
        .daemon
        .wait_unit("ssh.service", "back from reload", |u| {
            u["sub_state"] == "running"
        });
    assert_eq!(u["main_pid"].as_i64(), Some(i64::from(run.main)), "{u:#}");
    probe(22, b"", "SSH-2.0-");
    run.stop_cleanly(&SSH, "ssh.service");
    wait_for("RuntimeDirectory=sshd to be removed", WAIT, || {
        (!Path::new("/run/sshd").exists()).then_some(())
    });
}

const RSYSLOG: Fixture = Fixture {
    package: "rsyslog (and systemd, which ships syslog.socket)",
    units: &["rsyslog.service", "syslog.socket"],
    program: "/usr/sbin/rsyslogd",
};

/// The datagram socket systemd's `syslog.socket` listens on.
const SYSLOG_SOCKET: &str = "/run/systemd/journal/syslog";

#[test]
fn rsyslog_is_activated_through_syslog_socket_by_its_alias_and_logs_a_datagram() {
    if !RSYSLOG.present() {
        return;
    }
    let _one = one_at_a_time();
    // rsyslog.service says Requires=syslog.socket and Alias=syslog.service; the socket
    // names no Service=, so it activates syslog.service: rsyslog, through the alias. A
    // socket-activated service waits for its first datagram, not for the commit.
    let before = RSYSLOG.processes();
    let repo = RSYSLOG.repo();
    let daemon = Daemon::start(repo.path(), &["--units-dir", "units"]);
    daemon.wait_unit("syslog.socket", "syslog.socket to listen", |u| {
        u["active_state"] == "active"
    });
    let idle = daemon.unit("rsyslog.service");
    assert_eq!(
        idle["active_state"], "inactive",
        "not started before a datagram: {idle:#}"
    );
    // The first datagram on the socket gitproc bound starts rsyslogd with the socket
    // handed over (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES).
    let client = std::os::unix::net::UnixDatagram::unbound().expect("a datagram socket");
    client
        .send_to(b"<13>gitproc-test: activation", SYSLOG_SOCKET)
        .expect("sending to syslog.socket");
    // Type=notify: active once rsyslogd said READY=1.
    let main = RSYSLOG.wait_main(&daemon, "rsyslog.service");
    let environ = std::fs::read(format!("/proc/{main}/environ")).unwrap_or_default();
    let environ: Vec<String> = environ
        .split(|&b| b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    for want in [
        "LISTEN_FDS=1".to_string(),
        format!("LISTEN_PID={main}"),
        "LISTEN_FDNAMES=syslog.socket".to_string(),
    ] {
        assert!(
            environ.contains(&want),
            "rsyslogd's environment lacks {want}: {environ:?}"
        );
    }
    // rsyslogd reads the handed-over socket only when the host booted with systemd
    // (sd_booted(): /run/systemd/system exists); elsewhere, as here, it listens on
    // /dev/log. Either way it logs: a message sent there reaches /var/log/syslog.
    let booted = Path::new("/run/systemd/system").is_dir();
    let path = if booted { SYSLOG_SOCKET } else { "/dev/log" };
    let mark = format!(
        "gitproc-rsyslog-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    wait_for(
        &format!("{mark} sent to {path} to reach /var/log/syslog"),
        WAIT,
        || {
            // Resent until it is there: /dev/log appears only once rsyslogd is up.
            let _ = client.send_to(format!("<13>gitproc-test: {mark}").as_bytes(), path);
            std::fs::read_to_string("/var/log/syslog")
                .ok()
                .filter(|t| t.contains(&mark))
                .map(|_| ())
        },
    );
    let run = Running {
        daemon,
        _repo: repo,
        main,
        before,
    };
    run.stop_cleanly(&RSYSLOG, "rsyslog.service");
}

//! `.socket` units end to end (systemd.socket(5), `Accept=no`): a real daemon on a real git
//! repository, a python3 service that takes its listening socket from fd 3 (sd_listen_fds
//! style) and answers, real TCP and unix clients. Plus the `[Socket]` loader (address
//! forms, defaults, `Accept=yes` refused) and `gitproc check` with socket dependencies.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use gitproc::tree::{Entry, FileTree};
use gitproc::unit::SpecifierContext;
use gitproc::unit::load::load_sockets;
use gitproc::unit::model::{ListenAddress, SocketType};

use crate::support::{Daemon, Repo, alive, bin, wait_for};

/// A port nobody listens on now (bound to 127.0.0.1:0, then released), so that tests run
/// in parallel.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// The service: writes `LISTEN_FDS LISTEN_PID its-own-pid LISTEN_FDNAMES` to `OUT`, then
/// serves fd 3: a stream socket answers each connection with `hello from PID` (exiting
/// after one when `once` is given), a datagram socket appends each datagram to `OUT.dgram`.
const SERVICE: &str = r#"
import os, socket, sys
out = sys.argv[1]
once = len(sys.argv) > 2 and sys.argv[2] == "once"
with open(out + ".tmp", "w") as f:
    f.write("%s %s %d %s\n" % (os.environ.get("LISTEN_FDS"), os.environ.get("LISTEN_PID"),
                               os.getpid(), os.environ.get("LISTEN_FDNAMES")))
os.rename(out + ".tmp", out)
s = socket.socket(fileno=3)
s.setblocking(True)
if s.type == socket.SOCK_STREAM:
    while True:
        c, _ = s.accept()
        c.sendall(b"hello from %d\n" % os.getpid())
        c.close()
        if once:
            sys.exit(0)
else:
    while True:
        data = s.recv(4096)
        with open(out + ".dgram", "ab") as f:
            f.write(data + b"\n")
"#;

/// Where a test keeps its files: the script, what the service reports, unix sockets.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().expect("temp dir");
        // The service may run as another user in a root CI run: let it write here.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        std::fs::write(dir.path().join("serve.py"), SERVICE).expect("script");
        Scratch { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A `[Service]` running the script with its report file `out`.
    fn service(&self, out: &str, extra: &str) -> String {
        format!(
            "[Service]\nExecStart=python3 {} {} {extra}\n",
            self.path("serve.py").display(),
            self.path(out).display()
        )
    }
}

/// `(LISTEN_FDS, LISTEN_PID, pid, LISTEN_FDNAMES)` as the service reported them.
fn report(path: &Path) -> Option<(String, String, i32, String)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut w = text.split_whitespace();
    Some((
        w.next()?.to_string(),
        w.next()?.to_string(),
        w.next()?.parse().ok()?,
        w.next()?.to_string(),
    ))
}

fn ask(port: u16) -> std::io::Result<String> {
    let mut c = TcpStream::connect(("127.0.0.1", port))?;
    c.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut line = String::new();
    BufReader::new(&mut c).read_line(&mut line)?;
    Ok(line.trim().to_string())
}

fn listening(u: &serde_json::Value) -> bool {
    u["active_state"] == "active" && u["sub_state"] == "listening"
}

#[test]
fn socket_activation_starts_the_service_on_the_first_connection_and_hands_it_the_listening_fd() {
    if !crate::support::require("python3", crate::support::have_program("python3")) {
        return;
    }
    let scratch = Scratch::new();
    let port = free_port();
    let repo = Repo::new();
    repo.write(
        "echo.socket",
        &format!("[Socket]\nListenStream=127.0.0.1:{port}\n"),
    );
    repo.write("echo.service", &scratch.service("env", "once"));
    repo.commit("a socket-activated echo service");
    let daemon = Daemon::start(repo.path(), &[]);

    daemon.wait_unit("echo.socket", "listening", listening);
    // Not started by the commit: only the socket listens.
    let svc = daemon.unit("echo.service");
    assert_eq!(svc["active_state"], "inactive", "{svc:#}");
    assert!(svc["main_pid"].is_null());
    assert!(
        !scratch.path("env").exists(),
        "the service ran before any connection"
    );

    // The first connection starts it; it accepts on fd 3 and answers.
    let answer = ask(port).expect("the first connection is answered");
    let (fds, listen_pid, pid, names) =
        wait_for("the service's report", Duration::from_secs(20), || {
            report(&scratch.path("env"))
        });
    assert_eq!(answer, format!("hello from {pid}"));
    assert_eq!(fds, "1", "LISTEN_FDS");
    assert_eq!(
        listen_pid,
        pid.to_string(),
        "LISTEN_PID is the service's own pid"
    );
    assert_eq!(
        names, "echo.socket",
        "FileDescriptorName= defaults to the unit's name"
    );

    // It exits after one connection; the socket listens again and the next connection
    // starts a new process.
    daemon.wait_unit("echo.service", "inactive again", |u| {
        u["active_state"] == "inactive"
    });
    daemon.wait_unit("echo.socket", "listening again", listening);
    std::fs::remove_file(scratch.path("env")).expect("remove report");
    let answer = ask(port).expect("the second connection is answered");
    let (_, _, second, _) = wait_for("the second report", Duration::from_secs(20), || {
        report(&scratch.path("env"))
    });
    assert_eq!(answer, format!("hello from {second}"));
    assert_ne!(second, pid, "a new process for the second connection");
}

#[test]
fn a_datagram_unix_socket_activates_its_service_with_socket_mode_and_fd_name() {
    if !crate::support::require("python3", crate::support::have_program("python3")) {
        return;
    }
    let scratch = Scratch::new();
    let sock = scratch.path("sub/dir/log.sock");
    let repo = Repo::new();
    repo.write(
        "log.socket",
        &format!(
            "[Socket]\nListenDatagram={}\nSocketMode=0620\nDirectoryMode=0750\nFileDescriptorName=logs\nService=collector.service\n",
            sock.display()
        ),
    );
    repo.write("collector.service", &scratch.service("env", ""));
    repo.commit("a datagram socket");
    let daemon = Daemon::start(repo.path(), &[]);
    daemon.wait_unit("log.socket", "listening", listening);
    let mode = std::fs::metadata(&sock)
        .expect("socket file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o620, "SocketMode=");
    let dir_mode = std::fs::metadata(scratch.path("sub/dir"))
        .expect("directory")
        .permissions()
        .mode();
    assert_eq!(
        dir_mode & 0o777,
        0o750,
        "DirectoryMode= for the directories made"
    );
    assert_eq!(daemon.unit("collector.service")["active_state"], "inactive");

    let client = UnixDatagram::unbound().expect("client");
    client.send_to(b"first", &sock).expect("send");
    client.send_to(b"second", &sock).expect("send");
    let pid = daemon.wait_running("collector.service");
    let got = wait_for("both datagrams", Duration::from_secs(20), || {
        let t = std::fs::read_to_string(scratch.path("env.dgram")).ok()?;
        (t.lines().count() >= 2).then_some(t)
    });
    assert_eq!(
        got, "first\nsecond\n",
        "nothing lost between activation and the service"
    );
    let (fds, listen_pid, reported, names) =
        report(&scratch.path("env")).expect("report written before serving");
    assert_eq!((fds.as_str(), names.as_str()), ("1", "logs"));
    assert_eq!(reported, pid);
    assert_eq!(listen_pid, pid.to_string());
    daemon.wait_unit("log.socket", "running while its service runs", |u| {
        u["active_state"] == "active" && u["sub_state"] == "running"
    });
}

#[test]
fn a_bind_failure_fails_the_socket_naming_the_address_and_errno() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let repo = Repo::new();
    repo.write(
        "web.socket",
        &format!("[Socket]\nListenStream=127.0.0.1:{port}\n"),
    );
    repo.write("web.service", "[Service]\nExecStart=/bin/sleep 1000\n");
    repo.commit("a socket on a port in use");
    let daemon = Daemon::start(repo.path(), &[]);
    let u = daemon.wait_unit("web.socket", "failed", |u| u["active_state"] == "failed");
    assert_eq!(u["result"], "resources", "{u:#}");
    let error = u["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("EADDRINUSE: 127.0.0.1:{port} is in use")),
        "{error}"
    );
    assert!(
        daemon.log_text().contains(&format!(
            "web.socket: failed to listen: ListenStream=127.0.0.1:{port}"
        )),
        "the daemon log names the unit and the address"
    );
    assert_eq!(daemon.unit("web.service")["active_state"], "inactive");
    drop(taken);
    // Once the port is free, an operator start listens.
    daemon.cli_ok(&["start", "web.socket"]);
    daemon.wait_unit("web.socket", "listening", listening);
}

#[test]
fn requires_a_socket_starts_the_socket_before_the_service() {
    let scratch = Scratch::new();
    let sock = scratch.path("syslog");
    let seen = scratch.path("seen");
    let repo = Repo::new();
    // As rsyslog.service and syslog.socket: the service Requires= a socket unit that
    // activates another name (syslog.service, an alias in Debian).
    repo.write(
        "syslog.socket",
        &format!(
            "[Unit]\nBefore=sockets.target\n[Socket]\nListenDatagram={}\nSocketMode=0666\nPassCredentials=yes\nService=syslog.service\n",
            sock.display()
        ),
    );
    repo.write("syslog.service", "[Service]\nExecStart=/bin/sleep 1000\n");
    repo.write(
        "logger.service",
        &format!(
            "[Unit]\nRequires=syslog.socket\n[Service]\nExecStart=/bin/sh -c 'if test -S {sock}; then echo yes > {seen}; else echo no > {seen}; fi; exec sleep 1000'\n",
            sock = sock.display(),
            seen = seen.display()
        ),
    );
    repo.commit("a service requiring a socket");
    let check = Command::new(bin())
        .args(["check", &repo.path().display().to_string()])
        .output()
        .expect("gitproc check");
    assert!(
        check.status.success(),
        "check accepts Requires=syslog.socket: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    // The bind is slowed down (a debug-build hook), so a start that did not wait for it
    // would see no socket.
    let daemon = Daemon::start_wrapped(
        vec!["--repo".into(), repo.path().display().to_string()],
        tempfile::tempdir().expect("state dir"),
        vec!["env".into(), "GITPROC_TEST_SLOW_BIND=syslog.socket".into()],
        "info",
    );
    daemon.wait_running("logger.service");
    let got = wait_for(
        "the service's look at the socket",
        Duration::from_secs(20),
        || {
            std::fs::read_to_string(&seen)
                .ok()
                .filter(|t| t.ends_with('\n'))
        },
    );
    assert_eq!(
        got, "yes\n",
        "the socket was bound before the service started"
    );
    daemon.wait_unit("syslog.socket", "listening", listening);
}

#[test]
fn stopping_a_socket_closes_it_and_starting_it_listens_again() {
    if !crate::support::require("python3", crate::support::have_program("python3")) {
        return;
    }
    let scratch = Scratch::new();
    let port = free_port();
    let unix = scratch.path("ctl.sock");
    let repo = Repo::new();
    repo.write(
        "api.socket",
        &format!(
            "[Socket]\nListenStream=127.0.0.1:{port}\nListenStream={}\nRemoveOnStop=yes\n",
            unix.display()
        ),
    );
    repo.write("api.service", &scratch.service("env", "once"));
    repo.commit("a socket with two listeners");
    let daemon = Daemon::start(repo.path(), &[]);
    daemon.wait_unit("api.socket", "listening", listening);
    assert!(unix.exists());

    daemon.cli_ok(&["stop", "api.socket"]);
    let u = daemon.wait_unit("api.socket", "inactive", |u| {
        u["active_state"] == "inactive"
    });
    assert_eq!(u["override"], "stopped");
    wait_for(
        "connections to be refused",
        Duration::from_secs(20),
        || match TcpStream::connect(("127.0.0.1", port)) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(()),
            _ => None,
        },
    );
    wait_for(
        "RemoveOnStop= to remove the unix socket",
        Duration::from_secs(20),
        || (!unix.exists()).then_some(()),
    );
    assert!(!scratch.path("env").exists(), "nothing was activated");

    daemon.cli_ok(&["start", "api.socket"]);
    daemon.wait_unit("api.socket", "listening", listening);
    let answer = ask(port).expect("answered after the start");
    let (fds, _, pid, names) = wait_for("the report", Duration::from_secs(20), || {
        report(&scratch.path("env"))
    });
    assert_eq!(answer, format!("hello from {pid}"));
    assert_eq!(fds, "2", "both sockets are passed");
    assert_eq!(names, "api.socket:api.socket");
    wait_for(
        "the service to exit after its connection",
        Duration::from_secs(20),
        || (!alive(pid)).then_some(()),
    );
}

#[test]
fn list_sockets_shows_each_address_with_its_unit_and_service() {
    let scratch = Scratch::new();
    let port = free_port();
    let repo = Repo::new();
    repo.write(
        "dns.socket",
        &format!(
            "[Socket]\nListenStream=127.0.0.1:{port}\nListenDatagram=127.0.0.1:{port}\nService=resolver.service\n"
        ),
    );
    repo.write("resolver.service", "[Service]\nExecStart=/bin/sleep 1000\n");
    repo.write(
        "idle.socket",
        &format!(
            "[Socket]\nListenSequentialPacket={}\n",
            scratch.path("seq").display()
        ),
    );
    repo.write("idle.service", "[Service]\nExecStart=/bin/sleep 1000\n");
    repo.commit("two sockets");
    let daemon = Daemon::start(repo.path(), &[]);
    daemon.wait_unit("dns.socket", "listening", listening);
    daemon.wait_unit("idle.socket", "listening", listening);
    daemon.cli_ok(&["stop", "idle.socket"]);
    daemon.wait_unit("idle.socket", "inactive", |u| {
        u["active_state"] == "inactive"
    });

    let out = daemon.cli_ok(&["list-sockets"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("LISTEN")
            && lines[0].contains("UNIT")
            && lines[0].contains("ACTIVATES"),
        "{text}"
    );
    let rows: Vec<Vec<&str>> = lines[1..]
        .iter()
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect();
    let addr = format!("127.0.0.1:{port}");
    assert_eq!(
        rows,
        vec![
            vec![addr.as_str(), "dns.socket", "resolver.service"],
            vec![addr.as_str(), "dns.socket", "resolver.service"],
        ],
        "{text}"
    );
    assert!(text.contains("2 sockets listed."), "{text}");

    let out = daemon.cli_ok(&["list-sockets", "--all", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let rows = rows.as_array().expect("array");
    assert_eq!(rows.len(), 3, "{rows:#?}");
    let seq = rows
        .iter()
        .find(|r| r["unit"] == "idle.socket")
        .expect("the stopped socket with --all");
    assert_eq!(seq["type"], "SequentialPacket");
    assert_eq!(seq["active_state"], "inactive");
    assert!(
        rows.iter()
            .any(|r| r["type"] == "Datagram" && r["listen"] == addr)
    );

    let out = daemon.cli(&["status", "dns.socket"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("Listen: {addr} (Stream)")), "{text}");
    assert!(text.contains("Triggers: ● resolver.service"), "{text}");
}

/// Debian's rpcbind.socket listens on `0.0.0.0:111` and `[::]:111` with
/// `BindIPv6Only=ipv6-only`: without `IPV6_V6ONLY` the second bind is EADDRINUSE.
#[test]
fn bind_ipv6_only_lets_ipv4_and_ipv6_wildcards_share_a_port() {
    if !std::path::Path::new("/proc/net/if_inet6").exists() {
        crate::support::require("IPv6 on this host (/proc/net/if_inet6)", false);
        return;
    }
    let port = free_port();
    let repo = Repo::new();
    let socket = |only: &str, port: u16| {
        format!("[Socket]\n{only}ListenStream=0.0.0.0:{port}\nListenStream=[::]:{port}\n")
    };
    repo.write("both.socket", &socket("BindIPv6Only=ipv6-only\n", port));
    repo.write("both.service", "[Service]\nExecStart=/bin/sleep 1000\n");
    repo.commit("both families on one port");
    let daemon = Daemon::start(repo.path(), &[]);
    daemon.wait_unit("both.socket", "listening on both families", listening);
    TcpStream::connect(("127.0.0.1", port)).expect("IPv4 connect");
    TcpStream::connect(("::1", port)).expect("IPv6 connect");
    drop(daemon);
    // The same unit without the setting fails on the second bind, naming it.
    let repo = Repo::new();
    repo.write("both.socket", &socket("", free_port()));
    repo.write("both.service", "[Service]\nExecStart=/bin/sleep 1000\n");
    repo.commit("without BindIPv6Only=");
    let daemon = Daemon::start(repo.path(), &[]);
    let u = daemon.wait_unit("both.socket", "the dual-stack bind to fail", |u| {
        u["active_state"] == "failed"
    });
    let error = u["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("EADDRINUSE") && error.contains("[::]"),
        "{u:#}"
    );
}

fn tree(files: &[(&str, &str)]) -> FileTree {
    let mut t = FileTree::default();
    for (p, c) in files {
        t.entries
            .insert((*p).into(), Entry::File(c.as_bytes().to_vec()));
    }
    t
}

fn errors(
    all: &std::collections::BTreeMap<String, gitproc::unit::LoadedUnit>,
    n: &str,
) -> Vec<String> {
    all[n]
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.to_string())
        .collect()
}

#[test]
fn socket_loader_reads_systemds_address_forms_and_defaults() {
    let t = tree(&[(
        "a.socket",
        "[Socket]\nListenStream=8080\nListenStream=127.0.0.1:81\nListenStream=[::1]:82\nListenDatagram=/run/a/d.sock\nListenSequentialPacket=@abstract\nBacklog=16\nReusePort=yes\nFreeBind=true\nSocketUser=nobody\nPassCredentials=yes\n",
    )]);
    let all = load_sockets(&t, &SpecifierContext::default());
    let l = &all["a.socket"];
    let s = &l.unit.as_ref().expect("loads").socket;
    let got: Vec<(SocketType, String)> = s
        .listen
        .iter()
        .map(|l| (l.socket_type, l.address.to_string()))
        .collect();
    assert_eq!(
        got,
        vec![
            (SocketType::Stream, "[::]:8080".to_string()),
            (SocketType::Stream, "127.0.0.1:81".to_string()),
            (SocketType::Stream, "[::1]:82".to_string()),
            (SocketType::Datagram, "/run/a/d.sock".to_string()),
            (SocketType::SequentialPacket, "@abstract".to_string()),
        ]
    );
    assert_eq!(s.listen[0].address, ListenAddress::AnyPort(8080));
    assert_eq!(s.service, "a.service", "Service= defaults to the same name");
    assert_eq!(s.file_descriptor_name, "a.socket");
    assert_eq!(s.socket_mode, 0o666, "SocketMode= default");
    assert_eq!(s.backlog, 16);
    assert!(s.reuse_port && s.free_bind);
    assert_eq!(s.socket_user.as_deref(), Some("nobody"));
    assert!(
        l.diagnostics
            .iter()
            .any(|d| d.to_string().contains("PassCredentials= is not enforced")),
        "{:?}",
        l.diagnostics
    );
}

#[test]
fn socket_loader_errors_name_the_line() {
    let t = tree(&[
        ("yes.socket", "[Socket]\nListenStream=80\nAccept=yes\n"),
        (
            "none.socket",
            "[Unit]\nDescription=x\n[Socket]\nBacklog=3\n",
        ),
        (
            "bad.socket",
            "[Socket]\nListenStream=localhost:80\nListenSequentialPacket=9000\nListenDatagram=70000\n",
        ),
        ("svc.socket", "[Socket]\nListenStream=80\nService=x.timer\n"),
        (
            "web.service",
            "[Service]\nExecStart=/bin/true\nSockets=web.socket other.service\n",
        ),
    ]);
    let all = load_sockets(&t, &SpecifierContext::default());
    let e = errors(&all, "yes.socket");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].contains("yes.socket:3:"), "{e:?}");
    assert!(
        e[0].contains("Accept=yes is not supported by gitproc"),
        "{e:?}"
    );
    let e = errors(&all, "none.socket");
    assert!(e[0].contains("nothing to listen on"), "{e:?}");
    let e = errors(&all, "bad.socket");
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(
        e[0].contains("bad.socket:2:") && e[0].contains("not an IPv4 address"),
        "{e:?}"
    );
    assert!(
        e[1].contains("bad.socket:3:") && e[1].contains("unix socket"),
        "{e:?}"
    );
    assert!(
        e[2].contains("bad.socket:4:") && e[2].contains("invalid port"),
        "{e:?}"
    );
    let e = errors(&all, "svc.socket");
    assert!(e[0].contains("can only activate a .service"), "{e:?}");
    let services = gitproc::unit::load_tree(&t, &SpecifierContext::default());
    let e = errors(&services, "web.service");
    assert!(
        e[0].contains("web.service:3:") && e[0].contains("other.service is not a .socket unit"),
        "{e:?}"
    );
}

#[test]
fn check_reports_a_socket_whose_service_is_missing() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("lonely.socket"),
        "[Socket]\nListenStream=80\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("web.service"),
        "[Unit]\nRequires=lonely.socket\n[Service]\nExecStart=/bin/true\n",
    )
    .expect("write");
    let out = Command::new(bin())
        .args(["check", &dir.path().display().to_string()])
        .output()
        .expect("check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("lonely.socket:1:1")
            && text.contains("Service=: lonely.service is not a unit of this directory"),
        "{text}"
    );
}

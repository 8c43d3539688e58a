//! The daemon following remotes that are not a plain local path: HTTP (a real
//! `git http-backend` on 127.0.0.1), `git://` (a real `git daemon`) and `file://`,
//! including a remote that goes away.

use std::path::Path;

use crate::support::git_fixture::{GitFixture, HttpGitServer};
use crate::support::{Daemon, alive, cmdline_once_exec, service};
use serde_json::Value;

fn source_error(daemon: &Daemon) -> Value {
    daemon.status()["daemon"]["source_error"].clone()
}

#[test]
fn follows_a_remote_over_http_and_applies_a_new_commit_after_sync() {
    let fx = GitFixture::new();
    fx.write("a.service", &service("/bin/sleep 1000", ""));
    fx.write("b.service", &service("/bin/sleep 1001", ""));
    let first = fx.commit("two units");
    let server = HttpGitServer::start(fx.dir.path());
    let url = server.url("remote.git");
    let daemon = Daemon::start(Path::new(&url), &[]);
    let a = daemon.wait_running("a.service");
    let b = daemon.wait_running("b.service");
    assert_eq!(daemon.status()["daemon"]["commit"], first);
    assert_eq!(daemon.status()["daemon"]["repo"], url);

    fx.write("a.service", &service("/bin/sleep 2000", ""));
    let second = fx.commit("change a");
    let summary = daemon.sync();
    assert_eq!(
        summary["commit"], second,
        "sync applies the new tip: {summary:#}"
    );
    assert_eq!(
        summary["restarted"],
        serde_json::json!(["a.service"]),
        "{summary:#}\nlog:\n{}",
        daemon.log_text()
    );
    let new = daemon.wait_unit("a.service", "restarted", |u| {
        u["sub_state"] == "running" && u["main_pid"].is_i64() && u["main_pid"] != a
    })["main_pid"]
        .as_i64()
        .unwrap_or_default() as i32;
    assert_eq!(cmdline_once_exec(new, "/bin/sleep 2000"), "/bin/sleep 2000");
    assert_eq!(daemon.main_pid("b.service"), Some(b));
    assert!(source_error(&daemon).is_null());

    // Between polls (10 s apart) the daemon leaves the remote alone. This waits a fixed
    // time on purpose: it shows that something does not happen.
    server.take_requests();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let requests = server.take_requests();
    assert!(
        requests.is_empty(),
        "no requests between polls, got {requests:?}"
    );
}

#[test]
fn an_unreachable_remote_keeps_everything_running_and_recovers() {
    let fx = GitFixture::new();
    fx.write("a.service", &service("/bin/sleep 1000", ""));
    let first = fx.commit("one unit");
    let server = HttpGitServer::start(fx.dir.path());
    let port = server.port;
    let url = server.url("remote.git");
    let mut daemon = Daemon::start(Path::new(&url), &[]);
    let a = daemon.wait_running("a.service");

    drop(server);
    fx.write("a.service", &service("/bin/sleep 2000", ""));
    let second = fx.commit("change a while the server is down");
    let reply = daemon.sync();
    assert_eq!(reply["changed"], false, "{reply:#}");
    let error = source_error(&daemon);
    let text = error.as_str().unwrap_or_default();
    assert!(
        text.contains("unreachable") && text.contains(&url),
        "status shows why the source failed: {error}"
    );
    // A second failed check does not change anything either, and the daemon lives on.
    daemon.sync();
    let status = daemon.status();
    assert_eq!(status["daemon"]["commit"], first);
    assert_eq!(
        daemon.main_pid("a.service"),
        Some(a),
        "a keeps running: {:#}\nlog:\n{}",
        daemon.unit("a.service"),
        daemon.log_text()
    );
    assert!(alive(a));
    let child = daemon.child.as_mut().expect("daemon child");
    assert!(
        matches!(child.try_wait(), Ok(None)),
        "the daemon must not exit because its remote is unreachable"
    );

    let _server = HttpGitServer::start_on(fx.dir.path(), port);
    daemon.sync_to(&second);
    assert!(
        source_error(&daemon).is_null(),
        "the error clears on recovery"
    );
    let new = daemon.wait_unit("a.service", "restarted with the new commit", |u| {
        u["sub_state"] == "running" && u["main_pid"].is_i64() && u["main_pid"] != a
    })["main_pid"]
        .as_i64()
        .unwrap_or_default() as i32;
    assert_eq!(cmdline_once_exec(new, "/bin/sleep 2000"), "/bin/sleep 2000");
    let log = daemon.log_text();
    assert_eq!(
        log.matches("is unreachable").count(),
        1,
        "the failure is logged once, not once per check:\n{log}"
    );
}

#[test]
fn follows_a_file_url_remote() {
    let fx = GitFixture::new();
    fx.write("units/a.service", &service("/bin/sleep 1000", ""));
    fx.commit("one unit");
    let url = format!("file://{}", fx.bare.display());
    let daemon = Daemon::start(Path::new(&url), &["--units-dir", "units"]);
    let a = daemon.wait_running("a.service");

    fx.write("units/b.service", &service("/bin/sleep 1001", ""));
    let second = fx.commit("add b");
    daemon.sync_to(&second);
    daemon.wait_running("b.service");
    assert_eq!(daemon.main_pid("a.service"), Some(a));
}

#[test]
fn a_remote_unreachable_at_start_up_is_retried_until_it_answers() {
    let fx = GitFixture::new();
    fx.write("a.service", &service("/bin/sleep 1000", ""));
    let first = fx.commit("one unit");
    // Learn a free port, then stop the server: the daemon starts with nothing to fetch.
    let server = HttpGitServer::start(fx.dir.path());
    let (port, url) = (server.port, server.url("remote.git"));
    drop(server);
    let mut daemon = Daemon::start(Path::new(&url), &[]);
    let status = daemon.status();
    assert!(
        status["daemon"]["source_error"]
            .as_str()
            .is_some_and(|e| e.contains("unreachable")),
        "{status:#}"
    );
    assert!(status["daemon"]["commit"].is_null());
    let child = daemon.child.as_mut().expect("daemon child");
    assert!(
        matches!(child.try_wait(), Ok(None)),
        "the daemon keeps running"
    );

    let _server = HttpGitServer::start_on(fx.dir.path(), port);
    daemon.sync_to(&first);
    daemon.wait_running("a.service");
    assert!(source_error(&daemon).is_null());
}

/// `git daemon` serving the fixture's bare repository on 127.0.0.1; killed on drop.
struct GitDaemon {
    child: std::process::Child,
    port: u16,
}

impl GitDaemon {
    fn start(base: &Path) -> GitDaemon {
        // A free port: bind, read it, let go (git daemon binds it a moment later).
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        // `git-daemon` itself, not `git daemon`: the `git` wrapper runs it as a child of
        // its own, which killing the wrapper would leave behind.
        let out = std::process::Command::new("git")
            .arg("--exec-path")
            .output()
            .expect("run git --exec-path");
        let exec_path = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let child = std::process::Command::new(Path::new(&exec_path).join("git-daemon"))
            .args(["--reuseaddr", "--export-all", "--listen=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run git daemon");
        let server = GitDaemon { child, port };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "git daemon did not listen on 127.0.0.1:{port} within 10 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        server
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn follows_a_git_daemon_remote() {
    let fx = GitFixture::new();
    fx.write("a.service", &service("/bin/sleep 1000", ""));
    let first = fx.commit("one unit");
    let base = fx.bare.parent().expect("the bare repository's directory");
    let name = fx.bare.file_name().expect("a name").to_string_lossy();
    let server = GitDaemon::start(base);
    let url = format!("git://127.0.0.1:{}/{name}", server.port);
    let daemon = Daemon::start(Path::new(&url), &[]);
    let a = daemon.wait_running("a.service");
    assert_eq!(daemon.status()["daemon"]["commit"], first);

    fx.write("b.service", &service("/bin/sleep 1001", ""));
    let second = fx.commit("add b");
    daemon.sync_to(&second);
    daemon.wait_running("b.service");
    assert_eq!(daemon.main_pid("a.service"), Some(a));
    assert!(source_error(&daemon).is_null());
}

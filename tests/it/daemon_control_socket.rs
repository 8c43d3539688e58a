//! The control socket `<state-dir>/gitproc.sock`: who may connect, and that no client —
//! garbage, oversized, half-written, vanished, or fifty at once — stops the daemon from
//! answering everyone else promptly.

use crate::support;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use crate::support::{Daemon, Repo, WAIT, service, wait_for};
use gitproc::control::client;
use gitproc::control::protocol::{MAX_REQUEST_BYTES, Verb};
use serde_json::Value;

/// The uid/gid of `nobody` on Debian.
const NOBODY: u32 = 65534;

/// How long a status may take while another client misbehaves (generous for a loaded box,
/// far below the server's 30 s idle timeout, which is what a blocking server would show).
const PROMPT: Duration = Duration::from_secs(5);

fn daemon() -> (Repo, Daemon) {
    let repo = Repo::new();
    repo.write("a.service", &service("/bin/sleep 1000", ""));
    repo.commit("one unit");
    let daemon = Daemon::start(repo.path(), &[]);
    daemon.wait_running("a.service");
    (repo, daemon)
}

fn connect(daemon: &Daemon) -> UnixStream {
    let stream = UnixStream::connect(daemon.socket()).expect("connect to the control socket");
    stream
        .set_read_timeout(Some(WAIT))
        .expect("set read timeout");
    stream
}

/// Reads one reply line.
fn read_reply(stream: &UnixStream) -> Value {
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .expect("read a reply line");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("reply {line:?} is not JSON: {e}"))
}

fn request(stream: &mut UnixStream, line: &[u8]) -> Value {
    stream.write_all(line).expect("write request");
    read_reply(stream)
}

/// A status from a fresh connection answers, and quickly.
fn assert_status_prompt(daemon: &Daemon, while_what: &str) {
    let started = Instant::now();
    let reply = client::call(&daemon.socket(), Verb::Status { units: vec![] })
        .unwrap_or_else(|e| panic!("status failed while {while_what}: {e}"));
    assert!(reply.ok, "status while {while_what}: {reply:?}");
    let took = started.elapsed();
    assert!(took < PROMPT, "status took {took:?} while {while_what}");
}

#[test]
fn the_socket_is_private_to_its_owner() {
    let (_repo, daemon) = daemon();
    let mode = std::fs::metadata(daemon.socket())
        .expect("socket exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");
}

/// `gitproc status` run as `nobody`.
fn status_as_nobody(daemon: &Daemon) -> std::process::Output {
    std::process::Command::new(support::bin())
        .args(["status", "--state-dir"])
        .arg(daemon.state.path())
        .env_remove("GITPROC_CONFIG")
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .expect("run gitproc as nobody")
}

#[test]
fn a_non_permitted_uid_is_refused_and_logged() {
    if !crate::support::require(
        "root (to run a client as nobody)",
        crate::support::is_root(),
    ) {
        return;
    }
    let (_repo, daemon) = daemon();
    // With the default modes the kernel refuses (the socket is 0600 in a 0700 directory).
    let out = status_as_nobody(&daemon);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Permission denied"), "{err}");

    // Opened up by a careless operator, the daemon's own SO_PEERCRED check still refuses.
    let dir = daemon.state.path();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    std::fs::set_permissions(daemon.socket(), std::fs::Permissions::from_mode(0o666))
        .expect("chmod socket");
    let out = status_as_nobody(&daemon);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("permission denied"), "{err}");
    assert!(out.stdout.is_empty(), "leaked status to nobody");
    wait_for("the refusal in the daemon log", WAIT, || {
        daemon
            .log_text()
            .contains("permission denied for uid 65534")
            .then_some(())
    });
    // Root still gets in.
    assert_status_prompt(&daemon, "after refusing nobody");
}

#[test]
fn garbage_unknown_verbs_and_wrong_versions_get_error_replies_on_a_usable_connection() {
    let (_repo, daemon) = daemon();
    let mut s = connect(&daemon);
    let cases: [(&[u8], &str); 6] = [
        (b"hello there\n", "malformed JSON"),
        (b"\x00\xff\xfe\n", "malformed JSON"),
        (b"[1,2,3]\n", "version"),
        (b"{\"v\":1,\"verb\":\"explode\"}\n", "invalid request"),
        (b"{\"v\":1}\n", "invalid request"),
        (
            b"{\"v\":2,\"verb\":\"ping\"}\n",
            "unsupported protocol version 2",
        ),
    ];
    for (line, expected) in cases {
        let reply = request(&mut s, line);
        assert_eq!(reply["ok"], false, "{line:?}: {reply}");
        assert_eq!(reply["v"], 1, "{reply}");
        let error = reply["error"].as_str().unwrap_or_default();
        assert!(error.contains(expected), "{line:?}: {error}");
    }
    // Same connection, now a good request.
    let reply = request(&mut s, b"{\"v\":1,\"verb\":\"ping\"}\n");
    assert_eq!(reply["ok"], true, "{reply}");
    assert_status_prompt(&daemon, "after garbage");
}

#[test]
fn an_oversized_request_is_refused_and_the_connection_closed() {
    let (_repo, daemon) = daemon();
    let mut s = connect(&daemon);
    let mut big = br#"{"v":1,"verb":"status","units":[""#.to_vec();
    big.resize(MAX_REQUEST_BYTES + 4096, b'x');
    big.extend_from_slice(b"\"]}\n");
    let writer = {
        let mut w = s.try_clone().expect("clone");
        // The server may close before reading everything: a write error is expected then.
        std::thread::spawn(move || {
            let _ = w.write_all(&big);
        })
    };
    let reply = read_reply(&s);
    let _ = writer.join();
    assert_eq!(reply["ok"], false, "{reply}");
    assert!(
        reply["error"]
            .as_str()
            .is_some_and(|e| e.contains("too large")),
        "{reply}"
    );
    // Then EOF: the server dropped the connection rather than parse the rest.
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(
        !String::from_utf8_lossy(&rest).contains("\"ok\":true"),
        "answered the tail of an oversized request: {rest:?}"
    );
    // A request just under the limit is still served.
    let mut fits = br#"{"v":1,"verb":"status","units":[""#.to_vec();
    fits.resize(MAX_REQUEST_BYTES - 64, b'y');
    fits.extend_from_slice(b"\"]}\n");
    let reply = request(&mut connect(&daemon), &fits);
    assert_eq!(reply["exit"], 4, "unknown unit expected: {reply}");
    assert_status_prompt(&daemon, "after an oversized request");
}

#[test]
fn a_half_written_request_does_not_hold_up_other_clients() {
    let (_repo, daemon) = daemon();
    let mut slow = connect(&daemon);
    slow.write_all(br#"{"v":1,"verb":"sta"#)
        .expect("write half a request");
    // Idle, connected-but-silent clients too.
    let silent: Vec<UnixStream> = (0..5).map(|_| connect(&daemon)).collect();
    for _ in 0..3 {
        assert_status_prompt(&daemon, "a client holds half a request");
    }
    let out = daemon.cli(&["status"]);
    assert_eq!(out.status.code(), Some(0));
    // The slow client may still finish its request and be answered.
    let reply = request(&mut slow, b"tus\"}\n");
    assert_eq!(reply["ok"], true, "{reply}");
    drop(silent);
}

#[test]
fn clients_that_vanish_leave_the_daemon_serving() {
    let (_repo, daemon) = daemon();
    for _ in 0..20 {
        drop(connect(&daemon));
    }
    // Ask, then leave before the answer: a status, and a blocking stop whose reply comes later.
    for line in [
        &b"{\"v\":1,\"verb\":\"status\"}\n"[..],
        &b"{\"v\":1,\"verb\":\"stop\",\"units\":[\"a.service\"]}\n"[..],
        &b"{\"v\":1,\"verb\":\"sync\"}\n"[..],
    ] {
        let mut s = connect(&daemon);
        s.write_all(line).expect("write");
        drop(s);
    }
    daemon.wait_unit("a.service", "stopped by the vanished client", |u| {
        u["active_state"] == "inactive"
    });
    assert_status_prompt(&daemon, "clients vanished");
    let out = daemon.cli(&["start", "a"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(daemon.log_text().lines().all(|l| !l.contains("panicked")));
}

#[test]
fn fifty_clients_at_once_all_get_answers() {
    let (_repo, daemon) = daemon();
    let socket = daemon.socket();
    let threads: Vec<_> = (0..50)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                (0..3)
                    .map(|_| client::call(&socket, Verb::Status { units: vec![] }))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut answered = 0;
    for t in threads {
        for reply in t.join().expect("client thread") {
            let reply = reply.expect("a reply for every client");
            assert!(reply.ok, "{reply:?}");
            assert_eq!(reply.data["units"][0]["name"], "a.service");
            answered += 1;
        }
    }
    assert_eq!(answered, 150);
}

#[test]
fn a_burst_of_two_hundred_clients_is_served_without_refusals() {
    let (_repo, daemon) = daemon();
    let socket = daemon.socket();
    let threads: Vec<_> = (0..200)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || client::call(&socket, Verb::Ping))
        })
        .collect();
    for t in threads {
        let reply = t.join().expect("client thread").expect("a reply");
        assert!(reply.ok, "{reply:?}");
    }
}

//! The control socket under abuse: hundreds of idle and trickling clients, one user
//! filling its quota, and a failing state save that operators must be told about.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support::{Daemon, Repo, WAIT, service, wait_for};
use gitproc::control::client;
use gitproc::control::protocol::Verb;
use gitproc::control::server::{Limits, REQUEST_DEADLINE};

fn daemon() -> (Repo, Daemon) {
    let repo = Repo::new();
    repo.write("a.service", &service("/bin/sleep 1000", ""));
    repo.commit("one unit");
    let daemon = Daemon::start(repo.path(), &[]);
    daemon.wait_running("a.service");
    (repo, daemon)
}

/// This test process needs hundreds of sockets on top of what parallel tests hold: take the
/// soft fd limit up to the hard one (inherited by daemons started afterwards).
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("raise RLIMIT_NOFILE");
    }
}

/// The connection limits of a running daemon, from its soft fd limit.
fn limits_of(daemon: &Daemon) -> Limits {
    let text = std::fs::read_to_string(format!("/proc/{}/limits", daemon.pid()))
        .expect("daemon's /proc limits");
    let soft = text
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .expect("Max open files line");
    Limits::for_fd_limit(soft)
}

fn connect(daemon: &Daemon) -> UnixStream {
    UnixStream::connect(daemon.socket()).expect("connect to the control socket")
}

/// Whether the server closed `stream` (EOF after at most an error line) within `timeout`.
fn closed_within(stream: &mut UnixStream, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stream.set_read_timeout(Some(left)).expect("read timeout");
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

fn p95(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let idx = (samples.len() * 95).div_ceil(100).saturating_sub(1);
    samples[idx.min(samples.len() - 1)]
}

#[test]
fn idle_and_trickling_clients_leave_status_prompt_and_are_cut_off_at_the_deadline() {
    raise_fd_limit();
    let (_repo, daemon) = daemon();
    let connected = Instant::now();
    let mut idle: Vec<UnixStream> = (0..200).map(|_| connect(&daemon)).collect();
    let mut slow: Vec<UnixStream> = (0..100).map(|_| connect(&daemon)).collect();
    for s in &mut slow {
        s.write_all(b"{").expect("first byte");
    }
    // One byte a second on every slow connection: a per-read timeout never fires.
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<UnixStream> = slow.iter().map(|s| s.try_clone().expect("clone")).collect();
    let trickle = std::thread::spawn({
        let stop = Arc::clone(&stop);
        move || {
            let mut writers = writers;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                for w in &mut writers {
                    let _ = w.write_all(b" ");
                }
            }
        }
    });

    let mut took = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let reply = client::call(&daemon.socket(), Verb::Status { units: vec![] })
            .expect("status while 300 clients hold connections");
        took.push(started.elapsed());
        assert!(reply.ok, "{reply:?}");
    }
    let measured_within = connected.elapsed();
    assert!(
        measured_within < REQUEST_DEADLINE,
        "the 20 status calls took {measured_within:?}: not all made while the abusers were connected"
    );
    let p95 = p95(took.clone());
    assert!(
        p95 < Duration::from_millis(100),
        "status p95 {p95:?} with 200 idle + 100 slow clients ({took:?})"
    );
    let out = daemon.cli(&["status"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    // The deadline is per request, not per read: the tricklers are closed like the idle.
    let cutoff = REQUEST_DEADLINE + Duration::from_secs(10);
    for (i, s) in idle.iter_mut().chain(slow.iter_mut()).enumerate() {
        let left = cutoff.saturating_sub(connected.elapsed());
        assert!(
            closed_within(s, left.max(Duration::from_millis(1))),
            "connection {i} still open {:?} after connecting",
            connected.elapsed()
        );
    }
    stop.store(true, Ordering::Relaxed);
    trickle.join().expect("trickle thread");
    assert!(daemon.try_status().is_some(), "daemon still serves");
}

#[test]
fn one_uid_over_its_quota_is_refused_at_once_and_served_again_later() {
    raise_fd_limit();
    let (_repo, daemon) = daemon();
    let limits = limits_of(&daemon);
    let hogs: Vec<UnixStream> = (0..limits.per_uid).map(|_| connect(&daemon)).collect();
    // The hogs are admitted in order; the last one answering a ping means all have a slot.
    let mut last = hogs.last().expect("a hog").try_clone().expect("clone");
    last.write_all(b"{\"v\":1,\"verb\":\"ping\"}\n")
        .expect("ping");
    let mut line = [0u8; 256];
    last.set_read_timeout(Some(WAIT)).expect("timeout");
    let n = last.read(&mut line).expect("pong");
    assert!(
        String::from_utf8_lossy(&line[..n]).contains("pong"),
        "{:?}",
        String::from_utf8_lossy(&line[..n])
    );

    let started = Instant::now();
    let reply = client::call(&daemon.socket(), Verb::Ping).expect("a refusal, not a hang");
    let took = started.elapsed();
    assert!(!reply.ok, "{reply:?}");
    let error = reply.error.unwrap_or_default();
    assert!(
        error.contains("too many clients of uid") && error.contains("per user"),
        "{error}"
    );
    assert!(took < Duration::from_secs(1), "refusal took {took:?}");
    assert!(
        daemon.log_text().contains("refused another"),
        "the refusal is logged"
    );
    drop(hogs);
    drop(last);
    wait_for("a slot after the hogs left", WAIT, || {
        client::call(&daemon.socket(), Verb::Ping)
            .ok()
            .filter(|r| r.ok)
    });
}

#[test]
fn a_client_that_never_finishes_its_line_is_told_and_closed() {
    let (_repo, daemon) = daemon();
    let mut s = connect(&daemon);
    s.write_all(br#"{"v":1,"verb":"sta"#)
        .expect("half a request");
    s.set_read_timeout(Some(REQUEST_DEADLINE + WAIT))
        .expect("timeout");
    let started = Instant::now();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let took = started.elapsed();
    assert!(
        text.contains("no complete request line within 5 s"),
        "{text:?}"
    );
    assert!(
        took >= REQUEST_DEADLINE - Duration::from_millis(500) && took < REQUEST_DEADLINE * 3,
        "closed after {took:?}"
    );
}

#[test]
fn a_failed_save_is_in_the_operators_reply_and_in_status_until_a_save_succeeds() {
    let (_repo, daemon) = daemon();
    // The writer saves through `.state.json.tmp-<daemon pid>`; a directory there makes
    // every save fail (removing a stale temp file fails with EISDIR).
    let blocker = daemon
        .state
        .path()
        .join(format!(".state.json.tmp-{}", daemon.pid()));
    // A save in progress has its temp file there for a moment: retry until it is gone.
    wait_for("the blocking directory to be created", WAIT, || {
        std::fs::create_dir(&blocker).ok()
    });
    std::fs::write(blocker.join("keep"), "x").expect("make it non-empty");

    let out = daemon.cli(&["stop", "a"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a non-durable stop is not 0: {out:?}"
    );
    assert!(
        stderr.contains("warning: the state could not be saved")
            && stderr.contains("will not survive a daemon restart")
            && stderr.contains(".state.json.tmp-"),
        "{stderr}"
    );
    // The stop itself is in effect.
    daemon.wait_unit("a.service", "stopped", |u| u["active_state"] == "inactive");

    let status = daemon.status();
    let err = status["daemon"]["save_error"].as_str().unwrap_or_default();
    assert!(err.contains(".state.json.tmp-"), "{status}");
    let since = status["daemon"]["save_error_since"]
        .as_u64()
        .expect("save_error_since");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert!(
        since <= now && now - since < 120,
        "since {since}, now {now}"
    );
    let text = daemon.cli(&["status"]);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.contains("Save error:") && stdout.contains("failing since"),
        "{stdout}"
    );

    // --json replies carry it as a field.
    let out = daemon.cli(&["start", "a", "--json"]);
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON reply");
    assert!(
        reply["warning"]
            .as_str()
            .is_some_and(|w| w.contains("could not be saved")),
        "{reply}"
    );

    std::fs::remove_dir_all(&blocker).expect("remove the blocker");
    let out = daemon.cli(&["stop", "a"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("warning"),
        "{out:?}"
    );
    let status = daemon.status();
    assert!(status["daemon"]["save_error"].is_null(), "{status}");
    assert!(status["daemon"]["save_error_since"].is_null(), "{status}");
}

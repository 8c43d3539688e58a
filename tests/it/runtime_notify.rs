//! The notify socket with real senders: systemd-notify, a python client, a Rust client.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use crate::runtime_support::{Guard, exec, sh};
use gitproc::runtime::{self, Dirs, NotifySocket, SpawnRequest};
use gitproc::service::NotifyMessage;
use gitproc::unit::model::{ExecCommand, ServiceSection};

fn start(cmd: &ExecCommand, sock: &std::path::Path, guard: &mut Guard) -> runtime::Spawned {
    let svc = ServiceSection::default();
    let dirs = Dirs::default();
    let mut req = SpawnRequest::new("notify.service", cmd, &svc, "id", &dirs);
    req.notify_socket = Some(sock);
    let s = runtime::spawn(&req).unwrap_or_else(|e| panic!("spawn: {e}"));
    guard.track(s.pid);
    s
}

#[test]
fn socket_is_world_writable_and_removed_on_drop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify");
    std::fs::write(&path, "stale").expect("stale file");
    let (sock, _rx) = NotifySocket::bind(&path).expect("bind over a stale file");
    let mode = std::fs::metadata(&path)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o666);
    drop(sock);
    assert!(!path.exists());
}

#[test]
fn rust_client_datagram_carries_the_sender_pid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify");
    let (_sock, rx) = NotifySocket::bind(&path).expect("bind");
    let client = UnixDatagram::unbound().expect("client");
    client.send_to(b"READY=1\nSTATUS=ok", &path).expect("send");
    let d = rx.recv_timeout(Duration::from_secs(10)).expect("datagram");
    assert_eq!(d.pid, std::process::id() as i32);
    assert_eq!(d.uid, unsafe { libc::getuid() });
    assert_eq!(d.data, b"READY=1\nSTATUS=ok");
    // Oversized datagrams are dropped, the next one still arrives.
    client.send_to(&vec![b'x'; 5000], &path).expect("send big");
    client.send_to(b"WATCHDOG=1", &path).expect("send");
    let d = rx.recv_timeout(Duration::from_secs(10)).expect("datagram");
    assert_eq!(d.data, b"WATCHDOG=1");
}

#[test]
fn python_service_ready_has_its_pid_and_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify");
    let (_sock, rx) = NotifySocket::bind(&path).expect("bind");
    let mut guard = Guard::new();
    let script = "import os, socket, time\n\
                  s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
                  s.sendto(b'READY=1', os.environ['NOTIFY_SOCKET'])\n\
                  time.sleep(1000)\n";
    let s = start(&exec(&["python3", "-c", script]), &path, &mut guard);
    let d = rx.recv_timeout(Duration::from_secs(20)).expect("READY=1");
    assert_eq!(d.pid, s.pid);
    assert_eq!(d.session, Some(s.pid));
    assert_eq!(d.data, b"READY=1");
}

#[test]
fn systemd_notify_ready_works_without_systemd() {
    if !crate::support::require(
        "systemd-notify (package systemd)",
        crate::support::have_program("systemd-notify"),
    ) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify");
    let (_sock, rx) = NotifySocket::bind(&path).expect("bind");
    let mut guard = Guard::new();
    let s = start(
        &sh("systemd-notify --ready --status=up; exec sleep 1000"),
        &path,
        &mut guard,
    );
    let d = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("READY=1 from systemd-notify");
    let m = NotifyMessage::parse(&d.data);
    println!(
        "systemd-notify: sender {} session {:?}, service {}",
        d.pid, d.session, s.pid
    );
    assert!(m.ready, "{m:?}");
    assert_eq!(m.status.as_deref(), Some("up"), "{m:?}");
    // Sent by systemd-notify on behalf of its parent (the service's main process), or by
    // systemd-notify itself: either way from inside the service's session.
    assert!(
        d.pid == s.pid || d.session == Some(s.pid),
        "sender {} (session {:?}) is not the service {}",
        d.pid,
        d.session,
        s.pid
    );
}

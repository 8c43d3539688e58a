//! The daemon's own side of systemd's notify protocol: telling a supervising systemd that
//! gitproc is ready (`READY=1`) and alive (`WATCHDOG=1`). The other direction, services
//! notifying gitproc, is [`super::notify_socket`].

use std::path::PathBuf;

/// Sends `message` to `$NOTIFY_SOCKET` when there is one (a path, or `@name` for an
/// abstract socket). Best effort: without a supervisor listening nothing is lost.
pub fn sd_notify(message: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let socket = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(_) => return,
    };
    let path = PathBuf::from(path);
    if path.to_string_lossy().starts_with('@') {
        use std::os::linux::net::SocketAddrExt;
        let name = path.to_string_lossy()[1..].to_string();
        if let Ok(addr) = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()) {
            let _ = socket.send_to_addr(message.as_bytes(), &addr);
        }
    } else {
        let _ = socket.send_to(message.as_bytes(), &path);
    }
}

/// The watchdog period systemd asked for (`WATCHDOG_USEC`), halved as sd_notify(3)
/// recommends; `None` when there is no watchdog.
pub fn watchdog_period() -> Option<std::time::Duration> {
    std::env::var("WATCHDOG_USEC")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&us| us > 0)
        .map(|us| std::time::Duration::from_micros(us / 2))
}

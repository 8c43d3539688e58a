//! The sd_notify protocol (sd_notify(3)): newline-separated `KEY=VALUE` assignments in one
//! datagram. Parsing is pure; the runtime receives the datagram and checks that the sender
//! belongs to the service before handing the parsed message to the state machine.

use std::time::Duration;

/// What one datagram says. Keys gitproc does not act on are ignored, as systemd ignores
/// unknown keys; a malformed value of a known key is ignored too (the rest still counts).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NotifyMessage {
    /// `READY=1`: start-up (or a reload) is finished.
    pub ready: bool,
    /// `RELOADING=1`: the service is reloading its configuration.
    pub reloading: bool,
    /// `STOPPING=1`: the service is shutting down on its own.
    pub stopping: bool,
    /// `STATUS=...`: free-form status text shown by `gitproc status`.
    pub status: Option<String>,
    /// `MAINPID=...`: the main process is this pid (sanity is checked by the state machine).
    pub main_pid: Option<i32>,
    /// `WATCHDOG=1`: keep-alive ping.
    pub watchdog_ping: bool,
    /// `WATCHDOG=trigger`: the service asks to be treated as if its watchdog expired.
    pub watchdog_trigger: bool,
    /// `WATCHDOG_USEC=...`: a new watchdog timeout (0 disables).
    pub watchdog_usec: Option<Duration>,
    /// `EXTEND_TIMEOUT_USEC=...`: the current start/stop/reload deadline is at least now + this.
    pub extend_timeout: Option<Duration>,
    /// `ERRNO=...`: an errno-style failure code reported by the service.
    pub errno: Option<i32>,
}

impl NotifyMessage {
    /// Parses one datagram. Never fails: invalid UTF-8 lines and unknown keys are skipped.
    pub fn parse(datagram: &[u8]) -> NotifyMessage {
        let mut msg = NotifyMessage::default();
        for line in datagram.split(|b| *b == b'\n') {
            let Ok(line) = std::str::from_utf8(line) else {
                continue;
            };
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            match key {
                "READY" => msg.ready |= value == "1",
                "RELOADING" => msg.reloading |= value == "1",
                "STOPPING" => msg.stopping |= value == "1",
                "STATUS" => msg.status = Some(value.to_string()),
                "MAINPID" => msg.main_pid = value.parse().ok(),
                "WATCHDOG" => match value {
                    "1" => msg.watchdog_ping = true,
                    "trigger" => msg.watchdog_trigger = true,
                    _ => {}
                },
                "WATCHDOG_USEC" => {
                    msg.watchdog_usec = value.parse().ok().map(Duration::from_micros);
                }
                "EXTEND_TIMEOUT_USEC" => {
                    msg.extend_timeout = value.parse().ok().map(Duration::from_micros);
                }
                "ERRNO" => msg.errno = value.parse().ok(),
                _ => {}
            }
        }
        msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_known_key() {
        let m = NotifyMessage::parse(
            b"READY=1\nSTATUS=serving 3 clients\nMAINPID=4242\nWATCHDOG=1\nEXTEND_TIMEOUT_USEC=5000000\nERRNO=2\n",
        );
        assert!(m.ready);
        assert_eq!(m.status.as_deref(), Some("serving 3 clients"));
        assert_eq!(m.main_pid, Some(4242));
        assert!(m.watchdog_ping && !m.watchdog_trigger);
        assert_eq!(m.extend_timeout, Some(Duration::from_secs(5)));
        assert_eq!(m.errno, Some(2));
        let m =
            NotifyMessage::parse(b"RELOADING=1\nSTOPPING=1\nWATCHDOG=trigger\nWATCHDOG_USEC=20");
        assert!(m.reloading && m.stopping && m.watchdog_trigger && !m.ready);
        assert_eq!(m.watchdog_usec, Some(Duration::from_micros(20)));
    }

    #[test]
    fn ignores_unknown_keys_and_garbage() {
        let m = NotifyMessage::parse(b"FDSTORE=1\nREADY=0\nMAINPID=abc\n\xff\xfe\nnoequals\nX=Y=Z");
        assert_eq!(m, NotifyMessage::default());
        // STATUS keeps everything after the first '=' and may be empty.
        assert_eq!(
            NotifyMessage::parse(b"STATUS=a=b").status.as_deref(),
            Some("a=b")
        );
        assert_eq!(NotifyMessage::parse(b"STATUS=").status.as_deref(), Some(""));
    }
}

//! The daemon's own `--log-file`: rotated like unit logs ([`super::rotate`]) and with
//! repeated messages rate-limited, so a crash-looping unit cannot fill the disk through the
//! daemon's log (it wrote 12 MB per 30 s before).
//!
//! Rate limiting (like journald's, per message instead of per service): messages are keyed
//! by their text without the leading timestamp and with digit runs folded (`main process
//! 4711 exited` and `... 4712 exited` are the same message). Each key may write
//! [`BURST`] lines per [`INTERVAL`]; beyond that, lines are counted, and once the window
//! is over the next write first says `suppressed N messages like: <the last one>`.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tracing_subscriber::fmt::MakeWriter;

use super::format_timestamp;
use super::rotate::RotatingFile;

/// Lines of one message admitted per [`INTERVAL`].
pub const BURST: u32 = 20;
/// The rate-limiting window.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// Messages tracked at once; beyond that, new messages pass unlimited (a flood of ever
/// different messages is bounded by rotation alone).
const MAX_KEYS: usize = 1024;

/// The writer handed to `tracing_subscriber::fmt` for `--log-file`.
pub struct DaemonLog {
    state: Mutex<State>,
}

struct State {
    file: RotatingFile,
    limiter: Limiter,
    /// Bytes of a line whose end has not been written yet.
    partial: Vec<u8>,
}

impl DaemonLog {
    /// Appends to `path`, rotating it at `max_bytes` and keeping `keep` old generations
    /// (`path.1` ... `path.<keep>`). The file is opened on the first write.
    pub fn new(path: PathBuf, max_bytes: u64, keep: u32) -> DaemonLog {
        DaemonLog {
            state: Mutex::new(State {
                file: RotatingFile::at(path, max_bytes, keep),
                limiter: Limiter::new(INTERVAL, BURST),
                partial: Vec::new(),
            }),
        }
    }

    /// Checks that the file can be opened for appending (so `--log-file` errors come at
    /// start-up, naming the file, rather than being dropped silently later).
    pub fn check(path: &std::path::Path) -> io::Result<()> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map(drop)
    }

    fn write_bytes(&self, buf: &[u8]) {
        // Plain data, consistent at every statement: a poisoned lock is still usable.
        let mut g = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let State {
            file,
            limiter,
            partial,
        } = &mut *g;
        let now = Instant::now();
        let prefix = format!("{} ", format_timestamp(SystemTime::now()));
        let mut out = Vec::with_capacity(buf.len() + 128);
        let mut rest = buf;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            let line = if partial.is_empty() {
                &rest[..=pos]
            } else {
                partial.extend_from_slice(&rest[..=pos]);
                partial.as_slice()
            };
            limiter.admit(now, line, &prefix, &mut out);
            partial.clear();
            rest = &rest[pos + 1..];
        }
        partial.extend_from_slice(rest);
        if !out.is_empty() {
            file.append(&prefix, &out);
        }
    }
}

/// One event's writer: each `write` goes through the limiter and the rotating file.
pub struct EventWriter<'a>(&'a DaemonLog);

impl io::Write for EventWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_bytes(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for DaemonLog {
    type Writer = EventWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        EventWriter(self)
    }
}

/// Per-message rate limiting, on an explicit clock (tested without sleeping).
pub(crate) struct Limiter {
    interval: Duration,
    burst: u32,
    entries: HashMap<Vec<u8>, Entry>,
    /// When windows were last checked for expiry (at most once a second).
    last_sweep: Option<Instant>,
}

struct Entry {
    window_start: Instant,
    admitted: u32,
    suppressed: u64,
    /// The last suppressed line, without its timestamp and newline.
    example: Vec<u8>,
}

impl Limiter {
    pub(crate) fn new(interval: Duration, burst: u32) -> Limiter {
        Limiter {
            interval,
            burst,
            entries: HashMap::new(),
            last_sweep: None,
        }
    }

    /// Appends to `out` the summaries of windows that ended, then `line` (which ends with
    /// `\n`) unless its message is over its rate. `prefix` starts summary lines.
    pub(crate) fn admit(&mut self, now: Instant, line: &[u8], prefix: &str, out: &mut Vec<u8>) {
        if self
            .last_sweep
            .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1))
        {
            self.sweep(now, prefix, out);
            self.last_sweep = Some(now);
        }
        let body = strip_timestamp(line);
        let key = fold_digits(body);
        let interval = self.interval;
        if !self.entries.contains_key(&key) && self.entries.len() >= MAX_KEYS {
            out.extend_from_slice(line);
            return;
        }
        let entry = self.entries.entry(key).or_insert_with(|| Entry {
            window_start: now,
            admitted: 0,
            suppressed: 0,
            example: Vec::new(),
        });
        if now.saturating_duration_since(entry.window_start) >= interval {
            summarize(entry, prefix, out);
            entry.window_start = now;
            entry.admitted = 0;
        }
        if entry.admitted < self.burst {
            entry.admitted += 1;
            out.extend_from_slice(line);
        } else {
            entry.suppressed += 1;
            entry.example.clear();
            entry
                .example
                .extend_from_slice(body.strip_suffix(b"\n").unwrap_or(body));
        }
    }

    /// Reports and forgets messages whose window is over.
    fn sweep(&mut self, now: Instant, prefix: &str, out: &mut Vec<u8>) {
        let interval = self.interval;
        self.entries.retain(|_, e| {
            if now.saturating_duration_since(e.window_start) < interval {
                return true;
            }
            summarize(e, prefix, out);
            false
        });
    }
}

fn summarize(entry: &mut Entry, prefix: &str, out: &mut Vec<u8>) {
    if entry.suppressed == 0 {
        return;
    }
    out.extend_from_slice(prefix.as_bytes());
    out.extend_from_slice(
        format!(" WARN suppressed {} messages like: ", entry.suppressed).as_bytes(),
    );
    out.extend_from_slice(entry.example.trim_ascii_start());
    out.push(b'\n');
    entry.suppressed = 0;
    entry.example.clear();
}

/// The line without its leading timestamp (the first space-separated field, when it
/// starts with a digit as tracing's RFC 3339 timestamps do).
fn strip_timestamp(line: &[u8]) -> &[u8] {
    if !line.first().is_some_and(u8::is_ascii_digit) {
        return line;
    }
    match line.iter().position(|&b| b == b' ') {
        Some(i) => &line[i..],
        None => line,
    }
}

/// The message with every run of digits replaced by one `#`.
fn fold_digits(body: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(body.len());
    let mut in_digits = false;
    for &b in body {
        if b.is_ascii_digit() {
            if !in_digits {
                key.push(b'#');
            }
            in_digits = true;
        } else {
            key.push(b);
            in_digits = false;
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(lim: &mut Limiter, at: Instant, line: &str) -> String {
        let mut out = Vec::new();
        lim.admit(at, line.as_bytes(), "T", &mut out);
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn repeats_beyond_the_burst_are_counted_and_reported_after_the_window() {
        let t0 = Instant::now();
        let mut lim = Limiter::new(Duration::from_secs(10), 3);
        let mut written = String::new();
        for i in 0..10 {
            written += &run(
                &mut lim,
                t0,
                &format!("2026-01-01T00:00:0{i}Z  INFO a.service: main process 10{i} exited\n"),
            );
        }
        assert_eq!(written.lines().count(), 3, "{written}");
        // A different message is not affected.
        assert_eq!(run(&mut lim, t0, "1 other\n"), "1 other\n");
        let later = run(
            &mut lim,
            t0 + Duration::from_secs(11),
            "2026-01-01T00:00:11Z  INFO a.service: main process 200 exited\n",
        );
        assert_eq!(
            later,
            "T WARN suppressed 7 messages like: INFO a.service: main process 109 exited\n\
             2026-01-01T00:00:11Z  INFO a.service: main process 200 exited\n"
        );
    }

    #[test]
    fn quiet_messages_are_swept_and_the_key_table_is_bounded() {
        let t0 = Instant::now();
        let mut lim = Limiter::new(Duration::from_secs(10), 1);
        for i in 0..(MAX_KEYS + 10) {
            let line = format!("x{}\n", "y".repeat(i % 50)) + &"z".repeat(i / 50);
            run(&mut lim, t0, &line);
        }
        assert!(lim.entries.len() <= MAX_KEYS);
        run(&mut lim, t0 + Duration::from_secs(20), "fresh\n");
        assert_eq!(lim.entries.len(), 1, "expired windows are forgotten");
    }

    #[test]
    fn digits_fold_and_timestamps_are_stripped() {
        assert_eq!(fold_digits(b"pid 12 and 345"), b"pid # and #");
        assert_eq!(
            strip_timestamp(b"2026-01-01T00:00:00Z  INFO x"),
            b"  INFO x"
        );
        assert_eq!(strip_timestamp(b"INFO x"), b"INFO x");
    }
}

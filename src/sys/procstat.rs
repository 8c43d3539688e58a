//! Reading `/proc/<pid>/stat`: the few fields gitproc needs, without allocation. The one
//! parser of that file: process identities (`state::identity`), signalling and session
//! tracking (`runtime`), the reaper, and `gitproc status` all read it through here.
//!
//! Hand-written rather than through the `procfs` crate because it sits on hot paths
//! (every spawn reads a start time; a control-group stop scans every process) and needs
//! only a handful of fields; parsing them is a dozen lines.

use std::fs::File;
use std::io::{self, Read};

/// The fields of `/proc/<pid>/stat` gitproc uses (proc(5) numbering in parentheses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// (1) process id.
    pub pid: i32,
    /// (3) state letter: `R`, `S`, `D`, `Z` (zombie), `T`, ...
    pub state: u8,
    /// (4) parent pid.
    pub ppid: i32,
    /// (5) process group id.
    pub pgrp: i32,
    /// (6) session id.
    pub session: i32,
    /// (22) start time in clock ticks since boot: with the pid, identifies a process
    /// across pid reuse.
    pub start_time: u64,
    /// (24) resident set size in pages.
    pub rss_pages: u64,
}

/// Every pid listed in `/proc` right now (empty if `/proc` cannot be read).
pub fn pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .collect()
}

/// Reads and parses `/proc/<pid>/stat`. `ErrorKind::NotFound` when the process is gone.
pub fn read_stat(pid: i32) -> io::Result<ProcStat> {
    let mut path = [0u8; 32];
    let path = format_proc_path(&mut path, pid);
    let mut f = File::open(path)?;
    let mut buf = [0u8; 1024];
    let mut len = 0;
    loop {
        let n = f.read(&mut buf[len..])?;
        if n == 0 || len + n == buf.len() {
            len += n;
            break;
        }
        len += n;
    }
    parse_stat(&buf[..len]).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("/proc/{pid}/stat: unexpected format"),
        )
    })
}

/// The start time (field 22) of `pid`, in clock ticks since boot.
pub fn start_time(pid: i32) -> io::Result<u64> {
    read_stat(pid).map(|s| s.start_time)
}

fn format_proc_path(buf: &mut [u8; 32], pid: i32) -> &str {
    use std::io::Write;
    let mut cur = io::Cursor::new(&mut buf[..]);
    // Cannot fail: "/proc/" + at most 11 digits + "/stat" fits in 32 bytes.
    let _ = write!(cur, "/proc/{pid}/stat");
    let n = cur.position() as usize;
    std::str::from_utf8(&buf[..n]).unwrap_or("/proc/self/stat")
}

/// Parses the content of a stat file. The command name (field 2) may contain spaces and
/// parentheses, so fields are counted from the LAST `)`.
pub fn parse_stat(data: &[u8]) -> Option<ProcStat> {
    let open = data.iter().position(|&b| b == b'(')?;
    let close = data.iter().rposition(|&b| b == b')')?;
    let pid = std::str::from_utf8(&data[..open])
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let rest = std::str::from_utf8(data.get(close + 1..)?).ok()?;
    // rest starts at field 3.
    let mut it = rest.split_ascii_whitespace();
    let state = *it.next()?.as_bytes().first()?;
    let ppid = it.next()?.parse().ok()?;
    let pgrp = it.next()?.parse().ok()?;
    let session = it.next()?.parse().ok()?;
    // fields 7..=21 skipped: 15 fields, then field 22.
    let start_time = it.nth(15)?.parse().ok()?;
    // field 23 (vsize) skipped, then field 24.
    let rss_pages = it.nth(1)?.parse().ok()?;
    Some(ProcStat {
        pid,
        state,
        ppid,
        pgrp,
        session,
        start_time,
        rss_pages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_name_with_spaces_and_parens() {
        let line = b"1234 (a b) c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615\n";
        let s = parse_stat(line).expect("parses");
        assert_eq!(s.pid, 1234);
        assert_eq!(s.state, b'S');
        assert_eq!(s.ppid, 1);
        assert_eq!(s.pgrp, 1234);
        assert_eq!(s.session, 1234);
        assert_eq!(s.start_time, 987654);
        assert_eq!(s.rss_pages, 10);
    }

    #[test]
    fn reads_own_stat() {
        let me = std::process::id() as i32;
        let s = read_stat(me).expect("own stat");
        assert_eq!(s.pid, me);
        assert!(s.start_time > 0);
        assert_eq!(start_time(me).expect("start time"), s.start_time);
    }

    #[test]
    fn missing_process_is_not_found() {
        // pid_max is at most 2^22, so this pid cannot exist.
        let err = read_stat(i32::MAX).expect_err("no such process");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}

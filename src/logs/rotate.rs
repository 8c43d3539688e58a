//! One unit's log file with size-based rotation, and [`tail`] across rotated files.
//!
//! Layout: `<dir>/<unit>.log` is written; on rotation it becomes `<unit>.log.1`, the old
//! `.1` becomes `.2`, ..., and `.<keep>` is deleted (like logrotate's `rotate N`). Rotation
//! happens on line boundaries: a file never exceeds `max_bytes` unless a single line is
//! longer than that.
//!
//! Write errors never stop the collector: the lines are dropped and counted, the file is
//! closed and reopened on the next write (so freeing space or removing a broken file lets
//! logging resume), and the first successful write starts with
//! `gitproc: N lines dropped (disk full)`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The log file of one unit.
#[derive(Debug)]
pub(crate) struct RotatingFile {
    /// Generation 0 (`<dir>/<unit>.log`, or the daemon's `--log-file`); rotated files are
    /// this path with `.1`, `.2`, ... appended.
    base: PathBuf,
    /// Names the log in warnings; `None` for the daemon's own log, which must not log about
    /// itself (the warning would come back into this very writer).
    label: Option<String>,
    max_bytes: u64,
    keep: u32,
    file: Option<File>,
    size: u64,
    /// Lines dropped since the last successful write, with the reason of the last failure.
    pending_dropped: u64,
    pending_reason: String,
    /// Lines dropped since creation.
    total_dropped: u64,
}

/// Path of `<dir>/<unit>.log` (`generation` 0) or `<dir>/<unit>.log.<generation>`.
pub fn log_path(dir: &Path, unit: &str, generation: u32) -> PathBuf {
    if generation == 0 {
        dir.join(format!("{unit}.log"))
    } else {
        dir.join(format!("{unit}.log.{generation}"))
    }
}

impl RotatingFile {
    /// A writer for `unit`; the file is opened (created) on the first write.
    pub fn new(dir: &Path, unit: &str, max_bytes: u64, keep: u32) -> RotatingFile {
        RotatingFile {
            label: Some(unit.to_string()),
            ..RotatingFile::at(log_path(dir, unit, 0), max_bytes, keep)
        }
    }

    /// A writer for the file at `path` (rotated to `path.1` ...) that reports its own write
    /// errors only in the file (the daemon's log).
    pub fn at(path: PathBuf, max_bytes: u64, keep: u32) -> RotatingFile {
        RotatingFile {
            base: path,
            label: None,
            max_bytes: max_bytes.max(1),
            keep,
            file: None,
            size: 0,
            pending_dropped: 0,
            pending_reason: String::new(),
            total_dropped: 0,
        }
    }

    /// Lines dropped and not yet reported in the file.
    pub fn pending_dropped(&self) -> u64 {
        self.pending_dropped
    }

    fn open(&mut self) -> io::Result<()> {
        if self.file.is_none() {
            let f = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o640)
                .custom_flags(libc::O_CLOEXEC)
                .open(&self.base)?;
            self.size = f.metadata()?.len();
            self.file = Some(f);
        }
        Ok(())
    }

    fn generation(&self, g: u32) -> PathBuf {
        if g == 0 {
            self.base.clone()
        } else {
            let mut name = self.base.clone().into_os_string();
            name.push(format!(".{g}"));
            PathBuf::from(name)
        }
    }

    /// Renames `.log` to `.log.1` and shifts older generations, deleting the oldest.
    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        self.size = 0;
        if self.keep == 0 {
            return match fs::remove_file(&self.base) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        for g in (0..self.keep).rev() {
            let from = self.generation(g);
            let to = self.generation(g + 1);
            match fs::rename(&from, &to) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Appends whole lines (`data` must end with `\n`), rotating at line boundaries.
    /// `prefix` (a formatted timestamp and space) starts the "lines dropped" report line.
    /// Never fails: a failing write drops its lines and counts them; returns how many
    /// lines this call dropped.
    pub fn append(&mut self, prefix: &str, data: &[u8]) -> u64 {
        let before = self.total_dropped;
        self.append_inner(prefix, data);
        self.total_dropped - before
    }

    fn append_inner(&mut self, prefix: &str, data: &[u8]) {
        if self.pending_dropped > 0 {
            let note = format!(
                "{prefix}gitproc: {} lines dropped ({})\n",
                self.pending_dropped, self.pending_reason
            );
            if self.write_some(note.as_bytes()).is_err() {
                self.drop_lines(data, None);
                return;
            }
            self.pending_dropped = 0;
        }
        if let Err((unwritten, e)) = self.write_some(data) {
            self.drop_lines(unwritten, Some(e));
        }
    }

    fn drop_lines(&mut self, data: &[u8], e: Option<io::Error>) {
        let n = data.iter().filter(|&&b| b == b'\n').count() as u64;
        self.pending_dropped += n;
        self.total_dropped += n;
        if let Some(e) = e {
            self.pending_reason = if e.raw_os_error() == Some(libc::ENOSPC) {
                "disk full".to_string()
            } else {
                e.to_string()
            };
            if self.total_dropped == n
                && let Some(label) = &self.label
            {
                tracing::warn!(
                    "log of {label}: dropping lines: {} ({})",
                    self.pending_reason,
                    self.base.display()
                );
            }
        }
        // Reopen on the next write: space may be freed or the file replaced.
        self.file = None;
    }

    /// Writes `data` (whole lines) with rotation; on error returns the unwritten tail.
    fn write_some<'a>(&mut self, mut data: &'a [u8]) -> Result<(), (&'a [u8], io::Error)> {
        while !data.is_empty() {
            if let Err(e) = self.open() {
                return Err((data, e));
            }
            let room = self.max_bytes.saturating_sub(self.size) as usize;
            // The longest prefix of whole lines that fits in the room left.
            let fit = if data.len() <= room {
                data.len()
            } else {
                data[..room]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map(|i| i + 1)
                    .unwrap_or(0)
            };
            let take = if fit > 0 {
                fit
            } else if self.size > 0 {
                if let Err(e) = self.rotate() {
                    return Err((data, e));
                }
                continue;
            } else {
                // A single line longer than max_bytes goes alone into a fresh file.
                data.iter()
                    .position(|&b| b == b'\n')
                    .map(|i| i + 1)
                    .unwrap_or(data.len())
            };
            let Some(file) = self.file.as_mut() else {
                continue;
            };
            if let Err(e) = file.write_all(&data[..take]) {
                return Err((data, e));
            }
            self.size += take as u64;
            data = &data[take..];
            if self.size >= self.max_bytes
                && let Err(e) = self.rotate()
            {
                return Err((data, e));
            }
        }
        Ok(())
    }
}

/// The last `n` lines of a unit's log, oldest first, reading `.log` then `.log.1`, ...
/// as far back as needed. Missing files count as empty.
pub fn tail(dir: &Path, unit: &str, n: usize) -> io::Result<Vec<String>> {
    let mut chunks: Vec<Vec<String>> = Vec::new();
    let mut have = 0;
    let mut generation = 0;
    while have < n {
        let path = log_path(dir, unit, generation);
        let lines = match last_lines(&path, n - have) {
            Ok(l) => l,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if generation == 0 {
                    generation += 1;
                    continue;
                }
                break;
            }
            Err(e) => {
                return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display())));
            }
        };
        have += lines.len();
        chunks.push(lines);
        generation += 1;
    }
    Ok(chunks.into_iter().rev().flatten().collect())
}

/// The last `n` lines of one file, reading backwards in growing windows (log files can be
/// large; a `tail` must not read all of them).
fn last_lines(path: &Path, n: usize) -> io::Result<Vec<String>> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    if n == 0 || len == 0 {
        return Ok(Vec::new());
    }
    let mut window: u64 = 8192;
    loop {
        let start = len.saturating_sub(window);
        f.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::with_capacity((len - start) as usize);
        Read::by_ref(&mut f)
            .take(len - start)
            .read_to_end(&mut buf)?;
        let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let newlines = body.iter().filter(|&&b| b == b'\n').count();
        if newlines >= n || start == 0 {
            let mut lines: Vec<String> = body
                .split(|&b| b == b'\n')
                .map(|l| String::from_utf8_lossy(l).into_owned())
                .collect();
            // The first piece may be a partial line when we did not read from the start.
            if start > 0 {
                lines.remove(0);
            }
            let skip = lines.len().saturating_sub(n);
            return Ok(lines.split_off(skip));
        }
        window = window.saturating_mul(4);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(n: usize, width: usize) -> Vec<u8> {
        let mut v = Vec::new();
        for i in 0..n {
            let s = format!("{i:0width$}\n", width = width - 1);
            v.extend_from_slice(s.as_bytes());
        }
        v
    }

    #[test]
    fn rotates_on_line_boundaries_and_keeps_n() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut f = RotatingFile::new(dir.path(), "u", 100, 2);
        // 10-byte lines: 10 per file.
        for chunk in lines(45, 10).chunks(30) {
            f.append("", chunk);
        }
        let size = |g| {
            fs::metadata(log_path(dir.path(), "u", g))
                .map(|m| m.len())
                .ok()
        };
        assert_eq!(size(0), Some(50));
        assert_eq!(size(1), Some(100));
        assert_eq!(size(2), Some(100));
        assert_eq!(size(3), None, "only 2 rotated files kept");
        let t = tail(dir.path(), "u", 25).expect("tail");
        assert_eq!(t.len(), 25);
        assert_eq!(t.first().map(String::as_str), Some("000000020"));
        assert_eq!(t.last().map(String::as_str), Some("000000044"));
        assert_eq!(f.total_dropped, 0);
    }

    #[test]
    fn tail_of_missing_unit_is_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(tail(dir.path(), "nothing", 10).expect("tail").is_empty());
    }

    #[test]
    fn tail_reads_backwards_through_a_large_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut f = RotatingFile::new(dir.path(), "big", 10 << 20, 1);
        f.append("", &lines(50_000, 20));
        let t = tail(dir.path(), "big", 3).expect("tail");
        assert_eq!(
            t,
            vec![
                "0000000000000049997",
                "0000000000000049998",
                "0000000000000049999"
            ]
        );
    }

    #[test]
    fn disk_full_drops_counts_and_reports_when_writing_resumes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = log_path(dir.path(), "full", 0);
        std::os::unix::fs::symlink("/dev/full", &path).expect("symlink to /dev/full");
        let mut f = RotatingFile::new(dir.path(), "full", 1 << 20, 2);
        f.append("T ", b"a\nb\n");
        f.append("T ", b"c\n");
        assert_eq!(f.total_dropped, 3);
        assert_eq!(f.pending_dropped(), 3);
        fs::remove_file(&path).expect("remove symlink");
        f.append("T ", b"T d\n");
        assert_eq!(f.pending_dropped(), 0);
        let text = fs::read_to_string(&path).expect("log written");
        assert_eq!(text, "T gitproc: 3 lines dropped (disk full)\nT d\n");
    }
}

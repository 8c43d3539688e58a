//! Crash-safe replacement of the state file.
//!
//! Sequence: create a temporary file in the same directory (mode 0600; same directory so the
//! rename is atomic and never crosses file systems), write, fsync it, rename it over the
//! target, fsync the directory (so the rename itself survives power loss). At every instant the
//! target is either the complete old file or the complete new one. A failure at any step
//! removes the temporary file and leaves the old file untouched.
//!
//! The write step is injectable ([`WriteStep`]) so tests can simulate `ENOSPC` or `EIO` halfway
//! through a write without a full disk.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::format::{PersistedState, StateError};

/// Writes the encoded state into the (empty) temporary file. The production implementation is
/// [`DirectWrite`]; tests inject failing ones. Any `FnMut(&mut File, &[u8]) -> io::Result<()>`
/// closure is a `WriteStep`.
pub trait WriteStep: Send {
    /// Writes all of `bytes` to `file`, or fails (possibly after a partial write).
    fn write_contents(&mut self, file: &mut File, bytes: &[u8]) -> io::Result<()>;
}

/// The real write step: `write_all`.
#[derive(Debug, Default, Clone, Copy)]
pub struct DirectWrite;

impl WriteStep for DirectWrite {
    fn write_contents(&mut self, file: &mut File, bytes: &[u8]) -> io::Result<()> {
        file.write_all(bytes)
    }
}

impl<F> WriteStep for F
where
    F: FnMut(&mut File, &[u8]) -> io::Result<()> + Send,
{
    fn write_contents(&mut self, file: &mut File, bytes: &[u8]) -> io::Result<()> {
        self(file, bytes)
    }
}

/// What one successful save cost (also exported as writer counters for `perf stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaveStats {
    /// Bytes written.
    pub bytes: u64,
    /// Wall time of serialize + write + fsyncs + rename.
    pub duration: Duration,
}

/// Saves `state` atomically to `path`. Logs `Saving state` (info) with duration and size.
pub fn save(path: &Path, state: &PersistedState) -> Result<SaveStats, StateError> {
    save_with(path, state, &mut DirectWrite)
}

/// [`save`] with an injected write step.
pub fn save_with(
    path: &Path,
    state: &PersistedState,
    step: &mut dyn WriteStep,
) -> Result<SaveStats, StateError> {
    let started = Instant::now();
    let bytes = state.to_bytes()?;
    write_atomic(path, &bytes, step)?;
    let stats = SaveStats {
        bytes: bytes.len() as u64,
        duration: started.elapsed(),
    };
    tracing::info!(
        path = %path.display(),
        bytes = stats.bytes,
        duration_us = stats.duration.as_micros() as u64,
        units = state.units.len(),
        "Saving state"
    );
    Ok(stats)
}

/// Temporary file name for `path`: hidden, next to it, unique per process (two processes on
/// one state dir are excluded by the daemon lock, but tools like `gitproc check` may still save
/// copies elsewhere).
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".to_owned());
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Atomically replaces `path` with `bytes` (see the module docs for the sequence).
pub fn write_atomic(path: &Path, bytes: &[u8], step: &mut dyn WriteStep) -> Result<(), StateError> {
    let tmp = temp_path(path);
    let io_err = |op: &'static str, p: &Path| {
        let p = p.to_owned();
        move |source| StateError::Io {
            op,
            path: p,
            source,
        }
    };
    // A temp file left by a crashed save of this pid (pid reuse after reboot) is stale.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("remove stale temporary state file", &tmp)(e)),
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err("create temporary state file", &tmp))?;

    // From here on, any failure removes the temp file; the target was not touched yet.
    let result = (|| {
        step.write_contents(&mut file, bytes)
            .map_err(io_err("write temporary state file", &tmp))?;
        file.sync_all()
            .map_err(io_err("fsync temporary state file", &tmp))?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(io_err("rename temporary state file over", path))
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }

    // The new file is in place; make the rename durable.
    let dir = parent_dir(path);
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync state directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_file_is_hidden_sibling() {
        let t = temp_path(Path::new("/d/state.json"));
        assert_eq!(t.parent(), Some(Path::new("/d")));
        assert!(
            t.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".state.json.tmp-")
        );
        assert_eq!(parent_dir(Path::new("state.json")), Path::new("."));
    }
}

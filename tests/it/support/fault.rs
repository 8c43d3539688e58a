//! Host faults for the torture tests: a state directory on a tiny file system that can be
//! filled (ENOSPC) and emptied again, a directory made immutable and writable again, and the
//! daemon's CPU and memory read from `/proc`. Every fault is a guard that undoes itself on
//! drop, so a failing test leaves no mount or immutable directory behind.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{is_root, require, succeeds};

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A tmpfs of a fixed size mounted on a fresh temporary directory, unmounted on drop.
pub struct Tmpfs {
    // Dropped after the unmount in `Drop`, which then removes the empty mount point.
    mount_point: Option<tempfile::TempDir>,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (mount(8) syntax: `512k`), or `None` (SKIP) when this
    /// machine cannot; under CI that is a failure (see [`require`]).
    pub fn mount(size: &str) -> Option<Tmpfs> {
        if !require("root (to mount a tmpfs)", is_root()) {
            return None;
        }
        let dir = tempfile::tempdir().expect("mount point");
        let path = dir.path().to_str().expect("utf-8 temp path").to_string();
        let mounted = run(
            "mount",
            &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", &path],
        );
        if !require(
            &format!("the capability to mount a tmpfs ({mounted:?})"),
            mounted.is_ok(),
        ) {
            return None;
        }
        Some(Tmpfs {
            mount_point: Some(dir),
        })
    }

    pub fn path(&self) -> &Path {
        self.mount_point.as_ref().expect("mounted").path()
    }

    /// A fresh directory inside the tmpfs (for a daemon's state directory: the harness
    /// removes it when the daemon is dropped, before this mount goes away).
    pub fn subdir(&self) -> tempfile::TempDir {
        tempfile::tempdir_in(self.path()).expect("temp dir in the tmpfs")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Some(dir) = self.mount_point.take() {
            // Lazy: a process that still has a file open there must not keep the mount.
            let path = dir.path().to_str().unwrap_or_default().to_string();
            if let Err(e) = run("umount", &["-l", &path]) {
                eprintln!("cannot unmount the test tmpfs: {e}");
            }
            drop(dir);
        }
    }
}

/// A file that fills its file system until the next write fails with ENOSPC. Removing it
/// (drop, or [`Filler::release`]) gives the space back.
pub struct Filler(Option<PathBuf>);

impl Filler {
    pub fn fill(dir: &Path) -> Filler {
        let path = dir.join("filler");
        let mut file = std::fs::File::create(&path).expect("create the filler file");
        let chunk = vec![0x5a_u8; 4096];
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling {}: {e}", dir.display()),
            }
        }
        // The last partial block: single bytes until not one more fits.
        while file.write(&[0x5a]).is_ok_and(|n| n == 1) {}
        Filler(Some(path))
    }

    pub fn release(&mut self) {
        if let Some(p) = self.0.take() {
            std::fs::remove_file(&p).expect("remove the filler file");
        }
    }
}

impl Drop for Filler {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A directory nobody can create, rename or remove entries in until dropped: `chattr +i`
/// where the file system supports it (ext4, xfs, btrfs), otherwise a read-only bind mount
/// of the directory on itself (tmpfs /tmp). Files already open stay writable either way.
pub struct Frozen {
    dir: PathBuf,
    how: Option<FreezeKind>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezeKind {
    Immutable,
    ReadOnlyBind,
}

impl Frozen {
    pub fn freeze(dir: &Path) -> Option<Frozen> {
        if !require("root (to make a directory immutable)", is_root()) {
            return None;
        }
        let p = dir.to_str().expect("utf-8 path");
        let how = if succeeds("chattr", &["+i", p]) {
            FreezeKind::Immutable
        } else {
            let bound = run("mount", &["--bind", p, p])
                .and_then(|()| run("mount", &["-o", "remount,bind,ro", p, p]));
            if !require(
                &format!("chattr +i or a read-only bind mount on {p} ({bound:?})"),
                bound.is_ok(),
            ) {
                let _ = run("umount", &["-l", p]);
                return None;
            }
            FreezeKind::ReadOnlyBind
        };
        Some(Frozen {
            dir: dir.to_path_buf(),
            how: Some(how),
        })
    }

    pub fn kind(&self) -> Option<FreezeKind> {
        self.how
    }

    pub fn thaw(&mut self) {
        let p = self.dir.to_str().unwrap_or_default().to_string();
        match self.how.take() {
            Some(FreezeKind::Immutable) => run("chattr", &["-i", &p]).expect("chattr -i"),
            Some(FreezeKind::ReadOnlyBind) => run("umount", &["-l", &p]).expect("umount"),
            None => {}
        }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        self.thaw();
    }
}

/// utime + stime of a process (all its threads), in clock ticks.
pub fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/stat: {e}"));
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // After the command: state is field 3, utime 14, stime 15 (1-based in proc(5)).
    let field = |n: usize| -> u64 { fields.get(n - 3).and_then(|f| f.parse().ok()).unwrap_or(0) };
    field(14) + field(15)
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// Resident set size of a process in KiB (`VmRSS` of /proc/PID/status).
pub fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

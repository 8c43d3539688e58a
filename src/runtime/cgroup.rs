//! Optional cgroup v2 tracking: one cgroup per unit, so `KillMode=control-group` also
//! reaches processes that called `setsid()` again (they escape session tracking).
//!
//! Probed once at startup ([`CgroupRoot::probe`]): gitproc looks for a cgroup2 mount
//! (`/sys/fs/cgroup` on a unified system, `/sys/fs/cgroup/unified` on a hybrid one), takes
//! the daemon's own cgroup from `/proc/self/cgroup` (`0::/path`) and creates
//! `<mount>/<own path>/<name>/` below it. If any of that fails (no cgroup2, read-only
//! mount, no permission), the caller falls back to session tracking alone
//! ([`super::kill::ProcessTracker`]). No controller is enabled: the cgroups are used for
//! membership only, which also keeps clear of cgroup v2's "no internal processes" rule.
//! cgroup v1 hierarchies are not used. Under systemd, run gitproc with `Delegate=yes` so
//! that the subtree is gitproc's to manage.
//!
//! The child joins its cgroup itself, between fork and exec (it writes `0` to a
//! `cgroup.procs` fd the parent opened), so no process of the service ever runs outside it.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The directory under which gitproc creates one cgroup per unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupRoot {
    base: PathBuf,
}

/// One unit's cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    path: PathBuf,
}

impl CgroupRoot {
    /// Finds a writable cgroup2 hierarchy and creates `<daemon's cgroup>/<name>` in it.
    /// `None` means "use session tracking only"; the reason is logged at debug level.
    pub fn probe(name: &str) -> Option<CgroupRoot> {
        match Self::try_probe(name) {
            Ok(root) => Some(root),
            Err(e) => {
                tracing::debug!("no writable cgroup2 hierarchy, tracking by session only: {e}");
                None
            }
        }
    }

    fn try_probe(name: &str) -> io::Result<CgroupRoot> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
        let mount = cgroup2_mount(&mountinfo).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "no cgroup2 mount in /proc/self/mountinfo",
            )
        })?;
        let own = fs::read_to_string("/proc/self/cgroup")?;
        let own = own_cgroup2_path(&own).unwrap_or("/");
        let base = Path::new(&mount)
            .join(own.trim_start_matches('/'))
            .join(name);
        Self::at(base)
    }

    /// Uses `base` (created if needed) as the root; fails if it is not a writable cgroup.
    pub fn at(base: PathBuf) -> io::Result<CgroupRoot> {
        fs::create_dir_all(&base)?;
        let procs = base.join("cgroup.procs");
        if !procs.exists() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a cgroup directory", base.display()),
            ));
        }
        nix::unistd::access(&procs, nix::unistd::AccessFlags::W_OK).map_err(io::Error::from)?;
        Ok(CgroupRoot { base })
    }

    pub fn path(&self) -> &Path {
        &self.base
    }

    /// The cgroup of `unit` (created if missing). Unit names are single path components.
    pub fn unit(&self, unit: &str) -> io::Result<Cgroup> {
        if unit.is_empty() || unit.contains('/') || unit == "." || unit == ".." {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unit name {unit:?} cannot name a cgroup"),
            ));
        }
        let path = self.base.join(unit);
        match fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        Ok(Cgroup { path })
    }

    /// Removes the root itself (must be empty: remove every unit cgroup first).
    pub fn remove(&self) -> io::Result<()> {
        fs::remove_dir(&self.base)
    }
}

impl Cgroup {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens `cgroup.procs` for writing (close-on-exec); a child writes `0` to join.
    pub fn open_procs(&self) -> io::Result<OwnedFd> {
        OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(self.path.join("cgroup.procs"))
            .map(OwnedFd::from)
    }

    /// Opens the cgroup directory itself (close-on-exec), for `clone3(CLONE_INTO_CGROUP)`.
    pub fn open_dir(&self) -> io::Result<OwnedFd> {
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&self.path)
            .map(OwnedFd::from)
    }

    /// Every process currently in the cgroup.
    pub fn procs(&self) -> Vec<i32> {
        fs::read_to_string(self.path.join("cgroup.procs"))
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Removes the (empty) cgroup. `EBUSY` while processes remain.
    pub fn remove(&self) -> io::Result<()> {
        match fs::remove_dir(&self.path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

/// The mount point of the first cgroup2 filesystem in a mountinfo text.
fn cgroup2_mount(mountinfo: &str) -> Option<String> {
    mountinfo.lines().find_map(|line| {
        // "36 25 0:31 / /sys/fs/cgroup/unified rw,... shared:9 - cgroup2 cgroup2 rw"
        let (pre, post) = line.split_once(" - ")?;
        let fstype = post.split_whitespace().next()?;
        if fstype != "cgroup2" {
            return None;
        }
        let mount = pre.split_whitespace().nth(4)?;
        if !mount.starts_with('/') {
            return None;
        }
        Some(mount.replace("\\040", " "))
    })
}

/// The cgroup2 path in a `/proc/<pid>/cgroup` text (`0::/path`).
fn own_cgroup2_path(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("0::"))
}

/// The cgroup a daemon's units live under: `gitproc` for the default state directory
/// (`default_state_dir`, passed in by the caller), `gitproc-<hash of the state dir>`
/// otherwise. Two daemons on one machine (another state directory, parallel tests) must
/// never share a unit's cgroup: stopping `a.service` in one would kill every process of
/// `a.service` in the other. Stable across restarts on the same state directory, so a new
/// daemon finds the cgroups of the services it re-adopts.
pub fn cgroup_name(state_dir: &Path, default_state_dir: &Path) -> String {
    let canonical = |p: &Path| fs::canonicalize(p).unwrap_or_else(|_| p.into());
    let state_dir = canonical(state_dir);
    if canonical(default_state_dir) == state_dir {
        return "gitproc".to_string();
    }
    // The project's one hash (FNV-1a), 64 bits wide: stable across builds.
    let h = crate::unit::load::hash::fnv1a_64(state_dir.as_os_str().as_encoded_bytes());
    format!("gitproc-{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cgroup2_mount() {
        let mi = "30 24 0:26 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                  36 25 0:31 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_mount(mi).as_deref(), Some("/sys/fs/cgroup/unified"));
        assert_eq!(cgroup2_mount("30 24 0:26 / /x rw - tmpfs tmpfs rw\n"), None);
    }

    #[test]
    fn reads_own_cgroup_path() {
        assert_eq!(own_cgroup2_path("1:cpu:/\n0::/a/b\n"), Some("/a/b"));
        assert_eq!(own_cgroup2_path("1:cpu:/\n"), None);
    }
}

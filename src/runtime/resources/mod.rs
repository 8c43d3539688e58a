//! Resource control in the unit's cgroups, as systemd does it on a hybrid host: a
//! controller enabled in the cgroup v2 hierarchy is used there (the unit's cgroup of
//! [`super::cgroup`]); otherwise its cgroup v1 hierarchy, where gitproc keeps a directory
//! of its own per state directory (named by [`super::cgroup::cgroup_name`], below the
//! daemon's own cgroup in that hierarchy) and one directory per unit in it.
//!
//! - [`ResourceRoots::probe`] (once, at startup): which controllers v2 offers (and enables
//!   them in gitproc's v2 root, which holds no process), where each v1 hierarchy is mounted
//!   and whether the daemon may write there. Nothing is created yet.
//! - [`ResourceRoots::prepare`] (on the spawner pool, before each spawn): creates the unit's
//!   v1 directories, writes every limit ([`limits::plan`]) and reads the OOM kill counter.
//!   The child then joins the v1 directories itself, between clone and execve, by writing
//!   `0` to their `cgroup.procs` (pre-opened by the spawn plan): one async-signal-safe
//!   write each, no allocation, so no process of the unit ever runs outside its limits.
//!   (The other way, the parent writing the pid while the child waits, needs the child to
//!   wait on something, and the `CLONE_VFORK` parent is suspended until execve.)
//! - [`UnitCgroups::usage`] and [`UnitCgroups::oom_kills`] (on the loop: a few small
//!   cgroupfs reads): current use for `status`, and the counter that tells an OOM kill.
//! - [`UnitCgroups::remove`] (spawner, when the unit stops; loop, at shutdown): rmdir of
//!   the empty v1 directories.
//!
//! A setting that has nowhere to go (no writable hierarchy, `EACCES`, a missing file) is a
//! warning in the unit's log; the unit runs without it.

pub mod limits;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::unit::resources::Resources;
use limits::{Controller, Facts, Place};

/// Where each controller lives for this daemon; cheap to clone (a few paths).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceRoots {
    /// Controllers enabled in the `cgroup.subtree_control` of gitproc's cgroup v2 root.
    v2: Vec<Controller>,
    /// gitproc's directory in each writable v1 hierarchy (created on first use).
    v1: BTreeMap<Controller, PathBuf>,
}

/// What [`ResourceRoots::prepare`] did, for the spawn and the loop.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    /// The unit's v1 directories to join (one per hierarchy).
    pub join: Vec<PathBuf>,
    /// The limits written (`key` names the setting), for `status`.
    pub applied: Vec<limits::Write>,
    /// Settings not enforced, and why.
    pub warnings: Vec<String>,
    /// The memory cgroup's `oom_kill` count before the spawn (`None`: no memory cgroup).
    pub oom_kills: Option<u64>,
}

/// One unit's cgroup directories, for the loop's reads and for removal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitCgroups {
    /// Per controller, where it lives for this unit.
    places: Vec<(Controller, Place)>,
}

/// Current use, read from cgroupfs (each `None` where no cgroup accounts for it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub memory_bytes: Option<u64>,
    pub tasks: Option<u64>,
    pub cpu_usage_ns: Option<u64>,
}

impl ResourceRoots {
    /// Looks at this machine's hierarchies; `v2_root` is gitproc's cgroup2 root, if any.
    /// Never fails: a controller with no usable place is simply absent.
    pub fn probe(name: &str, v2_root: Option<&Path>) -> ResourceRoots {
        let mut roots = ResourceRoots::default();
        if let Some(root) = v2_root {
            roots.v2 = enable_v2_controllers(root);
        }
        let (Ok(mountinfo), Ok(own)) = (
            fs::read_to_string("/proc/self/mountinfo"),
            fs::read_to_string("/proc/self/cgroup"),
        ) else {
            return roots;
        };
        for c in Controller::ALL {
            // With v2's cpu controller, its cpu.stat accounts CPU time: no cpuacct needed.
            if roots.v2.contains(&c)
                || (c == Controller::Cpuacct && roots.v2.contains(&Controller::Cpu))
            {
                continue;
            }
            let Some(mount) = v1_mount(&mountinfo, c.v1_name()) else {
                continue;
            };
            let own_path = v1_own_path(&own, c.v1_name()).unwrap_or("/");
            let parent = Path::new(&mount).join(own_path.trim_start_matches('/'));
            let writable = nix::unistd::access(&parent, nix::unistd::AccessFlags::W_OK).is_ok();
            if writable && parent.join("cgroup.procs").exists() {
                roots.v1.insert(c, parent.join(name));
            } else {
                tracing::debug!(
                    "cgroup v1 {}: {} is not writable; its settings are not enforced",
                    c.v1_name(),
                    parent.display()
                );
            }
        }
        tracing::debug!(
            "resource control: v2 {:?}, v1 {:?}",
            roots.v2,
            roots.v1.keys().collect::<Vec<_>>()
        );
        roots
    }

    /// Whether the v1 hierarchy of `c` is used (for tests and `status`).
    pub fn v1_dir(&self, c: Controller) -> Option<&Path> {
        self.v1.get(&c).map(PathBuf::as_path)
    }

    /// The directories of `unit`, whose v2 cgroup (if any) is `v2_unit`. No I/O.
    pub fn unit(&self, unit: &str, v2_unit: Option<&Path>) -> UnitCgroups {
        let mut places = Vec::new();
        for c in Controller::ALL {
            if let (true, Some(dir)) = (self.v2.contains(&c), v2_unit) {
                places.push((c, Place::V2(dir.to_path_buf())));
            } else if let Some(base) = self.v1.get(&c) {
                places.push((c, Place::V1(base.join(unit))));
            }
        }
        UnitCgroups { places }
    }

    /// Creates `unit`'s v1 directories for what `r` needs, writes its limits and reads the
    /// OOM counter. Blocking-ish host work: call it on the spawner pool.
    pub fn prepare(&self, cgroups: &UnitCgroups, r: &Resources) -> Prepared {
        let mut out = Prepared::default();
        let wanted = limits::wanted(r);
        let mut usable: Vec<(Controller, Place)> = Vec::new();
        for (c, place) in &cgroups.places {
            if !wanted.contains(c) && !limits::accounted(*c, matches!(place, Place::V2(_))) {
                continue;
            }
            match place {
                Place::V2(_) => usable.push((*c, place.clone())),
                Place::V1(dir) => match create_v1(*c, dir) {
                    Ok(()) => usable.push((*c, place.clone())),
                    Err(e) => out.warnings.push(format!(
                        "cgroup v1 {} {}: {e}; its settings are not enforced",
                        c.v1_name(),
                        dir.display()
                    )),
                },
            }
        }
        let place = |c: Controller| usable.iter().find(|(x, _)| *x == c).map(|(_, p)| p.clone());
        let facts = Facts {
            total_memory: total_memory(),
            kernel_tasks_max: kernel_tasks_max(),
            present: limits::optional_files(&place)
                .into_iter()
                .filter(|f| f.exists())
                .collect(),
        };
        let plan = limits::plan(r, &place, &facts);
        out.warnings.extend(plan.warnings);
        for w in plan.writes {
            match fs::write(&w.file, &w.value) {
                Ok(()) => {
                    if !w.key.is_empty() {
                        out.applied.retain(|a| a.file != w.file);
                        out.applied.push(w);
                    }
                }
                Err(e) if w.key.is_empty() => {
                    tracing::debug!("writing {} to {}: {e}", w.value, w.file.display())
                }
                Err(e) => out.warnings.push(format!(
                    "{}= is not enforced: writing {} to {}: {e}",
                    w.key,
                    w.value,
                    w.file.display()
                )),
            }
        }
        // Keep only what the unit set (the resets of unset settings are not "limits").
        out.applied.retain(|a| is_set(r, a.key));
        let mut seen: Vec<&Path> = Vec::new();
        for (_, p) in &usable {
            if let Place::V1(dir) = p
                && !seen.contains(&dir.as_path())
            {
                seen.push(dir);
                out.join.push(dir.clone());
            }
        }
        out.oom_kills = cgroups.oom_kills();
        out
    }

    /// Removes gitproc's (empty) v1 directories; at shutdown, after every unit's.
    pub fn remove(&self) {
        for dir in self.v1.values() {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// Whether `key`'s setting is set in `r` (as opposed to reset to its default).
fn is_set(r: &Resources, key: &str) -> bool {
    match key {
        "MemoryMin" => r.memory_min.is_some(),
        "MemoryLow" => r.memory_low.is_some(),
        "MemoryHigh" => r.memory_high.is_some(),
        "MemoryMax" => r.memory_max.is_some(),
        "MemorySwapMax" => r.memory_swap_max.is_some(),
        "CPUQuota" => r.cpu_quota_per_sec.is_some(),
        "CPUWeight" => r.cpu_weight.is_some(),
        "CPUShares" => r.cpu_shares.is_some(),
        "TasksMax" => r.tasks_max.is_some(),
        "IOWeight" => r.io_weight.is_some(),
        "BlockIOWeight" => r.blockio_weight.is_some(),
        "AllowedCPUs" => r.allowed_cpus.is_some(),
        _ => false,
    }
}

impl UnitCgroups {
    fn find(&self, c: Controller) -> Option<&Place> {
        self.places.iter().find(|(x, _)| *x == c).map(|(_, p)| p)
    }

    /// The memory cgroup's OOM kill count: v2 `memory.events`, v1 `memory.oom_control`
    /// (both have an `oom_kill N` line). One small read.
    pub fn oom_kills(&self) -> Option<u64> {
        let (file, dir) = match self.find(Controller::Memory)? {
            Place::V2(d) => ("memory.events", d),
            Place::V1(d) => ("memory.oom_control", d),
        };
        let text = fs::read_to_string(dir.join(file)).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
    }

    /// Memory, tasks and CPU time in use now. A few small reads of cgroupfs.
    pub fn usage(&self, v2_unit: Option<&Path>) -> Usage {
        let read = |p: PathBuf| {
            fs::read_to_string(p)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
        };
        let memory_bytes = self.find(Controller::Memory).and_then(|p| match p {
            Place::V2(d) => read(d.join("memory.current")),
            Place::V1(d) => read(d.join("memory.usage_in_bytes")),
        });
        let tasks = self
            .find(Controller::Pids)
            .and_then(|p| read(p.dir().join("pids.current")));
        // A v1 cpuacct cgroup exists only for a unit that joined it; else the v2 cgroup's
        // cpu.stat (present in every v2 cgroup, controllers or not).
        let v1_cpu = match self.find(Controller::Cpuacct) {
            Some(Place::V1(d)) => read(d.join("cpuacct.usage")),
            _ => None,
        };
        let cpu_usage_ns = match v1_cpu {
            Some(ns) => Some(ns),
            None => v2_unit.and_then(|d| {
                fs::read_to_string(d.join("cpu.stat")).ok().and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("usage_usec "))
                        .and_then(|n| n.trim().parse::<u64>().ok())
                        .map(|us| us.saturating_mul(1000))
                })
            }),
        };
        Usage {
            memory_bytes,
            tasks,
            cpu_usage_ns,
        }
    }

    /// The unit's v1 directories (the v2 one belongs to [`super::cgroup`]).
    pub fn v1_dirs(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        for (_, p) in &self.places {
            if let Place::V1(d) = p
                && !out.contains(d)
            {
                out.push(d.clone());
            }
        }
        out
    }

    /// Removes the unit's v1 directories that exist and are empty; `EBUSY` (processes
    /// left) keeps one, logged at debug level.
    pub fn remove(&self) {
        for dir in self.v1_dirs() {
            match fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => tracing::debug!("removing cgroup {}: {e}", dir.display()),
            }
        }
    }
}

/// Enables, in gitproc's v2 root (which holds no process), the controllers its parent
/// delegates: the unit cgroups below then get them. Returns the enabled ones.
fn enable_v2_controllers(root: &Path) -> Vec<Controller> {
    let Ok(available) = fs::read_to_string(root.join("cgroup.controllers")) else {
        return Vec::new();
    };
    let available: Vec<&str> = available.split_whitespace().collect();
    let mut enabled = Vec::new();
    for c in Controller::ALL {
        let Some(name) = c.v2_name() else { continue };
        if !available.contains(&name) {
            continue;
        }
        match fs::write(root.join("cgroup.subtree_control"), format!("+{name}")) {
            Ok(()) => enabled.push(c),
            Err(e) => tracing::debug!("cgroup v2: cannot enable {name} in {}: {e}", root.display()),
        }
    }
    enabled
}

/// Creates a unit's directory in a v1 hierarchy (and gitproc's above it). A new cpuset
/// directory starts with no CPUs and no memory nodes: both are copied from the parent, as
/// the kernel requires before a process may join.
fn create_v1(c: Controller, dir: &Path) -> io::Result<()> {
    let base = dir.parent().unwrap_or(dir);
    for d in [base, dir] {
        match fs::create_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        if c == Controller::Cpuset {
            let parent = d.parent().unwrap_or(d);
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let mine = fs::read_to_string(d.join(file)).unwrap_or_default();
                if mine.trim().is_empty() {
                    let theirs = fs::read_to_string(parent.join(file))?;
                    fs::write(d.join(file), theirs.trim())?;
                }
            }
        }
    }
    Ok(())
}

/// The mount point of the cgroup v1 hierarchy that has controller `name`.
fn v1_mount(mountinfo: &str, name: &str) -> Option<String> {
    mountinfo.lines().find_map(|line| {
        // "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory"
        let (pre, post) = line.split_once(" - ")?;
        let mut post = post.split_whitespace();
        if post.next()? != "cgroup" {
            return None;
        }
        let options = post.nth(1)?;
        if !options.split(',').any(|o| o == name) {
            return None;
        }
        let mount = pre.split_whitespace().nth(4)?;
        mount.starts_with('/').then(|| mount.replace("\\040", " "))
    })
}

/// The daemon's own path in the v1 hierarchy of `name` (`4:memory:/a/b` in `/proc/self/cgroup`).
fn v1_own_path<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let _id = parts.next()?;
        let controllers = parts.next()?;
        let path = parts.next()?;
        controllers.split(',').any(|c| c == name).then_some(path)
    })
}

/// Physical memory (`MemTotal` of `/proc/meminfo`), in bytes; 0 if unreadable.
fn total_memory() -> u64 {
    fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib.saturating_mul(1024))
}

/// The kernel's task limit, as systemd takes it: `min(pid_max, threads-max)`.
fn kernel_tasks_max() -> u64 {
    let read = |p: &str| {
        fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    match (
        read("/proc/sys/kernel/pid_max"),
        read("/proc/sys/kernel/threads-max"),
    ) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => 4_194_304,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_v1_mounts_and_own_paths() {
        let mi = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                  33 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n\
                  35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                  41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            v1_mount(mi, "memory").as_deref(),
            Some("/sys/fs/cgroup/memory")
        );
        assert_eq!(
            v1_mount(mi, "cpuacct").as_deref(),
            Some("/sys/fs/cgroup/cpu,cpuacct")
        );
        assert_eq!(v1_mount(mi, "pids"), None);
        let own = "8:pids:/\n4:memory:/a/b\n2:cpu,cpuacct:/c\n0::/\n";
        assert_eq!(v1_own_path(own, "memory"), Some("/a/b"));
        assert_eq!(v1_own_path(own, "cpuacct"), Some("/c"));
        assert_eq!(v1_own_path(own, "blkio"), None);
    }

    #[test]
    fn unit_places_prefer_v2_where_enabled() {
        let roots = ResourceRoots {
            v2: vec![Controller::Memory],
            v1: [
                (Controller::Memory, PathBuf::from("/v1/memory/g")),
                (Controller::Pids, PathBuf::from("/v1/pids/g")),
            ]
            .into_iter()
            .collect(),
        };
        let u = roots.unit("a.service", Some(Path::new("/v2/g/a.service")));
        assert_eq!(
            u.find(Controller::Memory),
            Some(&Place::V2("/v2/g/a.service".into()))
        );
        assert_eq!(
            u.find(Controller::Pids),
            Some(&Place::V1("/v1/pids/g/a.service".into()))
        );
        assert_eq!(u.v1_dirs(), vec![PathBuf::from("/v1/pids/g/a.service")]);
        assert_eq!(u.find(Controller::Cpu), None);
    }
}

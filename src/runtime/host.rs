//! Questions the daemon asks the host it runs on: does a unit's `Condition*=` hold here,
//! what pid does a `PIDFile=` name, who is a peer uid, which session does a reported main
//! pid lead. Each reads host files (`/etc/machine-id`, paths, `/proc`, NSS), which is why
//! they live in the adapter layer and not in the loop.
//!
//! Which thread asks: [`read_pid_file`] runs on the spawner (`daemon::spawner`: a PID file
//! is a unit-named path, which may be a FIFO or on a hung mount), [`user_name`] on the
//! control server's connection thread (NSS may wait on a directory server),
//! [`track_main_session`] on the loop (it reads `/proc` only, which does not block).
//! [`check_conditions`] and [`check_asserts`] still run on the loop: they read
//! `/etc/machine-id`, `/proc/cmdline`, `/proc/meminfo`, `/proc/self/mountinfo`,
//! `/etc/passwd` or `/etc/group`, stat() the paths named or list the directories of a
//! `PathExistsGlob=` pattern, which only a hung mount or an automount could delay (no NSS
//! lookup). The virtualization is probed once at start ([`HostFacts::detect`]).

use std::path::Path;

use super::kill::ProcessTracker;
use super::procstat::read_stat;
use super::virt::Virtualization;
use crate::unit::comparison;
use crate::unit::model::{Condition, Unit};

/// What the conditions compare against that is read once, at daemon start.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    /// `--hostname` or the detected one (`ConditionHost=`).
    pub hostname: String,
    /// `ConditionVirtualization=` (see [`super::virt`]).
    pub virtualization: Virtualization,
}

impl HostFacts {
    /// The facts of this host: the virtualization is probed now, once.
    pub fn detect(hostname: String) -> HostFacts {
        HostFacts {
            hostname,
            virtualization: Virtualization::detect(),
        }
    }
}

/// The `Condition*=` lines of `unit` (those gitproc evaluates, [`Condition::EVALUATED`]). A
/// failed condition is not an error: the unit is simply not for this host, and the message
/// names the line that failed.
pub fn check_conditions(unit: &Unit, host: &HostFacts) -> Result<(), String> {
    check_family(unit, host, false)
}

/// The `Assert*=` lines of `unit`: unlike a condition, a failed assert fails the start; the
/// message names the line and starts with `Assert` (status tells the two apart by it).
pub fn check_asserts(unit: &Unit, host: &HostFacts) -> Result<(), String> {
    check_family(unit, host, true)
}

fn check_family(unit: &Unit, host: &HostFacts, assert: bool) -> Result<(), String> {
    let mut triggering: Vec<(bool, String)> = Vec::new();
    for c in unit.unit.conditions.iter().filter(|c| c.assert == assert) {
        let ok = holds(c, host) != c.negate;
        if c.trigger {
            triggering.push((ok, c.directive()));
        } else if !ok {
            return Err(failed(c, host));
        }
    }
    if !triggering.is_empty() && !triggering.iter().any(|(ok, _)| *ok) {
        let list: Vec<String> = triggering.into_iter().map(|(_, d)| d).collect();
        let family = if assert { "Assert" } else { "Condition" };
        return Err(format!(
            "{family}: none of the triggering lines held: {}",
            list.join(", ")
        ));
    }
    Ok(())
}

/// The failed line, with what this host has where that helps (`this host is web-7`).
fn failed(c: &Condition, host: &HostFacts) -> String {
    let this = match c.check.as_str() {
        "Host" => host.hostname.clone(),
        "Architecture" => architecture().to_string(),
        "Virtualization" => host.virtualization.name().to_string(),
        "Memory" => physical_memory().map_or("unknown".into(), |b| format!("{b} bytes")),
        "CPUs" => format!("{} CPUs", cpus()),
        _ => return c.directive(),
    };
    format!("{} (this host is {this})", c.directive())
}

/// Whether the test of `c` holds, before its `!`. Each reads at most a few small host
/// files, stat()s one path or lists the directories of one glob.
fn holds(c: &Condition, host: &HostFacts) -> bool {
    let v = c.value.as_str();
    let path = Path::new(v);
    match c.check.as_str() {
        "PathExists" => path.exists(),
        "PathExistsGlob" => glob::glob(v).is_ok_and(|mut paths| paths.any(|p| p.is_ok())),
        "PathIsDirectory" => path.is_dir(),
        "PathIsSymbolicLink" => path.is_symlink(),
        "PathIsMountPoint" => is_mount_point(path),
        "PathIsReadWrite" => nix::sys::statvfs::statvfs(path)
            .is_ok_and(|s| !s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY)),
        "DirectoryNotEmpty" => std::fs::read_dir(path).is_ok_and(|mut d| d.next().is_some()),
        "FileNotEmpty" => std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() > 0),
        "FileIsExecutable" => {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(path)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        }
        "Host" => {
            globset::Glob::new(v)
                .map(|g| g.compile_matcher().is_match(&host.hostname))
                .unwrap_or(false)
                || machine_id().trim() == v
        }
        "KernelCommandLine" => {
            let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
            // `word` matches `word` and `word=...`; `word=value` matches exactly.
            cmdline.split_whitespace().any(|w| {
                w == v || (!v.contains('=') && w.split_once('=').is_some_and(|(k, _)| k == v))
            })
        }
        "Environment" => match v.split_once('=') {
            Some((k, val)) => std::env::var_os(k).is_some_and(|x| x == val),
            None => std::env::var_os(v).is_some(),
        },
        "Architecture" => v == architecture() || v == "native",
        "Virtualization" => host.virtualization.matches(v),
        "Memory" => match (comparison::parse_memory(v), physical_memory()) {
            (Ok((order, want)), Some(have)) => order.holds(have, want),
            _ => false,
        },
        "CPUs" => comparison::parse_cpus(v).is_ok_and(|(order, want)| order.holds(cpus(), want)),
        "Security" => security_enabled(v),
        "User" => user_matches(v),
        "Group" => group_matches(v),
        _ => true, // not evaluated (rejected at load)
    }
}

/// `ConditionPathIsMountPoint=`: the path (symlinks followed, as systemd does) is the root
/// of a mount: listed as a mount point in `/proc/self/mountinfo` (which sees bind mounts of
/// the same file system), or on another device than its parent.
fn is_mount_point(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(real) = std::fs::canonicalize(path) else {
        return false;
    };
    let Some(parent) = real.parent() else {
        return true; // `/`
    };
    let other_device = match (std::fs::metadata(&real), std::fs::metadata(parent)) {
        (Ok(a), Ok(b)) => a.dev() != b.dev(),
        _ => false,
    };
    other_device
        || std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|info| {
            info.lines()
                .filter_map(|l| l.split(' ').nth(4))
                .any(|m| Path::new(&unescape_mountinfo(m)) == real)
        })
}

/// `/proc/self/mountinfo` writes space, tab, newline and backslash as `\ooo` octal.
fn unescape_mountinfo(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push(
                    d.iter()
                        .fold(0u8, |n, c| n.wrapping_mul(8).wrapping_add(c - b'0')),
                );
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `ConditionMemory=`: the memory this host gives the daemon, as systemd reckons it: the
/// physical memory (`MemTotal`), or less when a cgroup the daemon is in (a container's) is
/// limited to less.
fn physical_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let total = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<u64>().ok())?
        .saturating_mul(1024);
    Some(cgroup_memory_limit().map_or(total, |limit| limit.min(total)))
}

/// The lowest memory limit on the daemon's cgroup and its ancestors (cgroup2
/// `memory.max`, cgroup1 `memory.limit_in_bytes`), if any is set.
fn cgroup_memory_limit() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut limits = Vec::new();
    for line in own.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(rel)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let (roots, file): (&[&str], &str) = match controllers {
            "" => (&["/sys/fs/cgroup", "/sys/fs/cgroup/unified"], "memory.max"),
            c if c.split(',').any(|x| x == "memory") => {
                (&["/sys/fs/cgroup/memory"], "memory.limit_in_bytes")
            }
            _ => continue,
        };
        for root in roots {
            let mut dir = Path::new(root).join(rel.trim_start_matches('/'));
            loop {
                if let Some(n) = std::fs::read_to_string(dir.join(file))
                    .ok()
                    .and_then(|t| t.trim().parse::<u64>().ok())
                {
                    limits.push(n);
                }
                if dir.as_path() == Path::new(root) || !dir.pop() {
                    break;
                }
            }
        }
    }
    limits.into_iter().min()
}

/// `ConditionCPUs=`: the CPUs in the daemon's affinity mask (as systemd counts them).
fn cpus() -> u64 {
    nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).map_or(1, |set| {
        (0..nix::sched::CpuSet::count())
            .filter(|&i| set.is_set(i).unwrap_or(false))
            .count() as u64
    })
}

/// `ConditionSecurity=`: the security frameworks cheap to tell from their file systems.
/// Others (`audit`, `cvm`, `measured-uki`) count as absent.
fn security_enabled(v: &str) -> bool {
    let exists = |p: &str| Path::new(p).exists();
    match v {
        "selinux" => std::fs::read_to_string("/sys/fs/selinux/enforce").is_ok(),
        "apparmor" => std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
            .is_ok_and(|t| t.trim() == "Y"),
        "tomoyo" => exists("/sys/kernel/security/tomoyo/version"),
        "smack" => exists("/sys/fs/smackfs/load2"),
        "ima" => exists("/sys/kernel/security/ima"),
        "tpm2" => std::fs::read_dir("/sys/class/tpmrm").is_ok_and(|mut d| d.next().is_some()),
        "uefi-secureboot" => std::fs::read(
            "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-e0a9e0e5a8c4",
        )
        .is_ok_and(|b| b.last() == Some(&1)),
        _ => false,
    }
}

/// systemd's name for the architecture gitproc was built for (systemd.unit(5)).
fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x86-64",
        "aarch64" => "arm64",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64-le",
        "riscv64" => "riscv64",
        "loongarch64" => "loongarch64",
        other => other,
    }
}

/// `ConditionUser=`: the daemon's own user, by uid, by name (from `/etc/passwd`, not NSS:
/// this runs on the loop) or `@system` (a system user, uid below 1000).
fn user_matches(v: &str) -> bool {
    let uid = nix::unistd::getuid().as_raw();
    if v == "@system" {
        return uid < 1000;
    }
    if let Ok(n) = v.parse::<u32>() {
        return n == uid;
    }
    db_id("/etc/passwd", v) == Some(uid)
}

/// `ConditionGroup=`: the daemon's group or one of its supplementary groups, by gid or by
/// name (from `/etc/group`).
fn group_matches(v: &str) -> bool {
    let Some(gid) = v.parse::<u32>().ok().or_else(|| db_id("/etc/group", v)) else {
        return false;
    };
    nix::unistd::getgid().as_raw() == gid
        || nix::unistd::getegid().as_raw() == gid
        || nix::unistd::getgroups().is_ok_and(|g| g.iter().any(|x| x.as_raw() == gid))
}

/// The id (third field) of `name` in a colon-separated database such as `/etc/passwd`.
fn db_id(file: &str, name: &str) -> Option<u32> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then_some(())?;
        f.nth(1)?.parse().ok()
    })
}

/// This machine's id (`/etc/machine-id`, untrimmed), or empty when there is none:
/// `ConditionHost=` matches it as well as the host name.
pub(crate) fn machine_id() -> String {
    std::fs::read_to_string("/etc/machine-id").unwrap_or_default()
}

/// The pid a `PIDFile=` names, if it is a live process.
pub fn read_pid_file(path: &str) -> Result<i32, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("PIDFile={path}: {e}"))?;
    let pid = text
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|&pid| pid > 1)
        .ok_or_else(|| {
            format!(
                "PIDFile={path}: does not hold a valid pid: {:?}",
                text.trim()
            )
        })?;
    // Only a pid that exists and is not a zombie (systemd refuses those too): a file left
    // from an earlier run names a dead or reused pid; the machine reads again until the
    // service writes a fresh one or TimeoutStartSec= passes.
    match read_stat(pid) {
        Ok(stat) if stat.state != b'Z' => Ok(pid),
        _ => Err(format!(
            "PIDFile={path}: pid {pid} does not exist or is a zombie"
        )),
    }
}

/// The user name of `uid` (an NSS lookup), or `uid N` when it has none; for the log lines
/// and overrides that say which operator did what. May block: not for the event loop.
pub fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// A main pid the service reported (`PIDFile=`, `MAINPID=`) may lead a session of its own: a
/// forking daemon calls setsid(). Where there is no cgroup, that session is invisible to
/// `KillMode=control-group`, and the stop would signal neither the daemon nor its workers.
/// Track it when the process provably descends from the service: it leads its session and
/// is an orphan reparented to us (the subreaper) or the child of a tracked process.
pub fn track_main_session(tracker: &mut ProcessTracker, pid: i32) {
    if tracker.sessions().contains(&pid) {
        return; // the usual case: a main process we spawned (it called setsid())
    }
    let Ok(stat) = read_stat(pid) else {
        return;
    };
    if stat.session != pid {
        return;
    }
    let ours = stat.ppid == std::process::id() as i32
        || read_stat(stat.ppid).is_ok_and(|parent| tracker.sessions().contains(&parent.session));
    if ours {
        tracker.add_session(pid);
    }
}

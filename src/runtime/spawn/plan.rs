//! Everything computed in the parent before the clone, so that the child only reads: the
//! program (resolved through `PATH`), argv and envp as C strings, credentials as numbers,
//! the rlimit table with each limit's clamped fallback, the capability masks, the cgroup
//! fds, the working directory. [`prepare`] turns every problem into a [`SpawnError`]
//! naming the setting; [`ChildPlan`] is the flat result that [`super::child`] applies.
//!
//! `Limit*=` follows systemd's `setrlimit_closest()`: when setrlimit fails with EPERM (a
//! value above the hard limit, which only CAP_SYS_RESOURCE may raise), soft and hard are
//! clamped to the current hard limit and the service starts, with a warning in its log.
//! The fallback is computed here from the daemon's own limits (one getrlimit per
//! configured limit: the child inherits exactly these), so the child only retries with
//! prepared values.

use std::ffi::CString;
use std::fs;
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::unit::model::{LimitResource, RLimit};

use super::child::PidSlot;
use super::creds::{self, Credentials};
use super::errors::{errno_text, fmt_rlimit};
use super::stdio::Stdio;
use super::{SpawnError, SpawnRequest, dirs, env};

/// What the child does between clone and execve, prepared by the parent. Read-only for the
/// child; the pointers point into the `CString`s next to them (heap buffers, stable while
/// the plan lives).
pub(super) struct ChildPlan {
    pub(super) exe: CString,
    /// NULL-terminated pointers into `argv` / `envp` (kept alive by the fields below).
    pub(super) argv_ptrs: Vec<*const libc::c_char>,
    pub(super) envp_ptrs: Vec<*const libc::c_char>,
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    /// Sources for fds 0, 1, 2 (owned by [`Prepared::stdio`]).
    pub(super) stdio: [RawFd; 3],
    /// Which of fds 0, 1, 2 are pipes to the log collector (reopened read-write).
    pub(super) log_pipes: [bool; 3],
    pub(super) cgroup_procs: Option<OwnedFd>,
    /// The cgroup directory, for `clone3(CLONE_INTO_CGROUP)`.
    pub(super) cgroup_dir: Option<OwnedFd>,
    /// `cgroup.procs` of each cgroup v1 directory to join, in [`SpawnRequest::v1_cgroups`]
    /// order.
    pub(super) v1_cgroup_procs: Vec<OwnedFd>,
    /// One per `limits` entry, in map order (for error indexes).
    pub(super) rlimits: Vec<PlannedLimit>,
    pub(super) nice: Option<i32>,
    /// `IgnoreSIGPIPE=`.
    pub(super) ignore_sigpipe: bool,
    pub(super) caps: CapPlan,
    /// `WATCHDOG_PID=` and `LISTEN_PID=`, which envp points at, for the child to fill in.
    pub(super) pid_slots: Vec<PidSlot>,
    /// Listening sockets for fds 3, 4, ... (socket activation), at most
    /// [`MAX_LISTEN_FDS`].
    pub(super) listen_fds: Vec<RawFd>,
    pub(super) oom_score_adj: Option<Vec<u8>>,
    pub(super) umask: libc::mode_t,
    pub(super) groups: Option<Vec<libc::gid_t>>,
    pub(super) gid: Option<libc::gid_t>,
    pub(super) uid: Option<libc::uid_t>,
    pub(super) cwd: Option<CString>,
    pub(super) cwd_optional: bool,
    pub(super) no_new_privs: bool,
    /// The test hook (see the module docs of [`super`]): die by SIGSEGV mid-setup.
    #[cfg(debug_assertions)]
    pub(super) fault_before_exec: bool,
}

/// One `Limit*=` for the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PlannedLimit {
    pub(super) resource: i32,
    pub(super) soft: libc::rlim_t,
    pub(super) hard: libc::rlim_t,
    /// (soft, hard) to set instead when the kernel refuses with EPERM: both clamped to the
    /// current hard limit. `None` when clamping would change nothing (the EPERM then has
    /// another cause and fails the spawn, as in systemd) or the hard limit is infinity.
    pub(super) fallback: Option<(libc::rlim_t, libc::rlim_t)>,
}

impl PlannedLimit {
    /// The fallback of `(soft, hard)` given the current hard limit (systemd's
    /// `setrlimit_closest()`).
    fn with_hard_limit(resource: i32, soft: u64, hard: u64, current_hard: u64) -> PlannedLimit {
        let fixed = (soft.min(current_hard), hard.min(current_hard));
        let fallback =
            (current_hard != libc::RLIM_INFINITY && fixed != (soft, hard)).then_some(fixed);
        PlannedLimit {
            resource,
            soft,
            hard,
            fallback,
        }
    }

    /// The fallback as a `Limit*=` value, for the warning.
    pub(super) fn fallback_rlimit(&self) -> Option<RLimit> {
        let v = |x: u64| (x != libc::RLIM_INFINITY).then_some(x);
        self.fallback.map(|(soft, hard)| RLimit {
            soft: v(soft),
            hard: v(hard),
        })
    }
}

/// `CapabilityBoundingSet=` and `AmbientCapabilities=` as masks for the child.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct CapPlan {
    /// Capabilities to drop from the bounding set: those the daemon's bounding set has and
    /// the unit's does not keep.
    pub(super) bounding_drop: u64,
    /// Capabilities to raise in the inheritable and ambient sets.
    pub(super) ambient: u64,
    /// PR_SET_KEEPCAPS before the uid change, so the permitted set survives it.
    pub(super) keep_caps: bool,
}

/// The daemon's bounding set, probed with PR_CAPBSET_READ (it fails past the last
/// capability the kernel knows).
fn current_bounding_set() -> u64 {
    let mut set = 0u64;
    for cap in 0..64u32 {
        // SAFETY: prctl with integer arguments only reads.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(cap), 0, 0, 0) };
        if r < 0 {
            break;
        }
        if r == 1 {
            set |= 1 << cap;
        }
    }
    set
}

/// The daemon's hard limit of `resource` (what the child inherits); infinity if unknown,
/// which disables clamping.
fn current_hard_limit(resource: i32) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we own.
    if unsafe { libc::getrlimit(resource as _, &mut lim) } == 0 {
        lim.rlim_max
    } else {
        libc::RLIM_INFINITY
    }
}

/// A [`ChildPlan`] and what it borrows from: the open standard streams.
pub(super) struct Prepared {
    pub(super) child: ChildPlan,
    /// The resolved program, for messages.
    pub(super) exe: PathBuf,
    /// The parent keeps these open until execve; the child holds only their numbers.
    pub(super) stdio: Stdio,
}

/// Resolves, reads and opens everything the child will need (creating the service's
/// directories on the way), in the order systemd reports problems in.
pub(super) fn prepare(req: &SpawnRequest) -> Result<Prepared, SpawnError> {
    let svc = req.service;
    let cmd = req.command;
    let privileged = cmd.flags.full_privileges;
    // `!!` is `!` only where the kernel lacks ambient capabilities (before Linux 4.3);
    // gitproc applies AmbientCapabilities=, so there `!!` changes nothing, as in systemd.
    let no_setuid = cmd.flags.no_setuid && !cmd.flags.ambient_fallback;
    let apply_creds = !(privileged || no_setuid);

    let step = |what: &str| {
        if let Some(p) = req.progress {
            p.set_step(what);
        }
    };
    if svc.user.is_some() || svc.group.is_some() || !svc.supplementary_groups.is_empty() {
        step("looking up User=/Group= (NSS)");
    }
    let creds = creds::resolve_credentials(svc)?;
    let env = env::build_environment(req, creds.as_ref())?;
    step("creating RuntimeDirectory=/StateDirectory=/LogsDirectory=");
    let dir_env = dirs::create_directories(req, creds.as_ref())?;
    step("resolving the program");

    let path_var = env
        .get("PATH")
        .map(String::as_str)
        .unwrap_or(env::DEFAULT_PATH);
    let exe = resolve_executable(&cmd.path, path_var)?;

    let cstr = |what: &str, v: &[u8]| {
        CString::new(v).map_err(|_| SpawnError::setup(what.to_string(), "contains a NUL byte"))
    };
    let exe_c = cstr(&cmd.origin, exe.as_os_str().as_bytes())?;
    let mut argv = Vec::with_capacity(cmd.argv.len().max(1));
    if cmd.argv.is_empty() {
        argv.push(exe_c.clone());
    }
    for a in &cmd.argv {
        argv.push(cstr(&cmd.origin, a.as_bytes())?);
    }
    let mut envp = Vec::with_capacity(env.len() + dir_env.len());
    let mut pid_slots = Vec::new();
    for (k, v) in env.iter().chain(dir_env.iter().map(|(k, v)| (k, v))) {
        if v == env::CHILD_PID
            && let Some(slot) = PidSlot::new(k)
        {
            pid_slots.push(slot);
            continue;
        }
        envp.push(cstr(
            &format!("Environment={k}"),
            format!("{k}={v}").as_bytes(),
        )?);
    }
    let stdio = Stdio::open(req, &exe)?;
    step("starting the process");
    let child = ChildPlan::new(
        req,
        creds.as_ref(),
        apply_creds,
        !privileged,
        Program {
            exe: exe_c,
            argv,
            envp,
            pid_slots,
        },
        &stdio,
    )?;
    Ok(Prepared { child, exe, stdio })
}

/// The program and its C strings, moved into the plan.
struct Program {
    exe: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    pid_slots: Vec<PidSlot>,
}

/// Most listening sockets one service is handed (the child keeps their copies in a fixed
/// array: it cannot allocate).
pub(super) const MAX_LISTEN_FDS: usize = 64;

fn null_terminated(v: &[CString], extra: &[PidSlot]) -> Vec<*const libc::c_char> {
    v.iter()
        .map(|c| c.as_ptr())
        .chain(extra.iter().map(PidSlot::as_ptr))
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// The setrlimit(2) resource of a `Limit*=` (the one place that knows libc's numbers).
fn rlimit_constant(resource: LimitResource) -> i32 {
    let r = match resource {
        LimitResource::As => libc::RLIMIT_AS,
        LimitResource::Core => libc::RLIMIT_CORE,
        LimitResource::Cpu => libc::RLIMIT_CPU,
        LimitResource::Data => libc::RLIMIT_DATA,
        LimitResource::Fsize => libc::RLIMIT_FSIZE,
        LimitResource::Locks => libc::RLIMIT_LOCKS,
        LimitResource::Memlock => libc::RLIMIT_MEMLOCK,
        LimitResource::Msgqueue => libc::RLIMIT_MSGQUEUE,
        LimitResource::Nice => libc::RLIMIT_NICE,
        LimitResource::Nofile => libc::RLIMIT_NOFILE,
        LimitResource::Nproc => libc::RLIMIT_NPROC,
        LimitResource::Rss => libc::RLIMIT_RSS,
        LimitResource::Rtprio => libc::RLIMIT_RTPRIO,
        LimitResource::Rttime => libc::RLIMIT_RTTIME,
        LimitResource::Sigpending => libc::RLIMIT_SIGPENDING,
        LimitResource::Stack => libc::RLIMIT_STACK,
    };
    r as i32
}

impl ChildPlan {
    fn new(
        req: &SpawnRequest,
        creds: Option<&Credentials>,
        apply_creds: bool,
        restrict: bool,
        program: Program,
        stdio: &Stdio,
    ) -> Result<ChildPlan, SpawnError> {
        let svc = req.service;
        let mut rlimits = Vec::with_capacity(svc.limits.len());
        for (name, lim) in &svc.limits {
            let res = LimitResource::from_name(name)
                .map(rlimit_constant)
                .ok_or_else(|| {
                    SpawnError::setup(
                        format!("Limit{name}={}", fmt_rlimit(lim)),
                        "unknown resource",
                    )
                })?;
            let v = |x: Option<u64>| x.map(|n| n as libc::rlim_t).unwrap_or(libc::RLIM_INFINITY);
            rlimits.push(PlannedLimit::with_hard_limit(
                res,
                v(lim.soft),
                v(lim.hard),
                current_hard_limit(res),
            ));
        }
        let cgroup_err =
            |cg: &super::Cgroup, e| SpawnError::setup(format!("cgroup {}", cg.path().display()), e);
        let (cgroup_procs, cgroup_dir) = match req.cgroup {
            Some(cg) => (
                Some(cg.open_procs().map_err(|e| cgroup_err(cg, e))?),
                Some(cg.open_dir().map_err(|e| cgroup_err(cg, e))?),
            ),
            None => (None, None),
        };
        let v1_cgroup_procs = req
            .v1_cgroups
            .iter()
            .map(|dir| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_CLOEXEC)
                    .open(dir.join("cgroup.procs"))
                    .map(OwnedFd::from)
                    .map_err(|e| SpawnError::setup(format!("cgroup {}", dir.display()), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (uid, gid, groups) = match (apply_creds, creds) {
            (true, Some(c)) => (c.user.as_ref().map(|u| u.uid), c.gid, c.groups.clone()),
            _ => (None, None, None),
        };
        // Skip credential changes that are no-ops for an unprivileged daemon (gitproc run
        // as a user: User= naming that same user).
        let euid = nix::unistd::geteuid().as_raw();
        let (uid, gid, groups) = if euid != 0 && uid.is_none_or(|u| u == euid) {
            (None, None, None)
        } else {
            (uid, gid, groups)
        };
        let home = creds.and_then(|c| c.user.as_ref()).map(|u| u.home.clone());
        let cwd = match svc.working_directory.as_deref() {
            None => None,
            Some(w) => {
                let path: PathBuf = if w == "~" {
                    home.clone().unwrap_or_else(|| {
                        std::env::var_os("HOME")
                            .map(PathBuf::from)
                            .unwrap_or_else(|| "/".into())
                    })
                } else if let Some(rest) = w.strip_prefix("~/") {
                    home.clone().unwrap_or_else(|| "/".into()).join(rest)
                } else {
                    PathBuf::from(w)
                };
                Some(CString::new(path.as_os_str().as_bytes()).map_err(|_| {
                    SpawnError::setup(format!("WorkingDirectory={w}"), "contains a NUL byte")
                })?)
            }
        };
        // Capabilities follow the credentials: not for `+` commands (full privileges).
        let caps = if restrict {
            let ambient = svc.ambient_capabilities;
            CapPlan {
                bounding_drop: svc
                    .capability_bounding_set
                    .map_or(0, |keep| current_bounding_set() & !keep),
                ambient,
                keep_caps: ambient != 0 && uid.is_some(),
            }
        } else {
            CapPlan::default()
        };
        let Program {
            exe,
            argv,
            envp,
            pid_slots,
        } = program;
        if req.listen_fds.len() > MAX_LISTEN_FDS {
            return Err(SpawnError::setup(
                "LISTEN_FDS".to_string(),
                format!("more than {MAX_LISTEN_FDS} listening sockets"),
            ));
        }
        Ok(ChildPlan {
            exe,
            argv_ptrs: null_terminated(&argv, &[]),
            envp_ptrs: null_terminated(&envp, &pid_slots),
            _argv: argv,
            _envp: envp,
            stdio: stdio.sources(),
            log_pipes: stdio.log_pipes(),
            cgroup_procs,
            cgroup_dir,
            v1_cgroup_procs,
            rlimits,
            nice: svc.nice,
            ignore_sigpipe: svc.ignore_sigpipe,
            caps,
            pid_slots,
            listen_fds: req.listen_fds.to_vec(),
            oom_score_adj: svc.oom_score_adjust.map(|v| v.to_string().into_bytes()),
            umask: svc.umask as libc::mode_t,
            groups,
            gid,
            uid,
            cwd,
            cwd_optional: svc.working_directory_optional,
            no_new_privs: svc.no_new_privileges && restrict,
            #[cfg(debug_assertions)]
            fault_before_exec: req.fault_before_exec,
        })
    }
}

/// Resolves a bare command name through `path_var` as systemd does; paths with a `/` are
/// used as given.
fn resolve_executable(name: &str, path_var: &str) -> Result<PathBuf, SpawnError> {
    if name.contains('/') {
        return Ok(PathBuf::from(name));
    }
    let mut saw_non_exec = false;
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(name);
        let Ok(meta) = fs::metadata(&candidate) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        if meta.permissions().mode() & 0o111 != 0 {
            return Ok(candidate);
        }
        saw_non_exec = true;
    }
    let errno = if saw_non_exec {
        libc::EACCES
    } else {
        libc::ENOENT
    };
    Err(SpawnError::Exec {
        path: name.to_string(),
        errno,
        reason: errno_text(errno),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::spawn::DEFAULT_PATH;

    #[test]
    fn bare_names_resolve_through_path() {
        let p = resolve_executable("sh", DEFAULT_PATH).expect("sh in PATH");
        assert!(p.is_absolute());
        let err = resolve_executable("gitproc-no-such-binary", DEFAULT_PATH).expect_err("missing");
        assert_eq!(
            err.to_string(),
            "exec failed: gitproc-no-such-binary: No such file or directory"
        );
    }

    #[test]
    fn limits_above_the_hard_limit_fall_back_to_it() {
        const INF: u64 = libc::RLIM_INFINITY;
        let nofile = libc::RLIMIT_NOFILE as i32;
        // LimitNOFILE=65535 under a hard limit of 20000: both clamped.
        let l = PlannedLimit::with_hard_limit(nofile, 65535, 65535, 20000);
        assert_eq!(l.fallback, Some((20000, 20000)));
        assert_eq!(
            l.fallback_rlimit(),
            Some(RLimit {
                soft: Some(20000),
                hard: Some(20000)
            })
        );
        // LimitNOFILE=1024:infinity: only the hard limit moves.
        let l = PlannedLimit::with_hard_limit(nofile, 1024, INF, 20000);
        assert_eq!(l.fallback, Some((1024, 20000)));
        // Within the hard limit: an EPERM has another cause, no fallback.
        let l = PlannedLimit::with_hard_limit(nofile, 100, 200, 20000);
        assert_eq!(l.fallback, None);
        // An infinite hard limit: nothing to clamp to (systemd propagates the EPERM).
        let l = PlannedLimit::with_hard_limit(nofile, INF, INF, INF);
        assert_eq!(l.fallback, None);
    }

    #[test]
    fn every_limit_resource_has_an_rlimit() {
        let mut seen: Vec<i32> = LimitResource::ALL
            .into_iter()
            .map(rlimit_constant)
            .collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), LimitResource::ALL.len());
    }
}

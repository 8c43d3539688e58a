//! Everything computed in the parent before the clone, so that the child only reads: the
//! program (resolved through `PATH`), argv and envp as C strings, credentials as numbers,
//! the rlimit table, the cgroup fds, the working directory. [`prepare`] turns every problem
//! into a [`SpawnError`] naming the setting; [`ChildPlan`] is the flat result that
//! [`super::child`] applies.

use std::ffi::CString;
use std::fs;
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::unit::model::LimitResource;

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
    /// (resource, soft, hard); one per `limits` entry, in map order (for error indexes).
    pub(super) rlimits: Vec<(i32, libc::rlim_t, libc::rlim_t)>,
    pub(super) nice: Option<i32>,
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
    let apply_creds = !(privileged || cmd.flags.no_setuid || cmd.flags.ambient_fallback);

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
    for (k, v) in env.iter().chain(dir_env.iter().map(|(k, v)| (k, v))) {
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
}

fn null_terminated(v: &[CString]) -> Vec<*const libc::c_char> {
    v.iter()
        .map(|c| c.as_ptr())
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
            rlimits.push((res, v(lim.soft), v(lim.hard)));
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
        let Program { exe, argv, envp } = program;
        Ok(ChildPlan {
            exe,
            argv_ptrs: null_terminated(&argv),
            envp_ptrs: null_terminated(&envp),
            _argv: argv,
            _envp: envp,
            stdio: stdio.sources(),
            log_pipes: stdio.log_pipes(),
            cgroup_procs,
            cgroup_dir,
            rlimits,
            nice: svc.nice,
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

//! Spawning a service process with the execution settings of systemd.exec(5) that
//! gitproc supports.
//!
//! Split in two halves:
//! - the parent prepares everything that allocates or reads files (user and group lookup,
//!   environment, directories, rlimit table, C strings for argv/envp, output files) *before*
//!   creating the child, and turns every problem into a [`SpawnError::Setup`] naming the
//!   setting;
//! - the child only makes plain system calls with the prepared values, then execve.
//!
//! The child is created with `clone(CLONE_VM | CLONE_VFORK)` as posix_spawn(3) does, rather
//! than std's `Command` + `pre_exec` (which forks): measured in this crate's test binary on
//! a loaded 2-core machine, fork-based spawns took p50 1.5-3 ms / p95 8-12 ms against
//! p50 0.2-0.7 ms / p95 0.8 ms here (`cargo test --test runtime_spawn spawn_latency --
//! --ignored --nocapture`), and spawning is on the restart-latency path. The parent thread
//! is suspended until the child has called execve or exited, so [`spawn`] returns only
//! once execve succeeded (`Type=exec` semantics for every type, at no extra cost) or with
//! the child's error, which the child stores in shared memory: a plain execve errno becomes
//! `exec failed: <path>: <errno text>`; a failing setup step stores its errno with the
//! step (and the index of the limit) encoded in the high bits, so the parent can name the
//! setting (see `encode_child_error`).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use crate::unit::model::{ExecCommand, ServiceSection, StdOutput};

use super::cgroup::Cgroup;
use super::procstat;

/// systemd's default `PATH` for services.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Base directories for `RuntimeDirectory=`, `StateDirectory=` and `LogsDirectory=`.
/// Defaults are systemd's system-service ones; tests point them at temporary directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dirs {
    pub runtime: PathBuf,
    pub state: PathBuf,
    pub logs: PathBuf,
}

impl Default for Dirs {
    fn default() -> Self {
        Dirs {
            runtime: PathBuf::from("/run"),
            state: PathBuf::from("/var/lib"),
            logs: PathBuf::from("/var/log"),
        }
    }
}

/// Where a service's stdout or stderr goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputTarget {
    /// A new pipe; its read end is returned in [`Spawned`] for the log collector.
    Pipe,
    /// stderr only: the very same open file as stdout (one pipe, lines in order).
    SameAsStdout,
    /// `/dev/null`.
    Null,
    /// The daemon's own stdout/stderr.
    Inherit,
    /// `file:PATH`: opened for writing from the start, not truncated.
    File(PathBuf),
    /// `append:PATH`.
    Append(PathBuf),
    /// `truncate:PATH`.
    Truncate(PathBuf),
}

impl OutputTarget {
    /// The stdout target `StandardOutput=` asks for (`journal` and friends: a pipe to the
    /// collector).
    pub fn stdout_of(service: &ServiceSection) -> OutputTarget {
        match &service.standard_output {
            StdOutput::Journal => OutputTarget::Pipe,
            StdOutput::Null => OutputTarget::Null,
            StdOutput::Inherit => OutputTarget::Inherit,
            StdOutput::File(p) => OutputTarget::File(PathBuf::from(p)),
            StdOutput::Append(p) => OutputTarget::Append(PathBuf::from(p)),
            StdOutput::Truncate(p) => OutputTarget::Truncate(PathBuf::from(p)),
        }
    }

    /// The stderr target `StandardError=` asks for; unset or `inherit` means "same as
    /// stdout" as in systemd.
    pub fn stderr_of(service: &ServiceSection) -> OutputTarget {
        match &service.standard_error {
            None | Some(StdOutput::Inherit) => OutputTarget::SameAsStdout,
            Some(StdOutput::Journal) => OutputTarget::Pipe,
            Some(StdOutput::Null) => OutputTarget::Null,
            Some(StdOutput::File(p)) => OutputTarget::File(PathBuf::from(p)),
            Some(StdOutput::Append(p)) => OutputTarget::Append(PathBuf::from(p)),
            Some(StdOutput::Truncate(p)) => OutputTarget::Truncate(PathBuf::from(p)),
        }
    }
}

/// Everything needed to start one process of a service.
#[derive(Debug, Clone)]
pub struct SpawnRequest<'a> {
    /// For messages and the cgroup name.
    pub unit_name: &'a str,
    /// The command line to run (any of ExecStart=, ExecStartPre=, ExecStop=, ...).
    pub command: &'a ExecCommand,
    /// The execution settings (User=, Environment=, Limit*=, ...).
    pub service: &'a ServiceSection,
    /// `INVOCATION_ID` (32 lowercase hex characters in systemd).
    pub invocation_id: &'a str,
    /// `NOTIFY_SOCKET` to export, when the service may notify.
    pub notify_socket: Option<&'a Path>,
    /// `MAINPID` to export (for ExecStop=, ExecReload=, ExecStartPost=).
    pub main_pid: Option<i32>,
    /// Extra variables set last (override everything but `UnsetEnvironment=`).
    pub extra_env: &'a [(String, String)],
    pub stdout: OutputTarget,
    pub stderr: OutputTarget,
    /// `Type=exec`: succeed only once execve succeeded. Informational: [`spawn`] always
    /// returns after execve (see the module docs), which costs nothing extra.
    pub wait_exec: bool,
    /// Bases for RuntimeDirectory=/StateDirectory=/LogsDirectory=.
    pub dirs: &'a Dirs,
    /// A cgroup to move the child into before it executes (see [`super::cgroup`]).
    pub cgroup: Option<&'a Cgroup>,
}

impl<'a> SpawnRequest<'a> {
    /// A request with the usual defaults: output per StandardOutput=/StandardError=, no
    /// notify socket, no MAINPID, no extra environment, default directories.
    pub fn new(
        unit_name: &'a str,
        command: &'a ExecCommand,
        service: &'a ServiceSection,
        invocation_id: &'a str,
        dirs: &'a Dirs,
    ) -> SpawnRequest<'a> {
        SpawnRequest {
            unit_name,
            command,
            service,
            invocation_id,
            notify_socket: None,
            main_pid: None,
            extra_env: &[],
            stdout: OutputTarget::stdout_of(service),
            stderr: OutputTarget::stderr_of(service),
            wait_exec: true,
            dirs,
            cgroup: None,
        }
    }
}

/// A started process.
#[derive(Debug)]
pub struct Spawned {
    pub pid: i32,
    /// `/proc/<pid>/stat` start time (clock ticks since boot); with `pid`, identifies the
    /// process across pid reuse (see [`super::kill::signal_verified`]). 0 if it could not
    /// be read (never observed: the child is not reaped before we read it).
    pub start_time: u64,
    /// Read end of the stdout pipe when `stdout` was [`OutputTarget::Pipe`].
    pub stdout: Option<OwnedFd>,
    /// Read end of the stderr pipe when `stderr` was [`OutputTarget::Pipe`].
    pub stderr: Option<OwnedFd>,
}

/// Why a process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// execve failed (or the binary was not found in PATH).
    #[error("exec failed: {path}: {reason}")]
    Exec {
        path: String,
        errno: i32,
        reason: String,
    },
    /// A setting could not be applied; `setting` is written as in the unit, e.g. `User=foo`.
    #[error("{setting}: {reason}")]
    Setup { setting: String, reason: String },
    /// The system refused to create the process (fork, pipe): retry later.
    #[error("cannot spawn {path}: {source}")]
    Os {
        path: String,
        #[source]
        source: io::Error,
    },
}

impl SpawnError {
    fn setup(setting: impl Into<String>, reason: impl std::fmt::Display) -> SpawnError {
        SpawnError::Setup {
            setting: setting.into(),
            reason: reason.to_string(),
        }
    }
}

/// strerror(3) text of an errno value, e.g. "No such file or directory".
pub fn errno_text(errno: i32) -> String {
    nix::errno::Errno::from_raw(errno).desc().to_string()
}

/// Starts the process described by `req`. Returns once execve succeeded.
pub fn spawn(req: &SpawnRequest) -> Result<Spawned, SpawnError> {
    let svc = req.service;
    let cmd = req.command;
    let privileged = cmd.flags.full_privileges;
    let apply_creds = !(privileged || cmd.flags.no_setuid || cmd.flags.ambient_fallback);

    let creds = resolve_credentials(svc)?;
    let env = build_environment(req, creds.as_ref())?;
    let dir_env = create_directories(req, creds.as_ref())?;

    let path_var = env.get("PATH").map(String::as_str).unwrap_or(DEFAULT_PATH);
    let exe = resolve_executable(&cmd.path, path_var)?;

    let plan = ChildPlan::new(req, creds.as_ref(), apply_creds, !privileged)?;
    let os_err = |source: io::Error| SpawnError::Os {
        path: exe.display().to_string(),
        source,
    };

    // Program, argv and environment as C strings, prepared before the clone.
    let cstr = |what: &str, v: &[u8]| {
        CString::new(v).map_err(|_| SpawnError::setup(what.to_string(), "contains a NUL byte"))
    };
    let exe_c = cstr(&cmd.origin, exe.as_os_str().as_bytes())?;
    let mut argv_c = Vec::with_capacity(cmd.argv.len().max(1));
    if cmd.argv.is_empty() {
        argv_c.push(exe_c.clone());
    }
    for a in &cmd.argv {
        argv_c.push(cstr(&cmd.origin, a.as_bytes())?);
    }
    let mut envp_c = Vec::with_capacity(env.len() + dir_env.len());
    for (k, v) in env.iter().chain(dir_env.iter().map(|(k, v)| (k, v))) {
        envp_c.push(cstr(
            &format!("Environment={k}"),
            format!("{k}={v}").as_bytes(),
        )?);
    }
    let argv_p = null_terminated(&argv_c);
    let envp_p = null_terminated(&envp_c);

    // Standard streams: which fd the child dup2()s onto 0, 1 and 2.
    let devnull_in = open_devnull(libc::O_RDONLY).map_err(os_err)?;
    let devnull_out = open_devnull(libc::O_WRONLY).map_err(os_err)?;
    let (stdout, stdout_read) = open_output(&req.stdout, None, "StandardOutput", &exe)?;
    let (stderr, stderr_read) = open_output(&req.stderr, None, "StandardError", &exe)?;
    let source = |fd: &Option<OwnedFd>, t: &OutputTarget, inherit: RawFd| match (fd, t) {
        (Some(fd), _) => fd.as_raw_fd(),
        (None, OutputTarget::Inherit) => inherit,
        (None, _) => devnull_out.as_raw_fd(),
    };
    let out_src = source(&stdout, &req.stdout, 1);
    let err_src = match &req.stderr {
        OutputTarget::SameAsStdout => out_src,
        t => source(&stderr, t, 2),
    };

    let ctx = ChildCtx {
        plan,
        exe: exe_c.as_ptr(),
        argv: argv_p.as_ptr(),
        envp: envp_p.as_ptr(),
        stdio: [devnull_in.as_raw_fd(), out_src, err_src],
        log_pipes: [false, stdout_read.is_some(), stderr_read.is_some()],
        error: AtomicI32::new(0),
        in_cgroup: AtomicBool::new(false),
    };
    let pid = clone_vfork(&ctx).map_err(os_err)?;
    let code = ctx.error.load(Ordering::SeqCst);
    if code != 0 {
        // The child exited without exec: collect it here, the caller never saw its pid.
        let mut status = 0;
        // SAFETY: waitpid on our own child with a valid status pointer.
        while unsafe { libc::waitpid(pid, &mut status, 0) } < 0
            && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
        {}
        return Err(decode_spawn_error(code, &exe, req));
    }
    // The parent's copies of the write ends close here (stdout, stderr dropped).
    drop((stdout, stderr));
    let start_time = procstat::start_time(pid).unwrap_or(0);
    Ok(Spawned {
        pid,
        start_time,
        stdout: stdout_read,
        stderr: stderr_read,
    })
}

fn null_terminated(v: &[CString]) -> Vec<*const libc::c_char> {
    v.iter()
        .map(|c| c.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

fn open_devnull(flags: i32) -> io::Result<OwnedFd> {
    OpenOptions::new()
        .read(flags == libc::O_RDONLY)
        .write(flags == libc::O_WRONLY)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/null")
        .map(OwnedFd::from)
}

/// What the cloned child needs; lives on the parent's stack, which the child shares.
struct ChildCtx {
    plan: ChildPlan,
    exe: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    /// Sources for fds 0, 1, 2.
    stdio: [RawFd; 3],
    /// Which of fds 0, 1, 2 are pipes to the log collector (see [`ChildCtx::run`]).
    log_pipes: [bool; 3],
    /// Set by the child when it fails before or at execve (an encoded step error or a
    /// plain execve errno); 0 after a successful execve.
    error: AtomicI32,
    /// True when the child was created inside its cgroup (`clone3` with
    /// `CLONE_INTO_CGROUP`), so it must not write `cgroup.procs` itself.
    in_cgroup: AtomicBool,
}

/// Stack for the cloned child: it only runs `ChildPlan::run` and execve.
const CHILD_STACK: usize = 256 << 10;

/// Creates the child with `clone(CLONE_VM | CLONE_VFORK)`, as posix_spawn(3) does: no page
/// tables are copied and no copy-on-write faults follow, so a spawn costs ~0.1 ms instead
/// of ~1-2 ms for fork(2) on a loaded machine; the calling thread is suspended until the
/// child has called execve or exited, so `ctx.error` is final when this returns. All
/// signals are blocked around the clone so that no handler of the daemon ever runs on the
/// child's side of the shared memory; the child resets dispositions before unblocking.
///
/// When the unit has a cgroup, the child is created directly inside it with `clone3` and
/// `CLONE_INTO_CGROUP` (Linux 5.7, x86_64 here): joining by a write to `cgroup.procs`
/// migrates the process, which takes the cgroup threadgroup lock for writing and waits for
/// an RCU grace period: measured ~12 ms p50 per spawn on a 2-core VM whenever spawns are
/// more than a few ms apart (a restart after a crash), against ~1 ms for the whole spawn
/// without it. Where `clone3` or `CLONE_INTO_CGROUP` is missing (old kernel, seccomp
/// filter), the first failure switches to the `cgroup.procs` write for the daemon's life.
fn clone_vfork(ctx: &ChildCtx) -> io::Result<i32> {
    // Uninitialised on purpose: zero-filling 256 KiB per spawn cost a memset and ~64 page
    // faults on every start and restart, while the child touches a few KiB of it.
    let mut stack: Vec<u128> = Vec::with_capacity(CHILD_STACK / std::mem::size_of::<u128>());
    let stack_len = stack.capacity();
    // SAFETY: the stack top is one past the end of our allocation (16-byte aligned); the
    // child only reads `ctx` (alive until we return) and writes its atomic error field.
    // Nothing on the Rust side ever reads the (uninitialised) stack memory.
    unsafe {
        let top = stack.as_mut_ptr().add(stack_len).cast::<libc::c_void>();
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let arg: *mut libc::c_void = (ctx as *const ChildCtx).cast_mut().cast();
        let mut pid = -1;
        if let Some(dir) = &ctx.plan.cgroup_dir
            && CLONE_INTO_CGROUP_WORKS.load(Ordering::Relaxed)
        {
            ctx.in_cgroup.store(true, Ordering::SeqCst);
            pid = clone3_into_cgroup(
                arg,
                stack.as_mut_ptr().cast(),
                stack_len * std::mem::size_of::<u128>(),
                dir.as_raw_fd(),
            );
            if pid < 0 {
                ctx.in_cgroup.store(false, Ordering::SeqCst);
                CLONE_INTO_CGROUP_WORKS.store(false, Ordering::Relaxed);
                tracing::debug!(
                    "clone3(CLONE_INTO_CGROUP) failed ({}); children join their cgroup by cgroup.procs",
                    io::Error::from_raw_os_error(-pid)
                );
            }
        }
        if pid < 0 {
            pid = libc::clone(
                child_entry,
                top,
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                arg,
            );
        }
        let err = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        drop(stack);
        if pid < 0 { Err(err) } else { Ok(pid) }
    }
}

/// Cleared by the first failed `clone3(CLONE_INTO_CGROUP)`: later spawns go straight to
/// `clone` + the `cgroup.procs` write.
static CLONE_INTO_CGROUP_WORKS: AtomicBool = AtomicBool::new(cfg!(target_arch = "x86_64"));

/// `clone3(CLONE_VM | CLONE_VFORK | CLONE_INTO_CGROUP)` running [`child_entry`]`(arg)` on
/// `stack` in the child: the pid, or `-errno`. glibc has no public clone3 wrapper, and a
/// child that shares our memory must start on its own stack, hence the few instructions
/// below (the child calls the entry point and exits with its result, as clone(3) does).
#[cfg(target_arch = "x86_64")]
unsafe fn clone3_into_cgroup(
    arg: *mut libc::c_void,
    stack: *mut u8,
    stack_size: usize,
    cgroup: RawFd,
) -> i32 {
    /// `struct clone_args` of linux/sched.h (version 2, with `cgroup`).
    #[repr(C)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    let args = CloneArgs {
        flags: (libc::CLONE_VM | libc::CLONE_VFORK) as u64 | CLONE_INTO_CGROUP,
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: libc::SIGCHLD as u64,
        stack: stack as u64,
        stack_size: stack_size as u64,
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
        cgroup: cgroup as u64,
    };
    let entry: extern "C" fn(*mut libc::c_void) -> libc::c_int = child_entry;
    let ret: i64;
    // SAFETY: the parent only takes the `2:` branch with rax = pid or -errno (the syscall
    // clobbers rcx and r11 only). The child starts at the instruction after `syscall`
    // with rsp = stack + stack_size (16-byte aligned, so the `call` leaves the ABI's
    // alignment), r12/r13 inherited; it never returns into the parent's frames: it exits.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r12",
            "call r13",
            "mov edi, eax",
            "mov eax, 60", // SYS_exit
            "syscall",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") &args as *const CloneArgs,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") arg,
            in("r13") entry,
            out("rcx") _,
            out("r11") _,
            options(nostack),
        );
    }
    ret as i32
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn clone3_into_cgroup(
    _arg: *mut libc::c_void,
    _stack: *mut u8,
    _stack_size: usize,
    _cgroup: RawFd,
) -> i32 {
    -libc::ENOSYS
}

/// The child's entry point: set up, then execve. Returns (and so exits) only on failure.
extern "C" fn child_entry(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the ChildCtx the suspended parent keeps alive.
    let ctx = unsafe { &*(arg as *const ChildCtx) };
    let code = match ctx.run() {
        Ok(()) => {
            // SAFETY: pointers to NUL-terminated strings and NULL-terminated arrays.
            unsafe { libc::execve(ctx.exe, ctx.argv, ctx.envp) };
            errno()
        }
        Err(code) => code,
    };
    ctx.error.store(
        if code == 0 { libc::EINVAL } else { code },
        Ordering::SeqCst,
    );
    127
}

fn errno() -> i32 {
    // SAFETY: reading the calling thread's errno.
    unsafe { *libc::__errno_location() }
}

impl ChildCtx {
    /// Standard streams first (before setsid and credentials, while fds are ours), then
    /// the plan.
    fn run(&self) -> Result<(), i32> {
        let [stdin, stdout, stderr] = self.stdio;
        // stderr before stdout: stderr may copy the inherited fd 1 that stdout replaces.
        for (src, target) in [(stdin, 0), (stderr, 2), (stdout, 1)] {
            // SAFETY: dup2 on fds the parent keeps open.
            if src != target && unsafe { libc::dup2(src, target) } < 0 {
                return Err(encode_child_error(Step::Stdio, target as usize, errno()));
            }
        }
        // A pipe to the log collector is reopened read-write, so that the service itself
        // counts as one of its readers: when the daemon dies (kill -9, or exits with
        // --keep-services) the service's writes do not fail with SIGPIPE/EPIPE but, once the
        // pipe buffer is full, wait for the next daemon, which re-attaches to the pipe when
        // it adopts the service (`reopen_log_pipes`). Best effort: without /proc the write
        // end stays as it was.
        for (fd, path) in [(1, c"/proc/self/fd/1"), (2, c"/proc/self/fd/2")] {
            if self.log_pipes[fd as usize] {
                // SAFETY: open/dup2/close on a static path and our own fds.
                unsafe {
                    let rw = libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
                    if rw >= 0 {
                        libc::dup2(rw, fd);
                        libc::close(rw);
                    }
                }
            }
        }
        self.plan.run(self.in_cgroup.load(Ordering::SeqCst))
    }
}

/// Re-attaches to the log pipes of a process this daemon adopted (spawned by a previous
/// daemon with [`OutputTarget::Pipe`]): opens its stdout and, when it is a different pipe,
/// its stderr for reading through `/proc/PID/fd`. Returns the read ends with `true` for
/// stderr. Only pipes are opened, and the caller asks only for units whose output goes to
/// the collector, so a pipe that belongs to someone else (an inherited stdout) is never read.
pub fn reopen_log_pipes(pid: i32, stdout: bool, stderr: bool) -> Vec<(OwnedFd, bool)> {
    let mut out = Vec::new();
    let mut seen = None;
    for (fd, wanted, is_stderr) in [(1, stdout, false), (2, stderr, true)] {
        let path = format!("/proc/{pid}/fd/{fd}");
        let Ok(link) = fs::read_link(&path) else {
            continue;
        };
        let link = link.to_string_lossy().into_owned();
        if !link.starts_with("pipe:") || seen.as_deref() == Some(link.as_str()) {
            continue;
        }
        seen = Some(link);
        if !wanted {
            continue;
        }
        if let Ok(file) = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path)
        {
            out.push((OwnedFd::from(file), is_stderr));
        }
    }
    out
}

/// Opens the write end for one output. Returns (fd for the child, read end for the collector).
fn open_output(
    target: &OutputTarget,
    same_as_stdout: Option<OwnedFd>,
    setting: &str,
    exe: &Path,
) -> Result<(Option<OwnedFd>, Option<OwnedFd>), SpawnError> {
    let open = |p: &Path, mode: &str, opts: &mut OpenOptions| {
        opts.mode(0o644)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY)
            .open(p)
            .map(|f| (Some(OwnedFd::from(f)), None))
            .map_err(|e| SpawnError::setup(format!("{setting}={mode}:{}", p.display()), e))
    };
    match target {
        OutputTarget::Pipe => {
            let (r, w) =
                nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| SpawnError::Os {
                    path: exe.display().to_string(),
                    source: io::Error::from(e),
                })?;
            Ok((Some(w), Some(r)))
        }
        OutputTarget::SameAsStdout => Ok((same_as_stdout, None)),
        OutputTarget::Null | OutputTarget::Inherit => Ok((None, None)),
        OutputTarget::File(p) => open(p, "file", OpenOptions::new().write(true).create(true)),
        OutputTarget::Append(p) => open(p, "append", OpenOptions::new().append(true).create(true)),
        OutputTarget::Truncate(p) => open(
            p,
            "truncate",
            OpenOptions::new().write(true).create(true).truncate(true),
        ),
    }
}

/// A resolved `User=` / `Group=` / `SupplementaryGroups=`.
#[derive(Debug, Clone)]
struct Credentials {
    /// `Some` when User= is set.
    user: Option<UserInfo>,
    gid: Option<libc::gid_t>,
    /// Full supplementary group list to set (initgroups result plus SupplementaryGroups=).
    groups: Option<Vec<libc::gid_t>>,
}

#[derive(Debug, Clone)]
struct UserInfo {
    name: String,
    uid: libc::uid_t,
    gid: libc::gid_t,
    home: PathBuf,
    shell: PathBuf,
}

fn lookup_user(spec: &str) -> Result<UserInfo, SpawnError> {
    let found = if let Ok(uid) = spec.parse::<u32>() {
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
    } else {
        nix::unistd::User::from_name(spec)
    };
    match found {
        Ok(Some(u)) => Ok(UserInfo {
            name: u.name,
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
            home: u.dir,
            shell: u.shell,
        }),
        Ok(None) => Err(SpawnError::setup(format!("User={spec}"), "no such user")),
        Err(e) => Err(SpawnError::setup(format!("User={spec}"), e.desc())),
    }
}

fn lookup_group(setting: &str, spec: &str) -> Result<libc::gid_t, SpawnError> {
    if let Ok(gid) = spec.parse::<u32>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(spec) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err(SpawnError::setup(
            format!("{setting}={spec}"),
            "no such group",
        )),
        Err(e) => Err(SpawnError::setup(format!("{setting}={spec}"), e.desc())),
    }
}

fn resolve_credentials(svc: &ServiceSection) -> Result<Option<Credentials>, SpawnError> {
    if svc.user.is_none() && svc.group.is_none() && svc.supplementary_groups.is_empty() {
        return Ok(None);
    }
    let user = svc.user.as_deref().map(lookup_user).transpose()?;
    let gid = match &svc.group {
        Some(g) => Some(lookup_group("Group", g)?),
        None => user.as_ref().map(|u| u.gid),
    };
    let mut groups: Option<Vec<libc::gid_t>> = None;
    if let Some(u) = &user {
        let name = CString::new(u.name.as_bytes())
            .map_err(|_| SpawnError::setup(format!("User={}", u.name), "contains a NUL byte"))?;
        let base = gid.unwrap_or(u.gid);
        let list = nix::unistd::getgrouplist(&name, nix::unistd::Gid::from_raw(base))
            .map_err(|e| SpawnError::setup(format!("User={}", u.name), e.desc()))?;
        groups = Some(list.into_iter().map(|g| g.as_raw()).collect());
    }
    if !svc.supplementary_groups.is_empty() {
        let list = groups.get_or_insert_with(Vec::new);
        for g in &svc.supplementary_groups {
            let gid = lookup_group("SupplementaryGroups", g)?;
            if !list.contains(&gid) {
                list.push(gid);
            }
        }
    } else if groups.is_none() && gid.is_some() {
        // Group= without User=: drop the daemon's supplementary groups as systemd does.
        groups = Some(Vec::new());
    }
    Ok(Some(Credentials { user, gid, groups }))
}

/// Parses an `EnvironmentFile=`: `KEY=VALUE` lines, `#`/`;` comments, blank lines, values
/// optionally in single or double quotes (with `\` escapes in double quotes), a trailing
/// `\` continues the line.
pub fn parse_environment_file(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut logical = String::new();
    for raw in text.lines() {
        if let Some(stripped) = raw.strip_suffix('\\') {
            logical.push_str(stripped);
            continue;
        }
        logical.push_str(raw);
        let line = std::mem::take(&mut logical);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let key = k.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            continue;
        }
        out.push((key.to_string(), unquote(v.trim())));
    }
    out
}

fn unquote(v: &str) -> String {
    if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
        return v[1..v.len() - 1].to_string();
    }
    if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        let mut s = String::with_capacity(v.len());
        let mut chars = v[1..v.len() - 1].chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('n') => s.push('\n'),
                    Some(other) => s.push(other),
                    None => s.push('\\'),
                }
            } else {
                s.push(c);
            }
        }
        return s;
    }
    v.to_string()
}

/// The environment of the new process, in systemd's precedence: default PATH, then
/// PassEnvironment= (from the daemon), Environment=, EnvironmentFile= (files override
/// Environment=), the user's HOME/USER/LOGNAME/SHELL when User= is set, then MAINPID,
/// INVOCATION_ID, NOTIFY_SOCKET, then `extra_env`; UnsetEnvironment= removes last
/// (a `NAME` removes the variable, a `NAME=VALUE` only that exact assignment).
fn build_environment(
    req: &SpawnRequest,
    creds: Option<&Credentials>,
) -> Result<BTreeMap<String, String>, SpawnError> {
    let svc = req.service;
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert("PATH".into(), DEFAULT_PATH.into());
    for name in &svc.pass_environment {
        if let Some(v) = std::env::var_os(name) {
            env.insert(name.clone(), v.to_string_lossy().into_owned());
        }
    }
    for (k, v) in &svc.environment {
        env.insert(k.clone(), v.clone());
    }
    for ef in &svc.environment_files {
        // Relative paths are resolved from the repository by the loader and already merged
        // into `environment`.
        if !ef.path.starts_with('/') {
            continue;
        }
        match fs::read(&ef.path) {
            Ok(bytes) => {
                for (k, v) in parse_environment_file(&String::from_utf8_lossy(&bytes)) {
                    env.insert(k, v);
                }
            }
            Err(e) if ef.optional && e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(SpawnError::setup(format!("EnvironmentFile={}", ef.path), e));
            }
        }
    }
    if let Some(u) = creds.and_then(|c| c.user.as_ref()) {
        env.insert("HOME".into(), u.home.display().to_string());
        env.insert("USER".into(), u.name.clone());
        env.insert("LOGNAME".into(), u.name.clone());
        env.insert("SHELL".into(), u.shell.display().to_string());
    }
    if let Some(pid) = req.main_pid {
        env.insert("MAINPID".into(), pid.to_string());
    }
    env.insert("INVOCATION_ID".into(), req.invocation_id.to_string());
    if let Some(sock) = req.notify_socket {
        env.insert("NOTIFY_SOCKET".into(), sock.display().to_string());
    }
    for (k, v) in req.extra_env {
        env.insert(k.clone(), v.clone());
    }
    for u in &svc.unset_environment {
        match u.split_once('=') {
            Some((k, v)) => {
                if env.get(k).map(String::as_str) == Some(v) {
                    env.remove(k);
                }
            }
            None => {
                env.remove(u.as_str());
            }
        }
    }
    Ok(env)
}

/// Creates RuntimeDirectory=/StateDirectory=/LogsDirectory= (with parents) with their mode,
/// owned by User=/Group= when set. Returns the `*_DIRECTORY` variables systemd exports.
fn create_directories(
    req: &SpawnRequest,
    creds: Option<&Credentials>,
) -> Result<Vec<(String, String)>, SpawnError> {
    let svc = req.service;
    let owner = creds.map(|c| {
        (
            c.user.as_ref().map(|u| u.uid),
            c.gid.or(c.user.as_ref().map(|u| u.gid)),
        )
    });
    let kinds: [(&str, &str, &Path, &[String], u32); 3] = [
        (
            "RuntimeDirectory",
            "RUNTIME_DIRECTORY",
            &req.dirs.runtime,
            &svc.runtime_directory,
            svc.runtime_directory_mode,
        ),
        (
            "StateDirectory",
            "STATE_DIRECTORY",
            &req.dirs.state,
            &svc.state_directory,
            svc.state_directory_mode,
        ),
        (
            "LogsDirectory",
            "LOGS_DIRECTORY",
            &req.dirs.logs,
            &svc.logs_directory,
            svc.logs_directory_mode,
        ),
    ];
    let mut out = Vec::new();
    for (setting, var, base, names, mode) in kinds {
        if names.is_empty() {
            continue;
        }
        let mut paths = Vec::new();
        for name in names {
            let bad = name.is_empty()
                || name.starts_with('/')
                || name.split('/').any(|c| c == ".." || c == ".");
            if bad {
                return Err(SpawnError::setup(
                    format!("{setting}={name}"),
                    "must be a relative path without . or .. components",
                ));
            }
            let path = base.join(name);
            let err = |e: io::Error| {
                SpawnError::setup(
                    format!("{setting}={name}"),
                    format!("{}: {e}", path.display()),
                )
            };
            fs::create_dir_all(&path).map_err(err)?;
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(err)?;
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(&path, uid, gid).map_err(err)?;
            }
            paths.push(path.display().to_string());
        }
        out.push((var.to_string(), paths.join(":")));
    }
    Ok(out)
}

/// Removes a service's RuntimeDirectory= entries (systemd does this when the service
/// stops, RuntimeDirectoryPreserve=no being the default). Call once the service is fully
/// stopped. Names that would escape the base are ignored (they were never created).
pub fn remove_runtime_directories(service: &ServiceSection, dirs: &Dirs) -> io::Result<()> {
    // Deepest first, so "a/b" goes before "a".
    let mut names: Vec<&String> = service.runtime_directory.iter().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.matches('/').count()));
    for name in names {
        let bad = name.is_empty()
            || name.starts_with('/')
            || name.split('/').any(|c| c == ".." || c == ".");
        if bad {
            continue;
        }
        let path = dirs.runtime.join(name);
        match fs::remove_dir_all(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        }
    }
    Ok(())
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

/// Steps of the child setup, reported to the parent with the errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
enum Step {
    Setsid = 1,
    Signals = 2,
    Cgroup = 3,
    Rlimit = 4,
    Nice = 5,
    OomScoreAdjust = 6,
    Groups = 7,
    Setgid = 8,
    Setuid = 9,
    Chdir = 10,
    NoNewPrivileges = 11,
    CloseFds = 12,
    Stdio = 13,
}

impl Step {
    fn from_i32(v: i32) -> Option<Step> {
        use Step::*;
        [
            Setsid,
            Signals,
            Cgroup,
            Rlimit,
            Nice,
            OomScoreAdjust,
            Groups,
            Setgid,
            Setuid,
            Chdir,
            NoNewPrivileges,
            CloseFds,
            Stdio,
        ]
        .into_iter()
        .find(|s| *s as i32 == v)
    }
}

const ERRNO_BITS: i32 = 12;
const INDEX_BITS: i32 = 8;

/// Packs a child step, an index (which Limit*=) and an errno into the one integer the
/// child reports. Real errno values are below 4096, so an encoded value is never
/// mistaken for a plain execve errno.
fn encode_child_error(step: Step, index: usize, errno: i32) -> i32 {
    ((step as i32) << (ERRNO_BITS + INDEX_BITS))
        | (((index as i32) & ((1 << INDEX_BITS) - 1)) << ERRNO_BITS)
        | (errno & ((1 << ERRNO_BITS) - 1))
}

fn decode_child_error(code: i32) -> Option<(Step, usize, i32)> {
    let step = Step::from_i32(code >> (ERRNO_BITS + INDEX_BITS))?;
    let index = ((code >> ERRNO_BITS) & ((1 << INDEX_BITS) - 1)) as usize;
    Some((step, index, code & ((1 << ERRNO_BITS) - 1)))
}

fn decode_spawn_error(code: i32, exe: &Path, req: &SpawnRequest) -> SpawnError {
    let svc = req.service;
    let Some((step, index, errno)) = decode_child_error(code) else {
        if code == libc::EAGAIN || code == libc::ENOMEM {
            return SpawnError::Os {
                path: exe.display().to_string(),
                source: io::Error::from_raw_os_error(code),
            };
        }
        return SpawnError::Exec {
            path: exe.display().to_string(),
            errno: code,
            reason: errno_text(code),
        };
    };
    let setting = match step {
        Step::Setsid => "setsid".to_string(),
        Step::Signals => "signal reset".to_string(),
        Step::Cgroup => format!(
            "cgroup {}",
            req.cgroup
                .map(|c| c.path().display().to_string())
                .unwrap_or_default()
        ),
        Step::Rlimit => svc
            .limits
            .iter()
            .nth(index)
            .map(|(k, v)| format!("Limit{k}={}", fmt_rlimit(v)))
            .unwrap_or_else(|| "Limit*=".to_string()),
        Step::Nice => format!("Nice={}", svc.nice.unwrap_or(0)),
        Step::OomScoreAdjust => format!("OOMScoreAdjust={}", svc.oom_score_adjust.unwrap_or(0)),
        Step::Groups => format!("SupplementaryGroups={}", svc.supplementary_groups.join(" ")),
        Step::Setgid => format!(
            "Group={}",
            svc.group.as_deref().or(svc.user.as_deref()).unwrap_or("")
        ),
        Step::Setuid => format!("User={}", svc.user.as_deref().unwrap_or("")),
        Step::Chdir => format!(
            "WorkingDirectory={}",
            svc.working_directory.as_deref().unwrap_or("")
        ),
        Step::NoNewPrivileges => "NoNewPrivileges=yes".to_string(),
        Step::CloseFds => "closing inherited file descriptors".to_string(),
        Step::Stdio => match index {
            0 => "StandardInput=null".to_string(),
            1 => "StandardOutput=".to_string(),
            _ => "StandardError=".to_string(),
        },
    };
    SpawnError::Setup {
        setting,
        reason: errno_text(errno),
    }
}

fn fmt_rlimit(l: &crate::unit::model::RLimit) -> String {
    let f = |v: Option<u64>| {
        v.map(|n| n.to_string())
            .unwrap_or_else(|| "infinity".into())
    };
    format!("{}:{}", f(l.soft), f(l.hard))
}

/// Maps a `Limit*=` name (setrlimit's without `RLIMIT_`) to the resource number.
pub fn rlimit_resource(name: &str) -> Option<i32> {
    let r = match name {
        "CPU" => libc::RLIMIT_CPU,
        "FSIZE" => libc::RLIMIT_FSIZE,
        "DATA" => libc::RLIMIT_DATA,
        "STACK" => libc::RLIMIT_STACK,
        "CORE" => libc::RLIMIT_CORE,
        "RSS" => libc::RLIMIT_RSS,
        "NOFILE" => libc::RLIMIT_NOFILE,
        "AS" => libc::RLIMIT_AS,
        "NPROC" => libc::RLIMIT_NPROC,
        "MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "LOCKS" => libc::RLIMIT_LOCKS,
        "SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "NICE" => libc::RLIMIT_NICE,
        "RTPRIO" => libc::RLIMIT_RTPRIO,
        "RTTIME" => libc::RLIMIT_RTTIME,
        _ => return None,
    };
    Some(r as i32)
}

/// Everything the child does between fork and execve, prepared by the parent.
struct ChildPlan {
    cgroup_procs: Option<OwnedFd>,
    /// The cgroup directory, for `clone3(CLONE_INTO_CGROUP)` (see [`clone_vfork`]).
    cgroup_dir: Option<OwnedFd>,
    /// (resource, soft, hard); one per `limits` entry, in map order (for error indexes).
    rlimits: Vec<(i32, libc::rlim_t, libc::rlim_t)>,
    nice: Option<i32>,
    oom_score_adj: Option<Vec<u8>>,
    umask: libc::mode_t,
    groups: Option<Vec<libc::gid_t>>,
    gid: Option<libc::gid_t>,
    uid: Option<libc::uid_t>,
    cwd: Option<CString>,
    cwd_optional: bool,
    no_new_privs: bool,
}

const OOM_PATH: &[u8] = b"/proc/self/oom_score_adj\0";

impl ChildPlan {
    fn new(
        req: &SpawnRequest,
        creds: Option<&Credentials>,
        apply_creds: bool,
        restrict: bool,
    ) -> Result<ChildPlan, SpawnError> {
        let svc = req.service;
        let mut rlimits = Vec::with_capacity(svc.limits.len());
        for (name, lim) in &svc.limits {
            let res = rlimit_resource(name).ok_or_else(|| {
                SpawnError::setup(
                    format!("Limit{name}={}", fmt_rlimit(lim)),
                    "unknown resource",
                )
            })?;
            let v = |x: Option<u64>| x.map(|n| n as libc::rlim_t).unwrap_or(libc::RLIM_INFINITY);
            rlimits.push((res, v(lim.soft), v(lim.hard)));
        }
        let cgroup_err =
            |cg: &Cgroup, e| SpawnError::setup(format!("cgroup {}", cg.path().display()), e);
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
        Ok(ChildPlan {
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
        })
    }

    /// Runs in the child, which shares the parent's memory (see [`clone_vfork`]): plain
    /// system calls on prepared values only, no allocation, no locks. Credentials change
    /// through raw system calls: glibc's setresuid() and friends would try to broadcast
    /// the change to every thread of the (parent's) process.
    fn run(&self, in_cgroup: bool) -> Result<(), i32> {
        fn fail(step: Step, index: usize) -> i32 {
            let e = errno();
            encode_child_error(step, index, if e == 0 { libc::EINVAL } else { e })
        }
        // SAFETY: plain system calls on valid, prepared arguments.
        unsafe {
            if libc::setsid() < 0 {
                return Err(fail(Step::Setsid, 0));
            }
            // Reset every disposition to default (ignored signals survive execve) and
            // unblock everything (the daemon blocks signals for signal-hook's thread).
            // The raw system call also reaches the real-time signals glibc reserves for
            // itself (32, 33), which its sigaction() refuses to touch.
            let dfl = KernelSigaction {
                handler: libc::SIG_DFL,
                flags: 0,
                restorer: 0,
                mask: 0,
            };
            for sig in 1..=64 {
                if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                    continue;
                }
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    &dfl as *const KernelSigaction,
                    std::ptr::null_mut::<KernelSigaction>(),
                    8usize,
                );
            }
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            if libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) < 0 {
                return Err(fail(Step::Signals, 0));
            }
            if let Some(fd) = &self.cgroup_procs
                && !in_cgroup
                && libc::write(fd.as_raw_fd(), b"0".as_ptr().cast(), 1) < 0
            {
                return Err(fail(Step::Cgroup, 0));
            }
            for (i, (res, soft, hard)) in self.rlimits.iter().enumerate() {
                let lim = libc::rlimit {
                    rlim_cur: *soft,
                    rlim_max: *hard,
                };
                if libc::setrlimit(*res as _, &lim) < 0 {
                    return Err(fail(Step::Rlimit, i));
                }
            }
            if let Some(n) = self.nice
                && libc::setpriority(libc::PRIO_PROCESS, 0, n) < 0
            {
                return Err(fail(Step::Nice, 0));
            }
            if let Some(v) = &self.oom_score_adj {
                let fd = libc::open(OOM_PATH.as_ptr().cast(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(fail(Step::OomScoreAdjust, 0));
                }
                let n = libc::write(fd, v.as_ptr().cast(), v.len());
                let err = fail(Step::OomScoreAdjust, 0);
                libc::close(fd);
                if n < 0 {
                    return Err(err);
                }
            }
            libc::umask(self.umask);
            if let Some(groups) = &self.groups
                && libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) < 0
            {
                return Err(fail(Step::Groups, 0));
            }
            if let Some(gid) = self.gid
                && libc::syscall(libc::SYS_setresgid, gid, gid, gid) < 0
            {
                return Err(fail(Step::Setgid, 0));
            }
            if let Some(uid) = self.uid
                && libc::syscall(libc::SYS_setresuid, uid, uid, uid) < 0
            {
                return Err(fail(Step::Setuid, 0));
            }
            if let Some(cwd) = &self.cwd
                && libc::chdir(cwd.as_ptr()) < 0
                && !self.cwd_optional
            {
                return Err(fail(Step::Chdir, 0));
            }
            if self.no_new_privs && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 {
                return Err(fail(Step::NoNewPrivileges, 0));
            }
            // Last. Marking close-on-exec rather than closing keeps the parent's fds intact
            // (clone without CLONE_FILES gives the child its own fd table, but a failure
            // after this point must not disturb anything either).
            if mark_fds_cloexec_from(3) < 0 {
                return Err(fail(Step::CloseFds, 0));
            }
        }
        Ok(())
    }
}

/// The kernel's `struct sigaction` for rt_sigaction(2) (x86_64 and the generic layout with
/// `SA_RESTORER`, e.g. aarch64): handler, flags, restorer, 64-bit mask.
#[repr(C)]
struct KernelSigaction {
    handler: libc::sighandler_t,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

/// Marks every fd >= `first` close-on-exec. `close_range(CLOSE_RANGE_CLOEXEC)` (Linux 5.11);
/// on older kernels, a loop of `fcntl` up to the NOFILE limit (capped). Async-signal-safe.
///
/// # Safety
/// Only system calls; safe to call between fork and exec.
unsafe fn mark_fds_cloexec_from(first: RawFd) -> i32 {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: raw system calls with plain integer arguments.
    unsafe {
        let r = libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        );
        if r == 0 {
            return 0;
        }
        mark_fds_cloexec_by_loop(first)
    }
}

/// The fallback of [`mark_fds_cloexec_from`] for kernels before 5.11: `fcntl` on every fd
/// number up to the NOFILE soft limit (capped at 2^20).
///
/// # Safety
/// Only system calls.
unsafe fn mark_fds_cloexec_by_loop(first: RawFd) -> i32 {
    // SAFETY: raw system calls with plain integer arguments.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        let max = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur.min(1 << 20) as RawFd
        } else {
            1024
        };
        for fd in first..max {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unit::model::EnvironmentFile;

    #[test]
    fn fallback_marks_inherited_fds_close_on_exec() {
        // SAFETY: test-local fds; marking fds >= `fd` close-on-exec is harmless to the
        // test process (every spawn marks them in the child anyway).
        unsafe {
            let fd = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
            assert!(fd >= 3);
            assert_eq!(libc::fcntl(fd, libc::F_GETFD) & libc::FD_CLOEXEC, 0);
            assert_eq!(mark_fds_cloexec_by_loop(fd), 0);
            assert_ne!(libc::fcntl(fd, libc::F_GETFD) & libc::FD_CLOEXEC, 0);
            libc::close(fd);
        }
    }

    #[test]
    fn output_targets_follow_standard_output_and_error() {
        let mut svc = ServiceSection::default();
        assert_eq!(OutputTarget::stdout_of(&svc), OutputTarget::Pipe);
        assert_eq!(OutputTarget::stderr_of(&svc), OutputTarget::SameAsStdout);
        svc.standard_output = StdOutput::Append("/tmp/x".into());
        svc.standard_error = Some(StdOutput::Null);
        assert_eq!(
            OutputTarget::stdout_of(&svc),
            OutputTarget::Append(PathBuf::from("/tmp/x"))
        );
        assert_eq!(OutputTarget::stderr_of(&svc), OutputTarget::Null);
        svc.standard_error = Some(StdOutput::Journal);
        assert_eq!(OutputTarget::stderr_of(&svc), OutputTarget::Pipe);
    }

    #[test]
    fn child_error_round_trips() {
        let code = encode_child_error(Step::Rlimit, 3, libc::EPERM);
        assert!(
            code >= 1 << 12,
            "encoded codes never look like a plain errno"
        );
        assert_eq!(
            decode_child_error(code),
            Some((Step::Rlimit, 3, libc::EPERM))
        );
        assert_eq!(decode_child_error(libc::ENOENT), None);
    }

    #[test]
    fn environment_file_syntax() {
        let text = "# comment\n; other\n\nA=1\nB = \"two words\\n\"\nC='x y'\nexport D=4\nE=long\\\nline\nnoequals\n";
        let env = parse_environment_file(text);
        assert_eq!(
            env,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words\n".into()),
                ("C".into(), "x y".into()),
                ("D".into(), "4".into()),
                ("E".into(), "longline".into()),
            ]
        );
    }

    #[test]
    fn environment_precedence_and_unset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("env");
        fs::write(&file, "FROMFILE=1\nOVER=file\n").expect("write env file");
        let svc = ServiceSection {
            environment: vec![
                ("OVER".into(), "env".into()),
                ("KEEP".into(), "k".into()),
                ("GONE".into(), "x".into()),
                ("GONE2".into(), "y".into()),
            ],
            environment_files: vec![
                EnvironmentFile {
                    path: file.display().to_string(),
                    optional: false,
                },
                EnvironmentFile {
                    path: "/nonexistent/gitproc-env".into(),
                    optional: true,
                },
                EnvironmentFile {
                    path: "relative/env".into(),
                    optional: false,
                },
            ],
            unset_environment: vec!["GONE".into(), "GONE2=nope".into()],
            ..ServiceSection::default()
        };
        let cmd = ExecCommand::default();
        let dirs = Dirs::default();
        let mut req = SpawnRequest::new("a.service", &cmd, &svc, "abc", &dirs);
        req.main_pid = Some(42);
        let env = build_environment(&req, None).expect("env");
        assert_eq!(env["PATH"], DEFAULT_PATH);
        assert_eq!(env["OVER"], "file");
        assert_eq!(env["FROMFILE"], "1");
        assert_eq!(env["KEEP"], "k");
        assert_eq!(env["MAINPID"], "42");
        assert_eq!(env["INVOCATION_ID"], "abc");
        assert!(!env.contains_key("GONE"));
        assert_eq!(env["GONE2"], "y");
        assert!(!env.contains_key("NOTIFY_SOCKET"));
    }

    #[test]
    fn missing_mandatory_environment_file_names_the_setting() {
        let svc = ServiceSection {
            environment_files: vec![EnvironmentFile {
                path: "/nonexistent/gitproc-env".into(),
                optional: false,
            }],
            ..ServiceSection::default()
        };
        let cmd = ExecCommand::default();
        let dirs = Dirs::default();
        let req = SpawnRequest::new("a.service", &cmd, &svc, "abc", &dirs);
        let err = build_environment(&req, None).expect_err("missing file");
        assert_eq!(
            err.to_string(),
            "EnvironmentFile=/nonexistent/gitproc-env: No such file or directory (os error 2)"
        );
    }

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
    fn unknown_user_is_named() {
        let svc = ServiceSection {
            user: Some("gitproc-no-such-user".into()),
            ..ServiceSection::default()
        };
        let err = resolve_credentials(&svc).expect_err("unknown user");
        assert_eq!(err.to_string(), "User=gitproc-no-such-user: no such user");
    }
}

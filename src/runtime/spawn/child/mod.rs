//! The only code that runs between clone and execve, and all of the spawner's `unsafe`.
//!
//! The child is created with `clone(CLONE_VM | CLONE_VFORK)` (or `clone3` into its cgroup),
//! as posix_spawn(3) does: it shares the daemon's memory, runs on a stack of its own, and
//! the calling thread is suspended until the child has called execve or died. So the child
//! may only make plain system calls on values [`super::plan`] prepared: no allocation, no
//! locks, no panics (a panic would unwind through the parent's memory). The lints below
//! hold this module to that: no `panic!`, `unwrap`, `expect`, indexing or overflowing
//! arithmetic, which would all be hidden panics (denied outside `cfg(test)`, so that the
//! unit tests may `expect`; `cargo clippy --all-targets` lints the non-test build too).
//!
//! What the child tells the parent goes through two words of shared memory:
//! - `progress`: the setup step the child is in, stored before each step, and `Exec` just
//!   before execve. Still short of `Exec` when the parent resumes means the child died in
//!   setup (a signal, an `exit` without a report): [`ChildReport::Died`], with the
//!   step and the wait status, never a running service;
//! - `error`: a failed step (or execve) with its errno: [`ChildReport::Failed`];
//! - what the child did differently from the plan without failing, for the unit's log:
//!   the `Limit*=`s it clamped to the hard limit and an `OOMScoreAdjust=` the kernel
//!   refused with EPERM/EACCES (both as systemd: [`Started`]).
//!
//! The stack is one mmap'd region made at the first spawn and reused (the parent is
//! suspended while the child runs on it, and a mutex keeps two threads from sharing it),
//! with a `PROT_NONE` guard page at its low end: a child that overflows it dies by SIGSEGV,
//! and is reported as above, instead of writing over the daemon's heap.
//!
//! A core-dumping signal in the child is safe on Linux >= 5.16 only; older kernels also
//! kill every process that shares the dumping one's memory, the daemon included.
#![cfg_attr(
    not(test),
    deny(
        clippy::panic,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};

use super::plan::{ChildPlan, MAX_LISTEN_FDS};

mod caps;
mod clone;
mod pid_slot;
mod signals;

use signals::{reset_signal_dispositions, set_disposition};

pub(super) use pid_slot::PidSlot;

/// Steps of the child setup, reported to the parent with the errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub(super) enum Step {
    Entry = 1,
    Stdio = 2,
    Setsid = 3,
    Signals = 4,
    Cgroup = 5,
    TestFault = 6,
    Rlimit = 7,
    Nice = 8,
    OomScoreAdjust = 9,
    Groups = 10,
    Setgid = 11,
    Setuid = 12,
    Chdir = 13,
    NoNewPrivileges = 14,
    CloseFds = 15,
    Exec = 16,
    /// Index 0: `CapabilityBoundingSet=`; 1-3: `AmbientCapabilities=` (keep-caps, the
    /// inheritable set, the ambient raise).
    Capabilities = 17,
}

impl Step {
    pub(super) const ALL: [Step; 17] = [
        Step::Entry,
        Step::Stdio,
        Step::Setsid,
        Step::Signals,
        Step::Cgroup,
        Step::TestFault,
        Step::Rlimit,
        Step::Nice,
        Step::OomScoreAdjust,
        Step::Groups,
        Step::Setgid,
        Step::Setuid,
        Step::Capabilities,
        Step::Chdir,
        Step::NoNewPrivileges,
        Step::CloseFds,
        Step::Exec,
    ];

    fn from_i32(v: i32) -> Option<Step> {
        Step::ALL.into_iter().find(|s| *s as i32 == v)
    }
}

const ERRNO_BITS: u32 = 12;
const INDEX_BITS: u32 = 8;
const ERRNO_MASK: i32 = (1 << ERRNO_BITS) - 1;
const INDEX_MASK: i32 = (1 << INDEX_BITS) - 1;

/// Packs a step, an index (which `Limit*=`, which standard stream) and an errno into one
/// integer (errno values are below 4096; indexes above 255 wrap, which only blurs a
/// message). Bit operations only: this runs in the child.
fn encode(step: Step, index: usize, errno: i32) -> i32 {
    let index = (index as i32) & INDEX_MASK;
    ((step as i32).wrapping_shl(ERRNO_BITS + INDEX_BITS))
        | index.wrapping_shl(ERRNO_BITS)
        | (errno & ERRNO_MASK)
}

fn decode(code: i32) -> Option<(Step, usize, i32)> {
    let step = Step::from_i32(code.wrapping_shr(ERRNO_BITS + INDEX_BITS))?;
    let index = (code.wrapping_shr(ERRNO_BITS) & INDEX_MASK) as usize;
    Some((step, index, code & ERRNO_MASK))
}

/// Why a child did not reach a successful execve. It has been reaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChildReport {
    /// A step (or execve itself, `Step::Exec`) failed with `errno`.
    Failed {
        step: Step,
        index: usize,
        errno: i32,
    },
    /// The child died in setup without a report; `step` is `None` if it never started,
    /// `status` (from waitpid) `None` if another thread reaped it first (then the reaper has
    /// its status for `pid`).
    Died {
        pid: i32,
        step: Option<Step>,
        index: usize,
        status: Option<i32>,
    },
}

/// A child that reached a successful execve, and what it did differently from the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Started {
    pub(super) pid: i32,
    /// Bit `i`: `plan.rlimits[i]` was refused with EPERM and set to its fallback.
    pub(super) clamped: u32,
    /// The errno (EPERM or EACCES) of an `OOMScoreAdjust=` that was ignored, or 0.
    pub(super) oom_ignored_errno: i32,
}

/// Whether an error writing `/proc/self/oom_score_adj` is ignored: EPERM and EACCES, as
/// systemd does (a manager without CAP_SYS_RESOURCE, or in a container, may not lower the
/// score; the service still runs). Anything else fails the spawn with 206/OOM_ADJUST.
pub(super) const fn oom_error_is_ignored(errno: i32) -> bool {
    errno == libc::EPERM || errno == libc::EACCES
}

/// What the parent and the child share while the parent is suspended.
pub(super) struct ChildCtx<'a> {
    plan: &'a ChildPlan,
    /// The step the child is in, [`encode`]d with errno 0; 0 before it starts.
    progress: AtomicI32,
    /// An [`encode`]d failure, or 0.
    error: AtomicI32,
    /// True when the child was created inside its cgroup (`clone3` with
    /// `CLONE_INTO_CGROUP`), so it must not write `cgroup.procs` itself.
    in_cgroup: AtomicBool,
    /// See [`Started::clamped`].
    clamped: AtomicU32,
    /// See [`Started::oom_ignored_errno`].
    oom_ignored: AtomicI32,
}

/// Runs `plan` in a new child. `Ok(Ok(started))` once the child has called execve
/// successfully; `Ok(Err(report))` when it failed or died before (it is reaped);
/// `Err` when no child could be created.
pub(super) fn spawn(plan: &ChildPlan) -> io::Result<Result<Started, ChildReport>> {
    let ctx = ChildCtx {
        plan,
        progress: AtomicI32::new(0),
        error: AtomicI32::new(0),
        in_cgroup: AtomicBool::new(false),
        clamped: AtomicU32::new(0),
        oom_ignored: AtomicI32::new(0),
    };
    let pid = clone::clone_vfork(&ctx)?;
    let error = ctx.error.load(Ordering::SeqCst);
    if error != 0 {
        reap(pid);
        let (step, index, errno) = decode(error).unwrap_or((Step::Exec, 0, libc::EINVAL));
        return Ok(Err(ChildReport::Failed { step, index, errno }));
    }
    let progress = decode(ctx.progress.load(Ordering::SeqCst));
    match progress {
        Some((Step::Exec, _, _)) => Ok(Ok(Started {
            pid,
            clamped: ctx.clamped.load(Ordering::SeqCst),
            oom_ignored_errno: ctx.oom_ignored.load(Ordering::SeqCst),
        })),
        _ => Ok(Err(ChildReport::Died {
            pid,
            step: progress.map(|p| p.0),
            index: progress.map_or(0, |p| p.1),
            status: reap(pid),
        })),
    }
}

/// Waits for a child that exited before execve (the caller never sees its pid); its wait
/// status, `None` if someone else reaped it first.
fn reap(pid: i32) -> Option<i32> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our own child with a valid status pointer.
        if unsafe { libc::waitpid(pid, &mut status, 0) } >= 0 {
            return Some(status);
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return None;
        }
    }
}

/// The child's entry point: set up, then execve. Returns (and so exits) only on failure.
pub(super) extern "C" fn child_entry(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the ChildCtx the suspended parent keeps alive.
    let ctx = unsafe { &*(arg as *const ChildCtx) };
    let code = match setup(ctx) {
        Ok(()) => {
            ctx.enter(Step::Exec, 0);
            let plan = ctx.plan;
            if !plan.pid_slots.is_empty() {
                // SAFETY: getpid has no preconditions; the raw call, since glibc's may
                // answer from the parent's cache (the child shares its memory).
                let pid = unsafe { libc::syscall(libc::SYS_getpid) };
                for slot in &plan.pid_slots {
                    slot.fill(u32::try_from(pid).unwrap_or(0));
                }
            }
            // SAFETY: pointers to NUL-terminated strings and NULL-terminated arrays that
            // the plan keeps alive.
            unsafe {
                libc::execve(
                    plan.exe.as_ptr(),
                    plan.argv_ptrs.as_ptr(),
                    plan.envp_ptrs.as_ptr(),
                )
            };
            encode(Step::Exec, 0, nonzero_errno())
        }
        Err(code) => code,
    };
    ctx.error.store(code, Ordering::SeqCst);
    127
}

impl ChildCtx<'_> {
    /// Records the step the child is about to take (see the module docs).
    fn enter(&self, step: Step, index: usize) {
        self.progress
            .store(encode(step, index, 0), Ordering::SeqCst);
    }

    /// `Ok` when the step's system call succeeded (`ok`), else its encoded error.
    fn step(&self, step: Step, index: usize, ok: bool) -> Result<(), i32> {
        if ok {
            Ok(())
        } else {
            Err(encode(step, index, nonzero_errno()))
        }
    }
}

/// errno, or EINVAL if a call failed without setting it (a failure must never read as
/// success).
fn nonzero_errno() -> i32 {
    // SAFETY: reading the calling thread's errno (the child shares the parent thread's
    // TLS, which is suspended).
    let e = unsafe { *libc::__errno_location() };
    if e == 0 { libc::EINVAL } else { e }
}

const OOM_PATH: &[u8] = b"/proc/self/oom_score_adj\0";

/// Runs in the child (see the module docs): standard streams first (while the fds are
/// ours), then session, signals, cgroup, limits, priority, credentials, directory, and
/// close-on-exec for everything else. Credentials change through raw system calls:
/// glibc's setresuid() and friends would try to broadcast the change to every thread of
/// the (parent's) process.
fn setup(ctx: &ChildCtx) -> Result<(), i32> {
    let plan = ctx.plan;
    ctx.enter(Step::Entry, 0);
    // Socket activation: the listening sockets go to fds 3.. (LISTEN_FDS). First copied
    // above that range (close-on-exec), so that neither the stdio sources nor the fds the
    // later steps use are overwritten; moved into place last, before close-on-exec.
    let n_listen = plan.listen_fds.len();
    let first_free = 3i32.saturating_add(i32::try_from(n_listen).unwrap_or(i32::MAX));
    let mut high: [RawFd; MAX_LISTEN_FDS] = [-1; MAX_LISTEN_FDS];
    for (src, slot) in plan.listen_fds.iter().zip(high.iter_mut()) {
        ctx.enter(Step::CloseFds, 1);
        // SAFETY: fcntl on an fd the parent keeps open.
        let fd = unsafe { libc::fcntl(*src, libc::F_DUPFD_CLOEXEC, first_free) };
        ctx.step(Step::CloseFds, 1, fd >= 0)?;
        *slot = fd;
    }
    let [stdin, stdout, stderr] = plan.stdio;
    // stderr before stdout: stderr may copy the inherited fd 1 that stdout replaces.
    for (src, target) in [(stdin, 0), (stderr, 2), (stdout, 1)] {
        ctx.enter(Step::Stdio, target as usize);
        // SAFETY: dup2 on fds the parent keeps open.
        let ok = src == target || unsafe { libc::dup2(src, target) } >= 0;
        ctx.step(Step::Stdio, target as usize, ok)?;
    }
    // A pipe to the log collector is reopened read-write, so that the service itself
    // counts as one of its readers: when the daemon dies (kill -9, or exits with
    // --keep-services) the service's writes do not fail with SIGPIPE/EPIPE but, once the
    // pipe buffer is full, wait for the next daemon, which re-attaches to the pipe when it
    // adopts the service (`reopen_log_pipes`). Best effort: without /proc the write end
    // stays as it was.
    let reopen = [(1, c"/proc/self/fd/1"), (2, c"/proc/self/fd/2")];
    for ((fd, path), is_pipe) in reopen.into_iter().zip(plan.log_pipes.into_iter().skip(1)) {
        if is_pipe {
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
    // SAFETY (for the block): plain system calls on valid, prepared arguments.
    unsafe {
        ctx.enter(Step::Setsid, 0);
        ctx.step(Step::Setsid, 0, libc::setsid() >= 0)?;
        ctx.enter(Step::Signals, 0);
        reset_signal_dispositions();
        if plan.ignore_sigpipe {
            // IgnoreSIGPIPE=yes (systemd's default); an ignored signal survives execve.
            set_disposition(libc::SIGPIPE, libc::SIG_IGN);
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        let ok = libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) >= 0;
        ctx.step(Step::Signals, 0, ok)?;
        if let Some(fd) = &plan.cgroup_procs
            && !ctx.in_cgroup.load(Ordering::SeqCst)
        {
            ctx.enter(Step::Cgroup, 0);
            let ok = libc::write(fd.as_raw_fd(), b"0".as_ptr().cast(), 1) >= 0;
            ctx.step(Step::Cgroup, 0, ok)?;
        }
        // cgroup v1 hierarchies (resource control on a hybrid host): index 1 and up.
        for (i, fd) in plan.v1_cgroup_procs.iter().enumerate() {
            let index = i.wrapping_add(1);
            ctx.enter(Step::Cgroup, index);
            let ok = libc::write(fd.as_raw_fd(), b"0".as_ptr().cast(), 1) >= 0;
            ctx.step(Step::Cgroup, index, ok)?;
        }
        #[cfg(debug_assertions)]
        if plan.fault_before_exec {
            ctx.enter(Step::TestFault, 0);
            // Raw system calls: glibc's raise() would signal the parent thread, whose
            // thread descriptor the child shares. SIGSEGV is unblocked and SIG_DFL by now.
            let pid = libc::syscall(libc::SYS_getpid);
            let tid = libc::syscall(libc::SYS_gettid);
            libc::syscall(libc::SYS_tgkill, pid, tid, libc::SIGSEGV);
            return Err(encode(Step::TestFault, 0, libc::EINTR));
        }
        // setrlimit_closest() as systemd: a limit refused with EPERM (above the hard
        // limit, which only CAP_SYS_RESOURCE may raise) is set to the fallback the parent
        // computed from the hard limit this child inherited.
        for (i, lim) in plan.rlimits.iter().enumerate() {
            ctx.enter(Step::Rlimit, i);
            let want = libc::rlimit {
                rlim_cur: lim.soft,
                rlim_max: lim.hard,
            };
            if libc::setrlimit(lim.resource as _, &want) >= 0 {
                continue;
            }
            let errno = nonzero_errno();
            match lim.fallback {
                Some((soft, hard)) if errno == libc::EPERM => {
                    let fixed = libc::rlimit {
                        rlim_cur: soft,
                        rlim_max: hard,
                    };
                    ctx.step(
                        Step::Rlimit,
                        i,
                        libc::setrlimit(lim.resource as _, &fixed) >= 0,
                    )?;
                    let bit = 1u32.checked_shl(i as u32).unwrap_or(0);
                    ctx.clamped.fetch_or(bit, Ordering::SeqCst);
                }
                _ => return Err(encode(Step::Rlimit, i, errno)),
            }
        }
        if let Some(n) = plan.nice {
            ctx.enter(Step::Nice, 0);
            let ok = libc::setpriority(libc::PRIO_PROCESS, 0, n) >= 0;
            ctx.step(Step::Nice, 0, ok)?;
        }
        if let Some(v) = &plan.oom_score_adj {
            ctx.enter(Step::OomScoreAdjust, 0);
            let fd = libc::open(OOM_PATH.as_ptr().cast(), libc::O_WRONLY | libc::O_CLOEXEC);
            let errno = if fd < 0 {
                nonzero_errno()
            } else {
                let written = libc::write(fd, v.as_ptr().cast(), v.len()) >= 0;
                let errno = if written { 0 } else { nonzero_errno() };
                libc::close(fd);
                errno
            };
            if errno != 0 {
                if !oom_error_is_ignored(errno) {
                    return Err(encode(Step::OomScoreAdjust, 0, errno));
                }
                ctx.oom_ignored.store(errno, Ordering::SeqCst);
            }
        }
        libc::umask(plan.umask);
        // The bounding set while still privileged (dropping needs CAP_SETPCAP).
        if plan.caps.bounding_drop != 0 {
            ctx.enter(Step::Capabilities, 0);
            let ok = caps::drop_bounding(plan.caps.bounding_drop);
            ctx.step(Step::Capabilities, 0, ok)?;
        }
        if plan.caps.keep_caps {
            // Keep the permitted set across the uid change, for the ambient raise below.
            ctx.enter(Step::Capabilities, 1);
            let ok = libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) >= 0;
            ctx.step(Step::Capabilities, 1, ok)?;
        }
        if let Some(groups) = &plan.groups {
            ctx.enter(Step::Groups, 0);
            let ok = libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) >= 0;
            ctx.step(Step::Groups, 0, ok)?;
        }
        if let Some(gid) = plan.gid {
            ctx.enter(Step::Setgid, 0);
            let ok = libc::syscall(libc::SYS_setresgid, gid, gid, gid) >= 0;
            ctx.step(Step::Setgid, 0, ok)?;
        }
        if let Some(uid) = plan.uid {
            ctx.enter(Step::Setuid, 0);
            let ok = libc::syscall(libc::SYS_setresuid, uid, uid, uid) >= 0;
            ctx.step(Step::Setuid, 0, ok)?;
        }
        if plan.caps.ambient != 0 {
            // Ambient capabilities must be permitted and inheritable; execve then grants
            // them to a program of an unprivileged user.
            ctx.enter(Step::Capabilities, 2);
            ctx.step(
                Step::Capabilities,
                2,
                caps::raise_inheritable(plan.caps.ambient),
            )?;
            ctx.enter(Step::Capabilities, 3);
            ctx.step(
                Step::Capabilities,
                3,
                caps::raise_ambient(plan.caps.ambient),
            )?;
        }
        if let Some(cwd) = &plan.cwd {
            ctx.enter(Step::Chdir, 0);
            let ok = libc::chdir(cwd.as_ptr()) >= 0 || plan.cwd_optional;
            ctx.step(Step::Chdir, 0, ok)?;
        }
        if plan.no_new_privs {
            ctx.enter(Step::NoNewPrivileges, 0);
            let ok = libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) >= 0;
            ctx.step(Step::NoNewPrivileges, 0, ok)?;
        }
        // Last. Marking close-on-exec rather than closing keeps the parent's fds intact
        // (clone without CLONE_FILES gives the child its own fd table, but a failure after
        // this point must not disturb anything either).
        for (target, fd) in (3i32..).zip(high.iter().take(n_listen)) {
            ctx.enter(Step::CloseFds, 1);
            // dup2 clears close-on-exec on the target; `fd` is above every target.
            ctx.step(Step::CloseFds, 1, libc::dup2(*fd, target) >= 0)?;
        }
        ctx.enter(Step::CloseFds, 0);
        ctx.step(Step::CloseFds, 0, mark_fds_cloexec_from(first_free) >= 0)?;
    }
    Ok(())
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
    fn oom_permission_errors_are_ignored_as_systemd_does() {
        assert!(oom_error_is_ignored(libc::EPERM));
        assert!(oom_error_is_ignored(libc::EACCES));
        assert!(!oom_error_is_ignored(libc::ENOENT));
        assert!(!oom_error_is_ignored(libc::EINVAL));
    }

    #[test]
    fn child_error_round_trips() {
        let code = encode(Step::Rlimit, 3, libc::EPERM);
        assert!(
            code >= 1 << 12,
            "encoded codes never look like a plain errno"
        );
        assert_eq!(decode(code), Some((Step::Rlimit, 3, libc::EPERM)));
        assert_eq!(decode(libc::ENOENT), None);
        assert_eq!(decode(0), None, "0 is 'the child never started'");
        for step in Step::ALL {
            assert_eq!(decode(encode(step, 0, 0)).map(|d| d.0), Some(step));
        }
    }
}

//! Creating the child: the reused, guarded stack, `clone` and `clone3(CLONE_INTO_CGROUP)`.
//! Parent-side code, but `unsafe` and shared-memory like the rest of [`super`], whose lints
//! apply here too.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{ChildCtx, child_entry};

/// Size of the child stack: it only runs [`setup`] and execve.
const CHILD_STACK: usize = 256 << 10;

/// The child stack: `len` bytes at `base`, the lowest page `PROT_NONE`.
struct Stack {
    base: *mut libc::c_void,
    len: usize,
}

// SAFETY: a plain memory region; one spawn at a time uses it (taken out of `STACKS`).
unsafe impl Send for Stack {}

/// Child stacks not in use. A spawn takes one (or maps a new one), keeps it from clone to
/// execve and puts it back: spawns run on several threads of the daemon's spawner pool,
/// and one whose execve is slow (a binary on a hung mount) must not hold up the others.
/// Never unmapped: there are at most as many as spawns ever ran at the same time.
static STACKS: Mutex<Vec<Stack>> = Mutex::new(Vec::new());

/// A stack out of [`STACKS`], returned to it on drop.
struct Borrowed(Option<Stack>);

impl Borrowed {
    fn take() -> io::Result<Borrowed> {
        let free = STACKS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        Ok(Borrowed(Some(match free {
            Some(stack) => stack,
            None => Stack::map()?,
        })))
    }
}

impl Drop for Borrowed {
    fn drop(&mut self) {
        if let Some(stack) = self.0.take() {
            STACKS
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(stack);
        }
    }
}

impl Stack {
    fn map() -> io::Result<Stack> {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let len = CHILD_STACK
            .checked_add(page)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: an anonymous private mapping; checked for MAP_FAILED before use. The
        // guard page is the lowest page of the mapping (stacks grow down).
        unsafe {
            let base = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            );
            if base == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            if libc::mprotect(base, page, libc::PROT_NONE) < 0 {
                let err = io::Error::last_os_error();
                libc::munmap(base, len);
                return Err(err);
            }
            Ok(Stack { base, len })
        }
    }

    /// One past the highest byte (page-aligned, so 16-byte aligned as the ABI wants).
    fn top(&self) -> *mut libc::c_void {
        self.base.cast::<u8>().wrapping_add(self.len).cast()
    }
}

/// Creates the child with `clone(CLONE_VM | CLONE_VFORK)`: no page tables are copied and
/// no copy-on-write faults follow, so a spawn costs ~0.1 ms instead of ~1-2 ms for fork(2)
/// on a loaded machine; the calling thread is suspended until the child has called execve
/// or exited, so `ctx.error` and `ctx.progress` are final when this returns. All signals
/// are blocked around the clone so that no handler of the daemon ever runs on the child's
/// side of the shared memory; the child resets dispositions before unblocking.
///
/// When the unit has a cgroup, the child is created directly inside it with `clone3` and
/// `CLONE_INTO_CGROUP` (Linux 5.7, x86_64 here): joining by a write to `cgroup.procs`
/// migrates the process, which takes the cgroup threadgroup lock for writing and waits for
/// an RCU grace period: measured ~12 ms p50 per spawn on a 2-core VM whenever spawns are
/// more than a few ms apart (a restart after a crash), against ~1 ms for the whole spawn
/// without it. Where `clone3` or `CLONE_INTO_CGROUP` is not available (old kernel: ENOSYS,
/// E2BIG, EINVAL; a seccomp filter: EPERM), the first such failure switches to the
/// `cgroup.procs` write for the daemon's life; any other error is this spawn's error.
pub(super) fn clone_vfork(ctx: &ChildCtx) -> io::Result<i32> {
    let borrowed = Borrowed::take()?;
    let Some(stack) = borrowed.0.as_ref() else {
        return Err(io::Error::other("no child stack"));
    };
    let arg: *mut libc::c_void = (ctx as *const ChildCtx).cast_mut().cast();
    // SAFETY: the child runs on `stack` (ours alone while borrowed) and only reads
    // `ctx` (alive until we return) and writes its atomics. The signal masks are restored
    // on every path.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let mut pid = -1;
        if let Some(dir) = &ctx.plan.cgroup_dir
            && CLONE_INTO_CGROUP_WORKS.load(Ordering::Relaxed)
        {
            ctx.in_cgroup.store(true, Ordering::SeqCst);
            pid = clone3_into_cgroup(arg, stack, dir.as_raw_fd());
            if pid < 0 {
                ctx.in_cgroup.store(false, Ordering::SeqCst);
                let errno = pid.wrapping_neg();
                let err = io::Error::from_raw_os_error(errno);
                if !matches!(
                    errno,
                    libc::ENOSYS | libc::E2BIG | libc::EINVAL | libc::EPERM
                ) {
                    libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
                    return Err(err);
                }
                CLONE_INTO_CGROUP_WORKS.store(false, Ordering::Relaxed);
                tracing::debug!(
                    "clone3(CLONE_INTO_CGROUP) is not available ({err}); children join their cgroup by cgroup.procs"
                );
            }
        }
        if pid < 0 {
            pid = libc::clone(
                child_entry,
                stack.top(),
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                arg,
            );
        }
        let err = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if pid < 0 { Err(err) } else { Ok(pid) }
    }
}

/// Cleared by the first `clone3(CLONE_INTO_CGROUP)` that says it is not available: later
/// spawns go straight to `clone` + the `cgroup.procs` write.
static CLONE_INTO_CGROUP_WORKS: AtomicBool = AtomicBool::new(cfg!(target_arch = "x86_64"));

/// `clone3(CLONE_VM | CLONE_VFORK | CLONE_INTO_CGROUP)` running [`child_entry`]`(arg)` on
/// `stack` in the child: the pid, or `-errno`. glibc has no public clone3 wrapper, and a
/// child that shares our memory must start on its own stack, hence the few instructions
/// below (the child calls the entry point and exits with its result, as clone(3) does).
#[cfg(target_arch = "x86_64")]
unsafe fn clone3_into_cgroup(arg: *mut libc::c_void, stack: &Stack, cgroup: RawFd) -> i32 {
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
        stack: stack.base as u64,
        stack_size: stack.len as u64,
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
        cgroup: cgroup as u64,
    };
    let entry: extern "C" fn(*mut libc::c_void) -> libc::c_int = child_entry;
    let ret: i64;
    // SAFETY: the parent only takes the `2:` branch with rax = pid or -errno (the syscall
    // clobbers rcx and r11 only). The child starts at the instruction after `syscall`
    // with rsp = stack + stack_size (page-aligned, so the `call` leaves the ABI's
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
unsafe fn clone3_into_cgroup(_arg: *mut libc::c_void, _stack: &Stack, _cgroup: RawFd) -> i32 {
    -libc::ENOSYS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stack_has_a_guard_page_at_its_low_end() {
        let stack = Stack::map().expect("map");
        let base = stack.base as usize;
        let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
        let range = |l: &str| {
            let (r, _) = l.split_once(' ')?;
            let (a, b) = r.split_once('-')?;
            Some((
                usize::from_str_radix(a, 16).ok()?,
                usize::from_str_radix(b, 16).ok()?,
            ))
        };
        let line = maps
            .lines()
            .find(|l| range(l).is_some_and(|(a, b)| a <= base && base < b))
            .expect("the mapping is listed");
        assert!(line.contains(" ---p "), "guard page is PROT_NONE: {line}");
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let above = base + page;
        let line = maps
            .lines()
            .find(|l| range(l).is_some_and(|(a, b)| a <= above && above < b))
            .expect("the stack is listed");
        assert!(line.contains(" rw-p "), "the stack is writable: {line}");
        // SAFETY: unmapping what this test mapped.
        unsafe { libc::munmap(stack.base, stack.len) };
    }
}

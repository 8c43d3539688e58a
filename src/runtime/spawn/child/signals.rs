//! Signal dispositions in the child: every one back to default, then `IgnoreSIGPIPE=`.
//! Raw rt_sigaction(2), async-signal-safe like the rest of [`super`], whose lints apply
//! here too.

/// Resets every disposition to default (ignored signals survive execve). The raw system
/// call also reaches the real-time signals glibc reserves for itself (32, 33), which its
/// sigaction() refuses to touch.
///
/// # Safety
/// Only system calls; for the child between clone and execve, with every signal blocked.
pub(super) unsafe fn reset_signal_dispositions() {
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: as this function's.
        unsafe { set_disposition(sig, libc::SIG_DFL) };
    }
}

/// Sets the disposition of `sig` to `handler` (`SIG_DFL` or `SIG_IGN`) with the raw system
/// call, as [`reset_signal_dispositions`].
///
/// # Safety
/// Only a system call; `handler` must not be a function (the child has none to run).
pub(super) unsafe fn set_disposition(sig: i32, handler: libc::sighandler_t) {
    let action = KernelSigaction {
        handler,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    // SAFETY: a valid sigaction for a valid signal number.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            sig,
            &action as *const KernelSigaction,
            std::ptr::null_mut::<KernelSigaction>(),
            8usize,
        );
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

//! Retrying a system call interrupted by a signal (EINTR).
//!
//! The daemon's threads block in `poll`, `epoll_wait`, `waitpid`, ... while signals arrive
//! (SIGCHLD for every exit), so any of these calls may return EINTR; the answer is always to
//! call again. One helper, so that no call site forgets the loop or gets it subtly wrong.

use std::io;

/// A raw system call return value whose failure is `-1` (errno set).
pub trait SyscallReturn: Copy {
    fn is_failure(self) -> bool;
}

impl SyscallReturn for i32 {
    fn is_failure(self) -> bool {
        self == -1
    }
}

impl SyscallReturn for isize {
    fn is_failure(self) -> bool {
        self == -1
    }
}

impl SyscallReturn for i64 {
    fn is_failure(self) -> bool {
        self == -1
    }
}

/// Calls `call` until it returns something other than `-1`/EINTR. `-1` with any other
/// errno becomes that `io::Error`; every other value is returned as is.
pub fn retry_eintr<T: SyscallReturn>(mut call: impl FnMut() -> T) -> io::Result<T> {
    loop {
        let r = call();
        if !r.is_failure() {
            return Ok(r);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_errno(code: i32) {
        // SAFETY: __errno_location returns this thread's errno slot.
        unsafe { *libc::__errno_location() = code };
    }

    #[test]
    fn retries_eintr_and_returns_the_first_other_result() {
        let mut calls = 0;
        let r = retry_eintr(|| {
            calls += 1;
            if calls < 3 {
                set_errno(libc::EINTR);
                -1
            } else {
                7i32
            }
        });
        assert_eq!(r.expect("third call succeeds"), 7);
        assert_eq!(calls, 3);
    }

    #[test]
    fn other_errors_are_returned() {
        let r = retry_eintr(|| {
            set_errno(libc::ECHILD);
            -1isize
        });
        assert_eq!(r.expect_err("ECHILD").raw_os_error(), Some(libc::ECHILD));
    }
}

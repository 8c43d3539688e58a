//! `WATCHDOG_PID=` and `LISTEN_PID=`, the environment entries only the child can write: with
//! `clone(CLONE_VM | CLONE_VFORK)` the parent learns the pid only once the child has
//! exec'd, so the parent reserves the entry's bytes and the child writes its own pid into
//! them just before execve (systemd's `WATCHDOG_PID` and `LISTEN_PID` are the pid of the
//! process they are given to, which `sd_watchdog_enabled()` and `sd_listen_fds()` compare
//! with their own).

use std::cell::UnsafeCell;

/// The longest prefix (`WATCHDOG_PID=`), ten digits (any pid) and the NUL fit.
const LEN: usize = 32;

/// A heap buffer holding `NAME=<pid>\0`; its address is stable, so envp can point at it.
/// Until [`PidSlot::fill`] the value is empty.
pub(in crate::runtime::spawn) struct PidSlot {
    buf: Box<UnsafeCell<[u8; LEN]>>,
    prefix_len: usize,
}

impl PidSlot {
    /// A slot for variable `name` (`WATCHDOG_PID`, `LISTEN_PID`); `None` for a name too
    /// long for the slot.
    pub(in crate::runtime::spawn) fn new(name: &str) -> Option<PidSlot> {
        let prefix_len = name.len().checked_add(1)?;
        if prefix_len.checked_add(11)? > LEN {
            return None;
        }
        let mut buf = [0u8; LEN];
        for (b, p) in buf
            .iter_mut()
            .zip(name.bytes().chain(std::iter::once(b'=')))
        {
            *b = p;
        }
        Some(PidSlot {
            buf: Box::new(UnsafeCell::new(buf)),
            prefix_len,
        })
    }

    /// The entry, for envp.
    pub(in crate::runtime::spawn) fn as_ptr(&self) -> *const libc::c_char {
        self.buf.get().cast()
    }

    /// Writes `pid` in decimal after the prefix, NUL-terminated. Runs in the child: no
    /// allocation, no panics.
    pub(super) fn fill(&self, pid: u32) {
        let mut digits = [0u8; 10];
        let mut n = pid;
        let mut len = 0usize;
        for d in digits.iter_mut() {
            *d = b'0'.wrapping_add(n.wrapping_rem(10) as u8);
            n = n.wrapping_div(10);
            len = len.wrapping_add(1);
            if n == 0 {
                break;
            }
        }
        // SAFETY: only the child touches the slot between clone and execve, while the
        // parent (its owner) is suspended; no reference to the contents is held elsewhere.
        let buf = unsafe { &mut *self.buf.get() };
        let mut out = buf.iter_mut().skip(self.prefix_len);
        for d in digits.iter().take(len).rev() {
            if let Some(o) = out.next() {
                *o = *d;
            }
        }
        if let Some(o) = out.next() {
            *o = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(slot: &PidSlot) -> String {
        // SAFETY: a NUL-terminated buffer we own.
        unsafe { std::ffi::CStr::from_ptr(slot.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn the_child_writes_its_pid_in_place() {
        let slot = PidSlot::new("WATCHDOG_PID").expect("fits");
        assert_eq!(text(&slot), "WATCHDOG_PID=");
        slot.fill(4_194_304);
        assert_eq!(text(&slot), "WATCHDOG_PID=4194304");
        slot.fill(7);
        assert_eq!(text(&slot), "WATCHDOG_PID=7");
        slot.fill(u32::MAX);
        assert_eq!(text(&slot), "WATCHDOG_PID=4294967295");
        let listen = PidSlot::new("LISTEN_PID").expect("fits");
        listen.fill(42);
        assert_eq!(text(&listen), "LISTEN_PID=42");
    }
}

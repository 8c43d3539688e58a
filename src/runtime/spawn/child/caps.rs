//! Capability system calls of the child (`CapabilityBoundingSet=`, `AmbientCapabilities=`):
//! raw prctl(2) and capset(2) on masks the parent computed, async-signal-safe like the rest
//! of [`super`], whose lints apply here too.

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets as two 32-bit words.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Capability numbers 0..64 set in `mask`.
fn bits(mask: u64) -> impl Iterator<Item = u32> {
    (0..64u32).filter(move |bit| mask & 1u64.checked_shl(*bit).unwrap_or(0) != 0)
}

/// Drops every capability of `mask` from the bounding set (needs CAP_SETPCAP, so before the
/// uid change). False on the first failure, with errno set.
///
/// # Safety
/// Only system calls.
pub(super) unsafe fn drop_bounding(mask: u64) -> bool {
    bits(mask).all(|cap| {
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) >= 0 }
    })
}

/// Adds `mask` to the inheritable set (the other sets unchanged): the ambient set only
/// takes capabilities that are both permitted and inheritable.
///
/// # Safety
/// Only system calls on local structs.
pub(super) unsafe fn raise_inheritable(mask: u64) -> bool {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let empty = CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    };
    let mut data = [empty; 2];
    // SAFETY: a version-3 header and room for its two data words.
    if unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut CapHeader,
            data.as_mut_ptr(),
        )
    } < 0
    {
        return false;
    }
    let [mut low, mut high] = data;
    low.inheritable |= mask as u32;
    high.inheritable |= mask.wrapping_shr(32) as u32;
    let data = [low, high];
    // SAFETY: as above.
    unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        ) >= 0
    }
}

/// Raises every capability of `mask` in the ambient set (Linux 4.3).
///
/// # Safety
/// Only system calls.
pub(super) unsafe fn raise_ambient(mask: u64) -> bool {
    bits(mask).all(|cap| {
        // SAFETY: prctl with integer arguments.
        unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                libc::c_ulong::from(cap),
                0,
                0,
            ) >= 0
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_lists_capability_numbers() {
        assert_eq!(
            bits((1 << 10) | 1 | (1 << 63)).collect::<Vec<_>>(),
            [0, 10, 63]
        );
        assert_eq!(bits(0).count(), 0);
    }
}

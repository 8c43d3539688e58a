//! Capability sets of `CapabilityBoundingSet=` and `AmbientCapabilities=` (systemd.exec(5)):
//! names to a bit mask and back. Pure. The table is capabilities(7)'s numbering, which is
//! kernel ABI (a number never changes meaning), so gitproc keeps its own rather than
//! depend on a crate for 41 names.

/// Capability names by number (capabilities(7); `CAP_CHECKPOINT_RESTORE` is 40, Linux 5.9).
const NAMES: [&str; 41] = [
    "cap_chown",
    "cap_dac_override",
    "cap_dac_read_search",
    "cap_fowner",
    "cap_fsetid",
    "cap_kill",
    "cap_setgid",
    "cap_setuid",
    "cap_setpcap",
    "cap_linux_immutable",
    "cap_net_bind_service",
    "cap_net_broadcast",
    "cap_net_admin",
    "cap_net_raw",
    "cap_ipc_lock",
    "cap_ipc_owner",
    "cap_sys_module",
    "cap_sys_rawio",
    "cap_sys_chroot",
    "cap_sys_ptrace",
    "cap_sys_pacct",
    "cap_sys_admin",
    "cap_sys_boot",
    "cap_sys_nice",
    "cap_sys_resource",
    "cap_sys_time",
    "cap_sys_tty_config",
    "cap_mknod",
    "cap_lease",
    "cap_audit_write",
    "cap_audit_control",
    "cap_setfcap",
    "cap_mac_override",
    "cap_mac_admin",
    "cap_syslog",
    "cap_wake_alarm",
    "cap_block_suspend",
    "cap_audit_read",
    "cap_perfmon",
    "cap_bpf",
    "cap_checkpoint_restore",
];

/// Every capability number systemd accepts (`CAP_LIMIT` is 62): the "all" of an inverted
/// or reset set. The runtime drops only what the running kernel knows.
pub const ALL: u64 = (1 << 63) - 1;

/// The number of a capability name (`CAP_NET_BIND_SERVICE`, any case, or a number up to 62
/// as systemd's `capability_from_name()` accepts).
pub fn from_name(name: &str) -> Option<u32> {
    if let Ok(n) = name.parse::<u32>() {
        return (n < 63).then_some(n);
    }
    let lower = name.to_ascii_lowercase();
    NAMES
        .iter()
        .position(|n| *n == lower)
        .and_then(|i| u32::try_from(i).ok())
}

/// The capabilities of `mask` in systemd's spelling (`CAP_NET_BIND_SERVICE CAP_KILL`), for
/// messages; numbers without a name are written as numbers.
pub fn format_set(mask: u64) -> String {
    (0..63u32)
        .filter(|bit| mask & (1 << bit) != 0)
        .map(|bit| match NAMES.get(bit as usize) {
            Some(n) => n.to_ascii_uppercase(),
            None => bit.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One assignment of a capability-set key applied to `current` (`None`: not assigned yet),
/// as systemd's `config_parse_capability_set()`: `~` inverts the listed names; an empty list
/// (`""`, or `"~"` for all) or a first assignment replaces the set; a later list is ORed in,
/// a later `~` list is removed. So `CapabilityBoundingSet=` alone drops every capability.
/// Unknown names are skipped and returned, for a warning (systemd ignores them too).
pub fn apply_assignment(current: Option<u64>, value: &str) -> (u64, Vec<String>) {
    let (invert, list) = match value.strip_prefix('~') {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    let mut sum = 0u64;
    let mut unknown = Vec::new();
    for word in list.split_ascii_whitespace() {
        match from_name(word) {
            Some(bit) => sum |= 1 << bit,
            None => unknown.push(word.to_string()),
        }
    }
    let next = match current {
        Some(cur) if sum != 0 => {
            if invert {
                cur & !sum
            } else {
                cur | sum
            }
        }
        _ if invert => !sum & ALL,
        _ => sum,
    };
    (next, unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(from_name("CAP_NET_BIND_SERVICE"), Some(10));
        assert_eq!(from_name("cap_sys_admin"), Some(21));
        assert_eq!(from_name("CAP_CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(from_name("12"), Some(12));
        assert_eq!(from_name("63"), None);
        assert_eq!(from_name("CAP_FROBNICATE"), None);
        assert_eq!(
            format_set((1 << 10) | (1 << 5) | (1 << 50)),
            "CAP_KILL CAP_NET_BIND_SERVICE 50"
        );
        assert_eq!(format_set(0), "");
    }

    #[test]
    fn assignments_follow_systemd() {
        let bind = 1u64 << 10;
        let raw = 1u64 << 13;
        let (a, unknown) = apply_assignment(None, "CAP_NET_BIND_SERVICE CAP_BOGUS");
        assert_eq!((a, unknown), (bind, vec!["CAP_BOGUS".to_string()]));
        let (a, _) = apply_assignment(Some(a), "CAP_NET_RAW");
        assert_eq!(a, bind | raw, "later lists are ORed in");
        let (a, _) = apply_assignment(Some(a), "~CAP_NET_RAW");
        assert_eq!(a, bind, "a later ~ list removes");
        assert_eq!(apply_assignment(Some(a), "").0, 0, "empty: the empty set");
        assert_eq!(
            apply_assignment(Some(a), "~").0,
            ALL,
            "~ alone: every capability"
        );
        let (b, _) = apply_assignment(None, "~CAP_NET_RAW");
        assert_eq!(b, ALL & !raw, "a first ~ list is all but those");
    }
}

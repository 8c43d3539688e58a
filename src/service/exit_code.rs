//! systemd's exit codes for a process that could not be set up (systemd.exec(5), "PROCESS
//! EXIT CODES"): a service whose `User=` does not exist ends with `exit 217/USER`, as under
//! systemd, so that `SuccessExitStatus=`, `RestartPreventExitStatus=` and operators' scripts
//! see the same numbers. The runtime picks the code of the step that failed; status shows
//! the number with its name.

/// `ExecStart=` failed: execve(2) itself, or the program was not found.
pub const EXEC: i32 = 203;
pub const CHDIR: i32 = 200;
pub const NICE: i32 = 201;
pub const FDS: i32 = 202;
pub const MEMORY: i32 = 204;
pub const LIMITS: i32 = 205;
pub const OOM_ADJUST: i32 = 206;
pub const SIGNAL_MASK: i32 = 207;
pub const STDIN: i32 = 208;
pub const STDOUT: i32 = 209;
pub const SECUREBITS: i32 = 213;
pub const GROUP: i32 = 216;
pub const USER: i32 = 217;
pub const CAPABILITIES: i32 = 218;
pub const CGROUP: i32 = 219;
pub const SETSID: i32 = 220;
pub const STDERR: i32 = 222;
pub const NO_NEW_PRIVILEGES: i32 = 227;
pub const RUNTIME_DIRECTORY: i32 = 233;
pub const CHOWN: i32 = 235;
pub const STATE_DIRECTORY: i32 = 238;
pub const LOGS_DIRECTORY: i32 = 240;

/// systemd's name of an exit status (`exit_status_to_string()`, every class: libc, LSB, BSD
/// and systemd's own 200-243), e.g. `USER` for 217; `None` for codes without one.
pub fn name(code: i32) -> Option<&'static str> {
    Some(match code {
        0 => "SUCCESS",
        1 => "FAILURE",
        2 => "INVALIDARGUMENT",
        3 => "NOTIMPLEMENTED",
        4 => "NOPERMISSION",
        5 => "NOTINSTALLED",
        6 => "NOTCONFIGURED",
        7 => "NOTRUNNING",
        64 => "USAGE",
        65 => "DATAERR",
        66 => "NOINPUT",
        67 => "NOUSER",
        68 => "NOHOST",
        69 => "UNAVAILABLE",
        70 => "SOFTWARE",
        71 => "OSERR",
        72 => "OSFILE",
        73 => "CANTCREAT",
        74 => "IOERR",
        75 => "TEMPFAIL",
        76 => "PROTOCOL",
        77 => "NOPERM",
        78 => "CONFIG",
        200 => "CHDIR",
        201 => "NICE",
        202 => "FDS",
        203 => "EXEC",
        204 => "MEMORY",
        205 => "LIMITS",
        206 => "OOM_ADJUST",
        207 => "SIGNAL_MASK",
        208 => "STDIN",
        209 => "STDOUT",
        210 => "CHROOT",
        211 => "IOPRIO",
        212 => "TIMERSLACK",
        213 => "SECUREBITS",
        214 => "SETSCHEDULER",
        215 => "CPUAFFINITY",
        216 => "GROUP",
        217 => "USER",
        218 => "CAPABILITIES",
        219 => "CGROUP",
        220 => "SETSID",
        221 => "CONFIRM",
        222 => "STDERR",
        224 => "PAM",
        225 => "NETWORK",
        226 => "NAMESPACE",
        227 => "NO_NEW_PRIVILEGES",
        228 => "SECCOMP",
        229 => "SELINUX_CONTEXT",
        230 => "PERSONALITY",
        231 => "APPARMOR",
        232 => "ADDRESS_FAMILIES",
        233 => "RUNTIME_DIRECTORY",
        235 => "CHOWN",
        236 => "SMACK_PROCESS_LABEL",
        237 => "KEYRING",
        238 => "STATE_DIRECTORY",
        239 => "CACHE_DIRECTORY",
        240 => "LOGS_DIRECTORY",
        241 => "CONFIGURATION_DIRECTORY",
        242 => "NUMA_POLICY",
        243 => "CREDENTIALS",
        245 => "BPF",
        255 => "EXCEPTION",
        _ => return None,
    })
}

/// `217/USER`, or just `3` for a code without a name (as systemctl status shows it).
pub fn describe(code: i32) -> String {
    match name(code) {
        Some(n) => format!("{code}/{n}"),
        None => code.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_carry_their_systemd_names() {
        for (code, want) in [
            (EXEC, "EXEC"),
            (CHDIR, "CHDIR"),
            (NICE, "NICE"),
            (FDS, "FDS"),
            (MEMORY, "MEMORY"),
            (LIMITS, "LIMITS"),
            (OOM_ADJUST, "OOM_ADJUST"),
            (SIGNAL_MASK, "SIGNAL_MASK"),
            (STDIN, "STDIN"),
            (STDOUT, "STDOUT"),
            (SECUREBITS, "SECUREBITS"),
            (GROUP, "GROUP"),
            (USER, "USER"),
            (CAPABILITIES, "CAPABILITIES"),
            (CGROUP, "CGROUP"),
            (SETSID, "SETSID"),
            (STDERR, "STDERR"),
            (NO_NEW_PRIVILEGES, "NO_NEW_PRIVILEGES"),
            (RUNTIME_DIRECTORY, "RUNTIME_DIRECTORY"),
            (CHOWN, "CHOWN"),
            (STATE_DIRECTORY, "STATE_DIRECTORY"),
            (LOGS_DIRECTORY, "LOGS_DIRECTORY"),
        ] {
            assert_eq!(name(code), Some(want), "{code}");
        }
        assert_eq!(describe(217), "217/USER");
        assert_eq!(describe(0), "0/SUCCESS");
        assert_eq!(describe(42), "42");
        assert_eq!(name(223), None, "223 (TCPWRAP) was retired by systemd");
    }
}

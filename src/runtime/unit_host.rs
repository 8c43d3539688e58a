//! The real machine, as the unit loader sees it: the one place where host facts and host
//! files are read for loading (the daemon's [`Host`]). The event loop's own questions to the
//! host (conditions, PID files) are in [`super::host`]. `gitproc check` and `gitproc plan`
//! use [`FixedHost`](crate::unit::host::FixedHost) instead, so their results never depend
//! on the machine they run on; see [`crate::unit::host`] for what each host answers.
//!
//! Everything here is I/O; the unit parser stays pure because it only ever sees a
//! `&dyn Host` and the [`SpecifierContext`] built from it.

use crate::unit::SpecifierContext;
use crate::unit::host::{Host, Lookup};

/// This machine: files from its filesystem, specifier facts detected from it.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealHost;

impl Host for RealHost {
    /// Absolute host configuration (like `/etc/default/ssh` of a Debian unit), read at load
    /// time; the loader puts its bytes into the content hash so a change is noticed at the
    /// next load.
    fn read_file(&self, path: &str) -> Lookup {
        std::fs::read(path).ok().into()
    }

    fn specifier_context(&self) -> SpecifierContext {
        SpecifierContext::detect()
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn os_release_value(text: &str, key: &str) -> String {
    for line in text.lines() {
        if let Some(v) = line
            .trim()
            .strip_prefix(key)
            .and_then(|r| r.strip_prefix('='))
        {
            return v.trim().trim_matches(['"', '\'']).to_string();
        }
    }
    String::new()
}

/// Lives here, not in `unit::specifier`, because it is I/O.
impl SpecifierContext {
    /// Reads the host: hostname, /etc/machine-id, the boot id, kernel release, os-release, and
    /// the effective user and group (from the password database). Tolerant: a missing file or
    /// entry leaves the field at its [`Default`] (or empty) value.
    pub fn detect() -> SpecifierContext {
        let mut c = SpecifierContext::default();
        if let Some(h) = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .filter(|h| !h.is_empty())
            .or_else(|| read_trimmed("/proc/sys/kernel/hostname"))
        {
            c.hostname = h;
        }
        let machine_id = super::host::machine_id();
        if !machine_id.trim().is_empty() {
            c.machine_id = machine_id.trim().to_string();
        }
        if let Some(b) = read_trimmed("/proc/sys/kernel/random/boot_id") {
            c.boot_id = b.replace('-', "");
        }
        c.kernel_release = read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default();
        let os = std::fs::read_to_string("/etc/os-release")
            .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
            .unwrap_or_default();
        c.os_id = os_release_value(&os, "ID");
        c.os_version_id = os_release_value(&os, "VERSION_ID");
        c.os_build_id = os_release_value(&os, "BUILD_ID");
        c.os_variant_id = os_release_value(&os, "VARIANT_ID");
        c.os_image_id = os_release_value(&os, "IMAGE_ID");
        c.os_image_version = os_release_value(&os, "IMAGE_VERSION");

        let uid = nix::unistd::geteuid();
        let gid = nix::unistd::getegid();
        c.uid = uid.as_raw();
        c.gid = gid.as_raw();
        match nix::unistd::User::from_uid(uid) {
            Ok(Some(u)) => {
                c.user_name = u.name;
                c.home = u.dir.to_string_lossy().into_owned();
                c.shell = u.shell.to_string_lossy().into_owned();
            }
            _ => {
                c.user_name = c.uid.to_string();
                c.home = std::env::var("HOME").unwrap_or_else(|_| "/".into());
            }
        }
        c.group_name = match nix::unistd::Group::from_gid(gid) {
            Ok(Some(g)) => g.name,
            _ => c.gid.to_string(),
        };
        if c.uid != 0 {
            // A user manager: the XDG directories (systemd.unit(5), specifier table).
            let env = |k: &str| std::env::var(k).ok().filter(|v| v.starts_with('/'));
            let home = c.home.clone();
            c.runtime_dir =
                env("XDG_RUNTIME_DIR").unwrap_or_else(|| format!("/run/user/{}", c.uid));
            c.state_dir = env("XDG_STATE_HOME").unwrap_or_else(|| format!("{home}/.local/state"));
            c.cache_dir = env("XDG_CACHE_HOME").unwrap_or_else(|| format!("{home}/.cache"));
            c.logs_dir = format!("{}/log", c.state_dir);
            c.config_dir = env("XDG_CONFIG_HOME").unwrap_or_else(|| format!("{home}/.config"));
        }
        if let Ok(t) = std::env::var("TMPDIR")
            && t.starts_with('/')
        {
            c.tmp_dir = t.clone();
            if c.uid != 0 {
                c.var_tmp_dir = t;
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_does_not_panic_and_fills_user() {
        let c = SpecifierContext::detect();
        assert!(!c.user_name.is_empty());
        assert!(!c.hostname.is_empty());
    }

    #[test]
    fn real_host_reads_absolute_files() {
        assert_eq!(
            RealHost.read_file("/nonexistent/gitproc-test"),
            Lookup::Missing
        );
        assert!(matches!(
            RealHost.read_file("/proc/self/stat"),
            Lookup::Found(_)
        ));
    }
}

//! `%` specifiers (systemd.unit(5), "Specifiers"): `%n`, `%i`, `%H`, `%t`, ... resolved at load
//! time. Host facts come from a [`SpecifierContext`] built once by the injected
//! [`Host`](super::host::Host), so parsing stays pure.
//!
//! `%h %u %U %g %G %s` are the *manager's* user (the user gitproc runs as), not `User=`,
//! exactly as in systemd. An unknown specifier is an error.

use super::model::UnitName;
use super::name::{unescape, unescape_path};

/// Host and manager facts the specifiers expand to. The daemon gets them from the machine
/// (`SpecifierContext::detect`, in `crate::runtime::unit_host`); `check`, `plan`, tests and benches use
/// [`Default`] or fill it by hand: parsing never reads the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecifierContext {
    /// `%H`.
    pub hostname: String,
    /// `%m`: /etc/machine-id (32 hex digits).
    pub machine_id: String,
    /// `%b`: the boot id, 32 hex digits without dashes.
    pub boot_id: String,
    /// `%v`: kernel release (`uname -r`).
    pub kernel_release: String,
    /// `%a`: architecture in systemd's words (`x86-64`, `arm64`, ...).
    pub architecture: String,
    /// `%o %w %B %W %M %A`: os-release `ID`, `VERSION_ID`, `BUILD_ID`, `VARIANT_ID`,
    /// `IMAGE_ID`, `IMAGE_VERSION`.
    pub os_id: String,
    pub os_version_id: String,
    pub os_build_id: String,
    pub os_variant_id: String,
    pub os_image_id: String,
    pub os_image_version: String,
    /// `%u %U %g %G %h %s`: the manager's user.
    pub user_name: String,
    pub uid: u32,
    pub group_name: String,
    pub gid: u32,
    pub home: String,
    pub shell: String,
    /// `%t %S %C %L %E`: runtime, state, cache, logs and configuration directories
    /// (`/run`, `/var/lib`, `/var/cache`, `/var/log`, `/etc` for root).
    pub runtime_dir: String,
    pub state_dir: String,
    pub cache_dir: String,
    pub logs_dir: String,
    pub config_dir: String,
    /// `%T` and `%V`: temporary directories.
    pub tmp_dir: String,
    pub var_tmp_dir: String,
}

impl Default for SpecifierContext {
    /// A root manager on a host called `localhost`: deterministic, for tests and benches.
    fn default() -> Self {
        SpecifierContext {
            hostname: "localhost".into(),
            machine_id: "0".repeat(32),
            boot_id: "0".repeat(32),
            kernel_release: String::new(),
            architecture: arch_name().into(),
            os_id: String::new(),
            os_version_id: String::new(),
            os_build_id: String::new(),
            os_variant_id: String::new(),
            os_image_id: String::new(),
            os_image_version: String::new(),
            user_name: "root".into(),
            uid: 0,
            group_name: "root".into(),
            gid: 0,
            home: "/root".into(),
            shell: "/bin/sh".into(),
            runtime_dir: "/run".into(),
            state_dir: "/var/lib".into(),
            cache_dir: "/var/cache".into(),
            logs_dir: "/var/log".into(),
            config_dir: "/etc".into(),
            tmp_dir: "/tmp".into(),
            var_tmp_dir: "/var/tmp".into(),
        }
    }
}

fn arch_name() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x86-64",
        "x86" => "x86",
        "aarch64" => "arm64",
        "arm" => "arm",
        "riscv64" => "riscv64",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64-le",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        "loongarch64" => "loongarch64",
        other => other,
    }
}

/// The unit a specifier is resolved for.
pub struct SpecifierUnit<'a> {
    pub name: &'a UnitName,
    /// The unit file's path as given to the parser (`%y`, `%Y`).
    pub path: &'a str,
}

/// Expands every `%x` in `s`. Errors name the unknown specifier and its character offset.
/// (Offsets are in characters so they map to editor columns.)
pub fn expand(
    s: &str,
    unit: &SpecifierUnit<'_>,
    ctx: &SpecifierContext,
) -> Result<String, (usize, String)> {
    if !s.contains('%') {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len() + 16);
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some((_, spec)) = chars.next() else {
            return Err((
                s[..i].chars().count(),
                "'%' at the end of the value: write %% for a literal percent sign".into(),
            ));
        };
        let n = unit.name;
        let instance = n.instance.as_deref().unwrap_or("");
        match spec {
            '%' => out.push('%'),
            'n' => out.push_str(&n.full),
            'N' => {
                let stem = n.full.rsplit_once('.').map(|(a, _)| a).unwrap_or(&n.full);
                out.push_str(stem)
            }
            'p' => out.push_str(&n.prefix),
            'P' => out.push_str(&unescape(&n.prefix)),
            'i' => out.push_str(instance),
            'I' => out.push_str(&unescape(instance)),
            'j' => out.push_str(n.prefix.rsplit('-').next().unwrap_or(&n.prefix)),
            'J' => out.push_str(&unescape(n.prefix.rsplit('-').next().unwrap_or(&n.prefix))),
            'f' => out.push_str(&unescape_path(if n.instance.is_some() {
                instance
            } else {
                &n.prefix
            })),
            'H' => out.push_str(&ctx.hostname),
            'l' => out.push_str(ctx.hostname.split('.').next().unwrap_or(&ctx.hostname)),
            'q' => out.push_str(&ctx.hostname),
            'm' => out.push_str(&ctx.machine_id),
            'b' => out.push_str(&ctx.boot_id),
            'v' => out.push_str(&ctx.kernel_release),
            'a' => out.push_str(&ctx.architecture),
            'o' => out.push_str(&ctx.os_id),
            'w' => out.push_str(&ctx.os_version_id),
            'B' => out.push_str(&ctx.os_build_id),
            'W' => out.push_str(&ctx.os_variant_id),
            'M' => out.push_str(&ctx.os_image_id),
            'A' => out.push_str(&ctx.os_image_version),
            'h' => out.push_str(&ctx.home),
            'u' => out.push_str(&ctx.user_name),
            'U' => out.push_str(&ctx.uid.to_string()),
            'g' => out.push_str(&ctx.group_name),
            'G' => out.push_str(&ctx.gid.to_string()),
            's' => out.push_str(&ctx.shell),
            't' => out.push_str(&ctx.runtime_dir),
            'S' => out.push_str(&ctx.state_dir),
            'C' => out.push_str(&ctx.cache_dir),
            'L' => out.push_str(&ctx.logs_dir),
            'E' => out.push_str(&ctx.config_dir),
            'T' => out.push_str(&ctx.tmp_dir),
            'V' => out.push_str(&ctx.var_tmp_dir),
            'd' => {
                out.push_str(&ctx.runtime_dir);
                out.push_str("/credentials/");
                out.push_str(&n.full);
            }
            'y' => out.push_str(unit.path),
            'Y' => out.push_str(unit.path.rsplit_once('/').map(|(d, _)| d).unwrap_or(".")),
            other => {
                return Err((
                    s[..i].chars().count(),
                    format!("unknown specifier %{other}: write %% for a literal percent sign"),
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unit::name::parse_unit_name;

    fn ex(name: &str, s: &str) -> Result<String, (usize, String)> {
        let n = match parse_unit_name(name) {
            Ok(n) => n,
            Err(e) => panic!("{e}"),
        };
        let ctx = SpecifierContext {
            hostname: "web1.example.com".into(),
            machine_id: "m".repeat(32),
            boot_id: "b".repeat(32),
            kernel_release: "6.1.0".into(),
            home: "/home/op".into(),
            user_name: "op".into(),
            uid: 1000,
            group_name: "ops".into(),
            gid: 100,
            shell: "/bin/bash".into(),
            ..SpecifierContext::default()
        };
        expand(
            s,
            &SpecifierUnit {
                name: &n,
                path: "units/x.service",
            },
            &ctx,
        )
    }

    #[test]
    fn unit_name_specifiers() {
        let r = ex("foo-bar@a-b\\x20c.service", "%n|%N|%p|%P|%i|%I|%j|%J|%f|%%");
        assert_eq!(
            r.ok().as_deref(),
            Some(
                "foo-bar@a-b\\x20c.service|foo-bar@a-b\\x20c|foo-bar|foo/bar|a-b\\x20c|a/b c|bar|bar|/a/b c|%"
            )
        );
    }

    #[test]
    fn host_and_user_specifiers() {
        let r = ex("x.service", "%H %l %m %b %v %h %u %U %g %G %s");
        assert_eq!(
            r.ok().as_deref(),
            Some(
                "web1.example.com web1 mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb 6.1.0 /home/op op 1000 ops 100 /bin/bash"
            )
        );
    }

    #[test]
    fn directory_specifiers() {
        let r = ex("x.service", "%t %S %C %L %E %T %V %y %Y");
        assert_eq!(
            r.ok().as_deref(),
            Some("/run /var/lib /var/cache /var/log /etc /tmp /var/tmp units/x.service units")
        );
    }

    #[test]
    fn unknown_specifier_is_an_error_with_offset() {
        let r = ex("x.service", "ab%Zc");
        assert_eq!(r.err().map(|(o, _)| o), Some(2));
        assert!(ex("x.service", "50%").is_err());
        assert_eq!(ex("x.service", "é%Z").err().map(|(o, _)| o), Some(1));
        assert_eq!(
            ex("x.service", "no specifiers").ok().as_deref(),
            Some("no specifiers")
        );
    }
}

//! Unit names (systemd.unit(5)): `prefix.service`, templates `prefix@.service` and instances
//! `prefix@instance.service`, and systemd's name escaping (`-` is `/`, `\xNN` a byte).

use super::model::UnitName;

/// Longest unit name systemd accepts.
const MAX_LEN: usize = 255;

fn valid_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.' | '\\')
}

/// Splits and validates a unit name such as `getty@tty1.service`.
pub fn parse_unit_name(full: &str) -> Result<UnitName, String> {
    let err = |why: &str| format!("invalid unit name {full:?}: {why}");
    if full.len() > MAX_LEN {
        return Err(err("longer than 255 characters"));
    }
    let Some(dot) = full.rfind('.') else {
        return Err(err("missing a type suffix such as .service"));
    };
    let (stem, suffix) = (&full[..dot], &full[dot + 1..]);
    if suffix.is_empty() || !suffix.chars().all(|c| c.is_ascii_lowercase()) {
        return Err(err("the type suffix must be a word such as service"));
    }
    let (prefix, instance) = match stem.split_once('@') {
        Some((p, i)) => (p, Some(i)),
        None => (stem, None),
    };
    if prefix.is_empty() {
        return Err(err("empty name before the suffix or '@'"));
    }
    if !prefix.chars().all(valid_char) {
        return Err(err(
            "only ASCII letters, digits and : - _ . \\ are allowed (escape others with systemd-escape)",
        ));
    }
    if let Some(inst) = instance
        && !inst.chars().all(|c| valid_char(c) || c == '@')
    {
        return Err(err(
            "the instance may only hold ASCII letters, digits and : - _ . \\ @",
        ));
    }
    Ok(UnitName {
        full: full.to_string(),
        prefix: prefix.to_string(),
        instance: instance.map(str::to_string),
        suffix: suffix.to_string(),
    })
}

/// True for `prefix@.suffix`.
pub fn is_template(name: &str) -> bool {
    name.rfind('.')
        .is_some_and(|dot| name[..dot].ends_with('@') && name[..dot].len() > 1)
}

/// What a top-level file of a units directory is, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitFile {
    /// `name.service` or `name@instance.service`: a unit to load.
    Service,
    /// `name@.service`: only loaded through its instances (and by `check`).
    Template,
}

/// The one check of "is this path a unit file of the directory" (the loader, `check`):
/// a `.service` name directly in the directory (no `/`). `None` for anything else: other
/// unit types, drop-in directories, environment files. The name itself is validated when
/// the unit is parsed ([`parse_unit_name`]), so a bad name is reported, not skipped.
/// `suffix` is the type: `.service`, or `.timer` (whose templates `name@.timer` are likewise
/// loaded only through their instances).
pub fn unit_file_kind_of(path: &str, suffix: &str) -> Option<UnitFile> {
    if path.contains('/') || !path.ends_with(suffix) {
        None
    } else if is_template(path) {
        Some(UnitFile::Template)
    } else {
        Some(UnitFile::Service)
    }
}

/// A drop-in of a `NAME.d/` directory: `*.conf` directly in it (systemd.unit(5)).
pub fn dropin_file_name_ok(file: &str) -> bool {
    !file.contains('/') && file.ends_with(".conf")
}

/// For `prefix@instance.suffix` returns the template `prefix@.suffix`.
pub fn template_of(name: &str) -> Option<String> {
    let dot = name.rfind('.')?;
    let (stem, suffix) = name.split_at(dot);
    let (prefix, inst) = stem.split_once('@')?;
    if prefix.is_empty() || inst.is_empty() {
        return None;
    }
    Some(format!("{prefix}@{suffix}"))
}

/// systemd's unit name unescaping: `-` becomes `/` and `\xNN` the byte NN.
pub fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'-' => out.push(b'/'),
            b'\\' if i + 3 < bytes.len() && bytes[i + 1] == b'x' => {
                let hex = std::str::from_utf8(&bytes[i + 2..i + 4]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => out.push(b'\\'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// systemd's path unescaping for `%f`: `-` alone is `/`, otherwise `/` + unescape.
pub fn unescape_path(s: &str) -> String {
    if s == "-" || s.is_empty() {
        return "/".to_string();
    }
    let u = unescape(s);
    if u.starts_with('/') {
        u
    } else {
        format!("/{u}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_template_and_instance_names() {
        let n = parse_unit_name("nginx.service").ok();
        assert_eq!(n.as_ref().map(|n| n.prefix.as_str()), Some("nginx"));
        assert_eq!(n.as_ref().and_then(|n| n.instance.clone()), None);
        let t = parse_unit_name("getty@.service").ok();
        assert_eq!(t.and_then(|n| n.instance), Some(String::new()));
        let i = parse_unit_name("getty@tty1.service").ok();
        assert_eq!(i.as_ref().map(|n| n.prefix.as_str()), Some("getty"));
        assert_eq!(i.as_ref().and_then(|n| n.instance.as_deref()), Some("tty1"));
        assert_eq!(i.map(|n| n.suffix), Some("service".to_string()));
    }

    #[test]
    fn invalid_names() {
        for bad in [
            "",
            "noext",
            ".service",
            "a b.service",
            "@x.service",
            "x.Service",
            "é.service",
        ] {
            assert!(parse_unit_name(bad).is_err(), "{bad:?}");
        }
        assert!(parse_unit_name(&format!("{}.service", "a".repeat(300))).is_err());
    }

    #[test]
    fn template_helpers() {
        assert!(is_template("a@.service"));
        assert!(!is_template("a@b.service"));
        assert!(!is_template("a.service"));
        assert_eq!(template_of("a@b.service").as_deref(), Some("a@.service"));
        assert_eq!(template_of("a@.service"), None);
        assert_eq!(template_of("a.service"), None);
    }

    #[test]
    fn unit_files_and_dropins_of_a_directory() {
        assert_eq!(
            unit_file_kind_of("a.service", ".service"),
            Some(UnitFile::Service)
        );
        assert_eq!(
            unit_file_kind_of("a@1.service", ".service"),
            Some(UnitFile::Service)
        );
        assert_eq!(
            unit_file_kind_of("a@.service", ".service"),
            Some(UnitFile::Template)
        );
        assert_eq!(unit_file_kind_of("d/a.service", ".service"), None);
        assert_eq!(unit_file_kind_of("a.socket", ".service"), None);
        assert_eq!(
            unit_file_kind_of("a@.timer", ".timer"),
            Some(UnitFile::Template)
        );
        assert!(dropin_file_name_ok("10-x.conf"));
        assert!(!dropin_file_name_ok("x.conf.bak"));
        assert!(!dropin_file_name_ok("sub/x.conf"));
    }

    #[test]
    fn unescaping() {
        assert_eq!(unescape("dev-sda1"), "dev/sda1");
        assert_eq!(unescape("a\\x20b"), "a b");
        assert_eq!(unescape("a\\x2db"), "a-b");
        assert_eq!(unescape_path("home-user"), "/home/user");
        assert_eq!(unescape_path("-"), "/");
        assert_eq!(unescape("trail\\x2"), "trail\\x2");
    }
}

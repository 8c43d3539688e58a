//! `Alias=` in `[Install]`: other names of a unit.
//!
//! In systemd an alias is a symlink that `systemctl enable` creates, so that a reference to
//! the alias reaches the unit: Debian's `rsyslog.service` says `Alias=syslog.service`, and
//! systemd's own `syslog.socket` activates `syslog.service`, which is then rsyslog. In
//! gitproc a unit committed to the repository is enabled, so its aliases hold as soon as it
//! is loaded: [`resolve_aliases`] rewrites every reference to an alias (`Requires=`,
//! `After=`, ..., a socket's `Service=`, a service's `Sockets=`, a timer's `Unit=`) to the
//! unit's own name. The unit keeps its one name everywhere else (status, logs, state).
//!
//! What systemd would refuse is a warning on the unit that claims the alias, and the alias
//! is ignored: a name of another suffix, a template alias, a name that a unit file of the
//! repository already has (systemd cannot make the symlink), and a name two units claim.

use std::collections::BTreeMap;

use super::LoadedUnit;
use crate::unit::diagnostic::Diagnostic;
use crate::unit::model::Unit;

/// The unit sets of one tree, as the daemon, `check` and `plan` load them.
pub struct UnitSets<'a> {
    pub services: &'a mut BTreeMap<String, LoadedUnit>,
    pub timers: &'a mut BTreeMap<String, LoadedUnit>,
    pub sockets: &'a mut BTreeMap<String, LoadedUnit>,
}

/// Resolves every `Alias=` of `sets` (see the module documentation). Returns the aliases in
/// force, alias → unit name.
pub fn resolve_aliases(sets: UnitSets<'_>) -> BTreeMap<String, String> {
    let UnitSets {
        services,
        timers,
        sockets,
    } = sets;
    let mut claims: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut warnings: Vec<(String, String)> = Vec::new();
    for loaded in services
        .values()
        .chain(timers.values())
        .chain(sockets.values())
    {
        let Some(unit) = &loaded.unit else { continue };
        for alias in &unit.install.alias {
            match refusal(&loaded.name, alias, |n| {
                services.contains_key(n) || timers.contains_key(n) || sockets.contains_key(n)
            }) {
                Some(why) => warnings.push((loaded.name.clone(), why)),
                None => claims
                    .entry(alias.clone())
                    .or_default()
                    .push(loaded.name.clone()),
            }
        }
    }
    let mut aliases = BTreeMap::new();
    for (alias, owners) in claims {
        let mut owners_dedup = owners.clone();
        owners_dedup.dedup();
        if let [owner] = owners_dedup.as_slice() {
            aliases.insert(alias, owner.clone());
        } else {
            let list = owners_dedup.join(", ");
            for owner in owners_dedup {
                warnings.push((
                    owner,
                    format!("Alias={alias} ignored: {list} all claim it; keep it on one unit"),
                ));
            }
        }
    }
    for (name, message) in warnings {
        for map in [&mut *services, &mut *timers, &mut *sockets] {
            if let Some(loaded) = map.get_mut(&name) {
                let path = loaded.path.clone();
                loaded
                    .diagnostics
                    .push(Diagnostic::warning(&path, 1, 1, message.clone()));
            }
        }
    }
    if !aliases.is_empty() {
        for loaded in services
            .values_mut()
            .chain(timers.values_mut())
            .chain(sockets.values_mut())
        {
            if let Some(unit) = &mut loaded.unit {
                rewrite_references(unit, &aliases);
            }
        }
    }
    aliases
}

/// Why `alias` cannot name `owner`, or `None` when it can.
fn refusal(owner: &str, alias: &str, exists: impl Fn(&str) -> bool) -> Option<String> {
    let suffix = |n: &str| n.rsplit_once('.').map(|(_, s)| s.to_string());
    if alias == owner {
        return Some(format!("Alias={alias} ignored: it is the unit's own name"));
    }
    if suffix(alias) != suffix(owner) {
        return Some(format!(
            "Alias={alias} ignored: an alias must end in .{} like the unit itself",
            suffix(owner).unwrap_or_default()
        ));
    }
    if alias.contains('@') || owner.contains('@') {
        return Some(format!(
            "Alias={alias} ignored: gitproc does not resolve aliases of templates or instances"
        ));
    }
    if exists(alias) {
        return Some(format!(
            "Alias={alias} ignored: a unit of that name is in the repository; remove one of the two"
        ));
    }
    None
}

/// Every reference of `unit` to an alias, replaced by the aliased unit's name.
fn rewrite_references(unit: &mut Unit, aliases: &BTreeMap<String, String>) {
    let fix = |name: &mut String| {
        if let Some(real) = aliases.get(name.as_str()) {
            name.clone_from(real);
        }
    };
    let s = &mut unit.unit;
    for list in [
        &mut s.after,
        &mut s.before,
        &mut s.requires,
        &mut s.wants,
        &mut s.binds_to,
        &mut s.part_of,
        &mut s.conflicts,
        &mut s.on_failure,
        &mut s.on_success,
        &mut unit.service.sockets,
    ] {
        list.iter_mut().for_each(fix);
    }
    fix(&mut unit.socket.service);
    fix(&mut unit.timer.unit);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::FileTree;
    use crate::unit::specifier::SpecifierContext;

    fn load(files: &[(&str, &str)]) -> [BTreeMap<String, LoadedUnit>; 3] {
        let mut tree = FileTree::default();
        for (path, text) in files {
            tree.entries.insert(
                (*path).to_string(),
                crate::tree::Entry::File(text.as_bytes().to_vec()),
            );
        }
        let ctx = SpecifierContext::default();
        [
            super::super::load_tree(&tree, &ctx),
            super::super::load_timers(&tree, &ctx),
            super::super::load_sockets(&tree, &ctx),
        ]
    }

    fn resolve(sets: &mut [BTreeMap<String, LoadedUnit>; 3]) -> BTreeMap<String, String> {
        let [services, timers, sockets] = sets;
        resolve_aliases(UnitSets {
            services,
            timers,
            sockets,
        })
    }

    const RSYSLOG: &str = "[Unit]\nRequires=syslog.socket\n[Service]\nExecStart=/bin/true\n[Install]\nAlias=syslog.service\n";
    const SOCKET: &str = "[Socket]\nListenDatagram=/run/x/syslog\n";

    #[test]
    fn a_socket_of_the_alias_name_activates_the_aliased_service() {
        let mut sets = load(&[("rsyslog.service", RSYSLOG), ("syslog.socket", SOCKET)]);
        let aliases = resolve(&mut sets);
        assert_eq!(
            aliases.get("syslog.service").map(String::as_str),
            Some("rsyslog.service")
        );
        let socket = sets[2]["syslog.socket"].unit.as_ref().unwrap();
        assert_eq!(socket.socket.service, "rsyslog.service");
    }

    #[test]
    fn dependencies_on_an_alias_reach_the_unit() {
        let mut sets = load(&[
            ("rsyslog.service", RSYSLOG),
            ("syslog.socket", SOCKET),
            (
                "app.service",
                "[Unit]\nRequires=syslog.service\nAfter=syslog.service\n[Service]\nExecStart=/bin/true\n",
            ),
        ]);
        resolve(&mut sets);
        let app = sets[0]["app.service"].unit.as_ref().unwrap();
        assert_eq!(app.unit.requires, ["rsyslog.service"]);
        assert_eq!(app.unit.after, ["rsyslog.service"]);
    }

    #[test]
    fn a_hook_named_by_its_alias_is_the_unit() {
        let mut sets = load(&[
            ("rsyslog.service", RSYSLOG),
            (
                "app.service",
                "[Unit]\nOnFailure=syslog.service\nOnSuccess=syslog.service\n[Service]\nExecStart=/bin/true\n",
            ),
        ]);
        resolve(&mut sets);
        let app = sets[0]["app.service"].unit.as_ref().unwrap();
        assert_eq!(app.unit.on_failure, ["rsyslog.service"]);
        assert_eq!(app.unit.on_success, ["rsyslog.service"]);
    }

    #[test]
    fn a_taken_or_doubly_claimed_alias_is_a_warning_and_ignored() {
        let other = "[Service]\nExecStart=/bin/true\n[Install]\nAlias=syslog.service\n";
        let mut sets = load(&[("rsyslog.service", RSYSLOG), ("ng.service", other)]);
        assert!(resolve(&mut sets).is_empty());
        for name in ["rsyslog.service", "ng.service"] {
            let d = &sets[0][name].diagnostics;
            assert!(
                d.iter()
                    .any(|d| !d.is_error() && d.message.contains("all claim it")),
                "{name}: {d:?}"
            );
        }
        let mut sets = load(&[
            ("rsyslog.service", RSYSLOG),
            ("syslog.service", "[Service]\nExecStart=/bin/true\n"),
        ]);
        assert!(resolve(&mut sets).is_empty());
        let d = &sets[0]["rsyslog.service"].diagnostics;
        assert!(
            d.iter().any(|d| d.message.contains("a unit of that name")),
            "{d:?}"
        );
    }

    #[test]
    fn an_alias_of_another_suffix_is_refused() {
        let unit = "[Service]\nExecStart=/bin/true\n[Install]\nAlias=x.socket\n";
        let mut sets = load(&[("a.service", unit)]);
        assert!(resolve(&mut sets).is_empty());
        let d = &sets[0]["a.service"].diagnostics;
        assert!(
            d.iter().any(|d| d.message.contains("must end in .service")),
            "{d:?}"
        );
    }
}

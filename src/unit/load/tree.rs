//! Reading a whole units directory from a [`FileTree`]: which top-level files are units,
//! which are templates, the `NAME.service.d/*.conf` drop-ins of each, instance symlinks
//! (`name@inst.service -> name@.service`), and where `EnvironmentFile=` contents come from.

use std::collections::BTreeMap;

use super::hash::Fnv128;
use super::{LoadedUnit, parse_resolved};
use crate::tree::{Entry as TreeEntry, FileTree};
use crate::unit::diagnostic::Diagnostic;
use crate::unit::host::{FixedHost, Host, Lookup};
use crate::unit::name::{UnitFile, dropin_file_name_ok, template_of, unit_file_kind_of};
use crate::unit::specifier::SpecifierContext;

/// Reads a file of the tree, following one level of in-tree symlink.
fn tree_file<'t>(tree: &'t FileTree, path: &str) -> Option<&'t [u8]> {
    let path = path.strip_prefix("./").unwrap_or(path);
    match tree.entries.get(path)? {
        TreeEntry::File(b) => Some(b),
        TreeEntry::Symlink(t) => {
            let target = if t.starts_with('/') {
                return None;
            } else if let Some((dir, _)) = path.rsplit_once('/') {
                format!("{dir}/{t}")
            } else {
                t.clone()
            };
            tree.file(target.strip_prefix("./").unwrap_or(&target))
        }
    }
}

/// `name.service.d/*.conf` drop-ins in lexical order of file name; for an instance, the
/// template's directory too (a file of the same name in the instance's directory wins).
fn dropins_for(tree: &FileTree, dirs: &[&str]) -> Vec<(String, Vec<u8>)> {
    let mut by_name: BTreeMap<&str, (&str, &[u8])> = BTreeMap::new();
    for unit in dirs {
        let prefix = format!("{unit}.d/");
        for (p, _) in tree.entries.range(prefix.clone()..) {
            if !p.starts_with(&prefix) {
                break;
            }
            let file = &p[prefix.len()..];
            if !dropin_file_name_ok(file) {
                continue;
            }
            if let Some(bytes) = tree_file(tree, p) {
                by_name.insert(file, (p.as_str(), bytes));
            }
        }
    }
    by_name
        .into_values()
        .map(|(p, b)| (p.to_string(), b.to_vec()))
        .collect()
}

/// The `EnvironmentFile=` resolver of a tree load: relative paths are read from the tree (so
/// they are versioned with the units), absolute ones are asked of the [`Host`] (host
/// configuration such as `/etc/default/ssh`, which Debian's units use).
fn tree_env_file<'t>(tree: &'t FileTree, host: &'t dyn Host) -> impl Fn(&str) -> Lookup + 't {
    move |p: &str| {
        if p.starts_with('/') {
            host.read_file(p)
        } else {
            tree_file(tree, p).map(<[u8]>::to_vec).into()
        }
    }
}

/// [`load_tree_with`] on the [`FixedHost`]: the same answer on every machine.
pub fn load_tree(tree: &FileTree, ctx: &SpecifierContext) -> BTreeMap<String, LoadedUnit> {
    load_tree_with(tree, ctx, &FixedHost)
}

/// Loads every top-level `*.service` of the tree: see [`crate::unit::load_tree`]; absolute
/// `EnvironmentFile=`s are asked of `host`.
pub fn load_tree_with(
    tree: &FileTree,
    ctx: &SpecifierContext,
    host: &dyn Host,
) -> BTreeMap<String, LoadedUnit> {
    load_suffix(tree, ctx, host, ".service")
}

/// Every top-level `*.timer` of the tree, with drop-ins and template instances exactly as
/// for services ([`load_tree_with`]); each loaded timer has its `[Timer]` in `unit.timer`.
/// Kept apart from the services so that everything that runs processes sees services only.
pub fn load_timers(tree: &FileTree, ctx: &SpecifierContext) -> BTreeMap<String, LoadedUnit> {
    load_suffix(tree, ctx, &FixedHost, ".timer")
}

/// Every top-level `*.socket` of the tree, like [`load_timers`]; each loaded socket has its
/// `[Socket]` in `unit.socket`.
pub fn load_sockets(tree: &FileTree, ctx: &SpecifierContext) -> BTreeMap<String, LoadedUnit> {
    load_suffix(tree, ctx, &FixedHost, ".socket")
}

fn load_suffix(
    tree: &FileTree,
    ctx: &SpecifierContext,
    host: &dyn Host,
    suffix: &str,
) -> BTreeMap<String, LoadedUnit> {
    let env_file = tree_env_file(tree, host);
    let mut out = BTreeMap::new();
    for (path, entry) in &tree.entries {
        if unit_file_kind_of(path, suffix) != Some(UnitFile::Service) {
            continue;
        }
        let name = path.as_str();
        let loaded = match entry {
            TreeEntry::File(bytes) => {
                let dropins = dropins_for(tree, &[name]);
                parse_resolved(name, path, bytes, &dropins, ctx, &env_file)
            }
            TreeEntry::Symlink(target) => load_symlink(tree, ctx, name, target, &env_file),
        };
        out.insert(name.to_string(), loaded);
    }
    if suffix == ".service" {
        instantiate_hooks(tree, ctx, &env_file, &mut out);
    }
    out
}

/// `OnFailure=`/`OnSuccess=` naming an instance of a template of the tree
/// (`OnFailure=notify@%n.service`) load that instance, as systemd instantiates a template
/// named by a dependency: no `name@inst.service` symlink is needed for a hook. One round
/// only: the hooks of an instance made here are not instantiated in turn, so a template
/// whose own `OnFailure=` names itself (`notify@%n.service` in `notify@.service`) cannot
/// grow the unit set without end (that name is then a missing hook, a warning).
fn instantiate_hooks(
    tree: &FileTree,
    ctx: &SpecifierContext,
    env_file: &dyn Fn(&str) -> Lookup,
    out: &mut BTreeMap<String, LoadedUnit>,
) {
    let wanted: Vec<String> = out
        .values()
        .filter_map(|l| l.unit.as_ref())
        .flat_map(|u| u.unit.on_failure.iter().chain(&u.unit.on_success))
        .filter(|n| n.ends_with(".service") && !out.contains_key(*n))
        .cloned()
        .collect();
    for name in wanted {
        if out.contains_key(&name) {
            continue;
        }
        let Some(template) = template_of(&name) else {
            continue;
        };
        let Some(TreeEntry::File(bytes)) = tree.entries.get(&template) else {
            continue;
        };
        let dropins = dropins_for(tree, &[&template, &name]);
        let loaded = parse_resolved(&name, &template, bytes, &dropins, ctx, env_file);
        out.insert(name, loaded);
    }
}

fn load_symlink(
    tree: &FileTree,
    ctx: &SpecifierContext,
    name: &str,
    target: &str,
    env_file: &dyn Fn(&str) -> Lookup,
) -> LoadedUnit {
    let base = target.rsplit('/').next().unwrap_or(target);
    let template = template_of(name);
    let fail = |msg: String| LoadedUnit {
        name: name.to_string(),
        path: name.to_string(),
        unit: None,
        diagnostics: vec![Diagnostic::error(name, 1, 1, msg)],
        content_hash: {
            let mut h = Fnv128::new();
            h.part(b"gitproc-symlink-v1");
            h.part(name.as_bytes());
            h.part(target.as_bytes());
            h.hex()
        },
        inputs: vec![name.to_string()],
    };
    let Some(template) = template else {
        return fail(format!(
            "symlink to {target:?}: only template instances (name@instance.service -> name@.service) may be symlinks; list aliases in Alias= instead"
        ));
    };
    if base != template {
        return fail(format!(
            "symlink to {target:?}: an instance must point at its template {template}"
        ));
    }
    let Some(bytes) = tree_file(tree, &template) else {
        return fail(format!(
            "symlink to {target:?}: the template {template} is not a file at the top of the unit directory"
        ));
    };
    let dropins = dropins_for(tree, &[&template, name]);
    let mut loaded = parse_resolved(name, &template, bytes, &dropins, ctx, env_file);
    loaded.inputs.insert(0, name.to_string());
    loaded
}

/// Parses every template (`name@.service`, `name@.timer`) of the tree as itself (`%i` empty), so `check`
/// reports problems of templates that no instance uses yet.
/// On the [`FixedHost`], like [`load_tree`].
pub fn load_templates(tree: &FileTree, ctx: &SpecifierContext) -> BTreeMap<String, LoadedUnit> {
    load_templates_with(tree, ctx, &FixedHost)
}

/// [`load_templates`] asking `host` for absolute `EnvironmentFile=`s.
pub fn load_templates_with(
    tree: &FileTree,
    ctx: &SpecifierContext,
    host: &dyn Host,
) -> BTreeMap<String, LoadedUnit> {
    let env_file = tree_env_file(tree, host);
    let mut out = BTreeMap::new();
    for (path, entry) in &tree.entries {
        let template = [".service", ".timer", ".socket"]
            .iter()
            .any(|suffix| unit_file_kind_of(path, suffix) == Some(UnitFile::Template));
        if !template {
            continue;
        }
        if let TreeEntry::File(bytes) = entry {
            let dropins = dropins_for(tree, &[path]);
            out.insert(
                path.clone(),
                parse_resolved(path, path, bytes, &dropins, ctx, &env_file),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host with one file, to see what each host answer does to a unit.
    struct OneFile;

    impl Host for OneFile {
        fn read_file(&self, path: &str) -> Lookup {
            match path {
                "/etc/default/app" => Lookup::Found(b"PORT=9\n".to_vec()),
                _ => Lookup::Missing,
            }
        }

        fn specifier_context(&self) -> SpecifierContext {
            SpecifierContext::default()
        }
    }

    fn tree_of(unit: &str) -> FileTree {
        let mut t = FileTree::default();
        t.entries.insert(
            "a.service".into(),
            TreeEntry::File(unit.as_bytes().to_vec()),
        );
        t
    }

    fn argv(l: &LoadedUnit) -> Vec<String> {
        l.unit
            .as_ref()
            .map(|u| u.service.exec_start[0].argv.clone())
            .unwrap_or_default()
    }

    #[test]
    fn absolute_environment_files_come_from_the_host_only() {
        let ctx = SpecifierContext::default();
        let t = tree_of("[Service]\nEnvironmentFile=/etc/default/app\nExecStart=/bin/x $PORT\n");
        let real = &load_tree_with(&t, &ctx, &OneFile)["a.service"];
        assert_eq!(argv(real), vec!["/bin/x", "9"]);
        assert!(real.diagnostics.is_empty(), "{:?}", real.diagnostics);
        assert_eq!(real.inputs, vec!["a.service"]);

        // The fixed host does not look: no diagnostic, no variables, a hash of its own.
        let fixed = &load_tree(&t, &ctx)["a.service"];
        assert_eq!(argv(fixed), vec!["/bin/x"]);
        assert!(fixed.diagnostics.is_empty(), "{:?}", fixed.diagnostics);
        assert_ne!(fixed.content_hash, real.content_hash);

        // A host that looked and found nothing warns (the service would fail to start).
        let t = tree_of("[Service]\nEnvironmentFile=/etc/default/other\nExecStart=/bin/x\n");
        let missing = &load_tree_with(&t, &ctx, &OneFile)["a.service"];
        assert!(missing.diagnostics[0].message.contains("cannot be read"));
        assert!(load_tree(&t, &ctx)["a.service"].diagnostics.is_empty());
    }
}

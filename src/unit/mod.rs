//! The unit file parser: systemd's syntax in, a typed [`model::Unit`] and diagnostics out.
//!
//! Pure: [`parse_unit`] reads only the bytes it is given (plus what its `env_file` callback
//! returns); [`load_tree`] reads a [`FileTree`](crate::tree::FileTree) and, for absolute
//! `EnvironmentFile=` paths only, the host filesystem.
//!
//! Modules, in the order data flows: [`syntax`] (lexer) -> [`directives`] (which keys exist)
//! -> [`value`], [`exec`], [`environment`], [`specifier`], [`name`] (value types) -> [`load`]
//! (the typed model, drop-ins, templates) -> [`diagnostic`] (what is reported).

pub mod diagnostic;
pub mod directives;
pub mod environment;
pub mod exec;
pub mod load;
pub mod model;
pub mod name;
pub mod specifier;
pub mod syntax;
pub mod value;

use std::collections::BTreeMap;

pub use diagnostic::{Diagnostic, Severity};
pub use specifier::SpecifierContext;

/// One unit after loading.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LoadedUnit {
    /// Unit name, e.g. `web.service` or `worker@1.service`.
    pub name: String,
    /// Path of the main file read (for an instance: its template's path).
    pub path: String,
    /// The typed unit; `None` when any diagnostic is an error.
    #[serde(skip)]
    pub unit: Option<model::Unit>,
    /// Every diagnostic, errors and warnings, in file order.
    pub diagnostics: Vec<Diagnostic>,
    /// Effective content hash: 32 hex digits of a stable 128-bit FNV-1a over the unit's name,
    /// bytes, its drop-ins (paths and bytes) and every environment file it read. Equal hashes
    /// mean the unit would behave the same; it is stable across runs and gitproc versions
    /// (until the framing constant `gitproc-unit-v1` changes).
    pub content_hash: String,
    /// Tree paths read: the instance symlink (if any), the unit file, drop-ins and relative
    /// `EnvironmentFile=`s.
    pub inputs: Vec<String>,
}

impl LoadedUnit {
    /// True when the unit has at least one error (and so `unit` is `None`).
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Every top-level `*.service` of the tree (like a systemd unit directory; not recursive),
/// with `name.service.d/*.conf` drop-ins applied in lexical order, and symlinks
/// `name@inst.service -> name@.service` instantiating templates (the template's drop-ins
/// directory applies too). Templates themselves are not loaded as runnable units. A unit
/// with an error is present with `unit: None`; it never affects another unit.
///
/// `EnvironmentFile=` paths: relative ones are read from the tree (so they are versioned with
/// the units); absolute ones from the host filesystem at load time (host configuration such
/// as `/etc/default/ssh`, which Debian's units use).
pub fn load_tree(
    tree: &crate::tree::FileTree,
    ctx: &SpecifierContext,
) -> BTreeMap<String, LoadedUnit> {
    let mut units = load::load_tree(tree, ctx);
    refuse_oversized(tree, &mut units);
    units
}

/// Units whose file (or one of their drop-ins) was over the size limit fail with an error
/// naming that file; the others load as usual.
fn refuse_oversized(tree: &crate::tree::FileTree, units: &mut BTreeMap<String, LoadedUnit>) {
    for (path, &size) in &tree.oversized {
        let name = match path.split_once(".d/") {
            // A drop-in: only for a unit that exists.
            Some((unit, _)) if path.ends_with(".conf") && units.contains_key(unit) => unit,
            Some(_) => continue,
            _ if !path.contains('/') && path.ends_with(".service") && !path.contains("@.") => {
                path.as_str()
            }
            _ => continue,
        };
        let message = crate::tree::FileTree::oversized_error(path, size);
        let failed = LoadedUnit {
            name: name.to_string(),
            path: path.clone(),
            unit: None,
            diagnostics: vec![Diagnostic::error(path, 1, 1, message)],
            // Distinct from real hashes (which are FNV over the bytes), and changes when the
            // size does.
            content_hash: format!("{size:032x}"),
            inputs: vec![path.clone()],
        };
        units.insert(name.to_string(), failed);
    }
}

/// Parses one unit from its bytes plus drop-ins `(path, bytes)` (applied in the given order).
/// `name` decides `%n`, `%i`, ... (`name@inst.service` with a template's bytes instantiates
/// it). `env_file` resolves `EnvironmentFile=` paths to bytes (`None`: missing).
///
/// `$VAR` in `Exec*=` is expanded here, at load time, from `Environment=` and the
/// `EnvironmentFile=` contents (systemd does it at exec time with the full environment):
/// unknown variables expand to empty, `$$` is `$`, nothing is expanded with the `:` prefix,
/// and spawn-time variables such as `$MAINPID` are kept for [`exec::expand_runtime`].
pub fn parse_unit(
    name: &str,
    path: &str,
    bytes: &[u8],
    dropins: &[(String, Vec<u8>)],
    ctx: &SpecifierContext,
    env_file: &dyn Fn(&str) -> Option<Vec<u8>>,
) -> LoadedUnit {
    load::parse_unit(name, path, bytes, dropins, ctx, env_file)
}

//! The unit file parser: systemd's syntax in, a typed [`model::Unit`] and diagnostics out.
//!
//! Pure: [`parse_unit`] reads only the bytes it is given (plus what its `env_file` callback
//! returns); [`load_tree`] reads a [`FileTree`](crate::tree::FileTree) only, and
//! [`load_tree_with`] asks an injected [`host::Host`] for absolute `EnvironmentFile=` paths.
//! Host facts (`%H`, `%m`, ...) come in as a [`SpecifierContext`]. The real machine is
//! `crate::runtime::unit_host::RealHost`, outside this module; see [`host`] for what `check` and `plan`
//! do instead.
//!
//! Modules, in the order data flows: [`syntax`] (lexer) -> [`directives`] (which keys exist)
//! -> [`value`], [`exec`], [`environment`], [`specifier`], [`name`] (value types) -> [`load`]
//! (the typed model, drop-ins, templates) -> [`diagnostic`] (what is reported).

pub mod capability;
pub mod comparison;
pub(crate) mod diagnostic;
pub mod directives;
pub mod environment;
pub(crate) mod exec;
pub(crate) mod host;
pub mod load;
pub mod model;
pub(crate) mod name;
pub mod resources;
pub mod socket_address;
pub(crate) mod specifier;
pub(crate) mod syntax;
pub mod value;

use std::collections::BTreeMap;

pub use diagnostic::{Diagnostic, Severity};
pub use host::{FixedHost, Host, Lookup};
pub use load::LoadedUnit;
pub use specifier::SpecifierContext;

/// Every top-level `*.service` of the tree (like a systemd unit directory; not recursive),
/// with `name.service.d/*.conf` drop-ins applied in lexical order, and symlinks
/// `name@inst.service -> name@.service` instantiating templates (the template's drop-ins
/// directory applies too). Templates themselves are not loaded as runnable units. A unit
/// with an error is present with `unit: None`; it never affects another unit.
///
/// `EnvironmentFile=` paths: relative ones are read from the tree (so they are versioned with
/// the units); absolute ones are host configuration (such as `/etc/default/ssh`, which
/// Debian's units use) and are *not read* here ([`FixedHost`]): use [`load_tree_with`] to
/// read them from a host.
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

/// [`load_tree`], asking `host` for absolute `EnvironmentFile=` paths (the daemon passes the
/// real machine: their bytes are then part of the content hash, so a change to them is
/// noticed at the next load).
pub fn load_tree_with(
    tree: &crate::tree::FileTree,
    ctx: &SpecifierContext,
    host: &dyn Host,
) -> BTreeMap<String, LoadedUnit> {
    let mut units = load::load_tree_with(tree, ctx, host);
    refuse_oversized(tree, &mut units);
    units
}

/// Parses one unit from its bytes plus drop-ins `(path, bytes)` (applied in the given order).
/// `name` decides `%n`, `%i`, ... (`name@inst.service` with a template's bytes instantiates
/// it). `env_file` resolves `EnvironmentFile=` paths to bytes (`None`: missing).
///
/// `$VAR` in `Exec*=` is expanded here, at load time, from `Environment=` and the
/// `EnvironmentFile=` contents (systemd does it at exec time with the full environment):
/// unknown variables expand to empty, `$$` is `$`, nothing is expanded with the `:` prefix,
/// and spawn-time variables such as `$MAINPID` are kept for [`exec::expand_runtime`].
pub use load::parse_unit;

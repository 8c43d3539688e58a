//! `gitproc check PATH...`: parse unit files like `systemd-analyze verify` and print
//! `file:line:col: error|warning: message` (or JSON with `--json`).
//!
//! A directory is loaded like a unit directory ([`crate::source::dir::read_tree`] + [`load_tree`]);
//! templates without instances are checked too (with an empty instance). A file is loaded
//! with its sibling `NAME.d/*.conf` drop-ins. Exit code: 0 without errors (warnings allowed),
//! 1 when any unit has an error, 2 when a path cannot be read (usage error).
//!
//! The result never depends on the machine `check` runs on: units load on the
//! [`FixedHost`] (fixed specifier facts; absolute `EnvironmentFile=` paths not read), see
//! [`crate::unit::host`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::CheckArgs;
use super::exit;
use crate::unit::Diagnostic;
use crate::unit::model::Unit;
use crate::unit::name::dropin_file_name_ok;
use crate::unit::{self, FixedHost, Host, LoadedUnit, Lookup, SpecifierContext};

/// Runs the check; returns the exit code.
pub fn run(args: &CheckArgs) -> anyhow::Result<i32> {
    if !args.calendar.is_empty() {
        return Ok(super::timers::calendar(&args.calendar, args.iterations));
    }
    for p in &args.paths {
        if std::fs::symlink_metadata(p).is_err() {
            eprintln!(
                "gitproc check: {}: no such file or directory (give unit files or directories holding them)",
                p.display()
            );
            return Ok(exit::USAGE);
        }
    }
    let ctx = FixedHost.specifier_context();
    let mut units: Vec<LoadedUnit> = Vec::new();
    for p in &args.paths {
        match check_path(p, &ctx) {
            Ok(mut u) => units.append(&mut u),
            Err(msg) => {
                eprintln!("gitproc check: {}: {msg}", p.display());
                return Ok(exit::USAGE);
            }
        }
    }
    add_dependency_errors(&mut units);
    let policies = check_policies(&args.paths);
    let policy_errors = policies.iter().filter(|(_, r)| r.is_err()).count();
    let errors = units
        .iter()
        .flat_map(|u| &u.diagnostics)
        .filter(|d| d.is_error())
        .count()
        + policy_errors;
    let warnings = units
        .iter()
        .flat_map(|u| &u.diagnostics)
        .filter(|d| !d.is_error())
        .count();
    if let Some(format) = args.json {
        let report = serde_json::json!({
            "units": units.iter().map(|u| serde_json::json!({
                "name": u.name,
                "path": u.path,
                "ok": !u.has_errors(),
                "content_hash": u.content_hash,
                "diagnostics": u.diagnostics,
            })).collect::<Vec<_>>(),
            "rollout_policies": policies.iter().map(|(path, r)| serde_json::json!({
                "path": path,
                "ok": r.is_ok(),
                "error": r.as_ref().err(),
            })).collect::<Vec<_>>(),
            "errors": errors,
            "warnings": warnings,
        });
        println!("{}", format.render(&report)?);
    } else {
        // A template checked through several instances reports the same line once.
        let mut seen: BTreeSet<String> = BTreeSet::new();
        for d in units.iter().flat_map(|u| &u.diagnostics) {
            let line = d.to_string();
            if seen.insert(line.clone()) {
                println!("{line}");
            }
        }
        for (path, result) in &policies {
            if let Err(message) = result {
                let prefix = format!("{}: ", crate::rollout::POLICY_FILE);
                let message = message.strip_prefix(&prefix).unwrap_or(message);
                println!("{path}: error: {message}");
            }
        }
        if units.is_empty() {
            eprintln!("gitproc check: no .service, .timer or .socket units found");
        } else {
            eprintln!(
                "gitproc check: {} unit(s), {errors} error(s), {warnings} warning(s)",
                units.len()
            );
        }
    }
    Ok(if errors > 0 { exit::FAILURE } else { exit::OK })
}

/// The rollout policy (`gitproc-rollout.toml`) of each directory checked, parsed by the
/// daemon's own parser: a policy the daemon would refuse holds the commit on every host,
/// so it is better found before the push.
fn check_policies(paths: &[PathBuf]) -> Vec<(String, Result<(), String>)> {
    paths
        .iter()
        .filter(|p| p.is_dir())
        .map(|p| p.join(crate::rollout::POLICY_FILE))
        .filter(|f| f.exists())
        .map(|f| {
            let result = std::fs::read(&f)
                .map_err(|e| format!("cannot read: {e}"))
                .and_then(|bytes| crate::rollout::parse(&bytes).map(|_| ()));
            (f.display().to_string(), result)
        })
        .collect()
}

/// Runs the daemon's own dependency validation ([`crate::deps::Graph::build_detailed`]) over
/// the units checked together, so that what `check` passes the daemon and `plan` accept:
/// each error is added to its unit as a diagnostic on the line of the directive at fault,
/// with the message the daemon logs and shows in status.
fn add_dependency_errors(units: &mut [LoadedUnit]) {
    let good: BTreeMap<String, Arc<Unit>> = units
        .iter()
        .filter_map(|u| u.unit.clone().map(|unit| (u.name.clone(), Arc::new(unit))))
        .collect();
    let (_, errors) = crate::deps::Graph::build_detailed(&good);
    for e in errors {
        let Some(lu) = units.iter_mut().find(|u| u.name == e.unit) else {
            continue;
        };
        let files: Vec<String> = std::iter::once(lu.path.clone())
            .chain(
                good.get(&e.unit)
                    .into_iter()
                    .flat_map(|u| u.dropins.iter().map(|d| dropin_path(&lu.path, d))),
            )
            .collect();
        let (file, line) =
            directive_line(&files, e.key, &e.other).unwrap_or_else(|| (lu.path.clone(), 1));
        lu.diagnostics
            .push(Diagnostic::error(&file, line, 1, e.message.clone()));
        // Like a parse error, a unit the daemon would refuse is not ok.
        lu.unit = None;
    }
    // A hook that is not in the set: the daemon only warns (as systemd does).
    for w in crate::deps::missing_hooks(&good) {
        let Some(lu) = units.iter_mut().find(|u| u.name == w.unit) else {
            continue;
        };
        let files = std::iter::once(lu.path.clone())
            .chain(
                good.get(&w.unit)
                    .into_iter()
                    .flat_map(|u| u.dropins.iter().map(|d| dropin_path(&lu.path, d))),
            )
            .collect::<Vec<_>>();
        // The line may name the hook with specifiers (`notify@%n.service`): then any
        // `key=` line is the best place to point at.
        let (file, line) = directive_line(&files, w.key, &w.other)
            .or_else(|| directive_line(&files, w.key, ""))
            .unwrap_or_else(|| (lu.path.clone(), 1));
        lu.diagnostics
            .push(Diagnostic::warning(&file, line, 1, w.message.clone()));
    }
}

/// A drop-in path as recorded by the loader, made openable next to the unit's main file.
fn dropin_path(main: &str, dropin: &str) -> String {
    if Path::new(dropin).exists() {
        return dropin.to_string();
    }
    // Loaded from a directory: the drop-in is relative to it, as the main file was.
    let main_rel = Path::new(main);
    for base in main_rel.ancestors().skip(1) {
        let p = base.join(dropin);
        if p.exists() {
            return p.display().to_string();
        }
    }
    dropin.to_string()
}

/// The first line, over `files` in order, that sets `key=` naming `other` (any `key=` line
/// when `other` is empty).
fn directive_line(files: &[String], key: &str, other: &str) -> Option<(String, u32)> {
    let prefix = format!("{key}=");
    for f in files {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        for (i, l) in text.lines().enumerate() {
            let Some(value) = l.trim_start().strip_prefix(&prefix) else {
                continue;
            };
            if other.is_empty() || value.split_whitespace().any(|v| v == other) {
                let line = u32::try_from(i.saturating_add(1)).unwrap_or(u32::MAX);
                return Some((f.clone(), line));
            }
        }
    }
    None
}

fn check_path(p: &Path, ctx: &SpecifierContext) -> Result<Vec<LoadedUnit>, String> {
    let meta = std::fs::metadata(p).map_err(|e| format!("cannot read: {e}"))?;
    if meta.is_dir() {
        let tree =
            crate::source::dir::read_tree(p).map_err(|e| format!("cannot read directory: {e}"))?;
        let mut services = unit::load_tree_with(&tree, ctx, &FixedHost);
        let mut timers = unit::load::load_timers(&tree, ctx);
        let mut sockets = unit::load::load_sockets(&tree, ctx);
        unit::load::resolve_aliases(unit::load::UnitSets {
            services: &mut services,
            timers: &mut timers,
            sockets: &mut sockets,
        });
        for t in timers.values_mut() {
            let target = t.unit.as_ref().map(|u| u.timer.unit.clone());
            check_target(t, "Unit", target, &tree, &|name| {
                services.contains_key(name)
            });
        }
        for s in sockets.values_mut() {
            let target = s.unit.as_ref().map(|u| u.socket.service.clone());
            check_target(s, "Service", target, &tree, &|name| {
                services.contains_key(name)
            });
        }
        let mut all: Vec<LoadedUnit> = services.into_values().collect();
        all.extend(timers.into_values());
        all.extend(sockets.into_values());
        all.extend(unit::load::load_templates_with(&tree, ctx, &FixedHost).into_values());
        for u in &mut all {
            prefix_paths(u, p);
        }
        Ok(all)
    } else {
        check_file(p, ctx).map(|u| vec![u])
    }
}

/// A timer's `Unit=` (a socket's `Service=`) must be a service of the same tree: an error at
/// the `key=` line that set it (the last one of its files), or at line 1 for the default
/// (`NAME.service`).
fn check_target(
    t: &mut LoadedUnit,
    key: &str,
    target: Option<String>,
    tree: &crate::tree::FileTree,
    exists: &dyn Fn(&str) -> bool,
) {
    let Some(target) = target else {
        return;
    };
    if exists(&target) {
        return;
    }
    let prefix = format!("{key}=");
    let mut at = (t.path.clone(), 1u32);
    for file in &t.inputs {
        let Some(text) = tree.file(file).and_then(|b| std::str::from_utf8(b).ok()) else {
            continue;
        };
        for (i, line) in text.lines().enumerate() {
            if line.trim_start().starts_with(&prefix) {
                at = (file.clone(), i as u32 + 1);
            }
        }
    }
    t.diagnostics.push(unit::Diagnostic::error(
        &at.0,
        at.1,
        1,
        format!(
            "{key}=: {target} is not a unit of this directory: add {target}, or point {key}= at an existing service"
        ),
    ));
    t.unit = None;
}

/// Diagnostics of a directory name files relative to it; show them as the user can open them.
fn prefix_paths(u: &mut LoadedUnit, dir: &Path) {
    let join = |f: &str| -> String {
        if f.starts_with('/') {
            f.to_string()
        } else {
            dir.join(f).display().to_string()
        }
    };
    u.path = join(&u.path);
    for d in &mut u.diagnostics {
        d.file = join(&d.file);
    }
}

fn check_file(p: &Path, ctx: &SpecifierContext) -> Result<LoadedUnit, String> {
    let name = p
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| "not a unit file name".to_string())?
        .to_string();
    let bytes = std::fs::read(p).map_err(|e| format!("cannot read: {e}"))?;
    let dir: PathBuf = p.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut dropin_dirs = Vec::new();
    if let Some(t) = unit::name::template_of(&name) {
        dropin_dirs.push(dir.join(format!("{t}.d")));
    }
    dropin_dirs.push(dir.join(format!("{name}.d")));
    let mut by_name = std::collections::BTreeMap::new();
    for d in dropin_dirs {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let fname = e.file_name().to_string_lossy().into_owned();
            if dropin_file_name_ok(&fname) {
                by_name.insert(fname, e.path());
            }
        }
    }
    let mut dropins = Vec::new();
    for path in by_name.into_values() {
        let b =
            std::fs::read(&path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        dropins.push((path.display().to_string(), b));
    }
    let env_dir = dir.clone();
    // Relative files are part of what is checked (next to the unit); absolute ones are the
    // host's, left to the fixed host (not read).
    let env_file = move |f: &str| -> Lookup {
        if f.starts_with('/') {
            FixedHost.read_file(f)
        } else {
            std::fs::read(env_dir.join(f)).ok().into()
        }
    };
    let shown = p.display().to_string();
    let mut u = unit::load::parse_resolved(&name, &shown, &bytes, &dropins, ctx, &env_file);
    // Relative environment files were read next to the unit: name them so.
    for d in &mut u.diagnostics {
        if !d.file.starts_with('/') && d.file != shown && !d.file.contains(".d/") {
            d.file = dir.join(&d.file).display().to_string();
        }
    }
    Ok(u)
}

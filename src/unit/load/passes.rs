//! The ordered passes over one unit's entries (see the order in [`super`]): lexing the main
//! file and its drop-ins, assigning every non-`Exec*=` entry (specifiers expanded on the
//! way), resolving `EnvironmentFile=`s, then parsing `Exec*=` lines against the final
//! environment (`$VAR` expansion, `UnsetEnvironment=`, `PassEnvironment=`).

use super::hash::Fnv128;
use super::{Builder, Located, Pos};
use crate::unit::diagnostic::Diagnostic;
use crate::unit::directives::{
    HEALTH_KEYS, HEALTH_SECTION, SectionKind, Support, classify, section_kind,
};
use crate::unit::environment::parse_env_file;
use crate::unit::exec::parse_exec;
use crate::unit::host::Lookup;
use crate::unit::model::{ExecCommand, Unit};
use crate::unit::specifier::{SpecifierUnit, expand};
use crate::unit::syntax;

/// Every entry of the main file and its drop-ins, in application order.
pub(super) struct Lexed<'a> {
    pub(super) entries: Vec<Located<'a>>,
    pub(super) has_service_section: bool,
    /// The first `[Service]` header.
    pub(super) service_pos: Option<Pos>,
    /// The first `[Timer]` or `[Socket]` header (of a `.timer` or `.socket` unit).
    pub(super) timer_pos: Option<Pos>,
}

/// Lexes `files` (main file first, then drop-ins); entries keep their file for diagnostics.
/// `own` is the type-specific section that belongs (`[Service]` in a `.service` unit,
/// `[Timer]` in a `.timer`, `[Socket]` in a `.socket`); another type's section is warned
/// about and ignored like any unknown section.
pub(super) fn lex<'a>(
    files: &[(&'a str, &'a [u8])],
    own: SectionKind,
    diagnostics: &mut Vec<Diagnostic>,
) -> Lexed<'a> {
    let typed = [
        SectionKind::Service,
        SectionKind::Timer,
        SectionKind::Socket,
    ];
    let misplaced = |k: SectionKind| k != own && typed.contains(&k);
    let kind_name = match own {
        SectionKind::Timer => ".timer",
        SectionKind::Socket => ".socket",
        _ => ".service",
    };
    let mut out = Lexed {
        entries: Vec::new(),
        has_service_section: false,
        service_pos: None,
        timer_pos: None,
    };
    for &(file, b) in files {
        let text = match syntax::decode(file, b) {
            Ok(t) => t,
            Err(d) => {
                diagnostics.push(d);
                continue;
            }
        };
        let lexed = syntax::parse(file, text);
        diagnostics.extend(lexed.diagnostics);
        for s in &lexed.sections {
            match section_kind(s.name) {
                k if k == SectionKind::Unknown || misplaced(k) => {
                    diagnostics.push(Diagnostic::warning(
                        file,
                        s.line,
                        s.column,
                        format!(
                            "unknown section [{}] in a {kind_name} unit: ignored (gitproc extensions use [X-Name])",
                            s.name
                        ),
                    ))
                }
                SectionKind::Timer | SectionKind::Socket if out.timer_pos.is_none() => {
                    out.timer_pos = Some((file.to_string(), s.line, s.column));
                }
                SectionKind::Service => {
                    out.has_service_section = true;
                    if out.service_pos.is_none() {
                        out.service_pos = Some((file.to_string(), s.line, s.column));
                    }
                }
                _ => {}
            }
        }
        out.entries.extend(
            lexed
                .entries
                .into_iter()
                .filter(|entry| !misplaced(section_kind(entry.section)))
                .map(|entry| Located { file, entry }),
        );
    }
    out
}

/// Assigns everything but `Exec*=` (returned, in order, for [`exec_lines`]); warns about
/// unknown and not-enforced keys; keeps `[X-...]` extension sections verbatim.
pub(super) fn assign_entries<'e, 'a>(
    b: &mut Builder<'_>,
    entries: &'e [Located<'a>],
) -> Vec<&'e Located<'a>> {
    let mut exec_entries: Vec<&Located<'_>> = Vec::new();
    for loc in entries {
        let sk = section_kind(loc.entry.section);
        let key = loc.entry.key;
        match sk {
            SectionKind::Unknown => continue,
            SectionKind::Extension => {
                let v = loc.entry.value.to_string();
                let keys = b
                    .unit
                    .extensions
                    .entry(loc.entry.section.to_string())
                    .or_default();
                let list = keys.entry(key.to_string()).or_default();
                if v.is_empty() {
                    list.clear();
                } else {
                    list.push(v);
                }
                if loc.entry.section == HEALTH_SECTION {
                    if key == "Exec" {
                        exec_entries.push(loc);
                    } else if HEALTH_KEYS.contains(&key) {
                        b.apply(loc, sk);
                    } else if !key.starts_with("X-") {
                        b.diags.push(Diagnostic::warning(
                            loc.file,
                            loc.entry.line,
                            loc.entry.column,
                            format!("unknown key {key}= in section [{HEALTH_SECTION}]: ignored"),
                        ));
                    }
                }
                continue;
            }
            _ => {}
        }
        match classify(sk, key) {
            None => {
                let hint = if sk != SectionKind::Service
                    && classify(SectionKind::Service, key).is_some()
                {
                    " (it belongs in [Service])"
                } else if sk != SectionKind::Unit && classify(SectionKind::Unit, key).is_some() {
                    " (it belongs in [Unit])"
                } else {
                    ""
                };
                b.diags.push(Diagnostic::warning(
                    loc.file,
                    loc.entry.line,
                    loc.entry.column,
                    format!(
                        "unknown key {key}= in section [{}]: ignored{hint}",
                        loc.entry.section
                    ),
                ));
            }
            Some(Support::Informational) => {}
            Some(Support::NotEnforced) => b.diags.push(Diagnostic::warning(
                loc.file,
                loc.entry.line,
                loc.entry.column,
                format!("{key}= is not enforced by gitproc: accepted and ignored"),
            )),
            Some(Support::Enforced) => {
                if sk == SectionKind::Service && key.starts_with("Exec") {
                    exec_entries.push(loc);
                } else {
                    b.apply(loc, sk);
                }
            }
        }
    }
    exec_entries
}

/// Reads the environment files once, in order; their variables override `Environment=`.
/// Every file's path and bytes (or its absence) enter the content hash; relative ones are
/// tree inputs.
pub(super) fn environment_files(
    b: &mut Builder<'_>,
    env_file: &dyn Fn(&str) -> Lookup,
    hash: &mut Fnv128,
    inputs: &mut Vec<String>,
) {
    let mut file_vars: Vec<(String, String)> = Vec::new();
    let env_files = b.unit.service.environment_files.clone();
    let env_file_pos = std::mem::take(&mut b.env_file_pos);
    for (k, ef) in env_files.iter().enumerate() {
        let (ofile, oline, ocol) = env_file_pos
            .get(k)
            .map(|(f, l, c)| (f.as_str(), *l, *c))
            .unwrap_or((b.path, 1, 1));
        match env_file(&ef.path) {
            Lookup::Found(content) => {
                hash.part(ef.path.as_bytes());
                hash.part(&content);
                if !ef.path.starts_with('/') {
                    inputs.push(ef.path.clone());
                }
                match std::str::from_utf8(&content) {
                    Ok(text) => {
                        let parsed = parse_env_file(text);
                        file_vars.extend(parsed.vars);
                        for (line, msg) in parsed.warnings {
                            b.diags.push(Diagnostic::warning(
                                &ef.path,
                                line,
                                1,
                                format!("environment file (used by {ofile}:{oline}): {msg}"),
                            ));
                        }
                    }
                    Err(_) => b.diags.push(Diagnostic::error(
                        &ef.path,
                        1,
                        1,
                        format!("environment file (used by {ofile}:{oline}) is not valid UTF-8"),
                    )),
                }
            }
            // A host file this load does not consult (see `unit::host`): known by its path.
            Lookup::NotRead => {
                hash.part(ef.path.as_bytes());
                hash.part(b"\0not-read");
            }
            Lookup::Missing if ef.optional => {
                hash.part(ef.path.as_bytes());
                hash.part(b"\0missing");
            }
            Lookup::Missing if ef.path.starts_with('/') => b.diags.push(Diagnostic::warning(
                ofile,
                oline,
                ocol,
                format!(
                    "EnvironmentFile=: {} cannot be read on this host; the service will fail to start unless it exists (prefix it with '-' if it is optional)",
                    ef.path
                ),
            )),
            Lookup::Missing => b.diags.push(Diagnostic::error(
                ofile,
                oline,
                ocol,
                format!(
                    "EnvironmentFile=: {} is not in the tree (relative paths are looked up next to the units; prefix with '-' if optional)",
                    ef.path
                ),
            )),
        }
    }
    b.unit.service.environment_from_files = file_vars;
}

/// Parses the `Exec*=` lines with the final environment.
pub(super) fn exec_lines(b: &mut Builder<'_>, exec_entries: &[&Located<'_>]) {
    let env_pairs: Vec<(&str, &str)> = b
        .unit
        .service
        .environment
        .iter()
        .chain(b.unit.service.environment_from_files.iter())
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    // UnsetEnvironment= removes variables from the final environment (systemd.exec(5)).
    // `NAME=VALUE` only unsets when the value matches.
    let unset = &b.unit.service.unset_environment;
    let env = |n: &str| {
        let found = env_pairs
            .iter()
            .rev()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| *v);
        let removed = unset.iter().any(|u| match u.split_once('=') {
            Some((k, val)) => k == n && found == Some(val),
            None => u == n,
        });
        if removed { Some("") } else { found }
    };
    // PassEnvironment= names come from the manager's environment at spawn time.
    let pass = &b.unit.service.pass_environment;
    let keep = |n: &str| pass.iter().any(|p| p == n);
    let (name, path, ctx) = (b.name, b.path, b.ctx);
    let mut spec = |w: &str| expand(w, &SpecifierUnit { name, path }, ctx).map_err(|(_, m)| m);
    let mut parsed: Vec<(usize, Result<Vec<ExecCommand>, Diagnostic>)> = Vec::new();
    for (i, loc) in exec_entries.iter().enumerate() {
        if loc.entry.value.is_empty() {
            parsed.push((i, Ok(Vec::new())));
            continue;
        }
        let origin = format!("{}:{}", loc.file, loc.entry.line);
        let r = parse_exec(&loc.entry.value, &origin, &mut spec, &env, &keep)
            .map_err(|(off, msg)| loc.error_at(off, msg));
        parsed.push((i, r));
    }
    for (i, r) in parsed {
        let loc = exec_entries[i];
        let key = loc.entry.key;
        if loc.entry.section == HEALTH_SECTION {
            match r {
                Ok(cmds) => b.set_health_exec(loc, cmds),
                Err(d) => b.diags.push(d),
            }
            continue;
        }
        match r {
            Ok(cmds) => {
                if key == "ExecStart" && !cmds.is_empty() {
                    b.exec_start_lines.push((
                        loc.file.to_string(),
                        loc.entry.line,
                        loc.entry.column,
                    ));
                }
                if key == "ExecStart" && loc.entry.value.is_empty() {
                    b.exec_start_lines.clear();
                }
                if let Some(list) = exec_list(&mut b.unit, key) {
                    if loc.entry.value.is_empty() {
                        list.clear();
                    } else {
                        list.extend(cmds);
                    }
                }
            }
            Err(d) => b.diags.push(d),
        }
    }
}

/// Which `Exec*=` list a key fills.
fn exec_list<'u>(unit: &'u mut Unit, key: &str) -> Option<&'u mut Vec<ExecCommand>> {
    let s = &mut unit.service;
    Some(match key {
        "ExecCondition" => &mut s.exec_condition,
        "ExecStartPre" => &mut s.exec_start_pre,
        "ExecStart" => &mut s.exec_start,
        "ExecStartPost" => &mut s.exec_start_post,
        "ExecReload" => &mut s.exec_reload,
        "ExecStop" => &mut s.exec_stop,
        "ExecStopPost" => &mut s.exec_stop_post,
        _ => return None,
    })
}

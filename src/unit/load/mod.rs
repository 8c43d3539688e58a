//! Building the typed [`Unit`] from a unit file and its drop-ins, and loading a whole unit
//! directory ([`FileTree`](crate::tree::FileTree)) with templates instantiated.
//!
//! Rules (systemd.unit(5), systemd.service(5)): entries of the main file then of each drop-in
//! (lexical order) apply in order; an empty assignment resets a list (or a scalar to its
//! default); `Exec*=` lines are resolved after all `Environment=`/`EnvironmentFile=` lines so
//! `$VAR` sees the final environment wherever the lines are. An error anywhere rejects this
//! unit only (`unit: None`); warnings never do.
//!
//! One unit goes through, in order ([`parse_resolved`]):
//! 1. [`hash`]: the content hash of the name, bytes and drop-ins;
//! 2. [`passes::lex`]: every file lexed, entries tagged with the file they came from;
//! 3. [`passes::assign_entries`]: each entry classified ([`directives`](super::directives))
//!    and, unless it is an `Exec*=` line, specifier-expanded and assigned by its section's
//!    module under [`assign`];
//! 4. [`passes::environment_files`]: `EnvironmentFile=`s resolved through the injected
//!    resolver (the tree, or the [`Host`](super::host::Host)), their bytes hashed;
//! 5. [`passes::exec_lines`]: `Exec*=` lines parsed with the final environment;
//! 6. [`rules`]: the checks that need the whole unit.
//!
//! [`tree`] finds the units, drop-ins and instances of a [`FileTree`](crate::tree::FileTree).
//! Nothing here reads the host: host files and facts come only through the arguments.

pub(crate) mod alias;
mod assign;
pub(crate) mod hash;
mod passes;
mod rules;
mod tree;

use std::borrow::Cow;

use super::diagnostic::Diagnostic;
use super::directives::SectionKind;
use super::host::Lookup;
use super::model::{Unit, UnitName};
use super::name::parse_unit_name;
use super::specifier::SpecifierContext;
use super::syntax::Entry;
use hash::Fnv128;

pub use alias::{UnitSets, resolve_aliases};
pub use tree::{
    load_sockets, load_templates, load_templates_with, load_timers, load_tree, load_tree_with,
};

/// One unit after loading.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LoadedUnit {
    /// Unit name, e.g. `web.service` or `worker@1.service`.
    pub name: String,
    /// Path of the main file read (for an instance: its template's path).
    pub path: String,
    /// The typed unit; `None` when any diagnostic is an error.
    #[serde(skip)]
    pub unit: Option<Unit>,
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

/// An entry with the file it came from.
struct Located<'a> {
    file: &'a str,
    entry: Entry<'a>,
}

impl Located<'_> {
    /// Column of a character offset inside the value (exact on single-line values).
    fn column_at(&self, offset: usize) -> u32 {
        match self.entry.value {
            Cow::Borrowed(_) => self.entry.value_column + offset as u32,
            Cow::Owned(_) => self.entry.value_column,
        }
    }

    fn error(&self, msg: impl std::fmt::Display) -> Diagnostic {
        self.error_at(0, msg)
    }

    fn error_at(&self, offset: usize, msg: impl std::fmt::Display) -> Diagnostic {
        Diagnostic::error(
            self.file,
            self.entry.line,
            self.column_at(offset),
            format!("{}=: {msg}", self.entry.key),
        )
    }

    fn warning(&self, msg: impl std::fmt::Display) -> Diagnostic {
        Diagnostic::warning(
            self.file,
            self.entry.line,
            self.entry.column,
            format!("{}=: {msg}", self.entry.key),
        )
    }
}

/// A place in a file: path, line, column.
type Pos = (String, u32, u32);

/// The unit being built while its entries are applied, and what the later passes and the
/// whole-unit rules need to know about where things were written.
struct Builder<'a> {
    unit: Unit,
    diags: Vec<Diagnostic>,
    ctx: &'a SpecifierContext,
    name: &'a UnitName,
    path: &'a str,
    /// Where ExecStart= / Type= were last set, for whole-unit checks.
    exec_start_lines: Vec<Pos>,
    type_pos: Option<Pos>,
    restart_pos: Option<Pos>,
    /// Where each `environment_files` entry was written (kept parallel to that list).
    env_file_pos: Vec<Pos>,
    /// The first `[Service]` header, for errors about the whole service.
    service_pos: Option<Pos>,
    /// Whether TimeoutStartSec=/TimeoutSec= was written (oneshot's default differs).
    timeout_start_set: bool,
    /// `[X-Health]` as written so far.
    health: assign::HealthDraft,
}

/// Parses one unit: see [`super::parse_unit`]. `env_file` answers `Some(bytes)` or `None`
/// (missing) for every `EnvironmentFile=` path, relative or absolute.
pub fn parse_unit(
    name: &str,
    path: &str,
    bytes: &[u8],
    dropins: &[(String, Vec<u8>)],
    ctx: &SpecifierContext,
    env_file: &dyn Fn(&str) -> Option<Vec<u8>>,
) -> LoadedUnit {
    parse_resolved(name, path, bytes, dropins, ctx, &|p: &str| {
        env_file(p).into()
    })
}

/// [`parse_unit`] with a resolver that may also answer [`Lookup::NotRead`] (a host file
/// that this load deliberately does not consult).
pub(crate) fn parse_resolved(
    name: &str,
    path: &str,
    bytes: &[u8],
    dropins: &[(String, Vec<u8>)],
    ctx: &SpecifierContext,
    env_file: &dyn Fn(&str) -> Lookup,
) -> LoadedUnit {
    let mut hash = Fnv128::new();
    hash.part(b"gitproc-unit-v1");
    hash.part(name.as_bytes());
    hash.part(bytes);
    for (p, b) in dropins {
        hash.part(p.as_bytes());
        hash.part(b);
    }
    let mut inputs: Vec<String> = Vec::with_capacity(1 + dropins.len());
    inputs.push(path.to_string());
    inputs.extend(dropins.iter().map(|(p, _)| p.clone()));
    let mut out = LoadedUnit {
        name: name.to_string(),
        path: path.to_string(),
        unit: None,
        diagnostics: Vec::new(),
        content_hash: String::new(),
        inputs,
    };
    let unit_name = match parse_unit_name(name) {
        Ok(n) if matches!(n.suffix.as_str(), "service" | "timer" | "socket") => n,
        Ok(_) => {
            out.diagnostics.push(Diagnostic::error(
                path,
                1,
                1,
                format!("{name}: gitproc only runs .service, .timer and .socket units"),
            ));
            out.content_hash = hash.hex();
            return out;
        }
        Err(e) => {
            out.diagnostics.push(Diagnostic::error(path, 1, 1, e));
            out.content_hash = hash.hex();
            return out;
        }
    };

    let mut files: Vec<(&str, &[u8])> = Vec::with_capacity(1 + dropins.len());
    files.push((path, bytes));
    files.extend(dropins.iter().map(|(p, b)| (p.as_str(), b.as_slice())));
    let own = match unit_name.suffix.as_str() {
        "timer" => SectionKind::Timer,
        "socket" => SectionKind::Socket,
        _ => SectionKind::Service,
    };
    let lexed = passes::lex(&files, own, &mut out.diagnostics);

    let mut b = Builder {
        unit: Unit {
            name: name.to_string(),
            path: path.to_string(),
            dropins: dropins.iter().map(|(p, _)| p.clone()).collect(),
            ..Unit::default()
        },
        diags: Vec::new(),
        ctx,
        name: &unit_name,
        path,
        exec_start_lines: Vec::new(),
        timeout_start_set: false,
        type_pos: None,
        restart_pos: None,
        env_file_pos: Vec::new(),
        service_pos: lexed.service_pos.clone(),
        health: assign::HealthDraft::default(),
    };
    let exec_entries = passes::assign_entries(&mut b, &lexed.entries);
    passes::environment_files(&mut b, env_file, &mut hash, &mut out.inputs);
    passes::exec_lines(&mut b, &exec_entries);
    match own {
        SectionKind::Timer => rules::check_timer(&mut b, lexed.timer_pos.as_ref()),
        SectionKind::Socket => rules::check_socket(&mut b, lexed.timer_pos.as_ref()),
        _ => {
            rules::check(&mut b, lexed.has_service_section);
            b.finish_health();
        }
    }

    out.diagnostics.extend(b.diags);
    out.content_hash = hash.hex();
    if !out.diagnostics.iter().any(Diagnostic::is_error) {
        out.unit = Some(b.unit);
    }
    out
}

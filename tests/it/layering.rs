//! The layering rule of ARCHITECTURE.md, enforced: every module of `src/` uses only modules
//! of its own layer or of the layers below it, and the pure core does no I/O.
//!
//! Layers, bottom up: `sys` (small OS helpers) → the pure core (`unit`, `service`, `deps`,
//! `reconcile`, `rollout`, `timer`, `source::poll`, `source::diff`, `tree`, `perf`) → adapters (`runtime`,
//! `source::*`, `state`, `logs`, `control`, `config`, `host`) → `daemon` → `cli`.
//! The binaries (`src/main.rs`, the front, and `src/bin/gitprocd.rs`, the engine) may use
//! anything.
//!
//! The check reads the sources as text: every `crate::a::b` path, and every `super::x` path
//! resolved against the file's own module, names the module it points at. A new top-level
//! module fails the test until it is given a layer here, so the table stays complete.

use std::path::{Path, PathBuf};

/// Module path prefixes and their layer; the longest matching prefix wins.
const LAYERS: &[(&str, u8)] = &[
    ("sys", 0),
    ("unit", 1),
    ("service", 1),
    ("deps", 1),
    ("reconcile", 1),
    ("rollout", 1),
    ("tree", 1),
    ("perf", 1),
    ("metrics", 1),
    ("testing", 1),
    ("timer", 1),
    ("source::poll", 1),
    ("source::diff", 1),
    ("runtime", 2),
    ("source", 2),
    ("state", 2),
    ("logs", 2),
    ("control", 2),
    ("config", 2),
    ("http", 2),
    ("host", 2),
    ("daemon", 3),
    ("cli", 4),
];

const LAYER_NAMES: [&str; 5] = ["sys", "pure core", "adapters", "daemon", "cli"];

/// What the pure core must not mention (outside its `#[cfg(test)]` modules): I/O, processes
/// and the clock. Time is an argument there; files come in as bytes. (Signal numbers from
/// `libc`, and `nix`'s `Signal` for their names, are constants, not I/O: see [`impure`].)
const IMPURE: &[&str] = &[
    "std::fs",
    "std::process::Command",
    "std::net",
    "std::os::unix::net",
    "Instant::now",
    "SystemTime::now",
    "std::env::var",
];

/// The I/O a pure-core file's code mentions: an [`IMPURE`] marker, a `libc` function (a
/// lower-case name; upper-case ones are constants) or any `nix` item but `Signal`.
fn impure(code: &str) -> Vec<String> {
    let mut found: Vec<String> = IMPURE
        .iter()
        .filter(|m| code.contains(*m))
        .map(|m| (*m).to_owned())
        .collect();
    for (at, _) in code.match_indices("libc::") {
        let rest = &code[at + "libc::".len()..];
        if rest.starts_with(|c: char| c.is_ascii_lowercase()) {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.push(format!("libc::{name}"));
        }
    }
    for (at, _) in code.match_indices("nix::") {
        if !code[at..].starts_with("nix::sys::signal::Signal") {
            let name: String = code[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            found.push(name);
        }
    }
    found.sort();
    found.dedup();
    found
}

fn layer_of(module: &str) -> Option<u8> {
    LAYERS
        .iter()
        .filter(|(prefix, _)| {
            module == *prefix
                || module.starts_with(prefix) && module[prefix.len()..].starts_with("::")
        })
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|&(_, layer)| layer)
}

/// `src/a/b/mod.rs` -> `a::b`; `src/a/b.rs` -> `a::b`; `src/lib.rs` -> ``.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("file under src/");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" && stem != "main" {
        parts.push(stem.to_owned());
    }
    parts.join("::")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The text of a file without its comments and without everything from the first
/// `#[cfg(test)]` on (unit tests may do I/O and may use anything).
fn code_of(text: &str) -> String {
    let upto = text.find("#[cfg(test)]").unwrap_or(text.len());
    text[..upto]
        .lines()
        .map(|l| match l.find("//") {
            Some(at) => &l[..at],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every module path a file's code points at, as `a::b::c` (possibly longer than the
/// module, e.g. `unit::model::Unit`; `layer_of` takes the longest known prefix).
fn targets(module: &str, code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect::<String>()
            .trim_end_matches(':')
            .to_owned()
    };
    for (at, _) in code.match_indices("crate::") {
        let before = code[..at].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        out.push(ident(&code[at + "crate::".len()..]));
    }
    // `super::x` from module `a::b::c` names `a::b::x`; from a `mod.rs` the same rule applies
    // to its own module path.
    for (at, _) in code.match_indices("super::") {
        let before = code[..at].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let mut base: Vec<&str> = module.split("::").filter(|s| !s.is_empty()).collect();
        let mut rest = &code[at..];
        while let Some(r) = rest.strip_prefix("super::") {
            base.pop();
            rest = r;
        }
        let tail = ident(rest);
        let full = if base.is_empty() {
            tail
        } else {
            format!("{}::{tail}", base.join("::"))
        };
        out.push(full);
    }
    out
}

#[test]
fn every_module_uses_only_its_layer_and_the_layers_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(
        files.len() > 20,
        "expected the crate's sources under {src:?}"
    );

    let mut violations = Vec::new();
    for file in &files {
        if file.starts_with(src.join("bin")) {
            continue; // src/bin/gitprocd.rs is the engine's binary and may use anything.
        }
        let module = module_of(&src, file);
        if module.is_empty() {
            continue; // lib.rs declares the modules; main.rs is the binary and may use anything.
        }
        let last = module.rsplit("::").next().unwrap_or("");
        if last == "tests" || last.ends_with("_tests") {
            continue; // a `#[cfg(test)]` module in a file of its own: tests may use anything.
        }
        let Some(own) = layer_of(&module) else {
            violations.push(format!(
                "{}: module `{module}` has no layer: add it to LAYERS in tests/it/layering.rs and to ARCHITECTURE.md",
                file.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read a source file");
        let code = code_of(&text);
        for target in targets(&module, &code) {
            if let Some(theirs) = layer_of(&target)
                && theirs > own
            {
                violations.push(format!(
                    "{}: `{module}` ({}) uses `{target}` ({}), a layer above it",
                    file.display(),
                    LAYER_NAMES[own as usize],
                    LAYER_NAMES[theirs as usize]
                ));
            }
        }
        if own == 1 {
            for bad in impure(&code) {
                {
                    violations.push(format!(
                        "{}: `{module}` is in the pure core but mentions `{bad}`: move the I/O to an adapter and pass its result in",
                        file.display()
                    ));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "layering violations:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_checker_sees_an_upward_import() {
    // The rule above is only as good as `targets` and `layer_of`: show that an import from
    // `daemon` into `cli`, and one hidden behind `super::`, are both caught.
    let daemon = "daemon::supervisor";
    let found = targets(
        daemon,
        "use crate::cli::exit;\nlet x = super::super::cli::Cli;",
    );
    assert_eq!(found, vec!["cli::exit".to_owned(), "cli::Cli".to_owned()]);
    assert_eq!(layer_of("daemon::supervisor"), Some(3));
    assert_eq!(layer_of("cli::exit"), Some(4));
    assert_eq!(layer_of("source::poll"), Some(1));
    assert_eq!(layer_of("source::git"), Some(2));
    assert_eq!(layer_of("sourcery"), None);
    assert_eq!(
        impure("let s = libc::SIGTERM; let n = nix::sys::signal::Signal::SIGHUP;"),
        Vec::<String>::new()
    );
    assert_eq!(
        impure("std::fs::read(p); libc::kill(1, 9); nix::unistd::gethostname()"),
        vec!["libc::kill", "nix::unistd::gethostname", "std::fs"]
    );
}

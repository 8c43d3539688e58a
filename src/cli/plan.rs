//! `gitproc plan [--repo R] [--from REV] [--to REV]`: what applying a commit would do,
//! without a daemon — so the same check can run in a pull request's CI.
//!
//! Reads a local repository directly (never its working tree: only committed trees), with
//! revisions in git's syntax (`HEAD~1`, `origin/main`, a commit id). `--from` defaults to the
//! first parent of `--to`, which defaults to `HEAD`; a root commit is planned against an empty
//! set.
//!
//! Units load on the [`FixedHost`](crate::unit::host::FixedHost), as in `gitproc check`:
//! the plan depends on the commits only, never on the machine it runs on.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;

use super::{PlanArgs, exit};
use crate::source::git::read_units_in;
use crate::unit::{FixedHost, Host, LoadedUnit};

pub fn run(args: &PlanArgs) -> anyhow::Result<i32> {
    let repo = gix::discover(&args.repo)
        .with_context(|| format!("{} is not a git repository", args.repo.display()))?;
    let url = args.repo.display().to_string();
    let to = resolve(&repo, args.to.as_deref().unwrap_or("HEAD"))?;
    let from = match &args.from {
        Some(rev) => Some(resolve(&repo, rev)?),
        None => first_parent(&repo, &to)?,
    };
    let ctx = FixedHost.specifier_context();
    let new_tree = read_units_in(&repo, &url, &to, &args.units_dir)?;
    let mut new = crate::unit::load_tree_with(&new_tree, &ctx, &FixedHost);
    // Socket units are dependencies services may name (Requires=x.socket), as in the daemon.
    let mut new_sockets = crate::unit::load::load_sockets(&new_tree, &ctx);
    crate::unit::load::resolve_aliases(crate::unit::load::UnitSets {
        services: &mut new,
        timers: &mut crate::unit::load::load_timers(&new_tree, &ctx),
        sockets: &mut new_sockets,
    });
    // A `from` commit that predates the units directory plans from an empty set.
    let old = match &from {
        Some(c) => match read_units_in(&repo, &url, c, &args.units_dir) {
            Ok(tree) => crate::unit::load_tree_with(&tree, &ctx, &FixedHost),
            Err(crate::source::SourceError::UnitsDirMissing { .. }) => BTreeMap::new(),
            Err(err) => return Err(err.into()),
        },
        None => BTreeMap::new(),
    };
    let hashes = |set: &BTreeMap<String, LoadedUnit>| -> BTreeMap<String, String> {
        set.iter()
            .map(|(n, u)| (n.clone(), u.content_hash.clone()))
            .collect()
    };
    let diff = crate::source::diff(&hashes(&old), &hashes(&new));

    let mut errors: Vec<(String, String)> = Vec::new();
    for (name, unit) in &new {
        for d in unit.diagnostics.iter().filter(|d| d.is_error()) {
            errors.push((name.clone(), d.to_string()));
        }
    }
    let good: BTreeMap<String, Arc<crate::unit::model::Unit>> = new
        .iter()
        .chain(&new_sockets)
        .filter_map(|(n, u)| u.unit.clone().map(|unit| (n.clone(), Arc::new(unit))))
        .collect();
    let (_, dep_errors) = crate::deps::Graph::build(&good);
    for (name, error) in dep_errors {
        errors.push((name, error));
    }

    if let Some(format) = args.json {
        let plan = serde_json::json!({
            "from": from,
            "to": to,
            "start": diff.added,
            "stop": diff.removed,
            "restart": diff.changed,
            "unchanged": diff.unchanged,
            "errors": errors.iter().map(|(u, e)| serde_json::json!({"unit": u, "error": e})).collect::<Vec<_>>(),
        });
        println!("{}", format.render(&plan)?);
    } else {
        println!(
            "plan {} -> {} (units dir {:?})",
            from.as_deref().map(short).unwrap_or("(nothing)"),
            short(&to),
            args.units_dir
        );
        for (label, list) in [
            ("start", &diff.added),
            ("stop", &diff.removed),
            ("restart", &diff.changed),
        ] {
            for name in list {
                println!("  {label:<9} {name}");
            }
        }
        println!("  unchanged {} unit(s)", diff.unchanged.len());
        for (unit, error) in &errors {
            println!("  error     {unit}: {error}");
        }
    }
    Ok(if errors.is_empty() {
        exit::OK
    } else {
        exit::FAILURE
    })
}

fn resolve(repo: &gix::Repository, rev: &str) -> anyhow::Result<String> {
    let id = repo
        .rev_parse_single(rev)
        .with_context(|| format!("cannot resolve revision {rev:?}"))?;
    let commit = id
        .object()
        .with_context(|| format!("reading {rev:?}"))?
        .peel_to_commit()
        .with_context(|| format!("{rev:?} does not name a commit"))?;
    Ok(commit.id.to_string())
}

fn first_parent(repo: &gix::Repository, commit: &str) -> anyhow::Result<Option<String>> {
    let id = gix::ObjectId::from_hex(commit.as_bytes())?;
    let commit = repo.find_commit(id)?;
    Ok(commit.parent_ids().next().map(|p| p.to_string()))
}

fn short(commit: &str) -> &str {
    commit.get(..10).unwrap_or(commit)
}

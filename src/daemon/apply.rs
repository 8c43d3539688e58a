//! Applying a new unit set: start what was added, stop what was removed, restart what
//! changed (by effective content hash), leave everything else alone — its pid must not
//! change. A unit whose new version does not load keeps running its last good version.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::managed::Managed;
use super::supervisor::Supervisor;
use super::worker::Snapshot;
use crate::deps::Graph;
use crate::service::{Service, ServiceResult};
use crate::unit::{LoadedUnit, model::Unit};

enum Action {
    Start,
    Restart,
    /// Re-adopt a process the previous daemon left running; restart it if its unit changed.
    Adopt {
        pid: i32,
        start_time: u64,
        changed: bool,
        /// An operator stopped it and its stop had not finished when the daemon died.
        held_stopped: bool,
    },
}

/// Applies `snapshot`; returns the summary `gitproc sync` prints.
pub fn apply(sup: &mut Supervisor, snapshot: Snapshot) -> serde_json::Value {
    let restored = sup.take_restored();
    let commit = snapshot.commit.clone();
    let mut summary = Summary::default();
    let mut actions: Vec<(String, Action)> = Vec::new();

    // Which units changed, by effective content: the pure diff over content hashes.
    let diff_started = std::time::Instant::now();
    let applied: BTreeMap<String, String> = sup
        .units_mut()
        .iter()
        .filter_map(|(name, m)| m.hash.clone().map(|h| (name.clone(), h)))
        .collect();
    let candidate: BTreeMap<String, String> = snapshot
        .units
        .iter()
        .map(|(name, u)| (name.clone(), u.content_hash.clone()))
        .collect();
    let unit_diff = crate::source::diff(&applied, &candidate);
    sup.record(crate::perf::Op::Diff, diff_started.elapsed());
    let unchanged: BTreeSet<String> = unit_diff.unchanged.into_iter().collect();

    // Removed from git: stop, then forget once inactive.
    let gone: Vec<String> = sup
        .units_mut()
        .keys()
        .filter(|name| !snapshot.units.contains_key(*name))
        .cloned()
        .collect();
    for name in &gone {
        let units = sup.units_mut();
        if units.get(name).is_some_and(|m| m.service.is_none()) {
            // It never loaded, so nothing runs: forget it now (the loop's "forget once
            // stopped" only sees units with a service).
            if let Some(cgroup) = units.remove(name).as_ref().and_then(|m| m.tracker.cgroup()) {
                let _ = cgroup.remove();
            }
            continue;
        }
        if let Some(m) = units.get_mut(name) {
            m.removed = true;
        }
        summary.stopped.push(name.clone());
    }

    for (name, loaded) in snapshot.units {
        let LoadedUnit {
            path,
            unit,
            diagnostics,
            content_hash,
            ..
        } = loaded;
        let Some(unit) = unit else {
            let error = first_error(&diagnostics, commit.as_deref());
            tracing::error!("{name}: new version not applied: {error}");
            match sup.units_mut().get_mut(&name) {
                Some(m) => m.load_error = Some(error.clone()),
                None => {
                    let tracker = sup.new_tracker(&name);
                    let mut m = Managed::new(None, path, tracker);
                    m.load_error = Some(error.clone());
                    sup.units_mut().insert(name.clone(), m);
                }
            }
            summary
                .errors
                .push(serde_json::json!({"unit": name, "error": error}));
            continue;
        };
        let unit = Arc::new(unit);
        let tracker = if sup.units_mut().contains_key(&name) {
            None
        } else {
            Some(sup.new_tracker(&name))
        };
        let units = sup.units_mut();
        match units.get_mut(&name) {
            Some(m) if m.service.is_some() => {
                m.load_error = None;
                m.path = path;
                if unchanged.contains(&name) {
                    // Git is back at the version that runs: the failed one is history.
                    m.failed_hash = None;
                    m.failed_commit = None;
                    continue;
                }
                if m.failed_hash.as_deref() == Some(content_hash.as_str()) {
                    // The version that failed and was rolled back: keep the last good one
                    // running until a commit changes this unit again.
                    continue;
                }
                if let Some(svc) = m.service.as_mut() {
                    svc.set_unit(Arc::clone(&unit));
                }
                m.hash = Some(content_hash);
                m.commit = commit.clone();
                if !m.held_stopped() {
                    actions.push((name.clone(), Action::Restart));
                    summary.restarted.push(name.clone());
                }
            }
            Some(m) => {
                // It had only ever failed to load; this is its first good version.
                m.service = Some(new_service(&unit));
                m.load_error = None;
                m.path = path;
                m.hash = Some(content_hash);
                m.commit = commit.clone();
                if !m.held_stopped() {
                    actions.push((name.clone(), Action::Start));
                    summary.started.push(name.clone());
                }
            }
            None => {
                let Some(tracker) = tracker else { continue };
                let mut m = Managed::new(Some(new_service(&unit)), path, tracker);
                m.hash = Some(content_hash.clone());
                m.commit = commit.clone();
                let action = restore(&mut m, restored.as_ref(), &name, &content_hash);
                if let Some(action) = action {
                    if matches!(action, Action::Start) {
                        summary.started.push(name.clone());
                    }
                    actions.push((name.clone(), action));
                }
                units.insert(name.clone(), m);
            }
        }
    }

    // Removed from git while no daemon ran: a process the previous daemon left running
    // would run on unsupervised. Adopt it under a placeholder unit (systemd's stop defaults,
    // since its file is gone) and stop it; it is forgotten once stopped.
    let mut leftovers = Vec::new();
    for (name, old) in restored.iter().flat_map(|s| &s.units) {
        if sup.units_mut().contains_key(name) {
            continue;
        }
        let Some(id) = old.main_identity().filter(|id| id.is_running_same()) else {
            continue;
        };
        tracing::info!(
            "{name}: removed from the repository while the daemon was down; stopping the process (pid {}) the previous daemon left running",
            id.pid
        );
        let unit = Arc::new(Unit {
            name: name.clone(),
            ..Unit::default()
        });
        let mut m = Managed::new(
            Some(new_service(&unit)),
            String::new(),
            sup.new_tracker(name),
        );
        m.removed = true;
        m.hash = old.content_hash.clone();
        m.commit = old.commit.clone();
        sup.units_mut().insert(name.clone(), m);
        summary.stopped.push(name.clone());
        leftovers.push((name.clone(), id));
    }

    // The dependency graph over every unit that has a loadable version.
    let loaded: BTreeMap<String, Arc<Unit>> = sup
        .units_mut()
        .iter()
        .filter(|(_, m)| !m.removed)
        .filter_map(|(name, m)| {
            m.service
                .as_ref()
                .map(|s| (name.clone(), Arc::clone(s.unit())))
        })
        .collect();
    let (graph, dep_errors) = Graph::build(&loaded);
    for (name, error) in &dep_errors {
        tracing::error!("{name}: {error}");
        if let Some(m) = sup.units_mut().get_mut(name) {
            m.load_error = Some(error.clone());
        }
        summary
            .errors
            .push(serde_json::json!({"unit": name, "error": error}));
    }
    let order = graph.start_order(&actions.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>());
    sup.set_graph(graph);
    sup.set_applied(
        commit.clone(),
        snapshot.subject.clone(),
        snapshot.commit_time,
    );

    for name in gone {
        sup.request_stop(&name);
    }
    for (name, id) in leftovers {
        sup.adopt(&name, id.pid, id.start_time);
        sup.request_stop(&name);
    }
    let mut actions: BTreeMap<String, Action> = actions.into_iter().collect();
    for name in order {
        let Some(action) = actions.remove(&name) else {
            continue;
        };
        if dep_errors.contains_key(&name) {
            continue;
        }
        match action {
            Action::Start => {
                // On trial too: once it has stayed up it is the last good version a later
                // commit's failure rolls back to (otherwise the first version never is).
                sup.begin_trial(&name, commit.clone());
                sup.request_start(&name);
            }
            Action::Restart => {
                sup.begin_trial(&name, commit.clone());
                sup.request_restart(&name);
            }
            Action::Adopt {
                pid,
                start_time,
                changed,
                held_stopped,
            } => {
                sup.begin_trial(&name, commit.clone());
                sup.adopt(&name, pid, start_time);
                if held_stopped {
                    sup.request_stop(&name);
                } else if changed {
                    sup.request_restart(&name);
                }
            }
        }
    }
    if let Some(c) = &commit {
        tracing::info!(
            "applied commit {}: {} started, {} restarted, {} stopped, {} with errors",
            c.get(..10).unwrap_or(c),
            summary.started.len(),
            summary.restarted.len(),
            summary.stopped.len(),
            summary.errors.len()
        );
    }
    serde_json::json!({
        "commit": commit,
        "changed": true,
        "unchanged": unchanged.len(),
        "started": summary.started,
        "restarted": summary.restarted,
        "stopped": summary.stopped,
        "errors": summary.errors,
    })
}

#[derive(Default)]
struct Summary {
    started: Vec<String>,
    restarted: Vec<String>,
    stopped: Vec<String>,
    errors: Vec<serde_json::Value>,
}

/// Restores what the previous daemon knew of a unit and decides how to bring it up: adopt
/// its still-running main process (same pid *and* start time), or start it, or nothing
/// when an operator stopped it. A process still running under an operator stop (the old
/// daemon died mid-stop) is adopted so that it can be stopped: never left running, never
/// started twice.
fn restore(
    m: &mut Managed,
    restored: Option<&crate::state::format::PersistedState>,
    name: &str,
    hash: &str,
) -> Option<Action> {
    let Some(old) = restored.and_then(|s| s.units.get(name)) else {
        return Some(Action::Start);
    };
    m.operator_override = old.operator_override.clone();
    if let Some(svc) = m.service.as_mut() {
        let result = old.result.parse().unwrap_or(ServiceResult::Success);
        svc.restore(old.n_restarts, result);
    }
    if let Some(id) = old.main_identity() {
        if id.is_running_same() {
            return Some(Action::Adopt {
                pid: id.pid,
                start_time: id.start_time,
                changed: old.content_hash.as_deref() != Some(hash),
                held_stopped: m.held_stopped(),
            });
        }
        if crate::state::identity::ProcessIdentity::read(id.pid).is_some() {
            tracing::warn!(
                "{name}: recorded pid {} now belongs to another process (start time differs); not touching it, starting the service fresh",
                id.pid
            );
        }
    }
    if m.held_stopped() {
        None
    } else {
        Some(Action::Start)
    }
}

/// A state machine for `unit` that waits for its whole process group when stopping (the
/// loop reports `GroupEmpty`), as systemd waits for the cgroup.
fn new_service(unit: &Arc<Unit>) -> Service {
    let mut service = Service::new(Arc::clone(unit));
    service.set_group_tracking(true);
    service
}

/// The first error of a unit that failed to load, with where it is, for status and logs.
fn first_error(diagnostics: &[crate::unit::Diagnostic], commit: Option<&str>) -> String {
    let text = diagnostics
        .iter()
        .find(|d| d.is_error())
        .map(|d| d.to_string())
        .unwrap_or_else(|| "failed to load".into());
    match commit {
        Some(c) => format!("{text} (commit {})", c.get(..10).unwrap_or(c)),
        None => text,
    }
}

//! Applying a new unit set: start what was added, stop what was removed, restart what
//! changed (by effective content hash), leave everything else alone — its pid must not
//! change. A unit whose new version does not load keeps running its last good version.
//!
//! The decisions are [`crate::reconcile`]'s (pure); this module gathers its inputs (the
//! loop's units, the restored state, which recorded pids still live) and carries the
//! decisions out on the [`Supervisor`].

use std::collections::BTreeMap;
use std::sync::Arc;

use super::managed::Managed;
use super::supervisor::Supervisor;
use super::worker::Snapshot;
use crate::deps::Graph;
use crate::reconcile::{Action, Candidate, Current, Recorded, reconcile};
use crate::service::{Service, ServiceResult};
use crate::state::format::{Override, OverrideKind, PersistedState, UnitState};
use crate::unit::{LoadedUnit, model::Unit};

/// Applies `snapshot`; returns the summary `gitproc sync` prints.
pub fn apply(sup: &mut Supervisor, snapshot: Snapshot) -> serde_json::Value {
    let restored = sup.take_restored();
    let commit = snapshot.commit.clone();
    let mut summary = Summary::default();

    // What reconcile needs to know, read here: it does no I/O. A recorded main pid counts
    // only while its /proc start time still matches (the pid may have been reused).
    let recorded: BTreeMap<String, Recorded> = restored
        .iter()
        .flat_map(|s| &s.units)
        .map(|(name, old)| {
            let alive_main = old
                .main_identity()
                .filter(|id| id.is_running_same())
                .map(|id| (id.pid, id.start_time));
            let held_stopped = matches!(
                old.operator_override,
                Some(Override {
                    kind: OverrideKind::Stopped,
                    ..
                })
            );
            let recorded = Recorded {
                hash: old.content_hash.clone(),
                held_stopped,
                alive_main,
                failed_hash: old.failed_hash.clone(),
            };
            (name.clone(), recorded)
        })
        .collect();
    let diff_started = std::time::Instant::now();
    let current: BTreeMap<String, Current> = sup
        .units_mut()
        .iter()
        .map(|(name, m)| {
            let now = Current {
                hash: m.hash.clone(),
                loaded: m.service.is_some(),
                failed_hash: m.failed_hash.clone(),
                held_stopped: m.held_stopped(),
            };
            (name.clone(), now)
        })
        .collect();
    let candidates: BTreeMap<String, Candidate> = snapshot
        .units
        .iter()
        .map(|(name, u)| {
            let candidate = Candidate {
                hash: u.content_hash.clone(),
                loads: u.unit.is_some(),
            };
            (name.clone(), candidate)
        })
        .collect();
    let plan = reconcile(&candidates, &current, &recorded);
    sup.record(crate::perf::Op::Diff, diff_started.elapsed());

    // Bookkeeping first (versions, errors, removals), so the graph sees the new unit set.
    let mut loaded_units = snapshot.units;
    for (name, action) in &plan.actions {
        match *action {
            Action::Forget => {
                // It never loaded, so nothing runs: forget it now (the loop's "forget once
                // stopped" only sees units with a service).
                let units = sup.units_mut();
                if let Some(cgroup) = units.remove(name).as_ref().and_then(|m| m.tracker.cgroup()) {
                    let _ = cgroup.remove();
                }
            }
            Action::Stop => {
                // Removed from git: stop, then forget once inactive.
                if let Some(m) = sup.units_mut().get_mut(name) {
                    m.removed = true;
                }
                summary.stopped.push(name.clone());
            }
            Action::StopLeftover { pid, .. } => {
                let old = restored.as_ref().and_then(|s| s.units.get(name));
                add_leftover(sup, name, pid, old);
                summary.stopped.push(name.clone());
            }
            _ => {
                if let Some(loaded) = loaded_units.remove(name) {
                    install(
                        sup,
                        name,
                        *action,
                        loaded,
                        &commit,
                        restored.as_ref(),
                        &mut summary,
                    );
                }
            }
        }
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
    // Socket units are nodes of the graph too (a service may Require= one), though the
    // loop runs them apart from the services (see `supervisor::sockets`).
    let mut with_sockets = loaded.clone();
    for (name, s) in &snapshot.sockets {
        if let Some(u) = &s.unit {
            with_sockets.insert(name.clone(), Arc::new(u.clone()));
        }
    }
    let (graph, dep_errors) = Graph::build(&with_sockets);
    for (name, error) in &dep_errors {
        tracing::error!("{name}: {error}");
        if let Some(m) = sup.units_mut().get_mut(name) {
            m.load_error = Some(error.clone());
        }
        summary
            .errors
            .push(serde_json::json!({"unit": name, "error": error}));
    }
    let steps = plan.perform_order(&graph, &|name| dep_errors.contains_key(name));
    // A service that a timer starts is not started by the commit: it runs when its timer
    // elapses (a changed one that is running now is restarted as usual).
    let mut timer_activated = Supervisor::timer_activated(&snapshot.timers);
    // Likewise a socket-activated one: its sockets listen, the first connection starts it.
    timer_activated.extend(Supervisor::socket_activated(&snapshot.sockets, &loaded));
    // And a hook (named in some unit's OnFailure=/OnSuccess=): its trigger starts it.
    // Something else that pulls it in (Wants=, Requires=) or an operator still can.
    timer_activated.extend(crate::deps::hook_units(&loaded));
    for missing in crate::deps::missing_hooks(&loaded) {
        tracing::warn!("{}: {}", missing.unit, missing.message);
    }
    sup.set_graph(graph);
    sup.set_applied(
        commit.clone(),
        snapshot.subject.clone(),
        snapshot.commit_time,
    );

    for (name, action) in steps {
        match action {
            Action::Restart
                if summary.resources_updated.contains(&name)
                    && sup.update_resources_live(&name) => {}
            Action::Stop => sup.request_stop(&name),
            Action::StopLeftover { pid, start_time } => {
                sup.adopt(&name, pid, start_time);
                sup.request_stop(&name);
            }
            Action::Start if timer_activated.contains(&name) => {}
            Action::Restart if timer_activated.contains(&name) => sup.restart_if_running(&name),
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
                // A unit still marked rolled back runs its last good version, whose text
                // this daemon does not have: no trial, which would promote the failed
                // version's text to "last good" and clear the mark.
                let rolled_back = sup
                    .units_mut()
                    .get(&name)
                    .is_some_and(|m| m.failed_hash.is_some());
                if !rolled_back {
                    sup.begin_trial(&name, commit.clone());
                }
                sup.adopt(&name, pid, start_time);
                if held_stopped {
                    sup.request_stop(&name);
                } else if changed {
                    sup.request_restart(&name);
                }
            }
            Action::Forget
            | Action::Broken
            | Action::Keep
            | Action::KeepRolledBack
            | Action::Hold => {}
        }
    }
    sup.apply_timers(
        snapshot.timers,
        restored.as_ref().map(|s| &s.timers),
        &commit,
    );
    sup.apply_sockets(
        snapshot.sockets,
        restored.as_ref().map(|s| &s.sockets),
        &commit,
    );
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
        "unchanged": plan.unchanged,
        "started": summary.started,
        "restarted": summary.restarted,
        "resources_updated": summary.resources_updated,
        "stopped": summary.stopped,
        "errors": summary.errors,
    })
}

/// Records what `action` decided for a unit of the snapshot: its error, or its new version
/// (in the unit the loop already has, or in a new one restored from the previous daemon).
fn install(
    sup: &mut Supervisor,
    name: &str,
    action: Action,
    loaded: LoadedUnit,
    commit: &Option<String>,
    restored: Option<&PersistedState>,
    summary: &mut Summary,
) {
    let LoadedUnit {
        path,
        unit,
        diagnostics,
        content_hash,
        ..
    } = loaded;
    let Some(unit) = unit.filter(|_| action != Action::Broken) else {
        let error = first_error(&diagnostics, commit.as_deref());
        tracing::error!("{name}: new version not applied: {error}");
        match sup.units_mut().get_mut(name) {
            Some(m) => m.load_error = Some(error.clone()),
            None => {
                let tracker = sup.new_tracker(name);
                let mut m = Managed::new(None, path, tracker);
                m.load_error = Some(error.clone());
                sup.units_mut().insert(name.to_string(), m);
            }
        }
        summary
            .errors
            .push(serde_json::json!({"unit": name, "error": error}));
        return;
    };
    let unit = Arc::new(unit);
    let tracker = if sup.units_mut().contains_key(name) {
        None
    } else {
        Some(sup.new_tracker(name))
    };
    let units = sup.units_mut();
    match units.get_mut(name) {
        Some(m) => {
            m.load_error = None;
            m.path = path;
            match action {
                Action::Keep => {
                    // Git is back at the version that runs: the failed one is history.
                    m.failed_hash = None;
                    m.failed_commit = None;
                    return;
                }
                Action::KeepRolledBack => return,
                _ => {}
            }
            if action == Action::Restart
                && m.service.as_ref().is_some_and(|svc| {
                    !matches!(
                        svc.status().active_state,
                        crate::service::ActiveState::Inactive | crate::service::ActiveState::Failed
                    ) && only_resources_differ(svc.unit(), &unit)
                })
            {
                summary.resources_updated.push(name.to_string());
            }
            match m.service.as_mut() {
                Some(svc) => svc.set_unit(Arc::clone(&unit)),
                // It had only ever failed to load; this is its first good version.
                None => m.service = Some(new_service(&unit)),
            }
            m.hash = Some(content_hash);
            m.commit = commit.clone();
        }
        None => {
            let Some(tracker) = tracker else { return };
            let mut m = Managed::new(Some(new_service(&unit)), path, tracker);
            m.hash = Some(content_hash);
            m.commit = commit.clone();
            if let Some(old) = restored.and_then(|s| s.units.get(name)) {
                restore(&mut m, old, name, matches!(action, Action::Adopt { .. }));
            }
            units.insert(name.to_string(), m);
        }
    }
    match action {
        Action::Start => summary.started.push(name.to_string()),
        Action::Restart if !summary.resources_updated.iter().any(|n| n == name) => {
            summary.restarted.push(name.to_string())
        }
        _ => {}
    }
}

/// Removed from git while no daemon ran: a process the previous daemon left running
/// would run on unsupervised. Adopt it under a placeholder unit (systemd's stop defaults,
/// since its file is gone) and stop it; it is forgotten once stopped.
fn add_leftover(sup: &mut Supervisor, name: &str, pid: i32, old: Option<&UnitState>) {
    tracing::info!(
        "{name}: removed from the repository while the daemon was down; stopping the process (pid {pid}) the previous daemon left running"
    );
    let unit = Arc::new(Unit {
        name: name.to_string(),
        ..Unit::default()
    });
    let mut m = Managed::new(
        Some(new_service(&unit)),
        String::new(),
        sup.new_tracker(name),
    );
    m.removed = true;
    m.hash = old.and_then(|o| o.content_hash.clone());
    m.commit = old.and_then(|o| o.commit.clone());
    sup.units_mut().insert(name.to_string(), m);
}

#[derive(Default)]
struct Summary {
    started: Vec<String>,
    /// Running units whose new version differs only in resource settings: rewritten in
    /// place (systemd applies them on daemon-reload), not restarted.
    resources_updated: Vec<String>,
    restarted: Vec<String>,
    stopped: Vec<String>,
    errors: Vec<serde_json::Value>,
}

/// Whether two versions of a unit differ in their resource settings only.
fn only_resources_differ(old: &Unit, new: &Unit) -> bool {
    if old.service.resources == new.service.resources {
        return false;
    }
    let mut a = old.clone();
    a.service.resources = new.service.resources.clone();
    a == *new
}

/// Restores what the previous daemon knew of a unit new to this one: its operator override
/// and restart bookkeeping. When its recorded pid was not adopted because another process
/// has it now, say so: that process is not touched.
fn restore(m: &mut Managed, old: &UnitState, name: &str, adopted: bool) {
    m.operator_override = old.operator_override.clone();
    // The rolled-back mark survives the restart. When the adopted process runs the last
    // good version while git still carries the failed one, the unit keeps the hash (and
    // commit) of what runs, so a commit going back to the good version changes nothing.
    if old.failed_hash.is_some() && old.failed_hash == m.hash {
        m.failed_hash = old.failed_hash.clone();
        m.failed_commit = old.failed_commit.clone();
        if adopted {
            m.hash = old.content_hash.clone();
            m.commit = old.commit.clone();
        }
    }
    if let Some(svc) = m.service.as_mut() {
        let result = old.result.parse().unwrap_or(ServiceResult::Success);
        svc.restore(old.n_restarts, result);
    }
    if !adopted
        && let Some(id) = old.main_identity()
        && !id.is_running_same()
        && crate::state::identity::ProcessIdentity::read(id.pid).is_some()
    {
        tracing::warn!(
            "{name}: recorded pid {} now belongs to another process (start time differs); not touching it, starting the service fresh",
            id.pid
        );
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

//! The dependency graph between units (pure).
//!
//! As in systemd, requirement and ordering are separate: `Requires=`, `Wants=` and `BindsTo=`
//! pull units in; `After=`/`Before=` only order units that are started (or stopped) together;
//! `Requires=`, `BindsTo=` and `PartOf=` propagate stops; `Conflicts=` stops the other side.
//!
//! Where gitproc differs: an ordering cycle is not broken by dropping a job (systemd does that
//! and logs it); it is an error on every unit in the cycle, which then does not start, so the
//! operator fixes the units instead of discovering a random order in production.
//!
//! Units outside the loaded set: `After=`, `Before=`, `Wants=`, `PartOf=`, `Conflicts=` on
//! them are ignored; [`WELL_KNOWN_TARGETS`] count as reached, so units from a distribution
//! run unchanged; `Requires=`/`BindsTo=` on any other missing unit is an error on the
//! requiring unit.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use crate::unit::model::Unit;

/// systemd's well-known targets (systemd.special(7)): gitproc has no targets of its own, so
/// dependencies on them are always satisfied.
pub const WELL_KNOWN_TARGETS: &[&str] = &[
    "basic.target",
    "cryptsetup.target",
    "default.target",
    "emergency.target",
    "final.target",
    "getty.target",
    "graphical.target",
    "local-fs-pre.target",
    "local-fs.target",
    "multi-user.target",
    "network-online.target",
    "network-pre.target",
    "network.target",
    "nss-lookup.target",
    "nss-user-lookup.target",
    "paths.target",
    "remote-fs-pre.target",
    "remote-fs.target",
    "rescue.target",
    "rpcbind.target",
    "shutdown.target",
    "slices.target",
    "sockets.target",
    "swap.target",
    "sysinit.target",
    "time-set.target",
    "time-sync.target",
    "timers.target",
    "umount.target",
];

/// Whether `name` is one of [`WELL_KNOWN_TARGETS`].
pub fn is_well_known(name: &str) -> bool {
    WELL_KNOWN_TARGETS.contains(&name)
}

/// The units named in some unit's `OnFailure=` or `OnSuccess=` that are in the set: the
/// hooks. A commit does not start a hook (see `daemon::apply`); its trigger does.
pub fn hook_units(units: &BTreeMap<String, Arc<Unit>>) -> BTreeSet<String> {
    units
        .values()
        .flat_map(|u| u.unit.on_failure.iter().chain(&u.unit.on_success))
        .filter(|n| units.contains_key(*n))
        .cloned()
        .collect()
}

/// `OnFailure=`/`OnSuccess=` naming a unit that is not in the set. systemd loads such a
/// unit as "not found" and only logs, when the trigger fires, that it could not start it;
/// so this is a warning (the daemon logs it at apply, `check` shows it on the line), never a
/// reason not to start the unit. `key` is `OnFailure` or `OnSuccess`.
pub fn missing_hooks(units: &BTreeMap<String, Arc<Unit>>) -> Vec<DepError> {
    let mut out = Vec::new();
    for (name, unit) in units {
        let u = &unit.unit;
        for (key, list) in [("OnFailure", &u.on_failure), ("OnSuccess", &u.on_success)] {
            for other in list {
                if units.contains_key(other) {
                    continue;
                }
                let hint = if other.contains('@') {
                    " (an instance needs its template, or a name@instance.service symlink, in the units directory)"
                } else {
                    ""
                };
                out.push(DepError {
                    unit: name.clone(),
                    key,
                    other: other.clone(),
                    message: format!(
                        "{key}={other}: no such unit in the repository{hint}; it will not be \
                         started when {name} {}; add {other} or remove it from {key}= in {}",
                        if key == "OnFailure" {
                            "fails"
                        } else {
                            "succeeds"
                        },
                        unit.path
                    ),
                });
            }
        }
    }
    out
}

type Edges = BTreeMap<String, BTreeSet<String>>;

fn add(edges: &mut Edges, from: &str, to: &str) {
    edges
        .entry(from.to_string())
        .or_default()
        .insert(to.to_string());
}

fn get<'a>(edges: &'a Edges, name: &str) -> impl Iterator<Item = &'a String> {
    edges.get(name).into_iter().flatten()
}

/// One reason a unit must not be started, with the directive that causes it so that
/// `gitproc check` can point at its line; the daemon and `plan` show [`DepError::message`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepError {
    /// The unit that must not start.
    pub unit: String,
    /// The directive at fault, without `=`: `Requires`, `BindsTo`, `After` or `Before`
    /// (or, for [`missing_hooks`], `OnFailure`/`OnSuccess`).
    pub key: &'static str,
    /// The unit named in that directive.
    pub other: String,
    pub message: String,
}

/// The requirement and ordering relations between the loaded units.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    /// name -> units that must be started before it (its `After=` side), within the set.
    after: Edges,
    /// name -> units it pulls in on start (Requires=, Wants=, BindsTo=), within the set.
    pulls: Edges,
    /// name -> units that stop (and restart) with it (they Require/BindsTo/PartOf it).
    stopped_with: Edges,
    /// name -> units that BindsTo= it.
    bound_by: Edges,
    /// name -> units it conflicts with, both directions.
    conflicts: Edges,
    /// Position of each unit in one global start order (cycle members last, by name).
    rank: BTreeMap<String, usize>,
}

impl Graph {
    /// Builds the graph; the map holds one error per unit that must not be started
    /// (ordering cycle, `Requires=`/`BindsTo=` on a unit that does not exist).
    pub fn build(units: &BTreeMap<String, Arc<Unit>>) -> (Graph, BTreeMap<String, String>) {
        let (g, list) = Graph::build_detailed(units);
        let mut errors: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for e in list {
            let msgs = errors.entry(e.unit).or_default();
            // A cycle is reported once per member, whatever directive names it.
            if !msgs.contains(&e.message) {
                msgs.push(e.message);
            }
        }
        let errors = errors
            .into_iter()
            .map(|(name, list)| (name, list.join("; ")))
            .collect();
        (g, errors)
    }

    /// [`Graph::build`] with each error kept apart and tied to its directive.
    pub fn build_detailed(units: &BTreeMap<String, Arc<Unit>>) -> (Graph, Vec<DepError>) {
        let mut g = Graph::default();
        let mut errors: Vec<DepError> = Vec::new();
        let present = |n: &str| units.contains_key(n);
        for (name, unit) in units {
            let u = &unit.unit;
            for other in &u.after {
                if present(other) {
                    add(&mut g.after, name, other);
                }
            }
            for other in &u.before {
                if present(other) {
                    add(&mut g.after, other, name);
                }
            }
            for (key, list, hard) in [
                ("Requires", &u.requires, true),
                ("BindsTo", &u.binds_to, true),
                ("Wants", &u.wants, false),
            ] {
                for other in list {
                    if present(other) {
                        add(&mut g.pulls, name, other);
                        if hard {
                            add(&mut g.stopped_with, other, name);
                        }
                        if key == "BindsTo" {
                            add(&mut g.bound_by, other, name);
                        }
                    } else if hard && !is_well_known(other) {
                        errors.push(DepError {
                            unit: name.clone(),
                            key,
                            other: other.clone(),
                            message: format!(
                                "{key}={other}: no such unit in the repository; add {other} or \
                                 remove it from {key}= in {}",
                                unit.path
                            ),
                        });
                    }
                }
            }
            for other in &u.part_of {
                if present(other) {
                    add(&mut g.stopped_with, other, name);
                }
            }
            for other in &u.conflicts {
                if present(other) && other != name {
                    add(&mut g.conflicts, name, other);
                    add(&mut g.conflicts, other, name);
                }
            }
        }
        for cycle in g.ordering_cycles(units) {
            let list = cycle.iter().cloned().collect::<Vec<_>>().join(", ");
            let message = format!(
                "ordering cycle between {list} (After=/Before=): gitproc does not break \
                 cycles; remove one of these orderings"
            );
            for name in &cycle {
                // Point at each of the unit's own orderings that closes the cycle.
                let Some(unit) = units.get(name) else {
                    continue;
                };
                let u = &unit.unit;
                let own = u
                    .after
                    .iter()
                    .map(|o| ("After", o))
                    .chain(u.before.iter().map(|o| ("Before", o)))
                    .filter(|(_, o)| cycle.contains(*o));
                let mut any = false;
                for (key, other) in own {
                    any = true;
                    errors.push(DepError {
                        unit: name.clone(),
                        key,
                        other: other.clone(),
                        message: message.clone(),
                    });
                }
                if !any {
                    // Only the other side orders it (Before= there); still an error here.
                    errors.push(DepError {
                        unit: name.clone(),
                        key: "After",
                        other: String::new(),
                        message: message.clone(),
                    });
                }
            }
        }
        g.rank = g.global_order(units);
        (g, errors)
    }

    /// Strongly connected components of the ordering graph that are cycles (Tarjan's
    /// algorithm, iterative so that a long chain cannot overflow the stack).
    fn ordering_cycles(&self, units: &BTreeMap<String, Arc<Unit>>) -> Vec<BTreeSet<String>> {
        let names: Vec<&String> = units.keys().collect();
        let index_of: BTreeMap<&str, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let succ: Vec<Vec<usize>> = names
            .iter()
            .map(|n| {
                get(&self.after, n)
                    .filter_map(|m| index_of.get(m.as_str()).copied())
                    .collect()
            })
            .collect();
        let n = names.len();
        let mut index = vec![usize::MAX; n];
        let mut low = vec![0usize; n];
        let mut on_stack = vec![false; n];
        let mut stack = Vec::new();
        let mut next = 0usize;
        let mut cycles = Vec::new();
        for root in 0..n {
            if index[root] != usize::MAX {
                continue;
            }
            // (node, next successor position)
            let mut work = vec![(root, 0usize)];
            index[root] = next;
            low[root] = next;
            next += 1;
            stack.push(root);
            on_stack[root] = true;
            while let Some(&mut (v, ref mut pos)) = work.last_mut() {
                if let Some(&w) = succ[v].get(*pos) {
                    *pos += 1;
                    if index[w] == usize::MAX {
                        index[w] = next;
                        low[w] = next;
                        next += 1;
                        stack.push(w);
                        on_stack[w] = true;
                        work.push((w, 0));
                    } else if on_stack[w] {
                        low[v] = low[v].min(index[w]);
                    }
                    continue;
                }
                work.pop();
                if let Some(&(parent, _)) = work.last() {
                    low[parent] = low[parent].min(low[v]);
                }
                if low[v] == index[v] {
                    let mut comp = BTreeSet::new();
                    while let Some(w) = stack.pop() {
                        on_stack[w] = false;
                        comp.insert(names[w].clone());
                        if w == v {
                            break;
                        }
                    }
                    if comp.len() > 1 || succ[v].contains(&v) {
                        cycles.push(comp);
                    }
                }
            }
        }
        cycles
    }

    /// One start order of all units (Kahn's algorithm, ties by name); units left in or
    /// behind a cycle come last, by name.
    fn global_order(&self, units: &BTreeMap<String, Arc<Unit>>) -> BTreeMap<String, usize> {
        let mut pending: BTreeMap<&str, usize> = units
            .keys()
            .map(|n| (n.as_str(), get(&self.after, n).count()))
            .collect();
        let mut before_of: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (n, preds) in &self.after {
            for p in preds {
                before_of.entry(p.as_str()).or_default().push(n.as_str());
            }
        }
        let mut ready: BTreeSet<&str> = pending
            .iter()
            .filter(|(_, c)| **c == 0)
            .map(|(n, _)| *n)
            .collect();
        let mut rank = BTreeMap::new();
        while let Some(n) = ready.pop_first() {
            rank.insert(n.to_string(), rank.len());
            pending.remove(n);
            for succ in before_of.get(n).into_iter().flatten() {
                if let Some(c) = pending.get_mut(succ) {
                    *c -= 1;
                    if *c == 0 {
                        ready.insert(succ);
                    }
                }
            }
        }
        for n in pending.keys() {
            rank.insert(n.to_string(), rank.len());
        }
        rank
    }

    /// `names` plus every unit they pull in (Requires=, Wants=, BindsTo=), transitively,
    /// in start order.
    pub fn requirement_closure(&self, names: &[String]) -> Vec<String> {
        let mut seen: BTreeSet<String> = names.iter().cloned().collect();
        let mut todo: VecDeque<String> = names.iter().cloned().collect();
        while let Some(n) = todo.pop_front() {
            for m in get(&self.pulls, &n) {
                if seen.insert(m.clone()) {
                    todo.push_back(m.clone());
                }
            }
        }
        self.start_order(&seen.into_iter().collect::<Vec<_>>())
    }

    /// `names` (deduplicated) sorted so that each comes after what it is ordered after,
    /// also through units not in `names`. Unknown names come last, by name.
    pub fn start_order(&self, names: &[String]) -> Vec<String> {
        let set: BTreeSet<&String> = names.iter().collect();
        let mut out: Vec<String> = set.into_iter().cloned().collect();
        out.sort_by_key(|n| (self.rank.get(n).copied().unwrap_or(usize::MAX), n.clone()));
        out
    }

    /// The reverse of [`Graph::start_order`]: a unit stops before what it was started after.
    pub fn stop_order(&self, names: &[String]) -> Vec<String> {
        let mut out = self.start_order(names);
        out.reverse();
        out
    }

    /// Units `name` is ordered after (`After=` on its side, `Before=` on theirs) for which
    /// `is_pending` says a start is in flight and not yet reached (a notify unit is reached
    /// at READY=1, a oneshot when it finished): the loop starts `name` once this is empty.
    /// Units not being started do not block (ordering only applies between jobs).
    pub fn start_blockers(&self, name: &str, is_pending: &dyn Fn(&str) -> bool) -> Vec<String> {
        get(&self.after, name)
            .filter(|n| is_pending(n))
            .cloned()
            .collect()
    }

    /// Units `name` is ordered before whose stop is still in flight: when stopping several
    /// units, the loop stops `name` once this is empty (reverse ordering).
    pub fn stop_blockers(&self, name: &str, is_stopping: &dyn Fn(&str) -> bool) -> Vec<String> {
        self.after
            .iter()
            .filter(|(n, preds)| preds.contains(name) && is_stopping(n))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Units that must stop (or restart) when `name` is stopped (or restarted) explicitly:
    /// those that `Requires=`, `BindsTo=` or are `PartOf=` it, transitively; in stop order.
    pub fn stop_propagation(&self, name: &str) -> Vec<String> {
        let mut seen = BTreeSet::new();
        let mut todo = VecDeque::from([name.to_string()]);
        while let Some(n) = todo.pop_front() {
            for m in get(&self.stopped_with, &n) {
                if m != name && seen.insert(m.clone()) {
                    todo.push_back(m.clone());
                }
            }
        }
        self.stop_order(&seen.into_iter().collect::<Vec<_>>())
    }

    /// Units that must stop when `name` becomes inactive for any reason, even on its own
    /// (`BindsTo=`), plus what their stop propagates to; in stop order.
    pub fn bound_by(&self, name: &str) -> Vec<String> {
        let mut seen = BTreeSet::new();
        for b in get(&self.bound_by, name) {
            if b != name {
                seen.insert(b.clone());
                seen.extend(self.stop_propagation(b));
            }
        }
        seen.remove(name);
        self.stop_order(&seen.into_iter().collect::<Vec<_>>())
    }

    /// Units that must stop when `name` starts (`Conflicts=`, either side).
    pub fn conflicts(&self, name: &str) -> Vec<String> {
        get(&self.conflicts, name).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unit::model::UnitSection;

    type Spec<'a> = (&'a str, fn(&mut UnitSection));

    fn set(specs: &[Spec<'_>]) -> BTreeMap<String, Arc<Unit>> {
        specs
            .iter()
            .map(|(name, f)| {
                let mut u = Unit {
                    name: name.to_string(),
                    path: format!("units/{name}"),
                    ..Default::default()
                };
                f(&mut u.unit);
                (name.to_string(), Arc::new(u))
            })
            .collect()
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn after_and_before_order_starts_and_reverse_stops() {
        let units = set(&[
            ("web.service", |u| {
                u.after = s(&["db.service", "network.target"])
            }),
            ("db.service", |_| {}),
            ("cache.service", |u| u.before = s(&["web.service"])),
            ("zz.service", |u| u.before = s(&["db.service"])),
        ]);
        let (g, errors) = Graph::build(&units);
        assert!(errors.is_empty(), "{errors:?}");
        let all = s(&["web.service", "db.service", "cache.service", "zz.service"]);
        assert_eq!(
            g.start_order(&all),
            s(&["cache.service", "zz.service", "db.service", "web.service"])
        );
        assert_eq!(
            g.stop_order(&all),
            s(&["web.service", "db.service", "zz.service", "cache.service"])
        );
        // Ordering holds through units not in the list: zz before db before web.
        assert_eq!(
            g.start_order(&s(&["web.service", "zz.service"])),
            s(&["zz.service", "web.service"])
        );
    }

    #[test]
    fn ordering_alone_pulls_nothing_in() {
        let units = set(&[
            ("web.service", |u| {
                u.after = s(&["db.service"]);
                u.wants = s(&["log.service"]);
            }),
            ("db.service", |_| {}),
            ("log.service", |u| u.requires = s(&["disk.service"])),
            ("disk.service", |_| {}),
        ]);
        let (g, _) = Graph::build(&units);
        assert_eq!(
            g.requirement_closure(&s(&["web.service"])),
            s(&["disk.service", "log.service", "web.service"])
        );
    }

    #[test]
    fn a_cycle_is_an_error_on_each_member_only() {
        let units = set(&[
            // a after b, b after c, c after a (said with Before= on a's side).
            ("a.service", |u| {
                u.after = s(&["b.service"]);
                u.before = s(&["c.service"]);
            }),
            ("b.service", |u| u.after = s(&["c.service"])),
            ("c.service", |_| {}),
            ("d.service", |u| u.after = s(&["a.service"])),
            ("self.service", |u| u.after = s(&["self.service"])),
        ]);
        let (g, errors) = Graph::build(&units);
        let names: Vec<&String> = errors.keys().collect();
        assert_eq!(
            names,
            ["a.service", "b.service", "c.service", "self.service"]
        );
        assert!(
            errors["b.service"].contains("a.service, b.service, c.service"),
            "{}",
            errors["b.service"]
        );
        // Cycle members still get a deterministic rank (last).
        assert_eq!(g.start_order(&s(&["d.service", "a.service"])).len(), 2);
    }

    #[test]
    fn missing_requirements_are_errors_but_soft_ones_and_targets_are_not() {
        let units = set(&[
            ("web.service", |u| {
                u.requires = s(&["db.service", "network-online.target"]);
                u.binds_to = s(&["vpn.service"]);
                u.wants = s(&["absent.service"]);
                u.after = s(&["absent.service", "nss-lookup.target"]);
                u.part_of = s(&["absent.service"]);
            }),
            ("ok.service", |u| u.requires = s(&["multi-user.target"])),
        ]);
        let (g, errors) = Graph::build(&units);
        assert_eq!(errors.len(), 1, "{errors:?}");
        let e = &errors["web.service"];
        assert!(e.contains("Requires=db.service: no such unit"), "{e}");
        assert!(e.contains("BindsTo=vpn.service"), "{e}");
        assert!(e.contains("units/web.service"), "{e}");
        assert!(!e.contains("absent") && !e.contains("target"), "{e}");
        assert!(g.start_blockers("web.service", &|_| true).is_empty());
    }

    #[test]
    fn start_blockers_are_pending_predecessors() {
        let units = set(&[
            ("web.service", |u| {
                u.after = s(&["db.service", "cache.service"])
            }),
            ("db.service", |_| {}),
            ("cache.service", |_| {}),
        ]);
        let (g, _) = Graph::build(&units);
        let pending = |n: &str| n == "db.service";
        assert_eq!(
            g.start_blockers("web.service", &pending),
            s(&["db.service"])
        );
        assert!(g.start_blockers("db.service", &|_| true).is_empty());
        assert_eq!(
            g.stop_blockers("db.service", &|n| n == "web.service"),
            s(&["web.service"])
        );
    }

    #[test]
    fn stops_propagate_to_requirers_binders_and_parts() {
        let units = set(&[
            ("db.service", |_| {}),
            ("app.service", |u| {
                u.requires = s(&["db.service"]);
                u.after = s(&["db.service"]);
            }),
            ("web.service", |u| {
                u.part_of = s(&["app.service"]);
                u.after = s(&["app.service"]);
            }),
            ("tunnel.service", |u| u.binds_to = s(&["db.service"])),
            ("fan.service", |u| u.wants = s(&["db.service"])),
            ("rival.service", |u| u.conflicts = s(&["db.service"])),
        ]);
        let (g, _) = Graph::build(&units);
        assert_eq!(
            g.stop_propagation("db.service"),
            s(&["web.service", "tunnel.service", "app.service"])
        );
        assert_eq!(g.bound_by("db.service"), s(&["tunnel.service"]));
        assert!(g.stop_propagation("fan.service").is_empty());
        assert_eq!(g.conflicts("db.service"), s(&["rival.service"]));
        assert_eq!(g.conflicts("rival.service"), s(&["db.service"]));
    }

    #[test]
    fn a_long_chain_does_not_overflow() {
        let mut units = BTreeMap::new();
        for i in 0..20_000 {
            let mut u = Unit::default();
            if i > 0 {
                u.unit.after = vec![format!("u{:05}.service", i - 1)];
            }
            units.insert(format!("u{i:05}.service"), Arc::new(u));
        }
        let (g, errors) = Graph::build(&units);
        assert!(errors.is_empty());
        let order = g.start_order(&s(&["u19999.service", "u00000.service"]));
        assert_eq!(order, s(&["u00000.service", "u19999.service"]));
    }

    #[test]
    fn hooks_are_known_and_missing_ones_are_warnings() {
        let units = set(&[
            ("web.service", |u| {
                u.on_failure = s(&["alert.service", "gone.service"]);
                u.on_success = s(&["notify@web.service.service"]);
            }),
            ("alert.service", |_| {}),
        ]);
        let (_, errors) = Graph::build(&units);
        assert!(
            errors.is_empty(),
            "a missing hook is not an error: {errors:?}"
        );
        assert_eq!(
            hook_units(&units).into_iter().collect::<Vec<_>>(),
            s(&["alert.service"])
        );
        let missing = missing_hooks(&units);
        assert_eq!(missing.len(), 2, "{missing:?}");
        assert_eq!(missing[0].key, "OnFailure");
        assert_eq!(missing[0].other, "gone.service");
        assert!(
            missing[0].message.contains("units/web.service"),
            "{missing:?}"
        );
        assert_eq!(missing[1].key, "OnSuccess");
        assert!(missing[1].message.contains("template"), "{missing:?}");
    }
}

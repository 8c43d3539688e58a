//! Deciding what a new unit set means for what runs: pure, so every case (added, removed,
//! changed, unchanged, held by an operator, left running by a previous daemon) is tested
//! without a process.
//!
//! Input: the parsed snapshot (unit name -> content hash, whether it loaded), what the
//! daemon runs now (name -> applied hash, whether it has a loadable version, the hash that
//! was rolled back, whether an operator holds it stopped), and what a previous daemon left
//! (name -> recorded hash, operator stop, main process still alive). The caller reads the
//! clock and `/proc` (is a recorded pid still the same process?) before calling; nothing
//! here does. Output: a [`Plan`], one [`Action`] per unit, which `daemon::apply` carries out
//! in [`Plan::perform_order`].

use std::collections::BTreeMap;

use crate::deps::Graph;

/// A unit of the new snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Candidate {
    /// Effective content hash of the new version.
    pub hash: String,
    /// Whether it parsed without errors (a unit that does not load keeps what runs).
    pub loads: bool,
}

/// A unit the daemon knows now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Current {
    /// Content hash of the version it runs (or would run).
    pub hash: Option<String>,
    /// Whether it has a loadable version at all (a unit that never loaded has none).
    pub loaded: bool,
    /// Content hash of a version that failed on trial and was rolled back.
    pub failed_hash: Option<String>,
    /// An operator `stop` holds it down until `gitproc start`.
    pub held_stopped: bool,
}

/// What a previous daemon recorded of a unit (`state.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Recorded {
    pub hash: Option<String>,
    pub held_stopped: bool,
    /// Its main process, `(pid, start time)`, when that process is still running (the
    /// caller checked pid *and* start time: a reused pid is not it).
    pub alive_main: Option<(i32, u64)>,
    /// The version the previous daemon rolled back (it runs the last good one instead).
    pub failed_hash: Option<String>,
}

/// What to do with one unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Gone from git and never loaded: nothing runs, forget it now.
    Forget,
    /// Gone from git: stop it, forget it once stopped.
    Stop,
    /// Its new version does not load: the running version stays, with the error shown.
    Broken,
    /// Same content as what runs: do not touch it (its pid must not change). Git is back
    /// at the running version, so a rolled-back failure is history.
    Keep,
    /// The version that failed and was rolled back: keep the last good one running until
    /// a commit changes this unit again.
    KeepRolledBack,
    /// Take the new version but do not start it: an operator holds it stopped.
    Hold,
    /// A first loadable version (added, or only ever broken before): start it.
    Start,
    /// Changed content: take the new version and restart.
    Restart,
    /// A process the previous daemon left running: adopt it; stop it if an operator's
    /// stop had not finished, restart it if its unit changed meanwhile.
    Adopt {
        pid: i32,
        start_time: u64,
        changed: bool,
        held_stopped: bool,
    },
    /// Removed from git while no daemon ran, its process still running: adopt it under a
    /// placeholder unit so it can be stopped (never left running unsupervised).
    StopLeftover { pid: i32, start_time: u64 },
}

impl Action {
    /// Starts, restarts or adopts: performed in dependency order, after the stops.
    pub(crate) fn brings_up(&self) -> bool {
        matches!(self, Action::Start | Action::Restart | Action::Adopt { .. })
    }
}

/// The decisions for one snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Units gone from git first (by name), then the snapshot's units (by name), then
    /// leftovers of a previous daemon (by name): the order the bookkeeping is done in.
    pub actions: Vec<(String, Action)>,
    /// Units whose applied hash equals the new one (`source::diff`'s unchanged).
    pub unchanged: usize,
}

/// Decides, for every unit in `snapshot`, `current` or `restored`, what to do.
/// `restored` is consulted only for units the daemon does not know yet.
pub(crate) fn reconcile(
    snapshot: &BTreeMap<String, Candidate>,
    current: &BTreeMap<String, Current>,
    restored: &BTreeMap<String, Recorded>,
) -> Plan {
    // Which units changed, by effective content: the pure diff over content hashes.
    let applied: BTreeMap<String, String> = current
        .iter()
        .filter_map(|(name, c)| c.hash.clone().map(|h| (name.clone(), h)))
        .collect();
    let candidate: BTreeMap<String, String> = snapshot
        .iter()
        .map(|(name, c)| (name.clone(), c.hash.clone()))
        .collect();
    let unchanged = crate::source::diff(&applied, &candidate).unchanged;

    let mut actions = Vec::new();
    for (name, now) in current {
        if !snapshot.contains_key(name) {
            let action = if now.loaded {
                Action::Stop
            } else {
                Action::Forget
            };
            actions.push((name.clone(), action));
        }
    }
    for (name, new) in snapshot {
        let action = if !new.loads {
            Action::Broken
        } else {
            match current.get(name) {
                Some(now) if now.loaded => {
                    if unchanged.contains(name) {
                        Action::Keep
                    } else if now.failed_hash.as_deref() == Some(new.hash.as_str()) {
                        Action::KeepRolledBack
                    } else if now.held_stopped {
                        Action::Hold
                    } else {
                        Action::Restart
                    }
                }
                Some(now) if now.held_stopped => Action::Hold,
                Some(_) => Action::Start,
                None => bring_back(restored.get(name), &new.hash),
            }
        };
        actions.push((name.clone(), action));
    }
    for (name, old) in restored {
        if current.contains_key(name) || snapshot.contains_key(name) {
            continue;
        }
        if let Some((pid, start_time)) = old.alive_main {
            actions.push((name.clone(), Action::StopLeftover { pid, start_time }));
        }
    }
    Plan {
        actions,
        unchanged: unchanged.len(),
    }
}

/// A unit new to this daemon: adopt what the previous daemon left running, else start it,
/// unless an operator stopped it. A process still running under an operator stop (the old
/// daemon died mid-stop) is adopted so that it can be stopped: never left running, never
/// started twice.
fn bring_back(old: Option<&Recorded>, hash: &str) -> Action {
    let Some(old) = old else {
        return Action::Start;
    };
    if let Some((pid, start_time)) = old.alive_main {
        // Git still carries the version that was rolled back: the adopted process runs
        // the last good one and stays, as it would have under the previous daemon.
        let rolled_back = old.failed_hash.as_deref() == Some(hash);
        return Action::Adopt {
            pid,
            start_time,
            changed: old.hash.as_deref() != Some(hash) && !rolled_back,
            held_stopped: old.held_stopped,
        };
    }
    if old.held_stopped {
        Action::Hold
    } else {
        Action::Start
    }
}

impl Plan {
    /// The order to carry the actions out in: stops of units gone from git (by name), then
    /// leftovers to adopt and stop (by name), then starts, restarts and adoptions in the
    /// graph's start order, leaving out the starts and restarts of units `skip` names (a
    /// dependency error; their adoptions stay: a running process is never left unsupervised).
    /// Forget, Broken, Keep, KeepRolledBack and Hold need no step after the bookkeeping.
    pub(crate) fn perform_order(
        &self,
        graph: &Graph,
        skip: &dyn Fn(&str) -> bool,
    ) -> Vec<(String, Action)> {
        let mut steps: Vec<(String, Action)> = self
            .actions
            .iter()
            .filter(|(_, a)| *a == Action::Stop)
            .cloned()
            .collect();
        steps.extend(
            self.actions
                .iter()
                .filter(|(_, a)| matches!(a, Action::StopLeftover { .. }))
                .cloned(),
        );
        let up: BTreeMap<&str, Action> = self
            .actions
            .iter()
            .filter(|(_, a)| a.brings_up())
            .map(|(n, a)| (n.as_str(), *a))
            .collect();
        let names: Vec<String> = up.keys().map(|n| n.to_string()).collect();
        for name in graph.start_order(&names) {
            let Some(action) = up.get(name.as_str()) else {
                continue;
            };
            // A dependency error blocks starts, never an adoption: the process runs
            // already, and skipping it would leave it unsupervised and let a later start
            // run a second copy (found by the whole-core property test, `testing`).
            if skip(&name) && !matches!(action, Action::Adopt { .. }) {
                continue;
            }
            steps.push((name, *action));
        }
        steps
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::unit::model::Unit;

    fn snap(units: &[(&str, &str, bool)]) -> BTreeMap<String, Candidate> {
        units
            .iter()
            .map(|(n, h, loads)| {
                (
                    n.to_string(),
                    Candidate {
                        hash: h.to_string(),
                        loads: *loads,
                    },
                )
            })
            .collect()
    }

    fn running(units: &[(&str, &str)]) -> BTreeMap<String, Current> {
        units
            .iter()
            .map(|(n, h)| {
                (
                    n.to_string(),
                    Current {
                        hash: Some(h.to_string()),
                        loaded: true,
                        ..Current::default()
                    },
                )
            })
            .collect()
    }

    fn names(plan: &[(String, Action)]) -> Vec<(&str, Action)> {
        plan.iter().map(|(n, a)| (n.as_str(), *a)).collect()
    }

    #[test]
    fn added_removed_changed_unchanged() {
        let current = running(&[("a", "1"), ("b", "2"), ("c", "3")]);
        let snapshot = snap(&[("a", "1", true), ("b", "2x", true), ("d", "4", true)]);
        let plan = reconcile(&snapshot, &current, &BTreeMap::new());
        assert_eq!(
            names(&plan.actions),
            vec![
                ("c", Action::Stop),
                ("a", Action::Keep),
                ("b", Action::Restart),
                ("d", Action::Start),
            ]
        );
        assert_eq!(plan.unchanged, 1);
    }

    #[test]
    fn a_broken_version_keeps_what_runs_and_a_unit_that_never_loaded_is_forgotten() {
        let mut current = running(&[("a", "1")]);
        current.insert("never".into(), Current::default());
        let snapshot = snap(&[("a", "1x", false), ("b", "2", false)]);
        let plan = reconcile(&snapshot, &current, &BTreeMap::new());
        assert_eq!(
            names(&plan.actions),
            vec![
                ("never", Action::Forget),
                ("a", Action::Broken),
                ("b", Action::Broken),
            ]
        );
    }

    #[test]
    fn a_unit_that_only_ever_failed_to_load_starts_with_its_first_good_version() {
        let current = BTreeMap::from([("a".to_string(), Current::default())]);
        let plan = reconcile(&snap(&[("a", "1", true)]), &current, &BTreeMap::new());
        assert_eq!(names(&plan.actions), vec![("a", Action::Start)]);
    }

    #[test]
    fn an_operator_stopped_unit_is_held_not_restarted_or_started() {
        let mut current = running(&[("a", "1")]);
        current.get_mut("a").unwrap().held_stopped = true;
        current.insert(
            "b".into(),
            Current {
                held_stopped: true,
                ..Current::default()
            },
        );
        let plan = reconcile(
            &snap(&[("a", "1x", true), ("b", "2", true)]),
            &current,
            &BTreeMap::new(),
        );
        assert_eq!(
            names(&plan.actions),
            vec![("a", Action::Hold), ("b", Action::Hold)]
        );
        // A held unit whose content did not change is simply kept.
        let plan = reconcile(
            &snap(&[("a", "1", true), ("b", "2", true)]),
            &current,
            &BTreeMap::new(),
        );
        assert_eq!(
            names(&plan.actions),
            vec![("a", Action::Keep), ("b", Action::Hold)]
        );
    }

    #[test]
    fn the_rolled_back_version_is_not_tried_again() {
        let mut current = running(&[("a", "good")]);
        current.get_mut("a").unwrap().failed_hash = Some("bad".into());
        let plan = reconcile(&snap(&[("a", "bad", true)]), &current, &BTreeMap::new());
        assert_eq!(names(&plan.actions), vec![("a", Action::KeepRolledBack)]);
        let plan = reconcile(&snap(&[("a", "newer", true)]), &current, &BTreeMap::new());
        assert_eq!(names(&plan.actions), vec![("a", Action::Restart)]);
    }

    #[test]
    fn a_recorded_live_pid_is_adopted() {
        let restored = BTreeMap::from([
            (
                "same".to_string(),
                Recorded {
                    hash: Some("1".into()),
                    held_stopped: false,
                    alive_main: Some((100, 7)),
                    ..Recorded::default()
                },
            ),
            (
                "changed".to_string(),
                Recorded {
                    hash: Some("old".into()),
                    held_stopped: false,
                    alive_main: Some((101, 8)),
                    ..Recorded::default()
                },
            ),
            (
                "mid-stop".to_string(),
                Recorded {
                    hash: Some("3".into()),
                    held_stopped: true,
                    alive_main: Some((102, 9)),
                    ..Recorded::default()
                },
            ),
            (
                "dead".to_string(),
                Recorded {
                    hash: Some("4".into()),
                    held_stopped: false,
                    alive_main: None,
                    ..Recorded::default()
                },
            ),
            (
                "stopped".to_string(),
                Recorded {
                    hash: Some("5".into()),
                    held_stopped: true,
                    alive_main: None,
                    ..Recorded::default()
                },
            ),
            (
                "gone".to_string(),
                Recorded {
                    hash: Some("6".into()),
                    held_stopped: false,
                    alive_main: Some((103, 10)),
                    ..Recorded::default()
                },
            ),
            ("gone-dead".to_string(), Recorded::default()),
        ]);
        let snapshot = snap(&[
            ("same", "1", true),
            ("changed", "2", true),
            ("mid-stop", "3", true),
            ("dead", "4", true),
            ("stopped", "5", true),
        ]);
        let plan = reconcile(&snapshot, &BTreeMap::new(), &restored);
        let adopt = |pid, start_time, changed, held_stopped| Action::Adopt {
            pid,
            start_time,
            changed,
            held_stopped,
        };
        assert_eq!(
            names(&plan.actions),
            vec![
                ("changed", adopt(101, 8, true, false)),
                ("dead", Action::Start),
                ("mid-stop", adopt(102, 9, false, true)),
                ("same", adopt(100, 7, false, false)),
                ("stopped", Action::Hold),
                (
                    "gone",
                    Action::StopLeftover {
                        pid: 103,
                        start_time: 10
                    }
                ),
            ]
        );
    }

    #[test]
    fn a_rolled_back_version_still_in_git_is_adopted_unchanged_after_a_restart() {
        let restored = BTreeMap::from([(
            "a".to_string(),
            Recorded {
                hash: Some("good".into()),
                alive_main: Some((100, 7)),
                failed_hash: Some("bad".into()),
                ..Recorded::default()
            },
        )]);
        let plan = reconcile(&snap(&[("a", "bad", true)]), &BTreeMap::new(), &restored);
        assert_eq!(
            names(&plan.actions),
            vec![(
                "a",
                Action::Adopt {
                    pid: 100,
                    start_time: 7,
                    changed: false,
                    held_stopped: false
                }
            )]
        );
    }

    #[test]
    fn the_restored_state_is_ignored_for_units_already_known() {
        let restored = BTreeMap::from([(
            "a".to_string(),
            Recorded {
                hash: Some("1".into()),
                held_stopped: false,
                alive_main: Some((100, 7)),
                ..Recorded::default()
            },
        )]);
        let plan = reconcile(
            &snap(&[("a", "1", true)]),
            &running(&[("a", "1")]),
            &restored,
        );
        assert_eq!(names(&plan.actions), vec![("a", Action::Keep)]);
    }

    #[test]
    fn performed_stops_first_then_leftovers_then_starts_in_dependency_order() {
        let unit = |name: &str, after: &[&str]| {
            let mut u = Unit {
                name: name.to_string(),
                ..Unit::default()
            };
            u.unit.after = after.iter().map(|s| s.to_string()).collect();
            (name.to_string(), Arc::new(u))
        };
        let units = BTreeMap::from([
            unit("a.service", &["b.service"]),
            unit("b.service", &[]),
            unit("c.service", &[]),
        ]);
        let (graph, errors) = Graph::build(&units);
        assert!(errors.is_empty());
        let plan = Plan {
            actions: vec![
                ("old.service".into(), Action::Stop),
                ("a.service".into(), Action::Start),
                ("b.service".into(), Action::Restart),
                ("c.service".into(), Action::Start),
                ("k.service".into(), Action::Keep),
                (
                    "left.service".into(),
                    Action::StopLeftover {
                        pid: 5,
                        start_time: 6,
                    },
                ),
            ],
            unchanged: 1,
        };
        let steps = plan.perform_order(&graph, &|n| n == "c.service");
        assert_eq!(
            names(&steps),
            vec![
                ("old.service", Action::Stop),
                (
                    "left.service",
                    Action::StopLeftover {
                        pid: 5,
                        start_time: 6
                    }
                ),
                ("b.service", Action::Restart),
                ("a.service", Action::Start),
            ]
        );
    }

    #[test]
    fn a_dependency_error_never_skips_an_adoption() {
        let units = BTreeMap::from([(
            "a.service".to_string(),
            Arc::new(Unit {
                name: "a.service".into(),
                ..Unit::default()
            }),
        )]);
        let (graph, _) = Graph::build(&units);
        let adopt = Action::Adopt {
            pid: 7,
            start_time: 8,
            changed: false,
            held_stopped: false,
        };
        let plan = Plan {
            actions: vec![("a.service".into(), adopt)],
            unchanged: 0,
        };
        let steps = plan.perform_order(&graph, &|_| true);
        assert_eq!(names(&steps), vec![("a.service", adopt)]);
    }
}

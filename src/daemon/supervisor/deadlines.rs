//! The loop's index of unit deadlines: when each service's machine next wants
//! [`Event::Timer`](crate::service::Event::Timer), and which units are stopping, so that a
//! wakeup finds the earliest deadline and the due units without a pass over every unit.
//!
//! A unit's entry changes only when its machine does: [`Supervisor::feed`] and adoption
//! re-index that one unit; `apply` (which reaches the units through `units_mut`) marks the
//! whole index stale and the next wakeup rebuilds it. Debug builds check the index against
//! a full scan on every wakeup, so a path that changes a machine without re-indexing it
//! fails the tests instead of leaving a deadline unfired.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use super::Supervisor;
use crate::daemon::managed::Managed;
use crate::service::ActiveState;

/// Deadlines by time and by unit, and the set of units in `deactivating`.
#[derive(Debug, Default)]
pub(super) struct Deadlines {
    by_time: BTreeSet<(Instant, String)>,
    at: HashMap<String, Instant>,
    stopping: BTreeSet<String>,
    /// Rebuild from every unit before the next read.
    stale: bool,
}

/// What the index records of one unit.
fn entry(m: &Managed) -> (Option<Instant>, bool) {
    match &m.service {
        Some(svc) => (
            svc.next_deadline(),
            svc.status().active_state == ActiveState::Deactivating,
        ),
        None => (None, false),
    }
}

impl Deadlines {
    /// Records `name`'s deadline (`None`: it has none) and whether it is stopping.
    fn set(&mut self, name: &str, at: Option<Instant>, stopping: bool) {
        match (self.at.get(name).copied(), at) {
            (Some(old), Some(new)) if old == new => {}
            (old, new) => {
                if let Some(old) = old {
                    self.by_time.remove(&(old, name.to_string()));
                    self.at.remove(name);
                }
                if let Some(new) = new {
                    self.by_time.insert((new, name.to_string()));
                    self.at.insert(name.to_string(), new);
                }
            }
        }
        if stopping {
            if !self.stopping.contains(name) {
                self.stopping.insert(name.to_string());
            }
        } else {
            self.stopping.remove(name);
        }
    }

    fn rebuild(&mut self, units: &BTreeMap<String, Managed>) {
        self.by_time.clear();
        self.at.clear();
        self.stopping.clear();
        for (name, m) in units {
            let (at, stopping) = entry(m);
            self.set(name, at, stopping);
        }
        self.stale = false;
    }

    pub(super) fn mark_stale(&mut self) {
        self.stale = true;
    }

    /// The earliest deadline of any unit.
    pub(super) fn first(&self) -> Option<Instant> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// Units whose deadline is at or before `now`, earliest first.
    pub(super) fn due(&self, now: Instant) -> Vec<String> {
        self.by_time
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, name)| name.clone())
            .collect()
    }

    pub(super) fn any_stopping(&self) -> bool {
        !self.stopping.is_empty()
    }
}

impl Supervisor {
    /// Re-indexes one unit after its machine changed (or the unit went away).
    pub(super) fn reindex(&mut self, name: &str) {
        let (at, stopping) = self.units.get(name).map_or((None, false), entry);
        self.deadlines.set(name, at, stopping);
    }

    /// Brings the index up to date when `apply` marked it stale; in debug builds also
    /// checks it against every unit.
    pub(super) fn refresh_deadlines(&mut self) {
        if self.deadlines.stale {
            self.deadlines.rebuild(&self.units);
        }
        #[cfg(debug_assertions)]
        for (name, m) in &self.units {
            let (at, stopping) = entry(m);
            assert_eq!(
                (
                    self.deadlines.at.get(name).copied(),
                    self.deadlines.stopping.contains(name)
                ),
                (at, stopping),
                "deadline index out of date for {name}: a path changed its machine without reindex()"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_first_deadline_and_the_due_units_come_in_time_order() {
        let t0 = Instant::now();
        let at = |ms| Some(t0 + Duration::from_millis(ms));
        let mut d = Deadlines::default();
        d.set("b", at(20), false);
        d.set("a", at(10), false);
        d.set("c", at(30), true);
        assert_eq!(d.first(), at(10));
        assert_eq!(d.due(t0 + Duration::from_millis(20)), ["a", "b"]);
        assert!(d.any_stopping());
        // Moving and clearing entries leaves no stale copy behind.
        d.set("a", at(40), false);
        d.set("b", None, false);
        d.set("c", at(30), false);
        assert_eq!(d.first(), at(30));
        assert_eq!(d.due(t0 + Duration::from_millis(100)), ["c", "a"]);
        assert_eq!(d.by_time.len(), 2);
        assert!(!d.any_stopping());
    }
}

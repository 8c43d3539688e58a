//! The dependency graph between units (pure).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::unit::model::Unit;

/// The requirement and ordering relations between the loaded units.
#[derive(Debug, Clone, Default)]
pub struct Graph {}

impl Graph {
    /// Builds the graph; the map holds one error per unit that must not be started
    /// (ordering cycle, missing `Requires=`/`BindsTo=` target).
    pub fn build(_units: &BTreeMap<String, Arc<Unit>>) -> (Graph, BTreeMap<String, String>) {
        todo!()
    }
    /// `names` plus every unit they pull in (Requires=, Wants=, BindsTo=), transitively.
    pub fn requirement_closure(&self, _names: &[String]) -> Vec<String> {
        todo!()
    }
    /// `names` sorted so that each comes after what it is ordered after.
    pub fn start_order(&self, _names: &[String]) -> Vec<String> {
        todo!()
    }
    /// The reverse of [`Graph::start_order`].
    pub fn stop_order(&self, _names: &[String]) -> Vec<String> {
        todo!()
    }
    /// Units `name` is ordered after that still have a start in flight.
    pub fn start_blockers(&self, _name: &str, _is_pending: &dyn Fn(&str) -> bool) -> Vec<String> {
        todo!()
    }
    /// Units that must stop (or restart) when `name` is stopped (or restarted) explicitly.
    pub fn stop_propagation(&self, _name: &str) -> Vec<String> {
        todo!()
    }
    /// Units that must stop when `name` becomes inactive for any reason (BindsTo=).
    pub fn bound_by(&self, _name: &str) -> Vec<String> {
        todo!()
    }
    /// Units that must stop when `name` starts (Conflicts=, both directions).
    pub fn conflicts(&self, _name: &str) -> Vec<String> {
        todo!()
    }
}

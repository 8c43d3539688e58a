//! The state machine of one service.

use std::sync::Arc;
use std::time::Instant;

use super::event::{Effect, Event, ProcessRole, Status};
use super::state::ServiceResult;
use crate::unit::model::Unit;

/// One service: its unit and where it is in its lifecycle.
#[derive(Debug)]
pub struct Service {
    unit: Arc<Unit>,
}

impl Service {
    pub fn new(unit: Arc<Unit>) -> Service {
        Service { unit }
    }
    /// The newest unit given (what the next start will use).
    pub fn unit(&self) -> &Arc<Unit> {
        &self.unit
    }
    /// A new version of the unit; takes effect at the next start.
    pub fn set_unit(&mut self, unit: Arc<Unit>) {
        self.unit = unit;
    }
    pub fn on_event(&mut self, _event: Event, _now: Instant) -> Vec<Effect> {
        todo!()
    }
    pub fn next_deadline(&self) -> Option<Instant> {
        todo!()
    }
    pub fn status(&self) -> Status {
        todo!()
    }
    pub fn role_of(&self, _pid: i32) -> Option<ProcessRole> {
        todo!()
    }
    pub fn can_reload(&self) -> bool {
        todo!()
    }
    pub fn adopt(&mut self, _pid: i32, _now: Instant) -> Vec<Effect> {
        todo!()
    }
    pub fn restore(&mut self, _n_restarts: u32, _result: ServiceResult) {
        todo!()
    }
}

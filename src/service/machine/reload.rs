//! `ExecReload=` (operator reload) and the way back from `reload` to `running`/`exited`.
//!
//! A `Type=notify` service may also reload on its own (RELOADING=1 ... READY=1); that is
//! in [`super::notifications`], ending here too.

use std::time::Instant;

use super::Service;
use crate::service::event::{Effect, ExecKind};
use crate::service::state::SubState;

impl Service {
    pub(super) fn op_reload(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        if !self.can_reload() {
            return;
        }
        let cmds = self.svc().exec_reload.clone();
        self.set_state(SubState::Reload, now, fx);
        self.run_commands(ExecKind::Reload, cmds, fx);
    }

    /// The reload is over (done, failed or timed out): back to `running` with a main
    /// process, else `exited`. The up time (for the backoff reset) carries on.
    pub(super) fn back_from_reload(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        self.run.notify_reloading = false;
        let back = if self.run.main_pid.is_some() || self.run.running_without_main {
            SubState::Running
        } else {
            SubState::Exited
        };
        let since = self.run.running_since;
        self.set_state(back, now, fx);
        self.run.running_since = since.or(Some(now));
    }
}

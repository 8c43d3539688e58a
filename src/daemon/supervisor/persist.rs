//! The snapshot of what the daemon knows that git does not, handed to the state writer.

use super::{Supervisor, unix_of};
use crate::state::format::{DaemonState, PersistedState, UnitState};
use crate::state::identity::ProcessIdentity;

impl Supervisor {
    pub(super) fn persisted(&self) -> PersistedState {
        let mut state = PersistedState {
            daemon: DaemonState {
                applied_commit: self.source.applied_commit.clone(),
                fetched_commit: self.source.fetched_tip.clone(),
                verified_commit: self.source.verified_commit.clone(),
                poll_interval_s: Some(self.source.poll_interval.as_secs()),
                next_check: self.source.next_check.map(unix_of),
                last_check: self.source.last_check.map(unix_of),
                freeze: self.rollout.freeze.clone(),
                pending_commit: self.rollout.pending_commit().map(|(c, _)| c),
                pending_first_seen_ms: self.rollout.pending_commit().map(|(_, at)| at),
                applied_digests: self.rollout.history.clone(),
            },
            timers: self.persisted_timers(),
            sockets: self.persisted_sockets(),
            ..PersistedState::default()
        };
        for (name, m) in &self.units {
            let mut unit = UnitState {
                operator_override: m.operator_override.clone(),
                content_hash: m.hash.clone(),
                commit: m.commit.clone(),
                last_good_hash: m.last_good.as_ref().map(|g| g.hash.clone()),
                last_good_commit: m.last_good.as_ref().and_then(|g| g.commit.clone()),
                failed_hash: m.failed_hash.clone(),
                failed_commit: m.failed_commit.clone(),
                ..UnitState::default()
            };
            if let Some(svc) = &m.service {
                let st = svc.status();
                unit.active_state = st.active_state.to_string();
                unit.sub_state = st.sub_state.to_string();
                unit.result = st.result.to_string();
                unit.main_pid = st.main_pid;
                unit.main_pid_start_time = match (st.main_pid, m.main_start_time) {
                    (Some(pid), Some((p, t))) if p == pid => Some(t),
                    // A main pid from PIDFile= or MAINPID=: not one we spawned, so its
                    // start time is read now (a procfs read) so the next daemon adopts it.
                    (Some(pid), _) => ProcessIdentity::read(pid).map(|id| id.start_time),
                    _ => None,
                };
                unit.n_restarts = st.n_restarts;
                unit.exec_main_status = st.exec_main_status;
            }
            state.units.insert(name.clone(), unit);
        }
        state
    }
}

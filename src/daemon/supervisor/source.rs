//! The source side of the loop: asking the worker to check git now, and taking in what its
//! updates bring (the check's facts for `status`, a new unit set to apply).

use std::time::Instant;

use super::Supervisor;
use crate::control::protocol::{Reply, exit};
use crate::daemon::worker::{SourceUpdate, WorkerCommand};
use crate::perf::Op;
use crate::runtime::sd_notify::sd_notify;

impl Supervisor {
    pub(super) fn request_check(&mut self, token: Option<u64>) {
        if self.worker.send(WorkerCommand::CheckNow { token }).is_err() {
            tracing::error!("the source worker is gone; git updates stop until restart");
        }
    }

    pub(super) fn on_source_update(&mut self, update: SourceUpdate) {
        self.source.last_check = Some(update.checked_at);
        self.source.next_check = update.next_check;
        // Only what the state file keeps makes it dirty: an unchanged poll writes nothing.
        if self.source.poll_interval.as_secs() != update.poll_interval.as_secs() {
            self.dirty = true;
        }
        self.source.poll_interval = update.poll_interval;
        if update.tip.is_some() && update.tip != self.source.fetched_tip {
            self.source.fetched_tip = update.tip.clone();
            self.dirty = true;
        }
        self.source.error = update.error.clone();
        let mut summary = serde_json::json!({
            "commit": self.source.applied_commit,
            "changed": false,
        });
        if let Some(snapshot) = update.snapshot
            && !self.shutting_down
        {
            self.source.verified_commit = snapshot.commit.clone();
            self.perf.record(Op::Fetch, snapshot.fetch_time);
            self.perf.record(Op::Parse, snapshot.parse_time);
            if let Some(applied) = self.offer(snapshot) {
                summary = applied;
            }
        }
        // What holds a fetched commit back, whether it came with this check or before.
        summary["pending"] = self.pending_json();
        summary["frozen"] = self.freeze_json();
        self.note_check(update.checked_at, update.error.is_some());
        if let Some(error) = &update.error {
            summary["error"] = serde_json::Value::String(error.clone());
        }
        if let Some(token) = update.token
            && let Some(reply) = self.syncs.remove(&token)
        {
            let _ = reply.send(match &update.error {
                Some(error) => Reply::partial(exit::FAILURE, error.clone(), summary),
                None => Reply::ok(summary),
            });
        }
    }

    /// Applies a unit set now (the rollout gate has already let it through).
    pub(super) fn apply_now(
        &mut self,
        snapshot: crate::daemon::worker::Snapshot,
    ) -> serde_json::Value {
        let started = Instant::now();
        let summary = crate::daemon::apply::apply(self, snapshot);
        self.perf.record(Op::Apply, started.elapsed());
        if !self.first_applied {
            self.first_applied = true;
            sd_notify("READY=1");
        }
        summary
    }

    pub(super) fn source_commit(&self) -> Option<String> {
        self.source.applied_commit.clone()
    }

    pub(in crate::daemon) fn set_applied(
        &mut self,
        commit: Option<String>,
        subject: Option<String>,
        time: Option<i64>,
    ) {
        self.source.applied_commit = commit;
        self.source.subject = subject;
        self.source.commit_time = time;
        self.dirty = true;
    }
}

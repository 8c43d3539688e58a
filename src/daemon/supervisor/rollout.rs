//! Staged rollouts and freeze in the loop: a fetched commit waits here, with its deadline,
//! until this host's wave is due ([`crate::rollout::plan`] decides, purely) and the host is
//! not frozen; then it is applied. Nothing here blocks: the deadline is one more term of
//! the select timeout, and the freeze is made durable through the state writer.

use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::Sender;

use super::{Supervisor, unix_now};
use crate::control::protocol::Reply;
use crate::daemon::worker::Snapshot;
use crate::rollout::{Facts, Plan, Reason};
use crate::state::format::{Freeze, PersistedState};

/// What the loop keeps about rollouts and the freeze.
#[derive(Default)]
pub(super) struct RolloutState {
    /// The newest fetched commit not applied yet.
    pending: Option<Pending>,
    pub(super) freeze: Option<Freeze>,
    /// Digests of the unit sets applied last (newest last).
    pub(super) history: Vec<String>,
    /// The pending commit a previous daemon had, and when it first saw it.
    restored_pending: Option<(String, i64)>,
}

struct Pending {
    snapshot: Snapshot,
    first_seen_ms: i64,
    /// `None` when the policy is invalid: held until a newer commit.
    plan: Option<Plan>,
    policy_error: Option<String>,
}

impl RolloutState {
    pub(super) fn restore(state: Option<&PersistedState>) -> RolloutState {
        let Some(d) = state.map(|s| &s.daemon) else {
            return RolloutState::default();
        };
        RolloutState {
            pending: None,
            freeze: d.freeze.clone(),
            history: d.applied_digests.clone(),
            restored_pending: d.pending_commit.clone().zip(d.pending_first_seen_ms),
        }
    }

    pub(super) fn pending_commit(&self) -> Option<(String, i64)> {
        match &self.pending {
            Some(p) => p.snapshot.commit.clone().map(|c| (c, p.first_seen_ms)),
            None => self.restored_pending.clone(),
        }
    }

    /// When the pending commit is due (never while frozen or halted).
    pub(super) fn deadline(&self, now: Instant) -> Option<Instant> {
        if self.freeze.is_some() {
            return None;
        }
        let at = self.pending.as_ref()?.plan.as_ref()?.apply_at_ms?;
        let wait = at.saturating_sub(now_ms());
        Some(
            crate::sys::time::deadline(now, Duration::from_millis(wait.max(0) as u64))
                .unwrap_or(now),
        )
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Supervisor {
    /// A new unit set from the worker: applied now (the baseline a restart comes back on),
    /// or held as pending until its wave is due and the host is not frozen. Returns the
    /// apply summary when it was applied.
    pub(super) fn offer(&mut self, snapshot: Snapshot) -> Option<serde_json::Value> {
        let restored_applied = self
            .restored
            .as_ref()
            .and_then(|r| r.daemon.applied_commit.clone());
        let baseline = snapshot.baseline
            || (!self.first_applied
                && snapshot.commit.is_some()
                && snapshot.commit == restored_applied);
        if baseline {
            return Some(self.apply_snapshot(snapshot));
        }
        let now = now_ms();
        let commit = snapshot.commit.clone();
        let first_seen_ms = match (&self.rollout.pending, &self.rollout.restored_pending) {
            (Some(p), _) if p.snapshot.commit == commit => p.first_seen_ms,
            (_, Some((c, at))) if Some(c) == commit.as_ref() => *at,
            _ => now,
        };
        let ran_before = self.rollout.history.contains(&snapshot.digest);
        let (policy, policy_error) = match &snapshot.policy {
            None => (None, None),
            Some(Ok(p)) => (Some(p), None),
            Some(Err(e)) => (None, Some(e.clone())),
        };
        let facts = Facts {
            policy,
            host: &self.settings.host.hostname,
            committer_ms: snapshot.committer_time.map(|s| s.saturating_mul(1000)),
            first_seen_ms,
            ran_before,
            nothing_applied: !self.first_applied,
        };
        let plan = match &policy_error {
            // A broken policy never deploys everywhere at once: held, except a revert.
            Some(_) if !ran_before => None,
            _ => Some(crate::rollout::plan(&facts)),
        };
        let short = commit
            .as_deref()
            .map_or("the directory", short_id)
            .to_string();
        match (&plan, &policy_error) {
            (None, Some(err)) => tracing::error!(
                "commit {short} held: its rollout policy is invalid: {err}; push a fixed {}",
                crate::rollout::POLICY_FILE
            ),
            (Some(p), _) if p.reason == Reason::Halted => tracing::warn!(
                "commit {short} halted by its rollout policy (halt = true): not applied on {}",
                self.settings.host.hostname
            ),
            (Some(p), _) if p.reason == Reason::Wave => {
                let at = p.apply_at_ms.unwrap_or(now);
                tracing::info!(
                    "commit {short} pending: {} is in wave {}, applies in {:.1} s",
                    self.settings.host.hostname,
                    p.wave.as_deref().unwrap_or("(none: the longest delay)"),
                    (at.saturating_sub(now)).max(0) as f64 / 1000.0
                );
            }
            (Some(p), _) if p.reason == Reason::RanBefore && policy.is_some() => tracing::info!(
                "commit {short}: units this host ran before (a revert): applying at once, whatever the waves"
            ),
            (Some(p), _) if p.reason == Reason::Immediate => tracing::info!(
                "commit {short}: immediate = true in its rollout policy: applying at once"
            ),
            _ => {}
        }
        if let Some(old) = &self.rollout.pending
            && old.snapshot.commit != commit
        {
            tracing::info!(
                "pending commit {} superseded by {short} before it applied",
                old.snapshot.commit.as_deref().map_or("-", short_id)
            );
        }
        self.rollout.restored_pending = None;
        self.rollout.pending = Some(Pending {
            snapshot,
            first_seen_ms,
            plan,
            policy_error,
        });
        self.dirty = true;
        self.apply_due()
    }

    /// Applies the pending commit if it is due and the host is not frozen.
    pub(super) fn apply_due(&mut self) -> Option<serde_json::Value> {
        if self.rollout.freeze.is_some() || self.shutting_down {
            return None;
        }
        let due = self
            .rollout
            .pending
            .as_ref()?
            .plan
            .as_ref()?
            .apply_at_ms
            .is_some_and(|at| at <= now_ms());
        if !due {
            return None;
        }
        let pending = self.rollout.pending.take()?;
        self.dirty = true;
        Some(self.apply_snapshot(pending.snapshot))
    }

    fn apply_snapshot(&mut self, snapshot: Snapshot) -> serde_json::Value {
        crate::rollout::remember(&mut self.rollout.history, &snapshot.digest);
        let summary = self.apply_now(snapshot);
        self.dirty = true;
        summary
    }

    /// `pending` of `status` and `sync`: the commit, its wave and when it applies.
    pub(super) fn pending_json(&self) -> serde_json::Value {
        let Some(p) = &self.rollout.pending else {
            return serde_json::Value::Null;
        };
        let now = now_ms();
        let plan = p.plan.as_ref();
        let apply_at = plan.and_then(|pl| pl.apply_at_ms);
        let held_by = if self.rollout.freeze.is_some() {
            Some("freeze")
        } else if p.policy_error.is_some() && plan.is_none() {
            Some("invalid-policy")
        } else if plan.is_some_and(|pl| pl.reason == Reason::Halted) {
            Some("halt")
        } else {
            None
        };
        serde_json::json!({
            "commit": p.snapshot.commit,
            "subject": p.snapshot.subject,
            "committer_time": p.snapshot.committer_time,
            "first_seen_ms": p.first_seen_ms,
            "wave": plan.and_then(|pl| pl.wave.clone()),
            "reason": plan.map(|pl| pl.reason.to_string()),
            "apply_at_ms": apply_at,
            "apply_in_s": apply_at.map(|at| (at.saturating_sub(now)).max(0) as f64 / 1000.0),
            "held_by": held_by,
            "policy_error": p.policy_error,
        })
    }

    pub(super) fn freeze_json(&self) -> serde_json::Value {
        match &self.rollout.freeze {
            Some(f) => serde_json::json!({"reason": f.reason, "by": f.by, "at": f.at}),
            None => serde_json::Value::Null,
        }
    }

    /// `gitproc freeze`: keep fetching, apply nothing; answered once the freeze is on disk.
    pub(super) fn freeze(&mut self, reason: Option<String>, by: String, reply: Sender<Reply>) {
        match &self.rollout.freeze {
            Some(f) if f.reason == reason => {}
            _ => {
                tracing::warn!(
                    "operator {by} froze this host{}: commits are fetched but not applied until `gitproc thaw`",
                    reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                );
                self.rollout.freeze = Some(Freeze {
                    reason,
                    by,
                    at: unix_now(),
                });
            }
        }
        let answer = Reply::ok(serde_json::json!({
            "frozen": self.freeze_json(),
            "commit": self.source_commit(),
            "pending": self.pending_json(),
        }));
        self.answer_after_save("freeze".into(), reply, answer);
    }

    /// `gitproc thaw`: lift the freeze; a pending commit whose wave is due applies now.
    pub(super) fn thaw(&mut self, by: String, reply: Sender<Reply>) {
        let was = self.rollout.freeze.take();
        let applied = if was.is_some() {
            tracing::info!("operator {by} thawed this host");
            self.apply_due()
        } else {
            None
        };
        let answer = Reply::ok(serde_json::json!({
            "was_frozen": was.is_some(),
            "commit": self.source_commit(),
            "applied": applied,
            "pending": self.pending_json(),
        }));
        self.answer_after_save("thaw".into(), reply, answer);
    }
}

fn short_id(commit: &str) -> &str {
    commit.get(..10).unwrap_or(commit)
}

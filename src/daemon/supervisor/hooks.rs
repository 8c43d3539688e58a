//! `OnFailure=` and `OnSuccess=` in the loop: when a unit's run ends (the pure
//! [`crate::service::monitor::fired`] says which list fires), the units listed are started
//! through the ordinary start queue, each with the `MONITOR_*` variables of that outcome in
//! the environment of its `ExecCondition=`, `ExecStartPre=` and `ExecStart=` processes.
//!
//! As in systemd a hook that is already running (or queued) is not started again: its
//! current run keeps the variables it got. Where gitproc adds to systemd:
//!
//! - the variables are taken when the monitored run ends, not when the hook spawns, so a
//!   monitored unit that restarts at once (`RestartSec=0`) does not overwrite them;
//! - a hook chain never loops: a unit already in the chain of hooks that led to this one
//!   (itself included), or a chain longer than [`MAX_HOOK_CHAIN`], is not started, with a
//!   warning (systemd relies on the start rate limit to end such loops);
//! - no hook fires while the daemon shuts down (systemd's shutdown jobs cancel them too).
//!
//! [`Supervisor::trigger_monitor_hooks`] is the one entry point for callers other than the
//! automatic detection. The health checks do not need it: `OnUnhealthy=restart` ends the
//! run in `auto-restart` and `stop` in `failed`, both with result `health`, so the
//! automatic detection fires `OnFailure=` with `MONITOR_SERVICE_RESULT=health`
//! (`OnUnhealthy=none` ends nothing and fires nothing).

use super::Supervisor;
use crate::daemon::managed::HookStart;
use crate::service::monitor::{HookKind, MonitorOutcome, fired};
use crate::service::{ActiveState, ProcessRole, Status, SubState};

/// Most hooks in one chain (a hook's hook's hook ...).
pub(super) const MAX_HOOK_CHAIN: usize = 8;

/// Hooks detected while an event was fed, fired once its effects are performed.
pub(super) struct Fired {
    outcome: MonitorOutcome,
    /// The monitored unit's invocation at the end of its run.
    invocation_id: String,
    /// The chain that led to the monitored unit's run (empty unless a hook started it).
    chain: Vec<String>,
}

impl Supervisor {
    /// After an event moved `name` from `before` to `after`: the hooks the change fires, if
    /// any, with what they need read now (the next spawn may replace the invocation id).
    /// The run's [`HookStart`] ends here.
    pub(super) fn detect_hooks(
        &mut self,
        name: &str,
        before: (ActiveState, SubState),
        after: &Status,
    ) -> Option<Fired> {
        let kind = fired(before, after)?;
        let m = self.units.get_mut(name)?;
        let chain = m.hook_start.take().map(|h| h.chain).unwrap_or_default();
        if self.shutting_down {
            return None;
        }
        Some(Fired {
            outcome: MonitorOutcome::from_status(kind, after),
            invocation_id: m.invocation_id.clone(),
            chain,
        })
    }

    pub(super) fn fire_hooks(&mut self, name: &str, fired: Fired) {
        self.start_hooks(name, &fired.outcome, &fired.invocation_id, fired.chain);
    }

    /// Starts the `OnFailure=` (or `OnSuccess=`, by `outcome.kind`) units of `unit`, with
    /// `outcome` in their `MONITOR_*` variables and the unit's current invocation id. The
    /// loop calls this itself when a run ends in `failed`, `inactive` or `auto-restart`;
    /// call it for an outcome that does not pass through those states, never in addition
    /// to them, or the hooks run twice.
    #[allow(dead_code)] // no caller yet: every outcome so far passes through those states
    pub(in crate::daemon) fn trigger_monitor_hooks(
        &mut self,
        unit: &str,
        outcome: &MonitorOutcome,
    ) {
        if self.shutting_down {
            return;
        }
        let Some(m) = self.units.get(unit) else {
            return;
        };
        let chain = m
            .hook_start
            .as_ref()
            .map(|h| h.chain.clone())
            .unwrap_or_default();
        let invocation_id = m.invocation_id.clone();
        self.start_hooks(unit, outcome, &invocation_id, chain);
    }

    fn start_hooks(
        &mut self,
        unit: &str,
        outcome: &MonitorOutcome,
        invocation_id: &str,
        mut chain: Vec<String>,
    ) {
        let Some(targets) = self
            .units
            .get(unit)
            .and_then(|m| m.service.as_ref())
            .map(|svc| outcome.kind.targets(svc.unit()).to_vec())
        else {
            return;
        };
        if targets.is_empty() {
            return;
        }
        chain.push(unit.to_string());
        let key = outcome.kind.key();
        let why = match outcome.kind {
            HookKind::Failure => "failed",
            HookKind::Success => "succeeded",
        };
        let env = outcome.env(unit, invocation_id);
        for target in targets {
            if chain.contains(&target) {
                tracing::warn!(
                    "{unit}: {key}={target} not started: it is in the chain of hooks that led here ({}); a hook never starts itself again",
                    chain.join(" -> ")
                );
                continue;
            }
            if chain.len() > MAX_HOOK_CHAIN {
                tracing::warn!(
                    "{unit}: {key}={target} not started: hook chain longer than {MAX_HOOK_CHAIN} ({})",
                    chain.join(" -> ")
                );
                continue;
            }
            let queued = self.start_queue.contains(&target);
            let running = self.is_running(&target);
            let Some(m) = self.units.get_mut(&target) else {
                // systemd: "Failed to enqueue OnFailure= job, ignoring: Unit ... not found."
                tracing::warn!(
                    "{unit}: {key}={target}: no such unit in the repository; not started"
                );
                continue;
            };
            if m.service.is_none() || m.removed {
                let error = m.load_error.as_deref().unwrap_or("it is being removed");
                tracing::warn!("{unit}: {key}={target} not started: {error}");
                continue;
            }
            if m.held_stopped() {
                tracing::info!(
                    "{unit}: {key}={target} not started: an operator stopped it (`gitproc start {target}` releases it)"
                );
                continue;
            }
            if running || queued {
                tracing::info!(
                    "{unit}: {key}={target} already running or queued; its current run stands"
                );
                continue;
            }
            m.hook_start = Some(HookStart {
                env: env.clone(),
                chain: chain.clone(),
            });
            tracing::info!(
                "{target}: started by {key}= of {unit}, which {why} (result {})",
                outcome.result
            );
            let line = format!(
                "gitproc: started by {key}= of {unit}, which {why} (result {})",
                outcome.result
            );
            let _ = self.logs.note(&target, &line);
            self.request_start(&target);
        }
    }

    /// The `MONITOR_*` variables a spawn of `name` in `role` gets: those of a hook start,
    /// for the processes systemd gives them to.
    pub(super) fn monitor_env_for(&self, name: &str, role: ProcessRole) -> Vec<(String, String)> {
        use crate::service::ExecKind;
        let gets = matches!(
            role,
            ProcessRole::Main
                | ProcessRole::Control(ExecKind::StartPre)
                | ProcessRole::Control(ExecKind::Condition)
        );
        if !gets {
            return Vec::new();
        }
        self.units
            .get(name)
            .and_then(|m| m.hook_start.as_ref())
            .map(|h| h.env.clone())
            .unwrap_or_default()
    }

    /// A queued hook start that did not happen (a condition ruled it out): its variables
    /// must not reach a later, unrelated start.
    pub(super) fn drop_hook_start(&mut self, name: &str) {
        if let Some(m) = self.units.get_mut(name) {
            m.hook_start = None;
        }
    }
}

//! `OnFailure=` and `OnSuccess=` (systemd.unit(5)): which change of state fires a unit's
//! hooks, and the `MONITOR_*` variables (systemd.exec(5)) a hook's start gets.
//!
//! systemd fires `OnFailure=` when a unit enters `failed` and `OnSuccess=` when it enters
//! `inactive` from a running state. With `Restart=` (systemd's default
//! `RestartMode=normal`) a service passes through `failed`/`inactive` on its way to each
//! automatic restart, so every failure fires `OnFailure=`; gitproc goes to `auto-restart`
//! directly, so entering `auto-restart` counts as that passage, by its result. Leaving
//! `auto-restart` for `inactive` (an operator stop during the delay) fires nothing more: the
//! run's outcome was reported when it ended.
//!
//! Pure: the loop (`daemon::supervisor::hooks`) decides which units to start.

use super::event::Status;
use super::state::{ActiveState, ServiceResult, SubState};
use crate::unit::model::Unit;
use crate::unit::value::signal_name;

/// Which list of hooks fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    /// `OnFailure=`.
    Failure,
    /// `OnSuccess=`.
    Success,
}

impl HookKind {
    /// The directive, without `=`.
    pub fn key(self) -> &'static str {
        match self {
            HookKind::Failure => "OnFailure",
            HookKind::Success => "OnSuccess",
        }
    }

    /// The units of `unit` this kind starts.
    pub fn targets(self, unit: &Unit) -> &[String] {
        match self {
            HookKind::Failure => &unit.unit.on_failure,
            HookKind::Success => &unit.unit.on_success,
        }
    }
}

/// How a run of the monitored unit ended, as its hooks are told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorOutcome {
    pub kind: HookKind,
    /// `MONITOR_SERVICE_RESULT`: systemd's `Result=` word (`exit-code`, `signal`, ...), or
    /// an extension of that vocabulary (the health checks' `health`).
    pub result: String,
    /// `MONITOR_EXIT_CODE`: `exited`, `killed` or `dumped`; `None` when no main process
    /// ended (a start that failed before it), and then, as in systemd, neither this nor
    /// `MONITOR_EXIT_STATUS` is set.
    pub exit_code: Option<&'static str>,
    /// `MONITOR_EXIT_STATUS`: the exit status for `exited`, the signal name (`TERM`)
    /// otherwise.
    pub exit_status: Option<String>,
}

impl MonitorOutcome {
    /// The outcome `status` (the monitored unit's, just after its run ended) tells.
    pub fn from_status(kind: HookKind, status: &Status) -> MonitorOutcome {
        let exit_status = match (status.exec_main_code, status.exec_main_status) {
            (Some("exited"), Some(code)) => Some(code.to_string()),
            (Some(_), Some(signal)) => Some(signal_name(signal)),
            _ => None,
        };
        MonitorOutcome {
            kind,
            result: status.result.as_str().to_string(),
            exit_code: status.exec_main_code.filter(|_| exit_status.is_some()),
            exit_status,
        }
    }

    /// The variables of the hook's start: `unit` and `invocation_id` are the monitored
    /// unit's (an empty id is left out, as systemd leaves out an unset one).
    pub fn env(&self, unit: &str, invocation_id: &str) -> Vec<(String, String)> {
        let mut env = vec![("MONITOR_SERVICE_RESULT".to_string(), self.result.clone())];
        if let (Some(code), Some(status)) = (self.exit_code, &self.exit_status) {
            env.push(("MONITOR_EXIT_CODE".to_string(), code.to_string()));
            env.push(("MONITOR_EXIT_STATUS".to_string(), status.clone()));
        }
        if !invocation_id.is_empty() {
            env.push((
                "MONITOR_INVOCATION_ID".to_string(),
                invocation_id.to_string(),
            ));
        }
        env.push(("MONITOR_UNIT".to_string(), unit.to_string()));
        env
    }
}

/// The hooks a change of state fires: `before` is the (active, sub) state before an event,
/// `after` the status after it (see the module documentation).
pub fn fired(before: (ActiveState, SubState), after: &Status) -> Option<HookKind> {
    let (was, was_sub) = before;
    if after.sub_state == SubState::AutoRestart && was_sub != SubState::AutoRestart {
        return Some(if after.result == ServiceResult::Success {
            HookKind::Success
        } else {
            HookKind::Failure
        });
    }
    match after.active_state {
        ActiveState::Failed if was != ActiveState::Failed => Some(HookKind::Failure),
        ActiveState::Inactive
            if !matches!(was, ActiveState::Inactive | ActiveState::Failed)
                && was_sub != SubState::AutoRestart =>
        {
            Some(HookKind::Success)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(sub: SubState, result: ServiceResult) -> Status {
        Status {
            active_state: sub.active_state(),
            sub_state: sub,
            result,
            main_pid: None,
            control_pid: None,
            n_restarts: 0,
            exec_main_status: None,
            exec_main_code: None,
            active_enter: None,
            status_text: None,
            status_errno: None,
            error: None,
            next_restart: None,
        }
    }

    #[test]
    fn failing_and_succeeding_fire_their_hooks_once() {
        use ServiceResult as R;
        use SubState as S;
        let running = (ActiveState::Active, S::Running);
        let failed = status(S::Failed, R::ExitCode);
        assert_eq!(fired(running, &failed), Some(HookKind::Failure));
        assert_eq!(fired((ActiveState::Failed, S::Failed), &failed), None);
        let dead = status(S::Dead, R::Success);
        assert_eq!(fired(running, &dead), Some(HookKind::Success));
        assert_eq!(fired((ActiveState::Inactive, S::Dead), &dead), None);
        // Reset of a failed unit is not a success.
        assert_eq!(fired((ActiveState::Failed, S::Failed), &dead), None);
        // A oneshot finishing: activating -> inactive.
        assert_eq!(
            fired((ActiveState::Activating, S::Start), &dead),
            Some(HookKind::Success)
        );
        // Each failure before an automatic restart, by its result.
        let restarting = status(S::AutoRestart, R::Signal);
        assert_eq!(fired(running, &restarting), Some(HookKind::Failure));
        assert_eq!(
            fired((ActiveState::Activating, S::Start), &restarting),
            Some(HookKind::Failure)
        );
        let clean_restart = status(S::AutoRestart, R::Success);
        assert_eq!(fired(running, &clean_restart), Some(HookKind::Success));
        // Stopped while waiting to restart: already reported.
        assert_eq!(
            fired((ActiveState::Activating, S::AutoRestart), &dead),
            None
        );
        // Giving up after the start limit is a failure of its own.
        let limit = status(S::Failed, R::StartLimitHit);
        assert_eq!(
            fired((ActiveState::Activating, S::AutoRestart), &limit),
            Some(HookKind::Failure)
        );
        // Starting is no outcome.
        assert_eq!(
            fired(
                (ActiveState::Inactive, S::Dead),
                &status(S::Start, R::Success)
            ),
            None
        );
    }

    #[test]
    fn monitor_env_uses_systemds_words() {
        let mut st = status(SubState::Failed, ServiceResult::ExitCode);
        st.exec_main_code = Some("exited");
        st.exec_main_status = Some(3);
        let o = MonitorOutcome::from_status(HookKind::Failure, &st);
        let env = o.env("web.service", "0123abcd");
        assert_eq!(
            env,
            vec![
                ("MONITOR_SERVICE_RESULT".into(), "exit-code".into()),
                ("MONITOR_EXIT_CODE".into(), "exited".into()),
                ("MONITOR_EXIT_STATUS".into(), "3".into()),
                ("MONITOR_INVOCATION_ID".into(), "0123abcd".into()),
                ("MONITOR_UNIT".into(), "web.service".into()),
            ]
        );
        st.result = ServiceResult::Signal;
        st.exec_main_code = Some("killed");
        st.exec_main_status = Some(libc::SIGTERM);
        let o = MonitorOutcome::from_status(HookKind::Failure, &st);
        assert_eq!(o.exit_status.as_deref(), Some("TERM"));
        assert_eq!(o.result, "signal");
        // No main process ended: no exit code or status.
        st.exec_main_code = None;
        st.exec_main_status = None;
        let env = MonitorOutcome::from_status(HookKind::Failure, &st).env("a.service", "");
        let keys: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, vec!["MONITOR_SERVICE_RESULT", "MONITOR_UNIT"]);
    }
}

//! Pure restart decisions: what counts as a clean exit, systemd's `Restart=` table, and the
//! restart delay with `RestartSteps=` backoff.

use std::time::Duration;

use super::event::ExitStatus;
use super::state::ServiceResult;
use crate::unit::model::{ExitStatusSet, RestartPolicy, ServiceSection};

/// How long a service must have stayed running (sub-state `running`/`exited`) for its
/// restart backoff to start over at `RestartSec=`: `max(RestartMaxDelaySec=, RestartSec=, 10 s)`.
///
/// systemd never resets the backoff, so a service that crashes once a week waits the maximum
/// delay forever after its first bad day. gitproc forgets a crash streak once the service
/// proved healthy for longer than the longest delay it could be made to wait (and at least
/// 10 s, so that a service crashing right after start-up keeps backing off).
pub const MIN_STAY_UP: Duration = Duration::from_secs(10);

/// See [`MIN_STAY_UP`].
pub fn stay_up_period(svc: &ServiceSection) -> Duration {
    let max_delay = svc.restart_max_delay.unwrap_or(Duration::ZERO);
    MIN_STAY_UP.max(max_delay).max(svc.restart_sec)
}

fn in_set(status: ExitStatus, set: &ExitStatusSet) -> bool {
    match status {
        ExitStatus::Exited(code) => set.codes.contains(&code),
        ExitStatus::Signaled { signal, .. } => set.signals.contains(&signal),
        ExitStatus::Unknown => false,
    }
}

/// systemd's "clean" exit for a main process: exit 0, or SIGHUP/SIGINT/SIGTERM/SIGPIPE
/// (except for `Type=oneshot`, where only exit 0 is clean), or anything listed in
/// `SuccessExitStatus=`. An [`ExitStatus::Unknown`] (adopted process) counts as clean.
pub fn is_clean_main_exit(status: ExitStatus, oneshot: bool, success: &ExitStatusSet) -> bool {
    if in_set(status, success) {
        return true;
    }
    match status {
        ExitStatus::Exited(code) => code == 0,
        ExitStatus::Signaled { signal, .. } => {
            !oneshot && [libc::SIGHUP, libc::SIGINT, libc::SIGTERM, libc::SIGPIPE].contains(&signal)
        }
        ExitStatus::Unknown => true,
    }
}

/// The result a main-process exit gives: success, exit-code, signal or core-dump.
pub fn main_exit_result(
    status: ExitStatus,
    oneshot: bool,
    success: &ExitStatusSet,
) -> ServiceResult {
    if is_clean_main_exit(status, oneshot, success) {
        return ServiceResult::Success;
    }
    match status {
        ExitStatus::Exited(_) => ServiceResult::ExitCode,
        ExitStatus::Signaled {
            core_dumped: true, ..
        } => ServiceResult::CoreDump,
        ExitStatus::Signaled { .. } => ServiceResult::Signal,
        ExitStatus::Unknown => ServiceResult::Success,
    }
}

/// The result a control-process exit gives (`ExecStartPre=`, `ExecStop=`, ...): only exit 0
/// is clean (`SuccessExitStatus=` is for the main process).
pub fn control_exit_result(status: ExitStatus) -> ServiceResult {
    match status {
        ExitStatus::Exited(0) | ExitStatus::Unknown => ServiceResult::Success,
        ExitStatus::Exited(_) => ServiceResult::ExitCode,
        ExitStatus::Signaled {
            core_dumped: true, ..
        } => ServiceResult::CoreDump,
        ExitStatus::Signaled { .. } => ServiceResult::Signal,
    }
}

/// systemd.service(5) Table 2, plus `RestartPreventExitStatus=` (wins) and
/// `RestartForceExitStatus=`. `main_status` is the last main-process exit of the run, if any.
///
/// | cause                     | always | on-success | on-failure | on-abnormal | on-abort | on-watchdog |
/// |---------------------------|--------|------------|------------|-------------|----------|-------------|
/// | clean exit code or signal | X      | X          |            |             |          |             |
/// | unclean exit code         | X      |            | X          |             |          |             |
/// | unclean signal            | X      |            | X          | X           | X        |             |
/// | timeout                   | X      |            | X          | X           |          |             |
/// | watchdog                  | X      |            | X          | X           |          | X           |
///
/// `protocol`, `resources` and `oom-kill` count as failures that are not exit codes (on-failure,
/// on-abnormal restart); `start-limit-hit` never restarts.
pub fn shall_restart(
    svc: &ServiceSection,
    result: ServiceResult,
    main_status: Option<ExitStatus>,
) -> bool {
    if result == ServiceResult::StartLimitHit {
        return false;
    }
    if let Some(status) = main_status {
        if in_set(status, &svc.restart_prevent_exit_status) {
            return false;
        }
        if in_set(status, &svc.restart_force_exit_status) {
            return true;
        }
    }
    use ServiceResult as R;
    match svc.restart {
        RestartPolicy::No => false,
        RestartPolicy::Always => true,
        RestartPolicy::OnSuccess => result == R::Success,
        RestartPolicy::OnFailure => result != R::Success,
        RestartPolicy::OnAbnormal => !matches!(result, R::Success | R::ExitCode),
        RestartPolicy::OnAbort => matches!(result, R::Signal | R::CoreDump),
        RestartPolicy::OnWatchdog => result == R::Watchdog,
    }
}

/// The delay before automatic restart number `attempt` of a crash streak (0 = first).
///
/// Without `RestartSteps=` or `RestartMaxDelaySec=` it is `RestartSec=`. With both, the
/// delay grows geometrically from `RestartSec=` to `RestartMaxDelaySec=` in `RestartSteps=`
/// steps (as systemd does): `sec * (max/sec)^(attempt/steps)`, then stays at the maximum.
/// A `RestartSec=0` grows from 1 ms (a geometric series cannot start at zero), while the
/// first attempt still waits 0.
pub fn restart_delay(svc: &ServiceSection, attempt: u32) -> Duration {
    let base = svc.restart_sec;
    let (Some(max), steps) = (svc.restart_max_delay, svc.restart_steps) else {
        return base;
    };
    if steps == 0 || max <= base {
        return base;
    }
    if attempt == 0 {
        return base;
    }
    if attempt >= steps {
        return max;
    }
    let from = base.max(Duration::from_millis(1)).as_secs_f64();
    let to = max.as_secs_f64();
    let delay = from * (to / from).powf(f64::from(attempt) / f64::from(steps));
    // Saturating: a huge RestartMaxDelaySec= must not panic `from_secs_f64`.
    crate::sys::time::secs_f64(delay.min(to)).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(policy: RestartPolicy) -> ServiceSection {
        ServiceSection {
            restart: policy,
            ..Default::default()
        }
    }

    #[test]
    fn clean_signals_are_not_clean_for_oneshot() {
        let none = ExitStatusSet::default();
        let term = ExitStatus::Signaled {
            signal: libc::SIGTERM,
            core_dumped: false,
        };
        assert!(is_clean_main_exit(term, false, &none));
        assert!(!is_clean_main_exit(term, true, &none));
        assert_eq!(main_exit_result(term, true, &none), ServiceResult::Signal);
        let set = ExitStatusSet {
            codes: vec![3],
            signals: vec![libc::SIGUSR1],
        };
        assert!(is_clean_main_exit(ExitStatus::Exited(3), false, &set));
        assert!(!is_clean_main_exit(ExitStatus::Exited(4), false, &set));
        let usr1 = ExitStatus::Signaled {
            signal: libc::SIGUSR1,
            core_dumped: false,
        };
        assert!(is_clean_main_exit(usr1, true, &set));
    }

    #[test]
    fn prevent_wins_over_force_and_policy() {
        let mut s = svc(RestartPolicy::Always);
        s.restart_prevent_exit_status.codes.push(7);
        s.restart_force_exit_status.codes.push(7);
        assert!(!shall_restart(
            &s,
            ServiceResult::ExitCode,
            Some(ExitStatus::Exited(7))
        ));
        assert!(shall_restart(
            &s,
            ServiceResult::ExitCode,
            Some(ExitStatus::Exited(8))
        ));
        let mut s = svc(RestartPolicy::No);
        s.restart_force_exit_status.signals.push(libc::SIGUSR2);
        let usr2 = ExitStatus::Signaled {
            signal: libc::SIGUSR2,
            core_dumped: false,
        };
        assert!(shall_restart(&s, ServiceResult::Signal, Some(usr2)));
        assert!(!shall_restart(&s, ServiceResult::Signal, None));
    }

    #[test]
    fn start_limit_hit_never_restarts() {
        assert!(!shall_restart(
            &svc(RestartPolicy::Always),
            ServiceResult::StartLimitHit,
            None
        ));
    }

    #[test]
    fn delay_grows_geometrically_and_caps() {
        let s = ServiceSection {
            restart_sec: Duration::from_millis(100),
            restart_steps: 4,
            restart_max_delay: Some(Duration::from_millis(1600)),
            ..Default::default()
        };
        let ms: Vec<u128> = (0..7).map(|a| restart_delay(&s, a).as_millis()).collect();
        assert_eq!(ms, vec![100, 200, 400, 800, 1600, 1600, 1600]);
        // Without RestartMaxDelaySec= there is no backoff.
        let flat = ServiceSection {
            restart_steps: 4,
            ..Default::default()
        };
        assert_eq!(restart_delay(&flat, 3), flat.restart_sec);
    }

    #[test]
    fn stay_up_is_at_least_ten_seconds_and_the_max_delay() {
        let mut s = ServiceSection::default();
        assert_eq!(stay_up_period(&s), Duration::from_secs(10));
        s.restart_max_delay = Some(Duration::from_secs(60));
        assert_eq!(stay_up_period(&s), Duration::from_secs(60));
    }
}

//! One timer unit as the event loop keeps it: whether it is started, when it last fired,
//! what its triggered service did (for `OnUnitActiveSec=`/`OnUnitInactiveSec=`), and its
//! next elapse. Pure: the caller passes now on both clocks and the host facts, and performs
//! what [`TimerState::tick`] answers (start the service), so every transition is tested
//! without a process or a clock.
//!
//! States follow systemd's `timer.c`: *waiting* for the next elapse; *running* from an
//! elapse until the triggered service is inactive again (no elapse fires meanwhile, so a
//! service is never started twice); *elapsed* when nothing will elapse again
//! (`RemainAfterElapse=yes`); *dead* when stopped (by the operator, or elapsed with
//! `RemainAfterElapse=no`).

use std::time::Duration;

use jiff::tz::TimeZone;

use super::schedule::{Facts, LastTrigger, Next, Stamp, TimerSettings, next_elapse};

/// Facts of this host and daemon run, the same for every timer.
#[derive(Clone, Debug)]
pub struct HostClock {
    /// The machine's boot on the monotonic clock (the origin the daemon picked).
    pub boot: Duration,
    /// The daemon's start on the monotonic clock.
    pub startup: Duration,
    /// The local zone (`OnCalendar=` without a zone suffix).
    pub local: TimeZone,
    /// Where in a minute this host's timers coalesce ([`super::schedule::perturbation`]).
    pub perturbation: Duration,
}

/// What a timer is doing, as `status` shows it (`sub_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerSub {
    Waiting,
    Running,
    Elapsed,
    Dead,
}

impl TimerSub {
    pub fn as_str(self) -> &'static str {
        match self {
            TimerSub::Waiting => "waiting",
            TimerSub::Running => "running",
            TimerSub::Elapsed => "elapsed",
            TimerSub::Dead => "dead",
        }
    }
}

/// What the caller must do after [`TimerState::tick`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// The timer elapsed: start the service (the caller checked it is not already active).
    StartService,
    /// The timer elapsed while its service was still active: nothing is started.
    AlreadyActive,
}

/// One timer's state.
#[derive(Clone, Debug)]
pub struct TimerState {
    pub settings: TimerSettings,
    /// Stable per timer: `FixedRandomDelay=` ([`super::schedule::fixed_delay_seed`]).
    pub seed: u64,
    /// When it was started (`None`: stopped).
    pub activated: Option<Stamp>,
    pub last_trigger: Option<LastTrigger>,
    /// Whether this timer fired and its service has not yet been seen inactive again.
    pub running: bool,
    /// The last computed schedule (`None` while stopped or running).
    pub next: Option<Next>,
    unit_active_enter: Option<Duration>,
    unit_inactive_enter: Option<Duration>,
    service_busy: bool,
}

impl TimerState {
    /// A stopped timer; `last_trigger` may come from the state file.
    pub fn new(settings: TimerSettings, seed: u64, last_trigger: Option<LastTrigger>) -> Self {
        TimerState {
            settings,
            seed,
            activated: None,
            last_trigger,
            running: false,
            next: None,
            unit_active_enter: None,
            unit_inactive_enter: None,
            service_busy: false,
        }
    }

    pub fn sub_state(&self) -> TimerSub {
        if self.activated.is_none() {
            TimerSub::Dead
        } else if self.running {
            TimerSub::Running
        } else {
            match self.next {
                Some(Next::Elapsed { .. }) => TimerSub::Elapsed,
                _ => TimerSub::Waiting,
            }
        }
    }

    pub fn is_active(&self) -> bool {
        self.activated.is_some()
    }

    /// Starts the timer (a new unit, or an operator's `start`): `OnActiveSec=` counts from now.
    pub fn start(&mut self, now: Stamp, host: &HostClock, entropy: u64) {
        if self.activated.is_none() {
            self.activated = Some(now);
        }
        self.reschedule(now, host, entropy);
    }

    /// Stops it: no elapse until started again; the last trigger is kept.
    pub fn stop(&mut self) {
        self.activated = None;
        self.running = false;
        self.next = None;
    }

    /// New settings from git: the schedule is recomputed at once, counting from now (as if
    /// the timer had just been started) so the change itself never runs the job; the last
    /// trigger is kept (`LAST`, `Persistent=`).
    pub fn change(&mut self, settings: TimerSettings, now: Stamp, host: &HostClock, entropy: u64) {
        self.settings = settings;
        if self.activated.is_some() {
            self.activated = Some(now);
            if !self.running {
                self.reschedule(now, host, entropy);
            }
        }
    }

    fn facts(&self, now: Stamp, host: &HostClock, entropy: u64) -> Facts {
        // A trigger from before the (re)activation counts only for Persistent= (a run
        // missed while the daemon was down); else the calendar counts from the activation.
        let last_trigger = self.last_trigger.filter(|lt| {
            self.settings.persistent || self.activated.is_none_or(|a| lt.wall >= a.wall)
        });
        Facts {
            now,
            boot: host.boot,
            startup: host.startup,
            timer_activated: self.activated,
            unit_active_enter: self.unit_active_enter,
            unit_inactive_enter: self.unit_inactive_enter,
            last_trigger,
            local: host.local.clone(),
            seed: self.seed,
            entropy,
            perturbation: host.perturbation,
        }
    }

    fn reschedule(&mut self, now: Stamp, host: &HostClock, entropy: u64) {
        if self.activated.is_none() {
            return;
        }
        let next = next_elapse(&self.settings, &self.facts(now, host, entropy));
        if let Next::Elapsed { stay_active: false } = next {
            self.activated = None;
            self.next = None;
        } else {
            self.next = Some(next);
        }
    }

    /// When to wake next on the monotonic clock (`None`: nothing to wait for).
    pub fn wake(&self) -> Option<Duration> {
        match (self.activated, self.running, self.next) {
            (Some(_), false, Some(Next::At { wake, .. })) => Some(wake),
            _ => None,
        }
    }

    /// One step at `now`: `service_busy` is whether the triggered service is active,
    /// activating or queued to start. Records the service's transitions (`OnUnit*Sec=`),
    /// leaves *running* once the service is inactive again, and fires when due.
    pub fn tick(
        &mut self,
        now: Stamp,
        service_busy: bool,
        host: &HostClock,
        entropy: u64,
    ) -> Action {
        let mut changed = false;
        if service_busy != self.service_busy {
            self.service_busy = service_busy;
            if service_busy {
                self.unit_active_enter = Some(now.mono);
            } else {
                self.unit_inactive_enter = Some(now.mono);
            }
            changed = true;
        }
        if self.running && !service_busy {
            self.running = false;
            changed = true;
        }
        if changed && !self.running {
            self.reschedule(now, host, entropy);
        }
        match self.wake() {
            Some(wake) if wake <= now.mono => {
                self.last_trigger = Some(LastTrigger {
                    wall: now.wall,
                    mono: Some(now.mono),
                });
                self.running = true;
                self.next = None;
                if service_busy {
                    Action::AlreadyActive
                } else {
                    Action::StartService
                }
            }
            _ => Action::Nothing,
        }
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;

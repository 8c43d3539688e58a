//! Timer units in the loop. A timer is a unit of its own kind, not a [`Service`]: its state
//! is the pure [`TimerState`]; this module feeds it the clocks and what its service does,
//! starts the service when it elapses, and turns its next elapse into one more deadline of
//! the loop's select timeout (no polling: an idle daemon wakes only when a timer fires).
//!
//! Rules:
//! - a service named by a timer's `Unit=` is not started when a commit is applied (see
//!   [`Supervisor::timer_activated`]); it starts when the timer elapses;
//! - an elapse never starts a service that is already active, activating or queued;
//! - a git change to a timer reschedules it from now without running the job or touching
//!   its service; a removed timer fires no more (a running service finishes);
//! - an operator's `stop NAME.timer` holds it stopped until `start NAME.timer`, across
//!   daemon restarts, like for services.
//!
//! [`Service`]: crate::service::Service

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::{Supervisor, unix_now};
use crate::control::protocol::{Reply, exit};
use crate::state::format::{Override, OverrideKind, TimerState as TimerRecord};
use crate::timer::schedule::{LastTrigger, Next, Stamp, fixed_delay_seed, perturbation};
use crate::timer::state::{Action, HostClock, TimerState};
use crate::unit::LoadedUnit;

/// The clocks of this daemon run, read once at start-up (before the loop runs: reading
/// `/proc` or the zone database never happens on the loop).
///
/// The monotonic clock of the timer core is "time since boot": `/proc/uptime` at start-up
/// plus [`Instant`]s since then, so `OnBootSec=` counts from the machine's boot.
pub(crate) struct TimerClock {
    base: Instant,
    base_mono: Duration,
    host: HostClock,
    machine_id: Vec<u8>,
    uid: u32,
    /// xorshift state for `RandomizedDelaySec=` without `FixedRandomDelay=`.
    rng: u64,
}

/// Seconds since boot: `/proc/uptime`, else now minus `/proc/stat`'s `btime`.
fn read_uptime() -> Option<Duration> {
    if let Ok(text) = std::fs::read_to_string("/proc/uptime")
        && let Some(secs) = text
            .split_whitespace()
            .next()
            .and_then(|s| s.parse::<f64>().ok())
        && secs.is_finite()
        && secs >= 0.0
    {
        return Some(Duration::from_secs_f64(secs));
    }
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let btime: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    Some(now.saturating_sub(Duration::from_secs(btime)))
}

impl TimerClock {
    pub(crate) fn read() -> TimerClock {
        let base = Instant::now();
        let base_mono = read_uptime().unwrap_or_else(|| {
            tracing::warn!(
                "cannot read /proc/uptime or /proc/stat: OnBootSec= counts from the daemon's start"
            );
            Duration::ZERO
        });
        let boot_id = std::fs::read("/proc/sys/kernel/random/boot_id").unwrap_or_default();
        let machine_id = std::fs::read("/etc/machine-id").unwrap_or_default();
        let local = TimeZone::try_system().unwrap_or_else(|e| {
            tracing::warn!("cannot read the local time zone ({e}); timers use UTC");
            TimeZone::UTC
        });
        let seed = Timestamp::now().as_nanosecond() as u64 ^ u64::from(std::process::id());
        TimerClock {
            base,
            base_mono,
            host: HostClock {
                boot: Duration::ZERO,
                startup: base_mono,
                local,
                perturbation: perturbation(&boot_id),
            },
            machine_id,
            uid: nix::unistd::getuid().as_raw(),
            rng: seed | 1,
        }
    }

    fn now(&self) -> Stamp {
        Stamp {
            wall: Timestamp::now(),
            mono: self.base_mono.saturating_add(self.base.elapsed()),
        }
    }

    /// The [`Instant`] of a monotonic instant (one before start-up is "now or earlier").
    fn instant_of(&self, mono: Duration) -> Instant {
        let after = mono.saturating_sub(self.base_mono);
        self.base
            .checked_add(after)
            .unwrap_or(self.base + Duration::from_secs(86_400 * 365))
    }

    fn entropy(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

/// A timer the loop knows.
pub(crate) struct ManagedTimer {
    state: TimerState,
    /// The service it starts (`Unit=`).
    triggers: String,
    description: Option<String>,
    path: String,
    hash: String,
    commit: Option<String>,
    /// Why the newest version in git does not load (the previous one keeps running).
    load_error: Option<String>,
    operator_override: Option<Override>,
}

fn wall_usec(t: Timestamp) -> i64 {
    t.as_microsecond()
}

fn usec_wall(us: i64) -> Option<Timestamp> {
    Timestamp::from_microsecond(us).ok()
}

impl Supervisor {
    /// The services some loaded timer starts: not started when a commit is applied.
    pub(in crate::daemon) fn timer_activated(
        timers: &BTreeMap<String, LoadedUnit>,
    ) -> BTreeSet<String> {
        timers
            .values()
            .filter_map(|t| t.unit.as_ref())
            .map(|u| u.timer.unit.clone())
            .collect()
    }

    /// Takes in the timers of a new unit set: adds, reschedules changed ones (from now,
    /// never running the job), drops removed ones. `restored` is what a previous daemon
    /// recorded (last triggers, operator stops).
    pub(in crate::daemon) fn apply_timers(
        &mut self,
        loaded: BTreeMap<String, LoadedUnit>,
        restored: Option<&BTreeMap<String, TimerRecord>>,
        commit: &Option<String>,
    ) {
        let now = self.timer_clock.now();
        let gone: Vec<String> = self
            .timers
            .keys()
            .filter(|n| !loaded.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            tracing::info!("{name}: removed from the repository; no more runs");
            self.timers.remove(&name);
            self.dirty = true;
        }
        self.broken_timers.retain(|n, _| loaded.contains_key(n));
        for (name, l) in loaded {
            let Some(unit) = l.unit else {
                let error = l
                    .diagnostics
                    .iter()
                    .find(|d| d.is_error())
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "failed to load".into());
                tracing::error!("{name}: new version not applied: {error}");
                match self.timers.get_mut(&name) {
                    Some(t) => t.load_error = Some(error),
                    None => {
                        self.broken_timers.insert(name, error);
                    }
                }
                continue;
            };
            self.broken_timers.remove(&name);
            let entropy = self.timer_clock.entropy();
            let host = self.timer_clock.host.clone();
            match self.timers.get_mut(&name) {
                Some(t) => {
                    t.load_error = None;
                    if t.hash == l.content_hash {
                        continue;
                    }
                    tracing::info!("{name}: changed; rescheduled (its service is not touched)");
                    t.state
                        .change(unit.timer.settings.clone(), now, &host, entropy);
                    t.triggers = unit.timer.unit.clone();
                    t.description = unit.unit.description.clone();
                    t.hash = l.content_hash;
                    t.path = l.path;
                    t.commit = commit.clone();
                }
                None => {
                    let old = restored.and_then(|r| r.get(&name));
                    let last_trigger = old
                        .and_then(|o| o.last_trigger_usec)
                        .and_then(usec_wall)
                        .map(|wall| LastTrigger { wall, mono: None });
                    let seed =
                        fixed_delay_seed(&self.timer_clock.machine_id, self.timer_clock.uid, &name);
                    let mut state =
                        TimerState::new(unit.timer.settings.clone(), seed, last_trigger);
                    let operator_override = old.and_then(|o| o.operator_override.clone());
                    let held =
                        matches!(&operator_override, Some(o) if o.kind == OverrideKind::Stopped);
                    if held {
                        tracing::info!("{name}: held stopped by an operator; not started");
                    } else {
                        state.start(now, &host, entropy);
                    }
                    self.timers.insert(
                        name,
                        ManagedTimer {
                            state,
                            triggers: unit.timer.unit.clone(),
                            description: unit.unit.description.clone(),
                            path: l.path,
                            hash: l.content_hash,
                            commit: commit.clone(),
                            load_error: None,
                            operator_override,
                        },
                    );
                }
            }
            self.dirty = true;
        }
    }

    /// A changed timer-activated service: restarted only when it runs now (else its
    /// timer starts the new version when it elapses).
    pub(in crate::daemon) fn restart_if_running(&mut self, name: &str) {
        if self.is_running(name) {
            self.begin_trial(name, None);
            self.request_restart(name);
        }
    }

    /// Whether a service is active, activating or about to start (queued).
    pub(super) fn service_busy(&self, name: &str) -> bool {
        self.is_running(name) || self.start_queue.iter().any(|n| n == name)
    }

    /// One step of every timer: what its service did since, and an elapse when due.
    pub(super) fn tick_timers(&mut self) {
        if self.timers.is_empty() {
            return;
        }
        let now = self.timer_clock.now();
        let names: Vec<String> = self.timers.keys().cloned().collect();
        for name in names {
            let entropy = self.timer_clock.entropy();
            let host = self.timer_clock.host.clone();
            let Some(service) = self.timers.get(&name).map(|t| t.triggers.clone()) else {
                continue;
            };
            let busy = self.service_busy(&service);
            let Some(t) = self.timers.get_mut(&name) else {
                continue;
            };
            match t.state.tick(now, busy, &host, entropy) {
                Action::Nothing => continue,
                Action::AlreadyActive => {
                    tracing::info!("{name}: elapsed; {service} is still active, not started again");
                }
                Action::StartService => match self.units.get(&service) {
                    Some(m) if m.service.is_some() && !m.held_stopped() => {
                        tracing::info!("{name}: elapsed; starting {service}");
                        self.queue_start(&service);
                    }
                    Some(m) if m.held_stopped() => tracing::warn!(
                        "{name}: elapsed; {service} is held stopped by an operator, not started (`gitproc start {service}` releases it)"
                    ),
                    _ => tracing::error!(
                        "{name}: elapsed, but {service} is not a loaded unit of the repository; nothing started"
                    ),
                },
            }
            self.dirty = true;
        }
    }

    /// The earliest timer elapse, as a deadline of the loop.
    pub(super) fn timers_deadline(&self) -> Option<Instant> {
        self.timers
            .values()
            .filter_map(|t| t.state.wake())
            .min()
            .map(|mono| self.timer_clock.instant_of(mono))
    }

    /// `gitproc start|stop|restart NAME.timer`; answered at once (a timer has no job to
    /// wait for), after the override is saved.
    pub(super) fn timer_job(
        &mut self,
        units: &[String],
        verb: &str,
        by: String,
        reply: Sender<Reply>,
    ) {
        if let Some(name) = units.iter().find(|u| !u.ends_with(".timer")) {
            let _ = reply.send(Reply::error(
                exit::USAGE,
                format!("{name}: give timers and services in separate commands"),
            ));
            return;
        }
        if let Some(name) = units.iter().find(|u| !self.timers.contains_key(*u)) {
            let why = match self.broken_timers.get(name) {
                Some(err) => format!("Unit {name} failed to load: {err}"),
                None => format!("Unit {name} not found."),
            };
            let _ = reply.send(Reply::error(exit::NO_SUCH_UNIT, why));
            return;
        }
        if verb == "reload" {
            let _ = reply.send(Reply::error(exit::FAILURE, "timers cannot be reloaded"));
            return;
        }
        let now = self.timer_clock.now();
        for name in units {
            let entropy = self.timer_clock.entropy();
            let host = self.timer_clock.host.clone();
            let Some(t) = self.timers.get_mut(name) else {
                continue;
            };
            tracing::info!("operator {by} asked to {verb} {name}");
            if verb == "stop" {
                t.operator_override = Some(Override {
                    kind: OverrideKind::Stopped,
                    by: by.clone(),
                    at: unix_now(),
                });
                t.state.stop();
            } else {
                t.operator_override = None;
                if verb == "restart" {
                    t.state.stop();
                }
                t.state.start(now, &host, entropy);
            }
        }
        let answer = Reply::ok(serde_json::json!({ "units": units, "failed": [] }));
        self.answer_after_save(format!("operator {verb}"), reply, answer);
    }

    /// What `state.json` keeps of the timers.
    pub(super) fn persisted_timers(&self) -> BTreeMap<String, TimerRecord> {
        self.timers
            .iter()
            .map(|(name, t)| {
                let record = TimerRecord {
                    last_trigger_usec: t.state.last_trigger.map(|lt| wall_usec(lt.wall)),
                    operator_override: t.operator_override.clone(),
                };
                (name.clone(), record)
            })
            .collect()
    }

    /// The `status` rows of the timers (named ones only, unless `names` is empty).
    pub(super) fn timers_json(&self, names: &[String]) -> Vec<serde_json::Value> {
        let now = self.timer_clock.now();
        let wanted = |n: &String| names.is_empty() || names.contains(n);
        let mut rows: Vec<serde_json::Value> = self
            .timers
            .iter()
            .filter(|(n, _)| wanted(n))
            .map(|(name, t)| timer_json(name, t, now))
            .collect();
        rows.extend(
            self.broken_timers
                .iter()
                .filter(|(n, _)| wanted(n))
                .map(|(name, err)| {
                    serde_json::json!({
                        "name": name,
                        "kind": "timer",
                        "active_state": "failed",
                        "sub_state": "dead",
                        "result": "resources",
                        "error": err,
                    })
                }),
        );
        rows
    }

    pub(super) fn has_timer(&self, name: &str) -> bool {
        self.timers.contains_key(name) || self.broken_timers.contains_key(name)
    }
}

fn secs(t: Timestamp) -> f64 {
    t.as_microsecond() as f64 / 1e6
}

/// One timer's `status` JSON: systemd's property names where they exist (`next_elapse`
/// is systemd's NextElapseUSecRealtime, as the wall-clock time the timer fires).
fn timer_json(name: &str, t: &ManagedTimer, now: Stamp) -> serde_json::Value {
    let sub = t.state.sub_state();
    let next_elapse = match t.state.next {
        Some(Next::At { wake, .. }) if t.state.wake().is_some() => {
            let wall = if wake >= now.mono {
                now.wall.checked_add(wake - now.mono).ok()
            } else {
                now.wall.checked_sub(now.mono - wake).ok()
            };
            wall.map(secs)
        }
        _ => None,
    };
    serde_json::json!({
        "name": name,
        "kind": "timer",
        "path": t.path,
        "commit": t.commit,
        "content_hash": t.hash,
        "description": t.description,
        "error": t.load_error,
        "override": t.operator_override.as_ref().map(|o| match o.kind {
            OverrideKind::Stopped => "stopped",
            OverrideKind::Started => "started",
        }),
        "active_state": if t.state.is_active() { "active" } else { "inactive" },
        "sub_state": sub.as_str(),
        "result": "success",
        "triggers": t.triggers,
        "next_elapse": next_elapse,
        "last_trigger": t.state.last_trigger.map(|lt| secs(lt.wall)),
        "persistent": t.state.settings.persistent,
    })
}

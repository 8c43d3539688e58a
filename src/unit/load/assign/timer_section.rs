//! `[Timer]` (systemd.timer(5)) into [`TimerSection`](crate::unit::model::TimerSection).
//! Every trigger key may repeat (each value adds one trigger) and an empty assignment
//! resets that key's list, so a drop-in can replace a schedule (`OnCalendar=` then
//! `OnCalendar=daily`). Scalars reset to systemd's default when empty. `Unit=` is checked
//! against the tree by `gitproc check` and the daemon, not here (one unit at a time).

use std::time::Duration;

use super::timespan;
use crate::timer::calendar::CalendarSpec;
use crate::timer::schedule::{DEFAULT_ACCURACY, TimerSettings};
use crate::unit::load::Builder;
use crate::unit::name::parse_unit_name;
use crate::unit::value::parse_bool;

/// A finite time span (`infinity` makes no sense for a trigger).
fn span(v: &str) -> Result<Duration, String> {
    timespan(v)?.ok_or_else(|| format!("{v:?} is not a finite time span"))
}

fn bool_or(v: &str, default: bool) -> Result<bool, String> {
    if v.is_empty() {
        Ok(default)
    } else {
        parse_bool(v)
    }
}

impl Builder<'_> {
    pub(super) fn apply_timer(&mut self, key: &str, v: &str) -> Result<(), String> {
        let defaults = TimerSettings::default();
        let t = &mut self.unit.timer;
        let s = &mut t.settings;
        let list = match key {
            "OnActiveSec" => Some(&mut s.on_active_sec),
            "OnBootSec" => Some(&mut s.on_boot_sec),
            "OnStartupSec" => Some(&mut s.on_startup_sec),
            "OnUnitActiveSec" => Some(&mut s.on_unit_active_sec),
            "OnUnitInactiveSec" => Some(&mut s.on_unit_inactive_sec),
            _ => None,
        };
        if let Some(list) = list {
            if v.is_empty() {
                list.clear();
            } else {
                list.push(span(v)?);
            }
            return Ok(());
        }
        match key {
            "OnCalendar" => {
                if v.is_empty() {
                    s.on_calendar.clear();
                } else {
                    let spec = CalendarSpec::parse(v).map_err(|e| e.to_string())?;
                    s.on_calendar.push(spec);
                }
            }
            "AccuracySec" => {
                s.accuracy = if v.is_empty() {
                    DEFAULT_ACCURACY
                } else {
                    span(v)?
                }
            }
            "RandomizedDelaySec" => {
                s.randomized_delay = if v.is_empty() {
                    Duration::ZERO
                } else {
                    span(v)?
                }
            }
            "FixedRandomDelay" => s.fixed_random_delay = bool_or(v, defaults.fixed_random_delay)?,
            "Persistent" => s.persistent = bool_or(v, defaults.persistent)?,
            "RemainAfterElapse" => {
                s.remain_after_elapse = bool_or(v, defaults.remain_after_elapse)?
            }
            "Unit" => {
                if v.is_empty() {
                    t.unit.clear();
                } else {
                    let name = parse_unit_name(v)?;
                    if name.suffix != "service" {
                        return Err(format!("{v}: gitproc timers can only start .service units"));
                    }
                    if name.instance.as_deref() == Some("") {
                        return Err(format!(
                            "{v} is a template: name an instance such as {}@NAME.service",
                            name.prefix
                        ));
                    }
                    t.unit = v.to_string();
                }
            }
            _ => {}
        }
        Ok(())
    }
}

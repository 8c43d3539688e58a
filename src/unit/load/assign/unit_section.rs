//! `[Unit]` (systemd.unit(5)): description, dependencies and ordering, conditions and
//! assertions on paths and hosts, the start rate limit, `OnFailure=`/`OnSuccess=` hooks.

use std::time::Duration;

use super::timespan;
use crate::unit::load::Builder;
use crate::unit::model::{Condition, defaults};
use crate::unit::name::parse_unit_name;

impl Builder<'_> {
    pub(super) fn apply_unit(&mut self, key: &str, v: &str) -> Result<(), String> {
        let u = &mut self.unit.unit;
        match key {
            "Description" => u.description = (!v.is_empty()).then(|| v.to_string()),
            "After" | "Before" | "Requires" | "Wants" | "BindsTo" | "BindTo" | "PartOf"
            | "Conflicts" | "OnFailure" | "OnSuccess" => {
                let list = match key {
                    "OnFailure" => &mut u.on_failure,
                    "OnSuccess" => &mut u.on_success,
                    "After" => &mut u.after,
                    "Before" => &mut u.before,
                    "Requires" => &mut u.requires,
                    "Wants" => &mut u.wants,
                    "PartOf" => &mut u.part_of,
                    "Conflicts" => &mut u.conflicts,
                    _ => &mut u.binds_to,
                };
                if v.is_empty() {
                    list.clear();
                }
                for w in v.split_ascii_whitespace() {
                    parse_unit_name(w)?;
                    list.push(w.to_string());
                }
            }
            _ if condition_key(key).is_some() => {
                let Some((assert, check)) = condition_key(key) else {
                    return Ok(());
                };
                if v.is_empty() {
                    // An empty assignment resets every condition and assert (systemd).
                    u.conditions.clear();
                    return Ok(());
                }
                let (trigger, rest) = match v.strip_prefix('|') {
                    Some(r) => (true, r.trim_start()),
                    None => (false, v),
                };
                let (negate, value) = match rest.strip_prefix('!') {
                    Some(r) => (true, r.trim_start()),
                    None => (false, rest),
                };
                let path_check = check.starts_with("Path")
                    || matches!(
                        check,
                        "DirectoryNotEmpty" | "FileNotEmpty" | "FileIsExecutable"
                    );
                if path_check && !value.starts_with('/') {
                    return Err(format!(
                        "path {value:?} must be absolute (optionally prefixed with | or !)"
                    ));
                }
                // Malformed comparisons fail at load, not at each start.
                match check {
                    "Memory" => {
                        crate::unit::comparison::parse_memory(value)?;
                    }
                    "CPUs" => {
                        crate::unit::comparison::parse_cpus(value)?;
                    }
                    _ => {}
                }
                u.conditions.push(Condition {
                    check: check.to_string(),
                    assert,
                    trigger,
                    negate,
                    value: value.to_string(),
                });
            }
            "StartLimitIntervalSec" | "StartLimitInterval" => {
                u.start_limit_interval = if v.is_empty() {
                    defaults::START_LIMIT_INTERVAL
                } else {
                    timespan(v)?.unwrap_or(Duration::MAX)
                }
            }
            "StartLimitBurst" => {
                u.start_limit_burst = if v.is_empty() {
                    defaults::START_LIMIT_BURST
                } else {
                    v.parse().map_err(|_| {
                        format!("invalid count {v:?}: expected a non-negative integer")
                    })?
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// `ConditionX`/`AssertX` with X one of [`Condition::EVALUATED`]: (is an assert, X).
fn condition_key(key: &str) -> Option<(bool, &str)> {
    let (assert, check) = match key.strip_prefix("Condition") {
        Some(c) => (false, c),
        None => (true, key.strip_prefix("Assert")?),
    };
    Condition::EVALUATED
        .contains(&check)
        .then_some((assert, check))
}

//! `[Unit]` (systemd.unit(5)): description, dependencies and ordering, conditions and
//! assertions on paths and hosts, the start rate limit.

use std::time::Duration;

use super::push_words;
use super::timespan;
use crate::unit::load::Builder;
use crate::unit::model::defaults;
use crate::unit::name::parse_unit_name;

impl Builder<'_> {
    pub(super) fn apply_unit(&mut self, key: &str, v: &str) -> Result<(), String> {
        let u = &mut self.unit.unit;
        match key {
            "Description" => u.description = (!v.is_empty()).then(|| v.to_string()),
            "After" | "Before" | "Requires" | "Wants" | "BindsTo" | "BindTo" | "PartOf"
            | "Conflicts" => {
                let list = match key {
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
            "ConditionHost" => push_words(&mut u.condition_host, v),
            "ConditionPathExists" | "AssertPathExists" => {
                let list = if key == "AssertPathExists" {
                    &mut u.assert_path_exists
                } else {
                    &mut u.condition_path_exists
                };
                if v.is_empty() {
                    list.clear();
                } else {
                    let p = v.trim_start_matches(['|', '!']);
                    if !p.starts_with('/') {
                        return Err(format!(
                            "path {p:?} must be absolute (optionally prefixed with | or !)"
                        ));
                    }
                    list.push(v.to_string());
                }
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

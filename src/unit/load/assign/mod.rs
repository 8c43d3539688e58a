//! Assignment: one enforced key's value into the typed model, one module per section
//! ([`unit_section`], [`service_section`], [`timer_section`], [`socket_section`], [`install_section`], and [`health_section`] for gitproc's `[X-Health]`). Each function gets the
//! specifier-expanded value and either sets the model field (an empty value resets it to
//! systemd's default) or returns the message of an error at that entry; warnings go to the
//! builder's diagnostics directly. `Exec*=` lines are not assigned here (see
//! [`super::passes::exec_lines`]).

mod health_section;
mod install_section;
mod service_section;
mod socket_section;
mod timer_section;
mod unit_section;

use std::time::Duration;

pub(super) use health_section::HealthDraft;

use super::{Builder, Located};
use crate::unit::directives::SectionKind;
use crate::unit::specifier::{SpecifierUnit, expand};
use crate::unit::value::{SEC, parse_timespan};

impl Builder<'_> {
    /// `%` specifiers of `s` for this unit.
    fn spec(&self, s: &str) -> Result<String, (usize, String)> {
        expand(
            s,
            &SpecifierUnit {
                name: self.name,
                path: self.path,
            },
            self.ctx,
        )
    }

    /// Applies one enforced non-Exec key. Values are specifier-expanded first.
    pub(super) fn apply(&mut self, loc: &Located<'_>, section: SectionKind) {
        let key = loc.entry.key;
        let raw: &str = &loc.entry.value;
        let v = match key {
            "Environment" => raw.to_string(),
            // systemd does not expand specifiers in resource-control values: `CPUQuota=20%`
            // and `MemoryMax=50%` are percentages.
            k if section == SectionKind::Service
                && crate::unit::resources::KEYS.binary_search(&k).is_ok() =>
            {
                raw.to_string()
            }
            _ => match self.spec(raw) {
                Ok(v) => v,
                Err((off, msg)) => {
                    self.diags.push(loc.error_at(off, msg));
                    return;
                }
            },
        };
        let v = v.as_str();
        let r: Result<(), String> = match section {
            SectionKind::Unit => self.apply_unit(key, v),
            SectionKind::Service => self.apply_service(loc, key, v),
            SectionKind::Install => {
                self.apply_install(key, v);
                Ok(())
            }
            SectionKind::Timer => self.apply_timer(key, v),
            SectionKind::Socket => self.apply_socket(key, v),
            SectionKind::Extension => {
                self.apply_health(loc, v);
                Ok(())
            }
            _ => Ok(()),
        };
        if let Err(msg) = r {
            self.diags.push(loc.error(msg));
        }
    }
}

/// A word list; an empty value clears it.
pub(super) fn push_words(list: &mut Vec<String>, v: &str) {
    if v.is_empty() {
        list.clear();
    } else {
        list.extend(v.split_ascii_whitespace().map(str::to_string));
    }
}

pub(super) fn timespan(v: &str) -> Result<Option<Duration>, String> {
    parse_timespan(v, SEC)
}

/// A timeout where both `0` and `infinity` disable it (systemd.service(5)).
pub(super) fn timeout(v: &str) -> Result<Option<Duration>, String> {
    Ok(timespan(v)?.filter(|d| !d.is_zero()))
}

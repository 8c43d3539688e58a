//! `[Install]` (systemd.unit(5)): recorded as written; gitproc has no enable/disable, so
//! these only document which targets a unit would be wanted by.

use super::push_words;
use crate::unit::load::Builder;

impl Builder<'_> {
    pub(super) fn apply_install(&mut self, key: &str, v: &str) {
        let i = &mut self.unit.install;
        match key {
            "WantedBy" => push_words(&mut i.wanted_by, v),
            "RequiredBy" => push_words(&mut i.required_by, v),
            "Alias" => push_words(&mut i.alias, v),
            _ => {}
        }
    }
}

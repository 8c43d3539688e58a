//! Which units a new commit adds, removes or changes, by effective content (pure).
//!
//! The loader hashes each unit's effective content (unit bytes, drop-ins and the environment
//! files it read, with the one hash of `unit::load::hash`; see `LoadedUnit::content_hash`)
//! and the caller hands both maps of those hashes in;
//! this module only compares the hash strings, so it is trivially testable and costs
//! O(n) over two sorted maps.

use std::collections::BTreeMap;

/// The outcome of comparing two unit sets. Every list is sorted by unit name and each unit
/// name appears in exactly one list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitDiff {
    /// In `new` only: to be started.
    pub added: Vec<String>,
    /// In `old` only: to be stopped.
    pub removed: Vec<String>,
    /// In both with a different hash: to be restarted.
    pub changed: Vec<String>,
    /// In both with the same hash: must not be touched (its pid must not change).
    pub unchanged: Vec<String>,
}

impl UnitDiff {
    /// True when applying the new set would start, stop or restart nothing.
    pub fn is_noop(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// Compares `old` (the applied set) with `new` (the candidate set), both mapping a unit name
/// to its effective-content hash.
pub fn diff(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> UnitDiff {
    let mut out = UnitDiff::default();
    // Both maps iterate in key order, so a merge walk keeps every output list sorted.
    let mut a = old.iter().peekable();
    let mut b = new.iter().peekable();
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some((name, _)), None) => {
                out.removed.push((*name).clone());
                a.next();
            }
            (None, Some((name, _))) => {
                out.added.push((*name).clone());
                b.next();
            }
            (Some((old_name, old_hash)), Some((new_name, new_hash))) => {
                match old_name.cmp(new_name) {
                    std::cmp::Ordering::Less => {
                        out.removed.push((*old_name).clone());
                        a.next();
                    }
                    std::cmp::Ordering::Greater => {
                        out.added.push((*new_name).clone());
                        b.next();
                    }
                    std::cmp::Ordering::Equal => {
                        if old_hash == new_hash {
                            out.unchanged.push((*new_name).clone());
                        } else {
                            out.changed.push((*new_name).clone());
                        }
                        a.next();
                        b.next();
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(items: &[(&str, &str)]) -> BTreeMap<String, String> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn classifies_every_unit_once_and_sorted() {
        let old = map(&[
            ("a.service", "1"),
            ("b.service", "2"),
            ("c.service", "3"),
            ("e.service", "5"),
        ]);
        let new = map(&[
            ("b.service", "2"),
            ("c.service", "33"),
            ("d.service", "4"),
            ("e.service", "5"),
            ("f.service", "6"),
        ]);
        let d = diff(&old, &new);
        assert_eq!(d.added, vec!["d.service", "f.service"]);
        assert_eq!(d.removed, vec!["a.service"]);
        assert_eq!(d.changed, vec!["c.service"]);
        assert_eq!(d.unchanged, vec!["b.service", "e.service"]);
        assert!(!d.is_noop());
    }

    #[test]
    fn identical_sets_are_a_noop() {
        let old = map(&[("a.service", "1"), ("b.service", "2")]);
        let d = diff(&old, &old);
        assert!(d.is_noop());
        assert_eq!(d.unchanged, vec!["a.service", "b.service"]);
    }

    #[test]
    fn empty_old_adds_everything_and_empty_new_removes_everything() {
        let set = map(&[("a.service", "1"), ("b.service", "2")]);
        let empty = BTreeMap::new();
        assert_eq!(diff(&empty, &set).added, vec!["a.service", "b.service"]);
        assert_eq!(diff(&set, &empty).removed, vec!["a.service", "b.service"]);
    }

    proptest::proptest! {
        #[test]
        fn partitions_the_union(
            old in proptest::collection::btree_map("[a-e]{1,2}", "[xy]", 0..12),
            new in proptest::collection::btree_map("[a-e]{1,2}", "[xy]", 0..12),
        ) {
            let d = diff(&old, &new);
            let mut all: Vec<String> = d.added.iter().chain(&d.removed).chain(&d.changed).chain(&d.unchanged).cloned().collect();
            all.sort();
            let mut union: Vec<String> = old.keys().chain(new.keys()).cloned().collect();
            union.sort();
            union.dedup();
            proptest::prop_assert_eq!(all, union);
            for n in &d.changed { proptest::prop_assert_ne!(&old[n], &new[n]); }
            for n in &d.unchanged { proptest::prop_assert_eq!(&old[n], &new[n]); }
            for n in &d.added { proptest::prop_assert!(!old.contains_key(n)); }
            for n in &d.removed { proptest::prop_assert!(!new.contains_key(n)); }
        }
    }
}

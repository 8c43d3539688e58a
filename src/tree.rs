//! A snapshot of the files a unit set is read from: a directory on disk or a git tree.
//!
//! Both sources produce the same [`FileTree`] (`source::git` from a commit, `source::dir` from
//! a directory), so the unit loader never knows (or cares) whether it reads a commit or a
//! development directory. This module is pure data: it reads nothing itself.
//!
//! The path rules of a tree live here once: [`normalize_path`] (how a directory given by an
//! operator, e.g. `units_dir`, becomes a tree key) and [`stays_below`] (a relative name that
//! cannot leave its base: `--units-dir`-relative reads, `RuntimeDirectory=` names).

use std::collections::BTreeMap;

/// One entry of a [`FileTree`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A regular file's bytes.
    File(Vec<u8>),
    /// A symbolic link and its target as written (templates are instantiated this way).
    Symlink(String),
}

/// Files larger than this are not read: no unit, drop-in or environment file needs a
/// mebibyte, and a huge blob committed by mistake (or malice) must not cost every host
/// that follows the branch its memory and parse time.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// Files keyed by their path relative to the units directory, `/`-separated, no leading `./`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileTree {
    pub entries: BTreeMap<String, Entry>,
    /// Regular files over [`MAX_FILE_BYTES`], with their size: left out of `entries` by the
    /// readers (`source::git`, `source::dir`), so the loader reports the units they belong
    /// to as failed, naming the file.
    pub oversized: BTreeMap<String, u64>,
}

impl FileTree {
    /// Why an oversized file at `path` was not read, for a diagnostic naming it.
    pub fn oversized_error(path: &str, size: u64) -> String {
        format!(
            "{path} is {size} bytes, over the {} KiB limit for files of the unit directory; it was not read (move data out of the unit directory)",
            MAX_FILE_BYTES >> 10
        )
    }

    /// The bytes of a regular file, if the path names one.
    pub fn file(&self, path: &str) -> Option<&[u8]> {
        match self.entries.get(path) {
            Some(Entry::File(bytes)) => Some(bytes),
            _ => None,
        }
    }
}

/// A path as a tree keys it: `/`-separated, without empty or `.` components, so `.`, `./`
/// and `` name the root (`""`) and `./units/` is `units`. `..` is kept (see [`stays_below`]).
pub fn normalize_path(p: &str) -> String {
    let parts: Vec<&str> = p
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    parts.join("/")
}

/// True for a non-empty relative path without `.` or `..` components: joined to a base
/// directory, it names something below it.
pub fn stays_below(p: &str) -> bool {
    !p.is_empty() && !p.starts_with('/') && !p.split('/').any(|c| c == ".." || c == ".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_dir_is_normalised() {
        assert_eq!(normalize_path("."), "");
        assert_eq!(normalize_path("./"), "");
        assert_eq!(normalize_path(""), "");
        assert_eq!(normalize_path("./units/"), "units");
        assert_eq!(normalize_path("a//b/./c"), "a/b/c");
    }

    #[test]
    fn only_relative_paths_without_dot_components_stay_below() {
        assert!(stays_below("a"));
        assert!(stays_below("a/b"));
        for bad in ["", "/a", "..", "a/../b", "./a", "a/."] {
            assert!(!stays_below(bad), "{bad}");
        }
    }
}

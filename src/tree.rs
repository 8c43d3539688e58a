//! A snapshot of the files a unit set is read from: a directory on disk or a git tree.
//!
//! Both sources produce the same [`FileTree`], so the unit loader never knows (or cares)
//! whether it reads a commit or a development directory.

use std::collections::BTreeMap;
use std::path::Path;

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
    /// Regular files over [`MAX_FILE_BYTES`], with their size: left out of `entries`, so
    /// the loader reports the units they belong to as failed (naming the file).
    pub oversized: BTreeMap<String, u64>,
}

impl FileTree {
    /// Reads every file below `root` (recursively; symlinks are not followed but recorded).
    pub fn from_dir(root: &Path) -> std::io::Result<FileTree> {
        let mut tree = FileTree::default();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                let path = entry.path();
                let rel = match path.strip_prefix(root) {
                    Ok(rel) => rel.to_string_lossy().replace('\\', "/"),
                    Err(_) => continue,
                };
                let kind = entry.file_type()?;
                if kind.is_symlink() {
                    let target = std::fs::read_link(&path)?;
                    tree.entries
                        .insert(rel, Entry::Symlink(target.to_string_lossy().into_owned()));
                } else if kind.is_dir() {
                    if entry.file_name() != ".git" {
                        stack.push(path);
                    }
                } else if kind.is_file() {
                    let size = entry.metadata()?.len();
                    if size > MAX_FILE_BYTES {
                        tree.oversized.insert(rel, size);
                    } else {
                        tree.entries.insert(rel, Entry::File(std::fs::read(&path)?));
                    }
                }
            }
        }
        Ok(tree)
    }

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

//! A plain directory as a [`FileTree`]: `gitproc check DIR`, `gitproc daemon --dir DIR` (for
//! development) and the tests of distribution units read unit files this way. Everything a
//! commit would hold is read; `.git` directories are skipped.

use std::path::Path;

use crate::tree::{Entry, FileTree, MAX_FILE_BYTES};

/// Reads every file below `root` (recursively; symlinks are not followed but recorded).
pub fn read_tree(root: &Path) -> std::io::Result<FileTree> {
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

//! Placeholder until the state module lands.
use std::path::PathBuf;
pub fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/gitproc")
}

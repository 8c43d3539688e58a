//! `RuntimeDirectory=`, `StateDirectory=` and `LogsDirectory=`: created (with their mode
//! and owner) by the parent before each start, and the runtime ones removed once the
//! service has stopped.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::unit::model::ServiceSection;

use super::creds::Credentials;
use super::{SpawnError, SpawnRequest};

/// Base directories for `RuntimeDirectory=`, `StateDirectory=` and `LogsDirectory=`.
/// Defaults are systemd's system-service ones; tests point them at temporary directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dirs {
    pub runtime: PathBuf,
    pub state: PathBuf,
    pub logs: PathBuf,
}

impl Default for Dirs {
    fn default() -> Self {
        Dirs {
            runtime: PathBuf::from("/run"),
            state: PathBuf::from("/var/lib"),
            logs: PathBuf::from("/var/log"),
        }
    }
}

/// Creates RuntimeDirectory=/StateDirectory=/LogsDirectory= (with parents) with their mode,
/// owned by User=/Group= when set. Returns the `*_DIRECTORY` variables systemd exports.
pub(super) fn create_directories(
    req: &SpawnRequest,
    creds: Option<&Credentials>,
) -> Result<Vec<(String, String)>, SpawnError> {
    let svc = req.service;
    let owner = creds.map(|c| {
        (
            c.user.as_ref().map(|u| u.uid),
            c.gid.or(c.user.as_ref().map(|u| u.gid)),
        )
    });
    let kinds: [(&str, &str, &Path, &[String], u32); 3] = [
        (
            "RuntimeDirectory",
            "RUNTIME_DIRECTORY",
            &req.dirs.runtime,
            &svc.runtime_directory,
            svc.runtime_directory_mode,
        ),
        (
            "StateDirectory",
            "STATE_DIRECTORY",
            &req.dirs.state,
            &svc.state_directory,
            svc.state_directory_mode,
        ),
        (
            "LogsDirectory",
            "LOGS_DIRECTORY",
            &req.dirs.logs,
            &svc.logs_directory,
            svc.logs_directory_mode,
        ),
    ];
    let mut out = Vec::new();
    for (setting, var, base, names, mode) in kinds {
        if names.is_empty() {
            continue;
        }
        let mut paths = Vec::new();
        for name in names {
            if !crate::tree::stays_below(name) {
                return Err(SpawnError::setup(
                    format!("{setting}={name}"),
                    "must be a relative path without . or .. components",
                ));
            }
            let path = base.join(name);
            let err = |e: io::Error| {
                SpawnError::setup(
                    format!("{setting}={name}"),
                    format!("{}: {e}", path.display()),
                )
            };
            fs::create_dir_all(&path).map_err(err)?;
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(err)?;
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(&path, uid, gid).map_err(err)?;
            }
            paths.push(path.display().to_string());
        }
        out.push((var.to_string(), paths.join(":")));
    }
    Ok(out)
}

/// Removes a service's RuntimeDirectory= entries (systemd does this when the service
/// stops, RuntimeDirectoryPreserve=no being the default). Call once the service is fully
/// stopped. Names that would escape the base are ignored (they were never created).
pub fn remove_runtime_directories(service: &ServiceSection, dirs: &Dirs) -> io::Result<()> {
    // Deepest first, so "a/b" goes before "a".
    let mut names: Vec<&String> = service.runtime_directory.iter().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.matches('/').count()));
    for name in names {
        if !crate::tree::stays_below(name) {
            continue;
        }
        let path = dirs.runtime.join(name);
        match fs::remove_dir_all(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        }
    }
    Ok(())
}

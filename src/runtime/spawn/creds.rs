//! `User=`, `Group=` and `SupplementaryGroups=` resolved to numbers in the parent, before
//! the clone: NSS lookups allocate, read files and may talk to daemons, none of which the
//! child may do.

use std::ffi::CString;
use std::path::PathBuf;

use crate::unit::model::ServiceSection;

use super::SpawnError;

/// A resolved `User=` / `Group=` / `SupplementaryGroups=`.
#[derive(Debug, Clone)]
pub(super) struct Credentials {
    /// `Some` when User= is set.
    pub(super) user: Option<UserInfo>,
    pub(super) gid: Option<libc::gid_t>,
    /// Full supplementary group list to set (initgroups result plus SupplementaryGroups=).
    pub(super) groups: Option<Vec<libc::gid_t>>,
}

#[derive(Debug, Clone)]
pub(super) struct UserInfo {
    pub(super) name: String,
    pub(super) uid: libc::uid_t,
    pub(super) gid: libc::gid_t,
    pub(super) home: PathBuf,
    pub(super) shell: PathBuf,
}

fn lookup_user(spec: &str) -> Result<UserInfo, SpawnError> {
    let found = if let Ok(uid) = spec.parse::<u32>() {
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
    } else {
        nix::unistd::User::from_name(spec)
    };
    match found {
        Ok(Some(u)) => Ok(UserInfo {
            name: u.name,
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
            home: u.dir,
            shell: u.shell,
        }),
        Ok(None) => Err(SpawnError::setup(format!("User={spec}"), "no such user")),
        Err(e) => Err(SpawnError::setup(format!("User={spec}"), e.desc())),
    }
}

fn lookup_group(setting: &str, spec: &str) -> Result<libc::gid_t, SpawnError> {
    if let Ok(gid) = spec.parse::<u32>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(spec) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err(SpawnError::setup(
            format!("{setting}={spec}"),
            "no such group",
        )),
        Err(e) => Err(SpawnError::setup(format!("{setting}={spec}"), e.desc())),
    }
}

pub(super) fn resolve_credentials(svc: &ServiceSection) -> Result<Option<Credentials>, SpawnError> {
    if svc.user.is_none() && svc.group.is_none() && svc.supplementary_groups.is_empty() {
        return Ok(None);
    }
    let user = svc.user.as_deref().map(lookup_user).transpose()?;
    let gid = match &svc.group {
        Some(g) => Some(lookup_group("Group", g)?),
        None => user.as_ref().map(|u| u.gid),
    };
    let mut groups: Option<Vec<libc::gid_t>> = None;
    if let Some(u) = &user {
        let name = CString::new(u.name.as_bytes())
            .map_err(|_| SpawnError::setup(format!("User={}", u.name), "contains a NUL byte"))?;
        let base = gid.unwrap_or(u.gid);
        let list = nix::unistd::getgrouplist(&name, nix::unistd::Gid::from_raw(base))
            .map_err(|e| SpawnError::setup(format!("User={}", u.name), e.desc()))?;
        groups = Some(list.into_iter().map(|g| g.as_raw()).collect());
    }
    if !svc.supplementary_groups.is_empty() {
        let list = groups.get_or_insert_with(Vec::new);
        for g in &svc.supplementary_groups {
            let gid = lookup_group("SupplementaryGroups", g)?;
            if !list.contains(&gid) {
                list.push(gid);
            }
        }
    } else if groups.is_none() && gid.is_some() {
        // Group= without User=: drop the daemon's supplementary groups as systemd does.
        groups = Some(Vec::new());
    }
    Ok(Some(Credentials { user, gid, groups }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_user_is_named() {
        let svc = ServiceSection {
            user: Some("gitproc-no-such-user".into()),
            ..ServiceSection::default()
        };
        let err = resolve_credentials(&svc).expect_err("unknown user");
        assert_eq!(err.to_string(), "User=gitproc-no-such-user: no such user");
    }
}

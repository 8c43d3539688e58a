//! `state.json` on disk: recovery from truncated, corrupt, unreadable and too-new files, and
//! atomic saves that never destroy the previous file.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use gitproc::state::{
    self, LoadOutcome, Override, OverrideKind, PersistedState, StateError, UnitState,
};

fn realistic_state() -> PersistedState {
    let mut s = PersistedState::default();
    s.daemon.applied_commit = Some("0123456789abcdef0123456789abcdef01234567".into());
    s.daemon.fetched_commit = s.daemon.applied_commit.clone();
    s.daemon.poll_interval_s = Some(60);
    s.daemon.last_check = Some(1_763_891_000);
    s.daemon.next_check = Some(1_763_891_060);
    for (i, name) in ["web.service", "db.service", "worker@1.service"]
        .iter()
        .enumerate()
    {
        s.units.insert(
            (*name).to_owned(),
            UnitState {
                operator_override: (i == 1).then(|| Override {
                    kind: OverrideKind::Stopped,
                    by: "alice".into(),
                    at: 1_763_890_000,
                }),
                active_state: "active".into(),
                sub_state: "running".into(),
                result: "success".into(),
                main_pid: Some(1000 + i as i32),
                main_pid_start_time: Some(987_654 + i as u64),
                n_restarts: i as u32,
                exec_main_status: (i == 2).then_some(1),
                content_hash: Some(format!("{i:064x}")),
                commit: s.daemon.applied_commit.clone(),
                last_good_hash: Some(format!("{i:064x}")),
                last_good_commit: s.daemon.applied_commit.clone(),
                failed_hash: (i == 0).then(|| format!("{:064x}", 99)),
                failed_commit: (i == 0).then(|| "f".repeat(40)),
            },
        );
    }
    s
}

fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn missing_file_is_fresh() {
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(
        state::load(&tmp.path().join("state.json")).unwrap(),
        LoadOutcome::Fresh
    );
}

#[test]
fn saved_state_loads_back_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let path = state::state_file(tmp.path());
    let s = realistic_state();
    let stats = state::save(&path, &s).unwrap();
    assert_eq!(stats.bytes, fs::metadata(&path).unwrap().len());
    assert_eq!(state::load(&path).unwrap(), LoadOutcome::Loaded(s));
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600,
        "state file holds pids and operator names: owner only"
    );
    assert_eq!(dir_names(tmp.path()), ["state.json"], "no temp file left");
}

#[test]
fn truncated_at_every_byte_offset_is_never_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    let path = state::state_file(tmp.path());
    let full = realistic_state().to_bytes().unwrap();
    // The serialized form ends with "}\n": only the full file and the one missing the final
    // newline are complete JSON documents.
    assert_eq!(&full[full.len() - 2..], b"}\n");
    for cut in 0..=full.len() {
        fs::write(&path, &full[..cut]).unwrap();
        let outcome = match state::load(&path) {
            Ok(o) => o,
            Err(e) => panic!("truncated at {cut}/{}: unexpected error {e}", full.len()),
        };
        match outcome {
            LoadOutcome::Loaded(s) => {
                assert!(
                    cut >= full.len() - 1,
                    "prefix of {cut} bytes parsed as valid"
                );
                assert_eq!(s, realistic_state());
            }
            LoadOutcome::Corrupt { moved_to, error } => {
                assert!(
                    cut < full.len() - 1,
                    "complete file at {cut} called corrupt"
                );
                assert!(
                    !path.exists(),
                    "corrupt file must be moved away (cut {cut})"
                );
                assert_eq!(fs::read(&moved_to).unwrap(), &full[..cut], "evidence kept");
                let name = moved_to.file_name().unwrap().to_string_lossy().into_owned();
                assert!(name.starts_with("state.json.corrupt-"), "{name}");
                assert!(error.contains(&*path.to_string_lossy()), "{error}");
                fs::remove_file(&moved_to).unwrap();
            }
            LoadOutcome::Fresh => panic!("existing file at cut {cut} reported as missing"),
        }
    }
}

#[test]
fn garbage_and_wrong_types_are_moved_aside() {
    let tmp = tempfile::tempdir().unwrap();
    let path = state::state_file(tmp.path());
    for bad in [
        &b"\xff\xfe\x00garbage"[..],
        b"[]",
        b"null",
        br#"{"format_version":"one"}"#,
        br#"{"format_version":1,"units":{"a.service":{"main_pid":"x"}}}"#,
        br#"{"format_version":-1}"#,
    ] {
        fs::write(&path, bad).unwrap();
        match state::load(&path).unwrap() {
            LoadOutcome::Corrupt { moved_to, .. } => {
                assert_eq!(fs::read(&moved_to).unwrap(), bad);
                fs::remove_file(moved_to).unwrap();
            }
            other => panic!("{:?} loaded as {other:?}", String::from_utf8_lossy(bad)),
        }
    }
}

#[test]
fn unreadable_state_file_is_moved_aside() {
    let tmp = tempfile::tempdir().unwrap();
    let path = state::state_file(tmp.path());
    // A directory in place of the file cannot be read, even by root.
    fs::create_dir(&path).unwrap();
    match state::load(&path).unwrap() {
        LoadOutcome::Corrupt { moved_to, error } => {
            assert!(moved_to.is_dir());
            assert!(error.contains("cannot read"), "{error}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(state::load(&path).unwrap(), LoadOutcome::Fresh);
}

#[test]
fn two_corruptions_in_one_second_keep_both_copies() {
    let tmp = tempfile::tempdir().unwrap();
    let path = state::state_file(tmp.path());
    let mut moved = Vec::new();
    for content in [b"first{".as_slice(), b"second{"] {
        fs::write(&path, content).unwrap();
        match state::load(&path).unwrap() {
            LoadOutcome::Corrupt { moved_to, .. } => moved.push(moved_to),
            other => panic!("{other:?}"),
        }
    }
    assert_ne!(moved[0], moved[1]);
    assert_eq!(fs::read(&moved[0]).unwrap(), b"first{");
    assert_eq!(fs::read(&moved[1]).unwrap(), b"second{");
}

#[test]
fn newer_format_version_is_refused_and_left_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let path = state::state_file(tmp.path());
    let newer = br#"{"format_version":7,"units":{"a.service":{"shape":"unknown"}}}"#;
    fs::write(&path, newer).unwrap();
    let err = state::load(&path).unwrap_err();
    match &err {
        StateError::TooNew {
            found, supported, ..
        } => {
            assert_eq!((*found, *supported), (7, state::FORMAT_VERSION));
        }
        other => panic!("expected TooNew, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&*path.to_string_lossy()) && msg.contains("version 7"),
        "{msg}"
    );
    assert_eq!(
        fs::read(&path).unwrap(),
        newer,
        "never overwritten or moved"
    );
    assert_eq!(dir_names(tmp.path()), ["state.json"]);
}

/// A write step that writes half of the bytes, then fails like a full disk or a bad sector.
fn failing_halfway(errno: i32) -> impl FnMut(&mut fs::File, &[u8]) -> io::Result<()> + Send {
    move |file: &mut fs::File, bytes: &[u8]| {
        file.write_all(&bytes[..bytes.len() / 2])?;
        Err(io::Error::from_raw_os_error(errno))
    }
}

#[test]
fn failed_write_keeps_previous_file_and_removes_temp() {
    for errno in [libc::ENOSPC, libc::EIO] {
        let tmp = tempfile::tempdir().unwrap();
        let path = state::state_file(tmp.path());
        let old = realistic_state();
        state::save(&path, &old).unwrap();
        let old_bytes = fs::read(&path).unwrap();

        let mut newer = old.clone();
        newer.daemon.applied_commit = Some("f".repeat(40));
        let err = state::save_with(&path, &newer, &mut failing_halfway(errno)).unwrap_err();
        match &err {
            StateError::Io {
                source, path: p, ..
            } => {
                assert_eq!(source.raw_os_error(), Some(errno));
                assert!(p.to_string_lossy().contains(".state.json.tmp-"), "{p:?}");
            }
            other => panic!("expected Io error, got {other:?}"),
        }
        assert_eq!(fs::read(&path).unwrap(), old_bytes, "previous file intact");
        assert_eq!(dir_names(tmp.path()), ["state.json"], "temp file removed");
        assert_eq!(state::load(&path).unwrap(), LoadOutcome::Loaded(old));
    }
}

#[test]
fn save_replaces_stale_temp_file_from_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let path = state::state_file(tmp.path());
    let stale = tmp
        .path()
        .join(format!(".state.json.tmp-{}", std::process::id()));
    fs::write(&stale, b"half a file").unwrap();
    state::save(&path, &realistic_state()).unwrap();
    assert_eq!(dir_names(tmp.path()), ["state.json"]);
}

#[test]
fn save_into_missing_directory_names_the_temp_file() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("nope/state.json");
    let err = state::save(&path, &realistic_state()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("nope/.state.json.tmp-"), "{msg}");
}

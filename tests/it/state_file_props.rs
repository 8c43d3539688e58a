//! Property tests for `state.json`: any state round-trips, and any corruption of a valid file
//! (byte flips, not only truncation) is survivable.

use std::collections::BTreeMap;
use std::fs;

use gitproc::state::{
    self, DaemonState, LoadOutcome, Override, OverrideKind, PersistedState, StateError, UnitState,
};
use proptest::prelude::*;

fn unit_state() -> impl Strategy<Value = UnitState> {
    (
        proptest::option::of((any::<bool>(), "[a-z]{0,8}", any::<u64>())),
        ("[a-z-]{1,12}", "[a-z-]{1,12}", "[a-z-]{1,12}"),
        (
            proptest::option::of(any::<i32>()),
            proptest::option::of(any::<u64>()),
        ),
        (any::<u32>(), proptest::option::of(any::<i32>())),
        proptest::collection::vec(proptest::option::of("[0-9a-f]{0,64}"), 6),
    )
        .prop_map(|(ovr, (a, s, r), (pid, st), (n, status), strs)| UnitState {
            operator_override: ovr.map(|(stopped, by, at)| Override {
                kind: if stopped {
                    OverrideKind::Stopped
                } else {
                    OverrideKind::Started
                },
                by,
                at,
            }),
            active_state: a,
            sub_state: s,
            result: r,
            main_pid: pid,
            main_pid_start_time: st,
            n_restarts: n,
            exec_main_status: status,
            content_hash: strs[0].clone(),
            commit: strs[1].clone(),
            last_good_hash: strs[2].clone(),
            last_good_commit: strs[3].clone(),
            failed_hash: strs[4].clone(),
            failed_commit: strs[5].clone(),
        })
}

fn persisted_state() -> impl Strategy<Value = PersistedState> {
    (
        proptest::collection::vec(proptest::option::of(any::<u64>()), 3),
        proptest::option::of("[0-9a-f]{40}"),
        proptest::collection::btree_map("[a-z@.-]{1,20}", unit_state(), 0..6),
    )
        .prop_map(
            |(nums, commit, units): (_, _, BTreeMap<_, _>)| PersistedState {
                format_version: state::FORMAT_VERSION,
                daemon: DaemonState {
                    applied_commit: commit.clone(),
                    fetched_commit: commit.clone(),
                    verified_commit: commit,
                    poll_interval_s: nums[0],
                    next_check: nums[1],
                    last_check: nums[2],
                    // Rollout facts: a pending commit and its first sighting.
                    pending_commit: nums[0].map(|n| format!("{n:040x}")),
                    pending_first_seen_ms: nums[1].map(|n| (n >> 1) as i64),
                    ..DaemonState::default()
                },
                units,
                timers: BTreeMap::new(),
                sockets: BTreeMap::new(),
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_state_round_trips_through_the_file(s in persisted_state()) {
        let tmp = tempfile::tempdir().unwrap();
        let path = state::state_file(tmp.path());
        state::save(&path, &s).unwrap();
        prop_assert_eq!(state::load(&path).unwrap(), LoadOutcome::Loaded(s));
    }

    #[test]
    fn corrupted_bytes_never_stop_the_daemon(
        s in persisted_state(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let path = state::state_file(tmp.path());
        let mut bytes = s.to_bytes().unwrap();
        for (at, byte) in flips {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        fs::write(&path, &bytes).unwrap();
        match state::load(&path) {
            Ok(LoadOutcome::Fresh) => prop_assert!(false, "existing file reported missing"),
            Ok(LoadOutcome::Loaded(_)) => prop_assert!(path.exists()),
            Ok(LoadOutcome::Corrupt { moved_to, .. }) => {
                prop_assert!(!path.exists());
                prop_assert_eq!(fs::read(moved_to).unwrap(), bytes);
            }
            // A flip inside the version number can make it larger: refused, file untouched.
            Err(StateError::TooNew { .. }) => prop_assert_eq!(fs::read(&path).unwrap(), bytes),
            Err(e) => prop_assert!(false, "unexpected error: {}", e),
        }
    }
}

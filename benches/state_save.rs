//! One save of 1,000 services' state: serialize + temp file + write + fsync + rename + fsync
//! of the directory. Target: under 5 ms. Prints the file size per service once.
//!
//! Run: `cargo bench --bench state_save`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use gitproc::state::{self, Override, OverrideKind, PersistedState, UnitState};

/// A typical busy state: every unit running with a pid, start time, hashes and commits; some
/// restarted, some with an operator override or a last exit status.
fn state_of(n: usize) -> PersistedState {
    let commit = "3f9a1c0d2b7e4f6a8c1d3e5f7a9b0c2d4e6f8a1b".to_owned();
    let mut s = PersistedState::default();
    s.daemon.applied_commit = Some(commit.clone());
    s.daemon.fetched_commit = Some(commit.clone());
    s.daemon.verified_commit = Some(commit.clone());
    s.daemon.poll_interval_s = Some(60);
    s.daemon.last_check = Some(1_763_891_000);
    s.daemon.next_check = Some(1_763_891_060);
    for i in 0..n {
        let hash = format!("{:064x}", (i as u128) * 0x9e37_79b9_7f4a_7c15);
        s.units.insert(
            format!("service-{i:04}.service"),
            UnitState {
                operator_override: (i % 50 == 0).then(|| Override {
                    kind: OverrideKind::Stopped,
                    by: "operator".into(),
                    at: 1_763_800_000,
                }),
                active_state: "active".into(),
                sub_state: "running".into(),
                result: "success".into(),
                main_pid: Some(10_000 + i as i32),
                main_pid_start_time: Some(1_234_567 + i as u64),
                n_restarts: (i % 7) as u32,
                exec_main_status: (i % 10 == 0).then_some(1),
                content_hash: Some(hash.clone()),
                commit: Some(commit.clone()),
                last_good_hash: Some(hash),
                last_good_commit: Some(commit.clone()),
                failed_hash: None,
                failed_commit: None,
            },
        );
    }
    s
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir for the bench");
    let path = state::state_file(dir.path());
    let s = state_of(1000);
    let bytes = s.to_bytes().expect("encode").len();
    println!(
        "state_save: 1000 services -> {bytes} bytes ({} bytes/service) in {}",
        bytes / 1000,
        dir.path().display()
    );
    c.bench_function("save 1000 services (serialize + atomic fsync write)", |b| {
        b.iter(|| state::save(black_box(&path), black_box(&s)).expect("save"))
    });
    // The same save on tmpfs, where fsync is free: the cost of gitproc's own work (serialize,
    // write, rename), separated from the disk's flush latency.
    if let Ok(shm) = tempfile::tempdir_in("/dev/shm") {
        let shm_path = state::state_file(shm.path());
        c.bench_function("save 1000 services to tmpfs (no flush cost)", |b| {
            b.iter(|| state::save(black_box(&shm_path), black_box(&s)).expect("save"))
        });
    }
    c.bench_function("serialize 1000 services only", |b| {
        b.iter(|| black_box(&s).to_bytes().expect("encode"))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

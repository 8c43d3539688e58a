//! Costs of the git source on the hot path of a sync:
//! - `unchanged_check_local`: one ref advertisement against a local bare remote (what every
//!   quiet poll costs), and `unchanged_check_http` against `git http-backend` on 127.0.0.1;
//! - `ref_update_to_checked_local`: a ref of a local repository moves; inotify wake-up plus
//!   the check that fetches the new tip into the mirror (the local fast path, minus parsing);
//! - `read_units_1000`: reading a tree of 1,000 unit files from the mirror;
//! - `read_hash_diff_1000`: reading the new tip's 1,000 files, hashing them and diffing the
//!   result against the previous unit set (the work done per new commit, minus parsing).
//!
//! Run: `cargo bench --bench diff`.

#[path = "../tests/it/support/git_fixture.rs"]
mod git_fixture;

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use git_fixture::{GitFixture, HttpGitServer};
use gitproc::source::{GitSource, SourceConfig, diff};
use gitproc::tree::{Entry, FileTree};

const UNITS: usize = 1000;

fn unit_text(i: usize, version: u32) -> String {
    format!(
        "[Unit]\nDescription=Service number {i}\nAfter=network.target\n\n[Service]\nExecStart=/usr/bin/worker --id {i} --v {version}\nRestart=on-failure\nEnvironment=A=1 B=2\n\n[Install]\nWantedBy=multi-user.target\n"
    )
}

/// Stands in for the parser's content hash: the comparison only needs equal-iff-same-bytes.
fn hashes(tree: &FileTree) -> BTreeMap<String, String> {
    tree.entries
        .iter()
        .map(|(name, entry)| {
            let mut h = DefaultHasher::new();
            match entry {
                Entry::File(bytes) => bytes.hash(&mut h),
                Entry::Symlink(target) => target.hash(&mut h),
            }
            (name.clone(), format!("{:016x}", h.finish()))
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let fx = GitFixture::new();
    for i in 0..UNITS {
        fx.write(&format!("units/svc{i:04}.service"), &unit_text(i, 1));
    }
    let old = fx.commit("1,000 units");
    fx.write("units/svc0500.service", &unit_text(500, 2));
    let new = fx.commit("change one unit");
    let mut src = GitSource::open(SourceConfig {
        url: fx.bare.to_string_lossy().into_owned(),
        branch: Some("main".into()),
        units_dir: "units".into(),
        mirror: fx.path("state/repo.git"),
    })
    .expect("open mirror");
    assert_eq!(src.check().expect("initial fetch").tip, new);

    c.bench_function("unchanged_check_local", |b| {
        b.iter(|| {
            let outcome = src.check().expect("check");
            assert!(!outcome.fetched);
            black_box(outcome)
        })
    });

    let server = HttpGitServer::start(fx.dir.path());
    let mut http = GitSource::open(SourceConfig {
        url: server.url("remote.git"),
        branch: Some("main".into()),
        units_dir: "units".into(),
        mirror: fx.path("state/http.git"),
    })
    .expect("open mirror");
    assert_eq!(http.check().expect("initial fetch over HTTP").tip, new);
    c.bench_function("unchanged_check_http", |b| {
        b.iter(|| {
            let outcome = http.check().expect("check over HTTP");
            assert!(!outcome.fetched);
            black_box(outcome)
        })
    });
    drop(http);
    drop(server);

    // The local fast path: a ref moves (written like git does: lock file + rename), inotify
    // wakes us, and the check picks the new tip up. Alternates between the last two commits.
    let (tx, rx) = crossbeam_channel::bounded(1);
    let _watcher = gitproc::source::watch(&fx.bare, tx).expect("watch the bare remote");
    let ref_path = fx.bare.join("refs/heads/main");
    let mut flip = false;
    c.bench_function("ref_update_to_checked_local", |b| {
        b.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..iters {
                flip = !flip;
                let target = if flip { &old } else { &new };
                while rx.try_recv().is_ok() {}
                let lock = fx.bare.join("refs/heads/main.lock");
                std::fs::write(&lock, format!("{target}\n")).expect("write ref lock");
                let start = std::time::Instant::now();
                std::fs::rename(&lock, &ref_path).expect("move ref into place");
                rx.recv_timeout(std::time::Duration::from_secs(5))
                    .expect("inotify wake-up");
                let outcome = src.check().expect("check");
                total += start.elapsed();
                assert_eq!(&outcome.tip, target);
            }
            total
        })
    });
    std::fs::write(&ref_path, format!("{new}\n")).expect("restore ref");
    src.check().expect("check");

    c.bench_function("read_units_1000", |b| {
        b.iter(|| {
            let tree = src.read_units(black_box(&new)).expect("read");
            assert_eq!(tree.entries.len(), UNITS);
            tree
        })
    });

    let old_set = hashes(&src.read_units(&old).expect("read old"));
    c.bench_function("read_hash_diff_1000", |b| {
        b.iter(|| {
            let tree = src.read_units(black_box(&new)).expect("read");
            let d = diff(&old_set, &hashes(&tree));
            assert_eq!(d.changed, vec!["svc0500.service".to_string()]);
            d
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);

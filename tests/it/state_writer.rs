//! The batched state writer: bursts of changes become few saves, forced saves are on disk
//! before `flush` returns, shutdown leaves the final state on disk, failures keep the old file.

use std::fs;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gitproc::state::{
    self, LoadOutcome, PersistedState, StateError, StateWriter, UnitState, WriteStep, WriterConfig,
};

fn state_with_restarts(n: u32) -> PersistedState {
    let mut s = PersistedState::default();
    s.units.insert(
        "web.service".into(),
        UnitState {
            n_restarts: n,
            ..UnitState::default()
        },
    );
    s
}

/// A write step that really writes and records when each save happened.
fn recording_step(log: Arc<Mutex<Vec<Instant>>>) -> Box<dyn WriteStep> {
    Box::new(move |f: &mut fs::File, b: &[u8]| {
        log.lock().unwrap().push(Instant::now());
        f.write_all(b)
    })
}

fn loaded(path: &std::path::Path) -> PersistedState {
    match state::load(path).unwrap() {
        LoadOutcome::Loaded(s) => s,
        other => panic!(
            "expected a saved state at {}, got {other:?}",
            path.display()
        ),
    }
}

/// Submits `n` states spread evenly over `over`, returning the last one.
fn burst(w: &StateWriter, n: u32, over: Duration) -> PersistedState {
    let start = Instant::now();
    for i in 1..=n {
        w.submit(state_with_restarts(i));
        // Pace the submissions (this is the workload, not a wait for a result).
        let target = start + over * i / n;
        if let Some(d) = target.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    state_with_restarts(n)
}

#[test]
fn thousand_changes_in_one_second_make_one_save_with_default_timing() {
    let tmp = tempfile::tempdir().unwrap();
    let path = state::state_file(tmp.path());
    let log = Arc::new(Mutex::new(Vec::new()));
    let w = StateWriter::spawn_with(
        path.clone(),
        WriterConfig::default(),
        recording_step(log.clone()),
    )
    .unwrap();
    let started = Instant::now();
    let last = burst(&w, 1000, Duration::from_secs(1));
    let elapsed = started.elapsed();
    // Even on a loaded machine the burst stays far below the 5 s interval, so one save is exact.
    assert!(elapsed < Duration::from_secs(4), "burst took {elapsed:?}");
    let stats = w.stats();
    assert_eq!(stats.submits, 1000);
    assert_eq!(
        stats.saves, 1,
        "1,000 changes within 1 s (< 2 s min gap, < 5 s interval) must cost one save"
    );
    w.shutdown().unwrap();
    assert_eq!(loaded(&path), last, "final state on disk after shutdown");
    assert_eq!(
        log.lock().unwrap().len(),
        2,
        "one unforced save + the shutdown save"
    );
}

#[test]
fn saves_during_a_long_burst_are_spaced_by_the_interval() {
    let tmp = tempfile::tempdir().unwrap();
    let path = state::state_file(tmp.path());
    let log = Arc::new(Mutex::new(Vec::new()));
    let cfg = WriterConfig {
        interval: Duration::from_millis(500),
        min_gap: Duration::from_millis(200),
    };
    let w = StateWriter::spawn_with(path.clone(), cfg, recording_step(log.clone())).unwrap();
    let last = burst(&w, 1000, Duration::from_millis(1600));
    let unforced = log.lock().unwrap().clone();
    w.shutdown().unwrap();
    assert_eq!(loaded(&path), last);

    // 1.6 s of changes: a save at once, then one per 500 ms: 4 at most (t = 0, .5, 1, 1.5).
    assert!(
        (2..=4).contains(&unforced.len()),
        "{} unforced saves in 1.6 s with a 500 ms interval",
        unforced.len()
    );
    let slack = Duration::from_millis(15);
    for pair in unforced.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap + slack >= cfg.interval, "two saves only {gap:?} apart");
    }
}

#[test]
fn min_gap_holds_even_when_interval_is_shorter() {
    let tmp = tempfile::tempdir().unwrap();
    let path = state::state_file(tmp.path());
    let log = Arc::new(Mutex::new(Vec::new()));
    let cfg = WriterConfig {
        interval: Duration::from_millis(20),
        min_gap: Duration::from_millis(300),
    };
    let w = StateWriter::spawn_with(path.clone(), cfg, recording_step(log.clone())).unwrap();
    burst(&w, 500, Duration::from_millis(1000));
    let unforced = log.lock().unwrap().clone();
    drop(w);
    assert!(
        unforced.len() >= 2,
        "expected several saves, got {}",
        unforced.len()
    );
    assert!(
        unforced.len() <= 4,
        "{} saves in 1 s with a 300 ms gap",
        unforced.len()
    );
    for pair in unforced.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap + Duration::from_millis(15) >= cfg.min_gap,
            "two unforced saves only {gap:?} apart"
        );
    }
}

#[test]
fn flush_writes_now_and_returns_after_the_state_is_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let path = state::state_file(tmp.path());
    let hour = Duration::from_secs(3600);
    let w = StateWriter::spawn(
        path.clone(),
        WriterConfig {
            interval: hour,
            min_gap: hour,
        },
    )
    .unwrap();
    // The first submit is saved at once; wait for it so the next one is held back by the
    // (one hour) interval.
    w.submit(state_with_restarts(1));
    let deadline = Instant::now() + Duration::from_secs(10);
    while w.stats().saves < 1 {
        assert!(
            Instant::now() < deadline,
            "first save did not happen within 10 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    w.submit(state_with_restarts(2));
    assert_eq!(
        loaded(&path),
        state_with_restarts(1),
        "held back by the interval"
    );
    w.flush().unwrap();
    assert_eq!(
        loaded(&path),
        state_with_restarts(2),
        "forced save bypasses the interval"
    );
    let stats = w.stats();
    assert_eq!((stats.saves, stats.forced_saves), (2, 1));
    assert!(stats.last_bytes.unwrap() > 0 && stats.last_duration.is_some());

    // Nothing pending: flush is a no-op that still succeeds.
    w.flush().unwrap();
    assert_eq!(w.stats().saves, 2);
    w.shutdown().unwrap();
}

#[test]
fn dropping_the_writer_saves_pending_state() {
    let tmp = tempfile::tempdir().unwrap();
    let path = state::state_file(tmp.path());
    let hour = Duration::from_secs(3600);
    let w = StateWriter::spawn(
        path.clone(),
        WriterConfig {
            interval: hour,
            min_gap: hour,
        },
    )
    .unwrap();
    w.submit(state_with_restarts(1));
    w.flush().unwrap();
    w.submit(state_with_restarts(9));
    drop(w);
    assert_eq!(loaded(&path), state_with_restarts(9));
}

#[test]
fn failed_saves_keep_the_old_file_report_and_retry() {
    let tmp = tempfile::tempdir().unwrap();
    let path = state::state_file(tmp.path());
    state::save(&path, &state_with_restarts(1)).unwrap();
    let old_bytes = fs::read(&path).unwrap();

    // Fails (ENOSPC after a partial write) while `full` is set.
    let full = Arc::new(Mutex::new(true));
    let step = {
        let full = full.clone();
        move |f: &mut fs::File, b: &[u8]| {
            if *full.lock().unwrap() {
                f.write_all(&b[..b.len() / 2])?;
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            f.write_all(b)
        }
    };
    let cfg = WriterConfig {
        interval: Duration::from_millis(50),
        min_gap: Duration::from_millis(10),
    };
    let w = StateWriter::spawn_with(path.clone(), cfg, Box::new(step)).unwrap();
    w.submit(state_with_restarts(2));
    let err = w.flush().unwrap_err();
    assert!(
        matches!(&err, StateError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC)),
        "{err:?}"
    );
    assert_eq!(fs::read(&path).unwrap(), old_bytes, "previous file intact");
    let names: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["state.json"], "temp file removed");
    let stats = w.stats();
    assert!(
        stats.failures >= 1 && stats.last_error.is_some(),
        "{stats:?}"
    );

    // Space comes back: the pending state is retried without a new submit.
    *full.lock().unwrap() = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while w.stats().saves < 1 {
        assert!(
            Instant::now() < deadline,
            "failed save was not retried within 10 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(loaded(&path), state_with_restarts(2));
    assert_eq!(w.stats().last_error, None);
    w.shutdown().unwrap();
}

#[test]
fn flush_reports_a_dead_writer_instead_of_hanging() {
    let tmp = tempfile::tempdir().unwrap();
    let path = state::state_file(tmp.path());
    let step = |_: &mut fs::File, _: &[u8]| -> io::Result<()> { panic!("simulated writer bug") };
    let w = StateWriter::spawn_with(path, WriterConfig::default(), Box::new(step)).unwrap();
    w.submit(state_with_restarts(1));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match w.flush() {
            Err(StateError::WriterGone) => break,
            // The flush raced ahead of the first save (nothing pending yet): try again.
            Ok(()) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
        assert!(
            Instant::now() < deadline,
            "writer death was not reported within 10 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(w);
}

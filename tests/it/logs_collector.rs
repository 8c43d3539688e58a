//! The log collector with real pipes and processes: backpressure, rotation, disk full.

use std::fs;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use crate::runtime_support::{Guard, exec, sh, wait_exit, wait_for};
use gitproc::logs::{self, LogCollector, LogConfig, Stream, rotate::log_path};
use gitproc::runtime::{self, Dirs, SpawnRequest};
use gitproc::unit::model::ServiceSection;

fn pipe() -> (OwnedFd, fs::File) {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
    (r, fs::File::from(w))
}

fn last_line(dir: &std::path::Path, unit: &str) -> Option<String> {
    logs::tail(dir, unit, 1).ok()?.pop()
}

/// Strips and checks the `YYYY-MM-DDTHH:MM:SS.mmmZ ` prefix.
fn body(line: &str) -> &str {
    let (ts, rest) = line.split_once(' ').expect("timestamp prefix");
    assert_eq!(ts.len(), 24, "{ts}");
    assert!(
        ts.ends_with('Z') && ts.as_bytes()[10] == b'T' && ts.as_bytes()[19] == b'.',
        "{ts}"
    );
    rest
}

#[test]
fn service_output_and_notes_arrive_with_timestamps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = LogCollector::start(LogConfig::new(dir.path())).expect("collector");
    let mut guard = Guard::new();
    let svc = ServiceSection::default();
    let dirs = Dirs::default();
    let cmd = sh("echo out; echo err >&2; printf 'no newline'");
    let req = SpawnRequest::new("echo.service", &cmd, &svc, "id", &dirs);
    let s = runtime::spawn(&req).expect("spawn");
    guard.track(s.pid);
    assert!(
        s.stderr.is_none(),
        "stderr shares the stdout pipe by default"
    );
    collector
        .add("echo.service", s.stdout.expect("stdout"), Stream::Stdout)
        .expect("add");
    wait_exit(s.pid, 10);
    wait_for(10, "the partial last line to be flushed at EOF", || {
        (last_line(dir.path(), "echo.service").as_deref().map(body) == Some("no newline"))
            .then_some(())
    });
    collector
        .note("echo.service", "exec failed: /x: No such file or directory")
        .expect("note");
    collector.barrier().expect("barrier");
    let lines = logs::tail(dir.path(), "echo.service", 10).expect("tail");
    let bodies: Vec<&str> = lines.iter().map(|l| body(l)).collect();
    assert_eq!(
        bodies,
        vec![
            "out",
            "err",
            "no newline",
            "exec failed: /x: No such file or directory"
        ]
    );
}

#[test]
fn a_flooding_service_does_not_delay_another() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = LogConfig {
        dir: dir.path().to_path_buf(),
        max_bytes: 1 << 20,
        keep: 2,
        ..LogConfig::new(dir.path())
    };
    let collector = LogCollector::start(cfg).expect("collector");
    let mut guard = Guard::new();
    let svc = ServiceSection::default();
    let dirs = Dirs::default();
    let cmd = exec(&["/usr/bin/yes", "flood"]);
    let req = SpawnRequest::new("flood.service", &cmd, &svc, "id", &dirs);
    let s = runtime::spawn(&req).expect("spawn yes");
    guard.track(s.pid);
    collector
        .add("flood.service", s.stdout.expect("stdout"), Stream::Stdout)
        .expect("add flood");
    // Wait until the flood has rotated at least once: the collector is busy with it.
    wait_for(30, "the flood to rotate", || {
        log_path(dir.path(), "flood.service", 1)
            .exists()
            .then_some(())
    });

    let (r, mut quiet) = pipe();
    collector
        .add("quiet.service", r, Stream::Stdout)
        .expect("add quiet");
    let mut worst = Duration::ZERO;
    for i in 0..20 {
        let t = Instant::now();
        writeln!(quiet, "line {i}").expect("write quiet");
        let want = format!("line {i}");
        wait_for(5, &format!("quiet line {i} despite the flood"), || {
            (last_line(dir.path(), "quiet.service").as_deref().map(body) == Some(want.as_str()))
                .then_some(())
        });
        worst = worst.max(t.elapsed());
    }
    println!("worst quiet-line latency during a flood: {worst:?}");
    assert!(
        worst < Duration::from_millis(500),
        "worst latency {worst:?}"
    );
    assert!(
        !log_path(dir.path(), "flood.service", 3).exists(),
        "only 2 rotated files are kept"
    );
    for g in 0..=2 {
        if let Ok(m) = fs::metadata(log_path(dir.path(), "flood.service", g)) {
            assert!(m.len() <= 1 << 20, "generation {g} is {} bytes", m.len());
        }
    }
    assert_eq!(
        collector.dropped_lines("flood.service"),
        0,
        "backpressure, not loss"
    );
}

#[test]
fn rotation_happens_at_the_size_limit_and_keeps_n_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = LogConfig {
        dir: dir.path().to_path_buf(),
        max_bytes: 1000,
        keep: 3,
        ..LogConfig::new(dir.path())
    };
    let collector = LogCollector::start(cfg).expect("collector");
    let (r, mut w) = pipe();
    collector
        .add("rot.service", r, Stream::Stdout)
        .expect("add");
    // Each logged line: 24-byte timestamp + space + 25 bytes + newline = 51 bytes;
    // 19 lines (969 bytes) fit in 1000.
    for i in 0..200 {
        writeln!(w, "{i:025}").expect("write");
    }
    drop(w);
    wait_for(10, "the last line", || {
        (last_line(dir.path(), "rot.service").as_deref().map(body)
            == Some(format!("{:025}", 199).as_str()))
        .then_some(())
    });
    for g in 1..=3 {
        let len = fs::metadata(log_path(dir.path(), "rot.service", g))
            .expect("rotated file")
            .len();
        assert_eq!(len, 19 * 51, "generation {g} is full up to the limit");
    }
    assert!(!log_path(dir.path(), "rot.service", 4).exists());
    let all = logs::tail(dir.path(), "rot.service", 1000).expect("tail");
    let live = 200 % 19;
    assert_eq!(all.len(), 3 * 19 + live);
    assert_eq!(body(&all[0]), format!("{:025}", 200 - all.len()));
}

#[test]
fn disk_full_drops_are_counted_and_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = LogCollector::start(LogConfig::new(dir.path())).expect("collector");
    let path = log_path(dir.path(), "full.service", 0);
    std::os::unix::fs::symlink("/dev/full", &path).expect("symlink to /dev/full");
    let (r, mut w) = pipe();
    collector
        .add("full.service", r, Stream::Stdout)
        .expect("add");
    w.write_all(b"one\ntwo\nthree\n").expect("write");
    wait_for(10, "three dropped lines", || {
        (collector.dropped_lines("full.service") == 3).then_some(())
    });
    fs::remove_file(&path).expect("free the 'disk'");
    w.write_all(b"four\n").expect("write");
    wait_for(10, "logging to resume", || {
        (last_line(dir.path(), "full.service").as_deref().map(body) == Some("four")).then_some(())
    });
    let lines = logs::tail(dir.path(), "full.service", 10).expect("tail");
    let bodies: Vec<&str> = lines.iter().map(|l| body(l)).collect();
    assert_eq!(bodies, vec!["gitproc: 3 lines dropped (disk full)", "four"]);
}

#[test]
fn a_flood_is_held_to_the_rate_by_backpressure_without_loss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rate: u64 = 64 << 10;
    let cfg = LogConfig {
        max_bytes: 64 << 20,
        keep: 1,
        rate_bytes_per_s: rate,
        ..LogConfig::new(dir.path())
    };
    let collector = LogCollector::start(cfg).expect("collector");
    let mut guard = Guard::new();
    let svc = ServiceSection::default();
    let dirs = Dirs::default();
    let cmd = exec(&["/usr/bin/yes"]);
    let req = SpawnRequest::new("flood.service", &cmd, &svc, "id", &dirs);
    let s = runtime::spawn(&req).expect("spawn yes");
    guard.track(s.pid);
    let started = Instant::now();
    collector
        .add("flood.service", s.stdout.expect("stdout"), Stream::Stdout)
        .expect("add");
    wait_for(10, "the flood's first lines", || {
        fs::metadata(log_path(dir.path(), "flood.service", 0))
            .ok()
            .filter(|m| m.len() > 0)
    });
    std::thread::sleep(Duration::from_secs(3));
    collector.barrier().expect("barrier");
    let secs = started.elapsed().as_secs() + 1;
    let written = fs::metadata(log_path(dir.path(), "flood.service", 0))
        .expect("flood log")
        .len();
    // Per window: the rate plus at most one read (<= rate bytes of input, each 2-byte
    // line growing by its 25-byte timestamp) over it. Unthrottled, `yes` writes hundreds
    // of MB in these seconds.
    let bound = secs * (rate + rate * 27 / 2);
    assert!(
        written <= bound,
        "{written} bytes in ~{secs} s, bound {bound}"
    );
    assert!(
        written >= rate,
        "the flood is still logged: {written} bytes"
    );
    assert_eq!(
        collector.dropped_lines("flood.service"),
        0,
        "nothing dropped"
    );
}

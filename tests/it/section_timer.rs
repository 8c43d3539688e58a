//! `.timer` units end to end (systemd.timer(5)): a real daemon on a real git repository,
//! oneshot services that append a timestamp to a file per run, and the timing checked from
//! those timestamps. Plus the `[Timer]` loader (keys, drop-ins, templates, errors).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gitproc::tree::{Entry, FileTree};
use gitproc::unit::SpecifierContext;
use gitproc::unit::load::load_timers;

use crate::support::{Daemon, Repo, wait_for};

/// A oneshot that appends the time of each run (seconds since the epoch) to `file`.
fn job(file: &Path) -> String {
    format!(
        "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'date +%%s.%%N >> {}'\n",
        file.display()
    )
}

fn runs(file: &Path) -> Vec<f64> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn runs_file(repo: &Repo) -> PathBuf {
    // Outside the repository's tree (the daemon reads committed trees only anyway).
    repo.path().with_extension("runs")
}

/// `YYYY-MM-DD HH:MM:SS UTC` for `secs` from now, rounded up to a whole second.
fn calendar_in(secs: u64) -> (String, f64) {
    let at = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(secs as i64 + 1))
        .unwrap();
    let whole = jiff::Timestamp::from_second(at.as_second()).unwrap();
    (
        whole.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        whole.as_second() as f64,
    )
}

fn timer_row(daemon: &Daemon, name: &str) -> serde_json::Value {
    daemon.unit(name)
}

#[test]
fn on_calendar_every_2s_runs_the_oneshot_every_2s() {
    let repo = Repo::new();
    let file = runs_file(&repo);
    let _ = std::fs::remove_file(&file);
    repo.write("tick.service", &job(&file));
    repo.write(
        "tick.timer",
        "[Timer]\nOnCalendar=*:*:0/2\nAccuracySec=1ms\n",
    );
    repo.commit("a timer every 2 s");
    let daemon = Daemon::start(repo.path(), &[]);
    let t = wait_for("4 runs", Duration::from_secs(15), || {
        let r = runs(&file);
        (r.len() >= 4).then_some(r)
    });
    for w in t.windows(2).skip(t.len() - 3) {
        let gap = w[1] - w[0];
        assert!((gap - 2.0).abs() <= 0.3, "runs {t:?}: gap {gap}");
    }
    // Each run is on an even second (the calendar), not 2 s after the previous one.
    let last = t[t.len() - 1];
    let off = last - (last / 2.0).floor() * 2.0;
    assert!(off < 0.3, "run at {last} is {off}s after an even second");
    let row = timer_row(&daemon, "tick.timer");
    assert_eq!(row["active_state"], "active", "{row:#}");
    assert_eq!(row["triggers"], "tick.service", "{row:#}");
    assert!(row["last_trigger"].as_f64().is_some(), "{row:#}");
}

#[test]
fn the_commit_does_not_start_a_timer_activated_service_and_list_timers_shows_it() {
    let repo = Repo::new();
    let file = runs_file(&repo);
    let _ = std::fs::remove_file(&file);
    repo.write("report.service", &job(&file));
    repo.write(
        "report.timer",
        "[Unit]\nDescription=nightly report\n[Timer]\nOnActiveSec=1h\n",
    );
    repo.commit("an hourly report");
    let daemon = Daemon::start(repo.path(), &[]);
    let row = daemon.wait_unit("report.timer", "waiting", |u| u["sub_state"] == "waiting");
    let next = row["next_elapse"].as_f64().expect("next elapse");
    let left = next - now_secs();
    assert!(left > 3500.0 && left <= 3600.0 + 60.0, "{row:#}");
    let svc = daemon.unit("report.service");
    assert_eq!(
        svc["active_state"], "inactive",
        "not started by the commit: {svc:#}"
    );
    assert!(runs(&file).is_empty());

    let out = daemon.cli_ok(&["list-timers"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    for col in ["NEXT", "LEFT", "LAST", "PASSED", "UNIT", "ACTIVATES"] {
        assert!(header.contains(col), "{text}");
    }
    let row_line = lines.next().unwrap_or_default();
    assert!(
        row_line.contains("report.timer") && row_line.contains("report.service"),
        "{text}"
    );
    assert!(row_line.contains("left"), "{text}");
    assert!(text.contains("1 timers listed."), "{text}");

    let out = daemon.cli_ok(&["list-timers", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(rows[0]["unit"], "report.timer", "{rows:#}");
    assert_eq!(rows[0]["activates"], "report.service", "{rows:#}");
    assert!(rows[0]["last"].is_null(), "{rows:#}");

    // status of a timer: exit 0 (active); an unknown timer: exit 4.
    let out = daemon.cli(&["status", "report.timer"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Triggers: ● report.service"), "{text}");
    assert!(text.contains("active (waiting)"), "{text}");
    let out = daemon.cli(&["status", "nope.timer"]);
    assert_eq!(out.status.code(), Some(4));
    // list has the timer's own row.
    let out = daemon.cli_ok(&["list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.contains("report.timer") && l.contains("active") && l.contains("waiting")),
        "{text}"
    );

    // Operator stop holds the timer (no next elapse), start releases it.
    daemon.cli_ok(&["stop", "report.timer"]);
    let row = daemon.unit("report.timer");
    assert_eq!(row["active_state"], "inactive", "{row:#}");
    assert_eq!(row["override"], "stopped", "{row:#}");
    assert!(row["next_elapse"].is_null(), "{row:#}");
    let out = daemon.cli_ok(&["list-timers"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 timers listed."));
    let out = daemon.cli_ok(&["list-timers", "--all"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("report.timer"));
    daemon.cli_ok(&["start", "report.timer"]);
    let row = daemon.unit("report.timer");
    assert_eq!(row["sub_state"], "waiting", "{row:#}");
    assert!(row["override"].is_null(), "{row:#}");
    let out = daemon.cli(&["start", "nope.timer"]);
    assert_eq!(out.status.code(), Some(4));
}

#[test]
fn on_boot_in_the_past_fires_at_once_and_on_unit_active_repeats() {
    let repo = Repo::new();
    let boot = runs_file(&repo).with_extension("boot");
    let every = runs_file(&repo).with_extension("every");
    let _ = std::fs::remove_file(&boot);
    let _ = std::fs::remove_file(&every);
    repo.write("boot.service", &job(&boot));
    repo.write("boot.timer", "[Timer]\nOnBootSec=1s\nAccuracySec=1ms\n");
    repo.write("every.service", &job(&every));
    repo.write(
        "every.timer",
        "[Timer]\nOnActiveSec=500ms\nOnUnitActiveSec=1s\nAccuracySec=1ms\n",
    );
    repo.commit("boot and repeating timers");
    let start = now_secs();
    let daemon = Daemon::start(repo.path(), &[]);
    let b = wait_for("the OnBootSec= run", Duration::from_secs(10), || {
        let r = runs(&boot);
        (!r.is_empty()).then_some(r)
    });
    // The machine booted long before: the elapse is in the past, so it runs at once.
    assert!(
        b[0] - start < 3.0,
        "OnBootSec run at {} after start",
        b[0] - start
    );
    let e = wait_for("3 OnUnitActiveSec= runs", Duration::from_secs(10), || {
        let r = runs(&every);
        (r.len() >= 3).then_some(r)
    });
    assert!(
        e[0] - start >= 0.5,
        "OnActiveSec=500ms ran {}s after start",
        e[0] - start
    );
    for w in e.windows(2) {
        let gap = w[1] - w[0];
        assert!((gap - 1.0).abs() <= 0.3, "OnUnitActiveSec=1s runs {e:?}");
    }
    // The boot timer fired once and is elapsed (nothing more to do).
    let row = daemon.wait_unit("boot.timer", "elapsed", |u| u["sub_state"] == "elapsed");
    assert_eq!(
        row["active_state"], "active",
        "RemainAfterElapse=yes: {row:#}"
    );
    assert_eq!(runs(&boot).len(), 1);
}

#[test]
fn randomized_delay_stays_within_its_bound() {
    let repo = Repo::new();
    let file = runs_file(&repo);
    let _ = std::fs::remove_file(&file);
    repo.write("r.service", &job(&file));
    repo.write(
        "r.timer",
        "[Timer]\nOnActiveSec=1s\nRandomizedDelaySec=1s\nAccuracySec=1ms\n",
    );
    repo.commit("randomized");
    let before = now_secs();
    let daemon = Daemon::start(repo.path(), &[]);
    let applied = now_secs();
    let r = wait_for("the run", Duration::from_secs(10), || {
        let r = runs(&file);
        (!r.is_empty()).then_some(r)
    });
    assert!(
        r[0] >= before + 1.0,
        "ran {}s after the daemon started",
        r[0] - before
    );
    assert!(
        r[0] <= applied + 2.0 + 0.3,
        "ran {}s after apply",
        r[0] - applied
    );
    drop(daemon);
}

#[test]
fn a_commit_changing_on_calendar_reschedules_without_running_and_removal_stops_it() {
    let repo = Repo::new();
    let file = runs_file(&repo);
    let _ = std::fs::remove_file(&file);
    repo.write("job.service", &job(&file));
    repo.write("job.timer", "[Timer]\nOnCalendar=2098-01-01\n");
    repo.commit("far away");
    let daemon = Daemon::start(repo.path(), &[]);
    let row = daemon.wait_unit("job.timer", "waiting", |u| u["sub_state"] == "waiting");
    let first = row["next_elapse"].as_f64().unwrap();
    repo.write(
        "job.timer",
        "[Timer]\nOnCalendar=2097-01-01\nAccuracySec=1ms\n",
    );
    let c = repo.commit("sooner, still far away");
    daemon.sync_to(&c);
    let row = daemon.unit("job.timer");
    let second = row["next_elapse"].as_f64().unwrap();
    assert!(
        second < first - 86400.0 * 300.0,
        "rescheduled: {first} -> {second}"
    );
    assert!(runs(&file).is_empty(), "the change ran the job");
    assert_eq!(daemon.unit("job.service")["active_state"], "inactive");

    // Now every second, then removed: the runs stop.
    repo.write("job.timer", "[Timer]\nOnCalendar=*:*:*\nAccuracySec=1ms\n");
    let c = repo.commit("every second");
    daemon.sync_to(&c);
    wait_for("2 runs", Duration::from_secs(10), || {
        (runs(&file).len() >= 2).then_some(())
    });
    repo.remove("job.timer");
    let c = repo.commit("no more timer");
    daemon.sync_to(&c);
    assert!(daemon.unit("job.timer").is_null());
    // A run may already be under way: wait for it to end; then none for 3 s (three
    // elapses) — that window of nothing happening is what this test observes.
    wait_for(
        "job.service to finish its last run",
        Duration::from_secs(10),
        || {
            (daemon.unit("job.service")["active_state"] != "activating"
                && daemon.unit("job.service")["active_state"] != "active")
                .then_some(())
        },
    );
    let n = runs(&file).len();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(runs(&file).len(), n, "the removed timer still runs");
}

/// Runs the persistent scenario: an elapse 2-3 s ahead fires with the daemon up; a commit
/// then moves the calendar to 2-3 s ahead again, the daemon is killed before that time and
/// started again after it.
fn missed_while_down(persistent: bool) -> usize {
    let repo = Repo::new();
    let file = runs_file(&repo);
    let _ = std::fs::remove_file(&file);
    let timer = |at: &str| {
        format!(
            "[Timer]\nOnCalendar={at}\nAccuracySec=1ms\nPersistent={}\n",
            if persistent { "yes" } else { "no" }
        )
    };
    let (first, _) = calendar_in(2);
    repo.write("p.service", &job(&file));
    repo.write("p.timer", &timer(&first));
    repo.commit("one run soon");
    let mut daemon = Daemon::start(repo.path(), &[]);
    wait_for("the first run", Duration::from_secs(15), || {
        (runs(&file).len() == 1).then_some(())
    });
    // 5 s: room for the sync and the kill when the machine is loaded (the full suite).
    let (second, second_at) = calendar_in(5);
    repo.write("p.timer", &timer(&second));
    let c = repo.commit("another run soon");
    daemon.sync_to(&c);
    let state = daemon.state.path().join("state.json");
    wait_for(
        "the last trigger in state.json",
        Duration::from_secs(10),
        || {
            let text = std::fs::read_to_string(&state).ok()?;
            text.contains("last_trigger_usec").then_some(())
        },
    );
    daemon.kill9();
    assert!(
        now_secs() < second_at,
        "too slow: the second elapse passed with the daemon up"
    );
    assert_eq!(runs(&file).len(), 1);
    wait_for("the second elapse to pass", Duration::from_secs(10), || {
        (now_secs() > second_at + 0.5).then_some(())
    });
    daemon.restart();
    daemon.wait_unit("p.timer", "loaded", |u| u["active_state"] == "active");
    if persistent {
        wait_for("the missed run", Duration::from_secs(10), || {
            (runs(&file).len() == 2).then_some(())
        });
    }
    // Once, not more (and without Persistent=, not at all): 2 s with nothing left to run.
    std::thread::sleep(Duration::from_secs(2));
    runs(&file).len()
}

#[test]
fn persistent_runs_a_missed_elapse_once_after_start() {
    assert_eq!(missed_while_down(true), 2);
}

#[test]
fn without_persistent_a_missed_elapse_does_not_run() {
    assert_eq!(missed_while_down(false), 1);
}

// ----- the [Timer] loader -----

fn tree(files: &[(&str, &str)]) -> FileTree {
    let mut t = FileTree::default();
    for (p, c) in files {
        t.entries
            .insert((*p).into(), Entry::File(c.as_bytes().to_vec()));
    }
    t
}

#[test]
fn loader_reads_every_timer_key_with_repeats_resets_and_drop_ins() {
    let t = tree(&[
        (
            "a.timer",
            "[Timer]\nOnCalendar=daily\nOnCalendar=*:0/15\nOnBootSec=5min\nOnBootSec=10s\n\
             OnStartupSec=1h\nOnUnitActiveSec=1d\nOnUnitInactiveSec=2s\nOnActiveSec=3\n\
             AccuracySec=1ms\nRandomizedDelaySec=30s\nFixedRandomDelay=yes\nPersistent=true\n\
             RemainAfterElapse=no\nUnit=other.service\n",
        ),
        (
            "a.timer.d/10-reset.conf",
            "[Timer]\nOnBootSec=\nOnBootSec=1min\n",
        ),
    ]);
    let l = &load_timers(&t, &SpecifierContext::default())["a.timer"];
    assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
    let tm = &l.unit.as_ref().unwrap().timer;
    let s = &tm.settings;
    assert_eq!(tm.unit, "other.service");
    assert_eq!(s.on_calendar.len(), 2);
    assert_eq!(s.on_calendar[1].to_string(), "*-*-* *:00/15:00");
    assert_eq!(s.on_boot_sec, vec![Duration::from_secs(60)]);
    assert_eq!(s.on_startup_sec, vec![Duration::from_secs(3600)]);
    assert_eq!(s.on_unit_active_sec, vec![Duration::from_secs(86400)]);
    assert_eq!(s.on_unit_inactive_sec, vec![Duration::from_secs(2)]);
    assert_eq!(s.on_active_sec, vec![Duration::from_secs(3)]);
    assert_eq!(s.accuracy, Duration::from_millis(1));
    assert_eq!(s.randomized_delay, Duration::from_secs(30));
    assert!(s.fixed_random_delay && s.persistent && !s.remain_after_elapse);
}

#[test]
fn loader_defaults_unit_to_the_service_of_the_same_name_also_for_instances() {
    let mut t = tree(&[
        ("plain.timer", "[Timer]\nOnCalendar=hourly\n"),
        ("backup@.timer", "[Timer]\nOnCalendar=daily\n"),
    ]);
    t.entries.insert(
        "backup@db.timer".into(),
        Entry::Symlink("backup@.timer".into()),
    );
    let all = load_timers(&t, &SpecifierContext::default());
    let unit = |n: &str| all[n].unit.as_ref().unwrap().timer.unit.clone();
    assert_eq!(unit("plain.timer"), "plain.service");
    assert_eq!(unit("backup@db.timer"), "backup@db.service");
    assert!(
        !all.contains_key("backup@.timer"),
        "templates load through instances"
    );
}

#[test]
fn loader_errors_name_file_and_line() {
    let t = tree(&[
        (
            "bad.timer",
            "[Timer]\nOnCalendar=daily\nOnCalendar=*-*-* 25:00\n",
        ),
        (
            "empty.timer",
            "[Unit]\nDescription=x\n[Timer]\nPersistent=yes\n",
        ),
        (
            "wake.timer",
            "[Timer]\nOnCalendar=daily\nWakeSystem=yes\n[Service]\nExecStart=/bin/x\n",
        ),
        (
            "self.timer",
            "[Timer]\nOnCalendar=daily\nUnit=other.timer\n",
        ),
    ]);
    let all = load_timers(&t, &SpecifierContext::default());
    let d = |n: &str| {
        all[n]
            .diagnostics
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(all["bad.timer"].unit.is_none());
    assert!(
        d("bad.timer").contains("bad.timer:3:") && d("bad.timer").contains("hour 25"),
        "{}",
        d("bad.timer")
    );
    assert!(all["empty.timer"].unit.is_none());
    assert!(
        d("empty.timer").contains("empty.timer:3:") && d("empty.timer").contains("no trigger"),
        "{}",
        d("empty.timer")
    );
    // WakeSystem= and a [Service] section in a timer: warnings, the timer loads.
    assert!(all["wake.timer"].unit.is_some());
    assert!(
        d("wake.timer").contains("wake.timer:3:") && d("wake.timer").contains("not enforced"),
        "{}",
        d("wake.timer")
    );
    assert!(
        d("wake.timer").contains("unknown section [Service] in a .timer unit"),
        "{}",
        d("wake.timer")
    );
    assert!(
        d("self.timer").contains("self.timer:3:") && d("self.timer").contains(".service"),
        "{}",
        d("self.timer")
    );
}

//! Bad repositories, end to end (issue 10, item 8): a huge unit file, 10,000 units in one
//! commit, symlinks out of the tree, binary garbage and invalid UTF-8, odd unit names. Each
//! is committed next to a good unit: the daemon keeps answering `status`, the good unit
//! keeps its process, and every bad unit is refused with an error that names it (or, for
//! the huge file, is at least not a crash: a size limit is another slice of the issue).

use std::time::Instant;

use serde_json::Value;

use crate::support::{Daemon, Repo, service, unique, unique_sleep_secs};

/// A repository with one good unit, a daemon on it, and the good unit's pid.
struct Fixture {
    repo: Repo,
    daemon: Daemon,
    good: String,
    good_pid: i32,
}

impl Fixture {
    fn new() -> Fixture {
        let repo = Repo::new();
        let good = format!("{}.service", unique("good"));
        repo.write(
            &good,
            &service(&format!("/bin/sleep {}", unique_sleep_secs()), ""),
        );
        repo.commit("a good unit");
        let daemon = Daemon::start(repo.path(), &[]);
        let good_pid = daemon.wait_running(&good);
        Fixture {
            repo,
            daemon,
            good,
            good_pid,
        }
    }

    /// Commits what the caller wrote, waits until the daemon applied it, and checks that
    /// it still answers and the good unit kept its process.
    fn commit_and_apply(&self, message: &str) {
        let commit = self.repo.commit(message);
        self.daemon.sync_to(&commit);
        self.assert_good_untouched();
    }

    fn assert_good_untouched(&self) {
        assert_eq!(
            self.daemon.main_pid(&self.good),
            Some(self.good_pid),
            "the good unit was restarted or stopped; log:\n{}",
            self.daemon.log_text()
        );
    }

    /// The `error` of unit `name` in `status`; panics when the unit shows none.
    fn error_of(&self, name: &str) -> String {
        let unit = self.daemon.unit(name);
        match unit["error"].as_str() {
            Some(e) => e.to_string(),
            None => panic!("{name}: expected an error in status, got {unit:#}"),
        }
    }
}

#[test]
fn symlinks_out_of_the_tree_are_refused_with_an_error_naming_them() {
    let fx = Fixture::new();
    fx.repo.symlink("passwd.service", "../../etc/passwd");
    fx.repo.symlink("shadow.service", "/etc/shadow");
    fx.commit_and_apply("symlinks out of the tree");
    for (name, target) in [
        ("passwd.service", "../../etc/passwd"),
        ("shadow.service", "/etc/shadow"),
    ] {
        let error = fx.error_of(name);
        assert!(error.contains(target), "{name}: {error}");
        assert!(fx.daemon.main_pid(name).is_none(), "{name} runs");
    }
}

#[test]
fn garbage_and_invalid_utf8_give_errors_not_panics() {
    let fx = Fixture::new();
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(fx.repo.path().join("garbage.service"), &garbage).expect("write garbage");
    let mut latin1 = b"[Service]\nExecStart=/bin/echo caf".to_vec();
    latin1.extend([0xe9, 0xff, 0xfe, b'\n']);
    std::fs::write(fx.repo.path().join("latin1.service"), &latin1).expect("write latin1");
    fx.commit_and_apply("garbage units");
    for name in ["garbage.service", "latin1.service"] {
        let error = fx.error_of(name);
        assert!(!error.is_empty(), "{name}");
        assert!(fx.daemon.main_pid(name).is_none(), "{name} runs");
    }
}

#[test]
fn odd_unit_names_are_refused_or_run_but_never_crash() {
    let fx = Fixture::new();
    let odd = [
        "sp ace.service",
        "semi;colon.service",
        "new\nline.service",
        "dollar$HOME.service",
        "-dash-first.service",
        "\u{e9}t\u{e9}.service",
    ];
    for name in odd {
        fx.repo.write(
            name,
            &service(&format!("/bin/sleep {}", unique_sleep_secs()), ""),
        );
    }
    fx.commit_and_apply("odd unit names");
    for name in odd {
        if fx.daemon.unit(name).is_null() {
            continue; // not a unit name at all: not loaded (and nothing crashed)
        }
        // Listed: it comes up, or says why not.
        fx.daemon.wait_unit(name, "running or refused", |u| {
            u["main_pid"].is_i64() || u["error"].is_string()
        });
    }
    fx.assert_good_untouched();
}

#[test]
fn a_huge_unit_file_does_not_crash_the_daemon() {
    let fx = Fixture::new();
    // 2 MiB: a long comment, then a valid unit.
    let mut text = String::with_capacity(2 << 20);
    while text.len() < 2 << 20 {
        text.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    text.push_str(&service("/bin/true", ""));
    fx.repo.write("huge.service", &text);
    fx.commit_and_apply("a 2 MiB unit");
    let unit: Value = fx.daemon.unit("huge.service");
    assert!(!unit.is_null(), "huge.service not listed");
}

#[test]
fn ten_thousand_units_in_one_commit_load() {
    let fx = Fixture::new();
    const N: usize = 10_000;
    // Inactive units (a condition that never holds), so the test measures loading and
    // applying, not spawning 10,000 processes.
    for i in 0..N {
        fx.repo.write(
            &format!("many{i}.service"),
            "[Unit]\nConditionPathExists=/nonexistent/gitproc-test\n[Service]\nExecStart=/bin/true\n",
        );
    }
    let commit = fx.repo.commit("10,000 units");
    let started = Instant::now();
    fx.daemon.sync_to(&commit);
    let took = started.elapsed();
    fx.assert_good_untouched();
    let status = fx.daemon.status();
    let n = status["units"].as_array().map_or(0, Vec::len);
    assert!(n > N, "status lists {n} units, expected {N} + 1");
    eprintln!("10,000 units: sync to applied (fetch, parse, apply) in {took:?}");
}

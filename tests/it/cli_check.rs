//! `gitproc check` driven through the real binary on fixture units.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/check")
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn check(args: &[&str]) -> Out {
    let mut cmd = match Command::cargo_bin("gitproc") {
        Ok(c) => c,
        Err(e) => panic!("gitproc binary not built: {e}"),
    };
    cmd.current_dir(fixtures()).arg("check").args(args);
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) => panic!("running gitproc check: {e}"),
    };
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn good_directory_exits_0_and_prints_only_warnings() {
    let o = check(&["good"]);
    assert_eq!(o.code, 0, "stdout:\n{}\nstderr:\n{}", o.stdout, o.stderr);
    assert_eq!(
        o.stdout.trim(),
        "good/web.service:12:1: warning: PrivateTmp= is not enforced by gitproc: accepted and ignored"
    );
    assert!(o.stderr.contains("0 error(s)"), "{}", o.stderr);
}

#[test]
fn bad_directory_exits_1_with_file_line_col() {
    let o = check(&["bad"]);
    assert_eq!(o.code, 1, "stdout:\n{}\nstderr:\n{}", o.stdout, o.stderr);
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "bad/broken.service:3:9: error: Restart=: invalid restart policy \"sometimes\": expected no, on-success, on-failure, on-abnormal, on-watchdog, on-abort or always",
            "bad/fine.service:3:1: warning: unknown key Frobnicate= in section [Service]: ignored",
        ]
    );
}

#[test]
fn single_file_uses_its_dropins() {
    let o = check(&["good/web.service", "--json"]);
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    let v: serde_json::Value = match serde_json::from_str(&o.stdout) {
        Ok(v) => v,
        Err(e) => panic!("not JSON ({e}): {}", o.stdout),
    };
    assert_eq!(v["errors"], 0);
    assert_eq!(v["warnings"], 1);
    assert_eq!(v["units"][0]["name"], "web.service");
    assert_eq!(v["units"][0]["ok"], true);
    assert_eq!(
        v["units"][0]["content_hash"].as_str().map(str::len),
        Some(32)
    );
    assert_eq!(v["units"][0]["diagnostics"][0]["severity"], "warning");
    assert_eq!(v["units"][0]["diagnostics"][0]["line"], 12);
}

#[test]
fn a_dropin_error_is_reported_against_the_dropin_when_checking_a_file() {
    let o = check(&["dropin-bad/app.service"]);
    assert_eq!(o.code, 1, "{}{}", o.stdout, o.stderr);
    assert!(
        o.stdout
            .starts_with("dropin-bad/app.service.d/override.conf:2:10: error: KillMode=:"),
        "{}",
        o.stdout
    );
}

#[test]
fn json_for_a_failing_directory() {
    let o = check(&["--json", "bad"]);
    assert_eq!(o.code, 1);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap_or_default();
    assert_eq!(v["errors"], 1);
    let units = v["units"].as_array().cloned().unwrap_or_default();
    let ok: Vec<(String, bool)> = units
        .iter()
        .map(|u| {
            (
                u["name"].as_str().unwrap_or("").to_string(),
                u["ok"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert_eq!(
        ok,
        [
            ("broken.service".to_string(), false),
            ("fine.service".to_string(), true)
        ]
    );
}

#[test]
fn missing_path_is_a_usage_error_naming_it() {
    let o = check(&["good", "no/such/unit.service"]);
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("no/such/unit.service"), "{}", o.stderr);
    assert!(o.stdout.is_empty());
}

#[test]
fn no_path_at_all_is_a_usage_error() {
    let o = check(&[]);
    assert_eq!(o.code, 2, "{}", o.stderr);
}

/// The message of each dependency error `check` prints, keyed by unit file name.
fn dependency_errors(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter_map(|l| {
            let (loc, msg) = l.split_once(": error: ")?;
            let file = loc.split(':').next()?.rsplit('/').next()?.to_string();
            Some((file, msg.to_string()))
        })
        .collect()
}

/// What the daemon says about each unit of `dir` when it runs them from git.
fn daemon_errors(dir: &str) -> Vec<(String, String)> {
    let repo = crate::support::Repo::new();
    let src = fixtures().join(dir);
    let mut names = Vec::new();
    for e in std::fs::read_dir(&src).expect("read fixture dir").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(e.path()).expect("read fixture");
        repo.write(&name, &text);
        names.push(name);
    }
    repo.commit("fixture units");
    let mut daemon = crate::support::Daemon::start(repo.path(), &[]);
    let mut out = Vec::new();
    names.sort();
    for name in names {
        let u = daemon.wait_unit(&name, "loaded", |u| !u.is_null());
        if let Some(e) = u["error"].as_str() {
            out.push((name, e.to_string()));
        }
    }
    daemon.shutdown();
    out
}

#[test]
fn requires_on_a_missing_unit_is_an_error_on_its_line_as_the_daemon_says() {
    let o = check(&["deps-missing"]);
    assert_eq!(o.code, 1, "stdout:\n{}\nstderr:\n{}", o.stdout, o.stderr);
    assert!(
        o.stdout
            .starts_with("deps-missing/web.service:4:1: error: Requires=db.service: no such unit"),
        "{}",
        o.stdout
    );
    // Wants=/After= on a missing unit and a well-known target are not errors.
    assert!(o.stderr.contains("1 error(s)"), "{}", o.stderr);
    assert_eq!(dependency_errors(&o.stdout), daemon_errors("deps-missing"));
}

#[test]
fn an_ordering_cycle_is_an_error_on_each_member_as_the_daemon_says() {
    let o = check(&["deps-cycle"]);
    assert_eq!(o.code, 1, "stdout:\n{}\nstderr:\n{}", o.stdout, o.stderr);
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", o.stdout);
    assert!(
        lines[0].starts_with(
            "deps-cycle/a.service:4:1: error: ordering cycle between a.service, b.service"
        ),
        "{}",
        o.stdout
    );
    assert!(
        lines[1].starts_with("deps-cycle/b.service:2:1: error: ordering cycle"),
        "{}",
        o.stdout
    );
    assert_eq!(dependency_errors(&o.stdout), daemon_errors("deps-cycle"));
}

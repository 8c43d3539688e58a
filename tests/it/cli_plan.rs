//! `gitproc plan`: what applying a commit would do, without a daemon.

use crate::support::{Repo, bin, service};

fn plan(repo: &Repo, args: &[&str]) -> (i32, serde_json::Value, String) {
    let out = std::process::Command::new(bin())
        .arg("plan")
        .arg("--repo")
        .arg(repo.path())
        .arg("--json")
        .args(args)
        .output()
        .expect("run gitproc plan");
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (
        out.status.code().unwrap_or(-1),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn names(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

#[test]
fn lists_exactly_the_changed_units_between_two_commits() {
    let repo = Repo::new();
    for name in ["a", "b", "c", "d"] {
        repo.write(
            &format!("units/{name}.service"),
            &service("/bin/sleep 100", ""),
        );
    }
    let first = repo.commit("four units");
    repo.write("units/b.service", &service("/bin/sleep 200", ""));
    repo.remove("units/c.service");
    repo.write("units/e.service", &service("/bin/sleep 100", ""));
    // Uncommitted edits never count: plan reads committed trees only.
    repo.write("units/a.service", &service("/bin/sleep 999", ""));
    let (code, json, stderr) = plan(&repo, &["--units-dir", "units", "--from", &first]);
    assert_eq!(code, 0, "stderr: {stderr}");
    assert_eq!(names(&json["restart"]), Vec::<String>::new());
    repo.commit("change b, remove c, add e, change a");
    let (code, json, stderr) = plan(&repo, &["--units-dir", "units", "--from", &first]);
    assert_eq!(code, 0, "stderr: {stderr}");
    assert_eq!(names(&json["restart"]), ["a.service", "b.service"]);
    assert_eq!(names(&json["stop"]), ["c.service"]);
    assert_eq!(names(&json["start"]), ["e.service"]);
    assert_eq!(names(&json["unchanged"]), ["d.service"]);
}

#[test]
fn defaults_to_head_against_its_parent_and_reports_errors_with_exit_1() {
    let repo = Repo::new();
    repo.write("ok.service", &service("/bin/sleep 100", ""));
    repo.commit("one unit");
    repo.write(
        "bad.service",
        &service("/bin/sleep 100", "Restart=sometimes"),
    );
    repo.write(
        "x.service",
        "[Unit]\nAfter=y.service\n[Service]\nExecStart=/bin/true\n",
    );
    repo.write(
        "y.service",
        "[Unit]\nAfter=x.service\n[Service]\nExecStart=/bin/true\n",
    );
    repo.commit("a broken unit and a cycle");
    let (code, json, stderr) = plan(&repo, &[]);
    assert_eq!(code, 1, "errors must fail the plan; stderr: {stderr}");
    let errors = json["errors"].to_string();
    assert!(
        errors.contains("bad.service") && errors.contains("Restart"),
        "{errors}"
    );
    assert!(
        errors.contains("bad.service:"),
        "errors carry file:line:col: {errors}"
    );
    assert!(
        errors.contains("x.service") && errors.contains("y.service"),
        "{errors}"
    );
    assert_eq!(names(&json["unchanged"]), ["ok.service"]);
}

#[test]
fn an_unknown_revision_is_a_clear_error() {
    let repo = Repo::new();
    repo.write("ok.service", &service("/bin/sleep 100", ""));
    repo.commit("one unit");
    let (code, _, stderr) = plan(&repo, &["--from", "no-such-branch"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no-such-branch"), "{stderr}");
}

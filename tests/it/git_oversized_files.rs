//! Files over the size limit (1 MiB) in the unit directory are not read: their unit fails
//! with an error naming the file, every other unit runs.

use crate::support::{Daemon, Repo, service};
use gitproc::tree::MAX_FILE_BYTES;

fn huge_unit() -> String {
    let mut text = service("/bin/sleep 1000", "");
    let filler = "# padding padding padding padding padding padding padding padding\n";
    while (text.len() as u64) <= MAX_FILE_BYTES {
        text.push_str(filler);
    }
    text
}

#[test]
fn a_unit_file_over_the_limit_is_refused_by_name_and_the_others_run() {
    let repo = Repo::new();
    repo.write("huge.service", &huge_unit());
    repo.write("ok.service", &service("/bin/sleep 1000", ""));
    repo.write("ok.service.d/x.conf", "[Service]\nEnvironment=A=1\n");
    repo.commit("a huge unit and a normal one");
    let daemon = Daemon::start(repo.path(), &[]);
    daemon.wait_running("ok.service");
    let huge = daemon.unit("huge.service");
    let error = huge["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("huge.service is") && error.contains("over the 1024 KiB limit"),
        "{huge}"
    );
    assert!(huge["main_pid"].is_null(), "{huge}");

    // An oversized drop-in fails its unit too, by the drop-in's name.
    repo.write("ok.service.d/x.conf", &huge_unit());
    let commit = repo.commit("a huge drop-in");
    daemon.sync_to(&commit);
    let ok = daemon.unit("ok.service");
    assert!(
        ok["error"]
            .as_str()
            .is_some_and(|e| e.contains("ok.service.d/x.conf is")),
        "{ok}"
    );
}

#[test]
fn check_reports_an_oversized_file_in_a_directory() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("huge.service"), huge_unit()).expect("write");
    std::fs::write(
        dir.path().join("ok.service"),
        service("/bin/sleep 1000", ""),
    )
    .expect("write");
    let out = std::process::Command::new(crate::support::bin())
        .arg("check")
        .arg(dir.path())
        .output()
        .expect("run check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("huge.service is") && text.contains("limit"),
        "{text}"
    );
}

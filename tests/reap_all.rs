//! Child subreaper and reap_all. One test in its own binary: reap_all collects every
//! child of the process, so it must not run beside tests that wait for their own children.

#[path = "it/runtime_support/mod.rs"]
mod runtime_support;

use gitproc::runtime::{self, Dirs, ExitInfo, SpawnRequest};
use gitproc::unit::model::ServiceSection;
use runtime_support::{Guard, read_to_end, sh, wait_for};

#[test]
fn orphaned_grandchild_is_reparented_and_reaped() {
    runtime::set_child_subreaper().expect("PR_SET_CHILD_SUBREAPER");
    let me = std::process::id() as i32;
    let mut guard = Guard::new();
    let svc = ServiceSection::default();
    let dirs = Dirs::default();
    // The shell starts a background sleep, prints its pid and exits: the sleep is orphaned.
    let cmd = sh("sleep 1000 >/dev/null 2>&1 & echo $!");
    let req = SpawnRequest::new("reap.service", &cmd, &svc, "id", &dirs);
    let s = runtime::spawn(&req).unwrap_or_else(|e| panic!("spawn: {e}"));
    guard.track(s.pid);
    let grandchild: i32 = read_to_end(s.stdout.expect("stdout"), 10)
        .trim()
        .parse()
        .expect("grandchild pid");
    guard.track(grandchild);

    let mut reaped: Vec<(i32, ExitInfo)> = Vec::new();
    wait_for(10, "the shell to be reaped", || {
        reaped.extend(runtime::reap_all());
        reaped.iter().any(|(p, _)| *p == s.pid).then_some(())
    });
    assert_eq!(
        reaped.iter().find(|(p, _)| *p == s.pid).map(|(_, e)| *e),
        Some(ExitInfo::exited(0))
    );
    let st = runtime::read_stat(grandchild).expect("grandchild alive");
    assert_eq!(st.ppid, me, "re-parented to the subreaper");

    unsafe { libc::kill(grandchild, libc::SIGKILL) };
    wait_for(10, "the orphaned grandchild to be reaped", || {
        reaped.extend(runtime::reap_all());
        reaped.iter().any(|(p, _)| *p == grandchild).then_some(())
    });
    assert_eq!(
        reaped
            .iter()
            .find(|(p, _)| *p == grandchild)
            .map(|(_, e)| *e),
        Some(ExitInfo::killed(libc::SIGKILL))
    );
    assert!(runtime::read_stat(grandchild).is_err(), "no zombie left");
    assert!(runtime::reap_all().is_empty());
}

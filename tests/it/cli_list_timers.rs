//! `gitproc list-timers` without a daemon, and `gitproc check --calendar` /
//! `check` of timers (no daemon needed). The daemon side of list-timers is in
//! `section_timer.rs` (`the_commit_does_not_start_a_timer_activated_service_...`).

use std::process::Command;

use crate::support::bin;

#[test]
fn list_timers_without_a_daemon_fails() {
    let state = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args(["list-timers", "--state-dir"])
        .arg(state.path())
        .env_remove("GITPROC_CONFIG")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
}

#[test]
fn check_calendar_prints_the_normalized_form_and_next_elapses() {
    let out = Command::new(bin())
        .args([
            "check",
            "--calendar",
            "Mon..Fri *-*-* 9:00",
            "--iterations",
            "3",
        ])
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("  Original form: Mon..Fri *-*-* 9:00"),
        "{text}"
    );
    assert!(
        text.contains("Normalized form: Mon..Fri *-*-* 09:00:00"),
        "{text}"
    );
    assert!(text.contains("    Next elapse: "), "{text}");
    assert!(text.contains("   Iteration #3: "), "{text}");
    assert!(text.contains("09:00:00"), "{text}");
    assert_eq!(text.matches("From now:").count(), 3, "{text}");

    let out = Command::new(bin())
        .args(["check", "--calendar", "*-*-* 25:00"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("hour 25"));
}

#[test]
fn check_validates_a_timers_unit_against_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.timer"),
        "[Timer]\nOnCalendar=daily\nUnit=nope.service\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("b.timer"), "[Timer]\nOnCalendar=daily\n").unwrap();
    std::fs::write(
        dir.path().join("b.service"),
        "[Service]\nType=oneshot\nExecStart=/bin/true\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .arg("check")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("a.timer:3:1: error: Unit=: nope.service is not a unit"),
        "{text}"
    );
    assert!(!text.contains("b.timer"), "{text}");
}

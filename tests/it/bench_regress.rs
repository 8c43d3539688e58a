//! `bench/regress.py`, the performance regression guard: its quick form runs here against
//! the debug binary and the committed quick baseline, and a deliberate slowdown must fail it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::require::{have_program, is_root, require};

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/regress.py")
}

fn regress(bin: &Path, baseline: &Path, floor: &str) -> Output {
    Command::new("python3")
        .arg(script())
        .args(["test", "--quick", "--reps", "1", "--floor", floor, "--bin"])
        .arg(bin)
        .arg("--baseline")
        .arg(baseline)
        .output()
        .expect("run python3 bench/regress.py")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ready() -> bool {
    require("python3", have_program("python3"))
        && require("root (the bench runs services)", is_root())
}

/// The committed quick baseline, copied so the run's `.last.json` lands in a temp dir.
fn baseline_copy(dir: &Path) -> PathBuf {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/regress-quick.json");
    let dst = dir.join("regress-quick.json");
    std::fs::copy(&src, &dst).expect("copy bench/regress-quick.json");
    dst
}

/// The short form CI runs: loose (4x after normalising by the machine probe, because the
/// suite's other tests load the machine), and a figure must fail twice in a row, so noise
/// does not fail CI while a real regression does.
#[test]
fn quick_guard_passes_on_this_build() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let baseline = baseline_copy(dir.path());
    let bin = crate::support::bin();
    let first = regress(&bin, &baseline, "4.0");
    if first.status.success() {
        return;
    }
    let second = regress(&bin, &baseline, "4.0");
    assert!(
        second.status.success(),
        "the quick regression guard failed twice:\n{}\n---\n{}",
        text(&first),
        text(&second)
    );
}

/// A deliberate slowdown: every `gitproc status` waits 1 s first. `status_p50_ms` grows
/// about 60-fold (30-fold normalised on a machine twice as slow as the baseline's), far past
/// the allowance the committed quick baseline's noise gives (under 14x), and the guard must
/// say so and exit 1. (A 0.3 s wait on every command was within that allowance on a loaded
/// machine.)
#[test]
fn quick_guard_catches_a_deliberate_slowdown() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let baseline = baseline_copy(dir.path());
    let slow = dir.path().join("slow-gitproc");
    std::fs::write(
        &slow,
        format!(
            "#!/bin/sh\n[ \"$1\" = status ] && sleep 1\nexec {} \"$@\"\n",
            crate::support::bin().display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = regress(&slow, &baseline, "4.0");
    let report = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the slowdown must fail the guard:\n{report}"
    );
    let status_row = report
        .lines()
        .find(|l| l.starts_with("| status_p50_ms"))
        .unwrap_or_else(|| panic!("no status_p50_ms row:\n{report}"));
    assert!(
        status_row.contains("REGRESSION"),
        "status_p50_ms must be flagged: {status_row}\n{report}"
    );
}

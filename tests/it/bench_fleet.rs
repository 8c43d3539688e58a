//! `bench/fleet.py`, the fleet simulation, in its short form: five daemons with their own
//! `--hostname` follow one repository served over HTTP by `git http-backend`; the waves
//! must apply in order (canary, 10 %, the rest), a halt must stop the rest, a revert must
//! reach everyone at once, and an idle fleet must fetch no pack.

use std::path::PathBuf;
use std::process::Command;

use crate::support::require::{have_program, is_root, require};

#[test]
fn five_hosts_roll_out_in_waves_and_halt() {
    let backend = std::path::Path::new("/usr/lib/git-core/git-http-backend");
    if !(require("python3", have_program("python3"))
        && require("git http-backend", backend.exists())
        && require("root (the daemons run services)", is_root()))
    {
        return;
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/fleet.py");
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("fleet.json");
    let out = Command::new("python3")
        .arg(&script)
        .args([
            "--hosts", "5", "--poll", "1", "--idle", "2", "--delays", "1,3",
        ])
        .args(["--timeout", "60", "--bin"])
        .arg(crate::support::bin())
        .arg("--workdir")
        .arg(dir.path().join("work"))
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run python3 bench/fleet.py");
    let text = format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    let res: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&json).unwrap_or_else(|e| panic!("{}: {e}\n{text}", json.display())),
    )
    .expect("fleet.json parses");
    assert_eq!(res["waves_in_order"], true, "{res:#}");
    assert_eq!(res["halt_ok"], true, "{res:#}");
    assert_eq!(res["revert_ok"], true, "{res:#}");
    for wave in ["canary", "ten", "rest"] {
        assert!(res["wave_sizes"][wave].as_u64() > Some(0), "{res:#}");
    }
    // The 10 % wave waits its delay (1 s) after the commit, the rest theirs (3 s).
    assert!(
        res["waves"]["ten"]["min_s"].as_f64() >= Some(0.9),
        "{res:#}"
    );
    assert!(
        res["waves"]["rest"]["min_s"].as_f64() >= Some(2.9),
        "{res:#}"
    );
    assert_eq!(res["idle"]["pack_transfers"], 0, "{res:#}");
    let adv = res["idle"]["ref_adv_per_host_per_interval"]
        .as_f64()
        .unwrap_or(f64::MAX);
    assert!(
        adv <= 1.25,
        "idle ref advertisements per host per interval: {res:#}"
    );
}

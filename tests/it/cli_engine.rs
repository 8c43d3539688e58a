//! The two executables: `gitproc`, the front an operator types, hands `daemon`, `check` and
//! `plan` to `gitprocd`, the engine installed beside it, and runs every other verb itself.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Daemon, Repo, bin, service};

fn engine() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gitprocd"))
}

#[test]
fn the_daemon_runs_as_the_engine_under_the_same_pid_and_command_line() {
    let repo = Repo::new();
    repo.write("web.service", &service("/bin/sleep 300", ""));
    repo.commit("web");
    let d = Daemon::start(repo.path(), &[]);
    let pid = d.pid();
    // The pid the test spawned is the daemon: the front exec'd the engine in place.
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("read /proc/PID/exe");
    assert_eq!(
        exe.file_name().and_then(|n| n.to_str()),
        Some("gitprocd"),
        "the daemon's executable is {exe:?}"
    );
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("read cmdline");
    let argv: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    assert_eq!(
        argv.first()
            .map(|a| Path::new(std::str::from_utf8(a).unwrap_or(""))),
        Some(bin().as_path()),
        "argv[0] stays the front's"
    );
    assert_eq!(
        argv.get(1).copied(),
        Some(&b"daemon"[..]),
        "argv: {cmdline:?}"
    );
    d.wait_running("web.service");
}

#[test]
fn a_front_without_its_engine_names_the_missing_file_and_still_runs_client_verbs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lone = dir.path().join("gitproc");
    std::fs::copy(bin(), &lone).expect("copy the front alone");
    let unit = dir.path().join("web.service");
    std::fs::write(&unit, service("/bin/true", "")).expect("write unit");

    let out = Command::new(&lone)
        .arg("check")
        .arg(&unit)
        .output()
        .expect("run the lone front");
    assert_eq!(
        out.status.code(),
        Some(1),
        "check without an engine must fail"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let want = dir.path().join("gitprocd");
    assert!(
        err.contains(&*want.to_string_lossy()),
        "the error must name {want:?}: {err}"
    );

    // A client verb needs no engine: with no daemon it fails as `status` always does, by
    // saying the daemon is not running, not by looking for gitprocd.
    let state = dir.path().join("state");
    let out = Command::new(&lone)
        .args(["status", "--state-dir"])
        .arg(&state)
        .output()
        .expect("run status");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("gitprocd"),
        "status looked for the engine: {err}"
    );
    assert!(
        err.contains("gitproc.sock"),
        "status names the socket: {err}"
    );
}

/// The size of an ELF64 file's `.text` section (the file size says little: debug info of
/// the whole crate is in both).
fn text_size(path: &Path) -> u64 {
    let elf = std::fs::read(path).expect("read ELF file");
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().expect("4 bytes")) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().expect("8 bytes"));
    assert_eq!(&elf[..5], b"\x7fELF\x02", "{path:?} is not an ELF64 file");
    let (shoff, shentsize, shnum, shstrndx) = (
        u64_at(0x28) as usize,
        u16_at(0x3a),
        u16_at(0x3c),
        u16_at(0x3e),
    );
    let names = u64_at(shoff + shstrndx * shentsize + 0x18) as usize;
    (0..shnum)
        .map(|i| shoff + i * shentsize)
        .find(|&h| elf[names + u32_at(h)..].starts_with(b".text\0"))
        .map(|h| u64_at(h + 0x20))
        .expect("a .text section")
}

#[test]
fn the_front_links_none_of_the_engine() {
    // The reason for the split: `gitproc status` loads a small binary. Git, TLS, the unit
    // loader and the supervisor stay in the engine.
    let front = text_size(&bin());
    let engine = text_size(&engine());
    assert!(
        front * 3 < engine,
        "gitproc's code is {front} bytes, gitprocd's {engine}: the front links engine code"
    );
}

#[test]
fn gitprocd_runs_client_verbs_too() {
    let out = Command::new(engine())
        .arg("--version")
        .output()
        .expect("run gitprocd");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("gitproc "));
}

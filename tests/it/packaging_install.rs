//! `packaging/install.sh`, `packaging/gitproc.service` and `packaging/gitproc.toml`: what an
//! operator installs. install.sh must be idempotent and must never overwrite an operator's
//! config; the example config must stay valid TOML with the documented key names.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn install_script() -> PathBuf {
    repo_root().join("packaging/install.sh")
}

/// One entry of an installed tree: file type, permission bits and (for files) the bytes.
#[derive(Debug, PartialEq, Eq)]
enum Entry {
    Dir { mode: u32 },
    File { mode: u32, bytes: Vec<u8> },
    Symlink { target: PathBuf },
}

/// Every path under `root` (relative), with its type, mode and contents.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Entry> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Entry>) {
        let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("read_dir {dir:?}: {e}"));
        for entry in entries {
            let path = entry.expect("dir entry").path();
            let meta = fs::symlink_metadata(&path).expect("metadata");
            let rel = path.strip_prefix(root).expect("under root").to_path_buf();
            let mode = meta.mode() & 0o7777;
            if meta.file_type().is_symlink() {
                let target = fs::read_link(&path).expect("read_link");
                out.insert(rel, Entry::Symlink { target });
            } else if meta.is_dir() {
                out.insert(rel, Entry::Dir { mode });
                walk(root, &path, out);
            } else {
                let bytes = fs::read(&path).expect("read file");
                out.insert(rel, Entry::File { mode, bytes });
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Stand-ins for the gitproc front and, beside it, the gitprocd engine (install.sh's
/// default `--engine`), so the test needs no release build.
fn fake_binary(dir: &Path) -> PathBuf {
    let bin = dir.join("gitproc-standin");
    fs::write(&bin, b"#!/bin/sh\nexit 0\n").expect("write stand-in binary");
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o600)).expect("chmod stand-in");
    let engine = dir.join("gitprocd");
    fs::write(&engine, b"#!/bin/sh\nexit 1\n").expect("write stand-in engine");
    fs::set_permissions(&engine, fs::Permissions::from_mode(0o600)).expect("chmod engine");
    bin
}

fn run_install(root: &Path, bin: &Path) -> String {
    let out = Command::new("bash")
        .arg(install_script())
        .arg("--root")
        .arg(root)
        .arg("--bin")
        .arg(bin)
        .env_remove("DESTDIR")
        .output()
        .expect("run bash packaging/install.sh");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "install.sh --root {root:?} failed with {}:\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn mode_of(entry: Option<&Entry>) -> Option<u32> {
    match entry? {
        Entry::Dir { mode } | Entry::File { mode, .. } => Some(*mode),
        Entry::Symlink { .. } => None,
    }
}

#[test]
fn install_twice_gives_the_same_tree_with_the_right_modes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("root");
    let bin = fake_binary(tmp.path());

    run_install(&root, &bin);
    let first = snapshot(&root);
    run_install(&root, &bin);
    let second = snapshot(&root);
    assert_eq!(first, second, "a second install.sh run changed the tree");

    let bin_entry = first.get(Path::new("usr/bin/gitproc"));
    assert_eq!(mode_of(bin_entry), Some(0o755), "usr/bin/gitproc mode");
    match bin_entry {
        Some(Entry::File { bytes, .. }) => {
            assert_eq!(
                bytes,
                &fs::read(&bin).expect("read stand-in"),
                "binary content"
            )
        }
        other => panic!("usr/bin/gitproc is not a file: {other:?}"),
    }
    let engine_entry = first.get(Path::new("usr/bin/gitprocd"));
    assert_eq!(mode_of(engine_entry), Some(0o755), "usr/bin/gitprocd mode");
    match engine_entry {
        Some(Entry::File { bytes, .. }) => assert_eq!(
            bytes,
            &fs::read(bin.with_file_name("gitprocd")).expect("read stand-in engine"),
            "engine content"
        ),
        other => panic!("usr/bin/gitprocd is not a file: {other:?}"),
    }
    let files = [
        (
            "lib/systemd/system/gitproc.service",
            "packaging/gitproc.service",
        ),
        ("etc/gitproc/gitproc.toml", "packaging/gitproc.toml"),
    ];
    for (installed, source) in files {
        let want = fs::read(repo_root().join(source)).expect("read packaging source");
        match first.get(Path::new(installed)) {
            Some(Entry::File { mode, bytes }) => {
                assert_eq!(*mode, 0o644, "{installed} mode");
                assert_eq!(bytes, &want, "{installed} differs from {source}");
            }
            other => panic!("{installed} is not an installed file: {other:?}"),
        }
    }
    assert_eq!(
        mode_of(first.get(Path::new("var/lib/gitproc"))),
        Some(0o700),
        "state dir var/lib/gitproc must be private"
    );
    // Nothing else: no temporary files left behind.
    let unexpected: Vec<_> = first
        .iter()
        .filter(|(p, e)| {
            matches!(e, Entry::File { .. }) && {
                let p = p.to_string_lossy();
                !matches!(
                    p.as_ref(),
                    "usr/bin/gitproc"
                        | "usr/bin/gitprocd"
                        | "lib/systemd/system/gitproc.service"
                        | "etc/gitproc/gitproc.toml"
                )
            }
        })
        .map(|(p, _)| p.clone())
        .collect();
    assert!(
        unexpected.is_empty(),
        "unexpected files installed: {unexpected:?}"
    );
}

#[test]
fn reinstall_keeps_an_edited_config_and_repairs_the_unit_and_state_dir() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("root");
    let bin = fake_binary(tmp.path());
    run_install(&root, &bin);

    let config = root.join("etc/gitproc/gitproc.toml");
    let edited = "repo = \"https://git.example.com/ops/units.git\"\n";
    fs::write(&config, edited).expect("edit config");
    let unit = root.join("lib/systemd/system/gitproc.service");
    fs::write(&unit, "damaged").expect("damage unit");
    let state = root.join("var/lib/gitproc");
    fs::set_permissions(&state, fs::Permissions::from_mode(0o755)).expect("chmod state");

    let out = run_install(&root, &bin);
    assert_eq!(
        fs::read_to_string(&config).expect("read config"),
        edited,
        "install.sh overwrote an operator's config; its output:\n{out}"
    );
    assert!(
        out.contains("kept existing"),
        "install.sh should say it kept the config:\n{out}"
    );
    assert_eq!(
        fs::read(&unit).expect("read unit"),
        fs::read(repo_root().join("packaging/gitproc.service")).expect("read source unit"),
        "the unit file is the package's and must be restored"
    );
    let mode = fs::metadata(&state).expect("stat state dir").mode() & 0o7777;
    assert_eq!(mode, 0o700, "state dir mode must be reset to 0700");
}

#[test]
fn install_refuses_a_missing_binary_and_unknown_arguments() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("root");
    let missing = tmp.path().join("no-such-binary");
    let out = Command::new("bash")
        .arg(install_script())
        .arg("--root")
        .arg(&root)
        .arg("--bin")
        .arg(&missing)
        .output()
        .expect("run install.sh");
    assert_eq!(out.status.code(), Some(1), "missing binary must fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-such-binary"),
        "error must name the binary: {err}"
    );
    assert!(
        !root.join("usr").exists(),
        "nothing may be installed on error"
    );

    // A front without its engine beside it: refused, naming the engine's path.
    let lone = tmp.path().join("lone");
    fs::create_dir(&lone).expect("mkdir");
    let front = lone.join("gitproc");
    fs::write(&front, b"#!/bin/sh\nexit 0\n").expect("write stand-in binary");
    let out = Command::new("bash")
        .arg(install_script())
        .arg("--root")
        .arg(&root)
        .arg("--bin")
        .arg(&front)
        .output()
        .expect("run install.sh");
    assert_eq!(out.status.code(), Some(1), "missing engine must fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&*lone.join("gitprocd").to_string_lossy()),
        "error must name the engine's path: {err}"
    );
    assert!(
        !root.join("usr").exists(),
        "nothing may be installed on error"
    );

    let out = Command::new("bash")
        .arg(install_script())
        .arg("--frobnicate")
        .output()
        .expect("run install.sh");
    assert_eq!(
        out.status.code(),
        Some(2),
        "unknown argument is a usage error"
    );
}

/// The example config is the reference for the config parser: with every commented
/// `key = value` line and `[table]` header uncommented it must be valid TOML with
/// exactly the documented keys.
#[test]
fn example_config_uncommented_is_valid_toml_with_the_documented_keys() {
    let text =
        fs::read_to_string(repo_root().join("packaging/gitproc.toml")).expect("read gitproc.toml");
    let mut uncommented = String::new();
    for line in text.lines() {
        let rest = line.strip_prefix("# ").unwrap_or("");
        let first = rest.split_whitespace().next().unwrap_or("");
        let is_key = first.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            && !first.is_empty()
            && rest.starts_with(&format!("{first} = "));
        if line.starts_with('[') {
            uncommented.push_str(line);
        } else if is_key {
            uncommented.push_str(rest);
        }
        uncommented.push('\n');
    }
    let value: toml::Table = toml::from_str(&uncommented)
        .unwrap_or_else(|e| panic!("uncommented gitproc.toml is not TOML: {e}\n{uncommented}"));
    let mut keys = Vec::new();
    for (k, v) in &value {
        match v.as_table() {
            Some(t) => keys.extend(t.keys().map(|sub| format!("{k}.{sub}"))),
            None => keys.push(k.clone()),
        }
    }
    keys.sort();
    let mut want = vec![
        "repo",
        "branch",
        "units_dir",
        "state_dir",
        "rollback",
        "hostname",
        "fallback_reap_ms",
        "poll.min_interval_s",
        "poll.max_interval_s",
        "poll.unchanged_before_growth",
        "poll.step_s",
        "poll.jitter",
        "state.save_interval_s",
        "state.save_min_gap_s",
        "logs.max_bytes",
        "logs.keep",
        "control.group",
        "signing.require_signed",
        "signing.allowed_signers",
        "http.listen",
        "http.webhook_secret_file",
        "http.token_file",
        "http.webhook_min_interval_s",
    ];
    want.sort();
    assert_eq!(keys, want, "keys of packaging/gitproc.toml");
    assert_eq!(value["poll"]["min_interval_s"].as_integer(), Some(10));
    assert_eq!(value["logs"]["max_bytes"].as_integer(), Some(10_485_760));
    // As shipped, every key is commented out: only empty tables remain (all defaults).
    let shipped: toml::Table = toml::from_str(&text).expect("gitproc.toml as shipped is TOML");
    let set: Vec<_> = shipped
        .iter()
        .filter(|(_, v)| v.as_table().is_none_or(|t| !t.is_empty()))
        .map(|(k, _)| k)
        .collect();
    assert!(set.is_empty(), "keys must be commented out, found: {set:?}");
}

#[test]
fn daemon_unit_has_the_settings_operations_rely_on() {
    let text = fs::read_to_string(repo_root().join("packaging/gitproc.service"))
        .expect("read gitproc.service");
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    for want in [
        "Type=notify",
        "ExecStart=/usr/bin/gitproc daemon --config /etc/gitproc/gitproc.toml",
        "WatchdogSec=30s",
        "Restart=on-failure",
        "KillMode=process",
        "MemoryMax=100M",
        "CPUQuota=50%",
        "WantedBy=multi-user.target",
        "After=network-online.target",
        "Wants=network-online.target",
    ] {
        assert!(
            lines.contains(&want),
            "packaging/gitproc.service lacks `{want}`"
        );
    }
}

#[test]
fn daemon_unit_passes_gitproc_check() {
    assert_cmd::Command::cargo_bin("gitproc")
        .expect("gitproc binary")
        .current_dir(repo_root())
        .args(["check", "packaging/gitproc.service"])
        .assert()
        .success();
}

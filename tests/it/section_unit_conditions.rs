//! `ConditionHost=` with `--hostname`: a unit meant for another host is simply inactive with
//! sub-state `condition` (not an error); a glob that matches this host runs it.

use crate::support::{Daemon, Repo, WAIT, alive, service, wait_for};

#[test]
fn condition_host_selects_units_by_the_given_hostname() {
    let repo = Repo::new();
    repo.write(
        "elsewhere.service",
        "[Unit]\nConditionHost=other\n\n[Service]\nExecStart=/bin/sleep 1000\n",
    );
    repo.write(
        "here.service",
        "[Unit]\nConditionHost=web-*\n\n[Service]\nExecStart=/bin/sleep 1001\n",
    );
    repo.write("everywhere.service", &service("/bin/sleep 1002", ""));
    repo.commit("units for several hosts");
    let daemon = Daemon::start(repo.path(), &["--hostname", "web-7"]);
    daemon.wait_running("here.service");
    daemon.wait_running("everywhere.service");
    let unit = daemon.wait_unit("elsewhere.service", "skipped by its condition", |u| {
        u["sub_state"] == "condition"
    });
    assert_eq!(unit["active_state"], "inactive", "{unit:#}");
    assert!(unit["main_pid"].is_null(), "{unit:#}");
    assert!(
        unit["error"].is_null(),
        "a failed condition is not an error: {unit:#}"
    );
    assert_eq!(unit["result"], "success", "{unit:#}");
    let condition = unit["condition"].as_str().unwrap_or_default();
    assert!(
        condition.contains("ConditionHost=other") && condition.contains("web-7"),
        "status says which condition failed: {unit:#}"
    );

    // `gitproc status --json` shows the same.
    let out = daemon.cli(&["status", "--json", "elsewhere.service"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\"condition\""), "{text}");
}

#[test]
fn a_commit_that_moves_a_running_unit_to_another_host_stops_it() {
    let repo = Repo::new();
    repo.write(
        "app.service",
        "[Unit]\nConditionHost=web-*\n\n[Service]\nExecStart=/bin/sleep 1000\n",
    );
    repo.commit("app runs on web hosts");
    let daemon = Daemon::start(repo.path(), &["--hostname", "web-7"]);
    let pid = daemon.wait_running("app.service");

    repo.write(
        "app.service",
        "[Unit]\nConditionHost=db-*\n\n[Service]\nExecStart=/bin/sleep 1000\n",
    );
    let commit = repo.commit("app moves to db hosts");
    daemon.sync();
    wait_for("the commit to be applied", WAIT, || {
        (daemon.status()["daemon"]["commit"] == commit).then_some(())
    });
    let unit = daemon.wait_unit("app.service", "stopped by its condition", |u| {
        u["sub_state"] == "condition"
    });
    assert!(unit["main_pid"].is_null(), "{unit:#}");
    wait_for("the old process to exit", WAIT, || {
        (!alive(pid)).then_some(())
    });
}

/// A unit that runs `sleep` only if all of `unit_lines` hold.
fn guarded(unit_lines: &str) -> String {
    format!("[Unit]\n{unit_lines}\n\n[Service]\nExecStart=/bin/sleep 1000\n")
}

#[test]
fn each_evaluated_condition_family_skips_or_runs_the_unit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().display().to_string();
    std::fs::create_dir(dir.path().join("empty")).expect("mkdir");
    std::fs::write(dir.path().join("zero"), "").expect("write");
    std::fs::write(dir.path().join("data"), "x").expect("write");
    std::os::unix::fs::symlink("data", dir.path().join("link")).expect("symlink");
    let uid = nix::unistd::getuid().as_raw();
    // (unit, line, holds here)
    let cases: Vec<(&str, String, bool)> = vec![
        (
            "dir-yes",
            format!("ConditionPathIsDirectory={d}/empty"),
            true,
        ),
        (
            "dir-no",
            format!("ConditionPathIsDirectory={d}/data"),
            false,
        ),
        (
            "link-yes",
            format!("ConditionPathIsSymbolicLink={d}/link"),
            true,
        ),
        (
            "link-no",
            format!("ConditionPathIsSymbolicLink={d}/data"),
            false,
        ),
        ("rw-yes", format!("ConditionPathIsReadWrite={d}"), true),
        ("rw-no", "ConditionPathIsReadWrite=!/".to_string(), false),
        (
            "notempty-no",
            format!("ConditionDirectoryNotEmpty={d}/empty"),
            false,
        ),
        (
            "notempty-yes",
            format!("ConditionDirectoryNotEmpty={d}"),
            true,
        ),
        (
            "filenotempty-no",
            format!("ConditionFileNotEmpty={d}/zero"),
            false,
        ),
        (
            "filenotempty-yes",
            format!("ConditionFileNotEmpty={d}/data"),
            true,
        ),
        (
            "exec-no",
            format!("ConditionFileIsExecutable={d}/data"),
            false,
        ),
        (
            "exec-yes",
            "ConditionFileIsExecutable=/bin/sleep".to_string(),
            true,
        ),
        ("user-yes", format!("ConditionUser={uid}"), true),
        ("user-no", format!("ConditionUser={}", uid + 1), false),
        (
            "group-no",
            "ConditionGroup=no-such-group-gitproc".to_string(),
            false,
        ),
        ("env-yes", "ConditionEnvironment=PATH".to_string(), true),
        (
            "env-no",
            "ConditionEnvironment=GITPROC_NO_SUCH_VAR".to_string(),
            false,
        ),
        (
            "cmdline-no",
            "ConditionKernelCommandLine=gitproc.no-such-flag".to_string(),
            false,
        ),
        (
            "arch-no",
            "ConditionArchitecture=!native".to_string(),
            false,
        ),
        (
            "mount-yes",
            "ConditionPathIsMountPoint=/proc".to_string(),
            true,
        ),
        (
            "mount-no",
            format!("ConditionPathIsMountPoint={d}/empty"),
            false,
        ),
        ("glob-yes", format!("ConditionPathExistsGlob={d}/da*"), true),
        (
            "glob-no",
            format!("ConditionPathExistsGlob={d}/nothing-*"),
            false,
        ),
        ("memory-yes", "ConditionMemory=>=1M".to_string(), true),
        ("memory-no", "ConditionMemory=<1M".to_string(), false),
        ("memory-bare-no", "ConditionMemory=1E".to_string(), false),
        ("cpus-yes", "ConditionCPUs=>=1".to_string(), true),
        ("cpus-no", "ConditionCPUs=>1024".to_string(), false),
        (
            "virt-no",
            "ConditionVirtualization=gitproc-no-such-hypervisor".to_string(),
            false,
        ),
        (
            "security-no",
            "ConditionSecurity=gitproc-no-such-framework".to_string(),
            false,
        ),
        (
            "trigger-yes",
            format!("ConditionPathExists=|{d}/none\nConditionPathExists=|{d}/data"),
            true,
        ),
        (
            "trigger-no",
            format!("ConditionPathExists=|{d}/none\nConditionPathIsDirectory=|{d}/data"),
            false,
        ),
    ];
    let repo = Repo::new();
    for (name, line, _) in &cases {
        repo.write(&format!("{name}.service"), &guarded(line));
    }
    repo.commit("one unit per condition");
    let daemon = Daemon::start(repo.path(), &[]);
    for (name, line, holds) in &cases {
        let unit = format!("{name}.service");
        if *holds {
            daemon.wait_running(&unit);
        } else {
            let u = daemon.wait_unit(&unit, "skipped by its condition", |u| {
                u["sub_state"] == "condition"
            });
            assert_eq!(u["active_state"], "inactive", "{line}: {u:#}");
            let why = u["condition"].as_str().unwrap_or_default();
            let first = line.lines().next().unwrap_or_default();
            let key = first.split('=').next().unwrap_or_default();
            assert!(
                why.contains(key),
                "{line}: status names the condition: {u:#}"
            );
        }
    }
}

#[test]
fn a_failed_assert_fails_the_start_naming_it() {
    let repo = Repo::new();
    repo.write(
        "asserted.service",
        &guarded("AssertPathExists=/gitproc/no/such/path"),
    );
    repo.write(
        "conditioned.service",
        &guarded("ConditionPathExists=/gitproc/no/such/path"),
    );
    repo.write("fine.service", &guarded("AssertPathExists=/bin/sleep"));
    repo.commit("an assert that fails, a condition that fails, an assert that holds");
    let daemon = Daemon::start(repo.path(), &[]);
    daemon.wait_running("fine.service");
    let u = daemon.wait_unit("asserted.service", "failed by its assert", |u| {
        u["active_state"] == "failed"
    });
    assert_eq!(u["result"], "assert", "{u:#}");
    assert!(u["main_pid"].is_null(), "{u:#}");
    assert_eq!(
        u["condition"], "AssertPathExists=/gitproc/no/such/path",
        "{u:#}"
    );
    // The same test as a condition only skips the unit.
    let c = daemon.wait_unit("conditioned.service", "skipped", |u| {
        u["sub_state"] == "condition"
    });
    assert_eq!(c["active_state"], "inactive", "{c:#}");
    assert_eq!(c["result"], "success", "{c:#}");
}

#[test]
fn conditions_gitproc_does_not_evaluate_are_warnings_at_load() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("v.service");
    std::fs::write(
        &file,
        guarded("ConditionFirstBoot=yes\nAssertPathExists=/x"),
    )
    .expect("write");
    let out = std::process::Command::new(crate::support::bin())
        .arg("check")
        .arg(&file)
        .output()
        .expect("run gitproc check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("warning") && text.contains("ConditionFirstBoot="),
        "{text}"
    );
    assert!(
        !text.contains("AssertPathExists"),
        "evaluated, so no warning: {text}"
    );
}

/// What `systemd-detect-virt` says (`none` on bare metal), when it is installed.
fn systemd_detect_virt(args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("systemd-detect-virt")
        .args(args)
        .output()
        .ok()?;
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!id.is_empty()).then_some(id)
}

#[test]
fn condition_virtualization_agrees_with_systemd_detect_virt() {
    let Some(id) = systemd_detect_virt(&[]) else {
        crate::support::require("systemd-detect-virt (package systemd)", false);
        return;
    };
    let container = systemd_detect_virt(&["--container"]).is_some_and(|c| c != "none");
    let virtualized = id != "none";
    let repo = Repo::new();
    // (unit, line, holds here)
    let mut cases: Vec<(&str, String, bool)> = vec![
        ("any", "ConditionVirtualization=yes".into(), virtualized),
        ("none", "ConditionVirtualization=no".into(), !virtualized),
        ("ctr", "ConditionVirtualization=container".into(), container),
        (
            "vm",
            "ConditionVirtualization=vm".into(),
            virtualized && !container,
        ),
    ];
    if virtualized {
        cases.push(("this", format!("ConditionVirtualization={id}"), true));
        cases.push(("not-this", format!("ConditionVirtualization=!{id}"), false));
    }
    for (name, line, _) in &cases {
        repo.write(&format!("v-{name}.service"), &guarded(line));
    }
    repo.commit("one unit per virtualization test");
    let daemon = Daemon::start(repo.path(), &[]);
    for (name, line, holds) in &cases {
        let unit = format!("v-{name}.service");
        if *holds {
            daemon.wait_running(&unit);
        } else {
            let u = daemon.wait_unit(&unit, "skipped by its condition", |u| {
                u["sub_state"] == "condition"
            });
            let why = u["condition"].as_str().unwrap_or_default();
            assert!(
                why.contains(line.as_str()) && why.contains(&format!("this host is {id}")),
                "systemd-detect-virt says {id}: {u:#}"
            );
        }
    }
}

#[test]
fn a_failed_cpus_or_memory_assert_fails_the_start_with_the_host_value() {
    let repo = Repo::new();
    repo.write("many-cpus.service", &guarded("AssertCPUs=>1024"));
    repo.write("huge.service", &guarded("AssertMemory=>=1E"));
    repo.commit("asserts this host cannot meet");
    let daemon = Daemon::start(repo.path(), &[]);
    for (unit, line) in [
        ("many-cpus.service", "AssertCPUs=>1024"),
        ("huge.service", "AssertMemory=>=1E"),
    ] {
        let u = daemon.wait_unit(unit, "failed by its assert", |u| {
            u["active_state"] == "failed"
        });
        assert_eq!(u["result"], "assert", "{u:#}");
        let why = u["condition"].as_str().unwrap_or_default();
        assert!(
            why.starts_with(line) && why.contains("this host is"),
            "{u:#}"
        );
    }
}

#[test]
fn a_malformed_memory_or_cpus_comparison_fails_at_load() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, line) in [
        ("m.service", "ConditionMemory=>=lots"),
        ("c.service", "AssertCPUs=>=two"),
    ] {
        let file = dir.path().join(name);
        std::fs::write(&file, guarded(line)).expect("write");
        let out = std::process::Command::new(crate::support::bin())
            .arg("check")
            .arg(&file)
            .output()
            .expect("run gitproc check");
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{line}: {text}");
        let key = line.split('=').next().unwrap_or_default();
        assert!(
            text.contains(key),
            "{line}: the error names the line: {text}"
        );
    }
}

//! Reaping that cannot stall (issue 10, item 5): as PID 1 of a pid namespace (the container
//! init case), every orphan injected from outside is reaped. Those orphans share the
//! daemon's session and are not in its pid table, exactly what used to stop the sweep for
//! good at the first one.

use std::process::Command;

use crate::support::{Daemon, Repo, WAIT, cmdline, service, unique, wait_for};

/// A tool from util-linux, or `None` when it is missing (SKIP; under `CI=true`, where
/// `.ci/run` installs util-linux, a failure: see `support::require`).
fn tool(name: &str) -> Option<()> {
    crate::support::require(
        &format!("`{name}` (package util-linux)"),
        crate::support::succeeds(name, &["--version"]),
    )
    .then_some(())
}

/// (state, parent pid) of `pid` from `/proc/PID/stat` as this namespace sees it.
fn stat_of(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut f = stat.rsplit_once(')')?.1.split_whitespace();
    let state = f.next()?.chars().next()?;
    Some((state, f.next()?.parse().ok()?))
}

/// Children of `ppid`: (zombies, live ones running `argv`).
fn children(ppid: i32, argv: &str) -> (Vec<i32>, Vec<i32>) {
    let (mut zombies, mut live) = (Vec::new(), Vec::new());
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        match stat_of(pid) {
            Some(('Z', p)) if p == ppid => zombies.push(pid),
            Some((_, p)) if p == ppid && cmdline(pid) == argv => live.push(pid),
            _ => {}
        }
    }
    (zombies, live)
}

/// The one child of `pid` (the daemon `unshare --fork` started), by the kernel's list.
fn only_child(pid: i32) -> i32 {
    wait_for("unshare to fork the daemon", WAIT, || {
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

#[test]
fn as_pid1_of_a_pid_namespace_no_injected_orphan_stays_a_zombie() {
    if tool("unshare").is_none() || tool("nsenter").is_none() {
        return;
    }
    let root = nix::unistd::geteuid().is_root();
    let repo = Repo::new();
    repo.write(
        &format!("{}.service", unique("pid1")),
        &service("/bin/sleep 1000", ""),
    );
    repo.commit("initial");
    let mut wrapper: Vec<String> = vec!["unshare".into()];
    if !root {
        wrapper.extend(["--user".into(), "--map-root-user".into()]);
    }
    // --kill-child: the namespace (daemon and services) dies with unshare, whatever happens.
    wrapper.extend(
        ["--pid", "--fork", "--mount-proc", "--kill-child"]
            .iter()
            .map(|s| s.to_string()),
    );
    let daemon = Daemon::start_wrapped(
        vec!["--repo".into(), repo.path().display().to_string()],
        tempfile::tempdir().expect("state dir"),
        wrapper,
        "info",
    );
    let init = only_child(daemon.pid());
    let argv = "sleep 0.3";
    let inject = |n: usize| {
        for _ in 0..n {
            let mut c = Command::new("nsenter");
            c.arg("-t").arg(init.to_string());
            if !root {
                c.args(["-U", "--preserve-credentials"]);
            }
            // The subshell exits at once: its `sleep` is orphaned to the namespace's init.
            let status = c
                .args(["-p", "-m", "sh", "-c", &format!("({argv} &) ; exit")])
                .status()
                .expect("run nsenter");
            assert!(status.success(), "nsenter failed: {status}");
        }
    };
    inject(1);
    // The orphans really become the daemon's children (else the test proves nothing).
    wait_for("an injected orphan re-parented to the daemon", WAIT, || {
        (!children(init, argv).1.is_empty()).then_some(())
    });
    inject(40);
    wait_for(
        "every injected orphan to exit and be reaped (no zombie child of PID 1)",
        WAIT,
        || {
            let (zombies, live) = children(init, argv);
            (zombies.is_empty() && live.is_empty()).then_some(())
        },
    );
    // And the sweep keeps working afterwards: a second burst is reaped too.
    inject(10);
    wait_for("the second burst to be reaped", WAIT, || {
        let (zombies, live) = children(init, argv);
        (zombies.is_empty() && live.is_empty()).then_some(())
    });
    assert!(daemon.try_status().is_some(), "the daemon still answers");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(init),
        nix::sys::signal::Signal::SIGTERM,
    );
}

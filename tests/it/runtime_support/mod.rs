//! Shared helpers for the runtime and logs integration tests: process guards that kill
//! everything a test started, deadline waits, and small request builders.
#![allow(dead_code)]

use std::io::Read;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use gitproc::runtime::{self, Dirs, ExitInfo, SpawnRequest, Spawned};
use gitproc::unit::model::{ExecCommand, ServiceSection};

/// Kills every process of the sessions it tracks (and the processes themselves) on drop,
/// then reaps the direct children, so no test leaves anything behind even when it fails.
#[derive(Default)]
pub struct Guard {
    pids: Vec<i32>,
}

impl Guard {
    pub fn new() -> Guard {
        Guard::default()
    }

    pub fn track(&mut self, pid: i32) -> i32 {
        self.pids.push(pid);
        pid
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for &pid in &self.pids {
            for p in runtime::processes_of_session(pid) {
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
                libc::kill(pid, libc::SIGKILL);
            }
        }
        for &pid in &self.pids {
            // Blocking is fine: everything was SIGKILLed. ECHILD if already reaped.
            let mut st = 0;
            unsafe { libc::waitpid(pid, &mut st, 0) };
        }
    }
}

/// Polls `cond` every 2 ms until it returns `Some`, or panics after `secs` naming `what`.
pub fn wait_for<T>(secs: u64, what: &str, mut cond: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = cond() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {secs} s waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits for the direct child `pid` to exit and returns how.
pub fn wait_exit(pid: i32, secs: u64) -> ExitInfo {
    wait_for(secs, &format!("pid {pid} to exit"), || {
        runtime::reap_pid(pid).expect("waitpid")
    })
}

pub fn exec(argv: &[&str]) -> ExecCommand {
    ExecCommand {
        path: argv[0].to_string(),
        argv: argv.iter().map(|s| s.to_string()).collect(),
        origin: "test.service:1".into(),
        ..ExecCommand::default()
    }
}

pub fn sh(script: &str) -> ExecCommand {
    exec(&["/bin/sh", "-c", script])
}

/// Reads a pipe to EOF on a helper thread, failing after `secs`.
pub fn read_to_end(fd: OwnedFd, secs: u64) -> String {
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let mut f = std::fs::File::from(fd);
        let mut s = String::new();
        let _ = f.read_to_string(&mut s);
        let _ = tx.send(s);
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .expect("timed out reading the child's output")
}

/// Spawns `cmd` with `svc`, captures stdout+stderr, waits for exit.
pub fn run(svc: &ServiceSection, cmd: &ExecCommand) -> (String, ExitInfo) {
    let dirs = Dirs::default();
    let req = SpawnRequest::new(
        "test.service",
        cmd,
        svc,
        "0123456789abcdef0123456789abcdef",
        &dirs,
    );
    run_req(&req)
}

pub fn run_req(req: &SpawnRequest) -> (String, ExitInfo) {
    let mut guard = Guard::new();
    let Spawned { pid, stdout, .. } = runtime::spawn(req).unwrap_or_else(|e| panic!("spawn: {e}"));
    guard.track(pid);
    let out = read_to_end(stdout.expect("stdout pipe"), 20);
    let exit = wait_exit(pid, 20);
    (out, exit)
}

//! Nothing a unit asks for can stall the event loop. The reproducer of issue 10: a unit
//! whose `StandardOutput=file:` is a FIFO nobody reads used to block the daemon in open(2)
//! for good (no `status`, no restarts, nothing). Now the spawn waits on a spawner thread,
//! as systemd's child would: the unit stays `activating` until a reader comes or its
//! `TimeoutStartSec=` fails it with an error naming the step, while the daemon serves and
//! other units start, stop and run.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::{Daemon, Repo, pids_with_cmdline, service, unique, unique_sleep_secs};

/// Most a `status` round trip may take while a unit's spawn hangs.
const PROMPT: Duration = Duration::from_millis(200);

fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
}

/// Several `status` calls, each answered within [`PROMPT`].
fn assert_status_prompt(daemon: &Daemon, calls: usize) {
    for i in 0..calls {
        let started = Instant::now();
        let status = daemon.try_status();
        let took = started.elapsed();
        assert!(status.is_some(), "status call {i} got no answer");
        assert!(
            took < PROMPT,
            "status call {i} took {took:?} (limit {PROMPT:?}) while a spawn hangs; log:\n{}",
            daemon.log_text()
        );
    }
}

#[test]
fn a_fifo_with_no_reader_as_standard_output_fails_the_unit_at_its_start_timeout_and_wedges_nothing()
{
    let fifo_dir = tempfile::tempdir().expect("tempdir");
    let fifo = fifo_dir.path().join("out.fifo");
    mkfifo(&fifo);
    let hang = format!("{}.service", unique("fifohang"));
    let fine = format!("{}.service", unique("fifofine"));
    let hang_secs = unique_sleep_secs();
    let fine_secs = unique_sleep_secs();
    let repo = Repo::new();
    repo.write(
        &hang,
        &service(
            &format!("/bin/sleep {hang_secs}"),
            &format!(
                "StandardOutput=file:{}\nTimeoutStartSec=2s\nRestart=no",
                fifo.display()
            ),
        ),
    );
    repo.write(&fine, &service(&format!("/bin/sleep {fine_secs}"), ""));
    repo.commit("one unit writing into a FIFO nobody reads, one ordinary unit");
    let started = Instant::now();
    let daemon = Daemon::start(repo.path(), &[]);

    // The other unit of the same commit starts and runs.
    daemon.wait_running(&fine);
    let unit = daemon.unit(&hang);
    assert_eq!(unit["active_state"], "activating", "{unit:#}");
    assert_status_prompt(&daemon, 5);

    // Operator jobs on another unit are answered while the spawn hangs.
    let job = Instant::now();
    daemon.cli_ok(&["stop", &fine]);
    let unit = daemon.unit(&fine);
    assert_eq!(unit["active_state"], "inactive", "{unit:#}");
    daemon.cli_ok(&["start", &fine]);
    daemon.wait_running(&fine);
    assert!(
        job.elapsed() < Duration::from_secs(10),
        "stop + start took {:?}",
        job.elapsed()
    );
    assert_status_prompt(&daemon, 5);

    // At its start timeout, the hung unit fails, saying what blocked.
    let unit = daemon.wait_unit(&hang, "failed", |u| u["active_state"] == "failed");
    let failed_after = started.elapsed();
    let error = unit["error"].as_str().unwrap_or_default().to_string();
    let expected = format!(
        "opening StandardOutput=file:{} (a FIFO with no reader) blocked for 2s; start timed out after 2s (TimeoutStartSec=)",
        fifo.display()
    );
    assert_eq!(error, expected, "{unit:#}");
    assert_eq!(unit["result"], "timeout", "{unit:#}");
    assert!(
        failed_after >= Duration::from_secs(2),
        "failed after {failed_after:?}, before its TimeoutStartSec=2s"
    );
    assert!(unit["main_pid"].is_null(), "{unit:#}");
    // The given-up spawn never runs, even once a reader comes.
    let _reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .expect("open the FIFO for reading");
    assert_status_prompt(&daemon, 3);
    assert!(
        pids_with_cmdline(&["/bin/sleep", &hang_secs]).is_empty(),
        "the abandoned spawn started a process; log:\n{}",
        daemon.log_text()
    );
    assert_eq!(daemon.unit(&hang)["active_state"], "failed");
    daemon.wait_running(&fine);
}

#[test]
fn a_fifo_standard_output_starts_the_unit_once_a_reader_comes() {
    let fifo_dir = tempfile::tempdir().expect("tempdir");
    let fifo = fifo_dir.path().join("out.fifo");
    mkfifo(&fifo);
    let name = format!("{}.service", unique("fiforeader"));
    let repo = Repo::new();
    repo.write(
        &name,
        &service(
            "/bin/sh -c 'echo hello-through-the-fifo; exec sleep 1000'",
            &format!(
                "StandardOutput=file:{}\nTimeoutStartSec=60s",
                fifo.display()
            ),
        ),
    );
    repo.commit("a unit writing into a FIFO");
    let daemon = Daemon::start(repo.path(), &[]);
    let unit = daemon.unit(&name);
    assert_eq!(unit["active_state"], "activating", "{unit:#}");
    assert_status_prompt(&daemon, 3);
    // As systemd: the start waits for a reader, then goes on.
    let reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .expect("open the FIFO for reading");
    daemon.wait_running(&name);
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut reader = reader;
    while !String::from_utf8_lossy(&got).contains("hello-through-the-fifo") {
        assert!(Instant::now() < deadline, "read {got:?} from the FIFO");
        let mut buf = [0u8; 256];
        match std::io::Read::read(&mut reader, &mut buf) {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("reading the FIFO: {e}"),
        }
    }
}

#[test]
fn an_operator_stop_of_a_unit_whose_spawn_hangs_is_answered_and_cancels_the_spawn() {
    let fifo_dir = tempfile::tempdir().expect("tempdir");
    let fifo = fifo_dir.path().join("out.fifo");
    mkfifo(&fifo);
    let name = format!("{}.service", unique("fifostop"));
    let secs = unique_sleep_secs();
    let repo = Repo::new();
    repo.write(
        &name,
        &service(
            &format!("/bin/sleep {secs}"),
            &format!(
                "StandardOutput=file:{}\nTimeoutStartSec=60s",
                fifo.display()
            ),
        ),
    );
    repo.commit("a unit whose spawn hangs");
    let daemon = Daemon::start(repo.path(), &[]);
    assert_eq!(daemon.unit(&name)["active_state"], "activating");
    let asked = Instant::now();
    daemon.cli_ok(&["stop", &name]);
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        asked.elapsed()
    );
    let unit = daemon.unit(&name);
    assert_eq!(unit["active_state"], "inactive", "{unit:#}");
    let _reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .expect("open the FIFO for reading");
    assert_status_prompt(&daemon, 3);
    assert!(
        pids_with_cmdline(&["/bin/sleep", &secs]).is_empty(),
        "the cancelled spawn started a process; log:\n{}",
        daemon.log_text()
    );
    // And a start afterwards waits for the reader again, then runs.
    daemon.cli_ok(&["start", &name]);
    daemon.wait_running(&name);
}

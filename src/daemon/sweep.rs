//! The fallback sweep: a safety net behind SIGCHLD that does not wake the event loop.
//!
//! SIGCHLD is the way the loop learns of exits; the sweep exists for the exit whose signal
//! was coalesced or lost. It used to be a 0.2 s timeout of the loop's `select!`, so an idle
//! daemon woke the loop five times a second to run its passes over every unit and find
//! nothing (issue 14: 23 ms of CPU per 30 s with 100 services). Here a small thread peeks
//! every period (`waitid(P_ALL, WNOHANG | WNOWAIT)`: the child stays waitable, nothing is
//! collected) and only when a child is waiting does it send the loop the message a SIGCHLD
//! would have sent. The loop's own reaping rules (`daemon::reaper`) are unchanged; a
//! waitable child of the source worker makes a harmless extra wakeup until its owner
//! collects it.

use std::time::Duration;

use crossbeam_channel::Sender;

use super::signals::SignalEvent;

/// Starts the sweep thread. It ends at the first send that finds the loop gone; until
/// then it lives as long as the daemon process.
pub fn start(period: Duration, tx: Sender<SignalEvent>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("sweep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(period);
                if super::reaper::peek_exited().is_some() && tx.send(SignalEvent::Child).is_err() {
                    return;
                }
            }
        })?;
    Ok(())
}

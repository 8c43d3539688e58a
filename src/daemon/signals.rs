//! The signal thread: turns SIGCHLD, SIGTERM, SIGINT and SIGHUP into messages for the loop.
//!
//! signal-hook's iterator does the async-signal-safe part (a self-pipe); this thread only
//! forwards. Several SIGCHLDs may coalesce into one message: the loop reaps until
//! `waitpid` reports nothing, so none is lost.

use crossbeam_channel::Sender;
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// What a signal means to the event loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalEvent {
    /// One or more children changed state: reap.
    Child,
    /// SIGTERM or SIGINT: stop services (unless keeping them) and exit.
    Shutdown,
    /// SIGHUP: check git now, as `gitproc sync`.
    Reload,
}

/// Installs the handlers and starts the forwarding thread.
pub fn start(tx: Sender<SignalEvent>) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGCHLD, SIGTERM, SIGINT, SIGHUP])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                let event = match signal {
                    SIGCHLD => SignalEvent::Child,
                    SIGHUP => SignalEvent::Reload,
                    _ => SignalEvent::Shutdown,
                };
                if tx.send(event).is_err() {
                    return;
                }
            }
        })?;
    Ok(())
}

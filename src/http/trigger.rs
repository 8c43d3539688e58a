//! Webhook-triggered checks, coalesced and rate-limited.
//!
//! A push webhook asks for one check of the source, the same `sync` request `gitproc sync`
//! sends through the control socket. The hook's handler never waits for it: it drops a
//! token into a one-slot channel and answers 202. This thread takes the token, waits out
//! the minimum gap since the previous check began, asks the loop for the check and waits
//! for its answer (the loop answers when the source worker has checked). Tokens dropped
//! meanwhile find the slot full: any number of pushes during one check give exactly one
//! more check after it, which sees them all. So a burst of hooks costs the git server at
//! most one ref advertisement per gap, and a push is never left unchecked.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};

use crate::control::protocol::Verb;
use crate::control::server::ControlRequest;

/// How long a check may take before the trigger stops waiting for its answer (the check
/// goes on; the next token asks for another).
const CHECK_DEADLINE: Duration = Duration::from_secs(120);

/// The handle handlers use.
#[derive(Clone)]
pub struct Trigger {
    slot: Sender<()>,
}

/// What [`Trigger::fire`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fired {
    /// A check will start (now, or when the minimum gap has passed).
    Queued,
    /// A check is already queued; it will see this push too.
    Coalesced,
    /// The trigger thread is gone (the daemon is exiting).
    Gone,
}

impl Trigger {
    /// Starts the trigger thread: checks go to the loop as `sync` requests on `to_loop`,
    /// at most one per `min_gap`.
    pub fn start(
        to_loop: Sender<ControlRequest>,
        peer: crate::control::server::Peer,
        min_gap: Duration,
    ) -> std::io::Result<Trigger> {
        let (slot, rx) = bounded(1);
        std::thread::Builder::new()
            .name("http-trigger".into())
            .stack_size(256 << 10)
            .spawn(move || run(&rx, &to_loop, peer, min_gap))?;
        Ok(Trigger { slot })
    }

    pub fn fire(&self) -> Fired {
        match self.slot.try_send(()) {
            Ok(()) => Fired::Queued,
            Err(TrySendError::Full(())) => Fired::Coalesced,
            Err(TrySendError::Disconnected(())) => Fired::Gone,
        }
    }
}

fn run(
    rx: &Receiver<()>,
    to_loop: &Sender<ControlRequest>,
    peer: crate::control::server::Peer,
    min_gap: Duration,
) {
    let mut last_start: Option<Instant> = None;
    while rx.recv().is_ok() {
        if let Some(at) = last_start.and_then(|t| t.checked_add(min_gap)) {
            let wait = at.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
        }
        last_start = Some(Instant::now());
        let (reply_tx, reply_rx) = bounded(1);
        let request = ControlRequest {
            verb: Verb::Sync,
            peer,
            peer_name: None,
            reply: reply_tx,
        };
        if to_loop.send(request).is_err() {
            return;
        }
        match reply_rx.recv_timeout(CHECK_DEADLINE) {
            Ok(reply) if reply.ok => {
                tracing::debug!("webhook check done: {}", reply.data);
            }
            Ok(reply) => tracing::warn!(
                "webhook check failed: {}",
                reply.error.as_deref().unwrap_or("no reason given")
            ),
            Err(_) => tracing::warn!(
                "webhook check: no answer within {} s; the next push asks again",
                CHECK_DEADLINE.as_secs()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::Reply;
    use crate::control::server::Peer;

    const PEER: Peer = Peer {
        pid: 1,
        uid: 0,
        gid: 0,
    };

    #[test]
    fn pushes_during_a_check_give_one_more_check_after_the_gap() {
        let (to_loop, from_trigger) = crossbeam_channel::unbounded();
        let gap = Duration::from_millis(200);
        let trigger = Trigger::start(to_loop, PEER, gap).unwrap();
        assert_eq!(trigger.fire(), Fired::Queued);
        let first = from_trigger.recv_timeout(Duration::from_secs(5)).unwrap();
        let first_at = Instant::now();
        assert!(matches!(first.verb, Verb::Sync));
        // While that check runs: one more is queued, the rest share it.
        assert_eq!(trigger.fire(), Fired::Queued);
        for _ in 0..5 {
            assert_eq!(trigger.fire(), Fired::Coalesced);
        }
        first.reply.send(Reply::ok(serde_json::json!({}))).unwrap();
        let second = from_trigger.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(
            first_at.elapsed() >= gap - Duration::from_millis(5),
            "the second check waited for the gap: {:?}",
            first_at.elapsed()
        );
        second.reply.send(Reply::ok(serde_json::json!({}))).unwrap();
        // Nothing else was asked for: a fixed wait on purpose, it shows an absence.
        assert!(
            from_trigger
                .recv_timeout(Duration::from_millis(400))
                .is_err(),
            "six pushes during one check gave more than one more check"
        );
    }
}

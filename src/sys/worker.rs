//! A worker thread that blocks in poll/epoll over fds of its own and is woken through an
//! eventfd: to look at its command queue, or to stop.
//!
//! The log collector, the pidfd watcher and the notify socket receiver each own such a
//! thread. The owner keeps a [`Worker`]: [`Worker::send`] queues a command and wakes the
//! thread; dropping the `Worker` asks the thread to stop, wakes it and joins it. The thread
//! gets an [`Inbox`]: it waits with [`Inbox::poll`] (or registers [`Inbox::fd`] in its own
//! epoll set) and, when woken, calls [`Inbox::take`], which hands it every queued command
//! and tells it whether to stop.
//!
//! Ordering: a command sent before the `Worker` is dropped is always handed to the thread
//! before `take` reports the stop, so a thread never loses work queued before shutdown.

use std::convert::Infallible;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use super::eventfd::EventFd;
use super::retry_eintr;

struct Shared {
    wake: EventFd,
    stop: AtomicBool,
}

/// The owner's handle to a worker thread with commands of type `C` (`Infallible` for a
/// thread that takes none). Dropping it stops and joins the thread.
pub struct Worker<C = Infallible> {
    cmds: Sender<C>,
    shared: Arc<Shared>,
    /// Names the thread in errors: "`what` thread has stopped".
    what: &'static str,
    thread: Option<JoinHandle<()>>,
}

/// The thread's side: the wakeup fd and the command queue.
pub struct Inbox<C> {
    cmds: Receiver<C>,
    shared: Arc<Shared>,
}

impl<C: Send + 'static> Worker<C> {
    /// Starts thread `name` running `body`. `what` names it in errors ("log collector").
    pub fn spawn(
        name: &str,
        what: &'static str,
        body: impl FnOnce(Inbox<C>) + Send + 'static,
    ) -> io::Result<Worker<C>> {
        let shared = Arc::new(Shared {
            wake: EventFd::new()?,
            stop: AtomicBool::new(false),
        });
        let (tx, rx) = crossbeam_channel::unbounded();
        let inbox = Inbox {
            cmds: rx,
            shared: Arc::clone(&shared),
        };
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || body(inbox))?;
        Ok(Worker {
            cmds: tx,
            shared,
            what,
            thread: Some(thread),
        })
    }
}

impl<C> Worker<C> {
    /// Queues `cmd` and wakes the thread. Fails once the thread has returned.
    pub fn send(&self, cmd: C) -> io::Result<()> {
        self.cmds
            .send(cmd)
            .map_err(|_| io::Error::other(format!("{} thread has stopped", self.what)))?;
        self.shared.wake.wake()
    }
}

impl<C> Drop for Worker<C> {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = self.shared.wake.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl<C> Inbox<C> {
    /// The wakeup fd, readable when [`take`](Self::take) has something to say; for a thread
    /// that waits in an epoll set of its own.
    pub fn fd(&self) -> RawFd {
        self.shared.wake.as_raw_fd()
    }

    /// Blocks in poll(2) until one of `fds` or the wakeup fd is ready (EINTR retried).
    /// Returns whether the wakeup fd was: then call [`take`](Self::take). `fds` is handed
    /// back as it was, with its `revents` filled in.
    pub fn poll(&self, fds: &mut Vec<libc::pollfd>) -> io::Result<bool> {
        fds.push(libc::pollfd {
            fd: self.fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        // SAFETY: fds is a valid array of pollfd for its length.
        let r =
            retry_eintr(|| unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) });
        let woken = fds.pop().is_some_and(|p| p.revents != 0);
        r.map(|_| woken)
    }

    /// After a wakeup: clears it, hands `handle` every command queued so far, and returns
    /// `false` when the owner has dropped its [`Worker`], i.e. the thread should finish up
    /// and return.
    pub fn take(&self, mut handle: impl FnMut(C)) -> bool {
        self.shared.wake.drain();
        // Read before the queue: whatever was sent before the stop is then in it.
        let stop = self.shared.stop.load(Ordering::SeqCst);
        while let Ok(cmd) = self.cmds.try_recv() {
            handle(cmd);
        }
        !stop
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_sent_before_the_drop_are_handled_then_the_thread_stops() {
        let (seen_tx, seen_rx) = crossbeam_channel::unbounded();
        let worker = Worker::spawn("gitproc-test", "test worker", move |inbox: Inbox<u32>| {
            loop {
                let mut fds = Vec::new();
                if !inbox.poll(&mut fds).expect("poll") {
                    continue;
                }
                if !inbox.take(|n| {
                    let _ = seen_tx.send(n);
                }) {
                    let _ = seen_tx.send(0);
                    return;
                }
            }
        })
        .expect("spawn");
        for n in 1..=100 {
            worker.send(n).expect("send");
        }
        drop(worker);
        let seen: Vec<u32> = seen_rx.try_iter().collect();
        let expected: Vec<u32> = (1..=100).chain([0]).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn send_fails_once_the_thread_has_returned() {
        let worker =
            Worker::<u32>::spawn("gitproc-test", "test worker", |_inbox| {}).expect("spawn");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match worker.send(1) {
                Err(e) => {
                    assert_eq!(e.to_string(), "test worker thread has stopped");
                    break;
                }
                Ok(()) => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "thread never returned"
                    );
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
        }
    }
}

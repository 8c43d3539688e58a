//! Readiness of the listening sockets of socket units, watched off the loop.
//!
//! [`SocketWatcher`] runs one thread ([`crate::sys::worker`]) that polls the fds of every
//! watched socket unit. The first readable fd of a unit (a connection waiting, a datagram
//! queued) sends that unit's name and watch number once, and the unit leaves the poll set:
//! the loop starts the service, which then owns the traffic; the loop watches again once
//! the service is gone. The thread holds its own references to the fds (`Arc`), so a fd
//! number it polls is never reused while it does.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use crate::sys::worker::{Inbox, Worker};

/// "Socket unit `unit` is readable", for watch number `generation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readable {
    pub unit: String,
    pub generation: u64,
}

enum Command {
    Watch {
        unit: String,
        generation: u64,
        fds: Vec<Arc<OwnedFd>>,
    },
    Unwatch {
        unit: String,
    },
}

/// One thread watching the listening fds of socket units. Dropping it stops the thread.
pub struct SocketWatcher {
    worker: Worker<Command>,
}

impl SocketWatcher {
    /// Starts the watcher thread; readiness arrives on the returned receiver.
    pub fn start() -> io::Result<(SocketWatcher, Receiver<Readable>)> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let worker = Worker::spawn("gitproc-sockets", "socket watcher", move |inbox| {
            watch_loop(inbox, tx)
        })?;
        Ok((SocketWatcher { worker }, rx))
    }

    /// Watches `fds` for `unit` (replacing an earlier watch of it).
    pub fn watch(&self, unit: &str, generation: u64, fds: Vec<Arc<OwnedFd>>) -> io::Result<()> {
        self.worker.send(Command::Watch {
            unit: unit.to_string(),
            generation,
            fds,
        })
    }

    /// Stops watching `unit` and drops the thread's references to its fds.
    pub fn unwatch(&self, unit: &str) -> io::Result<()> {
        self.worker.send(Command::Unwatch {
            unit: unit.to_string(),
        })
    }
}

fn watch_loop(inbox: Inbox<Command>, out: Sender<Readable>) {
    let mut watched: HashMap<String, (u64, Vec<Arc<OwnedFd>>)> = HashMap::new();
    loop {
        let mut owners: Vec<&String> = Vec::new();
        let mut fds = Vec::new();
        for (unit, (_, list)) in &watched {
            for fd in list {
                owners.push(unit);
                fds.push(libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
        }
        let woken = match inbox.poll(&mut fds) {
            Ok(woken) => woken,
            Err(e) => {
                tracing::error!("socket watcher: poll failed: {e}");
                return;
            }
        };
        let ready: Vec<String> = fds
            .iter()
            .zip(&owners)
            .filter(|(p, _)| p.revents != 0)
            .map(|(_, u)| (*u).clone())
            .collect();
        for unit in ready {
            if let Some((generation, _)) = watched.remove(&unit) {
                let _ = out.send(Readable { unit, generation });
            }
        }
        if woken {
            let running = inbox.take(|cmd| match cmd {
                Command::Watch {
                    unit,
                    generation,
                    fds,
                } => {
                    watched.insert(unit, (generation, fds));
                }
                Command::Unwatch { unit } => {
                    watched.remove(&unit);
                }
            });
            if !running {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn a_readable_socket_is_reported_once_then_left_alone() {
        let (watcher, rx) = SocketWatcher::start().expect("watcher");
        let (a, b) = UnixDatagram::pair().expect("pair");
        let fd: OwnedFd = a.into();
        watcher
            .watch("x.socket", 7, vec![Arc::new(fd)])
            .expect("watch");
        let timeout = std::time::Duration::from_secs(5);
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(100))
                .is_err()
        );
        b.send(b"hi").expect("send");
        let got = rx.recv_timeout(timeout).expect("readable");
        assert_eq!(
            got,
            Readable {
                unit: "x.socket".into(),
                generation: 7
            }
        );
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(200))
                .is_err(),
            "still readable, but no longer watched"
        );
    }
}

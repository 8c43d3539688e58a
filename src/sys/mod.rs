//! The bottom layer: small OS helpers, one of each, that the adapters above share.
//!
//! - [`procstat`]: the one `/proc/PID/stat` parser (start times, sessions, states);
//! - [`retry_eintr`]: the one "call again while the system call says EINTR" loop;
//! - [`malloc`]: the C allocator's totals and giving its free pages back;
//! - [`eventfd::EventFd`]: the one eventfd (a counter a thread can block on in poll/epoll);
//! - [`time`]: saturating clock arithmetic (a deadline too far away is "never", no panic);
//! - [`worker::Worker`]: the one worker thread woken by that eventfd, with a command queue
//!   and a clean stop on drop (the log collector, the pidfd watcher, the notify socket).
//!
//! `sys` imports nothing from the rest of the crate: it sits below every other module.

pub mod eventfd;
pub mod malloc;
pub mod procstat;
mod retry;
pub mod time;
pub mod worker;

pub use retry::retry_eintr;

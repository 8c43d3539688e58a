//! The per-service state machine (pure): `on_event(event, now) -> effects`.
//!
//! No I/O, no clock: the event loop feeds [`Event`]s with the current [`std::time::Instant`],
//! performs the returned [`Effect`]s and calls back at [`Service::next_deadline`]. systemd's
//! semantics (systemd.service(5), systemd.kill(5)) are followed; where gitproc differs it is
//! said on the item.

pub(crate) mod event;
pub mod exit_code;
pub mod health;
pub(crate) mod machine;
pub(crate) mod monitor;
pub(crate) mod notify;
pub(crate) mod restart;
pub(crate) mod state;

pub use event::{Effect, Event, ExecKind, ExitStatus, KillTarget, Lifecycle, ProcessRole, Status};
pub use machine::Service;
pub use notify::NotifyMessage;
pub use state::{ActiveState, ServiceResult, SubState, UnknownWord};

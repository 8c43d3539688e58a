//! gitproc: a systemd-like process supervisor driven by a git repository.
//!
//! The crate is a library with a thin binary (`src/main.rs`). See ARCHITECTURE.md for the
//! bird's-eye view. In short:
//!
//! - [`unit`]: the unit file parser (pure): bytes in, typed [`unit::model::Unit`] and diagnostics out.
//! - [`service`]: the per-service state machine (pure): `on_event(event, now) -> effects`.
//! - [`deps`]: the dependency graph between units (pure): order, cycles, start gating.
//! - `reconcile`: a parsed unit set + what runs + what a previous daemon left -> actions (pure).
//! - [`timer`]: calendar expressions and timer schedules (pure): next elapse from settings and clocks.
//! - [`source`]: where desired state comes from: git (gix) or a plain directory; poll schedule; diff.
//! - [`runtime`]: the OS side of services: fork/exec, signals, reaping, the notify socket.
//! - [`logs`]: the single log collector thread and rotation.
//! - [`state`]: the persisted state file, its batched atomic writer and the daemon lock.
//! - [`control`]: the control socket protocol, server and client.
//! - [`http`]: the optional HTTP listener (webhooks, `/metrics`, `/v1/status`); [`metrics`]: its
//!   Prometheus exposition (pure).
//! - [`daemon`]: the event loop that owns all supervisor state and wires everything together.
//! - [`cli`]: the `gitproc` command line.

pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod deps;
pub mod http;
pub mod logs;
pub mod metrics;
pub mod perf;
pub(crate) mod reconcile;
pub(crate) mod rollout;
pub mod runtime;
pub mod service;
pub mod source;
pub mod state;
pub(crate) mod sys;
/// The whole-core simulation driver shared by the proptest and the fuzz target.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod testing;
pub mod timer;
pub mod tree;
pub mod unit;

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

/// How build.rs links the binaries, checked in the test binary, which is linked the same way.
#[cfg(test)]
mod link_tests {
    /// With gcc's static unwinder linked in, panics still unwind through `catch_unwind`
    /// (the test harness relies on it, and a panicking thread reports its error to the one
    /// that joins it) and backtraces still have frames.
    #[test]
    fn panics_unwind_and_backtraces_resolve_with_the_linked_unwinder() {
        let caught = std::panic::catch_unwind(|| panic!("an unwinding test panic"));
        assert!(caught.is_err(), "the panic did not unwind to catch_unwind");
        let trace = std::backtrace::Backtrace::force_capture();
        assert_eq!(trace.status(), std::backtrace::BacktraceStatus::Captured);
        // The unwinder walks the frames; this test's own name must be among them.
        let text = trace.to_string();
        assert!(
            text.contains("panics_unwind_and_backtraces_resolve"),
            "the backtrace misses this test's frame:\n{text}"
        );
    }

    /// Where build.rs linked `libgcc_eh.a`, nothing loads `libgcc_s.so.1` any more.
    #[test]
    fn the_static_unwinder_leaves_libgcc_s_unloaded() {
        match option_env!("GITPROC_UNWINDER") {
            Some("static") => {}
            Some("missing") if std::env::var_os("CI").is_some_and(|v| v == "true") => {
                panic!("`cc -print-file-name=libgcc_eh.a` names no archive: install gcc")
            }
            how => {
                eprintln!("skipped: build.rs linked the dynamic unwinder ({how:?})");
                return;
            }
        }
        let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps");
        assert!(!maps.contains("libgcc_s"), "libgcc_s.so is mapped:\n{maps}");
    }
}

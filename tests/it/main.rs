//! All integration tests in one binary, so the crate (and gix) is linked once instead of
//! once per test file. Modules are named after what users write: `section_unit_*` and
//! `section_service_*` for unit sections, `cli_*` for verbs, `git_*`, `state_*`, `daemon_*`.
//!
//! `tests/state_save_log.rs` stays a binary of its own: it captures `tracing` output with a
//! thread-local subscriber, and tracing's per-callsite interest cache is shared with every
//! other test thread of a binary.

mod runtime_support;
mod support;

// The `gitproc` verbs, one module per verb (or verb group).
mod bench_fleet;
mod bench_regress;
mod cli_check;
mod cli_completions;
mod cli_daemon;
mod cli_daemon_dir;
mod cli_engine;
mod cli_freeze;
mod cli_list;
mod cli_list_timers;
mod cli_logs;
mod cli_perf;
mod cli_plan;
mod cli_start_stop;
mod cli_status;
mod cli_sync;
// The daemon as a whole: reaping, crash recovery, the control socket.
mod daemon_control_abuse;
mod daemon_control_socket;
mod daemon_crash_loops;
mod daemon_duplicates;
mod daemon_hostile_units;
mod daemon_http;
mod daemon_lock;
mod daemon_never_blocks;
mod daemon_pid1;
mod daemon_reaping;
mod daemon_recovery;
#[cfg(debug_assertions)]
mod daemon_spawn_fault;
// Desired state from git: sources, deploys, rollback, signatures.
mod git_bad_repos;
mod git_deploy;
mod git_oversized_files;
mod git_remotes;
mod git_rollback;
mod git_rollout;
mod git_signing;
mod git_source;
// `[Unit]` directives, end to end.
mod section_unit_conditions;
mod section_unit_dependencies;
mod section_unit_on_failure;
// `[Service]` directives, end to end.
mod section_health;
mod section_service_exec;
mod section_service_kill;
mod section_service_kill_no_cgroup;
mod section_service_notify;
mod section_service_pid_file;
mod section_service_resources;
mod section_service_restart;
mod section_service_type;
mod section_socket;
mod section_timer;
// The state file, its writer, the lock, process identity.
mod state_faults;
mod state_file;
mod state_file_props;
mod state_identity;
mod state_lock;
mod state_writer;
// Unit files: loading, every directive, distribution units, no panics.
mod unit_debian;
mod unit_directives;
mod unit_load;
mod unit_never_panics;
mod unit_real_daemons;
// The runtime adapters in-process: spawn, kill, notify socket.
mod runtime_kill;
mod runtime_notify;
mod runtime_spawn;
// The log collector.
mod logs_collector;
mod logs_daemon_log;
// The source tree itself: the layering rule of ARCHITECTURE.md.
mod layering;
// The pure per-service state machine on a simulated clock.
mod service_machine;
// Packaging and operator tools.
mod packaging_install;
mod packaging_prometheus;
mod profile_script;

//! Timers (issue 12), the pure core: nothing here reads a clock or does I/O (except that a
//! calendar expression's time zone name is resolved through jiff's IANA database when it
//! is parsed).
//!
//! - [`calendar`]: systemd's calendar event syntax (`OnCalendar=`): parse, print the
//!   normalized form, compute the next elapse after a given instant.
//! - [`schedule`]: a timer's next elapse from its settings and the facts about clocks and
//!   units: the earliest across all settings, `RandomizedDelaySec=`, `AccuracySec=`
//!   coalescing, `Persistent=`.
//! - [`state`]: one timer unit's own small state (waiting, running, elapsed; last trigger;
//!   next elapse) as the event loop keeps it, and when it fires.

pub mod calendar;
pub mod schedule;
pub mod state;

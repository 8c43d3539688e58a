//! The unit file parser: systemd's syntax in, a typed [`model::Unit`] and diagnostics out.
//! Pure: no I/O beyond the bytes it is given.

pub mod model;

//! Daemon configuration: TOML file, overridden by flags.

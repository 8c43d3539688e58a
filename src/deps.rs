//! The dependency graph between units (pure).

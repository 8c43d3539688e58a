//! Fixed-size latency histograms of the daemon's own operations.

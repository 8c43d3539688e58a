//! Orderly shutdown: stop every service in reverse dependency order (or leave them for the
//! next daemon with `--keep-services`), answer whoever waits, save state a last time.

use super::Supervisor;
use crate::control::protocol::{Reply, exit};

impl Supervisor {
    /// Starts an orderly shutdown; returns true when the daemon can exit right away.
    pub(super) fn begin_shutdown(&mut self) -> bool {
        if self.shutting_down {
            tracing::warn!("second shutdown signal: exiting now");
            return true;
        }
        self.shutting_down = true;
        for (_, reply) in self.syncs.drain() {
            let _ = reply.send(Reply::error(exit::FAILURE, "the daemon is shutting down"));
        }
        self.start_queue.clear();
        if self.settings.keep_services {
            tracing::info!("shutting down, leaving services running for the next daemon to adopt");
            return true;
        }
        tracing::info!("shutting down: stopping all services in reverse dependency order");
        let names: Vec<String> = self.units.keys().cloned().collect();
        self.stop_queue = self.graph.stop_order(&names);
        for name in &names {
            if !self.stop_queue.contains(name) {
                self.stop_queue.push(name.clone());
            }
        }
        self.process_queues();
        self.all_stopped()
    }

    pub(super) fn all_stopped(&self) -> bool {
        self.stop_queue.is_empty() && !self.units.keys().any(|n| self.is_running(n))
    }

    /// Saves state a last time and tidies the cgroups; returns the daemon's exit code.
    pub(super) fn finish_shutdown(mut self) -> i32 {
        self.reap();
        self.writer.submit(self.persisted());
        for w in self.waiters.drain(..) {
            let _ = w
                .reply
                .send(Reply::error(exit::FAILURE, "the daemon shut down"));
        }
        let saved = self.writer.flush_async().recv().unwrap_or(Ok(()));
        self.drain_job_saves();
        if let Err(err) = saved {
            tracing::error!("final state save failed: {err}");
            return exit::FAILURE;
        }
        if !self.settings.keep_services {
            // Best effort: empty cgroups are harmless but would pile up, one per state dir.
            for m in self.units.values() {
                if let Some(cgroup) = m.tracker.cgroup() {
                    let _ = cgroup.remove();
                }
            }
            if let Some(root) = &self.cgroups {
                let _ = root.remove();
            }
            self.remove_all_cgroups();
        }
        tracing::info!("shutdown complete");
        exit::OK
    }
}

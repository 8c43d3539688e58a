//! The batched state writer thread.
//!
//! The event loop must never wait for a disk, and a burst of changes (a thousand services
//! starting) must not become a thousand fsyncs. So the loop hands each batch's complete state to
//! [`StateWriter::submit`], which only replaces a pending slot, and this thread decides when to
//! write:
//!
//! - the first change after a quiet period is saved at once (small loss window);
//! - while changes keep coming, saves are spaced by `interval` (default 5 s): a burst of any
//!   size costs one save per interval, and the latest state always wins;
//! - two unforced saves are never closer than `min_gap` (default 2 s), even if `interval` is
//!   configured below it;
//! - **forced saves are the exception**: [`StateWriter::flush`] (shutdown, operator
//!   `start`/`stop`, whose answer must come after the write) saves immediately, bypassing both
//!   limits. Forced saves count as saves for the spacing of the next unforced one.
//!
//! A failed save keeps the state pending (unless a newer one arrived) and is retried after
//! `interval`; the previous file stays intact (see [`super::atomic`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender};

use super::atomic::{DirectWrite, WriteStep, save_with};
use super::format::{PersistedState, StateError};

/// Timing of unforced saves. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterConfig {
    /// Spacing of saves while the state keeps changing (default 5 s).
    pub interval: Duration,
    /// Minimum spacing of two unforced saves (default 2 s).
    pub min_gap: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            interval: Duration::from_secs(5),
            min_gap: Duration::from_secs(2),
        }
    }
}

/// Counters for `perf stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// States handed to [`StateWriter::submit`].
    pub submits: u64,
    /// Successful saves (forced ones included).
    pub saves: u64,
    /// Of which forced by [`StateWriter::flush`] or shutdown.
    pub forced_saves: u64,
    /// Failed save attempts.
    pub failures: u64,
    /// Duration of the last successful save.
    pub last_duration: Option<Duration>,
    /// Size in bytes of the last successful save.
    pub last_bytes: Option<u64>,
    /// Message of the last failure, if the last attempt failed (cleared by a success).
    pub last_error: Option<String>,
    /// When the current run of failures began (the first failure after a success), so
    /// `status` can say since when the state is not saved; cleared by a success.
    pub last_error_since: Option<SystemTime>,
}

struct Inner {
    pending: Option<PersistedState>,
    /// When `pending` went from empty to full.
    dirty_since: Option<Instant>,
    /// Callers of `flush` waiting for the next save.
    waiters: Vec<Sender<Result<(), StateError>>>,
    shutdown: bool,
    alive: bool,
    stats: WriterStats,
}

struct Shared {
    inner: Mutex<Inner>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The lock only guards plain data that stays consistent at every statement, so a
        // panic elsewhere while holding it does not invalidate it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Handle to the writer thread. Dropping it behaves like [`StateWriter::shutdown`] (final save,
/// join) without reporting the result.
pub struct StateWriter {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
}

impl std::fmt::Debug for StateWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateWriter")
            .field("path", &self.path)
            .finish()
    }
}

impl StateWriter {
    /// Starts the writer thread saving to `path` (normally `<state-dir>/state.json`).
    pub fn spawn(path: PathBuf, cfg: WriterConfig) -> Result<StateWriter, StateError> {
        StateWriter::spawn_with(path, cfg, Box::new(DirectWrite))
    }

    /// [`StateWriter::spawn`] with an injected write step (tests: failures, timestamps).
    pub fn spawn_with(
        path: PathBuf,
        cfg: WriterConfig,
        step: Box<dyn WriteStep>,
    ) -> Result<StateWriter, StateError> {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                pending: None,
                dirty_since: None,
                waiters: Vec::new(),
                shutdown: false,
                alive: true,
                stats: WriterStats::default(),
            }),
            wake: Condvar::new(),
        });
        let thread = std::thread::Builder::new()
            .name("gitproc-state".into())
            .spawn({
                let shared = Arc::clone(&shared);
                let path = path.clone();
                move || run(&shared, &path, cfg, step)
            })
            .map_err(|source| StateError::Io {
                op: "start the state writer thread for",
                path: path.clone(),
                source,
            })?;
        Ok(StateWriter {
            shared,
            thread: Some(thread),
            path,
        })
    }

    /// Hands over the latest complete state. Cheap: replaces the pending slot (an unsaved older
    /// state is dropped, the newest wins) and wakes the thread; never touches the disk.
    ///
    /// Only a submit that finds the slot empty wakes the thread: with a state pending, the
    /// thread is already waiting for that state's due time (which a newer state does not
    /// move) or saving, and takes the newest state when it gets there. So a burst of
    /// submits costs the writer one wake-up, not one each.
    pub fn submit(&self, state: PersistedState) {
        let mut g = self.shared.lock();
        let was_clean = g.pending.is_none();
        if was_clean {
            g.dirty_since = Some(Instant::now());
        }
        let old = g.pending.replace(state);
        g.stats.submits += 1;
        drop(g);
        if was_clean {
            self.shared.wake.notify_one();
        }
        // Free the superseded state outside the lock.
        drop(old);
    }

    /// Requests a forced save of the latest submitted state and returns a channel that yields
    /// its result once it is on disk (fsynced). For an event loop that selects on channels: it
    /// can answer an operator's `start`/`stop` when the result arrives. If nothing is pending
    /// (everything submitted is already saved), the result is `Ok` without a write.
    pub fn flush_async(&self) -> Receiver<Result<(), StateError>> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let mut g = self.shared.lock();
        if g.alive {
            g.waiters.push(tx);
            drop(g);
            self.shared.wake.notify_one();
        } else {
            // Cannot fail: the channel has room for one message and we hold the receiver.
            let _ = tx.try_send(Err(StateError::WriterGone));
        }
        rx
    }

    /// Forces a save of the latest submitted state now and waits until it is on disk.
    /// Bypasses `interval` and `min_gap` (forced saves are the exception).
    pub fn flush(&self) -> Result<(), StateError> {
        self.flush_async()
            .recv()
            .unwrap_or(Err(StateError::WriterGone))
    }

    /// Saves what is pending, stops the thread and waits for it. Returns the final save's
    /// result.
    pub fn shutdown(mut self) -> Result<(), StateError> {
        let result = self.flush();
        self.stop();
        result
    }

    /// Counters for `perf stats`.
    pub fn stats(&self) -> WriterStats {
        self.shared.lock().stats.clone()
    }

    /// Where the state is saved.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn stop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!(path = %self.path.display(), "state writer thread panicked");
        }
    }
}

impl Drop for StateWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Marks the writer dead when the thread ends (even by panic), so `flush` callers get
/// `WriterGone` instead of waiting forever.
struct AliveGuard<'a>(&'a Shared);

impl Drop for AliveGuard<'_> {
    fn drop(&mut self) {
        let mut g = self.0.lock();
        g.alive = false;
        // Dropping the senders wakes their receivers with a disconnect -> WriterGone.
        g.waiters.clear();
    }
}

/// When the pending state may be saved without being forced.
fn next_due(dirty_since: Instant, last_attempt: Option<Instant>, cfg: WriterConfig) -> Instant {
    match last_attempt {
        None => dirty_since,
        Some(last) => dirty_since.max(crate::sys::time::later(last, cfg.interval.max(cfg.min_gap))),
    }
}

/// Least time between two trims of the allocator's free pages.
const TRIM_EVERY: Duration = Duration::from_secs(30);

fn run(shared: &Shared, path: &Path, cfg: WriterConfig, mut step: Box<dyn WriteStep>) {
    let _alive = AliveGuard(shared);
    let mut last_attempt: Option<Instant> = None;
    let mut last_trim: Option<Instant> = None;
    let mut g = shared.lock();
    loop {
        let forced = !g.waiters.is_empty() || g.shutdown;
        if !forced {
            match (&g.pending, g.dirty_since) {
                (Some(_), Some(since)) => {
                    let due = next_due(since, last_attempt, cfg);
                    let now = Instant::now();
                    if now < due {
                        g = shared
                            .wake
                            .wait_timeout(g, due - now)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0;
                        continue;
                    }
                }
                _ => {
                    g = shared.wake.wait(g).unwrap_or_else(PoisonError::into_inner);
                    continue;
                }
            }
        }

        let state = g.pending.take();
        let waiters = std::mem::take(&mut g.waiters);
        let stopping = g.shutdown;
        drop(g);

        let result = match &state {
            Some(s) => {
                last_attempt = Some(Instant::now());
                save_with(path, s, step.as_mut()).map(Some)
            }
            None => Ok(None),
        };
        // A save follows churn, runs off the loop and at most every few seconds: the moment
        // to hand the allocator's free pages back (see `sys::malloc`), at most every
        // TRIM_EVERY. Not while an operator waits for this save's answer.
        if state.is_some() && !forced && last_trim.is_none_or(|t| t.elapsed() >= TRIM_EVERY) {
            crate::sys::malloc::trim();
            last_trim = Some(Instant::now());
        }

        g = shared.lock();
        let reply = match result {
            Ok(Some(stats)) => {
                g.stats.saves += 1;
                if forced {
                    g.stats.forced_saves += 1;
                }
                g.stats.last_duration = Some(stats.duration);
                g.stats.last_bytes = Some(stats.bytes);
                g.stats.last_error = None;
                g.stats.last_error_since = None;
                if g.pending.is_none() {
                    g.dirty_since = None;
                }
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => {
                tracing::error!(
                    path = %path.display(),
                    error = %e,
                    retry_in_ms = cfg.interval.as_millis() as u64,
                    "Saving state failed; the previous state file is intact, retrying"
                );
                g.stats.failures += 1;
                g.stats.last_error = Some(e.to_string());
                if g.stats.last_error_since.is_none() {
                    g.stats.last_error_since = Some(SystemTime::now());
                }
                if g.pending.is_none() {
                    g.pending = state;
                }
                Err(e)
            }
        };
        for w in waiters {
            // A waiter that gave up (dropped its receiver) is fine to ignore.
            let _ = w.send(reply.clone());
        }
        if stopping {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_change_is_due_at_once_then_spaced_by_interval_and_gap() {
        let t0 = Instant::now();
        let cfg = WriterConfig {
            interval: Duration::from_millis(500),
            min_gap: Duration::from_millis(200),
        };
        assert_eq!(next_due(t0, None, cfg), t0);
        let later = t0 + Duration::from_secs(10);
        assert_eq!(next_due(later, Some(t0), cfg), later);
        assert_eq!(
            next_due(t0 + Duration::from_millis(10), Some(t0), cfg),
            t0 + Duration::from_millis(500)
        );
        let tight = WriterConfig {
            interval: Duration::from_millis(50),
            min_gap: Duration::from_millis(300),
        };
        assert_eq!(
            next_due(t0 + Duration::from_millis(10), Some(t0), tight),
            t0 + Duration::from_millis(300)
        );
    }
}

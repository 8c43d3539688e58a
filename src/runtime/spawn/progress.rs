//! [`SpawnProgress`]: what a spawn running on another thread is doing, and a way to call it
//! off. The daemon spawns on a worker thread (`daemon::spawner`) so that nothing the spawn
//! waits for (an NSS lookup, a directory on a slow mount, a FIFO with no reader) can stall
//! the event loop; the loop reads the step for the error of a start timeout and cancels a
//! spawn the service no longer wants.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Shared between the thread that spawns and the loop that asked for it.
#[derive(Debug, Default)]
pub struct SpawnProgress {
    cancelled: AtomicBool,
    step: Mutex<Option<String>>,
}

impl SpawnProgress {
    pub fn new() -> SpawnProgress {
        SpawnProgress::default()
    }

    /// Asks the spawn to give up at its next wait (the FIFO wait checks it every few ms;
    /// a system call already blocked is not interrupted).
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// The step in progress, in the words of the unit (`opening StandardOutput=file:/x`).
    pub fn step(&self) -> Option<String> {
        self.step
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(super) fn set_step(&self, step: impl Into<String>) {
        *self
            .step
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(step.into());
    }
}

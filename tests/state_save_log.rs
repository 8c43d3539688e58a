//! Each save is logged as `Saving state` with its duration and size.
//!
//! Alone in its own test binary: tracing caches per-callsite interest globally, so a save on
//! another test thread with no subscriber could race with this test's scoped subscriber.

use std::io::{self, Write};

use gitproc::state::{self, PersistedState, UnitState};

fn realistic_state() -> PersistedState {
    let mut s = PersistedState::default();
    s.units.insert("web.service".into(), UnitState::default());
    s
}

/// Collects formatted log output for assertions.
#[derive(Clone, Default)]
struct LogBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for LogBuf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn each_save_is_logged_with_duration_and_size() {
    let tmp = tempfile::tempdir().unwrap();
    let path = state::state_file(tmp.path());
    let buf = LogBuf::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer({
            let buf = buf.clone();
            move || buf.clone()
        })
        .with_ansi(false)
        .finish();
    let stats = tracing::subscriber::with_default(subscriber, || {
        state::save(&path, &realistic_state()).unwrap()
    });
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("INFO"), "{text}");
    assert!(text.contains("Saving state"), "{text}");
    assert!(text.contains(&format!("bytes={}", stats.bytes)), "{text}");
    assert!(text.contains("duration_us="), "{text}");
}

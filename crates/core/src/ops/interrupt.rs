//! Cancellation by SIGINT or SIGTERM, at step boundaries. The binary installs the signal handlers
//! and records the first signal here; the executor checks between steps (and between polls of a
//! wait), so a GCE operation in flight is awaited, never abandoned half-way, and the run stops
//! with its lock handed over and its intent kept. The binary exits at once on a second signal.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use crate::error::Interrupted;

/// Shared between the signal handler and the op: the first signal received, if any.
#[derive(Clone, Debug, Default)]
pub struct Interrupt(Arc<AtomicI32>);

impl Interrupt {
    /// Nothing received yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Record `signal`; `true` if it is the first one.
    pub fn request(&self, signal: i32) -> bool {
        self.0
            .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// The first signal received.
    pub fn requested(&self) -> Option<i32> {
        match self.0.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }

    /// `Err(Interrupted)` once a signal was received; `at` says where the run stopped.
    pub fn check(&self, at: impl FnOnce() -> Option<String>) -> Result<(), Interrupted> {
        match self.requested() {
            None => Ok(()),
            Some(signal) => Err(Interrupted { signal, at: at() }),
        }
    }
}

/// `SIGINT`, `SIGTERM`, or the number.
pub fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGINT => "SIGINT".into(),
        libc::SIGTERM => "SIGTERM".into(),
        n => format!("signal {n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_signal_is_kept_and_stops_the_next_check() {
        let i = Interrupt::new();
        assert!(i.check(|| None).is_ok());
        assert!(i.request(libc::SIGTERM));
        assert!(!i.request(libc::SIGINT), "a second signal is not the first");
        let e = i.check(|| Some("step 2/5 (x)".into())).expect_err("interrupted");
        assert_eq!(e.signal, libc::SIGTERM);
        assert_eq!(e.at.as_deref(), Some("step 2/5 (x)"));
    }
}

//! [`Clock`]: the watcher's sense of time (a monotonic count of milliseconds), behind a
//! trait so the stability rule is tested with the [`FakeClock`](super::fake::FakeClock)
//! without sleeping. It owns nothing else; wall-clock times for the activity log are
//! taken where they are written.

use std::time::Instant;

/// Monotonic milliseconds since an arbitrary start.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> u64;
}

/// The machine's monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    start: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        Self {
            start: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
}

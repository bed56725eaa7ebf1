//! Accounting of one transfer, like rclone's: bytes done and total, a rate smoothed over
//! the last seconds, the ETA, the state; published on the [`EventBus`] at most every
//! [`PUBLISH_EVERY`] (and at once on a state change).
//!
//! It owns the counters. Bytes of an attempt that failed are taken back (`rewind`), so
//! "done" never counts a byte twice. It never blocks (a short std mutex, no awaits).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::events::{Event, EventBus, TransferProgress, TransferState};

pub const PUBLISH_EVERY: Duration = Duration::from_millis(200);
const RATE_WINDOW: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct ProgressMeter {
    inner: Arc<Mutex<MeterState>>,
    bus: EventBus,
}

#[derive(Debug)]
struct MeterState {
    id: String,
    done: u64,
    total: u64,
    state: TransferState,
    samples: VecDeque<(Instant, u64)>,
    last_publish: Option<Instant>,
}

impl ProgressMeter {
    pub fn new(bus: EventBus, transfer_id: impl Into<String>, total: u64) -> Self {
        Self {
            inner: Arc::new(Mutex::new(MeterState {
                id: transfer_id.into(),
                done: 0,
                total,
                state: TransferState::Queued,
                samples: VecDeque::new(),
                last_publish: None,
            })),
            bus,
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut MeterState) -> R) -> R {
        let mut guard = match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// `n` more bytes were sent.
    pub fn add(&self, n: u64) {
        let event = self.with(|s| {
            s.done = (s.done + n).min(s.total);
            s.due(false)
        });
        if let Some(e) = event {
            self.bus.publish(e);
        }
    }

    /// An attempt failed after sending `n` bytes: they count again when re-sent.
    pub fn rewind(&self, n: u64) {
        self.with(|s| s.done = s.done.saturating_sub(n));
    }

    /// Sets the bytes done (resume: the parts already stored).
    pub fn set_done(&self, done: u64) {
        let event = self.with(|s| {
            s.done = done.min(s.total);
            s.samples.clear();
            s.due(true)
        });
        if let Some(e) = event {
            self.bus.publish(e);
        }
    }

    /// Sets the total once it is known (downloads learn it from the store's answer).
    pub fn set_total(&self, total: u64) {
        self.with(|s| {
            s.total = total;
            s.done = s.done.min(total);
        });
    }

    pub fn set_state(&self, state: TransferState) {
        let event = self.with(|s| {
            s.state = state;
            s.due(true)
        });
        if let Some(e) = event {
            self.bus.publish(e);
        }
    }

    pub fn snapshot(&self) -> TransferProgress {
        self.with(|s| s.snapshot(Instant::now()))
    }
}

impl MeterState {
    fn snapshot(&mut self, now: Instant) -> TransferProgress {
        self.samples.push_back((now, self.done));
        while let Some((t, _)) = self.samples.front() {
            if now.duration_since(*t) > RATE_WINDOW && self.samples.len() > 2 {
                self.samples.pop_front();
            } else {
                break;
            }
        }
        let rate = match (self.samples.front(), self.samples.back()) {
            (Some((t0, d0)), Some((t1, d1))) if t1 > t0 => {
                d1.saturating_sub(*d0) as f64 / t1.duration_since(*t0).as_secs_f64()
            }
            _ => 0.0,
        };
        let eta_secs = (rate > 0.0).then(|| ((self.total - self.done) as f64 / rate).ceil() as u64);
        TransferProgress {
            transfer_id: self.id.clone(),
            bytes_done: self.done,
            bytes_total: self.total,
            rate,
            eta_secs,
            state: self.state,
        }
    }

    fn due(&mut self, force: bool) -> Option<Event> {
        let now = Instant::now();
        if !force
            && self
                .last_publish
                .is_some_and(|t| now.duration_since(t) < PUBLISH_EVERY)
        {
            return None;
        }
        self.last_publish = Some(now);
        Some(Event::TransferProgress(self.snapshot(now)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_rewinds_and_publishes() {
        let bus = EventBus::new();
        let mut rx = bus.subscribe();
        let m = ProgressMeter::new(bus, "t", 100);
        m.set_state(TransferState::Uploading);
        m.add(60);
        m.rewind(20);
        m.add(10);
        let s = m.snapshot();
        assert_eq!((s.bytes_done, s.bytes_total), (50, 100));
        assert_eq!(s.state, TransferState::Uploading);
        let Ok(Event::TransferProgress(first)) = rx.recv().await else {
            panic!("expected progress");
        };
        assert_eq!(first.state, TransferState::Uploading);
        m.add(1000);
        assert_eq!(m.snapshot().bytes_done, 100);
    }
}

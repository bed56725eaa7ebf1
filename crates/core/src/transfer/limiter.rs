//! The shared bandwidth limit: a token bucket in bytes per second that every transfer
//! draws from, so the limit holds for all of them together.
//!
//! It owns the bucket and nothing else. A limit of 0 means unlimited; the limit can be
//! changed while transfers run. It never sleeps while holding its lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

#[derive(Debug, Clone, Default)]
pub struct BandwidthLimiter {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Bytes per second; 0 = unlimited.
    rate: AtomicU64,
    bucket: Mutex<Option<Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    /// May go negative: a debt the next callers wait off.
    tokens: f64,
    last: Instant,
}

impl BandwidthLimiter {
    /// `bytes_per_sec` = 0 for no limit.
    pub fn new(bytes_per_sec: u64) -> Self {
        let l = Self::default();
        l.set_rate(bytes_per_sec);
        l
    }

    pub fn set_rate(&self, bytes_per_sec: u64) {
        self.inner.rate.store(bytes_per_sec, Ordering::Relaxed);
    }

    pub fn rate(&self) -> u64 {
        self.inner.rate.load(Ordering::Relaxed)
    }

    /// Waits until `n` bytes may be sent.
    pub async fn acquire(&self, n: usize) {
        let rate = self.rate();
        if rate == 0 {
            return;
        }
        let rate = rate as f64;
        // A quarter second of burst: smooth, yet large enough for whole chunks.
        let capacity = (rate / 4.0).max(n as f64);
        let wait = {
            let mut guard = self.inner.bucket.lock().await;
            let now = Instant::now();
            let bucket = guard.get_or_insert(Bucket {
                tokens: capacity,
                last: now,
            });
            let elapsed = now.duration_since(bucket.last).as_secs_f64();
            bucket.tokens = (bucket.tokens + elapsed * rate).min(capacity);
            bucket.last = now;
            bucket.tokens -= n as f64;
            if bucket.tokens >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-bucket.tokens / rate)
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_limit_holds_across_callers() {
        let limiter = BandwidthLimiter::new(4_000_000);
        let start = std::time::Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let l = limiter.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..10 {
                    l.acquire(50_000).await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // 2 MB at 4 MB/s with a 1 MB burst: at least 0.25 s (the upper bound is loose:
        // the machine may be busy).
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(240), "{took:?}");
        assert!(took <= Duration::from_secs(5), "{took:?}");
        limiter.set_rate(0);
        limiter.acquire(1 << 30).await;
    }
}

//! [`WatchService`]: the real loop around the [`WatchEngine`]. It feeds the engine from
//! `notify` events (through `notify-debouncer-full`, symlinks not followed), a scan of
//! every folder at start-up and whenever a folder is added or comes back, a periodic
//! safety-net re-scan, and timers for the stability window; then hands stable files to
//! the durable upload queue and follows what the queue did with them.
//!
//! Events cross from the notify thread over a bounded channel; when it is full (or the OS
//! reports lost events) the folders are re-scanned instead of blocking the notifier. Engine
//! steps (stat, hash, SQLite) run on tokio's blocking pool. It stops on its
//! `CancellationToken`. It never uploads by itself: [`hand_to_queue`] is the one place that
//! calls [`QueueRunner::enqueue`], and another part (the app, `rohimaya watch run`) runs the
//! queue.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer_opt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::WatchError;
use super::clock::{Clock, SystemClock};
use super::config::WatchSettings;
use super::engine::{FolderChanges, QueueOutcome, WatchEngine};
use super::fs::{RealFs, WatchFs};
use super::store::{PendingUpload, WatchStore};
use crate::api::uploads::JobOptions;
use crate::error::{CoreError, ErrorCode};
use crate::events::EventBus;
use crate::queue::{Enqueued, ItemState, QueueError, QueueRunner};

/// How long notify events for a path are merged before they reach the engine.
pub const DEBOUNCE: Duration = Duration::from_millis(200);
/// How often pending files and the queue's progress are looked at.
const HOUSEKEEPING: Duration = Duration::from_millis(250);
/// How often pending files that could not enter the queue (signed out, queue busy) are
/// tried again.
const PENDING_RETRY: Duration = Duration::from_secs(10);
/// Event batches in flight from the notify thread.
const EVENT_BATCHES: usize = 256;

/// The watcher, ready to run.
pub struct WatchService {
    engine: Arc<Mutex<WatchEngine>>,
    queue: Option<Arc<QueueRunner>>,
    settings: WatchSettings,
}

impl std::fmt::Debug for WatchService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchService")
            .field("signed_in", &self.queue.is_some())
            .finish()
    }
}

/// Hands a stable file to the upload queue with the SHA-256 the watcher computed, so the
/// queue does not read the file again for its dedupe.
pub async fn hand_to_queue(
    queue: &QueueRunner,
    path: &Path,
    options: &JobOptions,
    sha256: &str,
) -> Result<Enqueued, QueueError> {
    queue
        .enqueue_with_sha256(path, options, false, sha256)
        .await
}

impl WatchService {
    /// The service over the machine's file system. `queue` is `None` while signed out:
    /// stable files then wait in `state.db` (`watch_pending`) until a signed-in run.
    pub fn new(
        store: WatchStore,
        queue: Option<Arc<QueueRunner>>,
        bus: EventBus,
    ) -> Result<Self, WatchError> {
        Self::with_parts(
            Arc::new(RealFs),
            Arc::new(SystemClock::default()),
            store,
            queue,
            bus,
        )
    }

    /// The service over any file system and clock.
    pub fn with_parts(
        fs: Arc<dyn WatchFs>,
        clock: Arc<dyn Clock>,
        store: WatchStore,
        queue: Option<Arc<QueueRunner>>,
        bus: EventBus,
    ) -> Result<Self, WatchError> {
        let engine = WatchEngine::new(fs, clock, store, Some(bus))?;
        let settings = engine.settings();
        Ok(Self {
            engine: Arc::new(Mutex::new(engine)),
            queue,
            settings,
        })
    }

    /// Overrides the stored timing settings for this run (tests, benchmarks).
    pub fn with_settings(mut self, settings: WatchSettings) -> Self {
        self.settings = settings;
        if let Ok(mut e) = self.engine.lock() {
            e.set_settings(settings);
        }
        self
    }

    /// The engine (to read its state; the service drives it).
    pub fn engine(&self) -> Arc<Mutex<WatchEngine>> {
        self.engine.clone()
    }

    async fn step<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut WatchEngine) -> T + Send + 'static,
    ) -> Result<T, WatchError> {
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || {
            let mut g = match engine.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            f(&mut g)
        })
        .await
        .map_err(|e| WatchError::Watcher {
            reason: format!("an engine step failed: {e}"),
        })
    }

    /// Watches until `stop` is cancelled.
    pub async fn run(&self, stop: &CancellationToken) -> Result<(), WatchError> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<PathBuf>>(EVENT_BATCHES);
        let lost = Arc::new(AtomicBool::new(false));
        let lost_in = lost.clone();
        let handler = move |res: DebounceEventResult| match res {
            Ok(events) => {
                let mut paths = Vec::new();
                for e in events {
                    if e.need_rescan() {
                        lost_in.store(true, Ordering::SeqCst);
                    }
                    // Opens and reads (ours too: scans open folders, hashing opens files)
                    // change nothing; a writer closing its file does.
                    if matches!(e.event.kind, EventKind::Access(a) if a != AccessKind::Close(AccessMode::Write))
                    {
                        continue;
                    }
                    paths.extend(e.event.paths);
                }
                if !paths.is_empty() && tx.try_send(paths).is_err() {
                    lost_in.store(true, Ordering::SeqCst);
                }
            }
            Err(errors) => {
                for e in errors {
                    tracing::debug!("watch: notify: {e}");
                }
                lost_in.store(true, Ordering::SeqCst);
            }
        };
        let mut debouncer = new_debouncer_opt::<_, RecommendedWatcher, RecommendedCache>(
            DEBOUNCE,
            Some(DEBOUNCE / 2),
            handler,
            RecommendedCache::new(),
            notify::Config::default().with_follow_symlinks(false),
        )
        .map_err(|e| WatchError::Watcher {
            reason: e.to_string(),
        })?;

        let changes = self.step(|e| e.refresh_folders()).await??;
        self.apply(&mut debouncer, changes).await?;
        self.after_step().await;

        let far = Duration::from_secs(3600);
        let mut next_tick = Instant::now();
        let mut folder_check = tokio::time::interval(self.settings.folder_check_interval);
        folder_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let rescan_every = self.settings.rescan_interval;
        let mut rescan = tokio::time::interval_at(Instant::now() + rescan_every, rescan_every);
        rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pending_retry =
            tokio::time::interval_at(Instant::now() + PENDING_RETRY, PENDING_RETRY);
        pending_retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                Some(mut paths) = rx.recv() => {
                    while let Ok(more) = rx.try_recv() {
                        paths.extend(more);
                    }
                    paths.sort();
                    paths.dedup();
                    let due = self.step(move |e| { e.paths_changed(&paths); e.tick() }).await?;
                    next_tick = Instant::now() + due.unwrap_or(far);
                    self.after_step().await;
                }
                _ = tokio::time::sleep_until(next_tick) => {
                    let due = self.step(|e| e.tick()).await?;
                    next_tick = Instant::now() + due.unwrap_or(far);
                    self.after_step().await;
                }
                _ = folder_check.tick() => {
                    let changes = self.step(|e| e.refresh_folders()).await??;
                    if !changes.is_empty() {
                        self.apply(&mut debouncer, changes).await?;
                        let due = self.step(|e| e.next_due()).await?;
                        next_tick = Instant::now() + due.unwrap_or(far);
                    }
                }
                _ = rescan.tick() => {
                    let due = self.step(|e| { e.scan_all(); e.next_due() }).await?;
                    next_tick = Instant::now() + due.unwrap_or(far);
                }
                _ = pending_retry.tick() => self.retry_pending().await,
                _ = housekeeping.tick() => {
                    if lost.swap(false, Ordering::SeqCst) {
                        tracing::debug!("watch: events were lost; re-scanning");
                        let due = self.step(|e| { e.scan_all(); e.next_due() }).await?;
                        next_tick = Instant::now() + due.unwrap_or(far);
                    }
                    self.after_step().await;
                    // What the queue did with the files handed to it (uploaded: move?).
                    if let Err(e) = self.follow_queue().await {
                        tracing::warn!("watch: {e}");
                    }
                }
            }
        }
        debouncer.stop();
        Ok(())
    }

    /// Starts and stops OS watches as folders come and go, and scans the new ones.
    async fn apply(
        &self,
        debouncer: &mut Debouncer<RecommendedWatcher, RecommendedCache>,
        changes: FolderChanges,
    ) -> Result<(), WatchError> {
        for path in &changes.stop {
            let _ = debouncer.unwatch(path);
        }
        for (id, path, recursive) in changes.start {
            let mode = if recursive {
                RecursiveMode::Recursive
            } else {
                RecursiveMode::NonRecursive
            };
            // Watch first, then scan: nothing written in between is missed.
            if let Err(e) = debouncer.watch(&path, mode) {
                tracing::warn!("watch: cannot watch {}: {e}", path.display());
            }
            self.step(move |e| e.scan_folder(id, None)).await?;
        }
        Ok(())
    }

    /// Hands new pending files to the queue.
    async fn after_step(&self) {
        match self.step(|e| e.take_new_pending()).await {
            Ok(true) => self.retry_pending().await,
            Ok(false) => {}
            Err(e) => tracing::warn!("watch: {e}"),
        }
    }

    /// Hands every pending file to the queue (new ones, and those that waited).
    async fn retry_pending(&self) {
        if let Err(e) = self.upload_pending().await {
            tracing::warn!("watch: {e}");
        }
    }

    async fn upload_pending(&self) -> Result<(), WatchError> {
        let pending = self.step(|e| e.pending()).await??;
        if self.queue.is_none() {
            // Signed out: each waits (logged once), in one engine step.
            return self
                .step(move |e| {
                    for p in pending {
                        e.deferred(
                            &p,
                            "not signed in; it is uploaded when `rohimaya watch run` (or the app) runs signed in",
                        )?;
                    }
                    Ok(())
                })
                .await?;
        }
        for p in pending {
            self.upload_one(p).await?;
        }
        Ok(())
    }

    async fn upload_one(&self, p: PendingUpload) -> Result<(), WatchError> {
        let Some(queue) = self.queue.clone() else {
            return Ok(());
        };
        let folder = p.folder_id;
        let options = self.step(move |e| e.job_options(folder)).await?;
        let result = hand_to_queue(&queue, &p.path, &options, &p.sha256).await;
        // The same content failed before (perhaps at the place this file was moved from):
        // that item is sent again, from here.
        let again = match &result {
            Err(QueueError::Duplicate {
                existing,
                existing_state: ItemState::Failed,
                ..
            }) => Some(queue.relocate(*existing, &p.path).await),
            _ => None,
        };
        let gone = tokio::fs::symlink_metadata(&p.path).await.is_err();
        self.step(move |e| match result {
            Ok(q) => {
                let sha256 = q.sha256.clone().unwrap_or_else(|| p.sha256.clone());
                e.enqueued(&p, q.id, &sha256)
            }
            Err(QueueError::Duplicate {
                existing,
                existing_state,
                job_id,
                ..
            }) => match (existing_state, again) {
                (ItemState::Completed, _) => e.already_uploaded(&p, existing, job_id),
                (_, Some(Err(err))) => e.deferred(&p, &err.to_string()),
                _ => e.enqueued(&p, existing, &p.sha256.clone()),
            },
            Err(err) if err.code() == ErrorCode::ManuscriptRefused => {
                e.refused(&p, &err.to_string())
            }
            Err(_) if gone => e.vanished(&p),
            Err(err) => e.deferred(&p, &err.to_string()),
        })
        .await?
    }

    async fn follow_queue(&self) -> Result<(), WatchError> {
        let Some(queue) = self.queue.clone() else {
            return Ok(());
        };
        let records = self.step(|e| e.in_flight()).await??;
        if records.is_empty() {
            return Ok(());
        }
        let items = match queue.list() {
            Ok(items) => items,
            Err(e) => {
                tracing::warn!("watch: cannot read the upload queue: {e}");
                return Ok(());
            }
        };
        let by_id: HashMap<i64, _> = items.into_iter().map(|i| (i.id, i)).collect();
        let mut outcomes = Vec::new();
        for r in records {
            let outcome = match r.queue_id.and_then(|id| by_id.get(&id)) {
                None => QueueOutcome::Gone,
                Some(i) => match i.state {
                    ItemState::Completed => QueueOutcome::Completed {
                        job_id: i.job_id.clone().unwrap_or_default(),
                    },
                    ItemState::Failed => QueueOutcome::Failed {
                        message: i.error_message.clone().unwrap_or_default(),
                    },
                    ItemState::Cancelled => QueueOutcome::Cancelled,
                    _ => continue,
                },
            };
            outcomes.push((r, outcome));
        }
        if outcomes.is_empty() {
            return Ok(());
        }
        self.step(move |e| {
            for (r, o) in outcomes {
                e.queue_outcome(&r, o)?;
            }
            Ok::<(), WatchError>(())
        })
        .await?
    }
}

//! [`WatchService`]: the real loop around the [`WatchEngine`]. It feeds the engine from
//! `notify` events (symlinks not followed; batched here for [`DEBOUNCE`]), a scan of every
//! folder at start-up and whenever a folder is added or comes back, a safety-net re-scan,
//! and timers for the stability window; then hands stable files to the durable upload
//! queue and follows what the queue did with them.
//!
//! Idle, it does nothing: no timer runs unless something is due — a file in its
//! stability window, a folder that is missing (looked for every `folder_check_interval`),
//! stable files the queue did not take yet, files in the queue (their outcome is followed
//! from the bus's transfer events, with a slow safety net), and the safety-net re-scan
//! (every `rescan_interval`, default 5 min). Folder list changes (other processes, the
//! app) are noticed from the events of `state.db` itself; a watched folder that goes away
//! from the events on it, and also at each re-scan (an unmount may come without one).
//!
//! Events cross from the notify thread through a bounded set of paths; when it is full
//! (or the OS reports lost events) the folders are re-scanned instead of blocking the
//! notifier. Engine steps (stat, hash, SQLite) run on tokio's blocking pool. It stops on
//! its `CancellationToken`. It never uploads by itself: [`hand_to_queue`] is the one place
//! that calls [`QueueRunner::enqueue`], and another part (the app, `rohimaya watch run`)
//! runs the queue.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::broadcast::error::RecvError;
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
use crate::events::{Event, EventBus, TransferState};
use crate::queue::{Enqueued, ItemState, QueueError, QueueRunner};

/// How long notify events are gathered before they reach the engine (from the first
/// event of a batch, so a file written for minutes is still looked at).
pub const DEBOUNCE: Duration = Duration::from_millis(200);
/// How often pending files that could not enter the queue (signed out, queue busy) are
/// tried again, while there are some.
const PENDING_RETRY: Duration = Duration::from_secs(10);
/// The safety net for files in the queue, while there are some: their outcome normally
/// comes from the bus at once (a missed event, an item removed by another process).
const FOLLOW_EVERY: Duration = Duration::from_secs(10);
/// How often the folders are looked at while none is missing: a folder deleted or moved
/// away is seen at once from the events on it, but an unmount comes without an event
/// notify reports, and the folder list may change where no event of `state.db` is seen.
/// One stat per folder and two small reads of `state.db`.
const FOLDER_CHECK_IDLE: Duration = Duration::from_secs(30);
/// Distinct changed paths held between the notify thread and the loop; past it the
/// folders are re-scanned instead.
const INBOX_PATHS: usize = 65_536;

/// Changed paths on their way from the notify thread to the service loop: a set (a
/// writer's thousand writes to one file are one entry), bounded, and whether events were
/// lost. The thread wakes the loop only when the inbox stops being empty.
#[derive(Default)]
struct Inbox {
    state: Mutex<InboxState>,
    ready: tokio::sync::Notify,
}

#[derive(Default)]
struct InboxState {
    paths: HashSet<PathBuf>,
    lost: bool,
}

impl Inbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, InboxState> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn push(&self, paths: Vec<PathBuf>, lost: bool) {
        let wake = {
            let mut st = self.lock();
            let was_empty = st.paths.is_empty() && !st.lost;
            for p in paths {
                if st.paths.len() >= INBOX_PATHS {
                    st.lost = true;
                    break;
                }
                st.paths.insert(p);
            }
            st.lost |= lost;
            was_empty && (st.lost || !st.paths.is_empty())
        };
        if wake {
            self.ready.notify_one();
        }
    }

    fn take(&self) -> (Vec<PathBuf>, bool) {
        let mut st = self.lock();
        let mut paths: Vec<PathBuf> = std::mem::take(&mut st.paths).into_iter().collect();
        paths.sort();
        (paths, std::mem::take(&mut st.lost))
    }
}

/// How many engine steps a service ran (see [`WatchService::step_count`]).
#[derive(Debug, Clone, Default)]
pub struct StepCount(Arc<AtomicU64>);

impl StepCount {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The watcher, ready to run.
pub struct WatchService {
    engine: Arc<Mutex<WatchEngine>>,
    queue: Option<Arc<QueueRunner>>,
    bus: EventBus,
    settings: WatchSettings,
    steps: StepCount,
}

impl std::fmt::Debug for WatchService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchService")
            .field("signed_in", &self.queue.is_some())
            .finish()
    }
}

/// What the loop waits for besides events, recomputed after each step.
struct Due {
    /// The engine's next stability check.
    tick: Option<Instant>,
    /// A folder is missing: look for it every `folder_check_interval`.
    missing: bool,
    /// Stable files the queue has not taken yet.
    pending: bool,
    /// Files in the queue whose outcome is not known yet.
    in_flight: bool,
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
        let engine = WatchEngine::new(fs, clock, store, Some(bus.clone()))?;
        let settings = engine.settings();
        Ok(Self {
            engine: Arc::new(Mutex::new(engine)),
            queue,
            bus,
            settings,
            steps: StepCount::default(),
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

    /// Counts the engine steps this service runs (each one a trip to the blocking pool,
    /// most of them SQLite): tests and benchmarks check that an idle watcher runs none.
    pub fn step_count(&self) -> StepCount {
        self.steps.clone()
    }

    async fn step<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut WatchEngine) -> T + Send + 'static,
    ) -> Result<T, WatchError> {
        self.steps.0.fetch_add(1, Ordering::Relaxed);
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
        let inbox = Arc::new(Inbox::default());
        let to_inbox = inbox.clone();
        let handler = move |res: notify::Result<notify::Event>| match res {
            Ok(e) => {
                // Opens and reads (ours too: scans open folders, hashing opens files)
                // change nothing; a writer closing its file does.
                let read = matches!(e.kind, EventKind::Access(a) if a != AccessKind::Close(AccessMode::Write));
                if read && !e.need_rescan() {
                    return;
                }
                let lost = e.need_rescan();
                to_inbox.push(if read { Vec::new() } else { e.paths }, lost);
            }
            Err(e) => {
                tracing::debug!("watch: notify: {e}");
                to_inbox.push(Vec::new(), true);
            }
        };
        let mut watcher = RecommendedWatcher::new(
            handler,
            notify::Config::default().with_follow_symlinks(false),
        )
        .map_err(|e| WatchError::Watcher {
            reason: e.to_string(),
        })?;
        // The folder list lives in state.db, which other processes (`rohimaya watch add`)
        // and the app change: its writes tell when to read the list again, so nothing
        // polls it. The directory is watched (SQLite writes the `-wal` file beside it).
        let db = self.engine.lock().map(|e| e.store().path().to_path_buf());
        let db = db.unwrap_or_else(|p| p.into_inner().store().path().to_path_buf());
        let db_dir = db
            .parent()
            .filter(|d| !d.as_os_str().is_empty() && d.is_dir())
            .map(Path::to_path_buf);
        let db_name = db.file_name().map(|n| n.to_string_lossy().into_owned());
        if let Some(dir) = &db_dir
            && let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive)
        {
            tracing::warn!(
                "watch: cannot watch {} for folder changes: {e}",
                dir.display()
            );
        }
        // The database and its write-ahead log; not `-shm`, which readers (this service
        // re-reading the list) write to.
        let is_state_db = |p: &Path| {
            db_dir.as_deref().is_some_and(|d| p.parent() == Some(d))
                && db_name.as_deref().is_some_and(|n| {
                    p.file_name().is_some_and(|f| {
                        let f = f.to_string_lossy();
                        f == n || f.strip_suffix("-wal") == Some(n)
                    })
                })
        };
        let mut bus = self.bus.subscribe();

        let changes = self.step(|e| e.refresh_folders()).await??;
        self.apply(&mut watcher, changes).await?;
        let idle = Due {
            tick: None,
            missing: false,
            pending: false,
            in_flight: false,
        };
        let mut due = self.due(&idle, true).await?;

        let check_every = self.settings.folder_check_interval;
        let rescan_every = self.settings.rescan_interval;
        let now = Instant::now();
        let far = now + Duration::from_secs(86_400 * 365);
        let mut batch_at: Option<Instant> = None;
        let mut reload_at: Option<Instant> = None;
        let mut last_reload = now;
        let folder_check = |missing: bool| {
            if missing {
                check_every
            } else {
                check_every.max(FOLDER_CHECK_IDLE)
            }
        };
        let mut was_missing = due.missing;
        let mut folder_check_at = now + folder_check(was_missing);
        let mut rescan_at = now + rescan_every;
        let mut retry_at = now + PENDING_RETRY;
        let mut follow_at = now + FOLLOW_EVERY;
        let (mut was_pending, mut was_in_flight) = (due.pending, due.in_flight);
        loop {
            // Each timer starts a full period after the state that arms it begins.
            if due.missing != was_missing {
                was_missing = due.missing;
                folder_check_at = Instant::now() + folder_check(was_missing);
            }
            if due.pending && !was_pending {
                retry_at = Instant::now() + PENDING_RETRY;
            }
            if due.in_flight && !was_in_flight {
                follow_at = Instant::now() + FOLLOW_EVERY;
            }
            (was_pending, was_in_flight) = (due.pending, due.in_flight);
            tokio::select! {
                _ = stop.cancelled() => break,
                () = inbox.ready.notified(), if batch_at.is_none() => {
                    batch_at = Some(Instant::now() + DEBOUNCE);
                }
                _ = tokio::time::sleep_until(batch_at.unwrap_or(far)), if batch_at.is_some() => {
                    batch_at = None;
                    let (paths, lost) = inbox.take();
                    let (db_paths, paths): (Vec<PathBuf>, Vec<PathBuf>) =
                        paths.into_iter().partition(|p| is_state_db(p));
                    if !db_paths.is_empty() && reload_at.is_none() {
                        // At most one re-read per folder_check_interval while the
                        // queue writes state.db all the time.
                        reload_at = Some(Instant::now().max(last_reload + check_every));
                    }
                    if lost {
                        tracing::debug!("watch: events were lost; re-scanning");
                        let changes = self.step(|e| { e.scan_all(); e.check_folders() }).await??;
                        self.apply(&mut watcher, changes).await?;
                    }
                    let changed = !paths.is_empty();
                    if changed {
                        // A watched folder itself may be among them (deleted, moved
                        // away): its availability is checked with every batch, one stat
                        // per folder.
                        let changes = self.step(move |e| {
                            e.paths_changed(&paths);
                            e.tick();
                            e.check_folders()
                        }).await??;
                        self.apply(&mut watcher, changes).await?;
                    }
                    if lost || changed {
                        due = self.due(&due, false).await?;
                    }
                }
                _ = tokio::time::sleep_until(due.tick.unwrap_or(far)), if due.tick.is_some() => {
                    self.step(|e| e.tick()).await?;
                    due = self.due(&due, false).await?;
                }
                _ = tokio::time::sleep_until(reload_at.unwrap_or(far)), if reload_at.is_some() => {
                    reload_at = None;
                    last_reload = Instant::now();
                    let changes = self.step(|e| e.reload_folders()).await??;
                    if !changes.is_empty() {
                        self.apply(&mut watcher, changes).await?;
                        due = self.due(&due, false).await?;
                    }
                }
                // A missing folder cannot be watched: it is looked for every
                // folder_check_interval until it is back; present ones less often (see
                // FOLDER_CHECK_IDLE).
                _ = tokio::time::sleep_until(folder_check_at) => {
                    let changes = self.step(|e| e.refresh_folders()).await??;
                    if !changes.is_empty() {
                        self.apply(&mut watcher, changes).await?;
                        due = self.due(&due, false).await?;
                    }
                    folder_check_at = Instant::now() + folder_check(due.missing);
                    was_missing = due.missing;
                }
                // The safety net: events the OS never sent (an unmount, a full queue on
                // some systems) are caught up here.
                _ = tokio::time::sleep_until(rescan_at) => {
                    rescan_at = Instant::now() + rescan_every;
                    let changes = self.step(|e| e.refresh_folders()).await??;
                    self.apply(&mut watcher, changes).await?;
                    self.step(|e| e.scan_all()).await?;
                    due = self.due(&due, true).await?;
                }
                _ = tokio::time::sleep_until(retry_at), if due.pending => {
                    retry_at = Instant::now() + PENDING_RETRY;
                    let (waiting, handed) = self.retry_pending().await;
                    due.pending = waiting;
                    due.in_flight |= handed;
                }
                _ = tokio::time::sleep_until(follow_at), if due.in_flight => {
                    follow_at = Instant::now() + FOLLOW_EVERY;
                    due.in_flight = self.follow_queue().await;
                }
                event = bus.recv() => {
                    // What the queue did with the files handed to it (uploaded: move?).
                    let ended = match event {
                        Ok(Event::TransferState { state, .. }) => matches!(
                            state,
                            TransferState::Completed | TransferState::Failed | TransferState::Cancelled
                        ),
                        Ok(_) => false,
                        Err(RecvError::Lagged(_)) => true,
                        Err(RecvError::Closed) => break,
                    };
                    if ended && due.in_flight {
                        due.in_flight = self.follow_queue().await;
                    }
                }
            }
        }
        drop(watcher);
        Ok(())
    }

    /// Hands new pending files to the queue, follows the queue when asked (`follow`), and
    /// returns what is due next (`was`: what was due before).
    async fn due(&self, was: &Due, follow: bool) -> Result<Due, WatchError> {
        let (mut pending, mut in_flight) = (was.pending, was.in_flight);
        if let Some((waiting, handed)) = self.after_step().await {
            pending = waiting;
            in_flight |= handed;
        }
        if follow {
            in_flight = self.follow_queue().await;
        }
        let (tick, missing) = self.step(|e| (e.next_due(), e.any_unavailable())).await?;
        Ok(Due {
            tick: tick.map(|d| Instant::now() + d),
            missing,
            pending,
            in_flight,
        })
    }

    /// Starts and stops OS watches as folders come and go, and scans the new ones.
    ///
    /// A folder deleted between the check that found it and its OS watch raises no event
    /// (there is nothing watched yet), so the folders are checked again once their watches
    /// are in place. A folder that keeps coming and going is left to the periodic check
    /// after three rounds; every change a check returned is applied.
    async fn apply(
        &self,
        watcher: &mut RecommendedWatcher,
        changes: FolderChanges,
    ) -> Result<(), WatchError> {
        let mut changes = changes;
        for round in 1..=3 {
            for path in &changes.stop {
                let _ = watcher.unwatch(path);
            }
            if changes.start.is_empty() {
                break;
            }
            for (id, path, recursive) in changes.start {
                let mode = if recursive {
                    RecursiveMode::Recursive
                } else {
                    RecursiveMode::NonRecursive
                };
                // Watch first, then scan: nothing written in between is missed.
                if let Err(e) = watcher.watch(&path, mode) {
                    tracing::warn!("watch: cannot watch {}: {e}", path.display());
                }
                self.step(move |e| e.scan_folder(id, None)).await?;
            }
            if round == 3 {
                break;
            }
            changes = self.step(|e| e.check_folders()).await??;
        }
        Ok(())
    }

    /// Hands new pending files to the queue: `None` when there were none, else (some
    /// still wait, some were handed).
    async fn after_step(&self) -> Option<(bool, bool)> {
        match self.step(|e| e.take_new_pending()).await {
            Ok(true) => Some(self.retry_pending().await),
            Ok(false) => None,
            Err(e) => {
                tracing::warn!("watch: {e}");
                None
            }
        }
    }

    /// Hands every pending file to the queue (new ones, and those that waited): (some
    /// still wait, some were handed).
    async fn retry_pending(&self) -> (bool, bool) {
        match self.upload_pending().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("watch: {e}");
                (true, false)
            }
        }
    }

    async fn upload_pending(&self) -> Result<(bool, bool), WatchError> {
        let pending = self.step(|e| e.pending()).await??;
        if pending.is_empty() {
            return Ok((false, false));
        }
        if self.queue.is_none() {
            // Signed out: each waits (logged once), in one engine step.
            self.step(move |e| {
                for p in pending {
                    e.deferred(
                        &p,
                        "not signed in; it is uploaded when `rohimaya watch run` (or the app) runs signed in",
                    )?;
                }
                Ok::<(), WatchError>(())
            })
            .await??;
            return Ok((true, false));
        }
        let (mut waiting, mut handed) = (false, false);
        for p in pending {
            if self.upload_one(p).await? {
                handed = true;
            } else {
                waiting = true;
            }
        }
        Ok((waiting, handed))
    }

    /// Hands `p` to the queue; `false` when it has to wait.
    async fn upload_one(&self, p: PendingUpload) -> Result<bool, WatchError> {
        let Some(queue) = self.queue.clone() else {
            return Ok(false);
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
        self.step(move |e| {
            let r = match result {
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
                    (_, Some(Err(err))) => return e.deferred(&p, &err.to_string()).map(|()| false),
                    _ => e.enqueued(&p, existing, &p.sha256.clone()),
                },
                Err(err) if err.code() == ErrorCode::ManuscriptRefused => {
                    e.refused(&p, &err.to_string())
                }
                Err(_) if gone => e.vanished(&p),
                Err(err) => return e.deferred(&p, &err.to_string()).map(|()| false),
            };
            r.map(|()| true)
        })
        .await?
    }

    /// Applies what the queue did with the files handed to it; `true` while some are
    /// still in it (or the queue could not be read).
    async fn follow_queue(&self) -> bool {
        match self.follow_queue_once().await {
            Ok(in_flight) => in_flight,
            Err(e) => {
                tracing::warn!("watch: {e}");
                true
            }
        }
    }

    async fn follow_queue_once(&self) -> Result<bool, WatchError> {
        let Some(queue) = self.queue.clone() else {
            return Ok(false);
        };
        let records = self.step(|e| e.in_flight()).await??;
        if records.is_empty() {
            return Ok(false);
        }
        let items = match queue.list() {
            Ok(items) => items,
            Err(e) => {
                tracing::warn!("watch: cannot read the upload queue: {e}");
                return Ok(true);
            }
        };
        let by_id: HashMap<i64, _> = items.into_iter().map(|i| (i.id, i)).collect();
        let mut outcomes = Vec::new();
        let mut still = false;
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
                    _ => {
                        still = true;
                        continue;
                    }
                },
            };
            outcomes.push((r, outcome));
        }
        if outcomes.is_empty() {
            return Ok(still);
        }
        self.step(move |e| {
            for (r, o) in outcomes {
                e.queue_outcome(&r, o)?;
            }
            Ok::<(), WatchError>(())
        })
        .await??;
        Ok(still)
    }
}

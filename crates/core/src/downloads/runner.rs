//! [`DownloadQueue`]: one account's download rows, driven through the download engine a
//! few at a time, and the three ways rows come in: [`DownloadQueue::enqueue_job`] (one
//! finished job: its whole book, its chapter tracks or both), [`DownloadQueue::sync`]
//! (every completed job not yet local; books the server dropped become "only on this
//! computer") and [`DownloadQueue::repair`] (what `verify` found missing or changed).
//!
//! It owns the rows' transitions (queued -> downloading -> completed, paused, failed,
//! cancelled) and cataloguing a book once none of its files is pending. Stops are by
//! cancellation token: pause, cancel and the queue's global pause cancel a file's token
//! and say why; a shutdown (or a crash) leaves the row queued with its checkpoint, to be
//! resumed from the `.part` by the next runner over the same `state.db`. Each row runs
//! under its cross-process lock (`locks/downloads/`). It never deletes a library file:
//! cancel removes only the row's `.part`, and a repaired file replaces the damaged one
//! only once the new one landed and was verified.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::store::{BookRow, DownloadItem, DownloadStore, NewItem};
use super::{DownloadQueueError, DownloadState, transfer_id};
use crate::api::Job;
use crate::error::{CoreError, ErrorCode};
use crate::events::{Event, TransferNotice, TransferState};
use crate::library::sync::{ServerJob, ServerView, plan_sync};
use crate::library::{
    BookRequest, FileRecord, FileRef, Library, LibraryError, NewBook, TrackRecord, TrackRequest,
    VerifyOptions, layout,
};
use crate::queue::QueueStore;
use crate::queue::lock::{self, Locked};
use crate::transfer::disk_space;
use crate::transfer::{
    DownloadCheckpoint, DownloadError, DownloadJob, DownloadJournal, DownloadSession,
    DownloadSource, ProgressMeter,
};

/// Which files of a job to download.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum DownloadChoice {
    /// The whole-book file only.
    Book,
    /// The chapter tracks only.
    Tracks,
    /// The whole book and, when the job has any, its chapter tracks.
    #[default]
    All,
}

/// What enqueueing one job did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct EnqueueReport {
    pub job_id: String,
    pub title: String,
    /// The new rows (`d{id}` on the bus).
    pub queued: Vec<i64>,
    /// Files already on this computer or already in the queue.
    pub already: usize,
}

/// What one sync round did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SyncReport {
    pub enqueued: Vec<EnqueueReport>,
    pub marked_only_local: Vec<String>,
    pub marked_available: Vec<String>,
    /// Jobs that could not be enqueued: (job id, error code, message).
    pub errors: Vec<(String, String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    Pause,
    Cancel,
    GlobalPause,
}

struct Active {
    token: CancellationToken,
    reason: Option<StopReason>,
}

pub struct DownloadQueue {
    store: DownloadStore,
    library: Arc<Library>,
    session: DownloadSession,
    account: String,
    /// The upload queue's settings (global pause, files in flight): read, never written.
    queue_settings: Option<QueueStore>,
    active: Mutex<HashMap<i64, Active>>,
    lock_dir: PathBuf,
    wake: tokio::sync::Notify,
    /// How many times the runner has read the queue (see [`DownloadQueue::looks`]).
    looks: AtomicU64,
    /// Enqueueing is one at a time, so two callers (auto-download, a sync) never insert
    /// the same file twice.
    enqueue_gate: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for DownloadQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DownloadQueue")
            .field("account", &self.account)
            .finish()
    }
}

/// Persists what the engine reports about one row.
struct RowJournal<'a> {
    store: &'a DownloadStore,
    id: i64,
}

impl DownloadJournal for RowJournal<'_> {
    fn checkpoint(&self, checkpoint: &DownloadCheckpoint) {
        if let Err(e) = self.store.set_checkpoint(self.id, Some(checkpoint)) {
            tracing::warn!("downloads: {e}");
        }
    }
    fn restarted(&self) {
        if let Err(e) = self.store.set_checkpoint(self.id, None) {
            tracing::warn!("downloads: {e}");
        }
    }
    fn waiting_for_network(&self, reason: Option<&str>) {
        let r = match reason {
            Some(reason) => self.store.set_state(
                self.id,
                DownloadState::Offline,
                Some((
                    ErrorCode::NetworkUnreachable.as_str(),
                    &format!("waiting for the network ({reason})"),
                )),
            ),
            None => self
                .store
                .set_state(self.id, DownloadState::Downloading, None),
        };
        if let Err(e) = r {
            tracing::warn!("downloads: {e}");
        }
    }
}

/// Files fetched at once when the upload queue's settings cannot be read.
const DEFAULT_FILES_IN_FLIGHT: usize = 2;
/// How often the queue looks again while rows run (a global pause set by another
/// process stops them within this) or another process holds a row; idle, it does not look
/// until it is woken.
const LOOK_EVERY: Duration = Duration::from_millis(500);

impl DownloadQueue {
    /// A queue for `account` over `store`, landing files in `library`, fetching through
    /// `session` (give it the upload queue's [`crate::transfer::BandwidthLimiter`] so both
    /// share one limit). `queue_settings`: the upload queue's store, for the global pause
    /// and the number of files in flight.
    pub fn new(
        store: DownloadStore,
        library: Arc<Library>,
        session: DownloadSession,
        account: impl Into<String>,
        queue_settings: Option<QueueStore>,
    ) -> Self {
        let lock_dir = store
            .path()
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join("locks")
            .join("downloads");
        Self {
            store,
            library,
            session,
            account: account.into(),
            queue_settings,
            active: Mutex::new(HashMap::new()),
            lock_dir,
            wake: tokio::sync::Notify::new(),
            looks: AtomicU64::new(0),
            enqueue_gate: tokio::sync::Mutex::new(()),
        }
    }

    /// The queue the shells use: rows in `{data_dir}/state.db`, the engine API at
    /// `endpoints` with `tokens`, default engine settings, `limiter` shared with uploads.
    pub fn open(
        data_dir: &Path,
        library: Arc<Library>,
        endpoints: &crate::config::Endpoints,
        tokens: Arc<dyn crate::api::request::AccessTokens>,
        account: impl Into<String>,
        bus: crate::events::EventBus,
        limiter: crate::transfer::BandwidthLimiter,
    ) -> Result<Self, DownloadQueueError> {
        let db = data_dir.join("state.db");
        let store = DownloadStore::open(&db)?;
        let api = crate::api::downloads::DownloadsApi::new(
            crate::api::downloads::DownloadsApi::default_http(),
            endpoints,
            tokens,
        );
        let mut session =
            DownloadSession::new(api, bus, crate::transfer::DownloadSettings::default());
        session.limiter = limiter;
        let queue_settings = QueueStore::open(&db).ok();
        Ok(Self::new(store, library, session, account, queue_settings))
    }

    pub fn store(&self) -> &DownloadStore {
        &self.store
    }

    pub fn session(&self) -> &DownloadSession {
        &self.session
    }

    pub fn library(&self) -> &Arc<Library> {
        &self.library
    }

    /// Every download row of the account, oldest first.
    pub fn list(&self) -> Result<Vec<DownloadItem>, DownloadQueueError> {
        self.store.list(&self.account)
    }

    /// Jobs with a file still to fetch (queued, running, offline or paused).
    pub fn pending_jobs(&self) -> Result<HashSet<String>, DownloadQueueError> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|i| i.state.is_pending())
            .map(|i| i.job_id)
            .collect())
    }

    fn active(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Active>> {
        match self.active.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn publish_state(&self, id: i64, path: &Path, state: TransferState, detail: Option<String>) {
        self.session.bus.publish(Event::TransferState {
            transfer_id: transfer_id(id),
            path: path.to_path_buf(),
            state,
            detail,
        });
    }

    fn abs(&self, rel: &str) -> PathBuf {
        layout::join_relative(self.library.root(), rel)
            .unwrap_or_else(|_| self.library.root().join("(refused)"))
    }

    /// Queues `job`'s files (see [`DownloadChoice`]): asks the API for its tracks, plans
    /// the paths with the library (sanitized names, never outside the root), checks the
    /// disk space and inserts one row per file not already local or queued. Idempotent.
    pub async fn enqueue_job(
        &self,
        job: &Job,
        choice: DownloadChoice,
    ) -> Result<EnqueueReport, DownloadQueueError> {
        if job.status != "completed" {
            return Err(DownloadQueueError::NotCompleted {
                job_id: job.id.clone(),
                status: job.status.clone(),
            });
        }
        let mut tracks = if choice == DownloadChoice::Book {
            Vec::new()
        } else {
            self.session
                .api
                .tracks(&job.id)
                .await
                .map_err(|source| DownloadError::Api {
                    what: format!("the tracks of job {}", job.id),
                    source,
                })?
        };
        if choice == DownloadChoice::Tracks && tracks.is_empty() {
            return Err(DownloadQueueError::NoTracks {
                job_id: job.id.clone(),
            });
        }
        tracks.sort_by_key(|t| t.track_index);
        let _gate = self.enqueue_gate.lock().await;
        let server = ServerJob::from(job);
        let req = BookRequest {
            job_id: job.id.clone(),
            title: job.title.clone(),
            author: job.author.clone(),
            format: server.format(),
            book: choice != DownloadChoice::Tracks,
            tracks: tracks
                .iter()
                .map(|t| TrackRequest {
                    track_id: Some(t.id.clone()),
                    title: t.title.clone(),
                    export_filename: t.export_filename.clone(),
                })
                .collect(),
        };
        let plan = self.library.plan_book(&req)?;
        let existing = self.store.job_items(&self.account, &job.id)?;
        let catalogued = self.library.catalog().get(&job.id)?;
        let mut items = Vec::new();
        let mut already = 0;
        for (i, file) in plan.files().enumerate() {
            let queued = existing.iter().any(|r| {
                r.which == file.which && (r.state.is_pending() || r.state == DownloadState::Failed)
            });
            let local = catalogued
                .as_ref()
                .and_then(|b| b.file(file.which))
                .is_some_and(|f| self.library.path_of(f).is_ok_and(|p| p.is_file()))
                || existing.iter().any(|r| {
                    r.which == file.which
                        && r.state == DownloadState::Completed
                        && self.abs(&r.rel_path).is_file()
                });
            let (expected_size, duration) = match file.which {
                FileRef::Book => (job.file_size_bytes, job.duration_seconds),
                FileRef::Track(_) => {
                    let t = i.checked_sub(usize::from(plan.book_file.is_some()));
                    let t = t.and_then(|t| tracks.get(t));
                    (
                        t.and_then(|t| t.file_size_bytes),
                        t.and_then(|t| t.duration_seconds),
                    )
                }
            };
            if queued {
                // The server may have another file now (the job narrated again): the row
                // resumes or starts over against the size announced now, not the one
                // announced when it was queued (else it would fail on every retry).
                let now = expected_size.and_then(|s| u64::try_from(s).ok());
                for r in existing.iter().filter(|r| {
                    r.which == file.which
                        && (r.state.is_pending() || r.state == DownloadState::Failed)
                        && r.expected_size != now
                }) {
                    self.store.set_expected_size(r.id, now)?;
                }
            }
            if queued || local {
                already += 1;
                continue;
            }
            items.push(NewItem {
                which: file.which,
                track_id: file.track_id.clone(),
                title: file.title.clone(),
                rel_path: file.rel_path.clone(),
                expected_size: expected_size.and_then(|s| u64::try_from(s).ok()),
                duration_seconds: duration.map(|d| d as f64),
                replace_existing: false,
            });
        }
        self.check_space(&items)?;
        let book = BookRow {
            job_id: job.id.clone(),
            title: plan.title.clone(),
            author: plan.author.clone(),
            format: plan.format.clone(),
            duration_seconds: job.duration_seconds.map(|d| d as f64),
            book_dir: plan.dirs.book_dir.clone(),
            chapters_dir: plan.dirs.chapters_dir.clone(),
        };
        let queued = if items.is_empty() {
            Vec::new()
        } else {
            self.store.insert(&self.account, &book, &items)?
        };
        for (id, item) in queued.iter().zip(&items) {
            self.publish_state(*id, &self.abs(&item.rel_path), TransferState::Queued, None);
        }
        self.wake.notify_one();
        Ok(EnqueueReport {
            job_id: job.id.clone(),
            title: job.title.clone(),
            queued,
            already,
        })
    }

    /// Refuses rows that cannot fit on the library's disk (with the engine's margin).
    fn check_space(&self, items: &[NewItem]) -> Result<(), DownloadQueueError> {
        let bytes: u64 = items.iter().filter_map(|i| i.expected_size).sum();
        if bytes == 0 {
            return Ok(());
        }
        let mut dir = self.library.root().to_path_buf();
        while !dir.exists() {
            match dir.parent() {
                Some(p) => dir = p.to_path_buf(),
                None => return Ok(()),
            }
        }
        disk_space::check(self.session.space.as_ref(), &dir, bytes).map_err(
            |(needed, available)| {
                DownloadQueueError::Download(DownloadError::NotEnoughSpace {
                    dir,
                    needed,
                    available,
                })
            },
        )
    }

    /// One sync round over `jobs` (the account's job list; `complete` when every page was
    /// read): marks the books the server no longer has "only on this computer" (and back),
    /// and queues every completed job that is not local yet. Never deletes anything.
    /// With `only_new`, jobs this queue ever had rows for are left alone (the automatic
    /// sync: a book the user removed from the library is not brought back).
    pub async fn sync(
        &self,
        jobs: &[Job],
        complete: bool,
        only_new: bool,
    ) -> Result<SyncReport, DownloadQueueError> {
        let known: HashSet<String> = if only_new {
            self.list()?.into_iter().map(|i| i.job_id).collect()
        } else {
            HashSet::new()
        };
        let books = self.library.catalog().list()?;
        let view = ServerView {
            account: self.account.clone(),
            jobs: jobs.iter().map(ServerJob::from).collect(),
            complete,
            gone: HashSet::new(),
            in_flight: self.pending_jobs()?,
        };
        let plan = plan_sync(&books, &view);
        plan.apply_marks(self.library.catalog())?;
        let mut report = SyncReport {
            marked_only_local: plan
                .mark_only_local
                .iter()
                .map(|(id, _)| id.clone())
                .collect(),
            marked_available: plan.mark_available.clone(),
            ..SyncReport::default()
        };
        for id in report
            .marked_only_local
            .iter()
            .chain(&report.marked_available)
        {
            self.session
                .bus
                .publish(Event::LibraryChanged { job_id: id.clone() });
        }
        for sj in &plan.download {
            let Some(job) = jobs.iter().find(|j| j.id == sj.id) else {
                continue;
            };
            if known.contains(&job.id) {
                continue;
            }
            match self.enqueue_job(job, DownloadChoice::All).await {
                Ok(r) => report.enqueued.push(r),
                Err(e) => report.errors.push((
                    job.id.clone(),
                    e.code().as_str().to_string(),
                    e.to_string(),
                )),
            }
        }
        Ok(report)
    }

    /// Verifies the library and queues every missing or changed file of a book the server
    /// still has. A changed file stays until its replacement landed and was verified.
    pub fn repair(&self) -> Result<Vec<i64>, DownloadQueueError> {
        let report = self.library.verify(&VerifyOptions::default())?;
        let pending = self.list()?;
        let mut by_job: HashMap<String, Vec<NewItem>> = HashMap::new();
        for r in &report.repair {
            if pending
                .iter()
                .any(|p| p.job_id == r.job_id && p.which == r.which && p.state.is_pending())
            {
                continue;
            }
            let book = self.library.catalog().show(&r.job_id)?;
            let (title, duration) = match r.which {
                FileRef::Book => (book.title.clone(), book.duration_seconds),
                FileRef::Track(n) => book
                    .tracks
                    .iter()
                    .find(|t| t.number == n)
                    .map(|t| (t.title.clone(), t.duration_seconds))
                    .unwrap_or_else(|| (book.title.clone(), None)),
            };
            by_job.entry(r.job_id.clone()).or_default().push(NewItem {
                which: r.which,
                track_id: r.track_id.clone(),
                title,
                rel_path: r.rel_path.clone(),
                expected_size: Some(r.expected_size),
                duration_seconds: duration,
                replace_existing: r.path.symlink_metadata().is_ok(),
            });
        }
        let mut ids = Vec::new();
        for (job_id, items) in by_job {
            let book = self.library.catalog().show(&job_id)?;
            self.check_space(&items)?;
            let row = BookRow {
                job_id: job_id.clone(),
                title: book.title.clone(),
                author: book.author.clone(),
                format: book.format.clone(),
                duration_seconds: book.duration_seconds,
                book_dir: book.book_dir.clone(),
                chapters_dir: book
                    .chapters_dir
                    .clone()
                    .unwrap_or_else(|| layout::chapters_dir_name(&book.book_dir)),
            };
            ids.extend(self.store.insert(&self.account, &row, &items)?);
        }
        self.wake.notify_one();
        Ok(ids)
    }

    /// Runs until every runnable row is done (or paused, failed, or left to another
    /// process), or until `shutdown`.
    pub async fn run_until_idle(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<(), DownloadQueueError> {
        self.run_inner(shutdown, true).await
    }

    /// Runs until `shutdown`, picking up rows as they come (the app's background task).
    pub async fn run(&self, shutdown: &CancellationToken) -> Result<(), DownloadQueueError> {
        self.run_inner(shutdown, false).await
    }

    /// Wakes a running queue (new rows, a resume, the global pause or the number of files
    /// in flight changed).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// How many times the runner has read the queue and its settings: it only does when
    /// woken, when a row finishes, and every [`LOOK_EVERY`] while rows run. For tests and
    /// benchmarks (an idle queue must not poll).
    pub fn looks(&self) -> u64 {
        self.looks.load(Ordering::Relaxed)
    }

    fn queue_settings(&self) -> (bool, usize) {
        match self.queue_settings.as_ref().map(QueueStore::settings) {
            Some(Ok(s)) => (s.paused, s.files_in_flight.max(1)),
            _ => (false, DEFAULT_FILES_IN_FLIGHT),
        }
    }

    async fn run_inner(
        &self,
        shutdown: &CancellationToken,
        until_idle: bool,
    ) -> Result<(), DownloadQueueError> {
        let mut running = FuturesUnordered::new();
        let mut busy: HashSet<i64> = HashSet::new();
        loop {
            if shutdown.is_cancelled() {
                while running.next().await.is_some() {}
                return Ok(());
            }
            self.looks.fetch_add(1, Ordering::Relaxed);
            let (paused, in_flight) = self.queue_settings();
            let mut waiting = 0;
            if paused {
                for a in self.active().values_mut() {
                    a.reason = Some(StopReason::GlobalPause);
                    a.token.cancel();
                }
            } else {
                let runnable = self.store.runnable(&self.account)?;
                for item in runnable {
                    if self.active().contains_key(&item.id) {
                        continue;
                    }
                    // Another process holds it: left to that process (until idle), or
                    // tried again at the next look (a running app).
                    if busy.contains(&item.id) {
                        continue;
                    }
                    waiting += 1;
                    if running.len() >= in_flight {
                        continue;
                    }
                    let token = shutdown.child_token();
                    self.active().insert(
                        item.id,
                        Active {
                            token: token.clone(),
                            reason: None,
                        },
                    );
                    waiting -= 1;
                    running.push(self.drive(item, token));
                }
            }
            if until_idle && running.is_empty() && waiting == 0 {
                return Ok(());
            }
            // Idle (nothing running, nothing held elsewhere) it sleeps until woken: an
            // enqueue, a resume or retry, a change of the global pause (the client wakes
            // it), shutdown. No timer runs then.
            let look_again = !running.is_empty() || (!until_idle && !busy.is_empty());
            tokio::select! {
                Some((id, was_busy)) = running.next(), if !running.is_empty() => {
                    if was_busy { busy.insert(id); } else { busy.remove(&id); }
                }
                () = self.wake.notified() => {}
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(LOOK_EVERY), if look_again => {
                    if !until_idle {
                        busy.clear();
                    }
                }
            }
        }
    }

    /// Drives one row; returns (id, whether another process holds it).
    async fn drive(&self, item: DownloadItem, token: CancellationToken) -> (i64, bool) {
        let id = item.id;
        let result = self.drive_locked(item, &token).await;
        self.active().remove(&id);
        if let Err(e) = &result {
            tracing::warn!(code = e.code().as_str(), "download {id}: {e}");
        }
        (id, matches!(result, Ok(true)))
    }

    async fn drive_locked(
        &self,
        item: DownloadItem,
        token: &CancellationToken,
    ) -> Result<bool, DownloadQueueError> {
        let id = item.id;
        let _lock = match lock::try_lock(&self.lock_dir, id) {
            Locked::Held(l) => l,
            Locked::Busy { holder } => {
                self.session.bus.publish(Event::TransferNotice {
                    transfer_id: transfer_id(id),
                    notice: TransferNotice::BusyElsewhere {
                        message: format!(
                            "{} is being downloaded by another Rohimaya process{}; it is left to that process",
                            item.rel_path,
                            holder.map(|p| format!(" (pid {p})")).unwrap_or_default()
                        ),
                    },
                });
                return Ok(true);
            }
        };
        // Another process may have moved it meanwhile: read it again under the lock.
        let item = self.store.item(&self.account, id)?;
        if !matches!(
            item.state,
            DownloadState::Queued | DownloadState::Downloading | DownloadState::Offline
        ) {
            return Ok(false);
        }
        let root = self.library.root().to_path_buf();
        let final_path = match layout::join_relative(&root, &item.rel_path)
            .and_then(|p| layout::ensure_inside(&root, &p))
        {
            Ok(p) => p,
            Err(e) => {
                self.fail(
                    &item,
                    &root.join("(refused)"),
                    e.code().as_str(),
                    &e.to_string(),
                )?;
                return Ok(false);
            }
        };
        let dest = if item.replace_existing {
            let mut s = final_path.clone().into_os_string();
            s.push(".repair");
            PathBuf::from(s)
        } else {
            final_path.clone()
        };
        if let Err(e) = self.create_parent(&root, &dest) {
            self.fail(&item, &final_path, e.code().as_str(), &e.to_string())?;
            return Ok(false);
        }
        let source = match (item.which, &item.track_id) {
            (FileRef::Book, _) => DownloadSource::Book {
                job_id: item.job_id.clone(),
            },
            (FileRef::Track(_), Some(t)) => DownloadSource::Track {
                job_id: item.job_id.clone(),
                track_id: t.clone(),
            },
            (FileRef::Track(n), None) => {
                self.fail(
                    &item,
                    &final_path,
                    ErrorCode::UnexpectedResponse.as_str(),
                    &format!(
                        "track {n} of job {} has no server id; download the job again",
                        item.job_id
                    ),
                )?;
                return Ok(false);
            }
        };
        self.store.set_state(id, DownloadState::Downloading, None)?;
        self.publish_state(id, &final_path, TransferState::Downloading, None);
        let tid = transfer_id(id);
        let meter = ProgressMeter::new(
            self.session.bus.clone(),
            tid.clone(),
            item.expected_size.unwrap_or(0),
        );
        let journal = RowJournal {
            store: &self.store,
            id,
        };
        let result = self
            .session
            .download(DownloadJob {
                transfer_id: &tid,
                source,
                dest: &dest,
                library_root: &root,
                expected_size: item.expected_size,
                resume: item.checkpoint.clone(),
                journal: &journal,
                meter: &meter,
                cancel: token,
            })
            .await;
        match result {
            Ok(done) => {
                if item.replace_existing
                    && let Err(e) = std::fs::rename(&done.path, &final_path)
                {
                    self.fail(
                        &item,
                        &final_path,
                        ErrorCode::DiskWriteFailed.as_str(),
                        &format!(
                            "{}: cannot replace the damaged file ({e}); the good copy is at {}",
                            final_path.display(),
                            done.path.display()
                        ),
                    )?;
                    return Ok(false);
                }
                self.store
                    .landed(id, done.size, done.md5.as_deref(), &done.etag)?;
                meter.set_state(TransferState::Completed);
                self.publish_state(
                    id,
                    &final_path,
                    TransferState::Completed,
                    Some(item.job_id.clone()),
                );
                self.settle(&item.job_id)?;
            }
            Err(DownloadError::Interrupted { .. }) => {
                let reason = self.active().get(&id).and_then(|a| a.reason);
                match reason {
                    Some(StopReason::Pause) => {
                        self.store.set_state(id, DownloadState::Paused, None)?;
                        meter.set_state(TransferState::Paused);
                        self.publish_state(id, &final_path, TransferState::Paused, None);
                    }
                    Some(StopReason::Cancel) => {
                        self.cancelled(&item, &dest)?;
                    }
                    Some(StopReason::GlobalPause) | None => {
                        // Shut down or globally paused: queued again, resumable.
                        self.store.set_state(id, DownloadState::Queued, None)?;
                        self.publish_state(id, &final_path, TransferState::Queued, None);
                    }
                }
            }
            Err(e) => {
                if e.code() == ErrorCode::ServerCopyGone
                    && self.library.catalog().mark_only_local(&item.job_id)?
                {
                    self.session.bus.publish(Event::LibraryChanged {
                        job_id: item.job_id.clone(),
                    });
                }
                meter.set_state(TransferState::Failed);
                self.fail(&item, &final_path, e.code().as_str(), &e.to_string())?;
            }
        }
        Ok(false)
    }

    fn create_parent(&self, root: &Path, dest: &Path) -> Result<(), LibraryError> {
        layout::ensure_inside(root, dest)?;
        let parent = dest.parent().ok_or_else(|| LibraryError::OutsideRoot {
            root: root.to_path_buf(),
            path: dest.to_path_buf(),
        })?;
        std::fs::create_dir_all(parent).map_err(|e| LibraryError::File {
            action: "create the folder",
            path: parent.to_path_buf(),
            reason: e.to_string(),
        })?;
        layout::ensure_inside(root, dest)?;
        Ok(())
    }

    fn fail(
        &self,
        item: &DownloadItem,
        path: &Path,
        code: &str,
        message: &str,
    ) -> Result<(), DownloadQueueError> {
        self.store
            .set_state(item.id, DownloadState::Failed, Some((code, message)))?;
        self.publish_state(
            item.id,
            path,
            TransferState::Failed,
            Some(format!("{code}: {message}")),
        );
        self.settle(&item.job_id)
    }

    /// Cancelled: its `.part` and checkpoint go; folders are released if nothing of the
    /// book landed.
    fn cancelled(&self, item: &DownloadItem, dest: &Path) -> Result<(), DownloadQueueError> {
        let part = layout::part_path(dest);
        if let Err(e) = std::fs::remove_file(&part)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("cannot delete {}: {e}", part.display());
        }
        self.store.set_checkpoint(item.id, None)?;
        self.store
            .set_state(item.id, DownloadState::Cancelled, None)?;
        self.publish_state(
            item.id,
            &self.abs(&item.rel_path),
            TransferState::Cancelled,
            None,
        );
        self.settle(&item.job_id)
    }

    /// When none of a job's rows is pending: catalogues what landed (merged into the
    /// book's record), or releases the claimed folders if nothing of it is local.
    fn settle(&self, job_id: &str) -> Result<(), DownloadQueueError> {
        let items = self.store.job_items(&self.account, job_id)?;
        if items.iter().any(|i| i.state.is_pending()) {
            return Ok(());
        }
        let fresh: Vec<&DownloadItem> = items
            .iter()
            .filter(|i| i.state == DownloadState::Completed && !i.catalogued)
            .collect();
        let catalog = self.library.catalog();
        if fresh.is_empty() {
            let landed_any = items.iter().any(|i| i.state == DownloadState::Completed);
            if !landed_any && catalog.get(job_id)?.is_none() {
                catalog.release_dirs(job_id)?;
            }
            return Ok(());
        }
        let Some(book) = self.store.book(&self.account, job_id)? else {
            return Ok(());
        };
        let record = |i: &DownloadItem| {
            let (size, md5, etag) = i.landed.clone().unwrap_or((0, None, None));
            FileRecord {
                rel_path: i.rel_path.clone(),
                size,
                md5,
                etag,
            }
        };
        let new_book = NewBook {
            job_id: job_id.to_string(),
            account: Some(self.account.clone()),
            title: book.title.clone(),
            author: book.author.clone(),
            format: book.format.clone(),
            duration_seconds: book.duration_seconds,
            book_dir: book.book_dir.clone(),
            chapters_dir: Some(book.chapters_dir.clone()),
            book_file: fresh
                .iter()
                .find(|i| i.which == FileRef::Book)
                .map(|i| record(i)),
            tracks: fresh
                .iter()
                .filter_map(|i| match i.which {
                    FileRef::Track(number) => Some(TrackRecord {
                        number,
                        track_id: i.track_id.clone(),
                        title: i.title.clone(),
                        duration_seconds: i.duration_seconds,
                        file: record(i),
                    }),
                    FileRef::Book => None,
                })
                .collect(),
        };
        catalog.merge_book(&new_book)?;
        let ids: Vec<i64> = fresh.iter().map(|i| i.id).collect();
        self.store.mark_catalogued(&ids)?;
        self.session.bus.publish(Event::LibraryChanged {
            job_id: job_id.to_string(),
        });
        Ok(())
    }

    /// Pauses row `id` (keeping its `.part` and checkpoint).
    pub fn pause(&self, id: i64) -> Result<(), DownloadQueueError> {
        let item = self.store.item(&self.account, id)?;
        if !matches!(
            item.state,
            DownloadState::Queued | DownloadState::Downloading | DownloadState::Offline
        ) {
            return Err(invalid(&item, "pause"));
        }
        if let Some(a) = self.active().get_mut(&id) {
            a.reason = Some(StopReason::Pause);
            a.token.cancel();
            return Ok(());
        }
        self.store.set_state(id, DownloadState::Paused, None)?;
        self.publish_state(id, &self.abs(&item.rel_path), TransferState::Paused, None);
        Ok(())
    }

    /// Resumes a paused row (from its `.part`).
    pub fn resume(&self, id: i64) -> Result<(), DownloadQueueError> {
        let item = self.store.item(&self.account, id)?;
        if item.state != DownloadState::Paused {
            return Err(invalid(&item, "resume"));
        }
        self.store.set_state(id, DownloadState::Queued, None)?;
        self.publish_state(id, &self.abs(&item.rel_path), TransferState::Queued, None);
        self.wake.notify_one();
        Ok(())
    }

    /// Queues a failed or cancelled row again.
    pub fn retry(&self, id: i64) -> Result<(), DownloadQueueError> {
        let item = self.store.item(&self.account, id)?;
        if !matches!(item.state, DownloadState::Failed | DownloadState::Cancelled) {
            return Err(invalid(&item, "retry"));
        }
        self.store.set_state(id, DownloadState::Queued, None)?;
        self.publish_state(id, &self.abs(&item.rel_path), TransferState::Queued, None);
        self.wake.notify_one();
        Ok(())
    }

    /// Cancels row `id`: deletes its `.part`, never a landed file.
    pub fn cancel(&self, id: i64) -> Result<(), DownloadQueueError> {
        let item = self.store.item(&self.account, id)?;
        if !item.state.is_pending() && item.state != DownloadState::Failed {
            return Err(invalid(&item, "cancel"));
        }
        if let Some(a) = self.active().get_mut(&id) {
            a.reason = Some(StopReason::Cancel);
            a.token.cancel();
            return Ok(());
        }
        let _lock = match lock::try_lock(&self.lock_dir, id) {
            Locked::Held(l) => l,
            Locked::Busy { .. } => {
                return Err(DownloadQueueError::InvalidState {
                    id,
                    state: "being downloaded by another Rohimaya process",
                    action: "cancel",
                });
            }
        };
        let mut dest = self.abs(&item.rel_path);
        if item.replace_existing {
            let mut s = dest.into_os_string();
            s.push(".repair");
            dest = PathBuf::from(s);
        }
        self.cancelled(&item, &dest)
    }
}

/// Every job of the signed-in account, page by page; `true` when every page was read
/// (only then may "not listed" be taken as "deleted").
pub async fn server_jobs(
    api: &crate::api::ApiClient,
) -> Result<(Vec<Job>, bool), crate::api::ApiError> {
    const PAGE: u32 = 100;
    const MAX_PAGES: u32 = 100;
    let mut jobs = Vec::new();
    for page in 0..MAX_PAGES {
        let got = api
            .list_jobs(&crate::api::JobsQuery {
                status: None,
                limit: Some(PAGE),
                offset: Some(page * PAGE),
            })
            .await?;
        let n = got.len();
        jobs.extend(got);
        if n < PAGE as usize {
            return Ok((jobs, true));
        }
    }
    Ok((jobs, false))
}

fn invalid(item: &DownloadItem, action: &'static str) -> DownloadQueueError {
    DownloadQueueError::InvalidState {
        id: item.id,
        state: item.state.as_str(),
        action,
    }
}

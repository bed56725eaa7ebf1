//! [`QueueRunner`]: drives one account's queued files through the upload engine, a few at
//! a time, and creates each file's narration job once its object is stored and verified.
//!
//! It owns the transitions of queue items (queued -> uploading -> completed, paused,
//! failed, cancelled), the checks before a resume (file changed? ask the server which
//! parts it has) and the dedupe by content: a file's SHA-256 is computed at enqueue only
//! when the account has an item of the same size (a possible duplicate); otherwise it is
//! computed while the file is uploaded and recorded before the item is done. Stops are by cancellation token: pause, cancel
//! and the global pause cancel a file's token and say why; a shutdown (or a crash) leaves
//! the item as it was, to be resumed by the next runner over the same `state.db`. Each item
//! runs under its cross-process [`lock`](super::lock): an item another process holds is
//! left to it and reported ([`QueueRunner::busy_elsewhere`]). An item whose requests cannot
//! connect is marked offline (not failed) until the network returns. It never blocks on
//! the network while holding the database.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio_util::sync::CancellationToken;

use super::lock::{self, ItemLock, Locked};
use super::store::{ItemRecord, QueueSettings, QueueStore, SameSize};
use super::{ItemState, QueueError};
use crate::api::request::RequestError;
use crate::api::uploads::{JobOptions, UploadApiError};
use crate::error::{CoreError, ErrorCode};
use crate::events::{Event, TransferNotice, TransferState};
use crate::transfer::manuscript::{self, Manuscript};
use crate::transfer::plan::PartPlan;
use crate::transfer::retry::pause;
use crate::transfer::upload::UploadJob;
use crate::transfer::{
    ProgressMeter, ResumePoint, TransferError, UploadJournal, UploadResult, UploadSession,
};

/// A file accepted into the queue.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Enqueued {
    pub id: i64,
    pub path: PathBuf,
    pub size: u64,
    /// Known at enqueue only when it was needed for the dedupe check (or given).
    pub sha256: Option<String>,
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

pub struct QueueRunner {
    store: QueueStore,
    session: UploadSession,
    account: String,
    active: Mutex<HashMap<i64, Active>>,
    /// Items found locked by another process in the current run, with why.
    busy: Mutex<BTreeMap<i64, QueueError>>,
    /// Where the items' lock files are (`locks/` beside `state.db`).
    lock_dir: PathBuf,
    wake: tokio::sync::Notify,
}

impl std::fmt::Debug for QueueRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueRunner")
            .field("account", &self.account)
            .finish()
    }
}

/// Persists what the engine reports about one item.
struct RowJournal<'a> {
    store: &'a QueueStore,
    id: i64,
}

impl UploadJournal for RowJournal<'_> {
    fn multipart_started(&self, upload_id: &str, object_key: &str, _part_size: u64) {
        if let Err(e) = self
            .store
            .set_upload(self.id, Some(upload_id), Some(object_key))
        {
            tracing::warn!("queue: {e}");
        }
    }
    fn part_stored(&self, part_number: u32, etag: &str) {
        if let Err(e) = self.store.part_stored(self.id, part_number, etag) {
            tracing::warn!("queue: {e}");
        }
    }
    fn upload_gone(&self) {
        if let Err(e) = self.store.set_upload(self.id, None, None) {
            tracing::warn!("queue: {e}");
        }
    }
    fn waiting_for_network(&self, reason: Option<&str>) {
        let r = match reason {
            Some(reason) => self.store.set_state(
                self.id,
                ItemState::Offline,
                Some((
                    ErrorCode::NetworkUnreachable.as_str(),
                    &format!("waiting for the network ({reason})"),
                )),
            ),
            None => self.store.set_state(self.id, ItemState::Uploading, None),
        };
        if let Err(e) = r {
            tracing::warn!("queue: {e}");
        }
    }
}

impl QueueRunner {
    /// A runner for `account` (the signed-in user's id) over `store`. The queue's saved
    /// settings (parts in flight, bandwidth limit) are applied to `session`.
    pub fn new(
        store: QueueStore,
        mut session: UploadSession,
        account: impl Into<String>,
    ) -> Result<Self, QueueError> {
        let settings = store.settings()?;
        session.settings.parts_in_flight = settings.parts_in_flight;
        if let Some(t) = settings.multipart_threshold {
            session.settings.plan.multipart_threshold = t;
        }
        session.limiter.set_rate(settings.bandwidth_limit);
        let lock_dir = store
            .path()
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join("locks");
        Ok(Self {
            store,
            session,
            account: account.into(),
            active: Mutex::new(HashMap::new()),
            busy: Mutex::new(BTreeMap::new()),
            lock_dir,
            wake: tokio::sync::Notify::new(),
        })
    }

    /// The runner the shells use: the queue in `{data_dir}/state.db`, the backend at
    /// `endpoints`, tokens from `tokens`, default transfer settings, events on `bus`.
    pub fn open(
        data_dir: &Path,
        endpoints: &crate::config::Endpoints,
        tokens: std::sync::Arc<dyn crate::api::request::AccessTokens>,
        account: impl Into<String>,
        bus: crate::events::EventBus,
    ) -> Result<Self, QueueError> {
        let store = QueueStore::open(&data_dir.join("state.db"))?;
        let api = crate::api::uploads::UploadsApi::new(
            crate::api::uploads::UploadsApi::default_http(),
            endpoints,
            tokens,
        );
        let session = UploadSession::new(api, bus, crate::transfer::TransferSettings::default());
        Self::new(store, session, account)
    }

    pub fn store(&self) -> &QueueStore {
        &self.store
    }

    pub fn session(&self) -> &UploadSession {
        &self.session
    }

    /// For files queued from now on by this runner: send files of at least `bytes` as
    /// multipart, smaller ones in one PUT (not saved; the saved setting is
    /// [`QueueSettings::multipart_threshold`]).
    pub fn set_multipart_threshold(&mut self, bytes: u64) {
        self.session.settings.plan.multipart_threshold = bytes;
    }

    fn active(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Active>> {
        match self.active.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn busy(&self) -> std::sync::MutexGuard<'_, BTreeMap<i64, QueueError>> {
        match self.busy.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The items the last run left alone because another process is uploading them.
    pub fn busy_elsewhere(&self) -> Vec<i64> {
        self.busy().keys().copied().collect()
    }

    /// Why the last run left item `id` alone ([`QueueError::Busy`]), if it did.
    pub fn busy_reason(&self, id: i64) -> Option<QueueError> {
        self.busy().get(&id).cloned()
    }

    /// Locks item `id` for this process, or says who holds it.
    fn lock_item(&self, id: i64) -> Result<ItemLock, QueueError> {
        match lock::try_lock(&self.lock_dir, id) {
            Locked::Held(l) => {
                self.busy().remove(&id);
                Ok(l)
            }
            Locked::Busy { holder } => {
                let path = self.store.record(id)?.path;
                let err = QueueError::Busy { id, path, holder };
                if self.busy().insert(id, err.clone()).is_none() {
                    self.notice(
                        id,
                        TransferNotice::BusyElsewhere {
                            message: err.to_string(),
                        },
                    );
                }
                Err(err)
            }
        }
    }

    fn publish_state(&self, id: i64, path: &Path, state: TransferState, detail: Option<String>) {
        self.session.bus.publish(Event::TransferState {
            transfer_id: id.to_string(),
            path: path.to_path_buf(),
            state,
            detail,
        });
    }

    fn notice(&self, id: i64, notice: TransferNotice) {
        self.session.bus.publish(Event::TransferNotice {
            transfer_id: id.to_string(),
            notice,
        });
    }

    /// Accepts `path` into the queue: checks it is a manuscript and refuses content this
    /// account already queued or uploaded unless `force`. Reads the whole file only when an
    /// item of the same size exists (a possible duplicate); otherwise its SHA-256 is
    /// computed while it is uploaded.
    pub async fn enqueue(
        &self,
        path: &Path,
        options: &JobOptions,
        force: bool,
    ) -> Result<Enqueued, QueueError> {
        self.enqueue_inner(path, options, force, None).await
    }

    /// [`enqueue`](Self::enqueue) for a caller that has hashed the file already (the
    /// watch folder): `sha256` is the file's hex SHA-256, trusted as given.
    pub async fn enqueue_with_sha256(
        &self,
        path: &Path,
        options: &JobOptions,
        force: bool,
        sha256: &str,
    ) -> Result<Enqueued, QueueError> {
        self.enqueue_inner(path, options, force, Some(sha256.to_ascii_lowercase()))
            .await
    }

    async fn enqueue_inner(
        &self,
        path: &Path,
        options: &JobOptions,
        force: bool,
        mut sha256: Option<String>,
    ) -> Result<Enqueued, QueueError> {
        let m = inspect(path).await?;
        let plan = PartPlan::for_size(m.size, self.session.settings.plan);
        let id = loop {
            if !force {
                let same = self.store.same_size(&self.account, m.size)?;
                if !same.is_empty() {
                    if sha256.is_none() {
                        sha256 = Some(file_sha256(&m.path).await?);
                    }
                    let sha = sha256.as_deref().unwrap_or_default();
                    if let Some(dup) = self.same_content(&m, sha, &same).await? {
                        return Err(QueueError::Duplicate {
                            path: m.path.clone(),
                            existing: dup.id,
                            existing_state: dup.state,
                            job_id: dup.job_id.clone(),
                        });
                    }
                }
            }
            // Without a SHA-256 the insert is made only if still no item of this size
            // exists (another process may have queued one meanwhile): else check again.
            let unless_same_size = !force && sha256.is_none();
            if let Some(id) = self.store.insert(
                &self.account,
                &m.path,
                &m.file_name,
                m.content_type,
                m.size,
                m.mtime_ms,
                &plan,
                sha256.as_deref(),
                options,
                unless_same_size,
            )? {
                break id;
            }
        };
        self.publish_state(id, &m.path, TransferState::Queued, None);
        self.wake.notify_one();
        Ok(Enqueued {
            id,
            path: m.path,
            size: m.size,
            sha256,
        })
    }

    /// The first of `same` (items of `m`'s size) with the content `sha256`. An item whose
    /// SHA-256 is not known yet (still uploading) counts as the same content when it is
    /// the same file unchanged (path, size and mtime), else its file is hashed now if it
    /// is still as it was queued.
    async fn same_content<'s>(
        &self,
        m: &Manuscript,
        sha256: &str,
        same: &'s [SameSize],
    ) -> Result<Option<&'s SameSize>, QueueError> {
        for c in same {
            let known = match &c.sha256 {
                Some(s) => s.clone(),
                None if c.path == m.path && c.mtime_ms == m.mtime_ms => return Ok(Some(c)),
                None => {
                    let Ok(now) = inspect(&c.path).await else {
                        continue;
                    };
                    if now.size != m.size || now.mtime_ms != c.mtime_ms {
                        // Changed since it was queued: it will be hashed when it is sent.
                        continue;
                    }
                    let Ok(s) = file_sha256(&c.path).await else {
                        continue;
                    };
                    // Checked again after the read: a file changed meanwhile proves nothing.
                    match inspect(&c.path).await {
                        Ok(after) if after.mtime_ms == c.mtime_ms && after.size == m.size => {}
                        _ => continue,
                    }
                    s
                }
            };
            if known == sha256 {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    /// Runs every runnable item (queued, or interrupted earlier) until none is left or the
    /// queue is paused; `shutdown` stops the runner, leaving items to resume later.
    pub async fn run_until_idle(&self, shutdown: &CancellationToken) -> Result<(), QueueError> {
        self.busy().clear();
        let mut running = FuturesUnordered::new();
        loop {
            let settings = self.store.settings()?;
            if !settings.paused && !shutdown.is_cancelled() {
                for id in self.store.runnable(&self.account)? {
                    if running.len() >= settings.files_in_flight {
                        break;
                    }
                    if self.active().contains_key(&id) {
                        continue;
                    }
                    // Another process may hold it, or have finished it since the query.
                    let Ok(held) = self.lock_item(id) else {
                        continue;
                    };
                    if !matches!(
                        self.store.state(id)?,
                        ItemState::Queued | ItemState::Uploading | ItemState::Offline
                    ) {
                        continue;
                    }
                    let token = shutdown.child_token();
                    self.active().insert(
                        id,
                        Active {
                            token: token.clone(),
                            reason: None,
                        },
                    );
                    running.push(self.run_item(id, token, held));
                }
            }
            if running.is_empty() {
                return Ok(());
            }
            tokio::select! {
                _ = running.next() => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    /// Runs the queue until `shutdown`, waiting for new work when idle (the app).
    pub async fn run(&self, shutdown: &CancellationToken) -> Result<(), QueueError> {
        loop {
            self.run_until_idle(shutdown).await?;
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = shutdown.cancelled() => return Ok(()),
            }
        }
    }

    /// Runs one item; `_held` (its cross-process lock) is released at the end, once its
    /// final state is written.
    async fn run_item(&self, id: i64, token: CancellationToken, _held: ItemLock) {
        let result = self.process(id, &token).await;
        let reason = self.active().remove(&id).and_then(|a| a.reason);
        let path = self.store.record(id).map(|r| r.path).unwrap_or_default();
        let outcome = match result {
            Ok(job_id) => {
                self.publish_state(id, &path, TransferState::Completed, Some(job_id));
                Ok(())
            }
            Err(QueueError::Transfer(TransferError::Interrupted { .. })) => match reason {
                Some(StopReason::Pause) => {
                    self.publish_state(id, &path, TransferState::Paused, None);
                    self.store.set_state(id, ItemState::Paused, None)
                }
                Some(StopReason::GlobalPause) => {
                    self.publish_state(id, &path, TransferState::Paused, None);
                    self.store.set_state(id, ItemState::Queued, None)
                }
                Some(StopReason::Cancel) => self.finish_cancel(id, &path).await,
                // Shut down (or crashed): left as it is, resumed by the next runner.
                None => Ok(()),
            },
            Err(e) => {
                let code = e.code();
                let message = e.to_string();
                self.publish_state(
                    id,
                    &path,
                    TransferState::Failed,
                    Some(format!("{}: {message}", code.as_str())),
                );
                self.store
                    .set_state(id, ItemState::Failed, Some((code.as_str(), &message)))
            }
        };
        if let Err(e) = outcome {
            tracing::warn!("queue: {e}");
        }
    }

    /// Aborts the server's multipart upload (best effort) and marks the item cancelled.
    async fn finish_cancel(&self, id: i64, path: &Path) -> Result<(), QueueError> {
        let rec = self.store.record(id)?;
        if let (Some(upload_id), Some(key)) = (&rec.upload_id, &rec.object_key)
            && rec.stored_etag.is_none()
            && let Err(e) = self.session.api.abort(upload_id, key).await
        {
            tracing::warn!("queue: could not abort upload of item {id}: {e}");
        }
        self.store.set_upload(id, None, None)?;
        self.publish_state(id, path, TransferState::Cancelled, None);
        self.store.set_state(id, ItemState::Cancelled, None)
    }

    /// Uploads one item and creates its job; returns the job id.
    async fn process(&self, id: i64, stop: &CancellationToken) -> Result<String, QueueError> {
        let mut rec = self.store.record(id)?;
        self.store.set_state(id, ItemState::Uploading, None)?;
        self.publish_state(id, &rec.path, TransferState::Uploading, None);
        let meter = ProgressMeter::new(self.session.bus.clone(), id.to_string(), rec.size);
        let mut m = inspect(&rec.path).await?;
        // Whether the parts already sent were sent from this very content is checked
        // during the upload, as the hasher reaches them (`SentPartChanged` below).
        if rec.stored_etag.is_none() {
            let changed = if m.size != rec.size {
                Some("its size changed since it was queued")
            } else if m.mtime_ms != rec.mtime_ms {
                Some("it was modified since it was queued")
            } else {
                None
            };
            if let Some(reason) = changed {
                self.restart(&mut rec, &m, reason).await?;
            }
        }
        let mut restarts = 0;
        while rec.stored_etag.is_none() {
            let resume = match (&rec.upload_id, &rec.object_key, rec.plan) {
                (Some(u), Some(k), PartPlan::Multipart { part_size, .. }) => Some(ResumePoint {
                    upload_id: u.clone(),
                    object_key: k.clone(),
                    part_size,
                }),
                _ => None,
            };
            let journal = RowJournal {
                store: &self.store,
                id,
            };
            let hasher = self
                .session
                .start_hasher(&m.path, rec.plan, rec.sha256.is_none());
            let result = self
                .session
                .upload(UploadJob {
                    transfer_id: &id.to_string(),
                    manuscript: &m,
                    plan: rec.plan,
                    hasher: &hasher,
                    resume,
                    journal: &journal,
                    meter: &meter,
                    options: &rec.options,
                    cancel: stop,
                })
                .await;
            match result {
                Ok(UploadResult::Stored {
                    object_key, etag, ..
                }) => {
                    // The SHA-256 comes from the same read as the verified part MD5s.
                    match self.record_sha256(id, &rec, &hasher, stop).await {
                        Err(QueueError::Transfer(TransferError::FileChanged { .. }))
                            if restarts < 2 =>
                        {
                            restarts += 1;
                            m = inspect(&rec.path).await?;
                            self.restart(&mut rec, &m, "it changed while it was being sent")
                                .await?;
                            continue;
                        }
                        r => r?,
                    }
                    self.store.object_stored(id, &object_key, &etag)?;
                    rec.object_key = Some(object_key);
                    rec.stored_etag = Some(etag);
                }
                Ok(UploadResult::JobCreated { job, .. }) => {
                    // The job exists: a SHA-256 that cannot be had only costs the dedupe.
                    if let Err(e) = self.record_sha256(id, &rec, &hasher, stop).await {
                        tracing::warn!("queue: no SHA-256 recorded for item {id}: {e}");
                    }
                    self.store.completed(id, &job.id)?;
                    return Ok(job.id);
                }
                Err(TransferError::FileChanged { .. }) if restarts < 2 => {
                    restarts += 1;
                    m = inspect(&rec.path).await?;
                    self.restart(&mut rec, &m, "it changed while it was being sent")
                        .await?;
                }
                Err(TransferError::SentPartChanged { part, .. }) if restarts < 2 => {
                    restarts += 1;
                    m = inspect(&rec.path).await?;
                    let reason =
                        format!("part {part}, already on the server, no longer matches the file");
                    self.restart(&mut rec, &m, &reason).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        meter.set_state(TransferState::CreatingJob);
        let key = rec.object_key.clone().unwrap_or_default();
        let job = self
            .create_job(id, &meter, &key, &m, &rec.options, stop)
            .await?;
        self.store.completed(id, &job)?;
        meter.set_state(TransferState::Completed);
        Ok(job)
    }

    /// Waits for `hasher` to finish and records the SHA-256 it computed, if `rec` had none.
    async fn record_sha256(
        &self,
        id: i64,
        rec: &ItemRecord,
        hasher: &crate::transfer::PartHasher,
        stop: &CancellationToken,
    ) -> Result<(), QueueError> {
        if rec.sha256.is_some() {
            return Ok(());
        }
        let done = tokio::select! {
            r = hasher.finish() => r,
            _ = stop.cancelled() => {
                return Err(TransferError::Interrupted { path: rec.path.clone() }.into());
            }
        };
        match done {
            Ok(Some(sha)) => self.store.set_sha256(id, &sha),
            Ok(None) => Ok(()),
            Err(e) => Err(e.into_transfer(&rec.path).into()),
        }
    }

    /// Starts `rec` over: aborts the old upload (best effort), plans the file as it is
    /// now (its checksums are computed as it is sent again), and tells the user why.
    async fn restart(
        &self,
        rec: &mut ItemRecord,
        m: &Manuscript,
        reason: &str,
    ) -> Result<(), QueueError> {
        if let (Some(u), Some(k)) = (&rec.upload_id, &rec.object_key)
            && let Err(e) = self.session.api.abort(u, k).await
        {
            tracing::debug!("queue: could not abort the old upload: {e}");
        }
        let plan = PartPlan::for_size(m.size, self.session.settings.plan);
        self.store.restart(rec.id, m.size, m.mtime_ms, &plan)?;
        self.notice(
            rec.id,
            TransferNotice::RestartedFileChanged {
                reason: format!(
                    "{}: {reason}; uploading it again from the start",
                    m.path.display()
                ),
            },
        );
        *rec = self.store.record(rec.id)?;
        Ok(())
    }

    /// `POST /jobs`, retried only when the request surely created nothing (connect
    /// failures, 429, 502-504), so a retry never makes a second job. While it cannot
    /// connect at all the item waits offline, without counting failures.
    async fn create_job(
        &self,
        id: i64,
        meter: &ProgressMeter,
        key: &str,
        m: &Manuscript,
        options: &JobOptions,
        stop: &CancellationToken,
    ) -> Result<String, QueueError> {
        let policy = self.session.settings.retry;
        let mut failures = 0;
        let mut probes = 0;
        loop {
            let r = tokio::select! {
                r = self.session.api.create_job(key, &m.file_name, options) => r,
                _ = stop.cancelled() => return Err(TransferError::Interrupted { path: m.path.clone() }.into()),
            };
            let offline = r.as_ref().is_err_and(UploadApiError::is_offline);
            if probes > 0 && !offline {
                probes = 0;
                self.store.set_state(id, ItemState::Uploading, None)?;
                meter.set_state(TransferState::CreatingJob);
            }
            let safe = |e: &UploadApiError| match e {
                UploadApiError::Request(RequestError::Unreachable { before_sending, .. }) => {
                    *before_sending
                }
                UploadApiError::Request(RequestError::RateLimited { .. }) => true,
                UploadApiError::Request(RequestError::Server { status, .. }) => {
                    matches!(status, 502..=504)
                }
                _ => false,
            };
            match r {
                Ok(job) => return Ok(job.id),
                Err(e) if offline => {
                    let reason = format!("creating the narration job: {e}");
                    if probes == 0 {
                        self.store.set_state(
                            id,
                            ItemState::Offline,
                            Some((
                                ErrorCode::NetworkUnreachable.as_str(),
                                &format!("waiting for the network ({reason})"),
                            )),
                        )?;
                        meter.set_state(TransferState::Offline);
                    }
                    probes += 1;
                    let delay = policy.delay(probes, None);
                    self.notice(
                        id,
                        TransferNotice::WaitingForNetwork {
                            reason,
                            retry_in_ms: delay.as_millis() as u64,
                        },
                    );
                    if !pause(delay, stop).await {
                        return Err(TransferError::Interrupted {
                            path: m.path.clone(),
                        }
                        .into());
                    }
                }
                Err(e) if safe(&e) && failures + 1 < policy.max_attempts => {
                    failures += 1;
                    if !pause(policy.delay(failures, e.retry_after()), stop).await {
                        return Err(TransferError::Interrupted {
                            path: m.path.clone(),
                        }
                        .into());
                    }
                }
                Err(source) => {
                    return Err(TransferError::Api {
                        path: m.path.clone(),
                        what: "creating the narration job".into(),
                        source,
                    }
                    .into());
                }
            }
        }
    }

    fn stop_active(&self, id: i64, reason: StopReason) -> bool {
        let mut active = self.active();
        match active.get_mut(&id) {
            Some(a) => {
                a.reason = Some(reason);
                a.token.cancel();
                true
            }
            None => false,
        }
    }

    fn state_of(&self, id: i64) -> Result<ItemState, QueueError> {
        let item = self.store.item(&self.account, id)?;
        Ok(item.state)
    }

    /// Pauses one file (its upload stays on the server, to be resumed).
    /// An item another process uploads cannot be paused from here ([`QueueError::Busy`]).
    pub fn pause(&self, id: i64) -> Result<(), QueueError> {
        if self.stop_active(id, StopReason::Pause) {
            return Ok(());
        }
        match self.state_of(id)? {
            ItemState::Queued | ItemState::Uploading | ItemState::Offline | ItemState::Paused => {
                let _held = self.lock_item(id)?;
                self.store.set_state(id, ItemState::Paused, None)
            }
            s => Err(QueueError::InvalidState {
                id,
                state: s.as_str(),
                action: "pause",
            }),
        }
    }

    /// Resumes a paused file.
    pub fn resume(&self, id: i64) -> Result<(), QueueError> {
        match self.state_of(id)? {
            ItemState::Paused | ItemState::Queued => {
                self.store.set_state(id, ItemState::Queued, None)?;
                self.wake.notify_one();
                Ok(())
            }
            s => Err(QueueError::InvalidState {
                id,
                state: s.as_str(),
                action: "resume",
            }),
        }
    }

    /// Queues a failed or cancelled file again (a multipart upload resumes where it was).
    pub fn retry(&self, id: i64) -> Result<(), QueueError> {
        match self.state_of(id)? {
            ItemState::Failed | ItemState::Cancelled => {
                self.store.set_state(id, ItemState::Queued, None)?;
                self.wake.notify_one();
                Ok(())
            }
            s => Err(QueueError::InvalidState {
                id,
                state: s.as_str(),
                action: "retry",
            }),
        }
    }

    /// Queues failed item `id` again from `path`, where its file now is (renamed or moved
    /// with the same content, as the watcher found; the same path just retries). Its
    /// upload resumes: the parts already sent are checked against the file as usual.
    pub async fn relocate(&self, id: i64, path: &Path) -> Result<(), QueueError> {
        let item = self.store.item(&self.account, id)?;
        let m = inspect(path).await?;
        if item.state != ItemState::Failed || m.size != item.size {
            return Err(QueueError::InvalidState {
                id,
                state: item.state.as_str(),
                action: "move to another file",
            });
        }
        self.store.relocate(id, &m.path, &m.file_name, m.mtime_ms)?;
        self.retry(id)
    }

    /// Cancels a file: stops it and aborts its multipart upload on the server. An item
    /// another process uploads cannot be cancelled from here ([`QueueError::Busy`]).
    pub async fn cancel(&self, id: i64) -> Result<(), QueueError> {
        if self.stop_active(id, StopReason::Cancel) {
            return Ok(());
        }
        match self.state_of(id)? {
            ItemState::Completed => Err(QueueError::InvalidState {
                id,
                state: "completed",
                action: "cancel",
            }),
            _ => {
                let _held = self.lock_item(id)?;
                let path = self.store.record(id)?.path;
                self.finish_cancel(id, &path).await
            }
        }
    }

    /// The global pause: nothing starts, running files stop (and stay queued).
    pub fn pause_all(&self) -> Result<(), QueueError> {
        self.update_settings(|s| s.paused = true)?;
        let ids: Vec<i64> = self.active().keys().copied().collect();
        for id in ids {
            self.stop_active(id, StopReason::GlobalPause);
        }
        Ok(())
    }

    pub fn resume_all(&self) -> Result<(), QueueError> {
        self.update_settings(|s| s.paused = false)?;
        self.wake.notify_one();
        Ok(())
    }

    /// Changes and saves the queue's settings; the bandwidth limit applies at once, the
    /// concurrency to files and parts started from now on, the multipart threshold to
    /// files queued by runners opened from now on.
    pub fn update_settings(
        &self,
        f: impl FnOnce(&mut QueueSettings),
    ) -> Result<QueueSettings, QueueError> {
        let mut s = self.store.settings()?;
        f(&mut s);
        s.files_in_flight = s.files_in_flight.clamp(1, 16);
        s.parts_in_flight = s.parts_in_flight.clamp(1, 64);
        s.multipart_threshold = s
            .multipart_threshold
            .map(|t| t.clamp(1, crate::transfer::plan::MAX_SINGLE_PUT + 1));
        self.store.save_settings(&s)?;
        self.session.limiter.set_rate(s.bandwidth_limit);
        Ok(s)
    }

    /// The account's queued files.
    pub fn list(&self) -> Result<Vec<super::QueueItem>, QueueError> {
        self.store.list(&self.account)
    }
}

async fn inspect(path: &Path) -> Result<Manuscript, QueueError> {
    let p = path.to_path_buf();
    tokio::task::spawn_blocking(move || manuscript::inspect(&p))
        .await
        .map_err(|e| TransferError::Unreadable {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?
        .map_err(|e| QueueError::Transfer(e.into()))
}

/// The hex SHA-256 of the file at `path`, read once on a blocking thread (the dedupe
/// check of a file whose size matches a queued one).
async fn file_sha256(path: &Path) -> Result<String, QueueError> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let p = path.to_path_buf();
    let joined = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        let mut file = std::fs::File::open(&p)?;
        let mut sha = Sha256::new();
        let mut buf = vec![0u8; crate::transfer::hasher::READ_BUFFER];
        loop {
            match file.read(&mut buf) {
                Ok(0) => return Ok(hex::encode(sha.finalize())),
                Ok(n) => sha.update(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    let unreadable = |reason: String| {
        QueueError::Transfer(TransferError::Unreadable {
            path: path.to_path_buf(),
            reason,
        })
    };
    match joined {
        Ok(Ok(d)) => Ok(d),
        Ok(Err(e)) => Err(unreadable(e.to_string())),
        Err(e) => Err(unreadable(e.to_string())),
    }
}

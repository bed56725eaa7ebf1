//! [`DownloadSession`]: brings one finished audiobook file (the whole book or one track)
//! from the store to a destination inside the library, whole and verified.
//!
//! How: a presigned URL from the engine API; the object split into fixed-size chunks,
//! fetched by a few ranged GETs in parallel (one for small files) and written at their
//! offsets into `<dest>.part`, which is sized up front. Every request after the first
//! carries `If-Match` with the ETag seen first, so a changed object makes the download
//! start over (and say so) instead of splicing two versions. Progress (ETag, size, bytes
//! written per chunk) goes to a [`DownloadJournal`] every few MiB, so another process can
//! resume from the `.part`. Each request is retried on its own (backoff + jitter,
//! `Retry-After`); an expired URL is replaced by a fresh one from the API without counting
//! as a failure; when nothing can connect the download waits for the network. The MD5 is
//! computed while the download runs, following the written prefix of the `.part` (read
//! back from the page cache); at the end the size and, for a plain-MD5 ETag, the MD5 must
//! match, and only then is the `.part` put in place, never over an existing file.
//!
//! It owns the protocol of one download. It never picks names or folders (the library
//! does; it only refuses destinations outside the library root), never persists anything
//! itself (the journal does), never deletes anything but its own `.part`, and keeps
//! memory flat in the file's size (two buffers per connection, one for the checksum).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rohimaya_md5::Md5;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::destination::{self, Destination, Refused};
use super::disk_space::{self, DiskSpace, SpaceProbe};
use super::limiter::BandwidthLimiter;
use super::part_file::{self, PartFile};
use super::progress::ProgressMeter;
use super::range_get::{self, GetFailure, GetRequest, Opened, Sink};
use super::retry::{RetryPolicy, pause};
use crate::api::downloads::{DownloadApiError, DownloadsApi};
use crate::api::request::RequestError;
use crate::error::{CoreError, ErrorCode};
use crate::events::{Event, EventBus, TransferNotice, TransferState};

/// What to download.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DownloadSource {
    /// The whole book (`GET /jobs/{id}/download`).
    Book { job_id: String },
    /// One chapter track (`GET /jobs/{id}/tracks/{tid}/download`).
    Track { job_id: String, track_id: String },
}

impl DownloadSource {
    fn describe(&self) -> String {
        match self {
            DownloadSource::Book { job_id } => format!("the audiobook of job {job_id}"),
            DownloadSource::Track { job_id, track_id } => {
                format!("track {track_id} of job {job_id}")
            }
        }
    }
}

/// The download engine's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownloadSettings {
    /// Bytes per ranged GET. Files up to this size take one request.
    pub chunk_size: u64,
    /// Ranged GETs of one file in flight at once.
    pub connections: usize,
    /// Bytes received before they are written (two per connection).
    pub buffer_size: usize,
    /// Progress goes to the journal at least every this many bytes (so a crash re-fetches
    /// at most about this much plus the buffers in flight).
    pub checkpoint_every: u64,
    /// Flush the `.part` to the disk before putting it in place.
    pub sync_before_rename: bool,
    /// With `sync_before_rename`: flush the `.part` in the background each time this many
    /// more bytes are written, while the download goes on, so the flush before the rename
    /// has only the last stretch left to write (0: flush only at the end).
    pub flush_every: u64,
    pub retry: RetryPolicy,
}

impl Default for DownloadSettings {
    fn default() -> Self {
        Self {
            chunk_size: 16 << 20,
            connections: 4,
            buffer_size: 1 << 20,
            checkpoint_every: 4 << 20,
            sync_before_rename: true,
            flush_every: 64 << 20,
            retry: RetryPolicy::default(),
        }
    }
}

/// Where a download stands, as the journal keeps it: enough to resume from the `.part` in
/// another process. `chunks[i]` is how many bytes from the start of chunk `i` are
/// written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadCheckpoint {
    /// The object's ETag as first seen (unquoted); every later request must match it.
    pub etag: String,
    pub size: u64,
    pub chunk_size: u64,
    pub chunks: Vec<u64>,
}

impl DownloadCheckpoint {
    /// Bytes already written.
    pub fn bytes_done(&self) -> u64 {
        self.chunks.iter().sum()
    }

    fn chunk_count(size: u64, chunk_size: u64) -> usize {
        if size == 0 {
            0
        } else {
            size.div_ceil(chunk_size.max(1)) as usize
        }
    }

    /// `[start, end)` of chunk `i`.
    fn chunk_range(&self, i: usize) -> (u64, u64) {
        let start = i as u64 * self.chunk_size;
        (start, (start + self.chunk_size).min(self.size))
    }

    /// Whether it describes a download this engine can continue.
    fn is_consistent(&self) -> bool {
        self.chunk_size >= 64 * 1024
            && !self.etag.is_empty()
            && self.chunks.len() == Self::chunk_count(self.size, self.chunk_size)
            && self
                .chunks
                .iter()
                .enumerate()
                .all(|(i, done)| *done <= self.chunk_range(i).1 - self.chunk_range(i).0)
    }

    /// Bytes from 0 that are all written.
    fn prefix(&self) -> u64 {
        for (i, done) in self.chunks.iter().enumerate() {
            let (start, end) = self.chunk_range(i);
            if start + done < end {
                return start + done;
            }
        }
        self.size
    }
}

/// Told about every step worth remembering, so a crash loses little. Implementations
/// must not block for long (a local database write).
pub trait DownloadJournal: Send + Sync {
    /// Save this; hand it back as [`DownloadJob::resume`] to continue from the `.part`
    /// (here or in another process). Called once the object's ETag and size are first
    /// known (before any byte is written), then as bytes are written (every
    /// [`DownloadSettings::checkpoint_every`] bytes and when a chunk completes), and when
    /// the download is interrupted.
    fn checkpoint(&self, checkpoint: &DownloadCheckpoint);
    /// The saved progress is void (the object changed, the `.part` was unusable or was
    /// deleted after an integrity failure): forget it.
    fn restarted(&self);
    /// `Some(reason)`: the download now waits for the network; `None`: it connects again.
    fn waiting_for_network(&self, _reason: Option<&str>) {}
}

/// A journal that remembers nothing (one-shot downloads).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoDownloadJournal;

impl DownloadJournal for NoDownloadJournal {
    fn checkpoint(&self, _: &DownloadCheckpoint) {}
    fn restarted(&self) {}
}

/// A journal kept in memory (tests, and callers that persist it themselves).
#[derive(Debug, Default)]
pub struct MemoryDownloadJournal {
    last: Mutex<Option<DownloadCheckpoint>>,
    restarts: AtomicU32,
}

impl MemoryDownloadJournal {
    pub fn last(&self) -> Option<DownloadCheckpoint> {
        lock(&self.last).clone()
    }
    /// How many times `restarted` was called.
    pub fn restarts(&self) -> u32 {
        self.restarts.load(Ordering::Relaxed)
    }
}

impl DownloadJournal for MemoryDownloadJournal {
    fn checkpoint(&self, checkpoint: &DownloadCheckpoint) {
        *lock(&self.last) = Some(checkpoint.clone());
    }
    fn restarted(&self) {
        *lock(&self.last) = None;
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counters of one download, for reports and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DownloadStats {
    /// Requests retried after a temporary failure.
    pub retries: u32,
    /// Fresh URLs asked of the API (the first one included).
    pub urls_fetched: u32,
    /// Answers that said the URL had expired.
    pub expired_answers: u32,
    /// Fresh starts from byte 0 (object changed, `.part` unusable, range ignored).
    pub restarts: u32,
    /// Requests that could not connect and were tried again after a wait.
    pub offline_probes: u32,
    /// Bytes found in the `.part` and not fetched again.
    pub resumed_bytes: u64,
    /// Body bytes received from the store (all attempts).
    pub bytes_received: u64,
    /// GETs sent to the store.
    pub requests: u32,
    /// Background flushes of the `.part` while it was being written.
    pub early_flushes: u32,
}

/// A finished download.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Downloaded {
    /// Where the file is now (canonical folder + name).
    pub path: PathBuf,
    pub size: u64,
    /// The object's ETag (unquoted).
    pub etag: String,
    /// The file's MD5 (hex) when it was computed (plain-MD5 ETags), `None` otherwise.
    pub md5: Option<String>,
    pub stats: DownloadStats,
}

/// Why a download did not finish.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DownloadError {
    #[error("{path}: {reason}. Downloads only go into the library folder")]
    OutsideLibrary { path: PathBuf, reason: String },
    #[error(
        "not enough free space in {dir}: this download needs {} (with a safety margin) but only {} are free. \
         Free some space or choose another library folder",
        disk_space::human(*needed), disk_space::human(*available)
    )]
    NotEnoughSpace {
        dir: PathBuf,
        needed: u64,
        available: u64,
    },
    #[error(
        "{what}: the server no longer has it ({detail}). A copy on this computer, if there is one, is now the only one"
    )]
    Gone { what: String, detail: String },
    #[error(
        "{path}: the server said the file has {expected} bytes but the store holds {got}; nothing was kept. \
         Try again later; if it repeats, the server's record of this file is wrong"
    )]
    SizeMismatch {
        path: PathBuf,
        expected: u64,
        got: u64,
    },
    #[error(
        "{path}: the downloaded bytes do not match the server's checksum (expected {expected}, got {got}); \
         the partial file was deleted. Try again; if it repeats, something between this computer and the server alters downloads"
    )]
    Integrity {
        path: PathBuf,
        expected: String,
        got: String,
    },
    #[error(
        "{path} already exists and is a different file; it was not replaced. Choose another name"
    )]
    DestinationExists { path: PathBuf },
    #[error(
        "{path}: cannot write the download ({reason}). Check the folder's permissions and free space"
    )]
    Disk { path: PathBuf, reason: String },
    #[error(
        "{path}: the file kept changing on the server while it was downloaded ({restarts} fresh starts). Try again later"
    )]
    KeepsChanging { path: PathBuf, restarts: u32 },
    #[error("{what} failed: {reason}")]
    Failed { what: String, reason: String },
    #[error("{what}: {source}")]
    Api {
        what: String,
        source: DownloadApiError,
    },
    #[error(
        "{path}: the download was interrupted (paused, cancelled or shut down); it can continue from where it stopped"
    )]
    Interrupted { path: PathBuf },
}

impl CoreError for DownloadError {
    fn code(&self) -> ErrorCode {
        match self {
            DownloadError::OutsideLibrary { .. } => ErrorCode::DestinationOutsideLibrary,
            DownloadError::NotEnoughSpace { .. } => ErrorCode::NotEnoughSpace,
            DownloadError::Gone { .. } => ErrorCode::ServerCopyGone,
            DownloadError::SizeMismatch { .. } | DownloadError::Integrity { .. } => {
                ErrorCode::IntegrityMismatch
            }
            DownloadError::DestinationExists { .. } => ErrorCode::DestinationExists,
            DownloadError::Disk { .. } => ErrorCode::DiskWriteFailed,
            DownloadError::KeepsChanging { .. } => ErrorCode::FileChanged,
            DownloadError::Failed { .. } => ErrorCode::TransferFailed,
            DownloadError::Api { source, .. } => source.code(),
            DownloadError::Interrupted { .. } => ErrorCode::TransferInterrupted,
        }
    }
}

/// The shared machinery downloads run on. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DownloadSession {
    pub api: DownloadsApi,
    /// The client for presigned GETs (no overall timeout: stalls are watched instead).
    pub store_http: reqwest::Client,
    pub limiter: BandwidthLimiter,
    pub bus: EventBus,
    pub settings: DownloadSettings,
    pub space: Arc<dyn SpaceProbe>,
}

/// One download request.
pub struct DownloadJob<'a> {
    pub transfer_id: &'a str,
    pub source: DownloadSource,
    /// Where the file goes: a path inside `library_root` (absolute, or relative to it),
    /// its name already chosen (sanitized, free) by the caller.
    pub dest: &'a Path,
    pub library_root: &'a Path,
    /// The size the API announced (`file_size_bytes`), if any: the store must agree.
    pub expected_size: Option<u64>,
    /// Saved progress of an earlier attempt (from the journal).
    pub resume: Option<DownloadCheckpoint>,
    pub journal: &'a dyn DownloadJournal,
    pub meter: &'a ProgressMeter,
    pub cancel: &'a CancellationToken,
}

/// Fresh starts allowed before the download gives up on an object that keeps changing.
const MAX_RESTARTS: u32 = 3;
/// Fresh URLs in a row allowed without a byte received (a clock far off).
const MAX_URLS_WITHOUT_PROGRESS: u32 = 50;

impl DownloadSession {
    pub fn new(api: DownloadsApi, bus: EventBus, settings: DownloadSettings) -> Self {
        Self {
            api,
            store_http: Self::default_store_http(),
            limiter: BandwidthLimiter::default(),
            bus,
            settings,
            space: Arc::new(DiskSpace),
        }
    }

    /// A client for the store: connect timeout only; keep-alive pool.
    pub fn default_store_http() -> reqwest::Client {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(16)
            .user_agent(concat!("rohimaya-desktop/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default()
    }

    /// Downloads `job`'s file into place and verifies it. The caller sets the meter's
    /// final state (completed, failed...) after recording the result.
    pub async fn download(&self, job: DownloadJob<'_>) -> Result<Downloaded, DownloadError> {
        let dest = destination::resolve(job.library_root, job.dest).map_err(|r| match r {
            Refused::Outside(reason) => DownloadError::OutsideLibrary {
                path: job.dest.to_path_buf(),
                reason,
            },
            Refused::Io(e) => DownloadError::Disk {
                path: job.dest.to_path_buf(),
                reason: e.to_string(),
            },
        })?;
        // Taken already: refused before any traffic (checked again at the end). With
        // saved progress, a crash may have come between putting the file in place and
        // forgetting the `.part`: the end of the download sorts that out.
        if job.resume.is_none() && std::fs::symlink_metadata(&dest.path).is_ok() {
            return Err(DownloadError::DestinationExists { path: dest.path });
        }
        let run = Run {
            session: self,
            job: &job,
            dest,
            stats: Mutex::new(DownloadStats::default()),
            link: tokio::sync::Mutex::new(None),
            link_generation: AtomicU64::new(0),
            urls_without_progress: AtomicU32::new(0),
            offline: AtomicU32::new(0),
        };
        job.meter.set_state(TransferState::Downloading);
        let mut resume = job.resume.clone();
        let mut ranges = true;
        loop {
            match run.attempt(resume.take(), ranges).await {
                Ok(done) => return Ok(done),
                Err(Stop::Restart {
                    reason,
                    ranges: still,
                }) => {
                    let restarts = {
                        let mut s = lock(&run.stats);
                        s.restarts += 1;
                        s.restarts
                    };
                    job.journal.restarted();
                    let _ = part_file::remove(&run.dest.part).await;
                    job.meter.set_done(0);
                    if restarts > MAX_RESTARTS {
                        return Err(DownloadError::KeepsChanging {
                            path: run.dest.path.clone(),
                            restarts: MAX_RESTARTS,
                        });
                    }
                    tracing::info!("{}: starting over: {reason}", run.dest.path.display());
                    run.notice(TransferNotice::DownloadRestarted { reason });
                    ranges = still;
                }
                Err(Stop::Fail(e)) => {
                    if discards_part(&e) {
                        job.journal.restarted();
                        let _ = part_file::remove(&run.dest.part).await;
                    }
                    return Err(e);
                }
            }
        }
    }
}

/// Whether the `.part` is worthless after `e` (kept otherwise, to resume).
fn discards_part(e: &DownloadError) -> bool {
    matches!(
        e,
        DownloadError::Gone { .. }
            | DownloadError::SizeMismatch { .. }
            | DownloadError::Integrity { .. }
            | DownloadError::KeepsChanging { .. }
    )
}

/// How an attempt ended without a file.
enum Stop {
    /// Start over from byte 0 (`ranges: false` = the store ignores `Range`).
    Restart {
        reason: String,
        ranges: bool,
    },
    Fail(DownloadError),
}

impl From<DownloadError> for Stop {
    fn from(e: DownloadError) -> Self {
        Stop::Fail(e)
    }
}

/// A URL from the API and when it was had.
struct Link {
    url: String,
    at: Instant,
    expires_in: u64,
    generation: u64,
}

struct Run<'a> {
    session: &'a DownloadSession,
    job: &'a DownloadJob<'a>,
    dest: Destination,
    stats: Mutex<DownloadStats>,
    link: tokio::sync::Mutex<Option<Link>>,
    link_generation: AtomicU64,
    urls_without_progress: AtomicU32,
    /// Requests now waiting for the network.
    offline: AtomicU32,
}

/// The state the connections of one attempt share.
struct Shared {
    plan: Mutex<DownloadCheckpoint>,
    part: PartFile,
    /// Chunks not yet taken by a connection.
    pending: Mutex<VecDeque<usize>>,
    /// Bytes written since the last checkpoint.
    unsaved: AtomicU64,
    /// Serialises checkpoints so the journal never gets an older one after a newer one.
    saving: Mutex<()>,
    /// Stops the other connections when one fails.
    stop: CancellationToken,
    /// Woken when the written prefix may have grown (the checksum follows it).
    progressed: Notify,
    /// Woken when bytes were written (the background flush follows them).
    wrote: Notify,
    /// Whether the store honours `Range` (else one GET of everything, from 0).
    ranges: bool,
}

/// Held while one request waits for the network.
struct OfflineWait<'r, 'a> {
    run: &'r Run<'a>,
}

impl Drop for OfflineWait<'_, '_> {
    fn drop(&mut self) {
        if self.run.offline.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.run.job.journal.waiting_for_network(None);
            self.run.job.meter.set_state(TransferState::Downloading);
        }
    }
}

impl<'a> Run<'a> {
    fn notice(&self, notice: TransferNotice) {
        self.session.bus.publish(Event::TransferNotice {
            transfer_id: self.job.transfer_id.to_string(),
            notice,
        });
    }

    fn stat(&self, f: impl FnOnce(&mut DownloadStats)) {
        f(&mut lock(&self.stats));
    }

    fn interrupted(&self) -> DownloadError {
        DownloadError::Interrupted {
            path: self.dest.path.clone(),
        }
    }

    fn what(&self) -> String {
        self.job.source.describe()
    }

    fn disk(&self, e: impl std::fmt::Display) -> DownloadError {
        DownloadError::Disk {
            path: self.dest.part.clone(),
            reason: e.to_string(),
        }
    }

    /// A URL to use: the cached one while valid, unless it is the one (by generation)
    /// that was just refused; else a fresh one from the API (retried as API calls are).
    async fn url(&self, refused: Option<u64>) -> Result<(String, u64), DownloadError> {
        let mut link = self.link.lock().await;
        if let Some(l) = link.as_ref()
            && refused != Some(l.generation)
            && still_valid(l.at, l.expires_in)
        {
            return Ok((l.url.clone(), l.generation));
        }
        if self.urls_without_progress.fetch_add(1, Ordering::SeqCst) >= MAX_URLS_WITHOUT_PROGRESS {
            return Err(DownloadError::Failed {
                what: self.what(),
                reason:
                    "every fresh download link was refused as expired; check the computer's clock"
                        .into(),
            });
        }
        let (url, expires_in) = self.fetch_url().await?;
        self.stat(|s| s.urls_fetched += 1);
        let generation = self.link_generation.fetch_add(1, Ordering::SeqCst) + 1;
        *link = Some(Link {
            url: url.clone(),
            at: Instant::now(),
            expires_in,
            generation,
        });
        Ok((url, generation))
    }

    async fn fetch_url(&self) -> Result<(String, u64), DownloadError> {
        let api = &self.session.api;
        let policy = self.session.settings.retry;
        let what = "asking the server for a download link";
        let mut failures = 0;
        let mut probes = 0;
        let mut offline = None;
        loop {
            let call = async {
                match &self.job.source {
                    DownloadSource::Book { job_id } => api
                        .book_download(job_id)
                        .await
                        .map(|l| (l.url, l.expires_in)),
                    DownloadSource::Track { job_id, track_id } => api
                        .track_download(job_id, track_id)
                        .await
                        .map(|l| (l.download_url, l.expires_in)),
                }
            };
            let result = tokio::select! {
                r = call => r,
                _ = self.job.cancel.cancelled() => return Err(self.interrupted()),
            };
            match result {
                Ok((url, _)) if !is_http_url(&url) => {
                    // Never retried, never logged whole (it may carry a signature).
                    let scheme = url.split(':').next().unwrap_or_default();
                    return Err(DownloadError::Api {
                        what: format!("{}: {what}", self.what()),
                        source: DownloadApiError::Request(RequestError::Unexpected {
                            detail: format!(
                                "a download link that is not an http(s) URL (`{}:`); nothing was fetched",
                                scheme.chars().take(16).collect::<String>()
                            ),
                        }),
                    });
                }
                Ok(v) => return Ok(v),
                Err(e) if e.is_offline() => {
                    if !self
                        .wait_for_network(
                            what,
                            &e.to_string(),
                            &mut offline,
                            &mut probes,
                            self.job.cancel,
                        )
                        .await
                    {
                        return Err(self.interrupted());
                    }
                }
                Err(e) if e.is_temporary() && failures + 1 < policy.max_attempts => {
                    offline = None;
                    failures += 1;
                    self.stat(|s| s.retries += 1);
                    if !pause(policy.delay(failures, e.retry_after()), self.job.cancel).await {
                        return Err(self.interrupted());
                    }
                }
                Err(DownloadApiError::Gone { detail }) => {
                    return Err(DownloadError::Gone {
                        what: self.what(),
                        detail,
                    });
                }
                Err(source) => {
                    return Err(DownloadError::Api {
                        what: format!("{}: {what}", self.what()),
                        source,
                    });
                }
            }
        }
    }

    /// `what` could not connect: marks the download offline (once per request, through
    /// `wait`), says so, and sleeps before the next probe with capped backoff. `false`
    /// when cancelled meanwhile.
    async fn wait_for_network<'r>(
        &'r self,
        what: &str,
        reason: &str,
        wait: &mut Option<OfflineWait<'r, 'a>>,
        probes: &mut u32,
        cancel: &CancellationToken,
    ) -> bool {
        if wait.is_none() {
            if self.offline.fetch_add(1, Ordering::SeqCst) == 0 {
                self.job
                    .journal
                    .waiting_for_network(Some(&format!("{what}: {reason}")));
                self.job.meter.set_state(TransferState::Offline);
            }
            *wait = Some(OfflineWait { run: self });
        }
        *probes += 1;
        self.stat(|s| s.offline_probes += 1);
        let delay = self.session.settings.retry.delay(*probes, None);
        tracing::debug!("{what}: {reason}; offline, probing again in {delay:?}");
        self.notice(TransferNotice::WaitingForNetwork {
            reason: format!("{what}: {reason}"),
            retry_in_ms: delay.as_millis() as u64,
        });
        pause(delay, cancel).await
    }

    /// The plan to continue from, if the saved progress and the `.part` agree.
    async fn usable_resume(
        &self,
        resume: Option<DownloadCheckpoint>,
    ) -> Result<Option<(DownloadCheckpoint, PartFile)>, Stop> {
        let Some(plan) = resume else { return Ok(None) };
        if !plan.is_consistent() {
            return Err(Stop::Restart {
                reason: "the saved progress of this download is unusable".into(),
                ranges: true,
            });
        }
        if self.job.expected_size.is_some_and(|s| s != plan.size) {
            return Err(Stop::Restart {
                reason: "the server now announces another size for this file".into(),
                ranges: true,
            });
        }
        match PartFile::reopen(&self.dest.part, plan.size).await {
            Ok(Some(part)) => Ok(Some((plan, part))),
            Ok(None) => Err(Stop::Restart {
                reason: "the partial file is missing or has another size".into(),
                ranges: true,
            }),
            Err(e) => Err(Stop::Fail(self.disk(e))),
        }
    }

    fn check_space(&self, bytes: u64) -> Result<(), DownloadError> {
        disk_space::check(self.session.space.as_ref(), &self.dest.dir, bytes).map_err(
            |(needed, available)| DownloadError::NotEnoughSpace {
                dir: self.dest.dir.clone(),
                needed,
                available,
            },
        )
    }

    async fn attempt(
        &self,
        resume: Option<DownloadCheckpoint>,
        ranges: bool,
    ) -> Result<Downloaded, Stop> {
        let settings = self.session.settings;
        let (plan, part, first) = match self.usable_resume(resume).await? {
            Some((plan, part)) => {
                let done = plan.bytes_done();
                self.check_space(plan.size - done)?;
                self.stat(|s| s.resumed_bytes = done);
                self.notice(TransferNotice::DownloadResumed {
                    bytes_done: done,
                    bytes_total: plan.size,
                });
                (plan, part, None)
            }
            None => {
                let first_range = ranges.then_some((0, Some(settings.chunk_size.max(64 * 1024))));
                let opened = self.open_with_retries(first_range, None).await?;
                let size = opened.total;
                if let Some(expected) = self.job.expected_size
                    && expected != size
                {
                    return Err(Stop::Fail(DownloadError::SizeMismatch {
                        path: self.dest.path.clone(),
                        expected,
                        got: size,
                    }));
                }
                self.check_space(size)?;
                let chunk_size = if opened.partial {
                    settings.chunk_size.max(64 * 1024)
                } else {
                    size.max(64 * 1024)
                };
                let plan = DownloadCheckpoint {
                    etag: opened.etag.clone(),
                    size,
                    chunk_size,
                    chunks: vec![0; DownloadCheckpoint::chunk_count(size, chunk_size)],
                };
                let part = PartFile::create(&self.dest.part, size)
                    .await
                    .map_err(|e| self.disk(e))?;
                if !plan.etag.is_empty() && opened.partial {
                    self.job.journal.checkpoint(&plan);
                }
                (plan, part, Some(opened))
            }
        };
        let ranges = ranges && first.as_ref().is_none_or(|o| o.partial);
        self.job.meter.set_total(plan.size);
        self.job.meter.set_done(plan.bytes_done());
        let size = plan.size;
        let etag = plan.etag.clone();
        // An empty object has no chunk: its first answer has nothing to give. Otherwise
        // the first answer carries chunk 0, to the first connection.
        let first = first.filter(|_| !plan.chunks.is_empty());
        let pending: VecDeque<usize> = (0..plan.chunks.len())
            .filter(|i| first.is_none() || *i != 0)
            .filter(|i| {
                let (s, e) = plan.chunk_range(*i);
                s + plan.chunks[*i] < e
            })
            .collect();
        let shared = Shared {
            plan: Mutex::new(plan),
            part,
            pending: Mutex::new(pending),
            unsaved: AtomicU64::new(0),
            saving: Mutex::new(()),
            stop: self.job.cancel.child_token(),
            progressed: Notify::new(),
            wrote: Notify::new(),
            ranges,
        };
        let connections = if ranges {
            settings.connections.clamp(1, 16)
        } else {
            1
        };
        let mut first = first;
        let workers = (0..connections)
            .map(|n| self.connection(&shared, if n == 0 { first.take() } else { None }));
        let hash = range_get::is_plain_md5(&etag);
        let work = async {
            tokio::join!(futures::future::join_all(workers), async {
                if hash {
                    self.follow_checksum(&shared).await
                } else {
                    Ok(None)
                }
            })
        };
        let flush_every = settings.flush_every;
        let (results, md5) = if settings.sync_before_rename && flush_every > 0 {
            tokio::pin!(work);
            // The flush follows the writes until everything is written (or is dropped
            // when the work ends first); a failed flush stops the download: its error
            // must not be lost to the final flush (the kernel reports it once).
            tokio::select! {
                biased;
                done = &mut work => done,
                flushed = self.flush_behind(&shared, flush_every) => {
                    if let Err(e) = flushed {
                        shared.stop.cancel();
                        let _ = work.await;
                        return Err(Stop::Fail(e));
                    }
                    work.await
                }
            }
        } else {
            work.await
        };
        // The first real error wins over the "interrupted" of the connections it stopped.
        let mut first_err: Option<Stop> = None;
        for r in results {
            if let Err(e) = r {
                let interrupted = matches!(e, Stop::Fail(DownloadError::Interrupted { .. }));
                let have_interrupted = matches!(
                    first_err,
                    Some(Stop::Fail(DownloadError::Interrupted { .. }))
                );
                if first_err.is_none() || (have_interrupted && !interrupted) {
                    first_err = Some(e);
                }
            }
        }
        if let Some(e) = first_err {
            if ranges && !matches!(e, Stop::Restart { .. }) {
                self.save(&shared, true);
            }
            return Err(e);
        }
        let md5 = md5.map_err(Stop::Fail)?;
        self.save(&shared, true);
        self.finish(&shared, size, etag, md5).await
    }

    /// Verifies the `.part` and puts it in place.
    async fn finish(
        &self,
        shared: &Shared,
        size: u64,
        etag: String,
        md5: Option<String>,
    ) -> Result<Downloaded, Stop> {
        self.job.meter.set_state(TransferState::Verifying);
        let on_disk = shared.part.len().await.map_err(|e| self.disk(e))?;
        let written = lock(&shared.plan).bytes_done();
        if on_disk != size || written != size {
            return Err(Stop::Fail(DownloadError::SizeMismatch {
                path: self.dest.path.clone(),
                expected: size,
                got: written.min(on_disk),
            }));
        }
        if let Some(got) = &md5
            && *got != etag
        {
            return Err(Stop::Fail(DownloadError::Integrity {
                path: self.dest.path.clone(),
                expected: format!("MD5 {etag}"),
                got: format!("MD5 {got}"),
            }));
        }
        if self.session.settings.sync_before_rename {
            shared.part.sync().await.map_err(|e| self.disk(e))?;
        }
        match part_file::put_in_place(&self.dest.part, &self.dest.path).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // Already there and the same (a crash between link and cleanup)?
                let same = match &md5 {
                    Some(m) => {
                        file_md5(&self.dest.path).await.ok().as_ref() == Some(m)
                            && std::fs::metadata(&self.dest.path).is_ok_and(|m| m.len() == size)
                    }
                    None => false,
                };
                if !same {
                    return Err(Stop::Fail(DownloadError::DestinationExists {
                        path: self.dest.path.clone(),
                    }));
                }
                let _ = part_file::remove(&self.dest.part).await;
            }
            Err(e) => return Err(Stop::Fail(self.disk(e))),
        }
        Ok(Downloaded {
            path: self.dest.path.clone(),
            size,
            etag,
            md5,
            stats: lock(&self.stats).clone(),
        })
    }

    /// Sends a GET (with fresh URLs, backoff and network waits as needed) until the store
    /// answers with a body: the first request of a download, before its plan is known.
    async fn open_with_retries(
        &self,
        range: Option<(u64, Option<u64>)>,
        if_match: Option<&str>,
    ) -> Result<Opened, Stop> {
        let policy = self.session.settings.retry;
        let mut refused = None;
        let mut failures = 0;
        let (mut offline, mut probes) = (None, 0);
        loop {
            let (url, generation) = self.url(refused.take()).await?;
            self.stat(|s| s.requests += 1);
            let got = range_get::open(&GetRequest {
                http: &self.session.store_http,
                url: &url,
                range,
                if_match,
                stall_timeout: policy.stall_timeout,
                cancel: self.job.cancel,
            })
            .await;
            if !matches!(got, Err(GetFailure::Offline(_))) {
                offline = None;
                probes = 0;
            }
            match got {
                Ok(o) => return Ok(o),
                Err(GetFailure::Expired) => {
                    self.stat(|s| s.expired_answers += 1);
                    refused = Some(generation);
                }
                Err(GetFailure::Offline(reason)) => {
                    if !self
                        .wait_for_network(
                            "downloading",
                            &reason,
                            &mut offline,
                            &mut probes,
                            self.job.cancel,
                        )
                        .await
                    {
                        return Err(Stop::Fail(self.interrupted()));
                    }
                }
                Err(GetFailure::Temporary {
                    reason,
                    retry_after,
                }) => {
                    failures += 1;
                    if failures >= policy.max_attempts {
                        return Err(Stop::Fail(DownloadError::Failed {
                            what: format!("downloading {}", self.what()),
                            reason: format!("{reason} (after {failures} attempts)"),
                        }));
                    }
                    self.stat(|s| s.retries += 1);
                    if !pause(policy.delay(failures, retry_after), self.job.cancel).await {
                        return Err(Stop::Fail(self.interrupted()));
                    }
                }
                Err(other) => return Err(self.stop_for(other)),
            }
        }
    }

    /// The end of an attempt for a failure that retrying the request will not fix.
    fn stop_for(&self, failure: GetFailure) -> Stop {
        match failure {
            GetFailure::Changed(reason) => Stop::Restart {
                reason,
                ranges: true,
            },
            GetFailure::RangeIgnored => Stop::Restart {
                reason: "the store ignored the byte range asked for".into(),
                ranges: false,
            },
            GetFailure::Gone(detail) => Stop::Fail(DownloadError::Gone {
                what: self.what(),
                detail,
            }),
            GetFailure::Refused {
                status,
                code,
                message,
            } => Stop::Fail(DownloadError::Failed {
                what: format!("downloading {}", self.what()),
                reason: format!("the store refused it ({status} {code}: {message})"),
            }),
            GetFailure::Cancelled => Stop::Fail(self.interrupted()),
            GetFailure::Disk(reason) => Stop::Fail(self.disk(reason)),
            GetFailure::Expired | GetFailure::Offline(_) | GetFailure::Temporary { .. } => {
                Stop::Fail(DownloadError::Failed {
                    what: format!("downloading {}", self.what()),
                    reason: "gave up".into(),
                })
            }
        }
    }

    /// One connection: takes chunks until none is left. Its first chunk may come with an
    /// answer already open (the first request of the download).
    async fn connection(&self, shared: &Shared, mut first: Option<Opened>) -> Result<(), Stop> {
        loop {
            if shared.stop.is_cancelled() {
                return Err(Stop::Fail(self.interrupted()));
            }
            let next = if first.is_some() {
                Some(0)
            } else {
                lock(&shared.pending).pop_front()
            };
            let Some(i) = next else { return Ok(()) };
            if let Err(e) = self.fetch_chunk(shared, i, first.take()).await {
                shared.stop.cancel();
                return Err(e);
            }
        }
    }

    /// Fetches what is missing of chunk `i`, request after request, until it is written.
    async fn fetch_chunk(
        &self,
        shared: &Shared,
        i: usize,
        mut first: Option<Opened>,
    ) -> Result<(), Stop> {
        let policy = self.session.settings.retry;
        let mut failures = 0u32;
        let mut refused = None;
        let (mut offline, mut probes) = (None, 0);
        loop {
            let (start, end, etag) = {
                let mut plan = lock(&shared.plan);
                if !shared.ranges && plan.chunks[i] > 0 {
                    // Without ranges a retry starts from 0: take the bytes back.
                    self.job.meter.rewind(plan.chunks[i]);
                    plan.chunks[i] = 0;
                }
                let (s, e) = plan.chunk_range(i);
                (s + plan.chunks[i], e, plan.etag.clone())
            };
            if start >= end {
                return Ok(());
            }
            let before = lock(&shared.plan).chunks[i];
            let got = match first.take() {
                Some(opened) => self.receive(shared, i, opened).await,
                None => {
                    let (url, generation) = self.url(refused.take()).await?;
                    self.stat(|s| s.requests += 1);
                    let opened = range_get::open(&GetRequest {
                        http: &self.session.store_http,
                        url: &url,
                        range: shared.ranges.then_some((start, Some(end))),
                        if_match: (!etag.is_empty()).then_some(etag.as_str()),
                        stall_timeout: policy.stall_timeout,
                        cancel: &shared.stop,
                    })
                    .await;
                    match opened {
                        Ok(o) => match self.check_answer(&o, shared, start, end) {
                            Ok(()) => self.receive(shared, i, o).await,
                            Err(f) => Err(f),
                        },
                        Err(GetFailure::Expired) => {
                            self.stat(|s| s.expired_answers += 1);
                            refused = Some(generation);
                            continue;
                        }
                        Err(f) => Err(f),
                    }
                }
            };
            if !matches!(got, Err(GetFailure::Offline(_))) {
                offline = None;
                probes = 0;
            }
            let progressed = lock(&shared.plan).chunks[i] > before;
            if progressed {
                self.urls_without_progress.store(0, Ordering::SeqCst);
                failures = 0;
            }
            match got {
                Ok(()) => {}
                Err(GetFailure::Offline(reason)) => {
                    if !self
                        .wait_for_network(
                            "downloading",
                            &reason,
                            &mut offline,
                            &mut probes,
                            &shared.stop,
                        )
                        .await
                    {
                        return Err(Stop::Fail(self.interrupted()));
                    }
                }
                Err(GetFailure::Temporary {
                    reason,
                    retry_after,
                }) => {
                    failures += 1;
                    if failures >= policy.max_attempts {
                        return Err(Stop::Fail(DownloadError::Failed {
                            what: format!("downloading {}", self.what()),
                            reason: format!("{reason} (after {failures} attempts)"),
                        }));
                    }
                    self.stat(|s| s.retries += 1);
                    tracing::debug!("chunk {i}: {reason}; retry {failures}");
                    if !pause(policy.delay(failures, retry_after), &shared.stop).await {
                        return Err(Stop::Fail(self.interrupted()));
                    }
                }
                Err(other) => return Err(self.stop_for(other)),
            }
        }
    }

    /// Whether an answer is the asked-for piece of the same object.
    fn check_answer(
        &self,
        o: &Opened,
        shared: &Shared,
        start: u64,
        end: u64,
    ) -> Result<(), GetFailure> {
        let (size, etag) = {
            let plan = lock(&shared.plan);
            (plan.size, plan.etag.clone())
        };
        if o.total != size || (!etag.is_empty() && o.etag != etag) {
            return Err(GetFailure::Changed(
                "the file on the server changed since its first bytes were received".into(),
            ));
        }
        if shared.ranges && (!o.partial || o.start != start || o.end > end || o.end <= o.start) {
            return Err(if o.partial {
                GetFailure::Temporary {
                    reason: format!(
                        "the store sent bytes {}-{} instead of {start}-{end}",
                        o.start, o.end
                    ),
                    retry_after: None,
                }
            } else {
                GetFailure::RangeIgnored
            });
        }
        Ok(())
    }

    /// Streams an answer's body into chunk `i`.
    async fn receive(&self, shared: &Shared, i: usize, opened: Opened) -> Result<(), GetFailure> {
        let written = |_offset: u64, len: u64| {
            lock(&shared.plan).chunks[i] += len;
            self.job.meter.add(len);
            shared.progressed.notify_one();
            shared.wrote.notify_one();
            let unsaved = shared.unsaved.fetch_add(len, Ordering::SeqCst) + len;
            if shared.ranges && unsaved >= self.session.settings.checkpoint_every {
                self.save(shared, false);
            }
        };
        let received = |n: u64| self.stat(|s| s.bytes_received += n);
        let result = range_get::receive(
            opened,
            &Sink {
                part: &shared.part,
                limiter: &self.session.limiter,
                buffer_size: self.session.settings.buffer_size,
                stall_timeout: self.session.settings.retry.stall_timeout,
                cancel: &shared.stop,
                written: &written,
                received: &received,
            },
        )
        .await;
        if result.is_ok() && shared.ranges {
            // A finished chunk is always saved.
            self.save(shared, true);
        }
        result
    }

    /// Hands the progress to the journal (when due, or always with `force`).
    fn save(&self, shared: &Shared, force: bool) {
        let _order = lock(&shared.saving);
        if !force && shared.unsaved.load(Ordering::SeqCst) < self.session.settings.checkpoint_every
        {
            return;
        }
        shared.unsaved.store(0, Ordering::SeqCst);
        let snapshot = lock(&shared.plan).clone();
        if !snapshot.etag.is_empty() {
            self.job.journal.checkpoint(&snapshot);
        }
    }

    /// Flushes the `.part` to the disk each time `every` more bytes have been written,
    /// one flush at a time, while the connections go on writing; returns once every byte
    /// is written (the flush before the rename then has little left) or when stopped.
    async fn flush_behind(&self, shared: &Shared, every: u64) -> Result<(), DownloadError> {
        let size = lock(&shared.plan).size;
        let mut flushed = lock(&shared.plan).bytes_done();
        loop {
            let written = lock(&shared.plan).bytes_done();
            if written >= size {
                return Ok(());
            }
            if written >= flushed + every {
                shared.part.sync_data().await.map_err(|e| self.disk(e))?;
                self.stat(|s| s.early_flushes += 1);
                flushed = written;
                continue;
            }
            tokio::select! {
                _ = shared.wrote.notified() => {}
                _ = shared.stop.cancelled() => return Ok(()),
            }
        }
    }

    /// Computes the MD5 of the `.part` as its written prefix grows, reading it back in
    /// buffer-sized steps (from the page cache, while the download goes on). `None` when
    /// stopped before the end.
    async fn follow_checksum(&self, shared: &Shared) -> Result<Option<String>, DownloadError> {
        let step = self.session.settings.buffer_size.max(64 * 1024) as u64;
        let size = lock(&shared.plan).size;
        let mut hasher = Md5::new();
        let mut hashed = 0u64;
        let mut buf = Vec::with_capacity(step as usize);
        loop {
            let prefix = lock(&shared.plan).prefix();
            if hashed < prefix {
                let len = (prefix - hashed).min(step) as usize;
                buf.resize(len, 0);
                let (h, b) = read_and_hash(&shared.part, hasher, std::mem::take(&mut buf), hashed)
                    .await
                    .map_err(|e| self.disk(e))?;
                hasher = h;
                buf = b;
                hashed += len as u64;
                continue;
            }
            if hashed >= size {
                return Ok(Some(hex::encode(hasher.finalize())));
            }
            tokio::select! {
                _ = shared.progressed.notified() => {}
                _ = shared.stop.cancelled() => return Ok(None),
            }
        }
    }
}

/// Reads `buf.len()` bytes at `offset` and feeds them to `hasher`, off the async threads.
async fn read_and_hash(
    part: &PartFile,
    hasher: Md5,
    buf: Vec<u8>,
    offset: u64,
) -> std::io::Result<(Md5, Vec<u8>)> {
    let buf = part.read_at(buf, offset).await?;
    tokio::task::spawn_blocking(move || {
        let mut hasher = hasher;
        hasher.update(&buf);
        (hasher, buf)
    })
    .await
    .map_err(|e| std::io::Error::other(format!("a checksum task failed: {e}")))
}

/// The MD5 (hex) of a whole file.
async fn file_md5(path: &Path) -> std::io::Result<String> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut f = std::fs::File::open(path)?;
        let mut hasher = Md5::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(hex::encode(hasher.finalize()))
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))?
}

/// Whether a download link from the API is an absolute http(s) URL (anything else, such
/// as `file:`, is refused before any request).
fn is_http_url(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
}

/// Whether a URL had at `at` for `expires_in` seconds may still be sent: with a margin
/// of a quarter of its life (at most 30 s) for the trip to the store and clock skew.
fn still_valid(at: Instant, expires_in: u64) -> bool {
    let margin = (expires_in as f64 / 4.0).min(30.0);
    at.elapsed().as_secs_f64() + margin < expires_in as f64
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_describe_chunks_and_prefix() {
        let mut c = DownloadCheckpoint {
            etag: "e".into(),
            size: 250_000,
            chunk_size: 100_000,
            chunks: vec![100_000, 40_000, 0],
        };
        assert!(c.is_consistent());
        assert_eq!(c.chunk_range(2), (200_000, 250_000));
        assert_eq!(c.prefix(), 140_000);
        assert_eq!(c.bytes_done(), 140_000);
        c.chunks[2] = 50_000;
        assert_eq!(c.prefix(), 140_000);
        c.chunks[1] = 100_000;
        assert_eq!(c.prefix(), 250_000);
        c.chunks[2] = 50_001;
        assert!(!c.is_consistent());
        c.chunks.pop();
        assert!(!c.is_consistent());
        assert_eq!(DownloadCheckpoint::chunk_count(0, 10), 0);
        let json = serde_json::to_string(&c).unwrap_or_default();
        let back: DownloadCheckpoint =
            serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, c);
    }

    #[test]
    fn only_http_download_links_are_used() {
        assert!(is_http_url("https://store.example/b/k?X-Amz-Signature=x"));
        assert!(is_http_url("http://127.0.0.1:9000/b/k"));
        assert!(!is_http_url("file:///etc/passwd"));
        assert!(!is_http_url("/relative/path"));
        assert!(!is_http_url("ftp://host/x"));
        assert!(!is_http_url("data:audio/wav;base64,AAAA"));
    }
}

//! [`UploadSession`]: sends one accepted manuscript to the store and verifies it.
//!
//! Small files go in one presigned PUT; larger ones as a multipart upload whose part size
//! was fixed at creation, several parts in flight, part URLs signed in batches just before
//! use. Each request is retried on its own (backoff + jitter, `Retry-After`); an expired
//! URL is signed again without counting as a failure; `NoSuchUpload` starts a fresh upload
//! (and says so); a backend without presign routes gets the file via `POST /jobs/upload`.
//! The part MD5s come from a [`PartHasher`] that reads the file a few parts ahead of the
//! senders: a part is signed once its MD5 is known, so the first byte leaves without a
//! pass over the whole file. Every part's ETag and the object's ETag are compared with
//! those MD5s: a mismatch fails the upload, it is never reported as success. On resume the
//! parts the server already has are checked against the hasher's MD5s as it reaches them;
//! one that differs fails with [`TransferError::SentPartChanged`] (the caller starts over). A request that
//! cannot connect at all (the network is down) does not count against the retries: the
//! upload waits offline, probing with capped backoff, and goes on when it connects again.
//!
//! It owns the protocol of one upload. It never persists anything itself (it reports to
//! an [`UploadJournal`]), never creates the job after a presigned upload (the caller
//! does) and never aborts a server upload on interruption (only cancel does, in the queue).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::hasher::{HashError, HashOptions, PartHasher};
use super::limiter::BandwidthLimiter;
use super::manuscript::Manuscript;
use super::plan::{PartPlan, content_md5, expected_etag};
use super::progress::ProgressMeter;
use super::retry::pause;
use super::store_put::{PutFailure, PutRequest, put_range};
use super::{TransferError, TransferSettings};
use crate::api::uploads::{CreatedJob, JobOptions, SignedPart, UploadApiError, UploadsApi};
use crate::events::{Event, EventBus, TransferNotice, TransferState};

/// Where a multipart upload of this file already stands (from the queue).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumePoint {
    pub upload_id: String,
    pub object_key: String,
    pub part_size: u64,
}

/// Told about every step worth remembering, so a crash loses at most the parts in flight.
/// Implementations must not block for long (a local database write).
pub trait UploadJournal: Send + Sync {
    fn multipart_started(&self, upload_id: &str, object_key: &str, part_size: u64);
    fn part_stored(&self, part_number: u32, etag: &str);
    /// The server no longer knows the recorded upload; forget it and its parts.
    fn upload_gone(&self);
    /// `Some(reason)`: the upload now waits for the network; `None`: it connects again.
    fn waiting_for_network(&self, _reason: Option<&str>) {}
}

/// A journal that remembers nothing (one-shot uploads, tests).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoJournal;

impl UploadJournal for NoJournal {
    fn multipart_started(&self, _: &str, _: &str, _: u64) {}
    fn part_stored(&self, _: u32, _: &str) {}
    fn upload_gone(&self) {}
}

/// Counters of one upload, for reports and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadStats {
    /// Requests retried after a temporary failure.
    pub retries: u32,
    /// URLs signed again because they had expired.
    pub resigned: u32,
    /// Fresh uploads started because the server had lost the previous one.
    pub fresh_restarts: u32,
    /// Parts found already stored when resuming.
    pub parts_skipped: u32,
    /// Requests that could not connect and were tried again once the wait was over
    /// (not failures: the network was down).
    pub offline_probes: u32,
}

/// How the upload ended.
#[derive(Debug, Clone, PartialEq)]
pub enum UploadResult {
    /// The object is stored and verified; the caller creates the job.
    Stored {
        object_key: String,
        etag: String,
        stats: UploadStats,
    },
    /// The backend has no presign routes: the file went through `POST /jobs/upload`,
    /// which created the job.
    JobCreated { job: CreatedJob, stats: UploadStats },
}

/// The shared machinery uploads run on. Cheap to clone.
#[derive(Debug, Clone)]
pub struct UploadSession {
    pub api: UploadsApi,
    /// The client for presigned PUTs (no overall timeout: stalls are watched instead).
    pub store_http: reqwest::Client,
    pub limiter: BandwidthLimiter,
    pub bus: EventBus,
    pub settings: TransferSettings,
}

/// One file's upload request.
pub struct UploadJob<'a> {
    pub transfer_id: &'a str,
    pub manuscript: &'a Manuscript,
    pub plan: PartPlan,
    /// The file's hasher under `plan` ([`UploadSession::start_hasher`]).
    pub hasher: &'a PartHasher,
    pub resume: Option<ResumePoint>,
    pub journal: &'a dyn UploadJournal,
    pub meter: &'a ProgressMeter,
    pub options: &'a JobOptions,
    pub cancel: &'a CancellationToken,
}

impl UploadSession {
    pub fn new(api: UploadsApi, bus: EventBus, settings: TransferSettings) -> Self {
        Self {
            api,
            store_http: Self::default_store_http(),
            limiter: BandwidthLimiter::default(),
            bus,
            settings,
        }
    }

    /// Starts hashing `path` under `plan`, as far ahead of the senders as this session's
    /// settings need (a signing batch, or two rounds of parts in flight); `sha256`: also
    /// compute the whole file's SHA-256.
    pub fn start_hasher(&self, path: &std::path::Path, plan: PartPlan, sha256: bool) -> PartHasher {
        let s = &self.settings;
        let lookahead = s.sign_batch.max(2 * s.parts_in_flight).max(1) as u32;
        PartHasher::start(path, plan, HashOptions { sha256, lookahead })
    }

    /// A client for the store: connect timeout only; keep-alive pool.
    pub fn default_store_http() -> reqwest::Client {
        reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .pool_max_idle_per_host(16)
            .user_agent(concat!("rohimaya-desktop/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default()
    }

    /// Uploads `job`'s file and verifies it.
    pub async fn upload(&self, job: UploadJob<'_>) -> Result<UploadResult, TransferError> {
        let run = Run {
            session: self,
            job: &job,
            stats: Mutex::new(UploadStats::default()),
            offline: Mutex::new(0),
        };
        job.meter.set_state(TransferState::Uploading);
        let outcome = if job.plan.is_multipart() {
            run.multipart().await
        } else {
            run.single().await
        };
        match outcome {
            Err(TransferError::Api {
                source: UploadApiError::PresignUnsupported,
                ..
            }) => run.form_fallback().await,
            other => other,
        }
    }
}

struct Run<'a> {
    session: &'a UploadSession,
    job: &'a UploadJob<'a>,
    stats: Mutex<UploadStats>,
    /// Requests of this upload now waiting for the network.
    offline: Mutex<u32>,
}

/// Held while one request waits for the network; the upload shows as offline while any
/// of its requests holds one, and as uploading again when the last is dropped.
struct OfflineWait<'r, 'a> {
    run: &'r Run<'a>,
}

impl Drop for OfflineWait<'_, '_> {
    fn drop(&mut self) {
        let last = {
            let mut n = match self.run.offline.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            *n = n.saturating_sub(1);
            *n == 0
        };
        if last {
            self.run.job.journal.waiting_for_network(None);
            self.run.job.meter.set_state(TransferState::Uploading);
        }
    }
}

/// The signed URLs of a multipart upload, kept until used up or expired.
struct PartUrls {
    signed: HashMap<u32, (SignedPart, Instant)>,
}

impl<'a> Run<'a> {
    fn path(&self) -> std::path::PathBuf {
        self.job.manuscript.path.clone()
    }

    fn stats(&self, f: impl FnOnce(&mut UploadStats)) {
        let mut guard = match self.stats.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(&mut guard);
    }

    fn stats_now(&self) -> UploadStats {
        match self.stats.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn notice(&self, notice: TransferNotice) {
        self.session.bus.publish(Event::TransferNotice {
            transfer_id: self.job.transfer_id.to_string(),
            notice,
        });
    }

    fn interrupted(&self) -> TransferError {
        TransferError::Interrupted { path: self.path() }
    }

    fn hash_failed(&self, e: HashError) -> TransferError {
        e.into_transfer(&self.job.manuscript.path)
    }

    /// The MD5 of part `n`, waiting for the hasher (or until `cancel`).
    async fn part_md5(
        &self,
        n: u32,
        cancel: &CancellationToken,
    ) -> Result<[u8; 16], TransferError> {
        tokio::select! {
            r = self.job.hasher.md5(n) => r.map_err(|e| self.hash_failed(e)),
            _ = cancel.cancelled() => Err(self.interrupted()),
        }
    }

    /// `what` could not connect: marks the upload offline (once per request, through
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
            let first = {
                let mut n = match self.offline.lock() {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
                *n += 1;
                *n == 1
            };
            if first {
                self.job
                    .journal
                    .waiting_for_network(Some(&format!("{what}: {reason}")));
                self.job.meter.set_state(TransferState::Offline);
            }
            *wait = Some(OfflineWait { run: self });
        }
        *probes += 1;
        self.stats(|s| s.offline_probes += 1);
        let delay = self.session.settings.retry.delay(*probes, None);
        tracing::debug!("{what}: {reason}; offline, probing again in {delay:?}");
        self.notice(TransferNotice::WaitingForNetwork {
            reason: format!("{what}: {reason}"),
            retry_in_ms: delay.as_millis() as u64,
        });
        pause(delay, cancel).await
    }

    /// Calls the API, retrying temporary failures with backoff.
    async fn api<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T, TransferError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, UploadApiError>>,
    {
        let policy = self.session.settings.retry;
        let mut failures = 0;
        let (mut offline, mut probes) = (None, 0);
        loop {
            let result = tokio::select! {
                r = call() => r,
                _ = self.job.cancel.cancelled() => return Err(self.interrupted()),
            };
            if !result.as_ref().is_err_and(UploadApiError::is_offline) {
                offline = None;
                probes = 0;
            }
            match result {
                Ok(v) => return Ok(v),
                Err(e) if e.is_offline() => {
                    let reason = e.to_string();
                    if !self
                        .wait_for_network(what, &reason, &mut offline, &mut probes, self.job.cancel)
                        .await
                    {
                        return Err(self.interrupted());
                    }
                }
                Err(e) if e.is_temporary() && failures + 1 < policy.max_attempts => {
                    failures += 1;
                    self.stats(|s| s.retries += 1);
                    tracing::debug!("{what}: {e}; retry {failures}");
                    self.job.meter.set_state(TransferState::Waiting);
                    if !pause(policy.delay(failures, e.retry_after()), self.job.cancel).await {
                        return Err(self.interrupted());
                    }
                    self.job.meter.set_state(TransferState::Uploading);
                }
                Err(source) => {
                    return Err(TransferError::Api {
                        path: self.path(),
                        what: what.to_string(),
                        source,
                    });
                }
            }
        }
    }

    /// Sends bytes `[offset, offset+len)` with a URL from `sign` until stored; returns the
    /// verified ETag.
    async fn put_with_retries<S, Fut>(
        &self,
        what: &str,
        offset: u64,
        len: u64,
        expected_etag: &str,
        cancel: &CancellationToken,
        mut sign: S,
    ) -> Result<String, TransferError>
    where
        S: FnMut(bool) -> Fut,
        Fut: Future<Output = Result<(String, Vec<(String, String)>), TransferError>>,
    {
        let policy = self.session.settings.retry;
        let mut failures = 0u32;
        let mut resigns = 0u32;
        let mut fresh = false;
        let (mut offline, mut probes) = (None, 0);
        loop {
            let (url, headers) = sign(fresh).await?;
            fresh = false;
            let put = put_range(PutRequest {
                http: &self.session.store_http,
                url: &url,
                headers: &headers,
                path: &self.job.manuscript.path,
                offset,
                len,
                limiter: &self.session.limiter,
                meter: self.job.meter,
                stall_timeout: policy.stall_timeout,
                cancel,
            })
            .await;
            if !matches!(put, Err(PutFailure::Offline { .. })) {
                offline = None;
                probes = 0;
            }
            match put {
                Ok(etag) if etag == expected_etag => return Ok(etag),
                Ok(etag) => {
                    return Err(TransferError::Integrity {
                        path: self.path(),
                        expected: expected_etag.to_string(),
                        got: etag,
                    });
                }
                Err(PutFailure::Expired) => {
                    resigns += 1;
                    self.stats(|s| s.resigned += 1);
                    fresh = true;
                    // Signing again is free, but not forever (a clock far off).
                    if resigns > 50 {
                        return Err(TransferError::Failed {
                            path: self.path(),
                            what: what.to_string(),
                            reason: "every freshly signed URL was refused as expired; check the computer's clock".into(),
                        });
                    }
                }
                Err(PutFailure::Temporary {
                    reason,
                    retry_after,
                }) => {
                    failures += 1;
                    if failures >= policy.max_attempts {
                        return Err(TransferError::Failed {
                            path: self.path(),
                            what: what.to_string(),
                            reason: format!("{reason} (after {failures} attempts)"),
                        });
                    }
                    self.stats(|s| s.retries += 1);
                    tracing::debug!("{what}: {reason}; retry {failures}");
                    if !pause(policy.delay(failures, retry_after), cancel).await {
                        return Err(self.interrupted());
                    }
                }
                Err(PutFailure::Offline { reason }) => {
                    if !self
                        .wait_for_network(what, &reason, &mut offline, &mut probes, cancel)
                        .await
                    {
                        return Err(self.interrupted());
                    }
                }
                Err(PutFailure::NoSuchUpload) => {
                    return Err(TransferError::Api {
                        path: self.path(),
                        what: what.to_string(),
                        source: UploadApiError::NoSuchUpload,
                    });
                }
                Err(PutFailure::BadDigest) => {
                    return Err(TransferError::FileChanged { path: self.path() });
                }
                Err(PutFailure::Refused {
                    status,
                    code,
                    message,
                }) => {
                    return Err(TransferError::Failed {
                        path: self.path(),
                        what: what.to_string(),
                        reason: format!("the store refused it ({status} {code}: {message})"),
                    });
                }
                Err(PutFailure::Cancelled) => return Err(self.interrupted()),
                Err(PutFailure::Unreadable(reason)) => {
                    return Err(TransferError::Unreadable {
                        path: self.path(),
                        reason,
                    });
                }
            }
        }
    }

    async fn single(&self) -> Result<UploadResult, TransferError> {
        let m = self.job.manuscript;
        // The signed Content-MD5 needs the whole body hashed before the PUT.
        self.job.meter.set_state(TransferState::Hashing);
        let digest = self.part_md5(1, self.job.cancel).await?;
        self.job.meter.set_state(TransferState::Uploading);
        let md5 = content_md5(&digest);
        let expected = hex::encode(digest);
        // The last URL signed, reused for retries while it is valid.
        let last: Mutex<Option<(crate::api::uploads::PresignedPut, Instant)>> = Mutex::new(None);
        let (last_ref, md5_ref) = (&last, &md5);
        let etag = self
            .put_with_retries(
                "uploading",
                0,
                m.size,
                &expected,
                self.job.cancel,
                move |fresh| async move {
                    if !fresh
                        && let Ok(guard) = last_ref.lock()
                        && let Some((signed, at)) = guard.as_ref()
                        && still_valid(*at, signed.expires_in)
                    {
                        return Ok((
                            signed.url.clone(),
                            signed.headers.clone().into_iter().collect(),
                        ));
                    }
                    let signed = self
                        .api("signing the upload", || {
                            self.session
                                .api
                                .presign(&m.file_name, m.content_type, m.size, md5_ref)
                        })
                        .await?;
                    let answer = (
                        signed.url.clone(),
                        signed.headers.clone().into_iter().collect(),
                    );
                    if let Ok(mut guard) = last_ref.lock() {
                        *guard = Some((signed, Instant::now()));
                    }
                    Ok(answer)
                },
            )
            .await?;
        let object_key = last
            .lock()
            .ok()
            .and_then(|g| g.as_ref().map(|(s, _)| s.object_key.clone()))
            .unwrap_or_default();
        Ok(UploadResult::Stored {
            object_key,
            etag,
            stats: self.stats_now(),
        })
    }

    async fn form_fallback(&self) -> Result<UploadResult, TransferError> {
        self.notice(TransferNotice::FallbackFormUpload);
        let m = self.job.manuscript;
        let job = self
            .api("uploading through POST /jobs/upload", || {
                self.session.api.create_job_with_upload(
                    &m.path,
                    &m.file_name,
                    m.content_type,
                    self.job.options,
                )
            })
            .await?;
        self.job.meter.set_done(m.size);
        Ok(UploadResult::JobCreated {
            job,
            stats: self.stats_now(),
        })
    }

    async fn multipart(&self) -> Result<UploadResult, TransferError> {
        let mut resume = self.job.resume.clone();
        loop {
            match self.multipart_once(resume.take()).await {
                Err(TransferError::Api {
                    source: UploadApiError::NoSuchUpload,
                    ..
                }) if self.stats_now().fresh_restarts < 3 => {
                    self.stats(|s| s.fresh_restarts += 1);
                    self.job.journal.upload_gone();
                    self.job.meter.set_done(0);
                    self.notice(TransferNotice::RestartedUploadGone);
                }
                other => return other,
            }
        }
    }

    async fn multipart_once(
        &self,
        resume: Option<ResumePoint>,
    ) -> Result<UploadResult, TransferError> {
        let m = self.job.manuscript;
        let plan = self.job.plan;
        let PartPlan::Multipart { part_size, .. } = plan else {
            return self.single().await;
        };
        let count = plan.part_count();
        let mut done: BTreeMap<u32, String> = BTreeMap::new();
        let (upload_id, object_key) = match resume {
            Some(r) if r.part_size == part_size => {
                let stored = self
                    .api("asking the server which parts it has", || {
                        self.session.api.list_parts(&r.upload_id, &r.object_key)
                    })
                    .await?;
                // Kept if the size fits; whether the bytes still match is checked as the
                // hasher reaches each of them (see `check_stored`).
                for p in stored {
                    if p.part_number >= 1
                        && p.part_number <= count
                        && p.size == plan.part_range(p.part_number).1
                    {
                        done.insert(p.part_number, super::plan::normalize_etag(&p.etag));
                    }
                }
                self.stats(|s| s.parts_skipped = done.len() as u32);
                self.notice(TransferNotice::Resumed {
                    parts_done: done.len() as u32,
                    parts_total: count,
                });
                (r.upload_id, r.object_key)
            }
            _ => {
                let created = self
                    .api("starting the upload", || {
                        self.session.api.create_multipart(
                            &m.file_name,
                            m.content_type,
                            m.size,
                            part_size,
                        )
                    })
                    .await?;
                if created.part_size != part_size {
                    return Err(TransferError::Failed {
                        path: self.path(),
                        what: "starting the upload".into(),
                        reason: format!(
                            "the server fixed a part size of {} bytes instead of {part_size}",
                            created.part_size
                        ),
                    });
                }
                self.job.journal.multipart_started(
                    &created.upload_id,
                    &created.object_key,
                    part_size,
                );
                (created.upload_id, created.object_key)
            }
        };
        let already: u64 = done.keys().map(|n| plan.part_range(*n).1).sum();
        let kept: Vec<(u32, String)> = done.iter().map(|(n, e)| (*n, e.clone())).collect();
        self.job.meter.set_done(already);
        let pending: VecDeque<u32> = (1..=count).filter(|n| !done.contains_key(n)).collect();
        let shared = PartsShared {
            pending: Mutex::new(pending),
            done: Mutex::new(done),
            urls: tokio::sync::Mutex::new(PartUrls {
                signed: HashMap::new(),
            }),
            stop: self.job.cancel.child_token(),
            stored: AtomicU32::new(0),
        };
        let workers = (0..self.session.settings.parts_in_flight.max(1))
            .map(|_| self.part_worker(&shared, &upload_id, &object_key));
        let (checked, results) = tokio::join!(
            self.check_stored(&kept, &shared.stop),
            futures::future::join_all(workers)
        );
        // The first real error wins over the "interrupted" of the workers it stopped.
        let mut first_err = checked.err();
        for r in results {
            if let Err(e) = r {
                let interrupted = matches!(e, TransferError::Interrupted { .. });
                if first_err.is_none()
                    || (!interrupted
                        && matches!(first_err, Some(TransferError::Interrupted { .. })))
                {
                    first_err = Some(e);
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        let parts: Vec<(u32, String)> = match shared.done.lock() {
            Ok(d) => d.iter().map(|(n, e)| (*n, e.clone())).collect(),
            Err(p) => p
                .into_inner()
                .iter()
                .map(|(n, e)| (*n, e.clone()))
                .collect(),
        };
        if parts.len() as u32 != count {
            return Err(self.interrupted());
        }
        let completed = self
            .api("completing the upload", || {
                self.session.api.complete(&upload_id, &object_key, &parts)
            })
            .await?;
        let md5s = tokio::select! {
            r = self.job.hasher.part_md5s() => r.map_err(|e| self.hash_failed(e))?,
            _ = self.job.cancel.cancelled() => return Err(self.interrupted()),
        };
        let expected = expected_etag(&md5s, true);
        let got = super::plan::normalize_etag(&completed.etag);
        if got != expected || completed.size != m.size {
            return Err(TransferError::Integrity {
                path: self.path(),
                expected: format!("{expected} ({} bytes)", m.size),
                got: format!("{got} ({} bytes)", completed.size),
            });
        }
        Ok(UploadResult::Stored {
            object_key: completed.object_key,
            etag: got,
            stats: self.stats_now(),
        })
    }

    /// Compares the parts the server already had with the file's MD5s as the hasher
    /// reaches them; a difference stops the upload ([`TransferError::SentPartChanged`]).
    async fn check_stored(
        &self,
        kept: &[(u32, String)],
        stop: &CancellationToken,
    ) -> Result<(), TransferError> {
        for (n, etag) in kept {
            let md5 = match self.part_md5(*n, stop).await {
                Ok(md5) => md5,
                Err(e) => {
                    stop.cancel();
                    return Err(e);
                }
            };
            if hex::encode(md5) != *etag {
                stop.cancel();
                return Err(TransferError::SentPartChanged {
                    path: self.path(),
                    part: *n,
                });
            }
        }
        Ok(())
    }

    async fn part_worker(
        &self,
        shared: &PartsShared,
        upload_id: &str,
        object_key: &str,
    ) -> Result<(), TransferError> {
        let plan = self.job.plan;
        loop {
            if shared.stop.is_cancelled() {
                return Err(self.interrupted());
            }
            let next = match shared.pending.lock() {
                Ok(mut p) => p.pop_front(),
                Err(p) => p.into_inner().pop_front(),
            };
            let Some(n) = next else { return Ok(()) };
            let (offset, len) = plan.part_range(n);
            let what = format!("uploading part {n}");
            let md5 = match self.part_md5(n, &shared.stop).await {
                Ok(md5) => md5,
                Err(e) => {
                    shared.stop.cancel();
                    return Err(e);
                }
            };
            let result = self
                .put_with_retries(
                    &what,
                    offset,
                    len,
                    &hex::encode(md5),
                    &shared.stop,
                    |fresh| self.part_url(shared, upload_id, object_key, n, fresh),
                )
                .await;
            match result {
                Ok(etag) => {
                    self.job.journal.part_stored(n, &etag);
                    if let Ok(mut d) = shared.done.lock() {
                        d.insert(n, etag);
                    }
                    shared.stored.fetch_add(1, Ordering::Relaxed);
                    self.notice(TransferNotice::PartStored { part_number: n });
                }
                Err(e) => {
                    shared.stop.cancel();
                    return Err(e);
                }
            }
        }
    }

    /// A URL for part `n`: a cached one still valid, else a batch signed now (this part
    /// and the next pending ones whose MD5 the hasher already has).
    async fn part_url(
        &self,
        shared: &PartsShared,
        upload_id: &str,
        object_key: &str,
        n: u32,
        fresh: bool,
    ) -> Result<(String, Vec<(String, String)>), TransferError> {
        let mut urls = shared.urls.lock().await;
        if fresh {
            urls.signed.remove(&n);
        }
        if let Some((part, at)) = urls.signed.get(&n) {
            if still_valid(*at, part.expires_in) {
                return Ok((part.url.clone(), part.headers.clone().into_iter().collect()));
            }
            // Signed in an earlier batch but expired before its turn came.
            self.stats(|s| s.resigned += 1);
        }
        let mut batch = vec![n];
        if let Ok(pending) = shared.pending.lock() {
            for p in pending.iter() {
                if batch.len() >= self.session.settings.sign_batch.max(1) {
                    break;
                }
                let valid = urls
                    .signed
                    .get(p)
                    .is_some_and(|(s, at)| still_valid(*at, s.expires_in));
                if !valid && self.job.hasher.known_md5(*p).is_some() {
                    batch.push(*p);
                }
            }
        }
        let request: Vec<(u32, String)> = batch
            .iter()
            .filter_map(|p| Some((*p, content_md5(&self.job.hasher.known_md5(*p)?))))
            .collect();
        let signed = self
            .api("signing part URLs", || {
                self.session.api.sign_parts(upload_id, object_key, &request)
            })
            .await?;
        let now = Instant::now();
        for part in signed {
            urls.signed.insert(part.part_number, (part, now));
        }
        match urls.signed.get(&n) {
            Some((part, _)) => Ok((part.url.clone(), part.headers.clone().into_iter().collect())),
            None => Err(TransferError::Failed {
                path: self.path(),
                what: format!("signing part {n}"),
                reason: "the server did not sign the part".into(),
            }),
        }
    }
}

/// Whether a URL signed at `at` for `expires_in` seconds may still be sent: with a margin
/// of a quarter of its life (at most 30 s) for the trip to the store and clock skew.
fn still_valid(at: Instant, expires_in: u64) -> bool {
    let margin = (expires_in as f64 / 4.0).min(30.0);
    at.elapsed().as_secs_f64() + margin < expires_in as f64
}

struct PartsShared {
    pending: Mutex<VecDeque<u32>>,
    done: Mutex<BTreeMap<u32, String>>,
    urls: tokio::sync::Mutex<PartUrls>,
    stop: CancellationToken,
    stored: AtomicU32,
}

//! The transfer engines (upload side): a manuscript goes from disk straight to the object
//! store through presigned URLs the backend issues, as one PUT or as a multipart upload,
//! streamed with bounded memory, verified end to end, retried per request, resumable.
//!
//! - [`manuscript`]: which files are accepted (extension + content sniffing), before any
//!   network traffic;
//! - [`plan`]: single PUT or multipart, the part size, the expected ETag;
//! - [`hasher`]: [`PartHasher`], the part MD5s and the SHA-256 computed on blocking
//!   threads a bounded number of parts ahead of the senders (no pass before the upload);
//! - [`store_put`]: one presigned PUT streamed from disk, its answer classified;
//! - [`upload`]: [`UploadSession`], which drives one file: sign in batches, parts in
//!   flight, retries with backoff, re-sign on expiry, fresh upload on `NoSuchUpload`,
//!   verify, fall back to `POST /jobs/upload`;
//! - [`limiter`], [`progress`], [`retry`]: the shared bandwidth limit, rclone-like
//!   accounting published on the event bus, and the backoff policy.
//!
//! The download side:
//! - [`download`]: [`DownloadSession`], which brings one book or track file into the
//!   library: parallel ranged GETs into a `.part`, `If-Match` on the ETag seen first,
//!   fresh URLs on expiry, resume from a [`DownloadCheckpoint`], size + MD5 verified
//!   before an atomic, never-overwriting rename;
//! - [`range_get`]: one ranged GET, classified and streamed to its offsets;
//! - [`part_file`]: the `.part` (positioned writes, read-back, put in place);
//! - [`destination`]: nothing lands outside the library root; [`disk_space`]: free space
//!   checked before anything is written.
//!
//! The durable state (what was sent, for resume after a crash) lives in
//! [`crate::queue`]; this module reports it through [`upload::UploadJournal`]. It never
//! logs a presigned URL's signature and never reads a whole file into memory.

pub mod hasher;
pub mod limiter;
pub mod manuscript;
pub mod plan;
pub mod progress;
pub mod retry;
pub mod store_put;
pub mod upload;
// The download side (issue 5): see `download` for the engine.
pub mod destination;
pub mod disk_space;
pub mod download;
pub mod part_file;
pub mod range_get;

use std::path::PathBuf;

pub use download::{
    DownloadCheckpoint, DownloadError, DownloadJob, DownloadJournal, DownloadSession,
    DownloadSettings, DownloadSource, DownloadStats, Downloaded, MemoryDownloadJournal,
    NoDownloadJournal,
};
pub use hasher::{HashError, HashOptions, PartHasher};
pub use limiter::BandwidthLimiter;
pub use manuscript::{Manuscript, ManuscriptError, inspect};
pub use plan::{PartPlan, PlanSettings};
pub use progress::ProgressMeter;
pub use retry::RetryPolicy;
pub use upload::{NoJournal, ResumePoint, UploadJournal, UploadResult, UploadSession, UploadStats};

use crate::api::uploads::UploadApiError;
use crate::error::{CoreError, ErrorCode};

/// The upload engine's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferSettings {
    pub plan: PlanSettings,
    /// Parts of one file sent at the same time (default 4).
    pub parts_in_flight: usize,
    /// Part URLs signed per request (signed just before use).
    pub sign_batch: usize,
    pub retry: RetryPolicy,
}

impl Default for TransferSettings {
    fn default() -> Self {
        Self {
            plan: PlanSettings::default(),
            parts_in_flight: 4,
            sign_batch: 8,
            retry: RetryPolicy::default(),
        }
    }
}

/// Why an upload did not finish.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Manuscript(#[from] ManuscriptError),
    #[error("{path}: cannot read the file ({reason})")]
    Unreadable { path: PathBuf, reason: String },
    #[error(
        "{path}: the file changed while it was being uploaded; it will be sent again from the start"
    )]
    FileChanged { path: PathBuf },
    #[error(
        "{path}: the server's checksum (ETag {got}) does not match the bytes sent (expected {expected}); \
         the upload is not trusted and was not reported as done. Try again; if it repeats, check for a proxy altering uploads"
    )]
    Integrity {
        path: PathBuf,
        expected: String,
        got: String,
    },
    #[error("{path}: {what} failed: {reason}")]
    Failed {
        path: PathBuf,
        what: String,
        reason: String,
    },
    #[error("{path}: {what}: {source}")]
    Api {
        path: PathBuf,
        what: String,
        source: UploadApiError,
    },
    #[error(
        "{path}: part {part} already on the server no longer matches the file (it changed since it was sent); \
         it will be sent again from the start"
    )]
    SentPartChanged { path: PathBuf, part: u32 },
    #[error("{path}: the upload was interrupted (paused, cancelled or shut down)")]
    Interrupted { path: PathBuf },
}

impl CoreError for TransferError {
    fn code(&self) -> ErrorCode {
        match self {
            TransferError::Manuscript(e) => e.code(),
            TransferError::Unreadable { .. } => ErrorCode::FileUnreadable,
            TransferError::FileChanged { .. } => ErrorCode::FileChanged,
            TransferError::Integrity { .. } => ErrorCode::IntegrityMismatch,
            TransferError::Failed { .. } => ErrorCode::TransferFailed,
            TransferError::Api { source, .. } => source.code(),
            TransferError::Interrupted { .. } => ErrorCode::TransferInterrupted,
            TransferError::SentPartChanged { .. } => ErrorCode::FileChanged,
        }
    }
}

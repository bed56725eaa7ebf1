//! The durable download queue: every finished audiobook file the user (or auto-download,
//! sync, repair) asked to bring into the offline library, one row per file in `state.db`,
//! with the download engine's checkpoint as its journal so a crash, a kill or a reboot
//! resumes from the `.part`.
//!
//! - [`store`]: [`DownloadStore`], the `download_*` tables and every read and write of them;
//! - [`runner`]: [`DownloadQueue`], which plans a job's files with the library, checks disk
//!   space, drives the rows through [`crate::transfer::DownloadSession`] a few at a time
//!   (per-item cross-process lock, pause, resume, cancel, retry, the queue's global pause,
//!   the bandwidth limiter shared with uploads) and catalogues a book once its files
//!   landed; plus `sync` and `repair`.
//!
//! It owns the download rows and their transitions. It never picks names (the library
//! does), never talks HTTP itself (the engine and the API client do), never keeps a
//! presigned URL and never deletes a library file: sync marks a gone book "only on this
//! computer", cancel deletes only its own `.part`.

pub mod runner;
pub mod store;

pub use runner::{DownloadChoice, DownloadQueue, EnqueueReport, SyncReport, server_jobs};
pub use store::{DownloadItem, DownloadStore};

use std::path::PathBuf;

use crate::error::{CoreError, ErrorCode};
use crate::library::LibraryError;
use crate::transfer::DownloadError;

/// Where a queued download stands, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum DownloadState {
    Queued,
    Downloading,
    /// Waiting for the network (goes on by itself).
    Offline,
    Paused,
    Failed,
    Cancelled,
    Completed,
}

impl DownloadState {
    pub fn as_str(self) -> &'static str {
        match self {
            DownloadState::Queued => "queued",
            DownloadState::Downloading => "downloading",
            DownloadState::Offline => "offline",
            DownloadState::Paused => "paused",
            DownloadState::Failed => "failed",
            DownloadState::Cancelled => "cancelled",
            DownloadState::Completed => "completed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => DownloadState::Queued,
            "downloading" => DownloadState::Downloading,
            "offline" => DownloadState::Offline,
            "paused" => DownloadState::Paused,
            "failed" => DownloadState::Failed,
            "cancelled" => DownloadState::Cancelled,
            "completed" => DownloadState::Completed,
            _ => return None,
        })
    }

    /// Not finished one way or another (still to run, running, or paused).
    pub fn is_pending(self) -> bool {
        matches!(
            self,
            DownloadState::Queued
                | DownloadState::Downloading
                | DownloadState::Offline
                | DownloadState::Paused
        )
    }
}

/// The transfer id of download row `id` on the event bus: `d{id}`, never equal to an
/// upload's (plain numbers).
pub fn transfer_id(id: i64) -> String {
    format!("d{id}")
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum DownloadQueueError {
    #[error("the download queue ({path}) cannot be used: {reason}")]
    Db { path: PathBuf, reason: String },
    #[error("no download has id {id}. `rohimaya download` lists them with --json")]
    Unknown { id: i64 },
    #[error("download {id} is {state}: cannot {action} it")]
    InvalidState {
        id: i64,
        state: &'static str,
        action: &'static str,
    },
    #[error(
        "job {job_id} is {status}, not completed: there is no audiobook to download yet. \
         `rohimaya jobs` shows how it goes"
    )]
    NotCompleted { job_id: String, status: String },
    #[error("job {job_id} has no chapter tracks: download the whole book instead (--book)")]
    NoTracks { job_id: String },
    #[error("{0}")]
    Library(#[from] LibraryError),
    #[error("{0}")]
    Download(#[from] DownloadError),
}

impl From<crate::state_db::DbFailure> for DownloadQueueError {
    fn from(f: crate::state_db::DbFailure) -> Self {
        DownloadQueueError::Db {
            path: f.path,
            reason: f.reason,
        }
    }
}

impl CoreError for DownloadQueueError {
    fn code(&self) -> ErrorCode {
        match self {
            DownloadQueueError::Db { .. } => ErrorCode::QueueUnavailable,
            DownloadQueueError::Unknown { .. } => ErrorCode::QueueItemUnknown,
            DownloadQueueError::InvalidState { .. }
            | DownloadQueueError::NotCompleted { .. }
            | DownloadQueueError::NoTracks { .. } => ErrorCode::RequestRejected,
            DownloadQueueError::Library(e) => e.code(),
            DownloadQueueError::Download(e) => e.code(),
        }
    }
}

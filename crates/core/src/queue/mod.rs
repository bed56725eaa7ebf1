//! The durable transfer queue: every file the user asked to upload, in `state.db`
//! (SQLite, WAL), with what is needed to resume it after a crash, a kill or a reboot: its
//! upload id, object key and fixed part size, the parts already stored with their ETags,
//! and the file's size and mtime (to notice that it changed; the ETags of the stored parts
//! are their MD5s, checked against the file as it is read again), and its SHA-256 for
//! dedupe once known.
//!
//! - [`store`]: [`QueueStore`], the tables and every read and write of them;
//! - [`runner`]: [`QueueRunner`], which drives the queued files through
//!   [`crate::transfer::UploadSession`] and creates their jobs; pause, resume, cancel,
//!   retry, global pause, concurrency and bandwidth settings;
//! - [`lock`]: the cross-process lock of each item, so two processes over one
//!   `state.db` never drive the same file twice.
//!
//! It owns the queue's state and its transitions. It never talks HTTP itself (the
//! transfer engine and the API client do) and never keeps a presigned URL: they are
//! short-lived and signed again when needed.

pub mod lock;
pub mod runner;
pub mod store;

pub use runner::{Enqueued, QueueRunner};
pub use store::{QueueItem, QueueSettings, QueueStore};
/// The token that stops a runner (re-exported so shells need no extra dependency).
pub use tokio_util::sync::CancellationToken;

use std::path::PathBuf;

use crate::error::{CoreError, ErrorCode};
use crate::transfer::TransferError;

/// Where a queued file stands, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum ItemState {
    Queued,
    Uploading,
    /// Waiting for the network (resumes by itself when requests connect again).
    Offline,
    Paused,
    Failed,
    Cancelled,
    Completed,
}

impl ItemState {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemState::Queued => "queued",
            ItemState::Uploading => "uploading",
            ItemState::Offline => "offline",
            ItemState::Paused => "paused",
            ItemState::Failed => "failed",
            ItemState::Cancelled => "cancelled",
            ItemState::Completed => "completed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => ItemState::Queued,
            "uploading" => ItemState::Uploading,
            "offline" => ItemState::Offline,
            "paused" => ItemState::Paused,
            "failed" => ItemState::Failed,
            "cancelled" => ItemState::Cancelled,
            "completed" => ItemState::Completed,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum QueueError {
    #[error("the transfer queue ({path}) cannot be used: {reason}")]
    Db { path: PathBuf, reason: String },
    #[error("no queued upload has id {id}. `rohimaya queue list` shows them")]
    Unknown { id: i64 },
    #[error(
        "{path} {} (same content as queue item {existing}{}); nothing was sent. Use --force to \
         upload it again",
        if *existing_state == ItemState::Completed { "was already uploaded from this computer" } else { "is already in the upload queue" },
        job_id.as_ref().map(|j| format!(", job {j}")).unwrap_or_default()
    )]
    Duplicate {
        path: PathBuf,
        existing: i64,
        existing_state: ItemState,
        job_id: Option<String>,
    },
    #[error(
        "{path} (queue item {id}) is being uploaded by another Rohimaya process{}; it is left to \
         that process. `rohimaya queue list` shows how it goes",
        holder.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Busy {
        id: i64,
        path: PathBuf,
        holder: Option<u32>,
    },
    #[error("queue item {id} is {state}: cannot {action} it")]
    InvalidState {
        id: i64,
        state: &'static str,
        action: &'static str,
    },
    #[error(transparent)]
    Transfer(#[from] TransferError),
}

impl From<crate::state_db::DbFailure> for QueueError {
    fn from(f: crate::state_db::DbFailure) -> Self {
        QueueError::Db {
            path: f.path,
            reason: f.reason,
        }
    }
}

impl CoreError for QueueError {
    fn code(&self) -> ErrorCode {
        match self {
            QueueError::Db { .. } => ErrorCode::QueueUnavailable,
            QueueError::Unknown { .. } => ErrorCode::QueueItemUnknown,
            QueueError::Duplicate { .. } => ErrorCode::DuplicateUpload,
            QueueError::Busy { .. } => ErrorCode::QueueItemBusy,
            QueueError::InvalidState { .. } => ErrorCode::RequestRejected,
            QueueError::Transfer(e) => e.code(),
        }
    }
}

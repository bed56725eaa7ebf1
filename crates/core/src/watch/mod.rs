//! Watched folders: drop a manuscript in, it is uploaded once, whole, and never twice.
//!
//! - [`config`]: the folders ([`FolderConfig`], [`WatchedFolder`], [`AfterUpload`]) and
//!   the [`WatchSettings`] (stability window, re-scan interval);
//! - [`rules`]: [`IgnoreRules`], the default ignore patterns, user gitignore patterns and
//!   the manuscript types;
//! - [`fs`]: [`WatchFs`], the file-system operations the decisions need, and [`RealFs`];
//! - [`clock`]: [`Clock`] and [`SystemClock`];
//! - [`scan`]: the walk of a folder (no symlinked folders, loop and depth guards);
//! - [`engine`]: [`WatchEngine`], the decisions (ignored? stable? seen? new version?) as
//!   a state machine over a [`WatchFs`] and a [`Clock`];
//! - [`store`]: [`WatchStore`], the watcher's tables in `state.db`;
//! - [`activity`]: the activity log's entries;
//! - [`service`]: [`WatchService`], the real loop: `notify` events, scans and timers
//!   driving the engine, and the hand-off to the durable upload queue;
//! - [`fake`]: [`FakeFs`](fake::FakeFs) and [`FakeClock`](fake::FakeClock) for tests.
//!
//! The module owns which files in watched folders get uploaded and when. It never uploads
//! by itself: files go through [`crate::queue::QueueRunner`], which uploads them and
//! creates their jobs; and it never deletes or overwrites a user's file.

pub mod activity;
pub mod clock;
pub mod config;
pub mod engine;
#[cfg(any(test, feature = "test-support"))]
pub mod fake;
pub mod folders;
pub mod fs;
pub mod rules;
pub mod scan;
pub mod service;
pub mod store;
#[cfg(test)]
mod tests;

pub use activity::{Activity, ActivityKind};
pub use clock::{Clock, SystemClock};
pub use config::{AfterUpload, FolderConfig, WatchSettings, WatchedFolder};
pub use engine::{FolderChanges, QueueOutcome, WatchEngine};
pub use folders::{add_folder, folder_path, remove_folder, set_paused};
pub use fs::{FileKind, FileStat, RealFs, WatchFs};
pub use rules::{IgnoreRules, PatternError};
pub use service::{WatchService, hand_to_queue};
pub use store::{FileOutcome, FileRecord, PendingUpload, WatchStore};

use std::path::PathBuf;

use crate::error::{CoreError, ErrorCode};

#[derive(Debug, Clone, thiserror::Error)]
pub enum WatchError {
    #[error("the watched-folder state ({path}) cannot be used: {reason}")]
    Db { path: PathBuf, reason: String },
    #[error("{path} cannot be watched: {reason}")]
    FolderInvalid { path: PathBuf, reason: String },
    #[error("{path} is not a watched folder. `rohimaya watch list` shows them")]
    FolderUnknown { path: PathBuf },
    #[error(
        "{path} is already watched{}. `rohimaya watch remove` it first to change how",
        if path == by { String::new() } else { format!(" (as part of {})", by.display()) }
    )]
    AlreadyWatched { path: PathBuf, by: PathBuf },
    #[error("{0}. Fix the pattern (gitignore syntax) and add the folder again")]
    Pattern(#[from] PatternError),
    #[error("cannot watch for file changes: {reason}")]
    Watcher { reason: String },
}

impl From<crate::state_db::DbFailure> for WatchError {
    fn from(f: crate::state_db::DbFailure) -> Self {
        WatchError::Db {
            path: f.path,
            reason: f.reason,
        }
    }
}

impl CoreError for WatchError {
    fn code(&self) -> ErrorCode {
        match self {
            WatchError::Db { .. } => ErrorCode::WatchStateUnavailable,
            WatchError::FolderInvalid { .. } | WatchError::Pattern(_) => {
                ErrorCode::WatchFolderInvalid
            }
            WatchError::FolderUnknown { .. } => ErrorCode::WatchFolderUnknown,
            WatchError::AlreadyWatched { .. } => ErrorCode::WatchFolderAlreadyWatched,
            WatchError::Watcher { .. } => ErrorCode::WatcherFailed,
        }
    }
}

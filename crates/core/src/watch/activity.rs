//! The activity log's vocabulary: what the watcher did with a path and why
//! ([`Activity`], [`ActivityKind`]). The [`store`](super::store) keeps the entries (a
//! bounded table) for the app and `rohimaya watch run --verbose`; the engine also
//! publishes each one on the event bus. Plain data; it never does I/O.

use std::path::PathBuf;

use serde::Serialize;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(test, derive(ts_rs::TS))]
pub enum ActivityKind {
    /// A new or changed file was noticed; it is watched until stable.
    Seen,
    /// Skipped by the ignore rules (or not a manuscript).
    Ignored,
    /// Not stable yet (still growing, locked, a cloud placeholder, empty).
    Waited,
    /// Stable and new: handed to the upload queue.
    Queued,
    /// Stable and changed under a name uploaded before: handed to the queue as a new
    /// version (a new job).
    NewVersion,
    /// Same content as a file uploaded before (renamed, moved, copied, re-scanned).
    Duplicate,
    /// Uploaded and its job created.
    Uploaded,
    /// Moved into `Uploaded/` after its upload.
    Moved,
    /// The upload failed (the queue has the details and can retry it).
    Failed,
    /// Gone (deleted or moved away) before or while it was uploaded.
    Dropped,
    /// Permission denied, a symlinked or too-deep folder: reported and skipped.
    Skipped,
    /// A watched folder is missing.
    Unavailable,
    /// A missing watched folder is back.
    Available,
}

impl ActivityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActivityKind::Seen => "seen",
            ActivityKind::Ignored => "ignored",
            ActivityKind::Waited => "waited",
            ActivityKind::Queued => "queued",
            ActivityKind::NewVersion => "new_version",
            ActivityKind::Duplicate => "duplicate",
            ActivityKind::Uploaded => "uploaded",
            ActivityKind::Moved => "moved",
            ActivityKind::Failed => "failed",
            ActivityKind::Dropped => "dropped",
            ActivityKind::Skipped => "skipped",
            ActivityKind::Unavailable => "unavailable",
            ActivityKind::Available => "available",
        }
    }

    /// Worth a line without `--verbose`: what was handed on, uploaded, failed or lost,
    /// and folders coming and going (not seen/ignored/waited/duplicate).
    pub fn is_notable(self) -> bool {
        matches!(
            self,
            ActivityKind::Queued
                | ActivityKind::NewVersion
                | ActivityKind::Uploaded
                | ActivityKind::Moved
                | ActivityKind::Failed
                | ActivityKind::Dropped
                | ActivityKind::Unavailable
                | ActivityKind::Available
        )
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "seen" => ActivityKind::Seen,
            "ignored" => ActivityKind::Ignored,
            "waited" => ActivityKind::Waited,
            "queued" => ActivityKind::Queued,
            "new_version" => ActivityKind::NewVersion,
            "duplicate" => ActivityKind::Duplicate,
            "uploaded" => ActivityKind::Uploaded,
            "moved" => ActivityKind::Moved,
            "failed" => ActivityKind::Failed,
            "dropped" => ActivityKind::Dropped,
            "skipped" => ActivityKind::Skipped,
            "unavailable" => ActivityKind::Unavailable,
            "available" => ActivityKind::Available,
            _ => return None,
        })
    }
}

/// One entry of the activity log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Activity {
    pub id: i64,
    /// Wall-clock milliseconds since the epoch.
    pub at_ms: i64,
    pub folder_id: Option<i64>,
    pub path: PathBuf,
    pub kind: ActivityKind,
    /// Why, for a person ("still growing (1.2 MB)", "same content as Book.docx").
    pub detail: String,
}

impl std::fmt::Display for Activity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:<11} {}", self.kind.as_str(), self.path.display())?;
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

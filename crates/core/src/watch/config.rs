//! What the user configures: the watched folders ([`FolderConfig`], [`WatchedFolder`])
//! with their job defaults and after-upload action, and the watcher-wide
//! [`WatchSettings`]. Plain data (serializable for the CLI's `--json` and the app); it
//! never touches the disk (the [`store`](super::store) persists it).

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::api::uploads::JobOptions;

/// What happens to a file once its upload finished and its job exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(test, derive(ts_rs::TS))]
pub enum AfterUpload {
    /// Leave the file where it is.
    #[default]
    Leave,
    /// Move it into `Uploaded/` inside the watched folder (a name taken there gets a
    /// ` (2)`, ` (3)`... suffix; nothing is overwritten).
    MoveToUploaded,
}

impl AfterUpload {
    pub fn as_str(self) -> &'static str {
        match self {
            AfterUpload::Leave => "leave",
            AfterUpload::MoveToUploaded => "move_to_uploaded",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "move_to_uploaded" => AfterUpload::MoveToUploaded,
            _ => AfterUpload::Leave,
        }
    }
}

/// A folder to watch, as the user asks for it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FolderConfig {
    pub path: PathBuf,
    pub recursive: bool,
    pub after_upload: AfterUpload,
    /// The job defaults of files from this folder (voice, format, mode, author; the
    /// title is always the file name).
    pub options: JobOptions,
    /// Extra ignore patterns in gitignore syntax, relative to the folder.
    pub ignore: Vec<String>,
}

/// A watched folder as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct WatchedFolder {
    pub id: i64,
    pub path: PathBuf,
    pub recursive: bool,
    pub after_upload: AfterUpload,
    pub options: JobOptions,
    pub ignore: Vec<String>,
    pub paused: bool,
    /// False while the folder is missing (unmounted, deleted): kept, resumed when back.
    pub available: bool,
    /// Why it is unavailable, when it is.
    pub unavailable_reason: Option<String>,
}

/// Watcher-wide settings, persisted in `state.db`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct WatchSettings {
    /// How long size and mtime must stay unchanged before a file counts as written
    /// (default 3 s).
    #[serde(with = "millis")]
    #[cfg_attr(test, ts(type = "number"))]
    pub stability_window: Duration,
    /// The safety-net re-scan of every folder (default 5 min).
    #[serde(with = "millis")]
    #[cfg_attr(test, ts(type = "number"))]
    pub rescan_interval: Duration,
    /// How often missing folders are looked for and the folder list re-read (default 2 s).
    #[serde(with = "millis")]
    #[cfg_attr(test, ts(type = "number"))]
    pub folder_check_interval: Duration,
    /// Every folder paused.
    pub paused: bool,
}

impl Default for WatchSettings {
    fn default() -> Self {
        Self {
            stability_window: Duration::from_secs(3),
            rescan_interval: Duration::from_secs(300),
            folder_check_interval: Duration::from_secs(2),
            paused: false,
        }
    }
}

mod millis {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
}

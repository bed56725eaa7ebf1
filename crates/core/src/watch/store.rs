//! [`WatchStore`]: the watcher's tables in `state.db` (beside the upload queue's) and
//! every read and write of them:
//!
//! - `watch_folders`: the watched folders, their job defaults, after-upload action, ignore
//!   patterns, paused and available flags;
//! - `watch_settings`: stability window, re-scan and folder-check intervals, global pause;
//! - `watch_files`: every file the watcher handed on (or found to be a copy), by path,
//!   with its SHA-256, size, mtime, queue item, job and outcome: the exactly-once memory;
//! - `watch_pending`: stable files not yet in the upload queue (signed out, queue
//!   unavailable): they go when possible and survive restarts;
//! - `watch_activity`: the activity log, trimmed to the last [`ACTIVITY_KEEP`] entries.
//!
//! One connection behind a mutex, WAL, as the queue's store. It owns the schema; it never
//! does I/O beyond the database file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use crate::state_db::StateDb;
pub(crate) use crate::state_db::now_ms;

use super::WatchError;
use super::activity::{Activity, ActivityKind};
use super::config::{AfterUpload, FolderConfig, WatchSettings, WatchedFolder};
use crate::api::uploads::JobOptions;

/// Activity entries kept (older ones are deleted as new ones come).
pub const ACTIVITY_KEEP: i64 = 20_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS watch_folders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL UNIQUE,
    recursive INTEGER NOT NULL,
    after_upload TEXT NOT NULL,
    options TEXT NOT NULL,
    ignore TEXT NOT NULL,
    paused INTEGER NOT NULL DEFAULT 0,
    available INTEGER NOT NULL DEFAULT 1,
    unavailable_reason TEXT,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS watch_settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS watch_files (
    path TEXT PRIMARY KEY,
    folder_id INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ms INTEGER NOT NULL,
    -- queued | uploaded | duplicate | failed | cancelled | refused
    outcome TEXT NOT NULL,
    queue_id INTEGER,
    job_id TEXT,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS watch_files_by_content ON watch_files (sha256);
CREATE INDEX IF NOT EXISTS watch_files_by_outcome ON watch_files (outcome);
CREATE TABLE IF NOT EXISTS watch_pending (
    path TEXT PRIMARY KEY,
    folder_id INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ms INTEGER NOT NULL,
    new_version INTEGER NOT NULL,
    last_error TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS watch_pending_by_content ON watch_pending (sha256);
CREATE TABLE IF NOT EXISTS watch_activity (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    folder_id INTEGER,
    path TEXT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
";

/// Where a file the watcher handled stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileOutcome {
    /// In the upload queue.
    Queued,
    Uploaded,
    /// The same content as another file already handled: not uploaded.
    Duplicate,
    /// The upload failed (retry it from the queue).
    Failed,
    /// The queue item was cancelled by the user: not uploaded again.
    Cancelled,
    /// The queue refused it (its content is not a manuscript).
    Refused,
}

impl FileOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            FileOutcome::Queued => "queued",
            FileOutcome::Uploaded => "uploaded",
            FileOutcome::Duplicate => "duplicate",
            FileOutcome::Failed => "failed",
            FileOutcome::Cancelled => "cancelled",
            FileOutcome::Refused => "refused",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "queued" => FileOutcome::Queued,
            "uploaded" => FileOutcome::Uploaded,
            "duplicate" => FileOutcome::Duplicate,
            "cancelled" => FileOutcome::Cancelled,
            "refused" => FileOutcome::Refused,
            _ => FileOutcome::Failed,
        }
    }

    /// Whether this content counts as handled (a copy of it is not uploaded).
    pub fn counts_as_seen(self) -> bool {
        matches!(
            self,
            FileOutcome::Queued
                | FileOutcome::Uploaded
                | FileOutcome::Duplicate
                | FileOutcome::Cancelled
        )
    }
}

/// One row of `watch_files`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileRecord {
    pub path: PathBuf,
    pub folder_id: i64,
    pub sha256: String,
    pub size: u64,
    pub mtime_ms: i64,
    pub outcome: FileOutcome,
    pub queue_id: Option<i64>,
    pub job_id: Option<String>,
}

/// One row of `watch_pending`: stable, hashed, waiting to enter the upload queue.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PendingUpload {
    pub path: PathBuf,
    pub folder_id: i64,
    pub sha256: String,
    pub size: u64,
    pub mtime_ms: i64,
    /// Replaces different content uploaded before under the same path.
    pub new_version: bool,
    pub last_error: Option<String>,
}

#[derive(Clone)]
pub struct WatchStore {
    db: StateDb,
}

impl std::fmt::Debug for WatchStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStore")
            .field("path", &self.db.path())
            .finish()
    }
}

fn path_text(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

type FolderRow = (
    i64,
    String,
    bool,
    String,
    String,
    String,
    bool,
    bool,
    Option<String>,
);

fn folder_from(row: FolderRow) -> WatchedFolder {
    let (id, path, recursive, after, options, ignore, paused, available, reason) = row;
    WatchedFolder {
        id,
        path: PathBuf::from(path),
        recursive,
        after_upload: AfterUpload::parse(&after),
        options: serde_json::from_str::<JobOptions>(&options).unwrap_or_default(),
        ignore: serde_json::from_str(&ignore).unwrap_or_default(),
        paused,
        available,
        unavailable_reason: reason,
    }
}

const FOLDER_COLS: &str =
    "id, path, recursive, after_upload, options, ignore, paused, available, unavailable_reason";

fn read_folder(r: &rusqlite::Row<'_>) -> rusqlite::Result<FolderRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
    ))
}

const FILE_COLS: &str = "path, folder_id, sha256, size, mtime_ms, outcome, queue_id, job_id";

fn read_file(r: &rusqlite::Row<'_>) -> rusqlite::Result<FileRecord> {
    Ok(FileRecord {
        path: PathBuf::from(r.get::<_, String>(0)?),
        folder_id: r.get(1)?,
        sha256: r.get(2)?,
        size: r.get::<_, i64>(3)? as u64,
        mtime_ms: r.get(4)?,
        outcome: FileOutcome::parse(&r.get::<_, String>(5)?),
        queue_id: r.get(6)?,
        job_id: r.get(7)?,
    })
}

const PENDING_COLS: &str = "path, folder_id, sha256, size, mtime_ms, new_version, last_error";

fn read_pending(r: &rusqlite::Row<'_>) -> rusqlite::Result<PendingUpload> {
    Ok(PendingUpload {
        path: PathBuf::from(r.get::<_, String>(0)?),
        folder_id: r.get(1)?,
        sha256: r.get(2)?,
        size: r.get::<_, i64>(3)? as u64,
        mtime_ms: r.get(4)?,
        new_version: r.get(5)?,
        last_error: r.get(6)?,
    })
}

impl WatchStore {
    /// Opens (creating) the watcher's tables in the `state.db` at `path`.
    pub fn open(path: &Path) -> Result<Self, WatchError> {
        let db = StateDb::open(path, |c| c.execute_batch(SCHEMA).map_err(|e| e.to_string()))?;
        Ok(Self { db })
    }

    /// A store in memory (unit tests; forgets everything when dropped).
    pub fn open_in_memory() -> Result<Self, WatchError> {
        let db = StateDb::in_memory(|c| c.execute_batch(SCHEMA).map_err(|e| e.to_string()))?;
        Ok(Self { db })
    }

    pub fn path(&self) -> &Path {
        self.db.path()
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, WatchError> {
        Ok(self.db.with(f)?)
    }

    // ---- folders ----

    /// Adds a folder (its path as given: callers pass an absolute, canonical path).
    pub fn add_folder(&self, cfg: &FolderConfig) -> Result<WatchedFolder, WatchError> {
        for f in self.folders()? {
            if f.path == cfg.path {
                return Err(WatchError::AlreadyWatched {
                    path: cfg.path.clone(),
                    by: f.path,
                });
            }
            if (f.recursive && cfg.path.starts_with(&f.path))
                || (cfg.recursive && f.path.starts_with(&cfg.path))
            {
                return Err(WatchError::AlreadyWatched {
                    path: cfg.path.clone(),
                    by: f.path,
                });
            }
        }
        let options = serde_json::to_string(&cfg.options).unwrap_or_else(|_| "{}".into());
        let ignore = serde_json::to_string(&cfg.ignore).unwrap_or_else(|_| "[]".into());
        let id = self.with(|c| {
            c.execute(
                "INSERT INTO watch_folders (path, recursive, after_upload, options, ignore, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    path_text(&cfg.path),
                    cfg.recursive,
                    cfg.after_upload.as_str(),
                    options,
                    ignore,
                    now_ms()
                ],
            )?;
            Ok(c.last_insert_rowid())
        })?;
        self.folder(id)?.ok_or(WatchError::FolderUnknown {
            path: cfg.path.clone(),
        })
    }

    pub fn folder(&self, id: i64) -> Result<Option<WatchedFolder>, WatchError> {
        let row = self.with(|c| {
            c.query_row(
                &format!("SELECT {FOLDER_COLS} FROM watch_folders WHERE id = ?1"),
                [id],
                read_folder,
            )
            .optional()
        })?;
        Ok(row.map(folder_from))
    }

    pub fn folders(&self) -> Result<Vec<WatchedFolder>, WatchError> {
        let rows = self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {FOLDER_COLS} FROM watch_folders ORDER BY id"
            ))?;
            st.query_map([], read_folder)?
                .collect::<Result<Vec<_>, _>>()
        })?;
        Ok(rows.into_iter().map(folder_from).collect())
    }

    /// The folder stored at exactly `path`.
    pub fn folder_by_path(&self, path: &Path) -> Result<WatchedFolder, WatchError> {
        self.folders()?
            .into_iter()
            .find(|f| f.path == path)
            .ok_or_else(|| WatchError::FolderUnknown {
                path: path.to_path_buf(),
            })
    }

    /// Stops watching a folder. What was uploaded from it stays remembered.
    pub fn remove_folder(&self, id: i64) -> Result<(), WatchError> {
        self.with(|c| {
            c.execute("DELETE FROM watch_folders WHERE id = ?1", [id])?;
            c.execute("DELETE FROM watch_pending WHERE folder_id = ?1", [id])?;
            Ok(())
        })
    }

    pub fn set_folder_paused(&self, id: i64, paused: bool) -> Result<(), WatchError> {
        self.with(|c| {
            c.execute(
                "UPDATE watch_folders SET paused = ?2 WHERE id = ?1",
                params![id, paused],
            )
            .map(|_| ())
        })
    }

    pub fn set_folder_available(
        &self,
        id: i64,
        available: bool,
        reason: Option<&str>,
    ) -> Result<(), WatchError> {
        self.with(|c| {
            c.execute(
                "UPDATE watch_folders SET available = ?2, unavailable_reason = ?3 WHERE id = ?1",
                params![id, available, reason],
            )
            .map(|_| ())
        })
    }

    // ---- settings ----

    pub fn settings(&self) -> Result<WatchSettings, WatchError> {
        let rows: Vec<(String, String)> = self.with(|c| {
            let mut st = c.prepare("SELECT key, value FROM watch_settings")?;
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
        })?;
        let mut s = WatchSettings::default();
        let ms = |v: &str, d: Duration| v.parse().map(Duration::from_millis).unwrap_or(d);
        for (k, v) in rows {
            match k.as_str() {
                "stability_window_ms" => s.stability_window = ms(&v, s.stability_window),
                "rescan_interval_ms" => s.rescan_interval = ms(&v, s.rescan_interval),
                "folder_check_interval_ms" => {
                    s.folder_check_interval = ms(&v, s.folder_check_interval)
                }
                "paused" => s.paused = v == "1",
                _ => {}
            }
        }
        Ok(s)
    }

    pub fn save_settings(&self, s: &WatchSettings) -> Result<(), WatchError> {
        self.with(|c| {
            let mut st = c.prepare(
                "INSERT INTO watch_settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            )?;
            let ms = |d: Duration| (d.as_millis() as u64).to_string();
            st.execute(params!["stability_window_ms", ms(s.stability_window)])?;
            st.execute(params!["rescan_interval_ms", ms(s.rescan_interval)])?;
            st.execute(params![
                "folder_check_interval_ms",
                ms(s.folder_check_interval)
            ])?;
            st.execute(params!["paused", if s.paused { "1" } else { "0" }])?;
            Ok(())
        })
    }

    // ---- files (the exactly-once memory) ----

    pub fn file(&self, path: &Path) -> Result<Option<FileRecord>, WatchError> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {FILE_COLS} FROM watch_files WHERE path = ?1"),
                [path_text(path)],
                read_file,
            )
            .optional()
        })
    }

    /// Files handled with this content whose outcome counts as seen, oldest first.
    pub fn files_with_content(&self, sha256: &str) -> Result<Vec<FileRecord>, WatchError> {
        let rows = self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {FILE_COLS} FROM watch_files WHERE sha256 = ?1 ORDER BY updated_at"
            ))?;
            st.query_map([sha256], read_file)?
                .collect::<Result<Vec<_>, _>>()
        })?;
        Ok(rows
            .into_iter()
            .filter(|r| r.outcome.counts_as_seen())
            .collect())
    }

    pub fn put_file(&self, r: &FileRecord) -> Result<(), WatchError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO watch_files (path, folder_id, sha256, size, mtime_ms, outcome, queue_id, job_id, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT(path) DO UPDATE SET folder_id = excluded.folder_id,
                   sha256 = excluded.sha256, size = excluded.size, mtime_ms = excluded.mtime_ms,
                   outcome = excluded.outcome, queue_id = excluded.queue_id,
                   job_id = excluded.job_id, updated_at = excluded.updated_at",
                params![
                    path_text(&r.path),
                    r.folder_id,
                    r.sha256,
                    r.size as i64,
                    r.mtime_ms,
                    r.outcome.as_str(),
                    r.queue_id,
                    r.job_id,
                    now_ms()
                ],
            )
            .map(|_| ())
        })
    }

    pub fn remove_file(&self, path: &Path) -> Result<(), WatchError> {
        self.with(|c| {
            c.execute("DELETE FROM watch_files WHERE path = ?1", [path_text(path)])
                .map(|_| ())
        })
    }

    /// Files handed to the queue whose upload has not finished yet.
    pub fn files_in_flight(&self) -> Result<Vec<FileRecord>, WatchError> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {FILE_COLS} FROM watch_files WHERE outcome = 'queued' ORDER BY updated_at"
            ))?;
            st.query_map([], read_file)?.collect()
        })
    }

    /// Every remembered path with its size and mtime (files and pending): what a scan
    /// compares against so it hashes nothing it already handled.
    pub fn known_paths(&self) -> Result<Vec<(PathBuf, u64, i64)>, WatchError> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT path, size, mtime_ms FROM watch_files
                 UNION ALL SELECT path, size, mtime_ms FROM watch_pending",
            )?;
            st.query_map([], |r| {
                Ok((
                    PathBuf::from(r.get::<_, String>(0)?),
                    r.get::<_, i64>(1)? as u64,
                    r.get(2)?,
                ))
            })?
            .collect()
        })
    }

    // ---- pending ----

    pub fn put_pending(&self, p: &PendingUpload) -> Result<(), WatchError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO watch_pending (path, folder_id, sha256, size, mtime_ms, new_version, last_error, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT(path) DO UPDATE SET folder_id = excluded.folder_id,
                   sha256 = excluded.sha256, size = excluded.size, mtime_ms = excluded.mtime_ms,
                   new_version = excluded.new_version, last_error = excluded.last_error",
                params![
                    path_text(&p.path),
                    p.folder_id,
                    p.sha256,
                    p.size as i64,
                    p.mtime_ms,
                    p.new_version,
                    p.last_error,
                    now_ms()
                ],
            )
            .map(|_| ())
        })
    }

    pub fn pending(&self) -> Result<Vec<PendingUpload>, WatchError> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {PENDING_COLS} FROM watch_pending ORDER BY created_at, path"
            ))?;
            st.query_map([], read_pending)?.collect()
        })
    }

    pub fn pending_with_content(&self, sha256: &str) -> Result<Vec<PendingUpload>, WatchError> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {PENDING_COLS} FROM watch_pending WHERE sha256 = ?1"
            ))?;
            st.query_map([sha256], read_pending)?.collect()
        })
    }

    pub fn remove_pending(&self, path: &Path) -> Result<(), WatchError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM watch_pending WHERE path = ?1",
                [path_text(path)],
            )
            .map(|_| ())
        })
    }

    /// Notes why a pending file could not enter the queue yet.
    pub fn pending_failed(&self, path: &Path, error: &str) -> Result<(), WatchError> {
        self.with(|c| {
            c.execute(
                "UPDATE watch_pending SET last_error = ?2 WHERE path = ?1",
                params![path_text(path), error],
            )
            .map(|_| ())
        })
    }

    // ---- activity ----

    /// Appends to the activity log (and trims it now and then).
    pub fn log(
        &self,
        folder_id: Option<i64>,
        path: &Path,
        kind: ActivityKind,
        detail: &str,
    ) -> Result<Activity, WatchError> {
        let at_ms = now_ms();
        let id = self.with(|c| {
            c.execute(
                "INSERT INTO watch_activity (at_ms, folder_id, path, kind, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![at_ms, folder_id, path_text(path), kind.as_str(), detail],
            )?;
            let id = c.last_insert_rowid();
            if id % 1000 == 0 {
                c.execute(
                    "DELETE FROM watch_activity WHERE id <= ?1",
                    [id - ACTIVITY_KEEP],
                )?;
            }
            Ok(id)
        })?;
        Ok(Activity {
            id,
            at_ms,
            folder_id,
            path: path.to_path_buf(),
            kind,
            detail: detail.to_string(),
        })
    }

    /// Entries after `after_id` (0: from the start), oldest first, at most `limit`.
    pub fn activity(&self, after_id: i64, limit: usize) -> Result<Vec<Activity>, WatchError> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, at_ms, folder_id, path, kind, detail FROM watch_activity
                 WHERE id > ?1 ORDER BY id LIMIT ?2",
            )?;
            st.query_map(params![after_id, limit as i64], |r| {
                Ok(Activity {
                    id: r.get(0)?,
                    at_ms: r.get(1)?,
                    folder_id: r.get(2)?,
                    path: PathBuf::from(r.get::<_, String>(3)?),
                    kind: ActivityKind::parse(&r.get::<_, String>(4)?)
                        .unwrap_or(ActivityKind::Skipped),
                    detail: r.get(5)?,
                })
            })?
            .collect()
        })
    }

    /// The most recent `limit` entries, oldest first.
    pub fn recent_activity(&self, limit: usize) -> Result<Vec<Activity>, WatchError> {
        let last: i64 = self.with(|c| {
            c.query_row("SELECT COALESCE(MAX(id), 0) FROM watch_activity", [], |r| {
                r.get(0)
            })
        })?;
        self.activity((last - limit as i64).max(0), limit)
    }
}

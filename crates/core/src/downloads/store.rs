//! [`DownloadStore`]: the download queue's tables in `state.db` and every read and write
//! of them.
//!
//! `download_books` keeps what cataloguing a job's book needs (title, author, format,
//! folders); `download_items` one row per file to fetch, with the engine's checkpoint
//! (JSON) as its journal. One connection behind a mutex, WAL, `synchronous = NORMAL`;
//! every step is its own small transaction. It owns this schema; it never does I/O beyond
//! the database file.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use crate::state_db::{StateDb, now_ms};
use serde::Serialize;

use super::{DownloadQueueError, DownloadState};
use crate::library::FileRef;
use crate::transfer::DownloadCheckpoint;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS download_books (
    account TEXT NOT NULL,
    job_id TEXT NOT NULL,
    title TEXT NOT NULL,
    author TEXT,
    format TEXT NOT NULL,
    duration_seconds REAL,
    book_dir TEXT NOT NULL,
    chapters_dir TEXT NOT NULL,
    PRIMARY KEY (account, job_id)
);
CREATE TABLE IF NOT EXISTS download_items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL,
    job_id TEXT NOT NULL,
    -- 0 = the whole book, else the 1-based track number.
    track_index INTEGER NOT NULL,
    track_id TEXT,
    title TEXT NOT NULL,
    -- Destination relative to the library root, `/`-separated.
    rel_path TEXT NOT NULL,
    expected_size INTEGER,
    duration_seconds REAL,
    -- 1: a repair; the file lands beside the damaged one and then replaces it.
    replace_existing INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    error_code TEXT,
    error_message TEXT,
    checkpoint TEXT,
    size INTEGER,
    md5 TEXT,
    etag TEXT,
    catalogued INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS download_items_by_job ON download_items (account, job_id);
";

/// What cataloguing a job's book needs, saved when it is enqueued.
#[derive(Debug, Clone, PartialEq)]
pub struct BookRow {
    pub job_id: String,
    pub title: String,
    pub author: Option<String>,
    pub format: String,
    pub duration_seconds: Option<f64>,
    pub book_dir: String,
    pub chapters_dir: String,
}

/// One file to fetch, as enqueued.
#[derive(Debug, Clone, PartialEq)]
pub struct NewItem {
    pub which: FileRef,
    pub track_id: Option<String>,
    pub title: String,
    pub rel_path: String,
    pub expected_size: Option<u64>,
    pub duration_seconds: Option<f64>,
    pub replace_existing: bool,
}

/// A queued download as the shells show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct DownloadItem {
    pub id: i64,
    /// `d{id}`: the transfer id of its events.
    pub transfer_id: String,
    pub job_id: String,
    pub which: FileRef,
    pub track_id: Option<String>,
    pub title: String,
    pub rel_path: String,
    pub expected_size: Option<u64>,
    pub bytes_done: u64,
    pub state: DownloadState,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    #[serde(skip)]
    pub(crate) replace_existing: bool,
    #[serde(skip)]
    pub(crate) checkpoint: Option<DownloadCheckpoint>,
    #[serde(skip)]
    pub(crate) landed: Option<(u64, Option<String>, Option<String>)>,
    #[serde(skip)]
    pub(crate) duration_seconds: Option<f64>,
    #[serde(skip)]
    pub(crate) catalogued: bool,
}

#[derive(Clone)]
pub struct DownloadStore {
    db: StateDb,
}

impl std::fmt::Debug for DownloadStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DownloadStore")
            .field("path", &self.db.path())
            .finish()
    }
}

fn index_of(which: FileRef) -> i64 {
    match which {
        FileRef::Book => 0,
        FileRef::Track(n) => i64::from(n),
    }
}

fn which_of(i: i64) -> FileRef {
    if i <= 0 {
        FileRef::Book
    } else {
        FileRef::Track(u32::try_from(i).unwrap_or(u32::MAX))
    }
}

const ITEM_COLUMNS: &str = "id, job_id, track_index, track_id, title, rel_path, expected_size, \
    state, error_code, error_message, checkpoint, replace_existing, size, md5, etag, \
    duration_seconds, catalogued";

fn item_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DownloadItem> {
    let id: i64 = r.get(0)?;
    let checkpoint: Option<String> = r.get(10)?;
    let checkpoint: Option<DownloadCheckpoint> =
        checkpoint.and_then(|c| serde_json::from_str(&c).ok());
    let state: String = r.get(7)?;
    let state = DownloadState::parse(&state).unwrap_or(DownloadState::Failed);
    let size: Option<i64> = r.get(12)?;
    let expected: Option<i64> = r.get(6)?;
    let landed = size.map(|s| {
        (
            u64::try_from(s).unwrap_or(0),
            r.get::<_, Option<String>>(13).ok().flatten(),
            r.get::<_, Option<String>>(14).ok().flatten(),
        )
    });
    let bytes_done = match (&landed, &checkpoint) {
        (Some((s, _, _)), _) if state == DownloadState::Completed => *s,
        (_, Some(c)) => c.bytes_done(),
        _ => 0,
    };
    Ok(DownloadItem {
        id,
        transfer_id: super::transfer_id(id),
        job_id: r.get(1)?,
        which: which_of(r.get(2)?),
        track_id: r.get(3)?,
        title: r.get(4)?,
        rel_path: r.get(5)?,
        expected_size: expected.and_then(|e| u64::try_from(e).ok()),
        bytes_done,
        state,
        error_code: r.get(8)?,
        error_message: r.get(9)?,
        replace_existing: r.get::<_, i64>(11)? != 0,
        checkpoint,
        landed,
        duration_seconds: r.get(15)?,
        catalogued: r.get::<_, i64>(16)? != 0,
    })
}

impl DownloadStore {
    /// Opens (creating) the download tables in `state.db` at `path`.
    pub fn open(path: &Path) -> Result<Self, DownloadQueueError> {
        let db = StateDb::open(path, |c| c.execute_batch(SCHEMA).map_err(|e| e.to_string()))?;
        Ok(Self { db })
    }

    pub fn path(&self) -> &Path {
        self.db.path()
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, DownloadQueueError> {
        Ok(self.db.with(f)?)
    }

    /// Saves `book` and inserts `items` (one transaction); returns the new rows' ids.
    pub fn insert(
        &self,
        account: &str,
        book: &BookRow,
        items: &[NewItem],
    ) -> Result<Vec<i64>, DownloadQueueError> {
        let now = now_ms();
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO download_books (account, job_id, title, author, format,
                     duration_seconds, book_dir, chapters_dir)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT(account, job_id) DO UPDATE SET title = excluded.title,
                     author = excluded.author, format = excluded.format,
                     duration_seconds = excluded.duration_seconds,
                     book_dir = excluded.book_dir, chapters_dir = excluded.chapters_dir",
                params![
                    account,
                    book.job_id,
                    book.title,
                    book.author,
                    book.format,
                    book.duration_seconds,
                    book.book_dir,
                    book.chapters_dir
                ],
            )?;
            let mut ids = Vec::with_capacity(items.len());
            for it in items {
                tx.execute(
                    "INSERT INTO download_items (account, job_id, track_index, track_id, title,
                         rel_path, expected_size, duration_seconds, replace_existing, state,
                         created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'queued', ?10, ?10)",
                    params![
                        account,
                        book.job_id,
                        index_of(it.which),
                        it.track_id,
                        it.title,
                        it.rel_path,
                        it.expected_size.and_then(|s| i64::try_from(s).ok()),
                        it.duration_seconds,
                        i64::from(it.replace_existing),
                        now
                    ],
                )?;
                ids.push(tx.last_insert_rowid());
            }
            tx.commit()?;
            Ok(ids)
        })
    }

    pub fn book(&self, account: &str, job_id: &str) -> Result<Option<BookRow>, DownloadQueueError> {
        self.with(|c| {
            c.query_row(
                "SELECT job_id, title, author, format, duration_seconds, book_dir, chapters_dir
                 FROM download_books WHERE account = ?1 AND job_id = ?2",
                params![account, job_id],
                |r| {
                    Ok(BookRow {
                        job_id: r.get(0)?,
                        title: r.get(1)?,
                        author: r.get(2)?,
                        format: r.get(3)?,
                        duration_seconds: r.get(4)?,
                        book_dir: r.get(5)?,
                        chapters_dir: r.get(6)?,
                    })
                },
            )
            .optional()
        })
    }

    /// Every row of `account`, oldest first.
    pub fn list(&self, account: &str) -> Result<Vec<DownloadItem>, DownloadQueueError> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {ITEM_COLUMNS} FROM download_items WHERE account = ?1 ORDER BY id"
            ))?;
            st.query_map([account], item_from_row)?.collect()
        })
    }

    /// The rows of one job.
    pub fn job_items(
        &self,
        account: &str,
        job_id: &str,
    ) -> Result<Vec<DownloadItem>, DownloadQueueError> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {ITEM_COLUMNS} FROM download_items WHERE account = ?1 AND job_id = ?2 ORDER BY id"
            ))?;
            st.query_map(params![account, job_id], item_from_row)?
                .collect()
        })
    }

    pub fn item(&self, account: &str, id: i64) -> Result<DownloadItem, DownloadQueueError> {
        self.with(|c| {
            c.query_row(
                &format!(
                    "SELECT {ITEM_COLUMNS} FROM download_items WHERE account = ?1 AND id = ?2"
                ),
                params![account, id],
                item_from_row,
            )
            .optional()
        })?
        .ok_or(DownloadQueueError::Unknown { id })
    }

    pub fn set_state(
        &self,
        id: i64,
        state: DownloadState,
        error: Option<(&str, &str)>,
    ) -> Result<(), DownloadQueueError> {
        self.with(|c| {
            c.execute(
                "UPDATE download_items SET state = ?2, error_code = ?3, error_message = ?4,
                     updated_at = ?5 WHERE id = ?1",
                params![
                    id,
                    state.as_str(),
                    error.map(|e| e.0),
                    error.map(|e| e.1),
                    now_ms()
                ],
            )
            .map(drop)
        })
    }

    /// The size the server now announces for row `id`'s file.
    pub fn set_expected_size(
        &self,
        id: i64,
        expected_size: Option<u64>,
    ) -> Result<(), DownloadQueueError> {
        self.with(|c| {
            c.execute(
                "UPDATE download_items SET expected_size = ?2, updated_at = ?3 WHERE id = ?1",
                params![
                    id,
                    expected_size.and_then(|s| i64::try_from(s).ok()),
                    now_ms()
                ],
            )
            .map(drop)
        })
    }

    pub fn set_checkpoint(
        &self,
        id: i64,
        checkpoint: Option<&DownloadCheckpoint>,
    ) -> Result<(), DownloadQueueError> {
        let json = checkpoint.and_then(|c| serde_json::to_string(c).ok());
        self.with(|c| {
            c.execute(
                "UPDATE download_items SET checkpoint = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, json, now_ms()],
            )
            .map(drop)
        })
    }

    /// The file landed: completed, with what was verified.
    pub fn landed(
        &self,
        id: i64,
        size: u64,
        md5: Option<&str>,
        etag: &str,
    ) -> Result<(), DownloadQueueError> {
        self.with(|c| {
            c.execute(
                "UPDATE download_items SET state = 'completed', error_code = NULL,
                     error_message = NULL, checkpoint = NULL, size = ?2, md5 = ?3, etag = ?4,
                     updated_at = ?5 WHERE id = ?1",
                params![
                    id,
                    i64::try_from(size).unwrap_or(i64::MAX),
                    md5,
                    etag,
                    now_ms()
                ],
            )
            .map(drop)
        })
    }

    pub fn mark_catalogued(&self, ids: &[i64]) -> Result<(), DownloadQueueError> {
        self.with(|c| {
            let tx = c.transaction()?;
            for id in ids {
                tx.execute(
                    "UPDATE download_items SET catalogued = 1 WHERE id = ?1",
                    [id],
                )?;
            }
            tx.commit()
        })
    }

    /// Rows still to run (queued, or left downloading/offline by a process that ended).
    pub fn runnable(&self, account: &str) -> Result<Vec<DownloadItem>, DownloadQueueError> {
        Ok(self
            .list(account)?
            .into_iter()
            .filter(|i| {
                matches!(
                    i.state,
                    DownloadState::Queued | DownloadState::Downloading | DownloadState::Offline
                )
            })
            .collect())
    }
}

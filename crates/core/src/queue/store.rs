//! [`QueueStore`]: the queue's tables in `state.db` and every read and write of them.
//!
//! One connection behind a mutex (writes are small and quick), WAL journal, `synchronous
//! = NORMAL`: a crash loses at most the last transaction, and every step the uploader
//! reports (upload started, part stored, object stored, job created) is its own
//! transaction. It owns the schema and its migrations (`PRAGMA user_version`, see
//! [`SCHEMA_VERSION`]); it never does I/O beyond the database file.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use crate::state_db::{StateDb, now_ms};
use serde::Serialize;

use super::{ItemState, QueueError};
use crate::api::uploads::JobOptions;
use crate::transfer::plan::PartPlan;

/// The schema `SCHEMA` creates, kept in `PRAGMA user_version`.
/// 0: the first schema (`sha256 NOT NULL`, `part_md5s` from a hashing pass at enqueue).
/// 1: `sha256` may be NULL (recorded when the upload's hasher finishes); no `part_md5s`
///    (the ETags of the stored parts are their MD5s).
pub const SCHEMA_VERSION: i64 = 1;

const TRANSFERS_TABLE: &str = "
CREATE TABLE IF NOT EXISTS transfers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL,
    path TEXT NOT NULL,
    file_name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ms INTEGER NOT NULL,
    -- Hex SHA-256 of the content; NULL until known (computed while uploading).
    sha256 TEXT,
    -- 0 for a single PUT; else fixed when the upload was planned.
    part_size INTEGER NOT NULL,
    upload_id TEXT,
    object_key TEXT,
    -- Set once the object is stored and verified (the job may still be missing).
    stored_etag TEXT,
    state TEXT NOT NULL,
    error_code TEXT,
    error_message TEXT,
    job_id TEXT,
    options TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS transfers_by_content ON transfers (account, sha256);
CREATE INDEX IF NOT EXISTS transfers_by_size ON transfers (account, size);
";

const OTHER_TABLES: &str = "
CREATE TABLE IF NOT EXISTS transfer_parts (
    transfer_id INTEGER NOT NULL REFERENCES transfers(id) ON DELETE CASCADE,
    part_number INTEGER NOT NULL,
    etag TEXT NOT NULL,
    PRIMARY KEY (transfer_id, part_number)
);
CREATE TABLE IF NOT EXISTS queue_settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

/// Schema 0 -> 1: the table rebuilt without `part_md5s` and with a nullable `sha256`
/// (SQLite cannot relax a NOT NULL in place). Runs with foreign keys off, so that dropping
/// the old table does not cascade to `transfer_parts`.
const MIGRATE_0_TO_1: &str = "
CREATE TABLE transfers_v1 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL,
    path TEXT NOT NULL,
    file_name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ms INTEGER NOT NULL,
    sha256 TEXT,
    part_size INTEGER NOT NULL,
    upload_id TEXT,
    object_key TEXT,
    stored_etag TEXT,
    state TEXT NOT NULL,
    error_code TEXT,
    error_message TEXT,
    job_id TEXT,
    options TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
INSERT INTO transfers_v1 (id, account, path, file_name, content_type, size, mtime_ms, sha256,
    part_size, upload_id, object_key, stored_etag, state, error_code, error_message, job_id,
    options, created_at, updated_at)
  SELECT id, account, path, file_name, content_type, size, mtime_ms, sha256, part_size,
    upload_id, object_key, stored_etag, state, error_code, error_message, job_id, options,
    created_at, updated_at FROM transfers;
DROP TABLE transfers;
ALTER TABLE transfers_v1 RENAME TO transfers;
";

/// The first schema, for the migration test.
#[cfg(test)]
const SCHEMA_V0: &str = "
CREATE TABLE IF NOT EXISTS transfers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL,
    path TEXT NOT NULL,
    file_name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ms INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    -- 0 for a single PUT; else fixed when the upload was planned.
    part_size INTEGER NOT NULL,
    -- 16 bytes (MD5) per part, in part order.
    part_md5s BLOB NOT NULL,
    upload_id TEXT,
    object_key TEXT,
    -- Set once the object is stored and verified (the job may still be missing).
    stored_etag TEXT,
    state TEXT NOT NULL,
    error_code TEXT,
    error_message TEXT,
    job_id TEXT,
    options TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS transfers_by_content ON transfers (account, sha256);
CREATE TABLE IF NOT EXISTS transfer_parts (
    transfer_id INTEGER NOT NULL REFERENCES transfers(id) ON DELETE CASCADE,
    part_number INTEGER NOT NULL,
    etag TEXT NOT NULL,
    PRIMARY KEY (transfer_id, part_number)
);
CREATE TABLE IF NOT EXISTS queue_settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

/// Queue-wide settings, persisted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QueueSettings {
    /// Files uploaded at the same time (default 2).
    pub files_in_flight: usize,
    /// Parts of one file in flight (default 4).
    pub parts_in_flight: usize,
    /// Shared bandwidth limit in bytes per second; 0 = none.
    pub bandwidth_limit: u64,
    /// The global pause: nothing starts or continues while set.
    pub paused: bool,
    /// Files of at least this many bytes go multipart, smaller ones in one PUT; `None`:
    /// the engine's default (64 MiB). Applies to files queued from now on.
    pub multipart_threshold: Option<u64>,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            files_in_flight: 2,
            parts_in_flight: 4,
            bandwidth_limit: 0,
            paused: false,
            multipart_threshold: None,
        }
    }
}

/// A queued file as the shells show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct QueueItem {
    pub id: i64,
    pub path: PathBuf,
    pub file_name: String,
    pub size: u64,
    pub state: ItemState,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub job_id: Option<String>,
    pub object_key: Option<String>,
    pub parts_done: u32,
    pub part_count: u32,
    /// `None` until known (it is computed while the file is uploaded).
    pub sha256: Option<String>,
}

/// Everything the runner needs about one file.
#[derive(Debug, Clone)]
pub(crate) struct ItemRecord {
    pub id: i64,
    pub path: PathBuf,
    pub size: u64,
    pub mtime_ms: i64,
    pub plan: PartPlan,
    pub sha256: Option<String>,
    pub upload_id: Option<String>,
    pub object_key: Option<String>,
    pub stored_etag: Option<String>,
    pub options: JobOptions,
}

#[derive(Clone)]
pub struct QueueStore {
    db: StateDb,
}

impl std::fmt::Debug for QueueStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueStore")
            .field("path", &self.db.path())
            .finish()
    }
}

impl QueueStore {
    /// Opens (creating) the queue in `state.db` at `path`.
    pub fn open(path: &Path) -> Result<Self, QueueError> {
        let db = StateDb::open(path, |c| migrate(c).map_err(|e| e.to_string()))?;
        Ok(Self { db })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        self.db.path()
    }

    /// Where a stored item stands now (another process may have moved it).
    pub(crate) fn state(&self, id: i64) -> Result<ItemState, QueueError> {
        let state: Option<String> = self.with(|c| {
            c.query_row("SELECT state FROM transfers WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()
        })?;
        let state = state.ok_or(QueueError::Unknown { id })?;
        Ok(ItemState::parse(&state).unwrap_or(ItemState::Failed))
    }

    /// Runs `f` on the connection; maps SQLite errors onto [`QueueError::Db`].
    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, QueueError> {
        Ok(self.db.with(|c| f(c))?)
    }

    pub fn settings(&self) -> Result<QueueSettings, QueueError> {
        let rows: Vec<(String, String)> = self.with(|c| {
            let mut st = c.prepare("SELECT key, value FROM queue_settings")?;
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
        })?;
        let mut s = QueueSettings::default();
        for (k, v) in rows {
            match k.as_str() {
                "files_in_flight" => {
                    s.files_in_flight = v.parse().unwrap_or(s.files_in_flight).clamp(1, 16)
                }
                "parts_in_flight" => {
                    s.parts_in_flight = v.parse().unwrap_or(s.parts_in_flight).clamp(1, 64)
                }
                "bandwidth_limit" => s.bandwidth_limit = v.parse().unwrap_or(0),
                "paused" => s.paused = v == "1",
                "multipart_threshold" => s.multipart_threshold = v.parse().ok(),
                _ => {}
            }
        }
        Ok(s)
    }

    pub fn save_settings(&self, s: &QueueSettings) -> Result<(), QueueError> {
        self.with(|c| {
            let mut st = c.prepare(
                "INSERT INTO queue_settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            )?;
            st.execute(params!["files_in_flight", s.files_in_flight.to_string()])?;
            st.execute(params!["parts_in_flight", s.parts_in_flight.to_string()])?;
            st.execute(params!["bandwidth_limit", s.bandwidth_limit.to_string()])?;
            st.execute(params!["paused", if s.paused { "1" } else { "0" }])?;
            match s.multipart_threshold {
                Some(t) => st.execute(params!["multipart_threshold", t.to_string()])?,
                None => c.execute(
                    "DELETE FROM queue_settings WHERE key = 'multipart_threshold'",
                    [],
                )?,
            };
            Ok(())
        })
    }

    /// `account`'s non-cancelled items of exactly `size` bytes (possible duplicates), a
    /// completed one first.
    pub(crate) fn same_size(&self, account: &str, size: u64) -> Result<Vec<SameSize>, QueueError> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, state, job_id, path, mtime_ms, sha256 FROM transfers
                 WHERE account = ?1 AND size = ?2 AND state != 'cancelled'
                 ORDER BY state = 'completed' DESC, id DESC",
            )?;
            st.query_map(params![account, size as i64], |r| {
                Ok(SameSize {
                    id: r.get(0)?,
                    state: ItemState::parse(&r.get::<_, String>(1)?).unwrap_or(ItemState::Failed),
                    job_id: r.get(2)?,
                    path: PathBuf::from(r.get::<_, String>(3)?),
                    mtime_ms: r.get(4)?,
                    sha256: r.get(5)?,
                })
            })?
            .collect()
        })
    }

    /// Records item `id`'s SHA-256 (computed while it was uploaded, or for a dedupe check).
    pub(crate) fn set_sha256(&self, id: i64, sha256: &str) -> Result<(), QueueError> {
        self.with(|c| {
            c.execute(
                "UPDATE transfers SET sha256 = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, sha256, now_ms()],
            )
            .map(|_| ())
        })
    }

    /// Inserts a queued item; with `unless_same_size`, only if `account` has no
    /// non-cancelled item of this size (checked in the same statement, so two processes
    /// cannot both pass the check): `None` when there is one.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn insert(
        &self,
        account: &str,
        path: &Path,
        file_name: &str,
        content_type: &str,
        size: u64,
        mtime_ms: i64,
        plan: &PartPlan,
        sha256: Option<&str>,
        options: &JobOptions,
        unless_same_size: bool,
    ) -> Result<Option<i64>, QueueError> {
        let options = serde_json::to_string(options).unwrap_or_else(|_| "{}".into());
        let now = now_ms();
        self.with(|c| {
            let inserted = c.execute(
                "INSERT INTO transfers (account, path, file_name, content_type, size, mtime_ms,
                    sha256, part_size, state, options, created_at, updated_at)
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'queued', ?9, ?10, ?10
                 WHERE NOT ?11 OR NOT EXISTS (SELECT 1 FROM transfers WHERE account = ?1
                    AND size = ?5 AND state != 'cancelled')",
                params![
                    account,
                    path.to_string_lossy(),
                    file_name,
                    content_type,
                    size as i64,
                    mtime_ms,
                    sha256,
                    part_size_of(plan) as i64,
                    options,
                    now,
                    unless_same_size
                ],
            )?;
            Ok((inserted == 1).then(|| c.last_insert_rowid()))
        })
    }

    /// Replaces the plan after the file changed, forgetting the upload and the SHA-256
    /// (the next upload computes it again).
    pub(crate) fn restart(
        &self,
        id: i64,
        size: u64,
        mtime_ms: i64,
        plan: &PartPlan,
    ) -> Result<(), QueueError> {
        self.with(|c| {
            c.execute("DELETE FROM transfer_parts WHERE transfer_id = ?1", [id])?;
            c.execute(
                "UPDATE transfers SET size = ?2, mtime_ms = ?3, sha256 = NULL, part_size = ?4,
                    upload_id = NULL, object_key = NULL, stored_etag = NULL,
                    updated_at = ?5 WHERE id = ?1",
                params![
                    id,
                    size as i64,
                    mtime_ms,
                    part_size_of(plan) as i64,
                    now_ms()
                ],
            )?;
            Ok(())
        })
    }

    /// Points item `id` at its file's new place (same content, renamed or moved).
    pub(crate) fn relocate(
        &self,
        id: i64,
        path: &Path,
        file_name: &str,
        mtime_ms: i64,
    ) -> Result<(), QueueError> {
        self.with(|c| {
            c.execute(
                "UPDATE transfers SET path = ?2, file_name = ?3, mtime_ms = ?4, updated_at = ?5
                 WHERE id = ?1",
                params![id, path.to_string_lossy(), file_name, mtime_ms, now_ms()],
            )?;
            Ok(())
        })
    }

    pub(crate) fn record(&self, id: i64) -> Result<ItemRecord, QueueError> {
        let row = self.with(|c| {
            c.query_row(
                "SELECT id, path, size, mtime_ms, sha256, part_size,
                        upload_id, object_key, stored_etag, options
                 FROM transfers WHERE id = ?1",
                [id],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, i64>(5)?,
                        r.get::<_, Option<String>>(6)?,
                        r.get::<_, Option<String>>(7)?,
                        r.get::<_, Option<String>>(8)?,
                        r.get::<_, String>(9)?,
                    ))
                },
            )
            .optional()
        })?;
        let Some((
            id,
            path,
            size,
            mtime_ms,
            sha256,
            part_size,
            upload_id,
            object_key,
            stored_etag,
            options,
        )) = row
        else {
            return Err(QueueError::Unknown { id });
        };
        let size = size as u64;
        let plan = if part_size == 0 {
            PartPlan::Single { size }
        } else {
            PartPlan::multipart_with(size, part_size as u64)
        };
        Ok(ItemRecord {
            id,
            path: PathBuf::from(path),
            size,
            mtime_ms,
            plan,
            sha256,
            upload_id,
            object_key,
            stored_etag,
            options: serde_json::from_str(&options).unwrap_or_default(),
        })
    }

    /// The parts recorded as stored for item `id`: `(part number, ETag)`.
    #[cfg(test)]
    fn parts(&self, id: i64) -> Result<Vec<(u32, String)>, QueueError> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT part_number, etag FROM transfer_parts WHERE transfer_id = ?1
                 ORDER BY part_number",
            )?;
            st.query_map([id], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, String>(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
    }

    pub(crate) fn set_state(
        &self,
        id: i64,
        state: ItemState,
        error: Option<(&str, &str)>,
    ) -> Result<(), QueueError> {
        let (code, message) = match error {
            Some((c, m)) => (Some(c), Some(m)),
            None => (None, None),
        };
        self.with(|c| {
            c.execute(
                "UPDATE transfers SET state = ?2, error_code = ?3, error_message = ?4,
                    updated_at = ?5 WHERE id = ?1",
                params![id, state.as_str(), code, message, now_ms()],
            )
            .map(|_| ())
        })
    }

    pub(crate) fn set_upload(
        &self,
        id: i64,
        upload_id: Option<&str>,
        object_key: Option<&str>,
    ) -> Result<(), QueueError> {
        self.with(|c| {
            if upload_id.is_none() {
                c.execute("DELETE FROM transfer_parts WHERE transfer_id = ?1", [id])?;
            }
            c.execute(
                "UPDATE transfers SET upload_id = ?2, object_key = ?3, updated_at = ?4 WHERE id = ?1",
                params![id, upload_id, object_key, now_ms()],
            )
            .map(|_| ())
        })
    }

    pub(crate) fn part_stored(&self, id: i64, part: u32, etag: &str) -> Result<(), QueueError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO transfer_parts (transfer_id, part_number, etag) VALUES (?1, ?2, ?3)
                 ON CONFLICT(transfer_id, part_number) DO UPDATE SET etag = excluded.etag",
                params![id, part, etag],
            )
            .map(|_| ())
        })
    }

    pub(crate) fn object_stored(
        &self,
        id: i64,
        object_key: &str,
        etag: &str,
    ) -> Result<(), QueueError> {
        self.with(|c| {
            c.execute(
                "UPDATE transfers SET object_key = ?2, stored_etag = ?3, updated_at = ?4 WHERE id = ?1",
                params![id, object_key, etag, now_ms()],
            )
            .map(|_| ())
        })
    }

    pub(crate) fn completed(&self, id: i64, job_id: &str) -> Result<(), QueueError> {
        self.with(|c| {
            c.execute(
                "UPDATE transfers SET state = 'completed', job_id = ?2, error_code = NULL,
                    error_message = NULL, updated_at = ?3 WHERE id = ?1",
                params![id, job_id, now_ms()],
            )
            .map(|_| ())
        })
    }

    /// The ids of `account`'s items that should run (queued, or interrupted while
    /// uploading or waiting for the network), oldest first.
    pub(crate) fn runnable(&self, account: &str) -> Result<Vec<i64>, QueueError> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id FROM transfers WHERE account = ?1 AND state IN ('queued', 'uploading', 'offline')
                 ORDER BY id",
            )?;
            st.query_map([account], |r| r.get(0))?.collect()
        })
    }

    /// `account`'s items, oldest first.
    pub fn list(&self, account: &str) -> Result<Vec<QueueItem>, QueueError> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT t.id, t.path, t.file_name, t.size, t.state, t.error_code, t.error_message,
                        t.job_id, t.object_key, t.sha256, t.part_size,
                        (SELECT COUNT(*) FROM transfer_parts p WHERE p.transfer_id = t.id)
                 FROM transfers t WHERE t.account = ?1 ORDER BY t.id",
            )?;
            st.query_map([account], |r| {
                Ok(QueueItem {
                    id: r.get(0)?,
                    path: PathBuf::from(r.get::<_, String>(1)?),
                    file_name: r.get(2)?,
                    size: r.get::<_, i64>(3)? as u64,
                    state: ItemState::parse(&r.get::<_, String>(4)?).unwrap_or(ItemState::Failed),
                    error_code: r.get(5)?,
                    error_message: r.get(6)?,
                    job_id: r.get(7)?,
                    object_key: r.get(8)?,
                    sha256: r.get(9)?,
                    part_count: {
                        let size = r.get::<_, i64>(3)?.max(0) as u64;
                        match r.get::<_, i64>(10)? {
                            ps if ps > 0 => size.div_ceil(ps as u64) as u32,
                            _ => 1,
                        }
                    },
                    parts_done: r.get::<_, i64>(11)? as u32,
                })
            })?
            .collect()
        })
    }

    pub fn item(&self, account: &str, id: i64) -> Result<QueueItem, QueueError> {
        self.list(account)?
            .into_iter()
            .find(|i| i.id == id)
            .ok_or(QueueError::Unknown { id })
    }
}

fn part_size_of(plan: &PartPlan) -> u64 {
    match plan {
        PartPlan::Single { .. } => 0,
        PartPlan::Multipart { part_size, .. } => *part_size,
    }
}

/// An item of the same size as a file being queued (a possible duplicate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SameSize {
    pub id: i64,
    pub state: ItemState,
    pub job_id: Option<String>,
    pub path: PathBuf,
    pub mtime_ms: i64,
    pub sha256: Option<String>,
}

/// Brings the schema to [`SCHEMA_VERSION`], once, under a write lock (another process
/// may open the same file at the same time).
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version = |c: &Connection| c.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0));
    if version(conn)? >= SCHEMA_VERSION {
        return Ok(());
    }
    // Outside a transaction (SQLite ignores it inside one).
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        if version(conn)? < SCHEMA_VERSION {
            let old: bool = conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'transfers')",
                [],
                |r| r.get(0),
            )?;
            if old {
                conn.execute_batch(MIGRATE_0_TO_1)?;
            }
            conn.execute_batch(TRANSFERS_TABLE)?;
            conn.execute_batch(OTHER_TABLES)?;
            conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip_and_settings_persist() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let store = QueueStore::open(&db).unwrap();
        let plan = PartPlan::multipart_with(12 << 20, 5 << 20);
        let insert = |sha: Option<&str>, unless_same_size| {
            store
                .insert(
                    "u1",
                    Path::new("/x/b.txt"),
                    "b.txt",
                    "text/plain",
                    12 << 20,
                    7,
                    &plan,
                    sha,
                    &JobOptions::default(),
                    unless_same_size,
                )
                .unwrap()
        };
        let id = insert(None, true).unwrap();
        // A second file of this size is only inserted when asked to despite it.
        assert_eq!(insert(None, true), None);
        let other = insert(Some("cd"), false).unwrap();
        store
            .set_upload(id, Some("up"), Some("manuscripts/u1/up/b.txt"))
            .unwrap();
        store.part_stored(id, 2, "e2").unwrap();
        store.part_stored(id, 2, "e2b").unwrap();
        let r = store.record(id).unwrap();
        assert_eq!(r.plan, plan);
        assert_eq!(r.sha256, None);
        assert_eq!(store.parts(id).unwrap(), vec![(2, "e2b".to_string())]);
        assert_eq!(r.upload_id.as_deref(), Some("up"));
        store.set_sha256(id, "ab").unwrap();
        assert_eq!(store.record(id).unwrap().sha256.as_deref(), Some("ab"));
        let same = store.same_size("u1", 12 << 20).unwrap();
        assert_eq!(
            same.iter()
                .map(|c| (c.id, c.sha256.clone()))
                .collect::<Vec<_>>(),
            vec![(other, Some("cd".into())), (id, Some("ab".into()))]
        );
        assert_eq!(same[0].path, Path::new("/x/b.txt"));
        assert_eq!(same[0].mtime_ms, 7);
        assert!(store.same_size("u2", 12 << 20).unwrap().is_empty());
        assert!(store.same_size("u1", 12).unwrap().is_empty());
        let items = store.list("u1").unwrap();
        assert_eq!((items[0].parts_done, items[0].part_count), (1, 3));
        store.set_upload(id, None, None).unwrap();
        assert!(store.parts(id).unwrap().is_empty());
        store
            .restart(id, 3, 8, &PartPlan::Single { size: 3 })
            .unwrap();
        let r = store.record(id).unwrap();
        assert_eq!((r.sha256, r.plan), (None, PartPlan::Single { size: 3 }));
        let s = QueueSettings {
            files_in_flight: 3,
            parts_in_flight: 6,
            bandwidth_limit: 1000,
            paused: true,
            multipart_threshold: Some(1 << 30),
        };
        store.save_settings(&s).unwrap();
        drop(store);
        let store = QueueStore::open(&db).unwrap();
        assert_eq!(store.settings().unwrap(), s);
        store
            .save_settings(&QueueSettings {
                multipart_threshold: None,
                ..s
            })
            .unwrap();
        assert_eq!(store.settings().unwrap().multipart_threshold, None);
        assert!(matches!(
            store.record(99),
            Err(QueueError::Unknown { id: 99 })
        ));
    }

    #[test]
    fn a_first_schema_state_db_is_migrated_keeping_items_and_parts() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        {
            let c = Connection::open(&db).unwrap();
            c.pragma_update(None, "journal_mode", "WAL").unwrap();
            c.pragma_update(None, "foreign_keys", "ON").unwrap();
            c.execute_batch(SCHEMA_V0).unwrap();
            c.execute(
                "INSERT INTO transfers (id, account, path, file_name, content_type, size,
                    mtime_ms, sha256, part_size, part_md5s, upload_id, object_key, state,
                    options, created_at, updated_at)
                 VALUES (4, 'u1', '/x/a.txt', 'a.txt', 'text/plain', 12582912, 9, 'ab',
                    5242880, zeroblob(48), 'up', 'k', 'uploading', '{}', 1, 1)",
                [],
            )
            .unwrap();
            c.execute(
                "INSERT INTO transfer_parts (transfer_id, part_number, etag) VALUES (4, 1, 'e1')",
                [],
            )
            .unwrap();
            c.execute(
                "INSERT INTO queue_settings (key, value) VALUES ('parts_in_flight', '3')",
                [],
            )
            .unwrap();
        }
        let store = QueueStore::open(&db).unwrap();
        let version: i64 = store
            .with(|c| c.query_row("PRAGMA user_version", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let r = store.record(4).unwrap();
        assert_eq!(r.sha256.as_deref(), Some("ab"));
        assert_eq!(r.plan, PartPlan::multipart_with(12 << 20, 5 << 20));
        assert_eq!(store.parts(4).unwrap(), vec![(1, "e1".to_string())]);
        assert_eq!(r.upload_id.as_deref(), Some("up"));
        assert_eq!(store.settings().unwrap().parts_in_flight, 3);
        let items = store.list("u1").unwrap();
        assert_eq!((items[0].parts_done, items[0].part_count), (1, 3));
        // The new schema's rules hold: a NULL SHA-256 is accepted, and parts still go
        // away with their item.
        let id = store
            .insert(
                "u1",
                Path::new("/x/c.txt"),
                "c.txt",
                "text/plain",
                5,
                1,
                &PartPlan::Single { size: 5 },
                None,
                &JobOptions::default(),
                true,
            )
            .unwrap()
            .unwrap();
        assert!(id > 4, "ids are not reused: {id}");
        store
            .with(|c| c.execute("DELETE FROM transfers WHERE id = 4", []))
            .unwrap();
        let left: i64 = store
            .with(|c| c.query_row("SELECT COUNT(*) FROM transfer_parts", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(left, 0, "ON DELETE CASCADE survived the migration");
        drop(store);
        // Opening again changes nothing.
        let store = QueueStore::open(&db).unwrap();
        assert_eq!(store.list("u1").unwrap().len(), 1);
    }
}

//! `state.db`, the one SQLite file the upload queue, the watcher, the library catalog and
//! the download queue share: opening it the same way for all of them (its folder created,
//! WAL, a busy timeout so two processes wait for each other instead of failing, NORMAL
//! sync, foreign keys) and running statements on a store's connection.
//!
//! It owns the connection's setup and locking. It never defines a table (each store owns
//! its schema and migrations and hands them in as a closure) and never decides what a
//! failure means to the user: callers turn a [`DbFailure`] into their own typed error.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The file that could not be opened or used, and SQLite's (or the schema's) reason.
#[derive(Debug, Clone)]
pub struct DbFailure {
    pub path: PathBuf,
    pub reason: String,
}

/// A store's connection to `state.db` (cheap to clone; clones share the connection).
#[derive(Clone)]
pub struct StateDb {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl std::fmt::Debug for StateDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateDb").field("path", &self.path).finish()
    }
}

impl StateDb {
    /// Opens (creating its folder and the file) the database at `path`, then runs
    /// `schema` to create or migrate the caller's tables. Foreign keys are enforced from
    /// then on (not during `schema`, so a migration may rebuild a table).
    pub fn open(
        path: &Path,
        schema: impl FnOnce(&Connection) -> Result<(), String>,
    ) -> Result<Self, DbFailure> {
        let fail = |reason: String| DbFailure {
            path: path.to_path_buf(),
            reason,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
        }
        let conn = Connection::open(path).map_err(|e| fail(e.to_string()))?;
        Self::setup(conn, path, true, schema)
    }

    /// A database in memory (unit tests; forgets everything when dropped).
    pub fn in_memory(
        schema: impl FnOnce(&Connection) -> Result<(), String>,
    ) -> Result<Self, DbFailure> {
        let path = Path::new(":memory:");
        let conn = Connection::open_in_memory().map_err(|e| DbFailure {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Self::setup(conn, path, false, schema)
    }

    fn setup(
        conn: Connection,
        path: &Path,
        wal: bool,
        schema: impl FnOnce(&Connection) -> Result<(), String>,
    ) -> Result<Self, DbFailure> {
        let fail = |reason: String| DbFailure {
            path: path.to_path_buf(),
            reason,
        };
        // First, so that switching to WAL waits for another process too.
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| fail(e.to_string()))?;
        if wal {
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(|e| fail(e.to_string()))?;
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| fail(e.to_string()))?;
        schema(&conn).map_err(fail)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(|e| fail(e.to_string()))?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_path_buf(),
        })
    }

    /// The database file (`:memory:` for one in memory).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the connection; SQLite's errors become a [`DbFailure`] naming the file.
    pub fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, DbFailure> {
        self.with_conn(f).map_err(|e| self.failure(e))
    }

    /// Runs `f` on the connection with the caller's own error type (one caller at a time;
    /// a panic in another caller does not poison it for good).
    pub fn with_conn<T, E>(&self, f: impl FnOnce(&mut Connection) -> Result<T, E>) -> Result<T, E> {
        let mut guard = match self.conn.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(&mut guard)
    }

    /// `e` as a failure of this file.
    pub fn failure(&self, e: impl std::fmt::Display) -> DbFailure {
        DbFailure {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }
}

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_in_wal_with_foreign_keys_and_runs_the_schema_once_per_open() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("nested").join("state.db");
        let schema = |c: &Connection| {
            c.execute_batch("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
                .map_err(|e| e.to_string())
        };
        let db = StateDb::open(&path, schema).unwrap_or_else(|e| panic!("{}", e.reason));
        let (mode, fk): (String, i64) = db
            .with(|c| {
                Ok((
                    c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?,
                    c.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?,
                ))
            })
            .unwrap_or_else(|e| panic!("{}", e.reason));
        assert_eq!((mode.as_str(), fk), ("wal", 1));
        db.with(|c| c.execute("INSERT INTO t VALUES (1)", []))
            .unwrap_or_else(|e| panic!("{}", e.reason));
        // A second connection (another store, or another process) sees the row.
        let other = StateDb::open(&path, schema).unwrap_or_else(|e| panic!("{}", e.reason));
        let n: i64 = other
            .with(|c| c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)))
            .unwrap_or_else(|e| panic!("{}", e.reason));
        assert_eq!(n, 1);
    }

    #[test]
    fn a_schema_or_statement_failure_names_the_file_and_the_reason() {
        let refused = StateDb::in_memory(|_| Err("written by a newer Rohimaya".into()));
        let e = refused
            .err()
            .unwrap_or_else(|| panic!("the schema's refusal was ignored"));
        assert_eq!(e.path, Path::new(":memory:"));
        assert_eq!(e.reason, "written by a newer Rohimaya");
        let db = StateDb::in_memory(|_| Ok(())).unwrap_or_else(|e| panic!("{}", e.reason));
        let e = db
            .with(|c| c.execute("INSERT INTO missing VALUES (1)", []))
            .err()
            .unwrap_or_else(|| panic!("a bad statement succeeded"));
        assert!(e.reason.contains("missing"), "{}", e.reason);
    }
}

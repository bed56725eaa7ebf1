//! [`Catalog`]: the library's tables in `state.db` and every read and write of them.
//!
//! The tables are prefixed `library_` and created with `CREATE TABLE IF NOT EXISTS`, so
//! they live beside the queue's in one file without sharing its schema; the catalog's own
//! schema version is kept in `library_meta` (never in `PRAGMA user_version`, which would
//! be shared). One connection behind a mutex, WAL journal, `synchronous = NORMAL`, like the
//! queue's store; a book and its files are written in one transaction.
//!
//! Books are keyed by job id and remember which account downloaded them, but reading needs
//! no session: listing, searching, positions and playback work offline and signed out.
//! Paths are stored relative to the library root, `/`-separated, so the root can move.
//!
//! It owns the catalog's schema and rows. It never touches library files (see
//! [`super::remove`], [`super::verify`]) and never talks to the network.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use crate::state_db::StateDb;
pub(crate) use crate::state_db::now_ms;
use serde::Serialize;

use super::LibraryError;
use super::layout::{self, BookDirs};

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS library_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS library_books (
    job_id TEXT PRIMARY KEY,
    -- The user id of the account that downloaded it (sync only compares an account's own).
    account TEXT,
    title TEXT NOT NULL,
    author TEXT,
    format TEXT NOT NULL,
    duration_seconds REAL,
    book_dir TEXT NOT NULL,
    chapters_dir TEXT,
    -- 'available' or 'only_local' (the server no longer has it).
    server_state TEXT NOT NULL DEFAULT 'available',
    server_state_at INTEGER NOT NULL,
    downloaded_at INTEGER NOT NULL,
    position_track INTEGER,
    position_seconds REAL,
    position_updated_at INTEGER
);
CREATE TABLE IF NOT EXISTS library_files (
    job_id TEXT NOT NULL REFERENCES library_books(job_id) ON DELETE CASCADE,
    -- 0 for the whole-book file, else the track's 1-based number.
    track_index INTEGER NOT NULL,
    track_id TEXT,
    title TEXT,
    duration_seconds REAL,
    rel_path TEXT NOT NULL,
    folded_path TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    md5 TEXT,
    etag TEXT,
    downloaded_at INTEGER NOT NULL,
    PRIMARY KEY (job_id, track_index)
);
CREATE TABLE IF NOT EXISTS library_dirs (
    -- layout::fold_key(rel_dir): unique, so two books never share a folder, even on a
    -- case-insensitive file system.
    folded TEXT PRIMARY KEY,
    rel_dir TEXT NOT NULL,
    job_id TEXT NOT NULL,
    -- 'book' or 'chapters'.
    kind TEXT NOT NULL,
    claimed_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS library_dirs_by_job ON library_dirs (job_id);
";

/// Whether the server still has a book.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(test, derive(ts_rs::TS))]
pub enum ServerState {
    /// The job is listed and its audio can be downloaded again.
    Available,
    /// The job is gone from the server (deleted, or its audio expired): this computer has
    /// the only copy. Never removed by a sync.
    OnlyLocal,
}

impl ServerState {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::Available => "available",
            ServerState::OnlyLocal => "only_local",
        }
    }

    fn parse(s: &str) -> Self {
        if s == "only_local" {
            ServerState::OnlyLocal
        } else {
            ServerState::Available
        }
    }
}

/// Which file of a book: the whole-book file or a track (1-based number). Rendered in
/// playback URLs as `book` or `tracks/{n}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "number")]
#[cfg_attr(test, derive(ts_rs::TS))]
pub enum FileRef {
    Book,
    Track(u32),
}

impl FileRef {
    fn index(self) -> i64 {
        match self {
            FileRef::Book => 0,
            FileRef::Track(n) => i64::from(n),
        }
    }

    fn from_index(i: i64) -> Self {
        if i <= 0 {
            FileRef::Book
        } else {
            FileRef::Track(u32::try_from(i).unwrap_or(u32::MAX))
        }
    }
}

impl std::fmt::Display for FileRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileRef::Book => f.write_str("book"),
            FileRef::Track(n) => write!(f, "tracks/{n}"),
        }
    }
}

/// One downloaded file as it was verified when it landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct FileRecord {
    /// Relative to the library root, `/`-separated.
    pub rel_path: String,
    pub size: u64,
    /// Lower-case hex MD5 of the content, when the download computed it.
    pub md5: Option<String>,
    /// The object's ETag as the server sent it (quotes stripped).
    pub etag: Option<String>,
}

impl FileRecord {
    /// The MD5 the file must have: `md5`, else the ETag when it is a plain MD5 (a single
    /// PUT; a multipart ETag `...-N` is not one).
    pub fn expected_md5(&self) -> Option<String> {
        if let Some(m) = &self.md5 {
            return Some(m.to_ascii_lowercase());
        }
        let e = self.etag.as_deref()?.trim_matches('"');
        (e.len() == 32 && e.chars().all(|c| c.is_ascii_hexdigit())).then(|| e.to_ascii_lowercase())
    }
}

/// A chapter track of a book.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct TrackRecord {
    /// 1-based play order; unique within the book.
    pub number: u32,
    /// The server's track id (to ask for its download URL again).
    pub track_id: Option<String>,
    pub title: String,
    pub duration_seconds: Option<f64>,
    pub file: FileRecord,
}

/// A downloaded book, as the download engine hands it to [`Catalog::upsert_book`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewBook {
    pub job_id: String,
    /// The user id of the signed-in account that downloaded it.
    pub account: Option<String>,
    pub title: String,
    pub author: Option<String>,
    /// The audio format / extension (`mp3`, `wav`, ...).
    pub format: String,
    pub duration_seconds: Option<f64>,
    /// From [`BookDirs`] (see [`super::Library::plan_book`]).
    pub book_dir: String,
    pub chapters_dir: Option<String>,
    /// Must lie directly in `book_dir`.
    pub book_file: Option<FileRecord>,
    /// Each must lie directly in `chapters_dir`.
    pub tracks: Vec<TrackRecord>,
}

/// A playback position: which file and how far into it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Position {
    /// `None`: the whole-book file; `Some(n)`: track `n`.
    pub track: Option<u32>,
    pub seconds: f64,
    /// Milliseconds since the Unix epoch.
    pub updated_at: i64,
}

/// A book in the library, with its files.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Book {
    pub job_id: String,
    pub account: Option<String>,
    pub title: String,
    pub author: Option<String>,
    pub format: String,
    pub duration_seconds: Option<f64>,
    pub book_dir: String,
    pub chapters_dir: Option<String>,
    pub book_file: Option<FileRecord>,
    pub tracks: Vec<TrackRecord>,
    /// Sum of the catalogued files' sizes.
    pub size_bytes: u64,
    pub server_state: ServerState,
    /// When `server_state` last changed (ms since the Unix epoch).
    pub server_state_at: i64,
    /// When the newest file landed (ms since the Unix epoch).
    pub downloaded_at: i64,
    pub position: Option<Position>,
}

impl Book {
    /// Every catalogued file with its reference, the whole book first.
    pub fn files(&self) -> Vec<(FileRef, &FileRecord)> {
        let mut v: Vec<(FileRef, &FileRecord)> = Vec::new();
        if let Some(f) = &self.book_file {
            v.push((FileRef::Book, f));
        }
        v.extend(
            self.tracks
                .iter()
                .map(|t| (FileRef::Track(t.number), &t.file)),
        );
        v
    }

    pub fn file(&self, which: FileRef) -> Option<&FileRecord> {
        match which {
            FileRef::Book => self.book_file.as_ref(),
            FileRef::Track(n) => self.tracks.iter().find(|t| t.number == n).map(|t| &t.file),
        }
    }
}

/// What the library holds, for `rohimaya library` and the app's storage view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct LibraryStats {
    pub books: u64,
    pub files: u64,
    /// Bytes of the catalogued files (as recorded when they landed).
    pub bytes: u64,
    pub only_local: u64,
}

#[derive(Clone)]
pub struct Catalog {
    db: StateDb,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("path", &self.db.path())
            .finish()
    }
}

/// Records the library schema's version in a new catalog; refuses one a newer Rohimaya
/// wrote.
fn check_schema_version(c: &Connection) -> Result<(), String> {
    let version: Option<String> = c
        .query_row(
            "SELECT value FROM library_meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| e.to_string())?;
    match version.and_then(|v| v.parse::<i64>().ok()) {
        None => {
            c.execute(
                "INSERT OR REPLACE INTO library_meta (key, value) VALUES ('schema_version', ?1)",
                [SCHEMA_VERSION.to_string()],
            )
            .map_err(|e| e.to_string())?;
            Ok(())
        }
        Some(v) if v > SCHEMA_VERSION => Err(format!(
            "it was written by a newer Rohimaya (library schema {v}); update Rohimaya"
        )),
        Some(_) => Ok(()),
    }
}

impl Catalog {
    /// Opens (creating) the catalog in `state.db` at `path`.
    pub fn open(path: &Path) -> Result<Self, LibraryError> {
        let db = StateDb::open(path, |c| {
            c.execute_batch(SCHEMA).map_err(|e| e.to_string())?;
            check_schema_version(c)
        })?;
        Ok(Self { db })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        self.db.path()
    }

    fn db_err(&self, e: rusqlite::Error) -> LibraryError {
        self.db.failure(e).into()
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, LibraryError>,
    ) -> Result<T, LibraryError> {
        self.db.with_conn(f)
    }

    fn tx<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, LibraryError>,
    ) -> Result<T, LibraryError> {
        self.with(|c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| self.db_err(e))?;
            let out = f(&tx)?;
            tx.commit().map_err(|e| self.db_err(e))?;
            Ok(out)
        })
    }

    /// The folders of `job_id`: the ones it already claimed, else the first free
    /// candidate `book_dirs(n)` (n = 1, 2, ...) that no other book claimed (compared
    /// case-insensitively) and for which `free_on_disk` holds. Claims are stored, so a
    /// download that resumes after a restart gets the same folders.
    pub fn claim_dirs(
        &self,
        job_id: &str,
        book_dirs: impl Fn(u32) -> BookDirs,
        free_on_disk: impl Fn(&BookDirs) -> bool,
    ) -> Result<BookDirs, LibraryError> {
        self.tx(|tx| {
            if let Some(d) = claimed(tx, job_id).map_err(|e| self.db_err(e))? {
                return Ok(d);
            }
            for n in 1..=10_000u32 {
                let d = book_dirs(n);
                let taken: i64 = tx
                    .query_row(
                        "SELECT COUNT(*) FROM library_dirs WHERE folded IN (?1, ?2)",
                        params![
                            layout::fold_key(&d.book_dir),
                            layout::fold_key(&d.chapters_dir)
                        ],
                        |r| r.get(0),
                    )
                    .map_err(|e| self.db_err(e))?;
                if taken > 0 || !free_on_disk(&d) {
                    continue;
                }
                let now = now_ms();
                for (rel, kind) in [(&d.book_dir, "book"), (&d.chapters_dir, "chapters")] {
                    tx.execute(
                        "INSERT INTO library_dirs (folded, rel_dir, job_id, kind, claimed_at)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![layout::fold_key(rel), rel, job_id, kind, now],
                    )
                    .map_err(|e| self.db_err(e))?;
                }
                return Ok(d);
            }
            Err(LibraryError::NoFreeName {
                job_id: job_id.to_string(),
            })
        })
    }

    /// The folders `job_id` claimed, if any.
    pub fn claimed_dirs(&self, job_id: &str) -> Result<Option<BookDirs>, LibraryError> {
        self.with(|c| claimed(c, job_id).map_err(|e| self.db_err(e)))
    }

    /// Forgets `job_id`'s folder claims when it has no book (a download that was
    /// cancelled before anything landed). A catalogued book keeps its claims.
    pub fn release_dirs(&self, job_id: &str) -> Result<(), LibraryError> {
        self.tx(|tx| {
            tx.execute(
                "DELETE FROM library_dirs WHERE job_id = ?1
                   AND NOT EXISTS (SELECT 1 FROM library_books WHERE job_id = ?1)",
                [job_id],
            )
            .map_err(|e| self.db_err(e))?;
            Ok(())
        })
    }

    /// Inserts or replaces a downloaded book and all its file rows in one transaction.
    /// The playback position of a book already catalogued is kept, and so is its folder
    /// claim; the server state becomes `available` (it was just downloaded).
    pub fn upsert_book(&self, book: &NewBook) -> Result<(), LibraryError> {
        self.write_book(book, true)
    }

    /// Like [`Catalog::upsert_book`], but keeps the book's other catalogued files: for a
    /// download that adds files to a book already in the library (the tracks after the
    /// whole book, or the other way round). Files in `book` replace the rows of the same
    /// file (whole book, or track number).
    pub fn merge_book(&self, book: &NewBook) -> Result<(), LibraryError> {
        self.write_book(book, false)
    }

    fn write_book(&self, book: &NewBook, replace: bool) -> Result<(), LibraryError> {
        check_new_book(book)?;
        let now = now_ms();
        self.tx(|tx| {
            tx.execute(
                "INSERT INTO library_books (job_id, account, title, author, format,
                    duration_seconds, book_dir, chapters_dir, server_state, server_state_at,
                    downloaded_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'available', ?9, ?9)
                 ON CONFLICT(job_id) DO UPDATE SET account = excluded.account,
                    title = excluded.title, author = excluded.author, format = excluded.format,
                    duration_seconds = excluded.duration_seconds, book_dir = excluded.book_dir,
                    chapters_dir = excluded.chapters_dir, server_state = 'available',
                    server_state_at = excluded.server_state_at,
                    downloaded_at = excluded.downloaded_at",
                params![
                    book.job_id,
                    book.account,
                    book.title,
                    book.author,
                    book.format,
                    book.duration_seconds,
                    book.book_dir,
                    book.chapters_dir,
                    now
                ],
            )
            .map_err(|e| self.db_err(e))?;
            if replace {
                tx.execute(
                    "DELETE FROM library_files WHERE job_id = ?1",
                    [&book.job_id],
                )
                .map_err(|e| self.db_err(e))?;
            } else {
                let which = book
                    .book_file
                    .iter()
                    .map(|_| FileRef::Book)
                    .chain(book.tracks.iter().map(|t| FileRef::Track(t.number)));
                for w in which {
                    tx.execute(
                        "DELETE FROM library_files WHERE job_id = ?1 AND track_index = ?2",
                        params![book.job_id, w.index()],
                    )
                    .map_err(|e| self.db_err(e))?;
                }
            }
            if let Some(f) = &book.book_file {
                insert_file(tx, &book.job_id, FileRef::Book, None, None, None, f, now)
                    .map_err(|e| self.file_conflict(e, &book.job_id, f))?;
            }
            for t in &book.tracks {
                insert_file(
                    tx,
                    &book.job_id,
                    FileRef::Track(t.number),
                    t.track_id.as_deref(),
                    Some(&t.title),
                    t.duration_seconds,
                    &t.file,
                    now,
                )
                .map_err(|e| self.file_conflict(e, &book.job_id, &t.file))?;
            }
            // Claim the folders too (a book recorded without plan_book, e.g. an import).
            for (rel, kind) in [
                (Some(&book.book_dir), "book"),
                (book.chapters_dir.as_ref(), "chapters"),
            ] {
                let Some(rel) = rel else { continue };
                let owner: Option<String> = tx
                    .query_row(
                        "SELECT job_id FROM library_dirs WHERE folded = ?1",
                        [layout::fold_key(rel)],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(|e| self.db_err(e))?;
                match owner {
                    Some(o) if o != book.job_id => {
                        return Err(LibraryError::InvalidRecord {
                            job_id: book.job_id.clone(),
                            reason: format!("the folder {rel} belongs to book {o}"),
                        });
                    }
                    Some(_) => {}
                    None => {
                        tx.execute(
                            "INSERT INTO library_dirs (folded, rel_dir, job_id, kind, claimed_at)
                             VALUES (?1, ?2, ?3, ?4, ?5)",
                            params![layout::fold_key(rel), rel, book.job_id, kind, now],
                        )
                        .map_err(|e| self.db_err(e))?;
                    }
                }
            }
            Ok(())
        })
    }

    fn file_conflict(&self, e: rusqlite::Error, job_id: &str, f: &FileRecord) -> LibraryError {
        if let rusqlite::Error::SqliteFailure(err, _) = &e
            && err.code == rusqlite::ErrorCode::ConstraintViolation
        {
            return LibraryError::InvalidRecord {
                job_id: job_id.to_string(),
                reason: format!("{} is listed twice or belongs to another book", f.rel_path),
            };
        }
        self.db_err(e)
    }

    /// Replaces one file's record after it was downloaded again (repair).
    pub fn update_file(
        &self,
        job_id: &str,
        which: FileRef,
        file: &FileRecord,
    ) -> Result<(), LibraryError> {
        layout::join_relative(Path::new("/"), &file.rel_path)?;
        let n = self.tx(|tx| {
            tx.execute(
                "UPDATE library_files SET rel_path = ?3, folded_path = ?4, size = ?5, md5 = ?6,
                    etag = ?7, downloaded_at = ?8 WHERE job_id = ?1 AND track_index = ?2",
                params![
                    job_id,
                    which.index(),
                    file.rel_path,
                    layout::fold_key(&file.rel_path),
                    file.size as i64,
                    file.md5,
                    file.etag,
                    now_ms()
                ],
            )
            .map_err(|e| self.file_conflict(e, job_id, file))
        })?;
        if n == 0 {
            return Err(LibraryError::NotInLibrary {
                job_id: format!("{job_id} ({which})"),
            });
        }
        Ok(())
    }

    /// Every book, by author then title.
    pub fn list(&self) -> Result<Vec<Book>, LibraryError> {
        self.with(|c| load_books(c, None).map_err(|e| self.db_err(e)))
    }

    /// The books whose title or author contains `query`, ignoring case (Unicode-aware).
    pub fn search(&self, query: &str) -> Result<Vec<Book>, LibraryError> {
        let q = layout::fold_key(query.trim());
        Ok(self
            .list()?
            .into_iter()
            .filter(|b| {
                layout::fold_key(&b.title).contains(&q)
                    || b.author
                        .as_deref()
                        .is_some_and(|a| layout::fold_key(a).contains(&q))
            })
            .collect())
    }

    /// One book, or [`LibraryError::NotInLibrary`].
    pub fn show(&self, job_id: &str) -> Result<Book, LibraryError> {
        self.get(job_id)?.ok_or_else(|| LibraryError::NotInLibrary {
            job_id: job_id.to_string(),
        })
    }

    /// One book, if catalogued.
    pub fn get(&self, job_id: &str) -> Result<Option<Book>, LibraryError> {
        self.with(|c| {
            load_books(c, Some(job_id))
                .map(|v| v.into_iter().next())
                .map_err(|e| self.db_err(e))
        })
    }

    /// One catalogued file of a book (what the playback server serves).
    pub fn file(&self, job_id: &str, which: FileRef) -> Result<Option<FileRecord>, LibraryError> {
        self.with(|c| {
            c.query_row(
                "SELECT rel_path, size, md5, etag FROM library_files
                 WHERE job_id = ?1 AND track_index = ?2",
                params![job_id, which.index()],
                |r| {
                    Ok(FileRecord {
                        rel_path: r.get(0)?,
                        size: r.get::<_, i64>(1)? as u64,
                        md5: r.get(2)?,
                        etag: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.db_err(e))
        })
    }

    /// Saves where the listener is. `seconds` must be finite and not negative; `track`
    /// must name a catalogued track (or `None` for the whole-book file).
    pub fn set_position(
        &self,
        job_id: &str,
        track: Option<u32>,
        seconds: f64,
    ) -> Result<Position, LibraryError> {
        if !seconds.is_finite() || seconds < 0.0 {
            return Err(LibraryError::InvalidRecord {
                job_id: job_id.to_string(),
                reason: format!("{seconds} is not a playback position in seconds"),
            });
        }
        let which = track.map(FileRef::Track).unwrap_or(FileRef::Book);
        if self.file(job_id, which)?.is_none() {
            self.show(job_id)?;
            return Err(LibraryError::InvalidRecord {
                job_id: job_id.to_string(),
                reason: format!("the book has no {which} file"),
            });
        }
        let now = now_ms();
        self.with(|c| {
            c.execute(
                "UPDATE library_books SET position_track = ?2, position_seconds = ?3,
                    position_updated_at = ?4 WHERE job_id = ?1",
                params![job_id, track, seconds, now],
            )
            .map_err(|e| self.db_err(e))
        })?;
        Ok(Position {
            track,
            seconds,
            updated_at: now,
        })
    }

    pub fn position(&self, job_id: &str) -> Result<Option<Position>, LibraryError> {
        Ok(self.show(job_id)?.position)
    }

    /// Records whether the server still has the book. Returns false if it is not
    /// catalogued.
    pub fn set_server_state(&self, job_id: &str, state: ServerState) -> Result<bool, LibraryError> {
        self.with(|c| {
            c.execute(
                "UPDATE library_books SET server_state = ?2, server_state_at = ?3
                 WHERE job_id = ?1 AND server_state != ?2",
                params![job_id, state.as_str(), now_ms()],
            )
            .map(|n| n > 0)
            .map_err(|e| self.db_err(e))
        })
    }

    /// Marks a book "only on this computer".
    pub fn mark_only_local(&self, job_id: &str) -> Result<bool, LibraryError> {
        self.set_server_state(job_id, ServerState::OnlyLocal)
    }

    /// Deletes a book's rows and folder claims (its files are [`super::remove`]'s job).
    pub fn remove_rows(&self, job_id: &str) -> Result<bool, LibraryError> {
        self.tx(|tx| {
            tx.execute("DELETE FROM library_files WHERE job_id = ?1", [job_id])
                .map_err(|e| self.db_err(e))?;
            let n = tx
                .execute("DELETE FROM library_books WHERE job_id = ?1", [job_id])
                .map_err(|e| self.db_err(e))?;
            tx.execute("DELETE FROM library_dirs WHERE job_id = ?1", [job_id])
                .map_err(|e| self.db_err(e))?;
            Ok(n > 0)
        })
    }

    /// Counts and bytes of what is catalogued.
    pub fn stats(&self) -> Result<LibraryStats, LibraryError> {
        self.with(|c| {
            c.query_row(
                "SELECT (SELECT COUNT(*) FROM library_books),
                        (SELECT COUNT(*) FROM library_files),
                        (SELECT COALESCE(SUM(size), 0) FROM library_files),
                        (SELECT COUNT(*) FROM library_books WHERE server_state = 'only_local')",
                [],
                |r| {
                    Ok(LibraryStats {
                        books: r.get::<_, i64>(0)? as u64,
                        files: r.get::<_, i64>(1)? as u64,
                        bytes: r.get::<_, i64>(2)? as u64,
                        only_local: r.get::<_, i64>(3)? as u64,
                    })
                },
            )
            .map_err(|e| self.db_err(e))
        })
    }
}

fn check_new_book(book: &NewBook) -> Result<(), LibraryError> {
    let invalid = |reason: String| LibraryError::InvalidRecord {
        job_id: book.job_id.clone(),
        reason,
    };
    if book.job_id.trim().is_empty() {
        return Err(invalid("the job id is empty".into()));
    }
    let root = Path::new("/");
    layout::join_relative(root, &book.book_dir)?;
    if let Some(d) = &book.chapters_dir {
        layout::join_relative(root, d)?;
    }
    let in_dir = |f: &FileRecord, dir: Option<&String>| -> Result<(), LibraryError> {
        layout::join_relative(root, &f.rel_path)?;
        let ok = dir.is_some_and(|d| {
            f.rel_path
                .strip_prefix(d.as_str())
                .and_then(|r| r.strip_prefix('/'))
                .is_some_and(|name| !name.contains('/'))
        });
        if ok {
            Ok(())
        } else {
            Err(invalid(format!(
                "{} is not directly inside {}",
                f.rel_path,
                dir.map(String::as_str).unwrap_or("(no chapters folder)")
            )))
        }
    };
    if let Some(f) = &book.book_file {
        in_dir(f, Some(&book.book_dir))?;
    }
    let mut numbers = std::collections::HashSet::new();
    for t in &book.tracks {
        if t.number == 0 || !numbers.insert(t.number) {
            return Err(invalid(format!(
                "track number {} is zero or repeated",
                t.number
            )));
        }
        in_dir(&t.file, book.chapters_dir.as_ref())?;
    }
    if book.book_file.is_none() && book.tracks.is_empty() {
        return Err(invalid("a book needs at least one file".into()));
    }
    Ok(())
}

fn claimed(c: &Connection, job_id: &str) -> rusqlite::Result<Option<BookDirs>> {
    let mut st = c.prepare("SELECT rel_dir, kind FROM library_dirs WHERE job_id = ?1")?;
    let rows: Vec<(String, String)> = st
        .query_map([job_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let book = rows
        .iter()
        .find(|(_, k)| k == "book")
        .map(|(d, _)| d.clone());
    let chapters = rows
        .iter()
        .find(|(_, k)| k == "chapters")
        .map(|(d, _)| d.clone());
    Ok(match (book, chapters) {
        (Some(book_dir), Some(chapters_dir)) => Some(BookDirs {
            book_dir,
            chapters_dir,
        }),
        (Some(book_dir), None) => {
            let (parent, name) = book_dir.rsplit_once('/').unwrap_or(("", &book_dir));
            let chapters_dir = format!("{parent}/{}", layout::chapters_dir_name(name));
            Some(BookDirs {
                book_dir,
                chapters_dir,
            })
        }
        _ => None,
    })
}

#[allow(clippy::too_many_arguments)]
fn insert_file(
    tx: &Transaction<'_>,
    job_id: &str,
    which: FileRef,
    track_id: Option<&str>,
    title: Option<&str>,
    duration: Option<f64>,
    f: &FileRecord,
    now: i64,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO library_files (job_id, track_index, track_id, title, duration_seconds,
            rel_path, folded_path, size, md5, etag, downloaded_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            job_id,
            which.index(),
            track_id,
            title,
            duration,
            f.rel_path,
            layout::fold_key(&f.rel_path),
            f.size as i64,
            f.md5,
            f.etag,
            now
        ],
    )
    .map(|_| ())
}

fn load_books(c: &Connection, only: Option<&str>) -> rusqlite::Result<Vec<Book>> {
    let mut st = c.prepare(
        "SELECT job_id, account, title, author, format, duration_seconds, book_dir,
                chapters_dir, server_state, server_state_at, downloaded_at, position_track,
                position_seconds, position_updated_at
         FROM library_books WHERE (?1 IS NULL OR job_id = ?1)
         ORDER BY lower(COALESCE(author, '')), lower(title), job_id",
    )?;
    let mut books: Vec<Book> = st
        .query_map([only], |r| {
            let position_seconds: Option<f64> = r.get(12)?;
            let position = position_seconds.map(|seconds| Position {
                track: r.get::<_, Option<u32>>(11).ok().flatten(),
                seconds,
                updated_at: r.get::<_, Option<i64>>(13).ok().flatten().unwrap_or(0),
            });
            Ok(Book {
                job_id: r.get(0)?,
                account: r.get(1)?,
                title: r.get(2)?,
                author: r.get(3)?,
                format: r.get(4)?,
                duration_seconds: r.get(5)?,
                book_dir: r.get(6)?,
                chapters_dir: r.get(7)?,
                book_file: None,
                tracks: Vec::new(),
                size_bytes: 0,
                server_state: ServerState::parse(&r.get::<_, String>(8)?),
                server_state_at: r.get(9)?,
                downloaded_at: r.get(10)?,
                position,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut st = c.prepare(
        "SELECT job_id, track_index, track_id, title, duration_seconds, rel_path, size, md5,
                etag, downloaded_at
         FROM library_files WHERE (?1 IS NULL OR job_id = ?1) ORDER BY job_id, track_index",
    )?;
    let mut rows = st.query([only])?;
    let index: std::collections::HashMap<String, usize> = books
        .iter()
        .enumerate()
        .map(|(i, b)| (b.job_id.clone(), i))
        .collect();
    while let Some(r) = rows.next()? {
        let job_id: String = r.get(0)?;
        let Some(&i) = index.get(&job_id) else {
            continue;
        };
        let file = FileRecord {
            rel_path: r.get(5)?,
            size: r.get::<_, i64>(6)? as u64,
            md5: r.get(7)?,
            etag: r.get(8)?,
        };
        let book = &mut books[i];
        book.size_bytes += file.size;
        book.downloaded_at = book.downloaded_at.max(r.get(9)?);
        match FileRef::from_index(r.get(1)?) {
            FileRef::Book => book.book_file = Some(file),
            FileRef::Track(number) => book.tracks.push(TrackRecord {
                number,
                track_id: r.get(2)?,
                title: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                duration_seconds: r.get(4)?,
                file,
            }),
        }
    }
    Ok(books)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample(job_id: &str, title: &str, author: &str) -> NewBook {
        let dirs = layout::book_dirs(Some(author), title, 1);
        NewBook {
            job_id: job_id.into(),
            account: Some("u1".into()),
            title: title.into(),
            author: Some(author.into()),
            format: "mp3".into(),
            duration_seconds: Some(61.5),
            book_file: Some(FileRecord {
                rel_path: format!("{}/{}", dirs.book_dir, layout::book_file_name(title, "mp3")),
                size: 100,
                md5: Some("0123456789abcdef0123456789abcdef".into()),
                etag: None,
            }),
            tracks: (1..=2)
                .map(|n| TrackRecord {
                    number: n,
                    track_id: Some(format!("t{n}")),
                    title: format!("Chapter {n}"),
                    duration_seconds: Some(30.0),
                    file: FileRecord {
                        rel_path: format!(
                            "{}/{}",
                            dirs.chapters_dir,
                            layout::track_file_name(n, 2, &format!("Chapter {n}"), None, "mp3")
                        ),
                        size: 10 * u64::from(n),
                        md5: None,
                        etag: Some(format!("\"{}\"", "a".repeat(32))),
                    },
                })
                .collect(),
            book_dir: dirs.book_dir,
            chapters_dir: Some(dirs.chapters_dir),
        }
    }

    #[test]
    fn books_round_trip_with_positions_states_and_stats() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let cat = Catalog::open(&db).unwrap();
        let a = sample("job-a", "Zebra Days", "Émile Ødegaard");
        let b = sample("job-b", "apple pie", "Bea");
        cat.upsert_book(&a).unwrap();
        cat.upsert_book(&b).unwrap();
        let list = cat.list().unwrap();
        assert_eq!(
            list.iter().map(|b| b.job_id.as_str()).collect::<Vec<_>>(),
            ["job-b", "job-a"]
        );
        let got = cat.show("job-a").unwrap();
        assert_eq!(got.book_file, a.book_file);
        assert_eq!(got.tracks, a.tracks);
        assert_eq!(got.size_bytes, 130);
        assert_eq!(got.server_state, ServerState::Available);
        assert_eq!(got.position, None);
        assert_eq!(got.files().len(), 3);
        assert_eq!(got.tracks[1].file.expected_md5(), Some("a".repeat(32)));

        assert_eq!(cat.search("ødeg").unwrap().len(), 1);
        assert_eq!(cat.search("ØDEG").unwrap()[0].job_id, "job-a");
        assert_eq!(cat.search("APPLE").unwrap()[0].job_id, "job-b");
        assert_eq!(cat.search("").unwrap().len(), 2);
        assert!(cat.search("nothing").unwrap().is_empty());

        let p = cat.set_position("job-a", Some(2), 12.5).unwrap();
        assert_eq!((p.track, p.seconds), (Some(2), 12.5));
        assert!(cat.set_position("job-a", Some(9), 1.0).is_err());
        assert!(cat.set_position("job-a", None, f64::NAN).is_err());
        assert!(matches!(
            cat.set_position("nope", None, 1.0),
            Err(LibraryError::NotInLibrary { .. })
        ));
        // Re-downloading keeps the position.
        cat.upsert_book(&a).unwrap();
        assert_eq!(
            cat.position("job-a").unwrap().map(|p| p.seconds),
            Some(12.5)
        );

        assert!(cat.mark_only_local("job-a").unwrap());
        assert!(!cat.mark_only_local("job-a").unwrap());
        assert!(!cat.mark_only_local("nope").unwrap());
        assert_eq!(
            cat.show("job-a").unwrap().server_state,
            ServerState::OnlyLocal
        );
        let s = cat.stats().unwrap();
        assert_eq!(
            s,
            LibraryStats {
                books: 2,
                files: 6,
                bytes: 260,
                only_local: 1
            }
        );
        // Survives a reopen.
        drop(cat);
        let cat = Catalog::open(&db).unwrap();
        assert_eq!(
            cat.show("job-a").unwrap().server_state,
            ServerState::OnlyLocal
        );
        // A new download makes it available again.
        cat.upsert_book(&a).unwrap();
        assert_eq!(
            cat.show("job-a").unwrap().server_state,
            ServerState::Available
        );

        let f = FileRecord {
            size: 101,
            ..a.book_file.clone().unwrap()
        };
        cat.update_file("job-a", FileRef::Book, &f).unwrap();
        assert_eq!(cat.file("job-a", FileRef::Book).unwrap().unwrap().size, 101);
        assert!(cat.update_file("job-a", FileRef::Track(7), &f).is_err());

        // Merging adds files and keeps the others; upserting replaces them all.
        let mut only_book = a.clone();
        only_book.tracks.clear();
        cat.merge_book(&only_book).unwrap();
        assert_eq!(cat.show("job-a").unwrap().files().len(), 3);
        let mut one_track = a.clone();
        one_track.book_file = None;
        one_track.tracks.truncate(1);
        one_track.tracks[0].file.size = 11;
        cat.merge_book(&one_track).unwrap();
        let merged = cat.show("job-a").unwrap();
        assert_eq!((merged.files().len(), merged.tracks[0].file.size), (3, 11));
        cat.upsert_book(&only_book).unwrap();
        assert_eq!(cat.show("job-a").unwrap().files().len(), 1);

        assert!(cat.remove_rows("job-a").unwrap());
        assert!(!cat.remove_rows("job-a").unwrap());
        assert!(matches!(
            cat.show("job-a"),
            Err(LibraryError::NotInLibrary { .. })
        ));
        assert_eq!(cat.stats().unwrap().books, 1);
    }

    #[test]
    fn shares_state_db_with_the_queue_in_either_order() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let queue = crate::queue::QueueStore::open(&db).unwrap();
        let cat = Catalog::open(&db).unwrap();
        cat.upsert_book(&sample("j", "T", "A")).unwrap();
        let mut s = queue.settings().unwrap();
        s.paused = true;
        queue.save_settings(&s).unwrap();
        drop((queue, cat));
        let cat = Catalog::open(&db).unwrap();
        let queue = crate::queue::QueueStore::open(&db).unwrap();
        assert!(queue.settings().unwrap().paused);
        assert_eq!(cat.list().unwrap().len(), 1);
        // The catalog leaves the file's user_version to the queue, which versions its
        // own schema with it: the same number as in a file the queue has alone.
        let version = |path: &std::path::Path| -> i64 {
            rusqlite::Connection::open(path)
                .unwrap()
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap()
        };
        let alone = dir.path().join("queue-only.db");
        drop(crate::queue::QueueStore::open(&alone).unwrap());
        assert_eq!(
            version(&db),
            version(&alone),
            "the shared user_version is left alone"
        );
    }

    #[test]
    fn bad_records_are_refused_whole() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(&dir.path().join("state.db")).unwrap();
        let mut bad = sample("j", "T", "A");
        bad.tracks[1].file.rel_path = "A/T (Chapters)/../../../etc/passwd".into();
        assert!(cat.upsert_book(&bad).is_err());
        let mut bad = sample("j", "T", "A");
        bad.book_file.as_mut().unwrap().rel_path = "Other/x.mp3".into();
        assert!(cat.upsert_book(&bad).is_err());
        let mut bad = sample("j", "T", "A");
        bad.tracks[1].number = 1;
        assert!(cat.upsert_book(&bad).is_err());
        assert!(cat.list().unwrap().is_empty());
        // Two books may not share a folder, whatever the case.
        cat.upsert_book(&sample("j1", "T", "A")).unwrap();
        let err = cat.upsert_book(&sample("j2", "t", "a")).unwrap_err();
        assert!(matches!(err, LibraryError::InvalidRecord { .. }), "{err}");
        assert_eq!(cat.list().unwrap().len(), 1);
    }

    #[test]
    fn folder_claims_are_unique_case_insensitive_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(&dir.path().join("state.db")).unwrap();
        let d1 = cat
            .claim_dirs(
                "j1",
                |n| layout::book_dirs(Some("Ann"), "Book", n),
                |_| true,
            )
            .unwrap();
        assert_eq!(d1.book_dir, "Ann/Book");
        let d2 = cat
            .claim_dirs(
                "j2",
                |n| layout::book_dirs(Some("ANN"), "book", n),
                |_| true,
            )
            .unwrap();
        assert_eq!(d2.book_dir, "ANN/book (2)");
        assert_eq!(d2.chapters_dir, "ANN/book (2) (Chapters)");
        // Stable for the same job, whatever the title says now.
        let again = cat
            .claim_dirs("j1", |n| layout::book_dirs(Some("X"), "Y", n), |_| true)
            .unwrap();
        assert_eq!(again, d1);
        // A folder that exists on disk but is not ours is skipped.
        let d3 = cat
            .claim_dirs(
                "j3",
                |n| layout::book_dirs(Some("Ann"), "Book", n),
                |d| d.book_dir != "Ann/Book (3)",
            )
            .unwrap();
        assert_eq!(d3.book_dir, "Ann/Book (4)");
        cat.release_dirs("j3").unwrap();
        assert_eq!(cat.claimed_dirs("j3").unwrap(), None);
        let mut b = sample("j1", "Book", "Ann");
        b.book_dir = d1.book_dir.clone();
        b.chapters_dir = Some(d1.chapters_dir.clone());
        b.book_file.as_mut().unwrap().rel_path = format!("{}/Book.mp3", d1.book_dir);
        for t in &mut b.tracks {
            t.file.rel_path = format!("{}/{}.mp3", d1.chapters_dir, t.number);
        }
        cat.upsert_book(&b).unwrap();
        cat.release_dirs("j1").unwrap();
        assert_eq!(cat.claimed_dirs("j1").unwrap(), Some(d1));
    }
}

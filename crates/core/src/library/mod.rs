//! The offline library: every finished audiobook on disk, whole, playable without a
//! network or a session.
//!
//! - [`layout`]: where files go (`{Author}/{Title}/` and `{Author}/{Title} (Chapters)/`)
//!   and how server-provided names become safe path components; the inside-the-root proof;
//! - [`catalog`]: [`Catalog`], the `library_*` tables in `state.db`: books, files, folder
//!   claims, playback positions, server state;
//! - [`verify`]: does the disk agree with the catalog (missing, changed, stray files), and
//!   the repair plan;
//! - [`remove`]: deletes a book's catalogued files (never anything outside the root) and
//!   its rows;
//! - [`sync`]: pure planning of auto-download and "only on this computer";
//! - [`media`]: [`MediaServer`], the loopback playback server for the app's `<audio>`.
//!
//! [`Library`] ties a root folder to a catalog for the shells. This module owns the
//! library's files and rows. It never talks to the network: downloading is the transfer
//! engine's job, which asks [`Library::plan_book`] where to write and hands the result to
//! [`Catalog::upsert_book`].

pub mod catalog;
pub mod layout;
pub mod media;
pub mod remove;
pub mod sync;
pub mod verify;

use std::path::{Path, PathBuf};

pub use catalog::{
    Book, Catalog, FileRecord, FileRef, LibraryStats, NewBook, Position, ServerState, TrackRecord,
};
pub use layout::BookDirs;
pub use media::MediaServer;
pub use remove::RemoveReport;
pub use sync::{GoneReason, ServerJob, ServerView, SyncPlan, plan_sync};
pub use verify::{FileIssue, IssueKind, RepairItem, StrayFile, VerifyOptions, VerifyReport};

use crate::error::{CoreError, ErrorCode};

#[derive(Debug, Clone, thiserror::Error)]
pub enum LibraryError {
    #[error("the library catalog ({path}) cannot be used: {reason}")]
    Db { path: PathBuf, reason: String },
    #[error("no book with id {job_id} is in the library. `rohimaya library list` shows them")]
    NotInLibrary { job_id: String },
    #[error("{path} is not inside the library folder {root}; nothing was written or deleted there")]
    OutsideRoot { root: PathBuf, path: PathBuf },
    #[error("cannot {action} {path}: {reason}")]
    File {
        action: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("the library record for {job_id} is not valid: {reason}")]
    InvalidRecord { job_id: String, reason: String },
    #[error(
        "no free folder name is left for job {job_id}: rename or remove some folders in the library"
    )]
    NoFreeName { job_id: String },
    #[error("the playback server cannot start: {reason}")]
    MediaServer { reason: String },
}

impl From<crate::state_db::DbFailure> for LibraryError {
    fn from(f: crate::state_db::DbFailure) -> Self {
        LibraryError::Db {
            path: f.path,
            reason: f.reason,
        }
    }
}

impl CoreError for LibraryError {
    fn code(&self) -> ErrorCode {
        match self {
            LibraryError::Db { .. } => ErrorCode::LibraryUnavailable,
            LibraryError::NotInLibrary { .. } => ErrorCode::BookNotInLibrary,
            LibraryError::OutsideRoot { .. } => ErrorCode::PathOutsideLibrary,
            LibraryError::File { .. } | LibraryError::NoFreeName { .. } => {
                ErrorCode::LibraryFileError
            }
            LibraryError::InvalidRecord { .. } => ErrorCode::RequestRejected,
            LibraryError::MediaServer { .. } => ErrorCode::MediaServerFailed,
        }
    }
}

pub(crate) fn file_err(action: &'static str, path: &Path, e: &std::io::Error) -> LibraryError {
    LibraryError::File {
        action,
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// What the download engine is asked to fetch for one book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookRequest {
    pub job_id: String,
    pub title: String,
    pub author: Option<String>,
    /// The whole book's extension, e.g. from the job's `audio_format` or the extension of
    /// its `audio_path` ([`layout::extension_of`]); unusable values become `bin`.
    pub format: String,
    /// Plan the whole-book file.
    pub book: bool,
    /// The tracks to plan, in play order (numbered 1..=N in this order).
    pub tracks: Vec<TrackRequest>,
}

/// One chapter track as the server lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackRequest {
    pub track_id: Option<String>,
    pub title: String,
    pub export_filename: Option<String>,
}

/// Where one file of a book goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFile {
    pub which: FileRef,
    pub track_id: Option<String>,
    pub title: String,
    /// Relative to the root, `/`-separated (what the catalog stores).
    pub rel_path: String,
    /// Absolute destination (proven inside the root when planned).
    pub path: PathBuf,
}

impl PlannedFile {
    /// Where the bytes land while in flight: the destination plus `.part`, same folder (so
    /// the final rename is atomic).
    pub fn part_path(&self) -> PathBuf {
        layout::part_path(&self.path)
    }
}

/// A file that landed and was verified, as the download engine reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct LandedFile {
    pub which: FileRef,
    pub size: u64,
    pub md5: Option<String>,
    pub etag: Option<String>,
    pub duration_seconds: Option<f64>,
}

/// Where every file of one book goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookPlan {
    pub job_id: String,
    pub title: String,
    pub author: Option<String>,
    pub format: String,
    pub dirs: BookDirs,
    pub book_file: Option<PlannedFile>,
    pub tracks: Vec<PlannedFile>,
}

impl BookPlan {
    /// Every planned file, the whole book first.
    pub fn files(&self) -> impl Iterator<Item = &PlannedFile> {
        self.book_file.iter().chain(self.tracks.iter())
    }

    /// The catalog record for the files that landed (others are left out, so a book whose
    /// tracks failed is still catalogued with its whole-book file).
    pub fn to_new_book(
        &self,
        account: Option<&str>,
        duration_seconds: Option<f64>,
        landed: &[LandedFile],
    ) -> NewBook {
        let record = |p: &PlannedFile| {
            landed.iter().find(|l| l.which == p.which).map(|l| {
                (
                    FileRecord {
                        rel_path: p.rel_path.clone(),
                        size: l.size,
                        md5: l.md5.clone(),
                        etag: l.etag.as_deref().map(|e| e.trim_matches('"').to_string()),
                    },
                    l.duration_seconds,
                )
            })
        };
        NewBook {
            job_id: self.job_id.clone(),
            account: account.map(str::to_string),
            title: self.title.clone(),
            author: self.author.clone(),
            format: self.format.clone(),
            duration_seconds,
            book_dir: self.dirs.book_dir.clone(),
            chapters_dir: Some(self.dirs.chapters_dir.clone()),
            book_file: self.book_file.as_ref().and_then(record).map(|(f, _)| f),
            tracks: self
                .tracks
                .iter()
                .filter_map(|p| {
                    let (file, duration) = record(p)?;
                    let FileRef::Track(number) = p.which else {
                        return None;
                    };
                    Some(TrackRecord {
                        number,
                        track_id: p.track_id.clone(),
                        title: p.title.clone(),
                        duration_seconds: duration,
                        file,
                    })
                })
                .collect(),
        }
    }
}

/// The library folder and its catalog.
#[derive(Debug, Clone)]
pub struct Library {
    root: PathBuf,
    catalog: Catalog,
}

impl Library {
    /// The library at `root` (made absolute; created when something is written) with its
    /// catalog in `state_db`. Needs no network and no session.
    pub fn open(root: &Path, state_db: &Path) -> Result<Self, LibraryError> {
        let catalog = Catalog::open(state_db)?;
        Self::with_catalog(root, catalog)
    }

    /// The library of `paths`: root `paths.library_dir`, catalog in the data dir's
    /// `state.db`.
    pub fn for_paths(paths: &crate::config::Paths) -> Result<Self, LibraryError> {
        Self::open(&paths.library_dir, &paths.data_dir.join("state.db"))
    }

    pub fn with_catalog(root: &Path, catalog: Catalog) -> Result<Self, LibraryError> {
        let root = std::path::absolute(root).map_err(|e| file_err("use", root, &e))?;
        Ok(Self { root, catalog })
    }

    /// The root folder (`rohimaya library path`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The absolute path of a catalogued file, proven inside the root.
    pub fn path_of(&self, file: &FileRecord) -> Result<PathBuf, LibraryError> {
        let p = layout::join_relative(&self.root, &file.rel_path)?;
        layout::ensure_inside(&self.root, &p)
    }

    /// Where each file of a book goes: claims its folders (the same ones on every call for
    /// the same job, so a resumed download finds its `.part` files), names the files, and
    /// proves every path is inside the root. Creates nothing on disk.
    pub fn plan_book(&self, req: &BookRequest) -> Result<BookPlan, LibraryError> {
        let root = self.root.clone();
        let dirs = self.catalog.claim_dirs(
            &req.job_id,
            |n| layout::book_dirs(req.author.as_deref(), &req.title, n),
            |d| {
                [&d.book_dir, &d.chapters_dir].iter().all(|rel| {
                    layout::join_relative(&root, rel)
                        .map(|p| p.symlink_metadata().is_err())
                        .unwrap_or(false)
                })
            },
        )?;
        let format = layout::sanitize_extension(&req.format).unwrap_or_else(|| "bin".into());
        let planned = |which: FileRef,
                       dir: &str,
                       name: String,
                       title: &str,
                       track_id: Option<&String>|
         -> Result<PlannedFile, LibraryError> {
            let rel_path = format!("{dir}/{name}");
            let path = layout::join_relative(&self.root, &rel_path)?;
            layout::ensure_inside(&self.root, &path)?;
            Ok(PlannedFile {
                which,
                track_id: track_id.cloned(),
                title: title.to_string(),
                rel_path,
                path,
            })
        };
        let book_file = if req.book {
            Some(planned(
                FileRef::Book,
                &dirs.book_dir,
                layout::book_file_name(&req.title, &format),
                &req.title,
                None,
            )?)
        } else {
            None
        };
        let count = u32::try_from(req.tracks.len()).unwrap_or(u32::MAX);
        let mut tracks = Vec::with_capacity(req.tracks.len());
        for (i, t) in req.tracks.iter().enumerate() {
            let number = u32::try_from(i + 1).unwrap_or(u32::MAX);
            let name = layout::track_file_name(
                number,
                count,
                &t.title,
                t.export_filename.as_deref(),
                &format,
            );
            tracks.push(planned(
                FileRef::Track(number),
                &dirs.chapters_dir,
                name,
                &t.title,
                t.track_id.as_ref(),
            )?);
        }
        Ok(BookPlan {
            job_id: req.job_id.clone(),
            title: req.title.clone(),
            author: req.author.clone(),
            format,
            dirs,
            book_file,
            tracks,
        })
    }

    /// Creates the folder a planned file goes into and proves again, now that it exists,
    /// that it is inside the root (a symlink planted meanwhile is refused).
    pub fn create_parent(&self, file: &PlannedFile) -> Result<(), LibraryError> {
        layout::ensure_inside(&self.root, &file.path)?;
        let parent = file
            .path
            .parent()
            .ok_or_else(|| LibraryError::OutsideRoot {
                root: self.root.clone(),
                path: file.path.clone(),
            })?;
        std::fs::create_dir_all(parent).map_err(|e| file_err("create the folder", parent, &e))?;
        layout::ensure_inside(&self.root, &file.path)?;
        Ok(())
    }

    /// Compares the disk with the catalog (see [`verify`]).
    pub fn verify(&self, opts: &VerifyOptions) -> Result<VerifyReport, LibraryError> {
        verify::verify(&self.root, &self.catalog, opts)
    }

    /// Deletes a book's catalogued files and its rows (see [`remove`]).
    pub fn remove(&self, job_id: &str) -> Result<RemoveReport, LibraryError> {
        remove::remove_book(&self.root, &self.catalog, job_id)
    }
}

//! Removing a book from the library: its catalogued files, then the folders they leave
//! empty (up to, never including, the root), then its catalog rows.
//!
//! Every path is checked before anything is deleted: it must be the catalogued relative
//! path joined onto the root, and its folder must resolve inside the root (a symlinked
//! folder pointing elsewhere is refused). A file that is itself a symlink loses only the
//! link. Files the catalog does not list (the user's own, other books', `.part` files of a
//! download in flight) are never touched. If a file cannot be deleted, the rows stay, so
//! the removal can be retried. It never talks to the network.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::catalog::Catalog;
use super::{LibraryError, file_err, layout};

/// What [`remove_book`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct RemoveReport {
    pub job_id: String,
    pub title: String,
    /// Relative paths of the files deleted.
    pub deleted: Vec<String>,
    /// Catalogued files that were already gone.
    pub already_missing: Vec<String>,
    /// Folders removed because they became empty (relative paths).
    pub dirs_removed: Vec<String>,
    /// Bytes of the deleted files (as found on disk).
    pub bytes_freed: u64,
}

/// Deletes `job_id`'s catalogued files inside `root`, the folders they leave empty, and
/// its catalog rows. Refuses the whole removal, deleting nothing, if any catalogued path
/// would lead outside the root.
pub fn remove_book(
    root: &Path,
    catalog: &Catalog,
    job_id: &str,
) -> Result<RemoveReport, LibraryError> {
    let book = catalog.show(job_id)?;
    let mut targets: Vec<(String, PathBuf)> = Vec::new();
    for (_, f) in book.files() {
        let path = layout::join_relative(root, &f.rel_path)?;
        check_deletable(root, &path)?;
        targets.push((f.rel_path.clone(), path));
    }
    let mut report = RemoveReport {
        job_id: job_id.to_string(),
        title: book.title.clone(),
        deleted: Vec::new(),
        already_missing: Vec::new(),
        dirs_removed: Vec::new(),
        bytes_freed: 0,
    };
    for (rel, path) in targets {
        match path.symlink_metadata() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                report.already_missing.push(rel);
            }
            Err(e) => return Err(file_err("look at", &path, &e)),
            Ok(meta) if meta.is_dir() => {
                return Err(LibraryError::File {
                    action: "delete",
                    path,
                    reason: "it is a folder, not the book's file; move it away and retry".into(),
                });
            }
            Ok(meta) => {
                std::fs::remove_file(&path).map_err(|e| file_err("delete", &path, &e))?;
                report.bytes_freed += meta.len();
                report.deleted.push(rel);
            }
        }
    }
    let mut dirs = vec![book.book_dir.clone()];
    dirs.extend(book.chapters_dir.clone());
    for rel in dirs {
        remove_empty_dirs(root, &rel, &mut report.dirs_removed);
    }
    catalog.remove_rows(job_id)?;
    Ok(report)
}

/// The path is lexically inside the root and its folder resolves inside the root.
fn check_deletable(root: &Path, path: &Path) -> Result<(), LibraryError> {
    layout::ensure_inside(root, path).or_else(|e| {
        // The file itself may be a symlink pointing anywhere: deleting it removes only the
        // link, so what matters is where its folder really is.
        let parent = path.parent().ok_or_else(|| e.clone())?;
        if parent == root {
            return Err(e);
        }
        layout::ensure_inside(root, parent)?;
        match path.symlink_metadata() {
            Ok(m) if m.file_type().is_symlink() => Ok(path.to_path_buf()),
            _ => Err(e),
        }
    })?;
    Ok(())
}

/// Removes `rel` and its parents while they are empty, stopping below the root.
fn remove_empty_dirs(root: &Path, rel: &str, removed: &mut Vec<String>) {
    let mut parts: Vec<&str> = rel.split('/').collect();
    while !parts.is_empty() {
        let rel_dir = parts.join("/");
        let Ok(dir) = layout::join_relative(root, &rel_dir) else {
            return;
        };
        if layout::ensure_inside(root, &dir).is_err() {
            return;
        }
        match std::fs::remove_dir(&dir) {
            Ok(()) => removed.push(rel_dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            // Not empty (or not ours to remove): stop here.
            Err(_) => return,
        }
        parts.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::library::catalog::{FileRecord, NewBook};

    fn book(root: &Path, cat: &Catalog, job: &str, title: &str) -> NewBook {
        let dirs = layout::book_dirs(Some("Ann"), title, 1);
        let rel = format!("{}/{title}.mp3", dirs.book_dir);
        let path = layout::join_relative(root, &rel).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"hello").unwrap();
        let b = NewBook {
            job_id: job.into(),
            account: None,
            title: title.into(),
            author: Some("Ann".into()),
            format: "mp3".into(),
            duration_seconds: None,
            book_dir: dirs.book_dir,
            chapters_dir: Some(dirs.chapters_dir),
            book_file: Some(FileRecord {
                rel_path: rel,
                size: 5,
                md5: None,
                etag: None,
            }),
            tracks: vec![],
        };
        cat.upsert_book(&b).unwrap();
        b
    }

    #[test]
    fn removes_only_catalogued_files_and_empty_dirs_never_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("lib");
        let cat = Catalog::open(&dir.path().join("state.db")).unwrap();
        book(&root, &cat, "a", "One");
        book(&root, &cat, "b", "Two");
        std::fs::write(root.join("Ann/One/notes.txt"), b"mine").unwrap();
        let r = remove_book(&root, &cat, "a").unwrap();
        assert_eq!(r.deleted, ["Ann/One/One.mp3"]);
        assert_eq!(r.bytes_freed, 5);
        assert!(r.dirs_removed.is_empty(), "{r:?}");
        assert!(root.join("Ann/One/notes.txt").exists());
        assert!(cat.get("a").unwrap().is_none());

        let r = remove_book(&root, &cat, "b").unwrap();
        assert_eq!(r.dirs_removed, ["Ann/Two"]);
        assert!(root.join("Ann").exists(), "Ann still holds One/notes.txt");
        std::fs::remove_file(root.join("Ann/One/notes.txt")).unwrap();

        book(&root, &cat, "c", "Three");
        std::fs::remove_dir_all(root.join("Ann/One")).unwrap();
        let r = remove_book(&root, &cat, "c").unwrap();
        assert_eq!(r.dirs_removed, ["Ann/Three", "Ann"]);
        assert!(root.exists(), "the root is never removed");
        assert!(matches!(
            remove_book(&root, &cat, "c"),
            Err(LibraryError::NotInLibrary { .. })
        ));

        // Already missing files are reported and the rows still go.
        book(&root, &cat, "d", "Four");
        std::fs::remove_file(root.join("Ann/Four/Four.mp3")).unwrap();
        let r = remove_book(&root, &cat, "d").unwrap();
        assert_eq!(r.already_missing, ["Ann/Four/Four.mp3"]);
        assert!(cat.get("d").unwrap().is_none());
    }

    #[cfg(unix)]
    #[test]
    fn a_symlinked_folder_pointing_outside_is_refused_and_nothing_is_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("lib");
        let cat = Catalog::open(&dir.path().join("state.db")).unwrap();
        book(&root, &cat, "a", "One");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("One.mp3"), b"precious").unwrap();
        std::fs::remove_dir_all(root.join("Ann/One")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("Ann/One")).unwrap();
        let err = remove_book(&root, &cat, "a").unwrap_err();
        assert!(matches!(err, LibraryError::OutsideRoot { .. }), "{err}");
        assert_eq!(std::fs::read(outside.join("One.mp3")).unwrap(), b"precious");
        assert!(cat.get("a").unwrap().is_some(), "rows stay for a retry");

        // A catalogued file replaced by a symlink to outside: only the link goes.
        std::fs::remove_file(root.join("Ann/One")).unwrap();
        std::fs::create_dir_all(root.join("Ann/One")).unwrap();
        std::os::unix::fs::symlink(outside.join("One.mp3"), root.join("Ann/One/One.mp3")).unwrap();
        let r = remove_book(&root, &cat, "a").unwrap();
        assert_eq!(r.deleted, ["Ann/One/One.mp3"]);
        assert_eq!(std::fs::read(outside.join("One.mp3")).unwrap(), b"precious");
    }
}

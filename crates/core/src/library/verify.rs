//! `library verify`: does the disk agree with the catalog?
//!
//! For every catalogued file: is it there, is it a regular file inside the root, has it
//! the recorded size, and (with [`VerifyOptions::deep`], since books are large) the
//! recorded MD5. Then every file under the root that the catalog does not list: `.part`
//! files are reported as leftovers of interrupted downloads, anything else as stray
//! (operating-system litter such as `.DS_Store` is ignored). Nothing is changed: the
//! report carries a repair plan (which files to download again) that the shells hand to
//! the download engine, and the files that cannot be repaired because the server no
//! longer has the book.
//!
//! It owns the comparison. It never deletes, moves or downloads anything.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use rohimaya_md5::Md5;
use serde::Serialize;

use super::catalog::{Catalog, FileRef, ServerState};
use super::{LibraryError, layout};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Also compute the MD5 of every file that has a recorded one (reads every byte).
    pub deep: bool,
}

/// What is wrong with a catalogued file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum IssueKind {
    Missing,
    SizeChanged {
        expected: u64,
        actual: u64,
    },
    ChecksumMismatch {
        expected: String,
        actual: String,
    },
    /// A folder, or something else that is not a regular file, is in its place.
    NotAFile,
    /// Its path leads outside the library root (a symlink): it is neither served nor
    /// deleted.
    OutsideRoot,
    Unreadable {
        reason: String,
    },
}

impl IssueKind {
    pub fn describe(&self) -> String {
        match self {
            IssueKind::Missing => "missing".into(),
            IssueKind::SizeChanged { expected, actual } => {
                format!("size is {actual} bytes, expected {expected}")
            }
            IssueKind::ChecksumMismatch { .. } => "content changed (MD5 differs)".into(),
            IssueKind::NotAFile => "not a regular file".into(),
            IssueKind::OutsideRoot => "leads outside the library folder".into(),
            IssueKind::Unreadable { reason } => format!("unreadable: {reason}"),
        }
    }
}

/// A catalogued file that does not match the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileIssue {
    pub job_id: String,
    pub title: String,
    pub which: FileRef,
    pub rel_path: String,
    pub issue: IssueKind,
}

/// A file under the root that the catalog does not list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StrayFile {
    pub rel_path: String,
    pub size: u64,
}

/// A file to download again, for the download engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepairItem {
    pub job_id: String,
    pub which: FileRef,
    /// The server's track id (ask `GET /jobs/{job_id}/tracks/{track_id}/download`); `None`
    /// for the whole-book file (`GET /jobs/{job_id}/download`).
    pub track_id: Option<String>,
    pub rel_path: String,
    /// Absolute destination; the download lands beside it as `.part` and replaces it.
    pub path: PathBuf,
    pub expected_size: u64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct VerifyReport {
    pub books: usize,
    pub files_checked: usize,
    pub bytes_hashed: u64,
    pub issues: Vec<FileIssue>,
    pub stray: Vec<StrayFile>,
    /// `.part` files: interrupted (or running) downloads.
    pub leftovers: Vec<StrayFile>,
    /// What `library repair` downloads again.
    pub repair: Vec<RepairItem>,
    /// Broken files of books the server no longer has ("only on this computer").
    pub unrepairable: Vec<RepairItem>,
    /// Folders under the root that could not be read (permissions): not checked for
    /// stray files.
    pub unreadable_dirs: Vec<String>,
}

impl VerifyReport {
    /// True when every catalogued file is as recorded and nothing stray is around.
    pub fn is_clean(&self) -> bool {
        self.issues.is_empty()
            && self.stray.is_empty()
            && self.leftovers.is_empty()
            && self.unreadable_dirs.is_empty()
    }
}

/// Names the operating systems drop into folders; never reported.
fn is_os_litter(name: &str) -> bool {
    matches!(
        name,
        ".DS_Store" | "Thumbs.db" | "desktop.ini" | ".directory" | "ehthumbs.db"
    ) || name.starts_with("._")
}

/// Compares `root` with `catalog`. Works offline; reads files only.
pub fn verify(
    root: &Path,
    catalog: &Catalog,
    opts: &VerifyOptions,
) -> Result<VerifyReport, LibraryError> {
    let books = catalog.list()?;
    let mut report = VerifyReport {
        books: books.len(),
        ..Default::default()
    };
    let mut known: HashSet<String> = HashSet::new();
    for book in &books {
        for (which, f) in book.files() {
            known.insert(layout::fold_key(&f.rel_path));
            report.files_checked += 1;
            let issue = check_file(root, f, opts, &mut report.bytes_hashed);
            let Some(issue) = issue else { continue };
            let item = RepairItem {
                job_id: book.job_id.clone(),
                which,
                track_id: match which {
                    FileRef::Book => None,
                    FileRef::Track(n) => book
                        .tracks
                        .iter()
                        .find(|t| t.number == n)
                        .and_then(|t| t.track_id.clone()),
                },
                rel_path: f.rel_path.clone(),
                path: layout::join_relative(root, &f.rel_path).unwrap_or_default(),
                expected_size: f.size,
                reason: issue.describe(),
            };
            match (&issue, book.server_state) {
                // Never write through a path that leaves the root.
                (IssueKind::OutsideRoot | IssueKind::NotAFile, _) => report.unrepairable.push(item),
                (_, ServerState::OnlyLocal) => report.unrepairable.push(item),
                (_, ServerState::Available) => report.repair.push(item),
            }
            report.issues.push(FileIssue {
                job_id: book.job_id.clone(),
                title: book.title.clone(),
                which,
                rel_path: f.rel_path.clone(),
                issue,
            });
        }
    }
    if root.is_dir() {
        walk(root, root, &known, &mut report)?;
    }
    report.stray.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
    report.leftovers.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
    Ok(report)
}

fn check_file(
    root: &Path,
    f: &super::FileRecord,
    opts: &VerifyOptions,
    hashed: &mut u64,
) -> Option<IssueKind> {
    let Ok(path) = layout::join_relative(root, &f.rel_path) else {
        return Some(IssueKind::OutsideRoot);
    };
    match path.symlink_metadata() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(IssueKind::Missing),
        Err(e) => {
            return Some(IssueKind::Unreadable {
                reason: e.to_string(),
            });
        }
        Ok(_) => {}
    }
    if layout::ensure_inside(root, &path).is_err() {
        return Some(IssueKind::OutsideRoot);
    }
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) => {
            return Some(IssueKind::Unreadable {
                reason: e.to_string(),
            });
        }
    };
    if !meta.is_file() {
        return Some(IssueKind::NotAFile);
    }
    if meta.len() != f.size {
        return Some(IssueKind::SizeChanged {
            expected: f.size,
            actual: meta.len(),
        });
    }
    if opts.deep
        && let Some(expected) = f.expected_md5()
    {
        match md5_of(&path) {
            Ok((actual, n)) => {
                *hashed += n;
                if actual != expected {
                    return Some(IssueKind::ChecksumMismatch { expected, actual });
                }
            }
            Err(e) => {
                return Some(IssueKind::Unreadable {
                    reason: e.to_string(),
                });
            }
        }
    }
    None
}

/// Streams a file through MD5 with a fixed 1 MiB buffer.
pub fn md5_of(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), total))
}

/// `path` relative to `root`, `/`-separated (lossy for names that are not UTF-8).
fn rel_of(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .map(|r| {
            r.components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/")
        })
        .unwrap_or_else(|_| path.to_string_lossy().into_owned())
}

/// Walks the tree without following symlinks, collecting what the catalog does not list.
fn walk(
    root: &Path,
    dir: &Path,
    known: &HashSet<String>,
    report: &mut VerifyReport,
) -> Result<(), LibraryError> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| super::file_err("read the folder", dir, &e))?;
    for entry in entries {
        let entry = entry.map_err(|e| super::file_err("read the folder", dir, &e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if let Err(e) = walk(root, &path, known, report) {
                tracing::debug!("verify: {e}");
                report.unreadable_dirs.push(rel_of(root, &path));
            }
            continue;
        }
        if is_os_litter(&name) {
            continue;
        }
        let rel = rel_of(root, &path);
        if known.contains(&layout::fold_key(&rel)) {
            continue;
        }
        let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
        let stray = StrayFile {
            rel_path: rel,
            size,
        };
        if name.ends_with(&format!(".{}", layout::PART_EXTENSION)) {
            report.leftovers.push(stray);
        } else {
            report.stray.push(stray);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::library::catalog::{FileRecord, NewBook, TrackRecord};

    fn write(root: &Path, rel: &str, bytes: &[u8]) -> FileRecord {
        let p = layout::join_relative(root, rel).unwrap();
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        FileRecord {
            rel_path: rel.into(),
            size: bytes.len() as u64,
            md5: Some(hex::encode(Md5::digest(bytes))),
            etag: None,
        }
    }

    #[test]
    fn finds_missing_changed_corrupt_stray_and_leftover_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("lib");
        let cat = Catalog::open(&dir.path().join("state.db")).unwrap();
        let book_file = write(&root, "A/T/T.mp3", b"whole book");
        let t1 = write(&root, "A/T (Chapters)/01 - One.mp3", b"one");
        let t2 = write(&root, "A/T (Chapters)/02 - Two.mp3", b"two");
        let track = |n: u32, file: FileRecord| TrackRecord {
            number: n,
            track_id: Some(format!("tid{n}")),
            title: format!("T{n}"),
            duration_seconds: None,
            file,
        };
        cat.upsert_book(&NewBook {
            job_id: "j".into(),
            account: None,
            title: "T".into(),
            author: Some("A".into()),
            format: "mp3".into(),
            duration_seconds: None,
            book_dir: "A/T".into(),
            chapters_dir: Some("A/T (Chapters)".into()),
            book_file: Some(book_file),
            tracks: vec![track(1, t1), track(2, t2)],
        })
        .unwrap();
        let clean = verify(&root, &cat, &VerifyOptions { deep: true }).unwrap();
        assert!(clean.is_clean(), "{clean:?}");
        assert_eq!((clean.files_checked, clean.bytes_hashed), (3, 16));

        std::fs::remove_file(root.join("A/T (Chapters)/01 - One.mp3")).unwrap();
        std::fs::write(root.join("A/T (Chapters)/02 - Two.mp3"), b"TWO").unwrap();
        std::fs::write(root.join("A/T/T.mp3"), b"whole boox").unwrap();
        std::fs::write(root.join("A/T/cover.jpg"), b"img").unwrap();
        std::fs::write(root.join("A/T/T.mp3.part"), b"par").unwrap();
        std::fs::write(root.join("A/T/.DS_Store"), b"").unwrap();

        let shallow = verify(&root, &cat, &VerifyOptions::default()).unwrap();
        assert_eq!(shallow.issues.len(), 1, "{shallow:?}");
        assert_eq!(shallow.issues[0].issue, IssueKind::Missing);
        assert_eq!(shallow.bytes_hashed, 0);
        assert_eq!(
            shallow.stray,
            [StrayFile {
                rel_path: "A/T/cover.jpg".into(),
                size: 3
            }]
        );
        assert_eq!(shallow.leftovers[0].rel_path, "A/T/T.mp3.part");

        let deep = verify(&root, &cat, &VerifyOptions { deep: true }).unwrap();
        let kinds: Vec<_> = deep.issues.iter().map(|i| (i.which, &i.issue)).collect();
        assert_eq!(kinds.len(), 3, "{kinds:?}");
        assert!(matches!(
            kinds[0],
            (FileRef::Book, IssueKind::ChecksumMismatch { .. })
        ));
        assert_eq!(kinds[1], (FileRef::Track(1), &IssueKind::Missing));
        assert!(matches!(
            kinds[2],
            (FileRef::Track(2), IssueKind::ChecksumMismatch { .. })
        ));
        assert_eq!(deep.repair.len(), 3);
        assert_eq!(deep.repair[1].track_id.as_deref(), Some("tid1"));
        assert_eq!(
            deep.repair[1].path,
            root.join("A/T (Chapters)/01 - One.mp3")
        );
        assert!(deep.unrepairable.is_empty());

        std::fs::write(root.join("A/T/T.mp3"), b"short").unwrap();
        cat.mark_only_local("j").unwrap();
        let r = verify(&root, &cat, &VerifyOptions::default()).unwrap();
        assert_eq!(
            r.issues[0].issue,
            IssueKind::SizeChanged {
                expected: 10,
                actual: 5
            }
        );
        assert!(r.repair.is_empty());
        assert_eq!(r.unrepairable.len(), 2);
    }

    #[cfg(unix)]
    #[test]
    fn a_catalogued_file_swapped_for_a_symlink_out_is_reported_not_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("lib");
        let cat = Catalog::open(&dir.path().join("state.db")).unwrap();
        let f = write(&root, "A/T/T.mp3", b"abc");
        cat.upsert_book(&NewBook {
            job_id: "j".into(),
            account: None,
            title: "T".into(),
            author: Some("A".into()),
            format: "mp3".into(),
            duration_seconds: None,
            book_dir: "A/T".into(),
            chapters_dir: None,
            book_file: Some(f),
            tracks: vec![],
        })
        .unwrap();
        std::fs::write(dir.path().join("x"), b"abc").unwrap();
        std::fs::remove_file(root.join("A/T/T.mp3")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("x"), root.join("A/T/T.mp3")).unwrap();
        let r = verify(&root, &cat, &VerifyOptions::default()).unwrap();
        assert_eq!(r.issues[0].issue, IssueKind::OutsideRoot);
        assert!(r.repair.is_empty());
        assert_eq!(r.unrepairable.len(), 1);
    }
}

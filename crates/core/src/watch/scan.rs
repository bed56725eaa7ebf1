//! The scanner: lists the files of a watched folder (or of one subfolder of it) through
//! [`WatchFs`], applying the [`IgnoreRules`] as it goes, so ignored folders are never
//! entered.
//!
//! It owns the walk's safety: it never follows a symlinked folder (or junction), remembers
//! the `(device, inode)` of every folder it entered to stop at a loop the OS made some
//! other way (bind mounts), stops at a depth cap, and reports a folder it may not read
//! instead of failing the scan. It never decides what to upload.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};

use super::fs::{FileKind, FileStat, WatchFs};
use super::rules::IgnoreRules;

/// Folders deeper than this below the watched folder are not entered.
pub const MAX_DEPTH: usize = 32;

/// Something the scan skipped that the user may want to know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanProblem {
    PermissionDenied(String),
    /// A symlinked folder: not followed (loops and duplicates otherwise).
    SymlinkedFolder,
    /// A folder already entered under another path (a loop).
    Loop,
    /// Deeper than [`MAX_DEPTH`].
    TooDeep,
    /// Another error listing or statting it.
    Unreadable(String),
}

impl ScanProblem {
    pub fn describe(&self) -> String {
        match self {
            ScanProblem::PermissionDenied(e) => format!("permission denied ({e}); skipped"),
            ScanProblem::SymlinkedFolder => "a symlinked folder: not followed".into(),
            ScanProblem::Loop => "a folder already scanned under another path: skipped".into(),
            ScanProblem::TooDeep => format!("more than {MAX_DEPTH} folders deep: not entered"),
            ScanProblem::Unreadable(e) => format!("cannot be read ({e}); skipped"),
        }
    }
}

/// What one scan found.
#[derive(Debug, Default)]
pub struct ScanOutcome {
    /// Files that pass the rules, with what they looked like.
    pub files: Vec<(PathBuf, FileStat)>,
    /// Files and folders skipped by the rules, with why and their size and mtime (0 for
    /// folders).
    pub ignored: Vec<(PathBuf, String, (u64, i64))>,
    pub problems: Vec<(PathBuf, ScanProblem)>,
}

fn problem(e: &io::Error) -> ScanProblem {
    if e.kind() == io::ErrorKind::PermissionDenied {
        ScanProblem::PermissionDenied(e.to_string())
    } else {
        ScanProblem::Unreadable(e.to_string())
    }
}

/// Scans `start` (the watched folder `root` or a folder inside it); only the top level
/// unless `recursive`.
pub fn scan(
    fs: &dyn WatchFs,
    root: &Path,
    start: &Path,
    recursive: bool,
    rules: &IgnoreRules,
) -> ScanOutcome {
    let mut out = ScanOutcome::default();
    let mut visited: HashSet<(u64, u64)> = HashSet::new();
    let depth_of = |p: &Path| {
        p.strip_prefix(root)
            .map(|r| r.components().count())
            .unwrap_or(0)
    };
    let mut stack = vec![start.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if let Ok(st) = fs.stat(&dir)
            && let Some(id) = st.file_id
            && !visited.insert(id)
        {
            out.problems.push((dir, ScanProblem::Loop));
            continue;
        }
        let entries = match fs.read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                out.problems.push((dir, problem(&e)));
                continue;
            }
        };
        for path in entries {
            let st = match fs.stat(&path) {
                Ok(st) => st,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    out.problems.push((path, problem(&e)));
                    continue;
                }
            };
            match st.kind {
                FileKind::Dir => {
                    if let Some(why) = rules.ignored(&path, true, st.hidden) {
                        out.ignored.push((path, why, (0, 0)));
                    } else if !recursive {
                    } else if st.symlink {
                        out.problems.push((path, ScanProblem::SymlinkedFolder));
                    } else if depth_of(&path) > MAX_DEPTH {
                        out.problems.push((path, ScanProblem::TooDeep));
                    } else {
                        stack.push(path);
                    }
                }
                FileKind::File => match rules.ignored(&path, false, st.hidden) {
                    Some(why) => out.ignored.push((path, why, (st.size, st.mtime_ms))),
                    None => out.files.push((path, st)),
                },
                FileKind::Other => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::fake::{FakeClock, FakeFs};

    fn rules() -> IgnoreRules {
        IgnoreRules::new(Path::new("/w"), &[]).unwrap_or_else(|e| panic!("{e}"))
    }

    fn names(o: &ScanOutcome) -> Vec<String> {
        let mut v: Vec<String> = o
            .files
            .iter()
            .map(|(p, _)| p.to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn symlink_loops_are_not_followed() {
        let fs = FakeFs::new(FakeClock::new());
        fs.write("/w/a/Book.txt", b"words");
        fs.symlink("/w/a/loop", "/w");
        fs.symlink("/w/a/self", "/w/a");
        let o = scan(&fs, Path::new("/w"), Path::new("/w"), true, &rules());
        assert_eq!(names(&o), vec!["/w/a/Book.txt"]);
        let linked = o
            .problems
            .iter()
            .filter(|(_, p)| *p == ScanProblem::SymlinkedFolder)
            .count();
        assert_eq!(linked, 2);
    }

    #[test]
    fn very_deep_trees_stop_at_the_cap() {
        let fs = FakeFs::new(FakeClock::new());
        let mut p = PathBuf::from("/w");
        for i in 0..200 {
            p.push(format!("d{i}"));
        }
        fs.write(p.join("deep.txt"), b"words");
        fs.write("/w/d0/shallow.txt", b"words");
        let o = scan(&fs, Path::new("/w"), Path::new("/w"), true, &rules());
        assert_eq!(names(&o), vec!["/w/d0/shallow.txt"]);
        assert!(o.problems.iter().any(|(_, p)| *p == ScanProblem::TooDeep));
    }

    #[test]
    fn permission_denied_is_reported_and_the_rest_scanned() {
        let fs = FakeFs::new(FakeClock::new());
        fs.write("/w/locked/Book.txt", b"words");
        fs.write("/w/open/Other.txt", b"words");
        fs.set_denied("/w/locked", true);
        let o = scan(&fs, Path::new("/w"), Path::new("/w"), true, &rules());
        assert_eq!(names(&o), vec!["/w/open/Other.txt"]);
        assert!(matches!(
            o.problems.as_slice(),
            [(p, ScanProblem::PermissionDenied(_))] if p == Path::new("/w/locked")
        ));
    }

    #[test]
    fn ignored_folders_are_not_entered_and_flat_scans_stay_flat() {
        let fs = FakeFs::new(FakeClock::new());
        fs.write("/w/.git/x.txt", b"words");
        fs.write("/w/Uploaded/y.txt", b"words");
        fs.write("/w/sub/z.txt", b"words");
        fs.write("/w/top.txt", b"words");
        fs.write("/w/~$top.docx", b"lock");
        let o = scan(&fs, Path::new("/w"), Path::new("/w"), false, &rules());
        assert_eq!(names(&o), vec!["/w/top.txt"]);
        let ignored: Vec<&Path> = o.ignored.iter().map(|(p, _, _)| p.as_path()).collect();
        assert!(ignored.contains(&Path::new("/w/.git")));
        assert!(ignored.contains(&Path::new("/w/Uploaded")));
        assert!(ignored.contains(&Path::new("/w/~$top.docx")));
        let o = scan(&fs, Path::new("/w"), Path::new("/w"), true, &rules());
        assert_eq!(names(&o), vec!["/w/sub/z.txt", "/w/top.txt"]);
    }
}

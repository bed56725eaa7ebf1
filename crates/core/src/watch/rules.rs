//! [`IgnoreRules`]: which paths in a watched folder are never considered: the default
//! patterns (Office lock and temp files, downloads in progress, editor swap files, OS
//! litter, hidden files and folders, our own `Uploaded/`), the user's patterns in
//! gitignore syntax, and files that are not a manuscript type the upload accepts.
//!
//! It owns those rules and the reason it gives for each. It is pure (names in, verdicts
//! out): it never reads the file system.

use std::path::{Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::transfer::manuscript::MANUSCRIPT_EXTENSIONS;

/// The folder inside each watched folder that uploaded files are moved to.
pub const UPLOADED_DIR: &str = "Uploaded";

/// The default patterns as the docs list them (matched on each path component's name,
/// case-insensitively; hidden names are matched separately).
pub const DEFAULT_PATTERNS: &[&str] = &[
    "~$*",
    ".~lock.*#",
    "*.tmp",
    "*.temp",
    "*.part",
    "*.partial",
    "*.crdownload",
    "*.download",
    "*.swp",
    "*~",
    ".DS_Store",
    "Thumbs.db",
    "desktop.ini",
];

/// A user pattern that is not valid gitignore syntax.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ignore pattern {pattern:?} is not valid gitignore syntax: {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: String,
}

/// The ignore rules of one watched folder.
#[derive(Debug, Clone)]
pub struct IgnoreRules {
    root: PathBuf,
    user: Gitignore,
}

/// Why the default rules skip a name, if they do.
fn default_reason(name: &str) -> Option<String> {
    let lower = name.to_lowercase();
    if name.starts_with("~$") {
        return Some("an Office lock file (~$*)".into());
    }
    if lower.starts_with(".~lock.") && lower.ends_with('#') {
        return Some("a LibreOffice lock file (.~lock.*#)".into());
    }
    if matches!(lower.as_str(), ".ds_store" | "thumbs.db" | "desktop.ini") {
        return Some(format!("operating-system litter ({name})"));
    }
    for ext in [
        "tmp",
        "temp",
        "part",
        "partial",
        "crdownload",
        "download",
        "swp",
    ] {
        if lower.len() > ext.len() + 1 && lower.ends_with(&format!(".{ext}")) {
            return Some(format!("a temporary or unfinished file (*.{ext})"));
        }
    }
    if name.ends_with('~') {
        return Some("a backup file (*~)".into());
    }
    if name.starts_with('.') {
        return Some("hidden".into());
    }
    None
}

impl IgnoreRules {
    /// The rules for the folder at `root` with the user's gitignore-syntax `patterns`.
    pub fn new(root: &Path, patterns: &[String]) -> Result<Self, PatternError> {
        let mut b = GitignoreBuilder::new(root);
        for p in patterns {
            b.add_line(None, p).map_err(|e| PatternError {
                pattern: p.clone(),
                reason: e.to_string(),
            })?;
        }
        let user = b.build().map_err(|e| PatternError {
            pattern: patterns.join(", "),
            reason: e.to_string(),
        })?;
        Ok(Self {
            root: root.to_path_buf(),
            user,
        })
    }

    /// Why `path` (inside the folder; `is_dir` says what it is; `hidden_attr` is the
    /// OS's hidden flag) is skipped, or `None` if it is considered. Folders are only
    /// checked against the name rules (a folder is never a manuscript).
    pub fn ignored(&self, path: &Path, is_dir: bool, hidden_attr: bool) -> Option<String> {
        let rel = path.strip_prefix(&self.root).unwrap_or(path);
        let comps: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if comps.first().map(String::as_str) == Some(UPLOADED_DIR) {
            return Some(format!("in {UPLOADED_DIR}/ (already uploaded)"));
        }
        for (i, name) in comps.iter().enumerate() {
            if let Some(reason) = default_reason(name) {
                let last = i + 1 == comps.len();
                return Some(if last {
                    reason
                } else {
                    format!("inside {name}/ ({reason})")
                });
            }
        }
        if hidden_attr {
            return Some("hidden".into());
        }
        let m = self.user.matched_path_or_any_parents(path, is_dir);
        if m.is_ignore() {
            let pattern = m
                .inner()
                .map(|g| g.original().to_string())
                .unwrap_or_default();
            return Some(format!("matches your ignore pattern {pattern:?}"));
        }
        if !is_dir {
            let name = comps.last().map(String::as_str).unwrap_or("");
            let ext = match name.rfind('.') {
                Some(i) if i > 0 => name[i + 1..].to_lowercase(),
                _ => String::new(),
            };
            if !MANUSCRIPT_EXTENSIONS.contains(&ext.as_str()) {
                return Some(if ext.is_empty() {
                    "not a manuscript (no extension)".into()
                } else {
                    format!("not a manuscript (.{ext})")
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(patterns: &[&str]) -> IgnoreRules {
        let p: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
        IgnoreRules::new(Path::new("/w"), &p).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn every_default_pattern_is_ignored() {
        let r = rules(&[]);
        for name in [
            "~$Book.docx",
            ".~lock.Book.docx#",
            "x.tmp",
            "X.TMP",
            "x.temp",
            "Book.docx.part",
            "Book.pdf.partial",
            "Book.pdf.crdownload",
            "Book.epub.download",
            ".Book.txt.swp",
            "Book.txt.swp",
            "Book.txt~",
            ".DS_Store",
            "Thumbs.db",
            "desktop.ini",
            ".hidden.txt",
        ] {
            let p = Path::new("/w").join(name);
            assert!(r.ignored(&p, false, false).is_some(), "{name} not ignored");
        }
        assert!(
            r.ignored(Path::new("/w/.git/notes.txt"), false, false)
                .is_some()
        );
        assert!(r.ignored(Path::new("/w/.cache"), true, false).is_some());
        let up = r.ignored(Path::new("/w/Uploaded/Book.docx"), false, false);
        assert!(up.is_some_and(|r| r.contains("Uploaded")));
        // Windows' hidden attribute.
        assert!(r.ignored(Path::new("/w/Book.txt"), false, true).is_some());
    }

    #[test]
    fn manuscripts_pass_and_other_types_do_not() {
        let r = rules(&[]);
        for name in [
            "Book.docx",
            "Book.TXT",
            "a/b/Book.md",
            "Book.pdf",
            "B.epub",
            "B.html",
            "B.htm",
            "Uploaded2/B.txt",
            "sub/Uploaded/B.txt",
        ] {
            assert_eq!(
                r.ignored(&Path::new("/w").join(name), false, false),
                None,
                "{name}"
            );
        }
        let why = r.ignored(Path::new("/w/cover.png"), false, false);
        assert_eq!(why.as_deref(), Some("not a manuscript (.png)"));
        assert!(r.ignored(Path::new("/w/README"), false, false).is_some());
        assert_eq!(r.ignored(Path::new("/w/drafts"), true, false), None);
    }

    #[test]
    fn user_patterns_use_gitignore_syntax() {
        let r = rules(&["drafts/", "*-old.docx", "/top.txt", "!keep-old.docx"]);
        let ig = |p: &str, dir: bool| r.ignored(&Path::new("/w").join(p), dir, false);
        assert!(ig("drafts", true).is_some());
        assert!(ig("drafts/ch1.docx", false).is_some());
        assert!(ig("a/drafts/ch1.docx", false).is_some());
        assert!(ig("Book-old.docx", false).is_some_and(|r| r.contains("*-old.docx")));
        assert_eq!(ig("keep-old.docx", false), None);
        assert!(ig("top.txt", false).is_some());
        assert_eq!(ig("sub/top.txt", false), None);
        assert_eq!(ig("Book.docx", false), None);
        let bad = IgnoreRules::new(Path::new("/w"), &["[z-a]".to_string()]);
        assert!(bad.is_err());
    }
}

//! Where library files live on disk and how server-provided names become safe path
//! components.
//!
//! Layout (see docs/library.md for why):
//!
//! ```text
//! {root}/{Author}/{Title}/{Title}.{ext}                  the whole book
//! {root}/{Author}/{Title} (Chapters)/{NN} - {Track}.{ext}  one file per chapter track
//! ```
//!
//! Every name that comes from the server (author, title, track title, `export_filename`)
//! goes through [`sanitize_component`] or [`sanitize_file_name`]: the result is exactly one
//! non-empty path component that is valid on Linux, macOS and Windows, NFC-normalised and
//! at most [`MAX_COMPONENT_BYTES`] bytes long. [`ensure_inside`] proves that a path stays
//! inside the library root, lexically and after resolving the parts that exist (no symlink
//! escape).
//!
//! This module owns names and path checks. It never creates, reads or deletes files (it
//! only looks at which ancestors of a path exist, to resolve symlinks).

use std::path::{Component, Path, PathBuf};

use unicode_normalization::UnicodeNormalization;

use super::LibraryError;

/// The longest path component we create, in UTF-8 bytes. File systems allow 255 bytes
/// (ext4, APFS) or 255 UTF-16 units (NTFS); 120 leaves room for collision suffixes and
/// ` (Chapters)`, and keeps whole paths well under Windows' classic 260-character limit
/// for short roots.
pub const MAX_COMPONENT_BYTES: usize = 120;

/// The folder name used when a book has no (usable) author.
pub const UNKNOWN_AUTHOR: &str = "Unknown Author";
/// The name used when a book or track has no (usable) title.
pub const UNTITLED: &str = "Untitled";
/// Appended to the book folder's name for the folder that holds the chapter tracks.
pub const CHAPTERS_SUFFIX: &str = " (Chapters)";
/// The extension a download has while it is in flight (the download engine's `.part`).
pub const PART_EXTENSION: &str = "part";

/// The in-flight name of a download: the destination plus `.part`, in the same folder.
pub fn part_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".");
    name.push(PART_EXTENSION);
    path.with_file_name(name)
}

/// The default library root: `~/Audiobooks/Rohimaya`, or `ROHIMAYA_LIBRARY_DIR`
/// (see [`crate::config::Paths`]).
pub fn default_root() -> PathBuf {
    crate::config::Paths::from_env().library_dir
}

/// Device names Windows reserves in every directory, with or without an extension.
const WINDOWS_RESERVED: &[&str] = &[
    "CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "COM0", "COM1", "COM2", "COM3", "COM4",
    "COM5", "COM6", "COM7", "COM8", "COM9", "COM¹", "COM²", "COM³", "LPT0", "LPT1", "LPT2", "LPT3",
    "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9", "LPT¹", "LPT²", "LPT³",
];

/// Invisible characters that can disguise a name (bidirectional overrides, zero-width
/// characters, the byte-order mark).
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}' | '\u{FEFF}' | '\u{00AD}')
}

/// Replaces what no file system of ours accepts, collapses whitespace, trims.
fn clean(raw: &str) -> String {
    // A path-like name ("../../x", "/etc/passwd"): keep its real parts, joined by "-".
    let joined = raw
        .split(['/', '\\'])
        .filter(|part| {
            !part
                .trim_matches(|c: char| c == '.' || c.is_whitespace())
                .is_empty()
        })
        .collect::<Vec<_>>()
        .join("-");
    let mut out = String::with_capacity(joined.len());
    for c in joined.nfc() {
        match c {
            '|' => out.push('-'),
            ':' => out.push_str(" -"),
            '"' => out.push('\''),
            '<' => out.push('('),
            '>' => out.push(')'),
            '?' | '*' => {}
            c if c.is_control() || is_invisible(c) => out.push(' '),
            c if c.is_whitespace() => out.push(' '),
            c => out.push(c),
        }
    }
    // Collapse runs of spaces.
    let mut collapsed = String::with_capacity(out.len());
    let mut last_space = false;
    for c in out.chars() {
        if c == ' ' {
            if !last_space {
                collapsed.push(' ');
            }
            last_space = true;
        } else {
            collapsed.push(c);
            last_space = false;
        }
    }
    // Dropping or replacing characters can leave combinable sequences: normalise again.
    trim_ends(&collapsed).nfc().collect()
}

/// No leading dots or spaces (hidden files, `..`), no trailing dots or spaces (Windows
/// drops them, so `a.` and `a` would be the same file there).
fn trim_ends(s: &str) -> &str {
    s.trim_start_matches(['.', ' '])
        .trim_end_matches(['.', ' '])
}

/// Cuts `s` to at most `max` bytes on a char boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn is_reserved(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or(name).trim_end_matches(' ');
    WINDOWS_RESERVED
        .iter()
        .any(|r| r.to_lowercase() == stem.to_lowercase())
}

/// Cleans, bounds to `max` bytes and guards reserved names; empty stays empty.
fn bounded(raw: &str, max: usize) -> String {
    let cleaned = clean(raw);
    let mut s = trim_ends(cut(&cleaned, max)).to_string();
    if !s.is_empty() && is_reserved(&s) {
        s.insert(0, '_');
        s = trim_ends(cut(&s, max)).to_string();
    }
    // Cutting never un-normalises in practice; make sure anyway, and stay bounded.
    let nfc: String = s.nfc().collect();
    if nfc != s {
        s = trim_ends(cut(&nfc, max)).to_string();
    }
    s
}

/// One safe path component from a server-provided name: no separators, no `..`, no control
/// or invisible characters, no characters Windows refuses (`<>:"|?*`), no reserved Windows
/// device name, no leading dot, no trailing space or dot, NFC, at most
/// [`MAX_COMPONENT_BYTES`] bytes. An empty result becomes `fallback` (sanitized too).
pub fn sanitize_component(raw: &str, fallback: &str) -> String {
    let s = bounded(raw, MAX_COMPONENT_BYTES);
    if !s.is_empty() {
        return s;
    }
    let f = bounded(fallback, MAX_COMPONENT_BYTES);
    if f.is_empty() {
        UNTITLED.to_string()
    } else {
        f
    }
}

/// A safe file extension: 1 to 8 ASCII letters or digits, lower-cased; else `None`.
pub fn sanitize_extension(ext: &str) -> Option<String> {
    let ext = ext.trim().trim_start_matches('.');
    ((1..=8).contains(&ext.len()) && ext.chars().all(|c| c.is_ascii_alphanumeric()))
        .then(|| ext.to_ascii_lowercase())
}

/// The extension of a server-provided file name or key (`a/b/Book_COMPLETE.WAV` -> `wav`).
pub fn extension_of(name: &str) -> Option<String> {
    let last = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let (stem, ext) = last.rsplit_once('.')?;
    if stem.is_empty() {
        return None;
    }
    sanitize_extension(ext)
}

/// A safe file name `{stem}.{ext}`: the stem sanitized like [`sanitize_component`] and cut
/// so that the whole name fits [`MAX_COMPONENT_BYTES`] with its extension kept. An unusable
/// extension becomes `bin`.
pub fn sanitize_file_name(stem: &str, ext: &str, fallback_stem: &str) -> String {
    let ext = sanitize_extension(ext).unwrap_or_else(|| "bin".to_string());
    let budget = MAX_COMPONENT_BYTES - ext.len() - 1;
    let mut s = bounded(stem, budget);
    if s.is_empty() {
        s = bounded(fallback_stem, budget);
    }
    if s.is_empty() {
        s = UNTITLED.to_string();
    }
    format!("{s}.{ext}")
}

/// `name` with the collision suffix ` (n)` for n >= 2, cut so the result stays bounded.
pub fn with_suffix(name: &str, n: u32) -> String {
    if n < 2 {
        return name.to_string();
    }
    let suffix = format!(" ({n})");
    let base = trim_ends(cut(name, MAX_COMPONENT_BYTES - suffix.len()));
    format!("{base}{suffix}")
}

/// The folder of a book's chapter tracks, beside its own folder: `{Title} (Chapters)`.
pub fn chapters_dir_name(book_dir_name: &str) -> String {
    let base = trim_ends(cut(
        book_dir_name,
        MAX_COMPONENT_BYTES - CHAPTERS_SUFFIX.len(),
    ));
    format!("{base}{CHAPTERS_SUFFIX}")
}

/// The whole-book file's name: `{Title}.{ext}`.
pub fn book_file_name(title: &str, ext: &str) -> String {
    sanitize_file_name(title, ext, UNTITLED)
}

/// A track's file name: `{NN} - {title}.{ext}`, numbered 1-based and zero-padded to the
/// width of `count` (at least two digits) so that every player sorts them in order. The
/// title falls back to the stem of `export_filename`, then to `Track NN`; the extension
/// comes from `export_filename`, else `fallback_ext`.
pub fn track_file_name(
    number: u32,
    count: u32,
    title: &str,
    export_filename: Option<&str>,
    fallback_ext: &str,
) -> String {
    let width = count.max(number).to_string().len().max(2);
    let prefix = format!("{number:0width$}");
    let ext = export_filename
        .and_then(extension_of)
        .or_else(|| sanitize_extension(fallback_ext))
        .unwrap_or_else(|| "bin".to_string());
    let export_stem = export_filename
        .map(|f| f.rsplit(['/', '\\']).next().unwrap_or(f))
        .map(|f| match f.rsplit_once('.') {
            Some((stem, _)) if !stem.is_empty() => stem,
            _ => f,
        })
        .unwrap_or("");
    let mut name = bounded(title, MAX_COMPONENT_BYTES);
    if name.is_empty() {
        name = bounded(export_stem, MAX_COMPONENT_BYTES);
    }
    if name.is_empty() {
        name = format!("Track {prefix}");
    }
    sanitize_file_name(&format!("{prefix} - {name}"), &ext, &prefix)
}

/// The key two names collide under on a case-insensitive file system (macOS, Windows):
/// NFC, lower-cased.
pub fn fold_key(rel: &str) -> String {
    rel.nfc().flat_map(char::to_lowercase).collect()
}

/// Where one book's files go, relative to the root, `/`-separated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookDirs {
    /// `{Author}/{Title}` (with ` (n)` after the title on a collision).
    pub book_dir: String,
    /// `{Author}/{Title} (Chapters)` (with the same collision suffix).
    pub chapters_dir: String,
}

/// The candidate folders for a book, attempt `n` (1 = no suffix, 2 = ` (2)`, ...).
pub fn book_dirs(author: Option<&str>, title: &str, n: u32) -> BookDirs {
    let author = sanitize_component(author.unwrap_or(""), UNKNOWN_AUTHOR);
    let title = with_suffix(&sanitize_component(title, UNTITLED), n);
    BookDirs {
        book_dir: format!("{author}/{title}"),
        chapters_dir: format!("{author}/{}", chapters_dir_name(&title)),
    }
}

/// A component of a stored relative path we accept: plain, not `.`/`..`, no separators,
/// no control characters, no drive or stream colon.
fn is_plain_component(c: &str) -> bool {
    !c.is_empty()
        && c != "."
        && c != ".."
        && !c
            .chars()
            .any(|ch| matches!(ch, '/' | '\\' | ':') || ch.is_control())
}

/// Joins a stored `/`-separated relative path onto `root`, refusing anything that is not a
/// plain relative path (absolute, `..`, backslashes, drive letters, empty parts).
pub fn join_relative(root: &Path, rel: &str) -> Result<PathBuf, LibraryError> {
    let mut path = root.to_path_buf();
    if rel.is_empty() {
        return Err(outside(root, rel));
    }
    for part in rel.split('/') {
        if !is_plain_component(part) {
            return Err(outside(root, rel));
        }
        path.push(part);
    }
    Ok(path)
}

fn outside(root: &Path, what: impl AsRef<Path>) -> LibraryError {
    LibraryError::OutsideRoot {
        root: root.to_path_buf(),
        path: what.as_ref().to_path_buf(),
    }
}

/// Proves that `path` is inside `root` (and is not the root itself): lexically (only
/// normal components after the root), and after resolving the longest part of `path` that
/// exists (so a symlinked folder or file pointing elsewhere is refused). Returns `path`.
pub fn ensure_inside(root: &Path, path: &Path) -> Result<PathBuf, LibraryError> {
    let rest = path.strip_prefix(root).map_err(|_| outside(root, path))?;
    if rest.as_os_str().is_empty() || !rest.components().all(|c| matches!(c, Component::Normal(_)))
    {
        return Err(outside(root, path));
    }
    // The longest existing ancestor (or the path itself), without following a final
    // symlink's absence: symlink_metadata sees dangling links too.
    let mut existing = Some(path);
    while let Some(p) = existing {
        if p.symlink_metadata().is_ok() {
            break;
        }
        existing = p.parent();
    }
    let Some(existing) = existing else {
        return Ok(path.to_path_buf());
    };
    if !existing.starts_with(root) {
        // Nothing at or below the root exists yet: the lexical check is the proof.
        return Ok(path.to_path_buf());
    }
    let real_root = root.canonicalize().map_err(|_| outside(root, path))?;
    // A dangling symlink cannot be canonicalized: refuse it.
    let real = existing.canonicalize().map_err(|_| outside(root, path))?;
    if real.starts_with(&real_root) && (real != real_root || existing == root) {
        Ok(path.to_path_buf())
    } else {
        Err(outside(root, path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn ok_component(s: &str) {
        assert!(!s.is_empty(), "empty");
        assert!(s.len() <= MAX_COMPONENT_BYTES, "{} bytes: {s:?}", s.len());
        assert!(
            !s.chars().any(
                |c| matches!(c, '/' | '\\' | '<' | '>' | ':' | '"' | '|' | '?' | '*')
                    || c.is_control()
            ),
            "{s:?}"
        );
        assert!(!s.starts_with('.') && !s.starts_with(' '), "{s:?}");
        assert!(!s.ends_with('.') && !s.ends_with(' '), "{s:?}");
        assert!(!is_reserved(s), "{s:?}");
        assert_ne!(s, "..");
        let nfc: String = s.nfc().collect();
        assert_eq!(nfc, s);
        let p = Path::new(s);
        assert_eq!(p.components().count(), 1, "{s:?}");
        assert!(matches!(p.components().next(), Some(Component::Normal(_))));
    }

    #[test]
    fn hostile_names_become_one_safe_component() {
        let cases: &[(&str, &str)] = &[
            ("../../x", "x"),
            ("/etc/passwd", "etc-passwd"),
            ("..", UNTITLED),
            (".", UNTITLED),
            ("...", UNTITLED),
            ("", UNTITLED),
            ("   ", UNTITLED),
            ("CON", "_CON"),
            ("con", "_con"),
            ("CON.wav", "_CON.wav"),
            ("nul .txt", "_nul .txt"),
            ("LPT9", "_LPT9"),
            ("COM¹", "_COM¹"),
            ("CONSOLE", "CONSOLE"),
            ("a\u{0}b", "a b"),
            ("a\nb\tc", "a b c"),
            ("C:\\Windows\\x", "C --Windows-x"),
            ("a/../b", "a-b"),
            ("AC/DC", "AC-DC"),
            ("Book: The Sequel", "Book - The Sequel"),
            ("What? *Now*", "What Now"),
            ("<a|b>", "(a-b)"),
            ("say \"hi\"", "say 'hi'"),
            (".hidden", "hidden"),
            ("trailing. . ", "trailing"),
            ("a\u{202E}gpj.exe", "a gpj.exe"),
            ("e\u{0301}", "é"),
        ];
        for (raw, want) in cases {
            let got = sanitize_component(raw, UNTITLED);
            assert_eq!(&got, want, "{raw:?}");
            ok_component(&got);
        }
        assert_eq!(sanitize_component("", UNKNOWN_AUTHOR), UNKNOWN_AUTHOR);
        assert_eq!(sanitize_component("..", ".."), UNTITLED);
    }

    #[test]
    fn long_names_are_cut_on_a_char_boundary() {
        let long = "é".repeat(5000);
        let s = sanitize_component(&long, UNTITLED);
        ok_component(&s);
        assert_eq!(s.len(), 120);
        let long = format!("{}.", "a".repeat(119));
        assert_eq!(sanitize_component(&long, UNTITLED).len(), 119);
        // The cut may leave a trailing space: it is trimmed.
        let spaced = format!("{} b", "a".repeat(119));
        assert_eq!(sanitize_component(&spaced, UNTITLED), "a".repeat(119));
        let f = sanitize_file_name(&"語".repeat(5000), "flac", UNTITLED);
        assert!(
            f.ends_with(".flac") && f.len() <= MAX_COMPONENT_BYTES,
            "{f}"
        );
        ok_component(&f);
    }

    #[test]
    fn file_names_keep_a_safe_extension() {
        assert_eq!(book_file_name("My Book", "mp3"), "My Book.mp3");
        assert_eq!(book_file_name("CON", "wav"), "_CON.wav");
        assert_eq!(book_file_name("../../x", ".M4B"), "x.m4b");
        assert_eq!(book_file_name("a", "../x"), "a.bin");
        assert_eq!(book_file_name("", "ogg"), "Untitled.ogg");
        assert_eq!(
            extension_of("audiobooks/u/j/B_COMPLETE.WAV"),
            Some("wav".into())
        );
        assert_eq!(extension_of(".bashrc"), None);
        assert_eq!(extension_of("x.tar/../y"), None);
        assert_eq!(extension_of("noext"), None);
    }

    #[test]
    fn track_names_sort_and_fall_back() {
        assert_eq!(
            track_file_name(1, 12, "Chapter One", Some("01 - Chapter One.wav"), "mp3"),
            "01 - Chapter One.wav"
        );
        assert_eq!(
            track_file_name(7, 120, "", Some("../../etc/passwd"), "mp3"),
            "007 - passwd.mp3"
        );
        assert_eq!(
            track_file_name(3, 3, "", None, "flac"),
            "03 - Track 03.flac"
        );
        assert_eq!(
            track_file_name(2, 9, "Part 1/2", Some("CON.wav"), "mp3"),
            "02 - Part 1-2.wav"
        );
        let t = track_file_name(1, 2, &"x".repeat(5000), Some(&"y".repeat(5000)), "mp3");
        ok_component(&t);
        assert!(t.starts_with("01 - x") && t.ends_with(".mp3"), "{t}");
    }

    #[test]
    fn suffixes_and_chapter_dirs_stay_bounded() {
        assert_eq!(with_suffix("Book", 1), "Book");
        assert_eq!(with_suffix("Book", 2), "Book (2)");
        let long = "b".repeat(MAX_COMPONENT_BYTES);
        ok_component(&with_suffix(&long, 12345));
        ok_component(&chapters_dir_name(&long));
        assert!(chapters_dir_name(&long).ends_with(CHAPTERS_SUFFIX));
        let d = book_dirs(None, "../../x", 2);
        assert_eq!(d.book_dir, "Unknown Author/x (2)");
        assert_eq!(d.chapters_dir, "Unknown Author/x (2) (Chapters)");
        assert_eq!(fold_key("Ünknown/BOOK"), fold_key("U\u{0308}nknown/book"));
    }

    #[test]
    fn random_strings_always_give_one_bounded_component_inside_the_root() {
        let root = Path::new("/library/root");
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let alphabet: Vec<char> =
            "aZ0 ./\\:*?\"<>|\u{0}\u{1f}\u{7f}\u{85}\u{202e}\u{feff}éß語😀\u{301}CONLPT1nul"
                .chars()
                .collect();
        // 1,500 strings of up to 300 characters (a few seconds in a debug build).
        for _ in 0..1500 {
            let len = rng.random_range(0..300);
            let s: String = (0..len)
                .map(|_| {
                    if rng.random_bool(0.1) {
                        char::from_u32(rng.random_range(0..0x11_0000)).unwrap_or('x')
                    } else {
                        alphabet[rng.random_range(0..alphabet.len())]
                    }
                })
                .collect();
            let c = sanitize_component(&s, UNTITLED);
            ok_component(&c);
            let f = sanitize_file_name(&s, &s, UNTITLED);
            ok_component(&f);
            let t = track_file_name(rng.random_range(1..500), 500, &s, Some(&s), &s);
            ok_component(&t);
            let d = book_dirs(Some(&s), &s, rng.random_range(1..1000));
            for rel in [&d.book_dir, &d.chapters_dir] {
                let p = join_relative(root, rel).unwrap();
                assert_eq!(p.components().count(), root.components().count() + 2);
                ensure_inside(root, &p).unwrap();
            }
            let p = join_relative(root, &format!("{}/{c}/{f}", d.book_dir)).unwrap();
            ensure_inside(root, &p).unwrap();
        }
    }

    #[test]
    fn relative_paths_must_be_plain() {
        let root = Path::new("/lib");
        assert_eq!(
            join_relative(root, "A/B/c.mp3").unwrap(),
            PathBuf::from("/lib/A/B/c.mp3")
        );
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "a/./b",
            "a\\..\\b",
            "C:x",
            "a/b\u{0}",
        ] {
            assert!(join_relative(root, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ensure_inside_is_lexical_and_resolves_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("a")).unwrap();
        let outside_dir = dir.path().join("outside");
        std::fs::create_dir_all(&outside_dir).unwrap();
        std::fs::write(outside_dir.join("secret"), b"x").unwrap();

        assert!(ensure_inside(&root, &root.join("a/b/c.mp3")).is_ok());
        assert!(ensure_inside(&root, &root.join("new/dir/x")).is_ok());
        assert!(ensure_inside(&root, &root).is_err());
        assert!(ensure_inside(&root, &root.join("a/../../outside/secret")).is_err());
        assert!(ensure_inside(&root, &outside_dir.join("secret")).is_err());
        assert!(ensure_inside(&root, Path::new("/etc/passwd")).is_err());
        // A root that does not exist yet: lexical proof only.
        let fresh = dir.path().join("fresh");
        assert!(ensure_inside(&fresh, &fresh.join("x/y")).is_ok());

        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&outside_dir, root.join("link")).unwrap();
            std::os::unix::fs::symlink(outside_dir.join("secret"), root.join("a/file")).unwrap();
            std::os::unix::fs::symlink(dir.path().join("nowhere"), root.join("dangling")).unwrap();
            assert!(ensure_inside(&root, &root.join("link/secret")).is_err());
            assert!(ensure_inside(&root, &root.join("link/new/file")).is_err());
            assert!(ensure_inside(&root, &root.join("a/file")).is_err());
            assert!(ensure_inside(&root, &root.join("dangling")).is_err());
            // A symlink that stays inside the root is fine.
            std::os::unix::fs::symlink(root.join("a"), root.join("alias")).unwrap();
            assert!(ensure_inside(&root, &root.join("alias/x")).is_ok());
            // A root that is itself a symlink works through its real path.
            let via = dir.path().join("via");
            std::os::unix::fs::symlink(&root, &via).unwrap();
            assert!(ensure_inside(&via, &via.join("a/x")).is_ok());
        }
    }
}

//! [`WatchFs`]: the few file-system operations the watcher's decisions need (stat, list a
//! folder, try to open, hash, move), behind a trait so the decision logic runs against
//! the in-memory [`FakeFs`](super::fake::FakeFs) in unit tests and [`RealFs`] otherwise.
//!
//! It owns the per-OS reading of "is this file still a cloud placeholder?" and "is it
//! hidden?" (see docs/watch.md). It never decides anything and never writes a file except
//! through [`WatchFs::move_no_clobber`], which never overwrites.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// What a path is, after following a symlink (see [`FileStat::symlink`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    File,
    Dir,
    /// A socket, a device, a dangling symlink: never a manuscript.
    Other,
}

/// What the watcher knows of one path at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStat {
    pub kind: FileKind,
    pub size: u64,
    /// Modification time in milliseconds since the epoch (0 if the OS has none).
    pub mtime_ms: i64,
    /// The path itself is a symbolic link (or a Windows junction); `kind` is its target's.
    pub symlink: bool,
    /// The OS marks it hidden beyond a leading dot (Windows' hidden attribute).
    pub hidden: bool,
    /// Still a cloud placeholder or partly synced, where the OS says so (Windows
    /// recall-on-access/offline attributes, macOS dataless files). Waited for.
    pub placeholder: bool,
    /// `(device, inode)` where the OS has them: loop detection in the scanner.
    pub file_id: Option<(u64, u64)>,
}

/// The file-system operations of the watcher. Errors are plain `io::Error`s: the caller
/// tells NotFound (dropped), PermissionDenied (reported, skipped) and the rest apart.
pub trait WatchFs: Send + Sync {
    /// Stats `path`, following a symlink for the kind, size and mtime.
    fn stat(&self, path: &Path) -> io::Result<FileStat>;
    /// The entries of a folder (full paths), in no particular order.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>>;
    /// Opens the file for reading and closes it: fails while another program holds it
    /// exclusively (Windows sharing violations) or when reading is not permitted.
    fn open_for_reading(&self, path: &Path) -> io::Result<()>;
    /// The SHA-256 of the file's bytes, lower-case hex.
    fn sha256(&self, path: &Path) -> io::Result<String>;
    /// Creates a folder and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Moves `from` to `to`; fails with `AlreadyExists` rather than overwrite `to`.
    fn move_no_clobber(&self, from: &Path, to: &Path) -> io::Result<()>;
}

/// The machine's file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealFs;

fn mtime_ms(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(windows)]
fn os_flags(meta: &std::fs::Metadata) -> (bool, bool, Option<(u64, u64)>) {
    use std::os::windows::fs::MetadataExt;
    const HIDDEN: u32 = 0x2;
    const OFFLINE: u32 = 0x1000;
    const RECALL_ON_OPEN: u32 = 0x4_0000;
    const RECALL_ON_DATA_ACCESS: u32 = 0x40_0000;
    let a = meta.file_attributes();
    let placeholder = a & (OFFLINE | RECALL_ON_OPEN | RECALL_ON_DATA_ACCESS) != 0;
    (a & HIDDEN != 0, placeholder, None)
}

#[cfg(target_os = "macos")]
fn os_flags(meta: &std::fs::Metadata) -> (bool, bool, Option<(u64, u64)>) {
    use std::os::macos::fs::MetadataExt;
    use std::os::unix::fs::MetadataExt as _;
    // <sys/stat.h>: UF_HIDDEN (Finder's hidden flag), SF_DATALESS (a File Provider or
    // iCloud placeholder whose bytes are not on disk yet).
    const UF_HIDDEN: u32 = 0x8000;
    const SF_DATALESS: u32 = 0x4000_0000;
    let f = meta.st_flags();
    (
        f & UF_HIDDEN != 0,
        f & SF_DATALESS != 0,
        Some((meta.dev(), meta.ino())),
    )
}

#[cfg(all(unix, not(target_os = "macos")))]
fn os_flags(meta: &std::fs::Metadata) -> (bool, bool, Option<(u64, u64)>) {
    use std::os::unix::fs::MetadataExt;
    // Linux exposes no placeholder state: sync clients there write to hidden or
    // `.part`-style temporary names and rename, which the ignore rules cover.
    (false, false, Some((meta.dev(), meta.ino())))
}

#[cfg(not(any(unix, windows)))]
fn os_flags(_meta: &std::fs::Metadata) -> (bool, bool, Option<(u64, u64)>) {
    (false, false, None)
}

impl WatchFs for RealFs {
    fn stat(&self, path: &Path) -> io::Result<FileStat> {
        let link = std::fs::symlink_metadata(path)?;
        let symlink = link.file_type().is_symlink() || is_junction(&link);
        let meta = if symlink {
            match std::fs::metadata(path) {
                Ok(m) => m,
                // A dangling link: something, but not a file to read.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Ok(FileStat {
                        kind: FileKind::Other,
                        size: 0,
                        mtime_ms: 0,
                        symlink: true,
                        hidden: false,
                        placeholder: false,
                        file_id: None,
                    });
                }
                Err(e) => return Err(e),
            }
        } else {
            link
        };
        let kind = if meta.is_file() {
            FileKind::File
        } else if meta.is_dir() {
            FileKind::Dir
        } else {
            FileKind::Other
        };
        let (hidden, placeholder, file_id) = os_flags(&meta);
        Ok(FileStat {
            kind,
            size: meta.len(),
            mtime_ms: mtime_ms(&meta),
            symlink,
            hidden,
            placeholder,
            file_id,
        })
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(path)? {
            out.push(entry?.path());
        }
        Ok(out)
    }

    fn open_for_reading(&self, path: &Path) -> io::Result<()> {
        let mut f = std::fs::File::open(path)?;
        // Reading a byte is what fails on a locked region or a placeholder that cannot
        // be fetched; an empty read is fine.
        let mut b = [0u8; 1];
        f.read(&mut b).map(|_| ())
    }

    fn sha256(&self, path: &Path) -> io::Result<String> {
        let mut f = std::fs::File::open(path)?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(hex::encode(h.finalize()))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn move_no_clobber(&self, from: &Path, to: &Path) -> io::Result<()> {
        // A hard link fails if `to` exists: an atomic no-clobber where links work (same
        // volume); else a checked rename (a tiny race, only with another writer of `to`).
        match std::fs::hard_link(from, to) {
            Ok(()) => std::fs::remove_file(from),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
            Err(_) => {
                if std::fs::symlink_metadata(to).is_ok() {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{} exists", to.display()),
                    ));
                }
                std::fs::rename(from, to)
            }
        }
    }
}

#[cfg(windows)]
fn is_junction(meta: &std::fs::Metadata) -> bool {
    use std::os::windows::fs::MetadataExt;
    const REPARSE_POINT: u32 = 0x400;
    meta.file_attributes() & REPARSE_POINT != 0 && meta.is_dir()
}

#[cfg(not(windows))]
fn is_junction(_meta: &std::fs::Metadata) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_fs_stats_hashes_and_never_clobbers() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let a = dir.path().join("a.txt");
        let b = dir.path().join("b.txt");
        std::fs::write(&a, b"abc").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&b, b"other").unwrap_or_else(|e| panic!("{e}"));
        let fs = RealFs;
        let st = fs.stat(&a).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((st.kind, st.size, st.symlink), (FileKind::File, 3, false));
        assert_eq!(
            fs.sha256(&a).unwrap_or_default(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let e = fs.move_no_clobber(&a, &b).err().map(|e| e.kind());
        assert_eq!(e, Some(io::ErrorKind::AlreadyExists));
        assert_eq!(std::fs::read(&b).unwrap_or_default(), b"other");
        let c = dir.path().join("c.txt");
        fs.move_no_clobber(&a, &c).unwrap_or_else(|e| panic!("{e}"));
        assert!(!a.exists() && c.exists());
        assert_eq!(
            fs.stat(dir.path()).map(|s| s.kind).ok(),
            Some(FileKind::Dir)
        );
    }
}

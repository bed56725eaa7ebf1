//! The `.part` file of a download: created (or reopened to resume) next to the
//! destination, sized up front, written at offsets by several ranged GETs at once, read
//! back for the checksum, flushed, and finally put in place with a rename that never
//! replaces an existing file.
//!
//! It owns the file handle and these blocking calls (run on tokio's blocking pool). It
//! never decides what to write or whether the bytes are right (the download engine does),
//! and never deletes anything but the `.part` it was given.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An open `.part` file; cheap to clone (one shared handle: positioned I/O only).
#[derive(Debug, Clone)]
pub struct PartFile {
    file: Arc<File>,
    path: PathBuf,
}

impl PartFile {
    /// Creates `path` afresh (truncating a stale one) and reserves `size` bytes for it
    /// (preallocated where the file system can, so a full disk shows at once; else just
    /// sized).
    pub async fn create(path: &Path, size: u64) -> io::Result<PartFile> {
        let p = path.to_path_buf();
        let file = blocking(move || {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&p)?;
            if size > 0 {
                match fs4::FileExt::allocate(&file, size) {
                    Ok(()) => {}
                    // Not supported here (some network and FAT file systems): a plain
                    // size will do; a full disk then shows at the write that hits it.
                    Err(e) if e.kind() != io::ErrorKind::StorageFull => {}
                    Err(e) => return Err(e),
                }
            }
            file.set_len(size)?;
            Ok(file)
        })
        .await?;
        Ok(PartFile {
            file: Arc::new(file),
            path: path.to_path_buf(),
        })
    }

    /// Reopens an existing `.part` to resume; `None` if it is missing or not `size` bytes
    /// long (then it cannot be trusted and the download starts over).
    pub async fn reopen(path: &Path, size: u64) -> io::Result<Option<PartFile>> {
        let p = path.to_path_buf();
        let file = blocking(move || {
            let file = match OpenOptions::new().read(true).write(true).open(&p) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            if !file.metadata()?.is_file() || file.metadata()?.len() != size {
                return Ok(None);
            }
            Ok(Some(file))
        })
        .await?;
        Ok(file.map(|f| PartFile {
            file: Arc::new(f),
            path: path.to_path_buf(),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes all of `buf` at `offset`; hands the buffer back for reuse.
    pub async fn write_at(&self, buf: Vec<u8>, offset: u64) -> io::Result<Vec<u8>> {
        let file = self.file.clone();
        blocking(move || {
            write_all_at(&file, &buf, offset)?;
            Ok(buf)
        })
        .await
    }

    /// Starts writing all of `buf` at `offset` on the blocking pool, so the caller can
    /// receive the next buffer meanwhile; the task hands the buffer back.
    pub fn spawn_write(
        &self,
        buf: Vec<u8>,
        offset: u64,
    ) -> tokio::task::JoinHandle<io::Result<Vec<u8>>> {
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || {
            write_all_at(&file, &buf, offset)?;
            Ok(buf)
        })
    }

    /// Fills `buf` from `offset` (the caller asks only for bytes that exist).
    pub async fn read_at(&self, mut buf: Vec<u8>, offset: u64) -> io::Result<Vec<u8>> {
        let file = self.file.clone();
        blocking(move || {
            read_exact_at(&file, &mut buf, offset)?;
            Ok(buf)
        })
        .await
    }

    /// The file's length on disk.
    pub async fn len(&self) -> io::Result<u64> {
        let file = self.file.clone();
        blocking(move || Ok(file.metadata()?.len())).await
    }

    /// Flushes the data written so far to the disk (the size is fixed at creation, so
    /// the metadata a read needs is already there); runs while other writes go on.
    pub async fn sync_data(&self) -> io::Result<()> {
        let file = self.file.clone();
        blocking(move || file.sync_data()).await
    }

    /// Flushes data and metadata to the disk.
    pub async fn sync(&self) -> io::Result<()> {
        let file = self.file.clone();
        blocking(move || file.sync_all()).await
    }
}

/// Puts `part` in place as `dest` without ever replacing an existing `dest`: a hard link
/// (which fails if `dest` exists) then removing `part`; on file systems without hard
/// links, a rename after checking that `dest` is free. `Err(AlreadyExists)` if taken.
pub async fn put_in_place(part: &Path, dest: &Path) -> io::Result<()> {
    let (part, dest) = (part.to_path_buf(), dest.to_path_buf());
    blocking(move || match std::fs::hard_link(&part, &dest) {
        Ok(()) => std::fs::remove_file(&part),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
        Err(_) => {
            if std::fs::symlink_metadata(&dest).is_ok() {
                return Err(io::ErrorKind::AlreadyExists.into());
            }
            std::fs::rename(&part, &dest)
        }
    })
    .await
}

/// Removes `path` if it exists.
pub async fn remove(path: &Path) -> io::Result<()> {
    let path = path.to_path_buf();
    blocking(move || match std::fs::remove_file(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    })
    .await
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io::Error::other(format!("a disk task failed: {e}")))?
}

#[cfg(unix)]
fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
}

#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
fn write_all_at(file: &File, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_write(buf, offset) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                buf = &buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(windows)]
fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn positioned_writes_resume_and_place_without_clobbering() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let part = dir.path().join("a.wav.part");
        let f = PartFile::create(&part, 10)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        f.write_at(b"6789".to_vec(), 6)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        f.write_at(b"012345".to_vec(), 0)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let back = f
            .read_at(vec![0; 4], 3)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, b"3456");
        f.sync().await.unwrap_or_else(|e| panic!("{e}"));
        drop(f);
        assert!(PartFile::reopen(&part, 11).await.ok().flatten().is_none());
        assert!(PartFile::reopen(&part, 10).await.ok().flatten().is_some());
        let missing = dir.path().join("none.part");
        assert!(
            PartFile::reopen(&missing, 10)
                .await
                .ok()
                .flatten()
                .is_none()
        );

        let dest = dir.path().join("a.wav");
        std::fs::write(&dest, b"taken").unwrap_or_else(|e| panic!("{e}"));
        let err = put_in_place(&part, &dest).await.err();
        assert_eq!(err.map(|e| e.kind()), Some(io::ErrorKind::AlreadyExists));
        assert_eq!(std::fs::read(&dest).unwrap_or_default(), b"taken");
        std::fs::remove_file(&dest).unwrap_or_else(|e| panic!("{e}"));
        put_in_place(&part, &dest)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(std::fs::read(&dest).unwrap_or_default(), b"0123456789");
        assert!(!part.exists());
    }
}

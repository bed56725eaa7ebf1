//! [`ItemLock`]: the cross-process lock of one queue item, so that two processes over the
//! same `state.db` (two `rohimaya upload`s, `rohimaya queue run` beside the app) never
//! drive the same file at once.
//!
//! A file `locks/upload-{id}.lock` beside `state.db`, held with the OS's advisory lock
//! (`File::try_lock`: `flock` on Unix, `LockFileEx` on Windows), as the session lock in
//! [`crate::auth`] is. The OS releases it when its holder ends, also on a crash or a kill,
//! so a lock is never stale. The holder writes its process id into the file, for messages.
//!
//! It owns the lock files and their naming. It never waits for a lock (a holder may upload
//! for hours: a busy item is reported, not queued behind) and never deletes a lock file
//! (deleting one another process has open would let two processes lock "the same" item).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The held lock of one queue item; released when dropped.
#[derive(Debug)]
pub struct ItemLock {
    _file: Option<File>,
}

/// What trying to lock an item gave.
#[derive(Debug)]
pub enum Locked {
    /// This process now holds the item.
    Held(ItemLock),
    /// Another process holds it (its process id when it could be read).
    Busy { holder: Option<u32> },
}

/// The lock file of item `id` in `dir`.
pub fn lock_path(dir: &Path, id: i64) -> PathBuf {
    dir.join(format!("upload-{id}.lock"))
}

/// Tries to lock item `id` without waiting. When the lock file cannot be used at all (a
/// read-only data dir) this goes on unlocked, with a warning, rather than making uploads
/// impossible.
pub fn try_lock(dir: &Path, id: i64) -> Locked {
    let path = lock_path(dir, id);
    let open = || -> std::io::Result<File> {
        std::fs::create_dir_all(dir)?;
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
    };
    let mut file = match open() {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(
                "cannot open {}: {e}; uploading without the cross-process lock",
                path.display()
            );
            return Locked::Held(ItemLock { _file: None });
        }
    };
    match file.try_lock() {
        Ok(()) => {
            // Best effort: only messages read it.
            let _ = file
                .set_len(0)
                .and_then(|()| write!(file, "{}", std::process::id()));
            Locked::Held(ItemLock { _file: Some(file) })
        }
        Err(TryLockError::WouldBlock) => Locked::Busy {
            holder: std::fs::read_to_string(&path)
                .ok()
                .and_then(|s| s.trim().parse().ok()),
        },
        Err(TryLockError::Error(e)) => {
            tracing::warn!(
                "cannot lock {}: {e}; uploading without the cross-process lock",
                path.display()
            );
            Locked::Held(ItemLock { _file: None })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_item_is_busy_for_another_open_and_free_once_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let Locked::Held(first) = try_lock(dir.path(), 7) else {
            panic!("a fresh item must lock");
        };
        // flock locks belong to the open file: a second open conflicts as another
        // process's would.
        match try_lock(dir.path(), 7) {
            Locked::Busy { holder } => assert_eq!(holder, Some(std::process::id())),
            Locked::Held(_) => panic!("locked twice"),
        }
        assert!(matches!(try_lock(dir.path(), 8), Locked::Held(_)));
        drop(first);
        assert!(matches!(try_lock(dir.path(), 7), Locked::Held(_)));
    }
}

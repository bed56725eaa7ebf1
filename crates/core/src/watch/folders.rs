//! Adding, removing, pausing and resuming watched folders: the checks before a folder is
//! stored (it exists, is a folder, its ignore patterns parse, its job defaults are values
//! the engine accepts) and the path it is stored under (absolute; canonical where that
//! does not change its form, i.e. not on Windows, where canonical paths are `\\?\`
//! verbatim paths the OS's events do not use).
//!
//! It owns those checks; it never scans or watches (the [`service`](super::service) does).

use std::path::{Path, PathBuf};

use super::WatchError;
use super::config::{FolderConfig, WatchedFolder};
use super::rules::IgnoreRules;
use super::store::WatchStore;

/// The narration modes and audio formats the engine accepts.
pub const MODES: &[&str] = &["single_voice", "dual_voice", "findaway"];
pub const FORMATS: &[&str] = &["mp3", "wav", "flac", "m4b"];

fn absolute(dir: &Path) -> PathBuf {
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// The path a folder is stored and watched under; it must exist and be a folder.
pub fn folder_path(dir: &Path) -> Result<PathBuf, WatchError> {
    let invalid = |reason: String| WatchError::FolderInvalid {
        path: dir.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(dir).map_err(|e| {
        invalid(if e.kind() == std::io::ErrorKind::NotFound {
            "it does not exist".into()
        } else {
            format!("it cannot be read ({e})")
        })
    })?;
    if !meta.is_dir() {
        return Err(invalid("it is a file, not a folder".into()));
    }
    std::fs::read_dir(dir).map_err(|e| invalid(format!("it cannot be listed ({e})")))?;
    if cfg!(windows) {
        Ok(absolute(dir))
    } else {
        std::fs::canonicalize(dir).map_err(|e| invalid(e.to_string()))
    }
}

/// The stored form of `dir` even if it is missing now (to remove an unavailable folder).
fn lookup_path(dir: &Path) -> PathBuf {
    folder_path(dir).unwrap_or_else(|_| absolute(dir))
}

/// Checks and stores a new watched folder.
pub fn add_folder(store: &WatchStore, mut cfg: FolderConfig) -> Result<WatchedFolder, WatchError> {
    cfg.path = folder_path(&cfg.path)?;
    let invalid = |reason: String| WatchError::FolderInvalid {
        path: cfg.path.clone(),
        reason,
    };
    if let Some(m) = cfg.options.mode.as_deref()
        && !MODES.contains(&m)
    {
        return Err(invalid(format!(
            "mode {m:?} is not one of {}",
            MODES.join(", ")
        )));
    }
    if let Some(f) = cfg.options.format.as_deref()
        && !FORMATS.contains(&f)
    {
        return Err(invalid(format!(
            "format {f:?} is not one of {}",
            FORMATS.join(", ")
        )));
    }
    IgnoreRules::new(&cfg.path, &cfg.ignore)?;
    cfg.options.title = None;
    store.add_folder(&cfg)
}

/// Stops watching `dir` (which may be missing now). What was uploaded stays remembered.
pub fn remove_folder(store: &WatchStore, dir: &Path) -> Result<WatchedFolder, WatchError> {
    let f = store.folder_by_path(&lookup_path(dir))?;
    store.remove_folder(f.id)?;
    Ok(f)
}

/// Pauses or resumes one folder, or every folder when `dir` is `None`.
pub fn set_paused(store: &WatchStore, dir: Option<&Path>, paused: bool) -> Result<(), WatchError> {
    match dir {
        Some(dir) => {
            let f = store.folder_by_path(&lookup_path(dir))?;
            store.set_folder_paused(f.id, paused)
        }
        None => {
            let mut s = store.settings()?;
            s.paused = paused;
            store.save_settings(&s)
        }
    }
}

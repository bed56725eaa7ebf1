//! [`WatchEngine`]: the watcher's decisions as a state machine over a [`WatchFs`] and a
//! [`Clock`]. Inputs: "these paths changed" (file-system events), "scan this folder",
//! "time passed" ([`WatchEngine::tick`]), and what the upload queue said about a file.
//! Outputs: the `watch_pending` rows (stable, new content to upload), the `watch_files`
//! memory, the activity log and bus events.
//!
//! The rules it owns:
//! - ignored? ([`IgnoreRules`]) -> never considered; logged once per path and version;
//! - stable? size and mtime unchanged for the stability window, not a cloud placeholder,
//!   not empty, and it opens for reading; else waited for (logged once per reason);
//! - seen? the SHA-256 matches a file handled before (renamed, moved, copied, re-scanned,
//!   restarted) -> not uploaded; a path already handled at the same size and mtime is not
//!   even hashed;
//! - new content under a path handled before -> a new version (a new job).
//!
//! It never sleeps, never talks to the network and never reads a file except through the
//! [`WatchFs`]: the [`service`](super::service) drives it from real events and timers,
//! unit tests from a [`FakeFs`](super::fake::FakeFs) and a fake clock.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::WatchError;
use super::activity::ActivityKind;
use super::clock::Clock;
use super::config::{AfterUpload, WatchSettings, WatchedFolder};
use super::fs::{FileKind, FileStat, WatchFs};
use super::rules::{IgnoreRules, UPLOADED_DIR};
use super::scan::{self, ScanProblem};
use super::store::{FileOutcome, FileRecord, PendingUpload, WatchStore};
use crate::api::uploads::JobOptions;
use crate::events::{Event, EventBus};

/// Why a candidate is not uploaded yet (each is logged once per candidate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum WaitReason {
    Growing,
    Placeholder,
    Empty,
    Locked,
}

#[derive(Debug, Clone)]
struct Candidate {
    folder_id: i64,
    size: u64,
    mtime_ms: i64,
    /// When size and mtime were last seen to change (clock ms).
    since_ms: u64,
    /// When to look again (clock ms).
    due_ms: u64,
    logged: Vec<WaitReason>,
}

struct FolderRuntime {
    folder: WatchedFolder,
    rules: IgnoreRules,
}

/// What changed in the folder list after [`WatchEngine::reload_folders`] or
/// [`WatchEngine::check_folders`]: the service (un)watches and scans accordingly.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FolderChanges {
    /// Folders to start watching (new, resumed or back) and scan.
    pub start: Vec<(i64, PathBuf, bool)>,
    /// Folders to stop watching (removed, paused or gone).
    pub stop: Vec<PathBuf>,
}

impl FolderChanges {
    pub fn is_empty(&self) -> bool {
        self.start.is_empty() && self.stop.is_empty()
    }

    fn merge(&mut self, other: FolderChanges) {
        self.start.extend(other.start);
        self.stop.extend(other.stop);
    }
}

/// What the upload queue says about a file the watcher handed to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueOutcome {
    Completed {
        job_id: String,
    },
    Failed {
        message: String,
    },
    Cancelled,
    /// The queue has no such item any more.
    Gone,
}

/// The watcher's state machine.
pub struct WatchEngine {
    fs: Arc<dyn WatchFs>,
    clock: Arc<dyn Clock>,
    store: WatchStore,
    bus: Option<EventBus>,
    settings: WatchSettings,
    folders: BTreeMap<i64, FolderRuntime>,
    candidates: BTreeMap<PathBuf, Candidate>,
    /// Paths handled (or pending) at this size and mtime: a scan skips them.
    known: HashMap<PathBuf, (u64, i64)>,
    /// Paths already reported as ignored or skipped at this size and mtime.
    reported: HashMap<PathBuf, (u64, i64)>,
    /// Pending files whose "cannot upload yet" reason was logged (with the reason).
    deferred: HashMap<PathBuf, String>,
    /// New pending files since [`WatchEngine::take_new_pending`] was last called.
    new_pending: bool,
}

impl std::fmt::Debug for WatchEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchEngine")
            .field("folders", &self.folders.len())
            .field("candidates", &self.candidates.len())
            .finish()
    }
}

fn human_size(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} bytes"),
    }
}

/// Caps how many ignored/skipped paths are remembered (to log each once).
const REPORTED_CAP: usize = 100_000;

impl WatchEngine {
    /// An engine over `store`'s folders and memory. Nothing is scanned yet: call
    /// [`reload_folders`](Self::reload_folders) and [`check_folders`](Self::check_folders).
    pub fn new(
        fs: Arc<dyn WatchFs>,
        clock: Arc<dyn Clock>,
        store: WatchStore,
        bus: Option<EventBus>,
    ) -> Result<Self, WatchError> {
        let settings = store.settings()?;
        let known = store
            .known_paths()?
            .into_iter()
            .map(|(p, s, m)| (p, (s, m)))
            .collect();
        Ok(Self {
            fs,
            clock,
            store,
            bus,
            settings,
            folders: BTreeMap::new(),
            candidates: BTreeMap::new(),
            known,
            reported: HashMap::new(),
            deferred: HashMap::new(),
            // Pending rows from an earlier run are new to this one.
            new_pending: true,
        })
    }

    pub fn store(&self) -> &WatchStore {
        &self.store
    }

    pub fn settings(&self) -> WatchSettings {
        self.settings
    }

    /// Uses `settings` from now on (not saved; [`WatchStore::save_settings`] saves).
    pub fn set_settings(&mut self, settings: WatchSettings) {
        self.settings = settings;
    }

    /// Paths waiting to become stable.
    pub fn waiting(&self) -> Vec<PathBuf> {
        self.candidates.keys().cloned().collect()
    }

    fn log(&self, folder_id: Option<i64>, path: &Path, kind: ActivityKind, detail: &str) {
        match self.store.log(folder_id, path, kind, detail) {
            Ok(a) => {
                tracing::debug!("watch: {a}");
                if let Some(bus) = &self.bus {
                    bus.publish(Event::WatchActivity(a));
                }
            }
            Err(e) => tracing::warn!("watch: {e}"),
        }
    }

    fn report_once(
        &mut self,
        folder_id: i64,
        path: &Path,
        version: (u64, i64),
        kind: ActivityKind,
        why: &str,
    ) {
        if self.reported.get(path) == Some(&version) {
            return;
        }
        if self.reported.len() >= REPORTED_CAP {
            self.reported.clear();
        }
        self.reported.insert(path.to_path_buf(), version);
        self.log(Some(folder_id), path, kind, why);
    }

    fn active(&self, f: &FolderRuntime) -> bool {
        !self.settings.paused && !f.folder.paused && f.folder.available
    }

    /// The active folder `path` is inside (as a file the folder covers), if any.
    fn folder_for(&self, path: &Path) -> Option<&FolderRuntime> {
        self.folders
            .values()
            .filter(|f| self.active(f))
            .filter(|f| path.starts_with(&f.folder.path) && path != f.folder.path)
            .filter(|f| f.folder.recursive || path.parent() == Some(f.folder.path.as_path()))
            .max_by_key(|f| f.folder.path.components().count())
    }

    // ---- folders ----

    /// Re-reads the folder list and settings from the store (another process may have
    /// added, removed, paused or resumed folders).
    pub fn reload_folders(&mut self) -> Result<FolderChanges, WatchError> {
        let was_paused = self.settings.paused;
        let mut settings = self.store.settings()?;
        // Timing settings given to this engine (tests, `watch run` flags) stay.
        settings.stability_window = self.settings.stability_window;
        settings.rescan_interval = self.settings.rescan_interval;
        settings.folder_check_interval = self.settings.folder_check_interval;
        let active_before: Vec<(i64, PathBuf)> = self
            .folders
            .values()
            .filter(|f| self.active(f))
            .map(|f| (f.folder.id, f.folder.path.clone()))
            .collect();
        self.settings = settings;
        let mut next = BTreeMap::new();
        for folder in self.store.folders()? {
            let rules = match IgnoreRules::new(&folder.path, &folder.ignore) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(
                        "watch: {}: {e}; using the default rules",
                        folder.path.display()
                    );
                    IgnoreRules::new(&folder.path, &[]).map_err(WatchError::Pattern)?
                }
            };
            let mut folder = folder;
            // Availability is this engine's view until it checks again.
            if let Some(old) = self.folders.get(&folder.id) {
                folder.available = old.folder.available;
            }
            next.insert(folder.id, FolderRuntime { folder, rules });
        }
        self.folders = next;
        let mut changes = FolderChanges::default();
        let active_now: Vec<i64> = self
            .folders
            .values()
            .filter(|f| self.active(f))
            .map(|f| f.folder.id)
            .collect();
        for f in self.folders.values() {
            if active_now.contains(&f.folder.id)
                && !active_before.iter().any(|(id, _)| *id == f.folder.id)
            {
                changes
                    .start
                    .push((f.folder.id, f.folder.path.clone(), f.folder.recursive));
            }
        }
        for (id, path) in active_before {
            if !active_now.contains(&id) {
                // Removed or paused: its waiting files wait for it to be active again.
                self.candidates.retain(|_, c| c.folder_id != id);
                changes.stop.push(path);
            }
        }
        if was_paused && !self.settings.paused {
            tracing::debug!("watch: resumed");
        }
        Ok(changes)
    }

    /// Looks at every folder: a missing one becomes unavailable (logged once, its waiting
    /// files forgotten until it is back); one that is back becomes available again.
    pub fn check_folders(&mut self) -> Result<FolderChanges, WatchError> {
        let mut changes = FolderChanges::default();
        let ids: Vec<i64> = self.folders.keys().copied().collect();
        for id in ids {
            let Some(f) = self.folders.get(&id) else {
                continue;
            };
            let path = f.folder.path.clone();
            let reason = match self.fs.stat(&path) {
                Ok(st) if st.kind == FileKind::Dir => None,
                Ok(_) => Some("it is no longer a folder".to_string()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Some(
                    "the folder is missing (deleted, renamed or on a drive that is not mounted)"
                        .to_string(),
                ),
                Err(e) => Some(format!("cannot be read: {e}")),
            };
            let was = f.folder.available;
            match (was, reason) {
                (true, Some(reason)) => {
                    self.store.set_folder_available(id, false, Some(&reason))?;
                    if let Some(f) = self.folders.get_mut(&id) {
                        f.folder.available = false;
                        f.folder.unavailable_reason = Some(reason.clone());
                    }
                    self.candidates.retain(|_, c| c.folder_id != id);
                    self.log(Some(id), &path, ActivityKind::Unavailable, &reason);
                    self.publish_folder(id);
                    changes.stop.push(path);
                }
                (false, None) => {
                    self.store.set_folder_available(id, true, None)?;
                    let active = match self.folders.get_mut(&id) {
                        Some(f) => {
                            f.folder.available = true;
                            f.folder.unavailable_reason = None;
                            !f.folder.paused && !self.settings.paused
                        }
                        None => false,
                    };
                    self.log(
                        Some(id),
                        &path,
                        ActivityKind::Available,
                        "the folder is back: watching it again",
                    );
                    self.publish_folder(id);
                    if active {
                        let recursive = self.folders.get(&id).is_some_and(|f| f.folder.recursive);
                        changes.start.push((id, path, recursive));
                    }
                }
                (false, Some(reason)) => {
                    // Still missing; record the first reason only.
                    if self
                        .folders
                        .get(&id)
                        .is_some_and(|f| f.folder.unavailable_reason.is_none())
                    {
                        self.store.set_folder_available(id, false, Some(&reason))?;
                        if let Some(f) = self.folders.get_mut(&id) {
                            f.folder.unavailable_reason = Some(reason.clone());
                        }
                        self.log(Some(id), &path, ActivityKind::Unavailable, &reason);
                        self.publish_folder(id);
                    }
                }
                (true, None) => {}
            }
        }
        Ok(changes)
    }

    /// Whether a folder is missing: it cannot be watched, so the service looks for it on
    /// a timer until it is back.
    pub fn any_unavailable(&self) -> bool {
        self.folders.values().any(|f| !f.folder.available)
    }

    /// Reloads the folder list and checks availability: what to (un)watch and scan.
    pub fn refresh_folders(&mut self) -> Result<FolderChanges, WatchError> {
        let mut c = self.reload_folders()?;
        c.merge(self.check_folders()?);
        Ok(c)
    }

    fn publish_folder(&self, id: i64) {
        if let (Some(bus), Some(f)) = (&self.bus, self.folders.get(&id)) {
            bus.publish(Event::WatchFolderState(f.folder.clone()));
        }
    }

    // ---- noticing files ----

    /// Scans folder `id` (or the subfolder `start` of it) for new or changed files.
    pub fn scan_folder(&mut self, id: i64, start: Option<&Path>) {
        let Some(f) = self.folders.get(&id) else {
            return;
        };
        if !self.active(f) {
            return;
        }
        let root = f.folder.path.clone();
        let start = start.map(Path::to_path_buf).unwrap_or_else(|| root.clone());
        let out = scan::scan(
            self.fs.as_ref(),
            &root,
            &start,
            f.folder.recursive,
            &f.rules,
        );
        for (path, why, version) in out.ignored {
            // Our own Uploaded/ is not worth a line.
            if path == root.join(UPLOADED_DIR) {
                continue;
            }
            self.report_once(id, &path, version, ActivityKind::Ignored, &why);
        }
        for (path, problem) in out.problems {
            let why = problem.describe();
            if matches!(
                problem,
                ScanProblem::PermissionDenied(_) | ScanProblem::Unreadable(_)
            ) {
                tracing::info!("watch: {}: {why}", path.display());
            }
            self.report_once(id, &path, (0, 0), ActivityKind::Skipped, &why);
        }
        for (path, st) in out.files {
            self.consider(id, &path, &st);
        }
    }

    /// Scans every active folder (start-up, the periodic safety net).
    pub fn scan_all(&mut self) {
        let ids: Vec<i64> = self.folders.keys().copied().collect();
        for id in ids {
            self.scan_folder(id, None);
        }
    }

    /// File-system events: these paths were created, changed, renamed or removed.
    pub fn paths_changed(&mut self, paths: &[PathBuf]) {
        for path in paths {
            if let Some(c) = self.candidates.get(path).cloned() {
                self.recheck_candidate(path, c);
                continue;
            }
            let Some(f) = self.folder_for(path) else {
                continue;
            };
            let id = f.folder.id;
            let st = match self.fs.stat(path) {
                Ok(st) => st,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    let why = if e.kind() == io::ErrorKind::PermissionDenied {
                        format!("permission denied ({e}); skipped")
                    } else {
                        format!("cannot be read ({e}); skipped")
                    };
                    self.report_once(id, path, (0, 0), ActivityKind::Skipped, &why);
                    continue;
                }
            };
            let Some(f) = self.folders.get(&id) else {
                continue;
            };
            match st.kind {
                FileKind::Dir => {
                    if let Some(why) = f.rules.ignored(path, true, st.hidden) {
                        self.report_once(id, path, (0, 0), ActivityKind::Ignored, &why);
                    } else if st.symlink {
                        let why = ScanProblem::SymlinkedFolder.describe();
                        self.report_once(id, path, (0, 0), ActivityKind::Skipped, &why);
                    } else {
                        // A folder created or moved in: its files are new to us.
                        self.scan_folder(id, Some(path));
                    }
                }
                FileKind::File => match f.rules.ignored(path, false, st.hidden) {
                    Some(why) => {
                        let v = (st.size, st.mtime_ms);
                        self.report_once(id, path, v, ActivityKind::Ignored, &why);
                    }
                    None => self.consider(id, path, &st),
                },
                FileKind::Other => {}
            }
        }
    }

    /// A file that passed the rules: watched until stable unless already handled as is.
    fn consider(&mut self, folder_id: i64, path: &Path, st: &FileStat) {
        if self.candidates.contains_key(path) {
            return;
        }
        if self.known.get(path) == Some(&(st.size, st.mtime_ms)) {
            return;
        }
        let now = self.clock.now_ms();
        let window = self.settings.stability_window.as_millis() as u64;
        self.candidates.insert(
            path.to_path_buf(),
            Candidate {
                folder_id,
                size: st.size,
                mtime_ms: st.mtime_ms,
                since_ms: now,
                due_ms: now + window,
                logged: Vec::new(),
            },
        );
        let what = if self.known.contains_key(path) {
            "changed"
        } else {
            "new"
        };
        self.log(
            Some(folder_id),
            path,
            ActivityKind::Seen,
            &format!(
                "{what} file ({}); waiting until it is stable",
                human_size(st.size)
            ),
        );
    }

    /// An event for a waiting file: if it changed, its window starts again.
    fn recheck_candidate(&mut self, path: &Path, c: Candidate) {
        if let Ok(st) = self.fs.stat(path)
            && (st.size, st.mtime_ms) != (c.size, c.mtime_ms)
        {
            let now = self.clock.now_ms();
            let window = self.settings.stability_window.as_millis() as u64;
            if let Some(c) = self.candidates.get_mut(path) {
                c.size = st.size;
                c.mtime_ms = st.mtime_ms;
                c.since_ms = now;
                c.due_ms = now + window;
            }
        } else if let Some(c) = self.candidates.get_mut(path) {
            // Gone or unchanged: look now (drops a deleted file at once).
            c.due_ms = c.due_ms.min(self.clock.now_ms());
        }
    }

    fn wait(&mut self, path: &Path, reason: WaitReason, detail: &str, recheck_ms: u64) {
        let now = self.clock.now_ms();
        let Some(c) = self.candidates.get_mut(path) else {
            return;
        };
        c.due_ms = now + recheck_ms;
        if c.logged.contains(&reason) {
            return;
        }
        c.logged.push(reason);
        let folder = c.folder_id;
        self.log(Some(folder), path, ActivityKind::Waited, detail);
    }

    fn drop_candidate(&mut self, path: &Path, e: &io::Error) {
        let Some(c) = self.candidates.remove(path) else {
            return;
        };
        if e.kind() == io::ErrorKind::NotFound {
            self.log(
                Some(c.folder_id),
                path,
                ActivityKind::Dropped,
                "deleted or moved away before it was uploaded",
            );
        } else if e.kind() == io::ErrorKind::PermissionDenied {
            let v = (c.size, c.mtime_ms);
            self.report_once(
                c.folder_id,
                path,
                v,
                ActivityKind::Skipped,
                &format!("permission denied ({e}); skipped"),
            );
        } else {
            let v = (c.size, c.mtime_ms);
            self.report_once(
                c.folder_id,
                path,
                v,
                ActivityKind::Skipped,
                &format!("cannot be read ({e}); skipped"),
            );
        }
    }

    /// Moves time on: every waiting file that is due is looked at. Returns how long until
    /// the next one is due (`None`: nothing waits).
    pub fn tick(&mut self) -> Option<Duration> {
        if self.settings.paused {
            return None;
        }
        let now = self.clock.now_ms();
        let due: Vec<PathBuf> = self
            .candidates
            .iter()
            .filter(|(_, c)| c.due_ms <= now)
            .map(|(p, _)| p.clone())
            .collect();
        for path in due {
            self.evaluate(&path);
        }
        self.next_due()
    }

    /// How long until a waiting file is due.
    pub fn next_due(&self) -> Option<Duration> {
        let now = self.clock.now_ms();
        self.candidates
            .values()
            .map(|c| c.due_ms.saturating_sub(now))
            .min()
            .map(Duration::from_millis)
    }

    fn evaluate(&mut self, path: &Path) {
        let Some(c) = self.candidates.get(path).cloned() else {
            return;
        };
        let now = self.clock.now_ms();
        let window = self.settings.stability_window.as_millis() as u64;
        let st = match self.fs.stat(path) {
            Ok(st) if st.kind == FileKind::File => st,
            Ok(_) => {
                self.candidates.remove(path);
                return;
            }
            Err(e) => return self.drop_candidate(path, &e),
        };
        if (st.size, st.mtime_ms) != (c.size, c.mtime_ms) {
            if let Some(c) = self.candidates.get_mut(path) {
                c.size = st.size;
                c.mtime_ms = st.mtime_ms;
                c.since_ms = now;
            }
            let detail = format!("still being written ({} so far)", human_size(st.size));
            return self.wait(path, WaitReason::Growing, &detail, window);
        }
        if now < c.since_ms + window {
            if let Some(c) = self.candidates.get_mut(path) {
                c.due_ms = c.since_ms + window;
            }
            return;
        }
        if st.placeholder {
            let detail = "a cloud placeholder: waiting for the sync client to download it";
            return self.wait(path, WaitReason::Placeholder, detail, window);
        }
        if st.size == 0 {
            return self.wait(path, WaitReason::Empty, "empty so far", window);
        }
        if let Err(e) = self.fs.open_for_reading(path) {
            return self.unreadable(path, &e, window);
        }
        let sha = match self.fs.sha256(path) {
            Ok(s) => s,
            Err(e) => return self.unreadable(path, &e, window),
        };
        // Written to while we read it? Then it was not stable after all.
        match self.fs.stat(path) {
            Ok(after) if (after.size, after.mtime_ms) == (st.size, st.mtime_ms) => {}
            Ok(after) => {
                if let Some(c) = self.candidates.get_mut(path) {
                    c.size = after.size;
                    c.mtime_ms = after.mtime_ms;
                    c.since_ms = now;
                }
                let detail = format!("still being written ({} so far)", human_size(after.size));
                return self.wait(path, WaitReason::Growing, &detail, window);
            }
            Err(e) => return self.drop_candidate(path, &e),
        }
        self.candidates.remove(path);
        if let Err(e) = self.decide(c.folder_id, path, &st, &sha) {
            tracing::warn!("watch: {e}");
            // Not remembered: the next scan or event tries again.
        }
    }

    fn unreadable(&mut self, path: &Path, e: &io::Error, window: u64) {
        match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => {
                self.drop_candidate(path, e)
            }
            _ => {
                let detail = format!("cannot be opened yet (another program may be using it: {e})");
                self.wait(path, WaitReason::Locked, &detail, window)
            }
        }
    }

    fn exists(&self, path: &Path) -> bool {
        !matches!(self.fs.stat(path), Err(e) if e.kind() == io::ErrorKind::NotFound)
    }

    /// A stable file with content `sha`: a copy of something handled, or new.
    fn decide(
        &mut self,
        folder_id: i64,
        path: &Path,
        st: &FileStat,
        sha: &str,
    ) -> Result<(), WatchError> {
        let version = (st.size, st.mtime_ms);
        let same = self.store.files_with_content(sha)?;
        if !same.is_empty() {
            let mine = same.iter().find(|r| r.path == path);
            let present = same.iter().find(|r| self.exists(&r.path));
            let original = mine.or(present).unwrap_or(&same[0]).clone();
            let detail = if mine.is_some() {
                "unchanged content (only its date changed): not uploaded again".to_string()
            } else if present.is_some() {
                format!(
                    "same content as {}: not uploaded again",
                    original.path.display()
                )
            } else {
                format!(
                    "renamed or moved from {}: same content, not uploaded again",
                    original.path.display()
                )
            };
            let outcome = match mine {
                Some(m) => m.outcome,
                None => FileOutcome::Duplicate,
            };
            self.store.put_file(&FileRecord {
                path: path.to_path_buf(),
                folder_id,
                sha256: sha.to_string(),
                size: st.size,
                mtime_ms: st.mtime_ms,
                outcome,
                queue_id: original.queue_id,
                job_id: original.job_id.clone(),
            })?;
            self.known.insert(path.to_path_buf(), version);
            self.log(Some(folder_id), path, ActivityKind::Duplicate, &detail);
            return Ok(());
        }
        if let Some(p) = self.store.pending_with_content(sha)?.into_iter().next() {
            if p.path == path {
                self.store.put_pending(&PendingUpload {
                    size: st.size,
                    mtime_ms: st.mtime_ms,
                    ..p
                })?;
                self.known.insert(path.to_path_buf(), version);
                return Ok(());
            }
            if !self.exists(&p.path) {
                // The file waiting to be uploaded was renamed or moved: follow it.
                self.store.remove_pending(&p.path)?;
                self.known.remove(&p.path);
                self.store.put_pending(&PendingUpload {
                    path: path.to_path_buf(),
                    folder_id,
                    size: st.size,
                    mtime_ms: st.mtime_ms,
                    ..p.clone()
                })?;
                self.known.insert(path.to_path_buf(), version);
                let detail = format!(
                    "renamed or moved from {}; still waiting to be uploaded",
                    p.path.display()
                );
                self.log(Some(folder_id), path, ActivityKind::Waited, &detail);
                return Ok(());
            }
            self.store.put_file(&FileRecord {
                path: path.to_path_buf(),
                folder_id,
                sha256: sha.to_string(),
                size: st.size,
                mtime_ms: st.mtime_ms,
                outcome: FileOutcome::Duplicate,
                queue_id: None,
                job_id: None,
            })?;
            self.known.insert(path.to_path_buf(), version);
            let detail = format!(
                "same content as {} (waiting to be uploaded): not uploaded twice",
                p.path.display()
            );
            self.log(Some(folder_id), path, ActivityKind::Duplicate, &detail);
            return Ok(());
        }
        let previous = self.store.file(path)?;
        let new_version = previous
            .as_ref()
            .is_some_and(|r| r.sha256 != sha && r.outcome != FileOutcome::Refused);
        self.store.put_pending(&PendingUpload {
            path: path.to_path_buf(),
            folder_id,
            sha256: sha.to_string(),
            size: st.size,
            mtime_ms: st.mtime_ms,
            new_version,
            last_error: None,
        })?;
        self.known.insert(path.to_path_buf(), version);
        self.new_pending = true;
        Ok(())
    }

    // ---- the upload side ----

    /// Whether files became pending since the last call (the service then hands them to
    /// the queue at once instead of waiting for its periodic retry).
    pub fn take_new_pending(&mut self) -> bool {
        std::mem::take(&mut self.new_pending)
    }

    /// Stable files waiting to enter the upload queue (none while paused).
    pub fn pending(&self) -> Result<Vec<PendingUpload>, WatchError> {
        if self.settings.paused {
            return Ok(Vec::new());
        }
        let paused: Vec<i64> = self
            .folders
            .values()
            .filter(|f| f.folder.paused)
            .map(|f| f.folder.id)
            .collect();
        Ok(self
            .store
            .pending()?
            .into_iter()
            .filter(|p| !paused.contains(&p.folder_id))
            .collect())
    }

    /// The job options of files from folder `id` (title: the file name).
    pub fn job_options(&self, id: i64) -> JobOptions {
        self.folders
            .get(&id)
            .map(|f| JobOptions {
                title: None,
                ..f.folder.options.clone()
            })
            .unwrap_or_default()
    }

    fn finish_pending(
        &mut self,
        p: &PendingUpload,
        outcome: FileOutcome,
        queue_id: Option<i64>,
        job_id: Option<String>,
        sha256: &str,
    ) -> Result<(), WatchError> {
        self.store.put_file(&FileRecord {
            path: p.path.clone(),
            folder_id: p.folder_id,
            sha256: sha256.to_string(),
            size: p.size,
            mtime_ms: p.mtime_ms,
            outcome,
            queue_id,
            job_id,
        })?;
        self.store.remove_pending(&p.path)?;
        self.deferred.remove(&p.path);
        Ok(())
    }

    /// The queue accepted `p` as item `queue_id` (whose content hashed to `sha256`).
    pub fn enqueued(
        &mut self,
        p: &PendingUpload,
        queue_id: i64,
        sha256: &str,
    ) -> Result<(), WatchError> {
        self.finish_pending(p, FileOutcome::Queued, Some(queue_id), None, sha256)?;
        let (kind, detail) = if p.new_version {
            (
                ActivityKind::NewVersion,
                format!(
                    "new version of a file uploaded before: queued for upload (queue item {queue_id})"
                ),
            )
        } else {
            (
                ActivityKind::Queued,
                format!("stable: queued for upload (queue item {queue_id})"),
            )
        };
        self.log(Some(p.folder_id), &p.path, kind, &detail);
        Ok(())
    }

    /// The queue says this account already uploaded the same content.
    pub fn already_uploaded(
        &mut self,
        p: &PendingUpload,
        queue_id: i64,
        job_id: Option<String>,
    ) -> Result<(), WatchError> {
        let detail = format!(
            "this account already uploaded the same content{}: not uploaded again",
            job_id
                .as_ref()
                .map(|j| format!(" (job {j})"))
                .unwrap_or_default()
        );
        self.finish_pending(
            p,
            FileOutcome::Duplicate,
            Some(queue_id),
            job_id,
            &p.sha256.clone(),
        )?;
        self.log(Some(p.folder_id), &p.path, ActivityKind::Duplicate, &detail);
        Ok(())
    }

    /// The queue refused the file (its content is not a manuscript): remembered at this
    /// size and mtime, so it is not tried again until it changes.
    pub fn refused(&mut self, p: &PendingUpload, reason: &str) -> Result<(), WatchError> {
        self.finish_pending(p, FileOutcome::Refused, None, None, &p.sha256.clone())?;
        self.log(Some(p.folder_id), &p.path, ActivityKind::Ignored, reason);
        Ok(())
    }

    /// The file is gone (deleted or moved away before it entered the queue).
    pub fn vanished(&mut self, p: &PendingUpload) -> Result<(), WatchError> {
        self.store.remove_pending(&p.path)?;
        self.known.remove(&p.path);
        self.deferred.remove(&p.path);
        self.log(
            Some(p.folder_id),
            &p.path,
            ActivityKind::Dropped,
            "deleted or moved away before it was uploaded",
        );
        Ok(())
    }

    /// The file cannot enter the queue now (signed out, queue busy); it stays pending and
    /// is tried again. Logged once per reason.
    pub fn deferred(&mut self, p: &PendingUpload, reason: &str) -> Result<(), WatchError> {
        if self.deferred.get(&p.path).map(String::as_str) == Some(reason) {
            return Ok(());
        }
        self.deferred.insert(p.path.clone(), reason.to_string());
        self.store.pending_failed(&p.path, reason)?;
        self.log(
            Some(p.folder_id),
            &p.path,
            ActivityKind::Waited,
            &format!("waiting to upload: {reason}"),
        );
        Ok(())
    }

    /// Files in the upload queue whose outcome the service should look up.
    pub fn in_flight(&self) -> Result<Vec<FileRecord>, WatchError> {
        self.store.files_in_flight()
    }

    /// A file still in a watched folder that was recorded as a duplicate of `r` (its
    /// content, same queue item): where `r` went when it was renamed or moved.
    fn moved_copy(&self, r: &FileRecord) -> Result<Option<FileRecord>, WatchError> {
        Ok(self
            .store
            .files_with_content(&r.sha256)?
            .into_iter()
            .find(|f| {
                f.path != r.path
                    && f.outcome == FileOutcome::Duplicate
                    && f.queue_id == r.queue_id
                    && self.exists(&f.path)
            }))
    }

    /// What the queue did with a file the watcher handed to it.
    pub fn queue_outcome(
        &mut self,
        r: &FileRecord,
        outcome: QueueOutcome,
    ) -> Result<(), WatchError> {
        let mut rec = r.clone();
        match outcome {
            QueueOutcome::Completed { job_id } => {
                rec.outcome = FileOutcome::Uploaded;
                rec.job_id = Some(job_id.clone());
                self.store.put_file(&rec)?;
                self.log(
                    Some(r.folder_id),
                    &r.path,
                    ActivityKind::Uploaded,
                    &format!("uploaded: job {job_id}"),
                );
                let after = self
                    .folders
                    .get(&r.folder_id)
                    .map(|f| f.folder.after_upload);
                if after == Some(AfterUpload::MoveToUploaded) {
                    self.move_to_uploaded(&rec)?;
                }
            }
            QueueOutcome::Failed { message } => {
                rec.outcome = FileOutcome::Failed;
                self.store.put_file(&rec)?;
                if self.exists(&r.path) {
                    self.log(
                        Some(r.folder_id),
                        &r.path,
                        ActivityKind::Failed,
                        &format!("upload failed: {message} (`rohimaya queue retry` tries again)"),
                    );
                } else if let Some(moved) = self.moved_copy(r)? {
                    // Renamed or moved inside the watched folders while it was uploaded:
                    // its new place was taken for a duplicate of it; upload from there.
                    self.known.remove(&r.path);
                    self.store.remove_file(&moved.path)?;
                    self.store.put_pending(&PendingUpload {
                        path: moved.path.clone(),
                        folder_id: moved.folder_id,
                        sha256: moved.sha256.clone(),
                        size: moved.size,
                        mtime_ms: moved.mtime_ms,
                        new_version: false,
                        last_error: None,
                    })?;
                    self.new_pending = true;
                    self.log(
                        Some(moved.folder_id),
                        &moved.path,
                        ActivityKind::Waited,
                        &format!(
                            "renamed or moved from {} while it was being uploaded: uploading it from here",
                            r.path.display()
                        ),
                    );
                } else {
                    self.known.remove(&r.path);
                    self.log(
                        Some(r.folder_id),
                        &r.path,
                        ActivityKind::Dropped,
                        "deleted or moved away while it was being uploaded",
                    );
                }
            }
            QueueOutcome::Cancelled => {
                rec.outcome = FileOutcome::Cancelled;
                self.store.put_file(&rec)?;
                self.log(
                    Some(r.folder_id),
                    &r.path,
                    ActivityKind::Failed,
                    "its upload was cancelled in the queue: not uploaded",
                );
            }
            QueueOutcome::Gone => {
                rec.outcome = FileOutcome::Failed;
                self.store.put_file(&rec)?;
                self.log(
                    Some(r.folder_id),
                    &r.path,
                    ActivityKind::Failed,
                    "no longer in the upload queue",
                );
            }
        }
        Ok(())
    }

    /// Moves an uploaded file into `Uploaded/` (same subfolders), never overwriting.
    fn move_to_uploaded(&mut self, r: &FileRecord) -> Result<(), WatchError> {
        let Some(f) = self.folders.get(&r.folder_id) else {
            return Ok(());
        };
        let root = f.folder.path.clone();
        match self.fs.stat(&r.path) {
            Ok(st) if (st.size, st.mtime_ms) == (r.size, r.mtime_ms) => {}
            Ok(_) => {
                let detail = "not moved to Uploaded/: it changed after it was uploaded";
                self.log(Some(r.folder_id), &r.path, ActivityKind::Skipped, detail);
                return Ok(());
            }
            Err(_) => return Ok(()),
        }
        let rel_parent = r
            .path
            .parent()
            .and_then(|p| p.strip_prefix(&root).ok())
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let dir = root.join(UPLOADED_DIR).join(rel_parent);
        let name = r
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let fail = |e: &io::Error| format!("could not be moved to Uploaded/: {e}");
        if let Err(e) = self.fs.create_dir_all(&dir) {
            self.log(Some(r.folder_id), &r.path, ActivityKind::Skipped, &fail(&e));
            return Ok(());
        }
        for n in 1..=1000u32 {
            let dest = dir.join(suffixed(&name, n));
            match self.fs.move_no_clobber(&r.path, &dest) {
                Ok(()) => {
                    let mut moved = r.clone();
                    moved.path = dest.clone();
                    self.store.put_file(&moved)?;
                    self.known.insert(dest.clone(), (r.size, r.mtime_ms));
                    let shown = dest
                        .strip_prefix(&root)
                        .unwrap_or(&dest)
                        .display()
                        .to_string();
                    self.log(
                        Some(r.folder_id),
                        &r.path,
                        ActivityKind::Moved,
                        &format!("moved to {shown}"),
                    );
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    self.log(Some(r.folder_id), &r.path, ActivityKind::Skipped, &fail(&e));
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// `name` with ` (n)` before its extension for n > 1: `Book.docx`, `Book (2).docx`.
pub fn suffixed(name: &str, n: u32) -> String {
    if n <= 1 {
        return name.to_string();
    }
    match name.rfind('.') {
        Some(i) if i > 0 => format!("{} ({n}){}", &name[..i], &name[i..]),
        _ => format!("{name} ({n})"),
    }
}

//! The engine's decisions against the fake file system and the fake clock: no sleeps, no
//! disk, every event handed over by hand.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::activity::ActivityKind;
use super::config::{AfterUpload, FolderConfig};
use super::engine::{QueueOutcome, WatchEngine};
use super::fake::{FakeClock, FakeFs};
use super::fs::WatchFs;
use super::store::WatchStore;

const WINDOW: Duration = Duration::from_secs(3);

struct Rig {
    fs: FakeFs,
    clock: FakeClock,
    store: WatchStore,
    engine: WatchEngine,
    next_queue_id: i64,
}

fn sha(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

fn ok<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

fn rig_with(cfg: FolderConfig) -> Rig {
    let clock = FakeClock::new();
    let fs = FakeFs::new(clock.clone());
    fs.mkdir(&cfg.path);
    let store = ok(WatchStore::open_in_memory());
    ok(store.add_folder(&cfg));
    let engine = ok(WatchEngine::new(
        Arc::new(fs.clone()),
        Arc::new(clock.clone()),
        store.clone(),
        None,
    ));
    let mut rig = Rig {
        fs,
        clock,
        store,
        engine,
        next_queue_id: 1,
    };
    rig.start();
    rig
}

fn rig() -> Rig {
    rig_with(FolderConfig {
        path: "/w".into(),
        recursive: true,
        ..FolderConfig::default()
    })
}

impl Rig {
    /// What the service does at start-up: folders, availability, scans.
    fn start(&mut self) {
        let changes = ok(self.engine.refresh_folders());
        for (id, _, _) in changes.start {
            self.engine.scan_folder(id, None);
        }
        self.fs.take_events();
    }

    /// Hands the fake file system's events to the engine, then ticks.
    fn events(&mut self) {
        let ev = self.fs.take_events();
        self.engine.paths_changed(&ev);
        self.engine.tick();
    }

    fn advance(&mut self, d: Duration) {
        self.clock.advance(d);
        self.engine.tick();
    }

    /// Moves time on until nothing waits (bounded).
    fn settle(&mut self) {
        for _ in 0..50 {
            match self.engine.next_due() {
                None => return,
                Some(d) => self.advance(d.max(Duration::from_millis(1))),
            }
        }
    }

    fn pending(&self) -> Vec<PathBuf> {
        ok(self.engine.pending())
            .into_iter()
            .map(|p| p.path)
            .collect()
    }

    /// The queue takes every pending file and completes it; returns what was queued.
    fn upload_all(&mut self) -> Vec<PathBuf> {
        let mut done = Vec::new();
        for p in ok(self.engine.pending()) {
            let id = self.next_queue_id;
            self.next_queue_id += 1;
            ok(self.engine.enqueued(&p, id, &p.sha256.clone()));
            done.push(p.path);
        }
        for r in ok(self.engine.in_flight()) {
            let job_id = format!("job-{}", r.queue_id.unwrap_or_default());
            ok(self
                .engine
                .queue_outcome(&r, QueueOutcome::Completed { job_id }));
        }
        done
    }

    fn log(&self) -> Vec<(ActivityKind, PathBuf, String)> {
        ok(self.store.activity(0, 10_000))
            .into_iter()
            .map(|a| (a.kind, a.path, a.detail))
            .collect()
    }

    fn count(&self, kind: ActivityKind, path: &str) -> usize {
        self.log()
            .iter()
            .filter(|(k, p, _)| *k == kind && p == Path::new(path))
            .count()
    }
}

#[test]
fn default_and_user_ignore_patterns_are_never_uploaded_and_logged_once() {
    let mut r = rig_with(FolderConfig {
        path: "/w".into(),
        recursive: true,
        ignore: vec!["drafts/".into(), "*-old.docx".into()],
        ..FolderConfig::default()
    });
    let ignored = [
        "/w/~$Book.docx",
        "/w/.~lock.Book.docx#",
        "/w/x.tmp",
        "/w/x.temp",
        "/w/Book.txt.part",
        "/w/Book.txt.partial",
        "/w/Book.pdf.crdownload",
        "/w/Book.pdf.download",
        "/w/Book.txt.swp",
        "/w/Book.txt~",
        "/w/.DS_Store",
        "/w/Thumbs.db",
        "/w/desktop.ini",
        "/w/.hidden.txt",
        "/w/.git/notes.txt",
        "/w/Uploaded/done.txt",
        "/w/drafts/ch1.txt",
        "/w/Book-old.docx",
        "/w/cover.png",
    ];
    for p in ignored {
        r.fs.write(p, b"some words");
    }
    r.fs.write("/w/Book.txt", b"the real book");
    r.events();
    r.settle();
    assert_eq!(r.pending(), vec![PathBuf::from("/w/Book.txt")]);
    for p in [
        "/w/~$Book.docx",
        "/w/x.tmp",
        "/w/Book-old.docx",
        "/w/cover.png",
    ] {
        assert_eq!(r.count(ActivityKind::Ignored, p), 1, "{p}: {:?}", r.log());
    }
    // A re-scan neither logs them again nor considers them.
    r.engine.scan_all();
    r.settle();
    assert_eq!(r.count(ActivityKind::Ignored, "/w/x.tmp"), 1);
    assert_eq!(r.pending().len(), 1);
}

#[test]
fn a_growing_file_is_waited_for_and_uploaded_whole() {
    let mut r = rig();
    r.fs.write("/w/Book.txt", b"chunk 0;");
    r.events();
    for i in 1..10 {
        r.advance(Duration::from_millis(500));
        r.fs.append("/w/Book.txt", format!("chunk {i};").as_bytes());
        r.events();
        assert!(r.pending().is_empty(), "uploaded early at chunk {i}");
    }
    r.advance(WINDOW - Duration::from_millis(1));
    assert!(r.pending().is_empty(), "stable before the window ended");
    r.advance(Duration::from_millis(1));
    let p = ok(r.engine.pending());
    assert_eq!(p.len(), 1);
    let full = ok(r.fs.sha256(Path::new("/w/Book.txt")));
    assert_eq!(p[0].sha256, full);
    assert_eq!(r.count(ActivityKind::Seen, "/w/Book.txt"), 1);
}

#[test]
fn without_events_a_growing_file_is_seen_growing_by_the_ticks() {
    let mut r = rig();
    r.fs.write("/w/Book.txt", b"a");
    r.events();
    for _ in 0..4 {
        r.fs.append("/w/Book.txt", b"more");
        r.fs.take_events(); // the watcher missed them
        r.advance(WINDOW);
    }
    assert!(r.pending().is_empty());
    assert_eq!(
        r.count(ActivityKind::Waited, "/w/Book.txt"),
        1,
        "{:?}",
        r.log()
    );
    r.settle();
    assert_eq!(r.pending().len(), 1);
}

#[test]
fn locked_placeholder_and_empty_files_wait() {
    let mut r = rig();
    r.fs.write("/w/Locked.docx", b"PK word/document.xml");
    r.fs.set_openable("/w/Locked.docx", false);
    r.fs.write("/w/Cloud.pdf", b"%PDF-1.4");
    r.fs.set_placeholder("/w/Cloud.pdf", true);
    r.fs.write("/w/Empty.txt", b"");
    r.events();
    for _ in 0..5 {
        r.advance(WINDOW);
    }
    assert!(r.pending().is_empty());
    for p in ["/w/Locked.docx", "/w/Cloud.pdf", "/w/Empty.txt"] {
        assert_eq!(r.count(ActivityKind::Waited, p), 1, "{p}: {:?}", r.log());
    }
    r.fs.set_openable("/w/Locked.docx", true);
    r.fs.set_placeholder("/w/Cloud.pdf", false);
    r.advance(WINDOW);
    let mut p = r.pending();
    p.sort();
    assert_eq!(
        p,
        vec![
            PathBuf::from("/w/Cloud.pdf"),
            PathBuf::from("/w/Locked.docx")
        ]
    );
}

#[test]
fn rename_move_copy_rescan_and_restart_upload_nothing_new() {
    let mut r = rig();
    r.fs.write("/w/Book.txt", b"the book");
    r.events();
    r.settle();
    assert_eq!(r.upload_all().len(), 1);

    r.fs.rename("/w/Book.txt", "/w/Renamed.txt");
    r.events();
    r.settle();
    r.fs.rename("/w/Renamed.txt", "/w/sub/Moved.txt");
    r.events();
    r.settle();
    r.fs.write("/w/Copy.txt", b"the book");
    r.events();
    r.settle();
    assert!(r.pending().is_empty(), "{:?}", r.log());
    let dup = r.log();
    assert!(dup.iter().any(|(k, p, d)| *k == ActivityKind::Duplicate
        && p == Path::new("/w/Renamed.txt")
        && d.contains("renamed or moved from /w/Book.txt")));
    assert!(dup.iter().any(|(k, p, d)| *k == ActivityKind::Duplicate
        && p == Path::new("/w/Copy.txt")
        && d.contains("same content as")));

    // A re-scan hashes nothing (all known at this size and mtime).
    let lines = r.log().len();
    r.engine.scan_all();
    assert!(r.engine.waiting().is_empty());
    r.settle();
    assert_eq!(r.log().len(), lines);

    // A restart over the same state.db: nothing is new.
    r.engine = ok(WatchEngine::new(
        Arc::new(r.fs.clone()),
        Arc::new(r.clock.clone()),
        r.store.clone(),
        None,
    ));
    r.start();
    assert!(r.engine.waiting().is_empty());
    r.settle();
    assert!(r.pending().is_empty());
    assert_eq!(r.log().len(), lines);
}

#[test]
fn changed_content_under_the_same_name_is_a_new_version() {
    let mut r = rig();
    r.fs.write("/w/Book.txt", b"first draft");
    r.events();
    r.settle();
    assert_eq!(r.upload_all().len(), 1);
    r.clock.advance(Duration::from_secs(60));
    r.fs.write("/w/Book.txt", b"second draft");
    r.events();
    r.settle();
    let p = ok(r.engine.pending());
    assert_eq!(p.len(), 1);
    assert!(p[0].new_version);
    assert_eq!(r.upload_all().len(), 1);
    assert_eq!(r.count(ActivityKind::NewVersion, "/w/Book.txt"), 1);
    assert_eq!(r.count(ActivityKind::Uploaded, "/w/Book.txt"), 2);
    // Touching it without changing the bytes is not a new version.
    r.clock.advance(Duration::from_secs(60));
    r.fs.write("/w/Book.txt", b"second draft");
    r.events();
    r.settle();
    assert!(r.pending().is_empty());
}

#[test]
fn a_file_deleted_while_waiting_is_dropped_with_one_line() {
    let mut r = rig();
    r.fs.write("/w/Gone.txt", b"words");
    r.events();
    r.advance(Duration::from_secs(1));
    r.fs.remove("/w/Gone.txt");
    r.events();
    r.settle();
    for _ in 0..5 {
        r.advance(WINDOW);
    }
    assert!(r.pending().is_empty());
    assert_eq!(r.count(ActivityKind::Dropped, "/w/Gone.txt"), 1);
    assert_eq!(
        r.log()
            .iter()
            .filter(|(_, p, _)| p == Path::new("/w/Gone.txt"))
            .count(),
        2
    );
}

#[test]
fn a_file_deleted_while_uploading_is_dropped_with_one_line() {
    let mut r = rig();
    r.fs.write("/w/Gone.txt", b"words");
    r.events();
    r.settle();
    let p = ok(r.engine.pending());
    ok(r.engine.enqueued(&p[0], 7, &p[0].sha256.clone()));
    r.fs.remove("/w/Gone.txt");
    r.events();
    let rec = ok(r.engine.in_flight());
    ok(r.engine.queue_outcome(
        &rec[0],
        QueueOutcome::Failed {
            message: "cannot read the file".into(),
        },
    ));
    assert_eq!(r.count(ActivityKind::Dropped, "/w/Gone.txt"), 1);
    assert_eq!(r.count(ActivityKind::Failed, "/w/Gone.txt"), 0);
    assert!(ok(r.engine.in_flight()).is_empty());
}

#[test]
fn a_missing_folder_is_unavailable_not_forgotten_and_resumes() {
    let mut r = rig();
    r.fs.remove("/w");
    r.fs.take_events();
    let changes = ok(r.engine.refresh_folders());
    assert_eq!(changes.stop, vec![PathBuf::from("/w")]);
    ok(r.engine.refresh_folders());
    assert_eq!(r.count(ActivityKind::Unavailable, "/w"), 1);
    let f = ok(r.store.folders());
    assert_eq!(f.len(), 1);
    assert!(!f[0].available);
    assert!(
        f[0].unavailable_reason
            .as_deref()
            .is_some_and(|s| s.contains("missing"))
    );

    r.fs.write("/w/Back.txt", b"words");
    r.fs.take_events();
    let changes = ok(r.engine.refresh_folders());
    assert_eq!(changes.start.len(), 1);
    for (id, _, _) in changes.start {
        r.engine.scan_folder(id, None);
    }
    r.settle();
    assert_eq!(r.pending(), vec![PathBuf::from("/w/Back.txt")]);
    assert_eq!(r.count(ActivityKind::Available, "/w"), 1);
    assert!(ok(r.store.folders())[0].available);
}

#[test]
fn permission_denied_files_and_folders_are_reported_once_and_skipped() {
    let mut r = rig();
    r.fs.write("/w/Secret.txt", b"words");
    r.fs.set_denied("/w/Secret.txt", true);
    r.fs.write("/w/closed/Inside.txt", b"words");
    r.fs.set_denied("/w/closed", true);
    r.fs.take_events();
    r.engine.scan_all();
    r.settle();
    r.engine.scan_all();
    r.settle();
    assert!(r.pending().is_empty());
    assert_eq!(
        r.count(ActivityKind::Skipped, "/w/Secret.txt"),
        1,
        "{:?}",
        r.log()
    );
    assert_eq!(r.count(ActivityKind::Skipped, "/w/closed"), 1);
}

#[test]
fn symlink_loops_and_deep_trees_do_not_hang_the_engine() {
    let mut r = rig();
    r.fs.symlink("/w/loop", "/w");
    r.fs.symlink("/w/a/b", "/w/a");
    let mut deep = PathBuf::from("/w");
    for i in 0..100 {
        deep.push(format!("d{i}"));
    }
    r.fs.write(deep.join("deep.txt"), b"words");
    r.fs.write("/w/a/Book.txt", b"words");
    r.events();
    r.engine.scan_all();
    r.settle();
    assert_eq!(r.pending(), vec![PathBuf::from("/w/a/Book.txt")]);
    assert!(
        r.log()
            .iter()
            .any(|(k, p, _)| *k == ActivityKind::Skipped && p == Path::new("/w/loop"))
    );
}

#[test]
fn pending_files_survive_restarts_follow_renames_and_copies_wait_once() {
    let mut r = rig();
    r.fs.write("/w/Book.txt", b"offline book");
    r.events();
    r.settle();
    let p = ok(r.engine.pending());
    // Signed out: deferred, logged once however often it is tried.
    ok(r.engine.deferred(&p[0], "not signed in"));
    ok(r.engine.deferred(&p[0], "not signed in"));
    assert_eq!(r.count(ActivityKind::Waited, "/w/Book.txt"), 1);

    r.fs.rename("/w/Book.txt", "/w/Renamed.txt");
    r.events();
    r.settle();
    assert_eq!(r.pending(), vec![PathBuf::from("/w/Renamed.txt")]);
    r.fs.write("/w/Copy.txt", b"offline book");
    r.events();
    r.settle();
    assert_eq!(r.pending(), vec![PathBuf::from("/w/Renamed.txt")]);

    r.engine = ok(WatchEngine::new(
        Arc::new(r.fs.clone()),
        Arc::new(r.clock.clone()),
        r.store.clone(),
        None,
    ));
    r.start();
    r.settle();
    assert_eq!(r.upload_all(), vec![PathBuf::from("/w/Renamed.txt")]);
}

#[test]
fn uploaded_files_move_to_uploaded_without_overwriting() {
    let mut r = rig_with(FolderConfig {
        path: "/w".into(),
        recursive: true,
        after_upload: AfterUpload::MoveToUploaded,
        ..FolderConfig::default()
    });
    r.fs.write("/w/sub/Book.txt", b"version one");
    r.events();
    r.settle();
    r.upload_all();
    assert!(r.fs.stat(Path::new("/w/Uploaded/sub/Book.txt")).is_ok());
    assert!(r.fs.stat(Path::new("/w/sub/Book.txt")).is_err());
    r.clock.advance(Duration::from_secs(10));
    r.fs.write("/w/sub/Book.txt", b"version two");
    r.events();
    r.settle();
    r.upload_all();
    let moved = ok(r.fs.sha256(Path::new("/w/Uploaded/sub/Book (2).txt")));
    assert_eq!(moved, sha(b"version two"));
    let first = ok(r.fs.sha256(Path::new("/w/Uploaded/sub/Book.txt")));
    assert_eq!(first, sha(b"version one"));
    // The move's own events upload nothing.
    r.events();
    r.settle();
    assert!(r.pending().is_empty());
    assert_eq!(r.count(ActivityKind::Moved, "/w/sub/Book.txt"), 2);
}

#[test]
fn suffixes_go_before_the_extension() {
    use super::engine::suffixed;
    assert_eq!(suffixed("Book.docx", 1), "Book.docx");
    assert_eq!(suffixed("Book.docx", 2), "Book (2).docx");
    assert_eq!(suffixed("README", 3), "README (3)");
    assert_eq!(suffixed(".x", 2), ".x (2)");
}

#[test]
fn paused_folders_consider_nothing_until_resumed() {
    let mut r = rig();
    let id = ok(r.store.folders())[0].id;
    ok(r.store.set_folder_paused(id, true));
    let c = ok(r.engine.refresh_folders());
    assert_eq!(c.stop.len(), 1);
    r.fs.write("/w/Book.txt", b"words");
    r.events();
    r.settle();
    assert!(r.pending().is_empty());
    ok(r.store.set_folder_paused(id, false));
    let c = ok(r.engine.refresh_folders());
    for (id, _, _) in c.start {
        r.engine.scan_folder(id, None);
    }
    r.settle();
    assert_eq!(r.pending(), vec![PathBuf::from("/w/Book.txt")]);
}

#[test]
fn a_removed_folder_stops_being_watched_and_keeps_its_memory() {
    let mut r = rig();
    r.fs.write("/w/Book.txt", b"words");
    r.events();
    r.settle();
    r.upload_all();
    r.fs.write("/w/Waiting.txt", b"more words");
    r.events();
    let id = ok(r.store.folders())[0].id;
    ok(r.store.remove_folder(id));
    let c = ok(r.engine.refresh_folders());
    assert_eq!(c.stop, vec![PathBuf::from("/w")]);
    assert!(r.engine.waiting().is_empty());
    r.settle();
    assert!(r.pending().is_empty());
    // Added again: what was uploaded is not uploaded twice; the new file is.
    ok(r.store.add_folder(&FolderConfig {
        path: "/w".into(),
        recursive: true,
        ..FolderConfig::default()
    }));
    r.start();
    r.settle();
    assert_eq!(r.pending(), vec![PathBuf::from("/w/Waiting.txt")]);
}

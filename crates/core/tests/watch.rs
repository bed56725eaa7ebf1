//! Watched folders on the real file system (inotify here) against a devstack started
//! in-process: the watcher and the durable upload queue run as the app runs them, with a
//! short stability window to keep the suite quick. Waits poll the state with deadlines;
//! nothing sleeps to synchronise (the slow writer sleeps because writing slowly is what
//! it tests).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use rohimaya_core::api::request::StaticToken;
use rohimaya_core::api::uploads::UploadsApi;
use rohimaya_core::config::Endpoints;
use rohimaya_core::events::EventBus;
use rohimaya_core::queue::{ItemState, QueueItem, QueueRunner, QueueStore};
use rohimaya_core::transfer::{TransferSettings, UploadSession};
use rohimaya_core::watch::service::StepCount;
use rohimaya_core::watch::{
    Activity, ActivityKind, AfterUpload, FolderConfig, WatchService, WatchSettings, WatchStore,
};
use rohimaya_devstack::Devstack;
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

struct Bed {
    dir: TempDir,
    devstack: Devstack,
    token: String,
    user_id: String,
    endpoints: Endpoints,
}

async fn bed() -> Bed {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let mut config = rohimaya_devstack::DevstackConfig::new(dir.path().join("devstack"));
    config.job_duration = Duration::from_secs(600);
    let devstack = rohimaya_devstack::start(config)
        .await
        .unwrap_or_else(|e| panic!("devstack: {e}"));
    let (token, user_id) = common::sign_up(&devstack).await;
    let endpoints = common::endpoints(&devstack);
    Bed {
        dir,
        devstack,
        token,
        user_id,
        endpoints,
    }
}

fn settings(window_ms: u64) -> WatchSettings {
    WatchSettings {
        stability_window: Duration::from_millis(window_ms),
        rescan_interval: Duration::from_secs(600),
        folder_check_interval: Duration::from_millis(200),
        paused: false,
    }
}

/// A watcher and a queue runner, running until stopped.
struct Running {
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    runner: Arc<QueueRunner>,
    store: WatchStore,
    steps: StepCount,
}

impl Running {
    async fn shutdown(self) {
        self.stop.cancel();
        for t in self.tasks {
            tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .unwrap_or_else(|_| panic!("a task did not stop within 10 s"))
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }

    fn items(&self) -> Vec<QueueItem> {
        self.runner.list().unwrap_or_else(|e| panic!("{e}"))
    }

    fn completed(&self) -> usize {
        self.items()
            .iter()
            .filter(|i| i.state == ItemState::Completed)
            .count()
    }

    fn activity(&self) -> Vec<Activity> {
        self.store
            .activity(0, 1_000_000)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn count(&self, kind: ActivityKind, path: &Path) -> usize {
        self.activity()
            .iter()
            .filter(|a| a.kind == kind && a.path == path)
            .count()
    }

    /// Whether the (only) watched folder is available, as the store says.
    fn folder_available(&self) -> bool {
        self.store
            .folders()
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("the folder was forgotten"))
            .available
    }

    /// Deletes the watched folder `dir`, waits until it is unavailable, creates it again
    /// with a new file and waits for that file's upload (`uploaded`: uploads before);
    /// the folder's going and its return are each logged once.
    async fn folder_goes_and_comes_back(&self, dir: &Path, uploaded: usize) {
        std::fs::remove_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
        until("unavailable", Duration::from_secs(10), || {
            !self.folder_available()
        })
        .await;
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.join("Back.txt"), words(10, "back")).unwrap_or_else(|e| panic!("{e}"));
        until(
            "the upload after the return",
            Duration::from_secs(30),
            || self.completed() == uploaded + 1,
        )
        .await;
        assert!(self.folder_available());
        assert_eq!(self.count(ActivityKind::Unavailable, dir), 1);
        assert_eq!(self.count(ActivityKind::Available, dir), 1);
    }
}

impl Bed {
    fn state_db(&self) -> PathBuf {
        self.dir.path().join("client").join("state.db")
    }

    fn store(&self) -> WatchStore {
        WatchStore::open(&self.state_db()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A new folder to watch (canonical: the watcher stores canonical paths).
    fn folder(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("{e}"));
        std::fs::canonicalize(&p).unwrap_or_else(|e| panic!("{e}"))
    }

    fn watch(&self, dir: &Path, after: AfterUpload) {
        rohimaya_core::watch::add_folder(
            &self.store(),
            FolderConfig {
                path: dir.to_path_buf(),
                recursive: true,
                after_upload: after,
                ..FolderConfig::default()
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }

    fn start(&self, window_ms: u64) -> Running {
        let bus = EventBus::new();
        let api = UploadsApi::new(
            UploadsApi::default_http(),
            &self.endpoints,
            Arc::new(StaticToken(self.token.clone())),
        );
        let session = UploadSession::new(api, bus.clone(), TransferSettings::default());
        let queue = QueueStore::open(&self.state_db()).unwrap_or_else(|e| panic!("{e}"));
        let runner = Arc::new(
            QueueRunner::new(queue, session, self.user_id.clone())
                .unwrap_or_else(|e| panic!("{e}")),
        );
        runner
            .update_settings(|s| s.files_in_flight = 8)
            .unwrap_or_else(|e| panic!("{e}"));
        let store = self.store();
        let service = WatchService::new(store.clone(), Some(runner.clone()), bus)
            .unwrap_or_else(|e| panic!("{e}"))
            .with_settings(settings(window_ms));
        let steps = service.step_count();
        let stop = CancellationToken::new();
        let (s1, s2) = (stop.clone(), stop.clone());
        let r = runner.clone();
        let tasks = vec![
            tokio::spawn(async move {
                service.run(&s1).await.unwrap_or_else(|e| panic!("{e}"));
            }),
            tokio::spawn(async move {
                r.run(&s2).await.unwrap_or_else(|e| panic!("{e}"));
            }),
        ];
        Running {
            stop,
            tasks,
            runner,
            store,
            steps,
        }
    }

    /// The user's jobs, every page.
    async fn jobs(&self) -> Vec<serde_json::Value> {
        let mut all = Vec::new();
        loop {
            let page: serde_json::Value = reqwest::Client::new()
                .get(format!(
                    "{}/jobs?limit=500&offset={}",
                    self.endpoints.api_url,
                    all.len()
                ))
                .bearer_auth(&self.token)
                .send()
                .await
                .unwrap_or_else(|e| panic!("jobs: {e}"))
                .json()
                .await
                .unwrap_or_default();
            let page = match page {
                serde_json::Value::Array(a) => a,
                other => other["jobs"].as_array().cloned().unwrap_or_default(),
            };
            if page.is_empty() {
                return all;
            }
            all.extend(page);
        }
    }

    async fn object_sha256(&self, key: &str) -> String {
        let b = self.devstack.backend();
        let bytes = b
            .store
            .get_object(&b.config.manuscripts_bucket, key)
            .await
            .unwrap_or_else(|e| panic!("get_object {key}: {e}"));
        hex::encode(Sha256::digest(&bytes))
    }
}

/// Polls `f` until it holds or `limit` passes.
async fn until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sha_of(path: &Path) -> String {
    hex::encode(Sha256::digest(
        std::fs::read(path).unwrap_or_else(|e| panic!("{e}")),
    ))
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
}

fn words(n: usize, tag: &str) -> Vec<u8> {
    let line = format!("{tag}: the lighthouse keeper's daughter walked along the shore.\n");
    line.repeat(n).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_writer_is_uploaded_once_with_its_full_content() {
    let bed = bed().await;
    let dir = bed.folder("books");
    bed.watch(&dir, AfterUpload::Leave);
    // A 1.5 s window: longer than the writer's 0.5 s pauses.
    let run = bed.start(1500);
    let file = dir.join("Slow Book.txt");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&file).unwrap_or_else(|e| panic!("{e}"));
        for i in 0..10 {
            f.write_all(&words(200, &format!("chunk {i}")))
                .unwrap_or_else(|e| panic!("{e}"));
            f.flush().unwrap_or_else(|e| panic!("{e}"));
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert!(
                run.items().is_empty(),
                "uploaded before the writer finished (chunk {i})"
            );
        }
    }
    until("the upload", Duration::from_secs(30), || {
        run.completed() == 1
    })
    .await;
    let items = run.items();
    assert_eq!(items.len(), 1);
    let key = items[0].object_key.clone().unwrap_or_default();
    assert_eq!(bed.object_sha256(&key).await, sha_of(&file));
    assert_eq!(
        items[0].size,
        std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0)
    );
    assert_eq!(bed.jobs().await.len(), 1);
    run.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_word_style_save_uploads_the_final_file_only_and_moves_it() {
    let bed = bed().await;
    let dir = bed.folder("word");
    bed.watch(&dir, AfterUpload::MoveToUploaded);
    let run = bed.start(400);
    let docx = std::fs::read(fixtures().join("manuscripts/lighthouse.docx"))
        .unwrap_or_else(|e| panic!("fixtures: {e}"));
    let lock = dir.join("~$Book.docx");
    std::fs::write(&lock, b"\x0bowner name").unwrap_or_else(|e| panic!("{e}"));
    let tmp = dir.join("Book.tmp");
    std::fs::write(&tmp, &docx).unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(&tmp, dir.join("Book.docx")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::remove_file(&lock).unwrap_or_else(|e| panic!("{e}"));
    // Not a manuscript inside: refused with the reason, never uploaded.
    std::fs::copy(
        fixtures().join("not-manuscripts/cover-image.pdf"),
        dir.join("Cover.pdf"),
    )
    .unwrap_or_else(|e| panic!("{e}"));

    let moved = dir.join("Uploaded").join("Book.docx");
    until("the upload and the move", Duration::from_secs(30), || {
        run.completed() == 1 && moved.exists()
    })
    .await;
    until("the refusal", Duration::from_secs(10), || {
        run.count(ActivityKind::Ignored, &dir.join("Cover.pdf")) == 1
    })
    .await;
    let items = run.items();
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0].path, dir.join("Book.docx"));
    assert!(!dir.join("Book.docx").exists());
    assert_eq!(sha_of(&moved), hex::encode(Sha256::digest(&docx)));
    let refusal = run
        .activity()
        .into_iter()
        .find(|a| a.path == dir.join("Cover.pdf") && a.kind == ActivityKind::Ignored)
        .map(|a| a.detail)
        .unwrap_or_default();
    assert!(refusal.contains("PNG"), "{refusal}");
    for name in ["~$Book.docx", "Book.tmp"] {
        assert!(
            run.activity()
                .iter()
                .all(|a| a.path != dir.join(name) || a.kind == ActivityKind::Ignored),
            "{name} was considered"
        );
    }
    assert_eq!(bed.jobs().await.len(), 1);
    run.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_files_at_once_make_a_thousand_jobs() {
    let bed = bed().await;
    let dir = bed.folder("many");
    bed.watch(&dir, AfterUpload::Leave);
    let run = bed.start(400);
    let started = Instant::now();
    let nonce: u64 = rand::rng().random();
    for i in 0..1000 {
        std::fs::write(
            dir.join(format!("Book {i:04}.txt")),
            format!("{nonce:x} book number {i}: it was a dark and stormy night.\n"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    until("1,000 queued", Duration::from_secs(300), || {
        run.items().len() == 1000
    })
    .await;
    let queued_after = started.elapsed();
    until("1,000 uploads", Duration::from_secs(300), || {
        run.completed() == 1000
    })
    .await;
    let elapsed = started.elapsed();
    eprintln!(
        "1,000 files: all queued after {:.1} s, all uploaded after {:.1} s",
        queued_after.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    let items = run.items();
    assert_eq!(items.len(), 1000);
    let jobs = bed.jobs().await;
    assert_eq!(jobs.len(), 1000);
    let mut sources: Vec<&str> = jobs
        .iter()
        .filter_map(|j| j["source_path"].as_str())
        .collect();
    sources.sort();
    sources.dedup();
    assert_eq!(sources.len(), 1000, "two jobs share a source");
    let queued = run
        .activity()
        .iter()
        .filter(|a| a.kind == ActivityKind::Queued)
        .count();
    assert_eq!(queued, 1000);
    run.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renames_moves_restarts_upload_nothing_and_new_content_is_a_new_job() {
    let bed = bed().await;
    let dir = bed.folder("shelf");
    bed.watch(&dir, AfterUpload::Leave);
    let run = bed.start(400);
    let book = dir.join("Book.md");
    std::fs::copy(fixtures().join("manuscripts/lighthouse.md"), &book)
        .unwrap_or_else(|e| panic!("{e}"));
    until("the upload", Duration::from_secs(30), || {
        run.completed() == 1
    })
    .await;

    let renamed = dir.join("Renamed.md");
    std::fs::rename(&book, &renamed).unwrap_or_else(|e| panic!("{e}"));
    until("the rename", Duration::from_secs(10), || {
        run.count(ActivityKind::Duplicate, &renamed) == 1
    })
    .await;
    std::fs::create_dir_all(dir.join("sub")).unwrap_or_else(|e| panic!("{e}"));
    let moved = dir.join("sub").join("Moved.md");
    std::fs::rename(&renamed, &moved).unwrap_or_else(|e| panic!("{e}"));
    until("the move", Duration::from_secs(10), || {
        run.count(ActivityKind::Duplicate, &moved) == 1
    })
    .await;
    assert_eq!(run.items().len(), 1);
    run.shutdown().await;

    // A restart: the start-up scan finds nothing new. A file written after it is
    // uploaded, so the scan is over when that one is.
    let run = bed.start(400);
    let marker = dir.join("After Restart.txt");
    std::fs::write(&marker, words(5, "marker")).unwrap_or_else(|e| panic!("{e}"));
    until("the marker", Duration::from_secs(30), || {
        run.completed() == 2
    })
    .await;
    assert_eq!(run.items().len(), 2, "something was uploaded again");

    // New content under the same name: a second job for it, logged as a new version.
    std::fs::write(&moved, words(50, "second edition")).unwrap_or_else(|e| panic!("{e}"));
    until("the new version", Duration::from_secs(30), || {
        run.completed() == 3
    })
    .await;
    assert_eq!(run.count(ActivityKind::NewVersion, &moved), 1);
    assert_eq!(bed.jobs().await.len(), 3);
    run.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_removed_and_recreated_resumes() {
    let bed = bed().await;
    let dir = bed.folder("usb");
    bed.watch(&dir, AfterUpload::Leave);
    let run = bed.start(400);
    run.folder_goes_and_comes_back(&dir, 0).await;
    run.shutdown().await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_loop_does_not_hang_the_watcher() {
    let bed = bed().await;
    let dir = bed.folder("loops");
    std::fs::create_dir_all(dir.join("a")).unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink(&dir, dir.join("a").join("up")).unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink(dir.join("a"), dir.join("a").join("self"))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join("a").join("Book.txt"), words(10, "loop"))
        .unwrap_or_else(|e| panic!("{e}"));
    bed.watch(&dir, AfterUpload::Leave);
    let run = bed.start(400);
    until("the upload", Duration::from_secs(30), || {
        run.completed() == 1
    })
    .await;
    assert_eq!(run.items()[0].path, dir.join("a").join("Book.txt"));
    assert_eq!(
        run.count(ActivityKind::Skipped, &dir.join("a").join("up")),
        1
    );
    run.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_deleted_while_waiting_is_dropped_with_one_line() {
    let bed = bed().await;
    let dir = bed.folder("drop");
    bed.watch(&dir, AfterUpload::Leave);
    let run = bed.start(1500);
    let doomed = dir.join("Doomed.txt");
    std::fs::write(&doomed, words(10, "doomed")).unwrap_or_else(|e| panic!("{e}"));
    until("seen", Duration::from_secs(10), || {
        run.count(ActivityKind::Seen, &doomed) == 1
    })
    .await;
    std::fs::remove_file(&doomed).unwrap_or_else(|e| panic!("{e}"));
    until("dropped", Duration::from_secs(10), || {
        run.count(ActivityKind::Dropped, &doomed) == 1
    })
    .await;
    // A later file goes through: by then the dropped one has had every chance to log more.
    let later = dir.join("Later.txt");
    std::fs::write(&later, words(10, "later")).unwrap_or_else(|e| panic!("{e}"));
    until("the later upload", Duration::from_secs(30), || {
        run.completed() == 1
    })
    .await;
    let lines: Vec<Activity> = run
        .activity()
        .into_iter()
        .filter(|a| a.path == doomed)
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(run.items().len(), 1);
    run.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_renamed_after_it_was_queued_is_uploaded_from_its_new_place() {
    let bed = bed().await;
    let dir = bed.folder("drafts");
    bed.watch(&dir, AfterUpload::Leave);
    let run = bed.start(400);
    // Nothing starts while the queue is paused: the file is queued under its first name.
    run.runner.pause_all().unwrap_or_else(|e| panic!("{e}"));
    let draft = dir.join("Draft.md");
    std::fs::copy(fixtures().join("manuscripts/lighthouse.md"), &draft)
        .unwrap_or_else(|e| panic!("{e}"));
    until("the hand-off to the queue", Duration::from_secs(30), || {
        run.count(ActivityKind::Queued, &draft) == 1
    })
    .await;
    let final_name = dir.join("The Lighthouse.md");
    std::fs::rename(&draft, &final_name).unwrap_or_else(|e| panic!("{e}"));
    until("the rename", Duration::from_secs(10), || {
        run.count(ActivityKind::Duplicate, &final_name) == 1
    })
    .await;

    // The queue finds the old path gone; the watcher sends the same item from the new one.
    run.runner.resume_all().unwrap_or_else(|e| panic!("{e}"));
    until(
        "the upload from the new place",
        Duration::from_secs(30),
        || run.completed() == 1,
    )
    .await;
    let items = run.items();
    assert_eq!(items.len(), 1, "one queue item, not a second upload");
    assert_eq!(items[0].path, final_name);
    assert!(
        run.activity()
            .iter()
            .any(|a| a.path == final_name && a.detail.contains("renamed or moved from")),
        "the activity log says where it went"
    );
    let jobs = bed.jobs().await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["title"], "The Lighthouse");
    let key = jobs[0]["source_path"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(bed.object_sha256(&key).await, sha_of(&final_name));
    run.shutdown().await;
}

/// The engine steps once the watcher has nothing left to do: waits (up to `limit`) for a
/// `window` without a step and returns the count. An engine step is a trip to the blocking
/// pool, most of them SQLite; a watcher with a timer of its own never gets there.
async fn quiet(steps: &StepCount, window: Duration, limit: Duration) -> u64 {
    let deadline = Instant::now() + limit;
    loop {
        let before = steps.get();
        // A measurement window, not a synchronisation: longer than every timer the
        // watcher used to run while idle (250 ms, the 200 ms folder check here).
        tokio::time::sleep(window).await;
        if steps.get() == before {
            return before;
        }
        assert!(
            Instant::now() < deadline,
            "the watcher never went quiet: {} steps and counting",
            steps.get()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_watcher_does_nothing_yet_sees_a_folder_go_and_come_back_and_a_new_file() {
    let bed = bed().await;
    let dir = bed.folder("quiet");
    std::fs::write(dir.join("First.txt"), words(10, "first")).unwrap_or_else(|e| panic!("{e}"));
    bed.watch(&dir, AfterUpload::Leave);
    let run = bed.start(300);
    until("the first upload", Duration::from_secs(30), || {
        run.completed() == 1
    })
    .await;
    let window = Duration::from_millis(1500);
    let idle = quiet(&run.steps, window, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(run.steps.get(), idle, "an idle watcher ran engine steps");

    // Idle, it still sees its folder go away (from the events on it) and come back.
    run.folder_goes_and_comes_back(&dir, 1).await;

    // Quiet again, and a new file after the quiet is still uploaded.
    quiet(&run.steps, window, Duration::from_secs(20)).await;
    std::fs::write(dir.join("New.txt"), words(10, "new")).unwrap_or_else(|e| panic!("{e}"));
    until("the new file's upload", Duration::from_secs(30), || {
        run.completed() == 3
    })
    .await;
    run.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_added_by_another_process_while_idle_is_watched_within_seconds() {
    let bed = bed().await;
    let first = bed.folder("first");
    bed.watch(&first, AfterUpload::Leave);
    let run = bed.start(300);
    quiet(
        &run.steps,
        Duration::from_millis(1500),
        Duration::from_secs(20),
    )
    .await;
    // Another store on the same state.db, as `rohimaya watch add` in another process.
    let second = bed.folder("second");
    std::fs::write(second.join("Later.txt"), words(10, "later")).unwrap_or_else(|e| panic!("{e}"));
    bed.watch(&second, AfterUpload::Leave);
    until(
        "the added folder's file uploaded",
        Duration::from_secs(10),
        || run.completed() == 1,
    )
    .await;
    run.shutdown().await;
}

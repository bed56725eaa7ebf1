//! The durable download queue against a devstack started in-process (S3 behind the
//! fault proxy): a completed job's book and tracks are queued, downloaded, catalogued and
//! byte-exact; pause, resume and cancel; a job deleted on the server is kept locally and
//! marked "only on this computer". Waits poll state with deadlines; nothing sleeps to
//! synchronise.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Bed;
use common::downloads::{settings, walk};
use rohimaya_core::api::Job;
use rohimaya_core::downloads::{DownloadChoice, DownloadQueue, DownloadState, DownloadStore};
use rohimaya_core::events::{Event, EventBus};
use rohimaya_core::library::{FileRef, Library, ServerState};
use rohimaya_core::queue::QueueStore;
use rohimaya_core::transfer::DownloadSettings;
use rohimaya_devstack::DevstackConfig;
use tokio_util::sync::CancellationToken;

async fn bed(tweak: impl FnOnce(&mut DevstackConfig)) -> Bed {
    common::bed(|c| {
        c.job_duration = Duration::from_millis(300);
        tweak(c)
    })
    .await
}

impl Bed {
    /// The account's jobs as the engine lists them.
    async fn jobs(&self) -> Vec<Job> {
        reqwest::Client::new()
            .get(format!("{}/jobs", self.endpoints.api_url))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("list jobs: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("jobs: {e}"))
    }

    async fn job(&self, id: &str) -> Job {
        self.jobs()
            .await
            .into_iter()
            .find(|j| j.id == id)
            .unwrap_or_else(|| panic!("job {id} is not listed"))
    }

    /// A download queue over this bed's library and `state.db`.
    fn queue(&self, bus: &EventBus, rate: u64) -> DownloadQueue {
        self.queue_with(bus, rate, settings())
    }

    fn queue_with(&self, bus: &EventBus, rate: u64, settings: DownloadSettings) -> DownloadQueue {
        let db = self.dir.path().join("data/state.db");
        let library = Arc::new(
            Library::open(&self.library(), &db).unwrap_or_else(|e| panic!("library: {e}")),
        );
        let session = self.download_session(bus, settings);
        session.limiter.set_rate(rate);
        DownloadQueue::new(
            DownloadStore::open(&db).unwrap_or_else(|e| panic!("store: {e}")),
            library,
            session,
            self.user_id.clone(),
            QueueStore::open(&db).ok(),
        )
    }
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_completed_job_lands_catalogued_and_byte_exact_book_and_tracks() {
    let bed = bed(|_| {}).await;
    let finished = bed.finished_job().await;
    let job = bed.job(&finished.id).await;
    let tracks = bed
        .downloads_api()
        .tracks(&job.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(tracks.len() >= 2, "{tracks:?}");
    let bus = EventBus::new();
    let mut events = bus.subscribe();
    let queue = bed.queue(&bus, 0);
    let report = queue
        .enqueue_job(&job, DownloadChoice::All)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.queued.len(), 1 + tracks.len(), "{report:?}");
    queue
        .run_until_idle(&CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let items = queue.list().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        items.iter().all(|i| i.state == DownloadState::Completed),
        "{items:?}"
    );
    let book = queue
        .library()
        .catalog()
        .show(&job.id)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(book.account.as_deref(), Some(bed.user_id.as_str()));
    assert_eq!(book.tracks.len(), tracks.len());
    let whole = book
        .book_file
        .clone()
        .unwrap_or_else(|| panic!("no book file"));
    let path = queue
        .library()
        .path_of(&whole)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        whole
            .rel_path
            .starts_with("Ada Quill/The Lighthouse Keeper's Daughter/"),
        "{whole:?}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap_or_default(),
        bed.object(&finished.audio_path).await.to_vec(),
        "the book is byte-exact"
    );
    let mut sorted = tracks.clone();
    sorted.sort_by_key(|t| t.track_index);
    for (n, t) in sorted.iter().enumerate() {
        let rec = book
            .file(FileRef::Track(n as u32 + 1))
            .unwrap_or_else(|| panic!("track {n} not catalogued"));
        let p = queue
            .library()
            .path_of(rec)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(rec.rel_path.contains("(Chapters)/"), "{rec:?}");
        assert_eq!(
            std::fs::read(&p).unwrap_or_default(),
            bed.object(t.audio_path.as_deref().unwrap_or_default())
                .await
                .to_vec(),
            "track {} is byte-exact",
            n + 1
        );
    }
    assert!(
        !walk(&bed.library())
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "part")),
        "no .part left"
    );
    // Events: download transfer ids never look like upload ids; the library changed.
    let (mut d_ids, mut library_changed) = (0, false);
    while let Ok(e) = events.try_recv() {
        match e {
            Event::TransferState { transfer_id, .. } => {
                assert!(transfer_id.starts_with('d'), "{transfer_id}");
                d_ids += 1;
            }
            Event::LibraryChanged { job_id } => library_changed |= job_id == job.id,
            _ => {}
        }
    }
    assert!(d_ids > 0 && library_changed);

    // Again: nothing new is queued (idempotent), everything counted as already there.
    let again = queue
        .enqueue_job(&job, DownloadChoice::All)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(again.queued.is_empty(), "{again:?}");
    assert_eq!(again.already, 1 + tracks.len());
}

#[tokio::test]
async fn pause_resume_and_cancel_keep_the_part_or_delete_it() {
    let bed = bed(|_| {}).await;
    let finished = bed.finished_job().await;
    let job = bed.job(&finished.id).await;
    let size = finished.size;
    let bus = EventBus::new();
    // About 4 s for the whole book: time to pause it in the middle.
    // Small buffers and frequent checkpoints, so the limit paces it finely.
    let fine = DownloadSettings {
        chunk_size: 64 * 1024,
        connections: 1,
        buffer_size: 8 * 1024,
        checkpoint_every: 16 * 1024,
        ..settings()
    };
    assert!(
        size > 128 * 1024,
        "a book big enough to stop in the middle: {size}"
    );
    let queue = Arc::new(bed.queue_with(&bus, (size / 4).max(8 * 1024), fine));
    let report = queue
        .enqueue_job(&job, DownloadChoice::Book)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let id = report.queued[0];
    let stop = CancellationToken::new();
    let runner = {
        let (q, stop) = (queue.clone(), stop.clone());
        tokio::spawn(async move { q.run(&stop).await })
    };
    let item = |q: &DownloadQueue| {
        q.store()
            .item(&bed.user_id, id)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    until("some bytes on disk", || item(&queue).bytes_done > 0).await;
    queue.pause(id).unwrap_or_else(|e| panic!("{e}"));
    until("paused", || item(&queue).state == DownloadState::Paused).await;
    let paused = item(&queue);
    assert!(
        paused.bytes_done > 0 && paused.bytes_done < size,
        "{paused:?}"
    );
    let dest = bed.library().join(&paused.rel_path);
    let part = PathBuf::from(format!("{}.part", dest.display()));
    assert!(part.is_file(), "the .part is kept while paused");
    assert!(!dest.exists());

    queue.session().limiter.set_rate(0);
    queue.resume(id).unwrap_or_else(|e| panic!("{e}"));
    until("completed", || {
        item(&queue).state == DownloadState::Completed
    })
    .await;
    assert_eq!(
        std::fs::read(&dest).unwrap_or_default(),
        bed.object(&finished.audio_path).await.to_vec()
    );
    assert!(!part.exists());

    // Cancel: a second job, stopped mid-way; its .part goes, nothing is catalogued and
    // its folders are released.
    let second = bed.finished_job().await;
    let second_job = bed.job(&second.id).await;
    queue
        .session()
        .limiter
        .set_rate((second.size / 4).max(8 * 1024));
    let r = queue
        .enqueue_job(&second_job, DownloadChoice::Book)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let id2 = r.queued[0];
    let item2 = |q: &DownloadQueue| {
        q.store()
            .item(&bed.user_id, id2)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    until("second started", || item2(&queue).bytes_done > 0).await;
    let dest2 = bed.library().join(item2(&queue).rel_path);
    let part2 = PathBuf::from(format!("{}.part", dest2.display()));
    assert!(part2.is_file());
    queue.cancel(id2).unwrap_or_else(|e| panic!("{e}"));
    until("cancelled", || {
        item2(&queue).state == DownloadState::Cancelled
    })
    .await;
    assert!(!part2.exists(), "cancel deletes the .part");
    assert!(!dest2.exists());
    let catalog = queue.library().catalog();
    assert!(
        catalog
            .get(&second.id)
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none()
    );
    assert!(
        catalog
            .claimed_dirs(&second.id)
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none(),
        "folders released"
    );
    assert!(
        catalog
            .get(&job.id)
            .unwrap_or_else(|e| panic!("{e}"))
            .is_some()
    );
    stop.cancel();
    runner
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn a_job_deleted_on_the_server_is_kept_and_marked_only_local() {
    let bed = bed(|_| {}).await;
    let kept = bed.finished_job().await;
    let other = bed.finished_job().await;
    let bus = EventBus::new();
    let queue = bed.queue(&bus, 0);
    // Sync downloads every completed job not yet local.
    let jobs = bed.jobs().await;
    let report = queue
        .sync(&jobs, true, false)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.enqueued.len(), 2, "{report:?}");
    queue
        .run_until_idle(&CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let catalog = queue.library().catalog();
    assert_eq!(catalog.list().unwrap_or_default().len(), 2);
    let files_before = walk(&bed.library());

    let res = reqwest::Client::new()
        .delete(format!("{}/jobs/{}", bed.endpoints.api_url, kept.id))
        .bearer_auth(&bed.token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("delete: {e}"));
    assert!(res.status().is_success(), "{}", res.status());
    let report = queue
        .sync(&bed.jobs().await, true, false)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.marked_only_local, vec![kept.id.clone()]);
    assert!(report.enqueued.is_empty(), "{report:?}");
    let book = catalog.show(&kept.id).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(book.server_state, ServerState::OnlyLocal);
    assert_eq!(
        catalog.show(&other.id).map(|b| b.server_state).ok(),
        Some(ServerState::Available)
    );
    assert_eq!(walk(&bed.library()), files_before, "sync never deletes");
}

#[tokio::test]
async fn hostile_names_and_a_lying_size_never_write_outside_the_library() {
    let bed = bed(|_| {}).await;
    // Long names: the engine caps titles at 200 characters and the devstack's simulator
    // cannot store audio under a key built from a 150-character title, so 5,000-character
    // names are covered by the library's own tests of `plan_book`, not here.
    let names = [
        ("../../x", "../../.."),
        ("/etc/passwd", "/root"),
        ("CON.wav", "NUL"),
        ("a\u{0000}b", "c\u{0000}d"),
    ];
    let bus = EventBus::new();
    let queue = bed.queue(&bus, 0);
    let mut ids = Vec::new();
    for (title, author) in names {
        let f = bed.finished_job_named(title, author).await;
        ids.push(f.id.clone());
        queue
            .enqueue_job(&bed.job(&f.id).await, DownloadChoice::All)
            .await
            .unwrap_or_else(|e| panic!("{title:?}: {e}"));
    }
    // One more whose store object is not the size the server announces.
    let liar = bed.finished_job_named("Liar", "L").await;
    let liar_job = bed.job(&liar.id).await;
    queue
        .enqueue_job(&liar_job, DownloadChoice::Book)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    bed.devstack
        .backend()
        .store
        .put_object(
            &bed.bucket(),
            &liar.audio_path,
            Bytes::from(vec![7u8; (liar.size + 4096) as usize]),
            "audio/wav",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    queue
        .run_until_idle(&CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let root = bed.library();
    for item in queue.list().unwrap_or_default() {
        if item.job_id == liar.id {
            assert_eq!(item.state, DownloadState::Failed, "{item:?}");
            assert_eq!(
                item.error_code.as_deref(),
                Some("integrity_mismatch"),
                "{item:?}"
            );
            let msg = item.error_message.clone().unwrap_or_default();
            assert!(msg.contains("nothing was kept"), "{msg}");
        } else {
            assert_eq!(item.state, DownloadState::Completed, "{item:?}");
            assert!(
                !item.rel_path.split('/').any(|c| c == ".." || c.is_empty()),
                "{item:?}"
            );
            for c in item.rel_path.split('/') {
                assert!(c.len() <= 255, "a component too long for the disk: {c}");
                assert!(!c.contains('\0'), "{c:?}");
            }
        }
    }
    for id in &ids {
        assert!(
            queue.library().catalog().get(id).ok().flatten().is_some(),
            "{id} catalogued"
        );
    }
    // Nothing anywhere in the test's folder outside the devstack's data and the library.
    let canonical_root = root.canonicalize().unwrap_or_else(|e| panic!("{e}"));
    for p in walk(bed.dir.path()) {
        let p = p.canonicalize().unwrap_or(p);
        let allowed = p.starts_with(&canonical_root)
            || p.starts_with(bed.dir.path().join("devstack"))
            || p.starts_with(bed.dir.path().join("data"));
        assert!(allowed, "a file outside the library: {}", p.display());
        assert!(
            p.extension().is_none_or(|e| e != "part"),
            "a .part left: {}",
            p.display()
        );
    }
    assert!(!root.join("x").exists() || root.join("x").starts_with(&root));
    assert!(!Path::new("/etc/passwd.wav").exists());
}

#[tokio::test]
async fn an_idle_queue_sleeps_until_an_enqueue_or_a_resume_wakes_it() {
    let bed = bed(|_| {}).await;
    let finished = bed.finished_job().await;
    let job = bed.job(&finished.id).await;
    let bus = EventBus::new();
    let queue = Arc::new(bed.queue(&bus, 0));
    let settings_store =
        QueueStore::open(&bed.dir.path().join("data/state.db")).unwrap_or_else(|e| panic!("{e}"));
    let stop = CancellationToken::new();
    let runner = {
        let (q, stop) = (queue.clone(), stop.clone());
        tokio::spawn(async move { q.run(&stop).await })
    };
    until("the first look", || queue.looks() >= 1).await;
    let looks = queue.looks();
    // A measurement window, not a synchronisation: three of the 500 ms polls the queue
    // used to make while idle.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(queue.looks(), looks, "an idle queue looked again by itself");

    // The global pause (the upload queue's setting), then an enqueue: the enqueue wakes
    // it, and it starts nothing.
    let mut s = settings_store.settings().unwrap_or_else(|e| panic!("{e}"));
    s.paused = true;
    settings_store
        .save_settings(&s)
        .unwrap_or_else(|e| panic!("{e}"));
    let report = queue
        .enqueue_job(&job, DownloadChoice::Book)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let id = report.queued[0];
    until("the look the enqueue asked for", || queue.looks() > looks).await;
    let paused_looks = queue.looks();
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(queue.looks(), paused_looks, "a paused queue polls");
    let state = |q: &DownloadQueue| {
        q.store()
            .item(&bed.user_id, id)
            .unwrap_or_else(|e| panic!("{e}"))
            .state
    };
    assert_eq!(state(&queue), DownloadState::Queued);

    // Resumed (what the client's global resume does: save the setting, wake the queue):
    // the book comes at once.
    s.paused = false;
    settings_store
        .save_settings(&s)
        .unwrap_or_else(|e| panic!("{e}"));
    queue.wake();
    let woken = Instant::now();
    until("the download after the resume", || {
        state(&queue) == DownloadState::Completed
    })
    .await;
    assert!(
        woken.elapsed() < Duration::from_secs(20),
        "{:?}",
        woken.elapsed()
    );
    stop.cancel();
    runner
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
}

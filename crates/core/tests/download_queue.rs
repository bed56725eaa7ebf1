//! The durable download queue against a devstack started in-process (S3 behind the
//! fault proxy): a completed job's book and tracks are queued, downloaded, catalogued and
//! byte-exact; pause, resume and cancel; a job deleted on the server is kept locally and
//! marked "only on this computer". Waits poll state with deadlines; nothing sleeps to
//! synchronise.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;
use rohimaya_core::api::Job;
use rohimaya_core::api::downloads::DownloadsApi;
use rohimaya_core::api::uploads::StaticToken;
use rohimaya_core::config::Endpoints;
use rohimaya_core::downloads::{DownloadChoice, DownloadQueue, DownloadState, DownloadStore};
use rohimaya_core::events::{Event, EventBus};
use rohimaya_core::library::{FileRef, Library, ServerState};
use rohimaya_core::queue::QueueStore;
use rohimaya_core::transfer::{DownloadSession, DownloadSettings, RetryPolicy};
use rohimaya_devstack::faults::FaultProxy;
use rohimaya_devstack::{Devstack, DevstackConfig};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

const MIB: u64 = 1024 * 1024;

struct Bed {
    dir: TempDir,
    devstack: Devstack,
    /// Kept alive: the store's URLs point at it.
    _proxy: FaultProxy,
    token: String,
    user_id: String,
    endpoints: Endpoints,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

async fn bed(tweak: impl FnOnce(&mut DevstackConfig)) -> Bed {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let s3 = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let proxy = FaultProxy::start(s3)
        .await
        .unwrap_or_else(|e| panic!("proxy: {e}"));
    let mut config = DevstackConfig::new(dir.path().join("devstack"));
    config.s3_listen = s3;
    config.public_s3_url = Some(proxy.url());
    config.job_duration = Duration::from_millis(300);
    tweak(&mut config);
    let devstack = rohimaya_devstack::start(config)
        .await
        .unwrap_or_else(|e| panic!("devstack: {e}"));
    let http = reqwest::Client::new();
    let email = format!("listener-{}@example.com", rand::rng().random::<u32>());
    let res = http
        .post(format!("{}/auth/v1/signup", devstack.info.supabase_url))
        .header("apikey", &devstack.info.anon_key)
        .json(&serde_json::json!({"email": email, "password": "correct horse battery staple 42"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("signup: {e}"));
    let session: serde_json::Value = res.json().await.unwrap_or_default();
    let token = session["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access token in {session}"))
        .to_string();
    let user_id = session["user"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let endpoints = Endpoints {
        supabase_url: devstack.info.supabase_url.clone(),
        anon_key: devstack.info.anon_key.clone(),
        api_url: devstack.info.api_url.clone(),
        origin: None,
    };
    Bed {
        dir,
        devstack,
        _proxy: proxy,
        token,
        user_id,
        endpoints,
    }
}

fn settings() -> DownloadSettings {
    DownloadSettings {
        chunk_size: MIB,
        connections: 4,
        buffer_size: 256 * 1024,
        checkpoint_every: 512 * 1024,
        sync_before_rename: true,
        retry: RetryPolicy {
            max_attempts: 8,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(500),
            stall_timeout: Duration::from_secs(2),
        },
    }
}

/// A finished job: its id, the book's object key and the announced size.
struct FinishedJob {
    id: String,
    audio_path: String,
    size: u64,
}

impl Bed {
    fn api(&self) -> DownloadsApi {
        DownloadsApi::new(
            DownloadsApi::default_http(),
            &self.endpoints,
            Arc::new(StaticToken(self.token.clone())),
        )
    }

    fn session(&self, bus: &EventBus, settings: DownloadSettings) -> DownloadSession {
        DownloadSession::new(self.api(), bus.clone(), settings)
    }

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
        let session = self.session(bus, settings);
        session.limiter.set_rate(rate);
        DownloadQueue::new(
            DownloadStore::open(&db).unwrap_or_else(|e| panic!("store: {e}")),
            library,
            session,
            self.user_id.clone(),
            QueueStore::open(&db).ok(),
        )
    }

    fn library(&self) -> PathBuf {
        self.dir.path().join("Library")
    }

    fn bucket(&self) -> String {
        self.devstack.backend().config.audiobooks_bucket.clone()
    }

    async fn object(&self, key: &str) -> Bytes {
        self.devstack
            .backend()
            .store
            .get_object(&self.bucket(), key)
            .await
            .unwrap_or_else(|e| panic!("get_object {key}: {e}"))
    }

    /// Uploads the fixture manuscript, creates a job and waits for the simulator.
    async fn finished_job(&self) -> FinishedJob {
        self.finished_job_named("The Lighthouse Keeper's Daughter", "Ada Quill")
            .await
    }

    /// Like [`Bed::finished_job`], with the title and author the server will report.
    async fn finished_job_named(&self, title: &str, author: &str) -> FinishedJob {
        let backend = self.devstack.backend();
        let key = format!(
            "manuscripts/{}/{}/lighthouse.txt",
            self.user_id,
            rand::rng().random::<u64>()
        );
        let text = std::fs::read(fixtures().join("manuscripts/lighthouse.txt"))
            .unwrap_or_else(|e| panic!("fixture: {e}"));
        backend
            .store
            .put_object(
                &backend.config.manuscripts_bucket,
                &key,
                Bytes::from(text),
                "text/plain",
            )
            .await
            .unwrap_or_else(|e| panic!("put manuscript: {e}"));
        let http = reqwest::Client::new();
        let job: serde_json::Value = http
            .post(format!("{}/jobs", self.endpoints.api_url))
            .bearer_auth(&self.token)
            .json(&serde_json::json!({
                "title": title, "author": author,
                "source_type": "upload", "source_path": key, "mode": "single_voice",
                "tts_provider": "openai", "narrator_voice_id": "alloy", "audio_format": "mp3",
            }))
            .send()
            .await
            .unwrap_or_else(|e| panic!("create job: {e}"))
            .json()
            .await
            .unwrap_or_default();
        let id = job["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no job id in {job}"))
            .to_string();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let job: serde_json::Value = http
                .get(format!("{}/jobs/{id}", self.endpoints.api_url))
                .bearer_auth(&self.token)
                .send()
                .await
                .unwrap_or_else(|e| panic!("get job: {e}"))
                .json()
                .await
                .unwrap_or_default();
            match job["status"].as_str() {
                Some("completed") => {
                    return FinishedJob {
                        id,
                        audio_path: job["audio_path"].as_str().unwrap_or_default().to_string(),
                        size: job["file_size_bytes"].as_u64().unwrap_or_default(),
                    };
                }
                Some("failed") | Some("cancelled") => panic!("the job ended as {job}"),
                _ => {}
            }
            assert!(Instant::now() < deadline, "the job did not complete: {job}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
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
        .api()
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

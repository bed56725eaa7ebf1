//! The download engine against a devstack started in-process, with the fault-injecting
//! proxy between the client and the S3 store (download URLs are signed for the proxy's
//! address, so every GET goes through it). A user signs up, a fixture manuscript becomes
//! a job, the narration simulator (fast: 300 ms per job) writes the audiobook, and the
//! engine downloads it. Larger objects for resume and fault tests are put at the book's
//! key directly. Nothing sleeps to synchronise: waits poll state with deadlines, and
//! interruptions are triggered from the journal at a byte count.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Bed;
use common::downloads::{FinishedJob, MIB, settings, walk};
use rand::Rng;
use rohimaya_core::error::{CoreError, ErrorCode};
use rohimaya_core::events::{Event, EventBus, TransferNotice};
use rohimaya_core::transfer::disk_space::FixedSpace;
use rohimaya_core::transfer::{
    BandwidthLimiter, DownloadCheckpoint, DownloadError, DownloadJob, DownloadJournal,
    DownloadSession, DownloadSettings, DownloadSource, Downloaded, MemoryDownloadJournal,
    ProgressMeter, RetryPolicy,
};
use rohimaya_devstack::DevstackConfig;
use rohimaya_devstack::faults::{Fault, Rule};
use tokio_util::sync::CancellationToken;

async fn bed(tweak: impl FnOnce(&mut DevstackConfig)) -> Bed {
    common::bed(|c| {
        c.job_duration = Duration::from_millis(300);
        tweak(c)
    })
    .await
}

impl Bed {
    async fn put(&self, key: &str, body: Bytes) {
        self.devstack
            .backend()
            .store
            .put_object(&self.bucket(), key, body, "audio/wav")
            .await
            .unwrap_or_else(|e| panic!("put_object {key}: {e}"));
    }
}

/// `size` bytes, all different per call: a random 64 KiB block repeated, each block
/// stamped with a seed and its index (drawing every byte is too slow in debug builds).
fn random_bytes(size: u64) -> Bytes {
    let mut rng = rand::rng();
    let mut block = vec![0u8; 64 * 1024];
    rng.fill(&mut block[..]);
    let seed: u64 = rng.random();
    let mut data = Vec::with_capacity(size as usize);
    let mut i = 0u64;
    while (data.len() as u64) < size {
        let start = data.len();
        data.extend_from_slice(&block);
        let stamp = format!("{seed:x}:{i};");
        let n = stamp.len().min(data.len() - start);
        data[start..start + n].copy_from_slice(&stamp.as_bytes()[..n]);
        i += 1;
    }
    data.truncate(size as usize);
    Bytes::from(data)
}

/// A journal that remembers like [`MemoryDownloadJournal`], keeps the first checkpoint
/// at or past `snapshot_at` bytes (what a process killed then would have saved), and
/// cancels the download once `cancel_at` bytes are saved.
struct TrippingJournal {
    inner: MemoryDownloadJournal,
    snapshot_at: u64,
    snapshot: Mutex<Option<DownloadCheckpoint>>,
    cancel_at: u64,
    cancel: CancellationToken,
    saves: AtomicU64,
}

impl TrippingJournal {
    fn new(snapshot_at: u64, cancel_at: u64, cancel: CancellationToken) -> Self {
        Self {
            inner: MemoryDownloadJournal::default(),
            snapshot_at,
            snapshot: Mutex::new(None),
            cancel_at,
            cancel,
            saves: AtomicU64::new(0),
        }
    }
    fn snapshot(&self) -> Option<DownloadCheckpoint> {
        self.snapshot.lock().ok().and_then(|s| s.clone())
    }
}

impl DownloadJournal for TrippingJournal {
    fn checkpoint(&self, c: &DownloadCheckpoint) {
        self.saves.fetch_add(1, Ordering::Relaxed);
        self.inner.checkpoint(c);
        let done = c.bytes_done();
        if done >= self.snapshot_at
            && let Ok(mut s) = self.snapshot.lock()
            && s.is_none()
        {
            *s = Some(c.clone());
        }
        if done >= self.cancel_at {
            self.cancel.cancel();
        }
    }
    fn restarted(&self) {
        self.inner.restarted();
    }
}

struct Request<'a> {
    session: &'a DownloadSession,
    source: DownloadSource,
    dest: &'a Path,
    root: &'a Path,
    expected: Option<u64>,
    resume: Option<DownloadCheckpoint>,
    journal: &'a dyn DownloadJournal,
    cancel: CancellationToken,
}

async fn download(r: Request<'_>) -> Result<Downloaded, DownloadError> {
    let meter = ProgressMeter::new(r.session.bus.clone(), "dl", 0);
    let job = DownloadJob {
        transfer_id: "dl",
        source: r.source,
        dest: r.dest,
        library_root: r.root,
        expected_size: r.expected,
        resume: r.resume,
        journal: r.journal,
        meter: &meter,
        cancel: &r.cancel,
    };
    tokio::time::timeout(Duration::from_secs(120), r.session.download(job))
        .await
        .unwrap_or_else(|_| panic!("the download did not end within 120 s"))
}

fn book(job: &FinishedJob) -> DownloadSource {
    DownloadSource::Book {
        job_id: job.id.clone(),
    }
}

fn no_part_files(dir: &Path) -> bool {
    walk(dir).iter().all(|p| {
        !p.file_name()
            .is_some_and(|n| n.to_string_lossy().ends_with(".part"))
    })
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test]
async fn book_and_every_track_are_byte_exact() {
    let bed = bed(|c| c.url_ttl = Duration::from_secs(2)).await;
    let job = bed.finished_job().await;
    let api = bed.downloads_api();
    let link = api
        .book_download(&job.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        link.expires_in, 2,
        "the devstack's URL lifetime is configurable"
    );
    let shown = format!("{link:?}");
    let signature = link.url.split("X-Amz-Signature=").nth(1).unwrap_or("?");
    assert!(
        shown.contains("X-Amz-Signature=REDACTED") && !shown.contains(signature),
        "{shown}"
    );
    let tracks = api.tracks(&job.id).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(tracks.len() >= 2, "{tracks:?}");

    let bus = EventBus::new();
    let mut events = bus.subscribe();
    // Small chunks, so even these small WAVs take several ranged GETs in parallel.
    let session = bed.download_session(
        &bus,
        DownloadSettings {
            chunk_size: 128 * 1024,
            ..settings()
        },
    );
    let root = bed.library();
    let dest = Path::new("Ada Quill/The Lighthouse Keeper's Daughter/book.wav");
    let done = download(Request {
        session: &session,
        source: book(&job),
        dest,
        root: &root,
        expected: Some(job.size),
        resume: None,
        journal: &MemoryDownloadJournal::default(),
        cancel: CancellationToken::new(),
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let expected = bed.object(&job.audio_path).await;
    assert_eq!(
        read(&done.path),
        expected.to_vec(),
        "the book is byte-exact"
    );
    assert_eq!(done.size, job.size);
    assert!(done.md5.as_deref() == Some(done.etag.as_str()), "{done:?}");
    assert!(
        done.stats.requests >= 3,
        "parallel ranges: {:?}",
        done.stats
    );
    let gets = bed
        .proxy
        .requests()
        .iter()
        .filter(|r| r.method == "GET")
        .count();
    assert_eq!(gets as u32, done.stats.requests);
    let mut progress_seen = false;
    while let Ok(e) = events.try_recv() {
        if let Event::TransferProgress(p) = e {
            progress_seen |= p.bytes_total == job.size && p.bytes_done > 0;
        }
    }
    assert!(progress_seen, "progress is published with the total");

    for track in &tracks {
        let link = api
            .track_download(&job.id, &track.id)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(Some(&link.export_filename), track.export_filename.as_ref());
        let dest = root.join(format!("Ada Quill/Tracks/{:02}.wav", track.track_index));
        let done = download(Request {
            session: &session,
            source: DownloadSource::Track {
                job_id: job.id.clone(),
                track_id: track.id.clone(),
            },
            dest: &dest,
            root: &root,
            expected: track.file_size_bytes.map(|s| s as u64),
            resume: None,
            journal: &MemoryDownloadJournal::default(),
            cancel: CancellationToken::new(),
        })
        .await
        .unwrap_or_else(|e| panic!("track {}: {e}", track.track_index));
        let key = track.audio_path.clone().unwrap_or_default();
        assert_eq!(
            read(&done.path),
            bed.object(&key).await.to_vec(),
            "track {}",
            track.track_index
        );
    }
    assert!(no_part_files(&root));

    // A job that does not exist (or was deleted) is "gone", with its own code.
    let err = api
        .book_download("00000000-0000-4000-8000-000000000000")
        .await
        .expect_err("no such job");
    assert_eq!(err.code(), ErrorCode::ServerCopyGone);
}

#[tokio::test]
async fn resumes_from_the_part_file_fetching_only_the_rest() {
    let bed = bed(|_| {}).await;
    let job = bed.finished_job().await;
    let size = 12 * MIB + 12_345;
    let body = random_bytes(size);
    bed.put(&job.audio_path, body.clone()).await;
    let bus = EventBus::new();
    let mut events = bus.subscribe();
    let session = bed.download_session(&bus, settings());
    let root = bed.library();
    let dest = root.join("A/B/book.wav");

    // First run: a "crash" snapshot at 4 MiB saved, interrupted once 7 MiB are saved.
    let cancel = CancellationToken::new();
    let journal = TrippingJournal::new(4 * MIB, 7 * MIB, cancel.clone());
    let err = download(Request {
        session: &session,
        source: book(&job),
        dest: &dest,
        root: &root,
        expected: None,
        resume: None,
        journal: &journal,
        cancel,
    })
    .await
    .expect_err("interrupted");
    assert_eq!(err.code(), ErrorCode::TransferInterrupted, "{err}");
    assert!(
        !dest.exists(),
        "an unfinished download is never put in place"
    );
    let part = root.join("A/B/book.wav.part");
    assert_eq!(std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0), size);
    let snapshot = journal.snapshot().unwrap_or_else(|| panic!("no snapshot"));
    let last = journal
        .inner
        .last()
        .unwrap_or_else(|| panic!("no checkpoint"));
    assert!(
        last.bytes_done() >= 7 * MIB && last.bytes_done() < size,
        "{}",
        last.bytes_done()
    );
    assert!(snapshot.bytes_done() < last.bytes_done());

    // Resume as a process killed at the snapshot would: from the older checkpoint.
    bed.proxy.reset_counters();
    let done = download(Request {
        session: &session,
        source: book(&job),
        dest: &dest,
        root: &root,
        expected: Some(size),
        resume: Some(snapshot.clone()),
        journal: &MemoryDownloadJournal::default(),
        cancel: CancellationToken::new(),
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(read(&done.path), body.to_vec());
    assert_eq!(done.stats.resumed_bytes, snapshot.bytes_done());
    assert_eq!(done.stats.restarts, 0);
    let remaining = size - snapshot.bytes_done();
    let heads = 2048 * u64::from(done.stats.requests);
    assert!(
        bed.proxy.bytes_down() <= remaining + heads,
        "fetched {} bytes, only {remaining} were missing ({:?})",
        bed.proxy.bytes_down(),
        done.stats
    );
    assert!(done.stats.bytes_received <= remaining);
    let ifmatch = bed.proxy.requests().iter().all(|r| r.method == "GET");
    assert!(ifmatch);
    let mut resumed = false;
    while let Ok(e) = events.try_recv() {
        if let Event::TransferNotice {
            notice:
                TransferNotice::DownloadResumed {
                    bytes_done,
                    bytes_total,
                },
            ..
        } = e
        {
            resumed = bytes_done == snapshot.bytes_done() && bytes_total == size;
        }
    }
    assert!(resumed, "the resume is announced");
    assert!(!part.exists());
}

#[tokio::test]
async fn the_part_file_is_flushed_while_it_is_written() {
    let bed = bed(|_| {}).await;
    let job = bed.finished_job().await;
    let size = 10 * MIB + 4321;
    let body = random_bytes(size);
    bed.put(&job.audio_path, body.clone()).await;
    let bus = EventBus::new();
    let root = bed.library();
    for (flush_every, dir) in [(2 * MIB, "early"), (0, "end")] {
        let session = bed.download_session(
            &bus,
            DownloadSettings {
                flush_every,
                ..settings()
            },
        );
        let dest = root.join(dir).join("book.wav");
        let done = download(Request {
            session: &session,
            source: book(&job),
            dest: &dest,
            root: &root,
            expected: Some(size),
            resume: None,
            journal: &MemoryDownloadJournal::default(),
            cancel: CancellationToken::new(),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read(&done.path), body.to_vec());
        if flush_every == 0 {
            assert_eq!(done.stats.early_flushes, 0, "{:?}", done.stats);
        } else {
            // A flush after each further 2 MiB written, one at a time (so fewer when a
            // flush takes longer than the next 2 MiB): at most 5 for 10 MiB, the last
            // stretch left to the flush before the rename.
            assert!(
                (1..=5).contains(&done.stats.early_flushes),
                "{:?}",
                done.stats
            );
        }
        assert!(no_part_files(&root));
    }
}

#[tokio::test]
async fn a_replaced_object_restarts_through_if_match() {
    let bed = bed(|_| {}).await;
    let job = bed.finished_job().await;
    let first = random_bytes(6 * MIB);
    bed.put(&job.audio_path, first).await;
    let bus = EventBus::new();
    let mut events = bus.subscribe();
    let session = bed.download_session(&bus, settings());
    let root = bed.library();
    let dest = root.join("book.wav");
    let cancel = CancellationToken::new();
    let journal = TrippingJournal::new(MIB, 2 * MIB, cancel.clone());
    let err = download(Request {
        session: &session,
        source: book(&job),
        dest: &dest,
        root: &root,
        expected: None,
        resume: None,
        journal: &journal,
        cancel,
    })
    .await
    .expect_err("interrupted");
    assert_eq!(err.code(), ErrorCode::TransferInterrupted);
    let checkpoint = journal
        .inner
        .last()
        .unwrap_or_else(|| panic!("no checkpoint"));

    // The server's file changes between the two runs (another size, another ETag).
    let second = random_bytes(5 * MIB + 77);
    bed.put(&job.audio_path, second.clone()).await;
    let journal = MemoryDownloadJournal::default();
    let done = download(Request {
        session: &session,
        source: book(&job),
        dest: &dest,
        root: &root,
        expected: None,
        resume: Some(checkpoint),
        journal: &journal,
        cancel: CancellationToken::new(),
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        read(&done.path),
        second.to_vec(),
        "the final file is the new object"
    );
    assert_eq!(done.stats.restarts, 1);
    assert_eq!(journal.restarts(), 1);
    let mut restarted = false;
    while let Ok(e) = events.try_recv() {
        if let Event::TransferNotice {
            notice: TransferNotice::DownloadRestarted { reason },
            ..
        } = e
        {
            restarted |= reason.contains("changed");
        }
    }
    assert!(restarted, "the fresh start is announced");
}

#[tokio::test]
async fn faults_and_expiring_urls_still_give_a_byte_exact_file() {
    let bed = bed(|c| c.url_ttl = Duration::from_secs(2)).await;
    let job = bed.finished_job().await;
    let size = 10 * MIB + 999;
    let body = random_bytes(size);
    bed.put(&job.audio_path, body.clone()).await;
    let p = &bed.proxy;
    p.add(Rule::new(Fault::ResetAfter(0)).method("GET").times(1));
    p.add(Rule::new(Fault::status(503)).method("GET").times(3));
    p.add(Rule::new(Fault::too_many(1)).method("GET").times(1));
    p.add(
        Rule::new(Fault::TruncateResponse(100_000))
            .method("GET")
            .times(2),
    );
    p.add(
        Rule::new(Fault::StallResponseAfter(50_000))
            .method("GET")
            .times(1),
    );
    p.add(
        Rule::new(Fault::s3_error(403, "AccessDenied", "Request has expired"))
            .method("GET")
            .times(2),
    );
    let bus = EventBus::new();
    let mut session = bed.download_session(
        &bus,
        DownloadSettings {
            retry: RetryPolicy {
                stall_timeout: Duration::from_secs(1),
                ..settings().retry
            },
            ..settings()
        },
    );
    // 10 MiB at 2.5 MB/s: over 4 s, so 2 s URLs expire during the download.
    session.limiter = BandwidthLimiter::new(2_500_000);
    let root = bed.library();
    let dest = root.join("faults.wav");
    let started = Instant::now();
    let done = download(Request {
        session: &session,
        source: book(&job),
        dest: &dest,
        root: &root,
        expected: Some(size),
        resume: None,
        journal: &MemoryDownloadJournal::default(),
        cancel: CancellationToken::new(),
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        read(&done.path),
        body.to_vec(),
        "byte-exact through every fault"
    );
    assert!(started.elapsed() > Duration::from_secs(3));
    let s = &done.stats;
    assert!(s.retries >= 7, "{s:?}");
    assert!(s.expired_answers >= 2, "{s:?}");
    assert!(s.urls_fetched >= 4, "fresh URLs as they expire: {s:?}");
    let spent = p.requests().iter().filter(|r| r.fault.is_some()).count();
    assert_eq!(spent, 10, "every fault was met");
    assert!(no_part_files(&root));
}

#[tokio::test]
async fn truncated_bodies_resume_and_are_never_put_in_place() {
    let bed = bed(|_| {}).await;
    let job = bed.finished_job().await;
    let bus = EventBus::new();
    let session = bed.download_session(
        &bus,
        DownloadSettings {
            retry: RetryPolicy {
                max_attempts: 3,
                ..settings().retry
            },
            ..settings()
        },
    );
    let root = bed.library();
    // Every answer cut off after 20 kB: each retry continues where the last one stopped.
    bed.proxy
        .add(Rule::new(Fault::TruncateResponse(20_000)).method("GET"));
    let done = download(Request {
        session: &session,
        source: book(&job),
        dest: &root.join("slow.wav"),
        root: &root,
        expected: Some(job.size),
        resume: None,
        journal: &MemoryDownloadJournal::default(),
        cancel: CancellationToken::new(),
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(read(&done.path), bed.object(&job.audio_path).await.to_vec());
    assert!(done.stats.retries >= 10, "{:?}", done.stats);
    assert!(
        done.stats.bytes_received <= job.size,
        "nothing fetched twice"
    );

    // Cut off before any byte of the body, every time: it fails, and nothing is in place.
    bed.proxy.clear();
    bed.proxy
        .add(Rule::new(Fault::TruncateResponse(200)).method("GET"));
    let dest = root.join("cut.wav");
    let err = download(Request {
        session: &session,
        source: book(&job),
        dest: &dest,
        root: &root,
        expected: Some(job.size),
        resume: None,
        journal: &MemoryDownloadJournal::default(),
        cancel: CancellationToken::new(),
    })
    .await
    .expect_err("every answer is cut off");
    assert_eq!(err.code(), ErrorCode::TransferFailed, "{err}");
    assert!(err.to_string().contains("after 3 attempts"), "{err}");
    assert!(!dest.exists(), "a truncated file is never put in place");
}

#[tokio::test]
async fn destinations_outside_the_library_are_refused_before_any_traffic() {
    let bed = bed(|_| {}).await;
    let job = bed.finished_job().await;
    let bus = EventBus::new();
    let session = bed.download_session(&bus, settings());
    let root = bed.library();
    let elsewhere = bed.dir.path().join("elsewhere");
    for dest in [
        PathBuf::from("../escape.wav"),
        PathBuf::from("A/../../escape.wav"),
        elsewhere.join("x.wav"),
    ] {
        let err = download(Request {
            session: &session,
            source: book(&job),
            dest: &dest,
            root: &root,
            expected: None,
            resume: None,
            journal: &MemoryDownloadJournal::default(),
            cancel: CancellationToken::new(),
        })
        .await
        .expect_err("outside the library");
        assert_eq!(err.code(), ErrorCode::DestinationOutsideLibrary, "{err}");
    }
    assert!(!bed.dir.path().join("escape.wav").exists());
    assert!(!elsewhere.exists());

    // A name already taken is never overwritten.
    let taken = root.join("Taken/book.wav");
    std::fs::create_dir_all(root.join("Taken")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&taken, b"mine").unwrap_or_else(|e| panic!("{e}"));
    let err = download(Request {
        session: &session,
        source: book(&job),
        dest: &taken,
        root: &root,
        expected: None,
        resume: None,
        journal: &MemoryDownloadJournal::default(),
        cancel: CancellationToken::new(),
    })
    .await
    .expect_err("taken");
    assert_eq!(err.code(), ErrorCode::DestinationExists, "{err}");
    assert_eq!(read(&taken), b"mine");
    assert!(bed.proxy.requests().is_empty(), "nothing was fetched");
}

#[tokio::test]
async fn not_enough_disk_space_leaves_nothing_behind() {
    let bed = bed(|_| {}).await;
    let job = bed.finished_job().await;
    let bus = EventBus::new();
    let mut session = bed.download_session(&bus, settings());
    session.space = Arc::new(FixedSpace(MIB));
    let root = bed.library();
    let dest = root.join("Author/Title/book.wav");
    let err = download(Request {
        session: &session,
        source: book(&job),
        dest: &dest,
        root: &root,
        expected: Some(job.size),
        resume: None,
        journal: &MemoryDownloadJournal::default(),
        cancel: CancellationToken::new(),
    })
    .await
    .expect_err("the disk is full");
    assert_eq!(err.code(), ErrorCode::NotEnoughSpace, "{err}");
    let msg = err.to_string();
    assert!(msg.contains("Title"), "says where: {msg}");
    assert!(msg.contains("MB"), "says how much: {msg}");
    assert!(walk(&root).is_empty(), "no file written: {:?}", walk(&root));
}

#[tokio::test]
async fn checksum_and_size_mismatches_keep_nothing() {
    let bed = bed(|_| {}).await;
    let job = bed.finished_job().await;
    let bus = EventBus::new();
    // One request for the whole file, whose ETag the proxy rewrites.
    let session = bed.download_session(
        &bus,
        DownloadSettings {
            chunk_size: 64 * MIB,
            ..settings()
        },
    );
    let root = bed.library();
    let dest = root.join("md5.wav");
    bed.proxy.add(
        Rule::new(Fault::RewriteEtag(
            "0123456789abcdef0123456789abcdef".into(),
        ))
        .method("GET")
        .times(1),
    );
    let journal = MemoryDownloadJournal::default();
    let err = download(Request {
        session: &session,
        source: book(&job),
        dest: &dest,
        root: &root,
        expected: Some(job.size),
        resume: None,
        journal: &journal,
        cancel: CancellationToken::new(),
    })
    .await
    .expect_err("the checksum does not match");
    assert_eq!(err.code(), ErrorCode::IntegrityMismatch, "{err}");
    assert!(
        err.to_string().contains("0123456789abcdef0123456789abcdef"),
        "{err}"
    );
    assert!(
        walk(&root).is_empty(),
        "the .part was deleted: {:?}",
        walk(&root)
    );
    assert!(journal.last().is_none(), "the journal forgot the download");

    // A lying `file_size_bytes`: refused before anything is written.
    let err = download(Request {
        session: &session,
        source: book(&job),
        dest: &dest,
        root: &root,
        expected: Some(job.size + 1),
        resume: None,
        journal: &journal,
        cancel: CancellationToken::new(),
    })
    .await
    .expect_err("the sizes differ");
    assert_eq!(err.code(), ErrorCode::IntegrityMismatch, "{err}");
    assert!(
        err.to_string().contains(&(job.size + 1).to_string()),
        "{err}"
    );
    assert!(walk(&root).is_empty());

    // The object is gone from the store: "gone", nothing kept.
    bed.devstack
        .backend()
        .store
        .delete_object(&bed.bucket(), &job.audio_path)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let err = download(Request {
        session: &session,
        source: book(&job),
        dest: &dest,
        root: &root,
        expected: None,
        resume: None,
        journal: &journal,
        cancel: CancellationToken::new(),
    })
    .await
    .expect_err("gone");
    assert_eq!(err.code(), ErrorCode::ServerCopyGone, "{err}");
    assert!(walk(&root).is_empty());
}

#[tokio::test]
async fn waits_offline_and_goes_on() {
    let bed = bed(|_| {}).await;
    let job = bed.finished_job().await;
    let size = 6 * MIB;
    let body = random_bytes(size);
    bed.put(&job.audio_path, body.clone()).await;
    let bus = EventBus::new();
    let mut session = bed.download_session(&bus, settings());
    session.limiter = BandwidthLimiter::new(4_000_000);
    let root = bed.library();
    let dest = root.join("offline.wav");
    let journal = MemoryDownloadJournal::default();
    let run = download(Request {
        session: &session,
        source: book(&job),
        dest: &dest,
        root: &root,
        expected: Some(size),
        resume: None,
        journal: &journal,
        cancel: CancellationToken::new(),
    });
    let outage = async {
        let deadline = Instant::now() + Duration::from_secs(30);
        while journal.last().is_none_or(|c| c.bytes_done() < MIB) {
            assert!(Instant::now() < deadline, "no progress");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bed.proxy.go_offline().await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        bed.proxy
            .go_online()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    };
    let (done, ()) = tokio::join!(run, outage);
    let done = done.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(read(&done.path), body.to_vec());
    assert!(done.stats.offline_probes >= 1, "{:?}", done.stats);
}

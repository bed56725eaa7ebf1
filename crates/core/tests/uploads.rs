//! The upload engine and the durable queue against a devstack started in-process, with
//! the fault-injecting proxy between the client and the S3 store (presigned URLs are
//! signed for the proxy's address, so every PUT goes through it). Small plan settings
//! (multipart from 1 MiB, 5 MiB parts) keep files to a few tens of MiB. Nothing sleeps to
//! synchronise: waits poll events or state with deadlines.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Bed;
use rand::Rng;
use rohimaya_core::api::request::StaticToken;
use rohimaya_core::api::uploads::{JobOptions, UploadsApi};
use rohimaya_core::config::Endpoints;
use rohimaya_core::error::{CoreError, ErrorCode};
use rohimaya_core::events::{Event, EventBus, TransferNotice};
use rohimaya_core::queue::{ItemState, QueueError, QueueRunner, QueueStore};
use rohimaya_core::transfer::plan::{PartPlan, PlanSettings};
use rohimaya_core::transfer::upload::UploadJob;
use rohimaya_core::transfer::{
    self, NoJournal, ProgressMeter, RetryPolicy, TransferError, TransferSettings, UploadResult,
    UploadSession,
};
use rohimaya_devstack::DevstackConfig;
use rohimaya_devstack::faults::{Fault, FaultProxy, Rule};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

const MIB: u64 = 1024 * 1024;
const PART: u64 = 5 * MIB;
const THRESHOLD: u64 = MIB;

async fn bed(tweak: impl FnOnce(&mut DevstackConfig)) -> Bed {
    common::bed(|c| {
        c.job_duration = Duration::from_secs(60);
        tweak(c)
    })
    .await
}

fn settings() -> TransferSettings {
    TransferSettings {
        plan: PlanSettings {
            multipart_threshold: THRESHOLD,
            part_size: PART,
        },
        parts_in_flight: 4,
        sign_batch: 8,
        retry: RetryPolicy {
            max_attempts: 8,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(1500),
            // Long enough for the store to answer a part on a loaded 2-core machine (the
            // tests that count PUTs must not see a retry), short enough for the stall test.
            stall_timeout: Duration::from_secs(5),
        },
    }
}

impl Bed {
    fn session(&self, bus: &EventBus) -> UploadSession {
        self.session_at(bus, &self.endpoints)
    }

    fn session_at(&self, bus: &EventBus, endpoints: &Endpoints) -> UploadSession {
        let api = UploadsApi::new(
            UploadsApi::default_http(),
            endpoints,
            Arc::new(StaticToken(self.token.clone())),
        );
        UploadSession::new(api, bus.clone(), settings())
    }

    fn state_db(&self) -> PathBuf {
        self.dir.path().join("client").join("state.db")
    }

    fn runner(&self, bus: &EventBus) -> QueueRunner {
        let store = QueueStore::open(&self.state_db()).unwrap_or_else(|e| panic!("{e}"));
        QueueRunner::new(store, self.session(bus), self.user_id.clone())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn files(&self) -> PathBuf {
        let p = self.dir.path().join("files");
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("{e}"));
        p
    }

    async fn object_sha256(&self, key: &str) -> String {
        let b = self.devstack.backend();
        let bytes = b
            .store
            .get_object(&b.config.manuscripts_bucket, key)
            .await
            .unwrap_or_else(|e| panic!("get_object {key}: {e}"));
        hex(&Sha256::digest(&bytes))
    }

    /// The user's jobs, as the engine lists them.
    async fn jobs(&self) -> Vec<serde_json::Value> {
        let res = reqwest::Client::new()
            .get(format!("{}/jobs?limit=100", self.endpoints.api_url))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("jobs: {e}"));
        let v: serde_json::Value = res.json().await.unwrap_or_default();
        match v {
            serde_json::Value::Array(a) => a,
            other => other["jobs"].as_array().cloned().unwrap_or_default(),
        }
    }

    /// Every item completed, its object byte-exact, one job per file.
    async fn assert_all_completed(&self, runner: &QueueRunner, files: &[PathBuf]) {
        let items = runner.list().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(items.len(), files.len());
        for item in &items {
            assert_eq!(
                item.state,
                ItemState::Completed,
                "{}: {:?} {:?}",
                item.path.display(),
                item.error_code,
                item.error_message
            );
            let key = item.object_key.clone().unwrap_or_default();
            assert_eq!(
                self.object_sha256(&key).await,
                file_sha256(&item.path),
                "{} is not byte-exact",
                item.path.display()
            );
            // The SHA-256 (dedupe) was recorded, computed while the file was sent.
            assert_eq!(
                item.sha256.as_deref(),
                Some(file_sha256(&item.path).as_str()),
                "{}",
                item.path.display()
            );
            assert!(item.job_id.is_some());
        }
        let jobs = self.jobs().await;
        assert_eq!(jobs.len(), files.len(), "one job per file: {jobs:?}");
        for item in &items {
            let n = jobs
                .iter()
                .filter(|j| j["source_path"].as_str() == item.object_key.as_deref())
                .count();
            assert_eq!(n, 1, "{}", item.path.display());
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn file_sha256(path: &Path) -> String {
    hex(&Sha256::digest(
        std::fs::read(path).unwrap_or_else(|e| panic!("{e}")),
    ))
}

/// A text file of `size` bytes of random printable words (so it sniffs as text): a random
/// 1 MiB block repeated, each MiB stamped with the file's seed and its index, so files and
/// parts all differ (debug builds are too slow to draw every byte at random).
fn write_text(path: &Path, size: u64) {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz  ,.\n ";
    let mut rng = rand::rng();
    let mut block = vec![0u8; MIB as usize];
    rng.fill(&mut block[..]);
    for b in block.iter_mut() {
        *b = ALPHABET[(*b & 31) as usize];
    }
    let seed: u64 = rng.random();
    let mut data = Vec::with_capacity(size as usize);
    let mut i = 0u64;
    while (data.len() as u64) < size {
        let start = data.len();
        data.extend_from_slice(&block);
        let stamp = format!("{seed:x} {i}\n");
        let n = stamp.len().min(data.len() - start);
        data[start..start + n].copy_from_slice(&stamp.as_bytes()[..n]);
        i += 1;
    }
    data.truncate(size as usize);
    std::fs::write(path, data).unwrap_or_else(|e| panic!("{e}"));
}

async fn run(runner: &QueueRunner) {
    let stop = CancellationToken::new();
    tokio::time::timeout(Duration::from_secs(180), runner.run_until_idle(&stop))
        .await
        .unwrap_or_else(|_| panic!("the queue did not finish within 180 s"))
        .unwrap_or_else(|e| panic!("{e}"));
}

async fn enqueue_all(runner: &QueueRunner, files: &[PathBuf]) {
    for f in files {
        runner
            .enqueue(f, &JobOptions::default(), false)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    }
}

/// Uploads one file with the engine alone (no queue), returning its result.
async fn upload_direct(
    session: &UploadSession,
    path: &Path,
) -> Result<UploadResult, TransferError> {
    upload_direct_with(session, path, false).await
}

/// [`upload_direct`]; with `hashed_first`, every part's MD5 is known before the upload
/// starts (so the first signing batch holds every part, as on a resume).
async fn upload_direct_with(
    session: &UploadSession,
    path: &Path,
    hashed_first: bool,
) -> Result<UploadResult, TransferError> {
    let m = transfer::inspect(path)?;
    let plan = PartPlan::for_size(m.size, session.settings.plan);
    let hasher = session.start_hasher(path, plan, true);
    if hashed_first {
        hasher.part_md5s().await.unwrap_or_else(|e| panic!("{e:?}"));
    }
    let meter = ProgressMeter::new(session.bus.clone(), "direct", m.size);
    let cancel = CancellationToken::new();
    session
        .upload(UploadJob {
            transfer_id: "direct",
            manuscript: &m,
            plan,
            hasher: &hasher,
            resume: None,
            journal: &NoJournal,
            meter: &meter,
            options: &JobOptions::default(),
            cancel: &cancel,
        })
        .await
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
}

#[tokio::test]
async fn fixtures_are_refused_before_any_traffic_and_manuscripts_accepted() {
    let bed = bed(|_| {}).await;
    let bus = EventBus::new();
    let runner = bed.runner(&bus);
    let refused: Vec<PathBuf> = std::fs::read_dir(fixtures().join("not-manuscripts"))
        .unwrap_or_else(|e| panic!("fixtures: {e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    assert!(refused.len() >= 7);
    for path in &refused {
        let err = runner
            .enqueue(path, &JobOptions::default(), false)
            .await
            .expect_err("a non-manuscript was accepted");
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let msg = err.to_string();
        assert_eq!(err.code(), ErrorCode::ManuscriptRefused, "{msg}");
        assert!(msg.contains(&name), "the message names the file: {msg}");
        assert!(msg.contains(": "), "the message gives a reason: {msg}");
    }
    // A folder and a missing file.
    let err = runner
        .enqueue(&bed.files(), &JobOptions::default(), false)
        .await
        .expect_err("a folder was accepted");
    assert_eq!(err.code(), ErrorCode::ManuscriptRefused);
    assert!(err.to_string().contains("folder"), "{err}");
    let err = runner
        .enqueue(
            &bed.files().join("missing.txt"),
            &JobOptions::default(),
            false,
        )
        .await
        .expect_err("a missing file was accepted");
    assert_eq!(err.code(), ErrorCode::FileUnreadable);
    assert!(runner.list().unwrap_or_default().is_empty());
    assert!(bed.proxy.requests().is_empty(), "nothing may be sent");

    let mut accepted = Vec::new();
    for dir in ["manuscripts", "odd-but-valid"] {
        for e in std::fs::read_dir(fixtures().join(dir)).unwrap_or_else(|e| panic!("{e}")) {
            let path = e.unwrap_or_else(|e| panic!("{e}")).path();
            // Some fixtures share content (the same story in another name): force them.
            runner
                .enqueue(&path, &JobOptions::default(), true)
                .await
                .unwrap_or_else(|e| panic!("{} refused: {e}", path.display()));
            accepted.push(path);
        }
    }
    run(&runner).await;
    bed.assert_all_completed(&runner, &accepted).await;
    // Names survive the object key untouched in meaning.
    for item in runner.list().unwrap_or_default() {
        let key = item.object_key.unwrap_or_default();
        assert!(
            key.ends_with(&item.file_name),
            "{key} vs {}",
            item.file_name
        );
    }
}

#[tokio::test]
async fn sizes_around_every_boundary_are_byte_exact() {
    let bed = bed(|_| {}).await;
    let bus = EventBus::new();
    let runner = bed.runner(&bus);
    let sizes = [
        1,
        THRESHOLD - 1,
        THRESHOLD,
        THRESHOLD + 1,
        PART - 1,
        PART,
        PART + 1,
        2 * PART + 777,
    ];
    let mut files = Vec::new();
    for (i, size) in sizes.iter().enumerate() {
        let path = bed
            .files()
            .join(format!("Book {i} + size {size} & 100%.txt"));
        write_text(&path, *size);
        files.push(path);
    }
    enqueue_all(&runner, &files).await;
    run(&runner).await;
    bed.assert_all_completed(&runner, &files).await;
    // Single PUTs below the threshold, multipart from it on.
    let puts = bed.proxy.requests();
    let part_puts = puts
        .iter()
        .filter(|r| r.method == "PUT" && r.target.contains("partNumber="))
        .count();
    // THRESHOLD, +1, PART-1, PART: 1 part each; PART+1: 2; 2*PART+777: 3.
    assert_eq!(part_puts, 1 + 1 + 1 + 1 + 2 + 3);
    let whole_puts = puts
        .iter()
        .filter(|r| r.method == "PUT" && !r.target.contains("partNumber="))
        .count();
    assert_eq!(whole_puts, 2);
    // Dedupe: the same content again is refused unless forced.
    let err = runner
        .enqueue(&files[0], &JobOptions::default(), false)
        .await
        .expect_err("a duplicate was queued");
    assert_eq!(err.code(), ErrorCode::DuplicateUpload);
    assert!(matches!(
        err,
        QueueError::Duplicate {
            job_id: Some(_),
            ..
        }
    ));
    assert!(err.to_string().contains("--force"), "{err}");
}

#[tokio::test]
async fn every_file_completes_through_resets_stalls_bursts_and_truncation() {
    let bed = bed(|_| {}).await;
    let bus = EventBus::new();
    let runner = bed.runner(&bus);
    let p = &bed.proxy;
    p.add(Rule::new(Fault::ResetAfter(MIB)).method("PUT").times(2));
    p.add(Rule::new(Fault::Stall).method("PUT").times(1));
    p.add(Rule::new(Fault::status(503)).method("PUT").times(3));
    p.add(Rule::new(Fault::too_many(1)).method("PUT").times(2));
    p.add(
        Rule::new(Fault::TruncateResponse(20))
            .method("PUT")
            .times(2),
    );
    p.add(
        Rule::new(Fault::s3_error(403, "AccessDenied", "Request has expired"))
            .method("PUT")
            .times(2),
    );
    let mut files = Vec::new();
    for (i, size) in [700 * 1024, 3 * PART + 12_345, 2 * PART].iter().enumerate() {
        let path = bed.files().join(format!("faulty {i}.md"));
        write_text(&path, *size);
        files.push(path);
    }
    enqueue_all(&runner, &files).await;
    run(&runner).await;
    bed.assert_all_completed(&runner, &files).await;
    let faults = p.requests().iter().filter(|r| r.fault.is_some()).count();
    assert_eq!(faults, 12, "every fault was hit");
}

#[tokio::test]
async fn urls_that_expire_before_use_are_signed_again() {
    let bed = bed(|c| c.url_ttl = Duration::from_secs(2)).await;
    let bus = EventBus::new();
    let mut session = bed.session(&bus);
    session.settings.parts_in_flight = 2;
    // Only expiry is under test: no stall may be suspected on a busy machine.
    session.settings.retry.stall_timeout = Duration::from_secs(20);
    // 3 MiB/s shared by two parts: each 5 MiB part takes ~3.3 s, longer than a URL lives.
    session.limiter.set_rate(3 * MIB);
    let path = bed.files().join("slow.txt");
    write_text(&path, 3 * PART + 1);
    // All four parts are signed in the first batch; the later ones expire before use.
    let result = upload_direct_with(&session, &path, true)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let UploadResult::Stored {
        object_key, stats, ..
    } = result
    else {
        panic!("stored expected")
    };
    assert_eq!(bed.object_sha256(&object_key).await, file_sha256(&path));
    eprintln!("short-lived URLs: {stats:?}");
    assert!(stats.resigned >= 1, "{stats:?}");
    // Expiry is not a failure.
    assert_eq!(stats.retries, 0, "{stats:?}");
}

#[tokio::test]
async fn a_wrong_etag_fails_the_upload_instead_of_reporting_success() {
    let bed = bed(|_| {}).await;
    let bus = EventBus::new();
    let runner = bed.runner(&bus);
    bed.proxy.add(
        Rule::new(Fault::RewriteEtag(
            "0123456789abcdef0123456789abcdef".into(),
        ))
        .method("PUT"),
    );
    let single = bed.files().join("single.txt");
    write_text(&single, 1000);
    let multi = bed.files().join("multi.txt");
    write_text(&multi, PART + 10);
    enqueue_all(&runner, &[single, multi]).await;
    run(&runner).await;
    for item in runner.list().unwrap_or_default() {
        assert_eq!(item.state, ItemState::Failed, "{}", item.path.display());
        assert_eq!(item.error_code.as_deref(), Some("integrity_mismatch"));
        assert!(item.job_id.is_none());
        let msg = item.error_message.unwrap_or_default();
        assert!(msg.contains("not trusted"), "{msg}");
    }
    assert!(
        bed.jobs().await.is_empty(),
        "no job for an unverified upload"
    );
}

/// Runs `runner` until at least `parts` parts are stored, then stops it as a crash would.
async fn interrupt_after(runner: &QueueRunner, bus: &EventBus, parts: usize) {
    let mut rx = bus.subscribe();
    let stop = CancellationToken::new();
    let stopper = stop.clone();
    let watch = async move {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut stored = 0;
        while stored < parts {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, rx.recv()).await {
                Ok(Ok(Event::TransferNotice {
                    notice: TransferNotice::PartStored { .. },
                    ..
                })) => stored += 1,
                Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(_)) | Err(_) => panic!("no {parts} parts stored within 60 s"),
            }
        }
        stopper.cancel();
    };
    let (r, _) = tokio::join!(runner.run_until_idle(&stop), watch);
    r.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn a_resumed_upload_sends_only_the_missing_parts() {
    let bed = bed(|_| {}).await;
    let path = bed.files().join("long book.epub.txt");
    write_text(&path, 6 * PART);
    {
        let bus = EventBus::new();
        let runner = bed.runner(&bus);
        runner
            .update_settings(|s| {
                s.parts_in_flight = 2;
                s.bandwidth_limit = 8 * MIB;
            })
            .unwrap_or_else(|e| panic!("{e}"));
        enqueue_all(&runner, std::slice::from_ref(&path)).await;
        interrupt_after(&runner, &bus, 2).await;
        let item = &runner.list().unwrap_or_default()[0];
        assert_ne!(item.state, ItemState::Completed, "interrupted too late");
        assert!(item.parts_done >= 2);
        // The runner and everything it holds are dropped here, as in a crash.
    }
    // Cut the dead runner's connections, so that bytes it left in socket buffers are not
    // relayed (and counted) after the reset.
    bed.proxy.go_offline().await;
    bed.proxy
        .go_online()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    bed.proxy.reset_counters();
    let bus = EventBus::new();
    let mut rx = bus.subscribe();
    let runner = bed.runner(&bus);
    runner
        .update_settings(|s| s.bandwidth_limit = 0)
        .unwrap_or_else(|e| panic!("{e}"));
    run(&runner).await;
    bed.assert_all_completed(&runner, std::slice::from_ref(&path))
        .await;
    let mut resumed = None;
    while let Ok(e) = rx.try_recv() {
        if let Event::TransferNotice {
            notice: TransferNotice::Resumed { parts_done, .. },
            ..
        } = e
        {
            resumed = Some(parts_done);
        }
    }
    let skipped = u64::from(resumed.unwrap_or_else(|| panic!("no resume notice")));
    assert!(skipped >= 2, "{skipped}");
    let resent = bed.proxy.bytes_up();
    let missing = (6 - skipped) * PART;
    eprintln!(
        "resume: {skipped} of 6 parts kept, {resent} bytes re-sent for {missing} bytes missing"
    );
    assert!(resent >= missing, "{resent} < {missing}");
    // Only the missing parts are sent: each once, unless a request was retried (a slow,
    // loaded machine can trip the stall watchdog), and then only that part again.
    let parts_sent: Vec<String> = bed
        .proxy
        .requests()
        .iter()
        .filter(|r| r.method == "PUT")
        .filter_map(|r| {
            r.target
                .split(['?', '&'])
                .find_map(|kv| kv.strip_prefix("partNumber="))
                .map(str::to_owned)
        })
        .collect();
    let mut distinct = parts_sent.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len() as u64,
        6 - skipped,
        "parts sent: {parts_sent:?}"
    );
    let retried = (parts_sent.len() - distinct.len()) as u64;
    assert!(
        resent <= missing + retried * PART + 64 * 1024,
        "re-sent {resent} bytes for {missing} bytes of missing parts ({retried} retried)"
    );
}

#[tokio::test]
async fn a_file_changed_before_resume_starts_over_and_says_so() {
    let bed = bed(|_| {}).await;
    let path = bed.files().join("draft.txt");
    write_text(&path, 4 * PART);
    {
        let bus = EventBus::new();
        let runner = bed.runner(&bus);
        runner
            .update_settings(|s| {
                s.parts_in_flight = 1;
                s.bandwidth_limit = 8 * MIB;
            })
            .unwrap_or_else(|e| panic!("{e}"));
        enqueue_all(&runner, std::slice::from_ref(&path)).await;
        interrupt_after(&runner, &bus, 1).await;
    }
    // Same size, new content, and a modification time that differs for sure.
    write_text(&path, 4 * PART);
    let file = std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("{e}"));
    file.set_modified(std::time::SystemTime::now() + Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e}"));
    drop(file);
    bed.proxy.reset_counters();
    let bus = EventBus::new();
    let mut rx = bus.subscribe();
    let runner = bed.runner(&bus);
    runner
        .update_settings(|s| s.bandwidth_limit = 0)
        .unwrap_or_else(|e| panic!("{e}"));
    run(&runner).await;
    bed.assert_all_completed(&runner, std::slice::from_ref(&path))
        .await;
    let mut restarted = None;
    while let Ok(e) = rx.try_recv() {
        if let Event::TransferNotice {
            notice: TransferNotice::RestartedFileChanged { reason },
            ..
        } = e
        {
            restarted = Some(reason);
        }
    }
    let reason = restarted.unwrap_or_else(|| panic!("the restart was not reported"));
    assert!(
        reason.contains("draft.txt") && reason.contains("again"),
        "{reason}"
    );
    assert!(bed.proxy.bytes_up() >= 4 * PART, "sent from zero");
}

#[tokio::test]
async fn a_sent_part_that_changed_without_a_new_mtime_starts_over_on_resume() {
    let bed = bed(|_| {}).await;
    let path = bed.files().join("quiet edit.txt");
    write_text(&path, 4 * PART);
    let mtime = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{e}"));
    {
        let bus = EventBus::new();
        let runner = bed.runner(&bus);
        runner
            .update_settings(|s| {
                s.parts_in_flight = 1;
                s.bandwidth_limit = 8 * MIB;
            })
            .unwrap_or_else(|e| panic!("{e}"));
        enqueue_all(&runner, std::slice::from_ref(&path)).await;
        interrupt_after(&runner, &bus, 1).await;
        let item = &runner.list().unwrap_or_default()[0];
        assert_ne!(item.state, ItemState::Completed, "interrupted too late");
    }
    // Part 1 (on the server already) changes; size and mtime stay as they were, so only
    // the bytes can tell.
    {
        use std::io::{Seek, Write};
        let mut file = std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("{e}"));
        file.seek(std::io::SeekFrom::Start(1000))
            .and_then(|_| file.write_all(b"a changed sentence. "))
            .and_then(|_| file.set_modified(mtime))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    bed.proxy.reset_counters();
    let bus = EventBus::new();
    let mut rx = bus.subscribe();
    let runner = bed.runner(&bus);
    runner
        .update_settings(|s| s.bandwidth_limit = 0)
        .unwrap_or_else(|e| panic!("{e}"));
    run(&runner).await;
    bed.assert_all_completed(&runner, std::slice::from_ref(&path))
        .await;
    let mut restarted = None;
    while let Ok(e) = rx.try_recv() {
        if let Event::TransferNotice {
            notice: TransferNotice::RestartedFileChanged { reason },
            ..
        } = e
        {
            restarted = Some(reason);
        }
    }
    let reason = restarted.unwrap_or_else(|| panic!("the restart was not reported"));
    assert!(
        reason.contains("quiet edit.txt") && reason.contains("part 1") && reason.contains("again"),
        "{reason}"
    );
    assert!(bed.proxy.bytes_up() >= 4 * PART, "sent from zero");
}

#[tokio::test]
async fn duplicates_are_caught_before_their_sha256_is_known() {
    let bed = bed(|_| {}).await;
    let bus = EventBus::new();
    let runner = bed.runner(&bus);
    let path = bed.files().join("twice.txt");
    write_text(&path, 2 * PART + 5);
    // No item of this size yet: queued without reading the file.
    let first = runner
        .enqueue(&path, &JobOptions::default(), false)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first.sha256, None);
    // The same file again at once (its SHA-256 still unknown): a duplicate.
    let err = runner
        .enqueue(&path, &JobOptions::default(), false)
        .await
        .expect_err("the same file was queued twice");
    assert!(
        matches!(err, QueueError::Duplicate { existing, existing_state: ItemState::Queued, .. } if existing == first.id),
        "{err}"
    );
    // A copy under another name: its content is compared by hashing both files.
    let copy = bed.files().join("twice copy.txt");
    std::fs::copy(&path, &copy).unwrap_or_else(|e| panic!("{e}"));
    let err = runner
        .enqueue(&copy, &JobOptions::default(), false)
        .await
        .expect_err("a copy was queued");
    assert_eq!(err.code(), ErrorCode::DuplicateUpload, "{err}");
    // Other content of the same size is accepted, with its SHA-256 known at once.
    let other = bed.files().join("same size.txt");
    write_text(&other, 2 * PART + 5);
    let queued = runner
        .enqueue(&other, &JobOptions::default(), false)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(queued.sha256, Some(file_sha256(&other)));
    // A caller that hashed the file itself (the watch folder) gives its SHA-256.
    let err = runner
        .enqueue_with_sha256(&copy, &JobOptions::default(), false, &file_sha256(&copy))
        .await
        .expect_err("a copy with its SHA-256 was queued");
    assert_eq!(err.code(), ErrorCode::DuplicateUpload, "{err}");
    run(&runner).await;
    // Both uploaded, each SHA-256 recorded (checked by assert_all_completed).
    bed.assert_all_completed(&runner, &[path.clone(), other])
        .await;
    // Now known: the copy is refused as already uploaded, with the job named.
    let err = runner
        .enqueue(&copy, &JobOptions::default(), false)
        .await
        .expect_err("a copy of an uploaded file was queued");
    assert!(
        matches!(
            err,
            QueueError::Duplicate {
                existing_state: ItemState::Completed,
                job_id: Some(_),
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn cancel_aborts_the_multipart_upload_on_the_server() {
    let bed = bed(|_| {}).await;
    let path = bed.files().join("to cancel.txt");
    write_text(&path, 3 * PART);
    let bus = EventBus::new();
    let runner = bed.runner(&bus);
    runner
        .update_settings(|s| {
            s.parts_in_flight = 1;
            s.bandwidth_limit = 8 * MIB;
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let id = runner
        .enqueue(&path, &JobOptions::default(), false)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .id;
    let mut rx = bus.subscribe();
    let stop = CancellationToken::new();
    let cancel = async {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, rx.recv()).await {
                Ok(Ok(Event::TransferNotice {
                    notice: TransferNotice::PartStored { .. },
                    ..
                })) => break,
                Ok(_) => {}
                Err(_) => panic!("no part stored within 60 s"),
            }
        }
        runner.cancel(id).await.unwrap_or_else(|e| panic!("{e}"));
    };
    let (r, _) = tokio::join!(runner.run_until_idle(&stop), cancel);
    r.unwrap_or_else(|e| panic!("{e}"));
    let item = runner
        .store()
        .item(&bed.user_id, id)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(item.state, ItemState::Cancelled);
    // The server forgot the upload: no incomplete multipart upload is left in the store.
    let uploads: i64 = bed
        .devstack
        .backend()
        .db
        .call(|c| c.query_row("SELECT COUNT(*) FROM uploads", [], |r| r.get(0)))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(uploads, 0);
    assert!(bed.jobs().await.is_empty());
    // Retry resumes it from scratch and completes.
    runner.retry(id).unwrap_or_else(|e| panic!("{e}"));
    runner
        .update_settings(|s| s.bandwidth_limit = 0)
        .unwrap_or_else(|e| panic!("{e}"));
    run(&runner).await;
    bed.assert_all_completed(&runner, &[path]).await;
}

#[tokio::test]
async fn a_backend_without_presign_routes_gets_the_form_upload() {
    let bed = bed(|_| {}).await;
    let api = url::Url::parse(&bed.endpoints.api_url).unwrap_or_else(|e| panic!("{e}"));
    let gateway = FaultProxy::in_front_of(&api)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    gateway.add(
        Rule::new(Fault::Respond {
            status: 404,
            headers: vec![("content-type".into(), "application/json".into())],
            body: "{\"detail\":\"Not Found\"}".into(),
        })
        .target_contains("/uploads/"),
    );
    let endpoints = Endpoints {
        api_url: format!("{}api", gateway.url()),
        ..bed.endpoints.clone()
    };
    let bus = EventBus::new();
    let mut rx = bus.subscribe();
    let session = bed.session_at(&bus, &endpoints);
    let path = bed.files().join("old engine.txt");
    write_text(&path, 2 * MIB);
    let result = upload_direct(&session, &path)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let UploadResult::JobCreated { job, .. } = result else {
        panic!("the form fallback was not used")
    };
    let key = job.source_path.unwrap_or_default();
    assert_eq!(bed.object_sha256(&key).await, file_sha256(&path));
    let mut told = false;
    while let Ok(e) = rx.try_recv() {
        told |= matches!(
            e,
            Event::TransferNotice {
                notice: TransferNotice::FallbackFormUpload,
                ..
            }
        );
    }
    assert!(told);
    assert!(
        bed.proxy.requests().is_empty(),
        "nothing went to the store directly"
    );
}

#[tokio::test]
async fn an_upload_the_server_lost_starts_fresh_and_says_so() {
    let bed = bed(|_| {}).await;
    let path = bed.files().join("lost.txt");
    write_text(&path, 3 * PART);
    {
        let bus = EventBus::new();
        let runner = bed.runner(&bus);
        runner
            .update_settings(|s| {
                s.parts_in_flight = 1;
                s.bandwidth_limit = 8 * MIB;
            })
            .unwrap_or_else(|e| panic!("{e}"));
        enqueue_all(&runner, std::slice::from_ref(&path)).await;
        interrupt_after(&runner, &bus, 1).await;
    }
    // The server aborts the upload behind the client's back (as R2 does after 7 days).
    let key = QueueStore::open(&bed.state_db())
        .and_then(|s| s.list(&bed.user_id))
        .unwrap_or_else(|e| panic!("{e}"))[0]
        .object_key
        .clone()
        .unwrap_or_default();
    let upload_id = key.split('/').nth(2).unwrap_or_default().to_string();
    let encoded: String = url::form_urlencoded::byte_serialize(key.as_bytes()).collect();
    let res = reqwest::Client::new()
        .delete(format!(
            "{}/uploads/multipart/{upload_id}?object_key={encoded}",
            bed.endpoints.api_url
        ))
        .bearer_auth(&bed.token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 204);
    let bus = EventBus::new();
    let mut rx = bus.subscribe();
    let runner = bed.runner(&bus);
    runner
        .update_settings(|s| s.bandwidth_limit = 0)
        .unwrap_or_else(|e| panic!("{e}"));
    run(&runner).await;
    bed.assert_all_completed(&runner, std::slice::from_ref(&path))
        .await;
    let mut told = false;
    while let Ok(e) = rx.try_recv() {
        told |= matches!(
            e,
            Event::TransferNotice {
                notice: TransferNotice::RestartedUploadGone,
                ..
            }
        );
    }
    assert!(told, "the fresh start was not reported");
}

/// Hands out a rejected token until asked to refresh, then the real one.
struct ExpiringTokens {
    good: String,
    refreshed: std::sync::atomic::AtomicU32,
}

impl rohimaya_core::api::request::AccessTokens for ExpiringTokens {
    fn access_token(&self) -> rohimaya_core::api::request::TokenFuture<'_> {
        Box::pin(async move {
            Ok(
                if self.refreshed.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                    "expired.token.value".to_string()
                } else {
                    self.good.clone()
                },
            )
        })
    }
    fn refresh_after_unauthorized<'a>(
        &'a self,
        _rejected: &'a str,
    ) -> rohimaya_core::api::request::TokenFuture<'a> {
        Box::pin(async move {
            self.refreshed
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(self.good.clone())
        })
    }
}

#[tokio::test]
async fn a_refused_token_is_refreshed_once_and_a_dead_one_fails_clearly() {
    let bed = bed(|_| {}).await;
    let tokens = Arc::new(ExpiringTokens {
        good: bed.token.clone(),
        refreshed: std::sync::atomic::AtomicU32::new(0),
    });
    let api = UploadsApi::new(UploadsApi::default_http(), &bed.endpoints, tokens.clone());
    let session = UploadSession::new(api, EventBus::new(), settings());
    let path = bed.files().join("token.txt");
    write_text(&path, 2 * PART);
    let result = upload_direct(&session, &path)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(result, UploadResult::Stored { .. }));
    assert_eq!(
        tokens.refreshed.load(std::sync::atomic::Ordering::SeqCst),
        1
    );

    let api = UploadsApi::new(
        UploadsApi::default_http(),
        &bed.endpoints,
        Arc::new(StaticToken("not.a.token".into())),
    );
    let session = UploadSession::new(api, EventBus::new(), settings());
    let err = upload_direct(&session, &path)
        .await
        .expect_err("a dead token uploaded");
    assert_eq!(err.code(), ErrorCode::Unauthorized, "{err}");
    assert!(bed.proxy.requests().iter().all(|r| r.method == "PUT"));
}

#[tokio::test]
async fn pause_resume_and_the_global_pause_continue_where_they_stopped() {
    let bed = bed(|_| {}).await;
    let path = bed.files().join("paused.txt");
    write_text(&path, 3 * PART);
    let bus = EventBus::new();
    let runner = bed.runner(&bus);
    runner
        .update_settings(|s| {
            s.parts_in_flight = 1;
            s.bandwidth_limit = 8 * MIB;
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let id = runner
        .enqueue(&path, &JobOptions::default(), false)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .id;
    let mut rx = bus.subscribe();
    let stop = CancellationToken::new();
    let pause = async {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, rx.recv()).await {
                Ok(Ok(Event::TransferNotice {
                    notice: TransferNotice::PartStored { .. },
                    ..
                })) => break,
                Ok(_) => {}
                Err(_) => panic!("no part stored within 60 s"),
            }
        }
        runner.pause(id).unwrap_or_else(|e| panic!("{e}"));
    };
    let (r, _) = tokio::join!(runner.run_until_idle(&stop), pause);
    r.unwrap_or_else(|e| panic!("{e}"));
    let item = runner
        .store()
        .item(&bed.user_id, id)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(item.state, ItemState::Paused);
    assert!(item.parts_done >= 1);

    // The global pause: nothing runs, the item stays queued.
    runner.pause_all().unwrap_or_else(|e| panic!("{e}"));
    runner.resume(id).unwrap_or_else(|e| panic!("{e}"));
    run(&runner).await;
    let item = runner
        .store()
        .item(&bed.user_id, id)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(item.state, ItemState::Queued);

    // Cut the paused PUT's connection, so that bytes it left in socket buffers (the
    // store reads slowly on a loaded machine) are not relayed, and counted, after the reset.
    bed.proxy.go_offline().await;
    bed.proxy
        .go_online()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    bed.proxy.reset_counters();
    runner
        .update_settings(|s| s.bandwidth_limit = 0)
        .unwrap_or_else(|e| panic!("{e}"));
    runner.resume_all().unwrap_or_else(|e| panic!("{e}"));
    run(&runner).await;
    bed.assert_all_completed(&runner, std::slice::from_ref(&path))
        .await;
    assert!(
        bed.proxy.bytes_up() <= 2 * PART + 64 * 1024,
        "resumed, not restarted: {}",
        bed.proxy.bytes_up()
    );
}

/// Waits (deadline 60 s) for an event `pick` accepts.
async fn wait_event(
    rx: &mut tokio::sync::broadcast::Receiver<Event>,
    what: &str,
    pick: impl Fn(&Event) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Ok(e)) if pick(&e) => return,
            Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(_)) | Err(_) => panic!("no {what} within 60 s"),
        }
    }
}

fn part_stored(e: &Event) -> bool {
    matches!(
        e,
        Event::TransferNotice {
            notice: TransferNotice::PartStored { .. },
            ..
        }
    )
}

#[tokio::test]
async fn offline_waits_for_the_network_and_goes_on_when_it_returns() {
    let bed = bed(|_| {}).await;
    // The engine API too is reached through a proxy that can go offline.
    let api = url::Url::parse(&bed.endpoints.api_url).unwrap_or_else(|e| panic!("{e}"));
    let gateway = FaultProxy::in_front_of(&api)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let endpoints = Endpoints {
        api_url: format!("{}api", gateway.url()),
        ..bed.endpoints.clone()
    };
    let bus = EventBus::new();
    let mut session = bed.session_at(&bus, &endpoints);
    // Bounded retries would give up after 4 failures: the outage outlasts them.
    session.settings.retry.max_attempts = 4;
    let store = QueueStore::open(&bed.state_db()).unwrap_or_else(|e| panic!("{e}"));
    let runner =
        QueueRunner::new(store, session, bed.user_id.clone()).unwrap_or_else(|e| panic!("{e}"));
    runner
        .update_settings(|s| {
            s.parts_in_flight = 2;
            s.bandwidth_limit = 8 * MIB;
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let path = bed.files().join("offline.txt");
    write_text(&path, 4 * PART);
    let id = runner
        .enqueue(&path, &JobOptions::default(), false)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .id;
    let mut rx = bus.subscribe();
    let stop = CancellationToken::new();
    let outage = async {
        wait_event(&mut rx, "stored part", part_stored).await;
        bed.proxy.go_offline().await;
        gateway.go_offline().await;
        // Probing goes on well past the bounded retries, and the queue shows the item
        // offline, not failed.
        let deadline = Instant::now() + Duration::from_secs(60);
        let (mut probes, mut offline_event, mut listed) = (0, false, None);
        while probes < 12 || !offline_event || listed.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, rx.recv()).await {
                Ok(Ok(Event::TransferNotice {
                    notice: TransferNotice::WaitingForNetwork { .. },
                    ..
                })) => probes += 1,
                Ok(Ok(Event::TransferProgress(p))) => {
                    offline_event |= p.state == rohimaya_core::events::TransferState::Offline;
                }
                Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(e)) => panic!("{e}"),
                Err(_) => panic!(
                    "offline not shown within 60 s: {probes} probes, event {offline_event}, \
                     {:?}",
                    runner.list()
                ),
            }
            let item = runner
                .store()
                .item(&bed.user_id, id)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_ne!(item.state, ItemState::Failed, "{:?}", item.error_message);
            if item.state == ItemState::Offline {
                listed = Some(item);
            }
        }
        let item = listed.unwrap_or_else(|| unreachable!());
        assert_eq!(item.error_code.as_deref(), Some("network_unreachable"));
        let msg = item.error_message.unwrap_or_default();
        assert!(msg.contains("waiting for the network"), "{msg}");
        bed.proxy
            .go_online()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        gateway.go_online().await.unwrap_or_else(|e| panic!("{e}"));
    };
    let (r, ()) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(180), runner.run_until_idle(&stop)),
        outage
    );
    r.unwrap_or_else(|_| panic!("the queue did not finish within 180 s"))
        .unwrap_or_else(|e| panic!("{e}"));
    bed.assert_all_completed(&runner, std::slice::from_ref(&path))
        .await;
}

#[tokio::test]
async fn two_runners_over_one_queue_never_drive_the_same_file() {
    let bed = bed(|_| {}).await;
    let path = bed.files().join("shared.txt");
    write_text(&path, 3 * PART);
    let bus_a = EventBus::new();
    let a = bed.runner(&bus_a);
    a.update_settings(|s| {
        s.parts_in_flight = 1;
        s.bandwidth_limit = 4 * MIB;
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let id = a
        .enqueue(&path, &JobOptions::default(), false)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .id;
    // B has its own connection to state.db and its own lock files' handles, as another
    // process has (flock locks belong to the open file, not to the process).
    let bus_b = EventBus::new();
    let mut rx_b = bus_b.subscribe();
    let b = bed.runner(&bus_b);
    let mut rx_a = bus_a.subscribe();
    let stop = CancellationToken::new();
    let second = async {
        wait_event(&mut rx_a, "stored part", part_stored).await;
        b.run_until_idle(&CancellationToken::new())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b.busy_elsewhere(), vec![id]);
        let err = b.cancel(id).await.expect_err("cancelled another's upload");
        assert_eq!(err.code(), ErrorCode::QueueItemBusy);
        assert!(
            err.to_string().contains("another Rohimaya process"),
            "{err}"
        );
        let err = b.pause(id).expect_err("paused another's upload");
        assert_eq!(err.code(), ErrorCode::QueueItemBusy);
    };
    let (r, ()) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(180), a.run_until_idle(&stop)),
        second
    );
    r.unwrap_or_else(|_| panic!("A did not finish within 180 s"))
        .unwrap_or_else(|e| panic!("{e}"));
    bed.assert_all_completed(&a, std::slice::from_ref(&path))
        .await;
    // B said why it left the item alone, and sent nothing for it.
    let mut told = false;
    while let Ok(e) = rx_b.try_recv() {
        match e {
            Event::TransferNotice {
                notice: TransferNotice::BusyElsewhere { message },
                ..
            } => {
                assert!(message.contains("shared.txt"), "{message}");
                told = true;
            }
            Event::TransferProgress(_) | Event::TransferState { .. } => {
                panic!("B drove the item: {e:?}")
            }
            _ => {}
        }
    }
    assert!(told, "B did not say the item is busy elsewhere");
    let puts = bed
        .proxy
        .requests()
        .iter()
        .filter(|r| r.method == "PUT")
        .count();
    assert_eq!(puts, 3, "every part sent once");
    // A is done: B finds nothing to do and nothing busy.
    b.run_until_idle(&CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(b.busy_elsewhere().is_empty());
}

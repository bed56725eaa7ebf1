//! The download queue against a hostile engine API: a small HTTP server of the test's own
//! on loopback that speaks the routes the client uses (`GET /jobs/{id}`,
//! `/jobs/{id}/tracks`, `/jobs/{id}/download`, `/jobs/{id}/tracks/{tid}/download`) and
//! serves the audio itself (with `Range`, `ETag` and `If-Match`, as a store does). Its
//! titles, authors, track titles and `export_filename`s are path traversals, absolute
//! paths, Windows device names, control characters, 5,000-character names and names with
//! trailing dots and spaces; some of its `file_size_bytes` are bigger or smaller than the
//! body, one ETag is not the body's MD5, and one download link is `file:///etc/passwd`.
//! Afterwards every file in the test's folder
//! is inside the library root (or the data folder holding `state.db`), no `.part` is
//! left, the names are the ones docs/library.md promises, and each lie failed its file
//! with an error that says what was wrong.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use bytes::Bytes;
use md5::Digest;
use rohimaya_core::api::Job;
use rohimaya_core::api::request::StaticToken;
use rohimaya_core::config::Endpoints;
use rohimaya_core::downloads::{
    DownloadChoice, DownloadItem, DownloadQueue, DownloadState, DownloadStore,
};
use rohimaya_core::events::EventBus;
use rohimaya_core::library::Library;
use rohimaya_core::transfer::{DownloadSession, DownloadSettings, RetryPolicy};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// One file the hostile server serves.
struct Served {
    body: Bytes,
    /// What it sends as the ETag (unquoted): the body's MD5 unless it lies.
    etag: String,
}

/// A job as the hostile server describes it.
struct HostileJob {
    job: Value,
    tracks: Vec<Value>,
    /// Keyed `book` or the track id.
    files: HashMap<String, Served>,
}

#[derive(Clone)]
struct Hostile {
    base: String,
    jobs: Arc<HashMap<String, HostileJob>>,
}

fn md5_hex(b: &[u8]) -> String {
    hex::encode(md5::Md5::digest(b))
}

/// Audio-looking bytes, different per `seed`.
fn body(size: usize, seed: u8) -> Bytes {
    Bytes::from(
        (0..size)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
            .collect::<Vec<u8>>(),
    )
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"detail": "Not found"}))).into_response()
}

async fn job_route(State(h): State<Hostile>, UrlPath(id): UrlPath<String>) -> Response {
    match h.jobs.get(&id) {
        Some(j) => Json(j.job.clone()).into_response(),
        None => not_found(),
    }
}

async fn tracks_route(State(h): State<Hostile>, UrlPath(id): UrlPath<String>) -> Response {
    match h.jobs.get(&id) {
        Some(j) => Json(Value::Array(j.tracks.clone())).into_response(),
        None => not_found(),
    }
}

async fn book_link(State(h): State<Hostile>, UrlPath(id): UrlPath<String>) -> Response {
    if !h.jobs.contains_key(&id) {
        return not_found();
    }
    Json(json!({
        "url": format!("{}/files/{id}/book", h.base),
        "expires_in": 900,
        // Extra fields a real engine may add, hostile too: never used for a path.
        "filename": "../../../../etc/passwd",
    }))
    .into_response()
}

async fn track_link(
    State(h): State<Hostile>,
    UrlPath((id, tid)): UrlPath<(String, String)>,
) -> Response {
    if !h.jobs.get(&id).is_some_and(|j| j.files.contains_key(&tid)) {
        return not_found();
    }
    // One track's URL is not HTTP at all: it must fail, not read a local file.
    let url = if id == "scheme" {
        "file:///etc/passwd".to_string()
    } else {
        format!("{}/files/{id}/{tid}", h.base)
    };
    Json(json!({
        "track_id": tid,
        // Differs from the track list's, and is worse: never used for a path either.
        "export_filename": "../../../../../tmp/owned.wav",
        "download_url": url,
        "expires_in": 900,
    }))
    .into_response()
}

/// A store-like GET: one `Range` (`bytes=a-b` or `bytes=a-`), `If-Match`, a quoted ETag.
async fn file_route(
    State(h): State<Hostile>,
    UrlPath((id, which)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let Some(f) = h.jobs.get(&id).and_then(|j| j.files.get(&which)) else {
        return not_found();
    };
    let etag = format!("\"{}\"", f.etag);
    if let Some(m) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok())
        && m.trim() != etag
        && m.trim() != "*"
    {
        return StatusCode::PRECONDITION_FAILED.into_response();
    }
    let total = f.body.len() as u64;
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.split_once('-'))
        .and_then(|(a, b)| {
            let start: u64 = a.parse().ok()?;
            let end = if b.is_empty() {
                total.saturating_sub(1)
            } else {
                b.parse::<u64>().ok()?.min(total.saturating_sub(1))
            };
            Some((start, end))
        });
    match range {
        Some((start, end)) if start <= end && end < total => (
            StatusCode::PARTIAL_CONTENT,
            [
                (header::ETAG, etag),
                (
                    header::CONTENT_RANGE,
                    format!("bytes {start}-{end}/{total}"),
                ),
                (header::CONTENT_TYPE, "audio/wav".to_string()),
            ],
            f.body.slice(start as usize..=end as usize),
        )
            .into_response(),
        Some(_) => (
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(header::CONTENT_RANGE, format!("bytes */{total}"))],
        )
            .into_response(),
        None => (
            StatusCode::OK,
            [
                (header::ETAG, etag),
                (header::CONTENT_TYPE, "audio/wav".to_string()),
            ],
            f.body.clone(),
        )
            .into_response(),
    }
}

/// Starts the hostile server with `jobs(base_url)` on a loopback port.
async fn serve(
    jobs: impl FnOnce(&str) -> HashMap<String, HostileJob>,
    stop: CancellationToken,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("local_addr: {e}"));
    let base = format!("http://{addr}");
    let state = Hostile {
        base: base.clone(),
        jobs: Arc::new(jobs(&base)),
    };
    let app = Router::new()
        .route("/jobs/{id}", get(job_route))
        .route("/jobs/{id}/tracks", get(tracks_route))
        .route("/jobs/{id}/download", get(book_link))
        .route("/jobs/{id}/tracks/{tid}/download", get(track_link))
        .route("/files/{id}/{which}", get(file_route))
        .with_state(state);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
    });
    base
}

/// One hostile job: a book and tracks `(title, export_filename, size, announced size)`.
fn hostile_job(
    id: &str,
    title: &str,
    author: &str,
    book: Option<(usize, i64)>,
    tracks: &[(&str, &str, usize, i64)],
    seed: u8,
) -> (String, HostileJob) {
    let mut files = HashMap::new();
    let (book_size, announced) = book.unwrap_or((0, 0));
    if book.is_some() {
        let b = body(book_size, seed);
        files.insert(
            "book".to_string(),
            Served {
                etag: md5_hex(&b),
                body: b,
            },
        );
    }
    let mut track_values = Vec::new();
    for (i, (t, export, size, announced)) in tracks.iter().enumerate() {
        let tid = format!("{id}-t{}", i + 1);
        let b = body(*size, seed.wrapping_add(i as u8 + 1));
        files.insert(
            tid.clone(),
            Served {
                etag: md5_hex(&b),
                body: b,
            },
        );
        track_values.push(json!({
            "id": tid, "job_id": id, "track_index": i + 1, "title": t,
            "segment_type": "body_chapter",
            "audio_path": format!("audiobooks/u/{id}/../../../{export}"),
            "duration_seconds": 3, "file_size_bytes": announced,
            "export_filename": export, "status": "completed",
        }));
    }
    let job = json!({
        "id": id, "user_id": "u", "status": "completed", "mode": "single_voice",
        "title": title, "author": author, "audio_format": "../wav",
        "audio_path": format!("audiobooks/u/{id}/../../../../etc/{title}.wav"),
        "duration_seconds": 60,
        "file_size_bytes": if book.is_some() { Some(announced) } else { None },
        "progress_percent": 100.0,
    });
    (
        id.to_string(),
        HostileJob {
            job,
            tracks: track_values,
            files,
        },
    )
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn settings() -> DownloadSettings {
    DownloadSettings {
        chunk_size: 64 * 1024,
        connections: 4,
        buffer_size: 16 * 1024,
        checkpoint_every: 64 * 1024,
        sync_before_rename: false,
        flush_every: 0,
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(100),
            stall_timeout: Duration::from_secs(5),
        },
    }
}

#[tokio::test]
async fn a_hostile_server_never_gets_a_file_outside_the_library_and_its_lies_fail_clearly() {
    let long = "Ω".repeat(5000);
    let long_export = format!("{}.wav", "e".repeat(5000));
    let size = 150_000;
    let jobs = |_: &str| {
        HashMap::from([
            hostile_job(
                "paths",
                "../../x",
                "/etc/passwd",
                Some((size, size as i64)),
                &[
                    ("../../x", "../../x.wav", 70_000, 70_000),
                    ("/etc/passwd", "/etc/passwd", 1_000, 1_000),
                    ("", "CON.wav", 2_000, 2_000),
                    ("a\u{0000}b", "a\u{0000}b.wav", 3_000, 3_000),
                    (&long, &long_export, 4_000, 4_000),
                    ("Trailing. . . ", "x.wav. ", 5_000, 5_000),
                    ("  ", "..", 6_000, 6_000),
                ],
                1,
            ),
            hostile_job(
                "reserved",
                "CON.wav",
                "NUL",
                Some((size, size as i64)),
                &[],
                2,
            ),
            hostile_job(
                "long",
                &long,
                " ..Trailing dots and spaces. . .  ",
                Some((size, size as i64)),
                &[],
                3,
            ),
            hostile_job(
                "control",
                "a\u{0000}b",
                "c\r\nd\u{202E}",
                Some((size, size as i64)),
                &[],
                4,
            ),
            hostile_job(
                "bigger",
                "Bigger",
                "Liar",
                Some((size, size as i64 + 1_000)),
                &[],
                5,
            ),
            hostile_job(
                "smaller",
                "Smaller",
                "Liar",
                Some((size, size as i64 - 1_000)),
                &[],
                6,
            ),
            hostile_job(
                "scheme",
                "Scheme",
                "Liar",
                None,
                &[("Local", "passwd.wav", 1_000, 1_000)],
                9,
            ),
            hostile_job(
                "track-liar",
                "Track Liar",
                "Liar",
                Some((size, size as i64)),
                &[
                    ("Fine", "01.wav", 9_000, 9_000),
                    ("Lies", "02.wav", 9_000, 90_000),
                ],
                7,
            ),
        ])
    };
    let stop = CancellationToken::new();
    let base = serve(
        |b| {
            let mut j = jobs(b);
            // One more whose ETag is a plain MD5, but not the body's.
            let (id, mut checksum) = hostile_job(
                "checksum",
                "Checksum",
                "Liar",
                Some((size, size as i64)),
                &[],
                8,
            );
            if let Some(f) = checksum.files.get_mut("book") {
                f.etag = md5_hex(b"something else");
            }
            j.insert(id, checksum);
            j
        },
        stop.clone(),
    )
    .await;

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let root = dir.path().join("Library");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap_or_else(|e| panic!("{e}"));
    let db = data.join("state.db");
    let endpoints = Endpoints {
        supabase_url: base.clone(),
        anon_key: "anon".into(),
        api_url: base.clone(),
        origin: None,
    };
    let tokens = Arc::new(StaticToken("token".into()));
    let api = rohimaya_core::api::downloads::DownloadsApi::new(
        rohimaya_core::api::downloads::DownloadsApi::default_http(),
        &endpoints,
        tokens.clone(),
    );
    let bus = EventBus::new();
    let library = Arc::new(Library::open(&root, &db).unwrap_or_else(|e| panic!("library: {e}")));
    let queue = DownloadQueue::new(
        DownloadStore::open(&db).unwrap_or_else(|e| panic!("store: {e}")),
        library,
        DownloadSession::new(api, bus, settings()),
        "u",
        None,
    );
    let http = reqwest::Client::new();
    for id in [
        "paths",
        "reserved",
        "long",
        "control",
        "bigger",
        "smaller",
        "track-liar",
        "checksum",
        "scheme",
    ] {
        // The engine's JobResponse, read as the API client reads it.
        let job: Job = http
            .get(format!("{base}/jobs/{id}"))
            .bearer_auth("token")
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET /jobs/{id}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET /jobs/{id}: {e}"));
        let choice = if id == "scheme" {
            DownloadChoice::Tracks
        } else {
            DownloadChoice::All
        };
        queue
            .enqueue_job(&job, choice)
            .await
            .unwrap_or_else(|e| panic!("enqueue {id}: {e}"));
    }
    tokio::time::timeout(
        Duration::from_secs(120),
        queue.run_until_idle(&CancellationToken::new()),
    )
    .await
    .unwrap_or_else(|_| panic!("the queue did not finish in 120 s"))
    .unwrap_or_else(|e| panic!("{e}"));
    stop.cancel();

    let items = queue.list().unwrap_or_else(|e| panic!("{e}"));
    let by =
        |job: &str| -> Vec<&DownloadItem> { items.iter().filter(|i| i.job_id == job).collect() };
    let rel = |job: &str| -> Vec<String> {
        let mut v: Vec<String> = by(job).iter().map(|i| i.rel_path.clone()).collect();
        v.sort();
        v
    };

    // Every honest file landed, under the names docs/library.md promises.
    for job in ["paths", "reserved", "long", "control"] {
        for i in by(job) {
            assert_eq!(i.state, DownloadState::Completed, "{i:?}");
        }
    }
    let pad = "Ω".repeat(55);
    assert_eq!(
        rel("paths"),
        vec![
            "etc-passwd/x (Chapters)/01 - x.wav".to_string(),
            "etc-passwd/x (Chapters)/02 - etc-passwd.wav".to_string(),
            "etc-passwd/x (Chapters)/03 - _CON.wav".to_string(),
            "etc-passwd/x (Chapters)/04 - a b.wav".to_string(),
            format!("etc-passwd/x (Chapters)/05 - {pad}.wav"),
            "etc-passwd/x (Chapters)/06 - Trailing.wav".to_string(),
            "etc-passwd/x (Chapters)/07 - Track 07.wav".to_string(),
            "etc-passwd/x/x.wav".to_string(),
        ]
    );
    assert_eq!(
        rel("reserved"),
        vec!["_NUL/_CON.wav/_CON.wav.wav".to_string()]
    );
    let omega60 = "Ω".repeat(60);
    let omega58 = "Ω".repeat(58);
    assert_eq!(
        rel("long"),
        vec![format!("Trailing dots and spaces/{omega60}/{omega58}.wav")]
    );
    assert_eq!(rel("control"), vec!["c d/a b/a b.wav".to_string()]);
    for i in &items {
        for c in i.rel_path.split('/') {
            assert!(c.len() <= 120, "a component over 120 bytes: {c}");
            assert!(
                !c.starts_with('.') && !c.ends_with('.') && !c.ends_with(' '),
                "{c:?}"
            );
            assert!(!c.chars().any(char::is_control), "{c:?}");
        }
    }

    // Each lie failed its own file, clearly, and nothing of it was kept.
    let failed = |job: &str| -> Vec<&DownloadItem> {
        by(job)
            .into_iter()
            .filter(|i| i.state == DownloadState::Failed)
            .collect()
    };
    for (job, expected, got) in [
        ("bigger", size + 1_000, size),
        ("smaller", size - 1_000, size),
        ("track-liar", 90_000, 9_000),
    ] {
        let f = failed(job);
        assert_eq!(f.len(), 1, "{job}: {:?}", by(job));
        assert_eq!(
            f[0].error_code.as_deref(),
            Some("integrity_mismatch"),
            "{:?}",
            f[0]
        );
        let msg = f[0].error_message.clone().unwrap_or_default();
        assert!(
            msg.contains(&format!(
                "the server said the file has {expected} bytes but the store holds {got}"
            )) && msg.contains("nothing was kept"),
            "{job}: {msg}"
        );
        assert!(
            !root.join(&f[0].rel_path).exists(),
            "{job}: {}",
            f[0].rel_path
        );
    }
    let fine = by("track-liar")
        .into_iter()
        .find(|i| i.rel_path.ends_with("01 - Fine.wav"))
        .unwrap_or_else(|| panic!("{:?}", by("track-liar")));
    assert_eq!(fine.state, DownloadState::Completed, "{fine:?}");
    let f = failed("checksum");
    assert_eq!(f.len(), 1, "{:?}", by("checksum"));
    assert_eq!(
        f[0].error_code.as_deref(),
        Some("integrity_mismatch"),
        "{:?}",
        f[0]
    );
    assert!(
        f[0].error_message
            .as_deref()
            .is_some_and(|m| m.contains("do not match the server's checksum")),
        "{:?}",
        f[0]
    );
    assert!(!root.join(&f[0].rel_path).exists());
    let f = failed("scheme");
    assert_eq!(f.len(), 1, "{:?}", by("scheme"));
    assert_eq!(
        f[0].error_code.as_deref(),
        Some("unexpected_response"),
        "{:?}",
        f[0]
    );
    assert!(
        f[0].error_message
            .as_deref()
            .is_some_and(|m| m.contains("not an http(s) URL (`file:`)") && !m.contains("passwd")),
        "{:?}",
        f[0]
    );
    assert!(!root.join(&f[0].rel_path).exists());

    // Nothing anywhere in the test's folder but the library and state.db's folder, and
    // no `.part` anywhere.
    let canonical_root = root.canonicalize().unwrap_or_else(|e| panic!("{e}"));
    let canonical_data = data.canonicalize().unwrap_or_else(|e| panic!("{e}"));
    let all = walk(dir.path());
    assert!(all.len() >= 11, "{all:?}");
    for p in all {
        let c = p
            .canonicalize()
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(
            c.starts_with(&canonical_root) || c.starts_with(&canonical_data),
            "a file outside the library: {}",
            p.display()
        );
        assert!(
            !p.to_string_lossy().ends_with(".part"),
            "a .part left: {}",
            p.display()
        );
    }
    assert!(!Path::new("/tmp/owned.wav").exists());
}

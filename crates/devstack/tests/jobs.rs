//! The engine API's job routes and the narration simulator, driven over real HTTP against
//! an in-process devstack with a temp data dir: every fixture format narrates into real
//! WAV files fetched through presigned URLs; upload form, pagination, status filter,
//! ownership, tokens, Origin, failures, cancel, retry, delete and restart.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use rohimaya_devstack::Devstack;
use serde_json::{Value, json};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures");
const DEADLINE: Duration = Duration::from_secs(60);
const BOOK: &str = "The Lighthouse Keeper's Daughter";
const CHAPTERS: [&str; 3] = [
    "01 - Chapter One - The Lamp.wav",
    "02 - Chapter Two - The Ledger.wav",
    "03 - Chapter Three - The Bell.wav",
];

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{rel}"))
        .unwrap_or_else(|e| panic!("cannot read fixture {rel}: {e}"))
}

async fn stack(dir: &std::path::Path, job: Duration) -> Devstack {
    common::start(dir, |c| c.job_duration = job).await
}

/// An engine API client for one user.
struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Api {
    fn new(devstack: &Devstack, user: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: devstack.info.api_url.clone(),
            token: Some(common::token(devstack, user)),
        }
    }

    fn anonymous(devstack: &Devstack) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: devstack.info.api_url.clone(),
            token: None,
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
        let res = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("request failed: {e}"));
        let status = res.status().as_u16();
        let body = res.bytes().await.unwrap_or_default();
        let value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap_or_else(|_| {
                panic!("not JSON ({status}): {}", String::from_utf8_lossy(&body))
            })
        };
        (status, value)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        Self::send(self.request(reqwest::Method::GET, path)).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        Self::send(self.request(reqwest::Method::POST, path).json(&body)).await
    }

    async fn delete(&self, path: &str) -> (u16, Value) {
        Self::send(self.request(reqwest::Method::DELETE, path)).await
    }

    /// `POST /jobs` for an uploaded manuscript.
    async fn create(&self, title: &str, source_path: Option<&str>) -> Value {
        let (status, job) = self
            .post(
                "/jobs",
                json!({
                    "title": title,
                    "author": "Mara Ellison",
                    "source_type": "upload",
                    "source_path": source_path,
                    "mode": "single_voice",
                    "tts_provider": "openai",
                    "narrator_voice_id": "alloy",
                }),
            )
            .await;
        assert_eq!(status, 201, "{job}");
        assert_eq!(job["status"], "pending");
        job
    }

    async fn job(&self, id: &str) -> Value {
        let (status, job) = self.get(&format!("/jobs/{id}")).await;
        assert_eq!(status, 200, "{job}");
        job
    }

    /// Polls the job until `want` holds (or fails the test at the deadline).
    async fn wait(&self, id: &str, what: &str, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let job = self.job(id).await;
            if want(&job) {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {job}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_done(&self, id: &str) -> Value {
        self.wait(id, "a final status", |j| {
            matches!(
                j["status"].as_str(),
                Some("completed" | "failed" | "cancelled")
            )
        })
        .await
    }

    async fn tracks(&self, id: &str) -> Vec<Value> {
        let (status, tracks) = self.get(&format!("/jobs/{id}/tracks")).await;
        assert_eq!(status, 200, "{tracks}");
        tracks.as_array().cloned().unwrap_or_default()
    }
}

/// Stores a manuscript under the user's prefix, as the presign routes would.
async fn put_manuscript(devstack: &Devstack, user: &str, name: &str, body: Vec<u8>) -> String {
    let key = format!("manuscripts/{user}/{}/{name}", uuid::Uuid::new_v4());
    devstack
        .backend()
        .store
        .put_object(
            &devstack.info.manuscripts_bucket,
            &key,
            Bytes::from(body),
            "application/octet-stream",
        )
        .await
        .unwrap_or_else(|e| panic!("cannot store {key}: {e}"));
    key
}

async fn audio_keys(devstack: &Devstack, user: &str, job_id: &str) -> Vec<String> {
    devstack
        .backend()
        .store
        .list_objects(
            &devstack.info.audiobooks_bucket,
            &format!("audiobooks/{user}/{job_id}/"),
        )
        .await
        .unwrap_or_else(|e| panic!("cannot list: {e}"))
        .into_iter()
        .map(|o| o.key)
        .collect()
}

/// Checks a WAV file independently of the simulator's own code: RIFF size, a 16-byte PCM
/// mono 16-bit fmt chunk, a data chunk filling the rest. Returns the data's duration in
/// whole seconds.
fn check_wav(bytes: &[u8]) -> i64 {
    let u32_at =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    assert!(
        bytes.len() > 44,
        "too short for a WAV: {} bytes",
        bytes.len()
    );
    assert_eq!(&bytes[0..4], b"RIFF");
    assert_eq!(u32_at(4) as usize, bytes.len() - 8, "RIFF size");
    assert_eq!(&bytes[8..12], b"WAVE");
    assert_eq!(&bytes[12..16], b"fmt ");
    assert_eq!(u32_at(16), 16, "fmt size");
    assert_eq!(u16_at(20), 1, "PCM");
    assert_eq!(u16_at(22), 1, "mono");
    let rate = u32_at(24);
    assert_eq!(rate, 22_050);
    assert_eq!(u32_at(28), rate * 2, "byte rate");
    assert_eq!(u16_at(32), 2, "block align");
    assert_eq!(u16_at(34), 16, "bits");
    assert_eq!(&bytes[36..40], b"data");
    let data = u32_at(40) as usize;
    assert_eq!(data, bytes.len() - 44, "data size");
    let samples = bytes[44..]
        .chunks_exact(2)
        .map(|s| i16::from_le_bytes([s[0], s[1]]).unsigned_abs());
    assert!(samples.max().unwrap_or(0) > 1000, "the audio is silent");
    (data / (rate as usize * 2)) as i64
}

async fn fetch(url: &str) -> Vec<u8> {
    let res = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET presigned URL failed: {e}"));
    assert_eq!(res.status(), 200, "presigned GET");
    res.bytes().await.unwrap_or_default().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_open_and_shaped_like_the_engines() {
    let dir = tempfile::tempdir().unwrap();
    let devstack = stack(dir.path(), Duration::from_secs(1)).await;
    let (status, health) = Api::anonymous(&devstack).get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["service"], "authorflow-engine");
    assert_eq!(health["version"], "0.2.0");
    assert!(
        health["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert_eq!(health["dependencies"], Value::Null);
    assert_eq!(health["worker_running"], true);
    assert_eq!(health["queue_size"], 0);
    devstack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_format_narrates_into_playable_wavs() {
    let dir = tempfile::tempdir().unwrap();
    let devstack = stack(dir.path(), Duration::from_secs(1)).await;
    let user = "user-fixtures";
    let api = Api::new(&devstack, user);
    let mut jobs = Vec::new();
    for ext in ["txt", "md", "html", "docx", "epub", "pdf"] {
        let name = format!("lighthouse.{ext}");
        let key = put_manuscript(
            &devstack,
            user,
            &name,
            fixture(&format!("manuscripts/{name}")),
        )
        .await;
        let job = api.create(BOOK, Some(&key)).await;
        assert_eq!(job["source_path"], key.as_str());
        jobs.push((ext, job["id"].as_str().unwrap_or_default().to_string()));
    }
    for (ext, id) in &jobs {
        let job = api.wait_done(id).await;
        assert_eq!(job["status"], "completed", "{ext}: {job}");
        assert_eq!(job["progress_percent"], 100.0, "{ext}");
        assert_eq!(job["error_message"], Value::Null, "{ext}");
        assert!(job["started_at"].is_string() && job["completed_at"].is_string());
        assert_eq!(
            job["audio_path"],
            format!("audiobooks/{user}/{id}/The Lighthouse Keepers Daughter_COMPLETE.wav"),
            "{ext}"
        );
        let tracks = api.tracks(id).await;
        let names: Vec<&str> = tracks
            .iter()
            .filter_map(|t| t["export_filename"].as_str())
            .collect();
        assert_eq!(names, CHAPTERS, "{ext}");
        assert_eq!(tracks[0]["title"], "Chapter One: The Lamp");
        let total: i64 = tracks
            .iter()
            .filter_map(|t| t["duration_seconds"].as_i64())
            .sum();
        assert_eq!(job["duration_seconds"].as_i64(), Some(total), "{ext}");
        for (i, t) in tracks.iter().enumerate() {
            assert_eq!(t["job_id"], id.as_str());
            assert_eq!(t["track_index"], i as i64 + 1);
            assert_eq!(t["status"], "completed");
            assert_eq!(t["segment_type"], "body_chapter");
            let path = t["audio_path"].as_str().unwrap_or_default();
            assert!(
                path.starts_with(&format!("audiobooks/{user}/{id}/tracks/")),
                "{path}"
            );
        }
    }

    // Download the whole book and every track of the TXT job through presigned URLs.
    let (_, id) = &jobs[0];
    let job = api.job(id).await;
    let (status, download) = api.get(&format!("/jobs/{id}/download")).await;
    assert_eq!(status, 200, "{download}");
    assert_eq!(download["expires_in"], 900);
    let book = fetch(download["url"].as_str().unwrap_or_default()).await;
    assert_eq!(Some(book.len() as i64), job["file_size_bytes"].as_i64());
    assert_eq!(Some(check_wav(&book)), job["duration_seconds"].as_i64());
    assert!(job["duration_seconds"].as_i64().unwrap_or(0) >= 3);
    for track in api.tracks(id).await {
        let tid = track["id"].as_str().unwrap_or_default();
        let (status, link) = api.get(&format!("/jobs/{id}/tracks/{tid}/download")).await;
        assert_eq!(status, 200, "{link}");
        assert_eq!(link["track_id"], tid);
        assert_eq!(link["export_filename"], track["export_filename"]);
        assert_eq!(link["expires_in"], 900);
        let wav = fetch(link["download_url"].as_str().unwrap_or_default()).await;
        assert_eq!(Some(wav.len() as i64), track["file_size_bytes"].as_i64());
        assert_eq!(Some(check_wav(&wav)), track["duration_seconds"].as_i64());
    }
    let (status, body) = api
        .get(&format!("/jobs/{id}/tracks/no-such-track/download"))
        .await;
    assert_eq!(
        (status, body["detail"].clone()),
        (404, json!("Track no-such-track not found"))
    );
    devstack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_advances_through_named_steps() {
    let dir = tempfile::tempdir().unwrap();
    let devstack = stack(dir.path(), Duration::from_secs(2)).await;
    let user = "user-progress";
    let api = Api::new(&devstack, user);
    let key = put_manuscript(
        &devstack,
        user,
        "book.txt",
        fixture("manuscripts/lighthouse.txt"),
    )
    .await;
    let id = api.create(BOOK, Some(&key)).await["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut steps: Vec<String> = Vec::new();
    let mut last_progress = 0.0f64;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let job = api.job(&id).await;
        let progress = job["progress_percent"].as_f64().unwrap_or(0.0);
        assert!(progress >= last_progress, "progress went back: {job}");
        last_progress = progress;
        if job["status"] == "processing"
            && let Some(step) = job["current_step"].as_str()
            && steps.last().map(String::as_str) != Some(step)
        {
            steps.push(step.to_string());
        }
        if job["status"] == "completed" {
            break;
        }
        assert_ne!(job["status"], "failed", "{job}");
        assert!(Instant::now() < deadline, "timed out: {job}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        steps.iter().any(|s| s == "Narrating chapter 2 of 3"),
        "{steps:?}"
    );
    assert!(steps.iter().any(|s| s == "Mastering audio"), "{steps:?}");
    assert!(steps.len() >= 4, "{steps:?}");
    devstack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upload_form_stores_the_file_and_creates_a_job() {
    let dir = tempfile::tempdir().unwrap();
    let devstack = stack(dir.path(), Duration::from_secs(1)).await;
    let user = "user-upload";
    let api = Api::new(&devstack, user);
    let name = "Café – Ünïcode 📚.txt";
    let body = fixture(&format!("odd-but-valid/{name}"));
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(body.clone()).file_name(name),
        )
        .text("title", "Unicode Book")
        .text("author", "ignored by the engine");
    let (status, job) = Api::send(
        api.request(reqwest::Method::POST, "/jobs/upload")
            .multipart(form),
    )
    .await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(
        job["source_path"],
        format!("manuscripts/{user}/{id}/{name}")
    );
    assert_eq!(job["source_type"], "upload");
    assert_eq!(job["mode"], "single_voice");
    assert_eq!(job["tts_provider"], "openai");
    assert_eq!(job["narrator_voice_id"], "alloy");
    assert_eq!(job["audio_format"], "mp3");
    assert_eq!(job["audio_bitrate"], "128k");
    assert_eq!(job["input_language_code"], "en-US");
    assert_eq!(job["author"], Value::Null);
    assert_eq!(job["retry_count"], 0);
    let stored = devstack
        .backend()
        .store
        .get_object(
            &devstack.info.manuscripts_bucket,
            job["source_path"].as_str().unwrap_or_default(),
        )
        .await
        .unwrap_or_else(|e| panic!("the manuscript was not stored: {e}"));
    assert_eq!(stored.as_ref(), body.as_slice());
    let done = api.wait_done(&id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(api.tracks(&id).await.len(), 3);

    // The engine's refusals: an extension it does not take, a missing field.
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(vec![1, 2, 3]).file_name("tool.exe"),
        )
        .text("title", "T");
    let (status, body) = Api::send(
        api.request(reqwest::Method::POST, "/jobs/upload")
            .multipart(form),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["detail"],
        "Unsupported file type. Allowed: .txt, .docx, .pdf, .md, .html, .htm, .epub"
    );
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"text".to_vec()).file_name("a.txt"),
    );
    let (status, body) = Api::send(
        api.request(reqwest::Method::POST, "/jobs/upload")
            .multipart(form),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "title"]));
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"text".to_vec()).file_name("a.txt"),
        )
        .text("title", "T")
        .text("mode", "choir");
    let (status, _) = Api::send(
        api.request(reqwest::Method::POST, "/jobs/upload")
            .multipart(form),
    )
    .await;
    assert_eq!(status, 400);
    devstack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_paginates_newest_first_and_filters_by_status() {
    let dir = tempfile::tempdir().unwrap();
    let devstack = stack(dir.path(), Duration::from_secs(1)).await;
    let user = "user-list";
    let api = Api::new(&devstack, user);
    let key = put_manuscript(
        &devstack,
        user,
        "book.md",
        fixture("manuscripts/lighthouse.md"),
    )
    .await;
    // Two jobs without a manuscript fail; one with it completes.
    let failed_a = api.create("No manuscript A", None).await;
    let ok = api.create("Good", Some(&key)).await;
    let failed_b = api.create("No manuscript B", None).await;
    let ids: Vec<String> = [&failed_a, &ok, &failed_b]
        .iter()
        .map(|j| j["id"].as_str().unwrap_or_default().to_string())
        .collect();
    for id in &ids {
        api.wait_done(id).await;
    }
    let ids_of = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|j| j["id"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (status, all) = api.get("/jobs").await;
    assert_eq!(status, 200);
    assert_eq!(
        ids_of(&all),
        [ids[2].clone(), ids[1].clone(), ids[0].clone()]
    );
    let (_, page1) = api.get("/jobs?limit=2&offset=0").await;
    assert_eq!(ids_of(&page1), [ids[2].clone(), ids[1].clone()]);
    let (_, page2) = api.get("/jobs?limit=2&offset=2").await;
    assert_eq!(ids_of(&page2), [ids[0].clone()]);
    let (_, failed) = api.get("/jobs?status_filter=failed").await;
    assert_eq!(ids_of(&failed), [ids[2].clone(), ids[0].clone()]);
    let (_, completed) = api.get("/jobs?status_filter=completed&limit=10").await;
    assert_eq!(ids_of(&completed), [ids[1].clone()]);
    let (_, none) = api.get("/jobs?status_filter=pending").await;
    assert_eq!(ids_of(&none), Vec::<String>::new());
    // Like the engine: an unknown status matches nothing, an empty filter is no filter.
    let (status, unknown) = api.get("/jobs?status_filter=bogus").await;
    assert_eq!((status, unknown), (200, json!([])));
    let (_, empty_filter) = api.get("/jobs?status_filter=").await;
    assert_eq!(ids_of(&empty_filter).len(), 3);
    let (status, bad) = api.get("/jobs?limit=ten").await;
    assert_eq!(status, 422);
    assert_eq!(bad["detail"][0]["loc"], json!(["query", "limit"]));
    assert_eq!(bad["detail"][0]["type"], "int_parsing");
    // Another user sees none of them.
    let (_, theirs) = Api::new(&devstack, "someone-else").get("/jobs").await;
    assert_eq!(theirs, json!([]));
    devstack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_private_to_their_owner() {
    let dir = tempfile::tempdir().unwrap();
    let devstack = stack(dir.path(), Duration::from_secs(1)).await;
    let alice = Api::new(&devstack, "alice");
    let mallory = Api::new(&devstack, "mallory");
    let key = put_manuscript(
        &devstack,
        "alice",
        "book.txt",
        fixture("manuscripts/lighthouse.txt"),
    )
    .await;
    let id = alice.create(BOOK, Some(&key)).await["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let done = alice.wait_done(&id).await;
    assert_eq!(done["status"], "completed");
    let tid = alice.tracks(&id).await[0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    for (status, body) in [
        mallory.get(&format!("/jobs/{id}")).await,
        mallory.get(&format!("/jobs/{id}/tracks")).await,
        mallory.get(&format!("/jobs/{id}/download")).await,
        mallory
            .get(&format!("/jobs/{id}/tracks/{tid}/download"))
            .await,
        mallory.post(&format!("/jobs/{id}/cancel"), json!({})).await,
        mallory.post(&format!("/jobs/{id}/retry"), json!({})).await,
        mallory.delete(&format!("/jobs/{id}")).await,
    ] {
        assert_eq!(status, 403, "{body}");
        assert!(
            body["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("You do not have permission"))
        );
    }
    // Using someone else's manuscript is refused too.
    let (status, body) = mallory
        .post(
            "/jobs",
            json!({"title": "Stolen", "source_type": "upload", "source_path": key,
                   "mode": "single_voice", "tts_provider": "openai", "narrator_voice_id": "alloy"}),
        )
        .await;
    assert_eq!(status, 403, "{body}");

    let unknown = uuid::Uuid::new_v4();
    let (status, body) = alice.get(&format!("/jobs/{unknown}")).await;
    assert_eq!(
        (status, body),
        (404, {
            let detail = format!("Job {unknown} not found");
            json!({"detail": detail, "error": detail, "message": detail})
        })
    );
    for (status, _) in [
        alice.get(&format!("/jobs/{unknown}/tracks")).await,
        alice.get(&format!("/jobs/{unknown}/download")).await,
        alice
            .post(&format!("/jobs/{unknown}/cancel"), json!({}))
            .await,
        alice
            .post(&format!("/jobs/{unknown}/retry"), json!({}))
            .await,
        alice.delete(&format!("/jobs/{unknown}")).await,
    ] {
        assert_eq!(status, 404);
    }
    // The owner still has it, untouched.
    assert_eq!(alice.job(&id).await["status"], "completed");
    devstack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_need_a_valid_unexpired_token() {
    let dir = tempfile::tempdir().unwrap();
    let devstack = stack(dir.path(), Duration::from_secs(1)).await;
    let anonymous = Api::anonymous(&devstack);
    let (status, body) = anonymous.get("/jobs").await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = anonymous.post("/jobs", json!({})).await;
    assert_eq!(status, 401);
    let forged = Api {
        token: Some("not.a.jwt".into()),
        ..Api::anonymous(&devstack)
    };
    assert_eq!(forged.get("/jobs").await.0, 401);
    let api = Api::new(&devstack, "user-expiry");
    assert_eq!(api.get("/jobs").await.0, 200);
    devstack.clock().advance(Duration::from_secs(2 * 3600));
    let (status, body) = api.get("/jobs").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(anonymous.get("/health").await.0, 200);
    devstack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changing_requests_from_foreign_origins_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let devstack = stack(dir.path(), Duration::from_secs(1)).await;
    let api = Api::new(&devstack, "user-origin");
    let body = json!({"title": "T", "source_type": "upload", "mode": "single_voice",
                      "tts_provider": "openai", "narrator_voice_id": "alloy"});
    let post = |origin: &'static str| {
        api.request(reqwest::Method::POST, "/jobs")
            .header("Origin", origin)
            .json(&body)
    };
    let (status, refused) = Api::send(post("https://evil.example")).await;
    assert_eq!(status, 403);
    assert_eq!(
        refused,
        json!({"error": "forbidden", "message": "Invalid origin"})
    );
    for origin in [
        "tauri://localhost",
        "http://tauri.localhost",
        "http://localhost:1420",
    ] {
        let (status, job) = Api::send(post(origin)).await;
        assert_eq!(status, 201, "{origin}: {job}");
    }
    // Checked before authentication, as the engine's middleware is.
    let (status, _) = Api::send(
        Api::anonymous(&devstack)
            .request(reqwest::Method::DELETE, "/jobs/x")
            .header("Origin", "https://evil.example"),
    )
    .await;
    assert_eq!(status, 403);
    // Reads are not checked.
    let (status, _) = Api::send(
        api.request(reqwest::Method::GET, "/jobs")
            .header("Origin", "https://evil.example"),
    )
    .await;
    assert_eq!(status, 200);
    devstack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_manuscripts_fail_the_job_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let devstack = stack(dir.path(), Duration::from_secs(1)).await;
    let user = "user-bad";
    let api = Api::new(&devstack, user);
    let mut cases = Vec::new();
    for (name, want) in [
        ("empty.txt", "empty"),
        ("binary-noise.txt", "binary"),
        ("photos-archive.docx", "word/document.xml"),
        ("cover-image.pdf", "not a PDF"),
        ("program.epub", "not an EPUB"),
    ] {
        let key = put_manuscript(
            &devstack,
            user,
            name,
            fixture(&format!("not-manuscripts/{name}")),
        )
        .await;
        cases.push((api.create(name, Some(&key)).await, want));
    }
    let missing = format!("manuscripts/{user}/nothing/here.txt");
    cases.push((api.create("Missing", Some(&missing)).await, "not found"));
    cases.push((api.create("No path", None).await, "source_path"));
    for (job, want) in cases {
        let id = job["id"].as_str().unwrap_or_default();
        let done = api.wait_done(id).await;
        assert_eq!(done["status"], "failed", "{done}");
        let message = done["error_message"].as_str().unwrap_or_default();
        assert!(message.contains(want), "{want}: {message}");
        assert_eq!(done["audio_path"], Value::Null);
        assert!(api.tracks(id).await.is_empty());
        assert!(audio_keys(&devstack, user, id).await.is_empty());
        let (status, body) = api.get(&format!("/jobs/{id}/download")).await;
        assert_eq!(status, 400);
        assert_eq!(
            body["detail"],
            "Job is not completed (current status: failed)"
        );
    }
    devstack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_running_job_and_retry_runs_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let devstack = stack(dir.path(), Duration::from_secs(3)).await;
    let user = "user-cancel";
    let api = Api::new(&devstack, user);
    let key = put_manuscript(
        &devstack,
        user,
        "book.txt",
        fixture("manuscripts/lighthouse.txt"),
    )
    .await;
    let id = api.create(BOOK, Some(&key)).await["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // Cancel once the first track is written, so there is something to clean up.
    api.wait(&id, "chapter 2", |j| {
        j["current_step"]
            .as_str()
            .is_some_and(|s| s.starts_with("Narrating chapter 2"))
    })
    .await;
    let (status, cancelled) = api.post(&format!("/jobs/{id}/cancel"), json!({})).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["error_message"], "Job cancelled by user");
    // The stopped run removes what it uploaded and never completes the job.
    let deadline = Instant::now() + DEADLINE;
    while !audio_keys(&devstack, user, &id).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the cancelled run left its audio behind"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(api.job(&id).await["status"], "cancelled");
    let (status, body) = api.post(&format!("/jobs/{id}/cancel"), json!({})).await;
    assert_eq!(
        (status, body["detail"].clone()),
        (400, json!("Cannot cancel a job that is already cancelled"))
    );

    let (status, retried) = api.post(&format!("/jobs/{id}/retry"), json!({})).await;
    assert_eq!(status, 200, "{retried}");
    assert_eq!(retried["status"], "pending");
    assert_eq!(retried["retry_count"], 1);
    assert_eq!(retried["error_message"], Value::Null);
    assert_eq!(retried["current_step"], "Manual retry requested");
    let done = api.wait_done(&id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(api.tracks(&id).await.len(), 3);
    assert_eq!(audio_keys(&devstack, user, &id).await.len(), 4);
    let (status, body) = api.post(&format!("/jobs/{id}/retry"), json!({})).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["detail"],
        "Can only retry failed or cancelled jobs (current status: completed)"
    );
    let (status, _) = api.post(&format!("/jobs/{id}/cancel"), json!({})).await;
    assert_eq!(status, 400);

    // A failed job can be retried too (and fails again the same way).
    let failing = api.create("No path", None).await["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(api.wait_done(&failing).await["status"], "failed");
    let (status, _) = api.post(&format!("/jobs/{failing}/retry"), json!({})).await;
    assert_eq!(status, 200);
    let again = api
        .wait(&failing, "the retried failure", |j| {
            j["status"] == "failed" && j["retry_count"] == 1
        })
        .await;
    assert!(
        again["error_message"]
            .as_str()
            .is_some_and(|m| m.contains("source_path"))
    );
    devstack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_the_job_its_tracks_and_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let devstack = stack(dir.path(), Duration::from_secs(1)).await;
    let user = "user-delete";
    let api = Api::new(&devstack, user);
    let key = put_manuscript(
        &devstack,
        user,
        "book.md",
        fixture("manuscripts/lighthouse.md"),
    )
    .await;
    let id = api.create(BOOK, Some(&key)).await["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(api.wait_done(&id).await["status"], "completed");
    assert_eq!(audio_keys(&devstack, user, &id).await.len(), 4);
    let (status, body) = api.delete(&format!("/jobs/{id}")).await;
    assert_eq!((status, body), (204, Value::Null));
    assert_eq!(api.get(&format!("/jobs/{id}")).await.0, 404);
    assert_eq!(api.get(&format!("/jobs/{id}/tracks")).await.0, 404);
    assert!(audio_keys(&devstack, user, &id).await.is_empty());
    let manuscript = devstack
        .backend()
        .store
        .head_object(&devstack.info.manuscripts_bucket, &key)
        .await;
    assert!(manuscript.is_err(), "the manuscript should be gone");
    assert_eq!(api.delete(&format!("/jobs/{id}")).await.0, 404);

    // Deleting a job mid-run leaves nothing behind either.
    let key = put_manuscript(
        &devstack,
        user,
        "book.txt",
        fixture("manuscripts/lighthouse.txt"),
    )
    .await;
    let id = api.create(BOOK, Some(&key)).await["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    api.wait(&id, "processing", |j| j["status"] == "processing")
        .await;
    assert_eq!(api.delete(&format!("/jobs/{id}")).await.0, 204);
    let deadline = Instant::now() + DEADLINE;
    // Wait long enough for a stray run to have finished (it would have completed by now).
    let settle = Instant::now() + Duration::from_secs(2);
    loop {
        let left = audio_keys(&devstack, user, &id).await;
        if left.is_empty() && Instant::now() > settle {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a deleted job's run left {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(api.get(&format!("/jobs/{id}")).await.0, 404);
    devstack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_jobs_and_finishes_interrupted_ones() {
    let dir = tempfile::tempdir().unwrap();
    let user = "user-restart";
    let (done_id, interrupted_id) = {
        let devstack = stack(dir.path(), Duration::from_secs(2)).await;
        let api = Api::new(&devstack, user);
        let key = put_manuscript(
            &devstack,
            user,
            "book.txt",
            fixture("manuscripts/lighthouse.txt"),
        )
        .await;
        let done = api.create(BOOK, Some(&key)).await["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert_eq!(api.wait_done(&done).await["status"], "completed");
        let interrupted = api.create("Interrupted", Some(&key)).await["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        api.wait(&interrupted, "processing", |j| {
            j["status"] == "processing" && j["progress_percent"].as_f64().unwrap_or(0.0) > 10.0
        })
        .await;
        devstack.shutdown().await;
        (done, interrupted)
    };

    let devstack = stack(dir.path(), Duration::from_secs(1)).await;
    let api = Api::new(&devstack, user);
    let (_, listed) = api.get("/jobs").await;
    let listed: Vec<&str> = listed
        .as_array()
        .map(|a| a.iter().filter_map(|j| j["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(listed, [interrupted_id.as_str(), done_id.as_str()]);
    let finished = api.wait_done(&interrupted_id).await;
    assert_eq!(finished["status"], "completed", "{finished}");
    assert_eq!(api.tracks(&interrupted_id).await.len(), 3);
    // The job finished before the restart is intact, and its audio still downloads.
    let done = api.job(&done_id).await;
    assert_eq!(done["status"], "completed");
    let (status, download) = api.get(&format!("/jobs/{done_id}/download")).await;
    assert_eq!(status, 200);
    let book = fetch(download["url"].as_str().unwrap_or_default()).await;
    assert_eq!(Some(check_wav(&book)), done["duration_seconds"].as_i64());
    devstack.shutdown().await;
}

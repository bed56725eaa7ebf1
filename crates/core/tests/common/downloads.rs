//! What the download tests share: the engine's settings scaled down for tests, the
//! downloads API and session for the bed's user, and a finished job (the fixture
//! manuscript narrated by the devstack's simulator).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;
use rohimaya_core::api::downloads::DownloadsApi;
use rohimaya_core::api::request::StaticToken;
use rohimaya_core::events::EventBus;
use rohimaya_core::transfer::{DownloadSession, DownloadSettings, RetryPolicy};

use super::Bed;

pub const MIB: u64 = 1024 * 1024;

pub fn settings() -> DownloadSettings {
    DownloadSettings {
        chunk_size: MIB,
        connections: 4,
        buffer_size: 256 * 1024,
        checkpoint_every: 512 * 1024,
        sync_before_rename: true,
        flush_every: 2 * MIB,
        retry: RetryPolicy {
            max_attempts: 8,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(500),
            stall_timeout: Duration::from_secs(2),
        },
    }
}

/// A finished job: its id, the book's object key and the announced size.
pub struct FinishedJob {
    pub id: String,
    pub audio_path: String,
    pub size: u64,
}

impl Bed {
    pub fn downloads_api(&self) -> DownloadsApi {
        DownloadsApi::new(
            DownloadsApi::default_http(),
            &self.endpoints,
            Arc::new(StaticToken(self.token.clone())),
        )
    }

    pub fn download_session(&self, bus: &EventBus, settings: DownloadSettings) -> DownloadSession {
        DownloadSession::new(self.downloads_api(), bus.clone(), settings)
    }

    pub fn library(&self) -> PathBuf {
        self.dir.path().join("Library")
    }

    pub fn bucket(&self) -> String {
        self.devstack.backend().config.audiobooks_bucket.clone()
    }

    pub async fn object(&self, key: &str) -> Bytes {
        self.devstack
            .backend()
            .store
            .get_object(&self.bucket(), key)
            .await
            .unwrap_or_else(|e| panic!("get_object {key}: {e}"))
    }

    /// Uploads the fixture manuscript, creates a job and waits for the simulator.
    pub async fn finished_job(&self) -> FinishedJob {
        self.finished_job_named("The Lighthouse Keeper's Daughter", "Ada Quill")
            .await
    }

    /// Like [`Bed::finished_job`], with the title and author the server will report.
    pub async fn finished_job_named(&self, title: &str, author: &str) -> FinishedJob {
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

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
}

pub fn walk(dir: &Path) -> Vec<PathBuf> {
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

//! The download engine for bench/download_bench.py (the `rohimaya download` command comes
//! later). Two modes:
//!
//! - `serve DIR SIZE`: starts a devstack in DIR (in this process), signs up a user, lets
//!   the simulator finish a job from the fixture manuscript, replaces the job's book with
//!   SIZE bytes of random data, prints one JSON line (API URL, token, job id, a presigned
//!   URL, S3 endpoint and keys, bucket, key, size, ETag) and serves until stdin closes.
//! - `get API_URL TOKEN JOB_ID LIBRARY DEST [CONNECTIONS] [CHUNK_MIB] [nosync|endsync]`:
//!   downloads the book with `DownloadSession` (defaults unless given; `nosync` skips the
//!   flush, `endsync` flushes only before the rename, not while writing) and prints one
//!   JSON line.
//!
//! A benchmark harness, not a product: it panics on errors.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use rohimaya_core::api::downloads::DownloadsApi;
use rohimaya_core::api::request::StaticToken;
use rohimaya_core::config::Endpoints;
use rohimaya_core::events::EventBus;
use rohimaya_core::transfer::{
    DownloadJob, DownloadSession, DownloadSettings, DownloadSource, NoDownloadJournal,
    ProgressMeter,
};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") if args.len() == 3 => serve(&args[1], parse(&args[2])).await,
        Some("get") if args.len() >= 6 => get(&args[1..]).await,
        _ => {
            eprintln!(
                "usage: download_bench serve DIR SIZE | get API_URL TOKEN JOB_ID LIBRARY DEST [CONNECTIONS] [CHUNK_MIB]"
            );
            std::process::exit(2);
        }
    }
}

fn parse(s: &str) -> u64 {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

async fn serve(dir: &str, size: u64) {
    let mut config = rohimaya_devstack::DevstackConfig::new(Path::new(dir));
    config.job_duration = Duration::from_millis(500);
    config.url_ttl = Duration::from_secs(3600);
    let devstack = rohimaya_devstack::start(config)
        .await
        .unwrap_or_else(|e| panic!("devstack: {e}"));
    let http = reqwest::Client::new();
    let session: serde_json::Value = http
        .post(format!("{}/auth/v1/signup", devstack.info.supabase_url))
        .header("apikey", &devstack.info.anon_key)
        .json(&serde_json::json!({"email": "bench@example.com", "password": "correct horse battery staple 42"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("signup: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("signup: {e}"));
    let token = session["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let user = session["user"]["id"].as_str().unwrap_or_default();
    let backend = devstack.backend();
    let key = format!("manuscripts/{user}/bench/lighthouse.txt");
    let text = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/fixtures/manuscripts/lighthouse.txt"),
    )
    .unwrap_or_else(|_| b"Chapter One\n\nA short story for the benchmark.\n".to_vec());
    backend
        .store
        .put_object(
            &backend.config.manuscripts_bucket,
            &key,
            text.into(),
            "text/plain",
        )
        .await
        .unwrap_or_else(|e| panic!("manuscript: {e}"));
    let job: serde_json::Value = http
        .post(format!("{}/jobs", devstack.info.api_url))
        .bearer_auth(&token)
        .json(&serde_json::json!({
            "title": "Bench", "source_type": "upload", "source_path": key,
            "mode": "single_voice", "tts_provider": "openai", "narrator_voice_id": "alloy",
            "audio_format": "mp3",
        }))
        .send()
        .await
        .unwrap_or_else(|e| panic!("job: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("job: {e}"));
    let id = job["id"].as_str().unwrap_or_default().to_string();
    let audio_path = loop {
        let job: serde_json::Value = http
            .get(format!("{}/jobs/{id}", devstack.info.api_url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("job: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("job: {e}"));
        if job["status"] == "completed" {
            break job["audio_path"].as_str().unwrap_or_default().to_string();
        }
        assert!(job["status"] != "failed", "{job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Random content, drawn in 1 MiB blocks.
    let mut data = vec![0u8; size as usize];
    let mut rng = rand::rng();
    for block in data.chunks_mut(1 << 20) {
        rng.fill(block);
    }
    let bucket = backend.config.audiobooks_bucket.clone();
    let meta = backend
        .store
        .put_object(&bucket, &audio_path, data.into(), "audio/wav")
        .await
        .unwrap_or_else(|e| panic!("book: {e}"));
    let url = backend
        .store
        .presign_get(&bucket, &audio_path, Duration::from_secs(3600), None)
        .unwrap_or_else(|e| panic!("presign: {e}"))
        .url;
    println!(
        "{}",
        serde_json::json!({
            "api_url": devstack.info.api_url, "token": token, "job_id": id, "url": url,
            "s3_url": devstack.info.s3_url, "access_key": devstack.info.s3_access_key,
            "secret_key": devstack.info.s3_secret_key, "bucket": bucket, "key": audio_path,
            "size": size, "etag": meta.etag,
        })
    );
    // Serve until stdin closes.
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    devstack.shutdown().await;
}

async fn get(args: &[String]) {
    let (api_url, token, job_id, library, dest) =
        (&args[0], &args[1], &args[2], &args[3], &args[4]);
    let mut settings = DownloadSettings::default();
    if let Some(c) = args.get(5) {
        settings.connections = parse(c) as usize;
    }
    if let Some(m) = args.get(6) {
        settings.chunk_size = parse(m) << 20;
    }
    match args.get(7).map(String::as_str) {
        Some("nosync") => settings.sync_before_rename = false,
        // The flush only at the end, as before the background flush existed.
        Some("endsync") => settings.flush_every = 0,
        _ => {}
    }
    let endpoints = Endpoints {
        supabase_url: String::new(),
        anon_key: String::new(),
        api_url: api_url.clone(),
        origin: None,
    };
    let api = DownloadsApi::new(
        DownloadsApi::default_http(),
        &endpoints,
        Arc::new(StaticToken(token.clone())),
    );
    let bus = EventBus::new();
    let session = DownloadSession::new(api, bus.clone(), settings);
    let meter = ProgressMeter::new(bus, "bench", 0);
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let done = session
        .download(DownloadJob {
            transfer_id: "bench",
            source: DownloadSource::Book {
                job_id: job_id.clone(),
            },
            dest: Path::new(dest),
            library_root: Path::new(library),
            expected_size: None,
            resume: None,
            journal: &NoDownloadJournal,
            meter: &meter,
            cancel: &cancel,
        })
        .await
        .unwrap_or_else(|e| panic!("download: {e}"));
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "secs": secs, "size": done.size, "mb_per_s": done.size as f64 / secs / 1e6,
            "md5": done.md5, "requests": done.stats.requests,
        })
    );
}

//! The watched-folder benchmark (bench/watch.sh runs it; results in docs/benchmarks.md):
//!
//! 1. latency: 100 manuscripts written one after another (100 ms apart) into a watched
//!    folder, with the default 3 s stability window (or `WATCH_BENCH_WINDOW_MS`), the
//!    watcher and the upload queue running against an in-process devstack; for each file
//!    the time from the end of its last write to its upload starting (the queue's
//!    `uploading` event). Target: at most the window + 1 s.
//! 2. a tree of 10,000 files (`WATCH_BENCH_TREE`, default 10000) in 100 folders: the
//!    start-up scan time (all new, then all known after a restart), and the CPU time and
//!    RSS of this process while the watcher idles over it for `WATCH_BENCH_IDLE_S`
//!    seconds (default 60), every file already uploaded (the steady state), without a
//!    queue (so only the watcher runs). Linux only (reads /proc/self).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rohimaya_core::api::request::StaticToken;
use rohimaya_core::api::uploads::UploadsApi;
use rohimaya_core::config::Endpoints;
use rohimaya_core::events::{Event, EventBus, TransferState};
use rohimaya_core::queue::{QueueRunner, QueueStore};
use rohimaya_core::transfer::{TransferSettings, UploadSession};
use rohimaya_core::watch::{
    AfterUpload, FolderConfig, QueueOutcome, RealFs, SystemClock, WatchEngine, WatchService,
    WatchSettings, WatchStore,
};
use tokio_util::sync::CancellationToken;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn die(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("watch_bench: {what}: {e}");
    std::process::exit(1)
}

/// (user + system CPU seconds, RSS in KiB) of this process.
fn cpu_and_rss() -> (f64, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime) are 12 and 13 after the ")" split.
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (ticks as f64 / 100.0, rss)
}

fn settings(window_ms: u64) -> WatchSettings {
    WatchSettings {
        stability_window: Duration::from_millis(window_ms),
        ..WatchSettings::default()
    }
}

fn add(store: &WatchStore, dir: &Path) {
    rohimaya_core::watch::add_folder(
        store,
        FolderConfig {
            path: dir.to_path_buf(),
            recursive: true,
            after_upload: AfterUpload::Leave,
            ..FolderConfig::default()
        },
    )
    .unwrap_or_else(|e| die("add folder", e));
}

async fn latency(root: &Path, window_ms: u64) -> (f64, f64) {
    let mut config = rohimaya_devstack::DevstackConfig::new(root.join("devstack"));
    config.job_duration = Duration::from_secs(3600);
    let devstack = rohimaya_devstack::start(config)
        .await
        .unwrap_or_else(|e| die("devstack", e));
    let session: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/auth/v1/signup", devstack.info.supabase_url))
        .header("apikey", &devstack.info.anon_key)
        .json(&serde_json::json!({"email": "bench@example.com", "password": "a long enough password 1"}))
        .send()
        .await
        .unwrap_or_else(|e| die("signup", e))
        .json()
        .await
        .unwrap_or_default();
    let token = session["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let user = session["user"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let endpoints = Endpoints {
        supabase_url: devstack.info.supabase_url.clone(),
        anon_key: devstack.info.anon_key.clone(),
        api_url: devstack.info.api_url.clone(),
        origin: None,
    };
    let bus = EventBus::new();
    let api = UploadsApi::new(
        UploadsApi::default_http(),
        &endpoints,
        Arc::new(StaticToken(token)),
    );
    let db = root.join("client").join("state.db");
    let queue = QueueStore::open(&db).unwrap_or_else(|e| die("queue", e));
    let runner = Arc::new(
        QueueRunner::new(
            queue,
            UploadSession::new(api, bus.clone(), TransferSettings::default()),
            user,
        )
        .unwrap_or_else(|e| die("runner", e)),
    );
    let store = WatchStore::open(&db).unwrap_or_else(|e| die("watch store", e));
    let dir = root.join("latency");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| die("mkdir", e));
    add(&store, &dir);
    let dir = rohimaya_core::watch::folder_path(&dir).unwrap_or_else(|e| die("folder", e));
    let service = WatchService::new(store, Some(runner.clone()), bus.clone())
        .unwrap_or_else(|e| die("service", e))
        .with_settings(settings(window_ms));
    let stop = CancellationToken::new();
    let mut rx = bus.subscribe();
    let (s1, s2) = (stop.clone(), stop.clone());
    let r = runner.clone();
    let watcher = tokio::spawn(async move { service.run(&s1).await });
    let uploader = tokio::spawn(async move { r.run(&s2).await });

    let n = 100;
    let mut written: Vec<(PathBuf, Instant)> = Vec::new();
    let collector = tokio::spawn(async move {
        let mut started: Vec<(PathBuf, Instant)> = Vec::new();
        let mut queued: Vec<(PathBuf, Instant)> = Vec::new();
        while started.len() < n {
            match rx.recv().await {
                Ok(Event::TransferState {
                    path,
                    state: TransferState::Uploading,
                    ..
                }) => {
                    if !started.iter().any(|(p, _)| *p == path) {
                        started.push((path, Instant::now()));
                    }
                }
                Ok(Event::TransferState {
                    path,
                    state: TransferState::Queued,
                    ..
                }) => queued.push((path, Instant::now())),
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(k)) => {
                    eprintln!("watch_bench: lost {k} events");
                }
                Err(_) => break,
            }
        }
        (started, queued)
    });
    for i in 0..n {
        let p = dir.join(format!("Latency {i:03}.txt"));
        std::fs::write(
            &p,
            format!("book {i}: the lighthouse keeper's daughter.\n").repeat(50),
        )
        .unwrap_or_else(|e| die("write", e));
        written.push((p, Instant::now()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (started, queued) = tokio::time::timeout(Duration::from_secs(120), collector)
        .await
        .unwrap_or_else(|_| die("latency", "not every upload started within 120 s"))
        .unwrap_or_else(|e| die("collector", e));
    let delays = |events: &[(PathBuf, Instant)]| {
        let mut lat: Vec<f64> = written
            .iter()
            .filter_map(|(p, w)| {
                events
                    .iter()
                    .find(|(q, _)| q == p)
                    .map(|(_, s)| s.duration_since(*w).as_secs_f64())
            })
            .collect();
        lat.sort_by(|a, b| a.total_cmp(b));
        if lat.len() != n {
            die("latency", format!("{} of {n} events seen", lat.len()));
        }
        lat
    };
    let to_queue = delays(&queued);
    println!(
        "last write -> handed to the queue: median {:.2} s, max {:.2} s",
        to_queue[n / 2 - 1] / 2.0 + to_queue[n / 2] / 2.0,
        to_queue[n - 1]
    );
    let lat = delays(&started);
    stop.cancel();
    let _ = watcher.await;
    let _ = uploader.await;
    drop(devstack);
    (lat[n / 2 - 1] / 2.0 + lat[n / 2] / 2.0, lat[n - 1])
}

async fn tree(root: &Path, files: usize, idle: Duration) {
    let dir = root.join("tree");
    for i in 0..files {
        let sub = dir.join(format!("folder {:03}", i % 100));
        if i < 100 {
            std::fs::create_dir_all(&sub).unwrap_or_else(|e| die("mkdir", e));
        }
        std::fs::write(sub.join(format!("Book {i:05}.txt")), format!("book {i}\n"))
            .unwrap_or_else(|e| die("write", e));
    }
    let db = root.join("tree-state").join("state.db");
    let store = WatchStore::open(&db).unwrap_or_else(|e| die("store", e));
    add(&store, &dir);
    // The scan alone, on an engine over the real file system: all new, then all known.
    let new_engine = || {
        WatchEngine::new(
            Arc::new(RealFs),
            Arc::new(SystemClock::default()),
            store.clone(),
            None,
        )
        .unwrap_or_else(|e| die("engine", e))
    };
    let mut engine = new_engine();
    let _ = engine.refresh_folders();
    let t = Instant::now();
    engine.scan_all();
    let first = t.elapsed();
    let mut engine = new_engine();
    let _ = engine.refresh_folders();
    let mut engine_new = engine;
    // Make them known the way the watcher does: stable, hashed, pending (signed out).
    engine_new.set_settings(settings(0));
    engine_new.scan_all();
    let t = Instant::now();
    engine_new.tick();
    let hashed = t.elapsed();
    // As if the queue had uploaded them all: the steady state of a folder in use.
    let pending = engine_new.pending().unwrap_or_default();
    for (i, p) in pending.iter().enumerate() {
        let _ = engine_new.enqueued(p, i as i64 + 1, &p.sha256.clone());
    }
    for r in engine_new.in_flight().unwrap_or_default() {
        let job_id = format!("job-{}", r.queue_id.unwrap_or_default());
        let _ = engine_new.queue_outcome(&r, QueueOutcome::Completed { job_id });
    }
    drop(engine_new);
    let mut engine = new_engine();
    let _ = engine.refresh_folders();
    let t = Instant::now();
    engine.scan_all();
    let known = t.elapsed();
    println!(
        "tree of {files} files: start-up scan {:.2} s (all new), hashing all {:.2} s, start-up scan {:.2} s (all known)",
        first.as_secs_f64(),
        hashed.as_secs_f64(),
        known.as_secs_f64()
    );
    drop(engine);

    // The service idling over the known tree, signed out (only the watcher runs).
    let service = WatchService::new(store.clone(), None, EventBus::new())
        .unwrap_or_else(|e| die("service", e));
    let stop = CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(async move { service.run(&s).await });
    // Let it start (watches on 101 folders, the start-up scan), then measure.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (cpu0, _) = cpu_and_rss();
    let t = Instant::now();
    tokio::time::sleep(idle).await;
    let (cpu1, rss) = cpu_and_rss();
    let wall = t.elapsed().as_secs_f64();
    println!(
        "idle {:.0} s over {files} files: CPU {:.2} s = {:.3}% of one core, RSS {:.1} MiB",
        wall,
        cpu1 - cpu0,
        (cpu1 - cpu0) / wall * 100.0,
        rss as f64 / 1024.0
    );
    if std::env::var_os("WATCH_BENCH_THREADS").is_some() {
        for t in std::fs::read_dir("/proc/self/task")
            .into_iter()
            .flatten()
            .flatten()
        {
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            let name = stat
                .split('(')
                .nth(1)
                .and_then(|r| r.split(')').next())
                .unwrap_or("");
            let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
            let f: Vec<&str> = after.split_whitespace().collect();
            let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
                + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
            if ticks > 10 {
                println!("  thread {name}: {:.2} s", ticks as f64 / 100.0);
            }
        }
    }
    stop.cancel();
    let _ = task.await;
}

#[tokio::main]
async fn main() {
    let root = tempfile::tempdir().unwrap_or_else(|e| die("tempdir", e));
    let window = env_u64("WATCH_BENCH_WINDOW_MS", 3000);
    let (median, max) = if env_u64("WATCH_BENCH_LATENCY", 1) == 1 {
        latency(root.path(), window).await
    } else {
        (0.0, 0.0)
    };
    println!(
        "last write -> upload start over 100 files, window {window} ms: median {median:.2} s, max {max:.2} s (target <= {:.1} s)",
        window as f64 / 1000.0 + 1.0
    );
    tree(
        root.path(),
        env_u64("WATCH_BENCH_TREE", 10_000) as usize,
        Duration::from_secs(env_u64("WATCH_BENCH_IDLE_S", 60)),
    )
    .await;
}

//! The idle probe (bench/idle.sh runs it; results in docs/benchmarks.md, "Idle wake-ups
//! of the core"): what the desktop app starts, in one process without the UI — the
//! devstack in-process, a [`Client`] signed in (upload queue, download queue, job feed,
//! auto-download, watched folders) and one watched folder — then it idles for
//! `IDLE_PROBE_SECS` seconds (default 60) after `IDLE_PROBE_SETTLE_SECS` (default 20: the manuscript put in the folder is uploaded, narrated and downloaded by then) and
//! prints, per thread, the voluntary context switches (wake-ups) during the idle period,
//! and the process's CPU time. Linux only (reads /proc/self). The session goes to the OS
//! keyring: run it under a Secret Service (bench/idle.sh starts one with dbus-run-session
//! when none runs).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rohimaya_core::api::uploads::JobOptions;
use rohimaya_core::client::{Client, SignUpView, WatchFolderRequest};
use rohimaya_core::config::{Endpoints, Paths, Profile, ProfileSource};
use rohimaya_core::events::EventBus;
use rohimaya_core::watch::AfterUpload;

fn die(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("idle_probe: {what}: {e}");
    std::process::exit(1)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Per thread (by tid): its name and voluntary context switches.
fn threads() -> BTreeMap<u32, (String, u64)> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        let switches = field("voluntary_ctxt_switches:").parse().unwrap_or(0);
        out.insert(tid, (field("Name:"), switches));
    }
    out
}

/// User + system CPU seconds of this process.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    ticks as f64 / 100.0
}

async fn run(root: &Path) {
    let devstack = rohimaya_devstack::start(rohimaya_devstack::DevstackConfig::new(
        root.join("devstack"),
    ))
    .await
    .unwrap_or_else(|e| die("devstack", e));
    let paths = Paths {
        config_dir: root.join("config"),
        data_dir: root.join("data"),
        library_dir: root.join("library"),
    };
    let profile = Profile {
        name: format!("idle-probe-{}", std::process::id()),
        endpoints: Endpoints {
            supabase_url: devstack.info.supabase_url.clone(),
            anon_key: devstack.info.anon_key.clone(),
            api_url: devstack.info.api_url.clone(),
            origin: None,
        },
        source: ProfileSource::LocalBackend,
    };
    let client = Client::new(paths, profile, EventBus::new());
    client.start().await;
    let email = format!("idle-{}@example.com", std::process::id());
    match client.sign_up(&email, "a long enough password 42").await {
        Ok(SignUpView::SignedIn { .. }) => {}
        Ok(other) => die("sign up", format!("not signed in: {other:?}")),
        Err(e) => die("sign up", e),
    }
    let folder = root.join("Manuscripts");
    std::fs::create_dir_all(&folder).unwrap_or_else(|e| die("mkdir", e));
    std::fs::write(folder.join("notes.txt"), "a short manuscript.\n".repeat(20))
        .unwrap_or_else(|e| die("write", e));
    client
        .add_watch_folder(WatchFolderRequest {
            path: folder,
            recursive: true,
            after_upload: AfterUpload::Leave,
            options: JobOptions::default(),
            ignore: Vec::new(),
        })
        .unwrap_or_else(|e| die("watch", e));

    let settle = env_u64("IDLE_PROBE_SETTLE_SECS", 20);
    let secs = env_u64("IDLE_PROBE_SECS", 60);
    tokio::time::sleep(Duration::from_secs(settle)).await;
    let (before, cpu_before, t0) = (threads(), cpu_seconds(), Instant::now());
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (after, cpu_after, elapsed) = (threads(), cpu_seconds(), t0.elapsed().as_secs_f64());

    println!("idle for {elapsed:.1} s (after {settle} s to settle)");
    println!(
        "{:>8}  {:<18} {:>9} {:>8}",
        "tid", "thread", "wake-ups", "per s"
    );
    let mut total = 0;
    let mut by_name: BTreeMap<String, u64> = BTreeMap::new();
    for (tid, (name, n)) in &after {
        let was = before.get(tid).map(|(_, n)| *n).unwrap_or(0);
        let d = n.saturating_sub(was);
        total += d;
        *by_name.entry(name.clone()).or_default() += d;
        if d > 0 {
            println!("{tid:>8}  {name:<18} {d:>9} {:>8.2}", d as f64 / elapsed);
        }
    }
    println!(
        "total: {total} wake-ups, {:.2}/s; CPU {:.2} s = {:.3} % of a core",
        total as f64 / elapsed,
        cpu_after - cpu_before,
        (cpu_after - cpu_before) / elapsed * 100.0
    );
    let grouped: Vec<String> = by_name.iter().map(|(n, d)| format!("{n}={d}")).collect();
    println!("by name: {}", grouped.join(" "));

    client.sign_out().await;
    client.shutdown().await;
    devstack.shutdown().await;
}

#[tokio::main]
async fn main() {
    let root = tempfile::tempdir().unwrap_or_else(|e| die("tempdir", e));
    run(root.path()).await;
}

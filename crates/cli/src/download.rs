//! `rohimaya download JOB_ID... [--book|--tracks|--all] [--json]`: queues the finished
//! jobs' audiobooks in the durable download queue, runs it (resuming anything an earlier
//! run left unfinished, from its `.part`) and prints one line per file; the books land in
//! the offline library. Also runs the queue for `rohimaya library sync|repair`. Progress
//! goes to stderr like `upload`'s. Ctrl-C stops leaving every file resumable. Exit codes:
//! 0 all done, 1 any failed (or left to another process), 2 usage. Thin: the queue, the
//! engine, naming and cataloguing are in core.

use std::collections::HashSet;
use std::sync::Arc;

use rohimaya_core::api::ApiClient;
use rohimaya_core::api::request::SessionTokens;
use rohimaya_core::auth::{AuthError, SessionStatus};
use rohimaya_core::config::Paths;
use rohimaya_core::downloads::{DownloadChoice, DownloadItem, DownloadQueue, DownloadState};
use rohimaya_core::events::EventBus;
use rohimaya_core::library::Library;
use rohimaya_core::queue::{CancellationToken, QueueStore};
use rohimaya_core::transfer::BandwidthLimiter;

use crate::account::open;
use crate::output::{Failure, Outcome, print_json};
use crate::progress::{Mode, Renderer};

#[derive(clap::Args)]
pub struct DownloadArgs {
    /// The finished jobs to download (ids from `rohimaya jobs`).
    #[arg(required = true)]
    jobs: Vec<String>,
    /// The whole-book file only.
    #[arg(long, conflicts_with_all = ["tracks", "all"])]
    book: bool,
    /// The chapter tracks only.
    #[arg(long, conflicts_with = "all")]
    tracks: bool,
    /// The whole book and its chapter tracks (the default).
    #[arg(long)]
    all: bool,
    /// Print stable JSON (see docs/cli.md).
    #[arg(long)]
    pub json: bool,
}

/// Opens the signed-in profile's download queue (the upload queue's bandwidth limit
/// applies) and its API client.
pub async fn queue(
    profile: Option<&str>,
    bus: EventBus,
) -> Result<(DownloadQueue, ApiClient), Failure> {
    let (profile, session, status) = open(profile).await?;
    let SessionStatus::SignedIn(account) = status else {
        return Err(AuthError::NotSignedIn {
            profile: profile.name.clone(),
        }
        .into());
    };
    let paths = Paths::from_env();
    let library = Arc::new(Library::for_paths(&paths)?);
    let rate = QueueStore::open(&paths.data_dir.join("state.db"))?
        .settings()?
        .bandwidth_limit;
    let api = ApiClient::new(&profile.endpoints).with_session(session.clone());
    let queue = DownloadQueue::open(
        &paths.data_dir,
        library,
        &profile.endpoints,
        Arc::new(SessionTokens(session)),
        account.user_id,
        bus,
        BandwidthLimiter::new(rate),
    )?;
    Ok((queue, api))
}

/// Runs the queue until idle with progress; Ctrl-C stops it, resumable. Then prints the
/// rows this run drove (every row not finished when it started) and says whether all
/// of them completed.
pub async fn run_and_report(
    queue: &DownloadQueue,
    bus: &EventBus,
    json: bool,
) -> Result<(bool, Vec<DownloadItem>), Failure> {
    let finished_before: HashSet<i64> = queue
        .list()?
        .iter()
        .filter(|i| !i.state.is_pending())
        .map(|i| i.id)
        .collect();
    let stop = CancellationToken::new();
    let mut rx = bus.subscribe();
    let mut renderer = Renderer::new(Mode::pick(json));
    let ctrl_c = stop.clone();
    let watcher = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            ctrl_c.cancel();
        }
    });
    let result = tokio::select! {
        r = queue.run_until_idle(&stop) => r,
        () = renderer.follow(&mut rx) => Ok(()),
    };
    renderer.drain(&mut rx);
    watcher.abort();
    result?;
    let mut ok = true;
    let mut shown = Vec::new();
    for item in queue.list()? {
        if finished_before.contains(&item.id) {
            continue;
        }
        ok &= item.state == DownloadState::Completed;
        if !json {
            match item.state {
                DownloadState::Completed => println!("downloaded {}", item.rel_path),
                s => println!(
                    "{} {}: {}",
                    s.as_str(),
                    item.rel_path,
                    item.error_message
                        .clone()
                        .unwrap_or_else(|| "not finished; run it again to resume".into())
                ),
            }
        }
        shown.push(item);
    }
    Ok((ok, shown))
}

pub async fn run(profile: Option<&str>, args: DownloadArgs) -> Outcome {
    let choice = if args.book {
        DownloadChoice::Book
    } else if args.tracks {
        DownloadChoice::Tracks
    } else {
        DownloadChoice::All
    };
    let bus = EventBus::new();
    let (queue, api) = queue(profile, bus.clone()).await?;
    let mut refused = Vec::new();
    for id in &args.jobs {
        let enqueued = match api.job(id).await {
            Ok(job) => queue.enqueue_job(&job, choice).await.map_err(Failure::from),
            Err(e) => Err(Failure::from(e)),
        };
        match enqueued {
            Ok(r) => {
                // Failed rows of this job from an earlier run are tried again.
                for item in queue.list()? {
                    if item.job_id == r.job_id && item.state == DownloadState::Failed {
                        queue.retry(item.id)?;
                    }
                }
            }
            Err(f) => {
                if !args.json {
                    eprintln!("rohimaya: job {id}: {}", f.message);
                }
                refused.push(serde_json::json!({"job_id": id,
                    "error": {"code": f.code, "message": f.message}}));
            }
        }
    }
    let (ok, items) = run_and_report(&queue, &bus, args.json).await?;
    if args.json {
        print_json(&serde_json::json!({"downloads": items, "refused": refused}))?;
    }
    if ok && refused.is_empty() {
        Ok(())
    } else {
        Err(Failure::quiet())
    }
}

/// `rohimaya library sync`: one sync round, then the downloads it queued.
pub async fn sync(profile: Option<&str>, json: bool) -> Outcome {
    let bus = EventBus::new();
    let (queue, api) = queue(profile, bus.clone()).await?;
    let (jobs, complete) = rohimaya_core::downloads::server_jobs(&api).await?;
    let report = queue.sync(&jobs, complete, false).await?;
    if !json {
        for id in &report.marked_only_local {
            println!("only on this computer now: {id} (the server no longer has it; kept)");
        }
        for (id, _, message) in &report.errors {
            eprintln!("rohimaya: job {id}: {message}");
        }
    }
    let (ok, items) = run_and_report(&queue, &bus, json).await?;
    if json {
        print_json(&serde_json::json!({"sync": report, "downloads": items}))?;
    }
    if ok && report.errors.is_empty() {
        Ok(())
    } else {
        Err(Failure::quiet())
    }
}

/// `rohimaya library repair`: verify, queue the missing or changed files, download them.
pub async fn repair(profile: Option<&str>, json: bool) -> Outcome {
    let bus = EventBus::new();
    let (queue, _) = queue(profile, bus.clone()).await?;
    let queued = queue.repair()?;
    if !json {
        println!("{} file(s) to repair", queued.len());
    }
    let (ok, items) = run_and_report(&queue, &bus, json).await?;
    if json {
        print_json(&serde_json::json!({"queued": queued, "downloads": items}))?;
    }
    if ok { Ok(()) } else { Err(Failure::quiet()) }
}

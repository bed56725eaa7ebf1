//! `rohimaya upload FILE... [--title T] [--author A] [--voice V] [--format F] [--wait]
//! [--json] [--force]`: queues the files in the durable queue, runs it (resuming anything
//! an earlier run left unfinished) and prints one line per file. Progress is printed as
//! plain lines on stderr. Thin: the queue, the transfer engine and dedupe are in core.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rohimaya_core::CoreError;
use rohimaya_core::api::ApiClient;
use rohimaya_core::api_uploads::{JobOptions, SessionTokens};
use rohimaya_core::auth::{AuthError, SessionStatus};
use rohimaya_core::config::Paths;
use rohimaya_core::events::{Event, EventBus, TransferNotice};
use rohimaya_core::queue::{CancellationToken, ItemState, QueueError, QueueRunner};

use crate::account::open;
use crate::output::{Failure, Outcome, print_json};

#[derive(clap::Args)]
pub struct UploadArgs {
    /// Manuscripts to upload (.txt .md .docx .pdf .epub .html).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The book's title (default: the file name without extension; one file only).
    #[arg(long)]
    title: Option<String>,
    #[arg(long)]
    author: Option<String>,
    /// The narrator voice id.
    #[arg(long)]
    voice: Option<String>,
    #[arg(long, value_parser = ["mp3", "wav", "flac", "m4b"])]
    format: Option<String>,
    /// Follow the narration jobs until they finish.
    #[arg(long)]
    wait: bool,
    /// Print stable JSON.
    #[arg(long)]
    pub json: bool,
    /// Upload even if this account already uploaded the same content.
    #[arg(long)]
    force: bool,
}

/// Opens the signed-in profile's queue runner (shared with `rohimaya queue`).
pub async fn runner(
    profile: Option<&str>,
    bus: EventBus,
) -> Result<(QueueRunner, ApiClient), Failure> {
    let (profile, session, status) = open(profile).await?;
    let SessionStatus::SignedIn(account) = status else {
        return Err(AuthError::NotSignedIn {
            profile: profile.name.clone(),
        }
        .into());
    };
    let api = ApiClient::new(&profile.endpoints).with_session(session.clone());
    let runner = QueueRunner::open(
        &Paths::from_env().data_dir,
        &profile.endpoints,
        Arc::new(SessionTokens(session)),
        account.user_id,
        bus,
    )?;
    Ok((runner, api))
}

/// Runs the queue until idle; Ctrl-C stops it leaving every file resumable.
pub async fn run_queue(
    runner: &QueueRunner,
    bus: &EventBus,
    quiet: bool,
) -> Result<(), QueueError> {
    let stop = CancellationToken::new();
    let mut rx = bus.subscribe();
    let printer = async {
        while let Ok(event) = rx.recv().await {
            if quiet {
                continue;
            }
            match event {
                Event::TransferProgress(p) if p.bytes_total > 0 => eprintln!(
                    "#{} {} {:>5.1}% {:.1} MB/s{}",
                    p.transfer_id,
                    p.state.as_str(),
                    p.bytes_done as f64 * 100.0 / p.bytes_total as f64,
                    p.rate / 1e6,
                    p.eta_secs.map(|s| format!(" ETA {s}s")).unwrap_or_default()
                ),
                Event::TransferNotice {
                    transfer_id,
                    notice,
                } => match notice {
                    TransferNotice::RestartedFileChanged { reason } => {
                        eprintln!("#{transfer_id} {reason}")
                    }
                    TransferNotice::RestartedUploadGone => {
                        eprintln!("#{transfer_id} the server lost the upload; starting a fresh one")
                    }
                    TransferNotice::FallbackFormUpload => {
                        eprintln!(
                            "#{transfer_id} this server takes uploads through the engine only"
                        )
                    }
                    TransferNotice::Resumed {
                        parts_done,
                        parts_total,
                    } => {
                        eprintln!(
                            "#{transfer_id} resuming: {parts_done} of {parts_total} parts already stored"
                        )
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    };
    let ctrl_c = stop.clone();
    let watcher = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            ctrl_c.cancel();
        }
    });
    let result = tokio::select! {
        r = runner.run_until_idle(&stop) => r,
        _ = printer => Ok(()),
    };
    watcher.abort();
    result
}

pub async fn run(profile: Option<&str>, args: UploadArgs) -> Outcome {
    if args.title.is_some() && args.files.len() > 1 {
        return Err(Failure::new(
            "request_rejected",
            "--title names one book: give one file with it",
        ));
    }
    let bus = EventBus::new();
    let (runner, api) = runner(profile, bus.clone()).await?;
    let options = JobOptions {
        title: args.title.clone(),
        author: args.author.clone(),
        voice: args.voice.clone(),
        format: args.format.clone(),
        bitrate: None,
    };
    let mut ids = Vec::new();
    let mut report = Vec::new();
    let mut failed = false;
    for file in &args.files {
        match runner.enqueue(file, &options, args.force).await {
            Ok(e) => ids.push(e.id),
            // Still in the queue (an earlier run was interrupted): this run resumes it.
            Err(QueueError::Duplicate {
                existing,
                existing_state,
                ..
            }) if existing_state != ItemState::Completed => {
                if !args.json {
                    eprintln!(
                        "rohimaya: {} is already queued (item {existing}); resuming it",
                        file.display()
                    );
                }
                if existing_state == ItemState::Failed {
                    runner.retry(existing)?;
                }
                if existing_state != ItemState::Paused {
                    ids.push(existing);
                }
            }
            Err(e @ QueueError::Duplicate { .. }) => {
                if !args.json {
                    eprintln!("rohimaya: {e}");
                }
                report.push(serde_json::json!({"path": file, "state": "duplicate", "message": e.to_string()}));
            }
            Err(e) => {
                failed = true;
                if !args.json {
                    eprintln!("rohimaya: {e}");
                }
                report.push(serde_json::json!({"path": file, "state": "refused",
                    "error": {"code": e.code().as_str(), "message": e.to_string()}}));
            }
        }
    }
    run_queue(&runner, &bus, args.json).await?;
    let mut jobs = Vec::new();
    for item in runner.list()?.into_iter().filter(|i| ids.contains(&i.id)) {
        match item.state {
            ItemState::Completed => {
                if let Some(j) = &item.job_id {
                    jobs.push(j.clone());
                }
                if !args.json {
                    println!(
                        "uploaded {} -> job {}",
                        item.path.display(),
                        item.job_id.clone().unwrap_or_default()
                    );
                }
            }
            _ => {
                failed = true;
                if !args.json {
                    println!(
                        "{} {}: {}",
                        item.state.as_str(),
                        item.path.display(),
                        item.error_message
                            .clone()
                            .unwrap_or_else(|| "not finished; run it again to resume".into())
                    );
                }
            }
        }
        report.push(serde_json::to_value(&item).unwrap_or_default());
    }
    if args.wait {
        for id in &jobs {
            loop {
                let job = api.job(id).await?;
                if matches!(job.status.as_str(), "completed" | "failed" | "cancelled") {
                    failed |= job.status != "completed";
                    if !args.json {
                        println!("job {id} {}", job.status);
                    }
                    break;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
    if args.json {
        print_json(&serde_json::json!({ "uploads": report }))?;
    }
    if failed {
        Err(Failure::quiet())
    } else {
        Ok(())
    }
}

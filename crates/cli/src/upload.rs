//! `rohimaya upload FILE... [--title T] [--author A] [--voice V] [--format F] [--wait]
//! [--json] [--force]`: queues the files in the durable queue, runs it (resuming anything
//! an earlier run left unfinished) and prints one line per file. Progress goes to stderr
//! (a bar per file on a terminal, plain lines otherwise, nothing under `--json`; see
//! [`crate::progress`]). Exit codes: 0 all done, 1 any failed (or left to another
//! process), 2 usage. Thin: the queue, the transfer engine, dedupe and the cross-process
//! lock are in core.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rohimaya_core::CoreError;
use rohimaya_core::api::ApiClient;
use rohimaya_core::api::uploads::{JobOptions, SessionTokens};
use rohimaya_core::auth::{AuthError, SessionStatus};
use rohimaya_core::config::Paths;
use rohimaya_core::events::EventBus;
use rohimaya_core::queue::{CancellationToken, ItemState, QueueError, QueueRunner};

use crate::account::open;
use crate::output::{Failure, Outcome, print_json};
use crate::progress::{Mode, Renderer};

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

/// Runs the queue until idle, showing progress as `mode` says; Ctrl-C stops it leaving
/// every file resumable.
pub async fn run_queue(runner: &QueueRunner, bus: &EventBus, mode: Mode) -> Result<(), QueueError> {
    let stop = CancellationToken::new();
    let mut rx = bus.subscribe();
    let mut renderer = Renderer::new(mode);
    let ctrl_c = stop.clone();
    let watcher = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            ctrl_c.cancel();
        }
    });
    let result = tokio::select! {
        r = runner.run_until_idle(&stop) => r,
        // The bus closes only when the runner is gone: not while it runs here.
        () = renderer.follow(&mut rx) => Ok(()),
    };
    renderer.drain(&mut rx);
    watcher.abort();
    result
}

pub async fn run(profile: Option<&str>, args: UploadArgs) -> Outcome {
    if args.title.is_some() && args.files.len() > 1 {
        return Err(Failure::usage(
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
        mode: None,
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
    run_queue(&runner, &bus, Mode::pick(args.json)).await?;
    let mut jobs = Vec::new();
    for item in runner.list()?.into_iter().filter(|i| ids.contains(&i.id)) {
        if let Some(busy) = runner.busy_reason(item.id) {
            failed = true;
            if !args.json {
                println!("busy {}", busy);
            }
            report.push(
                serde_json::json!({"id": item.id, "path": item.path, "state": "busy",
                "error": {"code": busy.code().as_str(), "message": busy.to_string()}}),
            );
            continue;
        }
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
    let mut followed = Vec::new();
    if args.wait {
        for id in &jobs {
            loop {
                let job = api.job(id).await?;
                if matches!(job.status.as_str(), "completed" | "failed" | "cancelled") {
                    failed |= job.status != "completed";
                    if !args.json {
                        println!("job {id} {}", job.status);
                    }
                    followed.push(serde_json::json!({"id": id, "status": job.status}));
                    break;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
    if args.json {
        let mut out = serde_json::json!({ "uploads": report });
        if args.wait {
            out["jobs"] = serde_json::Value::Array(followed);
        }
        print_json(&out)?;
    }
    if failed {
        Err(Failure::quiet())
    } else {
        Ok(())
    }
}

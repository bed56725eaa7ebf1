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
use rohimaya_core::api::request::SessionTokens;
use rohimaya_core::api::uploads::JobOptions;
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
    /// Send files of at least SIZE as multipart, smaller ones in one PUT, for this run
    /// (e.g. 64MiB, 2GiB, 1000000; default: `rohimaya queue set --multipart-threshold`,
    /// else 64MiB; one PUT holds at most 5 GiB).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    multipart_threshold: Option<u64>,
}

/// A size in bytes: a number with an optional unit, binary (K, KiB, M, MiB, G, GiB) or
/// decimal (kB, MB, GB); `B` or none = bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size: give a number like 64MiB or 1000000"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" | "k" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}: use B, KiB, MiB, GiB (or kB, MB, GB)"
            ));
        }
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too large"))
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
    let (mut runner, api) = runner(profile, bus.clone()).await?;
    if let Some(t) = args.multipart_threshold {
        runner.set_multipart_threshold(t);
    }
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

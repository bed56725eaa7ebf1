//! `rohimaya queue [list|run|pause [ID]|resume [ID]|cancel ID|retry ID|set ...] [--json]`: the
//! durable upload queue of the signed-in account. `pause`/`resume` without an id are the
//! global pause; `run` shows progress as `rohimaya upload` does and leaves items another
//! process is uploading to it. Thin: every rule is in `rohimaya_core::queue`.

use rohimaya_core::events::EventBus;
use rohimaya_core::queue::ItemState;

use crate::output::{Failure, Outcome, print_json};
use crate::progress::Mode;
use crate::upload::{parse_size, run_queue, runner};

#[derive(clap::Args)]
pub struct QueueArgs {
    #[command(subcommand)]
    action: Option<QueueAction>,
    /// Print stable JSON.
    #[arg(long, global = true)]
    json: bool,
}

impl QueueArgs {
    pub fn json(&self) -> bool {
        self.json
    }
}

#[derive(clap::Subcommand)]
enum QueueAction {
    /// List the queued files (the default).
    List,
    /// Upload everything queued or interrupted, until done.
    Run,
    /// Pause one file, or the whole queue without an id.
    Pause { id: Option<i64> },
    /// Resume one file, or the whole queue without an id.
    Resume { id: Option<i64> },
    /// Cancel a file (its partial upload is discarded on the server).
    Cancel { id: i64 },
    /// Queue a failed or cancelled file again.
    Retry { id: i64 },
    /// Change the queue's settings (kept in state.db).
    Set {
        /// Shared bandwidth limit in bytes per second (0 = none).
        #[arg(long)]
        bandwidth: Option<u64>,
        /// Files uploaded at the same time.
        #[arg(long)]
        files: Option<usize>,
        /// Parts of one file in flight.
        #[arg(long)]
        parts: Option<usize>,
        /// Files of at least SIZE go multipart, smaller ones in one PUT (e.g. 64MiB,
        /// 2GiB; `default` = 64MiB). Applies to files queued from now on.
        #[arg(long, value_name = "SIZE", value_parser = parse_threshold)]
        multipart_threshold: Option<Threshold>,
    },
}

/// `--multipart-threshold`: a size, or `default`.
#[derive(Debug, Clone, Copy)]
enum Threshold {
    Default,
    Bytes(u64),
}

fn parse_threshold(text: &str) -> Result<Threshold, String> {
    if text.trim() == "default" {
        return Ok(Threshold::Default);
    }
    parse_size(text).map(Threshold::Bytes)
}

pub async fn run(profile: Option<&str>, args: QueueArgs) -> Outcome {
    let bus = EventBus::new();
    let (runner, _) = runner(profile, bus.clone()).await?;
    let mut ran = false;
    match args.action.unwrap_or(QueueAction::List) {
        QueueAction::List => {}
        QueueAction::Run => {
            run_queue(&runner, &bus, Mode::pick(args.json)).await?;
            ran = true;
        }
        QueueAction::Pause { id: Some(id) } => runner.pause(id)?,
        QueueAction::Pause { id: None } => runner.pause_all()?,
        QueueAction::Resume { id: Some(id) } => runner.resume(id)?,
        QueueAction::Resume { id: None } => runner.resume_all()?,
        QueueAction::Cancel { id } => runner.cancel(id).await?,
        QueueAction::Retry { id } => runner.retry(id)?,
        QueueAction::Set {
            bandwidth,
            files,
            parts,
            multipart_threshold,
        } => {
            runner.update_settings(|s| {
                s.bandwidth_limit = bandwidth.unwrap_or(s.bandwidth_limit);
                s.files_in_flight = files.unwrap_or(s.files_in_flight);
                s.parts_in_flight = parts.unwrap_or(s.parts_in_flight);
                match multipart_threshold {
                    Some(Threshold::Default) => s.multipart_threshold = None,
                    Some(Threshold::Bytes(b)) => s.multipart_threshold = Some(b),
                    None => {}
                }
            })?;
        }
    }
    let items = runner.list()?;
    // `run` exits 1 when a file failed or was left to another process.
    let failed = ran
        && (items.iter().any(|i| i.state == ItemState::Failed)
            || !runner.busy_elsewhere().is_empty());
    let end = if failed {
        Err(Failure::quiet())
    } else {
        Ok(())
    };
    if args.json {
        let settings = runner.store().settings()?;
        let busy = runner.busy_elsewhere();
        print_json(&serde_json::json!({ "items": items, "settings": settings, "busy": busy }))?;
        return end;
    }
    if items.is_empty() {
        println!("The queue is empty.");
    }
    for i in &items {
        let detail = match (&i.job_id, &i.error_message) {
            (Some(job), _) => format!("job {job}"),
            _ if runner.busy_elsewhere().contains(&i.id) => {
                "being uploaded by another process".to_string()
            }
            (None, Some(e)) => e.clone(),
            _ if i.part_count > 1 => format!("{}/{} parts", i.parts_done, i.part_count),
            _ => String::new(),
        };
        println!(
            "{:>4}  {:<10} {}  {}",
            i.id,
            i.state.as_str(),
            i.path.display(),
            detail
        );
    }
    end
}

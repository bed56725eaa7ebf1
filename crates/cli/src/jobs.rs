//! `rohimaya jobs [list|show ID|cancel ID|retry ID|delete ID] [--json]`: the engine API
//! client (`api::ApiClient`) with the profile's session. The `--json` shapes are stable
//! and documented in docs/cli.md.

use rohimaya_core::api::{ApiClient, Job, JobsQuery};
use rohimaya_core::auth::{AuthError, SessionStatus};

use crate::account::open;
use crate::output::{Outcome, print_json};

#[derive(clap::Args)]
pub struct JobsArgs {
    #[command(subcommand)]
    action: Option<JobsAction>,
    /// Print stable JSON (see docs/cli.md).
    #[arg(long, global = true)]
    json: bool,
}

impl JobsArgs {
    pub fn json(&self) -> bool {
        self.json
    }
}

#[derive(clap::Subcommand)]
enum JobsAction {
    /// List your jobs, newest first (the default).
    List {
        /// Only jobs with this status (pending, processing, completed, failed, cancelled).
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        offset: Option<u32>,
    },
    /// Show one job.
    Show { id: String },
    /// Cancel a pending or processing job.
    Cancel { id: String },
    /// Retry a failed or cancelled job.
    Retry { id: String },
    /// Delete a job with its audio.
    Delete { id: String },
}

pub async fn run(profile: Option<&str>, args: JobsArgs) -> Outcome {
    let (profile, session, status) = open(profile).await?;
    if let SessionStatus::SignedOut { .. } = status {
        return Err(AuthError::NotSignedIn {
            profile: profile.name.clone(),
        }
        .into());
    }
    let api = ApiClient::new(&profile.endpoints).with_session(session);
    let action = args.action.unwrap_or(JobsAction::List {
        status: None,
        limit: None,
        offset: None,
    });
    let json = args.json;
    match action {
        JobsAction::List {
            status,
            limit,
            offset,
        } => {
            let jobs = api
                .list_jobs(&JobsQuery {
                    status,
                    limit,
                    offset,
                })
                .await?;
            if json {
                return print_json(&serde_json::json!({ "jobs": jobs }));
            }
            if jobs.is_empty() {
                println!("No jobs.");
            }
            for job in &jobs {
                println!("{}", summary(job));
            }
            Ok(())
        }
        JobsAction::Show { id } => show(api.job(&id).await?, json),
        JobsAction::Cancel { id } => show(api.cancel_job(&id).await?, json),
        JobsAction::Retry { id } => show(api.retry_job(&id).await?, json),
        JobsAction::Delete { id } => {
            api.delete_job(&id).await?;
            if json {
                return print_json(&serde_json::json!({ "deleted": id }));
            }
            println!("Deleted job {id}.");
            Ok(())
        }
    }
}

fn summary(job: &Job) -> String {
    let progress = match (job.status.as_str(), job.progress_percent) {
        ("processing", Some(p)) => format!(" {p:.0}%"),
        _ => String::new(),
    };
    format!("{}  {}{}  {}", job.id, job.status, progress, job.title)
}

fn show(job: Job, json: bool) -> Outcome {
    if json {
        return print_json(&serde_json::json!({ "job": job }));
    }
    println!("{}", summary(&job));
    let field = |name: &str, value: Option<String>| {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            println!("  {name}: {v}");
        }
    };
    field("author", job.author.clone());
    field("step", job.current_step.clone());
    field("error", job.error_message.clone());
    field("audio", job.audio_path.clone());
    field("duration", job.duration_seconds.map(|s| format!("{s} s")));
    field("created", job.created_at.clone());
    field("completed", job.completed_at.clone());
    Ok(())
}

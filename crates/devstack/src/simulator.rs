//! The narration simulator: moves jobs pending -> processing -> completed over the
//! configured time, reading the manuscript from the store and writing real WAV audio
//! (whole book + one track per chapter) to the audiobooks bucket. It owns job progress;
//! it never answers HTTP.
//!
//! Each run of a job has its own cancellation token (a child of the simulator's, so a
//! shutdown stops every run) and a run id in the job row: a run writes progress and
//! results only while the row still carries its id and status `processing`, so a
//! cancelled, retried or deleted job is never overwritten by a stale run, which instead
//! removes the objects it uploaded. Runs of one job never overlap; at most
//! [`MAX_CONCURRENT_JOBS`] jobs narrate at once. At start, jobs left pending or
//! processing by a previous process are resumed.

pub mod manuscript;
pub mod pdf;
pub mod wav;
pub mod zip;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api::jobs::{self, FinishedTrack, JobResponse, status};
use crate::server::Backend;

/// How many jobs narrate at the same time; the rest wait, pending.
pub const MAX_CONCURRENT_JOBS: usize = 4;

/// The longest whole book the simulator writes, in seconds of audio.
pub const MAX_BOOK_SECONDS: u32 = 180;

/// What the simulator is asked to do.
#[derive(Debug)]
pub enum SimCommand {
    /// Start (or restart) narrating a job.
    Narrate { job_id: String },
}

/// The handle the API uses to hand jobs to the simulator.
#[derive(Clone)]
pub struct Simulator {
    tx: mpsc::Sender<SimCommand>,
    runs: Arc<Mutex<HashMap<String, Run>>>,
}

/// The live run of one job.
#[derive(Clone)]
struct Run {
    generation: u64,
    /// Stops this run (user cancel, delete, a newer run of the job, or shutdown).
    cancel: CancellationToken,
    /// Cancelled once the run's task has finished, cleanup included.
    finished: CancellationToken,
}

impl Simulator {
    pub fn channel() -> (Self, mpsc::Receiver<SimCommand>) {
        let (tx, rx) = mpsc::channel(256);
        let runs = Arc::new(Mutex::new(HashMap::new()));
        (Self { tx, runs }, rx)
    }

    /// Queues `job_id` for narration (it must be `pending`).
    pub async fn narrate(&self, job_id: String) {
        if self.tx.send(SimCommand::Narrate { job_id }).await.is_err() {
            tracing::warn!("the narration simulator has stopped; the job stays pending");
        }
    }

    /// Stops the job's run, if one is live. The caller has already changed the job's row
    /// (cancelled or deleted it), so the run will not write to it again.
    pub fn cancel(&self, job_id: &str) {
        if let Some(run) = self.lock_runs().get(job_id) {
            run.cancel.cancel();
        }
    }

    fn lock_runs(&self) -> MutexGuard<'_, HashMap<String, Run>> {
        // The map stays consistent even if a holder panicked: every update is one call.
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs until `token` is cancelled.
pub async fn run(backend: Backend, mut rx: mpsc::Receiver<SimCommand>, token: CancellationToken) {
    let mut dispatcher = Dispatcher {
        backend: backend.clone(),
        permits: Arc::new(Semaphore::new(MAX_CONCURRENT_JOBS)),
        tasks: JoinSet::new(),
        token: token.clone(),
        generation: 0,
    };
    match jobs::recover_jobs(&backend) {
        Ok(ids) => {
            if !ids.is_empty() {
                tracing::info!("resuming {} unfinished narration job(s)", ids.len());
            }
            for id in ids {
                dispatcher.start(id);
            }
        }
        Err(e) => tracing::error!("cannot read unfinished jobs to resume them: {e}"),
    }
    loop {
        tokio::select! {
            _ = token.cancelled() => break,
            cmd = rx.recv() => match cmd {
                Some(SimCommand::Narrate { job_id }) => dispatcher.start(job_id),
                None => break,
            },
            Some(done) = dispatcher.tasks.join_next(), if !dispatcher.tasks.is_empty() => {
                if let Err(e) = done {
                    tracing::error!("a narration task failed: {e}");
                }
            }
        }
    }
    // Stops every run (their tokens are children of this one); runs interrupted this way
    // leave their jobs `processing`, to be resumed at the next start.
    token.cancel();
    while dispatcher.tasks.join_next().await.is_some() {}
}

struct Dispatcher {
    backend: Backend,
    permits: Arc<Semaphore>,
    tasks: JoinSet<()>,
    token: CancellationToken,
    generation: u64,
}

impl Dispatcher {
    fn start(&mut self, job_id: String) {
        self.generation += 1;
        let run = Run {
            generation: self.generation,
            cancel: self.token.child_token(),
            finished: CancellationToken::new(),
        };
        let previous = self
            .backend
            .simulator
            .lock_runs()
            .insert(job_id.clone(), run.clone());
        if let Some(previous) = &previous {
            previous.cancel.cancel();
        }
        let backend = self.backend.clone();
        let permits = self.permits.clone();
        let shutdown = self.token.clone();
        self.tasks.spawn(async move {
            // One run per job at a time: the superseded run finishes (and cleans up) first.
            if let Some(previous) = previous {
                previous.finished.cancelled().await;
            }
            let permit = tokio::select! {
                p = permits.acquire_owned() => p.ok(),
                _ = run.cancel.cancelled() => None,
            };
            if let Some(_permit) = permit {
                let mut ctx = RunCtx {
                    backend: &backend,
                    job_id: &job_id,
                    run_id: uuid::Uuid::new_v4().to_string(),
                    cancel: &run.cancel,
                    shutdown: &shutdown,
                    uploaded: Vec::new(),
                };
                ctx.narrate().await;
            }
            {
                let mut runs = backend.simulator.lock_runs();
                if runs
                    .get(&job_id)
                    .is_some_and(|r| r.generation == run.generation)
                {
                    runs.remove(&job_id);
                }
            }
            run.finished.cancel();
        });
    }
}

/// Why a run stopped before completing.
#[derive(Debug)]
enum Stop {
    /// The devstack is shutting down: leave the job as it is, to resume at next start.
    Shutdown,
    /// Cancelled, deleted or superseded: the job is no longer this run's.
    Superseded,
    /// The job fails with this message.
    Failed(String),
}

struct RunCtx<'a> {
    backend: &'a Backend,
    job_id: &'a str,
    run_id: String,
    cancel: &'a CancellationToken,
    shutdown: &'a CancellationToken,
    /// Keys this run wrote to the audiobooks bucket.
    uploaded: Vec<String>,
}

impl RunCtx<'_> {
    async fn narrate(&mut self) {
        let job = match jobs::load_job(self.backend, self.job_id) {
            Ok(Some(job)) => job,
            Ok(None) => return,
            Err(e) => {
                tracing::error!("cannot read job {}: {e}", self.job_id);
                return;
            }
        };
        if job.status != status::PENDING && job.status != status::PROCESSING {
            return;
        }
        match jobs::claim_job(self.backend, self.job_id, &self.run_id) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::error!("cannot start job {}: {e}", self.job_id);
                return;
            }
        }
        match self.steps(&job).await {
            Ok(()) => tracing::info!("job {} completed", self.job_id),
            Err(Stop::Shutdown) => {}
            Err(Stop::Superseded) => self.remove_uploads().await,
            Err(Stop::Failed(message)) => {
                tracing::info!("job {} failed: {message}", self.job_id);
                if let Err(e) = jobs::fail_job(self.backend, self.job_id, &self.run_id, &message) {
                    tracing::error!("cannot record the failure of job {}: {e}", self.job_id);
                }
                self.remove_uploads().await;
            }
        }
    }

    async fn steps(&mut self, job: &JobResponse) -> Result<(), Stop> {
        let total = self.backend.config.job_duration;
        let share = |percent: u32| total * percent / 100;
        self.progress(2.0, "Downloading manuscript")?;
        if job.source_type.as_deref() == Some("google_drive") {
            return Err(Stop::Failed(
                "Google Drive import is not available in the local backend; upload the manuscript instead".into(),
            ));
        }
        let source_path = job
            .source_path
            .clone()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                Stop::Failed("No source_path found for job - manuscript not uploaded".into())
            })?;
        let bytes = self.download(&source_path).await?;
        self.pause(share(5)).await?;

        self.progress(10.0, "Parsing manuscript")?;
        let name = source_path.rsplit('/').next().unwrap_or(&source_path);
        let chapters = manuscript::chapters(&bytes, &source_path, &job.title)
            .map_err(|e| Stop::Failed(format!("Cannot narrate \"{name}\": {e}")))?;
        self.pause(share(5)).await?;

        let count = chapters.len();
        let width = count.to_string().len().max(2);
        let mut seconds: Vec<u32> = chapters
            .iter()
            .map(|c| wav::chapter_seconds(c.words))
            .collect();
        wav::fit_to_budget(&mut seconds, MAX_BOOK_SECONDS);
        let prefix = format!("audiobooks/{}/{}", job.user_id, job.id);
        let mut book: Vec<i16> = Vec::new();
        let mut tracks = Vec::with_capacity(count);
        for (i, (chapter, &secs)) in chapters.iter().zip(&seconds).enumerate() {
            let done = 10.0 + 70.0 * i as f64 / count as f64;
            self.progress(done, &format!("Narrating chapter {} of {count}", i + 1))?;
            let samples = wav::synthesize(i, secs);
            let file = wav::encode(&samples);
            let export_filename = format!(
                "{:0width$} - {}.wav",
                i + 1,
                track_name(&chapter.title, i + 1)
            );
            let key = format!("{prefix}/tracks/{export_filename}");
            let size = file.len() as i64;
            self.upload(&key, file).await?;
            book.extend_from_slice(&samples);
            tracks.push(FinishedTrack {
                title: chapter.title.clone(),
                audio_path: key,
                duration_seconds: i64::from(secs),
                file_size_bytes: size,
                export_filename,
            });
            self.pause(total * 70 / 100 / count as u32).await?;
        }

        self.progress(80.0, "Mastering audio")?;
        let whole = wav::encode(&book);
        let duration_seconds = (book.len() / wav::SAMPLE_RATE as usize) as i64;
        self.pause(share(10)).await?;

        self.progress(90.0, "Uploading audiobook")?;
        let audio_path = format!("{prefix}/{}_COMPLETE.wav", safe_title(&job.title));
        let size = whole.len() as i64;
        self.upload(&audio_path, whole).await?;
        self.pause(share(10)).await?;

        match jobs::complete_job(
            self.backend,
            self.job_id,
            &self.run_id,
            &audio_path,
            duration_seconds,
            size,
            &tracks,
        ) {
            Ok(true) => Ok(()),
            Ok(false) => Err(Stop::Superseded),
            Err(e) => Err(Stop::Failed(format!(
                "Cannot record the finished audiobook: {e}"
            ))),
        }
    }

    fn stopped(&self) -> Stop {
        if self.shutdown.is_cancelled() {
            Stop::Shutdown
        } else {
            Stop::Superseded
        }
    }

    /// Waits `d` unless the run is stopped first.
    async fn pause(&self, d: Duration) -> Result<(), Stop> {
        tokio::select! {
            _ = self.cancel.cancelled() => Err(self.stopped()),
            _ = tokio::time::sleep(d) => Ok(()),
        }
    }

    fn progress(&self, percent: f64, step: &str) -> Result<(), Stop> {
        if self.cancel.is_cancelled() {
            return Err(self.stopped());
        }
        match jobs::record_progress(self.backend, self.job_id, &self.run_id, percent, step) {
            Ok(true) => Ok(()),
            Ok(false) => Err(Stop::Superseded),
            Err(e) => Err(Stop::Failed(format!("Cannot record progress: {e}"))),
        }
    }

    async fn download(&self, key: &str) -> Result<Bytes, Stop> {
        let bucket = &self.backend.config.manuscripts_bucket;
        let got = tokio::select! {
            _ = self.cancel.cancelled() => return Err(self.stopped()),
            got = self.backend.store.get_object(bucket, key) => got,
        };
        got.map_err(|e| {
            if self.shutdown.is_cancelled() {
                Stop::Shutdown
            } else if matches!(e.code(), Some("NoSuchKey") | Some("NoSuchBucket")) {
                Stop::Failed(format!(
                    "The manuscript {key} was not found in storage; upload it before creating the job"
                ))
            } else {
                Stop::Failed(format!("Cannot download the manuscript {key}: {e}"))
            }
        })
    }

    async fn upload(&mut self, key: &str, body: Vec<u8>) -> Result<(), Stop> {
        if self.cancel.is_cancelled() {
            return Err(self.stopped());
        }
        let bucket = &self.backend.config.audiobooks_bucket;
        // Recorded first: a put that lands after a cancel is still cleaned up.
        self.uploaded.push(key.to_owned());
        let put = self
            .backend
            .store
            .put_object(bucket, key, Bytes::from(body), "audio/wav")
            .await;
        match put {
            Ok(_) => Ok(()),
            Err(_) if self.shutdown.is_cancelled() => Err(Stop::Shutdown),
            Err(e) => Err(Stop::Failed(format!(
                "Cannot store the narrated audio: {e}"
            ))),
        }
    }

    async fn remove_uploads(&mut self) {
        let bucket = self.backend.config.audiobooks_bucket.clone();
        for key in std::mem::take(&mut self.uploaded) {
            if let Err(e) = self.backend.store.delete_object(&bucket, &key).await
                && e.code() != Some("NoSuchKey")
            {
                tracing::warn!("cannot remove {bucket}/{key} of a stopped run: {e}");
            }
        }
    }
}

/// The engine's file-name-safe title: letters, digits, spaces, `-` and `_`, trimmed;
/// "audiobook" if nothing is left.
pub fn safe_title(title: &str) -> String {
    let kept: String = title
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .collect();
    let kept = kept.trim();
    if kept.is_empty() {
        "audiobook".into()
    } else {
        kept.to_owned()
    }
}

/// A chapter title as a portable file name: `: ` becomes ` - `, characters Windows or
/// Unix refuse are dropped, whitespace collapsed, at most 100 characters, no trailing
/// dots; "Chapter N" if nothing is left.
pub fn track_name(title: &str, number: usize) -> String {
    let replaced = title.replace(':', " - ");
    let kept: String = replaced
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '/' | '\\' | '?' | '*' | '"' | '<' | '>' | '|'))
        .collect();
    let collapsed = kept.split_whitespace().collect::<Vec<_>>().join(" ");
    let bounded: String = collapsed.chars().take(100).collect();
    let name = bounded.trim_end_matches(['.', ' ']).trim();
    if name.is_empty() {
        format!("Chapter {number}")
    } else {
        name.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn track_names_are_portable() {
        assert_eq!(
            track_name("Chapter One: The Lamp", 1),
            "Chapter One - The Lamp"
        );
        assert_eq!(
            track_name("Who? What/Why*  \"now\"...", 2),
            "Who WhatWhy now"
        );
        assert_eq!(track_name("<>|", 7), "Chapter 7");
        assert_eq!(track_name(&"x".repeat(300), 1).len(), 100);
    }

    #[test]
    fn safe_titles_follow_the_engine() {
        assert_eq!(
            safe_title("The Lighthouse Keeper's Daughter"),
            "The Lighthouse Keepers Daughter"
        );
        assert_eq!(safe_title("Café – Ünïcode 📚"), "Café  Ünïcode");
        assert_eq!(safe_title("???"), "audiobook");
    }
}

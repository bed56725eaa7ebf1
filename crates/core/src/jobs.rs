//! [`JobFeed`]: follows the signed-in account's narration jobs so the shells see every
//! change without refreshing, and so whatever reacts to a finished job (the library's
//! auto-download) learns of it. It polls `GET /jobs` — every 2 s while a job is pending or
//! processing, backing off to a minute while nothing moves or the server cannot be
//! reached (never a busy loop) — and publishes one [`Event::JobChanged`] per job that
//! changed and [`Event::JobRemoved`] per job that disappeared. [`JobFeed::poke`] asks for
//! a poll now (a job was just created, cancelled or retried).
//!
//! It owns the polling schedule and the change detection; it never changes a job itself
//! and never ends a session (a refused session is reported on the bus, the session
//! manager decides).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::api::{ApiClient, ApiError, Job, JobsQuery};
use crate::error::CoreError;
use crate::events::{Event, EventBus};

/// Polling intervals: while jobs run, and the longest wait while nothing happens.
const ACTIVE_INTERVAL: Duration = Duration::from_secs(2);
const IDLE_FIRST: Duration = Duration::from_secs(5);
const IDLE_MAX: Duration = Duration::from_secs(60);
/// How many of the newest jobs are followed.
const FOLLOWED: u32 = 500;

/// A job as the shells show it (no keys, no URLs).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct JobView {
    pub id: String,
    pub title: String,
    pub author: Option<String>,
    /// pending, processing, completed, failed or cancelled.
    pub status: String,
    pub progress_percent: Option<f64>,
    pub current_step: Option<String>,
    pub error_message: Option<String>,
    pub audio_format: Option<String>,
    pub duration_seconds: Option<i64>,
    pub file_size_bytes: Option<i64>,
    pub created_at: Option<String>,
    pub completed_at: Option<String>,
}

impl JobView {
    pub fn is_active(&self) -> bool {
        matches!(self.status.as_str(), "pending" | "processing")
    }
}

impl From<&Job> for JobView {
    fn from(j: &Job) -> Self {
        Self {
            id: j.id.clone(),
            title: j.title.clone(),
            author: j.author.clone(),
            status: j.status.clone(),
            progress_percent: j.progress_percent,
            current_step: j.current_step.clone(),
            error_message: j.error_message.clone(),
            audio_format: j.audio_format.clone(),
            duration_seconds: j.duration_seconds,
            file_size_bytes: j.file_size_bytes,
            created_at: j.created_at.clone(),
            completed_at: j.completed_at.clone(),
        }
    }
}

/// What one poll found, compared with the previous one.
#[derive(Debug, Default, PartialEq)]
pub struct JobChanges {
    pub changed: Vec<JobView>,
    pub removed: Vec<String>,
}

/// The followed jobs and the diff between polls (pure; the feed drives it).
#[derive(Debug, Default)]
pub struct JobSnapshot {
    jobs: BTreeMap<String, JobView>,
    seeded: bool,
}

impl JobSnapshot {
    /// Replaces the snapshot with `jobs`, returning what changed. The first call reports
    /// every job as changed.
    pub fn update(&mut self, jobs: &[Job]) -> JobChanges {
        let mut next = BTreeMap::new();
        let mut changes = JobChanges::default();
        for job in jobs {
            let view = JobView::from(job);
            if self.jobs.get(&view.id) != Some(&view) {
                changes.changed.push(view.clone());
            }
            next.insert(view.id.clone(), view);
        }
        changes.removed = self
            .jobs
            .keys()
            .filter(|id| !next.contains_key(*id))
            .cloned()
            .collect();
        self.jobs = next;
        self.seeded = true;
        changes
    }

    pub fn any_active(&self) -> bool {
        self.jobs.values().any(JobView::is_active)
    }

    /// Newest first, as the server lists them.
    pub fn list(&self) -> Vec<JobView> {
        let mut v: Vec<JobView> = self.jobs.values().cloned().collect();
        v.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        v
    }

    pub fn is_seeded(&self) -> bool {
        self.seeded
    }
}

/// The wait before the next poll: short while jobs run, doubling while idle or failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollSchedule {
    idle: Duration,
}

impl Default for PollSchedule {
    fn default() -> Self {
        Self { idle: IDLE_FIRST }
    }
}

impl PollSchedule {
    /// After a poll: `active` when a job is pending or processing, `changed` when the
    /// poll saw a change, `failed` when it could not poll.
    pub fn next(&mut self, active: bool, changed: bool, failed: bool) -> Duration {
        if active && !failed {
            self.idle = IDLE_FIRST;
            return ACTIVE_INTERVAL;
        }
        if changed && !failed {
            self.idle = IDLE_FIRST;
            return IDLE_FIRST;
        }
        let wait = self.idle;
        self.idle = (self.idle * 2).min(IDLE_MAX);
        wait
    }

    /// Someone asked for a poll now: the next idle wait starts short again.
    pub fn reset(&mut self) {
        self.idle = IDLE_FIRST;
    }
}

/// Follows one account's jobs.
#[derive(Debug)]
pub struct JobFeed {
    api: ApiClient,
    bus: EventBus,
    snapshot: Mutex<JobSnapshot>,
    poke: Notify,
}

impl JobFeed {
    pub fn new(api: ApiClient, bus: EventBus) -> Self {
        Self {
            api,
            bus,
            snapshot: Mutex::new(JobSnapshot::default()),
            poke: Notify::new(),
        }
    }

    /// Polls until `stop`.
    pub async fn run(&self, stop: &CancellationToken) {
        let mut schedule = PollSchedule::default();
        loop {
            let (active, changed, failed) = match self.poll().await {
                Ok(changed) => (self.with(|s| s.any_active()), changed, false),
                Err(e) => {
                    tracing::debug!(code = e.code().as_str(), "jobs: {e}");
                    self.bus.publish(Event::JobsUnavailable {
                        code: e.code().as_str().to_string(),
                        message: e.to_string(),
                    });
                    (false, false, true)
                }
            };
            let wait = schedule.next(active, changed, failed);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.poke.notified() => schedule.reset(),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One poll now; `true` when something changed. Publishes the changes.
    pub async fn poll(&self) -> Result<bool, ApiError> {
        let jobs = self
            .api
            .list_jobs(&JobsQuery {
                limit: Some(FOLLOWED),
                ..JobsQuery::default()
            })
            .await?;
        let changes = self.with(|s| s.update(&jobs));
        let changed = !changes.changed.is_empty() || !changes.removed.is_empty();
        for job in changes.changed {
            self.bus.publish(Event::JobChanged { job });
        }
        for id in changes.removed {
            self.bus.publish(Event::JobRemoved { job_id: id });
        }
        Ok(changed)
    }

    /// Asks the running feed for a poll now.
    pub fn poke(&self) {
        self.poke.notify_one();
    }

    /// The jobs as of the last poll, newest first (empty before the first).
    pub fn jobs(&self) -> Vec<JobView> {
        self.with(|s| s.list())
    }

    fn with<T>(&self, f: impl FnOnce(&mut JobSnapshot) -> T) -> T {
        let mut guard = match self.snapshot.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(&mut guard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, status: &str, progress: Option<f64>) -> Job {
        serde_json::from_value(serde_json::json!({
            "id": id, "status": status, "title": format!("Book {id}"),
            "progress_percent": progress, "created_at": format!("2026-11-28T00:00:0{id}Z"),
        }))
        .expect("a job")
    }

    #[test]
    fn snapshot_reports_new_changed_and_removed_jobs_once() {
        let mut s = JobSnapshot::default();
        let first = s.update(&[
            job("1", "processing", Some(10.0)),
            job("2", "completed", None),
        ]);
        assert_eq!(first.changed.len(), 2);
        assert!(s.any_active());
        let same = s.update(&[
            job("1", "processing", Some(10.0)),
            job("2", "completed", None),
        ]);
        assert_eq!(same, JobChanges::default());
        let moved = s.update(&[job("1", "completed", Some(100.0))]);
        assert_eq!(moved.changed.len(), 1);
        assert_eq!(moved.changed[0].status, "completed");
        assert_eq!(moved.removed, vec!["2".to_string()]);
        assert!(!s.any_active());
        assert_eq!(s.list().len(), 1);
    }

    #[test]
    fn schedule_is_quick_while_active_and_backs_off_when_idle_or_failing() {
        let mut p = PollSchedule::default();
        assert_eq!(p.next(true, false, false), ACTIVE_INTERVAL);
        assert_eq!(p.next(false, false, false), IDLE_FIRST);
        assert_eq!(p.next(false, false, false), IDLE_FIRST * 2);
        assert_eq!(p.next(false, false, true), IDLE_FIRST * 4);
        for _ in 0..10 {
            p.next(false, false, true);
        }
        assert_eq!(p.next(false, false, true), IDLE_MAX);
        p.reset();
        assert_eq!(p.next(false, false, false), IDLE_FIRST);
        assert_eq!(p.next(false, true, false), IDLE_FIRST);
    }
}

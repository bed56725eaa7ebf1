//! Sync planning: given what the server says about this account's jobs and what the
//! catalog holds, which books to download and which to mark "only on this computer".
//! When to look at the server is the job feed's (`crate::jobs`), not this module's.
//!
//! The rules (docs/library.md):
//! - a completed job that is not in the library (and not already being downloaded) is
//!   downloaded;
//! - a catalogued book of this account whose job is no longer listed (only judged when
//!   the whole list was read), or whose audio answered 404 / `NoSuchKey`, is marked
//!   "only on this computer";
//! - such a book listed as completed again becomes "available" again;
//! - a sync never removes anything: there is no such action.
//!
//! This module is pure: it never does I/O except [`SyncPlan::apply_marks`], which writes
//! the marks into the catalog. The shells run the downloads and drive the schedule.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::LibraryError;
use super::catalog::{Book, Catalog, ServerState};

/// A job as the sync needs it (from `GET /jobs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerJob {
    pub id: String,
    /// pending, processing, completed, failed or cancelled.
    pub status: String,
    pub title: String,
    pub author: Option<String>,
    /// The job's `audio_format`, if it says.
    pub audio_format: Option<String>,
    /// The whole book's object key (its extension tells the format when `audio_format`
    /// does not).
    pub audio_path: Option<String>,
    pub file_size_bytes: Option<u64>,
    pub duration_seconds: Option<i64>,
}

impl ServerJob {
    pub fn is_completed(&self) -> bool {
        self.status == "completed"
    }

    /// The extension for the whole-book file: from `audio_path`, else `audio_format`,
    /// else `mp3`.
    pub fn format(&self) -> String {
        self.audio_path
            .as_deref()
            .and_then(super::layout::extension_of)
            .or_else(|| {
                self.audio_format
                    .as_deref()
                    .and_then(super::layout::sanitize_extension)
            })
            .unwrap_or_else(|| "mp3".into())
    }
}

impl From<&crate::api::Job> for ServerJob {
    fn from(j: &crate::api::Job) -> Self {
        ServerJob {
            id: j.id.clone(),
            status: j.status.clone(),
            title: j.title.clone(),
            author: j.author.clone(),
            audio_format: j.audio_format.clone(),
            audio_path: j.audio_path.clone(),
            file_size_bytes: j.file_size_bytes.and_then(|s| u64::try_from(s).ok()),
            duration_seconds: j.duration_seconds,
        }
    }
}

/// What the server said in one sync round.
#[derive(Debug, Clone, Default)]
pub struct ServerView {
    /// The signed-in account's user id.
    pub account: String,
    /// The jobs listed.
    pub jobs: Vec<ServerJob>,
    /// Every page of the list was read: only then does "not listed" mean "gone".
    pub complete: bool,
    /// Jobs whose audio answered 404 / `NoSuchKey` (or whose job answered 404).
    pub gone: HashSet<String>,
    /// Jobs already queued or downloading (not planned again).
    pub in_flight: HashSet<String>,
}

/// Why a book is now only on this computer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GoneReason {
    /// The job is no longer in the account's job list (deleted).
    NotListed,
    /// The server answered 404 / `NoSuchKey` for the job or its audio (expired).
    AudioGone,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SyncPlan {
    /// Completed jobs not yet in the library, oldest listed first.
    pub download: Vec<ServerJob>,
    /// Catalogued books the server no longer has.
    pub mark_only_local: Vec<(String, GoneReason)>,
    /// Catalogued books marked only-local that the server lists as completed again.
    pub mark_available: Vec<String>,
    /// Catalogued books of this account that need nothing.
    pub unchanged: usize,
}

impl SyncPlan {
    /// Nothing to download and nothing to mark.
    pub fn is_empty(&self) -> bool {
        self.download.is_empty()
            && self.mark_only_local.is_empty()
            && self.mark_available.is_empty()
    }

    /// Writes the server-state marks into the catalog (downloads are the caller's).
    pub fn apply_marks(&self, catalog: &Catalog) -> Result<(), LibraryError> {
        for (id, _) in &self.mark_only_local {
            catalog.set_server_state(id, ServerState::OnlyLocal)?;
        }
        for id in &self.mark_available {
            catalog.set_server_state(id, ServerState::Available)?;
        }
        Ok(())
    }
}

/// Plans one sync round. Books of other accounts (and books without an account) are only
/// marked on an explicit "gone" answer; they are never judged by this account's list.
pub fn plan_sync(books: &[Book], server: &ServerView) -> SyncPlan {
    let local: HashMap<&str, &Book> = books.iter().map(|b| (b.job_id.as_str(), b)).collect();
    let listed: HashMap<&str, &ServerJob> =
        server.jobs.iter().map(|j| (j.id.as_str(), j)).collect();
    let mut plan = SyncPlan::default();
    let mut planned = HashSet::new();
    for job in &server.jobs {
        if job.is_completed()
            && !local.contains_key(job.id.as_str())
            && !server.in_flight.contains(&job.id)
            && !server.gone.contains(&job.id)
            && planned.insert(job.id.as_str())
        {
            plan.download.push(job.clone());
        }
    }
    for book in books {
        let mine = book.account.as_deref() == Some(server.account.as_str());
        let gone = if server.gone.contains(&book.job_id) {
            Some(GoneReason::AudioGone)
        } else if mine && server.complete && !listed.contains_key(book.job_id.as_str()) {
            Some(GoneReason::NotListed)
        } else {
            None
        };
        match (gone, book.server_state) {
            (Some(reason), ServerState::Available) => {
                plan.mark_only_local.push((book.job_id.clone(), reason))
            }
            (None, ServerState::OnlyLocal)
                if listed
                    .get(book.job_id.as_str())
                    .is_some_and(|j| j.is_completed()) =>
            {
                plan.mark_available.push(book.job_id.clone())
            }
            _ if mine => plan.unchanged += 1,
            _ => {}
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::library::catalog::{Book, FileRecord};

    fn job(id: &str, status: &str) -> ServerJob {
        ServerJob {
            id: id.into(),
            status: status.into(),
            title: format!("Title {id}"),
            author: Some("A".into()),
            audio_format: Some("mp3".into()),
            audio_path: None,
            file_size_bytes: Some(10),
            duration_seconds: Some(5),
        }
    }

    fn book(id: &str, account: Option<&str>, state: ServerState) -> Book {
        Book {
            job_id: id.into(),
            account: account.map(str::to_string),
            title: id.into(),
            author: None,
            format: "mp3".into(),
            duration_seconds: None,
            book_dir: format!("A/{id}"),
            chapters_dir: None,
            book_file: Some(FileRecord {
                rel_path: format!("A/{id}/{id}.mp3"),
                size: 1,
                md5: None,
                etag: None,
            }),
            tracks: vec![],
            size_bytes: 1,
            server_state: state,
            server_state_at: 0,
            downloaded_at: 0,
            position: None,
        }
    }

    fn view(jobs: Vec<ServerJob>, complete: bool) -> ServerView {
        ServerView {
            account: "u1".into(),
            jobs,
            complete,
            ..Default::default()
        }
    }

    #[test]
    fn downloads_completed_jobs_not_yet_local() {
        let books = vec![book("a", Some("u1"), ServerState::Available)];
        let mut v = view(
            vec![
                job("a", "completed"),
                job("b", "completed"),
                job("c", "processing"),
                job("d", "failed"),
                job("e", "completed"),
                job("f", "completed"),
                job("b", "completed"),
            ],
            true,
        );
        v.in_flight.insert("e".into());
        v.gone.insert("f".into());
        let plan = plan_sync(&books, &v);
        assert_eq!(
            plan.download
                .iter()
                .map(|j| j.id.as_str())
                .collect::<Vec<_>>(),
            ["b"]
        );
        assert!(plan.mark_only_local.is_empty());
        assert_eq!(plan.unchanged, 1);
    }

    #[test]
    fn gone_jobs_are_marked_only_local_and_never_removed() {
        let books = vec![
            book("listed", Some("u1"), ServerState::Available),
            book("deleted", Some("u1"), ServerState::Available),
            book("expired", Some("u1"), ServerState::Available),
            book("other-account", Some("u2"), ServerState::Available),
            book("already", Some("u1"), ServerState::OnlyLocal),
            book("back", Some("u1"), ServerState::OnlyLocal),
        ];
        let mut v = view(
            vec![
                job("listed", "completed"),
                job("expired", "completed"),
                job("back", "completed"),
            ],
            true,
        );
        v.gone.insert("expired".into());
        let plan = plan_sync(&books, &v);
        assert_eq!(
            plan.mark_only_local,
            [
                ("deleted".to_string(), GoneReason::NotListed),
                ("expired".to_string(), GoneReason::AudioGone)
            ]
        );
        assert_eq!(plan.mark_available, ["back"]);
        assert!(plan.download.is_empty());
        assert_eq!(plan.unchanged, 2, "listed and already");

        // A partial list proves nothing about unlisted jobs.
        let partial = plan_sync(&books, &view(vec![job("listed", "completed")], false));
        assert!(partial.mark_only_local.is_empty(), "{partial:?}");
        // An empty complete list (everything deleted) marks, never removes.
        let empty = plan_sync(&books, &view(vec![], true));
        assert_eq!(empty.mark_only_local.len(), 3);
        assert!(empty.download.is_empty());
    }

    #[test]
    fn marks_are_written_to_the_catalog() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(&dir.path().join("state.db")).unwrap();
        let mut b = crate::library::catalog::tests::sample("j1", "T", "A");
        b.account = Some("u1".into());
        cat.upsert_book(&b).unwrap();
        let plan = plan_sync(&cat.list().unwrap(), &view(vec![], true));
        plan.apply_marks(&cat).unwrap();
        assert_eq!(cat.show("j1").unwrap().server_state, ServerState::OnlyLocal);
        let plan = plan_sync(
            &cat.list().unwrap(),
            &view(vec![job("j1", "completed")], true),
        );
        assert_eq!(plan.mark_available, ["j1"]);
        plan.apply_marks(&cat).unwrap();
        assert_eq!(cat.show("j1").unwrap().server_state, ServerState::Available);
        assert_eq!(cat.list().unwrap().len(), 1);
    }

    #[test]
    fn format_comes_from_the_key_then_the_job() {
        let mut j = job("a", "completed");
        j.audio_path = Some("audiobooks/u/a/Book_COMPLETE.wav".into());
        assert_eq!(j.format(), "wav");
        j.audio_path = None;
        j.audio_format = Some("../x".into());
        assert_eq!(j.format(), "mp3");
    }
}

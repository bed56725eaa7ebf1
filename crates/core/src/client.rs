//! [`Client`]: one profile's client as a long-running shell (the desktop app) needs it —
//! the endpoints, the session, the engine API, the event bus and, while someone is signed
//! in, that account's [`AccountScope`]: its upload queue (running in the background) and
//! its job feed. Each app command is one call on it.
//!
//! It owns the composition and the switch of accounts: signing in opens the account's
//! scope and starts its background work; signing out (or the server ending the session)
//! stops it, leaving every transfer resumable. The rules stay in the modules it composes
//! (auth, queue, transfer, jobs); it never persists anything itself and never hands a
//! token or a URL to its callers. The CLI, which runs one command and exits, uses those
//! modules directly.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::api::request::SessionTokens;
use crate::api::uploads::JobOptions;
use crate::api::{ApiClient, ApiError};
use crate::auth::{Account, AuthError, OAuthOptions, SessionManager, SessionStatus, SignUp};
use crate::config::{Paths, Profile};
use crate::downloads::{
    DownloadChoice, DownloadItem, DownloadQueue, DownloadQueueError, EnqueueReport, SyncReport,
};
use crate::error::{CoreError, ErrorCode};
use crate::events::{Event, EventBus};
use crate::jobs::{JobFeed, JobView};
use crate::library::{
    Book, FileRef, Library, LibraryError, LibraryStats, MediaServer, Position, RemoveReport,
};
use crate::queue::{QueueError, QueueItem, QueueRunner};
use crate::watch::{
    Activity, AfterUpload, FolderConfig, WatchError, WatchService, WatchStore, WatchedFolder,
};

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Library(#[from] LibraryError),
    #[error(transparent)]
    Watch(#[from] WatchError),
    #[error(transparent)]
    Downloads(#[from] DownloadQueueError),
}

impl CoreError for ClientError {
    fn code(&self) -> ErrorCode {
        match self {
            ClientError::Auth(e) => e.code(),
            ClientError::Api(e) => e.code(),
            ClientError::Queue(e) => e.code(),
            ClientError::Config(e) => e.code(),
            ClientError::Library(e) => e.code(),
            ClientError::Watch(e) => e.code(),
            ClientError::Downloads(e) => e.code(),
        }
    }
}

/// An error as the shells receive it: a stable code to react to and words to show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ErrorView {
    pub code: String,
    pub message: String,
}

impl<E: CoreError> From<&E> for ErrorView {
    fn from(e: &E) -> Self {
        Self {
            code: e.code().as_str().to_string(),
            message: e.to_string(),
        }
    }
}

/// Who is signed in, as the app shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SessionView {
    pub profile: String,
    pub signed_in: bool,
    pub email: Option<String>,
    /// Set when the sign-in lasts this run only (no OS keyring): the banner's words.
    pub not_remembered: Option<String>,
    /// Why the last session ended, when the server ended it.
    pub ended_reason: Option<String>,
}

impl SessionView {
    fn from_status(status: &SessionStatus) -> Self {
        match status {
            SessionStatus::SignedIn(a) => Self::signed_in(a),
            SessionStatus::SignedOut { profile, reason } => Self {
                profile: profile.clone(),
                signed_in: false,
                email: None,
                not_remembered: None,
                ended_reason: reason.map(|r| r.describe().to_string()),
            },
        }
    }

    fn signed_in(a: &Account) -> Self {
        Self {
            profile: a.profile.clone(),
            signed_in: true,
            email: Some(a.email.clone()),
            not_remembered: a.not_remembered_message(),
            ended_reason: None,
        }
    }
}

/// What signing up did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SignUpView {
    SignedIn {
        session: SessionView,
    },
    /// The server emails a confirmation link first.
    ConfirmationSent {
        email: String,
    },
}

/// Versions and the places where Rohimaya keeps things, for Settings → About.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct AboutView {
    pub version: String,
    pub profile: String,
    pub api_url: String,
    pub config_dir: String,
    pub data_dir: String,
    pub library_dir: String,
    pub logs_dir: String,
}

/// What the player needs for one book: loopback URLs (with the per-run token) for the
/// whole-book file and each chapter, and where the listener left off.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct PlaybackView {
    pub job_id: String,
    pub book_url: Option<String>,
    pub chapters: Vec<ChapterView>,
    pub position: Option<Position>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ChapterView {
    pub number: u32,
    pub title: String,
    pub duration_seconds: Option<f64>,
    pub url: String,
}

/// A folder the user asks to watch, from the app.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct WatchFolderRequest {
    pub path: PathBuf,
    pub recursive: bool,
    pub after_upload: AfterUpload,
    /// Job defaults for files from this folder (voice, format, mode, author).
    pub options: JobOptions,
    /// Extra ignore patterns, gitignore syntax.
    pub ignore: Vec<String>,
}

/// One file offered for upload and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct UploadOffer {
    pub path: String,
    /// The queue item, when accepted.
    pub transfer_id: Option<String>,
    /// Why not, when refused (not a manuscript, a duplicate, unreadable, ...).
    pub error: Option<ErrorView>,
}

/// What the user does to one transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum TransferAction {
    Pause,
    Resume,
    Cancel,
    Retry,
}

/// What the user does to one narration job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum JobAction {
    Cancel,
    Retry,
    Delete,
}

/// Where the app goes after a notification's button was pressed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(tag = "view", rename_all = "snake_case")]
pub enum AlertFollowUp {
    /// The transfers, where the download just queued shows.
    Transfers,
    /// The book in the library, playing when `play`.
    Book { job_id: String, play: bool },
}

/// The signed-in account's background work.
pub struct AccountScope {
    pub account: Account,
    pub queue: Arc<QueueRunner>,
    pub jobs: Arc<JobFeed>,
    /// The download queue (`None` when the library cannot be opened).
    pub downloads: Option<Arc<DownloadQueue>>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl AccountScope {
    async fn close(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// One profile's client.
pub struct Client {
    paths: Paths,
    profile: Profile,
    session: SessionManager,
    api: ApiClient,
    bus: EventBus,
    scope: Mutex<Option<Arc<AccountScope>>>,
    /// The offline library: usable signed out and offline.
    library: Result<Arc<Library>, LibraryError>,
    /// Started on first use.
    media: tokio::sync::OnceCell<MediaServer>,
}

impl Client {
    /// A client for `profile`; nothing runs until [`Client::start`].
    pub fn new(paths: Paths, profile: Profile, bus: EventBus) -> Self {
        let session = SessionManager::for_profile(&profile, &paths);
        let api = ApiClient::new(&profile.endpoints).with_session(session.clone());
        let library = Library::for_paths(&paths).map(Arc::new);
        if let Err(e) = &library {
            tracing::error!(
                code = e.code().as_str(),
                "the library cannot be opened: {e}"
            );
        }
        Self {
            paths,
            profile,
            session,
            api,
            bus,
            scope: Mutex::new(None),
            library,
            media: tokio::sync::OnceCell::new(),
        }
    }

    pub fn bus(&self) -> &EventBus {
        &self.bus
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// Restores the remembered session (if any) and starts its background work.
    pub async fn start(&self) -> SessionView {
        let status = self.session.restore().await;
        if let SessionStatus::SignedIn(account) = &status
            && let Err(e) = self.open_scope(account.clone()).await
        {
            tracing::error!(code = e.code().as_str(), "cannot open the account: {e}");
        }
        SessionView::from_status(&status)
    }

    /// The current session.
    pub async fn session(&self) -> SessionView {
        SessionView::from_status(&self.session.status().await)
    }

    pub async fn sign_in_with_password(
        &self,
        email: &str,
        password: &str,
    ) -> Result<SessionView, ClientError> {
        let account = self.session.sign_in_with_password(email, password).await?;
        self.signed_in(account).await
    }

    pub async fn sign_up(&self, email: &str, password: &str) -> Result<SignUpView, ClientError> {
        match self.session.sign_up(email, password).await? {
            SignUp::SignedIn(account) => Ok(SignUpView::SignedIn {
                session: self.signed_in(account).await?,
            }),
            SignUp::ConfirmationSent { email } => Ok(SignUpView::ConfirmationSent { email }),
        }
    }

    pub async fn send_email_code(&self, email: &str) -> Result<(), ClientError> {
        Ok(self.session.send_email_code(email).await?)
    }

    pub async fn sign_in_with_email_code(
        &self,
        email: &str,
        code: &str,
    ) -> Result<SessionView, ClientError> {
        let account = self.session.sign_in_with_email_code(email, code).await?;
        self.signed_in(account).await
    }

    /// Signs in with `provider` in the system browser (`open` shows the URL); waits for
    /// the loopback redirect until `cancel` or the timeout.
    pub async fn sign_in_with_oauth(
        &self,
        provider: &str,
        cancel: CancellationToken,
        open: impl FnOnce(&str) + Send,
    ) -> Result<SessionView, ClientError> {
        let options = OAuthOptions {
            cancel,
            ..OAuthOptions::default()
        };
        let account = self
            .session
            .sign_in_with_oauth(provider, options, open)
            .await?;
        self.signed_in(account).await
    }

    /// Signs out: stops the account's background work (transfers stay resumable for the
    /// next sign-in), ends the session on the server and forgets it here.
    pub async fn sign_out(&self) -> SessionView {
        self.close_scope().await;
        let report = self.session.sign_out().await;
        if let Some(p) = &report.server_problem {
            tracing::warn!("sign-out: the server did not confirm: {p}");
        }
        let view = self.session().await;
        self.publish_session(&view);
        view
    }

    /// The signed-in account's scope, or [`AuthError::NotSignedIn`].
    pub async fn scope(&self) -> Result<Arc<AccountScope>, ClientError> {
        if let Some(scope) = self.scope.lock().await.as_ref() {
            return Ok(scope.clone());
        }
        Err(AuthError::NotSignedIn {
            profile: self.profile.name.clone(),
        }
        .into())
    }

    /// Offers `paths` for upload with `options`; each is accepted into the queue or
    /// refused with its reason. Accepted files start as the queue allows.
    pub async fn upload(
        &self,
        paths: &[PathBuf],
        options: &JobOptions,
        force: bool,
    ) -> Result<Vec<UploadOffer>, ClientError> {
        let scope = self.scope().await?;
        let mut offers = Vec::with_capacity(paths.len());
        for path in paths {
            let offer = match scope.queue.enqueue(path, options, force).await {
                Ok(e) => UploadOffer {
                    path: path.display().to_string(),
                    transfer_id: Some(e.id.to_string()),
                    error: None,
                },
                Err(e) => UploadOffer {
                    path: path.display().to_string(),
                    transfer_id: None,
                    error: Some(ErrorView::from(&e)),
                },
            };
            offers.push(offer);
        }
        Ok(offers)
    }

    /// The account's transfers.
    pub async fn transfers(&self) -> Result<Vec<QueueItem>, ClientError> {
        Ok(self.scope().await?.queue.list()?)
    }

    /// The account's jobs as last polled (polls once first if never polled).
    pub async fn jobs(&self) -> Result<Vec<JobView>, ClientError> {
        let scope = self.scope().await?;
        if scope.jobs.jobs().is_empty() {
            scope.jobs.poll().await?;
        }
        Ok(scope.jobs.jobs())
    }

    /// Pauses, resumes, cancels (aborting the server upload) or retries one transfer.
    pub async fn transfer_action(
        &self,
        id: i64,
        action: TransferAction,
    ) -> Result<(), ClientError> {
        let queue = self.scope().await?.queue.clone();
        match action {
            TransferAction::Pause => queue.pause(id)?,
            TransferAction::Resume => queue.resume(id)?,
            TransferAction::Cancel => queue.cancel(id).await?,
            TransferAction::Retry => queue.retry(id)?,
        }
        Ok(())
    }

    /// The global pause of every transfer, on or off.
    pub async fn set_paused(&self, paused: bool) -> Result<(), ClientError> {
        let scope = self.scope().await?;
        if paused {
            scope.queue.pause_all()?;
        } else {
            scope.queue.resume_all()?;
        }
        // The download queue reads the same setting, when woken.
        if let Some(downloads) = &scope.downloads {
            downloads.wake();
        }
        Ok(())
    }

    /// Whether the global pause is on (stored, so it survives restarts).
    pub async fn paused(&self) -> Result<bool, ClientError> {
        let queue = self.scope().await?.queue.clone();
        Ok(queue.store().settings()?.paused)
    }

    /// Cancels, retries or deletes a narration job on the server.
    pub async fn job_action(&self, id: &str, action: JobAction) -> Result<(), ClientError> {
        match action {
            JobAction::Cancel => drop(self.api.cancel_job(id).await?),
            JobAction::Retry => drop(self.api.retry_job(id).await?),
            JobAction::Delete => self.api.delete_job(id).await?,
        }
        self.poke_jobs().await;
        Ok(())
    }

    /// The app's preferences (`[app]` in settings.toml).
    pub fn prefs(&self) -> Result<crate::prefs::AppPrefs, ClientError> {
        Ok(crate::prefs::load(&self.paths)?)
    }

    pub fn set_prefs(&self, prefs: &crate::prefs::AppPrefs) -> Result<(), ClientError> {
        Ok(crate::prefs::save(&self.paths, prefs)?)
    }

    pub fn about(&self) -> AboutView {
        let show = |p: &std::path::Path| p.display().to_string();
        AboutView {
            version: env!("CARGO_PKG_VERSION").to_string(),
            profile: self.profile.name.clone(),
            api_url: self.profile.endpoints.api_url.clone(),
            config_dir: show(&self.paths.config_dir),
            data_dir: show(&self.paths.data_dir),
            library_dir: show(&self.paths.library_dir),
            logs_dir: show(&self.paths.logs_dir()),
        }
    }

    /// The offline library (works signed out and offline).
    pub fn library(&self) -> Result<Arc<Library>, ClientError> {
        self.library.clone().map_err(ClientError::from)
    }

    /// The downloaded books, all or those whose title or author matches `query`.
    pub fn books(&self, query: Option<&str>) -> Result<Vec<Book>, ClientError> {
        let library = self.library()?;
        Ok(match query.map(str::trim).filter(|q| !q.is_empty()) {
            Some(q) => library.catalog().search(q)?,
            None => library.catalog().list()?,
        })
    }

    pub fn library_stats(&self) -> Result<LibraryStats, ClientError> {
        Ok(self.library()?.catalog().stats()?)
    }

    /// Deletes a downloaded book's files and catalog rows (never the server's copy).
    pub fn remove_book(&self, job_id: &str) -> Result<RemoveReport, ClientError> {
        Ok(self.library()?.remove(job_id)?)
    }

    /// The folder of a downloaded book (for "Show in folder").
    pub fn book_folder(&self, job_id: &str) -> Result<PathBuf, ClientError> {
        let library = self.library()?;
        let book = library.catalog().show(job_id)?;
        Ok(library.root().join(&book.book_dir))
    }

    /// What the player needs for `job_id`, starting the playback server on first use.
    pub async fn playback(&self, job_id: &str) -> Result<PlaybackView, ClientError> {
        let library = self.library()?;
        let book = library.catalog().show(job_id)?;
        let media = self
            .media
            .get_or_try_init(|| MediaServer::start(&library))
            .await?;
        let chapters = book
            .tracks
            .iter()
            .filter_map(|t| {
                Some(ChapterView {
                    number: t.number,
                    title: t.title.clone(),
                    duration_seconds: t.duration_seconds,
                    url: media.url_for(job_id, FileRef::Track(t.number))?,
                })
            })
            .collect();
        Ok(PlaybackView {
            job_id: book.job_id.clone(),
            book_url: book
                .book_file
                .as_ref()
                .and_then(|_| media.url_for(job_id, FileRef::Book)),
            chapters,
            position: book.position,
        })
    }

    /// Remembers where the listener is in `job_id` (`track` None: the whole-book file).
    pub fn set_position(
        &self,
        job_id: &str,
        track: Option<u32>,
        seconds: f64,
    ) -> Result<(), ClientError> {
        self.library()?
            .catalog()
            .set_position(job_id, track, seconds)?;
        Ok(())
    }

    /// The watched folders with their state (watching, paused, unavailable and why).
    pub fn watch_folders(&self) -> Result<Vec<WatchedFolder>, ClientError> {
        Ok(self.watch_store()?.folders()?)
    }

    /// Adds a watched folder; the running watcher scans it within seconds.
    pub fn add_watch_folder(&self, req: WatchFolderRequest) -> Result<WatchedFolder, ClientError> {
        let store = self.watch_store()?;
        Ok(crate::watch::add_folder(
            &store,
            FolderConfig {
                path: req.path,
                recursive: req.recursive,
                after_upload: req.after_upload,
                options: req.options,
                ignore: req.ignore,
            },
        )?)
    }

    /// Stops watching `path` (its files and their uploads are left alone).
    pub fn remove_watch_folder(&self, path: &std::path::Path) -> Result<(), ClientError> {
        crate::watch::remove_folder(&self.watch_store()?, path)?;
        Ok(())
    }

    /// Pauses or resumes one folder (`Some`) or all of them.
    pub fn pause_watch(
        &self,
        path: Option<&std::path::Path>,
        paused: bool,
    ) -> Result<(), ClientError> {
        crate::watch::set_paused(&self.watch_store()?, path, paused)?;
        Ok(())
    }

    /// The newest entries of the watched folders' activity log, newest last.
    pub fn watch_activity(&self, limit: usize) -> Result<Vec<Activity>, ClientError> {
        Ok(self.watch_store()?.recent_activity(limit)?)
    }

    fn watch_store(&self) -> Result<WatchStore, ClientError> {
        Ok(WatchStore::open(&self.paths.data_dir.join("state.db"))?)
    }

    /// Queues `job_id`'s audiobook for download into the library (`choice`: the whole
    /// book, the chapter tracks, or both). Idempotent: files already local or queued are
    /// counted in `already`.
    pub async fn download(
        &self,
        job_id: &str,
        choice: DownloadChoice,
    ) -> Result<EnqueueReport, ClientError> {
        let downloads = self.downloads().await?;
        let job = self.api.job(job_id).await?;
        Ok(downloads.enqueue_job(&job, choice).await?)
    }

    /// Carries out a notification's button on `job_id`'s finished audiobook: a book
    /// already in the library is opened (and played for "Play"); otherwise it is queued
    /// for download and the transfers are shown.
    pub async fn alert_action(
        &self,
        action: crate::alerts::AlertAction,
        job_id: &str,
    ) -> Result<AlertFollowUp, ClientError> {
        let local = self.library()?.catalog().get(job_id)?.is_some();
        if local {
            return Ok(AlertFollowUp::Book {
                job_id: job_id.to_string(),
                play: action == crate::alerts::AlertAction::Play,
            });
        }
        self.download(job_id, DownloadChoice::default()).await?;
        Ok(AlertFollowUp::Transfers)
    }

    /// The account's downloads (every file, oldest first).
    pub async fn download_list(&self) -> Result<Vec<DownloadItem>, ClientError> {
        Ok(self.downloads().await?.list()?)
    }

    /// Pauses, resumes, cancels (deleting its `.part`) or retries one download.
    pub async fn download_action(
        &self,
        id: i64,
        action: TransferAction,
    ) -> Result<(), ClientError> {
        let downloads = self.downloads().await?;
        match action {
            TransferAction::Pause => downloads.pause(id)?,
            TransferAction::Resume => downloads.resume(id)?,
            TransferAction::Cancel => downloads.cancel(id)?,
            TransferAction::Retry => downloads.retry(id)?,
        }
        Ok(())
    }

    /// Compares the library with the server: queues completed jobs not yet local, marks
    /// books the server dropped "only on this computer". Never deletes anything.
    pub async fn sync_library(&self) -> Result<SyncReport, ClientError> {
        let downloads = self.downloads().await?;
        let (jobs, complete) = crate::downloads::server_jobs(&self.api).await?;
        Ok(downloads.sync(&jobs, complete, false).await?)
    }

    /// Verifies the library and queues the missing or changed files again.
    pub async fn repair_library(&self) -> Result<Vec<i64>, ClientError> {
        Ok(self.downloads().await?.repair()?)
    }

    async fn downloads(&self) -> Result<Arc<DownloadQueue>, ClientError> {
        let scope = self.scope().await?;
        match &scope.downloads {
            Some(d) => Ok(d.clone()),
            None => Err(match self.library() {
                Err(e) => e,
                Ok(_) => DownloadQueueError::Db {
                    path: self.paths.data_dir.join("state.db"),
                    reason: "it could not be opened at sign-in (see the log)".into(),
                }
                .into(),
            }),
        }
    }

    /// Stops the background work (the app is quitting); transfers stay resumable.
    pub async fn shutdown(&self) {
        self.close_scope().await;
    }

    async fn poke_jobs(&self) {
        if let Some(scope) = self.scope.lock().await.as_ref() {
            scope.jobs.poke();
        }
    }

    async fn signed_in(&self, account: Account) -> Result<SessionView, ClientError> {
        self.open_scope(account.clone()).await?;
        let view = SessionView::signed_in(&account);
        self.publish_session(&view);
        Ok(view)
    }

    fn publish_session(&self, view: &SessionView) {
        self.bus.publish(Event::SessionChanged {
            signed_in: view.signed_in,
            email: view.email.clone(),
            reason: view.ended_reason.clone(),
        });
    }

    /// Opens `account`'s scope (closing another account's first) and starts its queue
    /// runner and job feed.
    async fn open_scope(&self, account: Account) -> Result<(), ClientError> {
        let mut slot = self.scope.lock().await;
        if let Some(current) = slot.as_ref()
            && current.account.user_id == account.user_id
        {
            return Ok(());
        }
        if let Some(old) = slot.take()
            && let Ok(old) = Arc::try_unwrap(old)
        {
            old.close().await;
        }
        let queue = Arc::new(QueueRunner::open(
            &self.paths.data_dir,
            &self.profile.endpoints,
            Arc::new(SessionTokens(self.session.clone())),
            account.user_id.clone(),
            self.bus.clone(),
        )?);
        let jobs = Arc::new(JobFeed::new(self.api.clone(), self.bus.clone()));
        let downloads = match &self.library {
            Ok(library) => match DownloadQueue::open(
                &self.paths.data_dir,
                library.clone(),
                &self.profile.endpoints,
                Arc::new(SessionTokens(self.session.clone())),
                account.user_id.clone(),
                self.bus.clone(),
                // One limit for uploads and downloads.
                queue.session().limiter.clone(),
            ) {
                Ok(d) => Some(Arc::new(d)),
                Err(e) => {
                    tracing::error!(code = e.code().as_str(), "no download queue: {e}");
                    None
                }
            },
            Err(_) => None,
        };
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        if let Some(downloads) = &downloads {
            let (d, stop_run) = (downloads.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                if let Err(e) = d.run(&stop_run).await {
                    tracing::error!(code = e.code().as_str(), "download queue stopped: {e}");
                }
            }));
            tasks.push(tokio::spawn(auto_download(
                downloads.clone(),
                self.api.clone(),
                self.paths.clone(),
                self.bus.subscribe(),
                stop.clone(),
            )));
        }
        {
            let (queue, stop) = (queue.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                if let Err(e) = queue.run(&stop).await {
                    tracing::error!(code = e.code().as_str(), "upload queue stopped: {e}");
                }
            }));
        }
        {
            let (jobs, stop) = (jobs.clone(), stop.clone());
            tasks.push(tokio::spawn(async move { jobs.run(&stop).await }));
        }
        // Watched folders feed the same queue while someone is signed in; files that
        // arrive meanwhile are found by the scan at the next start.
        match self.watch_store().and_then(|store| {
            Ok(WatchService::new(
                store,
                Some(queue.clone()),
                self.bus.clone(),
            )?)
        }) {
            Ok(watcher) => {
                let stop = stop.clone();
                tasks.push(tokio::spawn(async move {
                    if let Err(e) = watcher.run(&stop).await {
                        tracing::error!(code = e.code().as_str(), "watched folders stopped: {e}");
                    }
                }));
            }
            Err(e) => tracing::error!(code = e.code().as_str(), "watched folders: {e}"),
        }
        // A job is created when an upload completes: poll at once instead of waiting.
        {
            let (jobs, stop, mut rx) = (jobs.clone(), stop.clone(), self.bus.subscribe());
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        event = rx.recv() => match event {
                            Ok(Event::TransferState { state: crate::events::TransferState::Completed, .. }) => jobs.poke(),
                            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                        }
                    }
                }
            }));
        }
        *slot = Some(Arc::new(AccountScope {
            account,
            queue,
            jobs,
            downloads,
            stop,
            tasks,
        }));
        Ok(())
    }

    async fn close_scope(&self) {
        let scope = self.scope.lock().await.take();
        if let Some(scope) = scope {
            scope.stop.cancel();
            match Arc::try_unwrap(scope) {
                Ok(scope) => scope.close().await,
                // A command still holds it: its tasks stop on the token all the same.
                Err(_) => tracing::debug!("account scope still referenced; stopped by token"),
            }
        }
    }
}

/// Auto-download (the `auto_download` preference, read at each step): a startup sync
/// that queues the completed jobs this computer never downloaded, then every job the feed
/// reports completed. Idempotent: a job is looked at once per sign-in, and enqueueing
/// skips files already local or queued.
async fn auto_download(
    downloads: Arc<DownloadQueue>,
    api: ApiClient,
    paths: Paths,
    mut rx: tokio::sync::broadcast::Receiver<Event>,
    stop: CancellationToken,
) {
    use tokio::sync::broadcast::error::RecvError;
    let enabled = || {
        crate::prefs::load(&paths)
            .map(|p| p.auto_download)
            .unwrap_or(true)
    };
    let mut seen = std::collections::HashSet::new();
    if enabled() {
        let synced = tokio::select! {
            () = stop.cancelled() => return,
            r = crate::downloads::server_jobs(&api) => r,
        };
        match synced {
            Ok((jobs, complete)) => {
                seen.extend(
                    jobs.iter()
                        .filter(|j| j.status == "completed")
                        .map(|j| j.id.clone()),
                );
                if let Err(e) = downloads.sync(&jobs, complete, true).await {
                    tracing::warn!(code = e.code().as_str(), "library sync: {e}");
                }
            }
            Err(e) => tracing::info!(code = e.code().as_str(), "library sync skipped: {e}"),
        }
    }
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => return,
            e = rx.recv() => e,
        };
        let job_id = match event {
            Ok(Event::JobChanged { job }) if job.status == "completed" => job.id,
            Ok(_) | Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        };
        if !enabled() || !seen.insert(job_id.clone()) {
            continue;
        }
        let result = async {
            let job = api.job(&job_id).await.map_err(ClientError::from)?;
            downloads
                .enqueue_job(&job, DownloadChoice::All)
                .await
                .map_err(ClientError::from)
        };
        let result = tokio::select! {
            () = stop.cancelled() => return,
            r = result => r,
        };
        if let Err(e) = result {
            // Looked at again on the next sign-in or sync.
            seen.remove(&job_id);
            tracing::warn!(
                code = e.code().as_str(),
                "auto-download of job {job_id}: {e}"
            );
        }
    }
}

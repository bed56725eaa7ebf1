//! The Tauri commands the webview may call. Each is a few lines over one core call;
//! their argument and result types come from rohimaya-core and are exported to
//! `ui/src/bindings/`. Errors reach the webview as `ErrorView { code, message }`.

use std::path::PathBuf;

use rohimaya_core::api::uploads::JobOptions;
use rohimaya_core::client::{
    AboutView, ErrorView, JobAction, PlaybackView, SessionView, SignUpView, TransferAction,
    UploadOffer, WatchFolderRequest,
};
use rohimaya_core::downloads::{DownloadChoice, DownloadItem, EnqueueReport, SyncReport};
use rohimaya_core::jobs::JobView;
use rohimaya_core::library::{Book, LibraryStats, RemoveReport};
use rohimaya_core::prefs::AppPrefs;
use rohimaya_core::queue::{CancellationToken, QueueItem};
use rohimaya_core::status::BackendStatus;
use rohimaya_core::watch::{Activity, WatchedFolder};
use tauri::{AppHandle, State};
use tauri_plugin_autostart::ManagerExt;

use crate::shell::Shell;

type Answer<T> = Result<T, ErrorView>;

fn view<T, E: rohimaya_core::CoreError>(r: Result<T, E>) -> Answer<T> {
    r.map_err(|e| ErrorView::from(&e))
}

/// Which backend the app uses and whether its engine answers `/health`. Never fails: an
/// unreachable backend is reported in the status.
#[tauri::command]
pub async fn backend_status(shell: State<'_, Shell>) -> Answer<BackendStatus> {
    Ok(shell.backend.status().await)
}

#[tauri::command]
pub async fn session(shell: State<'_, Shell>) -> Answer<SessionView> {
    Ok(shell.client()?.session().await)
}

#[tauri::command]
pub async fn sign_in(
    shell: State<'_, Shell>,
    email: String,
    password: String,
) -> Answer<SessionView> {
    view(
        shell
            .client()?
            .sign_in_with_password(&email, &password)
            .await,
    )
}

#[tauri::command]
pub async fn sign_up(
    shell: State<'_, Shell>,
    email: String,
    password: String,
) -> Answer<SignUpView> {
    view(shell.client()?.sign_up(&email, &password).await)
}

#[tauri::command]
pub async fn send_email_code(shell: State<'_, Shell>, email: String) -> Answer<()> {
    view(shell.client()?.send_email_code(&email).await)
}

#[tauri::command]
pub async fn sign_in_with_code(
    shell: State<'_, Shell>,
    email: String,
    code: String,
) -> Answer<SessionView> {
    view(shell.client()?.sign_in_with_email_code(&email, &code).await)
}

/// Signs in with `provider` in the system browser; [`cancel_browser_sign_in`] stops the
/// wait.
#[tauri::command]
pub async fn sign_in_with_browser(
    shell: State<'_, Shell>,
    provider: String,
) -> Answer<SessionView> {
    let cancel = CancellationToken::new();
    shell.set_oauth_cancel(Some(cancel.clone()));
    let result = shell
        .client()?
        .sign_in_with_oauth(&provider, cancel, |url| {
            if let Err(e) = rohimaya_core::auth::open_in_system_browser(url) {
                tracing::warn!("cannot open the browser: {e}");
            }
        })
        .await;
    shell.set_oauth_cancel(None);
    view(result)
}

#[tauri::command]
pub fn cancel_browser_sign_in(shell: State<'_, Shell>) {
    shell.set_oauth_cancel(None);
}

#[tauri::command]
pub async fn sign_out(shell: State<'_, Shell>) -> Answer<SessionView> {
    Ok(shell.client()?.sign_out().await)
}

/// Offers files (from the drop zone or the file dialog) for upload.
#[tauri::command]
pub async fn upload_files(
    shell: State<'_, Shell>,
    paths: Vec<PathBuf>,
    options: JobOptions,
    force: bool,
) -> Answer<Vec<UploadOffer>> {
    view(shell.client()?.upload(&paths, &options, force).await)
}

#[tauri::command]
pub async fn transfers(shell: State<'_, Shell>) -> Answer<Vec<QueueItem>> {
    view(shell.client()?.transfers().await)
}

#[tauri::command]
pub async fn transfer_action(
    shell: State<'_, Shell>,
    id: i64,
    action: TransferAction,
) -> Answer<()> {
    view(shell.client()?.transfer_action(id, action).await)
}

/// `paused`: the global pause on or off.
#[tauri::command]
pub async fn pause_all(shell: State<'_, Shell>, paused: bool) -> Answer<()> {
    view(shell.client()?.set_paused(paused).await)
}

/// Whether the global pause is on.
#[tauri::command]
pub async fn transfers_paused(shell: State<'_, Shell>) -> Answer<bool> {
    view(shell.client()?.paused().await)
}

#[tauri::command]
pub async fn jobs(shell: State<'_, Shell>) -> Answer<Vec<JobView>> {
    view(shell.client()?.jobs().await)
}

#[tauri::command]
pub async fn job_action(shell: State<'_, Shell>, id: String, action: JobAction) -> Answer<()> {
    view(shell.client()?.job_action(&id, action).await)
}

#[tauri::command]
pub async fn prefs(shell: State<'_, Shell>) -> Answer<AppPrefs> {
    view(shell.client()?.prefs())
}

#[tauri::command]
pub async fn set_prefs(shell: State<'_, Shell>, prefs: AppPrefs) -> Answer<()> {
    view(shell.client()?.set_prefs(&prefs))
}

#[tauri::command]
pub async fn about(shell: State<'_, Shell>) -> Answer<AboutView> {
    Ok(shell.client()?.about())
}

/// Opens the logs folder in the file manager.
#[tauri::command]
pub async fn open_logs(shell: State<'_, Shell>) -> Answer<()> {
    let dir = shell.client()?.paths().logs_dir();
    tauri_plugin_opener::open_path(dir.display().to_string(), None::<&str>).map_err(|e| ErrorView {
        code: rohimaya_core::ErrorCode::FileUnreadable
            .as_str()
            .to_string(),
        message: format!("cannot open {}: {e}", dir.display()),
    })
}

/// Whether Rohimaya starts at login (the OS's setting, through the autostart plugin).
#[tauri::command]
pub fn start_at_login(app: AppHandle) -> bool {
    app.autolaunch().is_enabled().unwrap_or(false)
}

#[tauri::command]
pub fn set_start_at_login(app: AppHandle, enabled: bool) -> Answer<()> {
    let launcher = app.autolaunch();
    let result = if enabled {
        launcher.enable()
    } else {
        launcher.disable()
    };
    result.map_err(|e| ErrorView {
        code: rohimaya_core::ErrorCode::ConfigUnreadable
            .as_str()
            .to_string(),
        message: format!("cannot change starting at login: {e}"),
    })
}

/// The downloaded books (all, or matching `query`). Works signed out and offline.
#[tauri::command]
pub async fn books(shell: State<'_, Shell>, query: Option<String>) -> Answer<Vec<Book>> {
    view(shell.client()?.books(query.as_deref()))
}

#[tauri::command]
pub async fn library_stats(shell: State<'_, Shell>) -> Answer<LibraryStats> {
    view(shell.client()?.library_stats())
}

/// Deletes a downloaded book's files (the UI asks first).
#[tauri::command]
pub async fn remove_book(shell: State<'_, Shell>, job_id: String) -> Answer<RemoveReport> {
    view(shell.client()?.remove_book(&job_id))
}

/// Shows the book's folder in the file manager.
#[tauri::command]
pub async fn show_book_folder(shell: State<'_, Shell>, job_id: String) -> Answer<()> {
    let dir = view(shell.client()?.book_folder(&job_id))?;
    tauri_plugin_opener::reveal_item_in_dir(&dir).map_err(|e| ErrorView {
        code: rohimaya_core::ErrorCode::LibraryFileError
            .as_str()
            .to_string(),
        message: format!("cannot show {}: {e}", dir.display()),
    })
}

/// The player's URLs (loopback, per-run token) and the saved position.
#[tauri::command]
pub async fn playback(shell: State<'_, Shell>, job_id: String) -> Answer<PlaybackView> {
    view(shell.client()?.playback(&job_id).await)
}

#[tauri::command]
pub async fn set_position(
    shell: State<'_, Shell>,
    job_id: String,
    track: Option<u32>,
    seconds: f64,
) -> Answer<()> {
    view(shell.client()?.set_position(&job_id, track, seconds))
}

#[tauri::command]
pub async fn watch_folders(shell: State<'_, Shell>) -> Answer<Vec<WatchedFolder>> {
    view(shell.client()?.watch_folders())
}

#[tauri::command]
pub async fn add_watch_folder(
    shell: State<'_, Shell>,
    request: WatchFolderRequest,
) -> Answer<WatchedFolder> {
    view(shell.client()?.add_watch_folder(request))
}

#[tauri::command]
pub async fn remove_watch_folder(shell: State<'_, Shell>, path: PathBuf) -> Answer<()> {
    view(shell.client()?.remove_watch_folder(&path))
}

/// Pauses or resumes one folder (`path`) or all of them.
#[tauri::command]
pub async fn pause_watch(
    shell: State<'_, Shell>,
    path: Option<PathBuf>,
    paused: bool,
) -> Answer<()> {
    view(shell.client()?.pause_watch(path.as_deref(), paused))
}

#[tauri::command]
pub async fn watch_activity(shell: State<'_, Shell>, limit: usize) -> Answer<Vec<Activity>> {
    view(shell.client()?.watch_activity(limit.min(1000)))
}

/// Queues a completed job's audiobook for download into the library.
#[tauri::command]
pub async fn download(
    shell: State<'_, Shell>,
    job_id: String,
    choice: DownloadChoice,
) -> Answer<EnqueueReport> {
    view(shell.client()?.download(&job_id, choice).await)
}

#[tauri::command]
pub async fn download_list(shell: State<'_, Shell>) -> Answer<Vec<DownloadItem>> {
    view(shell.client()?.download_list().await)
}

#[tauri::command]
pub async fn download_action(
    shell: State<'_, Shell>,
    id: i64,
    action: TransferAction,
) -> Answer<()> {
    view(shell.client()?.download_action(id, action).await)
}

/// Queues the completed jobs not yet in the library; never deletes anything.
#[tauri::command]
pub async fn sync_library(shell: State<'_, Shell>) -> Answer<SyncReport> {
    view(shell.client()?.sync_library().await)
}

/// Verifies the library and queues missing or changed files again (their row ids).
#[tauri::command]
pub async fn repair_library(shell: State<'_, Shell>) -> Answer<Vec<i64>> {
    view(shell.client()?.repair_library().await)
}

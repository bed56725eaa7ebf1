//! The Tauri shell of Rohimaya Desktop: builds the window, registers the commands and
//! ties the backend's lifetime to the app's (started in `setup`, stopped on
//! `RunEvent::Exit`, which Ctrl-C and SIGTERM also lead to). It is thin on purpose: every
//! rule lives in rohimaya-core, and the webview reaches the core only through the
//! commands in [`commands`].

mod alert_actions;
mod backend;
mod commands;
mod forward;
mod shell;
mod startup;
mod tray;
mod webview;

use rohimaya_core::events::EventBus;
use tauri::{Manager, RunEvent, WindowEvent};
use tracing_subscriber::EnvFilter;

use crate::shell::Shell;

/// Runs the app until it quits (the tray's Quit, or the last window closed when the
/// tray is not available). Logging follows `RUST_LOG` (default `info`).
pub fn run() -> Result<(), tauri::Error> {
    startup::mark_process_start();
    let paths = rohimaya_core::config::Paths::from_env();
    let _log_guard = init_logging(&paths);
    let builder = tauri::Builder::default();
    // A second launch focuses the first instead of starting another app (registered
    // first, as the plugin asks).
    #[cfg(any(target_os = "linux", target_os = "macos", target_os = "windows"))]
    let builder = builder
        .plugin(tauri_plugin_single_instance::init(|app, _args, _cwd| {
            tray::show_main(app);
        }))
        .plugin(tauri_plugin_autostart::init(
            tauri_plugin_autostart::MacosLauncher::LaunchAgent,
            None,
        ));
    let app = builder
        .plugin(tauri_plugin_window_state::Builder::default().build())
        .plugin(tauri_plugin_dialog::init())
        .plugin(tauri_plugin_notification::init())
        .plugin(tauri_plugin_opener::init())
        .setup(move |app| {
            webview::paint_on_cpu(app.handle());
            let bus = EventBus::new();
            forward::spawn(app.handle().clone(), &bus);
            let shell = tauri::async_runtime::block_on(Shell::start(paths.clone(), bus));
            app.manage(shell);
            if let Err(e) = tray::install(app.handle()) {
                // Some desktops have no tray: closing the window then quits.
                tracing::warn!("no tray icon: {e}");
            }
            alert_actions::install(app.handle());
            // Ctrl-C or SIGTERM quit like the tray's Quit, so everything stops cleanly.
            let handle = app.handle().clone();
            tauri::async_runtime::spawn(async move {
                quit_signal().await;
                tracing::info!("quit signal received");
                handle.exit(0);
            });
            Ok(())
        })
        .on_window_event(|window, event| {
            // Closing the window keeps the app (uploads, watched folders) in the tray.
            if let WindowEvent::CloseRequested { api, .. } = event
                && window
                    .app_handle()
                    .try_state::<tray::TrayStatus>()
                    .is_some()
            {
                api.prevent_close();
                let _ = window.hide();
            }
        })
        .invoke_handler(tauri::generate_handler![
            commands::backend_status,
            commands::session,
            commands::sign_in,
            commands::sign_up,
            commands::send_email_code,
            commands::sign_in_with_code,
            commands::sign_in_with_browser,
            commands::cancel_browser_sign_in,
            commands::sign_out,
            commands::upload_files,
            commands::transfers,
            commands::transfer_action,
            commands::pause_all,
            commands::transfers_paused,
            commands::jobs,
            commands::job_action,
            commands::prefs,
            commands::set_prefs,
            commands::about,
            commands::open_logs,
            commands::start_at_login,
            commands::set_start_at_login,
            commands::books,
            commands::library_stats,
            commands::remove_book,
            commands::show_book_folder,
            commands::playback,
            commands::set_position,
            commands::watch_folders,
            commands::add_watch_folder,
            commands::remove_watch_folder,
            commands::pause_watch,
            commands::watch_activity,
            commands::download,
            commands::download_list,
            commands::download_action,
            commands::sync_library,
            commands::repair_library,
            startup::ui_ready,
        ])
        .build(tauri::generate_context!())?;
    app.run(|app, event| {
        if let RunEvent::Exit = event
            && let Some(shell) = app.try_state::<Shell>()
        {
            tauri::async_runtime::block_on(shell.shutdown());
        }
    });
    Ok(())
}

/// Resolves on Ctrl-C, and on Unix also on SIGTERM.
async fn quit_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// Logs to stderr and to a daily file in the data directory's `logs/` (Settings → About
/// → Open logs). Level from `RUST_LOG` (default `info`). The returned guard flushes the
/// file on exit. Nothing secret is ever logged (the core redacts URLs; tokens are never
/// formatted).
fn init_logging(
    paths: &rohimaya_core::config::Paths,
) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let stderr = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let (file, guard) = match tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix("rohimaya")
        .filename_suffix("log")
        .max_log_files(7)
        .build(paths.logs_dir())
    {
        Ok(appender) => {
            let (writer, guard) = tracing_appender::non_blocking(appender);
            (
                Some(
                    tracing_subscriber::fmt::layer()
                        .with_ansi(false)
                        .with_writer(writer),
                ),
                Some(guard),
            )
        }
        Err(e) => {
            eprintln!(
                "Rohimaya: no log file in {}: {e}",
                paths.logs_dir().display()
            );
            (None, None)
        }
    };
    // Ignore the error if a subscriber is already set (e.g. by a test harness).
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(file)
        .try_init();
    guard
}

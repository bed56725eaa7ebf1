//! The Tauri shell of Rohimaya Desktop: builds the window, registers the commands and
//! ties the backend's lifetime to the app's (started in `setup`, stopped on
//! `RunEvent::Exit`, which Ctrl-C and SIGTERM also lead to). It is thin on purpose: every
//! rule lives in rohimaya-core, and the webview reaches the core only through the
//! commands in [`commands`].

mod backend;
mod commands;

use tauri::{Manager, RunEvent};
use tracing_subscriber::EnvFilter;

use crate::backend::Backend;

/// Runs the app until its last window closes. Logging follows `RUST_LOG` (default
/// `info`).
pub fn run() -> Result<(), tauri::Error> {
    init_logging();
    let app = tauri::Builder::default()
        .setup(|app| {
            let backend = tauri::async_runtime::block_on(Backend::start(
                &rohimaya_core::config::Paths::from_env(),
            ));
            app.manage(backend);
            // Ctrl-C or SIGTERM quit like closing the window, so the backend stops cleanly.
            let handle = app.handle().clone();
            tauri::async_runtime::spawn(async move {
                quit_signal().await;
                tracing::info!("quit signal received");
                handle.exit(0);
            });
            Ok(())
        })
        .invoke_handler(tauri::generate_handler![commands::backend_status])
        .build(tauri::generate_context!())?;
    app.run(|app, event| {
        if let RunEvent::Exit = event
            && let Some(backend) = app.try_state::<Backend>()
        {
            tauri::async_runtime::block_on(backend.shutdown());
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

fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Ignore the error if a subscriber is already set (e.g. by a test harness).
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}

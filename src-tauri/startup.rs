//! The first-screen mark: the webview calls [`ui_ready`] once, when it has rendered its
//! first real screen (sign-in or the signed-in sections), and the shell logs how long
//! that took since the process started. bench/app_bench.py times launches by this log
//! line. It only measures and logs: it never changes what the window shows.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

static STARTED: OnceLock<Instant> = OnceLock::new();
static READY: AtomicBool = AtomicBool::new(false);

/// Remembers when the process started; call it first thing in `run`.
pub fn mark_process_start() {
    STARTED.get_or_init(Instant::now);
}

/// The first screen the webview rendered.
#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FirstScreen {
    SignIn,
    Main,
}

/// Logs `first screen ready` with the time since the process started, once per run
/// (a reload of the webview does not log again).
#[tauri::command]
pub fn ui_ready(screen: FirstScreen) {
    if READY.swap(true, Ordering::SeqCst) {
        return;
    }
    let elapsed_ms = STARTED.get().map_or(0, |t| {
        u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
    });
    tracing::info!(elapsed_ms, ?screen, "first screen ready");
}

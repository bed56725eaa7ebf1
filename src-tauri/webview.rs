//! How the window's webview draws on Linux: WebKitGTK paints on the CPU instead of
//! compositing through OpenGL. Measured (docs/benchmarks.md, "Frames"): without a GPU
//! driver (Mesa's llvmpipe: virtual machines, remote desktops, Xvfb) every change to the
//! page — one progress bar moving — cost a 100-300 ms frame, and 16 uploads reporting
//! progress dropped the Transfers view to 6 fps; painting on the CPU keeps it at 60 fps.
//! The page has no 3D, video or animation that needs the GPU. `ROHIMAYA_GPU_COMPOSITING=1`
//! keeps WebKit's default. It only sets the webview's drawing mode: it never touches
//! what the page shows.

use tauri::{AppHandle, Manager};

/// Keeps WebKit's own choice (accelerated compositing) when set to `1`.
pub const GPU_COMPOSITING_VAR: &str = "ROHIMAYA_GPU_COMPOSITING";

/// Turns accelerated compositing off for every webview window, unless
/// [`GPU_COMPOSITING_VAR`] asks to keep it. Call it in `setup`, once the windows exist.
pub fn paint_on_cpu(app: &AppHandle) {
    if std::env::var(GPU_COMPOSITING_VAR).is_ok_and(|v| v == "1") {
        return;
    }
    for window in app.webview_windows().into_values() {
        let set = window.with_webview(|webview| {
            #[cfg(target_os = "linux")]
            {
                use webkit2gtk::{HardwareAccelerationPolicy, SettingsExt, WebViewExt};
                if let Some(settings) = WebViewExt::settings(&webview.inner()) {
                    settings.set_hardware_acceleration_policy(HardwareAccelerationPolicy::Never);
                }
            }
            #[cfg(not(target_os = "linux"))]
            let _ = webview;
        });
        if let Err(e) = set {
            tracing::debug!("cannot set how the webview draws: {e}");
        }
    }
}

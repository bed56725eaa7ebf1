//! How the window's webview draws on Linux: WebKitGTK paints on the CPU instead of
//! compositing through OpenGL. Measured (docs/benchmarks.md, "Frames"): without a GPU
//! driver (Mesa's llvmpipe: virtual machines, remote desktops, Xvfb) every change to the
//! page — one progress bar moving — cost a 100-300 ms frame, and 16 uploads reporting
//! progress dropped the Transfers view to 6 fps; painting on the CPU keeps it at 60 fps.
//! The page has no 3D, video or animation that needs the GPU.
//!
//! `ROHIMAYA_GPU_COMPOSITING=1` keeps WebKit's default, `=0` paints on the CPU. Unset, the
//! CPU paints except when a WebDriver drives the window (tauri-driver sets
//! `TAURI_WEBVIEW_AUTOMATION=true`): WebKitWebDriver's screenshots never complete without
//! compositing (the end-to-end test takes one per step), so automation keeps WebKit's
//! default unless told otherwise. It only sets the webview's drawing mode: it never
//! touches what the page shows.

use tauri::{AppHandle, Manager};

/// `1` keeps WebKit's own choice (accelerated compositing), `0` paints on the CPU.
pub const GPU_COMPOSITING_VAR: &str = "ROHIMAYA_GPU_COMPOSITING";

/// Whether WebKit keeps its accelerated compositing: as [`GPU_COMPOSITING_VAR`] says, else
/// only under WebDriver automation (see the module docs).
fn keep_compositing(setting: Option<&str>, automated: bool) -> bool {
    match setting {
        Some("1") => true,
        Some("0") => false,
        _ => automated,
    }
}

/// Turns accelerated compositing off for every webview window, unless it is to be kept
/// ([`keep_compositing`]). Call it in `setup`, once the windows exist.
pub fn paint_on_cpu(app: &AppHandle) {
    let setting = std::env::var(GPU_COMPOSITING_VAR).ok();
    let automated = std::env::var("TAURI_WEBVIEW_AUTOMATION").is_ok_and(|v| v == "true");
    if keep_compositing(setting.as_deref(), automated) {
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

#[cfg(test)]
mod tests {
    use super::keep_compositing;

    #[test]
    fn the_cpu_paints_unless_asked_or_automated() {
        assert!(!keep_compositing(None, false));
        assert!(keep_compositing(None, true));
        assert!(keep_compositing(Some("1"), false));
        assert!(!keep_compositing(Some("0"), true));
        assert!(!keep_compositing(Some("yes"), false));
    }
}

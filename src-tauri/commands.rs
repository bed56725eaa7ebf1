//! The Tauri commands the webview may call. Each is a few lines over one core call;
//! their result types come from rohimaya-core and are exported to `ui/src/bindings/`.

use rohimaya_core::status::BackendStatus;
use tauri::State;
use tauri::ipc::InvokeError;

use crate::backend::Backend;

/// Which backend the app uses and whether its engine answers `/health`. Never fails: an
/// unreachable backend is reported in the status.
#[tauri::command]
pub async fn backend_status(backend: State<'_, Backend>) -> Result<BackendStatus, InvokeError> {
    Ok(backend.status().await)
}

//! The buttons of desktop notifications: registers the ones `rohimaya_core::alerts` names
//! (Download and Play on a finished audiobook), and hands a pressed one to the core
//! (`Client::alert_action`), then shows the window and tells the webview where to go
//! (`alert-follow-up`). A click on the notification itself shows the window. Wiring only.

use rohimaya_core::alerts::{AlertAction, DesktopAlert, JOB_COMPLETED_ACTIONS};
use tauri::{AppHandle, Emitter, Manager, Runtime};
use tauri_plugin_notification::{Action, ActionType, NotificationBuilder, NotificationExt};

use crate::shell::Shell;

/// The webview event that says where to go after a button was pressed.
pub const ALERT_FOLLOW_UP: &str = "alert-follow-up";

/// The notification extra that names the job a button is about.
const JOB_ID: &str = "job_id";

pub fn install(app: &AppHandle) {
    let notification = app.notification();
    let buttons = AlertAction::ALL
        .iter()
        .map(|a| Action::builder(a.id(), a.title()).build())
        .collect();
    let types = vec![
        ActionType::builder(JOB_COMPLETED_ACTIONS)
            .actions(buttons)
            .build(),
    ];
    if let Err(e) = notification.register_action_types(types) {
        tracing::debug!("notification buttons unavailable: {e}");
        return;
    }
    let handle = app.clone();
    let listening = notification.on_action(move |performed| {
        let action = AlertAction::from_id(performed.action_id());
        let job_id = performed
            .notification()
            .and_then(|n| n.extra().get(JOB_ID))
            .and_then(|v| v.as_str())
            .map(str::to_string);
        let app = handle.clone();
        tauri::async_runtime::spawn(async move {
            crate::tray::show_main(&app);
            let (Some(action), Some(job_id)) = (action, job_id) else {
                return;
            };
            let Ok(client) = app.state::<Shell>().client() else {
                return;
            };
            match client.alert_action(action, &job_id).await {
                Ok(follow_up) => {
                    if let Err(e) = app.emit(ALERT_FOLLOW_UP, &follow_up) {
                        tracing::debug!("cannot tell the webview: {e}");
                    }
                }
                Err(e) => tracing::warn!("notification button: {e}"),
            }
        });
    });
    if let Err(e) = listening {
        tracing::debug!("notification buttons unavailable: {e}");
    }
}

/// `builder` with the buttons and the job of `alert`.
pub fn with_buttons<R: Runtime>(
    builder: NotificationBuilder<R>,
    alert: &DesktopAlert,
) -> NotificationBuilder<R> {
    match (&alert.job_id, alert.actions.is_empty()) {
        (Some(job_id), false) => builder
            .action_type_id(JOB_COMPLETED_ACTIONS)
            .extra(JOB_ID, job_id),
        _ => builder,
    }
}

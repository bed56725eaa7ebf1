//! Carries the core's event stream to the webview (as `core-event`), to desktop
//! notifications (what `rohimaya_core::alerts` selects) and to the tray's status line.
//! Wiring only: it decides nothing about which events matter.

use rohimaya_core::alerts::desktop_alert;
use rohimaya_core::events::{Event, EventBus};
use tauri::{AppHandle, Emitter, Manager};
use tauri_plugin_notification::NotificationExt;
use tokio::sync::broadcast::error::RecvError;

use crate::shell::Shell;

/// The name of the webview event that carries every core event.
pub const CORE_EVENT: &str = "core-event";

pub fn spawn(app: AppHandle, bus: &EventBus) {
    let mut rx = bus.subscribe();
    tauri::async_runtime::spawn(async move {
        loop {
            let event = match rx.recv().await {
                Ok(event) => event,
                Err(RecvError::Lagged(n)) => {
                    tracing::debug!("the webview missed {n} events");
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            if let Err(e) = app.emit(CORE_EVENT, &event) {
                tracing::debug!("cannot emit an event: {e}");
            }
            if let Some(alert) = desktop_alert(&event)
                && app
                    .try_state::<Shell>()
                    .is_some_and(|s| s.prefs().notifications)
            {
                let builder = app
                    .notification()
                    .builder()
                    .title(&alert.title)
                    .body(&alert.body);
                let shown = crate::alert_actions::with_buttons(builder, &alert).show();
                if let Err(e) = shown {
                    tracing::debug!("cannot show a notification: {e}");
                }
            }
            if let Event::SessionChanged {
                signed_in, email, ..
            } = &event
            {
                let line = match (signed_in, email) {
                    (true, Some(email)) => format!("Signed in as {email}"),
                    _ => "Signed out".to_string(),
                };
                crate::tray::set_status(&app, &line);
            }
        }
    });
}

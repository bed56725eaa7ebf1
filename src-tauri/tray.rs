//! The tray icon and its menu: a status line, Open, Pause/Resume all, Quit. Wiring only:
//! the status words come from the core's events, the actions are core calls.

use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{MouseButton, MouseButtonState, TrayIconBuilder, TrayIconEvent};
use tauri::{AppHandle, Manager, Wry};

use crate::shell::Shell;

/// The menu item whose text is the status line.
pub struct TrayStatus(pub MenuItem<Wry>);

pub fn install(app: &AppHandle) -> tauri::Result<()> {
    let status = MenuItem::with_id(app, "status", "Rohimaya", false, None::<&str>)?;
    let open = MenuItem::with_id(app, "open", "Open Rohimaya", true, None::<&str>)?;
    let pause = MenuItem::with_id(app, "pause", "Pause all transfers", true, None::<&str>)?;
    let resume = MenuItem::with_id(app, "resume", "Resume all transfers", true, None::<&str>)?;
    let quit = MenuItem::with_id(app, "quit", "Quit Rohimaya", true, None::<&str>)?;
    let sep = PredefinedMenuItem::separator(app)?;
    let menu = Menu::with_items(app, &[&status, &sep, &open, &pause, &resume, &quit])?;
    let mut builder = TrayIconBuilder::with_id("main")
        .tooltip("Rohimaya")
        .menu(&menu)
        .show_menu_on_left_click(false)
        .on_menu_event(|app, event| match event.id().as_ref() {
            "open" => show_main(app),
            "pause" | "resume" => {
                let paused = event.id().as_ref() == "pause";
                let app = app.clone();
                tauri::async_runtime::spawn(async move {
                    if let Ok(client) = app.state::<Shell>().client()
                        && let Err(e) = client.set_paused(paused).await
                    {
                        tracing::warn!("tray: {e}");
                    }
                });
            }
            "quit" => app.exit(0),
            _ => {}
        })
        .on_tray_icon_event(|tray, event| {
            if let TrayIconEvent::Click {
                button: MouseButton::Left,
                button_state: MouseButtonState::Up,
                ..
            } = event
            {
                show_main(tray.app_handle());
            }
        });
    if let Some(icon) = app.default_window_icon() {
        builder = builder.icon(icon.clone());
    }
    builder.build(app)?;
    app.manage(TrayStatus(status));
    Ok(())
}

/// Shows, unminimizes and focuses the main window.
pub fn show_main(app: &AppHandle) {
    if let Some(window) = app.get_webview_window("main") {
        let _ = window.show();
        let _ = window.unminimize();
        let _ = window.set_focus();
    }
}

/// Sets the tray's status line.
pub fn set_status(app: &AppHandle, text: &str) {
    if let Some(status) = app.try_state::<TrayStatus>() {
        let _ = status.0.set_text(text);
    }
}

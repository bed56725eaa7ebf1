//! The entry point of Rohimaya Desktop. Everything lives in the library
//! (`src-tauri/lib.rs`); this only runs it and reports a fatal error.

// No console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    if let Err(e) = rohimaya_desktop_lib::run() {
        eprintln!("Rohimaya could not start: {e}");
        std::process::exit(1);
    }
}

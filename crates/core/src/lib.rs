//! rohimaya-core: the whole engine of Rohimaya Desktop, shared by the desktop app and the
//! `rohimaya` CLI. It holds every rule; the shells only call it and render its results.
//! It never depends on Tauri, the UI or the devstack.

pub mod alerts;
pub mod api;
pub mod auth;
#[cfg(test)]
mod bindings;
pub mod client;
pub mod config;
pub mod downloads;
pub mod error;
pub mod events;
pub mod jobs;
pub mod library;
pub mod prefs;
pub mod queue;
pub mod secrets;
pub mod state_db;
pub mod status;
pub mod transfer;
pub mod watch;

pub use error::{CoreError, ErrorCode};

//! rohimaya-core: the whole engine of Rohimaya Desktop, shared by the desktop app and the
//! `rohimaya` CLI. It holds every rule; the shells only call it and render its results.
//! It never depends on Tauri, the UI or the devstack.

pub mod api;
pub mod config;
pub mod error;

pub use error::{CoreError, ErrorCode};

//! The engine API under `/api`: the existing engine's job routes and the presign
//! extension. It owns jobs, tracks and upload ownership; it never issues tokens (it
//! only verifies them).

use axum::Router;

use crate::server::Backend;

/// Tables: jobs, tracks, uploads.
pub const SCHEMA: &str = "";

pub fn router(backend: Backend) -> Router {
    Router::new().with_state(backend)
}

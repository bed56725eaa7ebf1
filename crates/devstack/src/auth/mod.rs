//! GoTrue-compatible auth under `/auth/v1` and the developer mailbox under `/devstack`.
//! It owns users, sessions, refresh tokens, one-time codes and PKCE flow states; it never
//! serves engine routes.

use axum::Router;

use crate::server::Backend;

/// Tables: users, sessions, refresh tokens, one-time codes, PKCE flow states.
pub const SCHEMA: &str = "";

pub fn router(backend: Backend) -> Router {
    Router::new().with_state(backend)
}

/// Developer tooling: `GET /devstack/mailbox/{email}`.
pub fn devstack_router(backend: Backend) -> Router {
    Router::new().with_state(backend)
}

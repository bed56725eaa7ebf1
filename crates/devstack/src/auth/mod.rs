//! GoTrue-compatible auth under `/auth/v1` and the developer tooling under `/devstack`
//! (the mailbox and the OAuth consent page). It owns users, sessions, refresh tokens,
//! one-time codes and PKCE flow states, and matches GoTrue's routes, JSON shapes, error
//! codes and statuses; it never serves engine routes and never logs a token, code or
//! password.
//!
//! - `errors`: GoTrue's two error shapes, chosen by `X-Supabase-Api-Version`;
//! - `users`: users, identities, password hashing;
//! - `sessions`: sessions, refresh-token rotation and reuse detection, access tokens,
//!   bearer authentication;
//! - `token`: `/signup`, `/token`, `/user`, `/logout`;
//! - `otp`: `/otp`, `/verify`, the mailbox;
//! - `oauth`: `/authorize`, the consent page, the `pkce` grant;
//! - `stats`: counters of refresh-token grants and refusals (`GET /devstack/stats`), so
//!   tests can count refreshes at the server.

pub mod errors;
pub mod oauth;
pub mod otp;
pub mod sessions;
pub mod stats;
pub mod token;
pub mod users;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};

use crate::server::Backend;

/// Tables: users, identities, sessions, refresh tokens, one-time codes, the mailbox and
/// PKCE flow states.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS auth_users (
    id                 TEXT PRIMARY KEY,
    email              TEXT NOT NULL UNIQUE,
    password_hash      TEXT,
    email_confirmed_at INTEGER,
    last_sign_in_at    INTEGER,
    app_metadata       TEXT NOT NULL,
    user_metadata      TEXT NOT NULL,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS auth_identities (
    id              TEXT PRIMARY KEY,
    provider_id     TEXT NOT NULL,
    user_id         TEXT NOT NULL REFERENCES auth_users(id) ON DELETE CASCADE,
    provider        TEXT NOT NULL,
    identity_data   TEXT NOT NULL,
    email           TEXT,
    last_sign_in_at INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (provider_id, provider)
);
CREATE TABLE IF NOT EXISTS auth_sessions (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES auth_users(id) ON DELETE CASCADE,
    amr          TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    refreshed_at INTEGER
);
CREATE TABLE IF NOT EXISTS auth_refresh_tokens (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    token      TEXT NOT NULL UNIQUE,
    session_id TEXT NOT NULL REFERENCES auth_sessions(id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL,
    parent     TEXT,
    revoked    INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS auth_refresh_tokens_session ON auth_refresh_tokens (session_id);
CREATE TABLE IF NOT EXISTS auth_one_time_codes (
    email      TEXT NOT NULL,
    kind       TEXT NOT NULL,
    token_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (email, kind)
);
CREATE TABLE IF NOT EXISTS auth_mailbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient  TEXT NOT NULL,
    subject    TEXT NOT NULL,
    body       TEXT NOT NULL,
    code       TEXT NOT NULL,
    kind       TEXT NOT NULL,
    sent_at    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS auth_stats (
    name  TEXT PRIMARY KEY,
    count INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS auth_mailbox_recipient ON auth_mailbox (recipient, id);
CREATE TABLE IF NOT EXISTS auth_flow_states (
    id                    TEXT PRIMARY KEY,
    auth_code             TEXT NOT NULL UNIQUE,
    provider              TEXT NOT NULL,
    code_challenge        TEXT,
    code_challenge_method TEXT,
    redirect_to           TEXT NOT NULL,
    user_id               TEXT REFERENCES auth_users(id) ON DELETE CASCADE,
    created_at            INTEGER NOT NULL
);
";

/// The `/auth/v1` routes. Every route but `/authorize` needs an API key (`apikey` header
/// or query parameter), as Supabase's gateway requires; `/authorize` is opened by a
/// browser, which cannot send one, and the gateway leaves it open too.
pub fn router(backend: Backend) -> Router {
    let keyed = Router::new()
        .route("/signup", post(token::signup))
        .route("/token", post(token::token))
        .route("/user", get(token::get_user))
        .route("/logout", post(token::logout))
        .route("/otp", post(otp::send_otp))
        .route("/verify", post(otp::verify))
        .route_layer(middleware::from_fn_with_state(
            backend.clone(),
            require_api_key,
        ));
    keyed
        .route("/authorize", get(oauth::authorize))
        .layer(middleware::from_fn(errors::render_for_api_version))
        .with_state(backend)
}

/// Developer tooling: `GET /devstack/mailbox/{email}`, the OAuth consent page
/// `GET|POST /devstack/oauth/consent` and the auth counters `GET /devstack/stats`. No API key: a developer or a browser uses them.
pub fn devstack_router(backend: Backend) -> Router {
    Router::new()
        .route("/mailbox/{email}", get(otp::mailbox))
        .route("/stats", get(stats::get_stats))
        .route(
            "/oauth/consent",
            get(oauth::consent_page).post(oauth::consent_decision),
        )
        .with_state(backend)
}

/// The gateway's key check: a valid `apikey` header or `?apikey=` query parameter.
async fn require_api_key(State(backend): State<Backend>, request: Request, next: Next) -> Response {
    let from_header = request
        .headers()
        .get("apikey")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let from_query = request.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "apikey")
            .map(|(_, v)| v.into_owned())
    });
    match from_header.or(from_query) {
        None => errors::apikey_rejection(true),
        Some(key) if key.is_empty() => errors::apikey_rejection(true),
        Some(key) if !backend.keys.is_api_key(&key) => errors::apikey_rejection(false),
        Some(_) => next.run(request).await,
    }
}

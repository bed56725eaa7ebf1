//! The engine API under `/api`: the existing engine's job routes (`jobs`) and the presign
//! extension (`uploads`). It owns jobs, tracks and upload ownership; it never issues
//! tokens (it only verifies them, as the engine does with the Supabase JWT secret).

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::json;

use crate::server::Backend;

pub mod jobs;
pub mod uploads;

pub fn router(backend: Backend) -> Router {
    Router::new()
        .merge(jobs::routes())
        .merge(uploads::routes())
        .with_state(backend)
}

/// An engine API error. FastAPI's default body is `{"detail": "..."}`; the current engine
/// renders its HTTP errors as `{"error": "...", "message": "..."}`. Both shapes are sent,
/// so a client written against either keeps working.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: String,
}

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
        }
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, detail)
    }
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!("engine API internal error: {detail}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> Self {
        Self::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (
            self.status,
            Json(json!({ "detail": self.detail, "error": self.detail, "message": self.detail })),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        res
    }
}

/// The caller, from a valid `Authorization: Bearer {access_token}` (HS256 with the
/// project's JWT secret, `aud = "authenticated"`, not expired).
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user_id: String,
    pub email: String,
}

impl FromRequestParts<Backend> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, backend: &Backend) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "Not authenticated"))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "Not authenticated"))?;
        let claims = crate::jwt::verify_access(
            token.trim(),
            backend.keys.jwt_secret.as_bytes(),
            backend.clock.now_secs(),
        )
        .map_err(|e| match e {
            crate::jwt::JwtError::Expired => {
                ApiError::new(StatusCode::UNAUTHORIZED, "Token has expired")
            }
            _ => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "Invalid authentication credentials",
            ),
        })?;
        Ok(AuthUser {
            user_id: claims.sub,
            email: claims.email,
        })
    }
}

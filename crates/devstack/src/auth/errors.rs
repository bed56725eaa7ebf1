//! GoTrue's error responses, byte-compatible with `internal/api/errors.go`.
//!
//! A handler returns an [`AuthError`]; it renders in the `2024-01-01` shape
//! `{"code": "<error_code>", "message": "..."}` and carries itself in the response's
//! extensions, so [`render_for_api_version`] can re-render it in the initial shape
//! `{"code": <status>, "error_code": "...", "msg": "..."}` when the request did not send
//! `X-Supabase-Api-Version: 2024-01-01` (as GoTrue does). It owns shapes, codes and
//! statuses only; it never decides which error a request deserves, and it never puts a
//! token or password into a message.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// The header GoTrue reads the client's API version from and echoes on errors.
pub const API_VERSION_HEADER: &str = "x-supabase-api-version";
/// The header that carries the error code on every error with a code.
pub const ERROR_CODE_HEADER: &str = "x-sb-error-code";
/// The only dated API version GoTrue knows.
pub const API_VERSION_2024_01_01: &str = "2024-01-01";

/// GoTrue's error codes (`internal/api/apierrors/errorcode.go`) that the devstack uses.
pub mod code {
    pub const UNEXPECTED_FAILURE: &str = "unexpected_failure";
    pub const VALIDATION_FAILED: &str = "validation_failed";
    pub const BAD_JSON: &str = "bad_json";
    pub const BAD_JWT: &str = "bad_jwt";
    pub const NO_AUTHORIZATION: &str = "no_authorization";
    pub const USER_NOT_FOUND: &str = "user_not_found";
    pub const SESSION_NOT_FOUND: &str = "session_not_found";
    pub const REFRESH_TOKEN_NOT_FOUND: &str = "refresh_token_not_found";
    pub const REFRESH_TOKEN_ALREADY_USED: &str = "refresh_token_already_used";
    pub const FLOW_STATE_NOT_FOUND: &str = "flow_state_not_found";
    pub const FLOW_STATE_EXPIRED: &str = "flow_state_expired";
    pub const BAD_CODE_VERIFIER: &str = "bad_code_verifier";
    pub const INVALID_CREDENTIALS: &str = "invalid_credentials";
    pub const USER_ALREADY_EXISTS: &str = "user_already_exists";
    pub const WEAK_PASSWORD: &str = "weak_password";
    pub const OTP_EXPIRED: &str = "otp_expired";
    pub const OTP_DISABLED: &str = "otp_disabled";
    pub const EMAIL_NOT_CONFIRMED: &str = "email_not_confirmed";
    pub const PHONE_PROVIDER_DISABLED: &str = "phone_provider_disabled";
    pub const ANONYMOUS_PROVIDER_DISABLED: &str = "anonymous_provider_disabled";
}

/// An error as GoTrue answers it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// GoTrue's `HTTPError`: a status, a stable code and a human message.
    #[error("{status} {code}: {message}")]
    Http {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    /// GoTrue's `WeakPasswordError`: always 422 with `weak_password.reasons`.
    #[error("weak password: {message}")]
    WeakPassword {
        message: String,
        reasons: Vec<&'static str>,
    },
    /// Anything unexpected (database, hashing): 500 `unexpected_failure`. The detail is
    /// logged, never sent.
    #[error("internal error")]
    Internal,
}

impl AuthError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self::Http {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }
    pub fn validation(message: impl Into<String>) -> Self {
        Self::bad_request(code::VALIDATION_FAILED, message)
    }
    /// Logs `detail` (which must not contain secrets) and answers 500.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!("auth internal error: {detail}");
        Self::Internal
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Http { status, .. } => *status,
            Self::WeakPassword { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Http { code, .. } => code,
            Self::WeakPassword { .. } => code::WEAK_PASSWORD,
            Self::Internal => code::UNEXPECTED_FAILURE,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Self::Http { message, .. } | Self::WeakPassword { message, .. } => message,
            Self::Internal => "Unexpected failure, please check server logs for more information",
        }
    }

    /// The body GoTrue sends for `version`.
    pub fn body(&self, version: ApiVersion) -> Value {
        let mut body = match version {
            ApiVersion::V20240101 => json!({ "code": self.code(), "message": self.message() }),
            ApiVersion::Initial => json!({
                "code": self.status().as_u16(),
                "error_code": self.code(),
                "msg": self.message(),
            }),
        };
        if let Self::WeakPassword { reasons, .. } = self {
            body["weak_password"] = json!({ "reasons": reasons });
        }
        body
    }

    /// The full response for `version`, headers included. GoTrue sets
    /// `x-sb-error-code` on every `HTTPError`, but on a weak-password error only in the
    /// initial shape; it echoes the API version only when it is a dated one.
    pub fn render(&self, version: ApiVersion) -> Response {
        let mut res = (self.status(), axum::Json(self.body(version))).into_response();
        let headers = res.headers_mut();
        let sets_code_header =
            !matches!(self, Self::WeakPassword { .. }) || version == ApiVersion::Initial;
        if sets_code_header {
            headers.insert(ERROR_CODE_HEADER, HeaderValue::from_static(self.code()));
        }
        if version == ApiVersion::V20240101 {
            headers.insert(
                API_VERSION_HEADER,
                HeaderValue::from_static(API_VERSION_2024_01_01),
            );
        }
        res
    }
}

impl From<rusqlite::Error> for AuthError {
    fn from(e: rusqlite::Error) -> Self {
        Self::internal(format!("database: {e}"))
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        // Rendered in the current shape; `render_for_api_version` re-renders it when the
        // request asked for the initial one.
        let mut res = self.render(ApiVersion::V20240101);
        res.extensions_mut().insert(self);
        res
    }
}

/// The API version a request asked for (GoTrue's `DetermineClosestAPIVersion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    /// No header, an unparsable one or a date before 2024-01-01.
    Initial,
    V20240101,
}

impl ApiVersion {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let Some(value) = headers
            .get(API_VERSION_HEADER)
            .and_then(|v| v.to_str().ok())
        else {
            return Self::Initial;
        };
        let format = time::macros::format_description!("[year]-[month]-[day]");
        match time::Date::parse(value.trim(), &format) {
            Ok(date) if date >= time::macros::date!(2024 - 01 - 01) => Self::V20240101,
            _ => Self::Initial,
        }
    }
}

/// Middleware: renders every [`AuthError`] in the shape the request's API version asks
/// for.
pub async fn render_for_api_version(request: Request, next: Next) -> Response {
    let version = ApiVersion::from_headers(request.headers());
    let res = next.run(request).await;
    match res.extensions().get::<AuthError>() {
        Some(err) if version == ApiVersion::Initial => err.render(version),
        _ => res,
    }
}

/// Parses a JSON request body as GoTrue's `retrieveRequestParams` does: whatever the
/// content type, and a body that is not JSON of the right shape is `400 bad_json`.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, AuthError> {
    serde_json::from_slice(body).map_err(|e| {
        AuthError::bad_request(
            code::BAD_JSON,
            format!("Could not parse request body as JSON: {e}"),
        )
    })
}

/// A field deserializer with Go's `encoding/json` semantics for `null`: the field keeps
/// its zero value. auth-js sends `"code_challenge": null` and the like.
pub fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + serde::Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// The API gateway's answer to a request without a valid `apikey` (Supabase's gateway,
/// not GoTrue, sends these; they carry no error code).
pub fn apikey_rejection(missing: bool) -> Response {
    let body = if missing {
        json!({
            "message": "No API key found in request",
            "hint": "No `apikey` request header or url param was found.",
        })
    } else {
        json!({
            "message": "Invalid API key",
            "hint": "Double check your Supabase `anon` or `service_role` API key.",
        })
    };
    let mut res = Response::new(Body::from(body.to_string()));
    *res.status_mut() = StatusCode::UNAUTHORIZED;
    res.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_version_is_read_like_gotrue() {
        let mut h = HeaderMap::new();
        assert_eq!(ApiVersion::from_headers(&h), ApiVersion::Initial);
        h.insert(API_VERSION_HEADER, HeaderValue::from_static("2024-01-01"));
        assert_eq!(ApiVersion::from_headers(&h), ApiVersion::V20240101);
        h.insert(API_VERSION_HEADER, HeaderValue::from_static("2025-06-30"));
        assert_eq!(ApiVersion::from_headers(&h), ApiVersion::V20240101);
        h.insert(API_VERSION_HEADER, HeaderValue::from_static("2023-12-31"));
        assert_eq!(ApiVersion::from_headers(&h), ApiVersion::Initial);
        h.insert(API_VERSION_HEADER, HeaderValue::from_static("yesterday"));
        assert_eq!(ApiVersion::from_headers(&h), ApiVersion::Initial);
    }

    #[test]
    fn both_shapes_carry_the_code() {
        let e = AuthError::bad_request(code::INVALID_CREDENTIALS, "Invalid login credentials");
        assert_eq!(
            e.body(ApiVersion::V20240101),
            json!({"code": "invalid_credentials", "message": "Invalid login credentials"})
        );
        assert_eq!(
            e.body(ApiVersion::Initial),
            json!({"code": 400, "error_code": "invalid_credentials", "msg": "Invalid login credentials"})
        );
        let weak = AuthError::WeakPassword {
            message: "Password should be at least 6 characters.".into(),
            reasons: vec!["length"],
        };
        assert_eq!(weak.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            weak.body(ApiVersion::V20240101)["weak_password"]["reasons"],
            json!(["length"])
        );
        assert!(
            weak.render(ApiVersion::V20240101)
                .headers()
                .get(ERROR_CODE_HEADER)
                .is_none()
        );
        assert!(
            weak.render(ApiVersion::Initial)
                .headers()
                .get(ERROR_CODE_HEADER)
                .is_some()
        );
    }
}

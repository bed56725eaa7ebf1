//! The auth errors the shells render, each with a stable [`ErrorCode`], and the reading
//! of GoTrue's error answers in both shapes: `{code, message}` (API version 2024-01-01,
//! plus the `x-sb-error-code` header), the initial `{code: <status>, error_code, msg}` and
//! the legacy `{error, error_description}`. It owns which server codes end a session; it
//! never puts a token, code or password into a message.

use std::time::Duration;

use crate::error::{CoreError, ErrorCode};

/// Why a session ended on the server's word (or on this computer's, when another Rohimaya
/// process signed out). Shown as "signed out: {reason}".
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignedOutReason {
    /// The session was revoked, expired, signed out elsewhere, or a refresh token was
    /// replayed.
    SessionEnded,
    /// The account is suspended.
    AccountSuspended,
    /// The account no longer exists.
    AccountDeleted,
    /// Another Rohimaya window or command on this computer signed out of this profile.
    SignedOutOnThisComputer,
}

impl SignedOutReason {
    pub fn describe(self) -> &'static str {
        match self {
            Self::SessionEnded => "session ended",
            Self::AccountSuspended => "account suspended",
            Self::AccountDeleted => "account deleted",
            Self::SignedOutOnThisComputer => "signed out by another Rohimaya window or command",
        }
    }

    fn code(self) -> ErrorCode {
        match self {
            Self::SessionEnded | Self::SignedOutOnThisComputer => ErrorCode::SessionEnded,
            Self::AccountSuspended | Self::AccountDeleted => ErrorCode::AccountUnavailable,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    #[error("wrong email or password. Check both, or sign in with a one-time code")]
    InvalidCredentials,
    #[error("this email address is not confirmed yet. Open the confirmation email, then sign in")]
    EmailNotConfirmed,
    #[error("too many attempts: the server asks to wait{}", retry_hint(*.retry_after))]
    RateLimited { retry_after: Option<Duration> },
    #[error("an account with this email already exists. Sign in instead")]
    UserAlreadyExists,
    #[error("the password is too weak: {message}")]
    WeakPassword { message: String },
    #[error("the code is wrong or has expired. Ask for a new code")]
    OtpInvalid,
    #[error("the sign-in server refused the request ({code}): {message}")]
    Rejected {
        status: u16,
        code: String,
        message: String,
    },
    #[error("cannot reach the sign-in server at {url}: {reason}. Check your connection")]
    Unreachable { url: String, reason: String },
    #[error("the sign-in server had a problem ({status}). Try again in a moment")]
    Server { status: u16 },
    #[error("the sign-in server answered something unexpected ({detail})")]
    Unexpected { detail: String },
    #[error("not signed in on profile {profile}. Sign in first")]
    NotSignedIn { profile: String },
    #[error("signed out: {}. Sign in again", .reason.describe())]
    SignedOut { reason: SignedOutReason },
    #[error("the browser sign-in was not completed within {} s. Start again", .after.as_secs())]
    OAuthTimedOut { after: Duration },
    #[error("the browser sign-in was refused: {detail}")]
    OAuthDenied { detail: String },
    #[error("the browser sign-in failed: {detail}")]
    OAuthFailed { detail: String },
}

fn retry_hint(retry_after: Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!(" {} s before trying again", d.as_secs().max(1)),
        None => " a moment before trying again".to_string(),
    }
}

impl CoreError for AuthError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidCredentials => ErrorCode::InvalidCredentials,
            Self::EmailNotConfirmed => ErrorCode::EmailNotConfirmed,
            Self::RateLimited { .. } => ErrorCode::RateLimited,
            Self::UserAlreadyExists => ErrorCode::UserAlreadyExists,
            Self::WeakPassword { .. } => ErrorCode::WeakPassword,
            Self::OtpInvalid => ErrorCode::OtpInvalid,
            Self::Rejected { .. } => ErrorCode::AuthRejected,
            Self::Unreachable { .. } => ErrorCode::NetworkUnreachable,
            Self::Server { .. } => ErrorCode::ServerError,
            Self::Unexpected { .. } => ErrorCode::UnexpectedResponse,
            Self::NotSignedIn { .. } => ErrorCode::NotSignedIn,
            Self::SignedOut { reason } => reason.code(),
            Self::OAuthTimedOut { .. } => ErrorCode::OauthTimedOut,
            Self::OAuthDenied { .. } => ErrorCode::OauthDenied,
            Self::OAuthFailed { .. } => ErrorCode::OauthFailed,
        }
    }
}

impl AuthError {
    /// Whether trying again later may succeed (network, 5xx, 409, 429): a refresh that
    /// fails this way keeps the session.
    pub fn is_temporary(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::Server { .. } | Self::RateLimited { .. } => true,
            Self::Unexpected { .. } => true,
            Self::Rejected { status, .. } => *status == 409 || *status >= 500,
            _ => false,
        }
    }

    /// How long the server asked to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }
}

/// A GoTrue error answer, read from either shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    pub status: u16,
    /// The error code (`invalid_credentials`, legacy `invalid_grant`, ...); empty if none.
    pub code: String,
    pub message: String,
    pub retry_after: Option<Duration>,
}

/// GoTrue's error codes that end a session when a refresh is refused with them.
pub const SESSION_ENDING_CODES: &[&str] = &[
    "refresh_token_not_found",
    "refresh_token_already_used",
    "session_not_found",
    "session_expired",
    "user_banned",
    "user_not_found",
    "invalid_grant",
];

impl ServerError {
    /// Reads an error answer: the `x-sb-error-code` header, then `code` (when a string),
    /// `error_code` or `error`; the message from `message`, `msg`, `error_description`.
    pub fn parse(
        status: u16,
        header_code: Option<&str>,
        retry_after: Option<&str>,
        body: &[u8],
    ) -> Self {
        let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let text = |k: &str| json.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let code = header_code
            .map(str::to_string)
            .filter(|c| !c.is_empty())
            .or_else(|| text("code"))
            .or_else(|| text("error_code"))
            .or_else(|| text("error"))
            .unwrap_or_default();
        let message = text("message")
            .or_else(|| text("msg"))
            .or_else(|| text("error_description"))
            .unwrap_or_else(|| format!("HTTP {status}"));
        let retry_after = retry_after
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Self {
            status,
            code,
            message: truncate(&message, 300),
            retry_after,
        }
    }

    /// The reason a refresh refusal ends the session, if it is definitive.
    pub fn session_ending_reason(&self) -> Option<SignedOutReason> {
        if !SESSION_ENDING_CODES.contains(&self.code.as_str()) {
            return None;
        }
        Some(match self.code.as_str() {
            "user_banned" => SignedOutReason::AccountSuspended,
            "user_not_found" => SignedOutReason::AccountDeleted,
            _ => SignedOutReason::SessionEnded,
        })
    }

    /// The error of a refresh refused this way: signed out on a definitive code, else a
    /// temporary error that keeps the session.
    pub fn into_refresh_error(self) -> AuthError {
        if let Some(reason) = self.session_ending_reason() {
            return AuthError::SignedOut { reason };
        }
        self.into_auth_error()
    }

    /// The error of any other call.
    pub fn into_auth_error(self) -> AuthError {
        let lower = self.message.to_ascii_lowercase();
        match self.code.as_str() {
            "invalid_credentials" => return AuthError::InvalidCredentials,
            "email_not_confirmed" => return AuthError::EmailNotConfirmed,
            "user_already_exists" | "email_exists" => return AuthError::UserAlreadyExists,
            "weak_password" => {
                return AuthError::WeakPassword {
                    message: self.message,
                };
            }
            "otp_expired" => return AuthError::OtpInvalid,
            c if c.starts_with("over_") && c.ends_with("rate_limit") => {
                return AuthError::RateLimited {
                    retry_after: self.retry_after,
                };
            }
            // Older servers: `{"error":"invalid_grant","error_description":"..."}`.
            "invalid_grant" if lower.contains("email not confirmed") => {
                return AuthError::EmailNotConfirmed;
            }
            "invalid_grant" if lower.contains("invalid login credentials") => {
                return AuthError::InvalidCredentials;
            }
            _ => {}
        }
        if self.status == 429 {
            return AuthError::RateLimited {
                retry_after: self.retry_after,
            };
        }
        if self.status >= 500 {
            return AuthError::Server {
                status: self.status,
            };
        }
        AuthError::Rejected {
            status: self.status,
            code: if self.code.is_empty() {
                "unknown".into()
            } else {
                self.code
            },
            message: self.message,
        }
    }
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(status: u16, header: Option<&str>, body: &str) -> ServerError {
        ServerError::parse(status, header, None, body.as_bytes())
    }

    #[test]
    fn current_shape_with_header() {
        let e = parse(
            400,
            Some("invalid_credentials"),
            r#"{"code":"invalid_credentials","message":"Invalid login credentials"}"#,
        );
        assert_eq!(e.code, "invalid_credentials");
        assert_eq!(e.into_auth_error().code(), ErrorCode::InvalidCredentials);
    }

    #[test]
    fn initial_shape_uses_error_code_not_the_numeric_code() {
        let e = parse(
            400,
            None,
            r#"{"code":400,"error_code":"email_not_confirmed","msg":"Email not confirmed"}"#,
        );
        assert_eq!(e.code, "email_not_confirmed");
        assert_eq!(e.message, "Email not confirmed");
        assert_eq!(e.into_auth_error().code(), ErrorCode::EmailNotConfirmed);
    }

    #[test]
    fn legacy_invalid_grant_shapes() {
        let wrong = parse(
            400,
            None,
            r#"{"error":"invalid_grant","error_description":"Invalid login credentials"}"#,
        );
        assert_eq!(
            wrong.into_auth_error().code(),
            ErrorCode::InvalidCredentials
        );
        let unconfirmed = parse(
            400,
            None,
            r#"{"error":"invalid_grant","error_description":"Email not confirmed"}"#,
        );
        assert_eq!(
            unconfirmed.into_auth_error().code(),
            ErrorCode::EmailNotConfirmed
        );
        let refresh = parse(
            400,
            None,
            r#"{"error":"invalid_grant","error_description":"Invalid Refresh Token"}"#,
        );
        assert!(matches!(
            refresh.into_refresh_error(),
            AuthError::SignedOut {
                reason: SignedOutReason::SessionEnded
            }
        ));
    }

    #[test]
    fn only_definitive_codes_end_a_session() {
        for code in SESSION_ENDING_CODES {
            let e = parse(400, Some(code), "{}");
            assert!(
                matches!(e.into_refresh_error(), AuthError::SignedOut { .. }),
                "{code}"
            );
        }
        for (status, body) in [
            (500, r#"{"code":"unexpected_failure","message":"x"}"#),
            (502, "<html>bad gateway</html>"),
            (409, r#"{"code":"conflict","message":"x"}"#),
            (429, r#"{"code":"over_request_rate_limit","message":"x"}"#),
        ] {
            let e = parse(status, None, body).into_refresh_error();
            assert!(e.is_temporary(), "{status}: {e:?}");
        }
        let banned = parse(403, Some("user_banned"), "{}").into_refresh_error();
        assert_eq!(banned.code(), ErrorCode::AccountUnavailable);
    }

    #[test]
    fn rate_limit_carries_retry_after() {
        let e = ServerError::parse(
            429,
            Some("over_request_rate_limit"),
            Some("17"),
            br#"{"code":"over_request_rate_limit","message":"Request rate limit reached"}"#,
        )
        .into_auth_error();
        assert_eq!(e.code(), ErrorCode::RateLimited);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(17)));
        assert!(e.to_string().contains("17 s"), "{e}");
    }

    #[test]
    fn signed_out_message() {
        let e = AuthError::SignedOut {
            reason: SignedOutReason::SessionEnded,
        };
        assert!(
            e.to_string().starts_with("signed out: session ended"),
            "{e}"
        );
        assert_eq!(e.code(), ErrorCode::SessionEnded);
    }
}

//! The stable error codes every core error carries, so the app and the CLI can react to
//! a code instead of matching message text. It owns the code list; it never formats UI.

use serde::Serialize;

/// A stable, machine-readable error code. Never renamed once shipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    ConfigIncomplete,
    ConfigInvalidUrl,
    ConfigUnreadable,
    NetworkUnreachable,
    ServerError,
    UnexpectedResponse,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ConfigIncomplete => "config_incomplete",
            ErrorCode::ConfigInvalidUrl => "config_invalid_url",
            ErrorCode::ConfigUnreadable => "config_unreadable",
            ErrorCode::NetworkUnreachable => "network_unreachable",
            ErrorCode::ServerError => "server_error",
            ErrorCode::UnexpectedResponse => "unexpected_response",
        }
    }
}

/// Implemented by every core error type.
pub trait CoreError: std::error::Error {
    fn code(&self) -> ErrorCode;
}

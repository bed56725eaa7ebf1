//! One authenticated request to the engine API, shared by the upload and download routes:
//! where its bearer token comes from ([`AccessTokens`]), the "401 -> refresh once -> send
//! again" rule, the failures every route has in common ([`RequestError`]: the network, a
//! refused session, 429, 5xx, an unreadable answer) and the reading of a JSON answer.
//!
//! It never decides what a 4xx means for a route (a route reads the [`Refusal`] into its
//! own error), never retries on its own (the transfer engines decide, with
//! [`RequestError::is_temporary`] and [`RequestError::is_offline`]), and never logs a token
//! or a presigned URL's signature ([`redact_url`], [`without_url`]).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::error::{CoreError, ErrorCode};

/// A future returned by [`AccessTokens`] (boxed so the trait can be used as `dyn`).
pub type TokenFuture<'a> = Pin<Box<dyn Future<Output = Result<String, TokenError>> + Send + 'a>>;

/// Where access tokens come from: the signed-in session in the app and the CLI, a fixed
/// token in tests. Implementations never log the token.
pub trait AccessTokens: Send + Sync {
    /// A currently valid access token.
    fn access_token(&self) -> TokenFuture<'_>;
    /// The server refused `rejected` (401): refresh (once) and return a new token.
    fn refresh_after_unauthorized<'a>(&'a self, rejected: &'a str) -> TokenFuture<'a>;
}

/// Why no token could be had (not signed in, session ended, network...), as the token
/// source's own typed error reported it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TokenError {
    pub code: ErrorCode,
    pub message: String,
}

impl TokenError {
    pub fn from_core(e: &(impl CoreError + ?Sized)) -> Self {
        Self {
            code: e.code(),
            message: e.to_string(),
        }
    }
}

/// A fixed access token (tests, scripts with a token from elsewhere). A 401 is final.
#[derive(Clone)]
pub struct StaticToken(pub String);

impl std::fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StaticToken(..)")
    }
}

impl AccessTokens for StaticToken {
    fn access_token(&self) -> TokenFuture<'_> {
        Box::pin(async move { Ok(self.0.clone()) })
    }
    fn refresh_after_unauthorized<'a>(&'a self, _rejected: &'a str) -> TokenFuture<'a> {
        Box::pin(async move {
            Err(TokenError {
                code: ErrorCode::Unauthorized,
                message: "the access token was refused and cannot be refreshed".into(),
            })
        })
    }
}

/// The signed-in session as a token source (refreshes as the session rules say).
#[derive(Clone, Debug)]
pub struct SessionTokens(pub crate::auth::SessionManager);

impl AccessTokens for SessionTokens {
    fn access_token(&self) -> TokenFuture<'_> {
        Box::pin(async move {
            self.0
                .access_token()
                .await
                .map(|t| t.expose().to_string())
                .map_err(|e| TokenError::from_core(&e))
        })
    }
    fn refresh_after_unauthorized<'a>(&'a self, rejected: &'a str) -> TokenFuture<'a> {
        Box::pin(async move {
            let rejected = crate::secrets::Secret::new(rejected);
            self.0
                .refresh_after_unauthorized(&rejected)
                .await
                .map(|t| t.expose().to_string())
                .map_err(|e| TokenError::from_core(&e))
        })
    }
}

/// What can go wrong with any request to the engine API, whatever the route.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("the Rohimaya server refused the session even after refreshing it. Sign in again")]
    Unauthorized,
    #[error("the Rohimaya server asks to slow down")]
    RateLimited { retry_after: Option<Duration> },
    #[error("the Rohimaya server had a problem ({status})")]
    Server {
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("cannot reach the Rohimaya server at {url}: {reason}")]
    Unreachable {
        url: String,
        reason: String,
        /// Whether the request surely never reached the server (connect failure).
        before_sending: bool,
    },
    #[error("the Rohimaya server answered something unexpected ({detail})")]
    Unexpected { detail: String },
}

impl RequestError {
    /// Whether the same request may succeed later (network, 5xx, 429).
    pub fn is_temporary(&self) -> bool {
        matches!(
            self,
            RequestError::RateLimited { .. }
                | RequestError::Server { .. }
                | RequestError::Unreachable { .. }
        )
    }

    /// Whether the network (or the server's host) is out of reach: the request surely
    /// never left this computer (connection refused, no DNS answer, connect timeout), or
    /// no access token could be had for the same reason. Transfers wait for the network
    /// instead of counting this as a failed attempt.
    pub fn is_offline(&self) -> bool {
        match self {
            RequestError::Unreachable { before_sending, .. } => *before_sending,
            RequestError::Token(e) => e.code == ErrorCode::NetworkUnreachable,
            _ => false,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RequestError::RateLimited { retry_after }
            | RequestError::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl CoreError for RequestError {
    fn code(&self) -> ErrorCode {
        match self {
            RequestError::Token(e) => e.code,
            RequestError::Unauthorized => ErrorCode::Unauthorized,
            RequestError::RateLimited { .. } => ErrorCode::RateLimited,
            RequestError::Server { .. } => ErrorCode::ServerError,
            RequestError::Unreachable { .. } => ErrorCode::NetworkUnreachable,
            RequestError::Unexpected { .. } => ErrorCode::UnexpectedResponse,
        }
    }
}

/// A 4xx answer (other than 401 and 429) for the route to read into its own error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub status: u16,
    /// The body's `code` (the presign routes'), empty when it has none.
    pub code: String,
    /// The body's human text (FastAPI's `detail`, the Origin check's `message`).
    pub detail: String,
}

/// Sends the request `build` makes with a token from `tokens`; after a 401 the token is
/// refreshed once and the request sent again. `url` names the request in errors.
pub(crate) async fn send(
    tokens: &dyn AccessTokens,
    url: &str,
    build: impl Fn(&str) -> reqwest::RequestBuilder,
) -> Result<reqwest::Response, RequestError> {
    let token = tokens.access_token().await?;
    let res = send_once(build(&token), url).await?;
    if res.status() != reqwest::StatusCode::UNAUTHORIZED {
        return Ok(res);
    }
    let token = tokens.refresh_after_unauthorized(&token).await?;
    send_once(build(&token), url).await
}

/// Sends one request; a failure to get an answer is [`RequestError::Unreachable`].
pub(crate) async fn send_once(
    req: reqwest::RequestBuilder,
    url: &str,
) -> Result<reqwest::Response, RequestError> {
    req.send().await.map_err(|e| RequestError::Unreachable {
        url: url.split('?').next().unwrap_or(url).to_string(),
        reason: without_url(&e),
        before_sending: e.is_connect(),
    })
}

/// A 2xx answer as it is; 401, 429 and 5xx as [`RequestError`]s; any other status as the
/// [`Refusal`] the route decides about.
pub(crate) async fn check(
    res: reqwest::Response,
) -> Result<Result<reqwest::Response, Refusal>, RequestError> {
    let status = res.status();
    if status.is_success() {
        return Ok(Ok(res));
    }
    let retry_after = parse_retry_after(res.headers());
    let body: serde_json::Value = res.json().await.unwrap_or_default();
    Err(match status.as_u16() {
        401 => RequestError::Unauthorized,
        429 => RequestError::RateLimited { retry_after },
        s if s >= 500 => RequestError::Server {
            status: s,
            retry_after,
        },
        s => {
            return Ok(Err(Refusal {
                status: s,
                code: body["code"].as_str().unwrap_or_default().to_string(),
                detail: super::error_detail(&body, status),
            }));
        }
    })
}

/// The answer's body read whole and parsed; `what` names the route in errors.
pub(crate) async fn json<T: serde::de::DeserializeOwned>(
    res: reqwest::Response,
    what: &str,
) -> Result<T, RequestError> {
    let bytes = res.bytes().await.map_err(|e| RequestError::Unreachable {
        url: what.to_string(),
        reason: format!("the answer was cut off: {}", without_url(&e)),
        before_sending: false,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| RequestError::Unexpected {
        detail: format!("{what}: {e}"),
    })
}

/// `Retry-After` in seconds (an HTTP date is ignored: the backoff applies instead).
pub fn parse_retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s.min(3600)))
}

/// reqwest's messages embed the URL (with a presigned query); ours name it separately.
pub(crate) fn without_url(e: &reqwest::Error) -> String {
    let mut e = e.to_string();
    if let Some(i) = e.find(" for url (") {
        e.truncate(i);
    }
    e
}

/// `url` with the value of `X-Amz-Signature` replaced, for logs and debug output.
pub fn redact_url(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("X-Amz-Signature") => format!("{k}=REDACTED"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{base}?{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_redacted() {
        assert_eq!(
            redact_url("http://h/b/k?X-Amz-Date=1&X-Amz-Signature=abc"),
            "http://h/b/k?X-Amz-Date=1&X-Amz-Signature=REDACTED"
        );
        assert_eq!(redact_url("http://h/b/k"), "http://h/b/k");
    }

    #[test]
    fn temporary_offline_and_retry_after() {
        let offline = RequestError::Unreachable {
            url: "u".into(),
            reason: "refused".into(),
            before_sending: true,
        };
        assert!(offline.is_offline() && offline.is_temporary());
        let cut = RequestError::Unreachable {
            url: "u".into(),
            reason: "reset".into(),
            before_sending: false,
        };
        assert!(!cut.is_offline() && cut.is_temporary());
        let slow = RequestError::RateLimited {
            retry_after: Some(Duration::from_secs(3)),
        };
        assert_eq!(slow.retry_after(), Some(Duration::from_secs(3)));
        assert!(!RequestError::Unauthorized.is_temporary());
        let no_net = RequestError::Token(TokenError {
            code: ErrorCode::NetworkUnreachable,
            message: "offline".into(),
        });
        assert!(no_net.is_offline() && !no_net.is_temporary());
        assert_eq!(no_net.code(), ErrorCode::NetworkUnreachable);
    }
}

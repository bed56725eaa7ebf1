//! The engine API client: `/health` and the job routes (list, show, cancel, retry,
//! delete) over the existing engine's shapes, and in [`uploads`] the upload routes
//! (presign, multipart, job creation, the form fallback); later issues add tracks and
//! download routes. It owns HTTP to the engine, the mapping of failures onto typed
//! errors and the "401 -> refresh -> retry once" rule; it never reads tokens from storage
//! itself (it asks the [`SessionManager`] it was given) and never logs one.

pub mod downloads;
pub mod request;
pub mod uploads;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub(crate) use request::without_url;

use crate::auth::{AuthError, SessionManager};
use crate::config::Endpoints;
use crate::error::{CoreError, ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Signing in or refreshing failed (not signed in, signed out, network, ...).
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("the Rohimaya server refused the session even after refreshing it. Sign in again")]
    Unauthorized,
    #[error("not allowed: {detail}")]
    Forbidden { detail: String },
    #[error("not found: {detail}")]
    NotFound { detail: String },
    #[error("the Rohimaya server refused the request: {detail}")]
    Rejected { status: u16, detail: String },
    #[error("the Rohimaya server asks to slow down. Try again in a moment")]
    RateLimited { retry_after: Option<Duration> },
    #[error(
        "cannot reach the Rohimaya server at {url}: {reason}. Check your connection or the server address"
    )]
    Unreachable { url: String, reason: String },
    #[error("the Rohimaya server had a problem ({status}). Try again in a moment")]
    Server { status: u16 },
    #[error("the Rohimaya server answered something unexpected ({detail})")]
    Unexpected { detail: String },
}

impl CoreError for ApiError {
    fn code(&self) -> ErrorCode {
        match self {
            ApiError::Auth(e) => e.code(),
            ApiError::Unauthorized => ErrorCode::Unauthorized,
            ApiError::Forbidden { .. } => ErrorCode::Forbidden,
            ApiError::NotFound { .. } => ErrorCode::NotFound,
            ApiError::Rejected { .. } => ErrorCode::RequestRejected,
            ApiError::RateLimited { .. } => ErrorCode::RateLimited,
            ApiError::Unreachable { .. } => ErrorCode::NetworkUnreachable,
            ApiError::Server { .. } => ErrorCode::ServerError,
            ApiError::Unexpected { .. } => ErrorCode::UnexpectedResponse,
        }
    }
}

/// What `/health` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
}

/// A narration job as the engine's `JobResponse` has it. Fields the engine adds later
/// (or optional ones such as `genre`) are kept in `extra`, so nothing is lost on the way
/// to `rohimaya jobs --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    #[serde(default)]
    pub user_id: String,
    /// pending, processing, completed, failed or cancelled.
    pub status: String,
    #[serde(default)]
    pub mode: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub author: Option<String>,
    #[serde(default)]
    pub source_type: Option<String>,
    #[serde(default)]
    pub source_path: Option<String>,
    #[serde(default)]
    pub tts_provider: Option<String>,
    #[serde(default)]
    pub narrator_voice_id: Option<String>,
    #[serde(default)]
    pub audio_format: Option<String>,
    #[serde(default)]
    pub audio_bitrate: Option<String>,
    #[serde(default)]
    pub audio_path: Option<String>,
    #[serde(default)]
    pub duration_seconds: Option<i64>,
    #[serde(default)]
    pub file_size_bytes: Option<i64>,
    #[serde(default)]
    pub progress_percent: Option<f64>,
    #[serde(default)]
    pub current_step: Option<String>,
    #[serde(default)]
    pub error_message: Option<String>,
    #[serde(default)]
    pub retry_count: Option<i64>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub completed_at: Option<String>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// `GET /jobs` parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobsQuery {
    pub status: Option<String>,
    pub limit: Option<u32>,
    pub offset: Option<u32>,
}

#[derive(Clone, Debug)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    origin: Option<String>,
    session: Option<SessionManager>,
}

impl ApiClient {
    pub fn new(endpoints: &Endpoints) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("rohimaya-desktop/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self {
            http,
            base: endpoints.api_url.trim_end_matches('/').to_string(),
            origin: endpoints.origin.clone(),
            session: None,
        }
    }

    /// Authenticates requests with `session`'s access token (refreshed as needed).
    pub fn with_session(mut self, session: SessionManager) -> Self {
        self.session = Some(session);
        self
    }

    /// `GET /jobs?status_filter=&limit=&offset=`: the caller's jobs, newest first.
    pub async fn list_jobs(&self, query: &JobsQuery) -> Result<Vec<Job>, ApiError> {
        let mut params: Vec<(&str, String)> = Vec::new();
        if let Some(s) = &query.status {
            params.push(("status_filter", s.clone()));
        }
        if let Some(l) = query.limit {
            params.push(("limit", l.to_string()));
        }
        if let Some(o) = query.offset {
            params.push(("offset", o.to_string()));
        }
        let res = self
            .send_authed(reqwest::Method::GET, "/jobs", |r| r.query(&params))
            .await?;
        read_json(res, "/jobs").await
    }

    /// `GET /jobs/{id}`.
    pub async fn job(&self, id: &str) -> Result<Job, ApiError> {
        let path = job_path(id, "")?;
        let res = self.send_authed(reqwest::Method::GET, &path, |r| r).await?;
        read_json(res, &path).await
    }

    /// `POST /jobs/{id}/cancel`: the job as it is now.
    pub async fn cancel_job(&self, id: &str) -> Result<Job, ApiError> {
        let path = job_path(id, "/cancel")?;
        let res = self
            .send_authed(reqwest::Method::POST, &path, |r| r)
            .await?;
        read_json(res, &path).await
    }

    /// `POST /jobs/{id}/retry`: the job, pending again.
    pub async fn retry_job(&self, id: &str) -> Result<Job, ApiError> {
        let path = job_path(id, "/retry")?;
        let res = self
            .send_authed(reqwest::Method::POST, &path, |r| r)
            .await?;
        read_json(res, &path).await
    }

    /// `DELETE /jobs/{id}`: the job, its audio and (unless shared) its manuscript.
    pub async fn delete_job(&self, id: &str) -> Result<(), ApiError> {
        let path = job_path(id, "")?;
        self.send_authed(reqwest::Method::DELETE, &path, |r| r)
            .await?;
        Ok(())
    }

    /// The download routes, authenticated with this client's session (not signed in:
    /// every call fails with `not_signed_in`).
    pub fn downloads(&self) -> downloads::DownloadsApi {
        let tokens: std::sync::Arc<dyn request::AccessTokens> = match &self.session {
            Some(s) => std::sync::Arc::new(request::SessionTokens(s.clone())),
            None => std::sync::Arc::new(NoSession),
        };
        downloads::DownloadsApi::from_parts(self.http.clone(), self.base.clone(), tokens)
    }

    /// `GET /jobs/{id}/download`: a fresh presigned URL for the whole book. A 404 (job,
    /// audio gone) is [`downloads::DownloadApiError::Gone`].
    pub async fn book_download(
        &self,
        job_id: &str,
    ) -> Result<downloads::DownloadLink, downloads::DownloadApiError> {
        self.downloads().book_download(job_id).await
    }

    /// `GET /jobs/{id}/tracks`: the job's chapter tracks.
    pub async fn tracks(
        &self,
        job_id: &str,
    ) -> Result<Vec<downloads::Track>, downloads::DownloadApiError> {
        self.downloads().tracks(job_id).await
    }

    /// `GET /jobs/{id}/tracks/{tid}/download`: a fresh presigned URL for one track.
    pub async fn track_download(
        &self,
        job_id: &str,
        track_id: &str,
    ) -> Result<downloads::TrackLink, downloads::DownloadApiError> {
        self.downloads().track_download(job_id, track_id).await
    }

    /// Sends an authenticated request; on 401 refreshes the session and retries once.
    /// Answers other than 2xx become typed errors.
    async fn send_authed(
        &self,
        method: reqwest::Method,
        path: &str,
        customize: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ApiError> {
        let session = self.session.as_ref().ok_or_else(|| {
            ApiError::Auth(AuthError::NotSignedIn {
                profile: "(none)".into(),
            })
        })?;
        let url = format!("{}{path}", self.base);
        let build = |token: &crate::secrets::Secret| {
            let mut req =
                customize(self.http.request(method.clone(), &url)).bearer_auth(token.expose());
            if method != reqwest::Method::GET
                && let Some(origin) = &self.origin
            {
                req = req.header(reqwest::header::ORIGIN, origin);
            }
            req
        };
        let send = |req: reqwest::RequestBuilder| async {
            req.send().await.map_err(|e| ApiError::Unreachable {
                url: url.clone(),
                reason: without_url(&e),
            })
        };
        let token = session.access_token().await?;
        let mut res = send(build(&token)).await?;
        if res.status() == reqwest::StatusCode::UNAUTHORIZED {
            let token = session.refresh_after_unauthorized(&token).await?;
            res = send(build(&token)).await?;
            if res.status() == reqwest::StatusCode::UNAUTHORIZED {
                return Err(ApiError::Unauthorized);
            }
        }
        check_status(res).await
    }

    /// `GET {api_url}/health`.
    pub async fn health(&self) -> Result<Health, ApiError> {
        let url = format!("{}/health", self.base);
        let res = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| ApiError::Unreachable {
                url: url.clone(),
                reason: without_url(&e),
            })?;
        let status = res.status();
        if status.is_server_error() {
            return Err(ApiError::Server {
                status: status.as_u16(),
            });
        }
        if !status.is_success() {
            return Err(ApiError::Unexpected {
                detail: format!("HTTP {status} from /health"),
            });
        }
        res.json::<Health>()
            .await
            .map_err(|e| ApiError::Unexpected {
                detail: without_url(&e),
            })
    }
}

/// The token source of a client without a session.
struct NoSession;

impl request::AccessTokens for NoSession {
    fn access_token(&self) -> request::TokenFuture<'_> {
        Box::pin(async { Err(not_signed_in()) })
    }
    fn refresh_after_unauthorized<'a>(&'a self, _: &'a str) -> request::TokenFuture<'a> {
        Box::pin(async { Err(not_signed_in()) })
    }
}

fn not_signed_in() -> request::TokenError {
    request::TokenError {
        code: ErrorCode::NotSignedIn,
        message: "not signed in: run `rohimaya login` (or sign in in the app) first".into(),
    }
}

fn job_path(id: &str, suffix: &str) -> Result<String, ApiError> {
    let id = id.trim();
    if id.is_empty() || id.contains(['/', '?', '#']) || id.chars().any(char::is_control) {
        return Err(ApiError::NotFound {
            detail: format!("{id:?} is not a job id"),
        });
    }
    Ok(format!("/jobs/{id}{suffix}"))
}

/// The engine's error answers: `{"detail": "..."}`, FastAPI's 422 `{"detail": [...]}`,
/// or the Origin check's `{"error", "message"}`.
async fn check_status(res: reqwest::Response) -> Result<reqwest::Response, ApiError> {
    let status = res.status();
    if status.is_success() {
        return Ok(res);
    }
    let retry_after = request::parse_retry_after(res.headers());
    let body: serde_json::Value = res.json().await.unwrap_or_default();
    let detail = error_detail(&body, status);
    Err(match status.as_u16() {
        401 => ApiError::Unauthorized,
        403 => ApiError::Forbidden { detail },
        404 => ApiError::NotFound { detail },
        429 => ApiError::RateLimited { retry_after },
        s if s >= 500 => ApiError::Server { status: s },
        s => ApiError::Rejected { status: s, detail },
    })
}

async fn read_json<T: serde::de::DeserializeOwned>(
    res: reqwest::Response,
    path: &str,
) -> Result<T, ApiError> {
    res.json::<T>().await.map_err(|e| ApiError::Unexpected {
        detail: format!("{path}: {}", without_url(&e)),
    })
}

/// The human text of an engine error body: FastAPI's `detail` (a string, or the list of
/// validation errors), else the current engine's `message`, else the status.
pub(crate) fn error_detail(body: &serde_json::Value, status: reqwest::StatusCode) -> String {
    match &body["detail"] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(errors) => errors
            .iter()
            .filter_map(|e| e["msg"].as_str())
            .collect::<Vec<_>>()
            .join("; "),
        _ => body["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("HTTP {status}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unreachable_server_is_a_network_error() {
        // Bind then drop a listener to get a port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let client = ApiClient::new(&Endpoints {
            supabase_url: format!("http://127.0.0.1:{port}"),
            anon_key: "k".into(),
            api_url: format!("http://127.0.0.1:{port}/api"),
            origin: None,
        });
        let err = client.health().await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::NetworkUnreachable);
    }
}

//! The engine API's download routes: `GET /jobs/{id}/download` (the whole book's URL),
//! `GET /jobs/{id}/tracks` (the chapter tracks) and `GET /jobs/{id}/tracks/{tid}/download`
//! (one track's URL), in the existing engine's shapes: the download concern of
//! [`crate::api`].
//!
//! It owns these HTTP calls, the "401 -> refresh once -> retry" rule for them and the
//! mapping of answers onto [`DownloadApiError`]; a 404 becomes [`DownloadApiError::Gone`]
//! so the library can mark a book "only on this computer". It never retries on its own
//! (the download engine decides), never talks to the object store and never logs a token
//! or a presigned URL's signature (their `Debug` output is redacted).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::request::{self, AccessTokens, Refusal, RequestError, TokenError, redact_url};
use crate::config::Endpoints;
use crate::error::{CoreError, ErrorCode};

#[derive(Debug, Clone, thiserror::Error)]
pub enum DownloadApiError {
    /// What any request can meet (network, session, 429, 5xx, an unreadable answer).
    #[error(transparent)]
    Request(#[from] RequestError),
    /// 404: the job, the track or its audio no longer exists on the server (deleted, or
    /// removed by the storage's lifecycle rules). A local copy is all there is.
    #[error("the server no longer has it ({detail}); any copy on this computer is the only one")]
    Gone { detail: String },
    #[error("not allowed: {detail}")]
    Forbidden { detail: String },
    /// 400, 409, 422: e.g. the job is not completed yet.
    #[error("the Rohimaya server refused the request: {detail}")]
    Rejected { status: u16, detail: String },
}

impl From<TokenError> for DownloadApiError {
    fn from(e: TokenError) -> Self {
        DownloadApiError::Request(e.into())
    }
}

impl DownloadApiError {
    /// Whether the same request may succeed later (network, 5xx, 429).
    pub fn is_temporary(&self) -> bool {
        matches!(self, DownloadApiError::Request(e) if e.is_temporary())
    }

    /// Whether the network is out of reach (see [`RequestError::is_offline`]): wait for
    /// it, it is not a failed attempt.
    pub fn is_offline(&self) -> bool {
        matches!(self, DownloadApiError::Request(e) if e.is_offline())
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            DownloadApiError::Request(e) => e.retry_after(),
            _ => None,
        }
    }
}

impl CoreError for DownloadApiError {
    fn code(&self) -> ErrorCode {
        match self {
            DownloadApiError::Request(e) => e.code(),
            DownloadApiError::Gone { .. } => ErrorCode::ServerCopyGone,
            DownloadApiError::Forbidden { .. } => ErrorCode::Forbidden,
            DownloadApiError::Rejected { .. } => ErrorCode::RequestRejected,
        }
    }
}

/// `GET /jobs/{id}/download`: a presigned GET of the whole book.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct DownloadLink {
    pub url: String,
    /// Seconds the URL stays valid.
    pub expires_in: u64,
}

impl std::fmt::Debug for DownloadLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DownloadLink")
            .field("url", &redact_url(&self.url))
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// A chapter track as the engine's `TrackResponse` has it. Names and titles come from the
/// server and are not trusted: the library sanitizes them before they touch a path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Track {
    pub id: String,
    #[serde(default)]
    pub job_id: String,
    #[serde(default)]
    pub chapter_id: Option<String>,
    #[serde(default)]
    pub track_index: i64,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub segment_type: Option<String>,
    #[serde(default)]
    pub audio_path: Option<String>,
    #[serde(default)]
    pub duration_seconds: Option<i64>,
    #[serde(default)]
    pub file_size_bytes: Option<i64>,
    #[serde(default)]
    pub export_filename: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// `GET /jobs/{id}/tracks/{tid}/download`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct TrackLink {
    pub track_id: String,
    pub export_filename: String,
    pub download_url: String,
    pub expires_in: u64,
}

impl std::fmt::Debug for TrackLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackLink")
            .field("track_id", &self.track_id)
            .field("export_filename", &self.export_filename)
            .field("download_url", &redact_url(&self.download_url))
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// The download routes of one backend, authenticated by an [`AccessTokens`] source.
#[derive(Clone)]
pub struct DownloadsApi {
    http: reqwest::Client,
    base: String,
    tokens: Arc<dyn AccessTokens>,
}

impl std::fmt::Debug for DownloadsApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DownloadsApi")
            .field("base", &self.base)
            .finish()
    }
}

impl DownloadsApi {
    pub fn new(
        http: reqwest::Client,
        endpoints: &Endpoints,
        tokens: Arc<dyn AccessTokens>,
    ) -> Self {
        Self {
            http,
            base: endpoints.api_url.trim_end_matches('/').to_string(),
            tokens,
        }
    }

    pub(crate) fn from_parts(
        http: reqwest::Client,
        base: String,
        tokens: Arc<dyn AccessTokens>,
    ) -> Self {
        Self { http, base, tokens }
    }

    /// A client with the timeouts these small requests want.
    pub fn default_http() -> reqwest::Client {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("rohimaya-desktop/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default()
    }

    /// `GET /jobs/{id}/download`: a fresh URL for the whole book.
    pub async fn book_download(&self, job_id: &str) -> Result<DownloadLink, DownloadApiError> {
        let path = format!("/jobs/{}/download", segment(job_id, "job")?);
        let res = self.get(&path).await?;
        Ok(request::json(res, "/jobs/{id}/download").await?)
    }

    /// `GET /jobs/{id}/tracks`: the job's chapter tracks, in the engine's order.
    pub async fn tracks(&self, job_id: &str) -> Result<Vec<Track>, DownloadApiError> {
        let path = format!("/jobs/{}/tracks", segment(job_id, "job")?);
        let res = self.get(&path).await?;
        Ok(request::json(res, "/jobs/{id}/tracks").await?)
    }

    /// `GET /jobs/{id}/tracks/{tid}/download`: a fresh URL for one track.
    pub async fn track_download(
        &self,
        job_id: &str,
        track_id: &str,
    ) -> Result<TrackLink, DownloadApiError> {
        let path = format!(
            "/jobs/{}/tracks/{}/download",
            segment(job_id, "job")?,
            segment(track_id, "track")?
        );
        let res = self.get(&path).await?;
        Ok(request::json(res, "/jobs/{id}/tracks/{tid}/download").await?)
    }

    /// An authenticated GET; on 401 refreshes once and retries.
    async fn get(&self, path: &str) -> Result<reqwest::Response, DownloadApiError> {
        let url = format!("{}{path}", self.base);
        let build = |token: &str| self.http.get(&url).bearer_auth(token);
        let res = request::send(self.tokens.as_ref(), &url, build).await?;
        match request::check(res).await? {
            Ok(res) => Ok(res),
            Err(Refusal { status, detail, .. }) => Err(match status {
                403 => DownloadApiError::Forbidden { detail },
                404 | 410 => DownloadApiError::Gone { detail },
                s => DownloadApiError::Rejected { status: s, detail },
            }),
        }
    }
}

/// An id as one path segment, refused (as gone) if it could climb or escape the path.
fn segment<'a>(id: &'a str, what: &str) -> Result<&'a str, DownloadApiError> {
    let id = id.trim();
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(DownloadApiError::Gone {
            detail: format!("{id:?} is not a {what} id"),
        });
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_and_urls_redacted() {
        assert!(segment("2b9e-aa_1", "job").is_ok());
        assert!(matches!(
            segment("../x", "job"),
            Err(DownloadApiError::Gone { .. })
        ));
        assert!(segment("a/b", "track").is_err());
        let link = DownloadLink {
            url: "http://h/b/k?X-Amz-Signature=secret".into(),
            expires_in: 5,
        };
        assert!(!format!("{link:?}").contains("secret"));
        let track: Track = serde_json::from_value(serde_json::json!({
            "id": "t1", "job_id": "j", "track_index": 2, "title": "Two",
            "segment_type": "chapter", "export_filename": "02 - Two.wav",
            "file_size_bytes": 10, "status": "completed", "created_at": "x", "novel": 1
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(track.track_index, 2);
        assert_eq!(track.extra["novel"], 1);
    }
}

//! The engine API's upload routes: the presign extension (`/uploads/presign`,
//! `/uploads/multipart...`, see docs/backend-api.md), job creation after an upload
//! (`POST /jobs`) and the form fallback (`POST /jobs/upload`): the upload concern of
//! [`crate::api`].
//!
//! It owns these HTTP calls, the "401 -> refresh once -> retry" rule for them and the
//! mapping of answers onto [`UploadApiError`] (matching the backend's `code`, never its
//! `detail`). It never retries on its own (the transfer engine decides), never talks to
//! the object store, and never logs a token or a presigned URL's signature.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::request::{self, AccessTokens, Refusal, RequestError, TokenError, redact_url};
use crate::config::Endpoints;
use crate::error::{CoreError, ErrorCode};

#[derive(Debug, Clone, thiserror::Error)]
pub enum UploadApiError {
    /// What any request can meet (network, session, 429, 5xx, an unreadable answer).
    #[error(transparent)]
    Request(#[from] RequestError),
    /// 404/405 on the presign routes: this backend only takes `POST /jobs/upload`.
    #[error("this server has no direct-upload routes")]
    PresignUnsupported,
    /// The upload is unknown to the server (completed, aborted or expired): start anew.
    #[error("the server no longer knows this upload (it expired or was aborted)")]
    NoSuchUpload,
    #[error("the Rohimaya server refused the upload request ({code}): {detail}")]
    Rejected {
        status: u16,
        code: String,
        detail: String,
    },
}

impl From<TokenError> for UploadApiError {
    fn from(e: TokenError) -> Self {
        UploadApiError::Request(e.into())
    }
}

impl UploadApiError {
    /// Whether the same request may succeed later (network, 5xx, 429).
    pub fn is_temporary(&self) -> bool {
        matches!(self, UploadApiError::Request(e) if e.is_temporary())
    }

    /// Whether the network is out of reach (see [`RequestError::is_offline`]): the
    /// uploader waits for it instead of counting a failed attempt.
    pub fn is_offline(&self) -> bool {
        matches!(self, UploadApiError::Request(e) if e.is_offline())
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            UploadApiError::Request(e) => e.retry_after(),
            _ => None,
        }
    }

    fn unexpected(detail: impl Into<String>) -> Self {
        UploadApiError::Request(RequestError::Unexpected {
            detail: detail.into(),
        })
    }
}

impl CoreError for UploadApiError {
    fn code(&self) -> ErrorCode {
        match self {
            UploadApiError::Request(e) => e.code(),
            UploadApiError::PresignUnsupported => ErrorCode::RequestRejected,
            UploadApiError::NoSuchUpload => ErrorCode::NotFound,
            UploadApiError::Rejected { status: 403, .. } => ErrorCode::Forbidden,
            UploadApiError::Rejected { .. } => ErrorCode::RequestRejected,
        }
    }
}

/// A presigned request: send `url` exactly as issued with exactly these `headers`.
#[derive(Clone, Deserialize)]
pub struct PresignedPut {
    pub object_key: String,
    pub url: String,
    #[serde(default = "put")]
    pub method: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub expires_in: u64,
}

fn put() -> String {
    "PUT".into()
}

impl std::fmt::Debug for PresignedPut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresignedPut")
            .field("object_key", &self.object_key)
            .field("url", &redact_url(&self.url))
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct MultipartCreated {
    pub upload_id: String,
    pub object_key: String,
    pub part_size: u64,
}

#[derive(Clone, Deserialize)]
pub struct SignedPart {
    pub part_number: u32,
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub expires_in: u64,
}

impl std::fmt::Debug for SignedPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedPart")
            .field("part_number", &self.part_number)
            .field("url", &redact_url(&self.url))
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StoredPart {
    pub part_number: u32,
    pub etag: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CompletedObject {
    pub object_key: String,
    pub etag: String,
    pub size: u64,
}

/// What the narration job is made with (flags or settings); unset fields take the
/// engine's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct JobOptions {
    /// Defaults to the file name without its extension.
    pub title: Option<String>,
    pub author: Option<String>,
    /// The narrator voice (`narrator_voice_id`), default `alloy`.
    pub voice: Option<String>,
    /// mp3, wav, flac or m4b (default mp3).
    pub format: Option<String>,
    /// e.g. `128k` (the engine's default).
    pub bitrate: Option<String>,
    /// single_voice, dual_voice or findaway (default single_voice).
    #[serde(default)]
    pub mode: Option<String>,
}

impl JobOptions {
    /// The title: the given one, else the file name without its extension.
    pub fn title_for(&self, file_name: &str) -> String {
        if let Some(t) = self.title.as_ref().filter(|t| !t.trim().is_empty()) {
            return t.trim().to_string();
        }
        let stem = match file_name.rfind('.') {
            Some(i) if i > 0 => &file_name[..i],
            _ => file_name,
        };
        let stem = stem.trim();
        let title: String = stem.chars().take(200).collect();
        if title.is_empty() {
            "Untitled".into()
        } else {
            title
        }
    }
}

/// The job the engine created (the fields the upload side needs; the rest is kept).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedJob {
    pub id: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub source_path: Option<String>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The upload routes of one backend, authenticated by an [`AccessTokens`] source.
#[derive(Clone)]
pub struct UploadsApi {
    http: reqwest::Client,
    base: String,
    origin: Option<String>,
    tokens: Arc<dyn AccessTokens>,
}

impl std::fmt::Debug for UploadsApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadsApi")
            .field("base", &self.base)
            .finish()
    }
}

impl UploadsApi {
    pub fn new(
        http: reqwest::Client,
        endpoints: &Endpoints,
        tokens: Arc<dyn AccessTokens>,
    ) -> Self {
        Self {
            http,
            base: endpoints.api_url.trim_end_matches('/').to_string(),
            origin: endpoints.origin.clone(),
            tokens,
        }
    }

    /// A client with the timeouts the upload routes want (requests are small).
    pub fn default_http() -> reqwest::Client {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("rohimaya-desktop/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default()
    }

    /// `POST /uploads/presign`: one presigned PUT for the whole file.
    pub async fn presign(
        &self,
        filename: &str,
        content_type: &str,
        size: u64,
        content_md5: &str,
    ) -> Result<PresignedPut, UploadApiError> {
        let body = serde_json::json!({
            "filename": filename, "content_type": content_type, "size": size,
            "content_md5": content_md5,
        });
        let res = self
            .send(reqwest::Method::POST, "/uploads/presign", Some(&body), true)
            .await?;
        Ok(request::json(res, "/uploads/presign").await?)
    }

    /// `POST /uploads/multipart`: starts a multipart upload with a fixed part size.
    pub async fn create_multipart(
        &self,
        filename: &str,
        content_type: &str,
        size: u64,
        part_size: u64,
    ) -> Result<MultipartCreated, UploadApiError> {
        let body = serde_json::json!({
            "filename": filename, "content_type": content_type, "size": size,
            "part_size": part_size,
        });
        let res = self
            .send(
                reqwest::Method::POST,
                "/uploads/multipart",
                Some(&body),
                true,
            )
            .await?;
        Ok(request::json(res, "/uploads/multipart").await?)
    }

    /// `POST /uploads/multipart/{id}/parts`: presigned PUTs for these parts.
    pub async fn sign_parts(
        &self,
        upload_id: &str,
        object_key: &str,
        parts: &[(u32, String)],
    ) -> Result<Vec<SignedPart>, UploadApiError> {
        #[derive(Deserialize)]
        struct Answer {
            parts: Vec<SignedPart>,
        }
        let path = format!("/uploads/multipart/{}/parts", path_segment(upload_id)?);
        let list: Vec<_> = parts
            .iter()
            .map(|(n, md5)| serde_json::json!({"part_number": n, "content_md5": md5}))
            .collect();
        let body = serde_json::json!({"object_key": object_key, "parts": list});
        let res = self
            .send(reqwest::Method::POST, &path, Some(&body), false)
            .await?;
        Ok(request::json::<Answer>(res, &path).await?.parts)
    }

    /// `GET /uploads/multipart/{id}/parts?object_key=`: the parts the store has.
    pub async fn list_parts(
        &self,
        upload_id: &str,
        object_key: &str,
    ) -> Result<Vec<StoredPart>, UploadApiError> {
        #[derive(Deserialize)]
        struct Answer {
            parts: Vec<StoredPart>,
        }
        let path = format!(
            "/uploads/multipart/{}/parts?object_key={}",
            path_segment(upload_id)?,
            query_value(object_key)
        );
        let res = self.send(reqwest::Method::GET, &path, None, false).await?;
        Ok(
            request::json::<Answer>(res, "/uploads/multipart/{id}/parts")
                .await?
                .parts,
        )
    }

    /// `POST /uploads/multipart/{id}/complete` with the parts in ascending order.
    pub async fn complete(
        &self,
        upload_id: &str,
        object_key: &str,
        parts: &[(u32, String)],
    ) -> Result<CompletedObject, UploadApiError> {
        let path = format!("/uploads/multipart/{}/complete", path_segment(upload_id)?);
        let list: Vec<_> = parts
            .iter()
            .map(|(n, etag)| serde_json::json!({"part_number": n, "etag": etag}))
            .collect();
        let body = serde_json::json!({"object_key": object_key, "parts": list});
        let res = self
            .send(reqwest::Method::POST, &path, Some(&body), false)
            .await?;
        Ok(request::json(res, "/uploads/multipart/{id}/complete").await?)
    }

    /// `DELETE /uploads/multipart/{id}?object_key=`: discards the upload and its parts.
    pub async fn abort(&self, upload_id: &str, object_key: &str) -> Result<(), UploadApiError> {
        let path = format!(
            "/uploads/multipart/{}?object_key={}",
            path_segment(upload_id)?,
            query_value(object_key)
        );
        match self.send(reqwest::Method::DELETE, &path, None, false).await {
            Ok(_) | Err(UploadApiError::NoSuchUpload) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `POST /jobs` for an uploaded manuscript (`source_path` = its object key).
    pub async fn create_job(
        &self,
        object_key: &str,
        file_name: &str,
        options: &JobOptions,
    ) -> Result<CreatedJob, UploadApiError> {
        let mut body = serde_json::json!({
            "title": options.title_for(file_name),
            "source_type": "upload",
            "source_path": object_key,
            "mode": options.mode.clone().unwrap_or_else(|| "single_voice".into()),
            "tts_provider": "openai",
            "narrator_voice_id": options.voice.clone().unwrap_or_else(|| "alloy".into()),
            "audio_format": options.format.clone().unwrap_or_else(|| "mp3".into()),
            "audio_bitrate": options.bitrate.clone().unwrap_or_else(|| "128k".into()),
        });
        if let Some(author) = options.author.as_ref().filter(|a| !a.trim().is_empty()) {
            body["author"] = serde_json::Value::String(author.trim().to_string());
        }
        let res = self
            .send(reqwest::Method::POST, "/jobs", Some(&body), false)
            .await?;
        Ok(request::json(res, "/jobs").await?)
    }

    /// `POST /jobs/upload`: the whole file in a multipart form, streamed from disk (the
    /// fallback for backends without presign routes). The engine's form takes no author.
    pub async fn create_job_with_upload(
        &self,
        path: &Path,
        file_name: &str,
        content_type: &str,
        options: &JobOptions,
    ) -> Result<CreatedJob, UploadApiError> {
        let url = format!("{}/jobs/upload", self.base);
        let unreadable = |e: std::io::Error| {
            UploadApiError::unexpected(format!("cannot read {}: {e}", path.display()))
        };
        let build = |token: &str| {
            let path = path.to_path_buf();
            let file_name = file_name.to_string();
            let content_type = content_type.to_string();
            let url = url.clone();
            let options = options.clone();
            let token = token.to_string();
            async move {
                let file = tokio::fs::File::open(&path).await.map_err(unreadable)?;
                let len = file.metadata().await.map_err(unreadable)?.len();
                let stream = tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024);
                let part = reqwest::multipart::Part::stream_with_length(
                    reqwest::Body::wrap_stream(stream),
                    len,
                )
                .file_name(file_name.clone())
                .mime_str(&content_type)
                .map_err(|e| UploadApiError::unexpected(e.to_string()))?;
                let mut form = reqwest::multipart::Form::new()
                    .part("file", part)
                    .text("title", options.title_for(&file_name))
                    .text(
                        "narrator_voice_id",
                        options.voice.clone().unwrap_or_else(|| "alloy".into()),
                    )
                    .text(
                        "audio_format",
                        options.format.clone().unwrap_or_else(|| "mp3".into()),
                    );
                if let Some(b) = &options.bitrate {
                    form = form.text("audio_bitrate", b.clone());
                }
                let mut req = self
                    .http
                    .post(&url)
                    .bearer_auth(&token)
                    .timeout(Duration::from_secs(3600))
                    .multipart(form);
                if let Some(origin) = &self.origin {
                    req = req.header(reqwest::header::ORIGIN, origin);
                }
                Ok::<_, UploadApiError>(req)
            }
        };
        let token = self.tokens.access_token().await?;
        let mut res = request::send_once(build(&token).await?, &url).await?;
        if res.status() == reqwest::StatusCode::UNAUTHORIZED {
            let token = self.tokens.refresh_after_unauthorized(&token).await?;
            res = request::send_once(build(&token).await?, &url).await?;
        }
        let res = check(res, false).await?;
        Ok(request::json(res, "/jobs/upload").await?)
    }

    /// Sends an authenticated request; on 401 refreshes once and retries.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
        presign_route: bool,
    ) -> Result<reqwest::Response, UploadApiError> {
        let url = format!("{}{path}", self.base);
        let build = |token: &str| {
            let mut req = self.http.request(method.clone(), &url).bearer_auth(token);
            if let Some(b) = body {
                req = req.json(b);
            }
            if method != reqwest::Method::GET
                && let Some(origin) = &self.origin
            {
                req = req.header(reqwest::header::ORIGIN, origin);
            }
            req
        };
        let res = request::send(self.tokens.as_ref(), &url, build).await?;
        check(res, presign_route).await
    }
}

/// A failure answer read into an [`UploadApiError`]: the presign routes' `code`
/// (`NoSuchUpload`; none at all on a 404/405 of a presign route means the routes do not
/// exist here), else the status.
async fn check(
    res: reqwest::Response,
    presign_route: bool,
) -> Result<reqwest::Response, UploadApiError> {
    let Refusal {
        status,
        code,
        detail,
    } = match request::check(res).await? {
        Ok(res) => return Ok(res),
        Err(refusal) => refusal,
    };
    Err(match status {
        404 | 405 if presign_route && code.is_empty() => UploadApiError::PresignUnsupported,
        404 if code == "NoSuchUpload" => UploadApiError::NoSuchUpload,
        s => UploadApiError::Rejected {
            status: s,
            code: if code.is_empty() {
                format!("http_{s}")
            } else {
                code
            },
            detail,
        },
    })
}

/// An id as one path segment: refused if it could climb or escape the path.
fn path_segment(id: &str) -> Result<&str, UploadApiError> {
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(UploadApiError::unexpected(format!(
            "{id:?} is not an upload id"
        )));
    }
    Ok(id)
}

/// A query value, percent-encoded (keys carry spaces, `+`, `&`, `%` and unicode).
fn query_value(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_come_from_file_names() {
        let o = JobOptions::default();
        assert_eq!(o.title_for("The Book.epub"), "The Book");
        assert_eq!(o.title_for(".hidden"), ".hidden");
        assert_eq!(o.title_for("a.b.txt"), "a.b");
        let o = JobOptions {
            title: Some("  Mine ".into()),
            ..JobOptions::default()
        };
        assert_eq!(o.title_for("x.txt"), "Mine");
    }

    #[test]
    fn signatures_are_redacted_and_ids_checked() {
        assert_eq!(
            redact_url("http://h/b/k?X-Amz-Date=1&X-Amz-Signature=abc"),
            "http://h/b/k?X-Amz-Date=1&X-Amz-Signature=REDACTED"
        );
        assert!(path_segment("2b9e-aa_1").is_ok());
        assert!(path_segment("../x").is_err());
        assert!(path_segment("").is_err());
        assert_eq!(query_value("a b+&%/é"), "a+b%2B%26%25%2F%C3%A9");
    }
}

//! The engine's job routes, byte-compatible with the FastAPI engine's `main.py`:
//! `GET /health`, `GET|POST /jobs`, `POST /jobs/upload`, `GET|DELETE /jobs/{id}`,
//! `GET /jobs/{id}/download`, `GET /jobs/{id}/tracks`,
//! `GET /jobs/{id}/tracks/{tid}/download`, `POST /jobs/{id}/cancel`, `POST /jobs/{id}/retry`,
//! plus the engine's Origin check on state-changing requests.
//!
//! It owns the `jobs` and `tracks` tables and the rows' wire shapes (`JobResponse`,
//! `TrackResponse`, ...). It checks ownership on every job route (404 unknown, 403
//! another user's). It never narrates: it hands jobs to the simulator, which alone moves
//! a job through processing (through the `pub(crate)` data functions at the bottom).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{ApiError, AuthUser};
use crate::server::Backend;

/// Tables: jobs (one row per narration job; `extra` holds the optional engine fields as a
/// JSON object, `run_id` the simulator run that may write progress) and tracks (one row
/// per chapter of a completed job; deleted with the job).
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    status TEXT NOT NULL,
    mode TEXT NOT NULL,
    title TEXT NOT NULL,
    author TEXT,
    source_type TEXT,
    source_path TEXT,
    tts_provider TEXT,
    narrator_voice_id TEXT,
    character_voice_id TEXT,
    character_name TEXT,
    audio_format TEXT,
    audio_bitrate TEXT,
    audio_path TEXT,
    duration_seconds INTEGER,
    file_size_bytes INTEGER,
    progress_percent REAL,
    current_step TEXT,
    error_message TEXT,
    retry_count INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    started_at TEXT,
    completed_at TEXT,
    extra TEXT NOT NULL DEFAULT '{}',
    run_id TEXT NOT NULL DEFAULT '',
    created_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_by_user ON jobs (user_id, created_ms);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status);
CREATE TABLE IF NOT EXISTS tracks (
    id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    chapter_id TEXT,
    track_index INTEGER NOT NULL,
    title TEXT NOT NULL,
    segment_type TEXT NOT NULL DEFAULT 'body_chapter',
    audio_path TEXT,
    duration_seconds INTEGER,
    file_size_bytes INTEGER,
    export_filename TEXT,
    status TEXT NOT NULL DEFAULT 'pending',
    created_at TEXT NOT NULL,
    UNIQUE (job_id, track_index)
);
";

/// The largest manuscript `POST /jobs/upload` (or a pasted `manuscript_text`) accepts.
pub const MAX_MANUSCRIPT_BYTES: usize = 64 * 1024 * 1024;

/// The engine's allowed extensions for `POST /jobs/upload`, in its order.
const UPLOAD_EXTENSIONS: &[&str] = &[".txt", ".docx", ".pdf", ".md", ".html", ".htm", ".epub"];

/// Manual retries the engine allows before asking for a new job.
const MAX_MANUAL_RETRIES: i64 = 10;

/// Job status values (the subset of the engine's that the devstack uses).
pub mod status {
    pub const PENDING: &str = "pending";
    pub const PROCESSING: &str = "processing";
    pub const COMPLETED: &str = "completed";
    pub const FAILED: &str = "failed";
    pub const CANCELLED: &str = "cancelled";
}

/// The job routes, mounted under `/api` by [`super::router`].
pub fn routes() -> Router<Backend> {
    let limit = DefaultBodyLimit::max(MAX_MANUSCRIPT_BYTES);
    Router::new()
        .route("/jobs", get(list_jobs).post(create_job).layer(limit))
        .route("/jobs/upload", post(create_job_with_upload).layer(limit))
        .route("/jobs/{job_id}", get(get_job).delete(delete_job))
        .route("/jobs/{job_id}/download", get(download_job))
        .route("/jobs/{job_id}/tracks", get(list_tracks))
        .route(
            "/jobs/{job_id}/tracks/{track_id}/download",
            get(download_track),
        )
        .route("/jobs/{job_id}/cancel", post(cancel_job))
        .route("/jobs/{job_id}/retry", post(retry_job))
        .route_layer(axum::middleware::from_fn(origin_guard))
        // The engine exempts /health from its Origin check.
        .route("/health", get(health))
}

// ---------------------------------------------------------------------------------------
// Wire shapes
// ---------------------------------------------------------------------------------------

/// The engine's optional job fields that the devstack stores but never interprets.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct JobExtra {
    pub input_language_code: Option<String>,
    pub output_language_code: Option<String>,
    pub voice_preset_id: Option<String>,
    pub emotion_style_prompt: Option<String>,
    pub narrator_name: Option<String>,
    pub genre: Option<String>,
    pub language: Option<String>,
    pub isbn: Option<String>,
    pub publisher: Option<String>,
    pub sample_style: Option<String>,
    pub package_type: Option<String>,
    pub section_count: Option<i64>,
}

/// The engine's `JobResponse`, field for field and in its order.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct JobResponse {
    pub id: String,
    pub user_id: String,
    pub status: String,
    pub mode: String,
    pub title: String,
    pub author: Option<String>,
    pub source_type: Option<String>,
    pub source_path: Option<String>,
    pub tts_provider: Option<String>,
    pub narrator_voice_id: Option<String>,
    pub character_voice_id: Option<String>,
    pub character_name: Option<String>,
    pub audio_format: Option<String>,
    pub audio_bitrate: Option<String>,
    pub audio_path: Option<String>,
    pub duration_seconds: Option<i64>,
    pub file_size_bytes: Option<i64>,
    pub progress_percent: Option<f64>,
    pub current_step: Option<String>,
    pub error_message: Option<String>,
    pub retry_count: Option<i64>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    #[serde(flatten)]
    pub extra: JobExtra,
}

/// The engine's `TrackResponse`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TrackResponse {
    pub id: String,
    pub job_id: String,
    pub chapter_id: Option<String>,
    pub track_index: i64,
    pub title: String,
    pub segment_type: String,
    pub audio_path: Option<String>,
    pub duration_seconds: Option<i64>,
    pub file_size_bytes: Option<i64>,
    pub export_filename: Option<String>,
    pub status: String,
    pub created_at: String,
}

#[derive(Serialize)]
struct DownloadUrlResponse {
    url: String,
    expires_in: u64,
}

#[derive(Serialize)]
struct TrackDownloadUrlResponse {
    track_id: String,
    export_filename: String,
    download_url: String,
    expires_in: u64,
}

#[derive(Serialize)]
struct HealthResponse {
    status: &'static str,
    service: &'static str,
    version: &'static str,
    timestamp: String,
    dependencies: Option<Value>,
    worker_running: Option<bool>,
    queue_size: Option<i64>,
}

// ---------------------------------------------------------------------------------------
// Origin check
// ---------------------------------------------------------------------------------------

/// The engine's CSRF middleware: a POST, PUT, PATCH or DELETE whose `Origin` (or, without
/// one, `Referer`'s origin) is not allowed gets 403 `{"error":"forbidden","message":"Invalid
/// origin"}` before authentication. Allowed here: loopback web origins on any port and the
/// Tauri webview origins. Unlike the engine (which also refuses a request with neither
/// header), a request without `Origin` and `Referer` passes: native clients send none.
pub async fn origin_guard(req: Request, next: Next) -> Response {
    let changes_state = matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    if changes_state && !request_origin_allowed(req.headers()) {
        tracing::warn!(path = %req.uri().path(), "refusing a request from an unknown origin");
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"error": "forbidden", "message": "Invalid origin"})),
        )
            .into_response();
    }
    next.run(req).await
}

fn request_origin_allowed(headers: &HeaderMap) -> bool {
    if let Some(origin) = headers.get(header::ORIGIN) {
        return origin.to_str().map(origin_allowed).unwrap_or(false);
    }
    if let Some(referer) = headers.get(header::REFERER) {
        let Ok(referer) = referer.to_str() else {
            return false;
        };
        let Ok(url) = url::Url::parse(referer) else {
            return false;
        };
        return origin_allowed(&url.origin().ascii_serialization());
    }
    true
}

/// Whether an `Origin` value may change state: `http(s)://localhost|127.0.0.1|[::1][:port]`,
/// `tauri://localhost`, `http(s)://tauri.localhost`.
pub fn origin_allowed(origin: &str) -> bool {
    if matches!(
        origin,
        "tauri://localhost" | "http://tauri.localhost" | "https://tauri.localhost"
    ) {
        return true;
    }
    let Ok(url) = url::Url::parse(origin) else {
        return false;
    };
    let serialized = url.origin().ascii_serialization();
    if serialized != origin.trim_end_matches('/') {
        // Paths, credentials or queries are not part of an origin.
        return false;
    }
    matches!(url.scheme(), "http" | "https")
        && matches!(
            url.host_str(),
            Some("localhost") | Some("127.0.0.1") | Some("[::1]")
        )
}

// ---------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------

async fn health(State(backend): State<Backend>) -> Result<Json<HealthResponse>, ApiError> {
    let queued = backend.db.call(|c| {
        c.query_row(
            "SELECT COUNT(*) FROM jobs WHERE status IN ('pending', 'processing')",
            [],
            |r| r.get::<_, i64>(0),
        )
    })?;
    Ok(Json(HealthResponse {
        status: "ok",
        service: "authorflow-engine",
        version: "0.2.0",
        timestamp: format_timestamp(backend.clock.now_ms(), TimestampStyle::Health),
        dependencies: None,
        worker_running: Some(true),
        queue_size: Some(queued),
    }))
}

async fn list_jobs(
    State(backend): State<Backend>,
    user: AuthUser,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let mut status_filter: Option<String> = None;
    let mut limit: i64 = 50;
    let mut offset: i64 = 0;
    let mut errors = Vec::new();
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "status_filter" => status_filter = Some(value.into_owned()),
            "limit" | "offset" => match value.trim().parse::<i64>() {
                Ok(n) if name == "limit" => limit = n,
                Ok(n) => offset = n,
                Err(_) => errors.push(json!({
                    "type": "int_parsing",
                    "loc": ["query", name],
                    "msg": "Input should be a valid integer, unable to parse string as an integer",
                    "input": value,
                })),
            },
            _ => {}
        }
    }
    if !errors.is_empty() {
        return Ok(validation_error(errors));
    }
    // Like the engine, an empty filter means none and an unknown status matches nothing.
    let status_filter = status_filter.filter(|s| !s.is_empty());
    let jobs = query_user_jobs(
        &backend,
        &user.user_id,
        status_filter.as_deref(),
        limit.max(0),
        offset.max(0),
    )?;
    Ok(Json(jobs).into_response())
}

async fn get_job(
    State(backend): State<Backend>,
    user: AuthUser,
    Path(job_id): Path<String>,
) -> Result<Json<JobResponse>, ApiError> {
    Ok(Json(owned_job(&backend, &user, &job_id, "access")?))
}

async fn create_job(
    State(backend): State<Backend>,
    user: AuthUser,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request = match JobCreateRequest::parse(&body) {
        Ok(r) => r,
        Err(errors) => return Ok(validation_error(errors)),
    };
    request.check()?;
    let job_id = uuid::Uuid::new_v4().to_string();
    let source_path = match (request.source_type.as_str(), &request.manuscript_text) {
        ("paste", Some(text)) => {
            // The engine stores pasted text as `{title with underscores}.txt`.
            let filename = format!(
                "{}.txt",
                sanitize_filename(&request.title.replace(' ', "_"))
            );
            let key = manuscript_key(&user.user_id, &job_id, &filename);
            put_manuscript(&backend, &key, Bytes::from(text.clone().into_bytes())).await?;
            Some(key)
        }
        _ => request.source_path.clone(),
    };
    if request.source_type == "upload"
        && let Some(path) = &source_path
        && !user_owns_manuscript(&user.user_id, path)
    {
        return Err(ApiError::forbidden(
            "You do not have permission to use this manuscript",
        ));
    }
    let job = NewJob {
        id: job_id,
        user_id: user.user_id.clone(),
        mode: request.mode,
        title: request.title,
        author: request.author,
        source_type: request.source_type,
        source_path,
        tts_provider: request.tts_provider,
        narrator_voice_id: request.narrator_voice_id,
        character_voice_id: request.character_voice_id,
        character_name: request.character_name,
        audio_format: request.audio_format,
        audio_bitrate: request.audio_bitrate,
        extra: request.extra,
    };
    let created = insert_job(&backend, job)?;
    backend.simulator.narrate(created.id.clone()).await;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn create_job_with_upload(
    State(backend): State<Backend>,
    user: AuthUser,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let form = match UploadForm::read(multipart).await {
        Ok(form) => form,
        Err(UploadFormError::Invalid(errors)) => return Ok(validation_error(errors)),
        Err(UploadFormError::Api(e)) => return Err(e),
    };
    check_mode(&form.mode)?;
    check_tts_provider(&form.tts_provider)?;
    let filename = form.filename.clone().unwrap_or_default();
    let extension = file_extension(&filename);
    if !UPLOAD_EXTENSIONS.contains(&extension.as_str()) {
        return Err(ApiError::bad_request(format!(
            "Unsupported file type. Allowed: {}",
            UPLOAD_EXTENSIONS.join(", ")
        )));
    }
    let job_id = uuid::Uuid::new_v4().to_string();
    let stored_name = sanitize_filename(&filename);
    let key = manuscript_key(&user.user_id, &job_id, &stored_name);
    put_manuscript(&backend, &key, form.file).await?;
    let job = NewJob {
        id: job_id,
        user_id: user.user_id.clone(),
        mode: form.mode,
        title: form.title,
        // The engine's upload route takes no author.
        author: None,
        source_type: "upload".into(),
        source_path: Some(key),
        tts_provider: form.tts_provider,
        narrator_voice_id: form.narrator_voice_id,
        character_voice_id: None,
        character_name: None,
        audio_format: form.audio_format,
        audio_bitrate: form.audio_bitrate,
        extra: JobExtra {
            input_language_code: Some(form.input_language_code),
            output_language_code: form.output_language_code,
            voice_preset_id: form.voice_preset_id,
            emotion_style_prompt: form.emotion_style_prompt,
            ..JobExtra::default()
        },
    };
    let created = insert_job(&backend, job)?;
    backend.simulator.narrate(created.id.clone()).await;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn download_job(
    State(backend): State<Backend>,
    user: AuthUser,
    Path(job_id): Path<String>,
) -> Result<Json<DownloadUrlResponse>, ApiError> {
    let job = owned_job(&backend, &user, &job_id, "access")?;
    if job.status != status::COMPLETED {
        return Err(ApiError::bad_request(format!(
            "Job is not completed (current status: {})",
            job.status
        )));
    }
    let Some(audio_path) = job.audio_path.filter(|p| !p.is_empty()) else {
        return Err(ApiError::not_found("Audio file not found for this job"));
    };
    let name = audio_path.rsplit('/').next().map(str::to_owned);
    let url = presign_audio(&backend, &audio_path, name.as_deref())?;
    Ok(Json(DownloadUrlResponse {
        url,
        expires_in: backend.config.url_ttl.as_secs(),
    }))
}

async fn list_tracks(
    State(backend): State<Backend>,
    user: AuthUser,
    Path(job_id): Path<String>,
) -> Result<Json<Vec<TrackResponse>>, ApiError> {
    owned_job(&backend, &user, &job_id, "access")?;
    Ok(Json(query_tracks(&backend, &job_id)?))
}

async fn download_track(
    State(backend): State<Backend>,
    user: AuthUser,
    Path((job_id, track_id)): Path<(String, String)>,
) -> Result<Json<TrackDownloadUrlResponse>, ApiError> {
    owned_job(&backend, &user, &job_id, "access")?;
    let track = query_tracks(&backend, &job_id)?
        .into_iter()
        .find(|t| t.id == track_id)
        .ok_or_else(|| ApiError::not_found(format!("Track {track_id} not found")))?;
    let Some(audio_path) = track.audio_path.filter(|p| !p.is_empty()) else {
        return Err(ApiError::bad_request("Track audio not available yet"));
    };
    let export_filename = track
        .export_filename
        .unwrap_or_else(|| format!("track_{:02}.mp3", track.track_index));
    let download_url = presign_audio(&backend, &audio_path, Some(&export_filename))?;
    Ok(Json(TrackDownloadUrlResponse {
        track_id,
        export_filename,
        download_url,
        expires_in: backend.config.url_ttl.as_secs(),
    }))
}

async fn cancel_job(
    State(backend): State<Backend>,
    user: AuthUser,
    Path(job_id): Path<String>,
) -> Result<Json<JobResponse>, ApiError> {
    let job = owned_job(&backend, &user, &job_id, "cancel")?;
    if job.status == status::COMPLETED || job.status == status::CANCELLED {
        return Err(ApiError::bad_request(format!(
            "Cannot cancel a job that is already {}",
            job.status
        )));
    }
    let now = now_stamp(&backend);
    // Only a job that is still not completed or cancelled changes: the simulator may have
    // finished it since it was read.
    let changed = backend.db.call(|c| {
        c.execute(
            "UPDATE jobs SET status = 'cancelled', error_message = 'Job cancelled by user',
                 completed_at = ?2
             WHERE id = ?1 AND status NOT IN ('completed', 'cancelled')",
            params![job_id, now],
        )
    })?;
    backend.simulator.cancel(&job_id);
    let job = owned_job(&backend, &user, &job_id, "cancel")?;
    if changed == 0 {
        return Err(ApiError::bad_request(format!(
            "Cannot cancel a job that is already {}",
            job.status
        )));
    }
    Ok(Json(job))
}

async fn retry_job(
    State(backend): State<Backend>,
    user: AuthUser,
    Path(job_id): Path<String>,
) -> Result<Json<JobResponse>, ApiError> {
    let job = owned_job(&backend, &user, &job_id, "retry")?;
    if job.status != status::FAILED && job.status != status::CANCELLED {
        return Err(ApiError::bad_request(format!(
            "Can only retry failed or cancelled jobs (current status: {})",
            job.status
        )));
    }
    let retries = job.retry_count.unwrap_or(0);
    if retries >= MAX_MANUAL_RETRIES {
        return Err(ApiError::bad_request(format!(
            "Maximum retry limit ({MAX_MANUAL_RETRIES}) reached. Please create a new job."
        )));
    }
    let changed = backend.db.call(|c| {
        c.execute(
            "UPDATE jobs SET status = 'pending', error_message = NULL, progress_percent = 0.0,
                 current_step = 'Manual retry requested', started_at = NULL,
                 completed_at = NULL, retry_count = ?2
             WHERE id = ?1 AND status IN ('failed', 'cancelled')",
            params![job_id, retries + 1],
        )
    })?;
    let job = owned_job(&backend, &user, &job_id, "retry")?;
    if changed == 0 {
        return Err(ApiError::bad_request(format!(
            "Can only retry failed or cancelled jobs (current status: {})",
            job.status
        )));
    }
    backend.simulator.narrate(job_id).await;
    Ok(Json(job))
}

async fn delete_job(
    State(backend): State<Backend>,
    user: AuthUser,
    Path(job_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let job = owned_job(&backend, &user, &job_id, "delete")?;
    let mut audio_keys: Vec<String> = query_tracks(&backend, &job_id)?
        .into_iter()
        .filter_map(|t| t.audio_path)
        .collect();
    audio_keys.extend(job.audio_path.clone());
    // The manuscript goes too (as in the engine), unless another job still uses it.
    let manuscript = match &job.source_path {
        Some(path) if !path.is_empty() => {
            let shared = backend.db.call(|c| {
                c.query_row(
                    "SELECT COUNT(*) FROM jobs WHERE source_path = ?1 AND id != ?2",
                    params![path, job_id],
                    |r| r.get::<_, i64>(0),
                )
            })?;
            (shared == 0).then(|| path.clone())
        }
        _ => None,
    };
    backend
        .db
        .call(|c| c.execute("DELETE FROM jobs WHERE id = ?1", [&job_id]))?;
    // A run in flight notices the job is gone and removes what it uploaded itself.
    backend.simulator.cancel(&job_id);
    for key in audio_keys {
        delete_object_logged(&backend, &backend.config.audiobooks_bucket, &key).await;
    }
    if let Some(key) = manuscript {
        delete_object_logged(&backend, &backend.config.manuscripts_bucket, &key).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------
// Request validation (FastAPI/pydantic-style 422 bodies)
// ---------------------------------------------------------------------------------------

/// FastAPI's 422 for a request that fails validation: `{"detail": [errors]}`.
fn validation_error(errors: Vec<Value>) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({ "detail": errors })),
    )
        .into_response()
}

/// The engine's `JobCreateRequest` after validation.
#[derive(Debug)]
struct JobCreateRequest {
    title: String,
    author: Option<String>,
    source_type: String,
    source_path: Option<String>,
    manuscript_text: Option<String>,
    mode: String,
    tts_provider: String,
    narrator_voice_id: String,
    character_voice_id: Option<String>,
    character_name: Option<String>,
    audio_format: String,
    audio_bitrate: String,
    extra: JobExtra,
}

impl JobCreateRequest {
    fn parse(body: &[u8]) -> Result<Self, Vec<Value>> {
        let value: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                return Err(vec![json!({
                    "type": "json_invalid",
                    "loc": ["body", e.column()],
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": e.to_string()},
                })]);
            }
        };
        let Some(obj) = value.as_object() else {
            return Err(vec![json!({
                "type": "model_attributes_type",
                "loc": ["body"],
                "msg": "Input should be a valid dictionary or object to extract fields from",
                "input": value,
            })]);
        };
        let mut v = FieldReader {
            obj,
            whole: &value,
            errors: Vec::new(),
        };
        let title = v.required("title", Some((1, 200)));
        let author = v.optional("author", None, Some(200));
        let source_type = v.required("source_type", None);
        let source_path = v.optional("source_path", None, None);
        let manuscript_text = v.optional("manuscript_text", None, None);
        let mode = v.required("mode", None);
        let tts_provider = v.required("tts_provider", None);
        let narrator_voice_id = v.required("narrator_voice_id", None);
        let character_voice_id = v.optional("character_voice_id", None, None);
        let character_name = v.optional("character_name", None, None);
        let audio_format = v.with_default("audio_format", "mp3");
        let audio_bitrate = v.with_default("audio_bitrate", "128k");
        let extra = JobExtra {
            input_language_code: v.optional("input_language_code", Some("en-US"), None),
            output_language_code: v.optional("output_language_code", None, None),
            voice_preset_id: v.optional("voice_preset_id", None, None),
            emotion_style_prompt: v.optional("emotion_style_prompt", None, None),
            narrator_name: v.optional("narrator_name", None, None),
            genre: v.optional("genre", None, None),
            language: v.optional("language", Some("en"), None),
            isbn: v.optional("isbn", None, None),
            publisher: v.optional("publisher", None, None),
            sample_style: v.optional("sample_style", Some("default"), None),
            package_type: None,
            section_count: None,
        };
        if !v.errors.is_empty() {
            return Err(v.errors);
        }
        Ok(Self {
            title: title.unwrap_or_default(),
            author,
            source_type: source_type.unwrap_or_default(),
            source_path,
            manuscript_text,
            mode: mode.unwrap_or_default(),
            tts_provider: tts_provider.unwrap_or_default(),
            narrator_voice_id: narrator_voice_id.unwrap_or_default(),
            character_voice_id,
            character_name,
            audio_format: audio_format.unwrap_or_default(),
            audio_bitrate: audio_bitrate.unwrap_or_default(),
            extra,
        })
    }

    /// The engine's checks after validation, in its order.
    fn check(&self) -> Result<(), ApiError> {
        if !["upload", "paste", "google_drive"].contains(&self.source_type.as_str()) {
            return Err(ApiError::bad_request(format!(
                "Source type '{}' is not supported. Supported types: 'upload', 'paste', or 'google_drive'.",
                self.source_type
            )));
        }
        check_mode(&self.mode)?;
        check_tts_provider(&self.tts_provider)?;
        if self.mode == "dual_voice"
            && (self.character_voice_id.as_deref().unwrap_or("").is_empty()
                || self.character_name.as_deref().unwrap_or("").is_empty())
        {
            return Err(ApiError::bad_request(
                "Dual-voice mode requires character_voice_id and character_name",
            ));
        }
        if let Some(text) = &self.manuscript_text
            && text.len() > MAX_MANUSCRIPT_BYTES
        {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "The pasted manuscript is too large",
            ));
        }
        Ok(())
    }
}

/// Reads string fields from a JSON object, collecting pydantic-style errors.
struct FieldReader<'a> {
    obj: &'a serde_json::Map<String, Value>,
    whole: &'a Value,
    errors: Vec<Value>,
}

impl FieldReader<'_> {
    fn string(&mut self, name: &str, v: &Value, bounds: (usize, usize)) -> Option<String> {
        let Some(s) = v.as_str() else {
            self.errors.push(json!({
                "type": "string_type",
                "loc": ["body", name],
                "msg": "Input should be a valid string",
                "input": v,
            }));
            return None;
        };
        let chars = s.chars().count();
        if chars < bounds.0 {
            self.errors.push(json!({
                "type": "string_too_short",
                "loc": ["body", name],
                "msg": format!("String should have at least {} character{}", bounds.0, if bounds.0 == 1 { "" } else { "s" }),
                "input": s,
                "ctx": {"min_length": bounds.0},
            }));
            return None;
        }
        if chars > bounds.1 {
            self.errors.push(json!({
                "type": "string_too_long",
                "loc": ["body", name],
                "msg": format!("String should have at most {} characters", bounds.1),
                "input": s,
                "ctx": {"max_length": bounds.1},
            }));
            return None;
        }
        Some(s.to_owned())
    }

    fn required(&mut self, name: &str, bounds: Option<(usize, usize)>) -> Option<String> {
        match self.obj.get(name) {
            None => {
                self.errors.push(json!({
                    "type": "missing",
                    "loc": ["body", name],
                    "msg": "Field required",
                    "input": self.whole,
                }));
                None
            }
            Some(v) => self.string(name, v, bounds.unwrap_or((0, usize::MAX))),
        }
    }

    fn optional(
        &mut self,
        name: &str,
        default: Option<&str>,
        max: Option<usize>,
    ) -> Option<String> {
        match self.obj.get(name) {
            None => default.map(str::to_owned),
            Some(Value::Null) => None,
            Some(v) => self.string(name, v, (0, max.unwrap_or(usize::MAX))),
        }
    }

    /// A `str` field with a default: absent takes the default, `null` is an error.
    fn with_default(&mut self, name: &str, default: &str) -> Option<String> {
        match self.obj.get(name) {
            None => Some(default.to_owned()),
            Some(v) => self.string(name, v, (0, usize::MAX)),
        }
    }
}

fn check_mode(mode: &str) -> Result<(), ApiError> {
    if ["single_voice", "dual_voice", "findaway"].contains(&mode) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "Mode must be 'single_voice', 'dual_voice', or 'findaway'",
        ))
    }
}

fn check_tts_provider(provider: &str) -> Result<(), ApiError> {
    if ["openai", "google", "gemini"].contains(&provider) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            format!(
                "TTS provider '{provider}' is not yet implemented. Currently supported: 'openai', 'google', 'gemini'."
            ),
        ))
    }
}

/// The multipart form of `POST /jobs/upload` with the engine's defaults applied.
struct UploadForm {
    file: Bytes,
    filename: Option<String>,
    title: String,
    mode: String,
    tts_provider: String,
    narrator_voice_id: String,
    audio_format: String,
    audio_bitrate: String,
    input_language_code: String,
    output_language_code: Option<String>,
    voice_preset_id: Option<String>,
    emotion_style_prompt: Option<String>,
}

enum UploadFormError {
    Invalid(Vec<Value>),
    Api(ApiError),
}

impl UploadForm {
    async fn read(
        multipart: Result<Multipart, MultipartRejection>,
    ) -> Result<Self, UploadFormError> {
        let missing = |name: &str| json!({"type": "missing", "loc": ["body", name], "msg": "Field required", "input": null});
        let mut multipart = match multipart {
            Ok(m) => m,
            // Not a multipart body at all: FastAPI reports the required fields as missing.
            Err(_) => {
                return Err(UploadFormError::Invalid(vec![
                    missing("file"),
                    missing("title"),
                ]));
            }
        };
        let mut file: Option<(Bytes, Option<String>)> = None;
        let mut text = std::collections::HashMap::<String, String>::new();
        loop {
            let field = match multipart.next_field().await {
                Ok(Some(field)) => field,
                Ok(None) => break,
                Err(e) => {
                    return Err(UploadFormError::Api(ApiError::new(
                        e.status(),
                        format!("There was an error parsing the body: {}", e.body_text()),
                    )));
                }
            };
            let name = field.name().unwrap_or_default().to_owned();
            if name == "file" {
                let filename = field.file_name().map(str::to_owned);
                let bytes = field.bytes().await.map_err(|e| {
                    UploadFormError::Api(ApiError::bad_request(format!(
                        "Failed to read file: {}",
                        e.body_text()
                    )))
                })?;
                file = Some((bytes, filename));
            } else {
                let value = field.text().await.map_err(|e| {
                    UploadFormError::Api(ApiError::bad_request(format!(
                        "There was an error parsing the body: {}",
                        e.body_text()
                    )))
                })?;
                text.insert(name, value);
            }
        }
        let mut errors = Vec::new();
        if file.is_none() {
            errors.push(missing("file"));
        }
        let title = text.remove("title");
        if title.is_none() {
            errors.push(missing("title"));
        }
        let (Some((file, filename)), Some(title)) = (file, title) else {
            return Err(UploadFormError::Invalid(errors));
        };
        let output_language_code = text.remove("output_language_code");
        let voice_preset_id = text.remove("voice_preset_id");
        let emotion_style_prompt = text.remove("emotion_style_prompt");
        let mut field =
            |name: &str, default: &str| text.remove(name).unwrap_or_else(|| default.to_owned());
        Ok(Self {
            file,
            filename,
            title,
            mode: field("mode", "single_voice"),
            tts_provider: field("tts_provider", "openai"),
            narrator_voice_id: field("narrator_voice_id", "alloy"),
            audio_format: field("audio_format", "mp3"),
            audio_bitrate: field("audio_bitrate", "128k"),
            input_language_code: field("input_language_code", "en-US"),
            output_language_code,
            voice_preset_id,
            emotion_style_prompt,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Keys and the store
// ---------------------------------------------------------------------------------------

/// `manuscripts/{user_id}/{job_id}/{filename}`.
fn manuscript_key(user_id: &str, job_id: &str, filename: &str) -> String {
    format!("manuscripts/{user_id}/{job_id}/{filename}")
}

/// Whether `key` lies under the caller's manuscripts prefix (and does not climb out).
fn user_owns_manuscript(user_id: &str, key: &str) -> bool {
    let prefix = format!("manuscripts/{user_id}/");
    key.starts_with(&prefix)
        && key.len() > prefix.len()
        && !key.split('/').any(|segment| segment == "..")
}

/// The lower-cased extension with its dot, as Python's `Path(name).suffix.lower()`.
fn file_extension(filename: &str) -> String {
    let base = filename.rsplit(['/', '\\']).next().unwrap_or("");
    match base.rfind('.') {
        Some(i) if i > 0 && i + 1 < base.len() => base[i..].to_lowercase(),
        _ => String::new(),
    }
}

/// The last path component of a client-supplied name, without control characters; never
/// empty, never `.` or `..`.
fn sanitize_filename(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = base.chars().filter(|c| !c.is_control()).collect();
    let cleaned = cleaned.trim().to_owned();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        "manuscript.txt".into()
    } else {
        cleaned
    }
}

/// The engine's content types for manuscripts (plus the text formats it accepts).
fn manuscript_content_type(key: &str) -> &'static str {
    match file_extension(key).as_str() {
        ".txt" => "text/plain",
        ".md" => "text/markdown",
        ".html" | ".htm" => "text/html",
        ".docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ".pdf" => "application/pdf",
        ".doc" => "application/msword",
        ".epub" => "application/epub+zip",
        _ => "application/octet-stream",
    }
}

async fn put_manuscript(backend: &Backend, key: &str, body: Bytes) -> Result<(), ApiError> {
    backend
        .store
        .put_object(
            &backend.config.manuscripts_bucket,
            key,
            body,
            manuscript_content_type(key),
        )
        .await
        .map_err(|e| {
            tracing::error!("cannot store manuscript {key}: {e}");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("Failed to upload file: {e}"),
            )
        })?;
    Ok(())
}

fn presign_audio(backend: &Backend, key: &str, name: Option<&str>) -> Result<String, ApiError> {
    let ttl: Duration = backend.config.url_ttl;
    backend
        .store
        .presign_get(&backend.config.audiobooks_bucket, key, ttl, name)
        .map(|p| p.url)
        .map_err(ApiError::internal)
}

async fn delete_object_logged(backend: &Backend, bucket: &str, key: &str) {
    if let Err(e) = backend.store.delete_object(bucket, key).await
        && e.code() != Some("NoSuchKey")
    {
        tracing::warn!("cannot delete {bucket}/{key}: {e}");
    }
}

// ---------------------------------------------------------------------------------------
// Timestamps
// ---------------------------------------------------------------------------------------

pub(crate) enum TimestampStyle {
    /// A `timestamptz` as PostgREST returns every stored time (whatever the engine wrote):
    /// `2025-01-31T12:00:00.123+00:00`, trailing zeros of the fraction trimmed.
    Postgres,
    /// Python's `datetime.utcnow().isoformat() + "Z"`, as the engine's `/health` says it.
    Health,
}

pub(crate) fn format_timestamp(ms: i64, style: TimestampStyle) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let base = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
    );
    let micros = format!("{:06}", at.microsecond());
    match style {
        TimestampStyle::Postgres => {
            let fraction = micros.trim_end_matches('0');
            if fraction.is_empty() {
                format!("{base}+00:00")
            } else {
                format!("{base}.{fraction}+00:00")
            }
        }
        TimestampStyle::Health => format!("{base}.{micros}Z"),
    }
}

/// Now, as a stored timestamp.
fn now_stamp(backend: &Backend) -> String {
    format_timestamp(backend.clock.now_ms(), TimestampStyle::Postgres)
}

// ---------------------------------------------------------------------------------------
// Data access
// ---------------------------------------------------------------------------------------

const JOB_COLUMNS: &str = "id, user_id, status, mode, title, author, source_type, source_path,
    tts_provider, narrator_voice_id, character_voice_id, character_name, audio_format,
    audio_bitrate, audio_path, duration_seconds, file_size_bytes, progress_percent,
    current_step, error_message, retry_count, created_at, started_at, completed_at, extra";

fn job_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobResponse> {
    let extra: String = r.get(24)?;
    Ok(JobResponse {
        id: r.get(0)?,
        user_id: r.get(1)?,
        status: r.get(2)?,
        mode: r.get(3)?,
        title: r.get(4)?,
        author: r.get(5)?,
        source_type: r.get(6)?,
        source_path: r.get(7)?,
        tts_provider: r.get(8)?,
        narrator_voice_id: r.get(9)?,
        character_voice_id: r.get(10)?,
        character_name: r.get(11)?,
        audio_format: r.get(12)?,
        audio_bitrate: r.get(13)?,
        audio_path: r.get(14)?,
        duration_seconds: r.get(15)?,
        file_size_bytes: r.get(16)?,
        progress_percent: r.get(17)?,
        current_step: r.get(18)?,
        error_message: r.get(19)?,
        retry_count: r.get(20)?,
        created_at: r.get(21)?,
        started_at: r.get(22)?,
        completed_at: r.get(23)?,
        extra: serde_json::from_str(&extra).unwrap_or_default(),
    })
}

/// A job, whoever owns it.
pub(crate) fn load_job(backend: &Backend, job_id: &str) -> rusqlite::Result<Option<JobResponse>> {
    backend.db.call(|c| {
        c.query_row(
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
            [job_id],
            job_from_row,
        )
        .optional()
    })
}

/// The caller's job: 404 if unknown, 403 if someone else's (`action` words the 403).
fn owned_job(
    backend: &Backend,
    user: &AuthUser,
    job_id: &str,
    action: &str,
) -> Result<JobResponse, ApiError> {
    let job = load_job(backend, job_id)?
        .ok_or_else(|| ApiError::not_found(format!("Job {job_id} not found")))?;
    if job.user_id != user.user_id {
        return Err(ApiError::forbidden(format!(
            "You do not have permission to {action} this job"
        )));
    }
    Ok(job)
}

fn query_user_jobs(
    backend: &Backend,
    user_id: &str,
    status_filter: Option<&str>,
    limit: i64,
    offset: i64,
) -> rusqlite::Result<Vec<JobResponse>> {
    backend.db.call(|c| {
        let mut stmt = c.prepare(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs
             WHERE user_id = ?1 AND (?2 IS NULL OR status = ?2)
             ORDER BY created_ms DESC, rowid DESC LIMIT ?3 OFFSET ?4"
        ))?;
        let rows = stmt.query_map(params![user_id, status_filter, limit, offset], job_from_row)?;
        rows.collect()
    })
}

fn query_tracks(backend: &Backend, job_id: &str) -> rusqlite::Result<Vec<TrackResponse>> {
    backend.db.call(|c| {
        let mut stmt = c.prepare(
            "SELECT id, job_id, chapter_id, track_index, title, segment_type, audio_path,
                    duration_seconds, file_size_bytes, export_filename, status, created_at
             FROM tracks WHERE job_id = ?1 ORDER BY track_index",
        )?;
        let rows = stmt.query_map([job_id], |r| {
            Ok(TrackResponse {
                id: r.get(0)?,
                job_id: r.get(1)?,
                chapter_id: r.get(2)?,
                track_index: r.get(3)?,
                title: r.get(4)?,
                segment_type: r.get(5)?,
                audio_path: r.get(6)?,
                duration_seconds: r.get(7)?,
                file_size_bytes: r.get(8)?,
                export_filename: r.get(9)?,
                status: r.get(10)?,
                created_at: r.get(11)?,
            })
        })?;
        rows.collect()
    })
}

struct NewJob {
    id: String,
    user_id: String,
    mode: String,
    title: String,
    author: Option<String>,
    source_type: String,
    source_path: Option<String>,
    tts_provider: String,
    narrator_voice_id: String,
    character_voice_id: Option<String>,
    character_name: Option<String>,
    audio_format: String,
    audio_bitrate: String,
    extra: JobExtra,
}

fn insert_job(backend: &Backend, job: NewJob) -> Result<JobResponse, ApiError> {
    let created_ms = backend.clock.now_ms();
    let created_at = format_timestamp(created_ms, TimestampStyle::Postgres);
    let extra = serde_json::to_string(&job.extra).map_err(ApiError::internal)?;
    backend.db.call(|c| {
        c.execute(
            "INSERT INTO jobs (id, user_id, status, mode, title, author, source_type,
                 source_path, tts_provider, narrator_voice_id, character_voice_id,
                 character_name, audio_format, audio_bitrate, progress_percent, retry_count,
                 created_at, extra, created_ms)
             VALUES (?1, ?2, 'pending', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 0.0, 0,
                 ?14, ?15, ?16)",
            params![
                job.id,
                job.user_id,
                job.mode,
                job.title,
                job.author,
                job.source_type,
                job.source_path,
                job.tts_provider,
                job.narrator_voice_id,
                job.character_voice_id,
                job.character_name,
                job.audio_format,
                job.audio_bitrate,
                created_at,
                extra,
                created_ms,
            ],
        )
    })?;
    load_job(backend, &job.id)?
        .ok_or_else(|| ApiError::internal("a job vanished right after it was created"))
}

// --- For the simulator ---------------------------------------------------------------

/// Jobs to resume at start: interrupted `processing` jobs go back to `pending` (as the
/// engine's `recover_pending_jobs` does); returns every pending job, oldest first.
pub(crate) fn recover_jobs(backend: &Backend) -> rusqlite::Result<Vec<String>> {
    backend.db.call(|c| {
        c.execute(
            "UPDATE jobs SET status = 'pending', progress_percent = 0.0,
                 current_step = 'Recovered after server restart', error_message = NULL
             WHERE status = 'processing'",
            [],
        )?;
        let mut stmt =
            c.prepare("SELECT id FROM jobs WHERE status = 'pending' ORDER BY created_ms, rowid")?;
        let ids = stmt.query_map([], |r| r.get::<_, String>(0))?;
        ids.collect()
    })
}

/// Marks a pending (or superseded processing) job as processing by run `run_id`;
/// false if the job is gone, cancelled or finished.
pub(crate) fn claim_job(backend: &Backend, job_id: &str, run_id: &str) -> rusqlite::Result<bool> {
    let now = now_stamp(backend);
    backend.db.call(|c| {
        c.execute(
            "UPDATE jobs SET status = 'processing', run_id = ?2, started_at = ?3,
                 progress_percent = 0.0, current_step = 'Starting', error_message = NULL,
                 audio_path = NULL, duration_seconds = NULL, file_size_bytes = NULL,
                 completed_at = NULL
             WHERE id = ?1 AND status IN ('pending', 'processing')",
            params![job_id, run_id, now],
        )
        .map(|n| n == 1)
    })
}

/// Records progress of run `run_id`; false if the job is no longer that run's to write.
pub(crate) fn record_progress(
    backend: &Backend,
    job_id: &str,
    run_id: &str,
    percent: f64,
    step: &str,
) -> rusqlite::Result<bool> {
    backend.db.call(|c| {
        c.execute(
            "UPDATE jobs SET progress_percent = ?3, current_step = ?4
             WHERE id = ?1 AND run_id = ?2 AND status = 'processing'",
            params![job_id, run_id, percent, step],
        )
        .map(|n| n == 1)
    })
}

/// One finished chapter, as the simulator hands it over.
pub(crate) struct FinishedTrack {
    pub title: String,
    pub audio_path: String,
    pub duration_seconds: i64,
    pub file_size_bytes: i64,
    pub export_filename: String,
}

/// Completes run `run_id` and stores its tracks in one transaction; false if the job is no
/// longer that run's (cancelled, deleted or superseded meanwhile).
pub(crate) fn complete_job(
    backend: &Backend,
    job_id: &str,
    run_id: &str,
    audio_path: &str,
    duration_seconds: i64,
    file_size_bytes: i64,
    tracks: &[FinishedTrack],
) -> rusqlite::Result<bool> {
    let completed_at = now_stamp(backend);
    let created_at = completed_at.clone();
    backend.db.call(|c| {
        let tx = c.transaction()?;
        let changed = tx.execute(
            "UPDATE jobs SET status = 'completed', audio_path = ?3, duration_seconds = ?4,
                 file_size_bytes = ?5, progress_percent = 100.0, completed_at = ?6,
                 error_message = NULL
             WHERE id = ?1 AND run_id = ?2 AND status = 'processing'",
            params![
                job_id,
                run_id,
                audio_path,
                duration_seconds,
                file_size_bytes,
                completed_at
            ],
        )?;
        if changed != 1 {
            return Ok(false);
        }
        tx.execute("DELETE FROM tracks WHERE job_id = ?1", [job_id])?;
        for (i, t) in tracks.iter().enumerate() {
            tx.execute(
                "INSERT INTO tracks (id, job_id, chapter_id, track_index, title, segment_type,
                     audio_path, duration_seconds, file_size_bytes, export_filename, status,
                     created_at)
                 VALUES (?1, ?2, NULL, ?3, ?4, 'body_chapter', ?5, ?6, ?7, ?8, 'completed', ?9)",
                params![
                    uuid::Uuid::new_v4().to_string(),
                    job_id,
                    i as i64 + 1,
                    t.title,
                    t.audio_path,
                    t.duration_seconds,
                    t.file_size_bytes,
                    t.export_filename,
                    created_at
                ],
            )?;
        }
        tx.commit()?;
        Ok(true)
    })
}

/// Test hook: stores `body` as completed job `job_id`'s whole-book audio (at its
/// `audio_path`, replacing the object there) and records its size in `file_size_bytes`,
/// as if the job had been narrated into this file. Tests use it for large books and for
/// an object that changes on the server; no route reaches it. Returns the new object's
/// ETag (unquoted). 404 if the job is unknown, 400 if it has no audio yet.
pub async fn replace_job_audio(
    backend: &Backend,
    job_id: &str,
    body: Bytes,
) -> Result<String, ApiError> {
    let job = load_job(backend, job_id)?
        .ok_or_else(|| ApiError::not_found(format!("Job {job_id} not found")))?;
    let key = job
        .audio_path
        .filter(|p| !p.is_empty())
        .ok_or_else(|| ApiError::bad_request(format!("Job {job_id} has no audio yet")))?;
    let size = i64::try_from(body.len()).map_err(ApiError::internal)?;
    let meta = backend
        .store
        .put_object(&backend.config.audiobooks_bucket, &key, body, "audio/wav")
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot store {key}: {e}"),
            )
        })?;
    backend.db.call(|c| {
        c.execute(
            "UPDATE jobs SET file_size_bytes = ?2 WHERE id = ?1",
            params![job_id, size],
        )
    })?;
    Ok(meta.etag)
}

/// Fails run `run_id` with `message`; false if the job is no longer that run's.
pub(crate) fn fail_job(
    backend: &Backend,
    job_id: &str,
    run_id: &str,
    message: &str,
) -> rusqlite::Result<bool> {
    let now = now_stamp(backend);
    backend.db.call(|c| {
        c.execute(
            "UPDATE jobs SET status = 'failed', error_message = ?3, completed_at = ?4
             WHERE id = ?1 AND run_id = ?2 AND status = 'processing'",
            params![job_id, run_id, message, now],
        )
        .map(|n| n == 1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_follow_the_allow_list() {
        for ok in [
            "http://localhost:3000",
            "http://localhost",
            "http://127.0.0.1:5173",
            "https://localhost:8443",
            "http://[::1]:1420",
            "tauri://localhost",
            "http://tauri.localhost",
        ] {
            assert!(origin_allowed(ok), "{ok} should be allowed");
        }
        for bad in [
            "https://evil.example",
            "http://localhost.evil.example",
            "http://127.0.0.2",
            "null",
            "file://",
            "http://localhost:3000/path",
            "tauri://evil",
        ] {
            assert!(!origin_allowed(bad), "{bad} should be refused");
        }
    }

    #[test]
    fn referer_is_checked_without_origin() {
        let mut h = HeaderMap::new();
        assert!(
            request_origin_allowed(&h),
            "no Origin and no Referer passes"
        );
        h.insert(
            header::REFERER,
            "https://evil.example/page".parse().unwrap(),
        );
        assert!(!request_origin_allowed(&h));
        h.insert(header::REFERER, "http://localhost:1420/x".parse().unwrap());
        assert!(request_origin_allowed(&h));
        h.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(!request_origin_allowed(&h), "Origin wins over Referer");
    }

    #[test]
    fn extensions_and_names_match_python() {
        assert_eq!(file_extension("Book.TXT"), ".txt");
        assert_eq!(file_extension("a.b.docx"), ".docx");
        assert_eq!(file_extension(".bashrc"), "");
        assert_eq!(file_extension("noext"), "");
        assert_eq!(sanitize_filename("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_filename("C:\\Users\\me\\Book.txt"), "Book.txt");
        assert_eq!(sanitize_filename("a\u{0}b.txt"), "ab.txt");
        assert_eq!(sanitize_filename(".."), "manuscript.txt");
        assert_eq!(
            sanitize_filename("Café – Ünïcode 📚.txt"),
            "Café – Ünïcode 📚.txt"
        );
    }

    #[test]
    fn manuscript_ownership_is_by_prefix() {
        assert!(user_owns_manuscript("u1", "manuscripts/u1/x/book.txt"));
        assert!(!user_owns_manuscript("u1", "manuscripts/u2/x/book.txt"));
        assert!(!user_owns_manuscript("u1", "manuscripts/u10/x/book.txt"));
        assert!(!user_owns_manuscript("u1", "manuscripts/u1/../u2/book.txt"));
        assert!(!user_owns_manuscript("u1", "manuscripts/u1/"));
    }

    #[test]
    fn create_request_validates_like_pydantic() {
        let errors = JobCreateRequest::parse(br#"{"title": "", "mode": 3}"#).unwrap_err();
        let types: Vec<&str> = errors.iter().filter_map(|e| e["type"].as_str()).collect();
        assert!(types.contains(&"string_too_short"));
        assert!(types.contains(&"string_type"));
        assert!(types.contains(&"missing"));
        let ok = JobCreateRequest::parse(
            br#"{"title":"T","source_type":"upload","mode":"single_voice","tts_provider":"openai","narrator_voice_id":"alloy"}"#,
        )
        .unwrap();
        assert_eq!(ok.audio_format, "mp3");
        assert_eq!(ok.audio_bitrate, "128k");
        assert_eq!(ok.extra.language.as_deref(), Some("en"));
        assert_eq!(ok.extra.sample_style.as_deref(), Some("default"));
        assert!(JobCreateRequest::parse(b"{not json").is_err());
    }

    #[test]
    fn timestamps_look_like_the_engines() {
        assert_eq!(
            format_timestamp(1_700_000_000_123, TimestampStyle::Postgres),
            "2023-11-14T22:13:20.123+00:00"
        );
        assert_eq!(
            format_timestamp(1_700_000_000_000, TimestampStyle::Postgres),
            "2023-11-14T22:13:20+00:00"
        );
        assert_eq!(
            format_timestamp(1_700_000_000_123, TimestampStyle::Health),
            "2023-11-14T22:13:20.123000Z"
        );
    }

    #[test]
    fn job_response_has_every_engine_field() {
        let job = JobResponse {
            id: "j".into(),
            user_id: "u".into(),
            status: "pending".into(),
            mode: "single_voice".into(),
            title: "T".into(),
            author: None,
            source_type: None,
            source_path: None,
            tts_provider: None,
            narrator_voice_id: None,
            character_voice_id: None,
            character_name: None,
            audio_format: None,
            audio_bitrate: None,
            audio_path: None,
            duration_seconds: None,
            file_size_bytes: None,
            progress_percent: Some(0.0),
            current_step: None,
            error_message: None,
            retry_count: Some(0),
            created_at: "now".into(),
            started_at: None,
            completed_at: None,
            extra: JobExtra::default(),
        };
        let v = serde_json::to_value(&job).unwrap();
        let obj = v.as_object().unwrap();
        assert_eq!(obj.len(), 36);
        for field in ["section_count", "package_type", "isbn", "retry_count"] {
            assert!(obj.contains_key(field), "{field}");
        }
        assert_eq!(serde_json::to_string(&0.0f64).unwrap(), "0.0");
    }
}

//! The presign extension under `/api/uploads` (specified for the engine team in
//! `docs/backend-api.md` and `docs/openapi.yaml`): single presigned PUTs and multipart
//! uploads that the backend creates, completes and aborts with its own credentials while
//! clients PUT the bytes straight to the store through presigned URLs.
//!
//! It owns the `uploads` table (who owns which upload and key, and the part size fixed at
//! creation) and enforces R2's multipart rules at completion itself, from the store's own
//! ListParts, so the rules hold on any S3-compatible store (rclone does not enforce them).
//! It never hands out a URL for a key the caller does not own, never presigns anything but
//! PUTs for uploads, and never logs a URL's signature.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Json, Router};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::AuthUser;
use crate::server::Backend;
use crate::store::StoreError;
use crate::store::client::{CompletedPart, PartInfo, is_content_md5, unquote_etag};

/// Table: uploads (one row per upload the backend started; `upload_id` is ours and part of
/// the object key, `store_upload_id` is the store's multipart id, empty for single PUTs).
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS uploads (
    upload_id TEXT PRIMARY KEY,
    store_upload_id TEXT NOT NULL,
    object_key TEXT NOT NULL,
    user_id TEXT NOT NULL,
    content_type TEXT NOT NULL,
    part_size INTEGER NOT NULL,
    size INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    completed_etag TEXT,
    completed_size INTEGER
);
CREATE INDEX IF NOT EXISTS uploads_by_user ON uploads (user_id);
";

/// S3's and R2's part limits.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
pub const MAX_PARTS: u64 = 10_000;
/// The largest single PUT (S3's limit).
pub const MAX_SINGLE_PUT: u64 = 5 * 1024 * 1024 * 1024;
/// The largest object (S3's limit).
pub const MAX_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * 1024 * 1024;
/// At most this many part URLs per request, so one request stays small.
pub const MAX_PARTS_PER_REQUEST: usize = 1000;
/// The longest sanitized file name, in bytes (a file-system name limit).
pub const MAX_FILENAME_BYTES: usize = 255;

pub fn routes() -> Router<Backend> {
    Router::new()
        .route("/uploads/presign", post(presign))
        .route("/uploads/multipart", post(create_multipart))
        .route(
            "/uploads/multipart/{upload_id}/parts",
            post(presign_parts).get(list_parts),
        )
        .route("/uploads/multipart/{upload_id}/complete", post(complete))
        .route("/uploads/multipart/{upload_id}", delete(abort))
        .route_layer(axum::middleware::from_fn(super::jobs::origin_guard))
}

/// An error of this extension: FastAPI's `{"detail": "..."}` plus a stable `code` (S3's
/// code where the store's rule was broken, e.g. `NoSuchUpload`, `InvalidPart`).
#[derive(Debug)]
pub struct UploadError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
}

impl UploadError {
    fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
        }
    }
    fn invalid(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidRequest", detail)
    }
    fn no_such_upload() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NoSuchUpload",
            "NoSuchUpload: the upload does not exist (it may have been completed, aborted or expired); start a new one",
        )
    }
    fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "Not authorized to access this upload",
        )
    }
    fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!("uploads: internal error: {e}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "Internal server error",
        )
    }
}

impl From<rusqlite::Error> for UploadError {
    fn from(e: rusqlite::Error) -> Self {
        Self::internal(e)
    }
}

impl From<StoreError> for UploadError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::S3 { code, .. } if code == "NoSuchUpload" => Self::no_such_upload(),
            StoreError::S3 {
                status: 400,
                code,
                message,
            } => {
                // A rule of the store the request broke: pass S3's code on.
                let code = match code.as_str() {
                    "InvalidPart" => "InvalidPart",
                    "InvalidPartOrder" => "InvalidPartOrder",
                    "EntityTooSmall" => "EntityTooSmall",
                    "EntityTooLarge" => "EntityTooLarge",
                    "InvalidArgument" => "InvalidArgument",
                    _ => "StoreRefused",
                };
                tracing::warn!("uploads: the store refused: {e}");
                Self::new(StatusCode::BAD_REQUEST, code, format!("{code}: {message}"))
            }
            // 403 (credentials), 404 (bucket), 5xx, transport: the backend's problem.
            _ => {
                tracing::error!("uploads: the store failed: {e}");
                Self::new(
                    StatusCode::BAD_GATEWAY,
                    "StoreUnavailable",
                    "The object store is unavailable; try again",
                )
            }
        }
    }
}

impl IntoResponse for UploadError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({ "detail": self.detail, "code": self.code })),
        )
            .into_response()
    }
}

fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, UploadError> {
    b.map(|Json(t)| t).map_err(|e| {
        UploadError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ValidationError",
            e.body_text(),
        )
    })
}

/// The file name as it goes into the key: the last path component, without control
/// characters, trimmed, at most [`MAX_FILENAME_BYTES`] (shortening the stem, keeping the
/// extension). Spaces, `+`, `&`, `%`, quotes and any unicode stay as they are. `None` if
/// nothing usable is left (empty, `.` or `..`).
pub fn sanitize_filename(name: &str) -> Option<String> {
    let base = name
        .rsplit(['/', '\\'])
        .find(|s| !s.trim().is_empty())
        .unwrap_or("");
    let cleaned: String = base.chars().filter(|c| !c.is_control()).collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        return None;
    }
    if cleaned.len() <= MAX_FILENAME_BYTES {
        return Some(cleaned.to_string());
    }
    let (stem, ext) = match cleaned.rfind('.') {
        Some(i) if i > 0 && cleaned.len() - i <= 16 => cleaned.split_at(i),
        _ => (cleaned, ""),
    };
    let mut cut = MAX_FILENAME_BYTES - ext.len();
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    Some(format!("{}{ext}", stem[..cut].trim_end()))
}

fn object_key(user_id: &str, upload_id: &str, filename: &str) -> String {
    format!("manuscripts/{user_id}/{upload_id}/{filename}")
}

fn check_filename(filename: &str) -> Result<String, UploadError> {
    sanitize_filename(filename)
        .ok_or_else(|| UploadError::invalid("filename must name a file (it is empty after removing path separators and control characters)"))
}

fn check_content_type(ct: &str) -> Result<String, UploadError> {
    let ct = ct.trim();
    if ct.is_empty() {
        return Ok("application/octet-stream".into());
    }
    if ct.len() > 255 || !ct.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(UploadError::invalid(
            "content_type must be a printable ASCII media type",
        ));
    }
    Ok(ct.to_string())
}

fn check_md5(md5: &str) -> Result<(), UploadError> {
    if is_content_md5(md5) {
        Ok(())
    } else {
        Err(UploadError::invalid(
            "content_md5 must be the base64 of the 16-byte MD5 digest",
        ))
    }
}

fn headers_map(headers: &[(String, String)]) -> BTreeMap<String, String> {
    headers.iter().cloned().collect()
}

fn ttl(backend: &Backend) -> Duration {
    backend.config.url_ttl
}

// ---------------------------------------------------------------------------------------
// POST /uploads/presign

#[derive(Deserialize)]
struct PresignRequest {
    filename: String,
    #[serde(default)]
    content_type: String,
    size: u64,
    content_md5: String,
}

#[derive(Serialize)]
struct PresignResponse {
    object_key: String,
    url: String,
    method: String,
    headers: BTreeMap<String, String>,
    expires_in: u64,
}

async fn presign(
    State(backend): State<Backend>,
    user: AuthUser,
    req: Result<Json<PresignRequest>, JsonRejection>,
) -> Result<Json<PresignResponse>, UploadError> {
    let req = body(req)?;
    let filename = check_filename(&req.filename)?;
    let content_type = check_content_type(&req.content_type)?;
    if req.size == 0 || req.size > MAX_SINGLE_PUT {
        return Err(UploadError::invalid(format!(
            "size must be between 1 and {MAX_SINGLE_PUT} bytes for a single PUT; use a multipart upload above that"
        )));
    }
    check_md5(&req.content_md5)?;
    let upload_id = uuid::Uuid::new_v4().to_string();
    let key = object_key(&user.user_id, &upload_id, &filename);
    let signed = backend.store.presign_put(
        &backend.config.manuscripts_bucket,
        &key,
        &content_type,
        &req.content_md5,
        ttl(&backend),
    )?;
    let now = backend.clock.now_secs();
    backend.db.call(|c| {
        c.execute(
            "INSERT INTO uploads (upload_id, store_upload_id, object_key, user_id, content_type,
                                  part_size, size, created_at)
             VALUES (?1, '', ?2, ?3, ?4, ?5, ?5, ?6)",
            params![
                upload_id,
                key,
                user.user_id,
                content_type,
                req.size as i64,
                now
            ],
        )
    })?;
    Ok(Json(PresignResponse {
        object_key: key,
        url: signed.url,
        method: signed.method,
        headers: headers_map(&signed.headers),
        expires_in: ttl(&backend).as_secs(),
    }))
}

// ---------------------------------------------------------------------------------------
// POST /uploads/multipart

#[derive(Deserialize)]
struct CreateRequest {
    filename: String,
    #[serde(default)]
    content_type: String,
    size: u64,
    part_size: u64,
}

#[derive(Serialize)]
struct CreateResponse {
    upload_id: String,
    object_key: String,
    part_size: u64,
}

/// How many parts an upload of `size` in parts of `part_size` has.
fn part_count(size: u64, part_size: u64) -> u64 {
    size.div_ceil(part_size)
}

async fn create_multipart(
    State(backend): State<Backend>,
    user: AuthUser,
    req: Result<Json<CreateRequest>, JsonRejection>,
) -> Result<Json<CreateResponse>, UploadError> {
    let req = body(req)?;
    let filename = check_filename(&req.filename)?;
    let content_type = check_content_type(&req.content_type)?;
    if req.size == 0 || req.size > MAX_OBJECT_SIZE {
        return Err(UploadError::invalid(format!(
            "size must be between 1 and {MAX_OBJECT_SIZE} bytes"
        )));
    }
    if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&req.part_size) {
        return Err(UploadError::invalid(format!(
            "part_size must be between {MIN_PART_SIZE} (5 MiB) and {MAX_PART_SIZE} (5 GiB) bytes"
        )));
    }
    if part_count(req.size, req.part_size) > MAX_PARTS {
        return Err(UploadError::invalid(format!(
            "size / part_size gives more than {MAX_PARTS} parts; choose a larger part_size"
        )));
    }
    let upload_id = uuid::Uuid::new_v4().to_string();
    let key = object_key(&user.user_id, &upload_id, &filename);
    let bucket = &backend.config.manuscripts_bucket;
    let store_upload_id = backend
        .store
        .create_multipart_upload(bucket, &key, &content_type)
        .await?;
    let now = backend.clock.now_secs();
    let inserted = backend.db.call(|c| {
        c.execute(
            "INSERT INTO uploads (upload_id, store_upload_id, object_key, user_id, content_type,
                                  part_size, size, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                upload_id,
                store_upload_id,
                key,
                user.user_id,
                content_type,
                req.part_size as i64,
                req.size as i64,
                now
            ],
        )
    });
    if let Err(e) = inserted {
        // Do not leave an upload behind that nobody can complete or abort.
        let _ = backend
            .store
            .abort_multipart_upload(bucket, &key, &store_upload_id)
            .await;
        return Err(e.into());
    }
    Ok(Json(CreateResponse {
        upload_id,
        object_key: key,
        part_size: req.part_size,
    }))
}

// ---------------------------------------------------------------------------------------
// Looking an upload up

struct Upload {
    store_upload_id: String,
    object_key: String,
    user_id: String,
    part_size: u64,
    size: u64,
    completed: Option<(String, u64)>,
}

/// The caller's multipart upload: 404 `NoSuchUpload` if unknown, 403 if someone else's or
/// if `object_key` is not the upload's key.
fn load_upload(
    backend: &Backend,
    user: &AuthUser,
    upload_id: &str,
    object_key: &str,
) -> Result<Upload, UploadError> {
    let row = backend.db.call(|c| {
        c.query_row(
            "SELECT store_upload_id, object_key, user_id, part_size, size, completed_etag,
                    completed_size
             FROM uploads WHERE upload_id = ?1 AND store_upload_id != ''",
            [upload_id],
            |r| {
                let etag: Option<String> = r.get(5)?;
                let csize: Option<i64> = r.get(6)?;
                Ok(Upload {
                    store_upload_id: r.get(0)?,
                    object_key: r.get(1)?,
                    user_id: r.get(2)?,
                    part_size: r.get::<_, i64>(3)? as u64,
                    size: r.get::<_, i64>(4)? as u64,
                    completed: etag.map(|e| (e, csize.unwrap_or(0) as u64)),
                })
            },
        )
        .optional()
    })?;
    let upload = row.ok_or_else(UploadError::no_such_upload)?;
    if upload.user_id != user.user_id || upload.object_key != object_key {
        return Err(UploadError::forbidden());
    }
    Ok(upload)
}

// ---------------------------------------------------------------------------------------
// POST /uploads/multipart/{upload_id}/parts

#[derive(Deserialize)]
struct PartsRequest {
    object_key: String,
    parts: Vec<PartRequest>,
}

#[derive(Deserialize)]
struct PartRequest {
    part_number: u32,
    content_md5: String,
}

#[derive(Serialize)]
struct PartsResponse {
    parts: Vec<PartUrl>,
}

#[derive(Serialize)]
struct PartUrl {
    part_number: u32,
    url: String,
    headers: BTreeMap<String, String>,
    expires_in: u64,
}

async fn presign_parts(
    State(backend): State<Backend>,
    user: AuthUser,
    Path(upload_id): Path<String>,
    req: Result<Json<PartsRequest>, JsonRejection>,
) -> Result<Json<PartsResponse>, UploadError> {
    let req = body(req)?;
    let upload = load_upload(&backend, &user, &upload_id, &req.object_key)?;
    if upload.completed.is_some() {
        return Err(UploadError::no_such_upload());
    }
    if req.parts.is_empty() || req.parts.len() > MAX_PARTS_PER_REQUEST {
        return Err(UploadError::invalid(format!(
            "parts must list between 1 and {MAX_PARTS_PER_REQUEST} parts"
        )));
    }
    let count = part_count(upload.size, upload.part_size);
    let mut out = Vec::with_capacity(req.parts.len());
    for p in &req.parts {
        if p.part_number == 0 || u64::from(p.part_number) > count {
            return Err(UploadError::invalid(format!(
                "part_number {} is outside 1..={count} for this upload",
                p.part_number
            )));
        }
        check_md5(&p.content_md5)?;
        let signed = backend.store.presign_upload_part(
            &backend.config.manuscripts_bucket,
            &upload.object_key,
            &upload.store_upload_id,
            p.part_number,
            &p.content_md5,
            ttl(&backend),
        )?;
        out.push(PartUrl {
            part_number: p.part_number,
            url: signed.url,
            headers: headers_map(&signed.headers),
            expires_in: ttl(&backend).as_secs(),
        });
    }
    Ok(Json(PartsResponse { parts: out }))
}

// ---------------------------------------------------------------------------------------
// GET /uploads/multipart/{upload_id}/parts?object_key=

#[derive(Deserialize)]
struct KeyQuery {
    object_key: String,
}

#[derive(Serialize)]
struct ListedParts {
    parts: Vec<ListedPart>,
}

#[derive(Serialize)]
struct ListedPart {
    part_number: u32,
    etag: String,
    size: u64,
}

fn query(q: Result<Query<KeyQuery>, QueryRejection>) -> Result<KeyQuery, UploadError> {
    q.map(|Query(q)| q).map_err(|e| {
        UploadError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ValidationError",
            e.body_text(),
        )
    })
}

async fn list_parts(
    State(backend): State<Backend>,
    user: AuthUser,
    Path(upload_id): Path<String>,
    q: Result<Query<KeyQuery>, QueryRejection>,
) -> Result<Json<ListedParts>, UploadError> {
    let q = query(q)?;
    let upload = load_upload(&backend, &user, &upload_id, &q.object_key)?;
    if upload.completed.is_some() {
        return Err(UploadError::no_such_upload());
    }
    let parts = backend
        .store
        .list_parts(
            &backend.config.manuscripts_bucket,
            &upload.object_key,
            &upload.store_upload_id,
        )
        .await?;
    Ok(Json(ListedParts {
        parts: parts
            .into_iter()
            .map(|p| ListedPart {
                part_number: p.part_number,
                etag: p.etag,
                size: p.size,
            })
            .collect(),
    }))
}

// ---------------------------------------------------------------------------------------
// POST /uploads/multipart/{upload_id}/complete

#[derive(Deserialize)]
struct CompleteRequest {
    object_key: String,
    parts: Vec<CompletePart>,
}

#[derive(Deserialize)]
struct CompletePart {
    part_number: u32,
    etag: String,
}

#[derive(Serialize)]
struct CompleteResponse {
    object_key: String,
    etag: String,
    size: u64,
}

/// R2's rules for completing an upload, checked against the store's own part list:
/// ascending part numbers, every part uploaded with the named ETag, non-last parts of the
/// upload's part size (which is at least 5 MiB), and the parts adding up to the size the
/// upload was created for. Returns the object's size.
fn check_parts(
    upload: &Upload,
    named: &[CompletePart],
    stored: &[PartInfo],
) -> Result<u64, UploadError> {
    let rule = |code: &'static str, detail: String| {
        UploadError::new(StatusCode::BAD_REQUEST, code, format!("{code}: {detail}"))
    };
    if named.is_empty() || named.len() as u64 > MAX_PARTS {
        return Err(UploadError::invalid(format!(
            "parts must list between 1 and {MAX_PARTS} parts"
        )));
    }
    if named
        .windows(2)
        .any(|w| w[0].part_number >= w[1].part_number)
    {
        return Err(rule(
            "InvalidPartOrder",
            "the list of parts was not in ascending order of part_number".into(),
        ));
    }
    let mut total = 0u64;
    for (i, p) in named.iter().enumerate() {
        let Some(s) = stored.iter().find(|s| s.part_number == p.part_number) else {
            return Err(rule(
                "InvalidPart",
                format!("part {} has not been uploaded", p.part_number),
            ));
        };
        if !unquote_etag(&p.etag).eq_ignore_ascii_case(&s.etag) {
            return Err(rule(
                "InvalidPart",
                format!(
                    "the etag of part {} does not match the uploaded part",
                    p.part_number
                ),
            ));
        }
        let last = i + 1 == named.len();
        if !last && s.size < MIN_PART_SIZE {
            return Err(rule(
                "EntityTooSmall",
                format!(
                    "part {} is {} bytes; every part but the last must be at least 5 MiB",
                    p.part_number, s.size
                ),
            ));
        }
        if (!last && s.size != upload.part_size) || (last && s.size > upload.part_size) {
            return Err(rule(
                "InvalidPart",
                format!(
                    "part {} is {} bytes; every part but the last must be {} bytes (the upload's part_size) and the last at most that",
                    p.part_number, s.size, upload.part_size
                ),
            ));
        }
        total += s.size;
    }
    if total != upload.size {
        return Err(rule(
            "InvalidPart",
            format!(
                "the parts add up to {total} bytes but the upload was created for {} bytes",
                upload.size
            ),
        ));
    }
    Ok(total)
}

async fn complete(
    State(backend): State<Backend>,
    user: AuthUser,
    Path(upload_id): Path<String>,
    req: Result<Json<CompleteRequest>, JsonRejection>,
) -> Result<Json<CompleteResponse>, UploadError> {
    let req = body(req)?;
    let upload = load_upload(&backend, &user, &upload_id, &req.object_key)?;
    if let Some((etag, size)) = upload.completed {
        // A retried completion (the first answer was lost): same result.
        return Ok(Json(CompleteResponse {
            object_key: upload.object_key,
            etag,
            size,
        }));
    }
    let bucket = &backend.config.manuscripts_bucket;
    let stored = backend
        .store
        .list_parts(bucket, &upload.object_key, &upload.store_upload_id)
        .await?;
    let size = check_parts(&upload, &req.parts, &stored)?;
    let parts: Vec<CompletedPart> = req
        .parts
        .iter()
        .map(|p| CompletedPart {
            part_number: p.part_number,
            etag: unquote_etag(&p.etag),
        })
        .collect();
    let etag = backend
        .store
        .complete_multipart_upload(bucket, &upload.object_key, &upload.store_upload_id, &parts)
        .await?;
    backend.db.call(|c| {
        c.execute(
            "UPDATE uploads SET completed_etag = ?2, completed_size = ?3 WHERE upload_id = ?1",
            params![upload_id, etag, size as i64],
        )
    })?;
    Ok(Json(CompleteResponse {
        object_key: upload.object_key,
        etag,
        size,
    }))
}

// ---------------------------------------------------------------------------------------
// DELETE /uploads/multipart/{upload_id}?object_key=

async fn abort(
    State(backend): State<Backend>,
    user: AuthUser,
    Path(upload_id): Path<String>,
    q: Result<Query<KeyQuery>, QueryRejection>,
) -> Result<StatusCode, UploadError> {
    let q = query(q)?;
    let upload = load_upload(&backend, &user, &upload_id, &q.object_key)?;
    if upload.completed.is_some() {
        return Err(UploadError::no_such_upload());
    }
    match backend
        .store
        .abort_multipart_upload(
            &backend.config.manuscripts_bucket,
            &upload.object_key,
            &upload.store_upload_id,
        )
        .await
    {
        Ok(()) => {}
        // Already gone at the store (expired): the abort's goal is met.
        Err(e) if e.code() == Some("NoSuchUpload") => {}
        Err(e) => return Err(e.into()),
    }
    backend.db.call(|c| {
        c.execute("DELETE FROM uploads WHERE upload_id = ?1", [&upload_id])
            .map(|_| ())
    })?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_keeps_meaning() {
        assert_eq!(
            sanitize_filename("My Book + notes & 50% — été 📚.txt").as_deref(),
            Some("My Book + notes & 50% — été 📚.txt")
        );
        assert_eq!(
            sanitize_filename("C:\\Users\\me\\book.md").as_deref(),
            Some("book.md")
        );
        assert_eq!(
            sanitize_filename("../../etc/passwd").as_deref(),
            Some("passwd")
        );
        assert_eq!(
            sanitize_filename("a\u{0}b\nc\u{7f}.txt").as_deref(),
            Some("abc.txt")
        );
        assert_eq!(sanitize_filename(".."), None);
        assert_eq!(sanitize_filename("  / "), None);
        assert_eq!(sanitize_filename(""), None);
        let long = format!("{}.epub", "é".repeat(300));
        let s = sanitize_filename(&long).unwrap_or_default();
        assert!(s.len() <= MAX_FILENAME_BYTES && s.ends_with(".epub"), "{s}");
    }

    #[test]
    fn part_counts() {
        assert_eq!(part_count(1, MIN_PART_SIZE), 1);
        assert_eq!(part_count(MIN_PART_SIZE, MIN_PART_SIZE), 1);
        assert_eq!(part_count(MIN_PART_SIZE + 1, MIN_PART_SIZE), 2);
    }

    fn upload(part_size: u64, size: u64) -> Upload {
        Upload {
            store_upload_id: "s".into(),
            object_key: "k".into(),
            user_id: "u".into(),
            part_size,
            size,
            completed: None,
        }
    }

    fn named(n: u32, etag: &str) -> CompletePart {
        CompletePart {
            part_number: n,
            etag: etag.into(),
        }
    }

    fn stored(n: u32, etag: &str, size: u64) -> PartInfo {
        PartInfo {
            part_number: n,
            etag: etag.into(),
            size,
        }
    }

    #[test]
    fn completion_rules() {
        let m = MIN_PART_SIZE;
        let up = upload(m, 2 * m + 1);
        let ok = [stored(1, "a", m), stored(2, "b", m), stored(3, "c", 1)];
        assert_eq!(
            check_parts(&up, &[named(1, "a"), named(2, "\"B\""), named(3, "c")], &ok)
                .map_err(|e| e.code),
            Ok(2 * m + 1)
        );
        let code = |n: &[CompletePart], s: &[PartInfo], u: &Upload| {
            check_parts(u, n, s).err().map(|e| e.code)
        };
        assert_eq!(
            code(&[named(2, "b"), named(1, "a")], &ok, &up),
            Some("InvalidPartOrder")
        );
        assert_eq!(
            code(&[named(1, "a"), named(2, "x"), named(3, "c")], &ok, &up),
            Some("InvalidPart")
        );
        assert_eq!(
            code(&[named(1, "a"), named(4, "d")], &ok, &up),
            Some("InvalidPart")
        );
        let small = [stored(1, "a", 10), stored(2, "b", 10)];
        assert_eq!(
            code(&[named(1, "a"), named(2, "b")], &small, &upload(m, 20)),
            Some("EntityTooSmall")
        );
        let unequal = [stored(1, "a", m), stored(2, "b", m + 1), stored(3, "c", 1)];
        assert_eq!(
            code(
                &[named(1, "a"), named(2, "b"), named(3, "c")],
                &unequal,
                &upload(m, 2 * m + 2)
            ),
            Some("InvalidPart")
        );
        assert_eq!(code(&[], &ok, &up), Some("InvalidRequest"));
    }
}

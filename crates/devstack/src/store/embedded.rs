//! The embedded S3 server: s3s-fs behind s3s with SigV4 auth, wrapped so it enforces
//! what R2 enforces and s3s-fs does not. It owns the store's files under its root (objects,
//! s3s-fs's sidecars and our own `.devstack-uploads/` records); nothing else reads or
//! writes them, and it never serves without authentication.
//!
//! What the wrapper ([`R2Fs`]) adds to s3s-fs 0.14.1, which it otherwise delegates to:
//! - `Content-MD5` is checked on PutObject *before* the data lands (`BadDigest`; s3s-fs
//!   checks PutObject only after renaming the file into place) and on UploadPart against
//!   the MD5 s3s-fs computes while writing the part (it never checks parts itself): a
//!   mismatched part is removed and an earlier upload of that part put back, so parts
//!   cost one MD5, not two. A malformed value answers `InvalidDigest`.
//! - Unknown or mismatched upload ids answer `NoSuchUpload` (404) on UploadPart, ListParts,
//!   CompleteMultipartUpload and AbortMultipartUpload (s3s-fs: `AccessDenied`, or nothing).
//! - ListParts returns each part's ETag (recorded at UploadPart), sorted and paginated.
//! - CompleteMultipartUpload checks, before anything is touched: ascending part numbers
//!   (`InvalidPartOrder`), every named part uploaded with the named ETag (`InvalidPart`),
//!   non-last parts at least 5 MiB (`EntityTooSmall`) and of equal size (`InvalidPart`).
//!   Part numbers may have gaps, as on S3. The object's ETag is the multipart ETag, which
//!   s3s-fs persists so HEAD and GET report it.
//! - Listings carry ETags and honour `encoding-type=url` (s3s-fs: neither).
//! - GetObject honours the `response-content-disposition` (and other `response-*`)
//!   overrides of a presigned GET.
//! - GetObject honours `If-Match` (412 `PreconditionFailed` when the object's ETag is
//!   another; s3s-fs ignores it), so a resumed ranged download never splices two versions.
//! - Listings never fail because an object was deleted while they walked the directories
//!   (s3s-fs answers 500 when an entry vanishes between `readdir` and `stat`): deletes wait
//!   for running listings and listings for running deletes (a fair read/write gate; deletes
//!   are short, uploads do not take it).

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures::Stream;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use md5::Digest;
use s3s::dto::*;
use s3s::stream::{ByteStream, RemainingLength};
use s3s::{S3, S3Error, S3Request, S3Response, S3Result, StdError, s3_error};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::StoreError;

/// S3's smallest non-last part.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// How long in-flight requests may take to finish after shutdown was asked for.
const GRACE: Duration = Duration::from_secs(10);

pub struct EmbeddedStore {
    service: s3s::service::S3Service,
}

impl EmbeddedStore {
    pub fn new(root: &Path, access_key: &str, secret_key: &str) -> Result<Self, StoreError> {
        let fs = R2Fs::new(root)?;
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(access_key, secret_key));
        Ok(Self {
            service: builder.build(),
        })
    }

    /// Serves S3 on `listener` until `token` is cancelled, then lets in-flight requests
    /// finish (for at most a few seconds).
    pub async fn serve(self, listener: TcpListener, token: CancellationToken) {
        let http = ConnBuilder::new(TokioExecutor::new());
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        loop {
            let accepted = tokio::select! {
                res = listener.accept() => res,
                () = token.cancelled() => break,
            };
            let socket = match accepted {
                Ok((socket, _)) => socket,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("embedded S3 cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let conn = http
                .serve_connection(TokioIo::new(socket), self.service.clone())
                .into_owned();
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
        drop(listener);
        tokio::select! {
            () = graceful.shutdown() => {}
            () = tokio::time::sleep(GRACE) => {
                tracing::warn!("embedded S3 stopped with requests still in flight");
            }
        }
    }
}

/// Where a multipart upload belongs; written at CreateMultipartUpload.
#[derive(Serialize, Deserialize)]
struct UploadRecord {
    bucket: String,
    key: String,
}

/// A stored part's ETag (hex MD5, no quotes); written at UploadPart.
#[derive(Serialize, Deserialize)]
struct PartRecord {
    etag: String,
}

/// s3s-fs's `FileSystem` with R2's rules added (see the module docs).
pub struct R2Fs {
    inner: s3s_fs::FileSystem,
    root: PathBuf,
    /// Listings hold it shared, deletes exclusively (see the module docs).
    listing_gate: tokio::sync::RwLock<()>,
}

impl R2Fs {
    pub fn new(root: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(root)
            .map_err(|e| StoreError::Transport(format!("cannot create {}: {e}", root.display())))?;
        let root = root
            .canonicalize()
            .map_err(|e| StoreError::Transport(format!("cannot open {}: {e}", root.display())))?;
        let inner = s3s_fs::FileSystem::new(&root)
            .map_err(|e| StoreError::Transport(format!("cannot open the store: {e:?}")))?;
        std::fs::create_dir_all(root.join(RECORDS))
            .map_err(|e| StoreError::Transport(format!("cannot create the upload records: {e}")))?;
        Ok(Self {
            inner,
            root,
            listing_gate: tokio::sync::RwLock::new(()),
        })
    }

    fn upload_dir(&self, upload_id: &uuid::Uuid) -> PathBuf {
        self.root.join(RECORDS).join(upload_id.to_string())
    }

    /// s3s-fs's file for part `n` (see `FileSystem::resolve_upload_part_path`).
    fn part_path(&self, upload_id: &uuid::Uuid, n: i32) -> PathBuf {
        self.root.join(format!(".upload_id-{upload_id}.part-{n}"))
    }

    /// The upload's id if it exists and belongs to `bucket`/`key`; `NoSuchUpload` otherwise.
    async fn check_upload(&self, bucket: &str, key: &str, upload_id: &str) -> S3Result<uuid::Uuid> {
        let no_such = || {
            s3_error!(
                NoSuchUpload,
                "The specified multipart upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."
            )
        };
        let id = uuid::Uuid::parse_str(upload_id).map_err(|_| no_such())?;
        // s3s-fs's own record of the upload.
        if !self.root.join(format!(".upload-{id}.json")).exists() {
            return Err(no_such());
        }
        let raw = match tokio::fs::read(self.upload_dir(&id).join("upload.json")).await {
            Ok(raw) => raw,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(no_such()),
            Err(e) => return Err(S3Error::internal_error(e)),
        };
        let rec: UploadRecord = serde_json::from_slice(&raw).map_err(S3Error::internal_error)?;
        if rec.bucket != bucket || rec.key != key {
            return Err(no_such());
        }
        Ok(id)
    }

    /// The stored ETag of a part: the one recorded at upload, else the MD5 of its file.
    async fn part_etag(&self, upload_id: &uuid::Uuid, n: i32) -> S3Result<String> {
        let rec = self.upload_dir(upload_id).join(format!("part-{n}.json"));
        if let Ok(raw) = tokio::fs::read(&rec).await
            && let Ok(r) = serde_json::from_slice::<PartRecord>(&raw)
        {
            return Ok(r.etag);
        }
        file_md5(&self.part_path(upload_id, n)).await
    }

    /// The parts on disk as (part number, size), ascending.
    async fn stored_parts(&self, upload_id: &uuid::Uuid) -> S3Result<Vec<(i32, u64)>> {
        let prefix = format!(".upload_id-{upload_id}.part-");
        let mut out = Vec::new();
        let mut dir = tokio::fs::read_dir(&self.root)
            .await
            .map_err(S3Error::internal_error)?;
        while let Some(entry) = dir.next_entry().await.map_err(S3Error::internal_error)? {
            let name = entry.file_name();
            let Some(n) = name
                .to_str()
                .and_then(|s| s.strip_prefix(&prefix))
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            let meta = entry.metadata().await.map_err(S3Error::internal_error)?;
            if meta.is_file() {
                out.push((n, meta.len()));
            }
        }
        out.sort_unstable();
        Ok(out)
    }
}

const RECORDS: &str = ".devstack-uploads";

impl R2Fs {
    /// Listings carry each object's ETag on S3 and R2; s3s-fs leaves it out. It is read
    /// from s3s-fs's per-object sidecar (`.bucket-{b64}.object-{b64}.internal.json`).
    async fn fill_etags(&self, bucket: &str, contents: Option<&mut Vec<Object>>) {
        let Some(contents) = contents else { return };
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        for obj in contents.iter_mut() {
            let Some(key) = obj.key.as_deref() else {
                continue;
            };
            let path = self.root.join(format!(
                ".bucket-{}.object-{}.internal.json",
                b64(bucket),
                b64(key)
            ));
            let etag = match tokio::fs::read(&path).await {
                Ok(raw) => serde_json::from_slice::<serde_json::Value>(&raw)
                    .ok()
                    .and_then(|v| v.get("e_tag").and_then(|e| e.as_str()).map(str::to_string)),
                Err(_) => None,
            };
            if let Some(etag) = etag {
                obj.e_tag = Some(ETag::Strong(etag));
            }
        }
    }
}

fn wants_url_encoding(e: Option<&EncodingType>) -> bool {
    e.is_some_and(|e| e.as_str() == EncodingType::URL)
}

/// `encoding-type=url`: S3 percent-encodes keys and prefixes in the answer (clients such
/// as the AWS CLI decode them with `unquote_plus`, so a raw `+` would become a space).
const LISTING_ENCODE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

fn encode_field(field: &mut Option<String>) {
    if let Some(v) = field.as_mut() {
        *v = percent_encoding::utf8_percent_encode(v, LISTING_ENCODE).to_string();
    }
}

fn encode_listing(contents: Option<&mut Vec<Object>>, prefixes: Option<&mut Vec<CommonPrefix>>) {
    for obj in contents.into_iter().flatten() {
        encode_field(&mut obj.key);
    }
    for p in prefixes.into_iter().flatten() {
        encode_field(&mut p.prefix);
    }
}

async fn file_md5(path: &Path) -> S3Result<String> {
    use tokio::io::AsyncReadExt;
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(S3Error::internal_error)?;
    let mut hasher = md5::Md5::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).await.map_err(S3Error::internal_error)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Writes `data` to `path` atomically (temporary file, then rename).
async fn write_atomic(path: &Path, data: &[u8]) -> S3Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4()));
    tokio::fs::write(&tmp, data)
        .await
        .map_err(S3Error::internal_error)?;
    if let Err(e) = tokio::fs::rename(&tmp, path).await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(S3Error::internal_error(e));
    }
    Ok(())
}

/// Hard-links an existing part file to a unique name beside it, so a failed re-upload
/// of that part can put it back; `None` when there is no earlier part.
async fn keep_aside(part: &Path) -> S3Result<Option<PathBuf>> {
    let aside = part.with_extension(format!("aside-{}", uuid::Uuid::new_v4()));
    match tokio::fs::hard_link(part, &aside).await {
        Ok(()) => Ok(Some(aside)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(S3Error::internal_error(e)),
    }
}

/// Undoes a failed part upload: the earlier part back in place, or no part at all.
async fn put_back(part: &Path, earlier: Option<PathBuf>) -> S3Result<()> {
    match earlier {
        Some(aside) => tokio::fs::rename(&aside, part)
            .await
            .map_err(S3Error::internal_error),
        None => remove_if_exists(part).await,
    }
}

/// Decodes a `Content-MD5` header: base64 of exactly 16 bytes, else `InvalidDigest`.
fn decode_content_md5(value: &str) -> S3Result<[u8; 16]> {
    base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()
        .and_then(|b| <[u8; 16]>::try_from(b.as_slice()).ok())
        .ok_or_else(|| s3_error!(InvalidDigest, "The Content-MD5 you specified is not valid."))
}

/// A body that hashes what passes through and fails at its end if the MD5 differs from
/// the one the client declared, so the store never commits a body that does not match.
struct Md5Checked {
    inner: StreamingBlob,
    hasher: Option<md5::Md5>,
    expected: [u8; 16],
    mismatch: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
#[error("the body does not match its Content-MD5")]
struct DigestMismatch;

impl Stream for Md5Checked {
    type Item = Result<Bytes, StdError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                if let Some(h) = self.hasher.as_mut() {
                    h.update(&bytes);
                }
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(None) => {
                if let Some(h) = self.hasher.take()
                    && <[u8; 16]>::from(h.finalize()) != self.expected
                {
                    self.mismatch.store(true, Ordering::SeqCst);
                    return Poll::Ready(Some(Err(Box::new(DigestMismatch))));
                }
                Poll::Ready(None)
            }
            other => other,
        }
    }
}

impl ByteStream for Md5Checked {
    fn remaining_length(&self) -> RemainingLength {
        self.inner.remaining_length()
    }
}

fn bad_digest() -> S3Error {
    s3_error!(
        BadDigest,
        "The Content-MD5 you specified did not match what we received."
    )
}

#[async_trait::async_trait]
impl S3 for R2Fs {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        self.inner.create_bucket(req).await
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        self.inner.copy_object(req).await
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let _gate = self.listing_gate.write().await;
        self.inner.delete_bucket(req).await
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let _gate = self.listing_gate.write().await;
        self.inner.delete_object(req).await
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let _gate = self.listing_gate.write().await;
        self.inner.delete_objects(req).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.inner.get_bucket_location(req).await
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        // S3 and R2 let a (presigned) GET override these response headers; s3s-fs ignores
        // the overrides.
        let i = &req.input;
        let overrides = (
            i.response_cache_control.clone(),
            i.response_content_disposition.clone(),
            i.response_content_encoding.clone(),
            i.response_content_language.clone(),
            i.response_content_type.clone(),
            i.response_expires.clone(),
        );
        let if_match = i.if_match.clone();
        let mut res = self.inner.get_object(req).await?;
        // R2 and S3 compare strongly against the stored ETag; `*` matches any object.
        if let Some(ETagCondition::ETag(wanted)) = &if_match {
            let current = res.output.e_tag.as_ref().map(ETag::value);
            if current != Some(wanted.value()) {
                return Err(s3_error!(
                    PreconditionFailed,
                    "At least one of the pre-conditions you specified did not hold"
                ));
            }
        }
        let o = &mut res.output;
        let (cache, disposition, encoding, language, content_type, expires) = overrides;
        o.cache_control = cache.or(o.cache_control.take());
        o.content_disposition = disposition.or(o.content_disposition.take());
        o.content_encoding = encoding.or(o.content_encoding.take());
        o.content_language = language.or(o.content_language.take());
        o.content_type = content_type.or(o.content_type.take());
        o.expires = expires.or(o.expires.take());
        Ok(res)
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.inner.head_bucket(req).await
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        self.inner.head_object(req).await
    }

    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        self.inner.list_buckets(req).await
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let bucket = req.input.bucket.clone();
        let url = wants_url_encoding(req.input.encoding_type.as_ref());
        let _gate = self.listing_gate.read().await;
        let mut res = self.inner.list_objects(req).await?;
        let o = &mut res.output;
        self.fill_etags(&bucket, o.contents.as_mut()).await;
        if url {
            encode_listing(o.contents.as_mut(), o.common_prefixes.as_mut());
            for field in [
                &mut o.prefix,
                &mut o.delimiter,
                &mut o.marker,
                &mut o.next_marker,
            ] {
                encode_field(field);
            }
        }
        Ok(res)
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let bucket = req.input.bucket.clone();
        let url = wants_url_encoding(req.input.encoding_type.as_ref());
        let _gate = self.listing_gate.read().await;
        let mut res = self.inner.list_objects_v2(req).await?;
        let o = &mut res.output;
        self.fill_etags(&bucket, o.contents.as_mut()).await;
        if url {
            encode_listing(o.contents.as_mut(), o.common_prefixes.as_mut());
            for field in [&mut o.prefix, &mut o.delimiter, &mut o.start_after] {
                encode_field(field);
            }
        }
        Ok(res)
    }

    async fn put_object(
        &self,
        mut req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let mismatch = wrap_body(&mut req.input.body, req.input.content_md5.as_deref())?;
        match self.inner.put_object(req).await {
            Err(_) if mismatch.load(Ordering::SeqCst) => Err(bad_digest()),
            other => other,
        }
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let record = UploadRecord {
            bucket: req.input.bucket.clone(),
            key: req.input.key.clone(),
        };
        let res = self.inner.create_multipart_upload(req).await?;
        let id = res
            .output
            .upload_id
            .as_deref()
            .and_then(|s| uuid::Uuid::parse_str(s).ok())
            .ok_or_else(|| s3_error!(InternalError, "s3s-fs returned no upload id"))?;
        let dir = self.upload_dir(&id);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(S3Error::internal_error)?;
        let raw = serde_json::to_vec(&record).map_err(S3Error::internal_error)?;
        write_atomic(&dir.join("upload.json"), &raw).await?;
        Ok(res)
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let input = &req.input;
        let id = self
            .check_upload(&input.bucket, &input.key, &input.upload_id)
            .await?;
        let n = input.part_number;
        if !(1..=10_000).contains(&n) {
            return Err(s3_error!(
                InvalidArgument,
                "Part number must be an integer between 1 and 10000, inclusive"
            ));
        }
        // s3s-fs hashes the part as it writes it (its ETag is the part's MD5), so the
        // Content-MD5 is compared with that instead of hashing every byte a second time.
        // The part is in place by then: an earlier upload of the same part is kept aside
        // until the new one has matched, and put back if it does not.
        let expected = req
            .input
            .content_md5
            .as_deref()
            .map(decode_content_md5)
            .transpose()?;
        let part = self.part_path(&id, n);
        let earlier = match expected {
            Some(_) => keep_aside(&part).await?,
            None => None,
        };
        let res = self.inner.upload_part(req).await;
        let etag = res.as_ref().ok().and_then(|r| r.output.e_tag.as_ref());
        let matched = match (expected, etag) {
            (Some(want), Some(got)) => got.value() == hex::encode(want),
            _ => true,
        };
        if expected.is_some() && (res.is_err() || !matched) {
            put_back(&part, earlier).await?;
            let res = res?;
            if !matched {
                return Err(bad_digest());
            }
            return Ok(res);
        }
        if let Some(aside) = earlier {
            remove_if_exists(&aside).await?;
        }
        let res = res?;
        let etag = res
            .output
            .e_tag
            .as_ref()
            .map(|e| e.value().to_string())
            .ok_or_else(|| s3_error!(InternalError, "s3s-fs returned no part ETag"))?;
        let raw = serde_json::to_vec(&PartRecord { etag }).map_err(S3Error::internal_error)?;
        write_atomic(&self.upload_dir(&id).join(format!("part-{n}.json")), &raw).await?;
        Ok(res)
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let id = self
            .check_upload(&req.input.bucket, &req.input.key, &req.input.upload_id)
            .await?;
        let n = req.input.part_number;
        let res = self.inner.upload_part_copy(req).await?;
        if let Some(etag) = res
            .output
            .copy_part_result
            .as_ref()
            .and_then(|r| r.e_tag.as_ref())
        {
            let raw = serde_json::to_vec(&PartRecord {
                etag: etag.value().to_string(),
            })
            .map_err(S3Error::internal_error)?;
            write_atomic(&self.upload_dir(&id).join(format!("part-{n}.json")), &raw).await?;
        }
        Ok(res)
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        let id = self
            .check_upload(&input.bucket, &input.key, &input.upload_id)
            .await?;
        let max_parts = input.max_parts.unwrap_or(1000).clamp(0, 1000);
        let marker = input.part_number_marker.unwrap_or(0);
        let stored = self.stored_parts(&id).await?;
        let after: Vec<(i32, u64)> = stored.into_iter().filter(|(n, _)| *n > marker).collect();
        let take = usize::try_from(max_parts).unwrap_or(1000);
        let is_truncated = after.len() > take;
        let mut parts = Vec::new();
        for (n, size) in after.into_iter().take(take) {
            let meta = tokio::fs::metadata(self.part_path(&id, n))
                .await
                .map_err(S3Error::internal_error)?;
            let modified = meta.modified().map_err(S3Error::internal_error)?;
            parts.push(Part {
                part_number: Some(n),
                size: Some(i64::try_from(size).map_err(S3Error::internal_error)?),
                e_tag: Some(ETag::Strong(self.part_etag(&id, n).await?)),
                last_modified: Some(Timestamp::from(modified)),
                ..Default::default()
            });
        }
        let next = parts.last().and_then(|p| p.part_number);
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            max_parts: Some(max_parts),
            part_number_marker: Some(marker),
            next_part_number_marker: if is_truncated { next } else { None },
            is_truncated: Some(is_truncated),
            parts: Some(parts),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        mut req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = &req.input;
        let id = self
            .check_upload(&input.bucket, &input.key, &input.upload_id)
            .await?;
        let named: Vec<CompletedPart> = input
            .multipart_upload
            .as_ref()
            .and_then(|m| m.parts.clone())
            .unwrap_or_default();
        if named.is_empty() {
            return Err(s3_error!(
                MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema."
            ));
        }
        let stored = self.stored_parts(&id).await?;
        let mut numbers = Vec::with_capacity(named.len());
        let mut sizes = Vec::with_capacity(named.len());
        for part in &named {
            let n = part
                .part_number
                .ok_or_else(|| s3_error!(InvalidPart, "A part has no PartNumber."))?;
            if numbers.last().is_some_and(|&prev| n <= prev) {
                return Err(s3_error!(
                    InvalidPartOrder,
                    "The list of parts was not in ascending order. Parts must be ordered by part number."
                ));
            }
            let Some(&(_, size)) = stored.iter().find(|(sn, _)| *sn == n) else {
                return Err(invalid_part(n));
            };
            let given = part
                .e_tag
                .as_ref()
                .map(|e| e.value().trim_matches('"').to_ascii_lowercase());
            let actual = self.part_etag(&id, n).await?;
            if given.as_deref() != Some(actual.to_ascii_lowercase().as_str()) {
                return Err(invalid_part(n));
            }
            numbers.push(n);
            sizes.push(size);
        }
        if let Some((_, non_last)) = sizes.split_last() {
            if non_last.iter().any(|&s| s < MIN_PART_SIZE) {
                return Err(s3_error!(
                    EntityTooSmall,
                    "Your proposed upload is smaller than the minimum allowed object size."
                ));
            }
            if non_last.windows(2).any(|w| w[0] != w[1]) {
                return Err(s3_error!(
                    InvalidPart,
                    "All non-trailing parts must have the same length."
                ));
            }
        }
        // s3s-fs wants the parts numbered 1..=N: drop the parts not named (S3 discards
        // them) and renumber the named ones in ascending order. Each target is free: the
        // j-th named part p_j >= j moves to j, below every named part not yet moved and
        // above every moved one, and the unnamed ones are gone.
        for (n, _) in &stored {
            if !numbers.contains(n) {
                remove_if_exists(&self.part_path(&id, *n)).await?;
            }
        }
        let mut renumbered = named;
        for (i, (part, n)) in renumbered.iter_mut().zip(&numbers).enumerate() {
            let target = i32::try_from(i + 1).map_err(S3Error::internal_error)?;
            if *n != target {
                tokio::fs::rename(self.part_path(&id, *n), self.part_path(&id, target))
                    .await
                    .map_err(S3Error::internal_error)?;
            }
            part.part_number = Some(target);
        }
        if let Some(m) = req.input.multipart_upload.as_mut() {
            m.parts = Some(renumbered);
        }
        let res = self.inner.complete_multipart_upload(req).await?;
        let _ = tokio::fs::remove_dir_all(self.upload_dir(&id)).await;
        Ok(res)
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let id = self
            .check_upload(&req.input.bucket, &req.input.key, &req.input.upload_id)
            .await?;
        let res = self.inner.abort_multipart_upload(req).await?;
        let _ = tokio::fs::remove_dir_all(self.upload_dir(&id)).await;
        Ok(res)
    }
}

fn invalid_part(n: i32) -> S3Error {
    s3_error!(
        InvalidPart,
        "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag. (part {n})"
    )
}

async fn remove_if_exists(path: &Path) -> S3Result<()> {
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(S3Error::internal_error(e)),
    }
}

/// Replaces `body` with an MD5-checked one when `content_md5` is given; returns the flag
/// set when the body did not match.
fn wrap_body(
    body: &mut Option<StreamingBlob>,
    content_md5: Option<&str>,
) -> S3Result<Arc<AtomicBool>> {
    let mismatch = Arc::new(AtomicBool::new(false));
    if let Some(md5) = content_md5 {
        let expected = decode_content_md5(md5)?;
        if let Some(inner) = body.take() {
            *body = Some(StreamingBlob::new(Md5Checked {
                inner,
                hasher: Some(md5::Md5::new()),
                expected,
                mismatch: mismatch.clone(),
            }));
        }
    }
    Ok(mismatch)
}

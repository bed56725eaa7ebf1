//! The backend's S3 client: SigV4-signed requests over HTTP (reqwest) and SigV4
//! query-string presigning (`aws-sigv4`) of PUT/GET URLs for clients. It owns the wire
//! format of S3 (path-style URLs, key encoding, XML bodies, error codes); it never decides
//! who may touch which key, and it never logs a URL's signature or a secret.
//!
//! Signing follows S3's rules, not the generic SigV4 defaults: the canonical URI is the
//! path as sent, percent-encoded once (`PercentEncodingMode::Single`), with no path
//! normalisation, so keys with spaces, `+`, `%`, `&`, unicode and `//` sign and round-trip.
//! Presigned URLs carry `UNSIGNED-PAYLOAD` and point at `public_endpoint`; the backend's
//! own requests go to `endpoint` and sign the payload's SHA-256.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation,
    SigningSettings, UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use base64::Engine;
use bytes::Bytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Where the backend sends its own requests.
    pub endpoint: url::Url,
    /// The base that presigned URLs point at (may be a proxy in front of `endpoint`).
    pub public_endpoint: url::Url,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store answered with an S3 error document.
    #[error("S3 {status} {code}: {message}")]
    S3 {
        status: u16,
        code: String,
        message: String,
    },
    #[error("cannot reach the S3 store: {0}")]
    Transport(String),
    #[error("cannot sign the request: {0}")]
    Signing(String),
    #[error("the S3 store answered something unexpected: {0}")]
    Protocol(String),
}

impl StoreError {
    /// The S3 error code (`NoSuchKey`, `NoSuchUpload`, ...), if the store sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            StoreError::S3 { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status the store answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            StoreError::S3 { status, .. } => Some(*status),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
    /// The ETag without quotes.
    pub etag: String,
    pub content_type: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartInfo {
    pub part_number: u32,
    /// The ETag without quotes.
    pub etag: String,
    pub size: u64,
}

/// One entry of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    pub size: u64,
    /// The ETag without quotes.
    pub etag: String,
}

/// A part named in a `CompleteMultipartUpload` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompletedPart {
    pub part_number: u32,
    /// The ETag with or without quotes.
    pub etag: String,
}

/// A presigned request: the URL exactly as signed and the headers the caller must send
/// with exactly these values.
#[derive(Clone, PartialEq, Eq)]
pub struct PresignedRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
}

impl std::fmt::Debug for PresignedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresignedRequest")
            .field("method", &self.method)
            .field("url", &redact_url(&self.url))
            .field("headers", &self.headers)
            .finish()
    }
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

/// Characters left as they are in a SigV4 canonical URI or query: the RFC 3986
/// unreserved set. Everything else is percent-encoded (UTF-8), `/` included.
const S3_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn encode(s: &str) -> Cow<'_, str> {
    utf8_percent_encode(s, S3_ENCODE).into()
}

/// Encodes a key for a path: each `/`-separated segment is encoded, `/` stays.
fn encode_key(key: &str) -> String {
    key.split('/')
        .map(|seg| encode(seg).into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

fn encode_query(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `"abc"` or `W/"abc"` -> `abc`.
pub fn unquote_etag(etag: &str) -> String {
    let e = etag.trim();
    let e = e.strip_prefix("W/").unwrap_or(e);
    e.trim_matches('"').to_string()
}

/// `Content-Disposition: attachment` with an ASCII fallback `filename` and the exact name in
/// `filename*` (RFC 6266 section 4.3, RFC 5987 encoding).
pub fn content_disposition(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    // RFC 5987 attr-char: ALPHA / DIGIT / "!" / "#" / "$" / "&" / "+" / "-" / "." / "^" /
    // "_" / "`" / "|" / "~". Encoding a few more than needed is allowed.
    const ATTR: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'!')
        .remove(b'#')
        .remove(b'$')
        .remove(b'&')
        .remove(b'+')
        .remove(b'-')
        .remove(b'.')
        .remove(b'^')
        .remove(b'_')
        .remove(b'`')
        .remove(b'|')
        .remove(b'~');
    format!(
        "attachment; filename=\"{fallback}\"; filename*=UTF-8''{}",
        utf8_percent_encode(name, ATTR)
    )
}

/// Whether `s` is the base64 of exactly 16 bytes (a `Content-MD5` value).
pub fn is_content_md5(s: &str) -> bool {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map(|b| b.len() == 16)
        .unwrap_or(false)
}

#[derive(Clone)]
pub struct Client {
    config: ClientConfig,
    http: reqwest::Client,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.config.endpoint.as_str())
            .field("public_endpoint", &self.config.public_endpoint.as_str())
            .field("region", &self.config.region)
            .finish_non_exhaustive()
    }
}

/// How long the backend waits for the store on one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// The largest XML answer the client reads (listings, errors).
const MAX_XML_BYTES: usize = 8 * 1024 * 1024;

impl Client {
    pub fn new(config: ClientConfig) -> Result<Self, StoreError> {
        for (what, url) in [
            ("endpoint", &config.endpoint),
            ("public endpoint", &config.public_endpoint),
        ] {
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(StoreError::Signing(format!(
                    "the S3 {what} must be an http(s) URL with a host"
                )));
            }
            if url.query().is_some() {
                return Err(StoreError::Signing(format!(
                    "the S3 {what} must not have a query string"
                )));
            }
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| StoreError::Transport(e.to_string()))?;
        Ok(Self { config, http })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Creates the bucket unless it exists.
    pub async fn ensure_bucket(&self, bucket: &str) -> Result<(), StoreError> {
        let head = self.send_ok(Req::new("HEAD", bucket, None)).await;
        match head {
            Ok(_) => return Ok(()),
            Err(StoreError::S3 { status: 404, .. }) => {}
            Err(e) => return Err(e),
        }
        match self.send_ok(Req::new("PUT", bucket, None)).await {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.code(),
                    Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<ObjectMeta, StoreError> {
        let size = body.len() as u64;
        let md5 = base64::engine::general_purpose::STANDARD.encode(md5_digest(&body));
        let mut req = Req::new("PUT", bucket, Some(key));
        req.headers
            .push(("content-type".into(), content_type.into()));
        req.headers.push(("content-md5".into(), md5));
        req.body = body;
        let res = self.send_ok(req).await?;
        let etag = header_etag(&res)?;
        Ok(ObjectMeta {
            size,
            etag,
            content_type: Some(content_type.to_string()),
        })
    }

    /// The whole object in memory. For objects whose size is not known to be small, use
    /// [`Client::get_object_limited`].
    pub async fn get_object(&self, bucket: &str, key: &str) -> Result<Bytes, StoreError> {
        self.get_object_limited(bucket, key, u64::MAX).await
    }

    /// The whole object in memory if it is at most `max_bytes`; a
    /// [`StoreError::Protocol`] (without reading the body) if it is larger.
    pub async fn get_object_limited(
        &self,
        bucket: &str,
        key: &str,
        max_bytes: u64,
    ) -> Result<Bytes, StoreError> {
        use futures::StreamExt;
        let res = self.send_ok(Req::new("GET", bucket, Some(key))).await?;
        let too_big =
            || StoreError::Protocol(format!("the object is larger than {max_bytes} bytes"));
        if res.content_length().is_some_and(|n| n > max_bytes) {
            return Err(too_big());
        }
        let mut buf = bytes::BytesMut::new();
        let mut stream = res.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| StoreError::Transport(e.without_url().to_string()))?;
            if (buf.len() + chunk.len()) as u64 > max_bytes {
                return Err(too_big());
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }

    pub async fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectMeta, StoreError> {
        let res = self.send_ok(Req::new("HEAD", bucket, Some(key))).await?;
        let size = res
            .headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| StoreError::Protocol("HEAD answered without a Content-Length".into()))?;
        let etag = header_etag(&res)?;
        let content_type = res
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok(ObjectMeta {
            size,
            etag,
            content_type,
        })
    }

    /// Deletes the object; deleting a missing key succeeds, as on S3.
    pub async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), StoreError> {
        self.send_ok(Req::new("DELETE", bucket, Some(key))).await?;
        Ok(())
    }

    /// Every object whose key starts with `prefix` (all pages of ListObjectsV2).
    pub async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<ListedObject>, StoreError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut req = Req::new("GET", bucket, None);
            req.query.push(("list-type", "2".into()));
            req.query.push(("prefix", prefix.to_string()));
            if let Some(t) = &token {
                req.query.push(("continuation-token", t.clone()));
            }
            let body = xml_body(self.send_ok(req).await?).await?;
            let page: ListBucketResult = parse_xml(&body)?;
            for c in page.contents {
                out.push(ListedObject {
                    key: c.key,
                    size: c.size,
                    etag: unquote_etag(&c.etag),
                });
            }
            match (page.is_truncated, page.next_continuation_token) {
                (true, Some(next)) if Some(&next) != token.as_ref() => token = Some(next),
                (true, _) => {
                    return Err(StoreError::Protocol(
                        "a truncated listing without a new continuation token".into(),
                    ));
                }
                (false, _) => return Ok(out),
            }
        }
    }

    /// Starts a multipart upload and returns the store's upload id.
    pub async fn create_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        content_type: &str,
    ) -> Result<String, StoreError> {
        let mut req = Req::new("POST", bucket, Some(key));
        req.query.push(("uploads", String::new()));
        req.headers
            .push(("content-type".into(), content_type.into()));
        let body = xml_body(self.send_ok(req).await?).await?;
        let r: InitiateMultipartUploadResult = parse_xml(&body)?;
        if r.upload_id.is_empty() {
            return Err(StoreError::Protocol("an empty UploadId".into()));
        }
        Ok(r.upload_id)
    }

    /// Presigns `PUT ?partNumber=&uploadId=` with `Content-MD5` signed.
    pub fn presign_upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        content_md5: &str,
        ttl: Duration,
    ) -> Result<PresignedRequest, StoreError> {
        let mut req = Req::new("PUT", bucket, Some(key));
        req.query.push(("partNumber", part_number.to_string()));
        req.query.push(("uploadId", upload_id.to_string()));
        req.headers
            .push(("Content-MD5".into(), content_md5.to_string()));
        self.presign(req, ttl)
    }

    /// Every uploaded part of an upload (all pages of ListParts), by part number.
    pub async fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<Vec<PartInfo>, StoreError> {
        let mut out: Vec<PartInfo> = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut req = Req::new("GET", bucket, Some(key));
            req.query.push(("uploadId", upload_id.to_string()));
            if let Some(m) = &marker {
                req.query.push(("part-number-marker", m.clone()));
            }
            let body = xml_body(self.send_ok(req).await?).await?;
            let page: ListPartsResult = parse_xml(&body)?;
            for p in page.parts {
                out.push(PartInfo {
                    part_number: p.part_number,
                    etag: unquote_etag(&p.etag),
                    size: p.size,
                });
            }
            match (page.is_truncated, page.next_part_number_marker) {
                (true, Some(next)) if Some(&next) != marker.as_ref() && !next.is_empty() => {
                    marker = Some(next)
                }
                (true, _) => {
                    return Err(StoreError::Protocol(
                        "a truncated part listing without a new marker".into(),
                    ));
                }
                (false, _) => break,
            }
        }
        out.sort_by_key(|p| p.part_number);
        out.dedup_by_key(|p| p.part_number);
        Ok(out)
    }

    /// Completes an upload with `parts` (ascending part numbers) and returns the object's
    /// ETag without quotes.
    pub async fn complete_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<String, StoreError> {
        let mut xml = String::from("<CompleteMultipartUpload>");
        for p in parts {
            xml.push_str(&format!(
                "<Part><PartNumber>{}</PartNumber><ETag>\"{}\"</ETag></Part>",
                p.part_number,
                quick_xml::escape::escape(unquote_etag(&p.etag).as_str())
            ));
        }
        xml.push_str("</CompleteMultipartUpload>");
        let mut req = Req::new("POST", bucket, Some(key));
        req.query.push(("uploadId", upload_id.to_string()));
        req.headers
            .push(("content-type".into(), "application/xml".into()));
        req.body = Bytes::from(xml);
        let body = xml_body(self.send_ok(req).await?).await?;
        // S3 may answer 200 and still fail the completion with an <Error> document.
        if root_name(&body).as_deref() == Some("Error") {
            return Err(error_from_xml(200, &body));
        }
        let r: CompleteMultipartUploadResult = parse_xml(&body)?;
        let etag = unquote_etag(&r.etag);
        if etag.is_empty() {
            return Err(StoreError::Protocol(
                "CompleteMultipartUpload answered without an ETag".into(),
            ));
        }
        Ok(etag)
    }

    pub async fn abort_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(), StoreError> {
        let mut req = Req::new("DELETE", bucket, Some(key));
        req.query.push(("uploadId", upload_id.to_string()));
        self.send_ok(req).await?;
        Ok(())
    }

    /// Presigns a single-request PUT with `Content-Type` and `Content-MD5` signed.
    pub fn presign_put(
        &self,
        bucket: &str,
        key: &str,
        content_type: &str,
        content_md5: &str,
        ttl: Duration,
    ) -> Result<PresignedRequest, StoreError> {
        let mut req = Req::new("PUT", bucket, Some(key));
        req.headers
            .push(("Content-Type".into(), content_type.to_string()));
        req.headers
            .push(("Content-MD5".into(), content_md5.to_string()));
        self.presign(req, ttl)
    }

    /// Presigns a GET; `download_name` becomes `response-content-disposition`.
    pub fn presign_get(
        &self,
        bucket: &str,
        key: &str,
        ttl: Duration,
        download_name: Option<&str>,
    ) -> Result<PresignedRequest, StoreError> {
        let mut req = Req::new("GET", bucket, Some(key));
        if let Some(name) = download_name {
            req.query
                .push(("response-content-disposition", content_disposition(name)));
        }
        self.presign(req, ttl)
    }

    /// The URL of `bucket`/`key` under `base` with `query` (already in the order wanted),
    /// encoded as S3 expects. Refuses keys that a URL parser would rewrite (`.` and `..`
    /// segments), since the signature would then not match the path the server sees.
    fn url(
        &self,
        base: &url::Url,
        bucket: &str,
        key: Option<&str>,
        query: &[(&str, String)],
    ) -> Result<String, StoreError> {
        if bucket.is_empty() || bucket.contains('/') {
            return Err(StoreError::Signing("an invalid bucket name".into()));
        }
        let mut path = base.path().trim_end_matches('/').to_string();
        path.push('/');
        path.push_str(&encode(bucket));
        if let Some(key) = key {
            if key.is_empty() {
                return Err(StoreError::Signing("an empty object key".into()));
            }
            if key.split('/').any(|s| s == "." || s == "..") {
                return Err(StoreError::Signing(
                    "object keys with `.` or `..` segments cannot be addressed".into(),
                ));
            }
            path.push('/');
            path.push_str(&encode_key(key));
        }
        let origin = base.origin().ascii_serialization();
        let mut url = format!("{origin}{path}");
        if !query.is_empty() {
            url.push('?');
            url.push_str(&encode_query(query));
        }
        Ok(url)
    }

    fn signing_params<'a>(
        &'a self,
        identity: &'a aws_smithy_runtime_api::client::identity::Identity,
        settings: SigningSettings,
    ) -> Result<aws_sigv4::http_request::SigningParams<'a>, StoreError> {
        Ok(v4::SigningParams::builder()
            .identity(identity)
            .region(&self.config.region)
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| StoreError::Signing(e.to_string()))?
            .into())
    }

    fn identity(&self) -> aws_smithy_runtime_api::client::identity::Identity {
        aws_credential_types::Credentials::new(
            &self.config.access_key,
            &self.config.secret_key,
            None,
            None,
            "rohimaya-devstack",
        )
        .into()
    }

    fn presign(&self, req: Req<'_>, ttl: Duration) -> Result<PresignedRequest, StoreError> {
        if ttl.is_zero() || ttl > crate::config::MAX_URL_TTL {
            return Err(StoreError::Signing(
                "a presigned URL lives between 1 second and 7 days".into(),
            ));
        }
        let url = self.url(
            &self.config.public_endpoint,
            req.bucket,
            req.key,
            &req.query,
        )?;
        let mut settings = s3_settings();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.payload_checksum_kind = PayloadChecksumKind::NoHeader;
        settings.expires_in = Some(ttl);
        let identity = self.identity();
        let params = self.signing_params(&identity, settings)?;
        let signable = SignableRequest::new(
            req.method,
            url.as_str(),
            req.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::UnsignedPayload,
        )
        .map_err(|e| StoreError::Signing(e.to_string()))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| StoreError::Signing(e.to_string()))?
            .into_parts();
        let (_, params) = instructions.into_parts();
        let extra: Vec<(&str, String)> = params.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let sep = if req.query.is_empty() { '?' } else { '&' };
        let url = format!("{url}{sep}{}", encode_query(&extra));
        Ok(PresignedRequest {
            method: req.method.to_string(),
            url,
            headers: req.headers,
        })
    }

    /// Sends and turns a non-2xx answer into an error.
    async fn send_ok(&self, req: Req<'_>) -> Result<reqwest::Response, StoreError> {
        check(self.send(req).await?).await
    }

    async fn send(&self, req: Req<'_>) -> Result<reqwest::Response, StoreError> {
        let url = self.url(&self.config.endpoint, req.bucket, req.key, &req.query)?;
        let mut settings = s3_settings();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let identity = self.identity();
        let params = self.signing_params(&identity, settings)?;
        let signable = SignableRequest::new(
            req.method,
            url.as_str(),
            req.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(&req.body),
        )
        .map_err(|e| StoreError::Signing(e.to_string()))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| StoreError::Signing(e.to_string()))?
            .into_parts();
        let (signed_headers, _) = instructions.into_parts();
        let method = reqwest::Method::from_bytes(req.method.as_bytes())
            .map_err(|e| StoreError::Signing(e.to_string()))?;
        let parsed = url::Url::parse(&url).map_err(|e| StoreError::Signing(e.to_string()))?;
        let mut builder = self.http.request(method, parsed);
        for (k, v) in &req.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        for h in &signed_headers {
            builder = builder.header(h.name(), h.value());
        }
        tracing::debug!(
            method = req.method,
            bucket = req.bucket,
            key = req.key.unwrap_or(""),
            "S3 request"
        );
        builder
            .body(req.body)
            .send()
            .await
            .map_err(|e| StoreError::Transport(e.without_url().to_string()))
    }
}

/// S3's signing settings: single encoding, no normalisation.
fn s3_settings() -> SigningSettings {
    let mut s = SigningSettings::default();
    s.percent_encoding_mode = PercentEncodingMode::Single;
    s.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    s
}

struct Req<'a> {
    method: &'static str,
    bucket: &'a str,
    key: Option<&'a str>,
    query: Vec<(&'static str, String)>,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl<'a> Req<'a> {
    fn new(method: &'static str, bucket: &'a str, key: Option<&'a str>) -> Self {
        Self {
            method,
            bucket,
            key,
            query: Vec::new(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }
}

fn md5_digest(data: &[u8]) -> [u8; 16] {
    use md5::Digest;
    md5::Md5::digest(data).into()
}

fn header_etag(res: &reqwest::Response) -> Result<String, StoreError> {
    res.headers()
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(unquote_etag)
        .ok_or_else(|| StoreError::Protocol("the store answered without an ETag".into()))
}

/// Passes 2xx answers through; turns anything else into [`StoreError::S3`], reading the
/// XML error document when there is one (HEAD answers have none: the code is derived
/// from the status, as AWS SDKs do).
async fn check(res: reqwest::Response) -> Result<reqwest::Response, StoreError> {
    if res.status().is_success() {
        return Ok(res);
    }
    let status = res.status().as_u16();
    let body = xml_body(res).await.unwrap_or_default();
    Err(error_from_xml(status, &body))
}

fn default_code(status: u16) -> &'static str {
    match status {
        400 => "BadRequest",
        403 => "AccessDenied",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        412 => "PreconditionFailed",
        429 => "SlowDown",
        500 => "InternalError",
        501 => "NotImplemented",
        503 => "ServiceUnavailable",
        _ => "Unknown",
    }
}

async fn xml_body(res: reqwest::Response) -> Result<String, StoreError> {
    if let Some(len) = res.content_length()
        && len > MAX_XML_BYTES as u64
    {
        return Err(StoreError::Protocol(format!(
            "an XML answer of {len} bytes is larger than the limit"
        )));
    }
    let bytes = res
        .bytes()
        .await
        .map_err(|e| StoreError::Transport(e.without_url().to_string()))?;
    if bytes.len() > MAX_XML_BYTES {
        return Err(StoreError::Protocol(
            "an XML answer larger than the limit".into(),
        ));
    }
    String::from_utf8(bytes.to_vec())
        .map_err(|_| StoreError::Protocol("an XML answer that is not UTF-8".into()))
}

fn parse_xml<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, StoreError> {
    quick_xml::de::from_str(body).map_err(|e| StoreError::Protocol(format!("bad XML: {e}")))
}

/// The name of the document's root element.
fn root_name(body: &str) -> Option<String> {
    let mut reader = quick_xml::Reader::from_str(body);
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Start(e)) | Ok(quick_xml::events::Event::Empty(e)) => {
                return Some(String::from_utf8_lossy(e.local_name().as_ref()).into_owned());
            }
            Ok(quick_xml::events::Event::Eof) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

fn error_from_xml(status: u16, body: &str) -> StoreError {
    match quick_xml::de::from_str::<ErrorDoc>(body) {
        Ok(doc) if !doc.code.is_empty() => StoreError::S3 {
            status,
            code: doc.code,
            message: doc.message,
        },
        _ => StoreError::S3 {
            status,
            code: default_code(status).into(),
            message: String::new(),
        },
    }
}

#[derive(Deserialize)]
struct ErrorDoc {
    #[serde(rename = "Code", default)]
    code: String,
    #[serde(rename = "Message", default)]
    message: String,
}

#[derive(Deserialize)]
struct InitiateMultipartUploadResult {
    #[serde(rename = "UploadId", default)]
    upload_id: String,
}

#[derive(Deserialize)]
struct CompleteMultipartUploadResult {
    #[serde(rename = "ETag", default)]
    etag: String,
}

#[derive(Deserialize)]
struct ListPartsResult {
    #[serde(rename = "IsTruncated", default)]
    is_truncated: bool,
    #[serde(rename = "NextPartNumberMarker", default)]
    next_part_number_marker: Option<String>,
    #[serde(rename = "Part", default)]
    parts: Vec<XmlPart>,
}

#[derive(Deserialize)]
struct XmlPart {
    #[serde(rename = "PartNumber")]
    part_number: u32,
    #[serde(rename = "ETag", default)]
    etag: String,
    #[serde(rename = "Size", default)]
    size: u64,
}

#[derive(Deserialize)]
struct ListBucketResult {
    #[serde(rename = "IsTruncated", default)]
    is_truncated: bool,
    #[serde(rename = "NextContinuationToken", default)]
    next_continuation_token: Option<String>,
    #[serde(rename = "Contents", default)]
    contents: Vec<XmlObject>,
}

#[derive(Deserialize)]
struct XmlObject {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "Size", default)]
    size: u64,
    #[serde(rename = "ETag", default)]
    etag: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(public: &str) -> Client {
        let url = |s: &str| url::Url::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        Client::new(ClientConfig {
            endpoint: url("http://127.0.0.1:9000"),
            public_endpoint: url(public),
            access_key: "AKIDEXAMPLE".into(),
            secret_key: "secret".into(),
            region: "auto".into(),
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn keys_are_encoded_once_per_segment() {
        assert_eq!(
            encode_key("a b/c+d%e&f//é 📚"),
            "a%20b/c%2Bd%25e%26f//%C3%A9%20%F0%9F%93%9A"
        );
    }

    #[test]
    fn presigned_put_points_at_the_public_endpoint() {
        let c = client("http://127.0.0.1:7000/");
        let md5 = "1B2M2Y8AsgTpgAmY7PhCfg==";
        let p = c
            .presign_put("b", "k +/x", "text/plain", md5, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.method, "PUT");
        assert!(
            p.url
                .starts_with("http://127.0.0.1:7000/b/k%20%2B/x?X-Amz-Algorithm=AWS4-HMAC-SHA256&"),
            "{}",
            redact_url(&p.url)
        );
        for part in [
            "X-Amz-Expires=60&",
            "X-Amz-SignedHeaders=content-md5%3Bcontent-type%3Bhost&",
            "X-Amz-Credential=AKIDEXAMPLE%2F",
            "%2Fauto%2Fs3%2Faws4_request&",
            "X-Amz-Signature=",
        ] {
            assert!(p.url.contains(part), "{part} in {}", redact_url(&p.url));
        }
        assert_eq!(
            p.headers,
            vec![
                ("Content-Type".to_string(), "text/plain".to_string()),
                ("Content-MD5".to_string(), md5.to_string())
            ]
        );
        let debug = format!("{p:?}");
        assert!(debug.contains("X-Amz-Signature=REDACTED"), "{debug}");
        assert!(!debug.contains(&p.url), "debug output hides the signature");
    }

    #[test]
    fn presign_limits_and_odd_keys() {
        let c = client("http://127.0.0.1:7000");
        assert!(c.presign_get("b", "k", Duration::ZERO, None).is_err());
        assert!(
            c.presign_get("b", "k", Duration::from_secs(8 * 24 * 3600), None)
                .is_err()
        );
        assert!(
            c.presign_get("b", "a/../k", Duration::from_secs(1), None)
                .is_err()
        );
        let p = c
            .presign_get(
                "b",
                "x",
                Duration::from_secs(5),
                Some("Kapitel 1 — é\".wav"),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            p.url.contains("/b/x?response-content-disposition=attachment%3B%20filename%3D%22Kapitel%201%20_%20__.wav%22%3B%20filename%2A%3DUTF-8%27%27Kapitel%25201%2520%25E2%2580%2594%2520%25C3%25A9%2522.wav&X-Amz-"),
            "{}",
            redact_url(&p.url)
        );
    }

    #[test]
    fn helpers() {
        assert_eq!(unquote_etag("\"abc-2\""), "abc-2");
        assert_eq!(unquote_etag("W/\"abc\""), "abc");
        assert!(is_content_md5("1B2M2Y8AsgTpgAmY7PhCfg=="));
        assert!(!is_content_md5("AAAA"));
        assert!(!is_content_md5("not base64"));
        assert_eq!(
            redact_url("http://h/b/k?X-Amz-Date=1&X-Amz-Signature=abc&z=1"),
            "http://h/b/k?X-Amz-Date=1&X-Amz-Signature=REDACTED&z=1"
        );
        assert_eq!(
            content_disposition("a b.txt"),
            "attachment; filename=\"a b.txt\"; filename*=UTF-8''a%20b.txt"
        );
        assert_eq!(
            root_name("<?xml version=\"1.0\"?>\n<Error><Code>X</Code></Error>").as_deref(),
            Some("Error")
        );
        match error_from_xml(
            404,
            "<Error><Code>NoSuchUpload</Code><Message>gone</Message></Error>",
        ) {
            StoreError::S3 {
                status,
                code,
                message,
            } => assert_eq!(
                (status, code.as_str(), message.as_str()),
                (404, "NoSuchUpload", "gone")
            ),
            other => panic!("{other}"),
        }
        assert_eq!(error_from_xml(403, "").code(), Some("AccessDenied"));
    }
}

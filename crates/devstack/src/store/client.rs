//! The backend's S3 client: SigV4-signed requests over HTTP (reqwest) and SigV4
//! query-string presigning (`aws-sigv4`) of PUT/GET URLs for clients. It owns the wire
//! format of S3 (XML bodies, error codes); it never decides who may touch which key.

use std::time::Duration;

use bytes::Bytes;

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

/// A presigned request: the URL exactly as signed and the headers the caller must send
/// with exactly these values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresignedRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
}

#[derive(Clone)]
pub struct Client {
    config: ClientConfig,
}

impl Client {
    pub fn new(config: ClientConfig) -> Result<Self, StoreError> {
        Ok(Self { config })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Creates the bucket unless it exists.
    pub async fn ensure_bucket(&self, _bucket: &str) -> Result<(), StoreError> {
        Err(StoreError::Protocol("not yet implemented".into()))
    }

    pub async fn put_object(
        &self,
        _bucket: &str,
        _key: &str,
        _body: Bytes,
        _content_type: &str,
    ) -> Result<ObjectMeta, StoreError> {
        Err(StoreError::Protocol("not yet implemented".into()))
    }

    pub async fn get_object(&self, _bucket: &str, _key: &str) -> Result<Bytes, StoreError> {
        Err(StoreError::Protocol("not yet implemented".into()))
    }

    pub async fn head_object(&self, _bucket: &str, _key: &str) -> Result<ObjectMeta, StoreError> {
        Err(StoreError::Protocol("not yet implemented".into()))
    }

    pub async fn delete_object(&self, _bucket: &str, _key: &str) -> Result<(), StoreError> {
        Err(StoreError::Protocol("not yet implemented".into()))
    }

    /// Presigns a GET; `download_name` becomes `response-content-disposition`.
    pub fn presign_get(
        &self,
        _bucket: &str,
        _key: &str,
        _ttl: Duration,
        _download_name: Option<&str>,
    ) -> Result<PresignedRequest, StoreError> {
        Err(StoreError::Protocol("not yet implemented".into()))
    }
}

//! How a devstack is started: addresses, data directory, lifetimes and the optional
//! external S3 store. Plain data with defaults; it never reads the environment itself
//! (the CLI maps flags and variables onto it).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// An external S3-compatible store (R2, MinIO, `rclone serve s3`) used instead of the
/// embedded one.
#[derive(Clone, Debug)]
pub struct ExternalS3 {
    pub endpoint: url::Url,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
}

#[derive(Clone, Debug)]
pub struct DevstackConfig {
    /// Where SQLite, the keys and the embedded store's files live. A restart with the
    /// same directory keeps accounts, jobs and objects.
    pub data_dir: PathBuf,
    /// The gateway (auth, engine API, mailbox). Port 0 picks an ephemeral port.
    pub listen: SocketAddr,
    /// The embedded S3 server. Port 0 picks an ephemeral port. Unused with `external_s3`.
    pub s3_listen: SocketAddr,
    /// Lifetime of access tokens (GoTrue's `jwt_exp`, default 3600 s).
    pub access_token_ttl: Duration,
    /// How long a rotated-out refresh token may still be used (GoTrue's
    /// `refresh_token_reuse_interval`, default 10 s).
    pub refresh_reuse_interval: Duration,
    /// Lifetime of presigned URLs (default 900 s, at most 7 days).
    pub url_ttl: Duration,
    /// How long the narration simulator takes for one job.
    pub job_duration: Duration,
    /// Lifetime of an email one-time code.
    pub otp_ttl: Duration,
    /// Redirect targets allowed besides loopback ones (GoTrue's `uri_allow_list`).
    pub redirect_allow_list: Vec<String>,
    /// Use this store instead of the embedded one.
    pub external_s3: Option<ExternalS3>,
    /// The S3 base URL that presigned URLs are signed for (e.g. a fault-injecting proxy
    /// in front of the store). Defaults to the store's own address.
    pub public_s3_url: Option<url::Url>,
    pub manuscripts_bucket: String,
    pub audiobooks_bucket: String,
}

impl DevstackConfig {
    /// Defaults on ephemeral loopback ports with the given data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            s3_listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            access_token_ttl: Duration::from_secs(3600),
            refresh_reuse_interval: Duration::from_secs(10),
            url_ttl: Duration::from_secs(900),
            job_duration: Duration::from_secs(4),
            otp_ttl: Duration::from_secs(600),
            redirect_allow_list: Vec::new(),
            external_s3: None,
            public_s3_url: None,
            manuscripts_bucket: "manuscripts".into(),
            audiobooks_bucket: "audiobooks".into(),
        }
    }
}

/// The longest a presigned URL may live (SigV4's limit).
pub const MAX_URL_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

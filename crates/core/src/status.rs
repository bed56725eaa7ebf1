//! The backend status the shells show: which backend is in use (the embedded local one or
//! a configured one), its URLs, and whether its engine answers `/health`. It owns the
//! check and the shape the UI receives (exported to TypeScript with ts-rs, see the tests);
//! it never starts a backend.

use serde::{Deserialize, Serialize};

use crate::api::ApiClient;
use crate::config::Endpoints;
use crate::error::CoreError;

/// Which kind of backend the app talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum BackendMode {
    /// The embedded local backend (devstack), started because nothing is configured.
    Local,
    /// A backend configured through `ROHIMAYA_*` variables or `settings.toml`.
    Custom,
}

/// What the app shows about its backend connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct BackendStatus {
    pub mode: BackendMode,
    /// Empty when the backend could not be configured or started.
    pub supabase_url: String,
    /// Empty when the backend could not be configured or started.
    pub api_url: String,
    /// True when the engine answered `/health` successfully.
    pub healthy: bool,
    /// The engine's health status (e.g. `ok`) when healthy, else why it is not, in words
    /// meant for the user.
    pub detail: String,
    /// The stable error code when not healthy (see `ErrorCode`), for the UI to react to.
    pub error_code: Option<String>,
}

impl BackendStatus {
    /// A backend that could not even be set up (bad configuration, local backend failed
    /// to start): no URLs to show, only why.
    pub fn unavailable(mode: BackendMode, error: &dyn CoreError) -> Self {
        Self {
            mode,
            supabase_url: String::new(),
            api_url: String::new(),
            healthy: false,
            detail: error.to_string(),
            error_code: Some(error.code().as_str().to_string()),
        }
    }
}

/// Asks the engine at `endpoints` for `/health` and reports the result. Never fails:
/// an unreachable or broken backend is a status, not an error.
pub async fn check(mode: BackendMode, endpoints: &Endpoints) -> BackendStatus {
    let result = ApiClient::new(endpoints).health().await;
    let (healthy, detail, error_code) = match result {
        Ok(health) => (true, health.status, None),
        Err(e) => (false, e.to_string(), Some(e.code().as_str().to_string())),
    };
    BackendStatus {
        mode,
        supabase_url: endpoints.supabase_url.clone(),
        api_url: endpoints.api_url.clone(),
        healthy,
        detail,
        error_code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn endpoints(api_url: String) -> Endpoints {
        Endpoints {
            supabase_url: "http://127.0.0.1:1".into(),
            anon_key: "anon".into(),
            api_url,
            origin: None,
        }
    }

    #[tokio::test]
    async fn healthy_devstack_is_reported_healthy() {
        let dir = tempfile::tempdir().unwrap();
        let devstack = rohimaya_devstack::start(rohimaya_devstack::DevstackConfig::new(
            dir.path().join("devstack"),
        ))
        .await
        .unwrap();
        let status = check(
            BackendMode::Local,
            &endpoints(devstack.info.api_url.clone()),
        )
        .await;
        devstack.shutdown().await;
        assert!(status.healthy, "{status:?}");
        assert_eq!(status.mode, BackendMode::Local);
        assert_eq!(status.error_code, None);
    }

    #[tokio::test]
    async fn unreachable_backend_is_a_status_with_a_code() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let api_url = format!("http://127.0.0.1:{port}/api");
        let status = check(BackendMode::Custom, &endpoints(api_url.clone())).await;
        assert!(!status.healthy);
        assert_eq!(status.api_url, api_url);
        assert_eq!(
            status.error_code.as_deref(),
            Some(ErrorCode::NetworkUnreachable.as_str())
        );
        assert!(status.detail.contains("cannot reach"), "{}", status.detail);
    }

    #[test]
    fn wire_shape_is_snake_case() {
        let json = serde_json::to_value(BackendStatus {
            mode: BackendMode::Local,
            supabase_url: "s".into(),
            api_url: "a".into(),
            healthy: true,
            detail: "ok".into(),
            error_code: None,
        })
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"mode": "local", "supabase_url": "s", "api_url": "a",
                "healthy": true, "detail": "ok", "error_code": null})
        );
    }
}

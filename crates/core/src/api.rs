//! The engine API client. For now it knows `/health`; later issues add jobs, tracks,
//! presign and download routes. It owns HTTP to the engine and the mapping of failures
//! onto typed errors; it never reads tokens from storage itself (callers hand it one).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Endpoints;
use crate::error::{CoreError, ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot reach the Rohimaya server at {url}: {reason}. Check your connection or the server address")]
    Unreachable { url: String, reason: String },
    #[error("the Rohimaya server had a problem ({status}). Try again in a moment")]
    Server { status: u16 },
    #[error("the Rohimaya server answered something unexpected ({detail})")]
    Unexpected { detail: String },
}

impl CoreError for ApiError {
    fn code(&self) -> ErrorCode {
        match self {
            ApiError::Unreachable { .. } => ErrorCode::NetworkUnreachable,
            ApiError::Server { .. } => ErrorCode::ServerError,
            ApiError::Unexpected { .. } => ErrorCode::UnexpectedResponse,
        }
    }
}

/// What `/health` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
}

#[derive(Clone, Debug)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
}

impl ApiClient {
    pub fn new(endpoints: &Endpoints) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("rohimaya-desktop/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self {
            http,
            base: endpoints.api_url.trim_end_matches('/').to_string(),
        }
    }

    /// `GET {api_url}/health`.
    pub async fn health(&self) -> Result<Health, ApiError> {
        let url = format!("{}/health", self.base);
        let res = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| ApiError::Unreachable {
                url: url.clone(),
                reason: without_url(&e),
            })?;
        let status = res.status();
        if status.is_server_error() {
            return Err(ApiError::Server {
                status: status.as_u16(),
            });
        }
        if !status.is_success() {
            return Err(ApiError::Unexpected {
                detail: format!("HTTP {status} from /health"),
            });
        }
        res.json::<Health>().await.map_err(|e| ApiError::Unexpected {
            detail: without_url(&e),
        })
    }
}

/// reqwest's messages embed the URL; ours name it once, separately.
fn without_url(e: &reqwest::Error) -> String {
    let mut e = e.to_string();
    if let Some(i) = e.find(" for url (") {
        e.truncate(i);
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unreachable_server_is_a_network_error() {
        // Bind then drop a listener to get a port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let client = ApiClient::new(&Endpoints {
            supabase_url: format!("http://127.0.0.1:{port}"),
            anon_key: "k".into(),
            api_url: format!("http://127.0.0.1:{port}/api"),
            origin: None,
        });
        let err = client.health().await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::NetworkUnreachable);
    }
}

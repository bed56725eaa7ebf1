//! The wire client of Supabase Auth (GoTrue) at `{supabase_url}/auth/v1`: password and
//! refresh-token grants, sign-up, email one-time codes, the PKCE exchange, `/user` and
//! `/logout`. Every call sends `apikey` and `X-Supabase-Api-Version: 2024-01-01`. It owns
//! requests and the reading of answers; it keeps no state and never logs a token.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::errors::{AuthError, ServerError};
use crate::config::Endpoints;
use crate::secrets::Secret;

/// The API version GoTrue answers errors in as `{code, message}`.
pub const API_VERSION: &str = "2024-01-01";

/// The signed-in user, as far as Rohimaya shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    #[serde(default)]
    pub email: String,
}

/// A session as `/token`, `/verify` and `/signup` return it.
#[derive(Clone)]
pub struct IssuedSession {
    pub access_token: Secret,
    pub refresh_token: Secret,
    /// Lifetime of the access token as the server states it.
    pub expires_in: Duration,
    /// When the access token expires by this computer's clock (Unix milliseconds),
    /// computed from `expires_in` on receipt so a skewed clock does not matter.
    pub expires_at_ms: i64,
    pub user: User,
}

impl std::fmt::Debug for IssuedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedSession")
            .field("access_token", &self.access_token)
            .field("refresh_token", &self.refresh_token)
            .field("expires_in", &self.expires_in)
            .field("user", &self.user)
            .finish()
    }
}

#[derive(Deserialize)]
struct SessionBody {
    access_token: String,
    refresh_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
    user: User,
}

/// What `/signup` answered.
#[derive(Debug, Clone)]
pub enum SignUpOutcome {
    /// The server confirms accounts at once and signed the user in.
    SignedIn(IssuedSession),
    /// The server sent a confirmation email; sign in after confirming.
    ConfirmationSent { user: User },
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[derive(Clone, Debug)]
pub struct GoTrue {
    http: reqwest::Client,
    base: String,
    anon_key: String,
}

impl GoTrue {
    pub fn new(endpoints: &Endpoints) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("rohimaya-desktop/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self {
            http,
            base: format!("{}/auth/v1", endpoints.supabase_url.trim_end_matches('/')),
            anon_key: endpoints.anon_key.clone(),
        }
    }

    /// The base URL, e.g. `https://x.supabase.co/auth/v1`.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header("apikey", &self.anon_key)
            .header("X-Supabase-Api-Version", API_VERSION)
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        path: &str,
    ) -> Result<reqwest::Response, AuthError> {
        req.send().await.map_err(|e| AuthError::Unreachable {
            url: format!("{}{path}", self.base),
            reason: crate::api::without_url(&e),
        })
    }

    /// Sends and reads a JSON answer, or the error in either shape.
    async fn call(
        &self,
        req: reqwest::RequestBuilder,
        path: &str,
    ) -> Result<Vec<u8>, ServerOrAuth> {
        let res = self.send(req, path).await.map_err(ServerOrAuth::Auth)?;
        let status = res.status().as_u16();
        let header = |name: &str| {
            res.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (code, retry_after) = (header("x-sb-error-code"), header("retry-after"));
        let body = res.bytes().await.map_err(|e| {
            ServerOrAuth::Auth(AuthError::Unreachable {
                url: format!("{}{path}", self.base),
                reason: crate::api::without_url(&e),
            })
        })?;
        if (200..300).contains(&status) {
            return Ok(body.to_vec());
        }
        Err(ServerOrAuth::Server(ServerError::parse(
            status,
            code.as_deref(),
            retry_after.as_deref(),
            &body,
        )))
    }

    async fn session_call(
        &self,
        req: reqwest::RequestBuilder,
        path: &str,
    ) -> Result<IssuedSession, ServerOrAuth> {
        let body = self.call(req, path).await?;
        parse_session(&body).map_err(ServerOrAuth::Auth)
    }

    /// `POST /token?grant_type=password`.
    pub async fn sign_in_with_password(
        &self,
        email: &str,
        password: &str,
    ) -> Result<IssuedSession, AuthError> {
        let req = self
            .request(reqwest::Method::POST, "/token?grant_type=password")
            .json(&json!({ "email": email, "password": password }));
        self.session_call(req, "/token")
            .await
            .map_err(ServerOrAuth::into_auth_error)
    }

    /// `POST /signup`.
    pub async fn sign_up(&self, email: &str, password: &str) -> Result<SignUpOutcome, AuthError> {
        let req = self
            .request(reqwest::Method::POST, "/signup")
            .json(&json!({ "email": email, "password": password }));
        let body = self
            .call(req, "/signup")
            .await
            .map_err(ServerOrAuth::into_auth_error)?;
        if let Ok(session) = parse_session(&body) {
            return Ok(SignUpOutcome::SignedIn(session));
        }
        // Without auto-confirm GoTrue answers with the user alone.
        let user: User = serde_json::from_slice(&body).map_err(|_| AuthError::Unexpected {
            detail: "sign-up answer is neither a session nor a user".into(),
        })?;
        Ok(SignUpOutcome::ConfirmationSent { user })
    }

    /// `POST /otp`: emails a one-time code.
    pub async fn send_email_otp(&self, email: &str, create_user: bool) -> Result<(), AuthError> {
        let req = self
            .request(reqwest::Method::POST, "/otp")
            .json(&json!({ "email": email, "create_user": create_user }));
        self.call(req, "/otp")
            .await
            .map(|_| ())
            .map_err(ServerOrAuth::into_auth_error)
    }

    /// `POST /verify` `{type: "email", email, token}`.
    pub async fn verify_email_otp(
        &self,
        email: &str,
        code: &str,
    ) -> Result<IssuedSession, AuthError> {
        let req = self
            .request(reqwest::Method::POST, "/verify")
            .json(&json!({ "type": "email", "email": email, "token": code }));
        self.session_call(req, "/verify")
            .await
            .map_err(ServerOrAuth::into_auth_error)
    }

    /// `POST /token?grant_type=pkce`.
    pub async fn exchange_code(
        &self,
        auth_code: &str,
        verifier: &Secret,
    ) -> Result<IssuedSession, AuthError> {
        let req = self
            .request(reqwest::Method::POST, "/token?grant_type=pkce")
            .json(&json!({ "auth_code": auth_code, "code_verifier": verifier.expose() }));
        self.session_call(req, "/token")
            .await
            .map_err(ServerOrAuth::into_auth_error)
    }

    /// `POST /token?grant_type=refresh_token`. A definitive refusal is
    /// [`AuthError::SignedOut`]; anything else keeps the session.
    pub async fn refresh(&self, refresh_token: &Secret) -> Result<IssuedSession, AuthError> {
        let req = self
            .request(reqwest::Method::POST, "/token?grant_type=refresh_token")
            .json(&json!({ "refresh_token": refresh_token.expose() }));
        self.session_call(req, "/token").await.map_err(|e| match e {
            ServerOrAuth::Server(s) => s.into_refresh_error(),
            ServerOrAuth::Auth(a) => a,
        })
    }

    /// `GET /user`. A definitive refusal (e.g. `session_not_found`) is `SignedOut`.
    pub async fn user(&self, access_token: &Secret) -> Result<User, AuthError> {
        let req = self
            .request(reqwest::Method::GET, "/user")
            .bearer_auth(access_token.expose());
        let body = self.call(req, "/user").await.map_err(|e| match e {
            ServerOrAuth::Server(s) => s.into_refresh_error(),
            ServerOrAuth::Auth(a) => a,
        })?;
        serde_json::from_slice(&body).map_err(|_| AuthError::Unexpected {
            detail: "the user answer has no id".into(),
        })
    }

    /// `POST /logout?scope=local` (the scope is read from the query only).
    pub async fn logout_local(&self, access_token: &Secret) -> Result<(), AuthError> {
        let req = self
            .request(reqwest::Method::POST, "/logout?scope=local")
            .bearer_auth(access_token.expose());
        self.call(req, "/logout")
            .await
            .map(|_| ())
            .map_err(ServerOrAuth::into_auth_error)
    }
}

/// A failure before an answer (network) or an error answer.
enum ServerOrAuth {
    Server(ServerError),
    Auth(AuthError),
}

impl ServerOrAuth {
    fn into_auth_error(self) -> AuthError {
        match self {
            Self::Server(s) => s.into_auth_error(),
            Self::Auth(a) => a,
        }
    }
}

fn parse_session(body: &[u8]) -> Result<IssuedSession, AuthError> {
    // The parse error could quote a token: say only what is missing.
    let s: SessionBody = serde_json::from_slice(body).map_err(|_| AuthError::Unexpected {
        detail: "the answer is not a session".into(),
    })?;
    if s.access_token.is_empty() || s.refresh_token.is_empty() {
        return Err(AuthError::Unexpected {
            detail: "the session has no tokens".into(),
        });
    }
    let expires_in = Duration::from_secs(s.expires_in.unwrap_or(3600));
    Ok(IssuedSession {
        access_token: Secret::new(s.access_token),
        refresh_token: Secret::new(s.refresh_token),
        expires_in,
        expires_at_ms: now_ms().saturating_add(expires_in.as_millis() as i64),
        user: s.user,
    })
}

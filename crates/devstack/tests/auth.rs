//! The devstack's GoTrue-compatible auth, driven over real HTTP: every route, every error
//! code and status, both error shapes, refresh-token rotation and reuse detection, OTP
//! and flow-state expiry (by advancing the devstack's clock, never by sleeping), PKCE,
//! logout scopes, the API-key gate and persistence across a restart.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use rohimaya_devstack::{Devstack, DevstackConfig};
use serde_json::{Value, json};

const API_VERSION: &str = "2024-01-01";
const PASSWORD: &str = "correct horse battery";

struct Stack {
    devstack: Devstack,
    http: reqwest::Client,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    /// The error code of an error in either of GoTrue's shapes (`code` in 2024-01-01,
    /// `error_code` in the initial one, e.g. for a browser's `GET /authorize`), checked
    /// against its header.
    fn code(&self) -> &str {
        let code = self.body["code"]
            .as_str()
            .or(self.body["error_code"].as_str())
            .unwrap_or("<none>");
        if let Some(header) = self.headers.get("x-sb-error-code") {
            assert_eq!(header.to_str().unwrap(), code, "header and body disagree");
        }
        code
    }

    fn expect(self, status: StatusCode, code: &str) -> Self {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(self.code(), code, "body: {}", self.body);
        self
    }

    fn ok(self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "body: {}", self.body);
        self.body
    }
}

async fn start(dir: &std::path::Path) -> Stack {
    start_with(DevstackConfig::new(dir)).await
}

async fn start_with(config: DevstackConfig) -> Stack {
    let devstack = rohimaya_devstack::start(config)
        .await
        .expect("devstack starts");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client");
    Stack { devstack, http }
}

impl Stack {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.devstack.info.supabase_url)
    }

    fn anon(&self) -> &str {
        &self.devstack.info.anon_key
    }

    fn secret(&self) -> Vec<u8> {
        self.devstack.backend().keys.jwt_secret.as_bytes().to_vec()
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let res = request.send().await.expect("request is answered");
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    /// A POST as auth-js sends it: API key, API version, JSON body.
    async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(
            self.http
                .post(self.url(path))
                .header("apikey", self.anon())
                .header("x-supabase-api-version", API_VERSION)
                .json(&body),
        )
        .await
    }

    async fn post_bearer(&self, path: &str, access_token: &str) -> Answer {
        self.send(
            self.http
                .post(self.url(path))
                .header("apikey", self.anon())
                .header("x-supabase-api-version", API_VERSION)
                .bearer_auth(access_token),
        )
        .await
    }

    async fn get_user(&self, access_token: &str) -> Answer {
        self.send(
            self.http
                .get(self.url("/auth/v1/user"))
                .header("apikey", self.anon())
                .header("x-supabase-api-version", API_VERSION)
                .bearer_auth(access_token),
        )
        .await
    }

    async fn signup(&self, email: &str) -> Value {
        self.post(
            "/auth/v1/signup",
            json!({"email": email, "password": PASSWORD, "data": {"pen_name": "A. Author"}}),
        )
        .await
        .ok()
    }

    async fn sign_in(&self, email: &str) -> Value {
        self.post(
            "/auth/v1/token?grant_type=password",
            json!({"email": email, "password": PASSWORD}),
        )
        .await
        .ok()
    }

    async fn refresh(&self, refresh_token: &str) -> Answer {
        self.post(
            "/auth/v1/token?grant_type=refresh_token",
            json!({ "refresh_token": refresh_token }),
        )
        .await
    }

    async fn mailbox(&self, email: &str) -> Vec<Value> {
        let res = self
            .http
            .get(self.url(&format!("/devstack/mailbox/{email}")))
            .send()
            .await
            .expect("mailbox answers");
        assert_eq!(res.status(), StatusCode::OK);
        res.json::<Vec<Value>>().await.expect("mailbox is a list")
    }

    fn advance(&self, secs: u64) {
        self.devstack.clock().advance(Duration::from_secs(secs));
    }
}

fn token_of(session: &Value, field: &str) -> String {
    session[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {session}"))
        .to_string()
}

fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[tokio::test]
async fn every_auth_route_needs_an_api_key_but_authorize() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let body = json!({"email": "a@example.com", "password": PASSWORD});

    let missing = s
        .send(s.http.post(s.url("/auth/v1/signup")).json(&body))
        .await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.body["message"], "No API key found in request");

    let wrong = s
        .send(
            s.http
                .post(s.url("/auth/v1/token?grant_type=password"))
                .header("apikey", "not-a-key")
                .json(&body),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.body["message"], "Invalid API key");

    for path in ["/auth/v1/logout", "/auth/v1/otp", "/auth/v1/verify"] {
        let res = s.send(s.http.post(s.url(path))).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{path}");
    }
    let res = s.send(s.http.get(s.url("/auth/v1/user"))).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);

    // The key may come as a query parameter; then GoTrue itself answers.
    let by_query = s
        .send(
            s.http
                .get(s.url(&format!("/auth/v1/user?apikey={}", s.anon()))),
        )
        .await;
    assert_eq!(by_query.status, StatusCode::UNAUTHORIZED);
    assert_eq!(by_query.body["error_code"], "no_authorization");

    // The service-role key is a valid key too.
    let service_key = s.devstack.backend().keys.service_role_key.clone();
    let with_service = s
        .send(
            s.http
                .post(s.url("/auth/v1/signup"))
                .header("apikey", service_key)
                .json(&body),
        )
        .await;
    assert_eq!(with_service.status, StatusCode::OK, "{}", with_service.body);

    // A browser opens /authorize without a key.
    let authorize = s
        .send(s.http.get(
            s.url("/auth/v1/authorize?provider=google&redirect_to=http%3A%2F%2F127.0.0.1%3A9%2Fcb"),
        ))
        .await;
    assert_eq!(authorize.status, StatusCode::FOUND);

    // The mailbox needs no key either.
    assert!(s.mailbox("nobody@example.com").await.is_empty());
}

#[tokio::test]
async fn signup_answers_a_session_in_gotrues_shape() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let session = s.signup("Ada@Example.com").await;

    assert_eq!(session["token_type"], "bearer");
    assert_eq!(session["expires_in"], 3600);
    let refresh = token_of(&session, "refresh_token");
    assert_eq!(refresh.len(), 12);
    let user = &session["user"];
    assert_eq!(user["email"], "ada@example.com");
    assert_eq!(user["aud"], "authenticated");
    assert_eq!(user["role"], "authenticated");
    assert_eq!(user["phone"], "");
    assert_eq!(user["is_anonymous"], false);
    assert!(user["email_confirmed_at"].is_string());
    assert_eq!(user["confirmed_at"], user["email_confirmed_at"]);
    assert!(user["last_sign_in_at"].is_string());
    assert!(user["created_at"].is_string() && user["updated_at"].is_string());
    assert_eq!(
        user["app_metadata"],
        json!({"provider": "email", "providers": ["email"]})
    );
    assert_eq!(user["user_metadata"]["pen_name"], "A. Author");
    assert_eq!(user["user_metadata"]["email_verified"], true);
    let identity = &user["identities"][0];
    assert_eq!(identity["provider"], "email");
    assert_eq!(identity["user_id"], user["id"]);
    assert_eq!(identity["id"], user["id"]);
    assert_eq!(identity["identity_data"]["email"], "ada@example.com");
    assert_eq!(identity["identity_data"]["sub"], user["id"]);

    let access = token_of(&session, "access_token");
    let claims: Value = rohimaya_devstack::jwt::decode(&access, &s.secret()).expect("HS256");
    assert_eq!(claims["sub"], user["id"]);
    assert_eq!(claims["aud"], "authenticated");
    assert_eq!(claims["role"], "authenticated");
    assert_eq!(claims["email"], "ada@example.com");
    assert_eq!(claims["aal"], "aal1");
    assert_eq!(claims["amr"][0]["method"], "password");
    assert_eq!(claims["is_anonymous"], false);
    assert_eq!(claims["app_metadata"]["provider"], "email");
    assert_eq!(
        claims["iss"],
        format!("{}/auth/v1", s.devstack.info.supabase_url)
    );
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );
    assert_eq!(session["expires_at"], claims["exp"]);
    assert!(uuid::Uuid::parse_str(claims["session_id"].as_str().unwrap()).is_ok());
    // The engine API accepts what auth issues.
    assert!(
        rohimaya_devstack::jwt::verify_access(
            &access,
            &s.secret(),
            claims["iat"].as_i64().unwrap()
        )
        .is_ok()
    );

    let me = s.get_user(&access).await.ok();
    assert_eq!(me["id"], user["id"]);
    assert_eq!(me["identities"][0]["provider"], "email");
}

#[tokio::test]
async fn signup_refusals_carry_gotrues_codes() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    s.signup("taken@example.com").await;

    let again = s
        .post(
            "/auth/v1/signup",
            json!({"email": "TAKEN@example.com", "password": PASSWORD}),
        )
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY, "user_already_exists");
    assert_eq!(again.body["message"], "User already registered");

    let weak = s
        .post(
            "/auth/v1/signup",
            json!({"email": "weak@example.com", "password": "12345"}),
        )
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY, "weak_password");
    assert_eq!(weak.body["weak_password"]["reasons"], json!(["length"]));
    assert_eq!(
        weak.body["message"],
        "Password should be at least 6 characters."
    );

    s.post(
        "/auth/v1/signup",
        json!({"email": "not an email", "password": PASSWORD}),
    )
    .await
    .expect(StatusCode::BAD_REQUEST, "validation_failed");
    s.post(
        "/auth/v1/signup",
        json!({"email": "x@example.com", "password": ""}),
    )
    .await
    .expect(StatusCode::BAD_REQUEST, "validation_failed");
    s.post(
        "/auth/v1/signup",
        json!({"email": "x@example.com", "password": "y".repeat(73)}),
    )
    .await
    .expect(StatusCode::BAD_REQUEST, "validation_failed");
    s.post("/auth/v1/signup", json!({"password": PASSWORD}))
        .await
        .expect(
            StatusCode::UNPROCESSABLE_ENTITY,
            "anonymous_provider_disabled",
        );
    s.post(
        "/auth/v1/signup",
        json!({"phone": "+15555550100", "password": PASSWORD}),
    )
    .await
    .expect(StatusCode::BAD_REQUEST, "phone_provider_disabled");

    let bad_json = s
        .send(
            s.http
                .post(s.url("/auth/v1/signup"))
                .header("apikey", s.anon())
                .header("x-supabase-api-version", API_VERSION)
                .body("{not json"),
        )
        .await;
    bad_json.expect(StatusCode::BAD_REQUEST, "bad_json");
}

#[tokio::test]
async fn error_shape_follows_the_requested_api_version() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    s.signup("shape@example.com").await;
    let wrong = json!({"email": "shape@example.com", "password": "wrong password"});

    let current = s
        .post("/auth/v1/token?grant_type=password", wrong.clone())
        .await;
    assert_eq!(current.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        current.body,
        json!({"code": "invalid_credentials", "message": "Invalid login credentials"})
    );
    assert_eq!(current.headers["x-sb-error-code"], "invalid_credentials");
    assert_eq!(current.headers["x-supabase-api-version"], API_VERSION);

    // Without the version header GoTrue answers in its initial shape.
    let initial = s
        .send(
            s.http
                .post(s.url("/auth/v1/token?grant_type=password"))
                .header("apikey", s.anon())
                .json(&wrong),
        )
        .await;
    assert_eq!(initial.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        initial.body,
        json!({"code": 400, "error_code": "invalid_credentials", "msg": "Invalid login credentials"})
    );
    assert_eq!(initial.headers["x-sb-error-code"], "invalid_credentials");
    assert!(initial.headers.get("x-supabase-api-version").is_none());

    let weak_initial = s
        .send(
            s.http
                .post(s.url("/auth/v1/signup"))
                .header("apikey", s.anon())
                .header("x-supabase-api-version", "2023-05-01")
                .json(&json!({"email": "w@example.com", "password": "123"})),
        )
        .await;
    assert_eq!(weak_initial.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(weak_initial.body["code"], 422);
    assert_eq!(weak_initial.body["error_code"], "weak_password");
    assert_eq!(
        weak_initial.body["weak_password"]["reasons"],
        json!(["length"])
    );
}

#[tokio::test]
async fn password_grant_and_its_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let signed_up = s.signup("grant@example.com").await;
    let session = s.sign_in("GRANT@example.com").await;
    assert_eq!(session["user"]["id"], signed_up["user"]["id"]);
    assert_ne!(session["refresh_token"], signed_up["refresh_token"]);

    s.post(
        "/auth/v1/token?grant_type=password",
        json!({"email": "grant@example.com", "password": "not it"}),
    )
    .await
    .expect(StatusCode::BAD_REQUEST, "invalid_credentials");
    s.post(
        "/auth/v1/token?grant_type=password",
        json!({"email": "nobody@example.com", "password": PASSWORD}),
    )
    .await
    .expect(StatusCode::BAD_REQUEST, "invalid_credentials");
    s.post(
        "/auth/v1/token?grant_type=password",
        json!({"password": PASSWORD}),
    )
    .await
    .expect(StatusCode::BAD_REQUEST, "validation_failed");

    let unsupported = s
        .post("/auth/v1/token?grant_type=client_credentials", json!({}))
        .await
        .expect(StatusCode::BAD_REQUEST, "invalid_credentials");
    assert_eq!(unsupported.body["message"], "unsupported_grant_type");
    // grant_type is read from the query, not the JSON body.
    s.post(
        "/auth/v1/token",
        json!({"grant_type": "password", "email": "grant@example.com", "password": PASSWORD}),
    )
    .await
    .expect(StatusCode::BAD_REQUEST, "invalid_credentials");
}

#[tokio::test]
async fn refresh_tokens_rotate_and_parents_are_forgiven() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let first = s.signup("rotate@example.com").await;
    let a = token_of(&first, "refresh_token");

    let second = s.refresh(&a).await.ok();
    let b = token_of(&second, "refresh_token");
    assert_ne!(a, b);
    assert_eq!(second["user"]["email"], "rotate@example.com");
    let claims_first: Value =
        rohimaya_devstack::jwt::decode(&token_of(&first, "access_token"), &s.secret()).unwrap();
    let claims_second: Value =
        rohimaya_devstack::jwt::decode(&token_of(&second, "access_token"), &s.secret()).unwrap();
    assert_eq!(claims_first["session_id"], claims_second["session_id"]);

    // Long after, the parent of the active token still answers with the active token:
    // the client never saved the last response.
    s.advance(3600 * 5);
    let lost = s.refresh(&a).await.ok();
    assert_eq!(token_of(&lost, "refresh_token"), b);
    s.get_user(&token_of(&lost, "access_token")).await.ok();

    // The active token rotates on.
    let third = s.refresh(&b).await.ok();
    assert_ne!(token_of(&third, "refresh_token"), b);
}

#[tokio::test]
async fn reuse_within_the_interval_answers_the_active_token() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let a = token_of(&s.signup("concurrent@example.com").await, "refresh_token");
    let b = token_of(&s.refresh(&a).await.ok(), "refresh_token");
    let c = token_of(&s.refresh(&b).await.ok(), "refresh_token");

    // `a` is a grandparent now, but was revoked less than 10 s ago.
    s.advance(5);
    let reused = s.refresh(&a).await.ok();
    assert_eq!(token_of(&reused, "refresh_token"), c);
    // And the session is intact: `c` still rotates.
    let d = token_of(&s.refresh(&c).await.ok(), "refresh_token");
    assert_ne!(d, c);
}

#[tokio::test]
async fn reuse_after_the_interval_revokes_the_whole_session() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let first = s.signup("stolen@example.com").await;
    let a = token_of(&first, "refresh_token");
    let b = token_of(&s.refresh(&a).await.ok(), "refresh_token");
    let third = s.refresh(&b).await.ok();
    let c = token_of(&third, "refresh_token");
    let other_session = s.sign_in("stolen@example.com").await;

    s.advance(11);
    let refused = s
        .refresh(&a)
        .await
        .expect(StatusCode::BAD_REQUEST, "refresh_token_already_used");
    assert_eq!(
        refused.body["message"],
        "Invalid Refresh Token: Already Used"
    );

    // Every token of that session is gone, and so is every access token's session.
    s.refresh(&c)
        .await
        .expect(StatusCode::BAD_REQUEST, "refresh_token_not_found");
    s.refresh(&b)
        .await
        .expect(StatusCode::BAD_REQUEST, "refresh_token_not_found");
    s.get_user(&token_of(&third, "access_token"))
        .await
        .expect(StatusCode::FORBIDDEN, "session_not_found");
    // Other sessions of the same user are untouched.
    s.refresh(&token_of(&other_session, "refresh_token"))
        .await
        .ok();
}

#[tokio::test]
async fn unknown_and_malformed_refresh_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let unknown = s
        .refresh("abcdefghijkl")
        .await
        .expect(StatusCode::BAD_REQUEST, "refresh_token_not_found");
    assert_eq!(
        unknown.body["message"],
        "Invalid Refresh Token: Refresh Token Not Found"
    );
    s.refresh("short")
        .await
        .expect(StatusCode::BAD_REQUEST, "validation_failed");
    s.refresh("")
        .await
        .expect(StatusCode::BAD_REQUEST, "validation_failed");
}

#[tokio::test]
async fn access_tokens_are_checked_like_gotrue() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let session = s.signup("jwt@example.com").await;
    let access = token_of(&session, "access_token");

    let none = s
        .send(
            s.http
                .get(s.url("/auth/v1/user"))
                .header("apikey", s.anon())
                .header("x-supabase-api-version", API_VERSION),
        )
        .await
        .expect(StatusCode::UNAUTHORIZED, "no_authorization");
    assert_eq!(
        none.body["message"],
        "This endpoint requires a valid Bearer token"
    );
    s.get_user("garbage")
        .await
        .expect(StatusCode::FORBIDDEN, "bad_jwt");

    let mut parts: Vec<String> = access.split('.').map(str::to_string).collect();
    parts[2] = "AAAA".into();
    s.get_user(&parts.join("."))
        .await
        .expect(StatusCode::FORBIDDEN, "bad_jwt");

    // The anon key is a valid JWT without a user.
    let anon = s.anon().to_string();
    s.get_user(&anon)
        .await
        .expect(StatusCode::FORBIDDEN, "bad_jwt");

    s.get_user(&access).await.ok();
    s.advance(3601);
    let expired = s
        .get_user(&access)
        .await
        .expect(StatusCode::FORBIDDEN, "bad_jwt");
    assert!(
        expired.body["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{}",
        expired.body
    );
}

#[tokio::test]
async fn email_otp_is_single_use_and_expires() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let email = "otp@example.com";

    let refused = s
        .post(
            "/auth/v1/otp",
            json!({"email": email, "create_user": false}),
        )
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY, "otp_disabled");
    assert_eq!(refused.body["message"], "Signups not allowed for otp");

    let sent = s
        .post(
            "/auth/v1/otp",
            json!({"email": email, "create_user": true, "data": {"pen_name": "O"}}),
        )
        .await
        .ok();
    assert_eq!(sent, json!({}));
    let mail = s.mailbox(email).await;
    assert_eq!(mail.len(), 1);
    let code = mail[0]["code"].as_str().unwrap().to_string();
    assert_eq!(code.len(), 6);
    assert!(code.bytes().all(|b| b.is_ascii_digit()));
    assert!(mail[0]["body"].as_str().unwrap().contains(&code));

    // The code is stored hashed.
    let stored: Vec<String> = s
        .devstack
        .backend()
        .db
        .call(|c| {
            let mut stmt = c.prepare("SELECT token_hash FROM auth_one_time_codes")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect()
        })
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert!(!stored[0].contains(&code));

    let wrong = if code == "000000" { "111111" } else { "000000" };
    s.post(
        "/auth/v1/verify",
        json!({"type": "email", "email": email, "token": wrong}),
    )
    .await
    .expect(StatusCode::FORBIDDEN, "otp_expired");

    let session = s
        .post(
            "/auth/v1/verify",
            json!({"type": "email", "email": email, "token": code}),
        )
        .await
        .ok();
    assert_eq!(session["user"]["email"], email);
    assert_eq!(session["user"]["user_metadata"]["pen_name"], "O");
    let claims: Value =
        rohimaya_devstack::jwt::decode(&token_of(&session, "access_token"), &s.secret()).unwrap();
    assert_eq!(claims["amr"][0]["method"], "otp");
    s.get_user(&token_of(&session, "access_token")).await.ok();

    // Single use.
    s.post(
        "/auth/v1/verify",
        json!({"type": "email", "email": email, "token": code}),
    )
    .await
    .expect(StatusCode::FORBIDDEN, "otp_expired");

    // A newer code replaces the older one; the mailbox lists newest first.
    s.post("/auth/v1/otp", json!({"email": email})).await.ok();
    s.post("/auth/v1/otp", json!({"email": email})).await.ok();
    let mail = s.mailbox(email).await;
    assert_eq!(mail.len(), 3);
    let newest = mail[0]["code"].as_str().unwrap().to_string();
    let older = mail[1]["code"].as_str().unwrap().to_string();
    assert!(mail[0]["id"].as_i64() > mail[1]["id"].as_i64());
    if older != newest {
        s.post(
            "/auth/v1/verify",
            json!({"type": "email", "email": email, "token": older}),
        )
        .await
        .expect(StatusCode::FORBIDDEN, "otp_expired");
    }

    // Past the code's lifetime (default 600 s) it has expired.
    s.advance(601);
    s.post(
        "/auth/v1/verify",
        json!({"type": "magiclink", "email": email, "token": newest}),
    )
    .await
    .expect(StatusCode::FORBIDDEN, "otp_expired");

    // A fresh code with type magiclink works within its lifetime.
    s.post("/auth/v1/otp", json!({"email": email})).await.ok();
    let fresh = s.mailbox(email).await[0]["code"]
        .as_str()
        .unwrap()
        .to_string();
    s.advance(599);
    s.post(
        "/auth/v1/verify",
        json!({"type": "magiclink", "email": email, "token": fresh}),
    )
    .await
    .ok();

    s.post(
        "/auth/v1/verify",
        json!({"email": email, "token": "123456"}),
    )
    .await
    .expect(StatusCode::BAD_REQUEST, "validation_failed");
    s.post("/auth/v1/otp", json!({}))
        .await
        .expect(StatusCode::BAD_REQUEST, "validation_failed");
}

#[tokio::test]
async fn otp_user_can_later_sign_up_only_as_existing() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    s.post("/auth/v1/otp", json!({"email": "pw@example.com"}))
        .await
        .ok();
    // An OTP-only user has no password: a password sign-in is refused, signup is taken.
    s.post(
        "/auth/v1/token?grant_type=password",
        json!({"email": "pw@example.com", "password": PASSWORD}),
    )
    .await
    .expect(StatusCode::BAD_REQUEST, "invalid_credentials");
    s.post(
        "/auth/v1/signup",
        json!({"email": "pw@example.com", "password": PASSWORD}),
    )
    .await
    .expect(StatusCode::UNPROCESSABLE_ENTITY, "user_already_exists");
}

/// A PKCE pair (RFC 7636 appendix B).
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

impl Stack {
    /// Opens /authorize and returns the consent page's URL.
    async fn authorize(&self, redirect_to: &str) -> String {
        let res = self
            .send(self.http.get(self.url("/auth/v1/authorize")).query(&[
                ("provider", "google"),
                ("redirect_to", redirect_to),
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "s256"),
            ]))
            .await;
        assert_eq!(res.status, StatusCode::FOUND, "{}", res.body);
        res.headers["location"].to_str().unwrap().to_string()
    }

    /// Approves (or denies) the consent page and returns where it redirects.
    async fn decide(&self, consent_url: &str, email: &str, decision: &str) -> String {
        let state = query_param(consent_url, "state").expect("state in the consent URL");
        let res = self
            .send(self.http.post(self.url("/devstack/oauth/consent")).form(&[
                ("state", state.as_str()),
                ("email", email),
                ("decision", decision),
            ]))
            .await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
        res.headers["location"].to_str().unwrap().to_string()
    }

    async fn exchange(&self, code: &str, verifier: &str) -> Answer {
        self.post(
            "/auth/v1/token?grant_type=pkce",
            json!({"auth_code": code, "code_verifier": verifier}),
        )
        .await
    }
}

#[tokio::test]
async fn pkce_sign_in_through_the_consent_page() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let redirect = "http://127.0.0.1:53682/callback?state=client-state";
    let consent = s.authorize(redirect).await;

    let page = s.http.get(&consent).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Sign in to Rohimaya (local) with Google"),
        "{html}"
    );
    assert!(html.contains("<form method=\"post\""));

    let back = s.decide(&consent, "Author@Example.com", "approve").await;
    assert!(
        back.starts_with("http://127.0.0.1:53682/callback?"),
        "{back}"
    );
    assert_eq!(query_param(&back, "state").as_deref(), Some("client-state"));
    let code = query_param(&back, "code").expect("code in the redirect");

    let wrong = s
        .exchange(&code, "wrong-verifier-wrong-verifier-wrong-verifier")
        .await
        .expect(StatusCode::BAD_REQUEST, "bad_code_verifier");
    assert_eq!(
        wrong.body["message"],
        "code challenge does not match previously saved code verifier"
    );

    let session = s.exchange(&code, VERIFIER).await.ok();
    let user = &session["user"];
    assert_eq!(user["email"], "author@example.com");
    assert_eq!(user["app_metadata"]["provider"], "google");
    assert_eq!(user["app_metadata"]["providers"], json!(["google"]));
    assert_eq!(user["identities"][0]["provider"], "google");
    let claims: Value =
        rohimaya_devstack::jwt::decode(&token_of(&session, "access_token"), &s.secret()).unwrap();
    assert_eq!(claims["amr"][0]["method"], "oauth");
    s.get_user(&token_of(&session, "access_token")).await.ok();
    s.refresh(&token_of(&session, "refresh_token")).await.ok();

    // Single use.
    s.exchange(&code, VERIFIER)
        .await
        .expect(StatusCode::NOT_FOUND, "flow_state_not_found");
    let unknown = s
        .exchange(&uuid::Uuid::new_v4().to_string(), VERIFIER)
        .await
        .expect(StatusCode::NOT_FOUND, "flow_state_not_found");
    assert_eq!(
        unknown.body["message"],
        "invalid flow state, no valid flow state found"
    );
    s.exchange("", VERIFIER)
        .await
        .expect(StatusCode::BAD_REQUEST, "validation_failed");

    // Signing in again with the same email is the same user.
    let consent = s.authorize("http://[::1]:8080/cb").await;
    let back = s.decide(&consent, "author@example.com", "approve").await;
    let again = s
        .exchange(&query_param(&back, "code").unwrap(), VERIFIER)
        .await
        .ok();
    assert_eq!(again["user"]["id"], session["user"]["id"]);
}

#[tokio::test]
async fn oauth_links_an_existing_email_user() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let signed_up = s.signup("linked@example.com").await;
    let consent = s.authorize("http://localhost:3000/cb").await;
    let back = s.decide(&consent, "linked@example.com", "approve").await;
    let session = s
        .exchange(&query_param(&back, "code").unwrap(), VERIFIER)
        .await
        .ok();
    assert_eq!(session["user"]["id"], signed_up["user"]["id"]);
    assert_eq!(
        session["user"]["app_metadata"],
        json!({"provider": "email", "providers": ["email", "google"]})
    );
    assert_eq!(session["user"]["identities"].as_array().unwrap().len(), 2);
    // The password still works.
    s.sign_in("linked@example.com").await;
}

#[tokio::test]
async fn pkce_refusals_expiry_denial_and_redirect_checks() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;

    for refused in [
        "https://evil.example/callback",
        "http://127.0.0.1.evil.example/cb",
        "rohimaya://callback",
        "",
    ] {
        s.send(s.http.get(s.url("/auth/v1/authorize")).query(&[
            ("provider", "google"),
            ("redirect_to", refused),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "s256"),
        ]))
        .await
        .expect(StatusCode::BAD_REQUEST, "validation_failed");
    }
    s.send(s.http.get(s.url("/auth/v1/authorize")).query(&[
        ("provider", "myspace"),
        ("redirect_to", "http://127.0.0.1:1/cb"),
    ]))
    .await
    .expect(StatusCode::BAD_REQUEST, "validation_failed");
    s.send(s.http.get(s.url("/auth/v1/authorize")).query(&[
        ("provider", "google"),
        ("redirect_to", "http://127.0.0.1:1/cb"),
        ("code_challenge", "too-short"),
        ("code_challenge_method", "s256"),
    ]))
    .await
    .expect(StatusCode::BAD_REQUEST, "validation_failed");
    s.send(s.http.get(s.url("/auth/v1/authorize")).query(&[
        ("provider", "google"),
        ("redirect_to", "http://127.0.0.1:1/cb"),
        ("code_challenge", CHALLENGE),
    ]))
    .await
    .expect(StatusCode::BAD_REQUEST, "validation_failed");

    // Denied: back to the client with an OAuth error, and the request is spent.
    let consent = s.authorize("http://127.0.0.1:1/cb").await;
    let back = s.decide(&consent, "", "deny").await;
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("access_denied")
    );
    assert!(query_param(&back, "code").is_none());
    let spent = s.http.get(&consent).send().await.unwrap();
    assert_eq!(spent.status(), StatusCode::NOT_FOUND);

    // Flow states live five minutes.
    let consent = s.authorize("http://127.0.0.1:1/cb").await;
    let back = s.decide(&consent, "late@example.com", "approve").await;
    s.advance(301);
    s.exchange(&query_param(&back, "code").unwrap(), VERIFIER)
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY, "flow_state_expired");
    // And so does an undecided consent page.
    let consent = s.authorize("http://127.0.0.1:1/cb").await;
    s.advance(301);
    let stale = s.http.get(&consent).send().await.unwrap();
    assert_eq!(stale.status(), StatusCode::NOT_FOUND);

    // An invalid email re-renders the form.
    let consent = s.authorize("http://127.0.0.1:1/cb").await;
    let state = query_param(&consent, "state").unwrap();
    let res = s
        .http
        .post(s.url("/devstack/oauth/consent"))
        .form(&[
            ("state", state.as_str()),
            ("email", "nope"),
            ("decision", "approve"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn redirect_allow_list_and_implicit_flow() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = DevstackConfig::new(dir.path());
    config.redirect_allow_list = vec!["https://app.rohimaya.example/**".into()];
    let s = start_with(config).await;

    // Without a code challenge GoTrue runs the implicit flow: the session in a fragment.
    let res = s
        .send(s.http.get(s.url("/auth/v1/authorize")).query(&[
            ("provider", "google"),
            ("redirect_to", "https://app.rohimaya.example/auth/done"),
        ]))
        .await;
    assert_eq!(res.status, StatusCode::FOUND, "{}", res.body);
    let consent = res.headers["location"].to_str().unwrap().to_string();
    let back = s.decide(&consent, "implicit@example.com", "approve").await;
    let url = url::Url::parse(&back).unwrap();
    assert_eq!(url.host_str(), Some("app.rohimaya.example"));
    let fragment: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(url.fragment().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    assert_eq!(fragment["token_type"], "bearer");
    s.get_user(&fragment["access_token"]).await.ok();
    s.refresh(&fragment["refresh_token"]).await.ok();

    s.send(s.http.get(s.url("/auth/v1/authorize")).query(&[
        ("provider", "google"),
        ("redirect_to", "https://other.example/auth/done"),
    ]))
    .await
    .expect(StatusCode::BAD_REQUEST, "validation_failed");
}

#[tokio::test]
async fn logout_scopes() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let email = "logout@example.com";
    let one = s.signup(email).await;
    let two = s.sign_in(email).await;
    let three = s.sign_in(email).await;
    let access = |v: &Value| token_of(v, "access_token");
    let refresh = |v: &Value| token_of(v, "refresh_token");

    s.post_bearer("/auth/v1/logout?scope=nonsense", &access(&one))
        .await
        .expect(StatusCode::BAD_REQUEST, "validation_failed");
    let unauthenticated = s
        .send(
            s.http
                .post(s.url("/auth/v1/logout"))
                .header("apikey", s.anon())
                .header("x-supabase-api-version", API_VERSION),
        )
        .await;
    unauthenticated.expect(StatusCode::UNAUTHORIZED, "no_authorization");

    // others: every session but the caller's.
    let res = s
        .post_bearer("/auth/v1/logout?scope=others", &access(&one))
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    s.refresh(&refresh(&two))
        .await
        .expect(StatusCode::BAD_REQUEST, "refresh_token_not_found");
    s.get_user(&access(&three))
        .await
        .expect(StatusCode::FORBIDDEN, "session_not_found");
    let one = s.refresh(&refresh(&one)).await.ok();

    // local: only the caller's session.
    let four = s.sign_in(email).await;
    let res = s
        .post_bearer("/auth/v1/logout?scope=local", &access(&one))
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    s.get_user(&access(&one))
        .await
        .expect(StatusCode::FORBIDDEN, "session_not_found");
    s.refresh(&refresh(&one))
        .await
        .expect(StatusCode::BAD_REQUEST, "refresh_token_not_found");
    let four = s.refresh(&refresh(&four)).await.ok();

    // global (the default): every session of the user.
    let five = s.sign_in(email).await;
    let res = s.post_bearer("/auth/v1/logout", &access(&four)).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    for gone in [&four, &five] {
        s.refresh(&refresh(gone))
            .await
            .expect(StatusCode::BAD_REQUEST, "refresh_token_not_found");
        s.get_user(&access(gone))
            .await
            .expect(StatusCode::FORBIDDEN, "session_not_found");
    }
    // Logging out with a dead session's token is refused the same way.
    s.post_bearer("/auth/v1/logout", &access(&five))
        .await
        .expect(StatusCode::FORBIDDEN, "session_not_found");
    // The account itself is fine.
    s.sign_in(email).await;
}

#[tokio::test]
async fn a_restart_keeps_users_and_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let session = s.signup("persist@example.com").await;
    let refresh = token_of(&session, "refresh_token");
    let access = token_of(&session, "access_token");
    s.post("/auth/v1/otp", json!({"email": "persist@example.com"}))
        .await
        .ok();
    let anon = s.anon().to_string();
    s.devstack.shutdown().await;

    let s = start(dir.path()).await;
    assert_eq!(s.anon(), anon, "the keys survive a restart");
    s.get_user(&access).await.ok();
    let refreshed = s.refresh(&refresh).await.ok();
    assert_eq!(refreshed["user"]["id"], session["user"]["id"]);
    s.sign_in("persist@example.com").await;
    assert_eq!(s.mailbox("persist@example.com").await.len(), 1);
}

#[tokio::test]
async fn json_nulls_read_as_go_zero_values() {
    // auth-js sends `"code_challenge": null` and friends; GoTrue (Go) reads null as the
    // zero value, and `create_user: null` leaves its default, true.
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let sent = s
        .post(
            "/auth/v1/otp",
            json!({"email": "nulls@example.com", "create_user": null, "data": null,
                   "code_challenge": null, "code_challenge_method": null}),
        )
        .await
        .ok();
    assert_eq!(sent, json!({}));
    assert_eq!(s.mailbox("nulls@example.com").await.len(), 1);
    s.post(
        "/auth/v1/signup",
        json!({"email": "nulls2@example.com", "password": PASSWORD, "data": null,
               "code_challenge": null, "code_challenge_method": null}),
    )
    .await
    .ok();
    // A wrong type is still a JSON error, as in Go.
    s.post(
        "/auth/v1/token?grant_type=password",
        json!({"email": 42, "password": PASSWORD}),
    )
    .await
    .expect(StatusCode::BAD_REQUEST, "bad_json");
}

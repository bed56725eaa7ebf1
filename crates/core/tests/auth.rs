//! rohimaya-core's auth against the devstack in-process (real HTTP, real GoTrue
//! semantics): every sign-in method end to end (OAuth with the test acting as the
//! browser), the refresh policy at a 2-second access-token lifetime (50 concurrent calls
//! across an expiry make one refresh; a 2-minute soak stays signed in), the 401 ->
//! refresh -> retry-once rule, a replayed refresh token ending the session, and the
//! "not remembered" path. Sessions live in `MemoryStore` here; the real keyring is
//! tested in `keyring.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rohimaya_core::CoreError;
use rohimaya_core::ErrorCode;
use rohimaya_core::api::{ApiClient, JobsQuery};
use rohimaya_core::auth::{
    AuthError, OAuthOptions, SessionManager, SessionStatus, SignUp, SignedOutReason,
};
use rohimaya_core::config::Endpoints;
use rohimaya_core::secrets::{MemoryStore, SessionStore};
use rohimaya_devstack::{Devstack, DevstackConfig};
use serde_json::Value;

const PASSWORD: &str = "correct horse battery";

struct Env {
    devstack: Devstack,
    dir: tempfile::TempDir,
    endpoints: Endpoints,
    http: reqwest::Client,
}

async fn start(ttl: Duration, reuse: Duration) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let mut config = DevstackConfig::new(dir.path().join("devstack"));
    config.access_token_ttl = ttl;
    config.refresh_reuse_interval = reuse;
    let devstack = rohimaya_devstack::start(config).await.unwrap();
    let endpoints = Endpoints {
        supabase_url: devstack.info.supabase_url.clone(),
        anon_key: devstack.info.anon_key.clone(),
        api_url: devstack.info.api_url.clone(),
        origin: None,
    };
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Env {
        devstack,
        dir,
        endpoints,
        http,
    }
}

impl Env {
    fn manager(&self, store: Arc<dyn SessionStore>) -> SessionManager {
        SessionManager::new(
            &self.endpoints,
            "test",
            &self.dir.path().join("data"),
            store,
        )
    }

    async fn stats(&self) -> Value {
        self.http
            .get(format!("{}/devstack/stats", self.endpoints.supabase_url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn refreshes(&self) -> i64 {
        self.stats().await["refresh_granted"].as_i64().unwrap()
    }
}

async fn sign_up(session: &SessionManager, email: &str) {
    match session.sign_up(email, PASSWORD).await.unwrap() {
        SignUp::SignedIn(account) => assert_eq!(account.email, email),
        other => panic!("expected a session, got {other:?}"),
    }
}

/// Waits (polling, with a deadline) until the access token is within its refresh
/// margin, i.e. the next call refreshes.
async fn until_refresh_due(session: &SessionManager, lifetime: Duration) {
    let deadline = Instant::now() + lifetime * 3;
    while session
        .access_expires_in()
        .await
        .is_some_and(|left| left > lifetime / 2)
    {
        assert!(Instant::now() < deadline, "the access token never aged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn password_sign_up_sign_in_errors_and_sign_out() {
    let env = start(Duration::from_secs(3600), Duration::from_secs(10)).await;
    let store = Arc::new(MemoryStore::new());
    let session = env.manager(store.clone());
    sign_up(&session, "pw@example.com").await;

    let again = session
        .sign_up("pw@example.com", PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(again.code(), ErrorCode::UserAlreadyExists);
    let weak = session
        .sign_up("weak@example.com", "123")
        .await
        .unwrap_err();
    assert_eq!(weak.code(), ErrorCode::WeakPassword);
    let wrong = session
        .sign_in_with_password("pw@example.com", "wrong password")
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), ErrorCode::InvalidCredentials);

    let account = session
        .sign_in_with_password("pw@example.com", PASSWORD)
        .await
        .unwrap();
    assert!(account.remembered);
    let saved = store
        .load(session.store_key())
        .unwrap()
        .expect("saved in the store");
    assert_eq!(saved.email, "pw@example.com");
    assert_eq!(saved.user_id, account.user_id);

    // A second manager (as after a restart) restores and verifies with the server.
    let restarted = env.manager(store.clone());
    assert!(matches!(
        restarted.restore().await,
        SessionStatus::SignedIn(_)
    ));
    let verified = restarted.verify_with_server().await.unwrap();
    assert_eq!(verified.user_id, account.user_id);

    let report = restarted.sign_out().await;
    assert!(report.server_signed_out, "{report:?}");
    assert_eq!(store.load(session.store_key()).unwrap(), None);
    let err = restarted.access_token().await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotSignedIn);
    env.devstack.shutdown().await;
}

#[tokio::test]
async fn email_one_time_code_end_to_end() {
    let env = start(Duration::from_secs(3600), Duration::from_secs(10)).await;
    let session = env.manager(Arc::new(MemoryStore::new()));
    let email = "otp@example.com";
    session.send_email_code(email).await.unwrap();
    let mail: Value = env
        .http
        .get(format!(
            "{}/devstack/mailbox/{email}",
            env.endpoints.supabase_url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let code = mail[0]["code"]
        .as_str()
        .expect("a code in the mailbox")
        .to_string();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let err = session
        .sign_in_with_email_code(email, wrong)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::OtpInvalid);
    let account = session.sign_in_with_email_code(email, &code).await.unwrap();
    assert_eq!(account.email, email);
    session.verify_with_server().await.unwrap();
    env.devstack.shutdown().await;
}

#[tokio::test]
async fn oauth_with_the_test_as_the_browser() {
    let env = start(Duration::from_secs(3600), Duration::from_secs(10)).await;
    let session = env.manager(Arc::new(MemoryStore::new()));
    let (url_tx, url_rx) = tokio::sync::oneshot::channel::<String>();
    let options = OAuthOptions {
        timeout: Duration::from_secs(60),
        ..OAuthOptions::default()
    };
    let signing_in = session.sign_in_with_oauth("google", options, move |url| {
        let _ = url_tx.send(url.to_string());
    });
    let browser = async {
        let url = url_rx.await.unwrap();
        assert!(url.contains("code_challenge_method=s256"), "{url}");
        // /authorize -> the consent page.
        let res = env.http.get(&url).send().await.unwrap();
        assert_eq!(res.status(), 302);
        let consent = res.headers()["location"].to_str().unwrap().to_string();
        let page = env.http.get(&consent).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let state = url::Url::parse(&consent)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "state")
            .map(|(_, v)| v.into_owned())
            .unwrap();
        // Approve -> redirected to the loopback listener.
        let res = env
            .http
            .post(format!(
                "{}/devstack/oauth/consent",
                env.endpoints.supabase_url
            ))
            .form(&[
                ("state", state.as_str()),
                ("email", "oauth@example.com"),
                ("decision", "approve"),
            ])
            .send()
            .await
            .unwrap();
        assert!(res.status().is_redirection(), "{}", res.status());
        let callback = res.headers()["location"].to_str().unwrap().to_string();
        assert!(callback.starts_with("http://127.0.0.1:"), "{callback}");
        let done = env.http.get(&callback).send().await.unwrap();
        assert_eq!(done.status(), 200);
        done.text().await.unwrap()
    };
    let (account, page) = tokio::join!(signing_in, browser);
    assert!(page.contains("close this tab"), "{page}");
    let account = account.unwrap();
    assert_eq!(account.email, "oauth@example.com");
    session.verify_with_server().await.unwrap();
    env.devstack.shutdown().await;
}

#[tokio::test]
async fn oauth_times_out_when_the_user_walks_away() {
    let env = start(Duration::from_secs(3600), Duration::from_secs(10)).await;
    let session = env.manager(Arc::new(MemoryStore::new()));
    let options = OAuthOptions {
        timeout: Duration::from_millis(300),
        ..OAuthOptions::default()
    };
    let err = session
        .sign_in_with_oauth("google", options, |_| {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::OauthTimedOut);
    env.devstack.shutdown().await;
}

#[tokio::test]
async fn fifty_concurrent_calls_across_an_expiry_make_one_refresh() {
    let ttl = Duration::from_secs(2);
    let env = start(ttl, Duration::from_secs(10)).await;
    let session = env.manager(Arc::new(MemoryStore::new()));
    sign_up(&session, "many@example.com").await;
    let api = ApiClient::new(&env.endpoints).with_session(session.clone());
    api.list_jobs(&JobsQuery::default()).await.unwrap();

    until_refresh_due(&session, ttl).await;
    let before = env.refreshes().await;
    let sent_before = session.refreshes_sent();
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let api = api.clone();
        calls.spawn(async move { api.list_jobs(&JobsQuery::default()).await });
    }
    while let Some(result) = calls.join_next().await {
        result.unwrap().unwrap();
    }
    let made = env.refreshes().await - before;
    println!("refreshes for 50 concurrent calls across an expiry: {made}");
    assert_eq!(made, 1, "refreshes counted at the devstack");
    assert_eq!(session.refreshes_sent() - sent_before, 1);
    env.devstack.shutdown().await;
}

#[tokio::test]
async fn two_minute_soak_at_two_second_tokens_ends_signed_in() {
    let ttl = Duration::from_secs(2);
    let env = start(ttl, Duration::from_secs(10)).await;
    let session = env.manager(Arc::new(MemoryStore::new()));
    sign_up(&session, "soak@example.com").await;
    let api = ApiClient::new(&env.endpoints).with_session(session.clone());
    let end = Instant::now() + Duration::from_secs(120);
    let mut pace = tokio::time::interval(Duration::from_millis(100));
    let mut calls = 0u64;
    while Instant::now() < end {
        pace.tick().await;
        api.list_jobs(&JobsQuery::default())
            .await
            .unwrap_or_else(|e| panic!("call {calls} failed: {e}"));
        calls += 1;
    }
    session.verify_with_server().await.unwrap();
    assert!(matches!(session.status().await, SessionStatus::SignedIn(_)));
    let stats = env.stats().await;
    println!("soak: {calls} calls in 120 s, devstack stats {stats}");
    assert!(stats["refresh_granted"].as_i64().unwrap() >= 30, "{stats}");
    assert_eq!(stats["refresh_refused"], serde_json::json!({}), "{stats}");
    env.devstack.shutdown().await;
}

#[tokio::test]
async fn engine_401_refreshes_and_retries_once() {
    let env = start(Duration::from_secs(3600), Duration::from_secs(10)).await;
    let session = env.manager(Arc::new(MemoryStore::new()));
    sign_up(&session, "retry@example.com").await;
    let api = ApiClient::new(&env.endpoints).with_session(session.clone());
    api.list_jobs(&JobsQuery::default()).await.unwrap();
    // The server's clock moves past the token's expiry; the client's does not.
    env.devstack.clock().advance(Duration::from_secs(7200));
    let before = env.refreshes().await;
    api.list_jobs(&JobsQuery::default()).await.unwrap();
    assert_eq!(env.refreshes().await - before, 1);

    // Unknown job: a typed error, not a retry loop.
    let err = api
        .job("00000000-0000-0000-0000-000000000000")
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    env.devstack.shutdown().await;
}

#[tokio::test]
async fn replayed_refresh_token_ends_the_session_and_empties_the_store() {
    let ttl = Duration::from_secs(2);
    let env = start(ttl, Duration::ZERO).await;
    let store = Arc::new(MemoryStore::new());
    let session = env.manager(store.clone());
    sign_up(&session, "victim@example.com").await;
    let stolen = store
        .load(session.store_key())
        .unwrap()
        .unwrap()
        .refresh_token;

    // Two rotations: the stolen token is then no longer the parent of the active one
    // (GoTrue answers a replayed parent with the active token, as for a lost response).
    for _ in 0..2 {
        until_refresh_due(&session, ttl).await;
        session.access_token().await.unwrap();
    }
    assert_ne!(
        store
            .load(session.store_key())
            .unwrap()
            .unwrap()
            .refresh_token,
        stolen
    );

    // The thief replays the spent token: the server revokes the whole session.
    let res = env
        .http
        .post(format!(
            "{}/auth/v1/token?grant_type=refresh_token",
            env.endpoints.supabase_url
        ))
        .header("apikey", &env.endpoints.anon_key)
        .header("X-Supabase-Api-Version", "2024-01-01")
        .json(&serde_json::json!({ "refresh_token": stolen.expose() }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);

    until_refresh_due(&session, ttl).await;
    let err = session.access_token().await.unwrap_err();
    assert!(
        matches!(
            err,
            AuthError::SignedOut {
                reason: SignedOutReason::SessionEnded
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with("signed out: session ended"),
        "{err}"
    );
    assert_eq!(store.load(session.store_key()).unwrap(), None);
    assert!(matches!(
        session.status().await,
        SessionStatus::SignedOut {
            reason: Some(SignedOutReason::SessionEnded),
            ..
        }
    ));
    env.devstack.shutdown().await;
}

#[tokio::test]
async fn without_a_keyring_sign_in_works_for_the_run_and_says_why() {
    let env = start(Duration::from_secs(3600), Duration::from_secs(10)).await;
    let store = Arc::new(MemoryStore::unavailable("no OS keyring is available"));
    let session = env.manager(store.clone());
    sign_up(&session, "nokeyring@example.com").await;
    let SessionStatus::SignedIn(account) = session.status().await else {
        panic!("signed in for the run");
    };
    assert!(!account.remembered);
    let note = account.not_remembered_message().unwrap();
    assert!(
        note.contains("not remembered") && note.contains("no OS keyring"),
        "{note}"
    );
    session.verify_with_server().await.unwrap();
    // The next run finds nothing, and knows why.
    let next_run = env.manager(store);
    assert!(matches!(
        next_run.restore().await,
        SessionStatus::SignedOut { .. }
    ));
    assert!(next_run.not_remembered_reason().await.is_some());
    env.devstack.shutdown().await;
}

#[tokio::test]
async fn unreachable_server_keeps_the_session() {
    let ttl = Duration::from_secs(2);
    let env = start(ttl, Duration::from_secs(10)).await;
    let store = Arc::new(MemoryStore::new());
    let session = env.manager(store.clone());
    sign_up(&session, "offline@example.com").await;
    let Env { devstack, dir, .. } = env;
    devstack.shutdown().await;
    until_refresh_due(&session, ttl).await;
    // Wait until the token has expired outright: then a failed refresh is an error.
    let deadline = Instant::now() + Duration::from_secs(10);
    while session
        .access_expires_in()
        .await
        .is_some_and(|d| !d.is_zero())
    {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let err = session.access_token().await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::NetworkUnreachable, "{err}");
    assert!(matches!(session.status().await, SessionStatus::SignedIn(_)));
    assert!(
        store.load(session.store_key()).unwrap().is_some(),
        "the session is kept"
    );
    drop(dir);
}

//! The session lifecycle of one profile: sign-in installs a session, the access token
//! lives in memory only, the refresh token in the session store (the OS keyring), and
//! refreshes follow the policy that keeps an author signed in for weeks:
//!
//! - One refresh at a time per process: the state mutex is held across a refresh, so
//!   concurrent callers wait for it and then use its result.
//! - Across processes (the app and CLI commands side by side), a file lock in the data
//!   dir (`locks/session-{profile}.lock`) around read-keyring -> refresh -> write-keyring.
//!   Under the lock the keyring is read first: when it holds a newer refresh token than
//!   this process (another process rotated it), ours is spent and is never sent; the
//!   newer one is used instead. The new token is saved before anything uses it.
//! - Refresh ahead of expiry, when less than `min(90 s, lifetime / 2)` remains (by the
//!   monotonic and the wall clock, so a laptop waking from sleep notices), on
//!   [`SessionManager::on_wake`], and after a 401 from the engine
//!   ([`SessionManager::refresh_after_unauthorized`]).
//! - Temporary failures (network, 5xx, 409, 429) keep the session, back off (1 s doubling
//!   to 60 s, or the server's retry-after) and keep using a still-valid access token.
//!   Only the definitive codes in `errors::SESSION_ENDING_CODES` end it; then the store is
//!   cleared and callers get "signed out: {reason}".
//!
//! - A session belongs to a profile *and* a data directory: it is filed in the store
//!   under [`session_key`], so two data directories with the same profile name (two
//!   local backends, a test run beside the real app) never read, refresh or end each
//!   other's session.
//!
//! It never writes a token anywhere but the session store, never logs one, and never
//! falls back to a file when the keyring is unavailable: the session then lasts this run
//! and [`Account::not_remembered_reason`] says why.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::errors::{AuthError, SignedOutReason};
use super::gotrue::{GoTrue, IssuedSession, SignUpOutcome, User, now_ms};
use super::oauth::{LoopbackListener, Pkce, authorize_url};
use crate::config::Endpoints;
use crate::secrets::{KeyringStore, Secret, SessionStore, StoreError, StoredSession};

/// What the session of `profile` kept under `data_dir` is filed under in the session
/// store: the profile name and a short digest of the directory's absolute path (stable
/// whether or not the directory exists yet).
pub fn session_key(profile: &str, data_dir: &Path) -> String {
    use sha2::{Digest, Sha256};
    let dir = absolute(data_dir);
    let digest = Sha256::digest(dir.to_string_lossy().as_bytes());
    format!("{profile}@{}", &hex::encode(digest)[..12])
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Loads the entry under `key`; when there is none and a `legacy` key is given, the entry
/// found there is moved under `key` (best effort: a failed move still returns it).
fn load_moving_legacy(
    store: &dyn SessionStore,
    key: &str,
    legacy: Option<&str>,
) -> Result<Option<StoredSession>, StoreError> {
    let found = store.load(key)?;
    let Some(legacy) = legacy.filter(|_| found.is_none()) else {
        return Ok(found);
    };
    let Some(old) = store.load(legacy)? else {
        return Ok(None);
    };
    match store.save(key, &old) {
        Ok(()) => {
            if let Err(e) = store.clear(legacy) {
                tracing::debug!("cannot remove the session's old keyring entry: {e}");
            }
        }
        Err(e) => tracing::debug!("cannot move the session to its new keyring entry: {e}"),
    }
    Ok(Some(old))
}

/// Refresh when less than this remains (capped at half the token's lifetime).
pub const REFRESH_MARGIN: Duration = Duration::from_secs(90);
/// The longest wait between refresh attempts after temporary failures.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long to wait for another process's refresh to release the profile lock.
const LOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// Who is signed in on a profile, as the shells show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    pub profile: String,
    pub user_id: String,
    pub email: String,
    /// Whether the session is in the OS keyring and survives a restart.
    pub remembered: bool,
    /// Why not, when `remembered` is false (e.g. "no OS keyring is available ...").
    pub not_remembered_reason: Option<String>,
}

impl Account {
    /// "not remembered because ..." for the shells, when the session lasts this run only.
    pub fn not_remembered_message(&self) -> Option<String> {
        self.not_remembered_reason
            .as_ref()
            .map(|r| format!("this sign-in is not remembered after Rohimaya exits because {r}"))
    }
}

/// Whether anyone is signed in, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionStatus {
    SignedIn(Account),
    /// `reason` is set when the session ended on the server's word (not by sign-out).
    SignedOut {
        profile: String,
        reason: Option<SignedOutReason>,
    },
}

/// What `sign_up` achieved.
#[derive(Debug, Clone)]
pub enum SignUp {
    SignedIn(Account),
    /// The server emails a confirmation link first.
    ConfirmationSent {
        email: String,
    },
}

/// How the browser sign-in waits.
#[derive(Debug, Clone)]
pub struct OAuthOptions {
    /// Give up when the browser has not come back by then (GoTrue forgets the flow
    /// after 5 minutes).
    pub timeout: Duration,
    pub cancel: CancellationToken,
}

impl Default for OAuthOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(300),
            cancel: CancellationToken::new(),
        }
    }
}

/// What sign-out did. The local session is gone whatever these say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignOutReport {
    /// The server ended the session (`false` when it could not be reached, or no session
    /// was active).
    pub server_signed_out: bool,
    /// Why the server did not confirm, if it did not.
    pub server_problem: Option<String>,
    /// Why the keyring entry could not be removed, if it could not.
    pub keyring_problem: Option<String>,
}

#[derive(Clone)]
struct Access {
    token: Secret,
    received: Instant,
    lifetime: Duration,
    expires_at_ms: i64,
}

impl Access {
    fn from_issued(issued: &IssuedSession) -> Self {
        Self {
            token: issued.access_token.clone(),
            received: Instant::now(),
            lifetime: issued.expires_in,
            expires_at_ms: issued.expires_at_ms,
        }
    }

    /// Time left by both clocks: the monotonic one may stop during sleep, the wall clock
    /// does not.
    fn remaining(&self) -> Duration {
        let by_monotonic = self.lifetime.saturating_sub(self.received.elapsed());
        let by_wall =
            Duration::from_millis(self.expires_at_ms.saturating_sub(now_ms()).max(0) as u64);
        by_monotonic.min(by_wall)
    }

    fn is_fresh(&self) -> bool {
        self.remaining() > REFRESH_MARGIN.min(self.lifetime / 2)
    }

    fn is_usable(&self) -> bool {
        !self.remaining().is_zero()
    }
}

struct Live {
    user: User,
    refresh_token: Secret,
    access: Option<Access>,
}

impl Live {
    fn usable_access(&self) -> Option<&Access> {
        self.access.as_ref().filter(|a| a.is_usable())
    }
}

#[derive(Default)]
struct Backoff {
    failures: u32,
    until: Option<Instant>,
    last: Option<AuthError>,
}

impl Backoff {
    /// The last error, while the backoff lasts.
    fn blocked(&self) -> Option<AuthError> {
        match self.until {
            Some(until) if Instant::now() < until => self.last.clone(),
            _ => None,
        }
    }

    fn failed(&mut self, e: &AuthError) {
        self.failures = self.failures.saturating_add(1);
        let exp = self.failures.saturating_sub(1).min(6);
        let base = Duration::from_secs(1u64 << exp).min(MAX_BACKOFF);
        let jitter =
            Duration::from_millis(rand::rng().random_range(0..=base.as_millis() as u64 / 4));
        let delay = (base + jitter).max(e.retry_after().unwrap_or_default());
        self.until = Some(Instant::now() + delay);
        self.last = Some(e.clone());
    }

    fn reset(&mut self) {
        *self = Self::default();
    }
}

#[derive(Default)]
struct State {
    live: Option<Live>,
    /// `Some(reason)` when the session store is unusable this run.
    not_remembered: Option<String>,
    signed_out: Option<SignedOutReason>,
    backoff: Backoff,
}

struct Shared {
    gotrue: GoTrue,
    profile: String,
    /// What the session is filed under in the store ([`session_key`]).
    key: String,
    /// The profile's entry from before keys named the data directory, read once (and
    /// moved) when this is the OS's own data directory, the only one that could own it.
    legacy_key: Option<String>,
    store: Arc<dyn SessionStore>,
    lock_path: PathBuf,
    state: tokio::sync::Mutex<State>,
    refreshes: AtomicU64,
}

/// The session of one profile. Cheap to clone; clones share the session.
#[derive(Clone)]
pub struct SessionManager {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionManager")
            .field("profile", &self.shared.profile)
            .finish_non_exhaustive()
    }
}

impl SessionManager {
    /// A session manager over `store`; call [`restore`](Self::restore) to load a saved
    /// session. `data_dir` holds the cross-process lock file.
    pub fn new(
        endpoints: &Endpoints,
        profile: &str,
        data_dir: &Path,
        store: Arc<dyn SessionStore>,
    ) -> Self {
        let legacy_key = crate::config::Paths::os_data_dir()
            .is_some_and(|os| absolute(&os) == absolute(data_dir))
            .then(|| profile.to_string());
        Self {
            shared: Arc::new(Shared {
                gotrue: GoTrue::new(endpoints),
                profile: profile.to_string(),
                key: session_key(profile, data_dir),
                legacy_key,
                store,
                lock_path: data_dir
                    .join("locks")
                    .join(format!("session-{profile}.lock")),
                state: tokio::sync::Mutex::new(State::default()),
                refreshes: AtomicU64::new(0),
            }),
        }
    }

    /// A session manager over the OS keyring.
    pub fn with_keyring(endpoints: &Endpoints, profile: &str, data_dir: &Path) -> Self {
        Self::new(endpoints, profile, data_dir, Arc::new(KeyringStore::new()))
    }

    pub fn profile(&self) -> &str {
        &self.shared.profile
    }

    /// What the session is filed under in the store ([`session_key`]).
    pub fn store_key(&self) -> &str {
        &self.shared.key
    }

    /// How many refresh requests this manager sent (diagnostics and tests).
    pub fn refreshes_sent(&self) -> u64 {
        self.shared.refreshes.load(Ordering::SeqCst)
    }

    /// Loads the saved session, if any. Without a usable keyring there is none, and the
    /// status says why sessions will not be remembered.
    pub async fn restore(&self) -> SessionStatus {
        let mut st = self.shared.state.lock().await;
        match self.store_load().await {
            Ok(Some(saved)) => {
                st.live = Some(Live {
                    user: User {
                        id: saved.user_id,
                        email: saved.email,
                    },
                    refresh_token: saved.refresh_token,
                    access: None,
                });
                st.not_remembered = None;
            }
            Ok(None) => {}
            Err(StoreError::Corrupt) => {
                tracing::warn!(profile = %self.shared.profile, "the saved session is unreadable; removing it");
                let _ = self.store_clear().await;
            }
            Err(e) => st.not_remembered = Some(e.to_string()),
        }
        self.status_of(&st)
    }

    /// Why sessions of this profile are not remembered (the keyring problem), if they
    /// are not.
    pub async fn not_remembered_reason(&self) -> Option<String> {
        self.shared.state.lock().await.not_remembered.clone()
    }

    /// How long the in-memory access token stays valid, if there is one.
    pub async fn access_expires_in(&self) -> Option<Duration> {
        let st = self.shared.state.lock().await;
        st.live.as_ref()?.access.as_ref().map(Access::remaining)
    }

    /// Who is signed in, from memory (no network).
    pub async fn status(&self) -> SessionStatus {
        let st = self.shared.state.lock().await;
        self.status_of(&st)
    }

    fn status_of(&self, st: &State) -> SessionStatus {
        match &st.live {
            Some(live) => SessionStatus::SignedIn(self.account_of(st, &live.user)),
            None => SessionStatus::SignedOut {
                profile: self.shared.profile.clone(),
                reason: st.signed_out,
            },
        }
    }

    fn account_of(&self, st: &State, user: &User) -> Account {
        Account {
            profile: self.shared.profile.clone(),
            user_id: user.id.clone(),
            email: user.email.clone(),
            remembered: st.not_remembered.is_none(),
            not_remembered_reason: st.not_remembered.clone(),
        }
    }

    fn signed_out_error(&self, st: &State) -> AuthError {
        match st.signed_out {
            Some(reason) => AuthError::SignedOut { reason },
            None => AuthError::NotSignedIn {
                profile: self.shared.profile.clone(),
            },
        }
    }

    // ----------------------------------------------------------------- sign-in methods

    pub async fn sign_in_with_password(
        &self,
        email: &str,
        password: &str,
    ) -> Result<Account, AuthError> {
        let issued = self
            .shared
            .gotrue
            .sign_in_with_password(email, password)
            .await?;
        self.install(issued).await
    }

    pub async fn sign_up(&self, email: &str, password: &str) -> Result<SignUp, AuthError> {
        match self.shared.gotrue.sign_up(email, password).await? {
            SignUpOutcome::SignedIn(issued) => self.install(issued).await.map(SignUp::SignedIn),
            SignUpOutcome::ConfirmationSent { user } => Ok(SignUp::ConfirmationSent {
                email: if user.email.is_empty() {
                    email.to_string()
                } else {
                    user.email
                },
            }),
        }
    }

    /// Emails a one-time code (creating the account if there is none).
    pub async fn send_email_code(&self, email: &str) -> Result<(), AuthError> {
        self.shared.gotrue.send_email_otp(email, true).await
    }

    pub async fn sign_in_with_email_code(
        &self,
        email: &str,
        code: &str,
    ) -> Result<Account, AuthError> {
        let issued = self
            .shared
            .gotrue
            .verify_email_otp(email, code.trim())
            .await?;
        self.install(issued).await
    }

    /// Signs in through `provider` in the browser: `open` receives the URL to show and
    /// open; the browser comes back to a loopback listener, and the code is exchanged
    /// with the PKCE verifier.
    pub async fn sign_in_with_oauth(
        &self,
        provider: &str,
        options: OAuthOptions,
        open: impl FnOnce(&str) + Send,
    ) -> Result<Account, AuthError> {
        let pkce = Pkce::new();
        let listener = LoopbackListener::bind().await?;
        let url = authorize_url(
            self.shared.gotrue.base(),
            provider,
            listener.redirect_uri(),
            &pkce.challenge,
        );
        open(&url);
        let code = listener
            .wait_for_code(options.timeout, options.cancel)
            .await?;
        let issued = self
            .shared
            .gotrue
            .exchange_code(&code, &pkce.verifier)
            .await?;
        self.install(issued).await
    }

    /// Makes `issued` the session: saved to the store first (under the profile lock),
    /// then kept in memory.
    async fn install(&self, issued: IssuedSession) -> Result<Account, AuthError> {
        let mut st = self.shared.state.lock().await;
        let _lock = self.lock_profile().await;
        st.not_remembered = match self.store_save(&issued).await {
            Ok(()) => None,
            Err(e) => {
                tracing::warn!(profile = %self.shared.profile, "session not remembered: {e}");
                Some(e.to_string())
            }
        };
        let user = issued.user.clone();
        st.live = Some(Live {
            user: issued.user.clone(),
            refresh_token: issued.refresh_token.clone(),
            access: Some(Access::from_issued(&issued)),
        });
        st.signed_out = None;
        st.backoff.reset();
        Ok(self.account_of(&st, &user))
    }

    // ----------------------------------------------------------------- tokens

    /// A valid access token, refreshed first when it is close to expiry.
    pub async fn access_token(&self) -> Result<Secret, AuthError> {
        let mut st = self.shared.state.lock().await;
        let live = st.live.as_ref().ok_or_else(|| self.signed_out_error(&st))?;
        if let Some(access) = live.access.as_ref().filter(|a| a.is_fresh()) {
            return Ok(access.token.clone());
        }
        self.refresh_locked(&mut st, false).await?;
        self.current_token(&st)
    }

    /// After the engine refused `rejected` with 401: a newer token if another caller
    /// refreshed meanwhile, else a refresh now.
    pub async fn refresh_after_unauthorized(&self, rejected: &Secret) -> Result<Secret, AuthError> {
        let mut st = self.shared.state.lock().await;
        let live = st.live.as_ref().ok_or_else(|| self.signed_out_error(&st))?;
        if let Some(access) = live.access.as_ref()
            && access.token != *rejected
            && access.is_fresh()
        {
            return Ok(access.token.clone());
        }
        self.refresh_locked(&mut st, true).await?;
        self.current_token(&st)
    }

    /// Call after the computer wakes up or the network comes back: forgets the backoff
    /// and refreshes if the access token is (by the wall clock) close to expiry.
    pub async fn on_wake(&self) -> Result<(), AuthError> {
        let mut st = self.shared.state.lock().await;
        st.backoff.reset();
        let Some(live) = st.live.as_ref() else {
            return Err(self.signed_out_error(&st));
        };
        if live.access.as_ref().is_some_and(Access::is_fresh) {
            return Ok(());
        }
        self.refresh_locked(&mut st, false).await
    }

    fn current_token(&self, st: &State) -> Result<Secret, AuthError> {
        let live = st.live.as_ref().ok_or_else(|| self.signed_out_error(st))?;
        live.usable_access()
            .map(|a| a.token.clone())
            .ok_or_else(|| AuthError::Unexpected {
                detail: "no access token after refreshing".into(),
            })
    }

    /// Asks the server who is signed in (and so whether the session still stands).
    pub async fn verify_with_server(&self) -> Result<Account, AuthError> {
        let token = self.access_token().await?;
        match self.shared.gotrue.user(&token).await {
            Ok(user) => {
                let mut st = self.shared.state.lock().await;
                if let Some(live) = st.live.as_mut() {
                    live.user = user.clone();
                }
                Ok(self.account_of(&st, &user))
            }
            Err(AuthError::SignedOut { reason }) => {
                let mut st = self.shared.state.lock().await;
                self.end_session(&mut st, reason).await;
                Err(AuthError::SignedOut { reason })
            }
            Err(e) => Err(e),
        }
    }

    /// The refresh, with the state lock held by the caller (so one at a time per
    /// process). `forced`: the current access token was refused, do not keep using it.
    async fn refresh_locked(&self, st: &mut State, forced: bool) -> Result<(), AuthError> {
        if let Some(err) = st.backoff.blocked() {
            let usable = st.live.as_ref().and_then(Live::usable_access).is_some();
            return if usable && !forced { Ok(()) } else { Err(err) };
        }
        let _lock = self.lock_profile().await;
        if st.not_remembered.is_none() {
            match self.store_load().await {
                Ok(Some(saved)) => {
                    if let Some(live) = st.live.as_mut()
                        && saved.refresh_token != live.refresh_token
                    {
                        // Another process rotated the token: ours is spent, never send it.
                        tracing::debug!(profile = %self.shared.profile, "adopting the refresh token another process saved");
                        live.refresh_token = saved.refresh_token;
                        live.user = User {
                            id: saved.user_id,
                            email: saved.email,
                        };
                    }
                }
                Ok(None) => {
                    // Another Rohimaya process signed out of this profile.
                    st.live = None;
                    st.signed_out = Some(SignedOutReason::SignedOutOnThisComputer);
                    return Err(self.signed_out_error(st));
                }
                Err(StoreError::Corrupt) => {}
                Err(e) => {
                    tracing::warn!(profile = %self.shared.profile, "session no longer remembered: {e}");
                    st.not_remembered = Some(e.to_string());
                }
            }
        }
        let Some(refresh_token) = st.live.as_ref().map(|l| l.refresh_token.clone()) else {
            return Err(self.signed_out_error(st));
        };
        self.shared.refreshes.fetch_add(1, Ordering::SeqCst);
        match self.shared.gotrue.refresh(&refresh_token).await {
            Ok(issued) => {
                // Saved before it is used for anything else.
                if st.not_remembered.is_none()
                    && let Err(e) = self.store_save(&issued).await
                {
                    tracing::warn!(profile = %self.shared.profile, "session no longer remembered: {e}");
                    st.not_remembered = Some(e.to_string());
                    // Leave no spent token behind for a later run to replay.
                    let _ = self.store_clear().await;
                }
                st.live = Some(Live {
                    user: issued.user.clone(),
                    refresh_token: issued.refresh_token.clone(),
                    access: Some(Access::from_issued(&issued)),
                });
                st.backoff.reset();
                tracing::debug!(profile = %self.shared.profile, "session refreshed");
                Ok(())
            }
            Err(AuthError::SignedOut { reason }) => {
                tracing::info!(profile = %self.shared.profile, "signed out: {}", reason.describe());
                self.end_session_locked(st, reason).await;
                Err(AuthError::SignedOut { reason })
            }
            Err(e) => {
                tracing::debug!(profile = %self.shared.profile, "refresh failed, keeping the session: {e}");
                st.backoff.failed(&e);
                let usable = st.live.as_ref().and_then(Live::usable_access).is_some();
                if usable && !forced { Ok(()) } else { Err(e) }
            }
        }
    }

    /// Ends the session on the server's word: memory and store cleared.
    async fn end_session(&self, st: &mut State, reason: SignedOutReason) {
        let _lock = self.lock_profile().await;
        self.end_session_locked(st, reason).await;
    }

    /// As `end_session`, with the profile lock already held.
    async fn end_session_locked(&self, st: &mut State, reason: SignedOutReason) {
        if let Err(e) = self.store_clear().await {
            tracing::warn!(profile = %self.shared.profile, "cannot remove the ended session from the keyring: {e}");
        }
        st.live = None;
        st.signed_out = Some(reason);
    }

    /// Signs out: `POST /logout?scope=local`, then the keyring entry is removed whatever
    /// the server answered.
    pub async fn sign_out(&self) -> SignOutReport {
        let mut st = self.shared.state.lock().await;
        let mut report = SignOutReport {
            server_signed_out: false,
            server_problem: None,
            keyring_problem: None,
        };
        if st.live.as_ref().and_then(Live::usable_access).is_none() && st.live.is_some() {
            // The server wants an access token to end the session.
            st.backoff.reset();
            if let Err(e) = self.refresh_locked(&mut st, false).await {
                report.server_problem = Some(e.to_string());
            }
        }
        if let Some(token) = st
            .live
            .as_ref()
            .and_then(Live::usable_access)
            .map(|a| a.token.clone())
        {
            match self.shared.gotrue.logout_local(&token).await {
                Ok(()) => report.server_signed_out = true,
                Err(e) => report.server_problem = Some(e.to_string()),
            }
        }
        let _lock = self.lock_profile().await;
        if let Err(e) = self.store_clear().await {
            report.keyring_problem = Some(e.to_string());
        }
        st.live = None;
        st.signed_out = None;
        st.backoff.reset();
        report
    }

    // ----------------------------------------------------------------- store and lock

    async fn store_load(&self) -> Result<Option<StoredSession>, StoreError> {
        let (store, key) = (self.shared.store.clone(), self.shared.key.clone());
        let legacy = self.shared.legacy_key.clone();
        blocking(move || load_moving_legacy(store.as_ref(), &key, legacy.as_deref())).await
    }

    async fn store_save(&self, issued: &IssuedSession) -> Result<(), StoreError> {
        let record = StoredSession {
            refresh_token: issued.refresh_token.clone(),
            user_id: issued.user.id.clone(),
            email: issued.user.email.clone(),
            expires_at: issued.expires_at_ms.div_euclid(1000),
        };
        let (store, key) = (self.shared.store.clone(), self.shared.key.clone());
        blocking(move || store.save(&key, &record)).await
    }

    async fn store_clear(&self) -> Result<(), StoreError> {
        let (store, key) = (self.shared.store.clone(), self.shared.key.clone());
        blocking(move || store.clear(&key)).await
    }

    /// The cross-process lock of this profile, held until dropped. When the lock file
    /// cannot be used at all (e.g. a read-only data dir) this goes on unlocked, with a
    /// warning, rather than making sign-in impossible.
    async fn lock_profile(&self) -> Option<std::fs::File> {
        let path = self.shared.lock_path.clone();
        let locking = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            file.lock()?;
            Ok(file)
        });
        match tokio::time::timeout(LOCK_TIMEOUT, locking).await {
            Ok(Ok(Ok(file))) => Some(file),
            Ok(Ok(Err(e))) => {
                tracing::warn!(
                    "cannot lock {}: {e}; going on without the lock",
                    self.shared.lock_path.display()
                );
                None
            }
            Ok(Err(e)) => {
                tracing::warn!("the locking thread failed: {e}; going on without the lock");
                None
            }
            Err(_) => {
                tracing::warn!(
                    "{} stayed locked for {} s; going on without the lock",
                    self.shared.lock_path.display(),
                    LOCK_TIMEOUT.as_secs()
                );
                None
            }
        }
    }
}

/// Runs a store call on a blocking thread (the OS keyrings are synchronous).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(StoreError::Unavailable {
            detail: format!("the keyring call failed: {e}"),
        })
    })
}

impl SessionManager {
    /// The session of `profile`, over the OS keyring, locking in `paths.data_dir`.
    pub fn for_profile(profile: &crate::config::Profile, paths: &crate::config::Paths) -> Self {
        Self::with_keyring(&profile.endpoints, &profile.name, &paths.data_dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::MemoryStore;

    fn record(token: &str) -> StoredSession {
        StoredSession {
            refresh_token: Secret::new(token),
            user_id: "u1".into(),
            email: "a@example.com".into(),
            expires_at: 1_900_000_000,
        }
    }

    #[test]
    fn keys_name_the_profile_and_the_data_directory() {
        let a = session_key("local", Path::new("/tmp/one/data"));
        assert!(a.starts_with("local@"), "{a}");
        assert_eq!(a, session_key("local", Path::new("/tmp/one/data")));
        assert_ne!(a, session_key("local", Path::new("/tmp/two/data")));
        assert_ne!(a, session_key("cloud", Path::new("/tmp/one/data")));
    }

    #[test]
    fn an_entry_under_the_old_key_is_moved_once() {
        let store = MemoryStore::new();
        store
            .save("local", &record("old-token"))
            .unwrap_or_default();
        let moved = load_moving_legacy(&store, "local@abc", Some("local"));
        assert_eq!(moved.ok().flatten(), Some(record("old-token")));
        assert_eq!(
            store.load("local").ok().flatten(),
            None,
            "the old entry is gone"
        );
        assert_eq!(
            store.load("local@abc").ok().flatten(),
            Some(record("old-token"))
        );
        // Another data directory never looks at the old key.
        store.save("local", &record("other")).unwrap_or_default();
        assert_eq!(
            load_moving_legacy(&store, "local@def", None).ok().flatten(),
            None
        );
        assert_eq!(store.load("local").ok().flatten(), Some(record("other")));
        // A newer entry under the new key wins over an old one.
        assert_eq!(
            load_moving_legacy(&store, "local@abc", Some("local"))
                .ok()
                .flatten(),
            Some(record("old-token"))
        );
    }
}

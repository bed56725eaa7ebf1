//! Sessions, rotating refresh tokens and access tokens: the `auth_sessions` and
//! `auth_refresh_tokens` tables, GoTrue's refresh algorithm (`tokens/service.go`,
//! `models/refresh_token.go`), the session response and bearer authentication
//! (`auth.go`). It owns who is signed in; it never creates users and never logs a token.

use axum::http::HeaderMap;
use rand::Rng;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

use super::errors::{AuthError, code};
use super::users::{self, User};
use crate::jwt::AccessClaims;
use crate::server::Backend;

/// How a session was started, as GoTrue names it in the `amr` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInMethod {
    Password,
    Otp,
    OAuth,
}

impl SignInMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::Otp => "otp",
            Self::OAuth => "oauth",
        }
    }
}

/// A session just issued or refreshed, before it is rendered.
pub struct Issued {
    pub user: User,
    pub session_id: String,
    pub amr: Value,
    pub refresh_token: String,
}

/// A refresh token like GoTrue's legacy ones: 12 characters of `[a-z0-9]`, which is what
/// GoTrue's `RefreshTokenGrantParams.Validate` accepts.
fn new_refresh_token() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..12)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// Starts a session for `user_id` with its first refresh token and records the sign-in,
/// then loads the user as the response shows it. Run it inside a transaction.
pub fn start(
    c: &Connection,
    user_id: &str,
    method: SignInMethod,
    provider: Option<&str>,
    now_ms: i64,
) -> rusqlite::Result<Option<Issued>> {
    let session_id = uuid::Uuid::new_v4().to_string();
    let amr = json!([{ "method": method.as_str(), "timestamp": now_ms.div_euclid(1000) }]);
    c.execute(
        "INSERT INTO auth_sessions (id, user_id, amr, created_at, refreshed_at)
         VALUES (?1, ?2, ?3, ?4, NULL)",
        params![session_id, user_id, amr.to_string(), now_ms],
    )?;
    let refresh_token = new_refresh_token();
    c.execute(
        "INSERT INTO auth_refresh_tokens (token, session_id, user_id, parent, revoked,
                                          created_at, updated_at)
         VALUES (?1, ?2, ?3, NULL, 0, ?4, ?4)",
        params![refresh_token, session_id, user_id, now_ms],
    )?;
    users::record_sign_in(c, user_id, provider, now_ms)?;
    Ok(users::find_by_id(c, user_id)?.map(|user| Issued {
        user,
        session_id,
        amr,
        refresh_token,
    }))
}

/// Why a refresh token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshRefused {
    NotFound,
    AlreadyUsed,
    SessionGone,
}

impl From<RefreshRefused> for AuthError {
    fn from(r: RefreshRefused) -> Self {
        match r {
            RefreshRefused::NotFound => AuthError::bad_request(
                code::REFRESH_TOKEN_NOT_FOUND,
                "Invalid Refresh Token: Refresh Token Not Found",
            ),
            RefreshRefused::AlreadyUsed => AuthError::bad_request(
                code::REFRESH_TOKEN_ALREADY_USED,
                "Invalid Refresh Token: Already Used",
            ),
            RefreshRefused::SessionGone => AuthError::bad_request(
                code::SESSION_NOT_FOUND,
                "Invalid Refresh Token: No Valid Session Found",
            ),
        }
    }
}

/// GoTrue's `RefreshTokenGrantParams.Validate` for the tokens the devstack issues.
pub fn validate_refresh_token_format(token: &str) -> Result<(), AuthError> {
    let legacy_shape = token.len() == 12
        && token
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if legacy_shape {
        Ok(())
    } else {
        Err(AuthError::validation("Refresh token is not valid"))
    }
}

/// GoTrue's refresh-token grant (legacy token algorithm):
/// - an active token is revoked and swapped for a new child token;
/// - a revoked token that is the parent of the session's active token is accepted and
///   answered with that active token (the client lost the last response);
/// - a revoked token reused within `reuse_interval_ms` of its revocation is answered
///   with the session's active token (concurrent refreshes);
/// - any other reuse ends the whole session (every token, every access token) and is
///   refused as already used.
///
/// Runs in one transaction; the session-ending branch commits before refusing.
pub fn refresh(
    c: &mut Connection,
    token: &str,
    now_ms: i64,
    reuse_interval_ms: i64,
) -> rusqlite::Result<Result<Issued, RefreshRefused>> {
    let tx = c.transaction()?;
    let row = tx
        .query_row(
            "SELECT id, session_id, user_id, revoked, updated_at
             FROM auth_refresh_tokens WHERE token = ?1",
            [token],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, bool>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            },
        )
        .optional()?;
    let Some((token_id, session_id, user_id, revoked, revoked_at)) = row else {
        return Ok(Err(RefreshRefused::NotFound));
    };
    let session_amr = tx
        .query_row(
            "SELECT amr FROM auth_sessions WHERE id = ?1",
            [&session_id],
            |r| r.get::<_, String>(0),
        )
        .optional()?;
    let Some(session_amr) = session_amr else {
        tx.execute("DELETE FROM auth_refresh_tokens WHERE id = ?1", [token_id])?;
        tx.commit()?;
        return Ok(Err(RefreshRefused::SessionGone));
    };

    let issued_token = if revoked {
        let active = tx
            .query_row(
                "SELECT token, parent FROM auth_refresh_tokens
                 WHERE session_id = ?1 AND revoked = 0 ORDER BY id DESC LIMIT 1",
                [&session_id],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)),
            )
            .optional()?;
        let within_interval = now_ms <= revoked_at.saturating_add(reuse_interval_ms);
        match active {
            Some((active, parent)) if parent.as_deref() == Some(token) => active,
            Some((active, _)) if within_interval => active,
            None if within_interval => swap(&tx, token_id, token, &session_id, &user_id, now_ms)?,
            _ => {
                tx.execute("DELETE FROM auth_sessions WHERE id = ?1", [&session_id])?;
                tx.commit()?;
                return Ok(Err(RefreshRefused::AlreadyUsed));
            }
        }
    } else {
        swap(&tx, token_id, token, &session_id, &user_id, now_ms)?
    };

    tx.execute(
        "UPDATE auth_sessions SET refreshed_at = ?2 WHERE id = ?1",
        params![session_id, now_ms],
    )?;
    let user = users::find_by_id(&tx, &user_id)?;
    tx.commit()?;
    let Some(user) = user else {
        return Ok(Err(RefreshRefused::NotFound));
    };
    Ok(Ok(Issued {
        user,
        session_id,
        amr: serde_json::from_str(&session_amr).unwrap_or_else(|_| json!([])),
        refresh_token: issued_token,
    }))
}

/// GoTrue's `GrantRefreshTokenSwap`: revokes `token` and issues its child.
fn swap(
    c: &Connection,
    token_id: i64,
    token: &str,
    session_id: &str,
    user_id: &str,
    now_ms: i64,
) -> rusqlite::Result<String> {
    c.execute(
        "UPDATE auth_refresh_tokens SET revoked = 1, updated_at = ?2 WHERE id = ?1",
        params![token_id, now_ms],
    )?;
    let child = new_refresh_token();
    c.execute(
        "INSERT INTO auth_refresh_tokens (token, session_id, user_id, parent, revoked,
                                          created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, 0, ?5, ?5)",
        params![child, session_id, user_id, token, now_ms],
    )?;
    Ok(child)
}

/// The scopes of `POST /logout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoutScope {
    Global,
    Local,
    Others,
}

/// Ends sessions as GoTrue's `Logout` does (their refresh tokens go with them).
pub fn logout(
    c: &Connection,
    user_id: &str,
    session_id: Option<&str>,
    scope: LogoutScope,
) -> rusqlite::Result<()> {
    match (scope, session_id) {
        (LogoutScope::Local, Some(session)) => {
            c.execute("DELETE FROM auth_sessions WHERE id = ?1", [session])?;
        }
        (LogoutScope::Others, Some(session)) => {
            c.execute(
                "DELETE FROM auth_sessions WHERE user_id = ?1 AND id != ?2",
                [user_id, session],
            )?;
        }
        _ => {
            c.execute("DELETE FROM auth_sessions WHERE user_id = ?1", [user_id])?;
        }
    }
    Ok(())
}

/// Signs the access token and renders GoTrue's `AccessTokenResponse`.
pub fn session_response(backend: &Backend, issued: &Issued) -> Value {
    let now = backend.clock.now_secs();
    let ttl = i64::try_from(backend.config.access_token_ttl.as_secs()).unwrap_or(i64::MAX / 2);
    let expires_at = now.saturating_add(ttl);
    let claims = AccessClaims {
        sub: issued.user.id.clone(),
        aud: "authenticated".into(),
        exp: expires_at,
        iat: now,
        iss: format!("{}/auth/v1", backend.base_url),
        email: issued.user.email.clone(),
        phone: String::new(),
        role: "authenticated".into(),
        aal: "aal1".into(),
        session_id: issued.session_id.clone(),
        is_anonymous: false,
        app_metadata: issued.user.app_metadata.clone(),
        user_metadata: issued.user.user_metadata.clone(),
        amr: issued.amr.clone(),
    };
    let access_token = crate::jwt::sign(&claims, backend.keys.jwt_secret.as_bytes());
    json!({
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": ttl,
        "expires_at": expires_at,
        "refresh_token": issued.refresh_token,
        "user": issued.user.to_json(),
    })
}

/// The caller of an authenticated route (GoTrue's `requireAuthentication`).
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: User,
    pub session_id: Option<String>,
    pub aud: String,
}

/// GoTrue's `requireAuthentication`: a `Bearer` JWT with a valid HS256 signature that has
/// not expired, whose `sub` is an existing user and whose `session_id` (if any) is a live
/// session.
pub fn authenticate(backend: &Backend, headers: &HeaderMap) -> Result<Caller, AuthError> {
    let token = bearer_token(headers).ok_or_else(|| {
        AuthError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            code::NO_AUTHORIZATION,
            "This endpoint requires a valid Bearer token",
        )
    })?;
    let bad_jwt = |detail: &str| {
        AuthError::forbidden(
            code::BAD_JWT,
            format!("invalid JWT: unable to parse or verify signature, {detail}"),
        )
    };
    let claims: Value =
        crate::jwt::decode(token, backend.keys.jwt_secret.as_bytes()).map_err(|e| match e {
            crate::jwt::JwtError::Signature => bad_jwt("token signature is invalid"),
            crate::jwt::JwtError::Algorithm => bad_jwt("token is unverifiable"),
            _ => bad_jwt("token is malformed"),
        })?;
    if let Some(exp) = claims.get("exp") {
        let exp = exp
            .as_f64()
            .ok_or_else(|| bad_jwt("token has invalid claims: token contains an invalid number"))?;
        if (backend.clock.now_secs() as f64) >= exp {
            return Err(bad_jwt("token has invalid claims: token is expired"));
        }
    }
    let sub = claims.get("sub").and_then(Value::as_str).unwrap_or("");
    if sub.is_empty() {
        return Err(AuthError::forbidden(
            code::BAD_JWT,
            "invalid claim: missing sub claim",
        ));
    }
    if uuid::Uuid::parse_str(sub).is_err() {
        return Err(AuthError::bad_request(
            code::BAD_JWT,
            "invalid claim: sub claim must be a UUID",
        ));
    }
    let session_id = claims
        .get("session_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && *s != uuid::Uuid::nil().to_string())
        .map(str::to_string);
    if let Some(session) = &session_id
        && uuid::Uuid::parse_str(session).is_err()
    {
        return Err(AuthError::forbidden(
            code::BAD_JWT,
            "invalid claim: session_id claim must be a UUID",
        ));
    }
    let sub = sub.to_string();
    let session_for_lookup = session_id.clone();
    let (user, session_exists) = backend.db.call(move |c| {
        let user = users::find_by_id(c, &sub)?;
        let session_exists = match &session_for_lookup {
            Some(session) => c
                .query_row(
                    "SELECT 1 FROM auth_sessions WHERE id = ?1",
                    [session],
                    |_| Ok(()),
                )
                .optional()?
                .is_some(),
            None => true,
        };
        Ok((user, session_exists))
    })?;
    let user = user.ok_or_else(users::user_gone)?;
    if !session_exists {
        return Err(AuthError::forbidden(
            code::SESSION_NOT_FOUND,
            "Session from session_id claim in JWT does not exist",
        ));
    }
    let aud = match claims.get("aud") {
        Some(Value::String(a)) => a.clone(),
        Some(Value::Array(list)) => list
            .first()
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        _ => String::new(),
    };
    Ok(Caller {
        user,
        session_id,
        aud,
    })
}

/// GoTrue's `bearerRegexp`: `(?i)^bearer (\S+$)`.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case("bearer ") || token.is_empty() {
        return None;
    }
    if token.chars().any(char::is_whitespace) {
        return None;
    }
    Some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_look_like_gotrues() {
        let t = new_refresh_token();
        assert!(validate_refresh_token_format(&t).is_ok(), "{t}");
        assert_ne!(t, new_refresh_token());
        assert!(validate_refresh_token_format("short").is_err());
        assert!(validate_refresh_token_format("ABCDEFGHIJKL").is_err());
        assert!(validate_refresh_token_format("abcdefghijklm").is_err());
    }

    #[test]
    fn bearer_is_parsed_like_gotrue() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer_token(&h), None);
        h.insert("authorization", "Bearer abc.def".parse().unwrap());
        assert_eq!(bearer_token(&h), Some("abc.def"));
        h.insert("authorization", "bearer abc".parse().unwrap());
        assert_eq!(bearer_token(&h), Some("abc"));
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer_token(&h), None);
        h.insert("authorization", "Bearer a b".parse().unwrap());
        assert_eq!(bearer_token(&h), None);
    }
}

//! The password and token routes: `POST /signup` (`signup.go`), `POST /token` with
//! `grant_type=password|refresh_token|pkce` (`token.go`, `token_refresh.go`), and the
//! authenticated `GET /user` and `POST /logout` (`user.go`, `logout.go`). It owns request
//! validation and the order of GoTrue's checks; the records live in `users` and
//! `sessions`. It never logs a password or a token.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::errors::{AuthError, code, null_as_default, parse_json};
use super::sessions::{self, LogoutScope, SignInMethod};
use super::users::{self, EMAIL_PROVIDER};
use crate::server::Backend;

const INVALID_LOGIN: &str = "Invalid login credentials";

#[derive(Deserialize)]
struct SignupParams {
    #[serde(default, deserialize_with = "null_as_default")]
    email: String,
    #[serde(default, deserialize_with = "null_as_default")]
    phone: String,
    #[serde(default, deserialize_with = "null_as_default")]
    password: String,
    #[serde(default, deserialize_with = "null_as_default")]
    data: Option<Map<String, Value>>,
    #[serde(default, deserialize_with = "null_as_default")]
    code_challenge: String,
    #[serde(default, deserialize_with = "null_as_default")]
    code_challenge_method: String,
}

/// `POST /signup` `{email, password, data?}`: creates a confirmed user and answers with
/// a session (GoTrue with auto-confirm on).
pub async fn signup(State(backend): State<Backend>, body: Bytes) -> Result<Json<Value>, AuthError> {
    let params: SignupParams = parse_json(&body)?;
    if params.email.is_empty() && params.phone.is_empty() {
        return Err(AuthError::unprocessable(
            code::ANONYMOUS_PROVIDER_DISABLED,
            "Anonymous sign-ins are disabled",
        ));
    }
    if params.password.is_empty() {
        return Err(AuthError::validation("Signup requires a valid password"));
    }
    users::check_password_strength(&params.password)?;
    if !params.email.is_empty() && !params.phone.is_empty() {
        return Err(AuthError::validation(
            "Only an email address or phone number should be provided on signup.",
        ));
    }
    super::oauth::validate_pkce_params(&params.code_challenge_method, &params.code_challenge)?;
    if params.email.is_empty() {
        return Err(AuthError::bad_request(
            code::PHONE_PROVIDER_DISABLED,
            "Phone signups are disabled",
        ));
    }
    let email = users::validate_email(&params.email)?;
    let lookup = email.clone();
    if backend
        .db
        .call(move |c| users::find_by_email(c, &lookup))?
        .is_some()
    {
        return Err(user_exists());
    }
    let hash = users::hash_password_blocking(params.password).await?;

    let data = params.data.unwrap_or_default();
    let mut identity_data = json!({
        "email": email,
        "email_verified": false,
        "phone_verified": false,
    });
    for (k, v) in &data {
        if identity_data.get(k).is_none() {
            identity_data[k] = v.clone();
        }
    }
    let mut user_metadata = Value::Object(data);
    user_metadata["email_verified"] = json!(true);
    let now = backend.clock.now_ms();
    let issued = backend.db.call(move |c| {
        let tx = c.transaction()?;
        // Checked again inside the transaction: two signups may race past the first check.
        if users::find_by_email(&tx, &email)?.is_some() {
            return Ok(None);
        }
        let user_id = users::insert(
            &tx,
            users::NewUser {
                email: &email,
                password_hash: Some(&hash),
                provider: EMAIL_PROVIDER,
                provider_id: None,
                identity_data,
                user_metadata,
            },
            now,
        )?;
        let issued = sessions::start(
            &tx,
            &user_id,
            SignInMethod::Password,
            Some(EMAIL_PROVIDER),
            now,
        )?;
        tx.commit()?;
        Ok(issued)
    })?;
    let issued = issued.ok_or_else(user_exists)?;
    Ok(Json(sessions::session_response(&backend, &issued)))
}

fn user_exists() -> AuthError {
    AuthError::unprocessable(code::USER_ALREADY_EXISTS, "User already registered")
}

/// `POST /token?grant_type=...`. GoTrue reads `grant_type` from the query (or a form
/// body); the parameters come from the JSON body.
pub async fn token(
    State(backend): State<Backend>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Json<Value>, AuthError> {
    let session = match query.get("grant_type").map(String::as_str) {
        Some("password") => password_grant(&backend, &body).await?,
        Some("refresh_token") => refresh_grant(&backend, &body)?,
        Some("pkce") => super::oauth::pkce_grant(&backend, &body).await?,
        _ => {
            return Err(AuthError::bad_request(
                code::INVALID_CREDENTIALS,
                "unsupported_grant_type",
            ));
        }
    };
    Ok(Json(session))
}

#[derive(Deserialize)]
struct PasswordGrantParams {
    #[serde(default, deserialize_with = "null_as_default")]
    email: String,
    #[serde(default, deserialize_with = "null_as_default")]
    phone: String,
    #[serde(default, deserialize_with = "null_as_default")]
    password: String,
}

async fn password_grant(backend: &Backend, body: &Bytes) -> Result<Value, AuthError> {
    let params: PasswordGrantParams = parse_json(body)?;
    if !params.email.is_empty() && !params.phone.is_empty() {
        return Err(AuthError::validation(
            "Only an email address or phone number should be provided on login.",
        ));
    }
    if params.email.is_empty() {
        if params.phone.is_empty() {
            return Err(AuthError::validation("missing email or phone"));
        }
        return Err(AuthError::unprocessable(
            code::PHONE_PROVIDER_DISABLED,
            "Phone logins are disabled",
        ));
    }
    let invalid = || AuthError::bad_request(code::INVALID_CREDENTIALS, INVALID_LOGIN);
    let email = params.email.clone();
    let user = backend
        .db
        .call(move |c| users::find_by_email(c, &email))?
        .ok_or_else(invalid)?;
    let hash = user.password_hash.clone().ok_or_else(invalid)?;
    if !users::verify_password_blocking(hash, params.password).await {
        return Err(invalid());
    }
    if user.email_confirmed_at.is_none() {
        return Err(AuthError::bad_request(
            code::EMAIL_NOT_CONFIRMED,
            "Email not confirmed",
        ));
    }
    let now = backend.clock.now_ms();
    let user_id = user.id.clone();
    let issued = backend.db.call(move |c| {
        let tx = c.transaction()?;
        let issued = sessions::start(
            &tx,
            &user_id,
            SignInMethod::Password,
            Some(EMAIL_PROVIDER),
            now,
        )?;
        tx.commit()?;
        Ok(issued)
    })?;
    let issued = issued.ok_or_else(invalid)?;
    Ok(sessions::session_response(backend, &issued))
}

#[derive(Deserialize)]
struct RefreshGrantParams {
    #[serde(default, deserialize_with = "null_as_default")]
    refresh_token: String,
}

fn refresh_grant(backend: &Backend, body: &Bytes) -> Result<Value, AuthError> {
    let params: RefreshGrantParams = parse_json(body)?;
    sessions::validate_refresh_token_format(&params.refresh_token)?;
    let now = backend.clock.now_ms();
    let interval =
        i64::try_from(backend.config.refresh_reuse_interval.as_millis()).unwrap_or(i64::MAX / 2);
    let token = params.refresh_token;
    let outcome = backend
        .db
        .call(move |c| sessions::refresh(c, &token, now, interval))?;
    super::stats::count_refresh(backend, outcome.as_ref().err().copied());
    let issued = outcome?;
    Ok(sessions::session_response(backend, &issued))
}

/// `GET /user`: the caller's user.
pub async fn get_user(
    State(backend): State<Backend>,
    headers: HeaderMap,
) -> Result<Json<Value>, AuthError> {
    let caller = sessions::authenticate(&backend, &headers)?;
    let requested_aud = headers
        .get("x-jwt-aud")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .unwrap_or("authenticated");
    if caller.aud != requested_aud {
        return Err(AuthError::validation(
            "Token audience doesn't match request audience",
        ));
    }
    Ok(Json(caller.user.to_json()))
}

/// `POST /logout?scope=global|local|others` (the scope is read from the query only;
/// default `global`): 204.
pub async fn logout(
    State(backend): State<Backend>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, AuthError> {
    let caller = sessions::authenticate(&backend, &headers)?;
    let scope = match query.get("scope").map(String::as_str) {
        None | Some("") | Some("global") => LogoutScope::Global,
        Some("local") => LogoutScope::Local,
        Some("others") => LogoutScope::Others,
        Some(other) => {
            return Err(AuthError::validation(format!(
                "Unsupported logout scope {other:?}"
            )));
        }
    };
    let user_id = caller.user.id.clone();
    let session_id = caller.session_id.clone();
    backend
        .db
        .call(move |c| sessions::logout(c, &user_id, session_id.as_deref(), scope))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

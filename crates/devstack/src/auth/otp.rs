//! Email one-time codes and the developer mailbox: `POST /otp`, `POST /verify`
//! (`otp.go`, `magic_link.go`, `verify.go`) and `GET /devstack/mailbox/{email}`. Codes are
//! six digits, stored only as a SHA-256 of email and code, single use, and expire after
//! `config.otp_ttl`; the mailbox keeps the messages a real mailer would have sent. It
//! never sends real mail and never logs a code.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use rand::Rng;
use rusqlite::{Connection, params};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::errors::{AuthError, code, null_as_default, parse_json};
use super::sessions::{self, SignInMethod};
use super::users::{self, EMAIL_PROVIDER};
use crate::server::Backend;

/// What a code was sent for; GoTrue keeps one pending code per user and purpose.
const KIND_MAGICLINK: &str = "magiclink";
const KIND_SIGNUP: &str = "signup";

fn token_hash(email: &str, code: &str) -> String {
    hex::encode(Sha256::digest(format!("{email}{code}").as_bytes()))
}

fn otp_invalid() -> AuthError {
    AuthError::forbidden(code::OTP_EXPIRED, "Token has expired or is invalid")
}

#[derive(Deserialize)]
struct OtpParams {
    #[serde(default, deserialize_with = "null_as_default")]
    email: String,
    #[serde(default, deserialize_with = "null_as_default")]
    phone: String,
    #[serde(default = "default_true", deserialize_with = "null_as_true")]
    create_user: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    data: Option<Map<String, Value>>,
    #[serde(default, deserialize_with = "null_as_default")]
    channel: String,
    #[serde(default, deserialize_with = "null_as_default")]
    code_challenge: String,
    #[serde(default, deserialize_with = "null_as_default")]
    code_challenge_method: String,
}

fn default_true() -> bool {
    true
}

/// GoTrue pre-sets `create_user` to true, so an explicit `null` leaves it true.
fn null_as_true<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(deserializer)?.unwrap_or(true))
}

/// `POST /otp`: sends a six-digit code to the mailbox, creating (and, as the devstack
/// auto-confirms, confirming) the user when `create_user` allows it.
pub async fn send_otp(
    State(backend): State<Backend>,
    body: Bytes,
) -> Result<Json<Value>, AuthError> {
    let params: OtpParams = parse_json(&body)?;
    if !params.email.is_empty() && !params.phone.is_empty() {
        return Err(AuthError::validation(
            "Only an email address or phone number should be provided",
        ));
    }
    if !params.email.is_empty() && !params.channel.is_empty() {
        return Err(AuthError::validation(
            "Channel should only be specified with Phone OTP",
        ));
    }
    super::oauth::validate_pkce_params(&params.code_challenge_method, &params.code_challenge)?;
    let email = if params.email.is_empty() {
        None
    } else {
        Some(users::validate_email(&params.email)?)
    };
    if !params.create_user
        && let Some(email) = email.clone()
    {
        let exists = backend
            .db
            .call(move |c| users::find_by_email(c, &email))?
            .is_some();
        if !exists {
            return Err(AuthError::unprocessable(
                code::OTP_DISABLED,
                "Signups not allowed for otp",
            ));
        }
    }
    let Some(email) = email else {
        if params.phone.is_empty() {
            return Err(AuthError::validation("One of email or phone must be set"));
        }
        return Err(AuthError::bad_request(
            code::PHONE_PROVIDER_DISABLED,
            "Unsupported phone provider",
        ));
    };

    let now = backend.clock.now_ms();
    let code = format!("{:06}", rand::rng().random_range(0..1_000_000u32));
    let data = params.data.unwrap_or_default();
    let hash = token_hash(&email, &code);
    backend.db.call(move |c| {
        let tx = c.transaction()?;
        if users::find_by_email(&tx, &email)?.is_none() {
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
            let mut metadata = Value::Object(data);
            metadata["email_verified"] = json!(true);
            users::insert(
                &tx,
                users::NewUser {
                    email: &email,
                    password_hash: None,
                    provider: EMAIL_PROVIDER,
                    provider_id: None,
                    identity_data,
                    user_metadata: metadata,
                },
                now,
            )?;
        }
        store_code(&tx, &email, KIND_MAGICLINK, &hash, now)?;
        deliver(
            &tx,
            &email,
            "Your Magic Link",
            &format!(
                "<h2>Magic Link</h2>\n<p>Enter this code to sign in to Rohimaya (local): {code}</p>"
            ),
            &code,
            KIND_MAGICLINK,
            now,
        )?;
        tx.commit()
    })?;
    Ok(Json(json!({})))
}

fn store_code(
    c: &Connection,
    email: &str,
    kind: &str,
    hash: &str,
    now: i64,
) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO auth_one_time_codes (email, kind, token_hash, created_at)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (email, kind) DO UPDATE
         SET token_hash = excluded.token_hash, created_at = excluded.created_at",
        params![email, kind, hash, now],
    )?;
    Ok(())
}

fn deliver(
    c: &Connection,
    to: &str,
    subject: &str,
    body: &str,
    code: &str,
    kind: &str,
    now: i64,
) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO auth_mailbox (recipient, subject, body, code, kind, sent_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![to, subject, body, code, kind, now],
    )?;
    Ok(())
}

#[derive(Deserialize)]
struct VerifyParams {
    #[serde(default, rename = "type", deserialize_with = "null_as_default")]
    kind: String,
    #[serde(default, deserialize_with = "null_as_default")]
    token: String,
    #[serde(default, deserialize_with = "null_as_default")]
    token_hash: String,
    #[serde(default, deserialize_with = "null_as_default")]
    email: String,
    #[serde(default, deserialize_with = "null_as_default")]
    phone: String,
    #[serde(default, deserialize_with = "null_as_default")]
    redirect_to: String,
}

/// `POST /verify` with an email code (`{type, email, token}`) or a link hash
/// (`{type, token_hash}`): a valid, unexpired code is consumed and answered with a
/// session.
pub async fn verify(State(backend): State<Backend>, body: Bytes) -> Result<Json<Value>, AuthError> {
    let params: VerifyParams = parse_json(&body)?;
    if params.kind.is_empty() {
        return Err(AuthError::validation("Verify requires a verification type"));
    }
    if params.token.is_empty() == params.token_hash.is_empty() {
        return Err(AuthError::validation(
            "Verify requires either a token or a token hash",
        ));
    }
    // The purposes whose pending code may answer this verification type.
    let kinds: &[&str] = match params.kind.as_str() {
        "email" => &[KIND_SIGNUP, KIND_MAGICLINK],
        "signup" | "invite" => &[KIND_SIGNUP],
        "magiclink" | "recovery" => &[KIND_MAGICLINK],
        _ => &[],
    };
    let lookup = if !params.token.is_empty() {
        match (params.email.is_empty(), params.phone.is_empty()) {
            (false, true) => {
                let email = users::validate_email(&params.email).map_err(|_| {
                    AuthError::unprocessable(code::VALIDATION_FAILED, "Invalid email format")
                })?;
                let hash = token_hash(&email, &params.token);
                CodeLookup::ByEmail { email, hash }
            }
            // The devstack has no phone provider: no phone code can be valid.
            (true, false) => return Err(otp_invalid()),
            _ => {
                return Err(AuthError::validation(
                    "Only an email address or phone number should be provided on verify",
                ));
            }
        }
    } else {
        if !params.email.is_empty() || !params.phone.is_empty() || !params.redirect_to.is_empty() {
            return Err(AuthError::validation(
                "Only the token_hash and type should be provided",
            ));
        }
        if !matches!(
            params.kind.as_str(),
            "signup" | "invite" | "recovery" | "magiclink" | "email_change" | "email"
        ) {
            return Err(AuthError::validation("Invalid email verification type"));
        }
        CodeLookup::ByHash(params.token_hash.clone())
    };
    let link = matches!(lookup, CodeLookup::ByHash(_));
    let kinds: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
    let now = backend.clock.now_ms();
    let ttl_ms = i64::try_from(backend.config.otp_ttl.as_millis()).unwrap_or(i64::MAX);
    let issued = backend.db.call(move |c| {
        let tx = c.transaction()?;
        let Some(email) = consume_code(&tx, &lookup, &kinds, now, ttl_ms)? else {
            return Ok(None);
        };
        let Some(user) = users::find_by_email(&tx, &email)? else {
            return Ok(None);
        };
        users::confirm_email(&tx, &user.id, now)?;
        let issued = sessions::start(&tx, &user.id, SignInMethod::Otp, Some(EMAIL_PROVIDER), now)?;
        tx.commit()?;
        Ok(issued)
    })?;
    let issued = issued.ok_or_else(|| {
        if link {
            AuthError::forbidden(code::OTP_EXPIRED, "Email link is invalid or has expired")
        } else {
            otp_invalid()
        }
    })?;
    Ok(Json(sessions::session_response(&backend, &issued)))
}

enum CodeLookup {
    ByEmail { email: String, hash: String },
    ByHash(String),
}

/// Finds a pending, unexpired code of one of `kinds`, deletes it (codes are single use)
/// and returns its email.
fn consume_code(
    c: &Connection,
    lookup: &CodeLookup,
    kinds: &[String],
    now: i64,
    ttl_ms: i64,
) -> rusqlite::Result<Option<String>> {
    let hash = match lookup {
        CodeLookup::ByEmail { hash, .. } | CodeLookup::ByHash(hash) => hash,
    };
    for kind in kinds {
        let found: Option<(String, i64)> = rusqlite::OptionalExtension::optional(c.query_row(
            "SELECT email, created_at FROM auth_one_time_codes
             WHERE token_hash = ?1 AND kind = ?2",
            params![hash, kind],
            |r| Ok((r.get(0)?, r.get(1)?)),
        ))?;
        let Some((email, created_at)) = found else {
            continue;
        };
        if let CodeLookup::ByEmail { email: asked, .. } = lookup
            && *asked != email
        {
            continue;
        }
        if now > created_at.saturating_add(ttl_ms) {
            continue;
        }
        c.execute(
            "DELETE FROM auth_one_time_codes WHERE email = ?1 AND kind = ?2",
            params![email, kind],
        )?;
        return Ok(Some(email));
    }
    Ok(None)
}

/// `GET /devstack/mailbox/{email}`: the messages sent to `email`, newest first.
pub async fn mailbox(
    State(backend): State<Backend>,
    Path(email): Path<String>,
) -> Result<Json<Value>, AuthError> {
    let email = email.to_lowercase();
    let messages = backend.db.call(move |c| {
        let mut stmt = c.prepare(
            "SELECT id, recipient, subject, body, code, kind, sent_at
             FROM auth_mailbox WHERE recipient = ?1 ORDER BY id DESC",
        )?;
        let rows = stmt.query_map([&email], |r| {
            Ok(json!({
                "id": r.get::<_, i64>(0)?,
                "to": r.get::<_, String>(1)?,
                "subject": r.get::<_, String>(2)?,
                "body": r.get::<_, String>(3)?,
                "code": r.get::<_, String>(4)?,
                "type": r.get::<_, String>(5)?,
                "sent_at": users::timestamp(r.get::<_, i64>(6)?),
            }))
        })?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
    })?;
    Ok(Json(Value::Array(messages)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_hashed_with_the_email() {
        assert_ne!(
            token_hash("a@x.com", "123456"),
            token_hash("b@x.com", "123456")
        );
        assert_eq!(token_hash("a@x.com", "123456").len(), 64);
    }
}

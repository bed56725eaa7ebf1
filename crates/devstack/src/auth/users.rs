//! Users and identities: the `auth_users` and `auth_identities` tables, GoTrue's user JSON
//! shape, email validation and argon2 password hashing. It owns who exists and how they
//! look on the wire; it never issues sessions or tokens, and never logs a password or a
//! hash.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

use super::errors::{AuthError, code};

/// The providers a user can sign in with.
pub const EMAIL_PROVIDER: &str = "email";

/// GoTrue's `MaxPasswordLength` (bcrypt's limit, kept for compatibility).
const MAX_PASSWORD_LENGTH: usize = 72;
/// GoTrue's default `password.min_length`.
const MIN_PASSWORD_LENGTH: usize = 6;

/// A user row with its identities. Timestamps are milliseconds since the epoch.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub email: String,
    pub password_hash: Option<String>,
    pub email_confirmed_at: Option<i64>,
    pub last_sign_in_at: Option<i64>,
    pub app_metadata: Value,
    pub user_metadata: Value,
    pub created_at: i64,
    pub updated_at: i64,
    pub identities: Vec<Identity>,
}

#[derive(Debug, Clone)]
pub struct Identity {
    pub id: String,
    pub provider_id: String,
    pub user_id: String,
    pub provider: String,
    pub identity_data: Value,
    pub email: Option<String>,
    pub last_sign_in_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl User {
    /// The user as GoTrue serialises `models.User`.
    pub fn to_json(&self) -> Value {
        let mut user = json!({
            "id": self.id,
            "aud": "authenticated",
            "role": "authenticated",
            "email": self.email,
            "phone": "",
            "app_metadata": self.app_metadata,
            "user_metadata": self.user_metadata,
            "identities": self.identities.iter().map(Identity::to_json).collect::<Vec<_>>(),
            "created_at": timestamp(self.created_at),
            "updated_at": timestamp(self.updated_at),
            "is_anonymous": false,
        });
        if let Some(at) = self.email_confirmed_at {
            user["email_confirmed_at"] = json!(timestamp(at));
            user["confirmed_at"] = json!(timestamp(at));
        }
        if let Some(at) = self.last_sign_in_at {
            user["last_sign_in_at"] = json!(timestamp(at));
        }
        user
    }
}

impl Identity {
    /// As GoTrue serialises `models.Identity` (`identity_id` is the row id, `id` the
    /// provider's subject).
    pub fn to_json(&self) -> Value {
        let mut identity = json!({
            "identity_id": self.id,
            "id": self.provider_id,
            "user_id": self.user_id,
            "identity_data": self.identity_data,
            "provider": self.provider,
            "created_at": timestamp(self.created_at),
            "updated_at": timestamp(self.updated_at),
        });
        if let Some(at) = self.last_sign_in_at {
            identity["last_sign_in_at"] = json!(timestamp(at));
        }
        if let Some(email) = &self.email {
            identity["email"] = json!(email);
        }
        identity
    }
}

/// RFC 3339 in UTC, as GoTrue's Go `time.Time` marshals.
pub fn timestamp(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// GoTrue's `validateEmail`: required, at most 255 bytes, checkmail's format; lowercased.
pub fn validate_email(email: &str) -> Result<String, AuthError> {
    if email.is_empty() {
        return Err(AuthError::validation("An email address is required"));
    }
    if email.len() > 255 {
        return Err(AuthError::validation("An email address is too long"));
    }
    if !email_format_ok(email) {
        return Err(AuthError::validation(
            "Unable to validate email address: invalid format",
        ));
    }
    Ok(email.to_lowercase())
}

/// checkmail's pattern: an atext local part, `@`, dot-separated labels of letters, digits
/// and inner hyphens, at most 63 characters each.
fn email_format_ok(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".!#$%&'*+/=?^_`{|}~-".contains(c));
    let domain_ok = !domain.is_empty()
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    local_ok && domain_ok
}

/// GoTrue's `checkPasswordStrength` with the default configuration (minimum length 6, no
/// required characters, no HaveIBeenPwned).
pub fn check_password_strength(password: &str) -> Result<(), AuthError> {
    if password.len() > MAX_PASSWORD_LENGTH {
        return Err(AuthError::validation(format!(
            "Password cannot be longer than {MAX_PASSWORD_LENGTH} characters"
        )));
    }
    if password.len() < MIN_PASSWORD_LENGTH {
        return Err(AuthError::WeakPassword {
            message: format!("Password should be at least {MIN_PASSWORD_LENGTH} characters."),
            reasons: vec!["length"],
        });
    }
    Ok(())
}

/// Hashes a password with argon2id (a fresh random salt). CPU-heavy: call it from
/// `spawn_blocking`.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(AuthError::internal)?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(AuthError::internal)
}

/// Whether `password` matches the stored argon2 `hash`. CPU-heavy: call it from
/// `spawn_blocking`. A corrupt hash never matches.
pub fn verify_password(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Runs a password hash off the async runtime.
pub async fn hash_password_blocking(password: String) -> Result<String, AuthError> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(AuthError::internal)?
}

/// Runs a password check off the async runtime.
pub async fn verify_password_blocking(hash: String, password: String) -> bool {
    tokio::task::spawn_blocking(move || verify_password(&hash, &password))
        .await
        .unwrap_or(false)
}

const USER_COLUMNS: &str = "id, email, password_hash, email_confirmed_at, last_sign_in_at, \
     app_metadata, user_metadata, created_at, updated_at";

fn user_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(0)?,
        email: row.get(1)?,
        password_hash: row.get(2)?,
        email_confirmed_at: row.get(3)?,
        last_sign_in_at: row.get(4)?,
        app_metadata: json_column(row.get::<_, String>(5)?),
        user_metadata: json_column(row.get::<_, String>(6)?),
        created_at: row.get(7)?,
        updated_at: row.get(8)?,
        identities: Vec::new(),
    })
}

/// A JSON column; a corrupt one reads as `{}` rather than failing the request.
fn json_column(text: String) -> Value {
    serde_json::from_str(&text).unwrap_or_else(|_| json!({}))
}

pub fn find_by_email(c: &Connection, email: &str) -> rusqlite::Result<Option<User>> {
    let user = c
        .query_row(
            &format!("SELECT {USER_COLUMNS} FROM auth_users WHERE email = lower(?1)"),
            [email],
            user_from_row,
        )
        .optional()?;
    with_identities(c, user)
}

pub fn find_by_id(c: &Connection, id: &str) -> rusqlite::Result<Option<User>> {
    let user = c
        .query_row(
            &format!("SELECT {USER_COLUMNS} FROM auth_users WHERE id = ?1"),
            [id],
            user_from_row,
        )
        .optional()?;
    with_identities(c, user)
}

fn with_identities(c: &Connection, user: Option<User>) -> rusqlite::Result<Option<User>> {
    let Some(mut user) = user else {
        return Ok(None);
    };
    let mut stmt = c.prepare(
        "SELECT id, provider_id, user_id, provider, identity_data, email, last_sign_in_at,
                created_at, updated_at
         FROM auth_identities WHERE user_id = ?1 ORDER BY created_at, rowid",
    )?;
    user.identities = stmt
        .query_map([&user.id], |row| {
            Ok(Identity {
                id: row.get(0)?,
                provider_id: row.get(1)?,
                user_id: row.get(2)?,
                provider: row.get(3)?,
                identity_data: json_column(row.get::<_, String>(4)?),
                email: row.get(5)?,
                last_sign_in_at: row.get(6)?,
                created_at: row.get(7)?,
                updated_at: row.get(8)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some(user))
}

/// What a new user starts with.
pub struct NewUser<'a> {
    pub email: &'a str,
    pub password_hash: Option<&'a str>,
    /// The first identity's provider (`email`, `google`, ...).
    pub provider: &'a str,
    pub provider_id: Option<&'a str>,
    pub identity_data: Value,
    pub user_metadata: Value,
}

/// Creates a confirmed user (the devstack auto-confirms, like GoTrue with
/// `MAILER_AUTOCONFIRM`) and its first identity. Returns the user id.
pub fn insert(c: &Connection, new: NewUser<'_>, now: i64) -> rusqlite::Result<String> {
    let id = uuid::Uuid::new_v4().to_string();
    let app_metadata = json!({ "provider": new.provider, "providers": [new.provider] });
    c.execute(
        "INSERT INTO auth_users (id, email, password_hash, email_confirmed_at, last_sign_in_at,
                                 app_metadata, user_metadata, created_at, updated_at)
         VALUES (?1, lower(?2), ?3, ?4, NULL, ?5, ?6, ?4, ?4)",
        params![
            id,
            new.email,
            new.password_hash,
            now,
            app_metadata.to_string(),
            new.user_metadata.to_string(),
        ],
    )?;
    let provider_id = new.provider_id.unwrap_or(&id).to_string();
    let mut identity_data = new.identity_data;
    if new.provider == EMAIL_PROVIDER {
        identity_data["sub"] = json!(id);
    }
    insert_identity(c, &id, new.provider, &provider_id, &identity_data, now)?;
    Ok(id)
}

/// Links a new identity to a user and adds its provider to `app_metadata.providers`.
pub fn insert_identity(
    c: &Connection,
    user_id: &str,
    provider: &str,
    provider_id: &str,
    identity_data: &Value,
    now: i64,
) -> rusqlite::Result<()> {
    let email = identity_data
        .get("email")
        .and_then(Value::as_str)
        .map(str::to_lowercase);
    c.execute(
        "INSERT INTO auth_identities (id, provider_id, user_id, provider, identity_data, email,
                                      last_sign_in_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?7)",
        params![
            uuid::Uuid::new_v4().to_string(),
            provider_id,
            user_id,
            provider,
            identity_data.to_string(),
            email,
            now,
        ],
    )?;
    update_providers(c, user_id, now)
}

/// GoTrue's `UpdateAppMetaDataProviders`: `providers` lists every linked identity's
/// provider, in link order; `provider` stays the first one.
fn update_providers(c: &Connection, user_id: &str, now: i64) -> rusqlite::Result<()> {
    let mut stmt = c.prepare(
        "SELECT provider FROM auth_identities WHERE user_id = ?1 ORDER BY created_at, rowid",
    )?;
    let mut providers: Vec<String> = Vec::new();
    for provider in stmt.query_map([user_id], |r| r.get::<_, String>(0))? {
        let provider = provider?;
        if !providers.contains(&provider) {
            providers.push(provider);
        }
    }
    let current: String = c.query_row(
        "SELECT app_metadata FROM auth_users WHERE id = ?1",
        [user_id],
        |r| r.get(0),
    )?;
    let mut app_metadata = json_column(current);
    if !app_metadata.is_object() {
        app_metadata = json!({});
    }
    if app_metadata.get("provider").is_none() {
        app_metadata["provider"] = json!(providers.first());
    }
    app_metadata["providers"] = json!(providers);
    c.execute(
        "UPDATE auth_users SET app_metadata = ?2, updated_at = ?3 WHERE id = ?1",
        params![user_id, app_metadata.to_string(), now],
    )?;
    Ok(())
}

/// Marks the email confirmed (if it is not yet) and sets `user_metadata.email_verified`,
/// as GoTrue's `User.Confirm` does.
pub fn confirm_email(c: &Connection, user_id: &str, now: i64) -> rusqlite::Result<()> {
    let metadata: String = c.query_row(
        "SELECT user_metadata FROM auth_users WHERE id = ?1",
        [user_id],
        |r| r.get(0),
    )?;
    let mut metadata = json_column(metadata);
    if !metadata.is_object() {
        metadata = json!({});
    }
    metadata["email_verified"] = json!(true);
    c.execute(
        "UPDATE auth_users
         SET email_confirmed_at = COALESCE(email_confirmed_at, ?2), user_metadata = ?3,
             updated_at = ?2
         WHERE id = ?1",
        params![user_id, now, metadata.to_string()],
    )?;
    Ok(())
}

/// Records a sign-in on the user (and on the identity of `provider`, if given).
pub fn record_sign_in(
    c: &Connection,
    user_id: &str,
    provider: Option<&str>,
    now: i64,
) -> rusqlite::Result<()> {
    c.execute(
        "UPDATE auth_users SET last_sign_in_at = ?2, updated_at = ?2 WHERE id = ?1",
        params![user_id, now],
    )?;
    if let Some(provider) = provider {
        c.execute(
            "UPDATE auth_identities SET last_sign_in_at = ?3, updated_at = ?3
             WHERE user_id = ?1 AND provider = ?2",
            params![user_id, provider, now],
        )?;
    }
    Ok(())
}

/// The error GoTrue answers when the user of a valid token has gone.
pub fn user_gone() -> AuthError {
    AuthError::forbidden(
        code::USER_NOT_FOUND,
        "User from sub claim in JWT does not exist",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_validation_follows_checkmail() {
        assert_eq!(
            validate_email("Ada@Example.COM").ok(),
            Some("ada@example.com".into())
        );
        assert!(validate_email("a.b+c@x").is_ok());
        for bad in [
            "",
            "no-at",
            "@x.com",
            "a@",
            "a b@x.com",
            "a@-x.com",
            "a@x..com",
        ] {
            assert!(validate_email(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn password_strength_is_gotrues_default() {
        assert!(matches!(
            check_password_strength("12345"),
            Err(AuthError::WeakPassword { .. })
        ));
        assert!(check_password_strength("123456").is_ok());
        assert!(matches!(
            check_password_strength(&"x".repeat(73)),
            Err(AuthError::Http { .. })
        ));
    }

    #[test]
    fn passwords_hash_and_verify() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password(&hash, "correct horse"));
        assert!(!verify_password(&hash, "wrong horse"));
        assert!(!verify_password("not a hash", "correct horse"));
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(timestamp(1_500), "1970-01-01T00:00:01.5Z");
    }
}

//! The devstack's secrets, generated on first start and kept in the `meta` table so a
//! restart keeps every issued token and URL valid: the JWT secret, the anon and
//! service-role API keys (JWTs signed with it, as Supabase's are) and the S3 credentials.
//! It never logs them; the CLI prints only what a client needs (anon key, S3 keys).

use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::json;

use crate::db::Db;

#[derive(Clone)]
pub struct Keys {
    pub jwt_secret: String,
    pub anon_key: String,
    pub service_role_key: String,
    pub s3_access_key: String,
    pub s3_secret_key: String,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys { .. }")
    }
}

impl Keys {
    pub fn load_or_create(db: &Db) -> rusqlite::Result<Self> {
        let jwt_secret = get_or(db, "jwt_secret", || random(40))?;
        let anon_key = get_or(db, "anon_key", || api_key(&jwt_secret, "anon"))?;
        let service_role_key = get_or(db, "service_role_key", || {
            api_key(&jwt_secret, "service_role")
        })?;
        let s3_access_key = get_or(db, "s3_access_key", || random(20).to_uppercase())?;
        let s3_secret_key = get_or(db, "s3_secret_key", || random(40))?;
        Ok(Self {
            jwt_secret,
            anon_key,
            service_role_key,
            s3_access_key,
            s3_secret_key,
        })
    }

    /// Whether `apikey` is one of this project's API keys.
    pub fn is_api_key(&self, apikey: &str) -> bool {
        apikey == self.anon_key || apikey == self.service_role_key
    }
}

fn get_or(db: &Db, key: &str, make: impl FnOnce() -> String) -> rusqlite::Result<String> {
    if let Some(v) = db.meta_get(key)? {
        return Ok(v);
    }
    let v = make();
    db.meta_set(key, &v)?;
    Ok(v)
}

fn random(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

fn api_key(secret: &str, role: &str) -> String {
    // Supabase's API keys are long-lived JWTs with `role` and no user.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    crate::jwt::sign(
        &json!({"iss": "supabase-devstack", "ref": "devstack", "role": role, "iat": now, "exp": now + 10 * 365 * 24 * 3600}),
        secret.as_bytes(),
    )
}

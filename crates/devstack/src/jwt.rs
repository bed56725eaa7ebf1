//! HS256 JSON Web Tokens as Supabase issues them: `{"alg":"HS256","typ":"JWT"}` headers,
//! base64url without padding, HMAC-SHA256 over `header.payload`. It signs and verifies;
//! it never decides who may do what (the auth and API modules read the claims).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::Sha256;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    #[error("token is not a well-formed JWT")]
    Malformed,
    #[error("token uses an unsupported algorithm")]
    Algorithm,
    #[error("token signature is invalid")]
    Signature,
    #[error("token has expired")]
    Expired,
    #[error("token audience is not accepted")]
    Audience,
}

/// Access-token claims as GoTrue writes them.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct AccessClaims {
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub iss: String,
    pub email: String,
    pub phone: String,
    pub role: String,
    pub aal: String,
    pub session_id: String,
    pub is_anonymous: bool,
    #[serde(default)]
    pub app_metadata: serde_json::Value,
    #[serde(default)]
    pub user_metadata: serde_json::Value,
    #[serde(default)]
    pub amr: serde_json::Value,
}

pub fn sign<C: Serialize>(claims: &C, secret: &[u8]) -> String {
    let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = B64.encode(serde_json::to_vec(claims).unwrap_or_default());
    let signing_input = format!("{header}.{payload}");
    let sig = B64.encode(mac(secret, signing_input.as_bytes()));
    format!("{signing_input}.{sig}")
}

/// Checks the signature and algorithm and decodes the claims. Expiry and audience are
/// the caller's to check (see [`verify_access`]).
pub fn decode<C: DeserializeOwned>(token: &str, secret: &[u8]) -> Result<C, JwtError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let header: serde_json::Value =
        serde_json::from_slice(&B64.decode(h).map_err(|_| JwtError::Malformed)?)
            .map_err(|_| JwtError::Malformed)?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
        return Err(JwtError::Algorithm);
    }
    let sig = B64.decode(s).map_err(|_| JwtError::Malformed)?;
    let mut m = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| JwtError::Signature)?;
    m.update(h.as_bytes());
    m.update(b".");
    m.update(p.as_bytes());
    m.verify_slice(&sig).map_err(|_| JwtError::Signature)?;
    serde_json::from_slice(&B64.decode(p).map_err(|_| JwtError::Malformed)?)
        .map_err(|_| JwtError::Malformed)
}

/// Verifies an access token: HS256 signature, `aud == "authenticated"`, not expired at
/// `now_secs`.
pub fn verify_access(token: &str, secret: &[u8], now_secs: i64) -> Result<AccessClaims, JwtError> {
    let claims: AccessClaims = decode(token, secret)?;
    if claims.aud != "authenticated" {
        return Err(JwtError::Audience);
    }
    if claims.exp <= now_secs {
        return Err(JwtError::Expired);
    }
    Ok(claims)
}

fn mac(secret: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64, aud: &str) -> AccessClaims {
        AccessClaims {
            sub: "u1".into(),
            aud: aud.into(),
            exp,
            iat: 0,
            iss: "test".into(),
            email: "a@b.c".into(),
            phone: String::new(),
            role: "authenticated".into(),
            aal: "aal1".into(),
            session_id: "s1".into(),
            is_anonymous: false,
            app_metadata: serde_json::json!({}),
            user_metadata: serde_json::json!({}),
            amr: serde_json::json!([]),
        }
    }

    #[test]
    fn round_trip_and_checks() {
        let t = sign(&claims(100, "authenticated"), b"secret");
        assert_eq!(
            verify_access(&t, b"secret", 50).map(|c| c.sub),
            Ok("u1".into())
        );
        assert_eq!(verify_access(&t, b"secret", 100), Err(JwtError::Expired));
        assert_eq!(verify_access(&t, b"other", 50), Err(JwtError::Signature));
        let anon = sign(&claims(100, "anon"), b"secret");
        assert_eq!(verify_access(&anon, b"secret", 50), Err(JwtError::Audience));
        assert_eq!(
            verify_access("a.b", b"secret", 50),
            Err(JwtError::Malformed)
        );
    }

    #[test]
    fn tampered_payload_is_refused() {
        let t = sign(&claims(100, "authenticated"), b"secret");
        let mut parts: Vec<&str> = t.split('.').collect();
        let other = B64.encode(br#"{"sub":"someone-else"}"#);
        parts[1] = &other;
        assert_eq!(
            decode::<serde_json::Value>(&parts.join("."), b"secret"),
            Err(JwtError::Signature)
        );
    }
}

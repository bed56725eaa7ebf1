//! The session store: where a signed-in session survives a restart.
//!
//! It owns [`Secret`] (a token that never shows in `Debug`, logs or panics), the stored
//! record [`StoredSession`] (only `{refresh_token, user_id, email, expires_at}`, well under
//! 1 KB so it fits every OS store, Windows' 2,560-byte cap included) and the stores:
//! [`KeyringStore`], the OS keyring through the `keyring` crate (Keychain, Credential
//! Manager, Secret Service), and, for tests only, `MemoryStore`.
//!
//! It must never write a token anywhere else: there is no plaintext fallback. When the
//! keyring is unavailable the store says why ([`StoreError::Unavailable`]) and the session
//! lives for this run only (see `auth`). Every method blocks (the OS stores are
//! synchronous): async callers run them on a blocking thread.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A token or other credential. `Debug` prints `[redacted]`; there is no `Display`, so it
/// cannot end up in a message by accident. Read it with [`Secret::expose`] only where it
/// goes on the wire or into the store.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the wire or the store. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// What the keyring holds for one profile. Never the access token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSession {
    pub refresh_token: Secret,
    pub user_id: String,
    pub email: String,
    /// When the access token issued with this refresh token expires (Unix seconds).
    pub expires_at: i64,
}

impl fmt::Debug for StoredSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredSession")
            .field("refresh_token", &self.refresh_token)
            .field("user_id", &self.user_id)
            .field("email", &self.email)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The largest entry this module writes.
pub const MAX_ENTRY_BYTES: usize = 1024;

impl StoredSession {
    fn encode(&self) -> Result<String, StoreError> {
        let text = serde_json::to_string(self).map_err(|_| StoreError::TooLarge)?;
        if text.len() > MAX_ENTRY_BYTES {
            return Err(StoreError::TooLarge);
        }
        Ok(text)
    }

    fn decode(text: &str) -> Result<Self, StoreError> {
        // The parse error could quote the input: never pass it on.
        serde_json::from_str(text).map_err(|_| StoreError::Corrupt)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// No usable keyring: none installed or running, locked, or access denied.
    #[error("{detail}")]
    Unavailable { detail: String },
    /// The entry exists but is not a session this version wrote.
    #[error("the saved session is unreadable")]
    Corrupt,
    /// The session record is over [`MAX_ENTRY_BYTES`].
    #[error("the session record is too large for the keyring")]
    TooLarge,
}

/// Where sessions are kept, one entry per key (a profile and its data directory, see
/// `auth::session_key`). Methods block.
pub trait SessionStore: Send + Sync {
    /// The session saved under `key`, if any.
    fn load(&self, key: &str) -> Result<Option<StoredSession>, StoreError>;
    /// Replaces the session saved under `key`.
    fn save(&self, key: &str, session: &StoredSession) -> Result<(), StoreError>;
    /// Removes the session saved under `key`; no entry is not an error.
    fn clear(&self, key: &str) -> Result<(), StoreError>;
}

/// The keyring service name entries are filed under (the account is `session:{key}`).
pub const KEYRING_SERVICE: &str = "app.rohimaya.desktop";

/// The OS keyring: Keychain (macOS), Credential Manager (Windows), Secret Service
/// (Linux and BSD, e.g. GNOME Keyring or KWallet).
#[derive(Debug, Clone)]
pub struct KeyringStore {
    service: String,
}

impl Default for KeyringStore {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyringStore {
    pub fn new() -> Self {
        Self {
            service: KEYRING_SERVICE.to_string(),
        }
    }

    fn entry(&self, profile: &str) -> Result<keyring::Entry, StoreError> {
        keyring::Entry::new(&self.service, &format!("session:{profile}")).map_err(|e| {
            let e = match (&e, keyring::Entry::store_status()) {
                (keyring::Error::NoDefaultStore, Err(init)) => describe(init),
                _ => describe(&e),
            };
            StoreError::Unavailable { detail: e }
        })
    }
}

/// A keyring error in words, without ever echoing stored bytes.
fn describe(e: &keyring::Error) -> String {
    use keyring::Error as K;
    let hint = if cfg!(target_os = "linux") || cfg!(target_os = "freebsd") {
        " (is a Secret Service such as GNOME Keyring or KWallet running and unlocked in \
         this desktop session?)"
    } else {
        ""
    };
    match e {
        K::NoDefaultStore => format!("no OS keyring is available{hint}"),
        K::PlatformFailure(p) => format!("the OS keyring failed: {p}{hint}"),
        K::NoStorageAccess(p) => format!("the OS keyring is locked or denied access: {p}"),
        K::BadEncoding(_) | K::BadDataFormat(..) => "the keyring entry is unreadable".into(),
        K::BadStoreFormat(d) => format!("the OS keyring is damaged: {d}"),
        K::TooLong(name, limit) => format!("the keyring refused {name} longer than {limit}"),
        K::Invalid(name, why) => format!("the keyring refused {name}: {why}"),
        K::Ambiguous(_) => "the keyring holds several Rohimaya sessions for this profile".into(),
        K::NoEntry => "no saved session".into(),
        other => format!("the OS keyring failed: {other}{hint}"),
    }
}

impl SessionStore for KeyringStore {
    fn load(&self, profile: &str) -> Result<Option<StoredSession>, StoreError> {
        match self.entry(profile)?.get_password() {
            Ok(text) => StoredSession::decode(&text).map(Some),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(keyring::Error::BadEncoding(_) | keyring::Error::BadDataFormat(..)) => {
                Err(StoreError::Corrupt)
            }
            Err(e) => Err(StoreError::Unavailable {
                detail: describe(&e),
            }),
        }
    }

    fn save(&self, profile: &str, session: &StoredSession) -> Result<(), StoreError> {
        let text = session.encode()?;
        self.entry(profile)?
            .set_password(&text)
            .map_err(|e| StoreError::Unavailable {
                detail: describe(&e),
            })
    }

    fn clear(&self, profile: &str) -> Result<(), StoreError> {
        match self.entry(profile)?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(StoreError::Unavailable {
                detail: describe(&e),
            }),
        }
    }
}

/// A store in memory, for tests only: it forgets everything at exit. `unavailable`
/// stands in for a machine without a keyring.
#[cfg(any(test, feature = "test-support"))]
#[derive(Debug, Default)]
pub struct MemoryStore {
    entries: std::sync::Mutex<std::collections::HashMap<String, String>>,
    unavailable: Option<String>,
}

#[cfg(any(test, feature = "test-support"))]
impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that fails every call as a missing keyring does.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self {
            unavailable: Some(detail.into()),
            ..Self::default()
        }
    }

    fn check(&self) -> Result<(), StoreError> {
        match &self.unavailable {
            Some(detail) => Err(StoreError::Unavailable {
                detail: detail.clone(),
            }),
            None => Ok(()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, String>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(any(test, feature = "test-support"))]
impl SessionStore for MemoryStore {
    fn load(&self, profile: &str) -> Result<Option<StoredSession>, StoreError> {
        self.check()?;
        self.entries()
            .get(profile)
            .map(|text| StoredSession::decode(text))
            .transpose()
    }

    fn save(&self, profile: &str, session: &StoredSession) -> Result<(), StoreError> {
        self.check()?;
        let text = session.encode()?;
        self.entries().insert(profile.to_string(), text);
        Ok(())
    }

    fn clear(&self, profile: &str) -> Result<(), StoreError> {
        self.check()?;
        self.entries().remove(profile);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StoredSession {
        StoredSession {
            refresh_token: Secret::new("abcdefghijkl"),
            user_id: "1b4e28ba-2fa1-11d2-883f-0016d3cca427".into(),
            email: "author@example.com".into(),
            expires_at: 1_900_000_000,
        }
    }

    #[test]
    fn debug_never_shows_the_token() {
        let text = format!("{:?}", sample());
        assert!(!text.contains("abcdefghijkl"), "{text}");
        assert!(text.contains("[redacted]"), "{text}");
    }

    #[test]
    fn entry_holds_only_the_four_fields_and_stays_small() {
        let text = sample().encode().unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut keys: Vec<_> = value.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["email", "expires_at", "refresh_token", "user_id"]);
        assert!(text.len() < MAX_ENTRY_BYTES);
        let mut big = sample();
        big.email = "x".repeat(2000);
        assert_eq!(big.encode(), Err(StoreError::TooLarge));
    }

    #[test]
    fn memory_store_round_trips_and_can_be_unavailable() {
        let store = MemoryStore::new();
        assert_eq!(store.load("p").unwrap(), None);
        store.save("p", &sample()).unwrap();
        assert_eq!(store.load("p").unwrap(), Some(sample()));
        store.clear("p").unwrap();
        store.clear("p").unwrap();
        assert_eq!(store.load("p").unwrap(), None);
        let none = MemoryStore::unavailable("no keyring");
        assert!(matches!(
            none.save("p", &sample()),
            Err(StoreError::Unavailable { .. })
        ));
    }

    #[test]
    fn corrupt_entry_is_reported_without_its_bytes() {
        let err = StoredSession::decode("{\"refresh_token\": \"secretsecret\"").unwrap_err();
        assert_eq!(err, StoreError::Corrupt);
        assert!(!err.to_string().contains("secretsecret"));
    }
}

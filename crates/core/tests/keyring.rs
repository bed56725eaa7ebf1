//! The session store against a real Secret Service. Run under
//! `dbus-run-session` with `gnome-keyring-daemon --unlock --components=secrets` (see
//! scripts/test). Everything that touches the keyring is in one test, run in sequence.

use std::sync::Arc;
use std::time::Duration;

use rohimaya_core::auth::{SessionManager, SessionStatus, SignUp};
use rohimaya_core::config::Endpoints;
use rohimaya_core::secrets::{KeyringStore, Secret, SessionStore, StoredSession};

/// Checks that a Secret Service with a default collection is there, or says how to get
/// one. (`printf "" | gnome-keyring-daemon --unlock` starts a daemon without a default
/// collection; a newline-terminated empty password, `printf '\n'`, creates and unlocks
/// `login`.)
pub fn ensure_test_keyring() {
    let how = "keyring tests need a D-Bus session with an unlocked default keyring: run \
               dbus-run-session -- bash -c 'printf \"\\n\" | gnome-keyring-daemon --unlock \
               --components=secrets >/dev/null; cargo test -p rohimaya-core'";
    assert!(
        std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some(),
        "{how}"
    );
    let alias = std::process::Command::new("dbus-send")
        .args([
            "--session",
            "--print-reply",
            "--dest=org.freedesktop.secrets",
            "/org/freedesktop/secrets",
            "org.freedesktop.Secret.Service.ReadAlias",
            "string:default",
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    assert!(
        alias.contains("/org/freedesktop/secrets/collection/"),
        "the Secret Service has no default collection ({alias:?}); {how}"
    );
}

#[test]
fn keyring_against_the_secret_service() {
    ensure_test_keyring();
    let profile = format!("test-{}", std::process::id());
    let store = KeyringStore::new();

    // Round trip, replace, clear.
    let record = StoredSession {
        refresh_token: Secret::new("abcdefghijkl"),
        user_id: "1b4e28ba-2fa1-11d2-883f-0016d3cca427".into(),
        email: "keyring@example.com".into(),
        expires_at: 1_900_000_000,
    };
    store.clear(&profile).unwrap();
    assert_eq!(store.load(&profile).unwrap(), None);
    store.save(&profile, &record).unwrap();
    assert_eq!(store.load(&profile).unwrap(), Some(record.clone()));
    let mut newer = record.clone();
    newer.refresh_token = Secret::new("mnopqrstuvwx");
    store.save(&profile, &newer).unwrap();
    assert_eq!(store.load(&profile).unwrap(), Some(newer));
    store.clear(&profile).unwrap();
    store.clear(&profile).unwrap();
    assert_eq!(store.load(&profile).unwrap(), None);

    // A session through the keyring survives a "restart" and refreshes.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut config = rohimaya_devstack::DevstackConfig::new(dir.path().join("devstack"));
        config.access_token_ttl = Duration::from_secs(2);
        let devstack = rohimaya_devstack::start(config).await.unwrap();
        let endpoints = Endpoints {
            supabase_url: devstack.info.supabase_url.clone(),
            anon_key: devstack.info.anon_key.clone(),
            api_url: devstack.info.api_url.clone(),
            origin: None,
        };
        let data = dir.path().join("data");
        let first = SessionManager::new(&endpoints, &profile, &data, Arc::new(KeyringStore::new()));
        let SignUp::SignedIn(account) = first
            .sign_up("keyring@example.com", "correct horse battery")
            .await
            .unwrap()
        else {
            panic!("signed in");
        };
        assert!(account.remembered, "{account:?}");

        let second = SessionManager::with_keyring(&endpoints, &profile, &data);
        assert!(matches!(second.restore().await, SessionStatus::SignedIn(_)));
        second.verify_with_server().await.unwrap();
        // The second rotated the token; the first adopts it from the keyring instead of
        // replaying its own.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        first.access_token().await.unwrap();
        first.verify_with_server().await.unwrap();

        second.sign_out().await;
        assert_eq!(KeyringStore::new().load(&profile).unwrap(), None);
        devstack.shutdown().await;
    });
}

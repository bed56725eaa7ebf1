//! [`Shell`]: what the app's commands reach — the backend this run talks to and the
//! profile's [`Client`] (session, queue, jobs). Built once in `setup`, shut down on exit.
//! Wiring only: it holds the parts, the core holds the rules.

use std::sync::{Arc, Mutex};

use rohimaya_core::client::{Client, ErrorView};
use rohimaya_core::config::Paths;
use rohimaya_core::events::EventBus;
use rohimaya_core::queue::CancellationToken;

use crate::backend::Backend;

pub struct Shell {
    pub backend: Backend,
    client: Option<Arc<Client>>,
    /// The pending browser sign-in's cancel token.
    oauth: Mutex<Option<CancellationToken>>,
}

impl Shell {
    /// Starts the backend (the embedded one when none is configured) and the client,
    /// restoring the remembered session.
    pub async fn start(paths: Paths, bus: EventBus) -> Self {
        let backend = Backend::start(&paths).await;
        let client = match backend.profile(&paths) {
            Some(profile) => {
                let client = Arc::new(Client::new(paths, profile, bus));
                client.start().await;
                Some(client)
            }
            None => None,
        };
        Self {
            backend,
            client,
            oauth: Mutex::new(None),
        }
    }

    /// The client, or why there is none (the backend could not be set up).
    pub fn client(&self) -> Result<Arc<Client>, ErrorView> {
        self.client.clone().ok_or_else(|| ErrorView {
            code: rohimaya_core::ErrorCode::LocalBackendFailed
                .as_str()
                .to_string(),
            message: "Rohimaya has no backend to talk to. See the status on the start screen."
                .to_string(),
        })
    }

    /// The app's preferences (defaults when there is no client or the file is broken:
    /// a broken file is reported where it is edited, in Settings).
    pub fn prefs(&self) -> rohimaya_core::prefs::AppPrefs {
        self.client
            .as_ref()
            .and_then(|c| c.prefs().ok())
            .unwrap_or_default()
    }

    /// Replaces the pending browser sign-in's token, cancelling the previous one.
    pub fn set_oauth_cancel(&self, token: Option<CancellationToken>) {
        let mut slot = self.oauth.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = std::mem::replace(&mut *slot, token) {
            old.cancel();
        }
    }

    /// Stops the client's background work, then the backend.
    pub async fn shutdown(&self) {
        if let Some(client) = &self.client {
            client.shutdown().await;
        }
        self.backend.shutdown().await;
    }
}

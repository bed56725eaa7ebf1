//! The backend this run of the app talks to. It resolves the choice with
//! `rohimaya_core::config` and, when nothing is configured, starts the embedded local
//! backend (rohimaya-devstack) in-process under `<data dir>/devstack`, and stops it on
//! exit. Wiring only: the rules (configuration, health) live in rohimaya-core.

use std::sync::Mutex;
use std::time::Duration;

use rohimaya_core::config::{BackendChoice, ConfigError, Endpoints, Paths, Profile, ProfileSource};
use rohimaya_core::status::{self, BackendMode, BackendStatus};
use rohimaya_core::{CoreError, ErrorCode};
use rohimaya_devstack::{Devstack, DevstackConfig, DevstackError};

/// How long the app waits for the local backend to finish in-flight work on exit.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why the app has no backend to talk to.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("the local backend could not start: {0}")]
    LocalBackend(#[from] DevstackError),
}

impl CoreError for SetupError {
    fn code(&self) -> ErrorCode {
        match self {
            SetupError::Config(e) => e.code(),
            SetupError::LocalBackend(_) => ErrorCode::LocalBackendFailed,
        }
    }
}

/// The app's backend: its mode, its endpoints (or why there are none) and, in local
/// mode, the running devstack.
pub struct Backend {
    mode: BackendMode,
    endpoints: Result<Endpoints, SetupError>,
    devstack: Mutex<Option<Devstack>>,
}

impl Backend {
    /// Resolves the backend and, in local mode, starts the devstack. Never fails: a
    /// backend that cannot be set up is kept as an error for the status to show.
    pub async fn start(paths: &Paths) -> Self {
        let choice = match BackendChoice::resolve(paths) {
            Ok(choice) => choice,
            Err(e) => {
                tracing::error!(code = e.code().as_str(), "backend configuration: {e}");
                return Self::new(BackendMode::Custom, Err(e.into()), None);
            }
        };
        match choice {
            BackendChoice::Remote(endpoints) => {
                tracing::info!(api_url = %endpoints.api_url, "using the configured backend");
                Self::new(BackendMode::Custom, Ok(endpoints), None)
            }
            BackendChoice::Local => {
                let dir = paths.devstack_dir();
                match rohimaya_devstack::start(DevstackConfig::new(&dir)).await {
                    Ok(devstack) => {
                        let info = &devstack.info;
                        tracing::info!(
                            data_dir = %dir.display(),
                            supabase_url = %info.supabase_url,
                            api_url = %info.api_url,
                            s3_url = %info.s3_url,
                            "local backend (devstack) started"
                        );
                        let endpoints = Endpoints {
                            supabase_url: info.supabase_url.clone(),
                            anon_key: info.anon_key.clone(),
                            api_url: info.api_url.clone(),
                            origin: None,
                        };
                        Self::new(BackendMode::Local, Ok(endpoints), Some(devstack))
                    }
                    Err(e) => {
                        tracing::error!(data_dir = %dir.display(), "local backend: {e}");
                        Self::new(BackendMode::Local, Err(e.into()), None)
                    }
                }
            }
        }
    }

    fn new(
        mode: BackendMode,
        endpoints: Result<Endpoints, SetupError>,
        devstack: Option<Devstack>,
    ) -> Self {
        Self {
            mode,
            endpoints,
            devstack: Mutex::new(devstack),
        }
    }

    /// The profile the app's session belongs to: `local` for the embedded backend, else
    /// the configured one. `None` when the backend could not be set up.
    pub fn profile(&self, paths: &Paths) -> Option<Profile> {
        let endpoints = self.endpoints.as_ref().ok()?.clone();
        match self.mode {
            BackendMode::Local => Some(Profile {
                name: rohimaya_core::config::DEFAULT_PROFILE.to_string(),
                endpoints,
                source: ProfileSource::LocalBackend,
            }),
            BackendMode::Custom => Profile::resolve(paths, None).ok().or(Some(Profile {
                name: "custom".to_string(),
                endpoints,
                source: ProfileSource::Environment,
            })),
        }
    }

    /// The current status, with a fresh `/health` check.
    pub async fn status(&self) -> BackendStatus {
        let status = match &self.endpoints {
            Ok(endpoints) => status::check(self.mode, endpoints).await,
            Err(e) => BackendStatus::unavailable(self.mode, e),
        };
        if status.healthy {
            tracing::info!(api_url = %status.api_url, detail = %status.detail, "backend health check passed");
        } else {
            tracing::warn!(api_url = %status.api_url, detail = %status.detail, "backend health check failed");
        }
        status
    }

    /// Stops the local backend, if one runs, waiting a few seconds for in-flight work.
    pub async fn shutdown(&self) {
        let devstack = self
            .devstack
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(devstack) = devstack {
            match tokio::time::timeout(SHUTDOWN_GRACE, devstack.shutdown()).await {
                Ok(()) => tracing::info!("local backend stopped"),
                Err(_) => tracing::warn!("local backend did not stop within {SHUTDOWN_GRACE:?}"),
            }
        }
    }
}

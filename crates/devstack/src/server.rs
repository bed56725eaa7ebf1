//! Starting and stopping a devstack: opens the database, loads the keys, starts the S3
//! store (or connects to an external one), the gateway and the simulator, and returns
//! their URLs with a shutdown handle. It owns process wiring only; every route lives in
//! its own module.

use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::{DevstackConfig, MAX_URL_TTL};
use crate::db::Db;
use crate::keys::Keys;
use crate::simulator::Simulator;
use crate::store;

/// What a client needs to talk to a running devstack; printed as one JSON line by
/// `rohimaya devstack`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct DevstackInfo {
    pub supabase_url: String,
    pub anon_key: String,
    pub api_url: String,
    pub s3_url: String,
    pub s3_access_key: String,
    pub s3_secret_key: String,
    pub manuscripts_bucket: String,
    pub audiobooks_bucket: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DevstackError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the devstack database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("cannot listen on {addr}: {source} (is another devstack running? pick another port)")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the S3 store is not usable: {0}")]
    Store(#[from] store::StoreError),
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// Everything a request handler may use. Cheap to clone.
#[derive(Clone)]
pub struct Backend {
    pub config: Arc<DevstackConfig>,
    pub db: Db,
    pub keys: Arc<Keys>,
    pub clock: Clock,
    pub store: store::Client,
    pub simulator: Simulator,
    /// The gateway's base URL, e.g. `http://127.0.0.1:54321`.
    pub base_url: String,
}

/// A running devstack. Dropping it without [`Devstack::shutdown`] stops the servers too,
/// but without waiting for them.
pub struct Devstack {
    pub info: DevstackInfo,
    backend: Backend,
    token: CancellationToken,
    tasks: JoinSet<()>,
}

impl Devstack {
    /// The clock every expiry check uses; tests advance it instead of sleeping.
    pub fn clock(&self) -> &Clock {
        &self.backend.clock
    }

    /// The shared state, for in-process tests that need to look inside.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Stops accepting requests, lets in-flight ones finish and waits for every task.
    pub async fn shutdown(mut self) {
        self.token.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

impl Drop for Devstack {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// Starts a devstack as `config` says and returns once every server is accepting.
pub async fn start(config: DevstackConfig) -> Result<Devstack, DevstackError> {
    if config.url_ttl.is_zero() || config.url_ttl > MAX_URL_TTL {
        return Err(DevstackError::Config(
            "url_ttl must be between 1 second and 7 days".into(),
        ));
    }
    std::fs::create_dir_all(&config.data_dir).map_err(|source| DevstackError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let db = Db::open(&config.data_dir.join("devstack.db"))?;
    let keys = Keys::load_or_create(&db)?;
    let token = CancellationToken::new();
    let mut tasks = JoinSet::new();

    let (s3_endpoint, access_key, secret_key, region) = match &config.external_s3 {
        Some(ext) => (
            ext.endpoint.clone(),
            ext.access_key.clone(),
            ext.secret_key.clone(),
            ext.region.clone(),
        ),
        None => {
            let listener = bind(config.s3_listen).await?;
            let addr = local_addr(&listener, config.s3_listen)?;
            let root = config.data_dir.join("s3");
            std::fs::create_dir_all(&root).map_err(|source| DevstackError::DataDir {
                path: root.clone(),
                source,
            })?;
            let server = store::embedded::EmbeddedStore::new(
                &root,
                &keys.s3_access_key,
                &keys.s3_secret_key,
            )?;
            tasks.spawn(server.serve(listener, token.child_token()));
            let url = url::Url::parse(&format!("http://{addr}"))
                .map_err(|e| DevstackError::Config(e.to_string()))?;
            (
                url,
                keys.s3_access_key.clone(),
                keys.s3_secret_key.clone(),
                "auto".to_string(),
            )
        }
    };
    let store = store::Client::new(store::ClientConfig {
        endpoint: s3_endpoint.clone(),
        public_endpoint: config.public_s3_url.clone().unwrap_or(s3_endpoint.clone()),
        access_key: access_key.clone(),
        secret_key: secret_key.clone(),
        region,
    })?;
    for bucket in [&config.manuscripts_bucket, &config.audiobooks_bucket] {
        store.ensure_bucket(bucket).await?;
    }

    let listener = bind(config.listen).await?;
    let addr = local_addr(&listener, config.listen)?;
    let base_url = format!("http://{addr}");
    let (simulator, simulator_rx) = Simulator::channel();
    let backend = Backend {
        config: Arc::new(config.clone()),
        db,
        keys: Arc::new(keys.clone()),
        clock: Clock::default(),
        store,
        simulator,
        base_url: base_url.clone(),
    };
    tasks.spawn(crate::simulator::run(
        backend.clone(),
        simulator_rx,
        token.child_token(),
    ));

    let app = axum::Router::new()
        .nest("/auth/v1", crate::auth::router(backend.clone()))
        .nest("/api", crate::api::router(backend.clone()))
        .nest("/devstack", crate::auth::devstack_router(backend.clone()));
    let shutdown = token.child_token();
    tasks.spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!("gateway stopped: {e}");
        }
    });

    let info = DevstackInfo {
        supabase_url: base_url.clone(),
        anon_key: keys.anon_key.clone(),
        api_url: format!("{base_url}/api"),
        s3_url: s3_endpoint.as_str().trim_end_matches('/').to_string(),
        s3_access_key: access_key,
        s3_secret_key: secret_key,
        manuscripts_bucket: config.manuscripts_bucket.clone(),
        audiobooks_bucket: config.audiobooks_bucket.clone(),
    };
    Ok(Devstack {
        info,
        backend,
        token,
        tasks,
    })
}

async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, DevstackError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| DevstackError::Bind { addr, source })
}

fn local_addr(
    listener: &tokio::net::TcpListener,
    asked: SocketAddr,
) -> Result<SocketAddr, DevstackError> {
    listener.local_addr().map_err(|source| DevstackError::Bind {
        addr: asked,
        source,
    })
}

//! The embedded S3 server: s3s-fs behind s3s with SigV4 auth, wrapped so it enforces
//! what R2 enforces and s3s-fs does not. It owns the store's files; nothing else reads
//! or writes them.

use std::path::Path;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::StoreError;

pub struct EmbeddedStore {}

impl EmbeddedStore {
    pub fn new(_root: &Path, _access_key: &str, _secret_key: &str) -> Result<Self, StoreError> {
        Ok(Self {})
    }

    /// Serves S3 on `listener` until `token` is cancelled.
    pub async fn serve(self, _listener: TcpListener, token: CancellationToken) {
        token.cancelled().await;
    }
}

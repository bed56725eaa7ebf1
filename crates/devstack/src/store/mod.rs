//! Object storage: the embedded S3 server (`embedded`, s3s + s3s-fs wrapped to behave
//! like R2) and the SigV4 HTTP client the backend uses to talk to any S3-compatible
//! store and to presign URLs (`client`). The backend never touches the store's files
//! directly: it speaks S3 over HTTP as it would to R2.

pub mod client;
pub mod embedded;

pub use client::{Client, ClientConfig, ObjectMeta, PartInfo, PresignedRequest, StoreError};

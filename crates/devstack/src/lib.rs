//! rohimaya-devstack: the local backend that Rohimaya Desktop runs against when no backend
//! is configured, and the bed every test runs on.
//!
//! [`start`] brings up, on 127.0.0.1:
//! - a gateway serving GoTrue-compatible auth under `/auth/v1`, the engine API under
//!   `/api` and developer tooling (the mailbox) under `/devstack`;
//! - an S3 server (s3s + s3s-fs with SigV4 auth on, wrapped to behave like R2), unless an
//!   external S3-compatible store is configured;
//! - the narration simulator, which turns jobs into real WAV audiobooks.
//!
//! It owns wire-compatibility with Supabase Auth, the engine API and R2. It must never
//! share code or types with rohimaya-core: a backend built from the client's types would
//! agree with the client's mistakes.

pub mod api;
pub mod auth;
pub mod clock;
pub mod config;
pub mod db;
pub mod faults;
pub mod jwt;
pub mod keys;
pub mod simulator;
pub mod store;

mod server;

pub use clock::Clock;
pub use config::{DevstackConfig, ExternalS3};
pub use server::{Devstack, DevstackError, DevstackInfo, start};

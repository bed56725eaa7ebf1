//! `rohimaya devstack`: maps flags onto a `DevstackConfig`, starts it, prints the one
//! JSON line clients need once it is ready, and serves until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use rohimaya_devstack::{DevstackConfig, ExternalS3};

#[derive(clap::Args)]
pub struct DevstackArgs {
    /// Address of the gateway (auth under /auth/v1, engine API under /api).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Address of the embedded S3 server.
    #[arg(long, default_value = "127.0.0.1:0")]
    s3_listen: SocketAddr,
    /// Data directory (default: the local backend's directory in Rohimaya's data dir).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Access-token lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    access_token_ttl: u64,
    /// How long a rotated-out refresh token stays usable, in seconds.
    #[arg(long, default_value_t = 10)]
    refresh_reuse_interval: u64,
    /// Lifetime of presigned URLs in seconds (1 to 604800).
    #[arg(long, default_value_t = 900)]
    url_ttl: u64,
    /// How long the narration simulator takes per job, in seconds.
    #[arg(long, default_value_t = 4.0)]
    job_seconds: f64,
    /// Lifetime of email one-time codes in seconds.
    #[arg(long, default_value_t = 600)]
    otp_ttl: u64,
    /// A redirect URL allowed besides loopback ones (repeatable).
    #[arg(long = "redirect-allow")]
    redirect_allow: Vec<String>,
    /// Use this S3-compatible store instead of the embedded one.
    #[arg(long, requires_all = ["s3_access_key", "s3_secret_key"])]
    s3_endpoint: Option<url::Url>,
    #[arg(long)]
    s3_access_key: Option<String>,
    #[arg(long)]
    s3_secret_key: Option<String>,
    #[arg(long, default_value = "auto")]
    s3_region: String,
    /// The S3 base URL presigned URLs are signed for (e.g. a proxy in front of the store).
    #[arg(long)]
    public_url: Option<url::Url>,
    /// Save this devstack's URLs as a profile in settings.toml once it is ready (the
    /// `local` profile, or the one `--profile` names), so `rohimaya login` and the app
    /// find it.
    #[arg(long)]
    save_profile: bool,
}

pub async fn run(args: DevstackArgs, profile: Option<&str>) -> anyhow::Result<()> {
    let data = args
        .data
        .unwrap_or_else(|| rohimaya_core::config::Paths::from_env().devstack_dir());
    let mut config = DevstackConfig::new(data);
    config.listen = args.listen;
    config.s3_listen = args.s3_listen;
    config.access_token_ttl = Duration::from_secs(args.access_token_ttl);
    config.refresh_reuse_interval = Duration::from_secs(args.refresh_reuse_interval);
    config.url_ttl = Duration::from_secs(args.url_ttl);
    config.job_duration = Duration::try_from_secs_f64(args.job_seconds)
        .context("--job-seconds must be a non-negative number")?;
    config.otp_ttl = Duration::from_secs(args.otp_ttl);
    config.redirect_allow_list = args.redirect_allow;
    config.public_s3_url = args.public_url;
    if let (Some(endpoint), Some(access_key), Some(secret_key)) =
        (args.s3_endpoint, args.s3_access_key, args.s3_secret_key)
    {
        config.external_s3 = Some(ExternalS3 {
            endpoint,
            access_key,
            secret_key,
            region: args.s3_region,
        });
    }
    // Listen for signals before announcing readiness, so a signal sent right after the
    // ready line is not lost.
    let stop = Stop::install().context("cannot listen for SIGINT/SIGTERM")?;
    let devstack = rohimaya_devstack::start(config)
        .await
        .context("the local backend did not start")?;
    if args.save_profile {
        let name = profile.unwrap_or(rohimaya_core::config::DEFAULT_PROFILE);
        let endpoints = rohimaya_core::config::Endpoints {
            supabase_url: devstack.info.supabase_url.clone(),
            anon_key: devstack.info.anon_key.clone(),
            api_url: devstack.info.api_url.clone(),
            origin: None,
        };
        rohimaya_core::config::save_profile(
            &rohimaya_core::config::Paths::from_env(),
            name,
            &endpoints,
        )
        .with_context(|| format!("cannot save the devstack as profile {name}"))?;
    }
    println!("{}", serde_json::to_string(&devstack.info)?);
    stop.wait().await;
    devstack.shutdown().await;
    Ok(())
}

/// SIGINT, and SIGTERM on Unix, registered up front.
struct Stop {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Stop {
    fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn wait(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = &mut self;
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

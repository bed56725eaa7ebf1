//! `rohimaya`: the headless command line over rohimaya-core. Each subcommand parses its
//! flags, calls one function and renders the result; rules live in the core (and, for
//! `devstack`, in rohimaya-devstack).

mod account;
mod devstack;
mod download;
mod jobs;
mod library;
mod output;
mod progress;
mod queue;
mod upload;
mod watch;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "rohimaya",
    version,
    about = "Rohimaya: turn manuscripts into audiobooks"
)]
struct Cli {
    /// The profile (backend and session) to use: local, cloud or a custom name
    /// (default: $ROHIMAYA_PROFILE, else local).
    #[arg(long, global = true, value_name = "NAME")]
    profile: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the local backend (auth, engine API, S3 store, narration simulator) on loopback.
    Devstack(Box<devstack::DevstackArgs>),
    /// Create an account (password read from stdin).
    Signup(account::SignupArgs),
    /// Sign in with a password, an emailed code or a provider in the browser.
    Login(account::LoginArgs),
    /// Sign out and forget the session on this computer.
    Logout(account::JsonArgs),
    /// Show who is signed in; exits 1 when no one is.
    Whoami(account::JsonArgs),
    /// List and manage narration jobs.
    Jobs(jobs::JobsArgs),
    /// Upload manuscripts and create their narration jobs (resumable, verified).
    Upload(upload::UploadArgs),
    /// Show and control the upload queue.
    Queue(queue::QueueArgs),
    /// The offline library of downloaded audiobooks (works without network or sign-in).
    Library(library::LibraryArgs),
    /// Watched folders: manuscripts dropped in are uploaded once, whole.
    Watch(watch::WatchArgs),
    /// Download finished audiobooks into the offline library (resumable, verified).
    Download(download::DownloadArgs),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,s3s=off")),
        )
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rohimaya: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let profile = cli.profile.as_deref();
    runtime.block_on(async {
        match cli.command {
            Command::Devstack(args) => match devstack::run(*args, profile).await {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("rohimaya: {e:#}");
                    std::process::ExitCode::FAILURE
                }
            },
            Command::Signup(args) => {
                let json = args.json;
                output::finish(account::signup(profile, args).await, json)
            }
            Command::Login(args) => {
                let json = args.json;
                output::finish(account::login(profile, args).await, json)
            }
            Command::Logout(args) => {
                let json = args.json;
                output::finish(account::logout(profile, args).await, json)
            }
            Command::Whoami(args) => {
                let json = args.json;
                output::finish(account::whoami(profile, args).await, json)
            }
            Command::Jobs(args) => {
                let json = args.json();
                output::finish(jobs::run(profile, args).await, json)
            }
            Command::Upload(args) => {
                let json = args.json;
                output::finish(upload::run(profile, args).await, json)
            }
            Command::Queue(args) => {
                let json = args.json();
                output::finish(queue::run(profile, args).await, json)
            }
            Command::Library(args) => {
                let json = args.json();
                output::finish(library::run(profile, args).await, json)
            }
            Command::Download(args) => {
                let json = args.json;
                output::finish(download::run(profile, args).await, json)
            }
            Command::Watch(args) => {
                let json = args.json();
                output::finish(watch::run(profile, args).await, json)
            }
        }
    })
}

//! `rohimaya`: the headless command line over rohimaya-core. Each subcommand parses its
//! flags, calls one function and renders the result; rules live in the core (and, for
//! `devstack`, in rohimaya-devstack).

mod devstack;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "rohimaya",
    version,
    about = "Rohimaya: turn manuscripts into audiobooks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the local backend (auth, engine API, S3 store, narration simulator) on loopback.
    Devstack(devstack::DevstackArgs),
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
    let result = runtime.block_on(async {
        match cli.command {
            Command::Devstack(args) => devstack::run(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rohimaya: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

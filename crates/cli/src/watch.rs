//! `rohimaya watch add DIR [--recursive] [--move-uploaded] [--voice V] [--format F]
//! [--mode M] [--author A] [--ignore PATTERN]...`, `watch list`, `watch remove DIR`,
//! `watch pause [DIR]`, `watch resume [DIR]`, `watch set [--stability-ms N]
//! [--rescan-secs N]`, `watch log [--limit N]` and `watch run [--verbose]` (foreground;
//! Ctrl-C stops cleanly, leaving every upload resumable). `--json` prints stable JSON
//! (`run` prints one activity entry per line). Thin: every rule is in
//! `rohimaya_core::watch`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rohimaya_core::api::uploads::JobOptions;
use rohimaya_core::config::Paths;
use rohimaya_core::events::{Event, EventBus};
use rohimaya_core::queue::CancellationToken;
use rohimaya_core::watch::{self, AfterUpload, FolderConfig, WatchService, WatchStore};

use crate::output::{Failure, Outcome, print_json};
use crate::upload::runner;

#[derive(clap::Args)]
pub struct WatchArgs {
    #[command(subcommand)]
    action: WatchAction,
    /// Print stable JSON.
    #[arg(long, global = true)]
    json: bool,
}

impl WatchArgs {
    pub fn json(&self) -> bool {
        self.json
    }
}

#[derive(clap::Subcommand)]
enum WatchAction {
    /// Watch a folder: manuscripts dropped in are uploaded once they are fully written.
    Add {
        dir: PathBuf,
        /// Watch subfolders too.
        #[arg(long)]
        recursive: bool,
        /// Move each uploaded file into Uploaded/ inside the folder.
        #[arg(long)]
        move_uploaded: bool,
        /// The narrator voice id of jobs from this folder.
        #[arg(long)]
        voice: Option<String>,
        #[arg(long, value_parser = ["mp3", "wav", "flac", "m4b"])]
        format: Option<String>,
        #[arg(long, value_parser = ["single_voice", "dual_voice", "findaway"])]
        mode: Option<String>,
        #[arg(long)]
        author: Option<String>,
        /// Also ignore files matching this gitignore-style pattern (repeatable).
        #[arg(long = "ignore", value_name = "PATTERN")]
        ignore: Vec<String>,
    },
    /// List the watched folders.
    List,
    /// Stop watching a folder (what was uploaded from it stays remembered).
    Remove { dir: PathBuf },
    /// Pause one folder, or all of them without DIR.
    Pause { dir: Option<PathBuf> },
    /// Resume one folder, or all of them without DIR.
    Resume { dir: Option<PathBuf> },
    /// Change the watcher's settings (kept in state.db).
    Set {
        /// How long a file must stay unchanged before it is uploaded (default 3000).
        #[arg(long)]
        stability_ms: Option<u64>,
        /// How often every folder is re-scanned as a safety net (default 300).
        #[arg(long)]
        rescan_secs: Option<u64>,
    },
    /// Show the recent activity (seen, ignored, waited, uploaded... and why).
    Log {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Watch in the foreground and upload (Ctrl-C stops).
    Run {
        /// Print every activity entry (seen, ignored, waited...), not only uploads.
        #[arg(long)]
        verbose: bool,
    },
}

fn store() -> Result<WatchStore, Failure> {
    Ok(WatchStore::open(
        &Paths::from_env().data_dir.join("state.db"),
    )?)
}

fn print_folders(store: &WatchStore, json: bool) -> Outcome {
    let folders = store.folders()?;
    if json {
        return print_json(&serde_json::json!({ "folders": folders }));
    }
    if folders.is_empty() {
        println!("No folder is watched. `rohimaya watch add DIR` adds one.");
    }
    for f in folders {
        let mut notes = vec![
            if f.recursive {
                "recursive"
            } else {
                "top level only"
            }
            .to_string(),
        ];
        if f.after_upload == AfterUpload::MoveToUploaded {
            notes.push("moves uploads to Uploaded/".into());
        }
        if f.paused {
            notes.push("paused".into());
        }
        if !f.available {
            notes.push(format!(
                "unavailable: {}",
                f.unavailable_reason.unwrap_or_default()
            ));
        }
        println!("{}  ({})", f.path.display(), notes.join(", "));
    }
    Ok(())
}

pub async fn run(profile: Option<&str>, args: WatchArgs) -> Outcome {
    let json = args.json;
    let store = store()?;
    match args.action {
        WatchAction::Add {
            dir,
            recursive,
            move_uploaded,
            voice,
            format,
            mode,
            author,
            ignore,
        } => {
            let f = watch::add_folder(
                &store,
                FolderConfig {
                    path: dir,
                    recursive,
                    after_upload: if move_uploaded {
                        AfterUpload::MoveToUploaded
                    } else {
                        AfterUpload::Leave
                    },
                    options: JobOptions {
                        voice,
                        format,
                        mode,
                        author,
                        ..JobOptions::default()
                    },
                    ignore,
                },
            )?;
            if json {
                return print_json(&serde_json::json!({ "folder": f }));
            }
            println!("watching {}", f.path.display());
            Ok(())
        }
        WatchAction::List => print_folders(&store, json),
        WatchAction::Remove { dir } => {
            let f = watch::remove_folder(&store, &dir)?;
            if json {
                return print_json(&serde_json::json!({ "removed": f }));
            }
            println!("no longer watching {}", f.path.display());
            Ok(())
        }
        WatchAction::Pause { dir } => {
            watch::set_paused(&store, dir.as_deref(), true)?;
            print_folders(&store, json)
        }
        WatchAction::Resume { dir } => {
            watch::set_paused(&store, dir.as_deref(), false)?;
            print_folders(&store, json)
        }
        WatchAction::Set {
            stability_ms,
            rescan_secs,
        } => {
            let mut s = store.settings()?;
            if let Some(ms) = stability_ms {
                s.stability_window = Duration::from_millis(ms);
            }
            if let Some(secs) = rescan_secs {
                s.rescan_interval = Duration::from_secs(secs.max(1));
            }
            store.save_settings(&s)?;
            if json {
                return print_json(&serde_json::json!({ "settings": s }));
            }
            println!(
                "stability window {} ms, re-scan every {} s",
                s.stability_window.as_millis(),
                s.rescan_interval.as_secs()
            );
            Ok(())
        }
        WatchAction::Log { limit } => {
            let entries = store.recent_activity(limit)?;
            if json {
                return print_json(&serde_json::json!({ "activity": entries }));
            }
            for a in entries {
                println!("{a}");
            }
            Ok(())
        }
        WatchAction::Run { verbose } => watch_run(profile, store, verbose, json).await,
    }
}

async fn watch_run(profile: Option<&str>, store: WatchStore, verbose: bool, json: bool) -> Outcome {
    let bus = EventBus::new();
    let queue = match runner(profile, bus.clone()).await {
        Ok((r, _)) => Some(Arc::new(r)),
        Err(f) if f.code == "not_signed_in" => {
            eprintln!(
                "rohimaya: {}; stable files wait in state.db and are uploaded by a signed-in run",
                f.message
            );
            None
        }
        Err(f) => return Err(f),
    };
    let service = WatchService::new(store.clone(), queue.clone(), bus.clone())?;
    let stop = CancellationToken::new();
    let ctrl_c = stop.clone();
    let signal = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            ctrl_c.cancel();
        }
    });
    let mut rx = bus.subscribe();
    let printer = tokio::spawn(async move {
        while let Ok(event) = rx.recv().await {
            let Event::WatchActivity(a) = event else {
                continue;
            };
            if !verbose && !a.kind.is_notable() {
                continue;
            }
            if json {
                let _ = print_json(&a);
            } else {
                println!("{a}");
            }
        }
    });
    if !json {
        eprintln!(
            "rohimaya: watching {} folder(s); Ctrl-C stops",
            store.folders()?.len()
        );
    }
    let uploads = async {
        match &queue {
            Some(q) => q.run(&stop).await.map_err(Failure::from),
            None => Ok(()),
        }
    };
    let (watched, uploaded) = tokio::join!(
        async { service.run(&stop).await.map_err(Failure::from) },
        uploads
    );
    signal.abort();
    // The bus closes when its last holder is gone: the printer then ends, having shown
    // every entry logged before the stop.
    drop((service, queue, bus));
    let _ = tokio::time::timeout(Duration::from_secs(2), printer).await;
    watched?;
    uploaded
}

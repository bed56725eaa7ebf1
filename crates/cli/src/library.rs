//! `rohimaya library [list|show ID|path|verify [--deep]|remove ID --yes|sync|repair]
//! [--json]`: the offline library (`rohimaya_core::library`). Needs no network and no
//! sign-in, except `sync` and `repair`, which download (see [`crate::download`]). The
//! `--json` shapes are stable and documented in docs/cli.md. Exit codes: 0 done (for
//! verify: the library is clean), 1 a failure (for verify: problems found), 2 usage.

use rohimaya_core::config::Paths;
use rohimaya_core::library::{Book, Library, VerifyOptions};

use crate::output::{Failure, Outcome, print_json};

#[derive(clap::Args)]
pub struct LibraryArgs {
    #[command(subcommand)]
    action: Option<LibraryAction>,
    /// Print stable JSON (see docs/cli.md).
    #[arg(long, global = true)]
    json: bool,
}

impl LibraryArgs {
    pub fn json(&self) -> bool {
        self.json
    }
}

#[derive(clap::Subcommand)]
enum LibraryAction {
    /// List the downloaded books (the default); `--search` filters by title or author.
    List {
        #[arg(long)]
        search: Option<String>,
    },
    /// Show one book: its files, chapters and playback position.
    Show { id: String },
    /// Print the library folder.
    Path,
    /// Check that the files on disk agree with the catalog (missing, changed, stray).
    Verify {
        /// Also compare every file's MD5 (reads every byte).
        #[arg(long)]
        deep: bool,
    },
    /// Delete a downloaded book's files from this computer (the server copy stays).
    Remove {
        id: String,
        /// Confirm the deletion (required).
        #[arg(long)]
        yes: bool,
    },
    /// Download every finished job not yet here; books the server no longer has are kept
    /// and marked "only on this computer" (nothing is ever deleted). Needs sign-in.
    Sync,
    /// Verify, then download the missing or changed files again. Needs sign-in.
    Repair,
}

pub async fn run(profile: Option<&str>, args: LibraryArgs) -> Outcome {
    let json = args.json;
    match args.action {
        Some(LibraryAction::Sync) => return crate::download::sync(profile, json).await,
        Some(LibraryAction::Repair) => return crate::download::repair(profile, json).await,
        _ => {}
    }
    let library = Library::for_paths(&Paths::from_env())?;
    match args.action.unwrap_or(LibraryAction::List { search: None }) {
        LibraryAction::List { search } => {
            let books = match search.as_deref() {
                Some(q) => library.catalog().search(q)?,
                None => library.catalog().list()?,
            };
            if json {
                return print_json(&serde_json::json!({ "books": books }));
            }
            if books.is_empty() {
                println!("No downloaded books. `rohimaya library sync` downloads finished ones.");
            }
            for b in &books {
                println!("{}", line(b));
            }
            Ok(())
        }
        LibraryAction::Show { id } => {
            let book = library.catalog().show(&id)?;
            if json {
                return print_json(&serde_json::json!({ "book": book }));
            }
            println!("{}", line(&book));
            let root = library.root();
            if let Some(f) = &book.book_file {
                println!("  book      {}", root.join(&f.rel_path).display());
            }
            for t in &book.tracks {
                println!(
                    "  {:>3}. {}  {}",
                    t.number,
                    t.title,
                    root.join(&t.file.rel_path).display()
                );
            }
            if let Some(p) = &book.position {
                let at = match p.track {
                    Some(n) => format!("chapter {n}, "),
                    None => String::new(),
                };
                println!("  position  {at}{:.0} s", p.seconds);
            }
            Ok(())
        }
        LibraryAction::Path => {
            if json {
                return print_json(&serde_json::json!({ "path": library.root() }));
            }
            println!("{}", library.root().display());
            Ok(())
        }
        LibraryAction::Verify { deep } => {
            let report = library.verify(&VerifyOptions { deep })?;
            if json {
                print_json(&serde_json::json!({ "clean": report.is_clean(), "report": report }))?;
            } else {
                for i in &report.issues {
                    println!("{}: {} ({})", i.title, i.rel_path, i.issue.describe());
                }
                for s in &report.stray {
                    println!("not in the catalog: {}", s.rel_path);
                }
                for s in &report.leftovers {
                    println!("unfinished download: {}", s.rel_path);
                }
                for d in &report.unreadable_dirs {
                    println!("cannot read folder: {d}");
                }
                if report.is_clean() {
                    println!(
                        "The library is whole: {} books, {} files checked.",
                        report.books, report.files_checked
                    );
                } else if !report.repair.is_empty() {
                    println!(
                        "`rohimaya library repair` downloads {} files again.",
                        report.repair.len()
                    );
                }
            }
            if report.is_clean() {
                Ok(())
            } else {
                Err(Failure::quiet())
            }
        }
        LibraryAction::Remove { id, yes } => {
            if !yes {
                return Err(Failure::usage(format!(
                    "this deletes the downloaded files of {id} from this computer; add --yes to confirm"
                )));
            }
            let report = library.remove(&id)?;
            if json {
                return print_json(&serde_json::json!({ "removed": report }));
            }
            println!(
                "Removed “{}”: {} files, {} bytes freed.",
                report.title,
                report.deleted.len(),
                report.bytes_freed
            );
            Ok(())
        }
        // Handled above (they need the network and a session).
        LibraryAction::Sync | LibraryAction::Repair => Ok(()),
    }
}

fn line(b: &Book) -> String {
    let author = b.author.as_deref().unwrap_or("Unknown author");
    let local = if b.server_state.as_str() == "only_local" {
        "  (only on this computer)"
    } else {
        ""
    };
    format!(
        "{}  {} — {}  [{}, {} bytes]{local}",
        b.job_id, b.title, author, b.format, b.size_bytes
    )
}

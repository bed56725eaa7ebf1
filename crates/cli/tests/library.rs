//! `rohimaya library` as a process with no backend at all (offline, signed out): a book
//! catalogued in a temp library is listed, shown and verified; a deleted file makes
//! `verify` exit 1 naming it; `remove` wants `--yes` (exit 2) and then deletes only the
//! book's files.

use std::path::Path;
use std::process::{Command, Output};

use rohimaya_core::library::{BookRequest, LandedFile, Library, TrackRequest};
use serde_json::Value;

fn rohimaya(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rohimaya"))
        .args(args)
        .env("ROHIMAYA_DATA_DIR", dir.join("data"))
        .env("ROHIMAYA_CONFIG_DIR", dir.join("config"))
        .env("ROHIMAYA_LIBRARY_DIR", dir.join("library"))
        // No backend is reachable: the library must not need one.
        .env("ROHIMAYA_SUPABASE_URL", "http://127.0.0.1:9")
        .env("ROHIMAYA_SUPABASE_ANON_KEY", "anon")
        .env("ROHIMAYA_API_URL", "http://127.0.0.1:9/api")
        .output()
        .unwrap_or_else(|e| panic!("cannot run rohimaya: {e}"))
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn list_show_verify_and_remove_offline() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let lib = Library::open(
        &dir.path().join("library"),
        &dir.path().join("data/state.db"),
    )
    .unwrap_or_else(|e| panic!("library: {e}"));
    let plan = lib
        .plan_book(&BookRequest {
            job_id: "job-1".into(),
            title: "The Lighthouse".into(),
            author: Some("Ada Author".into()),
            format: "wav".into(),
            book: true,
            tracks: vec![TrackRequest {
                track_id: Some("t1".into()),
                title: "Chapter One".into(),
                export_filename: None,
            }],
        })
        .unwrap_or_else(|e| panic!("plan: {e}"));
    let mut landed = Vec::new();
    for f in plan.files() {
        lib.create_parent(f).unwrap_or_else(|e| panic!("dir: {e}"));
        std::fs::write(&f.path, b"RIFF fake audio").unwrap_or_else(|e| panic!("write: {e}"));
        landed.push(LandedFile {
            which: f.which,
            size: 15,
            md5: None,
            etag: None,
            duration_seconds: Some(1.0),
        });
    }
    lib.catalog()
        .upsert_book(&plan.to_new_book(Some("user-1"), Some(2.0), &landed))
        .unwrap_or_else(|e| panic!("catalogue: {e}"));
    // A file of the user's own, next to the library's: never touched.
    let own = dir.path().join("library/notes.txt");
    std::fs::write(&own, "mine").unwrap_or_else(|e| panic!("write: {e}"));

    let list = rohimaya(dir.path(), &["library", "list", "--json"]);
    assert!(list.status.success(), "{list:?}");
    let books = json(&list)["books"].clone();
    assert_eq!(books[0]["title"], "The Lighthouse");
    assert_eq!(books[0]["tracks"][0]["title"], "Chapter One");

    let show = rohimaya(dir.path(), &["library", "show", "job-1"]);
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(
        text.contains("Chapter One") && text.contains("Ada Author"),
        "{text}"
    );
    let unknown = rohimaya(dir.path(), &["library", "show", "nope", "--json"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert_eq!(json(&unknown)["error"]["code"], "book_not_in_library");

    let path = rohimaya(dir.path(), &["library", "path", "--json"]);
    assert_eq!(
        json(&path)["path"].as_str().map(Path::new),
        Some(dir.path().join("library").as_path())
    );

    // notes.txt is stray: verify reports it and exits 1; without it the library is whole.
    let stray = rohimaya(dir.path(), &["library", "verify"]);
    assert_eq!(stray.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&stray.stdout).contains("notes.txt"));
    std::fs::rename(&own, dir.path().join("notes.txt")).unwrap_or_else(|e| panic!("mv: {e}"));
    let clean = rohimaya(dir.path(), &["library", "verify", "--json"]);
    assert!(clean.status.success(), "{clean:?}");
    assert_eq!(json(&clean)["clean"], true);

    let chapter = plan
        .files()
        .last()
        .map(|f| f.path.clone())
        .unwrap_or_default();
    std::fs::remove_file(&chapter).unwrap_or_else(|e| panic!("rm: {e}"));
    let broken = rohimaya(dir.path(), &["library", "verify", "--json"]);
    assert_eq!(broken.status.code(), Some(1));
    let report = json(&broken);
    assert_eq!(report["clean"], false);
    assert_eq!(report["report"]["issues"][0]["issue"]["kind"], "missing");

    let unconfirmed = rohimaya(dir.path(), &["library", "remove", "job-1"]);
    assert_eq!(unconfirmed.status.code(), Some(2));
    assert!(plan.files().next().is_some_and(|f| f.path.exists()));
    let removed = rohimaya(
        dir.path(),
        &["library", "remove", "job-1", "--yes", "--json"],
    );
    assert!(removed.status.success(), "{removed:?}");
    assert!(plan.files().all(|f| !f.path.exists()));
    assert!(dir.path().join("notes.txt").exists());
    let empty = rohimaya(dir.path(), &["library", "list", "--json"]);
    assert_eq!(json(&empty)["books"], serde_json::json!([]));
}

//! The TypeScript types of everything the app's webview receives or sends (command
//! arguments and results, events), generated from the Rust types with ts-rs into
//! `ui/src/bindings/`. Test-only: the test fails when the committed files are stale;
//! regenerate them with
//! `ROHIMAYA_UPDATE_BINDINGS=1 cargo test -p rohimaya-core bindings::`.

use std::path::PathBuf;

use ts_rs::TS;

/// `(file name, TypeScript)` of every exported type.
fn generated() -> Vec<(String, String)> {
    // serde sends 64-bit integers as JSON numbers (exact up to 2^53, far above any size
    // or id here), so they are `number` in TypeScript, not `bigint`.
    let cfg = ts_rs::Config::new().with_large_int("number");
    let mut out = Vec::new();
    macro_rules! export {
        ($($t:ty),* $(,)?) => {$(
            out.push((
                format!("{}.ts", <$t as TS>::name(&cfg)),
                <$t as TS>::export_to_string(&cfg).expect("a TypeScript type"),
            ));
        )*};
    }
    export!(
        crate::status::BackendMode,
        crate::status::BackendStatus,
        crate::client::ErrorView,
        crate::client::AboutView,
        crate::client::PlaybackView,
        crate::client::ChapterView,
        crate::client::WatchFolderRequest,
        crate::library::Book,
        crate::library::FileRecord,
        crate::library::TrackRecord,
        crate::library::Position,
        crate::library::ServerState,
        crate::library::LibraryStats,
        crate::library::FileRef,
        crate::library::RemoveReport,
        crate::watch::Activity,
        crate::watch::ActivityKind,
        crate::watch::WatchedFolder,
        crate::watch::AfterUpload,
        crate::watch::WatchSettings,
        crate::prefs::AppPrefs,
        crate::client::SessionView,
        crate::client::SignUpView,
        crate::client::UploadOffer,
        crate::client::TransferAction,
        crate::client::JobAction,
        crate::jobs::JobView,
        crate::api::uploads::JobOptions,
        crate::queue::ItemState,
        crate::queue::QueueItem,
        crate::events::Event,
        crate::events::TransferProgress,
        crate::events::TransferState,
        crate::events::TransferNotice,
        crate::alerts::AlertKind,
        crate::alerts::DesktopAlert,
        crate::alerts::AlertAction,
        crate::client::AlertFollowUp,
        crate::downloads::DownloadState,
        crate::downloads::DownloadItem,
        crate::downloads::DownloadChoice,
        crate::downloads::EnqueueReport,
        crate::downloads::SyncReport,
    );
    out
}

#[test]
fn typescript_bindings_are_current() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../ui/src/bindings");
    let update = std::env::var_os("ROHIMAYA_UPDATE_BINDINGS").is_some();
    let mut stale = Vec::new();
    for (file, text) in generated() {
        let path = dir.join(&file);
        if update {
            std::fs::create_dir_all(&dir).expect("the bindings directory");
            std::fs::write(&path, &text).expect("a bindings file");
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(file);
        }
    }
    assert!(
        stale.is_empty(),
        "stale TypeScript bindings {stale:?} in ui/src/bindings: run \
         ROHIMAYA_UPDATE_BINDINGS=1 cargo test -p rohimaya-core bindings::"
    );
}

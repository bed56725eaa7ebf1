//! The desktop app's client facade against a devstack started in-process, with the real
//! OS keyring (run under a Secret Service, as CI does): sign up opens the account's
//! background work, an offered manuscript is uploaded by the queue running in the
//! background, the job feed reports the job until it completes, a second offer of the
//! same content is refused as a duplicate, auto-download brings the finished book into the
//! library, and signing out stops it all; with the backend stopped the library still
//! lists the book and the playback server serves it. Waits poll the event bus with
//! deadlines; nothing sleeps to synchronise.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::Rng;
use rohimaya_core::alerts::AlertAction;
use rohimaya_core::api::uploads::JobOptions;
use rohimaya_core::client::{AlertFollowUp, Client, SignUpView};
use rohimaya_core::config::{Endpoints, Paths, Profile, ProfileSource};
use rohimaya_core::downloads::{DownloadChoice, DownloadState};
use rohimaya_core::error::{CoreError, ErrorCode};
use rohimaya_core::events::{Event, EventBus, TransferState};
use tokio::sync::broadcast;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/manuscripts")
        .join(name)
}

/// The next event matching `want`, or a panic naming `what` after `within`.
async fn wait_for<T>(
    rx: &mut broadcast::Receiver<Event>,
    within: Duration,
    what: &str,
    mut want: impl FnMut(&Event) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(event)) => {
                if let Some(t) = want(&event) {
                    return t;
                }
            }
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(e)) => panic!("event bus closed while waiting for {what}: {e}"),
            Err(_) => panic!("no {what} within {within:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_upload_follow_the_job_and_sign_out() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let mut config = rohimaya_devstack::DevstackConfig::new(dir.path().join("devstack"));
    config.job_duration = Duration::from_secs(2);
    let devstack = rohimaya_devstack::start(config)
        .await
        .unwrap_or_else(|e| panic!("devstack: {e}"));
    let paths = Paths {
        config_dir: dir.path().join("config"),
        data_dir: dir.path().join("data"),
        library_dir: dir.path().join("library"),
    };
    let profile = Profile {
        // A name of its own: the keyring entry is per profile.
        name: format!("client-test-{}", rand::rng().random::<u32>()),
        endpoints: Endpoints {
            supabase_url: devstack.info.supabase_url.clone(),
            anon_key: devstack.info.anon_key.clone(),
            api_url: devstack.info.api_url.clone(),
            origin: None,
        },
        source: ProfileSource::LocalBackend,
    };
    let bus = EventBus::new();
    let mut rx = bus.subscribe();
    let client = Client::new(paths, profile, bus);

    let first = client.start().await;
    assert!(!first.signed_in, "{first:?}");
    let refused = client.transfers().await.err();
    assert_eq!(refused.map(|e| e.code()), Some(ErrorCode::NotSignedIn));

    let email = format!("client-{}@example.com", rand::rng().random::<u32>());
    let signed = client
        .sign_up(&email, "correct horse battery staple 42")
        .await
        .unwrap_or_else(|e| panic!("sign up: {e}"));
    let SignUpView::SignedIn { session } = signed else {
        panic!("the devstack signs in at once: {signed:?}");
    };
    assert_eq!(session.email.as_deref(), Some(email.as_str()));
    wait_for(&mut rx, Duration::from_secs(5), "SessionChanged", |e| {
        matches!(
            e,
            Event::SessionChanged {
                signed_in: true,
                ..
            }
        )
        .then_some(())
    })
    .await;

    let manuscript = fixture("lighthouse.docx");
    let options = JobOptions {
        author: Some("Ada Author".into()),
        ..JobOptions::default()
    };
    let offers = client
        .upload(std::slice::from_ref(&manuscript), &options, false)
        .await
        .unwrap_or_else(|e| panic!("upload: {e}"));
    assert_eq!(offers.len(), 1);
    assert!(offers[0].error.is_none(), "{offers:?}");
    let transfer_id = offers[0].transfer_id.clone().unwrap_or_default();

    // The queue runs in the background: the upload completes and names its job...
    let job_id = wait_for(
        &mut rx,
        Duration::from_secs(60),
        "upload completed",
        |e| match e {
            Event::TransferState {
                transfer_id: t,
                state: TransferState::Completed,
                detail,
                ..
            } if *t == transfer_id => detail.clone(),
            Event::TransferState {
                state: TransferState::Failed,
                detail,
                ..
            } => panic!("upload failed: {detail:?}"),
            _ => None,
        },
    )
    .await;
    // ...and the job feed follows that job until it completes, without being asked.
    let done = wait_for(
        &mut rx,
        Duration::from_secs(60),
        "job completed",
        |e| match e {
            Event::JobChanged { job } if job.id == job_id && job.status == "completed" => {
                Some(job.clone())
            }
            _ => None,
        },
    )
    .await;
    assert_eq!(done.author.as_deref(), Some("Ada Author"));
    assert_eq!(done.title, "lighthouse");
    // Auto-download (on by default): the completed job's book lands in the library.
    wait_for(
        &mut rx,
        Duration::from_secs(60),
        "the book catalogued",
        |e| match e {
            Event::LibraryChanged { job_id: j } if *j == job_id => Some(()),
            Event::TransferState {
                transfer_id: t,
                state: TransferState::Failed,
                detail,
                ..
            } if t.starts_with('d') => panic!("download failed: {detail:?}"),
            _ => None,
        },
    )
    .await;
    let downloads = client
        .download_list()
        .await
        .unwrap_or_else(|e| panic!("downloads: {e}"));
    assert!(
        !downloads.is_empty()
            && downloads
                .iter()
                .all(|d| d.job_id == job_id && d.state == DownloadState::Completed),
        "{downloads:?}"
    );
    let books = client.books(None).unwrap_or_else(|e| panic!("books: {e}"));
    assert!(
        books
            .iter()
            .any(|b| b.job_id == job_id && b.book_file.is_some())
    );
    // Asking again queues nothing: it is all here.
    let again = client
        .download(&job_id, DownloadChoice::All)
        .await
        .unwrap_or_else(|e| panic!("download: {e}"));
    assert!(again.queued.is_empty(), "{again:?}");
    // A finished audiobook's notification buttons: a book that is here opens (and plays
    // for "Play"); one that is not is queued and the transfers are shown.
    for (action, play) in [(AlertAction::Play, true), (AlertAction::Download, false)] {
        let follow = client
            .alert_action(action, &job_id)
            .await
            .unwrap_or_else(|e| panic!("alert action: {e}"));
        assert_eq!(
            follow,
            AlertFollowUp::Book {
                job_id: job_id.clone(),
                play
            }
        );
    }
    client
        .remove_book(&job_id)
        .unwrap_or_else(|e| panic!("remove: {e}"));
    let follow = client
        .alert_action(AlertAction::Play, &job_id)
        .await
        .unwrap_or_else(|e| panic!("alert action: {e}"));
    assert_eq!(follow, AlertFollowUp::Transfers);
    let here = |client: &Client| {
        client
            .books(None)
            .unwrap_or_else(|e| panic!("books: {e}"))
            .iter()
            .any(|b| b.job_id == job_id && b.book_file.is_some())
    };
    assert!(!here(&client), "removed");
    while !here(&client) {
        wait_for(
            &mut rx,
            Duration::from_secs(60),
            "the book downloaded again",
            |e| match e {
                Event::LibraryChanged { job_id: j } if *j == job_id => Some(()),
                _ => None,
            },
        )
        .await;
    }
    let jobs = client.jobs().await.unwrap_or_else(|e| panic!("jobs: {e}"));
    assert!(
        jobs.iter()
            .any(|j| j.id == job_id && j.status == "completed")
    );

    let again = client
        .upload(std::slice::from_ref(&manuscript), &options, false)
        .await
        .unwrap_or_else(|e| panic!("upload again: {e}"));
    assert_eq!(
        again[0].error.as_ref().map(|e| e.code.as_str()),
        Some(ErrorCode::DuplicateUpload.as_str()),
        "{again:?}"
    );

    let out = client.sign_out().await;
    assert!(!out.signed_in);
    let after = client.transfers().await.err();
    assert_eq!(after.map(|e| e.code()), Some(ErrorCode::NotSignedIn));
    devstack.shutdown().await;

    // Offline and signed out: the library lists the book and the playback server serves it.
    let books = client
        .books(None)
        .unwrap_or_else(|e| panic!("books offline: {e}"));
    let book = books
        .iter()
        .find(|b| b.job_id == job_id)
        .unwrap_or_else(|| panic!("the book is listed offline"));
    let playback = client
        .playback(&job_id)
        .await
        .unwrap_or_else(|e| panic!("playback offline: {e}"));
    let url = playback
        .book_url
        .unwrap_or_else(|| panic!("a book URL offline"));
    let body = reqwest::get(&url)
        .await
        .unwrap_or_else(|e| panic!("media server: {e}"))
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("media body: {e}"));
    assert_eq!(
        Some(body.len() as u64),
        book.book_file.as_ref().map(|f| f.size),
        "the whole book is served with no backend"
    );
}

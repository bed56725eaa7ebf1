//! The one typed event stream the shells subscribe to: transfer progress (bytes done and
//! total, rate, ETA), state changes and notices ("started over because the file changed").
//!
//! It owns the event types and the bus, a tokio broadcast channel of bounded capacity: a
//! slow subscriber loses the oldest events (and is told how many) instead of slowing the
//! transfers down. It never blocks a publisher and never carries secrets (no URLs, no
//! tokens), only ids and display data.

use std::path::PathBuf;

use serde::Serialize;
use tokio::sync::broadcast;

/// How many events a subscriber may lag behind before it loses the oldest.
pub const EVENT_CAPACITY: usize = 1024;

/// Where a transfer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum TransferState {
    Queued,
    /// Reading the file to compute its checksums.
    Hashing,
    Uploading,
    /// Waiting before a retry (server busy, a request failed).
    Waiting,
    /// Waiting for the network: no connection to the server or the store could be made.
    /// Probed with capped backoff; the transfer goes on by itself when it returns.
    Offline,
    /// The bytes are stored; the narration job is being created.
    CreatingJob,
    Paused,
    Failed,
    Cancelled,
    Completed,
    /// Receiving the file (downloads).
    Downloading,
    /// Checking the received file's size and checksum before it is put in place.
    Verifying,
}

impl TransferState {
    pub fn as_str(self) -> &'static str {
        match self {
            TransferState::Queued => "queued",
            TransferState::Hashing => "hashing",
            TransferState::Uploading => "uploading",
            TransferState::Waiting => "waiting",
            TransferState::Offline => "offline",
            TransferState::CreatingJob => "creating_job",
            TransferState::Paused => "paused",
            TransferState::Failed => "failed",
            TransferState::Cancelled => "cancelled",
            TransferState::Completed => "completed",
            TransferState::Downloading => "downloading",
            TransferState::Verifying => "verifying",
        }
    }
}

/// A progress snapshot, like rclone's accounting line.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct TransferProgress {
    pub transfer_id: String,
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// Bytes per second, smoothed over the last seconds.
    pub rate: f64,
    /// Seconds left at the current rate; `None` while the rate is unknown.
    pub eta_secs: Option<u64>,
    pub state: TransferState,
}

/// Something the user should be told about a transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TransferNotice {
    /// The local file changed since it was queued or partly sent: its upload starts over.
    RestartedFileChanged { reason: String },
    /// The server no longer knows the upload (expired or aborted): a fresh one starts.
    RestartedUploadGone,
    /// The backend has no presign routes: the file goes through `POST /jobs/upload`.
    FallbackFormUpload,
    /// Resuming: these parts were already stored and are not sent again.
    Resumed { parts_done: u32, parts_total: u32 },
    /// A part was stored (multipart uploads).
    PartStored { part_number: u32 },
    /// The same content was uploaded before by this account; nothing was sent.
    Duplicate { job_id: Option<String> },
    /// A request could not connect (the network is down); it is tried again in
    /// `retry_in_ms`, without counting as a failure. One per probe.
    WaitingForNetwork { reason: String, retry_in_ms: u64 },
    /// Another process (another `rohimaya` or the app) is uploading this file; this one
    /// leaves it alone.
    BusyElsewhere { message: String },
    /// A download starts over from byte 0: the object changed on the server since its
    /// first bytes were received (so two versions are never spliced), or the partial
    /// file could not be used.
    DownloadRestarted { reason: String },
    /// A download continues from its `.part` file: these bytes are not fetched again.
    DownloadResumed { bytes_done: u64, bytes_total: u64 },
}

/// Every event the core publishes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    TransferProgress(TransferProgress),
    TransferState {
        transfer_id: String,
        path: PathBuf,
        state: TransferState,
        /// The error code and message when failed; the job id when completed.
        detail: Option<String>,
    },
    TransferNotice {
        transfer_id: String,
        notice: TransferNotice,
    },
    /// A followed narration job is new or changed (status, progress, step, error).
    JobChanged {
        job: crate::jobs::JobView,
    },
    /// A followed job is no longer listed by the server (deleted).
    JobRemoved {
        job_id: String,
    },
    /// The jobs could not be polled (offline, server down, session refused); polling
    /// goes on with backoff.
    JobsUnavailable {
        code: String,
        message: String,
    },
    /// Someone signed in or out, or the session ended on the server's word (`reason`).
    SessionChanged {
        signed_in: bool,
        email: Option<String>,
        reason: Option<String>,
    },
    /// A watched-folder activity-log entry (seen, ignored, waited, queued, uploaded...).
    WatchActivity(crate::watch::Activity),
    /// A watched folder's state changed (unavailable, available again, paused).
    WatchFolderState(crate::watch::WatchedFolder),
    /// The offline library changed: a book was catalogued (its files landed) or its
    /// server state changed ("only on this computer").
    LibraryChanged {
        job_id: String,
    },
}

/// The bus: cheap to clone; every clone publishes to the same subscribers.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(EVENT_CAPACITY);
        Self { tx }
    }

    /// A new subscriber, receiving the events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// Publishes to every subscriber; nobody listening is fine.
    pub fn publish(&self, event: Event) {
        let _ = self.tx.send(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_get_events_and_lagging_is_bounded() {
        let bus = EventBus::new();
        let mut rx = bus.subscribe();
        for i in 0..(EVENT_CAPACITY + 10) {
            bus.publish(Event::TransferNotice {
                transfer_id: i.to_string(),
                notice: TransferNotice::RestartedUploadGone,
            });
        }
        assert!(matches!(
            rx.recv().await,
            Err(broadcast::error::RecvError::Lagged(10))
        ));
        let Ok(Event::TransferNotice { transfer_id, .. }) = rx.recv().await else {
            panic!("expected a notice");
        };
        assert_eq!(transfer_id, "10");
        let json = serde_json::to_value(Event::TransferNotice {
            transfer_id: "a".into(),
            notice: TransferNotice::Resumed {
                parts_done: 1,
                parts_total: 3,
            },
        })
        .unwrap_or_default();
        assert_eq!(json["type"], "transfer_notice");
        assert_eq!(json["notice"]["kind"], "resumed");
    }
}

//! Which events deserve a desktop notification, and its words: an upload or a download
//! that failed, a narration job that completed, a session the server ended; and the
//! buttons a notification offers ([`AlertAction`]: "Download" and "Play" on a finished
//! audiobook). The shells show what [`desktop_alert`] returns and hand a pressed button
//! to `Client::alert_action`; they never decide which events matter.
//!
//! It owns that choice and the wording; it never shows anything itself and never puts a
//! path outside the file name, a URL or a token into a notification.

use serde::{Deserialize, Serialize};

use crate::events::{Event, TransferState};

/// What the user is alerted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    UploadFailed,
    JobCompleted,
    JobFailed,
    SessionEnded,
    /// A download into the library failed (transfer ids `d{id}`).
    DownloadFailed,
}

/// A button on a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum AlertAction {
    /// Queue the audiobook for download into the library.
    Download,
    /// Open the audiobook in the library and play it (downloading it first if needed).
    Play,
}

impl AlertAction {
    pub const ALL: [AlertAction; 2] = [AlertAction::Download, AlertAction::Play];

    /// The identifier the notification system reports back.
    pub fn id(self) -> &'static str {
        match self {
            AlertAction::Download => "download",
            AlertAction::Play => "play",
        }
    }

    /// The button's label.
    pub fn title(self) -> &'static str {
        match self {
            AlertAction::Download => "Download",
            AlertAction::Play => "Play",
        }
    }

    pub fn from_id(id: &str) -> Option<AlertAction> {
        Self::ALL.into_iter().find(|a| a.id() == id)
    }
}

/// The name under which the shells register the buttons of a finished audiobook's
/// notification.
pub const JOB_COMPLETED_ACTIONS: &str = "job-completed";

/// One desktop notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct DesktopAlert {
    pub kind: AlertKind,
    pub title: String,
    pub body: String,
    /// The job it is about, for "Download" / "Play" in the app.
    pub job_id: Option<String>,
    /// Its buttons (none but on a finished audiobook), registered by the shells under
    /// [`JOB_COMPLETED_ACTIONS`].
    pub actions: Vec<AlertAction>,
}

/// The notification `event` calls for, if any. Job events alert only on the change into
/// completed or failed (the feed reports each change once).
pub fn desktop_alert(event: &Event) -> Option<DesktopAlert> {
    match event {
        Event::TransferState {
            transfer_id,
            path,
            state: TransferState::Failed,
            detail,
        } => {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let download = transfer_id.starts_with('d');
            Some(DesktopAlert {
                kind: if download {
                    AlertKind::DownloadFailed
                } else {
                    AlertKind::UploadFailed
                },
                title: if download {
                    format!("Download failed: {name}")
                } else {
                    format!("Upload failed: {name}")
                },
                body: detail
                    .clone()
                    .unwrap_or_else(|| "Open Rohimaya to retry it.".into()),
                job_id: None,
                actions: Vec::new(),
            })
        }
        Event::JobChanged { job } if job.status == "completed" => Some(DesktopAlert {
            kind: AlertKind::JobCompleted,
            title: format!("“{}” is ready", job.title),
            body: "Your audiobook is finished. Download it or play it in Rohimaya.".into(),
            job_id: Some(job.id.clone()),
            actions: AlertAction::ALL.to_vec(),
        }),
        Event::JobChanged { job } if job.status == "failed" => Some(DesktopAlert {
            kind: AlertKind::JobFailed,
            title: format!("“{}” could not be narrated", job.title),
            body: job
                .error_message
                .clone()
                .unwrap_or_else(|| "Open Rohimaya to see why and retry.".into()),
            job_id: Some(job.id.clone()),
            actions: Vec::new(),
        }),
        Event::SessionChanged {
            signed_in: false,
            reason: Some(reason),
            ..
        } => Some(DesktopAlert {
            kind: AlertKind::SessionEnded,
            title: "You were signed out".into(),
            body: format!("{reason} Sign in again to keep uploading."),
            job_id: None,
            actions: Vec::new(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::JobView;

    fn job(status: &str) -> JobView {
        JobView {
            id: "j1".into(),
            title: "The Book".into(),
            author: None,
            status: status.into(),
            progress_percent: None,
            current_step: None,
            error_message: None,
            audio_format: None,
            duration_seconds: None,
            file_size_bytes: None,
            created_at: None,
            completed_at: None,
        }
    }

    #[test]
    fn only_endings_alert() {
        let done = desktop_alert(&Event::JobChanged {
            job: job("completed"),
        });
        assert_eq!(
            done.as_ref().map(|a| (a.kind, a.actions.clone())),
            Some((
                AlertKind::JobCompleted,
                vec![AlertAction::Download, AlertAction::Play]
            ))
        );
        for a in AlertAction::ALL {
            assert_eq!(AlertAction::from_id(a.id()), Some(a));
        }
        assert_eq!(AlertAction::from_id("tap"), None);
        assert!(
            desktop_alert(&Event::JobChanged {
                job: job("processing")
            })
            .is_none()
        );
        let failed = desktop_alert(&Event::TransferState {
            transfer_id: "1".into(),
            path: "/home/a/Secret Dir/book.docx".into(),
            state: TransferState::Failed,
            detail: Some("the store refused it".into()),
        })
        .expect("an alert");
        assert_eq!(failed.title, "Upload failed: book.docx");
        assert!(!failed.title.contains("Secret Dir"));
        let download = desktop_alert(&Event::TransferState {
            transfer_id: crate::downloads::transfer_id(1),
            path: "/home/a/Library/Ann/Book/Book.wav".into(),
            state: TransferState::Failed,
            detail: Some("disk_full: not enough space".into()),
        })
        .expect("an alert");
        assert_eq!(download.kind, AlertKind::DownloadFailed);
        assert_eq!(download.title, "Download failed: Book.wav");
        assert!(
            desktop_alert(&Event::SessionChanged {
                signed_in: false,
                email: None,
                reason: None
            })
            .is_none(),
            "signing out yourself is not news"
        );
    }
}

//! The stable error codes every core error carries, so the app and the CLI can react to
//! a code instead of matching message text. It owns the code list; it never formats UI.

use serde::Serialize;

/// A stable, machine-readable error code. Never renamed once shipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    ConfigIncomplete,
    ConfigInvalidUrl,
    ConfigUnreadable,
    NetworkUnreachable,
    ServerError,
    UnexpectedResponse,
    /// The embedded local backend (devstack) could not start.
    LocalBackendFailed,
    /// `--profile NAME` names no known backend.
    ProfileUnknown,
    /// A profile name with characters other than letters, digits, `-` and `_`.
    ProfileInvalidName,
    /// Wrong email or password (GoTrue `invalid_credentials`).
    InvalidCredentials,
    /// The account exists but its email is not confirmed yet.
    EmailNotConfirmed,
    /// The server asks the client to slow down (429); the error carries a retry-after.
    RateLimited,
    /// An account with this email exists already.
    UserAlreadyExists,
    /// The password is too weak for the server.
    WeakPassword,
    /// The one-time code is wrong or expired.
    OtpInvalid,
    /// The auth server refused the request for another reason (its code is in the message).
    AuthRejected,
    /// No one is signed in on this profile.
    NotSignedIn,
    /// The session was ended by the server (signed out elsewhere, revoked, expired,
    /// replayed): the user must sign in again.
    SessionEnded,
    /// The account was suspended or deleted.
    AccountUnavailable,
    /// The OAuth sign-in was not completed in time.
    OauthTimedOut,
    /// The user (or the provider) refused the OAuth sign-in.
    OauthDenied,
    /// The OAuth sign-in failed (bad callback, listener error, cancelled).
    OauthFailed,
    /// The engine refused the token even after a refresh.
    Unauthorized,
    /// The engine refuses this action to this user (403).
    Forbidden,
    /// No such job (or track).
    NotFound,
    /// The engine refuses the request as it stands (400, 409, 422: e.g. cancelling a
    /// finished job).
    RequestRejected,
    /// The file is not a manuscript Rohimaya accepts (wrong type, empty, a directory).
    ManuscriptRefused,
    /// The file cannot be read (permissions, vanished, I/O error).
    FileUnreadable,
    /// The server's ETag does not match the bytes that were sent: the upload is not trusted.
    IntegrityMismatch,
    /// An upload failed after its retries (the message says which request and why).
    TransferFailed,
    /// The upload was paused, cancelled or interrupted before it finished.
    TransferInterrupted,
    /// The file changed while it was being uploaded (its upload starts over).
    FileChanged,
    /// The transfer queue (`state.db`) cannot be opened or written.
    QueueUnavailable,
    /// No queued file has this id.
    QueueItemUnknown,
    /// This account already uploaded a file with the same content from this machine.
    DuplicateUpload,
    /// Another process (another `rohimaya`, the app) is uploading this queue item.
    QueueItemBusy,
    /// The library catalog (`state.db`) or the library folder cannot be used.
    LibraryUnavailable,
    /// No book with this id is in the offline library.
    BookNotInLibrary,
    /// A path would lead outside the library folder (a hostile name, a symlink): refused.
    PathOutsideLibrary,
    /// A file in the library cannot be read, written or deleted.
    LibraryFileError,
    /// The local playback server could not start.
    MediaServerFailed,
    /// The server no longer has the job, track or audio (deleted, expired by the
    /// storage's lifecycle rules): a local copy is the only one.
    ServerCopyGone,
    /// A download destination outside the library folder (`..`, an absolute path
    /// elsewhere, a link leading out): refused, nothing written.
    DestinationOutsideLibrary,
    /// Not enough free disk space for a download (the message says how much and where).
    NotEnoughSpace,
    /// A different file already has the download's name; it is never overwritten.
    DestinationExists,
    /// The download could not be written to disk (permissions, I/O error, disk full).
    DiskWriteFailed,
    /// The watcher's tables in `state.db` cannot be opened or written.
    WatchStateUnavailable,
    /// The folder cannot be watched (not a folder, cannot be read, a bad ignore pattern).
    WatchFolderInvalid,
    /// No watched folder has this path.
    WatchFolderUnknown,
    /// The folder (or a folder containing it) is already watched.
    WatchFolderAlreadyWatched,
    /// The OS file-system watcher could not be started.
    WatcherFailed,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ConfigIncomplete => "config_incomplete",
            ErrorCode::ConfigInvalidUrl => "config_invalid_url",
            ErrorCode::ConfigUnreadable => "config_unreadable",
            ErrorCode::NetworkUnreachable => "network_unreachable",
            ErrorCode::ServerError => "server_error",
            ErrorCode::UnexpectedResponse => "unexpected_response",
            ErrorCode::LocalBackendFailed => "local_backend_failed",
            ErrorCode::ProfileUnknown => "profile_unknown",
            ErrorCode::ProfileInvalidName => "profile_invalid_name",
            ErrorCode::InvalidCredentials => "invalid_credentials",
            ErrorCode::EmailNotConfirmed => "email_not_confirmed",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::UserAlreadyExists => "user_already_exists",
            ErrorCode::WeakPassword => "weak_password",
            ErrorCode::OtpInvalid => "otp_invalid",
            ErrorCode::AuthRejected => "auth_rejected",
            ErrorCode::NotSignedIn => "not_signed_in",
            ErrorCode::SessionEnded => "session_ended",
            ErrorCode::AccountUnavailable => "account_unavailable",
            ErrorCode::OauthTimedOut => "oauth_timed_out",
            ErrorCode::OauthDenied => "oauth_denied",
            ErrorCode::OauthFailed => "oauth_failed",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::RequestRejected => "request_rejected",
            ErrorCode::ManuscriptRefused => "manuscript_refused",
            ErrorCode::FileUnreadable => "file_unreadable",
            ErrorCode::IntegrityMismatch => "integrity_mismatch",
            ErrorCode::TransferFailed => "transfer_failed",
            ErrorCode::TransferInterrupted => "transfer_interrupted",
            ErrorCode::FileChanged => "file_changed",
            ErrorCode::QueueUnavailable => "queue_unavailable",
            ErrorCode::QueueItemUnknown => "queue_item_unknown",
            ErrorCode::DuplicateUpload => "duplicate_upload",
            ErrorCode::QueueItemBusy => "queue_item_busy",
            ErrorCode::LibraryUnavailable => "library_unavailable",
            ErrorCode::BookNotInLibrary => "book_not_in_library",
            ErrorCode::PathOutsideLibrary => "path_outside_library",
            ErrorCode::LibraryFileError => "library_file_error",
            ErrorCode::MediaServerFailed => "media_server_failed",
            ErrorCode::ServerCopyGone => "server_copy_gone",
            ErrorCode::DestinationOutsideLibrary => "destination_outside_library",
            ErrorCode::NotEnoughSpace => "not_enough_space",
            ErrorCode::DestinationExists => "destination_exists",
            ErrorCode::DiskWriteFailed => "disk_write_failed",
            ErrorCode::WatchStateUnavailable => "watch_state_unavailable",
            ErrorCode::WatchFolderInvalid => "watch_folder_invalid",
            ErrorCode::WatchFolderUnknown => "watch_folder_unknown",
            ErrorCode::WatchFolderAlreadyWatched => "watch_folder_already_watched",
            ErrorCode::WatcherFailed => "watcher_failed",
        }
    }
}

/// Implemented by every core error type.
pub trait CoreError: std::error::Error {
    fn code(&self) -> ErrorCode;
}

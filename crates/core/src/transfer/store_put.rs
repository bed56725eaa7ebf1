//! One presigned PUT to the object store: a byte range of a file read on a blocking thread
//! in fixed-size chunks, handed over a small bounded channel to the request body (through
//! the bandwidth limiter when a limit is set), watched for stalls, and the store's answer
//! classified (stored with an ETag, expired URL, gone upload, bad digest, temporary,
//! refused).
//!
//! It owns that request and nothing above it: it never retries, never re-signs and never
//! logs a URL's signature. Memory per request is a few chunks ([`CHUNK`] ×
//! ([`QUEUED_CHUNKS`] + 2)), whatever the range's size.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::io::{Read, Seek};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::limiter::BandwidthLimiter;
use super::progress::ProgressMeter;
use crate::api::request::{parse_retry_after, redact_url, without_url};

/// Bytes read from disk and handed to the socket at a time.
pub const CHUNK: usize = 512 * 1024;
/// Chunks read ahead of the socket, waiting in the channel.
pub const QUEUED_CHUNKS: usize = 2;
/// Bytes handed to the socket at a time under a bandwidth limit.
const LIMITED_SLICE: usize = 64 * 1024;
/// Bytes asked of the bandwidth limiter at a time.
const LIMIT_STEP: usize = 16 * 1024;

/// Why a PUT did not store the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutFailure {
    /// The URL expired (or is not valid yet): sign again and retry, not a failure.
    Expired,
    /// The multipart upload is gone at the store.
    NoSuchUpload,
    /// The store computed another MD5 than the signed one: the file changed.
    BadDigest,
    /// No connection to the store could be made (refused, no DNS answer, connect
    /// timeout): the network is down; wait for it without counting a failure.
    Offline {
        reason: String,
    },
    /// Network error, reset, stall, truncated answer, 5xx, 429: retry after a wait.
    Temporary {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Any other refusal: retrying will not help.
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    Cancelled,
    /// The local file cannot be read.
    Unreadable(String),
}

/// What one PUT needs.
pub struct PutRequest<'a> {
    pub http: &'a reqwest::Client,
    pub url: &'a str,
    pub headers: &'a [(String, String)],
    pub path: &'a Path,
    pub offset: u64,
    pub len: u64,
    pub limiter: &'a BandwidthLimiter,
    pub meter: &'a ProgressMeter,
    pub stall_timeout: Duration,
    pub cancel: &'a CancellationToken,
}

/// Sends the PUT; returns the store's ETag (normalised, unverified) on success. Bytes
/// counted on `meter` during a failed attempt are taken back before returning.
pub async fn put_range(req: PutRequest<'_>) -> Result<String, PutFailure> {
    let sent = Arc::new(AtomicU64::new(0));
    let result = put_inner(&req, sent.clone()).await;
    if result.is_err() {
        req.meter.rewind(sent.load(Ordering::Relaxed));
    }
    result
}

async fn put_inner(req: &PutRequest<'_>, sent: Arc<AtomicU64>) -> Result<String, PutFailure> {
    let (path, offset, len) = (req.path.to_path_buf(), req.offset, req.len);
    let opened = tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path)?;
        file.seek(std::io::SeekFrom::Start(offset))?;
        Ok::<_, std::io::Error>(file)
    })
    .await;
    let file = match opened {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => return Err(PutFailure::Unreadable(e.to_string())),
        Err(e) => return Err(PutFailure::Unreadable(e.to_string())),
    };
    // The body is streamed by the connection's own task, which outlives this future if it
    // is dropped (cancel, stall): the guard ends the body then, and with it the request.
    let abandoned = CancellationToken::new();
    let _abandon_on_return = abandoned.clone().drop_guard();
    let (tx, rx) = mpsc::channel(QUEUED_CHUNKS);
    // Ends by itself when the range is read, or at its next chunk once the body is dropped.
    tokio::task::spawn_blocking(move || read_chunks(file, len, tx));
    let epoch = Instant::now();
    let last_progress = Arc::new(AtomicU64::new(0));
    let touch = {
        let last = last_progress.clone();
        move || last.store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed)
    };
    let state = BodyState {
        chunks: rx,
        rest: Bytes::new(),
        abandoned,
        limiter: req.limiter.clone(),
        meter: req.meter.clone(),
        sent: sent.clone(),
        touch: touch.clone(),
    };
    let stream = futures::stream::unfold(state, |mut s| async move {
        (s.touch)();
        let gone = || std::io::Error::other("the request was abandoned");
        if s.abandoned.is_cancelled() {
            return Some((Err(gone()), s));
        }
        let chunk = if s.rest.is_empty() {
            let next = tokio::select! {
                c = s.chunks.recv() => c?,
                _ = s.abandoned.cancelled() => Err(gone()),
            };
            match next {
                Ok(c) => c,
                Err(e) => return Some((Err(e), s)),
            }
        } else {
            std::mem::take(&mut s.rest)
        };
        let mut chunk = chunk;
        if s.limiter.rate() > 0 {
            // Under a limit, handed on in small slices (no copy), each after its share
            // of the limit: the socket sees a smooth rate, not bursts of a whole chunk.
            if chunk.len() > LIMITED_SLICE {
                s.rest = chunk.split_off(LIMITED_SLICE);
            }
            // In steps, so that waiting for the shared limit never looks like a stall.
            let n = chunk.len();
            let mut granted = 0;
            while granted < n {
                let step = (n - granted).min(LIMIT_STEP);
                tokio::select! {
                    _ = s.limiter.acquire(step) => {}
                    _ = s.abandoned.cancelled() => return Some((Err(gone()), s)),
                }
                (s.touch)();
                granted += step;
            }
        }
        let n = chunk.len();
        s.meter.add(n as u64);
        s.sent.fetch_add(n as u64, Ordering::Relaxed);
        Some((Ok::<Bytes, std::io::Error>(chunk), s))
    });
    let mut builder = req
        .http
        .put(req.url)
        .header(reqwest::header::CONTENT_LENGTH, req.len)
        .body(reqwest::Body::wrap_stream(stream));
    for (k, v) in req.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let exchange = {
        let touch = touch.clone();
        async move {
            let res = builder.send().await?;
            touch();
            let status = res.status().as_u16();
            let headers = res.headers().clone();
            let body = res.bytes().await?;
            Ok::<_, reqwest::Error>((status, headers, body))
        }
    };
    tokio::pin!(exchange);
    let check_every = (req.stall_timeout / 4).max(Duration::from_millis(50));
    let answer = loop {
        tokio::select! {
            r = &mut exchange => break r,
            _ = req.cancel.cancelled() => return Err(PutFailure::Cancelled),
            _ = tokio::time::sleep(check_every) => {
                let idle = epoch.elapsed().as_millis() as u64 - last_progress.load(Ordering::Relaxed);
                if Duration::from_millis(idle) >= req.stall_timeout {
                    tracing::debug!(url = %redact_url(req.url), "PUT stalled");
                    return Err(PutFailure::Temporary {
                        reason: format!("no progress for {} s", req.stall_timeout.as_secs_f32()),
                        retry_after: None,
                    });
                }
            }
        }
    };
    let (status, headers, body) = match answer {
        Ok(a) => a,
        Err(e) => {
            let reason = without_url(&e);
            let source = std::error::Error::source(&e).map(|s| s.to_string());
            if let Some(s) = &source
                && s.contains("got shorter")
            {
                return Err(PutFailure::BadDigest);
            }
            if e.is_connect() {
                return Err(PutFailure::Offline {
                    reason: match source {
                        Some(s) => format!("{reason}: {s}"),
                        None => reason,
                    },
                });
            }
            return Err(PutFailure::Temporary {
                reason: match source {
                    Some(s) => format!("{reason}: {s}"),
                    None => reason,
                },
                retry_after: None,
            });
        }
    };
    if (200..300).contains(&status) {
        return match headers
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
        {
            Some(etag) => Ok(super::plan::normalize_etag(etag)),
            None => Err(PutFailure::Temporary {
                reason: "the store's answer has no ETag".into(),
                retry_after: None,
            }),
        };
    }
    let text = String::from_utf8_lossy(&body);
    let code = xml_field(&text, "Code").unwrap_or_default();
    let message = xml_field(&text, "Message").unwrap_or_default();
    Err(classify(
        status,
        &code,
        &message,
        parse_retry_after(&headers),
    ))
}

/// Reads `len` bytes of `file` (positioned) in [`CHUNK`]s into `tx`, without zero-filling;
/// a file that ends early sends an error ("got shorter") and stops.
fn read_chunks(mut file: std::fs::File, len: u64, tx: mpsc::Sender<std::io::Result<Bytes>>) {
    let mut left = len;
    while left > 0 {
        let want = left.min(CHUNK as u64);
        let mut buf = Vec::with_capacity(want as usize);
        let read = (&mut file).take(want).read_to_end(&mut buf);
        let item = match read {
            Ok(got) if (got as u64) < want => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file got shorter while it was sent",
            )),
            Ok(_) => Ok(Bytes::from(buf)),
            Err(e) => Err(e),
        };
        let failed = item.is_err();
        if tx.blocking_send(item).is_err() || failed {
            return;
        }
        left -= want;
    }
}

struct BodyState<F> {
    chunks: mpsc::Receiver<std::io::Result<Bytes>>,
    /// What is left of the current chunk (under a bandwidth limit only).
    rest: Bytes,
    /// Set when the request was given up: the body ends with an error.
    abandoned: CancellationToken,
    limiter: BandwidthLimiter,
    meter: ProgressMeter,
    sent: Arc<AtomicU64>,
    touch: F,
}

/// Maps a store error answer onto what the uploader does next.
pub fn classify(
    status: u16,
    code: &str,
    message: &str,
    retry_after: Option<Duration>,
) -> PutFailure {
    let msg = message.to_ascii_lowercase();
    let expired = code == "ExpiredRequest"
        || code == "RequestTimeTooSkewed"
        || (code == "AccessDenied" && (msg.contains("expired") || msg.contains("not valid yet")))
        || (status == 403 && code.is_empty() && msg.contains("expired"));
    if (status == 400 || status == 403) && expired {
        return PutFailure::Expired;
    }
    if code == "NoSuchUpload" {
        return PutFailure::NoSuchUpload;
    }
    if code == "BadDigest" || code == "InvalidDigest" {
        return PutFailure::BadDigest;
    }
    if status >= 500
        || status == 429
        || status == 408
        || code == "RequestTimeout"
        || code == "SlowDown"
    {
        return PutFailure::Temporary {
            reason: if code.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status} {code}")
            },
            retry_after,
        };
    }
    PutFailure::Refused {
        status,
        code: code.to_string(),
        message: message.to_string(),
    }
}

/// The text of `<name>...</name>` in an S3 error document.
fn xml_field(text: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let (_, rest) = text.split_once(&open)?;
    let (value, _) = rest.split_once(&close)?;
    Some(value.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_answers_are_classified() {
        assert_eq!(
            classify(403, "AccessDenied", "Request has expired", None),
            PutFailure::Expired
        );
        assert_eq!(
            classify(400, "ExpiredRequest", "", None),
            PutFailure::Expired
        );
        assert!(matches!(
            classify(403, "AccessDenied", "Signature mismatch", None),
            PutFailure::Refused { status: 403, .. }
        ));
        assert_eq!(
            classify(404, "NoSuchUpload", "", None),
            PutFailure::NoSuchUpload
        );
        assert_eq!(classify(400, "BadDigest", "", None), PutFailure::BadDigest);
        assert_eq!(
            classify(429, "", "", Some(Duration::from_secs(2))),
            PutFailure::Temporary {
                reason: "HTTP 429".into(),
                retry_after: Some(Duration::from_secs(2))
            }
        );
        assert!(matches!(
            classify(503, "SlowDown", "", None),
            PutFailure::Temporary { .. }
        ));
        assert_eq!(
            xml_field(
                "<Error><Code>X</Code><Message> m </Message></Error>",
                "Message"
            )
            .as_deref(),
            Some("m")
        );
    }
}

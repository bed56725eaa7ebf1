//! One presigned PUT to the object store: a byte range of a file streamed from disk in
//! fixed-size chunks through the bandwidth limiter, watched for stalls, and the store's
//! answer classified (stored with an ETag, expired URL, gone upload, bad digest,
//! temporary, refused).
//!
//! It owns that request and nothing above it: it never retries, never re-signs and never
//! logs a URL's signature. Memory per request is a few chunks, whatever the range's size.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::sync::CancellationToken;

use super::limiter::BandwidthLimiter;
use super::progress::ProgressMeter;
use crate::api::uploads::{parse_retry_after, redact_url, without_url};

/// Bytes read from disk and handed to the socket at a time.
pub const CHUNK: usize = 128 * 1024;
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
    let mut file = tokio::fs::File::open(req.path)
        .await
        .map_err(|e| PutFailure::Unreadable(e.to_string()))?;
    file.seek(std::io::SeekFrom::Start(req.offset))
        .await
        .map_err(|e| PutFailure::Unreadable(e.to_string()))?;
    let epoch = Instant::now();
    let last_progress = Arc::new(AtomicU64::new(0));
    let touch = {
        let last = last_progress.clone();
        move || last.store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed)
    };
    let state = BodyState {
        file,
        left: req.len,
        limiter: req.limiter.clone(),
        meter: req.meter.clone(),
        sent: sent.clone(),
        touch: touch.clone(),
    };
    let stream = futures::stream::unfold(state, |mut s| async move {
        if s.left == 0 {
            return None;
        }
        (s.touch)();
        let want = s.left.min(CHUNK as u64) as usize;
        let mut buf = BytesMut::zeroed(want);
        let mut filled = 0;
        while filled < want {
            match s.file.read(&mut buf[filled..]).await {
                Ok(0) => {
                    return Some((
                        Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "the file got shorter while it was sent",
                        )),
                        s,
                    ));
                }
                Ok(n) => filled += n,
                Err(e) => return Some((Err(e), s)),
            }
        }
        // In steps, so that waiting for the shared limit never looks like a stall.
        let mut granted = 0;
        while granted < want {
            let step = (want - granted).min(LIMIT_STEP);
            s.limiter.acquire(step).await;
            (s.touch)();
            granted += step;
        }
        s.left -= want as u64;
        s.meter.add(want as u64);
        s.sent.fetch_add(want as u64, Ordering::Relaxed);
        Some((Ok(buf.freeze()), s))
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

struct BodyState<F> {
    file: tokio::fs::File,
    left: u64,
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

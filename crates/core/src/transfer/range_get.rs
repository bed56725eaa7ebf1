//! One presigned GET of a byte range of an object: the request (`Range`, `If-Match`), the
//! store's answer classified (part of the object, the whole object, changed, expired URL,
//! gone, temporary, refused), and its body streamed into the `.part` file at its offset
//! through fixed-size buffers, the bandwidth limiter and a stall watch.
//!
//! It owns that one request. It never retries, never asks for a new URL, never decides
//! to start over (the download engine does all three) and never logs a URL's signature.
//! Memory per request is two buffers of the configured size, whatever the range's size.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::limiter::BandwidthLimiter;
use super::part_file::PartFile;
use super::store_put::{PutFailure, classify};
use crate::api::request::{parse_retry_after, redact_url, without_url};

/// Why a GET did not deliver its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetFailure {
    /// The URL expired (or is not valid yet): ask for a new one, not a failure.
    Expired,
    /// The object is not the one first seen (412 to `If-Match`, another ETag or size):
    /// the download must start over.
    Changed(String),
    /// The store answered a ranged request with the whole object.
    RangeIgnored,
    /// 404: the object is gone.
    Gone(String),
    /// No connection could be made (the network is down): wait, not a failure.
    Offline(String),
    /// Reset, stall, truncated body, 5xx, 429: retry after a wait.
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
    /// The `.part` file could not be written.
    Disk(String),
}

/// What one GET asks for.
pub struct GetRequest<'a> {
    pub http: &'a reqwest::Client,
    pub url: &'a str,
    /// `Some((start, end))`: bytes `[start, end)`, or from `start` to the object's end
    /// when `end` is `None`. `None`: the whole object, no `Range` header.
    pub range: Option<(u64, Option<u64>)>,
    /// The ETag (unquoted) the object must still have.
    pub if_match: Option<&'a str>,
    pub stall_timeout: Duration,
    pub cancel: &'a CancellationToken,
}

/// An answer with a body to read.
#[derive(Debug)]
pub struct Opened {
    pub response: reqwest::Response,
    /// The object's ETag, unquoted ("" if the store sent none).
    pub etag: String,
    /// The object's whole size.
    pub total: u64,
    /// The bytes `[start, end)` of the object this body carries.
    pub start: u64,
    pub end: u64,
    /// Whether the store honoured the range (206); `false` for a 200 with everything.
    pub partial: bool,
}

/// Sends the GET and reads the answer's head.
pub async fn open(req: &GetRequest<'_>) -> Result<Opened, GetFailure> {
    let mut builder = req.http.get(req.url);
    if let Some((start, end)) = req.range {
        let value = match end {
            Some(end) => format!("bytes={start}-{}", end.saturating_sub(1)),
            None => format!("bytes={start}-"),
        };
        builder = builder.header(reqwest::header::RANGE, value);
    }
    if let Some(etag) = req.if_match {
        builder = builder.header(reqwest::header::IF_MATCH, format!("\"{etag}\""));
    }
    let sent = tokio::select! {
        r = tokio::time::timeout(req.stall_timeout, builder.send()) => r,
        _ = req.cancel.cancelled() => return Err(GetFailure::Cancelled),
    };
    let res = match sent {
        Err(_) => {
            tracing::debug!(url = %redact_url(req.url), "GET got no answer");
            return Err(GetFailure::Temporary {
                reason: format!("no answer for {} s", req.stall_timeout.as_secs_f32()),
                retry_after: None,
            });
        }
        Ok(Err(e)) => return Err(network_failure(&e)),
        Ok(Ok(res)) => res,
    };
    let status = res.status().as_u16();
    let etag = res
        .headers()
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(normalize_etag)
        .unwrap_or_default();
    match status {
        206 => {
            let range = res
                .headers()
                .get(reqwest::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_content_range);
            let Some((start, end, total)) = range else {
                return Err(GetFailure::Temporary {
                    reason: "a partial answer without a valid Content-Range".into(),
                    retry_after: None,
                });
            };
            Ok(Opened {
                response: res,
                etag,
                total,
                start,
                end,
                partial: true,
            })
        }
        200 => {
            let Some(total) = res.content_length() else {
                return Err(GetFailure::Temporary {
                    reason: "the answer has no Content-Length".into(),
                    retry_after: None,
                });
            };
            if req.range.is_some_and(|(start, _)| start > 0) {
                return Err(GetFailure::RangeIgnored);
            }
            Ok(Opened {
                response: res,
                etag,
                total,
                start: 0,
                end: total,
                partial: false,
            })
        }
        412 => Err(GetFailure::Changed(
            "the file on the server changed since its first bytes were received \
             (the store answered 412 to If-Match)"
                .into(),
        )),
        416 => {
            // `bytes */0`: the object is empty (a range of an empty object cannot be
            // satisfied); any other size means it shrank below the range.
            let total = res
                .headers()
                .get(reqwest::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes */"))
                .and_then(|v| v.trim().parse::<u64>().ok());
            if total == Some(0) {
                return Ok(Opened {
                    response: res,
                    etag,
                    total: 0,
                    start: 0,
                    end: 0,
                    partial: true,
                });
            }
            Err(GetFailure::Changed(
                "the file on the server is shorter than before".into(),
            ))
        }
        _ => {
            let retry_after = parse_retry_after(res.headers());
            let text = read_error_body(res).await;
            let code = xml_field(&text, "Code").unwrap_or_default();
            let message = xml_field(&text, "Message").unwrap_or_default();
            if status == 404 {
                return Err(GetFailure::Gone(if code.is_empty() {
                    "HTTP 404".into()
                } else {
                    format!("{code}: {message}")
                }));
            }
            if code == "PreconditionFailed" {
                return Err(GetFailure::Changed(
                    "the file on the server changed since its first bytes were received \
                     (the store answered PreconditionFailed to If-Match)"
                        .into(),
                ));
            }
            Err(match classify(status, &code, &message, retry_after) {
                PutFailure::Expired => GetFailure::Expired,
                PutFailure::Temporary {
                    reason,
                    retry_after,
                } => GetFailure::Temporary {
                    reason,
                    retry_after,
                },
                _ => GetFailure::Refused {
                    status,
                    code,
                    message,
                },
            })
        }
    }
}

/// Where a body's bytes go and who hears about them.
pub struct Sink<'a> {
    pub part: &'a PartFile,
    pub limiter: &'a BandwidthLimiter,
    pub buffer_size: usize,
    pub stall_timeout: Duration,
    pub cancel: &'a CancellationToken,
    /// Called after each buffer is written, with its offset and length, in order.
    pub written: &'a (dyn Fn(u64, u64) + Send + Sync),
    /// Called as bytes arrive from the network (before they are written).
    pub received: &'a (dyn Fn(u64) + Send + Sync),
}

/// A buffer being written: its offset, its length and the task writing it.
type Write = (u64, u64, tokio::task::JoinHandle<std::io::Result<Vec<u8>>>);

/// Streams `opened`'s body into the part file at its offsets. `Ok` once all of
/// `[start, end)` is written; a body that ends early, stalls or breaks is `Temporary`
/// (the bytes written before stay written and were reported).
pub async fn receive(mut opened: Opened, sink: &Sink<'_>) -> Result<(), GetFailure> {
    let mut offset = opened.start;
    let end = opened.end;
    let cap = sink.buffer_size.max(16 * 1024);
    let mut buf: Vec<u8> = Vec::with_capacity(cap);
    let mut spare: Option<Vec<u8>> = Some(Vec::with_capacity(cap));
    // The write in flight: its offset, length and task.
    let mut writing: Option<Write> = None;
    let finish_write = |w: Option<Write>| async move {
        match w {
            None => Ok(None),
            Some((at, len, task)) => match task.await {
                Ok(Ok(mut b)) => {
                    (sink.written)(at, len);
                    b.clear();
                    Ok(Some(b))
                }
                Ok(Err(e)) => Err(GetFailure::Disk(e.to_string())),
                Err(e) => Err(GetFailure::Disk(format!("a disk task failed: {e}"))),
            },
        }
    };
    let result: Result<(), GetFailure> = loop {
        let next = tokio::select! {
            r = tokio::time::timeout(sink.stall_timeout, opened.response.chunk()) => r,
            _ = sink.cancel.cancelled() => break Err(GetFailure::Cancelled),
        };
        let piece = match next {
            Err(_) => {
                break Err(GetFailure::Temporary {
                    reason: format!("no data for {} s", sink.stall_timeout.as_secs_f32()),
                    retry_after: None,
                });
            }
            Ok(Err(e)) => break Err(network_failure(&e)),
            Ok(Ok(None)) => None,
            Ok(Ok(Some(piece))) => Some(piece),
        };
        let at_end = piece.is_none();
        if let Some(piece) = piece {
            let have = offset + buf.len() as u64;
            if have + piece.len() as u64 > end {
                break Err(GetFailure::Temporary {
                    reason: "the store sent more bytes than asked for".into(),
                    retry_after: None,
                });
            }
            (sink.received)(piece.len() as u64);
            sink.limiter.acquire(piece.len()).await;
            let mut rest: &[u8] = &piece;
            while !rest.is_empty() {
                let take = rest.len().min(cap - buf.len());
                buf.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if buf.len() == cap {
                    match finish_write(writing.take()).await {
                        Ok(Some(b)) => spare = Some(b),
                        Ok(None) => {}
                        Err(e) => return Err(e),
                    }
                    let next_buf = spare.take().unwrap_or_else(|| Vec::with_capacity(cap));
                    let full = std::mem::replace(&mut buf, next_buf);
                    let len = full.len() as u64;
                    writing = Some((offset, len, sink.part.spawn_write(full, offset)));
                    offset += len;
                }
            }
        }
        if at_end {
            break Ok(());
        }
    };
    // Whatever happened, what was received is written and reported (a resume continues
    // after it).
    let flushed = async {
        finish_write(writing.take()).await?;
        if !buf.is_empty() {
            let len = buf.len() as u64;
            sink.part
                .write_at(std::mem::take(&mut buf), offset)
                .await
                .map_err(|e| GetFailure::Disk(e.to_string()))?;
            (sink.written)(offset, len);
            offset += len;
        }
        Ok::<(), GetFailure>(())
    }
    .await;
    result?;
    flushed?;
    if offset < end {
        return Err(GetFailure::Temporary {
            reason: format!(
                "the answer was cut off after {} of {} bytes",
                offset - opened.start,
                end - opened.start
            ),
            retry_after: None,
        });
    }
    Ok(())
}

fn network_failure(e: &reqwest::Error) -> GetFailure {
    let reason = without_url(e);
    let reason = match std::error::Error::source(e) {
        Some(s) => format!("{reason}: {s}"),
        None => reason,
    };
    if e.is_connect() {
        GetFailure::Offline(reason)
    } else {
        GetFailure::Temporary {
            reason,
            retry_after: None,
        }
    }
}

/// At most 64 KiB of an error answer (S3 error documents are small).
async fn read_error_body(mut res: reqwest::Response) -> String {
    let mut out = Vec::new();
    while out.len() < 64 * 1024 {
        match tokio::time::timeout(Duration::from_secs(10), res.chunk()).await {
            Ok(Ok(Some(c))) => out.extend_from_slice(&c),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An ETag without quotes or weak prefix, lower-cased.
pub fn normalize_etag(etag: &str) -> String {
    etag.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .to_ascii_lowercase()
}

/// Whether `etag` is a plain MD5 of the object (a single PUT), not a multipart ETag.
pub fn is_plain_md5(etag: &str) -> bool {
    etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `bytes START-END/TOTAL` -> `(START, END + 1, TOTAL)`.
pub fn parse_content_range(v: &str) -> Option<(u64, u64, u64)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, last) = range.split_once('-')?;
    let (start, last, total) = (
        start.trim().parse::<u64>().ok()?,
        last.trim().parse::<u64>().ok()?,
        total.trim().parse::<u64>().ok()?,
    );
    (start <= last && last < total).then_some((start, last + 1, total))
}

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
    fn headers_are_parsed() {
        assert_eq!(parse_content_range("bytes 0-99/1000"), Some((0, 100, 1000)));
        assert_eq!(parse_content_range("bytes 5-4/10"), None);
        assert_eq!(parse_content_range("bytes 0-10/10"), None);
        assert_eq!(parse_content_range("bytes */10"), None);
        assert_eq!(normalize_etag("W/\"ABCDEF\""), "abcdef".to_string());
        assert!(is_plain_md5("0123456789abcdef0123456789abcdef"));
        assert!(!is_plain_md5("0123456789abcdef0123456789abcdef-3"));
        assert!(!is_plain_md5(""));
    }
}

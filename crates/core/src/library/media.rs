//! [`MediaServer`]: the loopback HTTP server the app's `<audio>` element plays from
//! (WebKitGTK plays through GStreamer, which cannot read Tauri's asset protocol).
//!
//! - Listens on `127.0.0.1`, a port the OS picks, for as long as the value lives.
//! - URLs are `http://127.0.0.1:{port}/{token}/books/{job_id}/book` and
//!   `.../books/{job_id}/tracks/{n}`: a random 128-bit token made per run, then ids that
//!   the catalog resolves. A path is never taken from the URL, so there is nothing to
//!   traverse; any other shape (`..`, `%2e%2e`, backslashes, percent-escapes, extra
//!   segments) is 404, a wrong token 403, a wrong `Host` 403 (DNS rebinding), an id the
//!   catalog does not list 404.
//! - Serves only catalogued files that resolve inside the library root; `GET` and `HEAD`;
//!   single byte ranges (`bytes=a-b`, `a-`, `-n`) with 206 and `Content-Range`, 416 with
//!   `Content-Range: bytes */{size}` when unsatisfiable; `If-Range` against its ETag;
//!   `Content-Type` from the extension; `Cache-Control: no-store`; no CORS headers (a
//!   plain media GET needs none, and no other origin should read the bytes).
//! - Streams from disk in 64 KiB chunks: memory stays flat whatever the file size.
//!
//! It needs no network and no session. It owns the server; it never writes files.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use rand::RngCore;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::sync::CancellationToken;

use super::catalog::{Catalog, FileRef};
use super::{Library, LibraryError, layout};

const CHUNK: usize = 64 * 1024;

struct Shared {
    root: PathBuf,
    catalog: Catalog,
    token: String,
    port: u16,
}

/// The running playback server. Stops when dropped (or on [`MediaServer::shutdown`]).
pub struct MediaServer {
    addr: SocketAddr,
    token: String,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for MediaServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("MediaServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl MediaServer {
    /// Starts serving `library`'s catalogued files. Must run inside a tokio runtime.
    pub async fn start(library: &Library) -> Result<Self, LibraryError> {
        Self::start_with(library.root(), library.catalog().clone()).await
    }

    /// Starts serving the files `catalog` lists under `root`.
    pub async fn start_with(root: &Path, catalog: Catalog) -> Result<Self, LibraryError> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(|e| LibraryError::MediaServer {
                reason: format!("cannot listen on 127.0.0.1: {e}"),
            })?;
        let addr = listener
            .local_addr()
            .map_err(|e| LibraryError::MediaServer {
                reason: e.to_string(),
            })?;
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        let token = hex::encode(bytes);
        let root = std::path::absolute(root).map_err(|e| LibraryError::MediaServer {
            reason: format!("{}: {e}", root.display()),
        })?;
        let shared = Arc::new(Shared {
            root,
            catalog,
            token: token.clone(),
            port: addr.port(),
        });
        let app = Router::new().fallback(serve).with_state(shared);
        let stop = CancellationToken::new();
        let stopped = stop.clone().cancelled_owned();
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
            {
                tracing::warn!("playback server stopped: {e}");
            }
        });
        tracing::debug!("playback server on {addr}");
        Ok(Self {
            addr,
            token,
            stop,
            task: Some(task),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:{port}/{token}`: the prefix of every URL (contains the secret
    /// token: hand it to the webview only).
    pub fn base_url(&self) -> String {
        format!("http://{}/{}", self.addr, self.token)
    }

    /// The URL of a book's file, or `None` for a job id that is not plain
    /// (`[A-Za-z0-9_-]`, at most 128 characters; engine job ids are UUIDs).
    pub fn url_for(&self, job_id: &str, which: FileRef) -> Option<String> {
        is_plain_id(job_id).then(|| format!("{}/books/{job_id}/{which}", self.base_url()))
    }

    /// Stops accepting connections and ends the ones open.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            // Open media streams would hold a graceful shutdown: give it a moment, then end it.
            let abort = task.abort_handle();
            if tokio::time::timeout(std::time::Duration::from_secs(2), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for MediaServer {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn is_plain_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Equal-time comparison, so the token cannot be guessed byte by byte from timings.
fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The file a request path names, or the status to answer.
fn route(path: &str, token: &str) -> Result<(String, FileRef), StatusCode> {
    let rest = path.strip_prefix('/').ok_or(StatusCode::NOT_FOUND)?;
    let segments: Vec<&str> = rest.split('/').collect();
    if !same_token(segments[0], token) {
        return Err(StatusCode::FORBIDDEN);
    }
    match segments[1..] {
        ["books", job, "book"] if is_plain_id(job) => Ok((job.to_string(), FileRef::Book)),
        ["books", job, "tracks", n]
            if is_plain_id(job)
                && (1..=9).contains(&n.len())
                && n.bytes().all(|b| b.is_ascii_digit())
                && !n.starts_with('0') =>
        {
            let n: u32 = n.parse().map_err(|_| StatusCode::NOT_FOUND)?;
            Ok((job.to_string(), FileRef::Track(n)))
        }
        _ => Err(StatusCode::NOT_FOUND),
    }
}

/// The answer to a `Range` header for a file of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// No (usable) range: the whole file, 200.
    Full,
    /// Bytes `start..=end`, 206.
    Partial { start: u64, end: u64 },
    /// 416.
    Unsatisfiable,
}

/// Parses a single byte range. Multiple ranges, other units and malformed values are
/// ignored (answered with the whole file, as RFC 9110 allows).
pub fn parse_range(header: Option<&str>, size: u64) -> RangeAnswer {
    let Some(h) = header else {
        return RangeAnswer::Full;
    };
    let h = h.trim();
    let Some(spec) = h
        .get(..6)
        .filter(|p| p.eq_ignore_ascii_case("bytes="))
        .map(|_| h[6..].trim())
    else {
        return RangeAnswer::Full;
    };
    if spec.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeAnswer::Full;
    };
    let num = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (a.trim().is_empty(), b.trim().is_empty()) {
        // -n: the last n bytes.
        (true, false) => match num(b) {
            None => RangeAnswer::Full,
            Some(0) => RangeAnswer::Unsatisfiable,
            Some(_) if size == 0 => RangeAnswer::Unsatisfiable,
            Some(n) => RangeAnswer::Partial {
                start: size.saturating_sub(n),
                end: size - 1,
            },
        },
        // a-
        (false, true) => match num(a) {
            None => RangeAnswer::Full,
            Some(start) if start >= size => RangeAnswer::Unsatisfiable,
            Some(start) => RangeAnswer::Partial {
                start,
                end: size - 1,
            },
        },
        // a-b
        (false, false) => match (num(a), num(b)) {
            (Some(start), Some(end)) if start <= end => {
                if start >= size {
                    RangeAnswer::Unsatisfiable
                } else {
                    RangeAnswer::Partial {
                        start,
                        end: end.min(size - 1),
                    }
                }
            }
            _ => RangeAnswer::Full,
        },
        (true, true) => RangeAnswer::Full,
    }
}

/// The `Content-Type` of an audio file by its extension.
pub fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "flac" => "audio/flac",
        "m4b" | "m4a" | "mp4" => "audio/mp4",
        "aac" => "audio/aac",
        "ogg" | "oga" | "opus" => "audio/ogg",
        "webm" => "audio/webm",
        _ => "application/octet-stream",
    }
}

fn status(code: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = code;
    common_headers(r.headers_mut());
    r
}

fn common_headers(h: &mut HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

fn host_ok(headers: &HeaderMap, port: u16) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        // HTTP/1.0 without Host: nothing to check against.
        return true;
    };
    host == format!("127.0.0.1:{port}") || host == format!("localhost:{port}")
}

async fn serve(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let method = req.method().clone();
    if method != Method::GET && method != Method::HEAD {
        let mut r = status(StatusCode::METHOD_NOT_ALLOWED);
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    if !host_ok(req.headers(), shared.port) {
        return status(StatusCode::FORBIDDEN);
    }
    let (job_id, which) = match route(req.uri().path(), &shared.token) {
        Ok(x) => x,
        Err(code) => return status(code),
    };
    let lookup = {
        let shared = shared.clone();
        let job_id = job_id.clone();
        tokio::task::spawn_blocking(move || {
            let file = shared.catalog.file(&job_id, which).ok().flatten()?;
            let path = layout::join_relative(&shared.root, &file.rel_path).ok()?;
            layout::ensure_inside(&shared.root, &path).ok()?;
            // Open exactly what was proven: the resolved path.
            path.canonicalize().ok()
        })
        .await
    };
    let Ok(Some(path)) = lookup else {
        return status(StatusCode::NOT_FOUND);
    };
    let Ok(mut file) = tokio::fs::File::open(&path).await else {
        return status(StatusCode::NOT_FOUND);
    };
    let Ok(meta) = file.metadata().await else {
        return status(StatusCode::NOT_FOUND);
    };
    if !meta.is_file() {
        return status(StatusCode::NOT_FOUND);
    }
    let size = meta.len();
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let etag = format!("\"{size:x}-{mtime:x}\"");
    let range_header = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok());
    let if_range_ok = match req.headers().get(header::IF_RANGE) {
        None => true,
        Some(v) => v.to_str().map(|v| v.trim() == etag).unwrap_or(false),
    };
    let answer = if if_range_ok {
        parse_range(range_header, size)
    } else {
        RangeAnswer::Full
    };
    let mut r = Response::new(Body::empty());
    let h = r.headers_mut();
    common_headers(h);
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    let (start, len) = match answer {
        RangeAnswer::Unsatisfiable => {
            *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
        RangeAnswer::Full => (0, size),
        RangeAnswer::Partial { start, end } => {
            *r.status_mut() = StatusCode::PARTIAL_CONTENT;
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{size}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            (start, end - start + 1)
        }
    };
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&path)),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if method == Method::HEAD || len == 0 {
        return r;
    }
    if start > 0 && file.seek(std::io::SeekFrom::Start(start)).await.is_err() {
        return status(StatusCode::INTERNAL_SERVER_ERROR);
    }
    *r.body_mut() = Body::from_stream(file_stream(file, len));
    r
}

/// `len` bytes from the file's current position, in chunks of at most 64 KiB.
fn file_stream(
    file: tokio::fs::File,
    len: u64,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send {
    futures::stream::try_unfold((file, len), |(mut file, left)| async move {
        if left == 0 {
            return Ok(None);
        }
        let want = usize::try_from(left).unwrap_or(CHUNK).min(CHUNK);
        let mut buf = vec![0u8; want];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file shrank while it was being played",
            ));
        }
        buf.truncate(n);
        Ok(Some((Bytes::from(buf), (file, left - n as u64))))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_like_rfc_9110() {
        use RangeAnswer::*;
        let p = |h: &str| parse_range(Some(h), 1000);
        assert_eq!(parse_range(None, 1000), Full);
        assert_eq!(p("bytes=0-99"), Partial { start: 0, end: 99 });
        assert_eq!(
            p("bytes=900-"),
            Partial {
                start: 900,
                end: 999
            }
        );
        assert_eq!(
            p("bytes=-100"),
            Partial {
                start: 900,
                end: 999
            }
        );
        assert_eq!(p("bytes=-5000"), Partial { start: 0, end: 999 });
        assert_eq!(
            p("bytes=500-5000"),
            Partial {
                start: 500,
                end: 999
            }
        );
        assert_eq!(p("BYTES= 1-1"), Partial { start: 1, end: 1 });
        assert_eq!(p("bytes=1000-"), Unsatisfiable);
        assert_eq!(p("bytes=1000-2000"), Unsatisfiable);
        assert_eq!(p("bytes=-0"), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-"), 0), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-1"), 0), Unsatisfiable);
        for ignored in [
            "bytes=5-1",
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=1",
            "bytes=99999999999999999999999-",
            "bytes=+1-2",
            "",
        ] {
            assert_eq!(p(ignored), Full, "{ignored:?}");
        }
    }

    #[test]
    fn routes_take_ids_never_paths() {
        let t = "0123456789abcdef0123456789abcdef";
        let ok = |p: &str| route(p, t);
        assert_eq!(
            ok(&format!("/{t}/books/job-1/book")),
            Ok(("job-1".into(), FileRef::Book))
        );
        assert_eq!(
            ok(&format!("/{t}/books/job_1/tracks/12")),
            Ok(("job_1".into(), FileRef::Track(12)))
        );
        assert_eq!(ok("/wrong/books/j/book"), Err(StatusCode::FORBIDDEN));
        assert_eq!(
            ok(&format!("/{}/books/j/book", &t[..31])),
            Err(StatusCode::FORBIDDEN)
        );
        assert_eq!(ok("/"), Err(StatusCode::FORBIDDEN));
        for bad in [
            "/books/../book",
            "/books/%2e%2e/book",
            "/books/..%2fetc/book",
            "/books/a\\b/book",
            "/books/j/tracks/0",
            "/books/j/tracks/01",
            "/books/j/tracks/-1",
            "/books/j/tracks/99999999999",
            "/books/j/book/",
            "/books/j/book/x",
            "/books//book",
            "/books/j/",
            "",
        ] {
            assert_eq!(
                ok(&format!("/{t}{bad}")),
                Err(StatusCode::NOT_FOUND),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn content_types_by_extension() {
        for (name, want) in [
            ("a.mp3", "audio/mpeg"),
            ("a.WAV", "audio/wav"),
            ("a.flac", "audio/flac"),
            ("a.m4b", "audio/mp4"),
            ("a.m4a", "audio/mp4"),
            ("a.ogg", "audio/ogg"),
            ("a.bin", "application/octet-stream"),
            ("noext", "application/octet-stream"),
        ] {
            assert_eq!(content_type(Path::new(name)), want, "{name}");
        }
    }
}

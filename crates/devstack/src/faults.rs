//! A fault-injecting TCP proxy for tests of the transfer engines (testing layer 3): it
//! sits on a loopback port between a client and a server (usually the devstack's S3 store,
//! with `DevstackConfig::public_s3_url` pointing at the proxy so presigned URLs name it),
//! understands HTTP/1.1 framing well enough to count and pick requests, and applies
//! programmable faults to the requests its rules match: reset the connection after N body
//! bytes, stall, answer with a status instead of forwarding (503/429 bursts, S3 error
//! documents), truncate the response, rewrite the response's ETag. It can also go
//! offline ([`FaultProxy::go_offline`]): it stops listening and cuts its connections, so
//! every new connection is refused, as when the network is down, until
//! [`FaultProxy::go_online`].
//!
//! It passes every request head through unchanged (the `Host` header is part of a SigV4
//! signature) and counts the bytes it forwards in each direction, so tests can measure
//! what a client re-sends. It is a test tool: it never listens beyond 127.0.0.1 and never
//! interprets anything but framing.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// What happens to a request a rule matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Forward the head and this many body bytes, then reset both connections.
    ResetAfter(u64),
    /// Read nothing more and never answer: the client must give up by itself.
    Stall,
    /// Answer this instead of forwarding (the request body is read and dropped).
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Forward, then send only the first N bytes of the response and close.
    TruncateResponse(usize),
    /// Forward, replacing the response's `ETag` header value with this (quoted) value.
    RewriteEtag(String),
    /// Forward, send only the first N bytes of the response (head included), then hold
    /// the connection open and silent: a stall in the middle of a body.
    StallResponseAfter(usize),
}

impl Fault {
    /// A bare status answer (e.g. 503, or 429 with a `Retry-After`).
    pub fn status(status: u16) -> Fault {
        Fault::Respond {
            status,
            headers: Vec::new(),
            body: String::new(),
        }
    }

    /// 429 with `Retry-After: secs`.
    pub fn too_many(secs: u64) -> Fault {
        Fault::Respond {
            status: 429,
            headers: vec![("Retry-After".into(), secs.to_string())],
            body: String::new(),
        }
    }

    /// An S3 error document, as the store would send it.
    pub fn s3_error(status: u16, code: &str, message: &str) -> Fault {
        Fault::Respond {
            status,
            headers: vec![("Content-Type".into(), "application/xml".into())],
            body: format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
            ),
        }
    }
}

/// Which requests a rule applies to, and how many times (then it is spent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub method: Option<String>,
    /// A substring of the request target (path and query).
    pub target_contains: Option<String>,
    pub fault: Fault,
    /// `None` = every matching request.
    pub times: Option<u32>,
}

impl Rule {
    /// Applies `fault` to every request (narrow it with the builder methods).
    pub fn new(fault: Fault) -> Rule {
        Rule {
            method: None,
            target_contains: None,
            fault,
            times: None,
        }
    }
    pub fn method(mut self, m: &str) -> Rule {
        self.method = Some(m.to_ascii_uppercase());
        self
    }
    pub fn target_contains(mut self, s: &str) -> Rule {
        self.target_contains = Some(s.to_string());
        self
    }
    pub fn times(mut self, n: u32) -> Rule {
        self.times = Some(n);
        self
    }
}

/// One request the proxy saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    pub target: String,
    pub content_length: u64,
    /// The fault applied, if any.
    pub fault: Option<Fault>,
}

#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    rules: Mutex<Vec<Rule>>,
    log: Mutex<Vec<RequestRecord>>,
    tally: Mutex<Tally>,
}

/// Bytes relayed each way by the exchanges (request and response) begun since the last
/// `reset_counters`: the last chunks of an exchange from before it (a cancelled transfer's
/// connection draining) are not counted after it.
#[derive(Debug, Default)]
struct Tally {
    epoch: u64,
    up: u64,
    down: u64,
}

/// Which way bytes go.
#[derive(Debug, Clone, Copy)]
enum Way {
    /// Client to upstream.
    Up,
    /// Upstream to client.
    Down,
}

/// One exchange's counter for one way.
#[derive(Debug, Clone, Copy)]
struct Meter<'a> {
    tally: &'a Mutex<Tally>,
    epoch: u64,
    way: Way,
}

impl<'a> Meter<'a> {
    /// The two counters of an exchange that begins now.
    fn begin(tally: &'a Mutex<Tally>) -> (Meter<'a>, Meter<'a>) {
        let epoch = lock(tally).epoch;
        let m = |way| Meter { tally, epoch, way };
        (m(Way::Up), m(Way::Down))
    }

    fn add(self, n: usize) {
        let mut t = lock(self.tally);
        if t.epoch == self.epoch {
            match self.way {
                Way::Up => t.up += n as u64,
                Way::Down => t.down += n as u64,
            }
        }
    }
}

/// A running proxy; stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    token: CancellationToken,
    /// The accept loop while online.
    listening: Mutex<Option<Listening>>,
}

/// An accept loop and the token that stops it and every connection it accepted.
#[derive(Debug)]
struct Listening {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn listen(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) -> Listening {
    let t = stop.clone();
    let task = tokio::spawn(async move {
        // The connections, so that stopping ends them all before it returns (no byte is
        // relayed or counted after `go_offline`).
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                Some(_) = conns.join_next(), if !conns.is_empty() => continue,
                _ = t.cancelled() => {
                    conns.shutdown().await;
                    return;
                }
            };
            let Ok((client, _)) = accepted else { continue };
            let s = shared.clone();
            conns.spawn(async move { serve(client, &s).await });
        }
    });
    Listening { stop, task }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl FaultProxy {
    /// Listens on an ephemeral 127.0.0.1 port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            rules: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            tally: Mutex::new(Tally::default()),
        });
        let token = CancellationToken::new();
        let listening = listen(listener, shared.clone(), token.child_token());
        Ok(FaultProxy {
            addr,
            shared,
            token,
            listening: Mutex::new(Some(listening)),
        })
    }

    /// Goes offline: stops listening and cuts every open connection (when it returns,
    /// none relays or counts another byte), so that new connections are refused
    /// (`ECONNREFUSED`), as when the network or the host is gone. Rules and counters are
    /// kept.
    pub async fn go_offline(&self) {
        let listening = lock(&self.listening).take();
        if let Some(l) = listening {
            l.stop.cancel();
            // The listening socket is closed once the accept loop has returned.
            let _ = l.task.await;
        }
    }

    /// Listens again, on the same address.
    pub async fn go_online(&self) -> std::io::Result<()> {
        if lock(&self.listening).is_some() {
            return Ok(());
        }
        let listener = TcpListener::bind(self.addr).await?;
        let listening = listen(listener, self.shared.clone(), self.token.child_token());
        *lock(&self.listening) = Some(listening);
        Ok(())
    }

    /// The proxy's URL parsed from a URL string (its upstream's address from a `http://host:port`).
    pub async fn in_front_of(url: &url::Url) -> std::io::Result<FaultProxy> {
        let addrs = url.socket_addrs(|| Some(80))?;
        let addr = addrs.into_iter().next().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "the URL has no address")
        })?;
        Self::start(addr).await
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:{port}`.
    pub fn url(&self) -> url::Url {
        match url::Url::parse(&format!("http://{}", self.addr)) {
            Ok(u) => u,
            Err(_) => unreachable!("a socket address is a valid URL authority"),
        }
    }

    /// Adds a rule; rules are tried in the order they were added.
    pub fn add(&self, rule: Rule) {
        lock(&self.shared.rules).push(rule);
    }

    /// Removes every rule.
    pub fn clear(&self) {
        lock(&self.shared.rules).clear();
    }

    /// Bytes forwarded from clients to the upstream (request heads and bodies).
    pub fn bytes_up(&self) -> u64 {
        lock(&self.shared.tally).up
    }

    /// Bytes forwarded from the upstream to clients.
    pub fn bytes_down(&self) -> u64 {
        lock(&self.shared.tally).down
    }

    /// Zeroes the byte counters; exchanges still running from before are not counted.
    pub fn reset_counters(&self) {
        {
            let mut t = lock(&self.shared.tally);
            t.epoch += 1;
            t.up = 0;
            t.down = 0;
        }
        lock(&self.shared.log).clear();
    }

    /// The requests seen so far, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared.log).clone()
    }
}

/// A socket with a read buffer, for parsing heads and relaying framed bodies.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

const MAX_HEAD: usize = 64 * 1024;

impl Conn {
    fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    async fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads up to and including the blank line; `None` at a clean EOF before any byte.
    async fn read_head(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                let rest = self.buf.split_off(i + 4);
                return Ok(Some(std::mem::replace(&mut self.buf, rest)));
            }
            if self.buf.len() > MAX_HEAD {
                return Err(std::io::Error::other("head too large"));
            }
            if self.fill().await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(std::io::ErrorKind::UnexpectedEof.into())
                };
            }
        }
    }

    async fn read_line(&mut self) -> std::io::Result<Vec<u8>> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                let rest = self.buf.split_off(i + 2);
                return Ok(std::mem::replace(&mut self.buf, rest));
            }
            if self.fill().await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Moves `n` bytes to `out` (or drops them when `out` is `None`); returns how many
    /// were moved before the limit `stop_after` (if any) was reached.
    async fn relay(
        &mut self,
        mut n: u64,
        mut out: Option<&mut TcpStream>,
        counter: Option<Meter<'_>>,
        stop_after: Option<u64>,
    ) -> std::io::Result<u64> {
        let mut moved = 0u64;
        while n > 0 {
            if self.buf.is_empty() && self.fill().await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let mut take = (self.buf.len() as u64).min(n) as usize;
            if let Some(limit) = stop_after {
                take = take.min((limit - moved) as usize);
            }
            let rest = self.buf.split_off(take);
            let chunk = std::mem::replace(&mut self.buf, rest);
            if let Some(o) = out.as_deref_mut() {
                o.write_all(&chunk).await?;
            }
            if let Some(c) = counter {
                c.add(chunk.len());
            }
            moved += chunk.len() as u64;
            n -= chunk.len() as u64;
            if stop_after.is_some_and(|l| moved >= l) {
                break;
            }
        }
        Ok(moved)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The parts of a head the proxy needs.
struct Head {
    first_line: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn parse(raw: &[u8]) -> Option<Head> {
        let text = std::str::from_utf8(raw).ok()?;
        let mut lines = text.split("\r\n");
        let first_line = lines.next()?.to_string();
        let headers = lines
            .filter(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        Some(Head {
            first_line,
            headers,
        })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn content_length(&self) -> u64 {
        self.get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    fn chunked(&self) -> bool {
        self.get("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }

    fn wants_close(&self) -> bool {
        self.get("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// The head with its `ETag` value replaced.
fn rewrite_etag(raw: &[u8], etag: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive("\r\n") {
        match line.split_once(':') {
            Some((k, _)) if k.trim().eq_ignore_ascii_case("etag") => {
                out.push_str(&format!("{k}: \"{etag}\"\r\n"));
            }
            _ => out.push_str(line),
        }
    }
    out.into_bytes()
}

fn pick(shared: &Shared, method: &str, target: &str) -> Option<Fault> {
    let mut rules = lock(&shared.rules);
    let i = rules.iter().position(|r| {
        r.times != Some(0)
            && r.method.as_deref().is_none_or(|m| m == method)
            && r.target_contains
                .as_deref()
                .is_none_or(|s| target.contains(s))
    })?;
    let rule = &mut rules[i];
    if let Some(t) = rule.times.as_mut() {
        *t -= 1;
    }
    Some(rule.fault.clone())
}

/// Makes the coming close a reset (RST). A zero linger never blocks on drop, which is
/// what the deprecation of `set_linger` warns about.
async fn reset(stream: &TcpStream) {
    #[allow(deprecated)]
    let _ = stream.set_linger(Some(Duration::ZERO));
}

async fn serve(client: TcpStream, shared: &Shared) {
    let _ = client.set_nodelay(true);
    let mut client = Conn::new(client);
    let mut upstream: Option<Conn> = None;
    loop {
        let Ok(Some(raw_head)) = client.read_head().await else {
            return;
        };
        let (up_meter, down_meter) = Meter::begin(&shared.tally);
        let Some(head) = Head::parse(&raw_head) else {
            return;
        };
        let mut parts = head.first_line.split(' ');
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default().to_string();
        if head.chunked() {
            // Chunked request bodies are not framed by this proxy: refuse them plainly.
            let _ = client
                .stream
                .write_all(b"HTTP/1.1 411 Length Required\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
            return;
        }
        let body_len = head.content_length();
        let fault = pick(shared, &method, &target);
        lock(&shared.log).push(RequestRecord {
            method: method.clone(),
            target,
            content_length: body_len,
            fault: fault.clone(),
        });
        match fault {
            Some(Fault::Stall) => {
                // Hold the connection, read nothing, answer nothing.
                tokio::time::sleep(Duration::from_secs(600)).await;
                return;
            }
            Some(Fault::Respond {
                status,
                headers,
                body,
            }) => {
                if client.relay(body_len, None, None, None).await.is_err() {
                    return;
                }
                let mut answer = format!(
                    "HTTP/1.1 {status} {}\r\ncontent-length: {}\r\n",
                    reason(status),
                    body.len()
                );
                for (k, v) in headers {
                    answer.push_str(&format!("{k}: {v}\r\n"));
                }
                answer.push_str("\r\n");
                answer.push_str(&body);
                if client.stream.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                continue;
            }
            _ => {}
        }
        // Forward the request.
        if upstream.is_none() {
            match TcpStream::connect(shared.upstream).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    upstream = Some(Conn::new(s));
                }
                Err(_) => {
                    let _ = client
                        .stream
                        .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                    return;
                }
            }
        }
        let Some(up) = upstream.as_mut() else { return };
        if up.stream.write_all(&raw_head).await.is_err() {
            return;
        }
        up_meter.add(raw_head.len());
        if let Some(Fault::ResetAfter(n)) = fault {
            let _ = client
                .relay(
                    body_len,
                    Some(&mut up.stream),
                    Some(up_meter),
                    Some(n.min(body_len)),
                )
                .await;
            reset(&client.stream).await;
            reset(&up.stream).await;
            return;
        }
        if client
            .relay(body_len, Some(&mut up.stream), Some(up_meter), None)
            .await
            .is_err()
        {
            return;
        }
        // Relay the response.
        let Ok(Some(mut resp_head)) = up.read_head().await else {
            return;
        };
        let Some(resp) = Head::parse(&resp_head) else {
            return;
        };
        if let Some(Fault::RewriteEtag(etag)) = &fault {
            resp_head = rewrite_etag(&resp_head, etag);
        }
        let status: u16 = resp
            .first_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let no_body =
            method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status);
        if let Some(Fault::TruncateResponse(n) | Fault::StallResponseAfter(n)) = fault {
            let head_part = &resp_head[..n.min(resp_head.len())];
            let _ = client.stream.write_all(head_part).await;
            down_meter.add(head_part.len());
            if n > resp_head.len() && !no_body {
                let left = (n - resp_head.len()) as u64;
                let _ = up
                    .relay(
                        resp.content_length().min(left),
                        Some(&mut client.stream),
                        Some(down_meter),
                        None,
                    )
                    .await;
            }
            if matches!(fault, Some(Fault::StallResponseAfter(_))) {
                let _ = client.stream.flush().await;
                tokio::time::sleep(Duration::from_secs(600)).await;
                return;
            }
            reset(&client.stream).await;
            return;
        }
        if client.stream.write_all(&resp_head).await.is_err() {
            return;
        }
        down_meter.add(resp_head.len());
        let relayed = if no_body {
            Ok(())
        } else if resp.chunked() {
            relay_chunked(up, &mut client.stream, down_meter).await
        } else if resp.get("content-length").is_some() {
            up.relay(
                resp.content_length(),
                Some(&mut client.stream),
                Some(down_meter),
                None,
            )
            .await
            .map(|_| ())
        } else {
            // Delimited by close: relay until the upstream closes, then close.
            let _ = relay_to_close(up, &mut client.stream, down_meter).await;
            return;
        };
        if relayed.is_err() || resp.wants_close() || head.wants_close() {
            return;
        }
    }
}

async fn relay_chunked(
    up: &mut Conn,
    out: &mut TcpStream,
    counter: Meter<'_>,
) -> std::io::Result<()> {
    loop {
        let line = up.read_line().await?;
        out.write_all(&line).await?;
        counter.add(line.len());
        let text = String::from_utf8_lossy(&line);
        let size_hex = text.trim().split(';').next().unwrap_or("0");
        let size = u64::from_str_radix(size_hex.trim(), 16)
            .map_err(|_| std::io::Error::other("bad chunk size"))?;
        if size == 0 {
            // Trailers up to the blank line.
            loop {
                let t = up.read_line().await?;
                out.write_all(&t).await?;
                counter.add(t.len());
                if t == b"\r\n" {
                    return Ok(());
                }
            }
        }
        up.relay(size + 2, Some(out), Some(counter), None).await?;
    }
}

async fn relay_to_close(
    up: &mut Conn,
    out: &mut TcpStream,
    counter: Meter<'_>,
) -> std::io::Result<()> {
    loop {
        if !up.buf.is_empty() {
            out.write_all(&up.buf).await?;
            counter.add(up.buf.len());
            up.buf.clear();
        }
        if up.fill().await? == 0 {
            return Ok(());
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::http::HeaderMap;
    use axum::routing::{get, put};

    async fn upstream() -> SocketAddr {
        let app = Router::new()
            .route(
                "/host",
                get(|headers: HeaderMap| async move {
                    headers
                        .get("host")
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or_default()
                        .to_string()
                }),
            )
            .route(
                "/put",
                put(|body: axum::body::Bytes| async move {
                    ([("etag", "\"abc\"")], format!("got {}", body.len()))
                }),
            )
            .route(
                "/stream",
                get(|| async {
                    let chunks = futures::stream::iter(
                        ["one ", "two ", "three"]
                            .map(|s| Ok::<_, std::io::Error>(bytes::Bytes::from(s))),
                    );
                    axum::body::Body::from_stream(chunks)
                }),
            );
        let listener = match TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => panic!("bind: {e}"),
        };
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        addr
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn forwards_unchanged_counts_and_keeps_the_host() {
        let proxy = FaultProxy::start(upstream().await)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let http = client();
        let host = http
            .get(format!("{}host", proxy.url()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .text()
            .await
            .unwrap_or_default();
        assert_eq!(host, proxy.addr().to_string());
        let res = http
            .put(format!("{}put", proxy.url()))
            .body(vec![7u8; 100_000])
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(res.headers()["etag"], "\"abc\"");
        assert_eq!(res.text().await.unwrap_or_default(), "got 100000");
        let streamed = http
            .get(format!("{}stream", proxy.url()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .text()
            .await
            .unwrap_or_default();
        assert_eq!(streamed, "one two three");
        assert!(proxy.bytes_up() > 100_000, "{}", proxy.bytes_up());
        assert!(proxy.bytes_down() > 0);
        assert_eq!(proxy.requests().len(), 3);
    }

    #[tokio::test]
    async fn an_exchange_begun_before_a_reset_is_not_counted_after_it() {
        let gate = std::sync::Arc::new(tokio::sync::Notify::new());
        let open = gate.clone();
        let app = Router::new().route(
            "/gated",
            get(move || {
                let gate = open.clone();
                async move {
                    let first = futures::stream::once(async {
                        Ok::<_, std::io::Error>(bytes::Bytes::from("first "))
                    });
                    let second = futures::stream::once(async move {
                        gate.notified().await;
                        Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; 50_000]))
                    });
                    axum::body::Body::from_stream(futures::StreamExt::chain(first, second))
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let proxy = FaultProxy::start(addr)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut res = client()
            .get(format!("{}gated", proxy.url()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let first = res.chunk().await.unwrap_or_else(|e| panic!("{e}"));
        assert!(first.is_some_and(|c| c.starts_with(b"first")));
        assert!(proxy.bytes_down() > 0);
        proxy.reset_counters();
        gate.notify_one();
        let mut rest = 0;
        while let Some(c) = res.chunk().await.unwrap_or_else(|e| panic!("{e}")) {
            rest += c.len();
        }
        assert_eq!(rest, 50_000);
        assert_eq!(
            proxy.bytes_down(),
            0,
            "the older exchange's bytes were counted"
        );
        assert_eq!(proxy.bytes_up(), 0);
    }

    #[tokio::test]
    async fn injects_faults() {
        let proxy = FaultProxy::start(upstream().await)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let http = client();
        let url = format!("{}put", proxy.url());
        proxy.add(Rule::new(Fault::too_many(3)).method("PUT").times(1));
        proxy.add(Rule::new(Fault::status(503)).method("PUT").times(1));
        let r = http
            .put(&url)
            .body("x")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "3");
        let r = http
            .put(&url)
            .body("x")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.status(), 503);
        let r = http
            .put(&url)
            .body("x")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.status(), 200);

        proxy.add(Rule::new(Fault::RewriteEtag("bad".into())).times(1));
        let r = http
            .put(&url)
            .body("x")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.headers()["etag"], "\"bad\"");

        proxy.add(Rule::new(Fault::TruncateResponse(10)).times(1));
        assert!(http.put(&url).body("x").send().await.is_err());

        proxy.add(Rule::new(Fault::ResetAfter(1000)).times(1));
        let before = proxy.bytes_up();
        assert!(
            http.put(&url)
                .body(vec![1u8; 1_000_000])
                .send()
                .await
                .is_err()
        );
        assert!(proxy.bytes_up() - before < 10_000);

        proxy.add(Rule::new(Fault::Stall).times(1));
        let quick = reqwest::Client::builder()
            .timeout(Duration::from_millis(300))
            .build()
            .unwrap_or_default();
        let e = quick.put(&url).body("x").send().await.err();
        assert!(e.is_some_and(|e| e.is_timeout()));

        proxy.add(
            Rule::new(Fault::s3_error(403, "AccessDenied", "Request has expired"))
                .target_contains("put")
                .times(1),
        );
        let r = http
            .put(&url)
            .body("x")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.status(), 403);
        assert!(
            r.text()
                .await
                .unwrap_or_default()
                .contains("<Code>AccessDenied</Code>")
        );
        // Every rule is spent: requests pass again.
        let r = http
            .put(&url)
            .body("x")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.status(), 200);
        let faults = proxy
            .requests()
            .iter()
            .filter(|r| r.fault.is_some())
            .count();
        assert_eq!(faults, 7);
    }

    #[tokio::test]
    async fn offline_refuses_connections_until_back_online() {
        let proxy = FaultProxy::start(upstream().await)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let http = client();
        let url = format!("{}put", proxy.url());
        let r = http.put(&url).body("x").send().await;
        assert!(r.is_ok_and(|r| r.status() == 200));
        proxy.go_offline().await;
        // The pooled connection was cut and new ones are refused.
        for _ in 0..2 {
            let e = http.put(&url).body("x").send().await.err();
            assert!(e.is_some());
        }
        let e = reqwest::Client::new()
            .put(&url)
            .body("x")
            .send()
            .await
            .err();
        assert!(e.is_some_and(|e| e.is_connect()), "refused at connect");
        proxy.go_online().await.unwrap_or_else(|e| panic!("{e}"));
        let r = http
            .put(&url)
            .body("x")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.status(), 200);
        assert_eq!(
            proxy.addr(),
            proxy.url().socket_addrs(|| None).unwrap_or_default()[0]
        );
    }
}

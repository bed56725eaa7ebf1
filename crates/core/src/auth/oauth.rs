//! OAuth sign-in with PKCE for a native app (RFC 8252, RFC 7636): the code verifier and
//! challenge, the `/authorize` URL, and the one-shot loopback listener at
//! `http://127.0.0.1:{ephemeral}/callback` that receives the code, checks `state`, shows
//! the browser a "you can close this tab" page and stops. It owns the listener and its
//! parsing; it never opens the browser itself (the caller does, see
//! [`open_in_system_browser`]) and never logs the code or the verifier.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::errors::AuthError;
use crate::secrets::Secret;

/// RFC 7636's unreserved characters.
const UNRESERVED: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";

fn random_string(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(UNRESERVED[rng.random_range(0..UNRESERVED.len())]))
        .collect()
}

/// A PKCE pair: the verifier stays here, the challenge goes to `/authorize`.
pub struct Pkce {
    pub verifier: Secret,
    pub challenge: String,
}

impl Pkce {
    pub fn new() -> Self {
        let verifier = random_string(64);
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        Self {
            verifier: Secret::new(verifier),
            challenge,
        }
    }
}

impl Default for Pkce {
    fn default() -> Self {
        Self::new()
    }
}

/// `{auth_base}/authorize?provider=..&redirect_to=..&code_challenge=..&code_challenge_method=s256`.
pub fn authorize_url(
    auth_base: &str,
    provider: &str,
    redirect_to: &str,
    challenge: &str,
) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("provider", provider)
        .append_pair("redirect_to", redirect_to)
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "s256")
        .finish();
    format!("{auth_base}/authorize?{query}")
}

/// Opens `url` in the user's default browser. `Err` when there is none (e.g. a headless
/// server): the caller has shown the URL, so the user can open it elsewhere.
pub fn open_in_system_browser(url: &str) -> Result<(), String> {
    webbrowser::open(url).map_err(|e| e.to_string())
}

/// The one-shot loopback listener for one sign-in.
pub struct LoopbackListener {
    listener: TcpListener,
    state: String,
    redirect_uri: String,
}

/// The most a callback request's head may be.
const MAX_REQUEST_HEAD: usize = 16 * 1024;

impl LoopbackListener {
    /// Listens on an ephemeral port of 127.0.0.1 (never `localhost`, RFC 8252 §8.3).
    pub async fn bind() -> Result<Self, AuthError> {
        let listener =
            TcpListener::bind(("127.0.0.1", 0))
                .await
                .map_err(|e| AuthError::OAuthFailed {
                    detail: format!("cannot listen on 127.0.0.1 for the browser's answer: {e}"),
                })?;
        let port = listener
            .local_addr()
            .map_err(|e| AuthError::OAuthFailed {
                detail: format!("cannot read the listener's port: {e}"),
            })?
            .port();
        let state = random_string(32);
        let redirect_uri = format!("http://127.0.0.1:{port}/callback?state={state}");
        Ok(Self {
            listener,
            state,
            redirect_uri,
        })
    }

    /// Where the server sends the browser back to; carries `state`.
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// Waits for the browser to come back with a code for this sign-in's `state`.
    /// Requests for other paths or with another `state` are answered and ignored. Ends
    /// with [`AuthError::OAuthTimedOut`] after `timeout`, `OAuthFailed` when cancelled,
    /// `OAuthDenied` when the provider or user refused.
    pub async fn wait_for_code(
        self,
        timeout: Duration,
        cancel: CancellationToken,
    ) -> Result<String, AuthError> {
        let (tx, mut rx) = mpsc::channel::<Result<String, AuthError>>(4);
        let mut connections = tokio::task::JoinSet::new();
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let outcome = loop {
            tokio::select! {
                _ = &mut deadline => break Err(AuthError::OAuthTimedOut { after: timeout }),
                _ = cancel.cancelled() => break Err(AuthError::OAuthFailed { detail: "cancelled".into() }),
                Some(result) = rx.recv() => break result,
                accepted = self.listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let (tx, state) = (tx.clone(), self.state.clone());
                    connections.spawn(async move {
                        // A browser may open connections it never uses: bound each one.
                        let handled = tokio::time::timeout(
                            Duration::from_secs(10),
                            handle_connection(stream, &state),
                        )
                        .await;
                        if let Ok(Some(result)) = handled {
                            let _ = tx.send(result).await;
                        }
                    });
                }
            }
        };
        connections.abort_all();
        outcome
    }
}

/// Serves one request. `Some` when it was this sign-in's callback.
async fn handle_connection(
    mut stream: TcpStream,
    state: &str,
) -> Option<Result<String, AuthError>> {
    let head = read_head(&mut stream).await?;
    let target = head
        .lines()
        .next()
        .and_then(|line| {
            let mut parts = line.split(' ');
            match (parts.next(), parts.next()) {
                (Some("GET"), Some(target)) => Some(target.to_string()),
                _ => None,
            }
        })
        .unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
    if path != "/callback" {
        respond(&mut stream, "404 Not Found", "Not found", "Nothing here.").await;
        return None;
    }
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if !same(get("state").unwrap_or(""), state) {
        respond(
            &mut stream,
            "400 Bad Request",
            "Not this sign-in",
            "This link does not belong to the sign-in Rohimaya is waiting for. Start signing in again from Rohimaya.",
        )
        .await;
        return None;
    }
    if let Some(error) = get("error") {
        let detail = get("error_description").unwrap_or(error).to_string();
        respond(
            &mut stream,
            "200 OK",
            "Sign-in cancelled",
            "Sign-in was cancelled. You can close this tab and return to Rohimaya.",
        )
        .await;
        return Some(Err(AuthError::OAuthDenied { detail }));
    }
    match get("code").filter(|c| !c.is_empty()) {
        Some(code) => {
            respond(
                &mut stream,
                "200 OK",
                "Signed in",
                "You are signed in. You can close this tab and return to Rohimaya.",
            )
            .await;
            Some(Ok(code.to_string()))
        }
        None => {
            respond(
                &mut stream,
                "400 Bad Request",
                "Sign-in failed",
                "The sign-in server sent no code. Start signing in again from Rohimaya.",
            )
            .await;
            Some(Err(AuthError::OAuthFailed {
                detail: "the callback carried no code".into(),
            }))
        }
    }
}

/// Compares without an early exit (the state is a secret of this sign-in).
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            return String::from_utf8(buf).ok();
        }
        if buf.len() > MAX_REQUEST_HEAD {
            return None;
        }
    }
}

async fn respond(stream: &mut TcpStream, status: &str, title: &str, message: &str) {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title} - Rohimaya</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto;padding:0 1rem}}</style>\
         </head><body><h1>{title}</h1><p>{message}</p></body></html>"
    );
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nReferrer-Policy: no-referrer\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_challenge_is_s256_of_the_verifier() {
        let p = Pkce::new();
        assert_eq!(p.verifier.expose().len(), 64);
        assert_eq!(
            p.challenge,
            URL_SAFE_NO_PAD.encode(Sha256::digest(p.verifier.expose().as_bytes()))
        );
        assert_ne!(Pkce::new().challenge, p.challenge);
    }

    async fn get(url: &str) -> (u16, String) {
        let res = reqwest::get(url).await.unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }

    #[tokio::test]
    async fn wrong_state_is_ignored_and_the_right_one_completes() {
        let listener = LoopbackListener::bind().await.unwrap();
        let uri = listener.redirect_uri().to_string();
        let base = uri.split("/callback").next().unwrap().to_string();
        let waiting =
            tokio::spawn(listener.wait_for_code(Duration::from_secs(30), CancellationToken::new()));
        let (status, _) = get(&format!("{base}/callback?state=forged&code=evil")).await;
        assert_eq!(status, 400);
        let (status, _) = get(&format!("{base}/favicon.ico")).await;
        assert_eq!(status, 404);
        let (status, page) = get(&format!("{uri}&code=the-code")).await;
        assert_eq!(status, 200);
        assert!(page.contains("close this tab"), "{page}");
        assert_eq!(waiting.await.unwrap().unwrap(), "the-code");
    }

    #[tokio::test]
    async fn times_out_cleanly_and_denial_is_typed() {
        let listener = LoopbackListener::bind().await.unwrap();
        let err = listener
            .wait_for_code(Duration::from_millis(50), CancellationToken::new())
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::OAuthTimedOut { .. }), "{err:?}");

        let listener = LoopbackListener::bind().await.unwrap();
        let uri = listener.redirect_uri().to_string();
        let waiting =
            tokio::spawn(listener.wait_for_code(Duration::from_secs(30), CancellationToken::new()));
        let (status, _) = get(&format!("{uri}&error=access_denied&error_description=no")).await;
        assert_eq!(status, 200);
        let err = waiting.await.unwrap().unwrap_err();
        assert!(matches!(err, AuthError::OAuthDenied { .. }), "{err:?}");
    }
}

//! OAuth sign-in with PKCE: `GET /auth/v1/authorize` (`external.go`), the local consent
//! page that stands in for the provider (`/devstack/oauth/consent`), flow states and the
//! `pkce` grant (`pkce.go`, `models/flow_state.go`). Redirects go only to loopback URLs
//! or the configured allow list. It owns flow states; it never talks to a real provider
//! and never puts a code verifier or a token into a log.

use std::collections::HashMap;

use axum::Form;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::errors::{AuthError, code, null_as_default, parse_json};
use super::sessions::{self, SignInMethod};
use super::users;
use crate::server::Backend;

/// GoTrue's `defaultFlowStateExpiryDuration`.
pub const FLOW_STATE_TTL_MS: i64 = 300_000;

/// The providers the consent page can stand in for, with their display names.
const PROVIDERS: &[(&str, &str)] = &[
    ("google", "Google"),
    ("github", "GitHub"),
    ("apple", "Apple"),
    ("azure", "Microsoft"),
];

const PKCE_METHOD_ERROR: &str = "PKCE flow requires code_challenge_method and code_challenge";

/// GoTrue's `validatePKCEParams`: both or neither, and a challenge of 43 to 128
/// characters from RFC 7636's alphabet.
pub fn validate_pkce_params(method: &str, challenge: &str) -> Result<(), AuthError> {
    if challenge.is_empty() != method.is_empty() {
        return Err(AuthError::validation(PKCE_METHOD_ERROR));
    }
    if challenge.is_empty() {
        return Ok(());
    }
    if !(43..=128).contains(&challenge.len()) {
        return Err(AuthError::validation(
            "code challenge has to be between 43 and 128 characters",
        ));
    }
    if !challenge
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b))
    {
        return Err(AuthError::validation(
            "code challenge can only contain alphanumeric characters, hyphens, periods, underscores and tildes",
        ));
    }
    Ok(())
}

/// GoTrue's `VerifyPKCEChallenge`.
fn verify_pkce(challenge: &str, method: &str, verifier: &str) -> Result<(), &'static str> {
    let expected = match method.to_ascii_lowercase().as_str() {
        "s256" => URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())),
        "plain" => verifier.to_string(),
        _ => return Err("code challenge method not supported"),
    };
    // Both sides are public-length strings; compare without an early exit anyway.
    let same = expected.len() == challenge.len()
        && expected
            .bytes()
            .zip(challenge.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err("code challenge does not match previously saved code verifier")
    }
}

/// Whether GoTrue would redirect to `target`: a loopback IP (any port, RFC 8252 §7.3),
/// `localhost`, or a match of an allow-list pattern (GoTrue's globs: `*` stays within a
/// host label or path segment, `**` matches anything).
pub fn redirect_allowed(target: &str, allow_list: &[String]) -> bool {
    let Ok(url) = url::Url::parse(target) else {
        return false;
    };
    // WHATWG parsing turns `http://2130706433/` or `http://0x7f.1/` into 127.0.0.1;
    // GoTrue (Go's parser) sees those as odd hostnames and refuses them. Only a host
    // written as it serialises counts.
    let canonical_host = raw_host(target)
        .zip(url.host_str())
        .is_some_and(|(raw, parsed)| raw.eq_ignore_ascii_case(parsed));
    let loopback = canonical_host
        && match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            None => false,
        };
    if loopback && matches!(url.scheme(), "http" | "https") {
        return true;
    }
    let without_fragment = target.split('#').next().unwrap_or(target);
    allow_list
        .iter()
        .any(|pattern| glob_match(pattern.as_bytes(), without_fragment.as_bytes()))
}

/// The host as written in an absolute URL: between `://` (after any userinfo) and the
/// port, path, query or fragment.
fn raw_host(target: &str) -> Option<&str> {
    let (_, rest) = target.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host_port.starts_with('[') {
        return host_port.find(']').map(|end| &host_port[..=end]);
    }
    host_port.split(':').next()
}

fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match pattern {
        [] => text.is_empty(),
        [b'*', b'*', rest @ ..] => (0..=text.len()).any(|i| glob_match(rest, &text[i..])),
        [b'*', rest @ ..] => {
            for i in 0..=text.len() {
                if glob_match(rest, &text[i..]) {
                    return true;
                }
                if i < text.len() && matches!(text[i], b'.' | b'/') {
                    return false;
                }
            }
            false
        }
        [b'?', rest @ ..] => {
            !text.is_empty() && !matches!(text[0], b'.' | b'/') && glob_match(rest, &text[1..])
        }
        [c, rest @ ..] => text.first() == Some(c) && glob_match(rest, &text[1..]),
    }
}

fn provider_name(provider: &str) -> Option<&'static str> {
    PROVIDERS
        .iter()
        .find(|(id, _)| *id == provider)
        .map(|(_, name)| *name)
}

/// `GET /auth/v1/authorize?provider=..&redirect_to=..&code_challenge=..&code_challenge_method=s256`:
/// records a flow state and sends the browser to the provider, here the local consent
/// page. Served without an API key, as Supabase's gateway does: a browser opens it.
pub async fn authorize(
    State(backend): State<Backend>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, AuthError> {
    let get = |k: &str| query.get(k).map(String::as_str).unwrap_or("");
    let provider = get("provider");
    if provider_name(provider).is_none() {
        return Err(AuthError::validation(format!(
            "Unsupported provider: provider {provider} could not be found"
        )));
    }
    let redirect_to = get("redirect_to");
    if redirect_to.is_empty() {
        return Err(AuthError::validation(
            "redirect_to is required: the devstack has no site URL to fall back to",
        ));
    }
    if !redirect_allowed(redirect_to, &backend.config.redirect_allow_list) {
        return Err(AuthError::validation(
            "redirect_to is not allowed: use a loopback URL (http://127.0.0.1:PORT/...) or one in the redirect allow list",
        ));
    }
    let (challenge, method) = (get("code_challenge"), get("code_challenge_method"));
    validate_pkce_params(method, challenge)?;
    let method = method.to_ascii_lowercase();
    if !challenge.is_empty() && !matches!(method.as_str(), "s256" | "plain") {
        return Err(AuthError::validation("Invalid code_challenge_method"));
    }

    let flow_id = uuid::Uuid::new_v4().to_string();
    let auth_code = uuid::Uuid::new_v4().to_string();
    let now = backend.clock.now_ms();
    let (id, provider, redirect, challenge) = (
        flow_id.clone(),
        provider.to_string(),
        redirect_to.to_string(),
        challenge.to_string(),
    );
    backend.db.call(move |c| {
        c.execute(
            "INSERT INTO auth_flow_states (id, auth_code, provider, code_challenge,
                                           code_challenge_method, redirect_to, user_id, created_at)
             VALUES (?1, ?2, ?3, NULLIF(?4, ''), NULLIF(?5, ''), ?6, NULL, ?7)",
            params![id, auth_code, provider, challenge, method, redirect, now],
        )
        .map(|_| ())
    })?;
    // GoTrue answers 302 Found with the provider's URL.
    let location = format!(
        "{}/devstack/oauth/consent?state={flow_id}",
        backend.base_url
    );
    Ok((StatusCode::FOUND, [(header::LOCATION, location)]).into_response())
}

struct FlowState {
    id: String,
    auth_code: String,
    provider: String,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    redirect_to: String,
    user_id: Option<String>,
    created_at: i64,
}

const FLOW_COLUMNS: &str = "id, auth_code, provider, code_challenge, code_challenge_method, \
     redirect_to, user_id, created_at";

fn flow_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FlowState> {
    Ok(FlowState {
        id: r.get(0)?,
        auth_code: r.get(1)?,
        provider: r.get(2)?,
        code_challenge: r.get(3)?,
        code_challenge_method: r.get(4)?,
        redirect_to: r.get(5)?,
        user_id: r.get(6)?,
        created_at: r.get(7)?,
    })
}

fn find_flow(c: &Connection, column: &str, value: &str) -> rusqlite::Result<Option<FlowState>> {
    c.query_row(
        &format!("SELECT {FLOW_COLUMNS} FROM auth_flow_states WHERE {column} = ?1"),
        [value],
        flow_from_row,
    )
    .optional()
}

/// A consent request the page can still act on: known, not expired, not yet decided.
fn pending_flow(backend: &Backend, state: &str) -> Result<Option<FlowState>, AuthError> {
    let state = state.to_string();
    let now = backend.clock.now_ms();
    let flow = backend.db.call(move |c| find_flow(c, "id", &state))?;
    Ok(flow.filter(|f| f.user_id.is_none() && now <= f.created_at + FLOW_STATE_TTL_MS))
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto;padding:0 1rem}}\
         input{{width:100%;padding:.5rem;margin:.5rem 0 1rem;box-sizing:border-box}}\
         button{{padding:.5rem 1.25rem;margin-right:.5rem}}</style></head>\
         <body>{body}</body></html>",
        title = html_escape(title),
    );
    let mut res = (status, Html(html)).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn unknown_request_page() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Sign-in request not found",
        "<h1>This sign-in request has expired or is unknown</h1>\
         <p>Go back to Rohimaya and start signing in again.</p>",
    )
}

#[derive(Deserialize)]
pub struct ConsentQuery {
    #[serde(default)]
    state: String,
}

/// `GET /devstack/oauth/consent?state=..`: the local stand-in for the provider's
/// sign-in page. A plain form: approvable by any HTTP client, no script needed.
pub async fn consent_page(
    State(backend): State<Backend>,
    Query(query): Query<ConsentQuery>,
) -> Result<Response, AuthError> {
    let Some(flow) = pending_flow(&backend, &query.state)? else {
        return Ok(unknown_request_page());
    };
    Ok(consent_form(&flow, "", None))
}

fn consent_form(flow: &FlowState, email: &str, problem: Option<&str>) -> Response {
    let provider = provider_name(&flow.provider).unwrap_or("the provider");
    let problem = problem
        .map(|p| {
            format!(
                "<p role=\"alert\" style=\"color:#b00\">{}</p>",
                html_escape(p)
            )
        })
        .unwrap_or_default();
    let body = format!(
        "<h1>Sign in to Rohimaya (local) with {provider}</h1>\
         <p>This is the devstack's stand-in for {provider}: no password is asked and nothing \
         leaves this computer. Approving signs you in as the email below.</p>{problem}\
         <form method=\"post\" action=\"/devstack/oauth/consent\">\
         <input type=\"hidden\" name=\"state\" value=\"{state}\">\
         <label for=\"email\">Sign in as</label>\
         <input id=\"email\" name=\"email\" type=\"email\" required value=\"{email}\" \
         placeholder=\"author@example.com\">\
         <button type=\"submit\" name=\"decision\" value=\"approve\">Approve</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\" formnovalidate>Deny</button>\
         </form>",
        state = html_escape(&flow.id),
        email = html_escape(email),
    );
    let status = if problem.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    page(status, &format!("Sign in with {provider}"), &body)
}

#[derive(Deserialize)]
pub struct ConsentForm {
    #[serde(default)]
    state: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    decision: String,
}

/// `POST /devstack/oauth/consent` (form: `state`, `email`, `decision=approve|deny`):
/// approving signs in (creating or linking the user) and redirects to `redirect_to` with
/// `?code=` (PKCE) or a `#access_token=` fragment (implicit flow); denying redirects with
/// `error=access_denied`.
pub async fn consent_decision(
    State(backend): State<Backend>,
    Form(form): Form<ConsentForm>,
) -> Result<Response, AuthError> {
    let Some(flow) = pending_flow(&backend, &form.state)? else {
        return Ok(unknown_request_page());
    };
    let Ok(mut target) = url::Url::parse(&flow.redirect_to) else {
        return Ok(unknown_request_page());
    };
    if form.decision != "approve" {
        let id = flow.id.clone();
        backend.db.call(move |c| {
            c.execute("DELETE FROM auth_flow_states WHERE id = ?1", [id])
                .map(|_| ())
        })?;
        target
            .query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("error_code", "provider_access_denied")
            .append_pair("error_description", "The user denied the sign-in request");
        return Ok(see_other(target.as_str()));
    }
    let email = match users::validate_email(form.email.trim()) {
        Ok(email) => email,
        Err(_) => {
            return Ok(consent_form(
                &flow,
                &form.email,
                Some("Enter a valid email address."),
            ));
        }
    };

    let now = backend.clock.now_ms();
    let provider = flow.provider.clone();
    let flow_id = flow.id.clone();
    let implicit = flow.code_challenge.is_none();
    let issued = backend.db.call(move |c| {
        let tx = c.transaction()?;
        let user_id = sign_in_with_provider(&tx, &provider, &email, now)?;
        let issued = if implicit {
            tx.execute("DELETE FROM auth_flow_states WHERE id = ?1", [&flow_id])?;
            sessions::start(&tx, &user_id, SignInMethod::OAuth, Some(&provider), now)?
        } else {
            tx.execute(
                "UPDATE auth_flow_states SET user_id = ?2 WHERE id = ?1",
                params![flow_id, user_id],
            )?;
            None
        };
        tx.commit()?;
        Ok(issued)
    })?;

    if !implicit {
        target
            .query_pairs_mut()
            .append_pair("code", &flow.auth_code);
        return Ok(see_other(target.as_str()));
    }
    let Some(issued) = issued else {
        return Err(AuthError::internal("user vanished during OAuth sign-in"));
    };
    // GoTrue's `AsRedirectURL`: the session in the fragment.
    let session = sessions::session_response(&backend, &issued);
    let mut fragment = url::form_urlencoded::Serializer::new(String::new());
    for key in [
        "access_token",
        "token_type",
        "expires_in",
        "expires_at",
        "refresh_token",
    ] {
        let value = match &session[key] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        fragment.append_pair(key, &value);
    }
    fragment.append_pair("sb", "");
    target.set_fragment(Some(&fragment.finish()));
    Ok(see_other(target.as_str()))
}

fn see_other(location: &str) -> Response {
    Redirect::to(location).into_response()
}

/// Finds the user with `email` (linking a `provider` identity, as GoTrue links verified
/// emails automatically) or creates one. Returns the user id.
fn sign_in_with_provider(
    c: &Connection,
    provider: &str,
    email: &str,
    now: i64,
) -> rusqlite::Result<String> {
    // A stable fake subject per provider and email, shaped like Google's numeric ids.
    let digest = Sha256::digest(format!("{provider}:{email}").as_bytes());
    let provider_id: String = digest
        .iter()
        .take(10)
        .map(|b| char::from(b'0' + b % 10))
        .collect();
    let name = email.split('@').next().unwrap_or(email);
    let identity_data = json!({
        "iss": format!("https://{provider}.devstack.invalid"),
        "sub": provider_id,
        "provider_id": provider_id,
        "email": email,
        "email_verified": true,
        "phone_verified": false,
        "name": name,
        "full_name": name,
    });
    match users::find_by_email(c, email)? {
        Some(user) => {
            if !user.identities.iter().any(|i| i.provider == provider) {
                users::insert_identity(c, &user.id, provider, &provider_id, &identity_data, now)?;
            }
            users::confirm_email(c, &user.id, now)?;
            Ok(user.id)
        }
        None => users::insert(
            c,
            users::NewUser {
                email,
                password_hash: None,
                provider,
                provider_id: Some(&provider_id),
                identity_data: identity_data.clone(),
                user_metadata: identity_data,
            },
            now,
        ),
    }
}

#[derive(Deserialize)]
struct PkceGrantParams {
    #[serde(default, deserialize_with = "null_as_default")]
    auth_code: String,
    #[serde(default, deserialize_with = "null_as_default")]
    code_verifier: String,
}

/// `POST /token?grant_type=pkce` `{auth_code, code_verifier}`.
pub async fn pkce_grant(backend: &Backend, body: &Bytes) -> Result<Value, AuthError> {
    let params: PkceGrantParams = parse_json(body)?;
    if params.auth_code.is_empty() || params.code_verifier.is_empty() {
        return Err(AuthError::validation(
            "invalid request: both auth code and code verifier should be non-empty",
        ));
    }
    let code = params.auth_code.clone();
    let flow = backend.db.call(move |c| find_flow(c, "auth_code", &code))?;
    let Some(flow) = flow.filter(|f| f.user_id.is_some()) else {
        return Err(AuthError::not_found(
            code::FLOW_STATE_NOT_FOUND,
            "invalid flow state, no valid flow state found",
        ));
    };
    let now = backend.clock.now_ms();
    if now > flow.created_at + FLOW_STATE_TTL_MS {
        return Err(AuthError::unprocessable(
            code::FLOW_STATE_EXPIRED,
            "invalid flow state, flow state has expired",
        ));
    }
    let (Some(challenge), Some(method), Some(user_id)) = (
        flow.code_challenge.as_deref(),
        flow.code_challenge_method.as_deref(),
        flow.user_id.clone(),
    ) else {
        return Err(AuthError::bad_request(
            code::BAD_CODE_VERIFIER,
            "PKCE verification not applicable for implicit flow",
        ));
    };
    verify_pkce(challenge, method, &params.code_verifier)
        .map_err(|m| AuthError::bad_request(code::BAD_CODE_VERIFIER, m))?;

    let (flow_id, provider) = (flow.id.clone(), flow.provider.clone());
    let issued = backend.db.call(move |c| {
        let tx = c.transaction()?;
        // Single use: whoever deletes the flow state first gets the session.
        let deleted = tx.execute("DELETE FROM auth_flow_states WHERE id = ?1", [&flow_id])?;
        if deleted == 0 {
            return Ok(None);
        }
        let issued = sessions::start(&tx, &user_id, SignInMethod::OAuth, Some(&provider), now)?;
        tx.commit()?;
        Ok(issued)
    })?;
    let issued = issued.ok_or_else(|| {
        AuthError::not_found(
            code::FLOW_STATE_NOT_FOUND,
            "invalid flow state, no valid flow state found",
        )
    })?;
    Ok(sessions::session_response(backend, &issued))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_allow_list_redirects() {
        let none: Vec<String> = Vec::new();
        for ok in [
            "http://127.0.0.1:53682/callback",
            "http://127.0.0.1/callback?state=x",
            "http://[::1]:8080/cb",
            "http://localhost:3000/",
            "http://127.1.2.3:9/",
        ] {
            assert!(redirect_allowed(ok, &none), "{ok} should be allowed");
        }
        for bad in [
            "https://evil.example/callback",
            "http://127.0.0.1.evil.example/",
            "http://2130706433/",
            "javascript:alert(1)",
            "rohimaya://callback",
            "not a url",
        ] {
            assert!(!redirect_allowed(bad, &none), "{bad} should be refused");
        }
        let list = vec![
            "rohimaya://callback".to_string(),
            "https://*.rohimaya.app/**".to_string(),
        ];
        assert!(redirect_allowed("rohimaya://callback", &list));
        assert!(redirect_allowed("https://app.rohimaya.app/auth/cb", &list));
        assert!(!redirect_allowed("https://a.b.rohimaya.app.evil/x", &list));
        assert!(!redirect_allowed(
            "https://evil.example/rohimaya.app/",
            &list
        ));
    }

    #[test]
    fn pkce_s256_and_plain() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert_eq!(verify_pkce(challenge, "S256", verifier), Ok(()));
        assert!(verify_pkce(challenge, "s256", "wrong").is_err());
        assert_eq!(verify_pkce(verifier, "plain", verifier), Ok(()));
        assert!(verify_pkce(challenge, "md5", verifier).is_err());
        assert!(validate_pkce_params("s256", challenge).is_ok());
        assert!(validate_pkce_params("", challenge).is_err());
        assert!(validate_pkce_params("s256", "short").is_err());
        assert!(validate_pkce_params("", "").is_ok());
    }
}

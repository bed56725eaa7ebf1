//! Counters of refresh-token grants, kept in the `auth_stats` table and served as
//! `GET /devstack/stats`: `{"refresh_granted": n, "refresh_refused": {"<code>": n}}`.
//! Tests count refreshes at the server with it (e.g. "50 concurrent calls, one refresh").
//! It owns the counters only; it never records a token.

use axum::Json;
use axum::extract::State;
use serde_json::{Map, Value, json};

use super::errors::AuthError;
use super::sessions::RefreshRefused;
use crate::server::Backend;

const GRANTED: &str = "refresh_granted";
const REFUSED_PREFIX: &str = "refresh_refused:";

/// Counts one refresh-token grant: granted (`None`) or refused for `refused`. A failure
/// to count is logged, never reported to the client.
pub fn count_refresh(backend: &Backend, refused: Option<RefreshRefused>) {
    let name = match refused {
        None => GRANTED.to_string(),
        Some(r) => format!("{REFUSED_PREFIX}{}", AuthError::from(r).code()),
    };
    let counted = backend.db.call(move |c| {
        c.execute(
            "INSERT INTO auth_stats (name, count) VALUES (?1, 1)
             ON CONFLICT (name) DO UPDATE SET count = count + 1",
            [name],
        )
    });
    if let Err(e) = counted {
        tracing::warn!("cannot count a refresh: {e}");
    }
}

/// `GET /devstack/stats`.
pub async fn get_stats(State(backend): State<Backend>) -> Result<Json<Value>, AuthError> {
    let rows = backend.db.call(|c| {
        let mut stmt = c.prepare("SELECT name, count FROM auth_stats ORDER BY name")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
    })?;
    let mut granted = 0;
    let mut refused = Map::new();
    for (name, count) in rows {
        if name == GRANTED {
            granted = count;
        } else if let Some(code) = name.strip_prefix(REFUSED_PREFIX) {
            refused.insert(code.to_string(), json!(count));
        }
    }
    Ok(Json(
        json!({ "refresh_granted": granted, "refresh_refused": refused }),
    ))
}

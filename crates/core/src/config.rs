//! Which backend the app and the CLI talk to, and where their files live.
//!
//! A backend is either the embedded local devstack (the default when nothing is
//! configured) or a set of endpoints: from the `ROHIMAYA_*` environment variables, or
//! from the `[backend]` table of `settings.toml` in the config dir. This module owns that
//! decision and the OS paths (via `directories`); it never starts a backend and never
//! touches the network.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, ErrorCode};

/// The endpoints of a Supabase project plus the engine API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoints {
    pub supabase_url: String,
    pub anon_key: String,
    pub api_url: String,
    /// The `Origin` header to send on state-changing engine requests, when the engine
    /// only accepts known origins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// Where requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendChoice {
    /// Nothing configured: run the embedded devstack.
    Local,
    /// A configured backend (hosted or custom).
    Remote(Endpoints),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "the backend is only partly configured: {missing} {verb} missing. Set all of \
         ROHIMAYA_SUPABASE_URL, ROHIMAYA_SUPABASE_ANON_KEY and ROHIMAYA_API_URL, or none \
         of them to use the local backend"
    )]
    Incomplete { missing: String, verb: &'static str },
    #[error("{name} is not a valid http(s) URL ({value}): use a full URL such as https://example.supabase.co")]
    InvalidUrl { name: &'static str, value: String },
    #[error("cannot read {path}: {reason}. Fix or delete the file")]
    Unreadable { path: PathBuf, reason: String },
}

impl CoreError for ConfigError {
    fn code(&self) -> ErrorCode {
        match self {
            ConfigError::Incomplete { .. } => ErrorCode::ConfigIncomplete,
            ConfigError::InvalidUrl { .. } => ErrorCode::ConfigInvalidUrl,
            ConfigError::Unreadable { .. } => ErrorCode::ConfigUnreadable,
        }
    }
}

/// The environment variable names, in one place.
pub mod env {
    pub const SUPABASE_URL: &str = "ROHIMAYA_SUPABASE_URL";
    pub const ANON_KEY: &str = "ROHIMAYA_SUPABASE_ANON_KEY";
    pub const API_URL: &str = "ROHIMAYA_API_URL";
    pub const ORIGIN: &str = "ROHIMAYA_ORIGIN";
    pub const DATA_DIR: &str = "ROHIMAYA_DATA_DIR";
    pub const CONFIG_DIR: &str = "ROHIMAYA_CONFIG_DIR";
    pub const LIBRARY_DIR: &str = "ROHIMAYA_LIBRARY_DIR";
}

/// `settings.toml`, as far as this module reads it.
#[derive(Debug, Default, Deserialize)]
struct SettingsFile {
    backend: Option<Endpoints>,
}

impl BackendChoice {
    /// Resolves from the process environment, then `settings.toml` in the config dir.
    pub fn resolve(paths: &Paths) -> Result<Self, ConfigError> {
        Self::resolve_with(|name| std::env::var(name).ok(), &paths.settings_file())
    }

    /// Resolves with an injected environment (for tests): the environment wins when any
    /// of its backend variables is set; then the settings file; else local.
    pub fn resolve_with(
        var: impl Fn(&str) -> Option<String>,
        settings_file: &Path,
    ) -> Result<Self, ConfigError> {
        let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let found = [env::SUPABASE_URL, env::ANON_KEY, env::API_URL].map(|n| (n, get(n)));
        if found.iter().any(|(_, v)| v.is_some()) {
            let missing: Vec<&str> = found
                .iter()
                .filter(|(_, v)| v.is_none())
                .map(|(n, _)| *n)
                .collect();
            if !missing.is_empty() {
                return Err(ConfigError::Incomplete {
                    verb: if missing.len() == 1 { "is" } else { "are" },
                    missing: missing.join(", "),
                });
            }
            let [(_, Some(supabase_url)), (_, Some(anon_key)), (_, Some(api_url))] = found else {
                unreachable!("checked above that none is missing")
            };
            let endpoints = Endpoints {
                supabase_url,
                anon_key,
                api_url,
                origin: get(env::ORIGIN),
            };
            return validated(endpoints).map(BackendChoice::Remote);
        }
        match read_settings(settings_file)?.backend {
            Some(endpoints) => validated(endpoints).map(BackendChoice::Remote),
            None => Ok(BackendChoice::Local),
        }
    }
}

fn read_settings(path: &Path) -> Result<SettingsFile, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(SettingsFile::default()),
        Err(e) => {
            return Err(ConfigError::Unreadable {
                path: path.to_path_buf(),
                reason: e.to_string(),
            });
        }
    };
    toml::from_str(&text).map_err(|e| ConfigError::Unreadable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn validated(mut e: Endpoints) -> Result<Endpoints, ConfigError> {
    for (name, value) in [
        (env::SUPABASE_URL, &mut e.supabase_url),
        (env::API_URL, &mut e.api_url),
    ] {
        let parsed = url::Url::parse(value.trim()).map_err(|_| ConfigError::InvalidUrl {
            name,
            value: value.clone(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err(ConfigError::InvalidUrl {
                name,
                value: value.clone(),
            });
        }
        *value = value.trim().trim_end_matches('/').to_string();
    }
    Ok(e)
}

/// The directories Rohimaya uses on this OS, with the `ROHIMAYA_*_DIR` overrides applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub config_dir: PathBuf,
    pub data_dir: PathBuf,
    pub library_dir: PathBuf,
}

impl Paths {
    /// The OS locations (XDG on Linux, Application Support on macOS, AppData on Windows),
    /// overridden by `ROHIMAYA_CONFIG_DIR`, `ROHIMAYA_DATA_DIR`, `ROHIMAYA_LIBRARY_DIR`.
    pub fn from_env() -> Self {
        let dirs = directories::ProjectDirs::from("app", "Rohimaya", "Rohimaya");
        let home = directories::UserDirs::new().map(|u| u.home_dir().to_path_buf());
        let fallback = std::env::temp_dir().join("rohimaya");
        let over = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        Paths {
            config_dir: over(env::CONFIG_DIR)
                .or_else(|| dirs.as_ref().map(|d| d.config_dir().to_path_buf()))
                .unwrap_or_else(|| fallback.join("config")),
            data_dir: over(env::DATA_DIR)
                .or_else(|| dirs.as_ref().map(|d| d.data_dir().to_path_buf()))
                .unwrap_or_else(|| fallback.join("data")),
            library_dir: over(env::LIBRARY_DIR)
                .or_else(|| home.map(|h| h.join("Audiobooks").join("Rohimaya")))
                .unwrap_or_else(|| fallback.join("library")),
        }
    }

    pub fn settings_file(&self) -> PathBuf {
        self.config_dir.join("settings.toml")
    }

    /// Where the embedded local backend keeps its state.
    pub fn devstack_dir(&self) -> PathBuf {
        self.data_dir.join("devstack")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn no_file() -> PathBuf {
        PathBuf::from("/nonexistent/rohimaya/settings.toml")
    }

    #[test]
    fn nothing_configured_means_local() {
        assert_eq!(
            BackendChoice::resolve_with(env_of(&[]), &no_file()),
            Ok(BackendChoice::Local)
        );
    }

    #[test]
    fn full_environment_means_remote_with_trimmed_urls() {
        let choice = BackendChoice::resolve_with(
            env_of(&[
                (env::SUPABASE_URL, "https://x.supabase.co/"),
                (env::ANON_KEY, "anon"),
                (env::API_URL, "https://api.example.com"),
                (env::ORIGIN, "https://app.example.com"),
            ]),
            &no_file(),
        );
        assert_eq!(
            choice,
            Ok(BackendChoice::Remote(Endpoints {
                supabase_url: "https://x.supabase.co".into(),
                anon_key: "anon".into(),
                api_url: "https://api.example.com".into(),
                origin: Some("https://app.example.com".into()),
            }))
        );
    }

    #[test]
    fn partial_environment_names_what_is_missing() {
        let err = BackendChoice::resolve_with(
            env_of(&[(env::SUPABASE_URL, "https://x.supabase.co")]),
            &no_file(),
        )
        .unwrap_err();
        assert_eq!(err.code(), ErrorCode::ConfigIncomplete);
        let text = err.to_string();
        assert!(text.contains(env::ANON_KEY) && text.contains(env::API_URL), "{text}");
    }

    #[test]
    fn bad_url_is_refused() {
        let err = BackendChoice::resolve_with(
            env_of(&[
                (env::SUPABASE_URL, "x.supabase.co"),
                (env::ANON_KEY, "anon"),
                (env::API_URL, "https://api.example.com"),
            ]),
            &no_file(),
        )
        .unwrap_err();
        assert_eq!(err.code(), ErrorCode::ConfigInvalidUrl);
    }

    #[test]
    fn settings_file_backend_is_used() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("settings.toml");
        std::fs::write(
            &file,
            "[backend]\nsupabase_url = \"http://127.0.0.1:9\"\nanon_key = \"k\"\napi_url = \"http://127.0.0.1:9/api\"\n",
        )
        .unwrap();
        let choice = BackendChoice::resolve_with(env_of(&[]), &file).unwrap();
        assert!(matches!(choice, BackendChoice::Remote(e) if e.api_url == "http://127.0.0.1:9/api"));
        std::fs::write(&file, "[backend\n").unwrap();
        let err = BackendChoice::resolve_with(env_of(&[]), &file).unwrap_err();
        assert_eq!(err.code(), ErrorCode::ConfigUnreadable);
    }
}

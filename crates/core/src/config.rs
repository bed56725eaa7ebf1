//! Which backend the app and the CLI talk to, and where their files live.
//!
//! A backend is either the embedded local devstack (the default when nothing is
//! configured) or a set of endpoints: from the `ROHIMAYA_*` environment variables, or
//! from the `[backend]` table of `settings.toml` in the config dir. This module owns that
//! decision and the OS paths (via `directories`); it never starts a backend and never
//! touches the network.
//!
//! Profiles name backends for the CLI and the session store: `[profiles.NAME]` tables in
//! `settings.toml` (`local`, written by `rohimaya devstack --save-profile`; `cloud`;
//! any custom name). [`Profile::resolve`] picks the profile (flag, `ROHIMAYA_PROFILE`,
//! else `local`) and its endpoints (`ROHIMAYA_*` variables override the file).

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
    #[error(
        "{name} is not a valid http(s) URL ({value}): use a full URL such as https://example.supabase.co"
    )]
    InvalidUrl { name: &'static str, value: String },
    #[error("cannot read {path}: {reason}. Fix or delete the file")]
    Unreadable { path: PathBuf, reason: String },
    #[error(
        "no backend is known for profile {name:?}: for the local backend run `rohimaya \
         devstack --save-profile`; for another backend add [profiles.{name}] with \
         supabase_url, anon_key and api_url to {settings}, or set ROHIMAYA_SUPABASE_URL, \
         ROHIMAYA_SUPABASE_ANON_KEY and ROHIMAYA_API_URL"
    )]
    ProfileUnknown { name: String, settings: PathBuf },
    #[error("{name:?} is not a profile name: use 1 to 64 letters, digits, '-' or '_'")]
    ProfileInvalidName { name: String },
    #[error("cannot write {path}: {reason}")]
    Unwritable { path: PathBuf, reason: String },
}

impl CoreError for ConfigError {
    fn code(&self) -> ErrorCode {
        match self {
            ConfigError::Incomplete { .. } => ErrorCode::ConfigIncomplete,
            ConfigError::InvalidUrl { .. } => ErrorCode::ConfigInvalidUrl,
            ConfigError::Unreadable { .. } | ConfigError::Unwritable { .. } => {
                ErrorCode::ConfigUnreadable
            }
            ConfigError::ProfileUnknown { .. } => ErrorCode::ProfileUnknown,
            ConfigError::ProfileInvalidName { .. } => ErrorCode::ProfileInvalidName,
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
    pub const PROFILE: &str = "ROHIMAYA_PROFILE";
}

/// `settings.toml`, as far as this module reads it.
#[derive(Debug, Default, Deserialize)]
struct SettingsFile {
    backend: Option<Endpoints>,
    #[serde(default)]
    profiles: std::collections::BTreeMap<String, Endpoints>,
}

/// The profile used when none is named.
pub const DEFAULT_PROFILE: &str = "local";

/// Where a profile's endpoints came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProfileSource {
    /// `ROHIMAYA_SUPABASE_URL`, `ROHIMAYA_SUPABASE_ANON_KEY`, `ROHIMAYA_API_URL`.
    Environment,
    /// `[profiles.NAME]` in `settings.toml`.
    SettingsFile,
    /// The `[backend]` table of `settings.toml` (used when no profile was named).
    BackendTable,
    /// The embedded local backend the desktop app started (no backend configured).
    LocalBackend,
}

/// A named backend: the session store keeps one session per profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub endpoints: Endpoints,
    pub source: ProfileSource,
}

/// Profile names key keyring entries and lock files: keep them plain.
pub fn validate_profile_name(name: &str) -> Result<(), ConfigError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::ProfileInvalidName {
            name: name.to_string(),
        })
    }
}

impl Profile {
    /// The profile named `name` (else `ROHIMAYA_PROFILE`, else `local`) with its
    /// endpoints: the `ROHIMAYA_*` variables when set, else `[profiles.NAME]`, else (when
    /// no name was given) the `[backend]` table.
    pub fn resolve(paths: &Paths, name: Option<&str>) -> Result<Self, ConfigError> {
        Self::resolve_with(|n| std::env::var(n).ok(), &paths.settings_file(), name)
    }

    /// As [`resolve`](Self::resolve) with an injected environment (for tests).
    pub fn resolve_with(
        var: impl Fn(&str) -> Option<String>,
        settings_file: &Path,
        name: Option<&str>,
    ) -> Result<Self, ConfigError> {
        let named = name
            .map(str::to_string)
            .or_else(|| var(env::PROFILE).filter(|v| !v.trim().is_empty()));
        let explicit = named.is_some();
        let name = named.unwrap_or_else(|| DEFAULT_PROFILE.to_string());
        validate_profile_name(&name)?;
        let env_choice = BackendChoice::resolve_with(&var, Path::new(""))?;
        if let BackendChoice::Remote(endpoints) = env_choice {
            return Ok(Self {
                name,
                endpoints,
                source: ProfileSource::Environment,
            });
        }
        let mut settings = read_settings(settings_file)?;
        if let Some(endpoints) = settings.profiles.remove(&name) {
            return Ok(Self {
                name,
                endpoints: validated(endpoints)?,
                source: ProfileSource::SettingsFile,
            });
        }
        match settings.backend {
            Some(endpoints) if !explicit => Ok(Self {
                name,
                endpoints: validated(endpoints)?,
                source: ProfileSource::BackendTable,
            }),
            _ => Err(ConfigError::ProfileUnknown {
                name,
                settings: settings_file.to_path_buf(),
            }),
        }
    }
}

/// Writes `endpoints` as `[profiles.NAME]` of `settings.toml`, keeping the rest of the
/// file (comments included) as it is.
pub fn save_profile(paths: &Paths, name: &str, endpoints: &Endpoints) -> Result<(), ConfigError> {
    validate_profile_name(name)?;
    let path = paths.settings_file();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(ConfigError::Unreadable {
                path,
                reason: e.to_string(),
            });
        }
    };
    let mut doc: toml_edit::DocumentMut =
        text.parse()
            .map_err(|e: toml_edit::TomlError| ConfigError::Unreadable {
                path: path.clone(),
                reason: e.to_string(),
            })?;
    let profiles = doc
        .entry("profiles")
        .or_insert_with(|| {
            let mut t = toml_edit::Table::new();
            t.set_implicit(true);
            toml_edit::Item::Table(t)
        })
        .as_table_mut()
        .ok_or_else(|| ConfigError::Unreadable {
            path: path.clone(),
            reason: "`profiles` is not a table".into(),
        })?;
    let mut table = toml_edit::Table::new();
    table["supabase_url"] = toml_edit::value(&endpoints.supabase_url);
    table["anon_key"] = toml_edit::value(&endpoints.anon_key);
    table["api_url"] = toml_edit::value(&endpoints.api_url);
    if let Some(origin) = &endpoints.origin {
        table["origin"] = toml_edit::value(origin);
    }
    profiles.insert(name, toml_edit::Item::Table(table));
    let unwritable = |e: std::io::Error| ConfigError::Unwritable {
        path: path.clone(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(&paths.config_dir).map_err(unwritable)?;
    // Write beside, then rename: a crash never leaves half a settings file.
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, doc.to_string()).map_err(unwritable)?;
    std::fs::rename(&tmp, &path).map_err(unwritable)
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
            let [
                (_, Some(supabase_url)),
                (_, Some(anon_key)),
                (_, Some(api_url)),
            ] = found
            else {
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
        let over = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
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

    /// The OS's data directory for Rohimaya, whatever `ROHIMAYA_DATA_DIR` says.
    pub fn os_data_dir() -> Option<PathBuf> {
        directories::ProjectDirs::from("app", "Rohimaya", "Rohimaya")
            .map(|d| d.data_dir().to_path_buf())
    }

    pub fn settings_file(&self) -> PathBuf {
        self.config_dir.join("settings.toml")
    }

    /// Where the embedded local backend keeps its state.
    pub fn devstack_dir(&self) -> PathBuf {
        self.data_dir.join("devstack")
    }

    /// Where the desktop app writes its log files.
    pub fn logs_dir(&self) -> PathBuf {
        self.data_dir.join("logs")
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
        assert!(
            text.contains(env::ANON_KEY) && text.contains(env::API_URL),
            "{text}"
        );
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
    fn profiles_resolve_from_file_env_and_backend_table() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            config_dir: dir.path().join("config"),
            data_dir: dir.path().join("data"),
            library_dir: dir.path().join("lib"),
        };
        let file = paths.settings_file();
        let err = Profile::resolve_with(env_of(&[]), &file, None).unwrap_err();
        assert_eq!(err.code(), ErrorCode::ProfileUnknown);
        assert!(err.to_string().contains("--save-profile"), "{err}");

        std::fs::create_dir_all(&paths.config_dir).unwrap();
        std::fs::write(&file, "# mine\n[backend]\nsupabase_url = \"http://127.0.0.1:7\"\nanon_key = \"b\"\napi_url = \"http://127.0.0.1:7/api\"\n").unwrap();
        let p = Profile::resolve_with(env_of(&[]), &file, None).unwrap();
        assert_eq!(
            (p.name.as_str(), p.source),
            ("local", ProfileSource::BackendTable)
        );
        // A named profile does not fall back to [backend].
        let err = Profile::resolve_with(env_of(&[]), &file, Some("cloud")).unwrap_err();
        assert_eq!(err.code(), ErrorCode::ProfileUnknown);

        let local = Endpoints {
            supabase_url: "http://127.0.0.1:9".into(),
            anon_key: "k".into(),
            api_url: "http://127.0.0.1:9/api".into(),
            origin: None,
        };
        save_profile(&paths, "local", &local).unwrap();
        save_profile(&paths, "local", &local).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.starts_with("# mine"), "{text}");
        let p = Profile::resolve_with(env_of(&[]), &file, None).unwrap();
        assert_eq!(
            (p.endpoints, p.source),
            (local.clone(), ProfileSource::SettingsFile)
        );
        let p = Profile::resolve_with(env_of(&[(env::PROFILE, "local")]), &file, None).unwrap();
        assert_eq!(p.name, "local");

        let p = Profile::resolve_with(
            env_of(&[
                (env::SUPABASE_URL, "https://x.supabase.co"),
                (env::ANON_KEY, "anon"),
                (env::API_URL, "https://api.example.com"),
            ]),
            &file,
            Some("cloud"),
        )
        .unwrap();
        assert_eq!(
            (p.name.as_str(), p.source),
            ("cloud", ProfileSource::Environment)
        );
        assert_eq!(p.endpoints.api_url, "https://api.example.com");

        for bad in ["", "a/b", "..", "x y", &"z".repeat(65)] {
            let err = Profile::resolve_with(env_of(&[]), &file, Some(bad)).unwrap_err();
            assert_eq!(err.code(), ErrorCode::ProfileInvalidName, "{bad:?}");
        }
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
        assert!(
            matches!(choice, BackendChoice::Remote(e) if e.api_url == "http://127.0.0.1:9/api")
        );
        std::fs::write(&file, "[backend\n").unwrap();
        let err = BackendChoice::resolve_with(env_of(&[]), &file).unwrap_err();
        assert_eq!(err.code(), ErrorCode::ConfigUnreadable);
    }
}

//! The desktop app's own preferences: the `[app]` table of `settings.toml` (closing the
//! window keeps Rohimaya in the tray; desktop notifications on or off). Read with
//! defaults for whatever is missing, written back keeping the rest of the file (comments
//! included) as it is, through a temporary file and a rename.
//!
//! It owns that table only; transfer settings live with the queue (`state.db`), backend
//! profiles in `config`. It never touches anything but `settings.toml`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, Paths};

/// The app's preferences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(default)]
pub struct AppPrefs {
    /// Closing the window keeps uploads and watched folders running in the tray.
    pub close_to_tray: bool,
    /// Desktop notifications when an upload fails, a book is ready, a session ends.
    pub notifications: bool,
    /// Download every narration job that completes into the offline library.
    pub auto_download: bool,
}

impl Default for AppPrefs {
    fn default() -> Self {
        Self {
            close_to_tray: true,
            notifications: true,
            auto_download: true,
        }
    }
}

#[derive(Deserialize, Default)]
struct File {
    #[serde(default)]
    app: AppPrefs,
}

/// The preferences in `paths`' settings file (defaults when it or the table is missing).
pub fn load(paths: &Paths) -> Result<AppPrefs, ConfigError> {
    let path = paths.settings_file();
    let text = read(&path)?;
    let file: File = toml::from_str(&text).map_err(|e| ConfigError::Unreadable {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    Ok(file.app)
}

/// Writes `prefs` as the `[app]` table, keeping everything else in the file.
pub fn save(paths: &Paths, prefs: &AppPrefs) -> Result<(), ConfigError> {
    let path = paths.settings_file();
    let text = read(&path)?;
    let mut doc: toml_edit::DocumentMut =
        text.parse()
            .map_err(|e: toml_edit::TomlError| ConfigError::Unreadable {
                path: path.clone(),
                reason: e.to_string(),
            })?;
    let table = doc
        .entry("app")
        .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()))
        .as_table_mut()
        .ok_or_else(|| ConfigError::Unreadable {
            path: path.clone(),
            reason: "`app` is not a table".into(),
        })?;
    table["close_to_tray"] = toml_edit::value(prefs.close_to_tray);
    table["notifications"] = toml_edit::value(prefs.notifications);
    table["auto_download"] = toml_edit::value(prefs.auto_download);
    let unwritable = |e: std::io::Error| ConfigError::Unwritable {
        path: path.clone(),
        reason: e.to_string(),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(unwritable)?;
    }
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, doc.to_string()).map_err(unwritable)?;
    std::fs::rename(&tmp, &path).map_err(unwritable)
}

fn read(path: &Path) -> Result<String, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(ConfigError::Unreadable {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(dir: &Path) -> Paths {
        Paths {
            config_dir: dir.join("config"),
            data_dir: dir.join("data"),
            library_dir: dir.join("library"),
        }
    }

    #[test]
    fn defaults_round_trip_and_the_rest_of_the_file_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = paths(dir.path());
        assert_eq!(load(&p).expect("defaults"), AppPrefs::default());
        std::fs::create_dir_all(&p.config_dir).expect("config dir");
        let original = "# my backend\n[profiles.work]\nsupabase_url = \"https://x.supabase.co\"\n";
        std::fs::write(p.settings_file(), original).expect("settings");
        let changed = AppPrefs {
            close_to_tray: false,
            notifications: true,
            auto_download: false,
        };
        save(&p, &changed).expect("save");
        assert_eq!(load(&p).expect("load"), changed);
        let text = std::fs::read_to_string(p.settings_file()).expect("read");
        assert!(text.starts_with(original), "{text}");
    }

    #[test]
    fn a_broken_file_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = paths(dir.path());
        std::fs::create_dir_all(&p.config_dir).expect("config dir");
        std::fs::write(p.settings_file(), "[app]\nclose_to_tray = \"maybe\"\n").expect("write");
        let err = load(&p).expect_err("a type error");
        assert!(err.to_string().contains("settings.toml"), "{err}");
    }
}

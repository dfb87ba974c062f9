//! Where the configuration's values come from: the process environment
//! (and `NAME_FILE` for a value kept in a file), over an optional TOML file
//! whose keys are the settings' names in lower case and whose
//! `[[providers]]` tables configure connected services.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use token_broker::providers::SECRET_VARIABLE_PREFIX;
use token_settings::ConfigError;

/// `NAME → value` for every setting given, and the `[[providers]]` tables.
pub(crate) type Sources = (BTreeMap<String, String>, Vec<toml::Table>);

/// The values of the process environment over those of the TOML file at
/// `file` (when given), and the file's `[[providers]]`. Every setting can
/// also be given as `NAME_FILE`, the path of a file holding the value (for
/// secrets); it wins over `NAME`. (A setting that has a `…_FILE` setting of
/// its own, such as `CONNECT_KEYS`, reads that one itself.)
///
/// # Errors
///
/// [`ConfigError`] naming the file, the key or the `NAME_FILE` variable.
pub(crate) fn gather(file: Option<&Path>) -> Result<Sources, ConfigError> {
    gather_from(file, &|name| std::env::var_os(name), std::env::vars())
}

/// [`gather`] with `env` (a variable's value) and `vars` (every variable)
/// standing for the process environment.
fn gather_from(
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<OsString>,
    vars: impl Iterator<Item = (String, String)>,
) -> Result<Sources, ConfigError> {
    let (mut values, providers) = match file {
        Some(path) => read_toml(path)?,
        None => (BTreeMap::new(), Vec::new()),
    };
    for setting in super::all_settings() {
        let name = setting.name;
        if let Some(value) = env(name).and_then(|value| value.into_string().ok()) {
            values.insert(name.to_owned(), value);
        }
        // NAME_FILE: the value is in a file (a Docker or Kubernetes
        // secret), so it needs to be in no environment and no image.
        let file_variable = format!("{name}_FILE");
        if super::all_settings().any(|other| other.name == file_variable) {
            continue;
        }
        if let Some(path) = env(&file_variable) {
            let text = std::fs::read_to_string(&path).map_err(|error| {
                ConfigError::new(
                    &file_variable,
                    format!("cannot read {}: {error}", Path::new(&path).display()),
                )
            })?;
            values.insert(
                name.to_owned(),
                text.trim_end_matches(['\r', '\n']).to_owned(),
            );
        }
    }
    for (name, value) in vars {
        if name.starts_with(SECRET_VARIABLE_PREFIX) {
            values.insert(name, value);
        }
    }
    Ok((values, providers))
}

/// Reads a configuration file: `NAME → value` for the settings, and the
/// `[[providers]]` tables.
///
/// # Errors
///
/// [`ConfigError`] naming the file or the key at fault.
pub(crate) fn read_toml(path: &Path) -> Result<Sources, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        ConfigError::new(
            "--config",
            format!("cannot read {}: {error}", path.display()),
        )
    })?;
    let table: toml::Table = text.parse().map_err(|error| {
        ConfigError::new(
            "--config",
            format!("{} is not valid TOML: {error}", path.display()),
        )
    })?;
    let mut values = BTreeMap::new();
    let mut providers = Vec::new();
    for (key, value) in table {
        if key == "providers" {
            let toml::Value::Array(entries) = value else {
                return Err(ConfigError::new(
                    "providers",
                    "expected an array of tables ([[providers]])",
                ));
            };
            for entry in entries {
                let toml::Value::Table(table) = entry else {
                    return Err(ConfigError::new(
                        "providers",
                        "expected an array of tables ([[providers]])",
                    ));
                };
                providers.push(table);
            }
            continue;
        }
        let name = key.to_ascii_uppercase();
        if !super::all_settings().any(|setting| setting.name == name) {
            return Err(ConfigError::new(
                &key,
                format!(
                    "unknown setting in {} (known: the environment variable names, lower-case, \
                     and [[providers]])",
                    path.display()
                ),
            ));
        }
        let text = match value {
            toml::Value::String(text) => text,
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => {
                return Err(ConfigError::new(
                    &key,
                    "expected a string, integer or boolean",
                ));
            }
        };
        values.insert(name, text);
    }
    Ok((values, providers))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `NAME_FILE` holds a value in a file (its trailing newline dropped)
    /// and wins over `NAME`; a setting with a `…_FILE` setting of its own
    /// (`CONNECT_KEYS`) gets the path as that setting, not the file's text
    /// as itself too (which would be "both given"); provider secrets come
    /// from their own variables.
    #[test]
    fn environment_and_files() {
        let dir = tempfile::tempdir().expect("dir");
        let url = dir.path().join("redis_url");
        std::fs::write(&url, "redis://secret@db:6379\n").expect("write");
        let keys = dir.path().join("keys");
        std::fs::write(&keys, "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\n").expect("write");
        let env: BTreeMap<String, OsString> = [
            ("REDIS_URL", OsString::from("redis://plain:6379")),
            ("REDIS_URL_FILE", url.into_os_string()),
            ("ACCESS_TOKEN_TTL", OsString::from("60")),
            ("CONNECT_KEYS_FILE", keys.clone().into_os_string()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
        let vars = [(
            "CONNECT_PROVIDER_X_CLIENT_SECRET".to_owned(),
            "s".to_owned(),
        )];
        let (values, providers) =
            gather_from(None, &|name| env.get(name).cloned(), vars.into_iter()).expect("valid");
        assert!(providers.is_empty());
        let get = |name: &str| values.get(name).map(String::as_str);
        assert_eq!(get("REDIS_URL"), Some("redis://secret@db:6379"));
        assert_eq!(get("ACCESS_TOKEN_TTL"), Some("60"));
        assert_eq!(get("CONNECT_KEYS"), None);
        assert_eq!(get("CONNECT_KEYS_FILE"), keys.to_str());
        assert_eq!(get("CONNECT_PROVIDER_X_CLIENT_SECRET"), Some("s"));
        let config = super::super::Config::from_values(&values).expect("valid");
        assert_eq!(config.connect.keys.expect("keys").ids(), ["k1"]);
        let missing = |name: &str| {
            (name == "HASH_QUEUE_FILE").then(|| OsString::from("/nonexistent/hash-queue"))
        };
        let error = gather_from(None, &missing, std::iter::empty()).unwrap_err();
        assert_eq!(error.variable, "HASH_QUEUE_FILE");
    }
}

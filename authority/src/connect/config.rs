//! The connected-services part of the configuration: the `CONNECT_*`
//! variables and the `[[providers]]` tables, validated at start-up.
//!
//! With at least one provider configured, `CONNECT_STATE_KEY` (or
//! `CONNECT_STATE_KEY_FILE`), `CONNECT_KEYS` (or `CONNECT_KEYS_FILE`),
//! `CONNECT_SUCCESS_URL` and `CONNECT_FAILURE_URL` are required.

use std::fmt;
use std::time::Duration;

use zeroize::Zeroizing;

use super::crypto::{Keyring, decode_key_material};
use super::providers::{self, ProviderConfig};
use crate::config::ConfigError;

/// The shortest state key accepted, in bytes.
pub const MIN_STATE_KEY_LEN: usize = 32;

/// Connected services: providers, keys, pages, timing.
#[derive(Clone, Default)]
pub struct ConnectConfig {
    /// The `[[providers]]` of the configuration file.
    pub providers: Vec<ProviderConfig>,
    /// `CONNECT_STATE_KEY` / `_FILE`: signs states, derives PKCE verifiers.
    pub state_key: Option<Zeroizing<Vec<u8>>>,
    /// `CONNECT_KEYS` / `_FILE`: encrypt provider tokens (first = current).
    pub keys: Option<Keyring>,
    /// `CONNECT_SUCCESS_URL`: where the callback sends the browser after
    /// connecting (`provider=` appended).
    pub success_url: Option<String>,
    /// `CONNECT_FAILURE_URL`: where it sends the browser otherwise
    /// (`reason=` and `provider=` appended).
    pub failure_url: Option<String>,
    /// `CONNECT_STATE_TTL`: how long a user may take at the provider.
    pub state_ttl: Duration,
    /// `CONNECT_PROVIDER_TIMEOUT_MS`: bound on every call to a provider.
    pub provider_timeout: Duration,
    /// `CONNECT_KEEPALIVE_INTERVAL`: how often the keep-alive looks for
    /// connections to refresh.
    pub keepalive_interval: Duration,
}

impl fmt::Debug for ConnectConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectConfig")
            .field("providers", &self.providers)
            .field("state_key", &self.state_key.as_ref().map(|_| "<set>"))
            .field("keys", &self.keys)
            .field("success_url", &self.success_url)
            .field("failure_url", &self.failure_url)
            .field("state_ttl", &self.state_ttl)
            .field("provider_timeout", &self.provider_timeout)
            .field("keepalive_interval", &self.keepalive_interval)
            .finish()
    }
}

/// Reads a value given directly (`NAME`) or in a file (`NAME_FILE`).
fn direct_or_file(
    get: &dyn Fn(&str) -> Option<String>,
    name: &str,
) -> Result<Option<(Zeroizing<String>, String)>, ConfigError> {
    let file_variable = format!("{name}_FILE");
    match (get(name), get(&file_variable)) {
        (Some(_), Some(_)) => Err(ConfigError::new(
            name,
            format!("set {name} or {file_variable}, not both"),
        )),
        (Some(value), None) => Ok(Some((Zeroizing::new(value), name.to_owned()))),
        (None, Some(path)) => std::fs::read_to_string(&path)
            .map(|text| Some((Zeroizing::new(text), file_variable.clone())))
            .map_err(|error| {
                ConfigError::new(&file_variable, format!("cannot read {path}: {error}"))
            }),
        (None, None) => Ok(None),
    }
}

fn page_url(name: &str, value: Option<String>) -> Result<Option<String>, ConfigError> {
    match value {
        Some(url)
            if url.starts_with("http://")
                || url.starts_with("https://")
                || (url.starts_with('/') && !url.starts_with("//")) =>
        {
            Ok(Some(url))
        }
        Some(_) => Err(ConfigError::new(
            name,
            "expected an http(s):// URL or an absolute path",
        )),
        None => Ok(None),
    }
}

fn seconds_in(
    get: &dyn Fn(&str) -> Option<String>,
    name: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
    unit: fn(u64) -> Duration,
) -> Result<Duration, ConfigError> {
    match get(name) {
        None => Ok(unit(default)),
        Some(text) => match text.trim().parse::<u64>() {
            Ok(n) if range.contains(&n) => Ok(unit(n)),
            _ => Err(ConfigError::new(
                name,
                format!(
                    "expected a whole number from {} to {} (got {text:?})",
                    range.start(),
                    range.end()
                ),
            )),
        },
    }
}

impl ConnectConfig {
    /// Builds this part from `get` (a variable's non-empty value) and the
    /// `[[providers]]` tables.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the variable or provider field.
    pub fn load(
        get: &dyn Fn(&str) -> Option<String>,
        provider_tables: &[toml::Table],
    ) -> Result<Self, ConfigError> {
        let providers = providers::parse(provider_tables, get)?;
        let state_key = direct_or_file(get, "CONNECT_STATE_KEY")?
            .map(|(text, variable)| {
                decode_key_material(&text)
                    .filter(|key| key.len() >= MIN_STATE_KEY_LEN)
                    .ok_or_else(|| {
                        ConfigError::new(
                            &variable,
                            format!(
                                "expected at least {MIN_STATE_KEY_LEN} bytes in base64 \
                                 (for example `openssl rand -base64 32`)"
                            ),
                        )
                    })
            })
            .transpose()?;
        let keys = direct_or_file(get, "CONNECT_KEYS")?
            .map(|(text, variable)| {
                Keyring::parse(&text, &variable).map_err(|message| {
                    let problem = message
                        .strip_prefix(&format!("{variable}: "))
                        .unwrap_or(&message)
                        .to_owned();
                    ConfigError::new(&variable, problem)
                })
            })
            .transpose()?;
        let config = Self {
            success_url: page_url("CONNECT_SUCCESS_URL", get("CONNECT_SUCCESS_URL"))?,
            failure_url: page_url("CONNECT_FAILURE_URL", get("CONNECT_FAILURE_URL"))?,
            state_ttl: seconds_in(
                get,
                "CONNECT_STATE_TTL",
                600,
                1..=86_400,
                Duration::from_secs,
            )?,
            provider_timeout: seconds_in(
                get,
                "CONNECT_PROVIDER_TIMEOUT_MS",
                10_000,
                100..=120_000,
                Duration::from_millis,
            )?,
            keepalive_interval: seconds_in(
                get,
                "CONNECT_KEEPALIVE_INTERVAL",
                300,
                1..=86_400,
                Duration::from_secs,
            )?,
            providers,
            state_key,
            keys,
        };
        if !config.providers.is_empty() {
            let required = [
                ("CONNECT_STATE_KEY", config.state_key.is_some()),
                ("CONNECT_KEYS", config.keys.is_some()),
                ("CONNECT_SUCCESS_URL", config.success_url.is_some()),
                ("CONNECT_FAILURE_URL", config.failure_url.is_some()),
            ];
            if let Some((name, _)) = required.iter().find(|(_, set)| !set) {
                return Err(ConfigError::new(
                    name,
                    "required when providers are configured (see the README, Connected services)",
                ));
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const STATE_KEY: &str = "c3RhdGUta2V5LXN0YXRlLWtleS1zdGF0ZS1rZXktc3RhdGU=";
    const KEYS: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

    fn providers() -> Vec<toml::Table> {
        let table: toml::Table = "[[providers]]\nname = \"p\"\nissuer = \"http://x\"\nclient_id = \"c\"\nclient_secret = \"s\"\n"
            .parse()
            .expect("toml");
        vec![table["providers"][0].as_table().expect("table").clone()]
    }

    fn load(pairs: &[(&str, &str)], tables: &[toml::Table]) -> Result<ConnectConfig, ConfigError> {
        let values: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        ConnectConfig::load(&|name| values.get(name).cloned(), tables)
    }

    /// Without providers nothing is required; with providers every key and
    /// page is, and the error names the first missing variable.
    #[test]
    fn required_with_providers() {
        let none = load(&[], &[]).expect("nothing needed");
        assert!(none.providers.is_empty());
        assert_eq!(none.state_ttl, Duration::from_secs(600));
        let error = load(&[], &providers()).unwrap_err();
        assert_eq!(error.variable, "CONNECT_STATE_KEY");
        let error = load(&[("CONNECT_STATE_KEY", STATE_KEY)], &providers()).unwrap_err();
        assert_eq!(error.variable, "CONNECT_KEYS");
        let all = [
            ("CONNECT_STATE_KEY", STATE_KEY),
            ("CONNECT_KEYS", KEYS),
            ("CONNECT_SUCCESS_URL", "https://app.example/connected"),
            ("CONNECT_FAILURE_URL", "/failed"),
        ];
        let config = load(&all, &providers()).expect("complete");
        assert_eq!(config.keys.expect("keys").current_id(), "k1");
        assert!(!format!("{:?}", load(&all, &providers())).contains(STATE_KEY));
    }

    /// Bad keys, URLs and numbers are named; files are read.
    #[test]
    fn invalid_values() {
        let cases = [
            (("CONNECT_STATE_KEY", "c2hvcnQ="), "CONNECT_STATE_KEY"),
            (("CONNECT_KEYS", "k1:c2hvcnQ"), "CONNECT_KEYS"),
            (
                ("CONNECT_SUCCESS_URL", "javascript:alert(1)"),
                "CONNECT_SUCCESS_URL",
            ),
            (
                ("CONNECT_FAILURE_URL", "//evil.example"),
                "CONNECT_FAILURE_URL",
            ),
            (("CONNECT_STATE_TTL", "0"), "CONNECT_STATE_TTL"),
            (
                ("CONNECT_KEYS_FILE", "/nonexistent/keys"),
                "CONNECT_KEYS_FILE",
            ),
        ];
        for (pair, variable) in cases {
            let error = load(&[pair], &[]).unwrap_err();
            assert_eq!(error.variable, variable, "{error}");
        }
        let error = load(&[("CONNECT_KEYS", KEYS), ("CONNECT_KEYS_FILE", "/x")], &[]).unwrap_err();
        assert_eq!(error.variable, "CONNECT_KEYS");
        let path = std::env::temp_dir().join(format!("connect-keys-{}", std::process::id()));
        std::fs::write(&path, format!("{KEYS}\n")).expect("write");
        let config = load(&[("CONNECT_KEYS_FILE", path.to_str().expect("utf-8"))], &[])
            .expect("from a file");
        assert_eq!(config.keys.expect("keys").ids(), ["k1"]);
        let _ = std::fs::remove_file(path);
    }
}

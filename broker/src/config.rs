//! [`ConnectConfig`]: the broker's configuration, from the `CONNECT_*`
//! settings ([`crate::settings`]) and the `[[providers]]` tables
//! ([`crate::providers`]), validated at start-up. The authority's
//! configuration embeds it.
//!
//! With at least one provider configured, `CONNECT_STATE_KEY` (or
//! `CONNECT_STATE_KEY_FILE`), `CONNECT_KEYS` (or `CONNECT_KEYS_FILE`),
//! `CONNECT_SUCCESS_URL` and `CONNECT_FAILURE_URL` are required; with a
//! provider of a credentials kind, `CONNECT_KEYS` is.

use std::fmt;
use std::time::Duration;

use token_settings::{ConfigError, Setting, Values};
use zeroize::Zeroizing;

use crate::credentials::CredentialProvider;
use crate::crypto::{Keyring, decode_key_material};
use crate::providers::{self, ProviderConfig};
use crate::return_url::ReturnUrls;
use crate::settings::{
    CA_FILE, EXPIRING_MARGIN, FAILURE_URL, KEEPALIVE_INTERVAL, KEYS, KEYS_FILE,
    PROVIDER_TIMEOUT_MS, PROVIDERS_POLL_MS, RETURN_URLS, STATE_KEY, STATE_KEY_FILE, STATE_TTL,
    SUCCESS_URL,
};

/// The shortest state key accepted, in bytes.
pub const MIN_STATE_KEY_LEN: usize = 32;

/// Connected services: providers, keys, pages, timing.
#[derive(Clone, Default)]
pub struct ConnectConfig {
    /// The OAuth `[[providers]]` of the configuration file.
    pub providers: Vec<ProviderConfig>,
    /// Its `[[providers]]` of kind `password` or `api_key`
    /// ([`crate::credentials`]).
    pub credential_providers: Vec<CredentialProvider>,
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
    /// `CONNECT_EXPIRING_MARGIN`: a connection with less than this left
    /// (its refresh token, or its access token when it has no refresh
    /// token) is reported `expiring`.
    pub expiring_margin: Duration,
    /// `CONNECT_RETURN_URLS`: the return URLs `return_to` may name.
    pub return_urls: ReturnUrls,
    /// `CONNECT_PROVIDERS_POLL_MS`: how often a replica checks the
    /// providers added through the admin API.
    pub providers_poll: Duration,
    /// `CONNECT_CA_FILE`: CA certificates trusted for provider calls on
    /// top of the webpki roots (a private CA, a test provider).
    pub extra_roots: Vec<rustls_pki_types::CertificateDer<'static>>,
}

impl fmt::Debug for ConnectConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectConfig")
            .field("providers", &self.providers)
            .field("credential_providers", &self.credential_providers)
            .field("state_key", &self.state_key.as_ref().map(|_| "<set>"))
            .field("keys", &self.keys)
            .field("success_url", &self.success_url)
            .field("failure_url", &self.failure_url)
            .field("state_ttl", &self.state_ttl)
            .field("provider_timeout", &self.provider_timeout)
            .field("keepalive_interval", &self.keepalive_interval)
            .field("expiring_margin", &self.expiring_margin)
            .field("return_urls", &self.return_urls)
            .field("providers_poll", &self.providers_poll)
            .field("extra_roots", &self.extra_roots.len())
            .finish()
    }
}

/// Reads a value given directly (`direct`) or in a file (`file`, its
/// path); answers it and the setting it came from.
fn direct_or_file(
    values: &Values<'_>,
    direct: &Setting,
    file: &Setting,
) -> Result<Option<(Zeroizing<String>, &'static str)>, ConfigError> {
    let (name, file_variable) = (direct.name, file.name);
    match (values.get(name), values.get(file_variable)) {
        (Some(_), Some(_)) => Err(ConfigError::new(
            name,
            format!("set {name} or {file_variable}, not both"),
        )),
        (Some(value), None) => Ok(Some((Zeroizing::new(value.to_owned()), name))),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|text| Some((Zeroizing::new(text), file_variable)))
            .map_err(|error| {
                ConfigError::new(file_variable, format!("cannot read {path}: {error}"))
            }),
        (None, None) => Ok(None),
    }
}

/// `CONNECT_CA_FILE`: PEM certificates, each usable as a trust anchor.
fn extra_roots(
    values: &Values<'_>,
) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, ConfigError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;

    const NAME: &str = CA_FILE.name;
    let Some(path) = values.get(NAME) else {
        return Ok(Vec::new());
    };
    let pem = std::fs::read(path.trim())
        .map_err(|error| ConfigError::new(NAME, format!("cannot read {path}: {error}")))?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| ConfigError::new(NAME, format!("not PEM certificates: {error}")))?;
    if certificates.is_empty() {
        return Err(ConfigError::new(
            NAME,
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        ));
    }
    let mut store = rustls::RootCertStore::empty();
    let (_, rejected) = store.add_parsable_certificates(certificates.iter().cloned());
    if rejected > 0 {
        return Err(ConfigError::new(
            NAME,
            "holds a certificate that cannot be a trust anchor",
        ));
    }
    Ok(certificates)
}

/// A result page: an http(s):// URL or an absolute path.
fn page_url(values: &Values<'_>, setting: &Setting) -> Result<Option<String>, ConfigError> {
    match values.get(setting.name) {
        Some(url)
            if url.starts_with("http://")
                || url.starts_with("https://")
                || (url.starts_with('/') && !url.starts_with("//")) =>
        {
            Ok(Some(url.to_owned()))
        }
        Some(_) => Err(ConfigError::new(
            setting.name,
            "expected an http(s):// URL or an absolute path",
        )),
        None => Ok(None),
    }
}

impl ConnectConfig {
    /// Builds the broker's configuration from `values` (the `CONNECT_*`
    /// settings, and `CONNECT_PROVIDER_<NAME>_CLIENT_SECRET`) and the
    /// `[[providers]]` tables.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the variable or provider field.
    pub fn load(values: &Values<'_>, provider_tables: &[toml::Table]) -> Result<Self, ConfigError> {
        let providers::ProviderSet {
            oauth: providers,
            credentials: credential_providers,
        } = providers::parse_all(provider_tables, &|name| values.get(name).map(str::to_owned))?;
        let state_key = direct_or_file(values, &STATE_KEY, &STATE_KEY_FILE)?
            .map(|(text, variable)| {
                decode_key_material(&text)
                    .filter(|key| key.len() >= MIN_STATE_KEY_LEN)
                    .ok_or_else(|| {
                        ConfigError::new(
                            variable,
                            format!(
                                "expected at least {MIN_STATE_KEY_LEN} bytes in base64 \
                                 (for example `openssl rand -base64 32`)"
                            ),
                        )
                    })
            })
            .transpose()?;
        let keys = direct_or_file(values, &KEYS, &KEYS_FILE)?
            .map(|(text, variable)| {
                Keyring::parse(&text, variable)
                    .map_err(|error| ConfigError::new(variable, error.problem.to_string()))
            })
            .transpose()?;
        let config = Self {
            success_url: page_url(values, &SUCCESS_URL)?,
            failure_url: page_url(values, &FAILURE_URL)?,
            state_ttl: values.seconds(&STATE_TTL)?,
            provider_timeout: values.millis(&PROVIDER_TIMEOUT_MS)?,
            keepalive_interval: values.seconds(&KEEPALIVE_INTERVAL)?,
            expiring_margin: values.seconds(&EXPIRING_MARGIN)?,
            providers_poll: values.millis(&PROVIDERS_POLL_MS)?,
            return_urls: ReturnUrls::parse(values.get(RETURN_URLS.name).unwrap_or_default())
                .map_err(|problem| ConfigError::new(RETURN_URLS.name, problem))?,
            extra_roots: extra_roots(values)?,
            providers,
            credential_providers,
            state_key,
            keys,
        };
        // Credentials providers need the keys that seal what users store.
        if !config.credential_providers.is_empty() && config.keys.is_none() {
            return Err(ConfigError::new(
                KEYS.name,
                "required when providers are configured (see the README, Connected services)",
            ));
        }
        if !config.providers.is_empty() {
            let required = [
                (STATE_KEY.name, config.state_key.is_some()),
                (KEYS.name, config.keys.is_some()),
                (SUCCESS_URL.name, config.success_url.is_some()),
                (FAILURE_URL.name, config.failure_url.is_some()),
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
        providers::tables(
            "[[providers]]\nname = \"p\"\nissuer = \"https://x\"\nclient_id = \"c\"\nclient_secret = \"s\"\n",
        )
    }

    fn load(pairs: &[(&str, &str)], tables: &[toml::Table]) -> Result<ConnectConfig, ConfigError> {
        let values: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        ConnectConfig::load(&Values::new(&values), tables)
    }

    /// Without providers nothing is required; with providers every key and
    /// page is, and the error names the first missing variable.
    #[test]
    fn required_with_providers() {
        let none = load(&[], &[]).expect("nothing needed");
        assert!(none.providers.is_empty());
        assert_eq!(none.state_ttl, Duration::from_secs(600));
        assert_eq!(none.expiring_margin, Duration::from_secs(7 * 86_400));
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
        // Credentials providers alone need the sealing keys only.
        let webdav = providers::tables("[[providers]]\nname = \"webdav\"\nkind = \"password\"\n");
        assert_eq!(load(&[], &webdav).unwrap_err().variable, "CONNECT_KEYS");
        let config_webdav = load(&[("CONNECT_KEYS", KEYS)], &webdav).expect("keys suffice");
        assert_eq!(config_webdav.credential_providers.len(), 1);
        assert!(config_webdav.providers.is_empty());
        assert_eq!(config.keys.expect("keys").current_id(), "k1");
        assert!(!format!("{:?}", load(&all, &providers())).contains(STATE_KEY));
    }

    /// `CONNECT_CA_FILE`: an unreadable file or one without a PEM
    /// certificate is named; a CA file's certificates are kept.
    #[test]
    fn connect_ca_file() {
        let dir = std::env::temp_dir().join(format!("connect-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "no certificate here\n").expect("write");
        for path in ["/nonexistent/ca.pem", garbage.to_str().expect("utf-8")] {
            let error = load(&[("CONNECT_CA_FILE", path)], &[]).unwrap_err();
            assert_eq!(error.variable, "CONNECT_CA_FILE", "{path}");
        }
        let certificates =
            token_test_harness::TestCertificates::generate(&dir).expect("certificates");
        let config = load(
            &[(
                "CONNECT_CA_FILE",
                certificates.ca_cert.to_str().expect("utf-8"),
            )],
            &[],
        )
        .expect("valid");
        assert_eq!(config.extra_roots.len(), 1);
        assert!(load(&[], &[]).expect("valid").extra_roots.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
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
                ("CONNECT_RETURN_URLS", "https://app.example,//evil"),
                "CONNECT_RETURN_URLS",
            ),
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

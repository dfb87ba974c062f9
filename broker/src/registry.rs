//! The configured providers at run time ([`Registry`]), each with its
//! callback URL and its endpoints ([`Provider::endpoints`]).
//!
//! Discovery reads the OpenID Connect discovery document, or RFC 8414
//! authorization server metadata for a provider without one, and RFC 8414
//! metadata for a revocation endpoint the discovery document lacks (see
//! [`ProviderClient::discover_for`]).
//!
//! Explicit URLs override discovered ones (a revocation endpoint the
//! provider does not advertise, say). Discovery happens on first use and is
//! cached for the life of the process; a failed discovery is retried on the
//! next use, so a provider that is down at start-up does not stop the
//! authority. Discovered endpoints obey the rule of configured ones
//! (`https://`, see [`crate::providers`]).

use std::fmt;
use std::sync::Arc;

use reqwest::Url;
use tokio::sync::OnceCell;

use crate::credentials::CredentialProvider;
use crate::oauth_client::{ProviderClient, ProviderError};
use crate::providers::{Endpoints, ProviderConfig, plain_http_allowed};

/// A provider at run time: its configuration, callback URL and endpoints.
pub struct Provider {
    /// The configuration.
    pub config: ProviderConfig,
    /// The `redirect_uri` sent to it.
    pub redirect_uri: String,
    endpoints: OnceCell<Arc<Endpoints>>,
}

impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provider")
            .field("config", &self.config)
            .field("redirect_uri", &self.redirect_uri)
            .field("endpoints", &self.endpoints.get())
            .finish()
    }
}

fn url(text: &str) -> Result<Url, ProviderError> {
    Url::parse(text).map_err(|_| ProviderError::Invalid("an endpoint URL is not a URL"))
}

impl Provider {
    /// The provider of `config`, calling back to `default_redirect` unless
    /// it names its own `redirect_url`.
    #[must_use]
    pub fn new(config: ProviderConfig, default_redirect: &str) -> Self {
        Self {
            redirect_uri: config
                .redirect_url
                .clone()
                .unwrap_or_else(|| default_redirect.to_owned()),
            config,
            endpoints: OnceCell::new(),
        }
    }

    /// The provider's endpoints: explicit ones, over discovered ones when
    /// an issuer is configured (discovered once, on first use).
    ///
    /// # Errors
    ///
    /// [`ProviderError`] when discovery fails (retried on the next call).
    pub async fn endpoints(
        &self,
        client: &ProviderClient,
    ) -> Result<Arc<Endpoints>, ProviderError> {
        self.endpoints
            .get_or_try_init(|| async {
                let config = &self.config;
                let discovered = match &config.issuer {
                    Some(issuer) => Some(
                        client
                            .discover_for(issuer, config.revocation_url.is_none())
                            .await?,
                    ),
                    None => None,
                };
                let pick = |explicit: &Option<String>, found: Option<&String>| {
                    explicit
                        .as_ref()
                        .or(found)
                        .map(|text| url(text))
                        .transpose()
                };
                let authorization = pick(
                    &config.authorize_url,
                    discovered
                        .as_ref()
                        .and_then(|d| d.authorization_endpoint.as_ref()),
                )?
                .ok_or(ProviderError::Invalid("no authorization endpoint"))?;
                let token = pick(
                    &config.token_url,
                    discovered.as_ref().and_then(|d| d.token_endpoint.as_ref()),
                )?
                .ok_or(ProviderError::Invalid("no token endpoint"))?;
                let revocation = pick(
                    &config.revocation_url,
                    discovered
                        .as_ref()
                        .and_then(|d| d.revocation_endpoint.as_ref()),
                )?;
                let jwks = discovered
                    .as_ref()
                    .and_then(|d| d.jwks_uri.as_deref())
                    .map(url)
                    .transpose()?;
                // Discovered endpoints obey the rule of configured ones.
                for endpoint in [&authorization, &token]
                    .into_iter()
                    .chain(revocation.as_ref())
                    .chain(jwks.as_ref())
                {
                    match endpoint.scheme() {
                        "https" => {}
                        "http" if plain_http_allowed(endpoint, config.allow_insecure_http) => {}
                        _ => {
                            return Err(ProviderError::Invalid(
                                "an endpoint is not https:// (plain http:// only to a \
                                 loopback host, or with allow_insecure_http)",
                            ));
                        }
                    }
                }
                let endpoints = Endpoints {
                    authorization,
                    token,
                    revocation,
                    issuer: config.issuer.clone(),
                    iss_parameter_required: discovered
                        .as_ref()
                        .is_some_and(|d| d.authorization_response_iss_parameter_supported),
                    jwks,
                };
                tracing::info!(provider = %config.name, ?endpoints, "provider endpoints known");
                Ok(Arc::new(endpoints))
            })
            .await
            .cloned()
    }
}

/// Every provider, by name: the OAuth ones and those of a credentials
/// kind (names are unique across both), from the configuration file and
/// added through the admin API ([`crate::catalog`]). A registry is a
/// snapshot: [`crate::Connect`] swaps in a new one when the providers
/// change.
#[derive(Debug, Default)]
pub struct Registry {
    providers: Vec<Arc<Provider>>,
    credentials: Vec<CredentialProvider>,
    /// The names added through the API, with the stored text each was
    /// built from (an unchanged text keeps its [`Provider`], and with it
    /// the endpoints discovered).
    api: std::collections::BTreeMap<String, String>,
    /// API providers whose removal is under way.
    removing: Vec<String>,
}

/// Where a provider comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The configuration file: read-only through the API.
    File,
    /// The admin API (`/v1/admin/providers`).
    Api,
}

impl Origin {
    /// `file` or `api`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Api => "api",
        }
    }
}

impl Registry {
    /// The providers of `configs`; `default_redirect` is the authority's
    /// own callback URL.
    #[must_use]
    pub fn new(configs: &[ProviderConfig], default_redirect: &str) -> Self {
        Self {
            providers: configs
                .iter()
                .map(|config| Arc::new(Provider::new(config.clone(), default_redirect)))
                .collect(),
            ..Self::default()
        }
    }

    /// The same, with `credentials`: the providers of a credentials kind.
    #[must_use]
    pub fn with_credentials(mut self, credentials: &[CredentialProvider]) -> Self {
        self.credentials = credentials.to_vec();
        self
    }

    /// This registry's file providers (the API's left out), to which
    /// [`Self::add_api`] adds the API's.
    #[must_use]
    pub fn files_only(&self) -> Self {
        Self {
            providers: self
                .providers
                .iter()
                .filter(|provider| !self.api.contains_key(&provider.config.name))
                .cloned()
                .collect(),
            credentials: self
                .credentials
                .iter()
                .filter(|provider| !self.api.contains_key(&provider.name))
                .cloned()
                .collect(),
            ..Self::default()
        }
    }

    /// Adds a provider of the API, built from the stored `text`.
    pub fn add_api(&mut self, provider: ApiProvider, text: String) {
        match provider {
            ApiProvider::OAuth(provider) => {
                self.api.insert(provider.config.name.clone(), text);
                self.providers.push(provider);
            }
            ApiProvider::Credentials(provider) => {
                self.api.insert(provider.name.clone(), text);
                self.credentials.push(provider);
            }
        }
    }

    /// Marks `name` (an API provider) as being removed.
    pub fn add_removing(&mut self, name: String) {
        self.removing.push(name);
    }

    /// The API provider `name`, when it was built from `text` (to be kept
    /// as it is).
    #[must_use]
    pub fn unchanged_api(&self, name: &str, text: &str) -> Option<ApiProvider> {
        if self.api.get(name).map(String::as_str) != Some(text) {
            return None;
        }
        self.get(name)
            .map(|provider| ApiProvider::OAuth(Arc::clone(provider)))
            .or_else(|| self.credential(name).cloned().map(ApiProvider::Credentials))
    }

    /// Whether a provider called `name` exists (of any kind or origin).
    #[must_use]
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some() || self.credential(name).is_some()
    }

    /// Where provider `name` comes from (`None`: no such provider).
    #[must_use]
    pub fn origin(&self, name: &str) -> Option<Origin> {
        if self.api.contains_key(name) {
            Some(Origin::Api)
        } else if self.contains(name) {
            Some(Origin::File)
        } else {
            None
        }
    }

    /// API providers whose removal is under way.
    #[must_use]
    pub fn removing(&self) -> &[String] {
        &self.removing
    }

    /// The provider of a credentials kind called `name`.
    #[must_use]
    pub fn credential(&self, name: &str) -> Option<&CredentialProvider> {
        self.credentials
            .iter()
            .find(|provider| provider.name == name)
    }

    /// Every provider of a credentials kind: the file's in configuration
    /// order, then the API's by name.
    pub fn credentials(&self) -> impl Iterator<Item = &CredentialProvider> {
        self.credentials.iter()
    }

    /// The OAuth provider called `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&Arc<Provider>> {
        self.providers
            .iter()
            .find(|provider| provider.config.name == name)
    }

    /// All OAuth providers: the file's in configuration order, then the
    /// API's by name.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Provider>> {
        self.providers.iter()
    }

    /// Whether no OAuth provider is configured.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }
}

/// A provider added through the API, built.
#[derive(Debug, Clone)]
pub enum ApiProvider {
    /// An OAuth provider.
    OAuth(Arc<Provider>),
    /// A provider of a credentials kind.
    Credentials(CredentialProvider),
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::providers::{parse, tables};

    const GITHUB: &str = r#"
        [[providers]]
        name = "github"
        authorize_url = "https://github.com/login/oauth/authorize"
        token_url = "http://127.0.0.1:9/token"
        client_id = "gh"
        client_secret = "x"
    "#;

    /// Explicit endpoints need no discovery; the default callback URL is
    /// used unless the provider names its own.
    #[tokio::test]
    async fn explicit_endpoints() {
        let providers = parse(&tables(GITHUB), &|_| None).expect("valid");
        let registry = Registry::new(&providers, "http://auth.example/v1/connect/callback");
        let github = registry.get("github").expect("github");
        assert_eq!(
            github.redirect_uri,
            "http://auth.example/v1/connect/callback"
        );
        let client = ProviderClient::new(Duration::from_secs(1)).expect("client");
        let endpoints = github.endpoints(&client).await.expect("explicit");
        assert_eq!(endpoints.token.as_str(), "http://127.0.0.1:9/token");
        assert_eq!(endpoints.revocation, None);
        assert!(registry.get("nope").is_none());
    }
}

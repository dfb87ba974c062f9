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

/// Every configured provider, by name: the OAuth ones and those of a
/// credentials kind (names are unique across both).
#[derive(Debug)]
pub struct Registry {
    providers: Vec<Arc<Provider>>,
    credentials: Vec<CredentialProvider>,
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
            credentials: Vec::new(),
        }
    }

    /// The same, with `credentials`: the providers of a credentials kind.
    #[must_use]
    pub fn with_credentials(mut self, credentials: &[CredentialProvider]) -> Self {
        self.credentials = credentials.to_vec();
        self
    }

    /// The provider of a credentials kind called `name`.
    #[must_use]
    pub fn credential(&self, name: &str) -> Option<&CredentialProvider> {
        self.credentials
            .iter()
            .find(|provider| provider.name == name)
    }

    /// Every provider of a credentials kind, in configuration order.
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

    /// All providers, in configuration order.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Provider>> {
        self.providers.iter()
    }

    /// Whether no OAuth provider is configured.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }
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

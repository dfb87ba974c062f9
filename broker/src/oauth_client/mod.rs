//! The authority as an OAuth 2.0 client: OpenID Connect discovery with
//! RFC 8414 metadata as the fallback, the authorization-code exchange with
//! PKCE, refresh, and revocation (RFC 7009), over HTTP with bounded
//! timeouts.
//!
//! Every call has a total deadline (`CONNECT_PROVIDER_TIMEOUT_MS`) and a
//! bounded response size; redirects are not followed. Request bodies carry
//! secrets and are never logged; a provider error code is kept only when it
//! has the OAuth shape, `[a-z_]{1,64}` ([`error_code`]), before anyone sees
//! it.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Url;
use serde::Deserialize;
use zeroize::Zeroizing;

pub use self::token_response::TokenResponse;
use crate::providers::{AuthMethod, Endpoints, ProviderConfig};

mod token_response;

/// The largest provider response read (token responses are small).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Why a provider call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// No answer in time, connection refused, or a 5xx: transient.
    #[error("the provider is unreachable or failing: {0}")]
    Unavailable(String),
    /// The provider refused the request with an OAuth error code
    /// (`invalid_grant`, …).
    #[error("the provider refused the request: {error}")]
    Rejected {
        /// The OAuth error code (sanitised).
        error: String,
    },
    /// The answer was not what OAuth prescribes.
    #[error("the provider's answer is unusable: {0}")]
    Invalid(&'static str),
}

/// The code of a refusal whose answer had no usable OAuth error code.
const NO_CODE: &str = "invalid_response";

impl ProviderError {
    /// Whether the provider refused the grant itself (`invalid_grant`): the
    /// refresh token (or code) is dead and only the user can fix it.
    #[must_use]
    pub fn is_invalid_grant(&self) -> bool {
        matches!(self, Self::Rejected { error } if error == "invalid_grant")
    }

    /// The OAuth error code the provider refused with, when it sent a
    /// usable one (see [`error_code`]).
    #[must_use]
    pub fn provider_code(&self) -> Option<&str> {
        match self {
            Self::Rejected { error } if error != NO_CODE => Some(error),
            _ => None,
        }
    }
}

/// What OpenID Connect discovery or RFC 8414 authorization server
/// metadata says (the parts the authority uses; both documents name them
/// alike).
#[derive(Debug, Clone, Deserialize)]
pub struct Discovered {
    /// Must equal the configured issuer.
    pub issuer: String,
    /// The authorization endpoint (an explicit `authorize_url` may stand
    /// in for a missing one).
    pub authorization_endpoint: Option<String>,
    /// The token endpoint (likewise `token_url`).
    pub token_endpoint: Option<String>,
    /// The revocation endpoint, if any: from the discovery document, or
    /// from RFC 8414 metadata when only that publishes it.
    pub revocation_endpoint: Option<String>,
    /// Whether callbacks always carry `iss` (RFC 9207).
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
    /// PKCE methods; S256 is what the authority uses.
    #[serde(default)]
    pub code_challenge_methods_supported: Option<Vec<String>>,
    /// The JSON Web Key Set of its ID tokens (OpenID Connect discovery).
    #[serde(default)]
    pub jwks_uri: Option<String>,
}

/// Form-urlencoding for HTTP Basic credentials (RFC 6749 §2.3.1): all but
/// unreserved characters escaped.
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `code` when it has the shape of an OAuth error code (RFC 6749 §4.1.2.1,
/// §5.2 and their extensions: `invalid_scope`, `login_required`, …):
/// 1 to 64 of `[a-z_]`. Anything else (free text, markup, another
/// alphabet) is not passed on, logged or shown anywhere.
#[must_use]
pub fn error_code(code: &str) -> Option<&str> {
    (!code.is_empty()
        && code.len() <= 64
        && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
    .then_some(code)
}

/// The provider's error code, or `invalid_response` when it sent none of
/// the OAuth shape.
fn sanitize_code(code: &str) -> String {
    error_code(code).unwrap_or(NO_CODE).to_owned()
}

/// Where RFC 8414 metadata of `issuer` may be, in the order tried: the
/// well-known suffix between host and path (RFC 8414 §3.1), then, for an
/// issuer with a path, after it.
fn metadata_urls(issuer: &str) -> Result<Vec<Url>, ProviderError> {
    const SUFFIX: &str = "/.well-known/oauth-authorization-server";
    let mut url =
        Url::parse(issuer).map_err(|_| ProviderError::Invalid("the issuer is not a URL"))?;
    url.set_query(None);
    url.set_fragment(None);
    let path = url.path().trim_end_matches('/').to_owned();
    let mut inserted = url.clone();
    inserted.set_path(&format!("{SUFFIX}{path}"));
    let mut urls = vec![inserted];
    if !path.is_empty() {
        url.set_path(&format!("{path}{SUFFIX}"));
        urls.push(url);
    }
    Ok(urls)
}

/// HTTP calls to providers.
#[derive(Debug, Clone)]
pub struct ProviderClient {
    http: reqwest::Client,
}

/// Why the HTTP client for providers could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    /// The TLS configuration was refused.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// reqwest could not build the client.
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// The TLS configuration for provider calls: rustls with ring, trusting
/// the webpki roots (Mozilla's CA list, compiled in: the image needs no CA
/// bundle) and `extra_roots` (`CONNECT_CA_FILE`).
///
/// # Errors
///
/// [`ClientBuildError::Tls`] when rustls refuses the protocol versions.
pub fn tls_config(
    extra_roots: &[rustls_pki_types::CertificateDer<'static>],
) -> Result<rustls::ClientConfig, ClientBuildError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    roots.add_parsable_certificates(extra_roots.iter().cloned());
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl ProviderClient {
    /// A client whose calls each finish within `timeout`, trusting the
    /// webpki roots.
    ///
    /// # Errors
    ///
    /// When the HTTP client cannot be built.
    pub fn new(timeout: Duration) -> Result<Self, ClientBuildError> {
        Self::with_roots(timeout, &[])
    }

    /// A client whose calls each finish within `timeout`, trusting the
    /// webpki roots and `extra_roots` (`CONNECT_CA_FILE`).
    ///
    /// # Errors
    ///
    /// When the HTTP client cannot be built.
    pub fn with_roots(
        timeout: Duration,
        extra_roots: &[rustls_pki_types::CertificateDer<'static>],
    ) -> Result<Self, ClientBuildError> {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config(extra_roots)?)
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("token-authority/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { http })
    }

    /// Sends `request` and reads at most [`MAX_RESPONSE_BYTES`] of the
    /// answer.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(u16, Zeroizing<Vec<u8>>), ProviderError> {
        let mut response = request.send().await.map_err(|error| {
            // Without the URL: it may carry query parameters.
            ProviderError::Unavailable(error.without_url().to_string())
        })?;
        let status = response.status().as_u16();
        let mut body = Zeroizing::new(Vec::new());
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| ProviderError::Unavailable(error.without_url().to_string()))?
        {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(ProviderError::Invalid("the response is too large"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
    }

    /// Fetches `issuer`'s OpenID Connect discovery document, with RFC 8414
    /// metadata as the fallback (see [`Self::discover_for`]); also looks
    /// for a revocation endpoint the discovery document lacks.
    ///
    /// # Errors
    ///
    /// [`ProviderError`] when neither can be fetched or one does not fit.
    pub async fn discover(&self, issuer: &str) -> Result<Discovered, ProviderError> {
        self.discover_for(issuer, true).await
    }

    /// Fetches `issuer`'s OpenID Connect discovery document
    /// (`/.well-known/openid-configuration`) and checks that it names the
    /// same issuer (OpenID Connect Discovery §4.3). A provider that
    /// publishes none (a 4xx) is read from its RFC 8414 authorization
    /// server metadata instead. When the discovery document has no
    /// `revocation_endpoint` and `want_revocation` (no explicit
    /// `revocation_url`), RFC 8414 metadata is read for one: many
    /// providers (Django OAuth Toolkit among them) publish it only there.
    ///
    /// # Errors
    ///
    /// [`ProviderError::Unavailable`] when a document could not be fetched
    /// for now (retried on the next use), [`ProviderError::Invalid`] when
    /// neither is published or one does not fit.
    pub async fn discover_for(
        &self,
        issuer: &str,
        want_revocation: bool,
    ) -> Result<Discovered, ProviderError> {
        let discovery = format!("{issuer}/.well-known/openid-configuration");
        let discovered = match self.metadata(issuer, &discovery).await? {
            Some(mut discovered) => {
                if want_revocation && discovered.revocation_endpoint.is_none() {
                    match self.authorization_server_metadata(issuer).await {
                        Ok(Some(metadata)) => {
                            if metadata.revocation_endpoint.is_some() {
                                tracing::info!(%issuer, "revocation endpoint from RFC 8414 metadata");
                            }
                            discovered.revocation_endpoint = metadata.revocation_endpoint;
                        }
                        Ok(None) => {}
                        // Not for now: discovery is retried on next use.
                        Err(error @ ProviderError::Unavailable(_)) => return Err(error),
                        Err(error) => {
                            tracing::warn!(%issuer, %error, "RFC 8414 metadata unusable; no revocation endpoint");
                        }
                    }
                }
                discovered
            }
            None => self.authorization_server_metadata(issuer).await?.ok_or(
                ProviderError::Invalid(
                    "the issuer publishes neither OpenID Connect discovery nor RFC 8414 metadata",
                ),
            )?,
        };
        if discovered
            .code_challenge_methods_supported
            .as_ref()
            .is_some_and(|methods| !methods.iter().any(|method| method == "S256"))
        {
            tracing::warn!(%issuer, "the provider does not advertise PKCE S256; sending it anyway");
        }
        Ok(discovered)
    }

    /// `issuer`'s RFC 8414 authorization server metadata: at
    /// `/.well-known/oauth-authorization-server` inserted between the host
    /// and the issuer's path (RFC 8414 §3.1), then, for an issuer with a
    /// path, appended to it (where Keycloak, for one, serves it). `None`
    /// when neither is published.
    ///
    /// # Errors
    ///
    /// [`ProviderError`] when it cannot be fetched for now or does not fit.
    pub async fn authorization_server_metadata(
        &self,
        issuer: &str,
    ) -> Result<Option<Discovered>, ProviderError> {
        for url in metadata_urls(issuer)? {
            if let Some(found) = self.metadata(issuer, url.as_str()).await? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// A metadata document at `url` that must name `issuer` (OpenID
    /// Connect Discovery §4.3, RFC 8414 §3.3); `None` when the server
    /// answers that there is none (a 4xx).
    async fn metadata(&self, issuer: &str, url: &str) -> Result<Option<Discovered>, ProviderError> {
        let (status, body) = self
            .send(self.http.get(url).header("accept", "application/json"))
            .await?;
        if status >= 500 || status == 429 {
            return Err(ProviderError::Unavailable(format!(
                "a metadata document answered {status}"
            )));
        }
        if status != 200 {
            return Ok(None);
        }
        let discovered: Discovered = serde_json::from_slice(&body)
            .map_err(|_| ProviderError::Invalid("a metadata document is not valid"))?;
        if discovered.issuer.trim_end_matches('/') != issuer {
            return Err(ProviderError::Invalid(
                "a metadata document names another issuer",
            ));
        }
        Ok(Some(discovered))
    }

    /// A POST to the token endpoint with client authentication.
    fn token_request(
        &self,
        provider: &ProviderConfig,
        url: &Url,
        mut form: Vec<(&'static str, String)>,
    ) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .post(url.clone())
            .header("accept", "application/json");
        match provider.auth_method {
            AuthMethod::ClientSecretBasic => {
                let credentials = Zeroizing::new(format!(
                    "{}:{}",
                    utf8_percent_encode(&provider.client_id, FORM),
                    utf8_percent_encode(&provider.client_secret, FORM)
                ));
                let header = Zeroizing::new(format!("Basic {}", STANDARD.encode(&*credentials)));
                request = request.header("authorization", header.as_str());
            }
            AuthMethod::ClientSecretPost => {
                form.push(("client_id", provider.client_id.clone()));
                form.push(("client_secret", provider.client_secret.to_string()));
            }
            AuthMethod::None => form.push(("client_id", provider.client_id.clone())),
        }
        let request = request.form(&form);
        for (_, value) in &mut form {
            zeroize::Zeroize::zeroize(value);
        }
        request
    }

    /// `GET url` (JSON), its status and at most [`MAX_RESPONSE_BYTES`]
    /// of its body (a provider's key set, [`crate::id_token`]).
    pub(crate) async fn get_json(
        &self,
        url: &Url,
    ) -> Result<(u16, Zeroizing<Vec<u8>>), ProviderError> {
        self.send(
            self.http
                .get(url.clone())
                .header("accept", "application/json"),
        )
        .await
    }

    /// Exchanges an authorization code (RFC 6749 §4.1.3, RFC 7636 §4.5).
    ///
    /// # Errors
    ///
    /// [`ProviderError`].
    pub async fn exchange_code(
        &self,
        provider: &ProviderConfig,
        endpoints: &Endpoints,
        redirect_uri: &str,
        code: &str,
        verifier: &str,
    ) -> Result<TokenResponse, ProviderError> {
        let form = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.to_owned()),
            ("redirect_uri", redirect_uri.to_owned()),
            ("code_verifier", verifier.to_owned()),
        ];
        let (status, body) = self
            .send(self.token_request(provider, &endpoints.token, form))
            .await?;
        token_response::read(status, &body)
    }

    /// Refreshes (RFC 6749 §6).
    ///
    /// # Errors
    ///
    /// [`ProviderError`]; `invalid_grant` when the refresh token is dead.
    pub async fn refresh(
        &self,
        provider: &ProviderConfig,
        endpoints: &Endpoints,
        refresh_token: &str,
    ) -> Result<TokenResponse, ProviderError> {
        let form = vec![
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", refresh_token.to_owned()),
        ];
        let (status, body) = self
            .send(self.token_request(provider, &endpoints.token, form))
            .await?;
        token_response::read(status, &body)
    }

    /// Revokes `token` (RFC 7009) at `url`.
    ///
    /// # Errors
    ///
    /// [`ProviderError`] unless the provider answers 200.
    pub async fn revoke(
        &self,
        provider: &ProviderConfig,
        url: &Url,
        token: &str,
        hint: &'static str,
    ) -> Result<(), ProviderError> {
        let form = vec![
            ("token", token.to_owned()),
            ("token_type_hint", hint.to_owned()),
        ];
        let (status, body) = self.send(self.token_request(provider, url, form)).await?;
        match status {
            200 => Ok(()),
            500.. | 429 => Err(ProviderError::Unavailable(format!(
                "the revocation endpoint answered {status}"
            ))),
            _ => Err(ProviderError::Rejected {
                error: serde_json::from_slice::<token_response::RawError>(&body)
                    .ok()
                    .and_then(|raw| raw.error)
                    .map_or_else(
                        || "invalid_response".to_owned(),
                        |code| sanitize_code(&code),
                    ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Token answers: numbers or strings for expires_in, missing refresh
    /// tokens, OAuth errors by code, 5xx as unavailable.
    #[test]
    fn token_answers() {
        let ok = token_response::read(
            200,
            br#"{"access_token":"a","token_type":"bearer","expires_in":"30","scope":"x"}"#,
        )
        .expect("ok");
        assert_eq!(ok.access_token.as_str(), "a");
        assert_eq!(ok.expires_in, Some(30));
        assert!(ok.refresh_token.is_none());
        let ok = token_response::read(
            200,
            br#"{"access_token":"a","expires_in":29.9,"refresh_token":"r"}"#,
        )
        .expect("ok");
        assert_eq!(ok.expires_in, Some(29));
        assert_eq!(ok.token_type, "Bearer");
        assert_eq!(ok.refresh_expires_in, None);
        // Keycloak: the refresh token's lifetime; 0 for an offline token
        // without a maximum (unknown, not "expired").
        let keycloak = token_response::read(
            200,
            br#"{"access_token":"a","refresh_token":"r","refresh_expires_in":1800}"#,
        )
        .expect("ok");
        assert_eq!(keycloak.refresh_expires_in, Some(1800));
        let offline = token_response::read(
            200,
            br#"{"access_token":"a","refresh_token":"r","refresh_expires_in":0}"#,
        )
        .expect("ok");
        assert_eq!(offline.refresh_expires_in, None);
        let rejected = token_response::read(400, br#"{"error":"invalid_grant"}"#).unwrap_err();
        assert!(rejected.is_invalid_grant());
        assert_eq!(rejected.provider_code(), Some("invalid_grant"));
        let odd = token_response::read(401, br#"{"error":"<script>Bad"}"#).unwrap_err();
        assert_eq!(
            odd,
            ProviderError::Rejected {
                error: "invalid_response".into()
            }
        );
        assert_eq!(odd.provider_code(), None, "not the provider's code");
        assert!(matches!(
            token_response::read(502, b"").unwrap_err(),
            ProviderError::Unavailable(_)
        ));
        assert!(matches!(
            token_response::read(200, br#"{"token_type":"Bearer"}"#).unwrap_err(),
            ProviderError::Invalid(_)
        ));
    }

    /// Debug output of a token answer shows no token.
    #[test]
    fn debug_hides_tokens() {
        let answer = token_response::read(
            200,
            br#"{"access_token":"secret-a","refresh_token":"secret-r"}"#,
        )
        .expect("ok");
        assert!(!format!("{answer:?}").contains("secret"));
    }

    /// A provider that accepts the connection and never answers fails
    /// within the timeout, as unavailable: a call never hangs.
    #[tokio::test]
    async fn silent_provider_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let holder = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let client = ProviderClient::new(Duration::from_millis(300)).expect("client");
        let started = std::time::Instant::now();
        let error = client
            .discover(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_err();
        assert!(matches!(error, ProviderError::Unavailable(_)), "{error}");
        assert!(started.elapsed() < Duration::from_secs(3));
        holder.abort();
    }

    /// RFC 8414 metadata is looked for where §3.1 puts it, then, for an
    /// issuer with a path, where Keycloak and others serve it.
    #[test]
    fn metadata_locations() {
        let urls = |issuer: &str| -> Vec<String> {
            metadata_urls(issuer)
                .expect("URL")
                .into_iter()
                .map(String::from)
                .collect()
        };
        assert_eq!(
            urls("https://idp.example"),
            ["https://idp.example/.well-known/oauth-authorization-server"]
        );
        assert_eq!(
            urls("https://idp.example:8443/realms/rds"),
            [
                "https://idp.example:8443/.well-known/oauth-authorization-server/realms/rds",
                "https://idp.example:8443/realms/rds/.well-known/oauth-authorization-server",
            ]
        );
        assert!(metadata_urls("not a url").is_err());
    }

    /// OAuth error codes are passed on only in their own shape.
    #[test]
    fn error_codes() {
        for good in ["invalid_scope", "access_denied", "login_required", "x"] {
            assert_eq!(error_code(good), Some(good));
        }
        for bad in ["", "Invalid", "invalid scope", "a-b", "é", &"a".repeat(65)] {
            assert_eq!(error_code(bad), None, "{bad:?}");
        }
        assert_eq!(error_code(&"a".repeat(64)).map(str::len), Some(64));
    }

    /// An unreachable provider fails within the timeout, as unavailable.
    #[tokio::test]
    async fn unreachable_is_unavailable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let client = ProviderClient::new(Duration::from_millis(500)).expect("client");
        let error = client
            .discover(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_err();
        assert!(matches!(error, ProviderError::Unavailable(_)), "{error}");
    }
}

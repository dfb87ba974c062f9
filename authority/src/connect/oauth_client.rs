//! The authority as an OAuth 2.0 client: OpenID Connect discovery, the
//! authorization-code exchange with PKCE, refresh, and revocation (RFC
//! 7009), over HTTP with bounded timeouts.
//!
//! Every call has a total deadline (`CONNECT_PROVIDER_TIMEOUT_MS`) and a
//! bounded response size; redirects are not followed. Request bodies carry
//! secrets and are never logged; provider error codes are reduced to
//! `[a-z_]` before anyone sees them.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Url;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::providers::{AuthMethod, Endpoints, ProviderConfig};

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

impl ProviderError {
    /// Whether the provider refused the grant itself (`invalid_grant`): the
    /// refresh token (or code) is dead and only the user can fix it.
    #[must_use]
    pub fn is_invalid_grant(&self) -> bool {
        matches!(self, Self::Rejected { error } if error == "invalid_grant")
    }
}

/// A token endpoint answer (RFC 6749 §5.1).
pub struct TokenResponse {
    /// The access token.
    pub access_token: Zeroizing<String>,
    /// Its type (`Bearer`).
    pub token_type: String,
    /// Its lifetime, if the provider said.
    pub expires_in: Option<u64>,
    /// A (new) refresh token, if any.
    pub refresh_token: Option<Zeroizing<String>>,
    /// The granted scope, if the provider said.
    pub scope: Option<String>,
    /// The `sub` of the ID token, when the provider sent one (OpenID
    /// Connect). Read from the token endpoint's own TLS answer (OpenID
    /// Connect Core §3.1.3.7 lets the code flow skip the signature), and
    /// only used to tell provider accounts apart.
    pub id_token_subject: Option<String>,
}

/// The `sub` claim of a JWT's payload, without checking the signature.
fn jwt_subject(jwt: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&json).ok()?;
    claims["sub"]
        .as_str()
        .filter(|sub| !sub.is_empty() && sub.len() <= 255)
        .map(str::to_owned)
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("has_refresh_token", &self.refresh_token.is_some())
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Seconds {
    Number(u64),
    Float(f64),
    Text(String),
}

impl Seconds {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn value(&self) -> Option<u64> {
        match self {
            Self::Number(n) => Some(*n),
            Self::Float(f) if f.is_finite() && *f >= 0.0 => Some(f.trunc() as u64),
            Self::Float(_) => None,
            Self::Text(text) => text.trim().parse().ok(),
        }
    }
}

#[derive(Deserialize)]
struct RawTokenResponse {
    access_token: Option<String>,
    token_type: Option<String>,
    expires_in: Option<Seconds>,
    refresh_token: Option<String>,
    scope: Option<String>,
    id_token: Option<String>,
}

#[derive(Deserialize)]
struct RawError {
    error: Option<String>,
}

/// What OpenID Connect discovery says (the parts the authority uses).
#[derive(Debug, Clone, Deserialize)]
pub struct Discovered {
    /// Must equal the configured issuer.
    pub issuer: String,
    /// The authorization endpoint.
    pub authorization_endpoint: String,
    /// The token endpoint.
    pub token_endpoint: String,
    /// The revocation endpoint, if any.
    pub revocation_endpoint: Option<String>,
    /// Whether callbacks always carry `iss` (RFC 9207).
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
    /// PKCE methods; S256 is what the authority uses.
    #[serde(default)]
    pub code_challenge_methods_supported: Option<Vec<String>>,
}

/// Form-urlencoding for HTTP Basic credentials (RFC 6749 §2.3.1): all but
/// unreserved characters escaped.
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Keeps an OAuth error code readable and harmless: `[a-z_]`, 64 at most.
fn sanitize_code(code: &str) -> String {
    let clean: String = code
        .chars()
        .filter(|c| c.is_ascii_lowercase() || *c == '_')
        .take(64)
        .collect();
    if clean.is_empty() {
        "invalid_response".to_owned()
    } else {
        clean
    }
}

/// HTTP calls to providers.
#[derive(Debug, Clone)]
pub struct ProviderClient {
    http: reqwest::Client,
}

impl ProviderClient {
    /// A client whose calls each finish within `timeout`.
    ///
    /// # Errors
    ///
    /// When the HTTP client cannot be built.
    pub fn new(timeout: Duration) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
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

    /// Fetches `issuer`'s OpenID Connect discovery document and checks that
    /// it names the same issuer (OpenID Connect Discovery §4.3).
    ///
    /// # Errors
    ///
    /// [`ProviderError`] when it cannot be fetched or does not fit.
    pub async fn discover(&self, issuer: &str) -> Result<Discovered, ProviderError> {
        let url = format!("{issuer}/.well-known/openid-configuration");
        let (status, body) = self
            .send(self.http.get(url).header("accept", "application/json"))
            .await?;
        if status >= 500 {
            return Err(ProviderError::Unavailable(format!(
                "discovery answered {status}"
            )));
        }
        if status != 200 {
            return Err(ProviderError::Invalid(
                "the discovery document could not be fetched",
            ));
        }
        let discovered: Discovered = serde_json::from_slice(&body)
            .map_err(|_| ProviderError::Invalid("the discovery document is not valid"))?;
        if discovered.issuer.trim_end_matches('/') != issuer {
            return Err(ProviderError::Invalid(
                "the discovery document names another issuer",
            ));
        }
        if discovered
            .code_challenge_methods_supported
            .as_ref()
            .is_some_and(|methods| !methods.iter().any(|method| method == "S256"))
        {
            tracing::warn!(%issuer, "the provider does not advertise PKCE S256; sending it anyway");
        }
        Ok(discovered)
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

    /// Reads a token endpoint answer: 200 with an access token, or an
    /// OAuth error.
    fn token_answer(status: u16, body: &[u8]) -> Result<TokenResponse, ProviderError> {
        if status >= 500 || status == 429 {
            return Err(ProviderError::Unavailable(format!(
                "the token endpoint answered {status}"
            )));
        }
        if status != 200 {
            let error = serde_json::from_slice::<RawError>(body)
                .ok()
                .and_then(|raw| raw.error)
                .map_or_else(
                    || "invalid_response".to_owned(),
                    |code| sanitize_code(&code),
                );
            return Err(ProviderError::Rejected { error });
        }
        let raw: RawTokenResponse = serde_json::from_slice(body)
            .map_err(|_| ProviderError::Invalid("the token response is not JSON"))?;
        let access_token = raw
            .access_token
            .filter(|token| !token.is_empty())
            .map(Zeroizing::new)
            .ok_or(ProviderError::Invalid(
                "the token response has no access_token",
            ))?;
        Ok(TokenResponse {
            access_token,
            token_type: raw.token_type.unwrap_or_else(|| "Bearer".to_owned()),
            expires_in: raw.expires_in.as_ref().and_then(Seconds::value),
            refresh_token: raw
                .refresh_token
                .filter(|token| !token.is_empty())
                .map(Zeroizing::new),
            scope: raw.scope,
            id_token_subject: raw.id_token.as_deref().and_then(jwt_subject),
        })
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
        Self::token_answer(status, &body)
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
        Self::token_answer(status, &body)
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
                error: serde_json::from_slice::<RawError>(&body)
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
        let ok = ProviderClient::token_answer(
            200,
            br#"{"access_token":"a","token_type":"bearer","expires_in":"30","scope":"x"}"#,
        )
        .expect("ok");
        assert_eq!(ok.access_token.as_str(), "a");
        assert_eq!(ok.expires_in, Some(30));
        assert!(ok.refresh_token.is_none());
        let ok = ProviderClient::token_answer(
            200,
            br#"{"access_token":"a","expires_in":29.9,"refresh_token":"r"}"#,
        )
        .expect("ok");
        assert_eq!(ok.expires_in, Some(29));
        assert_eq!(ok.token_type, "Bearer");
        let rejected =
            ProviderClient::token_answer(400, br#"{"error":"invalid_grant"}"#).unwrap_err();
        assert!(rejected.is_invalid_grant());
        let odd = ProviderClient::token_answer(401, br#"{"error":"<script>Bad"}"#).unwrap_err();
        assert_eq!(
            odd,
            ProviderError::Rejected {
                error: "scriptad".into()
            }
        );
        assert!(matches!(
            ProviderClient::token_answer(502, b"").unwrap_err(),
            ProviderError::Unavailable(_)
        ));
        assert!(matches!(
            ProviderClient::token_answer(200, br#"{"token_type":"Bearer"}"#).unwrap_err(),
            ProviderError::Invalid(_)
        ));
    }

    /// Debug output of a token answer shows no token.
    #[test]
    fn debug_hides_tokens() {
        let answer = ProviderClient::token_answer(
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

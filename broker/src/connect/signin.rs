//! Sign-in with a provider (federated sign-in): the authority is the
//! OpenID Connect relying party. The flow is the connect flow's
//! (authorization code, PKCE S256, a signed single-use state) plus a
//! `nonce` derived from the state, and the ID token verified
//! ([`crate::id_token`]). The state carries no user: it is bound to the
//! browser that started the flow (the digest of a cookie the authority set
//! there), so a callback URL sent to someone else signs nobody in (login
//! CSRF). What to do with the verified identity (find or create the
//! account, start the browser session) is the authority's part.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use token_repository::Timestamp;

use super::Connect;
use crate::callback::{Callback, Failure, Refusal};
use crate::error::ConnectError;
use crate::id_token::{self, Expected, IdClaims, IdTokenError};
use crate::login::LoginConfig;
use crate::metrics;
use crate::oauth_client::{self, ProviderError, TokenResponse};
use crate::state::{Binding, LoginClaims, StateError};

/// One "Sign in with …" button of the sign-in page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginButton {
    /// The provider's configured name.
    pub provider: String,
    /// Its display name.
    pub display_name: String,
    /// The login option's name, when the provider has options.
    pub option: Option<String>,
    /// The provider's logo.
    pub logo_url: Option<String>,
}

/// A verified sign-in: who the provider says signed in.
pub struct SignedIn {
    /// The provider's configured name.
    pub provider: String,
    /// The provider's issuer (with `identity.subject`, the account's key).
    pub issuer: String,
    /// The ID token's verified claims.
    pub identity: IdClaims,
    /// The provider's sign-in settings (provisioning, scopes).
    pub login: LoginConfig,
    /// The local path the browser returns to.
    pub return_to: String,
    tokens: TokenResponse,
}

impl fmt::Debug for SignedIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedIn")
            .field("provider", &self.provider)
            .field("issuer", &self.issuer)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// Whether `state` is a sign-in's state, by its form only (the signature
/// is checked by [`Connect::complete_signin`]).
fn looks_like_signin(state: &str) -> bool {
    state
        .split_once('.')
        .and_then(|(payload, _)| URL_SAFE_NO_PAD.decode(payload).ok())
        .and_then(|json| serde_json::from_slice::<serde_json::Value>(&json).ok())
        .is_some_and(|claims| claims.get("l").is_some_and(serde_json::Value::is_object))
}

impl Connect {
    /// The sign-in page's buttons: one per enabled provider with
    /// `login = true`, or one per login option of it.
    #[must_use]
    pub fn login_buttons(&self) -> Vec<LoginButton> {
        let mut buttons = Vec::new();
        for provider in self.registry().all() {
            let config = &provider.config;
            let Some(login) = config.login.as_ref().filter(|_| config.enabled) else {
                continue;
            };
            let button = |option: Option<String>| LoginButton {
                provider: config.name.clone(),
                display_name: config.display_name.clone(),
                option,
                logo_url: config.logo_url.clone(),
            };
            if login.options.is_empty() {
                buttons.push(button(None));
            }
            for option in &login.options {
                buttons.push(button(Some(option.name.clone())));
            }
        }
        buttons
    }

    /// Whether the callback's `state` belongs to a sign-in (then
    /// [`Self::complete_signin`] takes it, not [`Self::complete`]).
    #[must_use]
    pub fn is_signin_state(&self, state: Option<&str>) -> bool {
        state.is_some_and(looks_like_signin)
    }

    /// The provider's authorization URL for a sign-in with `option` (by
    /// name; `None` for a provider without options), bound to `browser`
    /// (the digest of the sign-in cookie), returning to `return_to` (a
    /// local path, already checked).
    ///
    /// # Errors
    ///
    /// [`ConnectError::UnknownProvider`] for a provider that is unknown,
    /// disabled, not for sign-in, or has no such option; the provider
    /// unreachable; not configured.
    pub async fn start_signin(
        &self,
        provider: &str,
        option: Option<&str>,
        browser: &str,
        return_to: &str,
    ) -> Result<String, ConnectError> {
        let provider = self.provider(provider)?;
        let config = &provider.config;
        let login = config
            .login
            .as_ref()
            .filter(|_| config.enabled)
            .ok_or(ConnectError::UnknownProvider)?;
        let option = login.option(option).ok_or(ConnectError::UnknownProvider)?;
        let endpoints = self.endpoints(&provider).await?;
        let signer = self
            .inner
            .signer
            .as_ref()
            .ok_or(ConnectError::NotConfigured)?;
        let claims = LoginClaims {
            option: option.map(|option| option.name.clone()),
            return_to: return_to.to_owned(),
        };
        let now = Timestamp::now();
        let binding = Binding {
            browser: Some(browser),
            login: Some(&claims),
            ..Binding::default()
        };
        let issued = signer
            .issue_bound("", "", &config.name, now, binding)
            .map_err(|error| ConnectError::Internal(format!("random generator: {error}")))?;
        let nonce = signer
            .verify(&issued.state, now)
            .map(|claims| signer.oidc_nonce(&claims.nonce))
            .map_err(|error| ConnectError::Internal(format!("a fresh state: {error}")))?;
        let mut scopes = config.scopes.clone();
        if !scopes.iter().any(|scope| scope == "openid") {
            scopes.insert(0, "openid".to_owned());
        }
        // The option's parameters win over the provider's.
        let mut extra: BTreeMap<&str, &str> = config
            .authorize_params
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        if let Some(option) = option {
            extra.extend(
                option
                    .params
                    .iter()
                    .map(|(name, value)| (name.as_str(), value.as_str())),
            );
        }
        let mut url = endpoints.authorization.clone();
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &config.client_id)
                .append_pair("redirect_uri", &provider.redirect_uri)
                .append_pair("scope", &scopes.join(" "))
                .append_pair("state", &issued.state)
                .append_pair("code_challenge", &issued.code_challenge)
                .append_pair("code_challenge_method", "S256")
                .append_pair("nonce", &nonce);
            for (name, value) in extra {
                query.append_pair(name, value);
            }
        }
        Ok(url.into())
    }

    /// Completes a sign-in from the provider's redirect: the state
    /// (signature, expiry, bound to this browser, single use), the
    /// provider's answer and `iss`, the code exchange, and the ID token
    /// (signature, `iss`, `aud`, `exp`, `nonce`). Nothing is stored.
    ///
    /// # Errors
    ///
    /// The [`Refusal`] (as for a connection; [`Failure::InvalidIdToken`]
    /// for an ID token that is missing or does not verify).
    pub async fn complete_signin(&self, callback: &Callback) -> Result<SignedIn, Refusal> {
        let outcome = self.complete_signin_inner(callback).await;
        match &outcome {
            Ok(signed_in) => metrics::signin_callback(&signed_in.provider, "signed_in"),
            Err(refusal) => metrics::signin_callback(
                refusal.provider.as_deref().unwrap_or("-"),
                refusal.failure.code(),
            ),
        }
        outcome
    }

    async fn complete_signin_inner(&self, callback: &Callback) -> Result<SignedIn, Refusal> {
        let Some(signer) = &self.inner.signer else {
            return Err(Refusal::new(Failure::InvalidState, None));
        };
        let now = Timestamp::now();
        let claims = match callback.state.as_deref().map(|s| signer.verify(s, now)) {
            Some(Ok(claims)) => claims,
            Some(Err(StateError::Expired)) => {
                return Err(Refusal::new(Failure::ExpiredState, None));
            }
            Some(Err(error)) => {
                tracing::warn!(%error, "sign-in callback with an invalid state");
                return Err(Refusal::new(Failure::InvalidState, None));
            }
            None => return Err(Refusal::new(Failure::InvalidState, None)),
        };
        let (Some(login), Some(provider)) = (
            claims.login.clone(),
            self.registry().get(&claims.provider).cloned(),
        ) else {
            return Err(Refusal::new(Failure::InvalidState, None));
        };
        let name = claims.provider.clone();
        let fail = |failure: Failure| Refusal::new(failure, Some(name.clone()));
        let bound = match (&claims.browser, &callback.browser) {
            (Some(expected), Some(presented)) => bool::from(subtle::ConstantTimeEq::ct_eq(
                expected.as_bytes(),
                presented.as_bytes(),
            )),
            _ => false,
        };
        if !bound {
            tracing::warn!(provider = %name, "sign-in state presented by another browser; refused");
            return Err(fail(Failure::SessionMismatch));
        }
        match self
            .inner
            .store
            .use_state(&claims.nonce, claims.remaining(now))
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(provider = %name, "sign-in state replayed; refused");
                return Err(fail(Failure::ReplayedState));
            }
            Err(error) => {
                tracing::warn!(%error, "cannot mark the sign-in state as used");
                return Err(fail(Failure::ServerError));
            }
        }
        if let Some(error) = &callback.error {
            let code = oauth_client::error_code(error);
            tracing::info!(provider = %name, error = %code.unwrap_or("-"), "the provider refused the sign-in");
            return Err(if code == Some("access_denied") {
                fail(Failure::AccessDenied)
            } else {
                fail(Failure::ProviderError).with_error(code)
            });
        }
        let config = &provider.config;
        let Some(login_config) = config.login.clone().filter(|_| config.enabled) else {
            return Err(fail(Failure::ProviderDisabled));
        };
        let endpoints = self.endpoints(&provider).await.map_err(|error| {
            tracing::warn!(provider = %name, %error, "provider unavailable at the sign-in callback");
            fail(Failure::ProviderUnavailable)
        })?;
        let Some(issuer) = endpoints.issuer.clone() else {
            return Err(fail(Failure::InvalidIdToken));
        };
        match &callback.iss {
            Some(iss) if iss.trim_end_matches('/') != issuer => {
                tracing::warn!(provider = %name, "sign-in callback `iss` names another issuer (mix-up?)");
                return Err(fail(Failure::IssuerMismatch));
            }
            None if endpoints.iss_parameter_required => {
                return Err(fail(Failure::IssuerMismatch));
            }
            _ => {}
        }
        let Some(code) = &callback.code else {
            return Err(fail(Failure::ExchangeFailed));
        };
        let verifier = signer.verifier(&claims.nonce);
        let tokens = self
            .inner
            .client
            .exchange_code(config, &endpoints, &provider.redirect_uri, code, &verifier)
            .await
            .map_err(|error| {
                tracing::warn!(provider = %name, %error, "sign-in code exchange failed");
                match error {
                    ProviderError::Unavailable(_) => fail(Failure::ProviderUnavailable),
                    _ => fail(Failure::ExchangeFailed).with_error(error.provider_code()),
                }
            })?;
        let verified = match (&tokens.id_token, &endpoints.jwks) {
            (Some(token), Some(jwks)) => {
                let expected = Expected {
                    issuer: &issuer,
                    client_id: &config.client_id,
                    nonce: &signer.oidc_nonce(&claims.nonce),
                };
                id_token::verify(
                    &self.inner.key_sets,
                    &self.inner.client,
                    jwks,
                    token,
                    expected,
                )
                .await
            }
            (None, _) => Err(IdTokenError::Missing),
            (_, None) => Err(IdTokenError::NoKeySet),
        };
        let identity = verified.map_err(|error| {
            tracing::warn!(provider = %name, %error, "sign-in ID token refused");
            match error {
                IdTokenError::Keys(ProviderError::Unavailable(_)) => {
                    fail(Failure::ProviderUnavailable)
                }
                _ => fail(Failure::InvalidIdToken),
            }
        })?;
        Ok(SignedIn {
            provider: name.clone(),
            issuer,
            identity,
            login: login_config,
            return_to: login.return_to,
            tokens,
        })
    }

    /// Keeps a sign-in's provider tokens as `subject`'s connection to the
    /// provider, when the provider is also a connected service (`connect`,
    /// the default): the user signs in once and is connected. Answers
    /// whether they were kept.
    ///
    /// # Errors
    ///
    /// [`Failure::ServerError`] when they cannot be sealed or stored.
    pub async fn keep_signin_tokens(
        &self,
        subject: &str,
        username: &str,
        signed_in: &SignedIn,
    ) -> Result<bool, Failure> {
        let (Ok(provider), Some(keys)) =
            (self.provider(&signed_in.provider), self.inner.keys.as_ref())
        else {
            return Ok(false);
        };
        if !provider.config.connect {
            return Ok(false);
        }
        self.save_connection(keys, subject, username, &provider, &signed_in.tokens)
            .await?;
        tracing::info!(%subject, provider = %signed_in.provider, "service connected at sign-in");
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::state::StateSigner;

    use super::*;

    /// Sign-in states are told apart from connect states by their form;
    /// garbage is neither.
    #[test]
    fn signin_states_are_recognised() {
        let signer = StateSigner::new(&[1; 32], Duration::from_secs(600));
        let now = Timestamp::now();
        let login = LoginClaims {
            option: None,
            return_to: "/account".into(),
        };
        let binding = Binding {
            browser: Some("b"),
            login: Some(&login),
            ..Binding::default()
        };
        let signin = signer
            .issue_bound("", "", "p", now, binding)
            .expect("issue");
        assert!(looks_like_signin(&signin.state));
        let connect = signer.issue("s", "u", "p", now).expect("issue");
        assert!(!looks_like_signin(&connect.state));
        for garbage in ["", "a.b", "!!.!!"] {
            assert!(!looks_like_signin(garbage));
        }
        // The OpenID nonce differs per state and from the PKCE verifier.
        let claims = signer.verify(&signin.state, now).expect("valid");
        assert_ne!(
            signer.oidc_nonce(&claims.nonce),
            *signer.verifier(&claims.nonce)
        );
    }
}

//! The browser flow: authorization URLs with a signed state and a PKCE
//! challenge ([`Connect::offers`]), and the callback that verifies the
//! state, exchanges the code and stores the tokens ([`Connect::complete`]).

use std::sync::Arc;

use token_repository::Timestamp;

use super::{Connect, Current, expiry, refresh_expiry};
use crate::callback::{Callback, Failure, Refusal};
use crate::error::ConnectError;
use crate::metrics;
use crate::oauth_client::{self, ProviderError};
use crate::providers::Endpoints;
use crate::record::{Connection, Stored};
use crate::registry::Provider;
use crate::state::{Binding, StateClaims, StateError};
use crate::views::Offer;

/// Query values: all but unreserved characters escaped.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

impl Connect {
    /// The page a callback sends the browser to: the success page with
    /// `provider=`, or the failure page with `reason=` (and `provider=`
    /// when known, `error=` with the provider's OAuth error code when it
    /// refused with one). `None` when connected services are not
    /// configured.
    #[must_use]
    pub fn result_page(&self, outcome: &Result<String, Refusal>) -> Option<String> {
        let base = match outcome {
            Ok(_) => self.inner.success_url.as_deref(),
            Err(_) => self.inner.failure_url.as_deref(),
        };
        Some(Self::page(base?, outcome))
    }

    /// Where the callback with `state` sends the browser: the return URL
    /// its (genuine, unexpired) state carries, if `CONNECT_RETURN_URLS`
    /// still allows it, with the same parameters as the result pages;
    /// otherwise [`Self::result_page`].
    #[must_use]
    pub fn return_page(
        &self,
        state: Option<&str>,
        outcome: &Result<String, Refusal>,
    ) -> Option<String> {
        let return_to = match (&self.inner.signer, state) {
            (Some(signer), Some(state)) => signer
                .verify(state, Timestamp::now())
                .ok()
                .and_then(|claims| claims.return_to),
            _ => None,
        };
        match return_to.map(|url| self.inner.return_urls.check(&url)) {
            Some(Ok(url)) => Some(Self::page(&url, outcome)),
            Some(Err(error)) => {
                tracing::warn!(%error, "the state's return URL is no longer allowed; the result pages are used");
                self.result_page(outcome)
            }
            None => self.result_page(outcome),
        }
    }

    /// `base` with the outcome's parameters appended.
    fn page(base: &str, outcome: &Result<String, Refusal>) -> String {
        let pairs: Vec<(&str, &str)> = match outcome {
            Ok(provider) => vec![("provider", provider.as_str())],
            Err(refusal) => {
                let mut pairs = vec![("reason", refusal.failure.code())];
                if let Some(provider) = &refusal.provider {
                    pairs.push(("provider", provider.as_str()));
                }
                // Checked again here: only a code of the OAuth shape ever
                // reaches the page.
                if let Some(error) = refusal.error.as_deref().and_then(oauth_client::error_code) {
                    pairs.push(("error", error));
                }
                pairs
            }
        };
        let (before_fragment, fragment) = match base.split_once('#') {
            Some((before, fragment)) => (before, Some(fragment)),
            None => (base, None),
        };
        let mut page = before_fragment.to_owned();
        for (name, value) in pairs {
            page.push(if page.contains('?') { '&' } else { '?' });
            page.push_str(name);
            page.push('=');
            page.extend(percent_encoding::utf8_percent_encode(value, QUERY_VALUE));
        }
        if let Some(fragment) = fragment {
            page.push('#');
            page.push_str(fragment);
        }
        page
    }

    /// The enabled providers with a fresh authorization URL each, for the
    /// user `subject` / `username`.
    ///
    /// # Errors
    ///
    /// [`ConnectError::Internal`] when the random generator fails.
    pub async fn offers(&self, subject: &str, username: &str) -> Result<Vec<Offer>, ConnectError> {
        let registry = self.registry();
        let enabled: Vec<&Arc<Provider>> = registry
            .all()
            .filter(|provider| provider.config.enabled && provider.config.connect)
            .collect();
        let endpoints =
            futures_util::future::join_all(enabled.iter().map(|provider| self.endpoints(provider)))
                .await;
        let mut offers = Vec::with_capacity(enabled.len());
        for (provider, endpoints) in enabled.into_iter().zip(endpoints) {
            let authorize_url = match endpoints {
                Ok(_) => Some(self.ticket_url(provider, subject, username, None)?),
                Err(error) => {
                    tracing::warn!(provider = %provider.config.name, %error, "provider unavailable; offered without a URL");
                    None
                }
            };
            offers.push(Offer {
                name: provider.config.name.clone(),
                display_name: provider.config.display_name.clone(),
                logo_url: provider.config.logo_url.clone(),
                authorize_url,
            });
        }
        Ok(offers)
    }

    /// One enabled provider's offer for `subject` / `username` (as an
    /// element of [`Self::offers`]); the callback of the flow it starts
    /// sends the browser to `return_to` when given, which
    /// `CONNECT_RETURN_URLS` must allow.
    ///
    /// # Errors
    ///
    /// [`ConnectError::UnknownProvider`] (also for a disabled provider),
    /// [`ConnectError::ReturnUrl`], [`ConnectError::Internal`].
    pub async fn offer(
        &self,
        subject: &str,
        username: &str,
        provider: &str,
        return_to: Option<&str>,
    ) -> Result<Offer, ConnectError> {
        let provider = self.provider(provider)?;
        if !provider.config.enabled || !provider.config.connect {
            return Err(ConnectError::UnknownProvider);
        }
        let return_to = return_to
            .map(|url| self.inner.return_urls.check(url))
            .transpose()?;
        let authorize_url = match self.endpoints(&provider).await {
            Ok(_) => Some(self.ticket_url(&provider, subject, username, return_to.as_deref())?),
            Err(error) => {
                tracing::warn!(provider = %provider.config.name, %error, "provider unavailable; offered without a URL");
                None
            }
        };
        Ok(Offer {
            name: provider.config.name.clone(),
            display_name: provider.config.display_name.clone(),
            logo_url: provider.config.logo_url.clone(),
            authorize_url,
        })
    }

    /// A link to `ISSUER/connect/start` for `subject`: a signed ticket
    /// (the state format, unbound, so never accepted by the callback) that
    /// a browser signed in as the same user turns into a flow bound to its
    /// session.
    fn ticket_url(
        &self,
        provider: &Provider,
        subject: &str,
        username: &str,
        return_to: Option<&str>,
    ) -> Result<String, ConnectError> {
        let signer = self
            .inner
            .signer
            .as_ref()
            .ok_or(ConnectError::NotConfigured)?;
        let ticket = signer
            .issue_ticket(
                subject,
                username,
                &provider.config.name,
                Timestamp::now(),
                return_to,
            )
            .map_err(|error| ConnectError::Internal(format!("random generator: {error}")))?;
        Ok(format!(
            "{}?ticket={}",
            self.inner.start_url,
            percent_encoding::utf8_percent_encode(&ticket.state, QUERY_VALUE)
        ))
    }

    /// Checks a `GET /v1/connect` link ticket: answers what it says (the
    /// subject and the provider it was made for, its return URL).
    ///
    /// # Errors
    ///
    /// [`ConnectError::UnknownProvider`] for a malformed, forged or expired
    /// ticket (or one naming no provider).
    pub fn ticket(&self, ticket: &str) -> Result<StateClaims, ConnectError> {
        let signer = self
            .inner
            .signer
            .as_ref()
            .ok_or(ConnectError::NotConfigured)?;
        let claims = signer
            .verify(ticket, Timestamp::now())
            .map_err(|_| ConnectError::UnknownProvider)?;
        if claims.browser.is_some() || claims.login.is_some() {
            return Err(ConnectError::UnknownProvider);
        }
        Ok(claims)
    }

    /// Whether the callback with `state` should return to the account page
    /// (a genuine, unexpired state of a flow started there).
    #[must_use]
    pub fn returns_to_account(&self, state: Option<&str>) -> bool {
        match (&self.inner.signer, state) {
            (Some(signer), Some(state)) => signer
                .verify(state, Timestamp::now())
                .is_ok_and(|claims| claims.to_account),
            _ => false,
        }
    }

    /// The provider's authorization URL for a flow started by the browser
    /// session `browser` (its binding) of `subject`: the state is bound to
    /// that session; with `to_account` the callback returns to `/account`.
    ///
    /// # Errors
    ///
    /// Unknown or disabled provider, the provider unreachable, not
    /// configured.
    pub async fn start_in_browser(
        &self,
        provider: &str,
        subject: &str,
        username: &str,
        browser: &str,
        to_account: bool,
    ) -> Result<String, ConnectError> {
        let binding = Binding {
            browser: Some(browser),
            to_account,
            return_to: None,
            login: None,
        };
        self.start_bound(provider, subject, username, binding).await
    }

    /// [`Self::start_in_browser`] from a link ticket: the callback returns
    /// to `return_to` (the ticket's, checked again against
    /// `CONNECT_RETURN_URLS`) when given.
    ///
    /// # Errors
    ///
    /// As [`Self::start_in_browser`], and [`ConnectError::ReturnUrl`].
    pub async fn start_in_browser_to(
        &self,
        provider: &str,
        subject: &str,
        username: &str,
        browser: &str,
        return_to: Option<&str>,
    ) -> Result<String, ConnectError> {
        let return_to = return_to
            .map(|url| self.inner.return_urls.check(url))
            .transpose()?;
        let binding = Binding {
            browser: Some(browser),
            to_account: false,
            return_to: return_to.as_deref(),
            login: None,
        };
        self.start_bound(provider, subject, username, binding).await
    }

    async fn start_bound(
        &self,
        provider: &str,
        subject: &str,
        username: &str,
        binding: Binding<'_>,
    ) -> Result<String, ConnectError> {
        let provider = self.provider(provider)?;
        if !provider.config.enabled || !provider.config.connect {
            return Err(ConnectError::UnknownProvider);
        }
        let endpoints = self.endpoints(&provider).await?;
        self.authorize_url(&provider, &endpoints, subject, username, binding)
    }

    fn authorize_url(
        &self,
        provider: &Provider,
        endpoints: &Endpoints,
        subject: &str,
        username: &str,
        binding: Binding<'_>,
    ) -> Result<String, ConnectError> {
        let signer = self
            .inner
            .signer
            .as_ref()
            .ok_or(ConnectError::NotConfigured)?;
        let config = &provider.config;
        let issued = signer
            .issue_bound(subject, username, &config.name, Timestamp::now(), binding)
            .map_err(|error| ConnectError::Internal(format!("random generator: {error}")))?;
        let mut url = endpoints.authorization.clone();
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &config.client_id)
                .append_pair("redirect_uri", &provider.redirect_uri);
            if !config.scopes.is_empty() {
                query.append_pair("scope", &config.scopes.join(" "));
            }
            query
                .append_pair("state", &issued.state)
                .append_pair("code_challenge", &issued.code_challenge)
                .append_pair("code_challenge_method", "S256");
            for (name, value) in &config.authorize_params {
                query.append_pair(name, value);
            }
        }
        Ok(url.into())
    }

    /// Completes a connection from the provider's redirect: checks the
    /// state (signature, expiry, single use), the provider's answer and
    /// `iss`, exchanges the code and stores the tokens. Answers the
    /// provider's name, or why nothing was stored.
    ///
    /// # Errors
    ///
    /// The [`Refusal`]: the [`Failure`], the provider when the state named
    /// one, and the provider's error code when it refused with one.
    pub async fn complete(&self, callback: &Callback) -> Result<String, Refusal> {
        let outcome = self.complete_inner(callback).await;
        match &outcome {
            Ok(provider) => metrics::connect_callback(provider, "connected"),
            Err(refusal) => {
                metrics::connect_callback(
                    refusal.provider.as_deref().unwrap_or("-"),
                    refusal.failure.code(),
                );
            }
        }
        outcome
    }

    async fn complete_inner(&self, callback: &Callback) -> Result<String, Refusal> {
        let (Some(signer), Some(keys)) = (&self.inner.signer, &self.inner.keys) else {
            return Err(Refusal::new(Failure::InvalidState, None));
        };
        let now = Timestamp::now();
        let claims = match callback
            .state
            .as_deref()
            .map(|state| signer.verify(state, now))
        {
            None => return Err(Refusal::new(Failure::InvalidState, None)),
            Some(Err(StateError::Expired)) => {
                tracing::info!("connect callback with an expired state");
                return Err(Refusal::new(Failure::ExpiredState, None));
            }
            Some(Err(error)) => {
                tracing::warn!(%error, "connect callback with an invalid state");
                return Err(Refusal::new(Failure::InvalidState, None));
            }
            Some(Ok(claims)) => claims,
        };
        if claims.login.is_some() {
            // A sign-in's state connects nothing (the authority sends
            // those to the sign-in's own completion).
            return Err(Refusal::new(Failure::InvalidState, None));
        }
        let name = claims.provider.clone();
        let fail = |failure: Failure| Refusal::new(failure, Some(name.clone()));
        let Some(provider) = self.registry().get(&claims.provider).cloned() else {
            return Err(Refusal::new(Failure::InvalidState, None));
        };
        // The state must come back in the browser session that started
        // the flow: a URL sent to someone else connects nothing.
        let bound = match (&claims.browser, &callback.browser) {
            (Some(expected), Some(presented)) => bool::from(subtle::ConstantTimeEq::ct_eq(
                expected.as_bytes(),
                presented.as_bytes(),
            )),
            _ => false,
        };
        if !bound {
            tracing::warn!(subject = %claims.subject, provider = %name, "connect state presented by another browser session; refused");
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
                tracing::warn!(subject = %claims.subject, provider = %name, "connect state replayed; refused");
                return Err(fail(Failure::ReplayedState));
            }
            Err(error) => {
                tracing::warn!(%error, "cannot mark the connect state as used");
                return Err(fail(Failure::ServerError));
            }
        }
        if let Some(error) = &callback.error {
            let code = oauth_client::error_code(error);
            tracing::info!(subject = %claims.subject, provider = %name, error = %code.unwrap_or("-"), "the provider answered with an error");
            return Err(if code == Some("access_denied") {
                fail(Failure::AccessDenied)
            } else {
                // The code, never `error_description`: the provider's free
                // text has no place in a URL the application displays.
                fail(Failure::ProviderError).with_error(code)
            });
        }
        if !provider.config.enabled {
            return Err(fail(Failure::ProviderDisabled));
        }
        let endpoints = self.endpoints(&provider).await.map_err(|error| {
            tracing::warn!(provider = %name, %error, "provider unavailable at the callback");
            fail(Failure::ProviderUnavailable)
        })?;
        match (&endpoints.issuer, &callback.iss) {
            (Some(expected), Some(iss)) if iss.trim_end_matches('/') != expected => {
                tracing::warn!(provider = %name, "callback `iss` names another issuer (mix-up?)");
                return Err(fail(Failure::IssuerMismatch));
            }
            (Some(_), None) if endpoints.iss_parameter_required => {
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
            .exchange_code(
                &provider.config,
                &endpoints,
                &provider.redirect_uri,
                code,
                &verifier,
            )
            .await
            .map_err(|error| {
                tracing::warn!(provider = %name, %error, "code exchange failed");
                match error {
                    ProviderError::Unavailable(_) => fail(Failure::ProviderUnavailable),
                    _ => fail(Failure::ExchangeFailed).with_error(error.provider_code()),
                }
            })?;
        // Reconnecting with another provider account is refused, not
        // swapped silently: the account page says so.
        if let (
            Ok(Current::Live {
                connection: old, ..
            }),
            Some(new),
        ) = (
            self.read(&claims.subject, &name).await,
            tokens.id_token_subject.as_deref(),
        ) && old
            .provider_subject
            .as_deref()
            .is_some_and(|old| old != new)
        {
            tracing::warn!(subject = %claims.subject, provider = %name, "reconnect with another provider account; the existing connection is kept");
            return Err(fail(Failure::AccountMismatch));
        }
        let refreshable = self
            .save_connection(keys, &claims.subject, &claims.username, &provider, &tokens)
            .await
            .map_err(fail)?;
        tracing::info!(
            subject = %claims.subject,
            username = %claims.username,
            provider = %name,
            refreshable,
            "service connected"
        );
        Ok(name)
    }

    /// Seals and stores `tokens` as `subject`'s connection to `provider`
    /// (a connect callback, or a sign-in that also connects); answers
    /// whether it can be refreshed.
    pub(super) async fn save_connection(
        &self,
        keys: &crate::crypto::Keyring,
        subject: &str,
        username: &str,
        provider: &Provider,
        tokens: &oauth_client::TokenResponse,
    ) -> Result<bool, Failure> {
        let name = &provider.config.name;
        let now = Timestamp::now();
        let connection = Connection {
            username: username.to_owned(),
            access_token: tokens.access_token.to_string(),
            token_type: tokens.token_type.clone(),
            refresh_token: tokens.refresh_token.as_ref().map(|token| token.to_string()),
            expires_at: expiry(now, tokens, provider.config.default_expires_in),
            scope: tokens.scope.clone(),
            connected_at: now.as_unix_millis(),
            refreshed_at: now.as_unix_millis(),
            provider_subject: tokens.id_token_subject.clone(),
            refresh_expires_at: refresh_expiry(
                now,
                tokens,
                provider.config.refresh_token_expires_in,
                None,
            ),
        };
        let stored = Stored::seal(keys, subject, name, &connection).map_err(|error| {
            tracing::error!(%error, "cannot encrypt a connection");
            Failure::ServerError
        })?;
        self.inner
            .store
            .put(
                subject,
                name,
                &stored.to_text(),
                connection.refresh_token.is_some().then_some(now),
            )
            .await
            .map_err(|error| {
                tracing::warn!(%error, "cannot store a connection");
                Failure::ServerError
            })?;
        Ok(connection.refresh_token.is_some())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use token_repository::RedisStore;

    use super::*;
    use crate::config::ConnectConfig;

    fn connect(success: &str, failure: &str) -> Connect {
        let config = ConnectConfig {
            success_url: Some(success.to_owned()),
            failure_url: Some(failure.to_owned()),
            provider_timeout: Duration::from_secs(1),
            ..ConnectConfig::default()
        };
        let store = RedisStore::new(token_repository::RedisConfig::new("redis://127.0.0.1:1"))
            .expect("store");
        Connect::new(&config, store, "http://auth.example").expect("connect")
    }

    /// Result pages get `provider=` / `reason=` appended, before any
    /// fragment, after any existing query.
    #[test]
    fn result_pages() {
        let connect = connect("https://app.example/done#top", "/failed?lang=en");
        assert_eq!(
            connect.result_page(&Ok("orcid".into())).as_deref(),
            Some("https://app.example/done?provider=orcid#top")
        );
        assert_eq!(
            connect
                .result_page(&Err(Refusal::new(
                    Failure::ReplayedState,
                    Some("orcid".into())
                )))
                .as_deref(),
            Some("/failed?lang=en&reason=replayed_state&provider=orcid")
        );
        assert_eq!(
            connect
                .result_page(&Err(Refusal::new(Failure::InvalidState, None)))
                .as_deref(),
            Some("/failed?lang=en&reason=invalid_state")
        );
    }

    /// The provider's own error code reaches the failure page when it has
    /// the OAuth shape; free text, markup or an overlong value never does.
    #[test]
    fn provider_error_codes_are_passed_on() {
        let connect = connect("/done", "https://app.example/failed");
        let page = |code: &str| {
            connect
                .result_page(&Err(Refusal::new(
                    Failure::ProviderError,
                    Some("orcid".into()),
                )
                .with_error(Some(code))))
                .expect("configured")
        };
        assert_eq!(
            page("invalid_scope"),
            "https://app.example/failed?reason=provider_error&provider=orcid&error=invalid_scope"
        );
        assert_eq!(
            page("login_required"),
            "https://app.example/failed?reason=provider_error&provider=orcid&error=login_required"
        );
        let plain = "https://app.example/failed?reason=provider_error&provider=orcid";
        for bad in [
            "",
            "Invalid scope",
            "invalid scope",
            "invalid_scope&x=1",
            "<script>",
            "invalid-scope",
            "INVALID_SCOPE",
            &"a".repeat(65),
        ] {
            assert_eq!(page(bad), plain, "{bad:?}");
        }
        // Set by hand past `with_error`, still not passed on.
        let mut refusal = Refusal::new(Failure::ExchangeFailed, None);
        refusal.error = Some("x y".into());
        assert_eq!(
            connect.result_page(&Err(refusal)).as_deref(),
            Some("https://app.example/failed?reason=exchange_failed")
        );
    }
}

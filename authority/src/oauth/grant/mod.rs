//! The grants of `POST /oauth/token` (RFC 6749): the form parsed once into
//! a [`TokenRequest`] (client credentials, requested scope and a typed
//! [`GrantRequest`]), one module per grant, and what they share: the
//! [`Grant`] built from a [`Holder`] with the configured lifetimes
//! ([`grant`]), storing ([`store`]) and the issue log.
//!
//! Parsing keeps the order of RFC 6749 §5.2 refusals the endpoint has
//! always had: client credentials, a public client outside the code and
//! refresh grants, the scope, the grant type, then the grant's own
//! parameters; credentials are checked (and the store touched) only after.

pub mod authorization_code;
pub mod client_credentials;
pub mod password;
pub mod refresh_token;

use http::HeaderMap;
use token_repository::{
    Audience, Error as StoreError, Generation, Grant, Holder, Minted, ResourceUri, Scopes,
    TokenWriter as _,
};

use crate::address::ClientAddress;
use crate::config::Config;
use crate::credentials::{ClientCredentials, client_credentials};
use crate::form::Form;
use crate::metrics;
use crate::problem::Problem;
use crate::state::AppState;

/// A token request, parsed: who the client claims to be, what scope it
/// asks for, and the grant with its parameters.
#[derive(Debug)]
pub struct TokenRequest {
    /// The client credentials as presented (not yet checked).
    pub credentials: ClientCredentials,
    /// The requested scope, when given.
    pub scope: Option<Scopes>,
    /// The requested resources (RFC 8707), in the order given; empty: the
    /// grant's default audience.
    pub resources: Vec<ResourceUri>,
    /// The grant.
    pub grant: GrantRequest,
}

/// A grant type and its parameters.
#[derive(Debug)]
pub enum GrantRequest {
    /// RFC 6749 §4.3.
    Password(password::Request),
    /// RFC 6749 §4.4.
    ClientCredentials,
    /// RFC 6749 §6.
    RefreshToken(refresh_token::Request),
    /// RFC 6749 §4.1.3.
    AuthorizationCode(authorization_code::Request),
}

impl TokenRequest {
    /// Parses the request's credentials and form.
    ///
    /// # Errors
    ///
    /// The RFC 6749 §5.2 answer to the first thing wrong: `invalid_request`,
    /// `invalid_client`, `invalid_scope`, `invalid_target` (a malformed
    /// `resource`), `unsupported_grant_type`, `invalid_grant` (a malformed
    /// refresh token).
    pub fn parse(headers: &HeaderMap, form: &Form, config: &Config) -> Result<Self, Problem> {
        let credentials = client_credentials(headers, form)?;
        if matches!(credentials, ClientCredentials::IdOnly(_))
            && !matches!(
                form.get("grant_type"),
                Some("authorization_code" | "refresh_token")
            )
        {
            // Only public clients name themselves without a secret, and only
            // for the code and refresh grants.
            return Err(Problem::invalid_client());
        }
        let scope = form
            .get("scope")
            .map(Scopes::parse)
            .transpose()
            .map_err(|error| Problem::invalid_scope(error.to_string()))?;
        // Checked for form before anything is looked up or counted.
        let resources = crate::oauth::resource::requested(form)?;
        let grant = GrantRequest::parse(form, config)?;
        Ok(Self {
            credentials,
            scope,
            resources,
            grant,
        })
    }

    /// Runs the grant: checks the credentials, mints and stores the tokens.
    ///
    /// # Errors
    ///
    /// The RFC 6749 §5.2 answers of each grant; 429 when throttled; 503
    /// when the stores are unavailable.
    pub async fn execute(
        self,
        state: &AppState,
        address: ClientAddress,
    ) -> Result<Minted, Problem> {
        let Self {
            credentials,
            scope,
            resources,
            grant,
        } = self;
        let resources = resources.as_slice();
        // Each grant's future is boxed: only one runs per request, and
        // inlined they would make this future (and every layer's above it,
        // which moves it) as large as the largest grant's.
        let (name, minted) = match grant {
            GrantRequest::Password(request) => (
                "password",
                Box::pin(password::grant(
                    state,
                    request,
                    credentials,
                    (scope, resources),
                    address,
                ))
                .await?,
            ),
            GrantRequest::ClientCredentials => (
                "client_credentials",
                Box::pin(client_credentials::grant(
                    state,
                    credentials,
                    (scope, resources),
                    address,
                ))
                .await?,
            ),
            GrantRequest::RefreshToken(request) => (
                "refresh_token",
                Box::pin(refresh_token::grant(
                    state,
                    request,
                    credentials,
                    (scope, resources),
                    address,
                ))
                .await?,
            ),
            GrantRequest::AuthorizationCode(request) => (
                "authorization_code",
                Box::pin(authorization_code::grant(
                    state,
                    request,
                    credentials,
                    resources,
                    address,
                ))
                .await?,
            ),
        };
        log_issue(name, &minted);
        Ok(minted)
    }
}

impl GrantRequest {
    /// The grant named by `grant_type`, with its parameters.
    ///
    /// # Errors
    ///
    /// `invalid_request` for a missing `grant_type` or parameter,
    /// `unsupported_grant_type` for an unknown (or disabled) grant,
    /// `invalid_grant` for a malformed refresh token.
    pub fn parse(form: &Form, config: &Config) -> Result<Self, Problem> {
        match form.get("grant_type") {
            None => Err(Problem::invalid_request("grant_type is required")),
            Some("password") if !config.password_grant => Err(Problem::unsupported_grant_type()),
            Some("password") => password::Request::parse(form).map(Self::Password),
            Some("authorization_code") => {
                authorization_code::Request::parse(form).map(Self::AuthorizationCode)
            }
            Some("client_credentials") => Ok(Self::ClientCredentials),
            Some("refresh_token") => refresh_token::Request::parse(form).map(Self::RefreshToken),
            Some(_) => Err(Problem::unsupported_grant_type()),
        }
    }
}

/// What to issue to `holder` for `audience`: the configured access token
/// lifetime and, `with_refresh`, a refresh token of the configured
/// lifetime.
#[must_use]
pub fn grant(config: &Config, holder: Holder, audience: Audience, with_refresh: bool) -> Grant {
    Grant {
        holder,
        access_ttl: config.access_token_ttl,
        refresh_ttl: with_refresh.then_some(config.refresh_token_ttl),
        audience,
    }
}

/// The requested scope must be granted scope; without a request, all of it.
pub(crate) fn narrow(requested: Option<Scopes>, granted: &Scopes) -> Result<Scopes, Problem> {
    match requested {
        None => Ok(granted.clone()),
        Some(requested) if requested.is_subset_of(granted) => Ok(requested),
        Some(_) => Err(Problem::invalid_scope(
            "the requested scope exceeds what may be granted",
        )),
    }
}

/// Stores minted tokens; maps the store's refusals to OAuth answers.
///
/// # Errors
///
/// `invalid_grant` when the subject's tokens were revoked since `guard`
/// was read; 503 / 500 for store failures.
pub async fn store(
    state: &AppState,
    minted: &Minted,
    guard: Option<Generation>,
) -> Result<(), Problem> {
    match state.store().issue(minted, guard).await {
        Ok(issued) => {
            if !issued.evicted.is_empty() {
                tracing::info!(
                    subject = %minted.subject(),
                    evicted = ?issued.evicted,
                    cap = state.config().max_sessions_per_subject,
                    "session cap reached: the subject's oldest sessions were revoked"
                );
                metrics::sessions_evicted(issued.evicted.len());
            }
            Ok(())
        }
        Err(StoreError::Superseded) => Err(Problem::invalid_grant(
            "the credentials changed while the request was processed; try again",
        )),
        Err(error) => Err(Problem::from(error)),
    }
}

fn log_issue(grant: &'static str, minted: &Minted) {
    let record = &minted.access.record;
    tracing::info!(
        grant,
        subject = %record.holder.subject,
        client_id = record.holder.client_id.as_deref().unwrap_or("-"),
        token_id = %record.id,
        family = %record.family,
        "tokens issued"
    );
}

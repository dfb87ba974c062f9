//! What a provider's redirect to the callback brings ([`Callback`]), and
//! why it may not connect ([`Refusal`], [`Failure`]).

use zeroize::Zeroizing;

use crate::oauth_client::error_code;

/// Why a callback did not connect (the `reason` of the failure page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The user refused at the provider.
    AccessDenied,
    /// The provider redirected with another error.
    ProviderError,
    /// Missing, malformed or forged state, or one naming no provider.
    InvalidState,
    /// A genuine but expired state.
    ExpiredState,
    /// A state that was already used.
    ReplayedState,
    /// The provider is disabled.
    ProviderDisabled,
    /// `iss` is missing or names another issuer (RFC 9207).
    IssuerMismatch,
    /// No code in the callback, or the provider refused it.
    ExchangeFailed,
    /// The provider could not be reached.
    ProviderUnavailable,
    /// Redis or another internal failure.
    ServerError,
    /// The state is bound to another browser session than the one that
    /// presented it (or to none: an unbound state).
    SessionMismatch,
    /// The user signed in at the provider as another account than the one
    /// connected; the existing connection is kept.
    AccountMismatch,
    /// Sign-in: the ID token is missing or does not verify (signature,
    /// issuer, audience, expiry, nonce).
    InvalidIdToken,
}

impl Failure {
    /// The reason code sent to the failure page.
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::AccessDenied => "access_denied",
            Self::ProviderError => "provider_error",
            Self::InvalidState => "invalid_state",
            Self::ExpiredState => "expired_state",
            Self::ReplayedState => "replayed_state",
            Self::ProviderDisabled => "provider_disabled",
            Self::IssuerMismatch => "issuer_mismatch",
            Self::ExchangeFailed => "exchange_failed",
            Self::ProviderUnavailable => "provider_unavailable",
            Self::ServerError => "server_error",
            Self::SessionMismatch => "session_mismatch",
            Self::AccountMismatch => "account_mismatch",
            Self::InvalidIdToken => "invalid_id_token",
        }
    }
}

/// Why a callback did not connect, as the failure page is told:
/// `reason=<failure>`, `provider=<name>` when the state named one, and
/// `error=<code>` with the provider's own OAuth error code when the
/// provider refused the authorization request or the code exchange with
/// one (never its free-text description).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The reason.
    pub failure: Failure,
    /// The provider the state named, if genuine.
    pub provider: Option<String>,
    /// The provider's RFC 6749 error code (`invalid_scope`, …): only
    /// `[a-z_]{1,64}`, see [`error_code`].
    pub error: Option<String>,
}

impl Refusal {
    /// A refusal for `failure`, naming `provider` (none: the state named
    /// none, or was not genuine).
    #[must_use]
    pub fn new(failure: Failure, provider: Option<String>) -> Self {
        Self {
            failure,
            provider,
            error: None,
        }
    }

    /// The same, with the provider's error code when it is one.
    #[must_use]
    pub fn with_error(mut self, code: Option<&str>) -> Self {
        self.error = code.and_then(error_code).map(str::to_owned);
        self
    }
}

/// The query of a callback.
#[derive(Debug, Default)]
pub struct Callback {
    /// `code`.
    pub code: Option<Zeroizing<String>>,
    /// `state`.
    pub state: Option<String>,
    /// `error`.
    pub error: Option<String>,
    /// `iss` (RFC 9207).
    pub iss: Option<String>,
    /// The binding of the browser session that presented it (the
    /// authority's browser session: a hash of its token), if signed in.
    pub browser: Option<String>,
}

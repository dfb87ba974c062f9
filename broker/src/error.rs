//! [`ConnectError`]: why a connected-services operation failed, and
//! [`SetupError`]: why the broker could not be set up.

use crate::oauth_client::{ClientBuildError, ProviderError};

/// Why a connected-services operation failed; the authority maps it to a
/// response.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No provider of that name is configured.
    #[error("no such provider")]
    UnknownProvider,
    /// The user has no connection to the provider.
    #[error("not connected")]
    NotConnected,
    /// The connection cannot give a token any more; the user must connect
    /// again.
    #[error("{0}")]
    Reconnect(&'static str),
    /// More validity was asked for than a token fresh from the provider
    /// can still have when it is handed out.
    #[error("the provider's tokens live {lifetime_secs} seconds; ask for expires <= {max_secs}")]
    TooLong {
        /// The provider's token lifetime, whole seconds.
        lifetime_secs: u64,
        /// The largest `expires` a refresh can satisfy: whole seconds
        /// strictly less than the lifetime (a token is never handed out
        /// at the instant it was issued).
        max_secs: u64,
    },
    /// Another replica's refresh did not finish within the wait bound.
    #[error("a refresh of this connection is in progress")]
    Busy,
    /// The provider failed or refused.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// A `return_to` that is not allowed.
    #[error(transparent)]
    ReturnUrl(#[from] crate::return_url::ReturnUrlError),
    /// Credentials refused (kind, size, characters; never their value),
    /// or a disabled provider of a credentials kind.
    #[error(transparent)]
    Credential(#[from] crate::credentials::CredentialError),
    /// Redis failed.
    #[error(transparent)]
    Store(#[from] token_repository::Error),
    /// Connected services are not configured (keys missing).
    #[error("connected services are not configured")]
    NotConfigured,
    /// Something that should not fail did (randomness, a stored value).
    #[error("{0}")]
    Internal(String),
}

/// Why [`crate::Connect::new`] failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client for providers: {0}")]
pub struct SetupError(#[from] pub ClientBuildError);

//! The repository's error type.

use std::time::Duration;

/// Why a store operation failed.
///
/// An unknown, expired or revoked token is not an error (lookups answer
/// `None`); these are failures of the store itself, on which callers must
/// fail closed: a token client answers 503, the authority refuses to issue.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Redis answered with an error or the connection broke.
    #[cfg(feature = "redis")]
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// No pooled connection could be had (Redis down, pool exhausted).
    #[cfg(feature = "redis")]
    #[error("redis connection pool: {0}")]
    Pool(#[from] deadpool_redis::PoolError),
    /// The operation did not finish within the configured timeout.
    #[error("the token repository did not answer within {0:?}")]
    Timeout(Duration),
    /// A token with this digest already exists. Never overwritten: with 256
    /// random bits this means a broken random generator or a replayed write.
    #[error("a token with this digest already exists; refusing to overwrite it")]
    Collision,
    /// The subject's tokens were all revoked (sign out everywhere, password
    /// change, account disabled) after this grant checked its credentials;
    /// the grant must be refused.
    #[error("the subject's tokens were revoked while this grant was in progress")]
    Superseded,
    /// Fewer replicas than configured acknowledged the issued tokens in
    /// time (see [`crate::RedisConfig::wait_for_replicas`]): they were
    /// revoked, nothing was handed out.
    #[error("{acknowledged} of {required} replicas acknowledged the write in time")]
    NotDurable {
        /// Replicas that acknowledged.
        acknowledged: u32,
        /// Replicas required.
        required: u32,
    },
    /// A stored value could not be read (written by a newer version, or
    /// damaged).
    #[error("unreadable stored record: {0}")]
    Corrupt(#[from] crate::codec::CodecError),
    /// The OS random generator failed; nothing was issued.
    #[error(transparent)]
    Randomness(#[from] crate::token::RandomnessError),
    /// The request itself is inconsistent (a bug in the caller).
    #[error("invalid request to the token store: {0}")]
    InvalidRequest(&'static str),
    /// The store could not be configured (bad URL, bad option).
    #[error("token store configuration: {0}")]
    Config(String),
}

impl Error {
    /// Whether the store was unreachable, too slow or failing over, as
    /// opposed to refusing the request (a permission error, a corrupt
    /// record): the transient condition that heals by itself. Callers fail
    /// closed on every error either way; this tells them whether to log a
    /// configuration problem and whether `Retry-After` makes sense.
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        match self {
            #[cfg(feature = "redis")]
            Self::Redis(error) => {
                error.is_io_error()
                    || error.is_timeout()
                    || error.is_connection_dropped()
                    || error.is_connection_refusal()
                    || error.is_cluster_error()
                    || matches!(
                        error.kind(),
                        redis::ErrorKind::Server(
                            redis::ServerErrorKind::BusyLoading
                                | redis::ServerErrorKind::TryAgain
                                | redis::ServerErrorKind::ClusterDown
                                | redis::ServerErrorKind::MasterDown
                                | redis::ServerErrorKind::ReadOnly
                        )
                    )
            }
            #[cfg(feature = "redis")]
            Self::Pool(_) => true,
            Self::Timeout(_) | Self::NotDurable { .. } => true,
            _ => false,
        }
    }

    /// Whether the TLS handshake with Redis failed on a certificate: the
    /// server's was not signed by a trusted CA (`REDIS_CA_FILE`) or does
    /// not name the host, or the server refused ours. A configuration
    /// problem that retrying does not heal, unlike [`Self::is_unavailable`].
    #[must_use]
    pub fn is_tls_rejected(&self) -> bool {
        #[cfg(feature = "redis")]
        {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(self);
            while let Some(error) = source {
                if let Some(tls) = error.downcast_ref::<rustls::Error>() {
                    return matches!(
                        tls,
                        rustls::Error::InvalidCertificate(_) | rustls::Error::AlertReceived(_)
                    );
                }
                source = error.source();
            }
            // redis-rs keeps the rustls error behind an `Arc<io::Error>`,
            // which no downcast reaches: its message does.
            let message = self.to_string();
            message.contains("invalid peer certificate")
                || message.contains("received fatal alert: BadCertificate")
                || message.contains("received fatal alert: UnknownCA")
                || message.contains("received fatal alert: CertificateRequired")
        }
        #[cfg(not(feature = "redis"))]
        false
    }
}

/// `Result` with the repository's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

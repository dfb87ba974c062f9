//! How to reach Redis: [`RedisConfig`].

use std::fmt;
use std::time::Duration;

use super::topology::Topology;
use crate::keys::KeyPrefix;

/// Where the store's Redis is and how patient to be with it.
///
/// One server ([`Self::new`]), a Redis Cluster ([`Self::cluster`]) or a
/// master behind Sentinel ([`Self::sentinel`]): the same store and the same
/// key schema on each. `Debug` hides passwords.
#[derive(Clone)]
pub struct RedisConfig {
    pub(crate) topology: Topology,
    pub(crate) prefix: KeyPrefix,
    pub(crate) pool_size: usize,
    pub(crate) timeout: Duration,
    pub(crate) durability: Option<Durability>,
    pub(crate) tls: Option<redis::TlsCertificates>,
    pub(crate) max_sessions: usize,
}

/// Wait for replicas to acknowledge every issued token (`WAIT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durability {
    /// How many replicas must acknowledge.
    pub replicas: u32,
    /// How long to wait for them.
    pub timeout: Duration,
}

impl RedisConfig {
    /// Default number of pooled connections.
    pub const DEFAULT_POOL_SIZE: usize = 16;
    /// Default bound on one store operation, connecting included.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

    /// A configuration for `url` (`redis://[user:password@]host[:port][/db]`,
    /// `rediss://` for TLS), with the default prefix `ts:`, pool size and
    /// timeout.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self::with_topology(Topology::Single { url: url.into() })
    }

    /// A configuration for a Redis Cluster reached through `urls` (any
    /// nodes; credentials in each URL).
    #[must_use]
    pub fn cluster<I, S>(urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::with_topology(Topology::Cluster {
            urls: urls.into_iter().map(Into::into).collect(),
        })
    }

    /// A configuration for the master named `master`, found through the
    /// sentinels at `urls`. Connections follow the master through failovers.
    #[must_use]
    pub fn sentinel<I, S>(urls: I, master: impl Into<String>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::with_topology(Topology::Sentinel {
            urls: urls.into_iter().map(Into::into).collect(),
            master: master.into(),
            username: None,
            password: None,
        })
    }

    /// A configuration for `topology`.
    #[must_use]
    pub fn with_topology(topology: Topology) -> Self {
        Self {
            topology,
            prefix: KeyPrefix::default(),
            pool_size: Self::DEFAULT_POOL_SIZE,
            timeout: Self::DEFAULT_TIMEOUT,
            durability: None,
            tls: None,
            max_sessions: crate::DEFAULT_MAX_SESSIONS_PER_SUBJECT,
        }
    }

    /// TLS material for `rediss://` connections: a CA to trust instead of
    /// the webpki roots, and a client certificate for servers that ask for
    /// one (`tls-auth-clients`). See [`RedisTls::from_settings`]. Without
    /// it, `rediss://` trusts the webpki roots (public CAs).
    ///
    /// Supported with one server ([`Self::new`]); a cluster or Sentinel
    /// set-up with it is refused when the store is built.
    #[must_use]
    pub fn tls(mut self, tls: RedisTls) -> Self {
        self.tls = Some(tls.certificates);
        self
    }

    /// The TLS material, if any was given ([`Self::tls`]).
    #[must_use]
    pub fn tls_certificates(&self) -> Option<&redis::TlsCertificates> {
        self.tls.as_ref()
    }

    /// The ACL user and password of the data nodes behind Sentinel (the
    /// sentinels' own credentials go in their URLs). Ignored otherwise.
    #[must_use]
    pub fn sentinel_credentials(
        mut self,
        username: Option<String>,
        password: Option<String>,
    ) -> Self {
        if let Topology::Sentinel {
            username: user,
            password: pass,
            ..
        } = &mut self.topology
        {
            *user = username;
            *pass = password;
        }
        self
    }

    /// After issuing tokens, wait until `replicas` replicas have
    /// acknowledged the write (`WAIT`), at most `timeout`; if they do not,
    /// the tokens are revoked and the issue fails with
    /// [`crate::Error::NotDurable`], so no token is handed out that a
    /// failover could lose. `replicas = 0` turns it off (the default).
    #[must_use]
    pub fn wait_for_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.durability = (replicas > 0).then_some(Durability { replicas, timeout });
        self
    }

    /// Where Redis is.
    #[must_use]
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The key prefix (namespace) shared by the authority and its clients.
    #[must_use]
    pub fn prefix(mut self, prefix: KeyPrefix) -> Self {
        self.prefix = prefix;
        self
    }

    /// The number of pooled connections (at least 1).
    #[must_use]
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// The longest any one operation may take, waiting for a connection and
    /// connecting included. Past it the operation fails with
    /// [`crate::Error::Timeout`]: callers fail closed instead of hanging.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many live sessions one subject may hold (at least 1; default
    /// [`crate::DEFAULT_MAX_SESSIONS_PER_SUBJECT`]). Issuing beyond it
    /// revokes the subject's soonest-expiring sessions.
    #[must_use]
    pub fn max_sessions_per_subject(mut self, cap: usize) -> Self {
        self.max_sessions = cap.max(1);
        self
    }

    /// The configured key prefix.
    #[must_use]
    pub fn key_prefix(&self) -> &KeyPrefix {
        &self.prefix
    }

    /// The configured timeout.
    #[must_use]
    pub fn operation_timeout(&self) -> Duration {
        self.timeout
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("topology", &self.topology)
            .field("durability", &self.durability)
            .field("prefix", &self.prefix)
            .field("pool_size", &self.pool_size)
            .field("timeout", &self.timeout)
            .field("tls", &self.tls.is_some())
            .field("max_sessions", &self.max_sessions)
            .finish()
    }
}

/// TLS material for `rediss://`: the CA that signed the server's
/// certificate and, optionally, a client certificate and its key (PEM).
/// `Debug` shows none of it.
#[derive(Clone)]
pub struct RedisTls {
    certificates: redis::TlsCertificates,
}

impl fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTls")
            .field("ca", &self.certificates.root_cert.is_some())
            .field(
                "client_certificate",
                &self.certificates.client_tls.is_some(),
            )
            .finish()
    }
}

/// A TLS setting that cannot be used; names the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct TlsSettingsError {
    /// The setting at fault (`REDIS_CA_FILE`, …).
    pub variable: &'static str,
    /// What is wrong (never a file's contents).
    pub problem: String,
}

impl TlsSettingsError {
    fn new(variable: &'static str, problem: impl Into<String>) -> Self {
        Self {
            variable,
            problem: problem.into(),
        }
    }
}

impl RedisTls {
    /// TLS material from PEM text: `ca` (one or more certificates) to
    /// trust instead of the webpki roots, and a client certificate chain
    /// with its private key.
    ///
    /// # Errors
    ///
    /// [`TlsSettingsError`] naming `REDIS_CA_FILE`, `REDIS_CLIENT_CERT_FILE`
    /// or `REDIS_CLIENT_KEY_FILE` when the PEM holds no certificate (key).
    pub fn from_pem(
        ca: Option<Vec<u8>>,
        client: Option<(Vec<u8>, Vec<u8>)>,
    ) -> Result<Self, TlsSettingsError> {
        use rustls_pki_types::pem::PemObject as _;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};

        let certificates = |variable, pem: &[u8]| {
            let parsed = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| {
                    TlsSettingsError::new(variable, format!("not PEM certificates: {error}"))
                })?;
            if parsed.is_empty() {
                return Err(TlsSettingsError::new(
                    variable,
                    "holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                ));
            }
            Ok(())
        };
        if let Some(ca) = &ca {
            certificates("REDIS_CA_FILE", ca)?;
            let mut roots = rustls::RootCertStore::empty();
            let (_, rejected) = roots.add_parsable_certificates(
                CertificateDer::pem_slice_iter(ca).filter_map(Result::ok),
            );
            if rejected > 0 || roots.is_empty() {
                return Err(TlsSettingsError::new(
                    "REDIS_CA_FILE",
                    "holds a certificate that cannot be a trust anchor",
                ));
            }
        }
        if let Some((cert, key)) = &client {
            certificates("REDIS_CLIENT_CERT_FILE", cert)?;
            // The parser's error could quote the key: only say it failed.
            PrivateKeyDer::from_pem_slice(key).map_err(|_| {
                TlsSettingsError::new(
                    "REDIS_CLIENT_KEY_FILE",
                    "holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
                )
            })?;
        }
        Ok(Self {
            certificates: redis::TlsCertificates {
                client_tls: client.map(|(client_cert, client_key)| redis::ClientTlsConfig {
                    client_cert,
                    client_key,
                }),
                root_cert: ca,
            },
        })
    }

    /// The TLS material named by the settings every component of the token
    /// service reads: `REDIS_CA_FILE` (a PEM file of the CA to trust
    /// instead of the webpki roots), `REDIS_CLIENT_CERT_FILE` and
    /// `REDIS_CLIENT_KEY_FILE` (a client certificate and its key, both or
    /// neither). `None` when none is set. `get` answers a setting's value,
    /// `None` when unset (or empty).
    ///
    /// # Errors
    ///
    /// [`TlsSettingsError`] naming the variable whose file cannot be read or
    /// holds no certificate (key), or a client certificate without its key.
    pub fn from_settings<'a>(
        get: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<Option<Self>, TlsSettingsError> {
        let read = |variable: &'static str| {
            get(variable)
                .map(|path| {
                    std::fs::read(path.trim()).map_err(|error| {
                        TlsSettingsError::new(variable, format!("cannot read {path}: {error}"))
                    })
                })
                .transpose()
        };
        let ca = read("REDIS_CA_FILE")?;
        let client = match (
            read("REDIS_CLIENT_CERT_FILE")?,
            read("REDIS_CLIENT_KEY_FILE")?,
        ) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(TlsSettingsError::new(
                    "REDIS_CLIENT_KEY_FILE",
                    "required with REDIS_CLIENT_CERT_FILE",
                ));
            }
            (None, Some(_)) => {
                return Err(TlsSettingsError::new(
                    "REDIS_CLIENT_CERT_FILE",
                    "required with REDIS_CLIENT_KEY_FILE",
                ));
            }
        };
        if ca.is_none() && client.is_none() {
            return Ok(None);
        }
        Self::from_pem(ca, client).map(Some)
    }

    /// Checks that `topology` can use this material: one server, at a
    /// `rediss://` URL.
    ///
    /// # Errors
    ///
    /// [`TlsSettingsError`] naming `REDIS_CA_FILE` (or
    /// `REDIS_CLIENT_CERT_FILE` when no CA is given) otherwise.
    pub fn check_topology(&self, topology: &Topology) -> Result<(), TlsSettingsError> {
        let variable = if self.certificates.root_cert.is_some() {
            "REDIS_CA_FILE"
        } else {
            "REDIS_CLIENT_CERT_FILE"
        };
        match topology {
            Topology::Single { url } if url.trim_start().starts_with("rediss://") => Ok(()),
            Topology::Single { .. } => Err(TlsSettingsError::new(
                variable,
                "needs a rediss:// REDIS_URL (TLS)",
            )),
            Topology::Cluster { .. } | Topology::Sentinel { .. } => Err(TlsSettingsError::new(
                variable,
                "supported with REDIS_URL only, not with REDIS_CLUSTER_URLS or REDIS_SENTINEL_URLS",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::topology::redact_url;
    use super::*;

    /// Passwords in URLs never reach logs through Debug.
    #[test]
    fn debug_redacts_the_password() {
        let config = RedisConfig::new("redis://validator:s3cret-pass@10.0.0.1:6379/0");
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret-pass"), "{shown}");
        assert!(
            shown.contains("redis://validator:***@10.0.0.1:6379/0"),
            "{shown}"
        );
        assert_eq!(redact_url("redis://:pw@host/"), "redis://:***@host/");
        assert_eq!(redact_url("redis://host:6379"), "redis://host:6379");
        assert_eq!(redact_url("not a url"), "<unparseable url>");
        assert_eq!(redact_url("redis://u:p/w@d@host/1"), "redis://u:***@host/1");
    }
}

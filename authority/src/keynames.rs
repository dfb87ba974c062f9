//! The deployment key: keyed digests for key names and client secrets.
//!
//! Redis tells every client that tracks keys (client-side caching, the
//! read-only token middleware too) the *names* of the keys that change, so
//! names must not carry personal data: `P user:`, `P client:` and `P thr:`
//! keys are named by an HMAC-SHA256 of the username, client id or address
//! under this key, never by the text itself.
//!
//! The key is 32 random bytes stored once in Redis under
//! `P keyname-secret` (`SET NX`: the first authority to start creates it,
//! every other one reads the same), read on first use and cached; read again
//! when an account lookup misses or a record is created, so that processes
//! agree on it after a Redis that lost its data made a new one. The middleware's ACL user cannot read it, so it
//! cannot test a guessed name against a key name. Deleting it makes every
//! account unreachable: back it up with the data.
//!
//! Client secrets are verified against an HMAC-SHA256 digest under a key
//! derived from it (see [`DeploymentKey::secret_digest`]): generated
//! secrets carry 256 random bits, so a slow hash adds nothing to them.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac as _};
use rand::TryRng as _;
use sha2::Sha256;
use token_repository::RedisStore;
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

/// The deployment key of one Redis prefix, loaded (or created) on first
/// use.
pub struct DeploymentKey {
    store: RedisStore,
    key: RwLock<Option<Arc<Zeroizing<[u8; 32]>>>>,
}

impl fmt::Debug for DeploymentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeploymentKey")
            .field("loaded", &self.cached().is_some())
            .finish_non_exhaustive()
    }
}

/// What tells apart the digests of different uses of the key.
#[derive(Debug, Clone, Copy)]
pub enum NameKind {
    /// A username (`user:`, `thr:u:`).
    User,
    /// A client id (`client:`, `thr:c:`).
    Client,
    /// A client network (`thr:a:`).
    Address,
    /// A federated identity, issuer and subject (`fid:`).
    Identity,
}

impl NameKind {
    const fn label(self) -> &'static [u8] {
        match self {
            Self::User => b"name:user",
            Self::Client => b"name:client",
            Self::Address => b"name:address",
            Self::Identity => b"name:identity",
        }
    }
}

impl DeploymentKey {
    /// The key of the deployment `store` belongs to (not read yet).
    #[must_use]
    pub fn new(store: RedisStore) -> Self {
        Self {
            store,
            key: RwLock::new(None),
        }
    }

    /// The key: cached, or read from Redis, or created there.
    ///
    /// # Errors
    ///
    /// Store failures (callers fail closed), or a stored key that is not 32
    /// bytes of base64url (a corrupt deployment: refusing is safer than
    /// replacing it).
    pub async fn key(&self) -> token_repository::Result<Arc<Zeroizing<[u8; 32]>>> {
        if let Some(key) = self.cached() {
            return Ok(key);
        }
        // Boxed: the first call (or one after a reset) reads Redis; every
        // other one is answered above and should not carry that future.
        Box::pin(self.reload()).await.map(|(key, _)| key)
    }

    /// Reads the key from Redis again (creating it when Redis has none) and
    /// answers it and whether it differs from the cached one. Callers use it
    /// when a lookup misses or before they create a record: a Redis that
    /// lost its data (restarted without persistence) gets a new key from
    /// whichever process comes first, and a process that kept the old one
    /// in memory would otherwise name keys nobody else finds.
    ///
    /// # Errors
    ///
    /// As [`Self::key`].
    pub async fn reload(&self) -> token_repository::Result<(Arc<Zeroizing<[u8; 32]>>, bool)> {
        let mut fresh = Zeroizing::new([0_u8; 32]);
        rand::rngs::SysRng
            .try_fill_bytes(&mut fresh[..])
            .map_err(|error| corrupt(&format!("random generator: {error}")))?;
        let encoded = Zeroizing::new(URL_SAFE_NO_PAD.encode(&fresh[..]));
        let name = self.store.prefix().keyname_secret();
        let stored: Option<String> = self
            .store
            .with_shared(|mut connection| async move {
                let _: Option<String> = redis::cmd("SET")
                    .arg(&name)
                    .arg(encoded.as_str())
                    .arg("NX")
                    .query_async(&mut connection)
                    .await?;
                redis::cmd("GET")
                    .arg(&name)
                    .query_async(&mut connection)
                    .await
            })
            .await?;
        let stored = Zeroizing::new(stored.unwrap_or_default());
        let bytes = Zeroizing::new(
            URL_SAFE_NO_PAD
                .decode(stored.as_bytes())
                .map_err(|_| corrupt("the stored key-name secret is not base64url"))?,
        );
        let mut key = Zeroizing::new([0_u8; 32]);
        if bytes.len() != key.len() {
            return Err(corrupt("the stored key-name secret is not 32 bytes"));
        }
        key.copy_from_slice(&bytes);
        let key = Arc::new(key);
        let mut cached = self.key.write().unwrap_or_else(PoisonError::into_inner);
        let changed = cached.as_ref().is_some_and(|old| old[..] != key[..]);
        if changed {
            tracing::warn!(
                "the deployment key in Redis changed (Redis lost its data?); using the new one"
            );
        }
        *cached = Some(Arc::clone(&key));
        Ok((key, changed))
    }

    /// The key as base64url, for `token-authority export`: the client
    /// secret digests and the key names of an export are only usable with
    /// it.
    ///
    /// # Errors
    ///
    /// As [`Self::key`].
    pub async fn export(&self) -> token_repository::Result<Zeroizing<String>> {
        Ok(Zeroizing::new(
            URL_SAFE_NO_PAD.encode(&self.key().await?[..]),
        ))
    }

    /// Replaces the stored key with `encoded` (base64url of 32 bytes), for
    /// `token-authority import` into an empty deployment, and caches it.
    ///
    /// # Errors
    ///
    /// A malformed key, or store failures.
    pub async fn install(&self, encoded: &str) -> token_repository::Result<()> {
        let valid = URL_SAFE_NO_PAD
            .decode(encoded.as_bytes())
            .is_ok_and(|bytes| bytes.len() == 32);
        if !valid {
            return Err(corrupt(
                "the deployment key to install is not 32 bytes of base64url",
            ));
        }
        let name = self.store.prefix().keyname_secret();
        let value = Zeroizing::new(encoded.to_owned());
        self.store
            .with_shared(|mut connection| async move {
                redis::cmd("SET")
                    .arg(&name)
                    .arg(value.as_str())
                    .query_async::<()>(&mut connection)
                    .await
            })
            .await?;
        self.reload().await.map(|_| ())
    }

    fn cached(&self) -> Option<Arc<Zeroizing<[u8; 32]>>> {
        self.key
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(Arc::clone)
    }

    fn mac(key: &[u8; 32], label: &[u8]) -> HmacSha256 {
        let mut mac = <HmacSha256 as hmac::KeyInit>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(label);
        mac.update(&[0]);
        mac
    }

    /// The name `text` of `kind` takes in key names: 22 base64url
    /// characters of an HMAC under the deployment key.
    ///
    /// # Errors
    ///
    /// As [`Self::key`].
    pub async fn name(&self, kind: NameKind, text: &str) -> token_repository::Result<String> {
        let mut mac = Self::mac(&*self.key().await?, kind.label());
        mac.update(text.as_bytes());
        Ok(URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..16]))
    }

    /// The stored form of client `client_id`'s secret:
    /// `$hmac-sha256$` and the base64url HMAC of id and secret.
    ///
    /// # Errors
    ///
    /// As [`Self::key`].
    pub async fn secret_digest(
        &self,
        client_id: &str,
        secret: &str,
    ) -> token_repository::Result<SecretDigest> {
        let mut mac = Self::mac(&*self.key().await?, b"client-secret");
        mac.update(client_id.as_bytes());
        mac.update(&[0]);
        mac.update(secret.as_bytes());
        let mut text = [0; SECRET_DIGEST_LEN];
        let (prefix, encoded) = text.split_at_mut(SECRET_DIGEST_PREFIX.len());
        prefix.copy_from_slice(SECRET_DIGEST_PREFIX.as_bytes());
        URL_SAFE_NO_PAD
            .encode_slice(mac.finalize().into_bytes(), encoded)
            .map_err(|_| corrupt("secret digest length"))?;
        Ok(SecretDigest(text))
    }
}

/// How stored client-secret digests start (argon2 hashes start `$argon2`).
pub const SECRET_DIGEST_PREFIX: &str = "$hmac-sha256$";

/// The prefix and 43 base64url characters (256 bits).
const SECRET_DIGEST_LEN: usize = SECRET_DIGEST_PREFIX.len() + 43;

/// A client secret's stored form ([`DeploymentKey::secret_digest`]), held
/// on the stack: it is computed at every client authentication, where it
/// is only compared, in constant time (`constant_time_eq` on
/// [`Self::as_bytes`]; no `==`, which would not be).
#[derive(Clone, Copy)]
pub struct SecretDigest([u8; SECRET_DIGEST_LEN]);

impl SecretDigest {
    /// The stored form's bytes (ASCII), for a constant-time comparison.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The stored form, as client records hold it.
    #[must_use]
    pub fn to_text(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

impl fmt::Debug for SecretDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretDigest(..)")
    }
}

fn corrupt(message: &str) -> token_repository::Error {
    token_repository::Error::from(redis::RedisError::from((
        redis::ErrorKind::Client,
        "deployment key",
        message.to_owned(),
    )))
}

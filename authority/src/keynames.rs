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
//! every other one reads the same), read on first use and cached for the
//! life of the process. The middleware's ACL user cannot read it, so it
//! cannot test a guessed name against a key name. Deleting it makes every
//! account unreachable: back it up with the data.
//!
//! Client secrets are verified against an HMAC-SHA256 digest under a key
//! derived from it (see [`DeploymentKey::secret_digest`]): generated
//! secrets carry 256 random bits, so a slow hash adds nothing to them.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac as _};
use rand::TryRng as _;
use sha2::Sha256;
use token_repository::RedisStore;
use tokio::sync::OnceCell;
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

/// The deployment key of one Redis prefix, loaded (or created) on first
/// use.
pub struct DeploymentKey {
    store: RedisStore,
    key: OnceCell<Zeroizing<[u8; 32]>>,
}

impl fmt::Debug for DeploymentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeploymentKey")
            .field("loaded", &self.key.initialized())
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
}

impl NameKind {
    const fn label(self) -> &'static [u8] {
        match self {
            Self::User => b"name:user",
            Self::Client => b"name:client",
            Self::Address => b"name:address",
        }
    }
}

impl DeploymentKey {
    /// The key of the deployment `store` belongs to (not read yet).
    #[must_use]
    pub fn new(store: RedisStore) -> Self {
        Self {
            store,
            key: OnceCell::new(),
        }
    }

    /// The key: cached, or read from Redis, or created there.
    ///
    /// # Errors
    ///
    /// Store failures (callers fail closed), or a stored key that is not 32
    /// bytes of base64url (a corrupt deployment: refusing is safer than
    /// replacing it).
    pub async fn key(&self) -> token_repository::Result<&[u8; 32]> {
        let key = self
            .key
            .get_or_try_init(|| async {
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
                Ok(key)
            })
            .await?;
        Ok(key)
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
        let mut mac = Self::mac(self.key().await?, kind.label());
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
    ) -> token_repository::Result<String> {
        let mut mac = Self::mac(self.key().await?, b"client-secret");
        mac.update(client_id.as_bytes());
        mac.update(&[0]);
        mac.update(secret.as_bytes());
        Ok(format!(
            "{SECRET_DIGEST_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        ))
    }
}

/// How stored client-secret digests start (argon2 hashes start `$argon2`).
pub const SECRET_DIGEST_PREFIX: &str = "$hmac-sha256$";

fn corrupt(message: &str) -> token_repository::Error {
    token_repository::Error::from(redis::RedisError::from((
        redis::ErrorKind::Client,
        "deployment key",
        message.to_owned(),
    )))
}

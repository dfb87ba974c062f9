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
    loaded: RwLock<Option<Arc<Loaded>>>,
}

/// The key as loaded, and the HMAC state every client-secret digest starts
/// from.
struct Loaded {
    key: Arc<Zeroizing<[u8; 32]>>,
    /// Keyed and labelled once: a digest clones it rather than hashing the
    /// padded key again (two of a digest's five SHA-256 blocks). As secret
    /// as the key; zeroed when dropped (hmac's `zeroize`).
    client_secret: HmacSha256,
}

impl Loaded {
    fn new(key: Arc<Zeroizing<[u8; 32]>>) -> Self {
        let client_secret = DeploymentKey::mac(&key, CLIENT_SECRET_LABEL);
        Self { key, client_secret }
    }
}

/// The label of client-secret digests.
const CLIENT_SECRET_LABEL: &[u8] = b"client-secret";

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
            loaded: RwLock::new(None),
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
        Ok(Arc::clone(&self.loaded().await?.key))
    }

    /// [`Self::key`] with what is derived from it once.
    async fn loaded(&self) -> token_repository::Result<Arc<Loaded>> {
        if let Some(loaded) = self.cached() {
            return Ok(loaded);
        }
        // Boxed: the first call (or one after a reset) reads Redis; every
        // other one is answered above and should not carry that future.
        Box::pin(self.reload_loaded())
            .await
            .map(|(loaded, _)| loaded)
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
        let (loaded, changed) = self.reload_loaded().await?;
        Ok((Arc::clone(&loaded.key), changed))
    }

    /// [`Self::reload`], answering what is derived from the key with it.
    async fn reload_loaded(&self) -> token_repository::Result<(Arc<Loaded>, bool)> {
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
        let mut cached = self.loaded.write().unwrap_or_else(PoisonError::into_inner);
        let changed = cached.as_ref().is_some_and(|old| old.key[..] != key[..]);
        if changed {
            tracing::warn!(
                "the deployment key in Redis changed (Redis lost its data?); using the new one"
            );
        }
        let loaded = Arc::new(Loaded::new(key));
        *cached = Some(Arc::clone(&loaded));
        Ok((loaded, changed))
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

    fn cached(&self) -> Option<Arc<Loaded>> {
        self.loaded
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
        let mut mac = self.loaded().await?.client_secret.clone();
        mac.update(client_id.as_bytes());
        mac.update(&[0]);
        mac.update(secret.as_bytes());
        let mut text = [0; SECRET_DIGEST_LEN];
        let (prefix, encoded) = text.split_at_mut(SECRET_DIGEST_PREFIX.len());
        prefix.copy_from_slice(SECRET_DIGEST_PREFIX.as_bytes());
        let digest: [u8; 32] = mac.finalize().into_bytes().into();
        encode_digest(&digest, encoded);
        Ok(SecretDigest(text))
    }
}

/// `digest` as 43 characters of base64url without padding, into `out`:
/// a loop of fixed length, where the general engine's set-up for a short
/// input cost more than the encoding (once per client authentication).
fn encode_digest(digest: &[u8; 32], out: &mut [u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    debug_assert_eq!(out.len(), 43, "32 bytes are 43 characters");
    let sextet =
        |bits: u32, shift: u32| ALPHABET[usize::try_from((bits >> shift) & 63).unwrap_or(0)];
    let mut chunks = digest.chunks_exact(3);
    for (chunk, text) in (&mut chunks).zip(out.chunks_exact_mut(4)) {
        let bits = u32::from(chunk[0]) << 16 | u32::from(chunk[1]) << 8 | u32::from(chunk[2]);
        for (at, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            text[at] = sextet(bits, shift);
        }
    }
    // 32 = 10 × 3 + 2: the last two bytes are three characters.
    if let ([first, second], [.., a, b, c]) = (chunks.remainder(), &mut *out) {
        let bits = u32::from(*first) << 16 | u32::from(*second) << 8;
        (*a, *b, *c) = (sextet(bits, 18), sextet(bits, 12), sextet(bits, 6));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// HMAC-SHA256 under `key` of `client-secret`, NUL, id, NUL, secret,
    /// written as client records store it: computed here from the
    /// definition, independently of the prepared state.
    fn expected(key: &[u8; 32], client_id: &str, secret: &str) -> String {
        let mut mac = <HmacSha256 as hmac::KeyInit>::new_from_slice(key).expect("any length");
        for part in [
            b"client-secret".as_slice(),
            b"\0",
            client_id.as_bytes(),
            b"\0",
            secret.as_bytes(),
        ] {
            mac.update(part);
        }
        format!(
            "{SECRET_DIGEST_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    /// The fixed-size encoder writes what the base64 engine writes, for
    /// digests of every byte value in every position.
    #[test]
    fn digests_are_encoded_as_the_base64_engine_encodes_them() {
        for seed in 0_u8..=255 {
            // Each position takes every value once as `seed` goes round.
            let digest: [u8; 32] =
                std::array::from_fn(|at| seed.wrapping_add(u8::try_from(at * 7).unwrap_or(0)));
            let mut encoded = [0_u8; 43];
            encode_digest(&digest, &mut encoded);
            assert_eq!(
                encoded.as_slice(),
                URL_SAFE_NO_PAD.encode(digest).as_bytes()
            );
        }
    }

    /// The digest is HMAC-SHA256 under the deployment key, as stored
    /// records hold it, and follows the key when another is installed: the
    /// prepared state is the current key's, never a previous one's.
    #[tokio::test]
    async fn secret_digests_follow_the_installed_key() {
        let redis = token_test_harness::RedisServer::start();
        let state = crate::test_support::state(&redis);
        let key = state.accounts().deployment_key();
        for byte in [7_u8, 9] {
            let raw = [byte; 32];
            key.install(&URL_SAFE_NO_PAD.encode(raw))
                .await
                .expect("installs");
            let digest = key.secret_digest("gw", "tsc_secret").await.expect("digest");
            assert_eq!(digest.to_text(), expected(&raw, "gw", "tsc_secret"));
            let other = key.secret_digest("gw", "tsc_other").await.expect("digest");
            assert_eq!(other.to_text(), expected(&raw, "gw", "tsc_other"));
        }
    }
}

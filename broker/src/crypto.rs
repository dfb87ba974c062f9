//! Provider tokens encrypted at rest: XChaCha20-Poly1305 (RustCrypto) with
//! key ids, so keys can be rotated.
//!
//! A [`Keyring`] holds one or more 256-bit keys, each with an id; the first
//! is the current one. [`Keyring::seal`] encrypts with the current key and a
//! fresh random 192-bit nonce and answers a [`Sealed`] value that names the
//! key; [`Keyring::open`] decrypts with whichever key the value names, so a
//! key that is no longer current still decrypts until every record has been
//! re-encrypted (on its next write, or by `token-authority connect
//! reencrypt`). The associated data binds a ciphertext to one subject and
//! one provider ([`associated_data`]): a record copied under another user's
//! key does not decrypt.
//!
//! ```
//! use token_broker::crypto::{Keyring, associated_data};
//!
//! let old = Keyring::parse("k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", "CONNECT_KEYS").unwrap();
//! let aad = associated_data("alice-subject", "orcid");
//! let sealed = old.seal(b"secret", &aad).unwrap();
//! // Rotation: a new current key first, the old one still listed.
//! let rotated = Keyring::parse(
//!     "k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8,k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
//!     "CONNECT_KEYS",
//! ).unwrap();
//! assert_eq!(&rotated.open(&sealed, &aad).unwrap()[..], b"secret");
//! assert_eq!(rotated.seal(b"secret", &aad).unwrap().key_id, "k2");
//! assert!(rotated.open(&sealed, &associated_data("mallory", "orcid")).is_err());
//! ```

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use rand::TryRng as _;
use zeroize::Zeroizing;

/// Length of a key, in bytes (256 bits).
pub const KEY_LEN: usize = 32;
/// Length of a nonce, in bytes (XChaCha20: 192 bits, safe to draw at random).
pub const NONCE_LEN: usize = 24;

/// Why a value could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The value names a key this keyring does not have (retired too early).
    #[error("no key with id {0:?} is configured (CONNECT_KEYS)")]
    UnknownKey(String),
    /// Authentication failed: wrong key, tampered value, or associated data
    /// of another subject or provider.
    #[error("the value does not decrypt (tampered, or bound to another subject or provider)")]
    Decrypt,
    /// The value is not well-formed (bad nonce length, bad base64).
    #[error("the stored value is malformed")]
    Malformed,
    /// The OS random generator failed.
    #[error("the random generator failed")]
    Randomness,
}

/// Why a key list (`CONNECT_KEYS`) is refused; never shows key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct KeyringError {
    /// The setting the list came from.
    pub variable: String,
    /// What is wrong with it.
    pub problem: KeyProblem,
}

/// What is wrong with a key list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyProblem {
    /// An entry is not `id:base64key`.
    #[error(
        "expected `id:base64key` entries separated by commas (first = current key), \
         for example `k1:$(openssl rand -base64 32)`"
    )]
    Entry,
    /// A key id is not 1–32 of `A-Z a-z 0-9 _ -`.
    #[error("key id {0:?} must be 1 to 32 characters of A-Z a-z 0-9 _ -")]
    Id(String),
    /// A key id appears twice.
    #[error("key id {0:?} appears twice")]
    Duplicate(String),
    /// A key is not 32 bytes in base64.
    #[error("key {0:?} must be {KEY_LEN} bytes in base64")]
    Length(String),
    /// The list is empty.
    #[error("no key given")]
    Empty,
}

/// Encrypted bytes and what is needed to decrypt them (except the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Which key encrypted it.
    pub key_id: String,
    /// The random nonce used.
    pub nonce: [u8; NONCE_LEN],
    /// Ciphertext with the Poly1305 tag appended.
    pub ciphertext: Vec<u8>,
}

/// The keys that encrypt provider tokens; the first is current.
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<(String, XChaCha20Poly1305)>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("Keyring").field("key_ids", &ids).finish()
    }
}

/// Whether `id` is a usable key id: 1–32 of `A-Z a-z 0-9 _ -`.
#[must_use]
pub fn valid_key_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Decodes base64 key material, standard or URL-safe alphabet, padded or
/// not.
#[must_use]
pub fn decode_key_material(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    let normalized: Zeroizing<String> = Zeroizing::new(
        text.trim()
            .trim_end_matches('=')
            .chars()
            .map(|c| match c {
                '-' => '+',
                '_' => '/',
                other => other,
            })
            .collect(),
    );
    STANDARD_NO_PAD
        .decode(normalized.as_bytes())
        .ok()
        .map(Zeroizing::new)
}

/// The associated data of a connection record: binds the ciphertext to one
/// subject and one provider.
#[must_use]
pub fn associated_data(subject: &str, provider: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(32 + subject.len() + provider.len());
    aad.extend_from_slice(b"token-service/connection/v1\0");
    aad.extend_from_slice(subject.as_bytes());
    aad.push(0);
    aad.extend_from_slice(provider.as_bytes());
    aad
}

impl Keyring {
    /// Reads `id:base64key` entries separated by commas, whitespace or
    /// newlines (the first is current). `variable` names the setting in
    /// errors.
    ///
    /// # Errors
    ///
    /// [`KeyringError`] naming `variable` and the problem (never the key
    /// material).
    pub fn parse(text: &str, variable: &str) -> Result<Self, KeyringError> {
        let refuse = |problem| KeyringError {
            variable: variable.to_owned(),
            problem,
        };
        let mut keys: Vec<(String, XChaCha20Poly1305)> = Vec::new();
        for entry in text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|entry| !entry.is_empty())
        {
            let Some((id, material)) = entry.split_once(':') else {
                return Err(refuse(KeyProblem::Entry));
            };
            if !valid_key_id(id) {
                return Err(refuse(KeyProblem::Id(id.to_owned())));
            }
            if keys.iter().any(|(seen, _)| seen == id) {
                return Err(refuse(KeyProblem::Duplicate(id.to_owned())));
            }
            let cipher = decode_key_material(material)
                .and_then(|bytes| XChaCha20Poly1305::new_from_slice(&bytes).ok())
                .ok_or_else(|| refuse(KeyProblem::Length(id.to_owned())))?;
            keys.push((id.to_owned(), cipher));
        }
        if keys.is_empty() {
            return Err(refuse(KeyProblem::Empty));
        }
        Ok(Self { keys })
    }

    /// The id of the key new values are sealed with.
    #[must_use]
    pub fn current_id(&self) -> &str {
        self.keys.first().map_or("", |(id, _)| id.as_str())
    }

    /// The ids of every key, current first.
    #[must_use]
    pub fn ids(&self) -> Vec<&str> {
        self.keys.iter().map(|(id, _)| id.as_str()).collect()
    }

    /// Encrypts `plaintext` with the current key and a fresh random nonce,
    /// bound to `aad`.
    ///
    /// # Errors
    ///
    /// [`CryptoError::Randomness`] when the OS random generator fails.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Sealed, CryptoError> {
        let (id, cipher) = self.keys.first().ok_or(CryptoError::Randomness)?;
        let mut nonce = [0_u8; NONCE_LEN];
        rand::rngs::SysRng
            .try_fill_bytes(&mut nonce)
            .map_err(|_| CryptoError::Randomness)?;
        let ciphertext = cipher
            .encrypt(
                (&nonce).into(),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| CryptoError::Randomness)?;
        Ok(Sealed {
            key_id: id.clone(),
            nonce,
            ciphertext,
        })
    }

    /// Decrypts `sealed` with the key it names, checking `aad`.
    ///
    /// # Errors
    ///
    /// [`CryptoError::UnknownKey`] when that key is not configured,
    /// [`CryptoError::Decrypt`] when authentication fails.
    pub fn open(&self, sealed: &Sealed, aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let (_, cipher) = self
            .keys
            .iter()
            .find(|(id, _)| *id == sealed.key_id)
            .ok_or_else(|| CryptoError::UnknownKey(sealed.key_id.clone()))?;
        cipher
            .decrypt(
                (&sealed.nonce).into(),
                Payload {
                    msg: &sealed.ciphertext,
                    aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Decrypt)
    }

    /// Whether `sealed` was made with the current key (nothing to rotate).
    #[must_use]
    pub fn is_current(&self, sealed: &Sealed) -> bool {
        sealed.key_id == self.current_id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K2: &str = "k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8";

    /// A sealed value opens with the same key and associated data, and the
    /// ciphertext does not contain the plaintext.
    #[test]
    fn round_trip() {
        let keys = Keyring::parse(K1, "CONNECT_KEYS").expect("valid");
        let aad = associated_data("alice", "orcid");
        let sealed = keys.seal(b"the provider token", &aad).expect("seal");
        assert_eq!(sealed.key_id, "k1");
        assert!(
            !sealed
                .ciphertext
                .windows(5)
                .any(|window| window == b"token")
        );
        assert_eq!(
            &keys.open(&sealed, &aad).expect("open")[..],
            b"the provider token"
        );
    }

    /// Every seal draws a new nonce: the same plaintext never encrypts the
    /// same way twice.
    #[test]
    fn fresh_nonces() {
        let keys = Keyring::parse(K1, "CONNECT_KEYS").expect("valid");
        let aad = associated_data("alice", "orcid");
        let a = keys.seal(b"x", &aad).expect("seal");
        let b = keys.seal(b"x", &aad).expect("seal");
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    /// A record bound to one subject or provider does not open for another,
    /// and a flipped bit is detected.
    #[test]
    fn associated_data_and_tampering() {
        let keys = Keyring::parse(K1, "CONNECT_KEYS").expect("valid");
        let sealed = keys
            .seal(b"secret", &associated_data("alice", "orcid"))
            .expect("seal");
        assert_eq!(
            keys.open(&sealed, &associated_data("bob", "orcid")),
            Err(CryptoError::Decrypt)
        );
        assert_eq!(
            keys.open(&sealed, &associated_data("alice", "github")),
            Err(CryptoError::Decrypt)
        );
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(associated_data("ab", "c"), associated_data("a", "bc"));
        let mut tampered = sealed;
        tampered.ciphertext[0] ^= 1;
        assert_eq!(
            keys.open(&tampered, &associated_data("alice", "orcid")),
            Err(CryptoError::Decrypt)
        );
    }

    /// Rotation: with a new current key first, values sealed with the old
    /// key still open and new ones use the new key; once the old key is
    /// removed its values no longer open (named error).
    #[test]
    fn key_rotation() {
        let aad = associated_data("alice", "orcid");
        let old = Keyring::parse(K1, "CONNECT_KEYS").expect("valid");
        let sealed = old.seal(b"secret", &aad).expect("seal");
        let rotated = Keyring::parse(&format!("{K2},{K1}"), "CONNECT_KEYS").expect("valid");
        assert_eq!(rotated.current_id(), "k2");
        assert!(!rotated.is_current(&sealed));
        assert_eq!(
            &rotated.open(&sealed, &aad).expect("old key")[..],
            b"secret"
        );
        let resealed = rotated.seal(b"secret", &aad).expect("seal");
        assert!(rotated.is_current(&resealed));
        let retired = Keyring::parse(K2, "CONNECT_KEYS").expect("valid");
        assert_eq!(
            retired.open(&sealed, &aad),
            Err(CryptoError::UnknownKey("k1".into()))
        );
        assert_eq!(
            &retired.open(&resealed, &aad).expect("new key")[..],
            b"secret"
        );
    }

    /// Key lists are checked: form, id, length, duplicates; errors name the
    /// variable and never the key.
    #[test]
    fn parsing() {
        let two = Keyring::parse(&format!("{K2}\n{K1}\n"), "CONNECT_KEYS_FILE").expect("lines");
        assert_eq!(two.ids(), ["k2", "k1"]);
        for bad in [
            "",
            "nokey",
            "k1:c2hvcnQ",
            "bad id:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
            &format!("{K1},{K1}"),
        ] {
            let error = Keyring::parse(bad, "CONNECT_KEYS").unwrap_err().to_string();
            assert!(error.starts_with("CONNECT_KEYS:"), "{error}");
            assert!(!error.contains("AAECAw"), "{error}");
        }
        assert!(!format!("{two:?}").contains("AAECAw"));
    }
}

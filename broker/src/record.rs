//! What is stored about one (user, provider) connection.
//!
//! [`Connection`] is the plaintext: the provider's tokens and their times.
//! It only ever exists in memory; in Redis it is a [`Stored`] value, JSON
//! with the subject, the key id, the nonce and the AEAD ciphertext
//! ([`crate::crypto`]), or a [`Stored::Reconnect`] tombstone left
//! when the provider refused the refresh token (no secrets in it), so that
//! the user is told to reconnect instead of "not connected".

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use serde::{Deserialize, Serialize};
use token_repository::Timestamp;
use zeroize::{Zeroize as _, Zeroizing};

use crate::crypto::{CryptoError, Keyring, NONCE_LEN, Sealed, associated_data};

/// A user's connection to one provider, decrypted.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    /// The user's username when they connected (to check the account when
    /// a service client asks for the token).
    pub username: String,
    /// The provider's access token.
    pub access_token: String,
    /// Its type, as the provider said (`Bearer`).
    pub token_type: String,
    /// The provider's refresh token, if it issued one.
    pub refresh_token: Option<String>,
    /// When the access token expires, Unix milliseconds.
    pub expires_at: u64,
    /// The scope the provider granted, if it said.
    pub scope: Option<String>,
    /// When the user connected, Unix milliseconds.
    pub connected_at: u64,
    /// When the current tokens were obtained (connect or last refresh).
    pub refreshed_at: u64,
    /// The provider account (the ID token's `sub`), when the provider sent
    /// an ID token at the connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_subject: Option<String>,
    /// When the refresh token expires, Unix milliseconds, when known (the
    /// token response's `refresh_expires_in`, or the provider's
    /// `refresh_token_expires_in`). Records written before this field
    /// existed read as unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_expires_at: Option<u64>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.access_token.zeroize();
        if let Some(refresh) = self.refresh_token.as_mut() {
            refresh.zeroize();
        }
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("username", &self.username)
            .field("has_refresh_token", &self.refresh_token.is_some())
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .field("refreshed_at", &self.refreshed_at)
            .field("refresh_expires_at", &self.refresh_expires_at)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Time left on the access token at `now`.
    #[must_use]
    pub fn remaining(&self, now: Timestamp) -> Duration {
        now.until(Timestamp::from_unix_millis(self.expires_at))
    }

    /// Whether the access token is valid for at least `at_least` from
    /// `now` (and has not expired, for zero).
    #[must_use]
    pub fn valid_for(&self, now: Timestamp, at_least: Duration) -> bool {
        let remaining = self.remaining(now);
        !remaining.is_zero() && remaining >= at_least
    }

    /// How long the provider let the current access token live.
    #[must_use]
    pub fn lifetime(&self) -> Duration {
        Timestamp::from_unix_millis(self.refreshed_at)
            .until(Timestamp::from_unix_millis(self.expires_at))
    }

    /// Whether the refresh token is known to have expired at `now`.
    #[must_use]
    pub fn refresh_expired(&self, now: Timestamp) -> bool {
        self.refresh_expires_at
            .is_some_and(|at| now.as_unix_millis() >= at)
    }

    /// Whether a refresh can be tried: a refresh token not known to have
    /// expired.
    #[must_use]
    pub fn refreshable(&self, now: Timestamp) -> bool {
        self.refresh_token.is_some() && !self.refresh_expired(now)
    }

    /// Usable without the user: a refresh token that has not expired, or
    /// a live access token.
    #[must_use]
    pub fn usable(&self, now: Timestamp) -> bool {
        self.refreshable(now) || !self.remaining(now).is_zero()
    }

    /// When the connection stops working without the user, Unix
    /// milliseconds, when known: the refresh token's expiry, or the access
    /// token's when there is no refresh token. `None`: a refresh token of
    /// unknown lifetime.
    #[must_use]
    pub fn ends_at(&self) -> Option<u64> {
        if self.refresh_token.is_some() {
            self.refresh_expires_at
        } else {
            Some(self.expires_at)
        }
    }
}

/// The value of a `conn:` key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Stored {
    /// An encrypted [`Connection`].
    Sealed {
        /// The subject it belongs to (also bound in the associated data).
        sub: String,
        /// The key that encrypted it.
        kid: String,
        /// The nonce, base64.
        nonce: String,
        /// Ciphertext and tag, base64.
        ct: String,
    },
    /// The provider refused the refresh token: the tokens are gone and the
    /// user must connect again.
    Reconnect {
        /// The subject it belongs to.
        sub: String,
        /// Why (`invalid_grant`, …).
        reason: String,
        /// When, Unix milliseconds.
        at: u64,
    },
}

/// Why a stored value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Not JSON of the expected shape.
    #[error("the stored connection is not readable")]
    Malformed,
    /// It names another subject than the key it was found under.
    #[error("the stored connection belongs to another subject")]
    WrongSubject,
    /// Decryption failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

impl Stored {
    /// Reads a stored value.
    ///
    /// # Errors
    ///
    /// [`RecordError::Malformed`].
    pub fn parse(text: &str) -> Result<Self, RecordError> {
        serde_json::from_str(text).map_err(|_| RecordError::Malformed)
    }

    /// The stored text.
    #[must_use]
    pub fn to_text(&self) -> String {
        // Plain strings and integers always serialise.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The subject the value belongs to.
    #[must_use]
    pub fn subject(&self) -> &str {
        match self {
            Self::Sealed { sub, .. } | Self::Reconnect { sub, .. } => sub,
        }
    }

    /// Encrypts `connection` for `subject` / `provider` with the current key.
    ///
    /// # Errors
    ///
    /// [`CryptoError::Randomness`].
    pub fn seal(
        keys: &Keyring,
        subject: &str,
        provider: &str,
        connection: &Connection,
    ) -> Result<Self, RecordError> {
        let plaintext = Zeroizing::new(serde_json::to_vec(connection).unwrap_or_default());
        let sealed = keys.seal(&plaintext, &associated_data(subject, provider))?;
        Ok(Self::envelope(subject, sealed))
    }

    /// The stored form of `sealed` bytes of `subject` (also used for
    /// [`crate::credentials`] records).
    #[must_use]
    pub fn envelope(subject: &str, sealed: Sealed) -> Self {
        Self::Sealed {
            sub: subject.to_owned(),
            kid: sealed.key_id,
            nonce: STANDARD_NO_PAD.encode(sealed.nonce),
            ct: STANDARD_NO_PAD.encode(sealed.ciphertext),
        }
    }

    /// The encrypted parts of a sealed value.
    ///
    /// # Errors
    ///
    /// [`RecordError::Malformed`] for bad base64 or a tombstone.
    pub fn sealed(&self) -> Result<Sealed, RecordError> {
        let Self::Sealed { kid, nonce, ct, .. } = self else {
            return Err(RecordError::Malformed);
        };
        let nonce: [u8; NONCE_LEN] = STANDARD_NO_PAD
            .decode(nonce)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(RecordError::Malformed)?;
        let ciphertext = STANDARD_NO_PAD
            .decode(ct)
            .map_err(|_| RecordError::Malformed)?;
        Ok(Sealed {
            key_id: kid.clone(),
            nonce,
            ciphertext,
        })
    }

    /// Decrypts a sealed value found under `subject` / `provider`.
    ///
    /// # Errors
    ///
    /// [`RecordError`] when it belongs to someone else, does not decrypt or
    /// does not parse.
    pub fn open(
        &self,
        keys: &Keyring,
        subject: &str,
        provider: &str,
    ) -> Result<Connection, RecordError> {
        if self.subject() != subject {
            return Err(RecordError::WrongSubject);
        }
        let plaintext = keys.open(&self.sealed()?, &associated_data(subject, provider))?;
        serde_json::from_slice(&plaintext).map_err(|_| RecordError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

    fn connection() -> Connection {
        Connection {
            username: "alice".into(),
            access_token: "provider-access-token".into(),
            token_type: "Bearer".into(),
            refresh_token: Some("provider-refresh-token".into()),
            expires_at: 10_000,
            scope: Some("openid".into()),
            connected_at: 1_000,
            refreshed_at: 4_000,
            provider_subject: None,
            refresh_expires_at: None,
        }
    }

    /// The stored text holds no token, opens for its subject and provider
    /// only, and a copy relabelled for another subject does not open.
    #[test]
    fn sealed_round_trip() {
        let keys = Keyring::parse(KEYS, "CONNECT_KEYS").expect("keys");
        let stored = Stored::seal(&keys, "alice-sub", "orcid", &connection()).expect("seal");
        let text = stored.to_text();
        assert!(!text.contains("provider-access-token"), "{text}");
        assert!(!text.contains("provider-refresh-token"), "{text}");
        assert!(text.contains("\"kid\":\"k1\""), "{text}");
        let parsed = Stored::parse(&text).expect("parse");
        assert_eq!(
            parsed.open(&keys, "alice-sub", "orcid").expect("open"),
            connection()
        );
        assert_eq!(
            parsed.open(&keys, "bob-sub", "orcid"),
            Err(RecordError::WrongSubject)
        );
        let relabelled = text.replace("alice-sub", "bob-sub");
        assert_eq!(
            Stored::parse(&relabelled)
                .expect("parse")
                .open(&keys, "bob-sub", "orcid"),
            Err(RecordError::Crypto(CryptoError::Decrypt))
        );
    }

    /// Validity windows: lifetime from the last refresh, remaining time.
    #[test]
    fn times() {
        let connection = connection();
        assert_eq!(connection.lifetime(), Duration::from_secs(6));
        let now = Timestamp::from_unix_millis(7_000);
        assert!(connection.valid_for(now, Duration::from_secs(3)));
        assert!(!connection.valid_for(now, Duration::from_millis(3_001)));
        let expired = Timestamp::from_unix_millis(10_000);
        assert!(!connection.valid_for(expired, Duration::ZERO));
        assert!(connection.usable(expired), "a refresh token remains");
        let mut no_refresh = connection;
        no_refresh.refresh_token = None;
        assert!(!no_refresh.usable(expired));
        assert_eq!(no_refresh.ends_at(), Some(10_000));
    }

    /// A refresh token past its known expiry makes the connection
    /// unusable once the access token has expired too; no known expiry
    /// (records written before the field existed) means refreshable.
    #[test]
    fn refresh_token_expiry() {
        let mut connection = connection();
        let old = serde_json::to_string(&connection).expect("json");
        assert!(!old.contains("refresh_expires_at"), "{old}");
        let read: Connection = serde_json::from_str(&old).expect("an old record");
        assert_eq!(read.refresh_expires_at, None);
        assert_eq!(read.ends_at(), None);
        assert!(read.refreshable(Timestamp::from_unix_millis(u64::MAX / 2)));
        connection.refresh_expires_at = Some(20_000);
        assert_eq!(connection.ends_at(), Some(20_000));
        let before = Timestamp::from_unix_millis(19_999);
        let at = Timestamp::from_unix_millis(20_000);
        assert!(connection.refreshable(before));
        assert!(!connection.refreshable(at));
        assert!(connection.refresh_expired(at));
        assert!(!connection.usable(at), "access token expired at 10 000 too");
        assert!(connection.usable(Timestamp::from_unix_millis(9_000)));
    }

    /// Debug output never shows a token.
    #[test]
    fn debug_hides_tokens() {
        let text = format!("{:?}", connection());
        assert!(!text.contains("provider-access-token"));
        assert!(!text.contains("provider-refresh-token"));
    }
}

//! Federated accounts: users who sign in with an external identity
//! provider, found by (issuer, subject) and never by e-mail.
//!
//! `P fid:H(issuer NUL subject)` (`H` the keyed digest of
//! [`crate::keynames`], so the key name carries no personal data) holds
//! the account's username; the account's record repeats the identity, and
//! a lookup only answers an account whose record names exactly that
//! identity. The username is [`federated_username`]: derived from the
//! identity, so a lost index entry is found again, and a concurrent first
//! sign-in of the same identity creates one account, not two.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{AccountError, Accounts, User};
use crate::keynames::NameKind;

/// An account's identity at an external provider: the key of a federated
/// account is (`issuer`, `subject`), never an e-mail address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The configured provider it first signed in with.
    pub provider: String,
    /// The provider's issuer.
    pub issuer: String,
    /// `sub` at that issuer.
    pub subject: String,
}

/// The username of a federated account: the provider's configured name, a
/// dot, and 20 base32 characters (100 bits) of the SHA-256 of the issuer
/// and subject: unique per identity, never an e-mail address, at most 53
/// characters, and the same in every deployment.
#[must_use]
pub fn federated_username(provider: &str, issuer: &str, subject: &str) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut hasher = Sha256::new();
    hasher.update(issuer.as_bytes());
    hasher.update([0]);
    hasher.update(subject.as_bytes());
    let digest = hasher.finalize();
    let mut bits: u64 = 0;
    let mut count = 0;
    let mut out = String::with_capacity(provider.len() + 21);
    out.push_str(provider);
    out.push('.');
    for byte in digest.iter() {
        bits = (bits << 8) | u64::from(*byte);
        count += 8;
        while count >= 5 {
            count -= 5;
            out.push(char::from(ALPHABET[((bits >> count) & 31) as usize]));
        }
        if out.len() >= provider.len() + 21 {
            break;
        }
    }
    out.truncate(provider.len() + 21);
    out
}

impl Identity {
    fn matches(&self, user: &User) -> bool {
        user.identity.as_ref().is_some_and(|identity| {
            identity.issuer == self.issuer && identity.subject == self.subject
        })
    }
}

impl Accounts {
    async fn identity_key(&self, identity: &Identity) -> Result<String, AccountError> {
        let text = format!("{}\0{}", identity.issuer, identity.subject);
        let name = self.key.name(NameKind::Identity, &text).await?;
        Ok(self.store.prefix().identity(&name))
    }

    /// The account `identity` signs in as, if any: by the index, or by its
    /// derived username; only an account whose record names this very
    /// identity (a local account with the same e-mail or name is never
    /// one).
    ///
    /// # Errors
    ///
    /// Store failures, unreadable records.
    pub async fn federated_user(&self, identity: &Identity) -> Result<Option<User>, AccountError> {
        let key = self.identity_key(identity).await?;
        let indexed: Option<String> = self
            .store
            .with_shared(|mut connection| async move {
                redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut connection)
                    .await
            })
            .await?;
        if let Some(username) = indexed
            && let Some(user) = self.user(&username).await?
            && identity.matches(&user)
        {
            return Ok(Some(user));
        }
        let derived = federated_username(&identity.provider, &identity.issuer, &identity.subject);
        match self.user(&derived).await? {
            Some(user) if identity.matches(&user) => {
                self.link_identity(identity, &user.username).await?;
                Ok(Some(user))
            }
            _ => Ok(None),
        }
    }

    /// Records that `identity` signs in as `username` (replacing an entry
    /// of a removed account).
    ///
    /// # Errors
    ///
    /// Store failures.
    pub async fn link_identity(
        &self,
        identity: &Identity,
        username: &str,
    ) -> Result<(), AccountError> {
        let key = self.identity_key(identity).await?;
        let username = username.to_owned();
        self.store
            .with_shared(|mut connection| async move {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(&username)
                    .query_async::<()>(&mut connection)
                    .await
            })
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Usernames are valid, stable, differ per identity and per issuer,
    /// and are no e-mail address.
    #[test]
    fn usernames() {
        let name = federated_username("egi", "https://aai.egi.eu", "alice@example.org");
        assert!(super::super::valid_username(&name), "{name}");
        assert!(name.starts_with("egi.") && name.len() == 24, "{name}");
        assert!(!name.contains('@'));
        assert_eq!(
            name,
            federated_username("egi", "https://aai.egi.eu", "alice@example.org")
        );
        assert_ne!(
            name,
            federated_username("egi", "https://aai.egi.eu", "bob@example.org")
        );
        assert_ne!(
            name,
            federated_username("egi", "https://other.example", "alice@example.org")
        );
        let longest = federated_username(&"p".repeat(32), "i", "s");
        assert!(super::super::valid_username(&longest), "{longest}");
    }
}

//! The `state` of an authorization request, and its PKCE pair.
//!
//! A state is `base64url(claims) "." base64url(HMAC-SHA256(key, …))`: it
//! names the user (subject and username) and the provider, carries a
//! random nonce and an expiry, and is signed with `CONNECT_STATE_KEY`, so
//! the callback can trust it without any server-side record of the flow.
//! Nothing in it is secret. Single use is the caller's part: the callback
//! marks the nonce as used in Redis (`SET NX` until the state expires).
//!
//! The PKCE `code_verifier` (RFC 7636, S256) is derived from the same key
//! and the nonce, so it never travels through the browser and needs no
//! storage either: only the authority can compute it again at the callback.
//!
//! ```
//! use std::time::Duration;
//! use token_broker::state::{StateError, StateSigner};
//! use token_repository::Timestamp;
//!
//! let signer = StateSigner::new(&[7; 32], Duration::from_secs(600));
//! let now = Timestamp::now();
//! let issued = signer.issue("subject-1", "alice", "orcid", now).unwrap();
//! let claims = signer.verify(&issued.state, now).unwrap();
//! assert_eq!((claims.subject.as_str(), claims.provider.as_str()), ("subject-1", "orcid"));
//! assert_eq!(issued.code_challenge, StateSigner::challenge(&signer.verifier(&claims.nonce)));
//! let later = now.saturating_add(Duration::from_secs(601));
//! assert_eq!(signer.verify(&issued.state, later), Err(StateError::Expired));
//! ```

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac as _};
use rand::TryRng as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use token_repository::Timestamp;
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

/// Least lifetime of a link ticket ([`StateSigner::issue_ticket`]).
pub const TICKET_TTL: Duration = Duration::from_secs(600);

/// The longest state text accepted (longer ones are not ours).
const MAX_STATE_LEN: usize = 2048;
/// Domain separation of the two uses of the key.
const STATE_CONTEXT: &[u8] = b"token-service/connect-state/v1\0";
const VERIFIER_CONTEXT: &[u8] = b"token-service/pkce-verifier/v1\0";
const OIDC_NONCE_CONTEXT: &[u8] = b"token-service/oidc-nonce/v1\0";

/// Why a state is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// Not a state of this authority's form (or absurdly long).
    #[error("malformed state")]
    Malformed,
    /// The signature does not match: forged or tampered with.
    #[error("the state's signature does not match")]
    Forged,
    /// Genuine, but past its expiry.
    #[error("the state has expired")]
    Expired,
}

/// What a state says, once verified.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateClaims {
    /// Format version (1).
    #[serde(rename = "v")]
    pub version: u8,
    /// Random nonce (128 bits, base64url): the single-use marker's name and
    /// the PKCE verifier's seed.
    #[serde(rename = "n")]
    pub nonce: String,
    /// The user's subject.
    #[serde(rename = "s")]
    pub subject: String,
    /// The user's username (to check the account when a service asks).
    #[serde(rename = "u")]
    pub username: String,
    /// The provider's configured name.
    #[serde(rename = "p")]
    pub provider: String,
    /// Expiry, Unix milliseconds.
    #[serde(rename = "e")]
    pub expires_at: u64,
    /// The browser session the flow is bound to (base64url SHA-256 of its
    /// token, as the authority computes it): the callback
    /// refuses the state in a browser without that session. Absent in the
    /// link tickets of `GET /v1/connect`, which are no states.
    #[serde(rename = "b", default, skip_serializing_if = "Option::is_none")]
    pub browser: Option<String>,
    /// The flow was started on the account page: the callback returns
    /// there.
    #[serde(rename = "a", default, skip_serializing_if = "std::ops::Not::not")]
    pub to_account: bool,
    /// Where the callback sends the browser instead of the success page
    /// (`return_to` of `GET /v1/connect/{provider}/offer`, checked against
    /// `CONNECT_RETURN_URLS` when issued and again at the callback). Signed
    /// with the rest, so it cannot be swapped.
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub return_to: Option<String>,
    /// A sign-in, not a connection (federated sign-in): the subject and
    /// username are empty, `browser` is the sign-in cookie's digest.
    #[serde(rename = "l", default, skip_serializing_if = "Option::is_none")]
    pub login: Option<LoginClaims>,
}

/// What a sign-in state carries besides the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginClaims {
    /// The login option chosen (its name), if the provider has options.
    #[serde(rename = "o", default, skip_serializing_if = "Option::is_none")]
    pub option: Option<String>,
    /// The local path the browser returns to once signed in.
    #[serde(rename = "t")]
    pub return_to: String,
}

/// What a state is bound to besides its user and provider.
#[derive(Debug, Clone, Copy, Default)]
pub struct Binding<'a> {
    /// The browser session (see [`StateClaims::browser`]).
    pub browser: Option<&'a str>,
    /// Return to the account page (see [`StateClaims::to_account`]).
    pub to_account: bool,
    /// Return there (see [`StateClaims::return_to`]).
    pub return_to: Option<&'a str>,
    /// A sign-in (see [`StateClaims::login`]).
    pub login: Option<&'a LoginClaims>,
}

impl fmt::Debug for StateClaims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateClaims")
            .field("subject", &self.subject)
            .field("provider", &self.provider)
            .field("expires_at", &self.expires_at)
            .field("return_to", &self.return_to)
            .finish_non_exhaustive()
    }
}

impl StateClaims {
    /// Time left until expiry, from `now` (zero when expired).
    #[must_use]
    pub fn remaining(&self, now: Timestamp) -> Duration {
        now.until(Timestamp::from_unix_millis(self.expires_at))
    }
}

/// A freshly issued state and the PKCE challenge that goes with it.
#[derive(Debug, Clone)]
pub struct IssuedState {
    /// The `state` parameter.
    pub state: String,
    /// The `code_challenge` parameter (S256).
    pub code_challenge: String,
}

/// Signs and verifies states with the state key.
#[derive(Clone)]
pub struct StateSigner {
    key: Zeroizing<Vec<u8>>,
    ttl: Duration,
}

impl fmt::Debug for StateSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateSigner")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl StateSigner {
    /// A signer with `key` (at least 32 bytes, checked by the
    /// configuration) whose states live for `ttl`.
    #[must_use]
    pub fn new(key: &[u8], ttl: Duration) -> Self {
        Self {
            key: Zeroizing::new(key.to_vec()),
            ttl,
        }
    }

    /// How long a state lives.
    #[must_use]
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn mac(&self, context: &[u8], data: &[u8]) -> HmacSha256 {
        let mut mac = <HmacSha256 as hmac::KeyInit>::new_from_slice(&self.key)
            .expect("HMAC accepts keys of any length");
        mac.update(context);
        mac.update(data);
        mac
    }

    /// A new state for `subject` / `username` connecting `provider`, valid
    /// from `now` for the signer's lifetime.
    ///
    /// # Errors
    ///
    /// When the OS random generator fails.
    pub fn issue(
        &self,
        subject: &str,
        username: &str,
        provider: &str,
        now: Timestamp,
    ) -> Result<IssuedState, rand::rngs::SysError> {
        self.issue_bound(subject, username, provider, now, Binding::default())
    }

    /// A link ticket of `GET /v1/connect` (the state format, unbound, so
    /// the callback refuses it), valid for [`TICKET_TTL`] or the state
    /// lifetime, whichever is longer: the user may have to sign in first.
    /// `return_to` (already checked) goes on into the state of the flow.
    ///
    /// # Errors
    ///
    /// When the OS random generator fails.
    pub fn issue_ticket(
        &self,
        subject: &str,
        username: &str,
        provider: &str,
        now: Timestamp,
        return_to: Option<&str>,
    ) -> Result<IssuedState, rand::rngs::SysError> {
        let ttl = self.ttl.max(TICKET_TTL);
        let later = now.saturating_add(ttl.saturating_sub(self.ttl));
        let binding = Binding {
            return_to,
            ..Binding::default()
        };
        self.issue_bound(subject, username, provider, later, binding)
    }

    /// [`Self::issue`] with a [`Binding`]: to a browser session, to the
    /// account page, to a return URL.
    ///
    /// # Errors
    ///
    /// When the OS random generator fails.
    pub fn issue_bound(
        &self,
        subject: &str,
        username: &str,
        provider: &str,
        now: Timestamp,
        binding: Binding<'_>,
    ) -> Result<IssuedState, rand::rngs::SysError> {
        let mut nonce = [0_u8; 16];
        rand::rngs::SysRng.try_fill_bytes(&mut nonce)?;
        let claims = StateClaims {
            version: 1,
            nonce: URL_SAFE_NO_PAD.encode(nonce),
            subject: subject.to_owned(),
            username: username.to_owned(),
            provider: provider.to_owned(),
            expires_at: now.saturating_add(self.ttl).as_unix_millis(),
            browser: binding.browser.map(str::to_owned),
            to_account: binding.to_account,
            return_to: binding.return_to.map(str::to_owned),
            login: binding.login.cloned(),
        };
        // Serialising plain strings and integers cannot fail.
        let json = serde_json::to_vec(&claims).unwrap_or_default();
        let payload = URL_SAFE_NO_PAD.encode(json);
        let tag = self
            .mac(STATE_CONTEXT, payload.as_bytes())
            .finalize()
            .into_bytes();
        let code_challenge = Self::challenge(&self.verifier(&claims.nonce));
        Ok(IssuedState {
            state: format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag)),
            code_challenge,
        })
    }

    /// Checks a state's form, signature (constant time) and expiry.
    ///
    /// # Errors
    ///
    /// [`StateError`]: expiry is only reported for genuine states.
    pub fn verify(&self, state: &str, now: Timestamp) -> Result<StateClaims, StateError> {
        if state.len() > MAX_STATE_LEN {
            return Err(StateError::Malformed);
        }
        let (payload, tag) = state.split_once('.').ok_or(StateError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| StateError::Malformed)?;
        self.mac(STATE_CONTEXT, payload.as_bytes())
            .verify_slice(&tag)
            .map_err(|_| StateError::Forged)?;
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| StateError::Malformed)?;
        let claims: StateClaims =
            serde_json::from_slice(&json).map_err(|_| StateError::Malformed)?;
        if claims.version != 1 {
            return Err(StateError::Malformed);
        }
        if now.as_unix_millis() >= claims.expires_at {
            return Err(StateError::Expired);
        }
        Ok(claims)
    }

    /// The PKCE `code_verifier` of the state with `nonce`: 43 base64url
    /// characters (256 bits), derived with the key, never stored.
    #[must_use]
    pub fn verifier(&self, nonce: &str) -> Zeroizing<String> {
        let bytes = self
            .mac(VERIFIER_CONTEXT, nonce.as_bytes())
            .finalize()
            .into_bytes();
        Zeroizing::new(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The OpenID Connect `nonce` of the sign-in state with `nonce`:
    /// derived with the key like the verifier (another context), so the
    /// ID token can be checked against it without storage.
    #[must_use]
    pub fn oidc_nonce(&self, nonce: &str) -> String {
        let bytes = self
            .mac(OIDC_NONCE_CONTEXT, nonce.as_bytes())
            .finalize()
            .into_bytes();
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The S256 `code_challenge` of a verifier (RFC 7636 §4.2).
    #[must_use]
    pub fn challenge(verifier: &str) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> StateSigner {
        StateSigner::new(&[42; 32], Duration::from_secs(600))
    }

    /// RFC 7636 Appendix B: the S256 challenge of the example verifier.
    #[test]
    fn s256_known_answer() {
        assert_eq!(
            StateSigner::challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    /// A state verifies, names its user and provider, and its verifier is
    /// a valid RFC 7636 verifier whose challenge was sent.
    #[test]
    fn round_trip() {
        let signer = signer();
        let now = Timestamp::now();
        let issued = signer.issue("sub-1", "alice", "orcid", now).expect("issue");
        let claims = signer.verify(&issued.state, now).expect("valid");
        assert_eq!(claims.subject, "sub-1");
        assert_eq!(claims.username, "alice");
        assert_eq!(claims.provider, "orcid");
        let verifier = signer.verifier(&claims.nonce);
        assert_eq!(verifier.len(), 43);
        assert!(
            verifier
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(StateSigner::challenge(&verifier), issued.code_challenge);
        // Two states never share a nonce (hence a verifier).
        let other = signer.issue("sub-1", "alice", "orcid", now).expect("issue");
        assert_ne!(other.state, issued.state);
        assert_ne!(other.code_challenge, issued.code_challenge);
    }

    /// Changing any part of a state (claims or signature) or signing with
    /// another key is detected; garbage is malformed.
    #[test]
    fn tampering() {
        let signer = signer();
        let now = Timestamp::now();
        let issued = signer.issue("sub-1", "alice", "orcid", now).expect("issue");
        let (payload, tag) = issued.state.split_once('.').expect("two parts");
        // Re-sign nothing, but claim another subject.
        let mut claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json");
        claims["s"] = "sub-2".into();
        let forged_payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        assert_eq!(
            signer.verify(&format!("{forged_payload}.{tag}"), now),
            Err(StateError::Forged)
        );
        let mut bad_tag = URL_SAFE_NO_PAD.decode(tag).expect("b64");
        bad_tag[0] ^= 1;
        assert_eq!(
            signer.verify(
                &format!("{payload}.{}", URL_SAFE_NO_PAD.encode(bad_tag)),
                now
            ),
            Err(StateError::Forged)
        );
        let stranger = StateSigner::new(&[43; 32], Duration::from_secs(600));
        assert_eq!(stranger.verify(&issued.state, now), Err(StateError::Forged));
        for garbage in ["", "abc", "a.b.c", "!!.!!", &"x".repeat(3000)] {
            assert!(signer.verify(garbage, now).is_err(), "{garbage:?}");
        }
    }

    /// A return URL travels signed in the state: it reads back, and a
    /// state whose return URL was swapped does not verify; with the
    /// longest return URL the state stays well under the size limit.
    #[test]
    fn return_url_is_signed() {
        let signer = signer();
        let now = Timestamp::now();
        let binding = Binding {
            browser: Some("b"),
            to_account: false,
            return_to: Some("https://app.example/jobs/1"),
            login: None,
        };
        let issued = signer
            .issue_bound("sub-1", "alice", "orcid", now, binding)
            .expect("issue");
        let claims = signer.verify(&issued.state, now).expect("valid");
        assert_eq!(
            claims.return_to.as_deref(),
            Some("https://app.example/jobs/1")
        );
        let (payload, tag) = issued.state.split_once('.').expect("two parts");
        let mut json: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json");
        json["r"] = "https://evil.example/".into();
        let swapped = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(json.to_string()));
        assert_eq!(signer.verify(&swapped, now), Err(StateError::Forged));
        let long = format!(
            "https://app.example/{}",
            "a".repeat(crate::return_url::MAX_LEN)
        );
        let binding = Binding {
            browser: Some(&"b".repeat(43)),
            to_account: false,
            return_to: Some(&long),
            login: None,
        };
        let issued = signer
            .issue_bound(&"s".repeat(64), &"u".repeat(64), "orcid", now, binding)
            .expect("issue");
        assert!(issued.state.len() < MAX_STATE_LEN, "{}", issued.state.len());
        assert!(signer.verify(&issued.state, now).is_ok());
    }

    /// A genuine state expires after its lifetime, not before.
    #[test]
    fn expiry() {
        let signer = signer();
        let now = Timestamp::now();
        let issued = signer.issue("sub-1", "alice", "orcid", now).expect("issue");
        let almost = now.saturating_add(Duration::from_millis(599_999));
        assert!(signer.verify(&issued.state, almost).is_ok());
        let claims = signer.verify(&issued.state, now).expect("valid");
        assert_eq!(claims.remaining(now), Duration::from_secs(600));
        let after = now.saturating_add(Duration::from_secs(600));
        assert_eq!(
            signer.verify(&issued.state, after),
            Err(StateError::Expired)
        );
    }

    /// Debug output shows no nonce (it seeds the PKCE verifier).
    #[test]
    fn debug_hides_the_nonce() {
        let signer = signer();
        let now = Timestamp::now();
        let issued = signer.issue("sub-1", "alice", "orcid", now).expect("issue");
        let claims = signer.verify(&issued.state, now).expect("valid");
        assert!(!format!("{claims:?}").contains(&claims.nonce));
        assert!(!format!("{signer:?}").contains("42"));
    }
}

//! Property tests of the broker's parsers of untrusted input: the connect
//! `state` a browser brings back, and the provider-token envelope stored in
//! Redis.
//!
//! Each: arbitrary input never panics, and a decode–encode round trip where
//! one exists. Cases per property: `PROPTEST_CASES` (256 by default, what
//! CI runs); the README's "Property tests" section gives the long run.

use std::time::Duration;

use proptest::prelude::*;
use token_repository::Timestamp;

use crate::crypto::Keyring;
use crate::record::{Connection, Stored};
use crate::state::StateSigner;

const KEYS: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

fn connection() -> impl Strategy<Value = Connection> {
    (
        any::<String>(),
        any::<String>(),
        any::<String>(),
        any::<Option<String>>(),
        any::<u64>(),
        any::<Option<String>>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(
                username,
                access_token,
                token_type,
                refresh_token,
                expires_at,
                scope,
                connected_at,
                refreshed_at,
            )| Connection {
                username,
                access_token,
                token_type,
                refresh_token,
                expires_at,
                scope,
                connected_at,
                refreshed_at,
                provider_subject: None,
                refresh_expires_at: None,
            },
        )
}

proptest! {
    /// Any `state` is refused or verified, never a panic; only states this
    /// signer issued verify.
    #[test]
    fn state_verification_never_panics(state in prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_-]{0,200}\\.[A-Za-z0-9_-]{0,60}",
    ]) {
        let signer = StateSigner::new(&[42; 32], Duration::from_secs(600));
        prop_assert!(signer.verify(&state, Timestamp::now()).is_err());
    }

    /// Issued states verify to the claims they were issued with, for any
    /// subject, username and provider; a change to any one character of the
    /// state is refused.
    #[test]
    fn state_round_trip(
        subject in any::<String>(),
        username in any::<String>(),
        provider in any::<String>(),
        at in any::<prop::sample::Index>(),
        replacement in "[A-Za-z0-9_.-]",
    ) {
        let signer = StateSigner::new(&[42; 32], Duration::from_secs(600));
        let now = Timestamp::now();
        let issued = signer.issue(&subject, &username, &provider, now).expect("issue");
        let claims = signer.verify(&issued.state, now).expect("an issued state verifies");
        prop_assert_eq!(&claims.subject, &subject);
        prop_assert_eq!(&claims.username, &username);
        prop_assert_eq!(&claims.provider, &provider);
        prop_assert_eq!(
            StateSigner::challenge(&signer.verifier(&claims.nonce)),
            issued.code_challenge
        );
        let at = at.index(issued.state.len());
        prop_assume!(issued.state[at..=at] != replacement);
        let tampered = format!("{}{replacement}{}", &issued.state[..at], &issued.state[at + 1..]);
        prop_assert!(signer.verify(&tampered, now).is_err(), "{tampered} verified");
    }

    /// Any stored text is an envelope or refused, never a panic; an
    /// envelope that parses prints back to itself, and opening anything not
    /// sealed by this keyring fails.
    #[test]
    fn envelope_parsing_never_panics(
        text in prop_oneof![
            any::<String>(),
            (any::<String>(), "[a-z0-9]{0,4}", "[A-Za-z0-9+/]{0,40}", "[A-Za-z0-9+/]{0,120}")
                .prop_map(|(sub, kid, nonce, ct)| serde_json::json!({
                    "t": "sealed", "sub": sub, "kid": kid, "nonce": nonce, "ct": ct,
                }).to_string()),
            (any::<String>(), any::<String>(), any::<u64>())
                .prop_map(|(sub, reason, at)| serde_json::json!({
                    "t": "reconnect", "sub": sub, "reason": reason, "at": at,
                }).to_string()),
        ],
        provider in "[a-z]{1,8}",
    ) {
        let keys = Keyring::parse(KEYS, "CONNECT_KEYS").expect("keys");
        if let Ok(stored) = Stored::parse(&text) {
            prop_assert_eq!(&Stored::parse(&stored.to_text()).expect("reparse"), &stored);
            let subject = stored.subject().to_owned();
            prop_assert!(stored.open(&keys, &subject, &provider).is_err());
        }
    }

    /// Sealed connections open to the same connection for their subject
    /// and provider (through the stored text), and for no other; the text
    /// holds neither provider token.
    #[test]
    fn envelope_round_trip(
        connection in connection(),
        subject in any::<String>(),
        provider in "[a-z]{1,8}",
        other in "[a-z]{1,8}",
    ) {
        let keys = Keyring::parse(KEYS, "CONNECT_KEYS").expect("keys");
        let stored = Stored::seal(&keys, &subject, &provider, &connection).expect("seal");
        let text = stored.to_text();
        if connection.access_token.len() >= 8 {
            prop_assert!(!text.contains(&connection.access_token));
        }
        let parsed = Stored::parse(&text).expect("the stored text parses");
        let opened = parsed.open(&keys, &subject, &provider).expect("opens");
        prop_assert_eq!(&opened, &connection);
        prop_assume!(other != provider);
        prop_assert!(parsed.open(&keys, &subject, &other).is_err());
        let someone_else = format!("{subject}x");
        prop_assert!(parsed.open(&keys, &someone_else, &provider).is_err());
    }
}

//! Property tests of the token parser, through the public API only
//! (`Token::from_str`, `Token::generate`, `expose_secret`, `Display`), so
//! that they hold for any token format.
//!
//! Cases per property: `PROPTEST_CASES` (256 by default, what CI runs); the
//! README's "Property tests" section gives the long run.

use std::str::FromStr as _;

use proptest::prelude::*;
use token_repository::{SubjectTag, Token, TokenKind};

fn kind() -> impl Strategy<Value = TokenKind> {
    prop_oneof![Just(TokenKind::Access), Just(TokenKind::Refresh)]
}

/// Strings near the token form (right prefixes, base64url characters,
/// lengths around a token's) as well as anything at all.
fn candidate() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "ts[ar]_[A-Za-z0-9_-]{0,80}",
        "[ -~]{0,100}",
    ]
}

fn generated() -> impl Strategy<Value = Token> {
    (kind(), any::<String>()).prop_map(|(kind, subject)| {
        Token::generate(kind, &SubjectTag::of(&subject)).expect("the OS generator")
    })
}

proptest! {
    /// Any string parses or is refused, never panics; what parses is that
    /// very text, and parses again to the same token.
    #[test]
    fn parsing_never_panics(text in candidate()) {
        if let Ok(token) = Token::from_str(&text) {
            prop_assert_eq!(token.expose_secret(), text.as_str());
            let again = Token::from_str(token.expose_secret()).expect("parses twice");
            prop_assert_eq!(again.digest(), token.digest());
        }
    }

    /// Generated tokens round-trip: their text parses back to the same
    /// token (kind, subject tag, digest, id), and the displayed form shows
    /// the kind's prefix but never the secret text.
    #[test]
    fn generated_tokens_round_trip(token in generated()) {
        let parsed = Token::from_str(token.expose_secret()).expect("a generated token parses");
        prop_assert_eq!(&parsed, &token);
        prop_assert_eq!(parsed.kind(), token.kind());
        prop_assert_eq!(parsed.tag(), token.tag());
        prop_assert_eq!(parsed.digest(), token.digest());
        prop_assert_eq!(parsed.id(), token.id());
        let shown = token.to_string();
        prop_assert!(shown.starts_with(token.kind().prefix()));
        prop_assert!(!shown.contains(token.expose_secret()));
        let debug = format!("{token:?}");
        prop_assert!(!debug.contains(token.expose_secret()));
    }

    /// A one-character typo anywhere in a token is refused (checksum,
    /// prefix or encoding), never read as another token.
    #[test]
    fn one_character_typos_are_refused(
        token in generated(),
        at in any::<prop::sample::Index>(),
        replacement in "[A-Za-z0-9_-]",
    ) {
        let text = token.expose_secret();
        let at = at.index(text.len());
        prop_assume!(text[at..=at] != replacement);
        let typo = format!("{}{replacement}{}", &text[..at], &text[at + 1..]);
        prop_assert!(Token::from_str(&typo).is_err(), "{typo} was accepted");
    }

    /// Truncated and extended tokens are refused.
    #[test]
    fn truncated_or_extended_tokens_are_refused(
        token in generated(),
        keep in any::<prop::sample::Index>(),
        extra in "[A-Za-z0-9_=-]{1,8}",
    ) {
        let text = token.expose_secret();
        let truncated = &text[..keep.index(text.len())];
        prop_assert!(Token::from_str(truncated).is_err());
        let extended = format!("{text}{extra}");
        prop_assert!(Token::from_str(&extended).is_err());
    }
}

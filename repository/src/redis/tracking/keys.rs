//! [`TrackedKey`]: what a token's record is stored under, as the
//! invalidations name it; and reading it back out of a pushed key name.

use redis::Value;
use uuid::Uuid;

use crate::keys::KeyPrefix;
use crate::token::{Token, TokenDigest};

/// The Redis key a token's record lives under, as invalidations name it: a
/// token issued today lives in its session (one key per session), one from
/// before the bounded schema under its own digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackedKey {
    /// The session (family) key of format-2 tokens.
    Session(Uuid),
    /// The token key of a format-1 token.
    Token(TokenDigest),
}

impl TrackedKey {
    /// The key `token`'s record lives under.
    #[must_use]
    pub fn of(token: &Token) -> Self {
        token
            .family()
            .map_or(Self::Token(*token.digest()), Self::Session)
    }
}

/// The tracked key prefixes of one key namespace, and how to read a pushed
/// key name.
#[derive(Debug)]
pub(super) struct KeyNames {
    /// `<prefix>s:`
    session: String,
    /// `<prefix>tok:`
    token: String,
}

impl KeyNames {
    pub(super) fn new(prefix: &KeyPrefix) -> Self {
        Self {
            session: prefix.session_tracking_prefix(),
            token: prefix.token_tracking_prefix(),
        }
    }

    /// The prefixes to track, sessions first.
    pub(super) fn prefixes(&self) -> [&str; 2] {
        [&self.session, &self.token]
    }

    /// The tracked key a pushed key name stands for: the session id at the
    /// end of a session key (`<prefix>s:{<tag>}:<16 bytes>`), or the digest
    /// at the end of a format-1 token key (`<prefix>tok:{<tag>}:<32
    /// bytes>`).
    pub(super) fn parse(&self, key: &Value) -> Option<TrackedKey> {
        let bytes = match key {
            Value::BulkString(bytes) => bytes.as_slice(),
            Value::SimpleString(text) => text.as_bytes(),
            _ => return None,
        };
        if bytes.starts_with(self.session.as_bytes()) {
            let start = bytes.len().checked_sub(16)?;
            return Uuid::from_slice(&bytes[start..])
                .ok()
                .map(TrackedKey::Session);
        }
        if bytes.starts_with(self.token.as_bytes()) {
            let start = bytes.len().checked_sub(32)?;
            let mut digest = [0_u8; 32];
            digest.copy_from_slice(&bytes[start..]);
            return Some(TrackedKey::Token(TokenDigest::from_bytes(digest)));
        }
        None
    }

    /// The data of an `invalidate` push: the key names (an array), or nil
    /// for `FLUSHALL` / `FLUSHDB`. Answers the keys read, and whether
    /// everything was flushed.
    pub(super) fn read_push(&self, data: &[Value]) -> (Vec<TrackedKey>, bool) {
        let mut keys = Vec::new();
        let mut flushed = false;
        for value in data {
            match value {
                Value::Array(names) | Value::Set(names) => {
                    keys.extend(names.iter().filter_map(|name| self.parse(name)));
                }
                Value::Nil => flushed = true,
                _ => {}
            }
        }
        (keys, flushed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pushed key names map to the session id or digest at their end;
    /// other keys and values are ignored.
    #[test]
    fn key_names_read_back() {
        let names = KeyNames::new(&KeyPrefix::default());
        let digest = TokenDigest::of("t");
        let key = [b"ts:tok:{abcdefghijklmn}:".as_slice(), digest.as_bytes()].concat();
        assert_eq!(
            names.parse(&Value::BulkString(key)),
            Some(TrackedKey::Token(digest))
        );
        let family = Uuid::from_u128(3);
        let key = [b"ts:s:{abcdefghijklmn}:".as_slice(), family.as_bytes()].concat();
        assert_eq!(
            names.parse(&Value::BulkString(key)),
            Some(TrackedKey::Session(family))
        );
        assert_eq!(names.parse(&Value::BulkString(b"short".to_vec())), None);
        assert_eq!(names.parse(&Value::BulkString(b"ts:user:x".to_vec())), None);
        assert_eq!(names.parse(&Value::Int(1)), None);
    }

    /// An `invalidate` push names keys in an array; nil flushes everything.
    #[test]
    fn pushes_read_back() {
        let names = KeyNames::new(&KeyPrefix::new("app:").expect("prefix"));
        let family = Uuid::from_u128(9);
        let key = [b"app:s:{tag}:".as_slice(), family.as_bytes()].concat();
        let (keys, flushed) = names.read_push(&[Value::Array(vec![
            Value::BulkString(key),
            Value::BulkString(b"ts:s:{tag}:0123456789abcdef".to_vec()),
        ])]);
        assert_eq!(keys, vec![TrackedKey::Session(family)]);
        assert!(!flushed);
        assert_eq!(names.read_push(&[Value::Nil]), (Vec::new(), true));
        assert_eq!(names.prefixes(), ["app:s:", "app:tok:"]);
    }

    /// A token is tracked under its session, or under its digest when it
    /// names none (format 1).
    #[test]
    fn tokens_map_to_their_key() {
        use crate::token::{SubjectTag, TokenKind};
        let tag = SubjectTag::of("s");
        let family = Uuid::from_u128(5);
        let current = Token::generate_in_family(TokenKind::Access, &tag, family).expect("token");
        assert_eq!(TrackedKey::of(&current), TrackedKey::Session(family));
        let old = Token::generate_v1(TokenKind::Access, &tag).expect("token");
        assert_eq!(TrackedKey::of(&old), TrackedKey::Token(*old.digest()));
    }
}

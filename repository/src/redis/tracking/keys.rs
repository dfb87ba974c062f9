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
/// key name: the token keys (read into [`TrackedKey`]s), or other
/// prefixes whose keys are reported by name.
#[derive(Debug)]
pub(super) struct KeyNames {
    /// `<prefix>s:` (empty when token keys are not tracked)
    session: String,
    /// `<prefix>tok:` (empty when token keys are not tracked)
    token: String,
    /// Other prefixes, whose keys are reported by name.
    named: Vec<String>,
}

impl KeyNames {
    /// The token keys of `prefix`.
    pub(super) fn new(prefix: &KeyPrefix) -> Self {
        Self {
            session: prefix.session_tracking_prefix(),
            token: prefix.token_tracking_prefix(),
            named: Vec::new(),
        }
    }

    /// The keys under `prefixes` (full key-name prefixes), reported by
    /// name; no token key.
    pub(super) fn named(prefixes: Vec<String>) -> Self {
        Self {
            session: String::new(),
            token: String::new(),
            named: prefixes,
        }
    }

    /// The prefixes to track, sessions first.
    pub(super) fn prefixes(&self) -> Vec<&str> {
        [self.session.as_str(), self.token.as_str()]
            .into_iter()
            .filter(|prefix| !prefix.is_empty())
            .chain(self.named.iter().map(String::as_str))
            .collect()
    }

    /// The name of a pushed key under one of the named prefixes.
    fn parse_named(&self, key: &Value) -> Option<Vec<u8>> {
        let bytes = key_bytes(key)?;
        self.named
            .iter()
            .any(|prefix| bytes.starts_with(prefix.as_bytes()))
            .then(|| bytes.to_vec())
    }

    /// The tracked key a pushed key name stands for: the session id at the
    /// end of a session key (`<prefix>s:{<tag>}:<16 bytes>`), or the digest
    /// at the end of a format-1 token key (`<prefix>tok:{<tag>}:<32
    /// bytes>`).
    pub(super) fn parse(&self, key: &Value) -> Option<TrackedKey> {
        let bytes = key_bytes(key)?;
        if !self.session.is_empty() && bytes.starts_with(self.session.as_bytes()) {
            let start = bytes.len().checked_sub(16)?;
            return Uuid::from_slice(&bytes[start..])
                .ok()
                .map(TrackedKey::Session);
        }
        if !self.token.is_empty() && bytes.starts_with(self.token.as_bytes()) {
            let start = bytes.len().checked_sub(32)?;
            let mut digest = [0_u8; 32];
            digest.copy_from_slice(&bytes[start..]);
            return Some(TrackedKey::Token(TokenDigest::from_bytes(digest)));
        }
        None
    }

    /// The data of an `invalidate` push: the key names (an array), or nil
    /// for `FLUSHALL` / `FLUSHDB`. Answers the token keys read, the names
    /// of the keys under the named prefixes, and whether everything was
    /// flushed.
    pub(super) fn read_push(&self, data: &[Value]) -> Pushed {
        let mut pushed = Pushed::default();
        for value in data {
            match value {
                Value::Array(names) | Value::Set(names) => {
                    for name in names {
                        if let Some(key) = self.parse(name) {
                            pushed.keys.push(key);
                        } else if let Some(name) = self.parse_named(name) {
                            pushed.names.push(name);
                        }
                    }
                }
                Value::Nil => pushed.flushed = true,
                _ => {}
            }
        }
        pushed
    }
}

/// The bytes of a pushed key name.
fn key_bytes(key: &Value) -> Option<&[u8]> {
    match key {
        Value::BulkString(bytes) => Some(bytes.as_slice()),
        Value::SimpleString(text) => Some(text.as_bytes()),
        _ => None,
    }
}

/// What one `invalidate` push said.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Pushed {
    /// Token keys.
    pub(super) keys: Vec<TrackedKey>,
    /// Keys under the named prefixes, by name.
    pub(super) names: Vec<Vec<u8>>,
    /// Everything was flushed.
    pub(super) flushed: bool,
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
        let pushed = names.read_push(&[Value::Array(vec![
            Value::BulkString(key),
            Value::BulkString(b"ts:s:{tag}:0123456789abcdef".to_vec()),
        ])]);
        assert_eq!(pushed.keys, vec![TrackedKey::Session(family)]);
        assert!(pushed.names.is_empty());
        assert!(!pushed.flushed);
        assert!(names.read_push(&[Value::Nil]).flushed);
        assert_eq!(names.prefixes(), ["app:s:", "app:tok:"]);
    }

    /// Named prefixes report their keys by name, and no token key.
    #[test]
    fn named_prefixes_read_back() {
        let names = KeyNames::named(vec!["app:client:".into(), "app:resources".into()]);
        assert_eq!(names.prefixes(), ["app:client:", "app:resources"]);
        let session = [b"app:s:{tag}:".as_slice(), Uuid::from_u128(1).as_bytes()].concat();
        let pushed = names.read_push(&[Value::Array(vec![
            Value::BulkString(b"app:client:abc".to_vec()),
            Value::BulkString(b"app:resources".to_vec()),
            Value::BulkString(session),
            Value::BulkString(b"app:clients".to_vec()),
        ])]);
        assert!(pushed.keys.is_empty());
        assert_eq!(
            pushed.names,
            vec![b"app:client:abc".to_vec(), b"app:resources".to_vec()]
        );
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

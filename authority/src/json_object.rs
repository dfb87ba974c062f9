//! [`JsonObject`]: a flat JSON object written field by field straight into
//! its body, for the answers written on every call of a hot endpoint
//! (introspection).
//!
//! serde_json, given a struct, writes every key through its serializer
//! state and escapes every string byte by byte through a table: about
//! 4 000 instructions for one introspection answer, more than the rest of
//! writing the response. Here keys are constants written as they are, and
//! a string value is copied at once when a single pass finds nothing to
//! escape in it (URIs, ids, scopes, ordinary names); one that needs
//! escaping is written by serde_json, so the output is exactly serde_json's
//! (the property tests compare the two byte for byte). Numbers are written
//! by `itoa` and UUIDs by `uuid`, not through `core::fmt`.

use bytes::Bytes;
use uuid::Uuid;

/// A JSON object being written: `{`, then each field, then [`Self::finish`].
#[derive(Debug)]
pub struct JsonObject {
    body: Vec<u8>,
}

impl JsonObject {
    /// An empty object with room for `capacity` bytes (an introspection
    /// answer fits in 512).
    #[must_use]
    pub fn with_capacity(capacity: usize) -> Self {
        let mut body = Vec::with_capacity(capacity);
        body.push(b'{');
        Self { body }
    }

    /// `"key":`, after a comma unless it is the first field. Keys are
    /// constants that need no escaping.
    fn key(&mut self, key: &'static str) {
        debug_assert!(!needs_escaping(key), "{key:?} is not a plain key");
        if self.body.len() > 1 {
            self.body.push(b',');
        }
        self.body.push(b'"');
        self.body.extend_from_slice(key.as_bytes());
        self.body.extend_from_slice(b"\":");
    }

    /// `"key":"value"`, escaped as serde_json escapes it.
    pub fn string(&mut self, key: &'static str, value: &str) -> &mut Self {
        self.key(key);
        push_string(&mut self.body, value);
        self
    }

    /// [`Self::string`] when `value` is `Some`; nothing otherwise.
    pub fn optional_string(&mut self, key: &'static str, value: Option<&str>) -> &mut Self {
        if let Some(value) = value {
            self.string(key, value);
        }
        self
    }

    /// `"key":"a b c"`: `words` joined by single spaces into one string
    /// (a scope, RFC 6749 §3.3), without a joined copy first.
    pub fn words<'w>(
        &mut self,
        key: &'static str,
        words: impl IntoIterator<Item = &'w str>,
    ) -> &mut Self {
        self.key(key);
        let quote = self.body.len();
        self.body.push(b'"');
        for (index, word) in words.into_iter().enumerate() {
            if index > 0 {
                self.body.push(b' ');
            }
            self.body.extend_from_slice(word.as_bytes());
        }
        if needs_escaping_bytes(&self.body[quote + 1..]) {
            // Words of any text: escaped as one string after all.
            let joined = self.body.split_off(quote + 1);
            self.body.truncate(quote);
            let joined = String::from_utf8(joined)
                .unwrap_or_else(|_| unreachable!("joined from whole strings"));
            push_string(&mut self.body, &joined);
        } else {
            self.body.push(b'"');
        }
        self
    }

    /// `"key":"…"` with `value` hyphenated in lower case, as serde writes a
    /// [`Uuid`].
    pub fn uuid(&mut self, key: &'static str, value: Uuid) -> &mut Self {
        self.key(key);
        let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
        self.body.push(b'"');
        self.body
            .extend_from_slice(value.hyphenated().encode_lower(&mut text).as_bytes());
        self.body.push(b'"');
        self
    }

    /// `"key":value` for an unsigned number.
    pub fn number(&mut self, key: &'static str, value: u64) -> &mut Self {
        self.key(key);
        self.body
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        self
    }

    /// `"key":true` or `"key":false`.
    pub fn boolean(&mut self, key: &'static str, value: bool) -> &mut Self {
        self.key(key);
        self.body
            .extend_from_slice(if value { b"true" } else { b"false" });
        self
    }

    /// `"key":["a","b"]`: an array of strings (empty included).
    pub fn strings<S: AsRef<str>>(&mut self, key: &'static str, values: &[S]) -> &mut Self {
        self.key(key);
        self.body.push(b'[');
        for (index, value) in values.iter().enumerate() {
            if index > 0 {
                self.body.push(b',');
            }
            push_string(&mut self.body, value.as_ref());
        }
        self.body.push(b']');
        self
    }

    /// The object closed, as a response body.
    #[must_use]
    pub fn finish(mut self) -> Bytes {
        self.body.push(b'}');
        Bytes::from(self.body)
    }
}

/// Whether serde_json would escape anything in `text`: a control
/// character, a quote or a backslash.
fn needs_escaping(text: &str) -> bool {
    needs_escaping_bytes(text.as_bytes())
}

/// [`needs_escaping`] over bytes: one pass without an early exit, so that
/// the compiler checks many bytes per instruction.
fn needs_escaping_bytes(bytes: &[u8]) -> bool {
    bytes.iter().fold(false, |found, &byte| {
        found | (byte < 0x20) | (byte == b'"') | (byte == b'\\')
    })
}

/// `text` as a JSON string: copied between quotes when nothing needs
/// escaping, else written by serde_json.
fn push_string(body: &mut Vec<u8>, text: &str) {
    if needs_escaping(text) {
        // Writing a `&str` into a `Vec` cannot fail.
        if serde_json::to_writer(&mut *body, text).is_err() {
            unreachable!("a string always serializes into a Vec");
        }
    } else {
        body.push(b'"');
        body.extend_from_slice(text.as_bytes());
        body.push(b'"');
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn text(body: &Bytes) -> &str {
        std::str::from_utf8(body).expect("UTF-8")
    }

    #[test]
    fn fields_are_written_in_order_with_commas() {
        let mut object = JsonObject::with_capacity(64);
        object
            .boolean("active", true)
            .words("scope", ["read", "write"])
            .optional_string("name", None)
            .optional_string("email", Some("a@example.com"))
            .number("exp", 1_796_658_386)
            .uuid("jti", Uuid::from_u128(0xABCD))
            .strings("aud", &["https://a.example", "https://b.example"])
            .strings::<&str>("none", &[])
            .words("empty", []);
        assert_eq!(
            text(&object.finish()),
            r#"{"active":true,"scope":"read write","email":"a@example.com","exp":1796658386,"jti":"00000000-0000-0000-0000-00000000abcd","aud":["https://a.example","https://b.example"],"none":[],"empty":""}"#
        );
    }

    #[test]
    fn an_empty_object_is_braces() {
        assert_eq!(text(&JsonObject::with_capacity(2).finish()), "{}");
    }

    /// Words that need escaping are escaped as one string, not copied.
    #[test]
    fn words_are_escaped_when_they_need_to_be() {
        let mut object = JsonObject::with_capacity(16);
        object.words("k", ["say", "\"hi\"\n"]);
        assert_eq!(text(&object.finish()), r#"{"k":"say \"hi\"\n"}"#);
    }

    proptest! {
        /// Every string is written exactly as serde_json writes it, and
        /// reads back as itself: quotes, backslashes, control characters
        /// and non-ASCII included, alone, in arrays and joined as words.
        #[test]
        fn strings_are_written_as_serde_json_writes_them(value in any::<String>(), more in any::<String>()) {
            let mut object = JsonObject::with_capacity(0);
            // Keys in alphabetical order, serde_json's `Map` order.
            object
                .strings("a", &[value.as_str(), more.as_str()])
                .string("s", &value)
                .words("w", [value.as_str(), more.as_str()]);
            let body = object.finish();
            let joined = format!("{value} {more}");
            let expected = serde_json::json!({ "a": [value, more], "s": value, "w": joined });
            prop_assert_eq!(text(&body), serde_json::to_string(&expected).expect("serializes"));
        }
    }
}

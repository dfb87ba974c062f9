//! Strict `application/x-www-form-urlencoded` parsing (RFC 6749 §3.1, §B).
//!
//! Unlike a lenient decoder this one refuses what RFC 6749 refuses:
//! invalid percent-encoding or UTF-8 (no silent replacement characters in a
//! password), and a parameter given more than once (except `resource`,
//! which RFC 8707 repeats: [`Form::get_all`]). Parameters with an empty
//! value count as absent. Values are zeroed when the form is dropped, since
//! they include passwords and secrets.

use http::HeaderMap;
use percent_encoding::percent_decode;
use zeroize::Zeroizing;

/// Why a body is not an acceptable form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// The content type is not `application/x-www-form-urlencoded`.
    #[error("the body must be application/x-www-form-urlencoded")]
    ContentType,
    /// Bad percent-encoding or not UTF-8.
    #[error("the body is not valid form-urlencoded UTF-8")]
    Encoding,
    /// A parameter appears twice (named: parameter names are not secret).
    #[error("parameter {0:?} is repeated")]
    Duplicate(String),
    /// More parameters than any request of this API has.
    #[error("too many parameters")]
    TooMany,
}

const MAX_PARAMETERS: usize = 32;

/// Parameters that may be given more than once (RFC 8707 §2: one
/// `resource` per resource server).
const REPEATABLE: &[&str] = &["resource"];

/// A parsed form.
#[derive(Default)]
pub struct Form {
    pairs: Vec<(String, Zeroizing<String>)>,
}

impl std::fmt::Debug for Form {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.pairs.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("Form").field("names", &names).finish()
    }
}

impl Form {
    /// Checks the content type and parses `body`.
    ///
    /// # Errors
    ///
    /// [`FormError`] for the wrong content type, bad encoding or repeats.
    pub fn from_request(headers: &HeaderMap, body: &[u8]) -> Result<Self, FormError> {
        if !is_form(headers) {
            return Err(FormError::ContentType);
        }
        Self::parse(body)
    }

    /// Parses a form body.
    ///
    /// # Errors
    ///
    /// [`FormError`] for bad encoding or repeated parameters.
    pub fn parse(body: &[u8]) -> Result<Self, FormError> {
        let mut pairs: Vec<(String, Zeroizing<String>)> = Vec::new();
        for part in body.split(|&b| b == b'&').filter(|part| !part.is_empty()) {
            if pairs.len() == MAX_PARAMETERS {
                return Err(FormError::TooMany);
            }
            let (name, value) = match part.iter().position(|&b| b == b'=') {
                Some(at) => (&part[..at], &part[at + 1..]),
                None => (part, &[][..]),
            };
            let name = decode(name)?;
            let value = Zeroizing::new(decode(value)?);
            if !REPEATABLE.contains(&name.as_str()) && pairs.iter().any(|(seen, _)| *seen == name) {
                return Err(FormError::Duplicate(name));
            }
            pairs.push((name, value));
        }
        Ok(Self { pairs })
    }

    /// The value of `name`; `None` when absent or empty.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(own, _)| own == name)
            .map(|(_, value)| value.as_str())
            .filter(|value| !value.is_empty())
    }

    /// Every non-empty value of a repeatable parameter, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(own, _)| own == name)
            .map(|(_, value)| value.as_str())
            .filter(|value| !value.is_empty())
    }
}

/// Whether the request says it carries a form (charset, if any, UTF-8).
fn is_form(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(http::header::CONTENT_TYPE) else {
        return false;
    };
    // What clients send, exactly: no parameters to read.
    if value
        .as_bytes()
        .eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
    {
        return true;
    }
    let Ok(value) = value.to_str() else {
        return false;
    };
    let mut parts = value.split(';').map(str::trim);
    let essence = parts.next().unwrap_or_default();
    essence.eq_ignore_ascii_case("application/x-www-form-urlencoded")
        && parts.all(|parameter| match parameter.split_once('=') {
            Some((key, value)) if key.trim().eq_ignore_ascii_case("charset") => {
                value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
            }
            _ => true,
        })
}

/// One name or value: percent-decoded (`+` is a space), UTF-8, without
/// control characters.
fn decode(raw: &[u8]) -> Result<String, FormError> {
    // One pass over every byte without an early exit, which the compiler
    // turns into many bytes per instruction: any control character, any
    // byte that is not plain ASCII to copy as it is.
    let (control, escaped) = raw
        .iter()
        .fold((false, false), |(control, escaped), &byte| {
            (
                control | (byte < 0x20) | (byte == 0x7f),
                escaped | (byte == b'+') | (byte == b'%') | (byte >= 0x80),
            )
        });
    if control {
        return Err(FormError::Encoding);
    }
    if !escaped {
        // Printable ASCII with nothing to decode (tokens, client ids,
        // grant types): one copy, no intermediate buffers.
        return String::from_utf8(raw.to_vec()).map_err(|_| FormError::Encoding);
    }
    let text = unescape(raw)?;
    if text.chars().any(char::is_control) {
        return Err(FormError::Encoding);
    }
    Ok(text)
}

/// `raw` with `+` as a space and its `%XX` escapes decoded, as UTF-8.
fn unescape(raw: &[u8]) -> Result<String, FormError> {
    // `+` is a space in form encoding; a literal plus arrives as %2B. The
    // copy may hold a password: wiped when dropped.
    let spaced: Zeroizing<Vec<u8>> = Zeroizing::new(
        raw.iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect(),
    );
    // Every `%` must start a valid escape; percent_decode passes bad ones
    // through unchanged, which would be a silent misreading.
    for (at, _) in spaced.iter().enumerate().filter(|(_, b)| **b == b'%') {
        let valid = spaced
            .get(at + 1..at + 3)
            .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit));
        if !valid {
            return Err(FormError::Encoding);
        }
    }
    percent_decode(&spaced)
        .decode_utf8()
        .map(std::borrow::Cow::into_owned)
        .map_err(|_| FormError::Encoding)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ordinary forms decode, with `+` and escapes.
    #[test]
    fn decodes() {
        let form =
            Form::parse(b"grant_type=password&username=al%40ce&password=a+b%2Bc").expect("valid");
        assert_eq!(form.get("grant_type"), Some("password"));
        assert_eq!(form.get("username"), Some("al@ce"));
        assert_eq!(form.get("password"), Some("a b+c"));
        assert_eq!(form.get("scope"), None);
    }

    /// Empty values are absent (RFC 6749 §3.1).
    #[test]
    fn empty_is_absent() {
        let form = Form::parse(b"scope=&username").expect("valid");
        assert_eq!(form.get("scope"), None);
        assert_eq!(form.get("username"), None);
    }

    /// Repeats, broken escapes and invalid UTF-8 are refused.
    #[test]
    fn refuses_what_rfc6749_refuses() {
        assert_eq!(
            Form::parse(b"a=1&a=2").unwrap_err(),
            FormError::Duplicate("a".into())
        );
        assert_eq!(Form::parse(b"a=%zz").unwrap_err(), FormError::Encoding);
        assert_eq!(Form::parse(b"a=%4").unwrap_err(), FormError::Encoding);
        assert_eq!(Form::parse(b"a=%ff%fe").unwrap_err(), FormError::Encoding);
        assert_eq!(Form::parse(b"a=\xff").unwrap_err(), FormError::Encoding);
        assert_eq!(Form::parse(b"a=%00").unwrap_err(), FormError::Encoding);
        // The same checks on a value with nothing to decode.
        assert_eq!(Form::parse(b"a=x\x7fy").unwrap_err(), FormError::Encoding);
        assert_eq!(Form::parse(b"a\x01=1").unwrap_err(), FormError::Encoding);
        let many: Vec<u8> = (0..40)
            .map(|i| format!("p{i}=1&"))
            .collect::<String>()
            .into_bytes();
        assert_eq!(Form::parse(&many).unwrap_err(), FormError::TooMany);
    }

    /// `resource` may repeat (RFC 8707); `get_all` answers every non-empty
    /// value in order, and other parameters stay single.
    #[test]
    fn resource_repeats() {
        let form = Form::parse(b"resource=https%3A%2F%2Fa&resource=&resource=https://b&scope=x")
            .expect("valid");
        assert_eq!(
            form.get_all("resource").collect::<Vec<_>>(),
            ["https://a", "https://b"]
        );
        assert_eq!(form.get_all("scope").collect::<Vec<_>>(), ["x"]);
        assert_eq!(
            Form::parse(b"resource=a&scope=x&scope=y").unwrap_err(),
            FormError::Duplicate("scope".into())
        );
    }

    /// Only the form content type (UTF-8 or no charset) is accepted.
    #[test]
    fn content_type() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(http::header::CONTENT_TYPE, value.parse().expect("header"));
            is_form(&headers)
        };
        assert!(with("application/x-www-form-urlencoded"));
        assert!(with("APPLICATION/X-WWW-FORM-URLENCODED"));
        assert!(with("Application/X-WWW-Form-URLEncoded; charset=UTF-8"));
        assert!(!with("application/x-www-form-urlencodedx"));
        assert!(!with("application/x-www-form-urlencoded; charset=latin1"));
        assert!(!with("application/json"));
        assert!(!with("multipart/form-data; boundary=x"));
        assert!(!is_form(&HeaderMap::new()));
    }
}

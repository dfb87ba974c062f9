//! Strict JSON request bodies.

use http::HeaderMap;
use serde::de::DeserializeOwned;

use crate::problem::Problem;

/// Parses a JSON body: the content type must be `application/json` (UTF-8),
/// unknown fields are refused by the target types.
///
/// # Errors
///
/// 400 `invalid_request` naming the problem (never echoing values).
pub fn parse<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, Problem> {
    let is_json = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(Problem::invalid_request(
            "the body must be application/json",
        ));
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|error| describe(&error))?;
    // serde would also read a struct from an array, by position: refuse it.
    if !value.is_object() {
        return Err(Problem::invalid_request("the body must be a JSON object"));
    }
    serde_json::from_value(value).map_err(|error| describe(&error))
}

fn describe(error: &serde_json::Error) -> Problem {
    let what = match error.classify() {
        serde_json::error::Category::Data => "the JSON does not have the expected fields",
        serde_json::error::Category::Eof => "the JSON is truncated",
        _ => "the body is not valid JSON",
    };
    if error.line() == 0 {
        Problem::invalid_request(what)
    } else {
        Problem::invalid_request(format!(
            "{what} (line {}, column {})",
            error.line(),
            error.column()
        ))
    }
}

/// Deserialises a field that may be absent (`None`), `null` (`Some(None)`)
/// or a value: for "clear this field" in PATCH bodies.
///
/// # Errors
///
/// The deserializer's errors.
pub fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    serde::Deserialize::deserialize(deserializer).map(Some)
}

/// Deserialises an optional field that must not be `null`: absent is
/// `None`, a value is `Some`, and `null` is refused like any other value of
/// the wrong type (use with `#[serde(default)]`).
///
/// # Errors
///
/// The deserializer's errors, including for `null`.
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[allow(dead_code)]
        name: Option<String>,
    }

    fn json_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            "application/json".parse().expect("header"),
        );
        headers
    }

    /// Only JSON objects are bodies: serde would read an array by position.
    #[test]
    fn arrays_are_not_objects() {
        assert!(parse::<Body>(&json_headers(), br#"{"name":"x"}"#).is_ok());
        let error = parse::<Body>(&json_headers(), br#"["x"]"#).unwrap_err();
        assert_eq!(error.code(), "invalid_request");
        assert!(parse::<Body>(&json_headers(), b"null").is_err());
        assert!(parse::<Body>(&json_headers(), br#"{"name":"x","extra":1}"#).is_err());
    }
}

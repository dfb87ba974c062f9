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
    serde_json::from_slice(body).map_err(|error| {
        let what = match error.classify() {
            serde_json::error::Category::Data => "the JSON does not have the expected fields",
            serde_json::error::Category::Eof => "the JSON is truncated",
            _ => "the body is not valid JSON",
        };
        Problem::invalid_request(format!(
            "{what} (line {}, column {})",
            error.line(),
            error.column()
        ))
    })
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

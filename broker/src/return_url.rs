//! `CONNECT_RETURN_URLS`: where an application may ask the callback to
//! send the browser back to (`return_to` of
//! `GET /v1/connect/{provider}/offer`).
//!
//! An entry is an exact origin (`https://app.example`: any path there) or
//! an origin and a path prefix (`https://app.example/jobs/`). A candidate
//! is parsed as a URL (WHATWG rules, so `..` segments and backslashes are
//! resolved before the comparison) and matches when its scheme, host and
//! port equal the entry's and its path lies under the entry's on a segment
//! boundary (`/jobs` allows `/jobs` and `/jobs/…`, never `/jobsx`). URLs
//! with user information or a fragment are refused outright, so
//! `https://app.example@evil` or `https://app.example.evil` never match
//! `https://app.example`; nor does a relative `//evil`.
//!
//! ```
//! use token_broker::return_url::ReturnUrls;
//!
//! let allowed = ReturnUrls::parse("https://app.example, https://jobs.example:8443/runs/").unwrap();
//! assert!(allowed.check("https://app.example/anything?x=1").is_ok());
//! assert!(allowed.check("https://jobs.example:8443/runs/42").is_ok());
//! assert!(allowed.check("https://jobs.example:8443/other").is_err());
//! assert!(allowed.check("https://app.example.evil/").is_err());
//! assert!(allowed.check("https://app.example@evil/").is_err());
//! ```

use reqwest::Url;

/// The longest `return_to` accepted, in bytes (it travels in the state).
pub const MAX_LEN: usize = 512;

/// Why a return URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReturnUrlError {
    /// Not an absolute `http(s)://` URL (or too long).
    #[error("return_to must be an absolute http(s) URL of at most {MAX_LEN} bytes")]
    Invalid,
    /// It has user information (`user@`) or a fragment (`#…`).
    #[error("return_to may have neither user information (user@) nor a fragment (#)")]
    Forbidden,
    /// No entry of `CONNECT_RETURN_URLS` allows it.
    #[error("return_to is not allowed by CONNECT_RETURN_URLS")]
    NotAllowed,
}

/// One entry: an origin, and a path prefix (`/` for the whole origin).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    scheme: String,
    host: String,
    port: Option<u16>,
    path: String,
}

/// The allow-list of return URLs (empty: `return_to` is refused).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReturnUrls {
    entries: Vec<Entry>,
}

/// Parses an absolute http(s) URL without user information or fragment.
fn parse_url(text: &str) -> Result<Url, ReturnUrlError> {
    if text.is_empty() || text.len() > MAX_LEN || text.trim() != text {
        return Err(ReturnUrlError::Invalid);
    }
    let url = Url::parse(text).map_err(|_| ReturnUrlError::Invalid)?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ReturnUrlError::Invalid);
    }
    if !url.username().is_empty() || url.password().is_some() || text.contains('#') {
        return Err(ReturnUrlError::Forbidden);
    }
    Ok(url)
}

impl Entry {
    fn of(url: &Url) -> Self {
        Self {
            scheme: url.scheme().to_owned(),
            host: url.host_str().unwrap_or_default().to_owned(),
            port: url.port_or_known_default(),
            path: url.path().to_owned(),
        }
    }

    fn allows(&self, candidate: &Self) -> bool {
        if (&self.scheme, &self.host, self.port)
            != (&candidate.scheme, &candidate.host, candidate.port)
        {
            return false;
        }
        let prefix = self.path.trim_end_matches('/');
        prefix.is_empty()
            || candidate.path == prefix
            || candidate
                .path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

impl ReturnUrls {
    /// Reads `CONNECT_RETURN_URLS`: comma-separated origins or origins
    /// with a path prefix, no query, user information or fragment.
    ///
    /// # Errors
    ///
    /// The problem with the first bad entry (for the configuration error).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut entries = Vec::new();
        for item in text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
        {
            let url = parse_url(item).map_err(|error| {
                format!(
                    "{item:?}: {}",
                    error.to_string().replace("return_to", "an entry")
                )
            })?;
            if url.query().is_some() {
                return Err(format!("{item:?}: an entry has no query"));
            }
            entries.push(Entry::of(&url));
        }
        Ok(Self { entries })
    }

    /// Whether no return URL is allowed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Checks `candidate`; answers its normalised form (what the browser
    /// is sent to).
    ///
    /// # Errors
    ///
    /// [`ReturnUrlError`].
    pub fn check(&self, candidate: &str) -> Result<String, ReturnUrlError> {
        let url = parse_url(candidate)?;
        let entry = Entry::of(&url);
        if !self.entries.iter().any(|allowed| allowed.allows(&entry)) {
            return Err(ReturnUrlError::NotAllowed);
        }
        let normalised = String::from(url);
        if normalised.len() > MAX_LEN {
            return Err(ReturnUrlError::Invalid);
        }
        Ok(normalised)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> ReturnUrls {
        ReturnUrls::parse(
            "https://app.example, https://jobs.example/runs/,http://127.0.0.1:8080/ui",
        )
        .expect("valid")
    }

    /// Listed origins and prefixes are allowed, normalised.
    #[test]
    fn allowed_urls() {
        let allowed = allowed();
        for (candidate, normalised) in [
            ("https://app.example", "https://app.example/"),
            ("https://APP.example:443/x?y=1", "https://app.example/x?y=1"),
            ("https://jobs.example/runs/7", "https://jobs.example/runs/7"),
            ("https://jobs.example/runs", "https://jobs.example/runs"),
            (
                "http://127.0.0.1:8080/ui/a/b",
                "http://127.0.0.1:8080/ui/a/b",
            ),
            ("http://127.0.0.1:8080/ui", "http://127.0.0.1:8080/ui"),
        ] {
            assert_eq!(
                allowed.check(candidate).as_deref(),
                Ok(normalised),
                "{candidate}"
            );
        }
    }

    /// Look-alikes, other schemes, ports and paths, user information,
    /// fragments, relative URLs and path tricks are all refused.
    #[test]
    fn refused_urls() {
        let allowed = allowed();
        for candidate in [
            "https://app.example.evil/",
            "https://evil.example/https://app.example",
            "https://app.example@evil/",
            "https://user:pass@app.example/",
            "https://app.example/#frag",
            "https://app.example/#",
            "//evil",
            "//app.example/",
            "/relative",
            "http://app.example/",
            "https://app.example:8443/",
            "https://jobs.example/runsx",
            "https://jobs.example/other",
            "https://jobs.example/runs/../admin",
            "https://jobs.example/runs/%2e%2e/admin",
            "https://jobs.example/runs\\..\\admin",
            "http://127.0.0.1:8081/ui",
            "http://127.0.0.1/ui",
            "javascript:alert(1)",
            "data:text/html,x",
            " https://app.example/",
            "",
        ] {
            assert!(allowed.check(candidate).is_err(), "{candidate:?}");
        }
        let long = format!("https://app.example/{}", "a".repeat(MAX_LEN));
        assert_eq!(allowed.check(&long), Err(ReturnUrlError::Invalid));
        assert!(ReturnUrls::default().check("https://app.example/").is_err());
    }

    /// Bad entries are named.
    #[test]
    fn bad_entries() {
        for text in [
            "app.example",
            "https://app.example/?x=1",
            "https://u@app.example",
            "ftp://app.example",
            "https://app.example/#x",
        ] {
            assert!(ReturnUrls::parse(text).is_err(), "{text}");
        }
        assert!(ReturnUrls::parse("").expect("empty").is_empty());
    }
}

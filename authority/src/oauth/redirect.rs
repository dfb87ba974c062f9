//! Redirect URIs of the authorization code flow: what may be registered,
//! and when a presented one matches a registered one.
//!
//! Matching is exact string comparison (RFC 9700 §4.1.3), with one
//! exception: a registered loopback URI of a native app
//! (`http://127.0.0.1/…`, `http://[::1]/…`) matches the same URI on any
//! port, since the app listens on whatever port the OS gave it (RFC 8252
//! §7.3). `localhost` gets no such exception (RFC 8252 §8.3).

/// Most redirect URIs one client may register.
pub const MAX_REDIRECT_URIS: usize = 10;
/// Longest redirect URI accepted, registered or presented.
pub const MAX_REDIRECT_URI_LEN: usize = 512;

const LOOPBACK_PREFIXES: [&str; 2] = ["http://127.0.0.1", "http://[::1]"];

/// Checks redirect URIs for registration: absolute, no fragment, at most
/// [`MAX_REDIRECT_URI_LEN`] long; `https`, `http` only on loopback hosts
/// (an IP literal or `localhost`), or a private-use scheme of a native app
/// with a dot in it (`com.example.app:/callback`, RFC 8252 §7.1).
///
/// # Errors
///
/// A message naming the first unacceptable URI.
pub fn check_registration(uris: &[String]) -> Result<(), String> {
    if uris.len() > MAX_REDIRECT_URIS {
        return Err(format!(
            "at most {MAX_REDIRECT_URIS} redirect URIs per client"
        ));
    }
    for (index, uri) in uris.iter().enumerate() {
        check_one(uri).map_err(|problem| format!("redirect URI {uri:?}: {problem}"))?;
        if uris[..index].contains(uri) {
            return Err(format!("redirect URI {uri:?} is listed twice"));
        }
    }
    Ok(())
}

fn check_one(uri: &str) -> Result<(), &'static str> {
    if uri.len() > MAX_REDIRECT_URI_LEN {
        return Err("too long");
    }
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains spaces or control characters");
    }
    let parsed = reqwest::Url::parse(uri).map_err(|_| "not an absolute URI")?;
    if parsed.fragment().is_some() || uri.contains('#') {
        return Err("must not have a fragment");
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not carry credentials");
    }
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => {
            let host = parsed.host_str().unwrap_or_default();
            let ip = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>();
            if host == "localhost" || ip.is_ok_and(|ip| ip.is_loopback()) {
                Ok(())
            } else {
                Err("http is only for loopback addresses; use https")
            }
        }
        "javascript" | "data" | "file" | "vbscript" | "blob" | "about" => {
            Err("this scheme is not a redirect target")
        }
        scheme if scheme.contains('.') => Ok(()),
        _ => Err(
            "use https, http on a loopback address, or a private-use scheme like com.example.app",
        ),
    }
}

/// Whether `presented` matches `registered`: equal, or both the same
/// loopback IP URI that differ only in the port.
#[must_use]
pub fn matches(registered: &str, presented: &str) -> bool {
    if registered == presented {
        return true;
    }
    LOOPBACK_PREFIXES.iter().any(|prefix| {
        match (
            strip_port(registered, prefix),
            strip_port(presented, prefix),
        ) {
            (Some(registered), Some(presented)) => registered == presented,
            _ => false,
        }
    })
}

/// The part of `uri` after `prefix` and an optional `:port` (1–65535), when
/// it starts a path, query or ends there.
fn strip_port<'a>(uri: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = uri.strip_prefix(prefix)?;
    let rest = match rest.strip_prefix(':') {
        Some(after) => {
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            let port: u32 = after.get(..digits)?.parse().ok()?;
            if digits == 0 || digits > 5 || !(1..=65_535).contains(&port) {
                return None;
            }
            &after[digits..]
        }
        None => rest,
    };
    (rest.is_empty() || rest.starts_with('/') || rest.starts_with('?')).then_some(rest)
}

/// The registered URI `presented` matches, if any.
#[must_use]
pub fn find<'a>(registered: &'a [String], presented: &str) -> Option<&'a str> {
    registered
        .iter()
        .map(String::as_str)
        .find(|candidate| matches(candidate, presented))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Registration refuses what would make an open redirect or a script.
    #[test]
    fn registration() {
        let ok = |uri: &str| check_registration(&[uri.to_owned()]).is_ok();
        assert!(ok("https://app.example.com/callback"));
        assert!(ok("http://127.0.0.1/callback"));
        assert!(ok("http://127.0.0.1:8400/callback"));
        assert!(ok("http://[::1]/cb"));
        assert!(ok("http://localhost:3000/cb"));
        assert!(ok("com.example.app:/oauth2redirect"));
        for bad in [
            "http://app.example.com/callback",
            "/relative",
            "https://app.example.com/cb#fragment",
            "javascript:alert(1)",
            "data:text/html,hi",
            "https://user:pw@app.example.com/",
            "https://app.example.com/a b",
            "custom:/no-dot",
            &format!("https://a.example/{}", "x".repeat(600)),
        ] {
            assert!(!ok(bad), "{bad}");
        }
        let twice = vec![
            "https://a.example/".to_owned(),
            "https://a.example/".to_owned(),
        ];
        assert!(check_registration(&twice).is_err());
    }

    /// Exact match, except the port of loopback IP URIs.
    #[test]
    fn matching() {
        assert!(matches("https://a.example/cb", "https://a.example/cb"));
        assert!(!matches("https://a.example/cb", "https://a.example/cb/"));
        assert!(!matches("https://a.example/cb", "https://a.example/CB"));
        assert!(!matches("https://a.example/cb", "https://a.example/cb?x=1"));
        assert!(!matches("https://a.example/cb", "https://a.example:443/cb"));
        assert!(matches("http://127.0.0.1/cb", "http://127.0.0.1:51234/cb"));
        assert!(matches("http://127.0.0.1:80/cb", "http://127.0.0.1:9/cb"));
        assert!(matches("http://[::1]/cb", "http://[::1]:4000/cb"));
        assert!(!matches("http://127.0.0.1/cb", "http://127.0.0.1:0/cb"));
        assert!(!matches("http://127.0.0.1/cb", "http://127.0.0.1:70000/cb"));
        assert!(!matches("http://127.0.0.1/cb", "http://127.0.0.1:80/other"));
        assert!(!matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1.evil.example/cb"
        ));
        assert!(!matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:80@evil.example/cb"
        ));
        assert!(!matches("http://localhost/cb", "http://localhost:80/cb"));
    }
}

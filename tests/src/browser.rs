//! A cookie-keeping HTTP "browser" for the authority's pages (sign-in,
//! consent, account), following no redirects by itself so that tests see
//! each step, and helpers to read the pages' forms.

use std::time::Duration;

use crate::authority::Authority;

/// A browser: a cookie jar, no automatic redirects.
#[derive(Debug, Clone)]
pub struct Browser {
    /// The HTTP client (cookie store on, redirects off).
    pub http: reqwest::Client,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    /// A fresh browser with an empty cookie jar.
    ///
    /// # Panics
    ///
    /// When the client cannot be built.
    #[must_use]
    pub fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(15))
                .build()
                .expect("browser client"),
        }
    }

    /// `GET url`.
    ///
    /// # Panics
    ///
    /// On transport errors.
    pub async fn get(&self, url: &str) -> reqwest::Response {
        self.http.get(url).send().await.expect("browser GET")
    }

    /// `POST url` with a form.
    ///
    /// # Panics
    ///
    /// On transport errors.
    pub async fn post(&self, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(url)
            .form(form)
            .send()
            .await
            .expect("browser POST")
    }

    /// Follows 303s on `authority` from `response` (relative locations
    /// only) until a page or a redirect elsewhere; answers the last
    /// response.
    ///
    /// # Panics
    ///
    /// After 10 redirects.
    pub async fn follow(
        &self,
        authority: &Authority,
        mut response: reqwest::Response,
    ) -> reqwest::Response {
        for _ in 0..10 {
            if !response.status().is_redirection() {
                return response;
            }
            let target = location(&response);
            if !target.starts_with('/') {
                return response;
            }
            response = self.get(&authority.url(&target)).await;
        }
        panic!("too many redirects");
    }

    /// Signs in on the sign-in page (`return_to` optional) and answers the
    /// POST's response (a 303 on success).
    ///
    /// # Panics
    ///
    /// When the page has no form.
    pub async fn sign_in(
        &self,
        authority: &Authority,
        username: &str,
        password: &str,
    ) -> reqwest::Response {
        let page = self.get(&authority.url("/signin")).await;
        assert_eq!(page.status(), 200, "the sign-in page");
        let html = page.text().await.expect("page");
        let csrf = hidden_value(&html, "csrf").expect("the sign-in form has a CSRF token");
        let return_to = hidden_value(&html, "return_to").unwrap_or_else(|| "/account".into());
        self.post(
            &authority.url("/signin"),
            &[
                ("username", username),
                ("password", password),
                ("csrf", &csrf),
                ("return_to", &return_to),
            ],
        )
        .await
    }

    /// The account page's HTML (signed in).
    ///
    /// # Panics
    ///
    /// Unless it answers 200.
    pub async fn account(&self, authority: &Authority) -> String {
        let response = self.get(&authority.url("/account")).await;
        assert_eq!(response.status(), 200, "the account page");
        response.text().await.expect("page")
    }
}

/// The `Location` header.
///
/// # Panics
///
/// When there is none.
#[must_use]
pub fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .and_then(|value| value.to_str().ok())
        .expect("a Location header")
        .to_owned()
}

/// The (unescaped) value of the first `<input … name="NAME" value="…">`.
#[must_use]
pub fn hidden_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(unescape(&html[start..end]))
}

/// Undoes the authority's HTML escaping.
#[must_use]
pub fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The value of query parameter `name` in `url` (percent-decoded).
#[must_use]
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url)
        .or_else(|_| reqwest::Url::parse(&format!("http://relative{url}")))
        .ok()?;
    parsed
        .query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// Registers a public client with `redirect_uris` through the CLI (extra
/// `options` such as `--first-party`).
///
/// # Panics
///
/// When the CLI fails.
pub fn add_public_client(
    authority: &Authority,
    client_id: &str,
    redirect_uris: &[&str],
    options: &[&str],
) {
    let mut args = vec!["client", "add", client_id, "--public"];
    for uri in redirect_uris {
        args.extend(["--redirect-uri", uri]);
    }
    args.extend_from_slice(options);
    let output = authority.cli(&args, None);
    assert!(
        output.status.success(),
        "client add failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("client_secret"),
        "a public client gets no secret"
    );
}

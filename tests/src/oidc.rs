//! The local OpenID Connect provider (`tests/oidc-provider`: panva's
//! certified `oidc-provider` on Node) as a process, and a browser without a
//! browser to drive its authorization flow over HTTP.
//!
//! The provider listens on a free loopback port (it prints `listening on
//! http://…`), keeps everything in memory, accepts any username with any
//! password and grants consent by itself. Its `/test/…` endpoints count
//! grants, refreshes and revocations, which is how tests see what the
//! authority did at the provider.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde_json::Value;
use token_test_harness::binary;

use crate::process::ServiceProcess;

/// The authority's client id at the test provider.
pub const CLIENT_ID: &str = "authority";
/// Its secret (only `[A-Za-z0-9._~-]`, see the provider's README).
pub const CLIENT_SECRET: &str = "authority-secret";
/// A second client of the authority at the same provider (a second
/// configured provider, for tests with two providers at once).
pub const SECOND_CLIENT_ID: &str = "authority-b";
/// Its secret.
pub const SECOND_CLIENT_SECRET: &str = "authority-b-secret";
/// What `node` missing says.
pub const NODE_INSTALL_HINT: &str =
    "install nodejs: `apt-get install -y nodejs npm` (CI does this in .ci/run)";

/// The provider's directory, `tests/oidc-provider`.
#[must_use]
pub fn provider_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc-provider")
}

/// `node`, or a panic with the install hint.
///
/// # Panics
///
/// When Node.js is not installed.
#[must_use]
pub fn node() -> PathBuf {
    binary::find("node", "NODE", NODE_INSTALL_HINT).unwrap_or_else(|error| panic!("{error}"))
}

/// Installs the provider's dependencies once if `node_modules` is missing
/// (`install.sh` under `flock`, since nextest runs tests as parallel
/// processes).
///
/// # Panics
///
/// When the installation fails (the message has its output and the hint).
pub fn ensure_installed() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let dir = provider_dir();
        if dir
            .join("node_modules/oidc-provider/package.json")
            .is_file()
        {
            return;
        }
        let install = dir.join("install.sh");
        let output = match binary::find("flock", "FLOCK", "util-linux") {
            Ok(flock) => Command::new(flock)
                .arg(dir.join(".install.lock"))
                .arg(&install)
                .output(),
            Err(_) => Command::new(&install).output(),
        }
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", install.display()));
        assert!(
            output.status.success(),
            "{} failed ({NODE_INSTALL_HINT}):\n{}{}",
            install.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    });
}

/// The `OIDC_CLIENTS` entries of the authority ([`CLIENT_ID`] and
/// [`SECOND_CLIENT_ID`]): native (loopback) clients, so the authority's
/// callback may be on any port.
#[must_use]
pub fn client_registration() -> String {
    serde_json::json!([{
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uris": ["http://127.0.0.1/v1/connect/callback"],
        "application_type": "native",
    }, {
        "client_id": SECOND_CLIENT_ID,
        "client_secret": SECOND_CLIENT_SECRET,
        "redirect_uris": ["http://127.0.0.1/v1/connect/callback"],
        "application_type": "native",
    }])
    .to_string()
}

/// A running test provider; killed when dropped.
#[derive(Debug)]
pub struct OidcProvider {
    process: ServiceProcess,
    http: reqwest::Client,
}

impl OidcProvider {
    /// Starts a provider with the authority registered as a client, then
    /// `extra` environment (`OIDC_ACCESS_TOKEN_TTL`, …).
    ///
    /// # Panics
    ///
    /// When Node.js is missing or the provider does not start.
    #[must_use]
    pub fn start(extra: &[(&str, &str)]) -> Self {
        let node = node();
        ensure_installed();
        let clients = client_registration();
        let mut env: Vec<(&str, &str)> = vec![("OIDC_PORT", "0"), ("OIDC_CLIENTS", &clients)];
        env.extend_from_slice(extra);
        let script = provider_dir().join("provider.mjs");
        let script = script.to_str().expect("UTF-8 path");
        let process = ServiceProcess::start_with_args(node, &[script], &env);
        // reqwest brings no rustls crypto provider of its own (ring is ours).
        token_repository::redis::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("http client");
        Self { process, http }
    }

    /// The issuer, `http://127.0.0.1:<port>` (no trailing slash).
    #[must_use]
    pub fn issuer(&self) -> String {
        self.process.url("")
    }

    /// Stops the provider (an outage): its port stops answering.
    pub fn stop(&mut self) {
        let _ = self.process.terminate(Duration::from_secs(5));
    }

    /// Its event log so far (stderr).
    #[must_use]
    pub fn logs(&self) -> String {
        self.process.stderr()
    }

    /// `GET /test/stats`: the counters.
    ///
    /// # Panics
    ///
    /// When the provider does not answer.
    pub async fn stats(&self) -> Value {
        self.http
            .get(self.process.url("/test/stats"))
            .send()
            .await
            .expect("stats")
            .json()
            .await
            .expect("stats json")
    }

    /// `GET /test/events`: the event log (the last 1000 events).
    ///
    /// # Panics
    ///
    /// When the provider does not answer.
    pub async fn events(&self) -> Vec<Value> {
        self.http
            .get(self.process.url("/test/events"))
            .send()
            .await
            .expect("events")
            .json()
            .await
            .expect("events json")
    }

    /// How many successful grants of `grant_type` `client_id` got
    /// (`grant.success` events).
    pub async fn grants_of(&self, client_id: &str, grant_type: &str) -> usize {
        self.events()
            .await
            .iter()
            .filter(|event| {
                event["type"] == "grant.success"
                    && event["client_id"] == client_id
                    && event["grant_type"] == grant_type
            })
            .count()
    }

    /// One counter of [`Self::stats`].
    pub async fn stat(&self, name: &str) -> u64 {
        self.stats().await[name].as_u64().unwrap_or_default()
    }

    /// `POST /test/reset`: zeroes the counters.
    ///
    /// # Panics
    ///
    /// When the provider does not answer.
    pub async fn reset(&self) {
        let status = self
            .http
            .post(self.process.url("/test/reset"))
            .send()
            .await
            .expect("reset")
            .status();
        assert_eq!(status, StatusCode::OK);
    }

    /// `POST /test/revoke-grants?sub=…`: revokes every grant of `sub` (its
    /// refresh tokens stop working).
    ///
    /// # Panics
    ///
    /// When the provider does not answer.
    pub async fn revoke_grants(&self, sub: &str) -> Value {
        self.http
            .post(self.process.url("/test/revoke-grants"))
            .query(&[("sub", sub)])
            .send()
            .await
            .expect("revoke grants")
            .json()
            .await
            .expect("json")
    }

    /// RFC 7662 introspection of `token` as the authority's client.
    ///
    /// # Panics
    ///
    /// When the provider does not answer.
    pub async fn introspect(&self, token: &str) -> Value {
        self.http
            .post(self.process.url("/token/introspection"))
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(&[("token", token)])
            .send()
            .await
            .expect("introspection")
            .json()
            .await
            .expect("json")
    }

    /// The userinfo endpoint with `access_token`: status and body.
    ///
    /// # Panics
    ///
    /// When the provider does not answer.
    pub async fn userinfo(&self, access_token: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(self.process.url("/me"))
            .bearer_auth(access_token)
            .send()
            .await
            .expect("userinfo");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// An HTTP client that behaves like a browser for the flow: a cookie jar
/// (the provider's cookies are path-scoped), no automatic redirects.
#[derive(Debug, Clone)]
pub struct Browser {
    http: reqwest::Client,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

fn location(response: &reqwest::Response, base: &Url) -> Url {
    let location = response
        .headers()
        .get("location")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_else(|| panic!("a redirect without Location from {base}"));
    base.join(location).expect("Location is a URL")
}

impl Browser {
    /// A fresh browser (empty cookie jar).
    ///
    /// # Panics
    ///
    /// When the client cannot be built.
    #[must_use]
    pub fn new() -> Self {
        // reqwest brings no rustls crypto provider of its own (ring is ours).
        token_repository::redis::install_crypto_provider();
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(20))
            .build()
            .expect("browser");
        Self { http }
    }

    /// Goes through the whole connect flow from `authorize_url` (the
    /// authority's `/connect/start` link of `GET /v1/connect`, or a
    /// provider URL): signs in at the authority as `login` (password
    /// [`crate::PASSWORD`]) when its sign-in page comes, logs in
    /// at the provider as `login` when asked (consent is automatic), and
    /// answers the URL the provider finally redirects to (the authority's
    /// callback with `code` and `state`, or `error`), without visiting it.
    ///
    /// # Panics
    ///
    /// When the provider answers anything unexpected.
    pub async fn authorize(&self, authorize_url: &str, login: &str) -> Url {
        self.walk(authorize_url, login, false).await
    }

    /// Like [`Self::authorize`], but stops at the provider's authorization
    /// URL (the first URL away from the authority), which carries the
    /// state bound to this browser's session.
    ///
    /// # Panics
    ///
    /// As [`Self::authorize`].
    pub async fn provider_url(&self, start_url: &str, login: &str) -> Url {
        self.walk(start_url, login, true).await
    }

    async fn walk(&self, start: &str, login: &str, stop_at_provider: bool) -> Url {
        let mut url = Url::parse(start).expect("authorize URL");
        let first = url.origin();
        let mut provider = None;
        for _ in 0..16 {
            let response = self.http.get(url.clone()).send().await.expect("GET");
            let next = match response.status() {
                StatusCode::SEE_OTHER | StatusCode::FOUND => location(&response, &url),
                StatusCode::OK if url.path() == "/signin" => {
                    let html = response.text().await.expect("sign-in page");
                    let field = |name: &str| {
                        crate::browser::hidden_value(&html, name)
                            .unwrap_or_else(|| panic!("the sign-in form has {name}"))
                    };
                    let post = url.join("/signin").expect("sign-in URL");
                    let response = self
                        .http
                        .post(post.clone())
                        .form(&[
                            ("username", login),
                            ("password", crate::PASSWORD),
                            ("csrf", &field("csrf")),
                            ("return_to", &field("return_to")),
                        ])
                        .send()
                        .await
                        .expect("POST sign-in");
                    assert_eq!(
                        response.status(),
                        StatusCode::SEE_OTHER,
                        "sign-in at the authority"
                    );
                    location(&response, &post)
                }
                StatusCode::OK if url.path().starts_with("/interaction/") => {
                    let login_url = url
                        .join(&format!("{}/login", url.path()))
                        .expect("login URL");
                    let response = self
                        .http
                        .post(login_url.clone())
                        .form(&[("login", login), ("password", "any password")])
                        .send()
                        .await
                        .expect("POST login");
                    assert_eq!(
                        response.status(),
                        StatusCode::SEE_OTHER,
                        "login at {login_url}"
                    );
                    location(&response, &login_url)
                }
                status => panic!(
                    "unexpected {status} from {url}: {}",
                    response.text().await.unwrap_or_default()
                ),
            };
            if next.origin() != first && provider.is_none() {
                if stop_at_provider {
                    return next;
                }
                provider = Some(next.origin());
            }
            let at_callback = next.path().ends_with("/callback");
            let elsewhere =
                next.origin() != first && provider.as_ref().is_some_and(|p| *p != next.origin());
            if at_callback || elsewhere {
                return next;
            }
            url = next;
        }
        panic!("the authorization flow did not end at a callback");
    }

    /// `GET url` of a page that must answer 200: its HTML.
    ///
    /// # Panics
    ///
    /// Otherwise.
    pub async fn page(&self, url: &str) -> String {
        let response = self.http.get(url).send().await.expect("GET");
        assert_eq!(response.status(), StatusCode::OK, "{url}");
        response.text().await.expect("page")
    }

    /// `POST url` with a form, without following redirects.
    ///
    /// # Panics
    ///
    /// On transport errors.
    pub async fn post(&self, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http.post(url).form(form).send().await.expect("POST")
    }

    /// `GET url` without following redirects: status and `Location`.
    ///
    /// # Panics
    ///
    /// On transport errors.
    pub async fn visit(&self, url: &str) -> (StatusCode, Option<String>) {
        let response = self.http.get(url).send().await.expect("GET");
        let location = response
            .headers()
            .get("location")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        (response.status(), location)
    }
}

//! A real browser: headless Chromium driven over WebDriver (chromedriver on
//! a free port) signs in at the authority, lands on the account page,
//! connects the test OpenID Connect provider, signs one session out,
//! disconnects the provider and signs out everywhere; and signs in with an
//! identity provider from the sign-in page's provider buttons. It also
//! writes the README's screenshots (`docs/images/signin.png`,
//! `docs/images/account.png`, `docs/images/signin-federated.png`).
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs
//! them); without them the test fails with that hint.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use token_service_tests::connected::{self, PROVIDER, Setup};
use token_test_harness::binary;

const BIN: &str = env!("CARGO_BIN_EXE_e2e-token-authority");
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver as a child process, killed on drop.
struct Driver {
    child: Child,
    url: String,
    http: reqwest::Client,
    session: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start() -> Self {
        let hint = "Install Chromium and its WebDriver: `apt-get install chromium chromium-driver` (.ci/run does this)";
        let chromium =
            binary::find("chromium", "CHROMIUM", hint).unwrap_or_else(|error| panic!("{error}"));
        let driver = binary::find("chromedriver", "CHROMEDRIVER", hint)
            .unwrap_or_else(|error| panic!("{error}"));
        let port = token_test_harness::port::free_port().expect("a free port");
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = http
                .get(format!("{url}/status"))
                .send()
                .await
                .ok()
                .map(|response| response.status().is_success())
                .unwrap_or(false);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile_path = std::env::temp_dir().join(format!("token-service-chromium-{port}"));
        let _ = std::fs::remove_dir_all(&profile_path);
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=900,1200", "--hide-scrollbars",
                    format!("--user-data-dir={}", profile_path.display()),
                ]
            }
        }}});
        let response: Value = http
            .post(format!("{url}/session"))
            .json(&capabilities)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("json");
        let session = response["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {response}"))
            .to_owned();
        Self {
            child,
            url,
            http,
            session,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.url, self.session);
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let value: Value = request
            .send()
            .await
            .expect("webdriver")
            .json()
            .await
            .expect("json");
        assert!(
            value["value"]["error"].is_null(),
            "WebDriver {path}: {value}"
        );
        value["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    async fn current(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .expect("url")
            .to_owned()
    }

    async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", None)
            .await
            .as_str()
            .expect("source")
            .to_owned()
    }

    async fn find(&self, css: &str) -> String {
        let found = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_owned()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Polls until the current URL satisfies `check` (navigation after a
    /// click is asynchronous).
    async fn wait_for_url(&self, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let url = self.current().await;
            if check(&url) {
                return url;
            }
            assert!(Instant::now() < deadline, "the browser stayed at {url}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn screenshot(&self, name: &str) {
        let png = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("base64"))
            .expect("png");
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/images");
        std::fs::create_dir_all(&dir).expect("docs/images");
        std::fs::write(dir.join(name), bytes).expect("write the screenshot");
    }
}

/// The whole account journey in Chromium, `__Host-` Secure cookie on
/// http://127.0.0.1 included (Chromium treats loopback as secure).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_signs_in_and_manages_the_account() {
    let setup = Setup::start(&[], "");
    let authority = setup.authority(BIN, &[]);
    let alice = connected::user(&authority, "alice").await; // also a password-grant session
    let driver = Driver::start().await;

    driver.go(&authority.url("/account")).await;
    let url = driver.wait_for_url(|url| url.contains("/signin")).await;
    assert!(url.contains("return_to=%2Faccount"), "{url}");
    driver.screenshot("signin.png").await;
    driver.type_into("#username", "alice").await;
    driver.type_into("#password", connected::PASSWORD).await;
    driver.click("button[type=submit]").await;
    driver.wait_for_url(|url| url.ends_with("/account")).await;
    let page = driver.source().await;
    assert!(
        page.contains("Your account") && page.contains("alice"),
        "{page}"
    );
    assert!(page.contains("(this browser)"));

    // Connect the provider: its login page, then back to the account page.
    driver
        .click(&format!("li[data-provider=\"{PROVIDER}\"] button"))
        .await;
    driver
        .wait_for_url(|url| url.contains("/interaction/"))
        .await;
    driver.type_into("input[name=login]", "alice").await;
    driver
        .type_into("input[name=password]", "any password")
        .await;
    driver.click("button[type=submit]").await;
    driver
        .wait_for_url(|url| url.contains("/account?done=connected"))
        .await;
    let page = driver.source().await;
    assert!(
        page.contains(&format!(
            "data-provider=\"{PROVIDER}\" data-status=\"connected\""
        )),
        "{page}"
    );
    assert!(setup.stored(&alice.subject).await.is_some());
    driver.screenshot("account.png").await;

    // Sign out the password-grant session (not this browser).
    let sessions: Value = authority
        .get_with("/v1/sessions", &alice.bearer)
        .await
        .json()
        .await
        .expect("json");
    let family = sessions["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .find(|token| token["current"] == true)
        .and_then(|token| token["session"].as_str())
        .expect("the bearer's session")
        .to_owned();
    driver
        .click(&format!("li[data-session=\"{family}\"] button"))
        .await;
    driver
        .wait_for_url(|url| url.contains("done=signed_out"))
        .await;
    assert_eq!(
        authority.get_with("/v1/me", &alice.bearer).await.status(),
        401
    );

    // Disconnect.
    driver
        .click(&format!("li[data-provider=\"{PROVIDER}\"] button.danger"))
        .await;
    driver
        .wait_for_url(|url| url.contains("done=disconnected"))
        .await;
    assert!(setup.stored(&alice.subject).await.is_none());
    assert!(
        driver
            .source()
            .await
            .contains("data-status=\"not_connected\"")
    );

    // Sign out everywhere: back to the sign-in page, and /account needs it.
    let buttons = driver
        .call(
            reqwest::Method::POST,
            "/elements",
            Some(json!({"using": "css selector", "value": "section[aria-labelledby=sessions] > form button"})),
        )
        .await;
    let everywhere = buttons[0][ELEMENT]
        .as_str()
        .expect("the sign-out-everywhere button")
        .to_owned();
    driver
        .call(
            reqwest::Method::POST,
            &format!("/element/{everywhere}/click"),
            Some(json!({})),
        )
        .await;
    driver.wait_for_url(|url| url.contains("/signin")).await;
    driver.go(&authority.url("/account")).await;
    driver.wait_for_url(|url| url.contains("/signin")).await;
    let _ = driver
        .http
        .delete(format!("{}/session/{}", driver.url, driver.session))
        .send()
        .await;
}

/// The sign-in page with two sign-in providers, one with login options:
/// a "Sign in with …" button per provider and option (the README's
/// `docs/images/signin-federated.png`); clicking one signs in at the
/// provider and lands on the account page of the account created there,
/// which names the provider instead of offering a password change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_signs_in_with_a_provider() {
    let setup = Setup::start_two(
        &[("OIDC_ID_TOKEN_CLAIMS", "1")],
        "login = true\nprovision = true",
        "login = true\nprovision = true\nlogin_options = [\n  \
         { name = \"Staff\", params = { login_hint = \"staff\" } },\n  \
         { name = \"Students\", params = { login_hint = \"student\" } },\n]",
    );
    let authority = setup.authority(BIN, &[]);
    let driver = Driver::start().await;

    driver.go(&authority.url("/account")).await;
    driver.wait_for_url(|url| url.contains("/signin")).await;
    let page = driver.source().await;
    for label in [
        "Sign in with Test IdP<",
        "Sign in with Test IdP (second client): Staff<",
        "Sign in with Test IdP (second client): Students<",
    ] {
        assert!(page.contains(label), "no button {label:?}: {page}");
    }
    let buttons = driver
        .call(
            reqwest::Method::POST,
            "/elements",
            Some(json!({"using": "css selector", "value": "a.provider"})),
        )
        .await;
    assert_eq!(buttons.as_array().map(Vec::len), Some(3), "{buttons}");
    driver.screenshot("signin-federated.png").await;

    let test_idp = driver
        .call(
            reqwest::Method::POST,
            "/element",
            Some(json!({"using": "link text", "value": "Sign in with Test IdP"})),
        )
        .await;
    let test_idp = test_idp[ELEMENT].as_str().expect("the Test IdP button");
    driver
        .call(
            reqwest::Method::POST,
            &format!("/element/{test_idp}/click"),
            Some(json!({})),
        )
        .await;
    driver
        .wait_for_url(|url| url.contains("/interaction/"))
        .await;
    driver.type_into("input[name=login]", "erin").await;
    driver
        .type_into("input[name=password]", "any password")
        .await;
    driver.click("button[type=submit]").await;
    driver.wait_for_url(|url| url.ends_with("/account")).await;
    let page = driver.source().await;
    assert!(
        page.contains(&format!("{PROVIDER}.")),
        "the account's username: {page}"
    );
    assert!(
        page.contains("it signs in with <strong>Test IdP</strong>"),
        "{page}"
    );
    assert!(!page.contains("current_password"));
    let _ = driver
        .http
        .delete(format!("{}/session/{}", driver.url, driver.session))
        .send()
        .await;
}

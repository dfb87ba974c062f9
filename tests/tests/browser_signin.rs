//! End to end: browser sign-in at the authority and the authorization code
//! flow with PKCE (issue 15), driven by a stock OAuth client library (the
//! `oauth2` crate) and a cookie-keeping HTTP browser, against the real
//! authority binary and a private redis-server.

use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, CsrfToken, PkceCodeChallenge, RedirectUrl, RefreshToken,
    Scope, TokenResponse as _, TokenUrl,
};
use serde_json::Value;
use token_service_tests::Authority;
use token_service_tests::browser::{
    Browser, add_public_client, hidden_value, location, query_param,
};
use token_service_tests::snapshot::snapshot;
use token_test_harness::RedisServer;

const BIN: &str = env!("CARGO_BIN_EXE_e2e-token-authority");
const PASSWORD: &str = "correct horse battery";
const REDIRECT: &str = "http://127.0.0.1/callback";

/// The oauth2 crate's HTTP client: our reqwest, no redirects.
fn http_client() -> impl Fn(
    oauth2::HttpRequest,
) -> std::pin::Pin<
    Box<dyn Future<Output = Result<oauth2::HttpResponse, reqwest::Error>> + Send>,
> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    move |request: oauth2::HttpRequest| {
        let http = http.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let response = http
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await?;
            let mut builder = http::Response::builder().status(response.status());
            for (name, value) in response.headers() {
                builder = builder.header(name, value);
            }
            let body = response.bytes().await?.to_vec();
            Ok(builder.body(body).expect("response"))
        })
    }
}

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.expect("json body")
}

/// Walks a browser through the sign-in and (when asked) the consent page
/// from an authorization URL; answers the final redirect to the client.
async fn authorize_in_browser(
    authority: &Authority,
    browser: &Browser,
    authorize_url: &str,
    credentials: Option<(&str, &str)>,
) -> String {
    let mut response = browser.get(authorize_url).await;
    if let Some((username, password)) = credentials {
        assert_eq!(response.status(), 303, "not signed in: to the sign-in page");
        let signin = location(&response);
        assert!(signin.starts_with("/signin?return_to="), "{signin}");
        let page = browser.get(&authority.url(&signin)).await;
        assert_eq!(page.status(), 200);
        let html = page.text().await.expect("page");
        let csrf = hidden_value(&html, "csrf").expect("csrf");
        let return_to = hidden_value(&html, "return_to").expect("return_to");
        assert!(return_to.starts_with("/oauth/authorize?"), "{return_to}");
        let signed_in = browser
            .post(
                &authority.url("/signin"),
                &[
                    ("username", username),
                    ("password", password),
                    ("csrf", &csrf),
                    ("return_to", &return_to),
                ],
            )
            .await;
        assert_eq!(signed_in.status(), 303, "signed in");
        assert_eq!(location(&signed_in), return_to);
        response = browser.get(&authority.url(&return_to)).await;
    }
    if response.status() == 200 {
        // The consent page.
        let html = response.text().await.expect("page");
        assert!(html.contains("Allow"), "{html}");
        let csrf = hidden_value(&html, "csrf").expect("csrf");
        let request = hidden_value(&html, "request").expect("request");
        response = browser
            .post(
                &authority.url("/oauth/consent"),
                &[
                    ("csrf", &csrf),
                    ("request", &request),
                    ("decision", "allow"),
                ],
            )
            .await;
    }
    assert_eq!(response.status(), 303, "back to the client");
    location(&response)
}

/// The whole code flow with the `oauth2` crate as the client: a public
/// native app (loopback redirect on a port of its choosing) gets an
/// authorization URL with PKCE S256; the browser signs in and consents;
/// the redirect carries `code`, the app's `state` and `iss` (RFC 9207); the
/// crate exchanges the code with the verifier and refreshes the pair; the
/// tokens identify the user. Consent is remembered (the second run goes
/// straight back), and a second use of a code fails and revokes the tokens
/// issued from it, and the browser session they belong to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_flow_with_the_oauth2_crate() {
    let redis = RedisServer::start();
    let authority = Authority::start(BIN, &redis, &[]);
    authority.add_user("alice", PASSWORD, &["read", "write"]);
    add_public_client(&authority, "notes-app", &[REDIRECT], &[]);
    let issuer = authority.url("");

    let client = BasicClient::new(ClientId::new("notes-app".into()))
        .set_auth_uri(AuthUrl::new(authority.url("/oauth/authorize")).expect("url"))
        .set_token_uri(TokenUrl::new(authority.url("/oauth/token")).expect("url"))
        .set_redirect_uri(RedirectUrl::new("http://127.0.0.1:43117/callback".into()).expect("url"));
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf) = client
        .authorize_url(CsrfToken::new_random)
        .add_scope(Scope::new("read".into()))
        .set_pkce_challenge(challenge)
        .url();

    let browser = Browser::new();
    let back = authorize_in_browser(
        &authority,
        &browser,
        url.as_str(),
        Some(("alice", PASSWORD)),
    )
    .await;
    assert!(
        back.starts_with("http://127.0.0.1:43117/callback?"),
        "{back}"
    );
    assert_eq!(
        query_param(&back, "state").as_deref(),
        Some(csrf.secret().as_str())
    );
    assert_eq!(query_param(&back, "iss").as_deref(), Some(issuer.as_str()));
    let code = query_param(&back, "code").expect("code");
    assert_eq!(code.len(), 43, "256-bit code");

    let http = http_client();
    let tokens = client
        .exchange_code(AuthorizationCode::new(code.clone()))
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("the code exchange");
    let access = tokens.access_token().secret().clone();
    assert!(access.starts_with("tsa_"));
    assert_eq!(
        tokens
            .scopes()
            .map(|scopes| scopes.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
        Some(vec!["read".to_owned()])
    );
    let me = json_of(authority.get_with("/v1/me", &access).await).await;
    assert_eq!(me["username"], "alice");
    assert_eq!(me["client_id"], "notes-app");

    // A public client refreshes with its client_id alone; rotation as usual.
    let refresh = tokens.refresh_token().expect("a refresh token").clone();
    let refreshed = client
        .exchange_refresh_token(&RefreshToken::new(refresh.secret().clone()))
        .request_async(&http)
        .await
        .expect("refresh");
    let access = refreshed.access_token().secret().clone();
    assert_eq!(authority.get_with("/v1/me", &access).await.status(), 200);

    // The browser session is listed among the user's sessions.
    let sessions = json_of(authority.get_with("/v1/sessions", &access).await).await;
    let kinds: Vec<&str> = sessions["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .filter_map(|token| token["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"browser"), "{sessions}");

    // Consent is remembered: the same request goes straight back.
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _) = client
        .authorize_url(CsrfToken::new_random)
        .add_scope(Scope::new("read".into()))
        .set_pkce_challenge(challenge)
        .url();
    let response = browser.get(url.as_str()).await;
    assert_eq!(response.status(), 303, "no consent page the second time");
    let second_code = query_param(&location(&response), "code").expect("code");
    let second = client
        .exchange_code(AuthorizationCode::new(second_code))
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("second exchange");
    let second_access = second.access_token().secret().clone();

    // The first code again: refused, and what it issued is revoked (its
    // session: the refreshed pair too).
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let _ = challenge;
    let replay = authority
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:43117/callback"),
            ("client_id", "notes-app"),
            ("code_verifier", verifier.secret()),
        ])
        .await;
    assert_eq!(replay.status(), 400);
    assert_eq!(json_of(replay).await["error"], "invalid_grant");
    assert_eq!(authority.get_with("/v1/me", &access).await.status(), 401);
    // Each code's tokens are a session of their own: the second code's
    // tokens and the browser session are not what the replayed code issued.
    assert_eq!(
        authority.get_with("/v1/me", &second_access).await.status(),
        200
    );
    let account = browser.get(&authority.url("/account")).await;
    assert_eq!(account.status(), 200, "the browser session stays");
}

/// A refused exchange: name, form, HTTP Basic credentials, expected
/// status and error.
type Case<'a> = (
    &'a str,
    Vec<(&'a str, &'a str)>,
    Option<(&'a str, &'a str)>,
    (u16, &'a str),
);

/// Exchanges `code` with `form` (and HTTP Basic `auth`); answers the
/// status and the error code ("" on success).
async fn exchange(
    authority: &Authority,
    code: &str,
    form: &[(&str, &str)],
    auth: Option<(&str, &str)>,
) -> (u16, String) {
    let mut all = vec![("grant_type", "authorization_code"), ("code", code)];
    all.extend_from_slice(form);
    let mut request = authority
        .http
        .post(authority.url("/oauth/token"))
        .form(&all);
    if let Some((id, secret)) = auth {
        request = request.basic_auth(id, Some(secret));
    }
    let response = request.send().await.expect("token request");
    let status = response.status().as_u16();
    let body = json_of(response).await;
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

/// A confidential client authenticates with its secret; a wrong verifier,
/// another redirect URI, another client or no client at all are refused,
/// and a refused attempt uses the code up (single use).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_exchange_checks_client_redirect_and_verifier() {
    let redis = RedisServer::start();
    let authority = Authority::start(BIN, &redis, &[]);
    authority.add_user("bob", PASSWORD, &["read"]);
    let secret = authority.add_client_with(
        "web",
        &[],
        &["--redirect-uri", "https://web.example/cb", "--first-party"],
    );
    add_public_client(&authority, "other", &["https://other.example/cb"], &[]);
    let browser = Browser::new();
    assert_eq!(
        browser.sign_in(&authority, "bob", PASSWORD).await.status(),
        303
    );
    let verifier = "a-verifier-of-at-least-43-characters-0123456789";
    let challenge = PkceCodeChallenge::from_code_verifier_sha256(&oauth2::PkceCodeVerifier::new(
        verifier.to_owned(),
    ));
    let authorize = authority.url(&format!(
        "/oauth/authorize?response_type=code&client_id=web&redirect_uri=https%3A%2F%2Fweb.example%2Fcb\
         &code_challenge={}&code_challenge_method=S256&state=s1",
        challenge.as_str()
    ));
    let wrong_verifier = "x".repeat(43);
    let good: [(&str, &str); 2] = [
        ("redirect_uri", "https://web.example/cb"),
        ("code_verifier", verifier),
    ];
    let cases: Vec<Case<'_>> = vec![
        (
            "wrong verifier",
            vec![
                ("redirect_uri", "https://web.example/cb"),
                ("code_verifier", &wrong_verifier),
            ],
            Some(("web", &secret)),
            (400, "invalid_grant"),
        ),
        (
            "other redirect URI",
            vec![
                ("redirect_uri", "https://web.example/other"),
                ("code_verifier", verifier),
            ],
            Some(("web", &secret)),
            (400, "invalid_grant"),
        ),
        (
            "no redirect URI (the request had one)",
            vec![("code_verifier", verifier)],
            Some(("web", &secret)),
            (400, "invalid_grant"),
        ),
        (
            "wrong secret",
            good.to_vec(),
            Some(("web", "tsc_wrong")),
            (401, "invalid_client"),
        ),
        (
            "another (public) client",
            [good.to_vec(), vec![("client_id", "other")]].concat(),
            None,
            (400, "invalid_grant"),
        ),
        (
            "a confidential client without its secret",
            [good.to_vec(), vec![("client_id", "web")]].concat(),
            None,
            (401, "invalid_client"),
        ),
        (
            "no client at all",
            good.to_vec(),
            None,
            (401, "invalid_client"),
        ),
    ];
    for (name, form, auth, expected) in cases {
        // A refused attempt followed by a second use of the code ends the
        // browser session (the code's family): sign in anew each time.
        let browser = Browser::new();
        assert_eq!(
            browser.sign_in(&authority, "bob", PASSWORD).await.status(),
            303
        );
        let response = browser.get(&authorize).await;
        assert_eq!(response.status(), 303, "first-party: no consent page");
        let back = location(&response);
        assert!(back.starts_with("https://web.example/cb?code="), "{back}");
        let code = query_param(&back, "code").expect("code");
        let (status, error) = exchange(&authority, &code, &form, auth).await;
        assert_eq!((status, error.as_str()), expected, "{name}");
        if status == 400 {
            let again = exchange(&authority, &code, &good, Some(("web", &secret))).await;
            assert_eq!(
                again,
                (400, "invalid_grant".to_owned()),
                "{name}: the code is used up"
            );
        }
    }
    let response = browser.get(&authorize).await;
    let code = query_param(&location(&response), "code").expect("code");
    let (status, error) = exchange(&authority, &code, &good, Some(("web", &secret))).await;
    assert_eq!((status, error.as_str()), (200, ""));
}

/// Malformed authorization requests: until the client and redirect URI
/// are known to be right, an HTML error page (never a redirect); after
/// that, an error redirect to the registered URI with `state` and `iss`.
/// Never a 5xx, never a redirect elsewhere, and nothing is written to
/// Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_authorize_requests() {
    let redis = RedisServer::start();
    let authority = Authority::start(BIN, &redis, &[]);
    add_public_client(
        &authority,
        "app",
        &["https://app.example/cb", "http://127.0.0.1/cb"],
        &[],
    );
    let _ = authority.add_client("no-redirects", &[], false);
    let browser = Browser::new();
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let ok = format!(
        "response_type=code&client_id=app&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&code_challenge={challenge}&code_challenge_method=S256&state=xyz"
    );
    let without = |name: &str| {
        ok.split('&')
            .filter(|pair| !pair.starts_with(&format!("{name}=")))
            .collect::<Vec<_>>()
            .join("&")
    };
    let with = |name: &str, value: &str| format!("{}&{name}={value}", without(name));
    let long = "a".repeat(3000);
    let page_cases: Vec<(&str, String)> = vec![
        ("no client_id", without("client_id")),
        ("unknown client", with("client_id", "nobody")),
        ("invalid client_id", with("client_id", "a%20b")),
        ("repeated client_id", format!("{ok}&client_id=app")),
        ("client_id not UTF-8", with("client_id", "%ff")),
        (
            "client without redirect URIs",
            with("client_id", "no-redirects"),
        ),
        (
            "unregistered redirect_uri",
            with("redirect_uri", "https%3A%2F%2Fevil.example%2Fcb"),
        ),
        (
            "redirect_uri differing in path",
            with("redirect_uri", "https%3A%2F%2Fapp.example%2Fcb%2F"),
        ),
        (
            "loopback redirect, other path",
            with("redirect_uri", "http%3A%2F%2F127.0.0.1%3A5000%2Fother"),
        ),
        (
            "repeated redirect_uri",
            format!("{ok}&redirect_uri=https%3A%2F%2Fapp.example%2Fcb"),
        ),
        (
            "missing redirect_uri with two registered",
            without("redirect_uri"),
        ),
        ("overlong redirect_uri", with("redirect_uri", &long)),
        ("redirect_uri not UTF-8", with("redirect_uri", "%c3%28")),
        (
            "overlong request",
            format!("{ok}&junk={}", "b".repeat(9000)),
        ),
    ];
    let redirect_cases: Vec<(&str, String, &str)> = vec![
        (
            "no response_type",
            without("response_type"),
            "invalid_request",
        ),
        (
            "response_type=token",
            with("response_type", "token"),
            "unsupported_response_type",
        ),
        (
            "no code_challenge",
            without("code_challenge"),
            "invalid_request",
        ),
        (
            "plain PKCE",
            with("code_challenge_method", "plain"),
            "invalid_request",
        ),
        (
            "no code_challenge_method",
            without("code_challenge_method"),
            "invalid_request",
        ),
        (
            "short code_challenge",
            with("code_challenge", "abc"),
            "invalid_request",
        ),
        (
            "repeated scope",
            format!("{ok}&scope=read&scope=write"),
            "invalid_request",
        ),
        (
            "repeated state",
            format!("{ok}&state=other"),
            "invalid_request",
        ),
        (
            "state not UTF-8",
            with("state", "%ff%fe"),
            "invalid_request",
        ),
        (
            "overlong parameter",
            with("nonce", &long),
            "invalid_request",
        ),
        ("invalid scope", with("scope", "a%22b"), "invalid_scope"),
        (
            "bad percent-encoding",
            format!("{ok}&x=%zz"),
            "invalid_request",
        ),
        (
            "loopback on another port is fine, then plain",
            with("redirect_uri", "http%3A%2F%2F127.0.0.1%3A5000%2Fcb")
                + "&code_challenge_method=plain",
            "invalid_request",
        ),
    ];
    let before = snapshot(&redis.url()).await;
    for (name, query) in &page_cases {
        let response = browser
            .get(&authority.url(&format!("/oauth/authorize?{query}")))
            .await;
        assert_eq!(response.status(), 400, "{name}: an error page");
        assert!(
            response.headers().get("location").is_none(),
            "{name}: never a redirect"
        );
        assert!(
            response.headers()["content-type"]
                .to_str()
                .expect("ascii")
                .starts_with("text/html"),
            "{name}"
        );
        let html = response.text().await.expect("page");
        assert!(html.contains("Sign-in request refused"), "{name}: {html}");
    }
    for (name, query, error) in &redirect_cases {
        let response = browser
            .get(&authority.url(&format!("/oauth/authorize?{query}")))
            .await;
        assert_eq!(response.status(), 303, "{name}: an error redirect");
        let target = location(&response);
        assert!(
            target.starts_with("https://app.example/cb?")
                || target.starts_with("http://127.0.0.1:5000/cb?"),
            "{name}: only to the registered URI: {target}"
        );
        assert_eq!(
            query_param(&target, "error").as_deref(),
            Some(*error),
            "{name}: {target}"
        );
        assert_eq!(
            query_param(&target, "iss").as_deref(),
            Some(authority.url("").as_str())
        );
        assert!(query_param(&target, "code").is_none());
        if !name.contains("state") {
            assert_eq!(
                query_param(&target, "state").as_deref(),
                Some("xyz"),
                "{name}"
            );
        }
    }
    // Overlong state: refused and not echoed.
    let response = browser
        .get(&authority.url(&format!(
            "/oauth/authorize?{}",
            with("state", &"s".repeat(1500))
        )))
        .await;
    assert_eq!(response.status(), 303);
    let target = location(&response);
    assert_eq!(
        query_param(&target, "error").as_deref(),
        Some("invalid_request")
    );
    assert!(query_param(&target, "state").is_none());
    assert_eq!(snapshot(&redis.url()).await, before, "nothing written");
    // A well-formed request goes to the sign-in page.
    let response = browser
        .get(&authority.url(&format!("/oauth/authorize?{ok}")))
        .await;
    assert_eq!(response.status(), 303);
    assert!(location(&response).starts_with("/signin?return_to=%2Foauth%2Fauthorize%3F"));
}

/// The sign-in page: labelled fields, one answer for unknown users and
/// wrong passwords, CSRF required, the password grant's throttling
/// counters (failures on the page count for the password grant too), and
/// a session cookie with `__Host-`, HttpOnly, SameSite=Lax and Secure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signin_page_behaves_like_the_password_grant() {
    let redis = RedisServer::start();
    let authority = Authority::start(BIN, &redis, &[("LOGIN_MAX_FAILURES", "3")]);
    authority.add_user("carol", PASSWORD, &["read"]);
    let browser = Browser::new();
    let page = browser.get(&authority.url("/signin")).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("page");
    assert!(html.contains("<label for=\"username\">") && html.contains("id=\"username\""));
    assert!(html.contains("<label for=\"password\">") && html.contains("id=\"password\""));
    assert!(html.contains("name=\"viewport\""));
    assert!(!html.contains("<script") && !html.contains("http://") && !html.contains("https://"));

    // No CSRF token: refused without checking anything.
    let response = browser
        .post(
            &authority.url("/signin"),
            &[("username", "carol"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(response.status(), 403);

    let wrong = browser
        .sign_in(&authority, "carol", "wrong password!")
        .await;
    assert_eq!(wrong.status(), 400);
    let wrong = wrong.text().await.expect("page").replace("carol", "USER");
    let unknown = browser
        .sign_in(&authority, "nobody", "wrong password!")
        .await;
    assert_eq!(unknown.status(), 400);
    let unknown = unknown
        .text()
        .await
        .expect("page")
        .replace("nobody", "USER");
    let strip_csrf = |html: &str| {
        let value = hidden_value(html, "csrf").unwrap_or_default();
        html.replace(&value, "CSRF")
    };
    assert_eq!(
        strip_csrf(&wrong),
        strip_csrf(&unknown),
        "one answer for both"
    );

    // Two more failures for carol: the third is the limit, for the page and
    // for the password grant alike.
    let _ = browser
        .sign_in(&authority, "carol", "wrong password!")
        .await;
    let _ = browser
        .sign_in(&authority, "carol", "wrong password!")
        .await;
    let throttled = browser.sign_in(&authority, "carol", PASSWORD).await;
    assert_eq!(throttled.status(), 429);
    assert!(throttled.headers().contains_key("retry-after"));
    let grant = authority
        .token(&[
            ("grant_type", "password"),
            ("username", "carol"),
            ("password", PASSWORD),
        ])
        .await;
    assert_eq!(grant.status(), 429, "the same counters");

    // A successful sign-in sets the session cookie with every flag.
    authority.add_user("dave", PASSWORD, &[]);
    let fresh = Browser::new();
    let response = fresh.sign_in(&authority, "dave", PASSWORD).await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/account");
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with("__Host-ts_session="))
        .expect("the session cookie")
        .to_owned();
    for flag in [
        "HttpOnly",
        "SameSite=Lax",
        "Secure",
        "Path=/",
        "Max-Age=28800",
    ] {
        assert!(cookie.contains(flag), "{flag}: {cookie}");
    }
    assert!(!cookie.contains("Domain"), "{cookie}");
    assert!(fresh.account(&authority).await.contains("dave"));
}

/// Sign-out everywhere (`DELETE /v1/sessions`) ends the browser session;
/// `POST /logout` ends it and the tokens issued through it; a session
/// cookie is no bearer token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_sessions_end_with_the_account() {
    let redis = RedisServer::start();
    let authority = Authority::start(BIN, &redis, &[]);
    authority.add_user("erin", PASSWORD, &["read"]);
    add_public_client(
        &authority,
        "cli",
        &["http://127.0.0.1/cb"],
        &["--first-party"],
    );

    let browser = Browser::new();
    let signed_in = browser.sign_in(&authority, "erin", PASSWORD).await;
    let cookie = signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(|value| value.strip_prefix("__Host-ts_session="))
        .and_then(|value| value.split(';').next())
        .expect("cookie")
        .to_owned();
    assert_eq!(
        authority.get_with("/v1/me", &cookie).await.status(),
        401,
        "not a bearer token"
    );
    let refresh = authority
        .token(&[("grant_type", "refresh_token"), ("refresh_token", &cookie)])
        .await;
    assert_eq!(refresh.status(), 401, "not refreshable");

    // Tokens through the code flow, then logout: both end.
    let verifier = "v".repeat(50);
    let challenge = PkceCodeChallenge::from_code_verifier_sha256(&oauth2::PkceCodeVerifier::new(
        verifier.clone(),
    ));
    let response = browser
        .get(&authority.url(&format!(
            "/oauth/authorize?response_type=code&client_id=cli&redirect_uri=http%3A%2F%2F127.0.0.1%3A9999%2Fcb&code_challenge={}&code_challenge_method=S256",
            challenge.as_str()
        )))
        .await;
    assert_eq!(response.status(), 303);
    let code = query_param(&location(&response), "code").expect("code");
    let tokens = json_of(
        authority
            .token(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", "http://127.0.0.1:9999/cb"),
                ("client_id", "cli"),
                ("code_verifier", &verifier),
            ])
            .await,
    )
    .await;
    let access = tokens["access_token"].as_str().expect("access").to_owned();
    assert_eq!(authority.get_with("/v1/me", &access).await.status(), 200);
    let html = browser.account(&authority).await;
    let csrf = hidden_value(&html, "csrf").expect("csrf");
    let forged = browser
        .post(&authority.url("/logout"), &[("csrf", "forged")])
        .await;
    assert_eq!(forged.status(), 403, "CSRF-protected");
    let out = browser
        .post(&authority.url("/logout"), &[("csrf", &csrf)])
        .await;
    assert_eq!(out.status(), 303);
    assert_eq!(
        authority.get_with("/v1/me", &access).await.status(),
        200,
        "an application's session is its own: signing the browser out leaves it"
    );
    assert_eq!(browser.get(&authority.url("/account")).await.status(), 303);

    // Sign-out everywhere from a password-grant token ends the browser.
    let browser = Browser::new();
    assert_eq!(
        browser.sign_in(&authority, "erin", PASSWORD).await.status(),
        303
    );
    let _ = browser.account(&authority).await;
    let token = authority.login("erin", PASSWORD).await["access_token"]
        .as_str()
        .expect("t")
        .to_owned();
    let everywhere = authority
        .http
        .delete(authority.url("/v1/sessions"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("delete");
    assert_eq!(everywhere.status(), 200);
    assert_eq!(browser.get(&authority.url("/account")).await.status(), 303);
}

/// `PASSWORD_GRANT=disabled` refuses the password grant; the metadata
/// announces the code flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_grant_can_be_disabled_and_metadata_shows_the_code_flow() {
    let redis = RedisServer::start();
    let authority = Authority::start(BIN, &redis, &[("PASSWORD_GRANT", "disabled")]);
    authority.add_user("frank", PASSWORD, &[]);
    let response = authority
        .token(&[
            ("grant_type", "password"),
            ("username", "frank"),
            ("password", PASSWORD),
        ])
        .await;
    assert_eq!(response.status(), 400);
    assert_eq!(json_of(response).await["error"], "unsupported_grant_type");
    let metadata = json_of(
        authority
            .http
            .get(authority.url("/.well-known/oauth-authorization-server"))
            .send()
            .await
            .expect("metadata"),
    )
    .await;
    assert_eq!(
        metadata["authorization_endpoint"],
        authority.url("/oauth/authorize")
    );
    assert_eq!(
        metadata["response_types_supported"],
        serde_json::json!(["code"])
    );
    assert_eq!(
        metadata["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(
        metadata["authorization_response_iss_parameter_supported"],
        true
    );
    let grants = metadata["grant_types_supported"]
        .as_array()
        .expect("grants");
    assert!(grants.contains(&"authorization_code".into()));
    assert!(!grants.contains(&"password".into()));
}

/// The account page's password change: the current password is required
/// (a wrong one changes nothing), the new one works, every other session
/// ends (a password-grant token, another browser) and this browser stays
/// signed in with a new session; the profile form saves name and e-mail;
/// a consent can be withdrawn, so the consent page comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_page_changes_password_profile_and_consents() {
    let redis = RedisServer::start();
    let authority = Authority::start(BIN, &redis, &[]);
    authority.add_user("gina", PASSWORD, &["read"]);
    add_public_client(&authority, "notes", &["http://127.0.0.1/cb"], &[]);
    let browser = Browser::new();
    assert_eq!(
        browser.sign_in(&authority, "gina", PASSWORD).await.status(),
        303
    );
    let elsewhere = Browser::new();
    assert_eq!(
        elsewhere
            .sign_in(&authority, "gina", PASSWORD)
            .await
            .status(),
        303
    );
    let api = authority.login("gina", PASSWORD).await["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let csrf = hidden_value(&browser.account(&authority).await, "csrf").expect("csrf");

    let post = |form: Vec<(&'static str, String)>| {
        let browser = browser.clone();
        let url = authority.url("/account");
        async move {
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let response = browser.post(&url, &form).await;
            assert_eq!(response.status(), 303);
            location(&response)
        }
    };
    let new_password = "a brand new password";
    let wrong = post(vec![
        ("csrf", csrf.clone()),
        ("action", "password".into()),
        ("current_password", "not the password".into()),
        ("new_password", new_password.into()),
        ("confirm_password", new_password.into()),
    ])
    .await;
    assert_eq!(wrong, "/account?failed=password");
    assert_eq!(
        authority.get_with("/v1/me", &api).await.status(),
        200,
        "nothing changed"
    );

    let done = post(vec![
        ("csrf", csrf.clone()),
        ("action", "password".into()),
        ("current_password", PASSWORD.into()),
        ("new_password", new_password.into()),
        ("confirm_password", new_password.into()),
    ])
    .await;
    assert_eq!(done, "/account?done=password");
    assert_eq!(
        authority.get_with("/v1/me", &api).await.status(),
        401,
        "other sessions end"
    );
    assert_eq!(
        elsewhere.get(&authority.url("/account")).await.status(),
        303
    );
    let response = browser.get(&authority.url(&done)).await;
    assert_eq!(response.status(), 200, "this browser stays signed in");
    let page = response.text().await.expect("page");
    assert!(
        page.contains("Your password was changed"),
        "this browser stays signed in"
    );
    let _ = authority.login("gina", new_password).await;

    let csrf = hidden_value(&page, "csrf").expect("a new session, a new token");
    let saved = post(vec![
        ("csrf", csrf.clone()),
        ("action", "profile".into()),
        ("name", "Gina <Example>".into()),
        ("email", "gina@example.com".into()),
    ])
    .await;
    assert_eq!(saved, "/account?done=profile");
    let page = browser.account(&authority).await;
    assert!(
        page.contains("value=\"Gina &lt;Example&gt;\""),
        "escaped: {page}"
    );

    // Consent, withdrawn: the consent page comes back.
    let verifier = "w".repeat(43);
    let challenge = PkceCodeChallenge::from_code_verifier_sha256(&oauth2::PkceCodeVerifier::new(
        verifier.clone(),
    ));
    let authorize = authority.url(&format!(
        "/oauth/authorize?response_type=code&client_id=notes&code_challenge={}&code_challenge_method=S256",
        challenge.as_str()
    ));
    let back = authorize_in_browser(&authority, &browser, &authorize, None).await;
    assert!(back.starts_with("http://127.0.0.1/cb?code="), "{back}");
    assert_eq!(browser.get(&authorize).await.status(), 303, "remembered");
    let withdrawn = post(vec![
        ("csrf", csrf),
        ("action", "revoke_consent".into()),
        ("client_id", "notes".into()),
    ])
    .await;
    assert_eq!(withdrawn, "/account?done=consent_revoked");
    assert_eq!(browser.get(&authorize).await.status(), 200, "asked again");
}

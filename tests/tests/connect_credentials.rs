//! Providers that are not OAuth (issue 18, item 2): a user stores a
//! username and password, or a key, for a provider of kind `password` or
//! `api_key`; it is sealed under the connect keys; a permitted service
//! client reads it back; the user removes it. Configured next to two OAuth
//! providers (two clients of the real OpenID Connect provider,
//! `tests/oidc-provider`), which keep working alongside. The secrets never
//! reach a log line (the authority's stderr is searched), an error body or
//! the account page.

use reqwest::StatusCode;
use serde_json::{Value, json};
use token_broker::credentials::{Secret, StoredCredential};
use token_broker::crypto::Keyring;
use token_broker::record::Stored;
use token_service_tests::Authority;
use token_service_tests::browser::{Browser, hidden_value, location};
use token_service_tests::connected::{self, KEY_1, KEY_2, PASSWORD, PROVIDER, SECOND, Setup, User};

const BIN: &str = env!("CARGO_BIN_EXE_e2e-token-authority");

/// The WebDAV password a user stores (searched for everywhere).
const DAV_PASSWORD: &str = "dav-Pa55word-never-logged";
/// Its username at the WebDAV service.
const DAV_USERNAME: &str = "alice-at-dav-7f3";
/// The key a user stores for the `api_key` provider.
const ZENODO_KEY: &str = "zenodo-key-never-logged-0c9e";

const CREDENTIAL_PROVIDERS: &str = "[[providers]]\n\
    name = \"webdav\"\n\
    kind = \"password\"\n\
    display_name = \"Institute WebDAV\"\n\
    \n\
    [[providers]]\n\
    name = \"zenodo\"\n\
    kind = \"api_key\"\n\
    \n\
    [[providers]]\n\
    name = \"retired\"\n\
    kind = \"api_key\"\n\
    enabled = false\n";

/// Two OAuth providers and three of credentials kinds, one authority.
fn start() -> (Setup, Authority) {
    let setup = Setup::start_two(&[], "", "");
    setup.append_config(CREDENTIAL_PROVIDERS);
    let authority = setup.authority(BIN, &[]);
    (setup, authority)
}

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.expect("json body")
}

/// Status, `error` and the whole body text.
async fn refusal(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
        text,
    )
}

/// `PUT /v1/connect/{provider}/credentials` with a raw body.
async fn put_raw(
    authority: &Authority,
    user: &User,
    provider: &str,
    content_type: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    authority
        .http
        .put(authority.url(&format!("/v1/connect/{provider}/credentials")))
        .bearer_auth(&user.bearer)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("PUT")
}

async fn put(
    authority: &Authority,
    user: &User,
    provider: &str,
    body: &Value,
) -> reqwest::Response {
    put_raw(
        authority,
        user,
        provider,
        "application/json",
        serde_json::to_vec(body).expect("json"),
    )
    .await
}

async fn delete(authority: &Authority, user: &User, provider: &str) -> reqwest::Response {
    authority
        .http
        .delete(authority.url(&format!("/v1/connect/{provider}/credentials")))
        .bearer_auth(&user.bearer)
        .send()
        .await
        .expect("DELETE")
}

/// A `client_credentials` token of a new client registered with `options`.
async fn client_token(authority: &Authority, client_id: &str, options: &[&str]) -> String {
    let secret = authority.add_client_with(client_id, &[], options);
    let response = authority
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", &secret),
        ])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    json_of(response).await["access_token"]
        .as_str()
        .expect("token")
        .to_owned()
}

fn service_path(user: &User, provider: &str) -> String {
    format!("/v1/users/{}/connect/{provider}/credentials", user.subject)
}

fn assert_no_secret(text: &str, what: &str) {
    for secret in [DAV_PASSWORD, DAV_USERNAME, ZENODO_KEY] {
        assert!(!text.contains(secret), "{what} holds a secret:\n{text}");
    }
}

/// The whole life of stored credentials next to OAuth connections: stored
/// sealed (Redis holds no clear text; it opens with the connect keys for
/// that user and provider only), listed without the secret, read back by
/// a service client allowed that provider (logged with client, subject and
/// provider) and refused to others, removed by the user, and forgotten
/// when the user is removed. No log line holds a secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_stored_sealed_read_back_and_removed() {
    let (setup, authority) = start();
    let alice = connected::user(&authority, "alice").await;
    // OAuth keeps working next to them; credentials providers are not offered there.
    connected::connect_to(&authority, &alice, PROVIDER).await;
    let offers = json_of(authority.get_with("/v1/connect", &alice.bearer).await).await;
    let offered: Vec<&str> = offers["providers"]
        .as_array()
        .expect("offers")
        .iter()
        .filter_map(|offer| offer["name"].as_str())
        .collect();
    assert_eq!(offered, [PROVIDER, SECOND]);

    let stored = put(
        &authority,
        &alice,
        "webdav",
        &json!({ "username": DAV_USERNAME, "password": DAV_PASSWORD }),
    )
    .await;
    assert_eq!(stored.status(), StatusCode::OK);
    let stored = json_of(stored).await;
    assert_eq!(stored["status"], "stored");
    assert_eq!(stored["kind"], "password");
    let response = put(
        &authority,
        &alice,
        "zenodo",
        &json!({ "api_key": ZENODO_KEY }),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);

    // Sealed: no clear text in Redis; it opens for alice and webdav only.
    let raw = setup
        .stored_credentials(&alice.subject, "webdav")
        .await
        .expect("stored");
    assert_no_secret(&raw, "the stored value");
    let keys = Keyring::parse(KEY_1, "keys").expect("keys");
    let envelope = Stored::parse(&raw).expect("an envelope");
    let opened = StoredCredential::open(&envelope, &keys, &alice.subject, "webdav").expect("opens");
    assert!(matches!(
        &opened.secret,
        Secret::Password { username, password } if username == DAV_USERNAME && password == DAV_PASSWORD
    ));
    assert!(StoredCredential::open(&envelope, &keys, &alice.subject, "zenodo").is_err());
    assert!(StoredCredential::open(&envelope, &keys, "someone-else", "webdav").is_err());

    let listed = json_of(
        authority
            .get_with("/v1/connect/credentials", &alice.bearer)
            .await,
    )
    .await;
    let statuses: Vec<(&str, &str)> = listed["credentials"]
        .as_array()
        .expect("list")
        .iter()
        .map(|entry| {
            (
                entry["provider"].as_str().unwrap_or_default(),
                entry["status"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("webdav", "stored"),
            ("zenodo", "stored"),
            ("retired", "not_stored")
        ]
    );
    assert_no_secret(&listed.to_string(), "the list");

    // A service client allowed webdav reads it back; zenodo is refused.
    let rds = client_token(
        &authority,
        "rds-webdav",
        &["--view-access-tokens", "--view-provider", "webdav"],
    )
    .await;
    let served = authority
        .get_with(&service_path(&alice, "webdav"), &rds)
        .await;
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(
        served
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let served = json_of(served).await;
    assert_eq!(served["kind"], "password");
    assert_eq!(served["username"], DAV_USERNAME);
    assert_eq!(served["password"], DAV_PASSWORD);
    assert!(authority.logged(&[
        "provider credentials handed to a service client",
        "client_id=rds-webdav ",
        &format!("user_subject=\"{}\"", alice.subject),
        "provider=\"webdav\"",
    ]));
    let refused = authority
        .get_with(&service_path(&alice, "zenodo"), &rds)
        .await;
    assert_eq!(refusal(refused).await.1, "access_denied");
    let all = client_token(&authority, "rds-all", &["--view-access-tokens"]).await;
    let key = json_of(
        authority
            .get_with(&service_path(&alice, "zenodo"), &all)
            .await,
    )
    .await;
    assert_eq!(key["api_key"], ZENODO_KEY);
    // Without the permission, or as the user: 403 and nothing handed out.
    let plain = client_token(&authority, "plain", &[]).await;
    for (token, who) in [
        (&plain, "a client without the permission"),
        (&alice.bearer, "the user"),
    ] {
        let (status, error, body) = refusal(
            authority
                .get_with(&service_path(&alice, "webdav"), token)
                .await,
        )
        .await;
        assert_eq!((status, error.as_str()), (403, "access_denied"), "{who}");
        assert_no_secret(&body, who);
    }

    // The user removes it: gone from Redis, 404 to the service, 404 again.
    let removed = delete(&authority, &alice, "webdav").await;
    assert_eq!(removed.status(), StatusCode::OK);
    assert!(
        setup
            .stored_credentials(&alice.subject, "webdav")
            .await
            .is_none()
    );
    let (status, error, _) = refusal(
        authority
            .get_with(&service_path(&alice, "webdav"), &rds)
            .await,
    )
    .await;
    assert_eq!((status, error.as_str()), (404, "not_connected"));
    let (status, error, _) = refusal(delete(&authority, &alice, "webdav").await).await;
    assert_eq!((status, error.as_str()), (404, "not_connected"));

    // A disabled user's credentials are not handed out; a removed user's
    // are deleted.
    assert!(
        authority
            .cli(&["user", "disable", "alice"], None)
            .status
            .success()
    );
    let (status, _, _) = refusal(
        authority
            .get_with(&service_path(&alice, "zenodo"), &all)
            .await,
    )
    .await;
    assert_eq!(status, 404);
    assert!(
        authority
            .cli(&["user", "remove", "alice"], None)
            .status
            .success()
    );
    assert!(
        setup
            .stored_credentials(&alice.subject, "zenodo")
            .await
            .is_none()
    );

    assert_no_secret(&authority.logs(), "the authority's log");
}

/// Every key of the `cred:` kind in Redis (what "nothing stored" is about).
async fn credential_keys(setup: &Setup) -> Vec<String> {
    let client = redis::Client::open(setup.redis.url()).expect("url");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    redis::cmd("KEYS")
        .arg("*cred:*")
        .query_async(&mut connection)
        .await
        .expect("KEYS")
}

/// Bad input is a clear 4xx that stores nothing and echoes no secret: a
/// wrong content type, bad UTF-8, a body over the size limit, a field over
/// its cap (the cap itself is accepted), control characters, the wrong
/// kind, unknown fields, an unknown, OAuth or disabled provider, a
/// client's own token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_are_refused_and_store_nothing() {
    let (setup, authority) = start();
    let bob = connected::user(&authority, "bob").await;
    let good = json!({ "username": DAV_USERNAME, "password": DAV_PASSWORD });

    let wrong_type = put_raw(
        &authority,
        &bob,
        "webdav",
        "text/plain",
        serde_json::to_vec(&good).expect("json"),
    )
    .await;
    let mut bad_utf8 = br#"{"username":"alice","password":"dav-"#.to_vec();
    bad_utf8.extend_from_slice(&[0xff, 0xfe]);
    bad_utf8.extend_from_slice(br#""}"#);
    let bad_utf8 = put_raw(&authority, &bob, "webdav", "application/json", bad_utf8).await;
    let oversized =
        json!({ "username": "u", "password": format!("{DAV_PASSWORD}{}", "x".repeat(20_000)) });
    let oversized = put(&authority, &bob, "webdav", &oversized).await;
    let over_cap =
        json!({ "username": "u", "password": format!("{DAV_PASSWORD}{}", "x".repeat(1024)) });
    let over_cap = put(&authority, &bob, "webdav", &over_cap).await;
    for (response, status, what) in [
        (wrong_type, 400, "a wrong content type"),
        (bad_utf8, 400, "bad UTF-8"),
        (oversized, 413, "a body over MAX_BODY_BYTES"),
        (over_cap, 400, "a password over 1024 bytes"),
    ] {
        let (got, error, body) = refusal(response).await;
        assert_eq!(
            (got, error.as_str()),
            (status, "invalid_request"),
            "{what}: {body}"
        );
        assert_no_secret(&body, what);
    }
    for (provider, body, status) in [
        (
            "webdav",
            json!({ "username": "u\n", "password": DAV_PASSWORD }),
            400,
        ),
        (
            "webdav",
            json!({ "username": "u", "password": format!("{DAV_PASSWORD}\u{0}") }),
            400,
        ),
        (
            "webdav",
            json!({ "username": "", "password": DAV_PASSWORD }),
            400,
        ),
        ("webdav", json!({ "api_key": ZENODO_KEY }), 400),
        ("zenodo", good.clone(), 400),
        (
            "webdav",
            json!({ "username": "u", "password": DAV_PASSWORD, "note": 1 }),
            400,
        ),
        ("webdav", json!([DAV_USERNAME, DAV_PASSWORD]), 400),
        ("zenodo", json!({ "api_key": "k".repeat(4097) }), 400),
        ("nope", good.clone(), 404),
        (PROVIDER, good.clone(), 404),
        ("retired", json!({ "api_key": ZENODO_KEY }), 409),
    ] {
        let (got, _, text) = refusal(put(&authority, &bob, provider, &body).await).await;
        assert_eq!(got, status, "{provider} {body}: {text}");
        assert_no_secret(&text, "an error body");
    }
    let client = client_token(&authority, "worker", &["--view-access-tokens"]).await;
    let as_client = authority
        .http
        .put(authority.url("/v1/connect/webdav/credentials"))
        .bearer_auth(&client)
        .json(&good)
        .send()
        .await
        .expect("PUT");
    assert_eq!(as_client.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        credential_keys(&setup).await,
        Vec::<String>::new(),
        "nothing stored"
    );

    // The caps themselves are accepted.
    let at_cap = json!({ "username": "u".repeat(256), "password": "p".repeat(1024) });
    assert_eq!(put(&authority, &bob, "webdav", &at_cap).await.status(), 200);
    let key_at_cap = json!({ "api_key": "k".repeat(4096) });
    assert_eq!(
        put(&authority, &bob, "zenodo", &key_at_cap).await.status(),
        200
    );
    assert_eq!(credential_keys(&setup).await.len(), 2);

    assert_no_secret(&authority.logs(), "the authority's log");
}

/// The account page: the section lists the providers of credentials kinds
/// with a form (CSRF token) per provider; storing through it works and the
/// page afterwards shows "Stored" but never the secret; a form without the
/// CSRF token stores nothing; Remove removes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_page_stores_and_removes_credentials() {
    let (setup, authority) = start();
    authority.add_user("carol", PASSWORD, &[]);
    let browser = Browser::new();
    let signed_in = browser.sign_in(&authority, "carol", PASSWORD).await;
    assert_eq!(signed_in.status(), 303);
    let page = browser.account(&authority).await;
    assert!(page.contains("Stored credentials"), "{page}");
    assert!(page.contains("data-credentials=\"webdav\" data-status=\"not_stored\""));
    assert!(page.contains("Institute WebDAV"));
    let csrf = hidden_value(&page, "csrf").expect("csrf");
    let post = |form: Vec<(&'static str, String)>| {
        let browser = browser.clone();
        let url = authority.url("/account");
        async move {
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            browser.post(&url, &form).await
        }
    };

    let forged = post(vec![
        ("csrf", "not-the-token".into()),
        ("action", "store_credentials".into()),
        ("provider", "webdav".into()),
        ("username", DAV_USERNAME.into()),
        ("password", DAV_PASSWORD.into()),
    ])
    .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let too_long = post(vec![
        ("csrf", csrf.clone()),
        ("action", "store_credentials".into()),
        ("provider", "webdav".into()),
        ("username", DAV_USERNAME.into()),
        ("password", format!("{DAV_PASSWORD}{}", "x".repeat(1024))),
    ])
    .await;
    assert_eq!(
        location(&too_long),
        "/account?failed=credentials&provider=webdav"
    );
    assert!(credential_keys(&setup).await.is_empty(), "nothing stored");

    let stored = post(vec![
        ("csrf", csrf.clone()),
        ("action", "store_credentials".into()),
        ("provider", "webdav".into()),
        ("username", DAV_USERNAME.into()),
        ("password", DAV_PASSWORD.into()),
    ])
    .await;
    assert_eq!(stored.status(), StatusCode::SEE_OTHER);
    let target = location(&stored);
    assert_eq!(target, "/account?done=credentials_stored&provider=webdav");
    let page = browser
        .get(&authority.url(&target))
        .await
        .text()
        .await
        .expect("page");
    assert!(
        page.contains("data-credentials=\"webdav\" data-status=\"stored\""),
        "{page}"
    );
    assert!(page.contains("Your credentials for webdav were stored."));
    assert_no_secret(&page, "the account page");
    assert!(
        setup
            .stored_credentials(&carol_subject(&authority).await, "webdav")
            .await
            .is_some()
    );

    let removed = post(vec![
        ("csrf", csrf.clone()),
        ("action", "remove_credentials".into()),
        ("provider", "webdav".into()),
    ])
    .await;
    assert_eq!(
        location(&removed),
        "/account?done=credentials_removed&provider=webdav"
    );
    assert!(credential_keys(&setup).await.is_empty());
    let page = browser.account(&authority).await;
    assert!(page.contains("data-credentials=\"webdav\" data-status=\"not_stored\""));
    assert_no_secret(&authority.logs(), "the authority's log");
}

async fn carol_subject(authority: &Authority) -> String {
    let token = authority.login("carol", PASSWORD).await["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    json_of(authority.get_with("/v1/me", &token).await).await["sub"]
        .as_str()
        .expect("sub")
        .to_owned()
}

/// The key id a stored credentials record is sealed under.
fn sealed_kid(raw: &str) -> String {
    match Stored::parse(raw).expect("an envelope") {
        Stored::Sealed { kid, .. } => kid,
        Stored::Reconnect { .. } => panic!("a tombstone"),
    }
}

/// Key rotation covers stored credentials: sealed under the old key, they
/// read while both keys are configured; `connect reencrypt` re-seals them
/// under the new one, after which an authority with only the new key reads
/// them. `export` / `import` carry them, sealed, to another Redis, where
/// they read with the same keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reencrypt_and_export_cover_credentials() {
    let (setup, old) = start();
    let alice = connected::user(&old, "alice").await;
    let stored = put(
        &old,
        &alice,
        "webdav",
        &json!({ "username": DAV_USERNAME, "password": DAV_PASSWORD }),
    )
    .await;
    assert_eq!(stored.status(), StatusCode::OK);
    let raw = setup
        .stored_credentials(&alice.subject, "webdav")
        .await
        .expect("stored");
    assert_eq!(sealed_kid(&raw), "k1");

    // One deployment: the same ISSUER (the tokens are for it).
    let issuer = old.url("");
    let both = format!("{KEY_2},{KEY_1}");
    let rotated = setup.authority(BIN, &[("CONNECT_KEYS", &both), ("ISSUER", &issuer)]);
    let output = rotated.cli(&["connect", "reencrypt"], None);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("re-encrypted: 1"), "{stdout}");
    assert!(stdout.contains("unreadable: 0"), "{stdout}");
    let raw = setup
        .stored_credentials(&alice.subject, "webdav")
        .await
        .expect("stored");
    assert_eq!(sealed_kid(&raw), "k2");
    assert_no_secret(&raw, "the re-sealed value");
    // Again: nothing left to do.
    let again = rotated.cli(&["connect", "reencrypt"], None);
    assert!(String::from_utf8_lossy(&again.stdout).contains("re-encrypted: 0, already current: 1"));

    // Only the new key: the service client reads them.
    let new_only = setup.authority(BIN, &[("CONNECT_KEYS", KEY_2), ("ISSUER", &issuer)]);
    let rds = client_token(&new_only, "rds", &["--view-access-tokens"]).await;
    let served = new_only
        .get_with(&service_path(&alice, "webdav"), &rds)
        .await;
    assert_eq!(served.status(), StatusCode::OK);
    let served = json_of(served).await;
    assert_eq!(served["username"], DAV_USERNAME);
    assert_eq!(served["password"], DAV_PASSWORD);
    // The old key alone no longer opens them.
    let listed = json_of(old.get_with("/v1/connect/credentials", &alice.bearer).await).await;
    assert_eq!(listed["credentials"][0]["status"], "unreadable", "{listed}");

    // Export and import into another Redis: sealed, and readable there.
    let output = new_only.cli(&["export"], None);
    assert!(output.status.success());
    let export = String::from_utf8(output.stdout).expect("utf-8");
    assert_no_secret(&export, "the export");
    assert!(export.contains("\"kind\":\"credential\""), "{export}");
    let target_redis = token_test_harness::RedisServer::start();
    let target = setup.authority_on(BIN, &target_redis.url(), &[("CONNECT_KEYS", KEY_2)]);
    let imported = target.cli(&["import"], Some(&export));
    let stderr = String::from_utf8_lossy(&imported.stderr);
    assert!(imported.status.success(), "{stderr}");
    assert!(stderr.contains("1 credentials"), "{stderr}");
    let rds = client_token(&target, "rds-target", &["--view-access-tokens"]).await;
    let served = json_of(target.get_with(&service_path(&alice, "webdav"), &rds).await).await;
    assert_eq!(served["password"], DAV_PASSWORD);
    // Into a target holding credentials: refused.
    let again = target.cli(&["import"], Some(&export));
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("1 credentials"), "{stderr}");
    assert_no_secret(&target.logs(), "the target's log");
    assert_no_secret(&new_only.logs(), "the authority's log");
}

//! Connected services with two providers configured at once (two clients
//! of one real OpenID Connect provider, `tests/oidc-provider`): the
//! refresh token's lifetime (issue 18, item 5) and one provider's offer
//! with a return URL (item 6).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{StatusCode, Url};
use serde_json::Value;
use token_broker::crypto::Keyring;
use token_broker::record::Stored;
use token_repository::{KeyPrefix, SubjectTag, Timestamp};
use token_service_tests::Authority;
use token_service_tests::connected::{
    self, FAILURE_URL, KEY_1, PROVIDER, SECOND, SUCCESS_URL, Setup, User,
};
use token_service_tests::oidc::{CLIENT_ID, SECOND_CLIENT_ID};
use token_test_harness::wait_until_async;

const BIN: &str = env!("CARGO_BIN_EXE_e2e-token-authority");

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.expect("json body")
}

/// `GET /v1/connect/{provider}` for `user`.
async fn status(authority: &Authority, user: &User, provider: &str) -> Value {
    let response = authority
        .get_with(&format!("/v1/connect/{provider}"), &user.bearer)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    json_of(response).await
}

fn now_secs() -> u64 {
    Timestamp::now().as_unix_millis() / 1000
}

/// Whether `value` is within `slack` seconds of `expected`.
fn near(value: &Value, expected: u64, slack: u64) -> bool {
    value
        .as_u64()
        .is_some_and(|value| value.abs_diff(expected) <= slack)
}

/// Whether `subject`'s connection to `provider` is in the keep-alive index.
async fn indexed(setup: &Setup, subject: &str, provider: &str) -> bool {
    let client = redis::Client::open(setup.redis.url()).expect("url");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let score: Option<f64> = redis::cmd("ZSCORE")
        .arg(KeyPrefix::default().connections())
        .arg(format!("{provider}:{subject}"))
        .query_async(&mut connection)
        .await
        .expect("ZSCORE");
    score.is_some()
}

/// The refresh token's expiry is stored and reported: from the token
/// response's `refresh_expires_in` (first provider, as Keycloak sends it)
/// or the provider's `refresh_token_expires_in` (second provider); a
/// rotated refresh token gets a new expiry; `expiring` follows
/// `CONNECT_EXPIRING_MARGIN`; a record written before the field existed is
/// read as "expiry unknown".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_token_lifetime_is_stored_and_reported() {
    let setup = Setup::start_two(
        &[
            ("OIDC_REFRESH_EXPIRES_IN_CLIENTS", CLIENT_ID),
            ("OIDC_REFRESH_TOKEN_TTL", "86400"),
            ("OIDC_ACCESS_TOKEN_TTL", "2"),
        ],
        "",
        "refresh_token_expires_in = 2592000",
    );
    let authority = setup.authority(BIN, &[]);
    // Another replica with a one-hour margin (one deployment: the same
    // ISSUER, which alice's token is for).
    let issuer = authority.url("");
    let short_margin = setup.authority(
        BIN,
        &[
            ("CONNECT_EXPIRING_MARGIN", "3600"),
            ("ISSUER", issuer.as_str()),
        ],
    );
    let alice = connected::user(&authority, "alice").await;
    let connected_at = now_secs();
    connected::connect_to(&authority, &alice, PROVIDER).await;
    connected::connect_to(&authority, &alice, SECOND).await;
    let after = now_secs();
    let slack = after - connected_at + 2;

    let first = status(&authority, &alice, PROVIDER).await;
    assert_eq!(first["status"], "connected", "{first}");
    assert!(
        near(&first["refresh_expires_at"], connected_at + 86_400, slack),
        "{first}"
    );
    assert_eq!(first["expiring"], true, "one day left, margin 7 days");
    assert_eq!(
        status(&short_margin, &alice, PROVIDER).await["expiring"],
        false,
        "margin one hour"
    );
    let second = status(&authority, &alice, SECOND).await;
    assert!(
        near(
            &second["refresh_expires_at"],
            connected_at + 2_592_000,
            slack
        ),
        "{second}"
    );
    assert_eq!(second["expiring"], false, "{second}");
    let listed = json_of(
        authority
            .get_with("/v1/connect/tokens", &alice.bearer)
            .await,
    )
    .await;
    let listed = listed["connections"].as_array().expect("connections");
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(
        listed
            .iter()
            .all(|view| view["refresh_expires_at"].is_u64())
    );

    // A refresh (the provider rotates the refresh token) moves the expiry.
    let before = setup.decrypt_at(&alice.subject, SECOND, KEY_1).await;
    let expired = wait_until_async(Duration::from_secs(20), tokio::time::sleep, || async {
        (Timestamp::now().as_unix_millis() > before.expires_at + 1000).then_some(())
    })
    .await;
    assert!(expired.is_some());
    for provider in [PROVIDER, SECOND] {
        let response = authority
            .get_with(
                &format!("/v1/connect/{provider}/token?expires=1"),
                &alice.bearer,
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK, "{provider}");
    }
    assert_eq!(setup.provider.stat("refresh_grants").await, 2);
    let rotated = setup.decrypt_at(&alice.subject, SECOND, KEY_1).await;
    assert_ne!(rotated.refresh_token, before.refresh_token);
    let (old, new) = (
        before.refresh_expires_at.expect("expiry"),
        rotated.refresh_expires_at.expect("expiry"),
    );
    assert_eq!(
        new - rotated.refreshed_at,
        2_592_000_000,
        "30 days from the refresh"
    );
    assert!(new > old + 2_000, "{old} -> {new}");
    let first = setup.decrypt_at(&alice.subject, PROVIDER, KEY_1).await;
    assert_eq!(
        first.refresh_expires_at.expect("expiry") - first.refreshed_at,
        86_400_000,
        "from the refresh's refresh_expires_in"
    );

    // A record of before this field: no expiry known, never "expiring".
    let bob = connected::user(&authority, "bob").await;
    let mut old_record = before.clone();
    old_record.username = "bob".into();
    old_record.refresh_expires_at = None;
    old_record.expires_at = Timestamp::now().as_unix_millis() + 3_600_000;
    let keys = Keyring::parse(KEY_1, "keys").expect("keys");
    let text = Stored::seal(&keys, &bob.subject, PROVIDER, &old_record)
        .expect("seal")
        .to_text();
    let client = redis::Client::open(setup.redis.url()).expect("url");
    let mut redis = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let () = redis::cmd("SET")
        .arg(KeyPrefix::default().connection(&SubjectTag::of(&bob.subject), PROVIDER))
        .arg(&text)
        .query_async(&mut redis)
        .await
        .expect("SET");
    let view = status(&authority, &bob, PROVIDER).await;
    assert_eq!(view["status"], "connected", "{view}");
    assert!(view.get("refresh_expires_at").is_none(), "{view}");
    assert_eq!(view["expiring"], false);
    assert_eq!(view["refreshable"], true);
}

/// Past the refresh token's known lifetime nothing is tried at the
/// provider: the keep-alive leaves such a connection alone (and takes it
/// out of its index) while it refreshes the other provider's, the status
/// says needs_reconnect with reason `expired`, and the token endpoint
/// answers 409 reconnect_required.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_tried_past_the_refresh_token_lifetime() {
    let setup = Setup::start_two(
        &[("OIDC_ACCESS_TOKEN_TTL", "2")],
        "keepalive_after = 4",
        "keepalive_after = 4\nrefresh_token_expires_in = 2",
    );
    let authority = setup.authority(BIN, &[("CONNECT_KEEPALIVE_INTERVAL", "1")]);
    let alice = connected::user(&authority, "alice").await;
    connected::connect_to(&authority, &alice, PROVIDER).await;
    connected::connect_to(&authority, &alice, SECOND).await;
    let first = setup.decrypt_at(&alice.subject, PROVIDER, KEY_1).await;
    assert!(indexed(&setup, &alice.subject, SECOND).await);
    let second = setup.decrypt_at(&alice.subject, SECOND, KEY_1).await;
    assert_eq!(
        second.refresh_expires_at.map(|at| at - second.refreshed_at),
        Some(2_000)
    );

    let done = wait_until_async(Duration::from_secs(30), tokio::time::sleep, || async {
        let refreshed = setup.decrypt_at(&alice.subject, PROVIDER, KEY_1).await;
        (refreshed.refreshed_at > first.refreshed_at
            && !indexed(&setup, &alice.subject, SECOND).await)
            .then_some(())
    })
    .await;
    assert!(done.is_some(), "keep-alive:\n{}", authority.logs());
    assert!(setup.provider.grants_of(CLIENT_ID, "refresh_token").await >= 1);
    assert_eq!(
        setup
            .provider
            .grants_of(SECOND_CLIENT_ID, "refresh_token")
            .await,
        0,
        "no refresh past the refresh token's lifetime"
    );
    assert_eq!(setup.provider.stat("refresh_errors").await, 0);
    assert!(
        authority
            .logs()
            .lines()
            .any(|line| line.contains("keep-alive pass") && line.contains("expired=1")),
        "{}",
        authority.logs()
    );

    let view = status(&authority, &alice, SECOND).await;
    assert_eq!(view["status"], "needs_reconnect", "{view}");
    assert_eq!(view["reason"], "expired");
    assert_eq!(view["refreshable"], false);
    assert_eq!(view["expiring"], true);
    assert_eq!(
        status(&authority, &alice, PROVIDER).await["status"],
        "connected"
    );
    let response = authority
        .get_with(
            &format!("/v1/connect/{SECOND}/token?expires=1"),
            &alice.bearer,
        )
        .await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(json_of(response).await["error"], "reconnect_required");
    assert_eq!(
        setup
            .provider
            .grants_of(SECOND_CLIENT_ID, "refresh_token")
            .await,
        0
    );
    assert_eq!(setup.provider.stat("refresh_errors").await, 0);
}

/// A query parameter of a URL.
fn parameter(url: &str, name: &str) -> Option<String> {
    Url::parse(url)
        .expect("URL")
        .query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// `url` with its query parameter `name` (a signed state or ticket) whose
/// claim `claim` is replaced by `value`, the signature kept.
fn tampered(url: &str, name: &str, claim: &str, value: &str) -> String {
    let url = Url::parse(url).expect("URL");
    let signed = parameter(url.as_str(), name).expect("a signed parameter");
    let (payload, tag) = signed.split_once('.').expect("signed");
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64")).expect("json");
    claims[claim] = value.into();
    let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(claims.to_string()));
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == name {
                forged.clone()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    let mut out = url;
    out.query_pairs_mut().clear().extend_pairs(pairs);
    out.to_string()
}

/// `GET /v1/connect/{provider}/offer` with `return_to` (if any).
async fn offer(
    authority: &Authority,
    user: &User,
    provider: &str,
    return_to: Option<&str>,
) -> reqwest::Response {
    let mut url =
        Url::parse(&authority.url(&format!("/v1/connect/{provider}/offer"))).expect("url");
    if let Some(return_to) = return_to {
        url.query_pairs_mut().append_pair("return_to", return_to);
    }
    authority
        .http
        .get(url)
        .bearer_auth(&user.bearer)
        .send()
        .await
        .expect("offer")
}

/// Every connection key and the keep-alive index (what "nothing stored"
/// is about).
async fn connection_keys(setup: &Setup) -> Vec<(Vec<u8>, Vec<u8>)> {
    token_service_tests::snapshot::snapshot(&setup.redis.url())
        .await
        .into_iter()
        .filter(|(key, _)| {
            let key = String::from_utf8_lossy(key);
            key.contains(":conn:") || key.ends_with(":conns")
        })
        .map(|(key, (value, _))| (key, value))
        .collect()
}

/// Two providers and an authority allowing two return URLs.
fn with_return_urls() -> (Setup, Authority) {
    let setup = Setup::start_two(&[], "", "");
    let authority = setup.authority(
        BIN,
        &[(
            "CONNECT_RETURN_URLS",
            "https://app.example, https://jobs.example/runs/",
        )],
    );
    (setup, authority)
}

/// One provider's offer (the shape of an element of `GET /v1/connect`),
/// and with `return_to` the browser ends there after the callback instead
/// of the success page; the other provider, offered without it, still
/// ends on the success page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_offer_returns_to_an_allowed_url() {
    let (setup, authority) = with_return_urls();
    let alice = connected::user(&authority, "alice").await;
    let all = json_of(authority.get_with("/v1/connect", &alice.bearer).await).await;
    let listed = all["providers"]
        .as_array()
        .expect("providers")
        .iter()
        .find(|offer| offer["name"] == SECOND)
        .expect("listed")
        .clone();

    let response = offer(
        &authority,
        &alice,
        SECOND,
        Some("https://jobs.example/runs/7?x=1"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let single = json_of(response).await;
    let keys = |value: &Value| {
        value
            .as_object()
            .expect("object")
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&single), keys(&listed));
    assert_eq!(single["display_name"], listed["display_name"]);
    let link = single["authorize_url"].as_str().expect("a link");
    let (_, page) = connected::finish(link, &alice).await;
    assert_eq!(
        page,
        format!("https://jobs.example/runs/7?x=1&provider={SECOND}")
    );
    assert!(setup.stored_at(&alice.subject, SECOND).await.is_some());

    // The first provider, without return_to: the success page.
    let response = offer(&authority, &alice, PROVIDER, None).await;
    let link = json_of(response).await["authorize_url"]
        .as_str()
        .expect("a link")
        .to_owned();
    let (_, page) = connected::finish(&link, &alice).await;
    assert_eq!(page, format!("{SUCCESS_URL}?provider={PROVIDER}"));

    // Unknown provider, no bearer.
    assert_eq!(
        offer(&authority, &alice, "nope", None).await.status(),
        StatusCode::NOT_FOUND
    );
    let anonymous = authority
        .http
        .get(authority.url(&format!("/v1/connect/{SECOND}/offer")))
        .send()
        .await
        .expect("offer");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

/// `return_to` outside `CONNECT_RETURN_URLS` is refused with 400 and a
/// clear error (unlisted origin, look-alikes, `//evil`, another port or
/// scheme, a path beside the prefix, user information, a fragment); a
/// state or a link ticket carrying another return URL than the one signed
/// is refused; nothing is stored by any of them, and the genuine callback
/// still returns to the allowed URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn return_urls_outside_the_allow_list_are_refused() {
    let (setup, authority) = with_return_urls();
    let bob = connected::user(&authority, "bob").await;
    let before = connection_keys(&setup).await;
    for bad in [
        "https://evil.example/",
        "https://app.example.evil/",
        "https://app.example@evil/",
        "https://app.example:x@evil.example/",
        "//evil",
        "//app.example/",
        "/relative",
        "https://app.example:8443/",
        "http://app.example/",
        "https://jobs.example/runsx",
        "https://jobs.example/runs/../admin",
        "https://app.example/#fragment",
        "javascript:alert(1)",
    ] {
        for provider in [PROVIDER, SECOND] {
            let response = offer(&authority, &bob, provider, Some(bad)).await;
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad:?}");
            let body = json_of(response).await;
            assert_eq!(body["error"], "invalid_request", "{bad:?}");
            assert!(
                body["error_description"]
                    .as_str()
                    .is_some_and(|text| text.contains("return_to")),
                "{body}"
            );
        }
    }

    // A link ticket whose return URL was swapped: refused.
    let link = json_of(offer(&authority, &bob, SECOND, Some("https://app.example/ok")).await).await
        ["authorize_url"]
        .as_str()
        .expect("a link")
        .to_owned();
    let browser = token_service_tests::oidc::Browser::new();
    let (status, _) = browser
        .visit(&tampered(&link, "ticket", "r", "https://evil.example/"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // A state whose return URL was swapped: invalid_state, to the failure page.
    let callback = browser.authorize(&link, "bob").await.to_string();
    let (status, page) = browser
        .visit(&tampered(&callback, "state", "r", "https://evil.example/"))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        page.as_deref(),
        Some(format!("{FAILURE_URL}?reason=invalid_state").as_str())
    );
    assert_eq!(connection_keys(&setup).await, before, "nothing stored");
    assert_eq!(setup.provider.stat("code_grants").await, 0);

    // The genuine callback goes where it was signed for.
    let (_, page) = browser.visit(&callback).await;
    assert_eq!(
        page.as_deref(),
        Some(format!("https://app.example/ok?provider={SECOND}").as_str())
    );
    assert!(setup.stored_at(&bob.subject, SECOND).await.is_some());
}

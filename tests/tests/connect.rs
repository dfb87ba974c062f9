//! Connected services end to end: the real authority binary, a private
//! redis-server and a real OpenID Connect provider (panva's oidc-provider
//! on Node, `tests/oidc-provider`), the browser part driven over HTTP.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{StatusCode, Url};
use serde_json::Value;
use token_broker::record::Stored;
use token_repository::Timestamp;
use token_service_tests::Authority;
use token_service_tests::authority::run_cli;
use token_service_tests::connected::{
    self, FAILURE_URL, KEY_1, KEY_2, PROVIDER, SUCCESS_URL, Setup, User, provider_token,
};
use token_service_tests::oidc::Browser;
use token_service_tests::snapshot::snapshot;
use token_test_harness::{wait_until, wait_until_async};

const BIN: &str = env!("CARGO_BIN_EXE_e2e-token-authority");

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.expect("json body")
}

async fn error_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body = json_of(response).await;
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

/// A query parameter of a URL.
fn parameter(url: &str, name: &str) -> Option<String> {
    Url::parse(url)
        .expect("URL")
        .query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// The failure page for `reason`.
fn failure(reason: &str, provider: bool) -> String {
    if provider {
        format!("{FAILURE_URL}?reason={reason}&provider={PROVIDER}")
    } else {
        format!("{FAILURE_URL}?reason={reason}")
    }
}

/// Waits (polling the clock, not sleeping blindly) until the stored access
/// token of `user` has expired.
async fn until_expired(setup: &Setup, user: &User) {
    let expires_at = setup.decrypt(&user.subject, KEY_1).await.expires_at;
    let waited = wait_until(Duration::from_secs(30), || {
        (Timestamp::now().as_unix_millis() > expires_at).then_some(())
    });
    assert!(waited.is_some(), "the provider token never expired");
}

/// Only the connection keys of a Redis snapshot (what "stores nothing"
/// is about; used-state markers are expected to appear).
async fn connection_keys(url: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    snapshot(url)
        .await
        .into_iter()
        .filter(|(key, _)| {
            let key = String::from_utf8_lossy(key);
            key.contains(":conn:") || key.ends_with(":conns")
        })
        .map(|(key, (value, _))| (key, value))
        .collect()
}

/// The whole flow: the authority offers the provider with a signed state
/// and a PKCE S256 challenge, the user logs in and consents at the
/// provider, the callback exchanges the code and redirects to the success
/// page; the stored access token works at the provider and is served from
/// storage without another provider call; status and listing say
/// "connected" without showing a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_flow_connects_and_serves_the_token() {
    let setup = Setup::start(&[], "authorize_params = { ui_locales = \"en\" }");
    let authority = setup.authority(BIN, &[]);
    let alice = connected::user(&authority, "alice").await;

    let offers = json_of(authority.get_with("/v1/connect", &alice.bearer).await).await;
    let offer = &offers["providers"][0];
    assert_eq!(offer["name"], PROVIDER);
    assert_eq!(offer["display_name"], "Test IdP");
    assert_eq!(offer["logo_url"], "https://idp.test/logo.svg");
    // GET /v1/connect hands out a link to the authority; a browser signed
    // in as alice turns it into the provider's URL, bound to its session.
    let link = offer["authorize_url"].as_str().expect("authorize URL");
    assert!(
        link.starts_with(&authority.url("/connect/start?ticket=")),
        "{link}"
    );
    let url = Browser::new().provider_url(link, "alice").await;
    let url = url.as_str();
    assert!(url.starts_with(&format!("{}/auth?", setup.provider.issuer())));
    assert_eq!(
        parameter(url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(parameter(url, "client_id").as_deref(), Some("authority"));
    assert_eq!(
        parameter(url, "scope").as_deref(),
        Some("openid offline_access")
    );
    assert_eq!(parameter(url, "ui_locales").as_deref(), Some("en"));
    assert_eq!(
        parameter(url, "redirect_uri"),
        Some(authority.url("/v1/connect/callback"))
    );
    assert!(parameter(url, "state").is_some());
    let status = json_of(
        authority
            .get_with(&format!("/v1/connect/{PROVIDER}"), &alice.bearer)
            .await,
    )
    .await;
    assert_eq!(status["status"], "not_connected");

    let (callback, page) = connected::connect(&authority, &alice).await;
    assert!(parameter(&callback, "code").is_some(), "{callback}");
    assert_eq!(page, format!("{SUCCESS_URL}?provider={PROVIDER}"));
    assert_eq!(setup.provider.stat("code_grants").await, 1);

    let response = provider_token(&authority, &alice, 30).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body = json_of(response).await;
    let token = body["access_token"].as_str().expect("token").to_owned();
    assert_eq!(body["provider"], PROVIDER);
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_u64().expect("expires_in") >= 30);
    let (status, userinfo) = setup.provider.userinfo(&token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(userinfo["sub"], "alice");

    let again = json_of(provider_token(&authority, &alice, 30).await).await;
    assert_eq!(again["access_token"], token.as_str());
    assert_eq!(
        setup.provider.stat("refresh_grants").await,
        0,
        "served from storage"
    );

    let status = json_of(
        authority
            .get_with(&format!("/v1/connect/{PROVIDER}"), &alice.bearer)
            .await,
    )
    .await;
    assert_eq!(status["status"], "connected");
    assert_eq!(status["refreshable"], true);
    let list = authority
        .get_with("/v1/connect/tokens", &alice.bearer)
        .await;
    let text = list.text().await.expect("text");
    assert!(!text.contains(&token), "no token in the listing");
    let list: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(list["connections"][0]["provider"], PROVIDER);
    assert_eq!(list["connections"][0]["status"], "connected");
    assert!(!authority.logs().contains(&token), "no token in the logs");

    // Unknown providers and bad `expires` are refused clearly.
    let unknown = authority
        .get_with("/v1/connect/nope/token", &alice.bearer)
        .await;
    assert_eq!(error_of(unknown).await, (404, "not_found".into()));
    let too_much = provider_token(&authority, &alice, 100_000).await;
    assert_eq!(error_of(too_much).await, (400, "invalid_request".into()));
    let anonymous = authority
        .http
        .get(authority.url(&format!("/v1/connect/{PROVIDER}/token")))
        .send()
        .await
        .expect("request");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

/// Provider tokens are encrypted at rest: no key or value in Redis holds
/// the access or the refresh token (or their base64), the record names its
/// key id, and a record copied under another user's key does not decrypt
/// for that user (the associated data binds it to its owner).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_encrypted_at_rest() {
    let setup = Setup::start(&[], "");
    let authority = setup.authority(BIN, &[]);
    let alice = connected::user(&authority, "alice").await;
    connected::connect(&authority, &alice).await;
    let connection = setup.decrypt(&alice.subject, KEY_1).await;
    let access = connection.access_token.clone();
    let refresh = connection.refresh_token.clone().expect("a refresh token");
    assert!(!access.is_empty() && !refresh.is_empty());

    let everything = snapshot(&setup.redis.url()).await;
    let client = redis::Client::open(setup.redis.url()).expect("url");
    let mut redis = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let mut texts = Vec::new();
    for key in everything.keys() {
        texts.push(key.clone());
        if let Ok(value) = redis::cmd("GET")
            .arg(key)
            .query_async::<Vec<u8>>(&mut redis)
            .await
        {
            texts.push(value);
        }
        texts.push(everything[key].0.clone());
    }
    for secret in [&access, &refresh] {
        let encoded = base64::engine::general_purpose::STANDARD.encode(secret);
        for needle in [secret.as_bytes(), encoded.as_bytes()] {
            assert!(
                !texts
                    .iter()
                    .any(|text| text.windows(needle.len()).any(|w| w == needle)),
                "a provider token is readable in Redis"
            );
        }
    }
    let raw = setup.stored(&alice.subject).await.expect("stored");
    let Stored::Sealed { sub, kid, .. } = Stored::parse(&raw).expect("envelope") else {
        panic!("expected a sealed record: {raw}");
    };
    assert_eq!((sub.as_str(), kid.as_str()), (alice.subject.as_str(), "k1"));

    // Copy alice's record under bob's key (and relabel it): it does not open.
    let bob = connected::user(&authority, "bob").await;
    let bob_key = token_repository::KeyPrefix::default()
        .connection(&token_repository::SubjectTag::of(&bob.subject), PROVIDER);
    let relabelled = raw.replace(&alice.subject, &bob.subject);
    let () = redis::cmd("SET")
        .arg(&bob_key)
        .arg(&relabelled)
        .query_async(&mut redis)
        .await
        .expect("SET");
    let stolen = provider_token(&authority, &bob, 10).await;
    assert_eq!(error_of(stolen).await, (409, "reconnect_required".into()));
    let status = json_of(
        authority
            .get_with(&format!("/v1/connect/{PROVIDER}"), &bob.bearer)
            .await,
    )
    .await;
    assert_eq!(status["status"], "needs_reconnect");
    assert_eq!(status["reason"], "unreadable");
    assert!(!authority.logs().contains(&access) && !authority.logs().contains(&refresh));
}

/// An expired access token is refreshed on the next request (and only
/// then); the provider rotates the refresh token and the authority stores
/// the new one, proven by a second refresh that succeeds (the consumed
/// one would make the provider revoke the whole grant).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_on_expiry_stores_the_rotated_refresh_token() {
    let setup = Setup::start(&[("OIDC_ACCESS_TOKEN_TTL", "2")], "");
    let authority = setup.authority(BIN, &[]);
    let alice = connected::user(&authority, "alice").await;
    connected::connect(&authority, &alice).await;
    let first = setup.decrypt(&alice.subject, KEY_1).await;
    let body = json_of(provider_token(&authority, &alice, 1).await).await;
    assert_eq!(body["access_token"], first.access_token.as_str());
    assert_eq!(setup.provider.stat("refresh_grants").await, 0);

    until_expired(&setup, &alice).await;
    assert_eq!(
        setup.provider.userinfo(&first.access_token).await.0,
        StatusCode::UNAUTHORIZED
    );
    let body = json_of(provider_token(&authority, &alice, 1).await).await;
    let refreshed = body["access_token"].as_str().expect("token").to_owned();
    assert_ne!(refreshed, first.access_token);
    assert_eq!(setup.provider.userinfo(&refreshed).await.0, StatusCode::OK);
    assert_eq!(setup.provider.stat("refresh_grants").await, 1);
    let second = setup.decrypt(&alice.subject, KEY_1).await;
    assert_eq!(second.access_token, refreshed);
    assert_ne!(
        second.refresh_token, first.refresh_token,
        "rotated refresh token stored"
    );
    assert!(second.refreshed_at > first.refreshed_at);
    assert_eq!(second.connected_at, first.connected_at);

    until_expired(&setup, &alice).await;
    let body = json_of(provider_token(&authority, &alice, 1).await).await;
    assert_ne!(body["access_token"], refreshed.as_str());
    let stats = setup.provider.stats().await;
    assert_eq!(stats["refresh_grants"], 2);
    assert_eq!(stats["refresh_errors"], 0);
    assert_eq!(
        stats["grants_revoked"], 0,
        "no reuse of a consumed refresh token"
    );
    assert!(authority.logged(&["provider token refreshed", "rotated=true"]));
    assert!(!authority.logs().contains(&refreshed));
    let metrics = authority.metrics().await;
    assert!(
        metrics.contains(
            r#"authority_connect_refreshes_total{provider="test-idp",outcome="refreshed"} 2"#
        ),
        "{metrics}"
    );
}

/// Concurrent token requests for an expired token, spread over three
/// authority processes sharing one Redis, cause exactly one refresh at the
/// provider; every request gets the same fresh token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_across_replicas_refresh_once() {
    // The refreshed token lives 4 s and the requests need 1 s: seconds of
    // slack for a loaded machine before a late waiter would refresh again.
    let setup = Setup::start(&[("OIDC_ACCESS_TOKEN_TTL", "4")], "");
    // Replicas of one deployment share its ISSUER: the audience of
    // alice's token is the authority, whichever replica issued it.
    let first = setup.authority(BIN, &[]);
    let issuer = first.url("");
    let mut replicas = vec![first];
    replicas.extend((1..3).map(|_| setup.authority(BIN, &[("ISSUER", issuer.as_str())])));
    let alice = connected::user(&replicas[0], "alice").await;
    connected::connect(&replicas[1], &alice).await;
    until_expired(&setup, &alice).await;
    setup.provider.reset().await;

    const PER_REPLICA: usize = 4;
    let started = Instant::now();
    let requests = replicas.iter().flat_map(|authority| {
        (0..PER_REPLICA).map(|_| async {
            let started = Instant::now();
            let response = provider_token(authority, &alice, 1).await;
            let status = response.status();
            let body = json_of(response).await;
            (status, body, started.elapsed())
        })
    });
    let answers = futures_util::future::join_all(requests).await;
    let total = started.elapsed();
    let tokens: std::collections::BTreeSet<String> = answers
        .iter()
        .map(|(status, body, _)| {
            assert_eq!(*status, StatusCode::OK, "{body}");
            body["access_token"].as_str().expect("token").to_owned()
        })
        .collect();
    assert_eq!(tokens.len(), 1, "every request gets the same token");
    let stats = setup.provider.stats().await;
    assert_eq!(stats["refresh_grants"], 1, "exactly one refresh: {stats}");
    assert_eq!(stats["refresh_errors"], 0);
    let slowest = answers
        .iter()
        .map(|(_, _, elapsed)| *elapsed)
        .max()
        .unwrap_or_default();
    eprintln!(
        "{} concurrent requests over {} replicas: 1 refresh, all answered in {total:?} (slowest {slowest:?})",
        answers.len(),
        replicas.len()
    );
    assert!(
        replicas
            .iter()
            .any(|authority| authority.logged(&["provider token refreshed"]))
    );
    let refreshed_by = replicas
        .iter()
        .filter(|authority| authority.logs().contains("provider token refreshed"))
        .count();
    assert_eq!(refreshed_by, 1);
}

/// A refresh the provider rejects (`invalid_grant`: the user's grant was
/// revoked there) removes the tokens and answers 409 reconnect_required;
/// the status says needs_reconnect; connecting again repairs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_refresh_asks_to_reconnect() {
    let setup = Setup::start(&[("OIDC_ACCESS_TOKEN_TTL", "2")], "");
    let authority = setup.authority(BIN, &[]);
    let alice = connected::user(&authority, "alice").await;
    connected::connect(&authority, &alice).await;
    let revoked = setup.provider.revoke_grants("alice").await;
    assert_eq!(revoked["revoked"].as_array().map(Vec::len), Some(1));
    until_expired(&setup, &alice).await;

    let response = provider_token(&authority, &alice, 1).await;
    let status = response.status();
    let body = json_of(response).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"], "reconnect_required");
    assert!(
        body["error_description"]
            .as_str()
            .expect("text")
            .contains("connect the service again")
    );
    let raw = setup.stored(&alice.subject).await.expect("a tombstone");
    assert!(
        matches!(Stored::parse(&raw).expect("value"), Stored::Reconnect { ref reason, .. } if reason == "invalid_grant"),
        "{raw}"
    );
    let again = provider_token(&authority, &alice, 1).await;
    assert_eq!(error_of(again).await, (409, "reconnect_required".into()));
    assert_eq!(
        setup.provider.stat("refresh_errors").await,
        1,
        "asked the provider once"
    );
    let status = json_of(
        authority
            .get_with(&format!("/v1/connect/{PROVIDER}"), &alice.bearer)
            .await,
    )
    .await;
    assert_eq!(status["status"], "needs_reconnect");
    assert_eq!(status["reason"], "invalid_grant");

    let (_, page) = connected::connect(&authority, &alice).await;
    assert_eq!(page, format!("{SUCCESS_URL}?provider={PROVIDER}"));
    let response = provider_token(&authority, &alice, 1).await;
    assert_eq!(response.status(), StatusCode::OK);
}

/// A provider that is down is an outage, not a broken connection: the
/// token endpoint answers 503 with Retry-After at once (no hanging), and
/// the connection is kept for when the provider is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_outage_answers_503_and_keeps_the_connection() {
    let mut setup = Setup::start(&[("OIDC_ACCESS_TOKEN_TTL", "2")], "");
    let authority = setup.authority(BIN, &[]);
    let alice = connected::user(&authority, "alice").await;
    connected::connect(&authority, &alice).await;
    setup.provider.stop();
    until_expired(&setup, &alice).await;
    let started = Instant::now();
    let response = provider_token(&authority, &alice, 1).await;
    assert!(started.elapsed() < Duration::from_secs(5), "bounded");
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(
        error_of(response).await,
        (503, "temporarily_unavailable".into())
    );
    let status = json_of(
        authority
            .get_with(&format!("/v1/connect/{PROVIDER}"), &alice.bearer)
            .await,
    )
    .await;
    assert_eq!(status["status"], "connected");
    assert!(
        setup
            .decrypt(&alice.subject, KEY_1)
            .await
            .refresh_token
            .is_some()
    );
}

/// Disconnecting forgets the tokens and revokes the refresh token at the
/// provider (RFC 7009): the provider counts the revocation and no longer
/// knows the token. Removing a user does the same for its connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_revokes_at_the_provider() {
    let setup = Setup::start(&[], "");
    let authority = setup.authority(BIN, &[]);
    let alice = connected::user(&authority, "alice").await;
    connected::connect(&authority, &alice).await;
    let connection = setup.decrypt(&alice.subject, KEY_1).await;
    let refresh = connection.refresh_token.clone().expect("refresh token");
    assert_eq!(setup.provider.introspect(&refresh).await["active"], true);

    let response = authority
        .http
        .delete(authority.url(&format!("/v1/connect/{PROVIDER}")))
        .bearer_auth(&alice.bearer)
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status(), StatusCode::OK);
    let body = json_of(response).await;
    assert_eq!(body["provider_revocation"], "revoked");
    let stats = setup.provider.stats().await;
    assert_eq!(stats["revoked_refresh_tokens"], 1, "{stats}");
    assert_eq!(setup.provider.introspect(&refresh).await["active"], false);
    assert_eq!(
        setup.provider.userinfo(&connection.access_token).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert!(setup.stored(&alice.subject).await.is_none());
    let token = provider_token(&authority, &alice, 1).await;
    assert_eq!(error_of(token).await, (404, "not_connected".into()));
    let again = authority
        .http
        .delete(authority.url(&format!("/v1/connect/{PROVIDER}")))
        .bearer_auth(&alice.bearer)
        .send()
        .await
        .expect("delete");
    assert_eq!(error_of(again).await, (404, "not_connected".into()));

    let bob = connected::user(&authority, "bob").await;
    connected::connect(&authority, &bob).await;
    let output = authority.cli(&["user", "remove", "bob"], None);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(setup.stored(&bob.subject).await.is_none());
    assert_eq!(setup.provider.stat("revoked_refresh_tokens").await, 2);
}

/// The state is single-use and signed: replaying a callback, tampering
/// with the state (claiming another user) or sending none is refused with
/// a reason code and stores nothing; the provider's `access_denied` stores
/// nothing either; the untampered callback still works afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_and_tampered_states_are_refused() {
    let setup = Setup::start(&[], "");
    let authority = setup.authority(BIN, &[]);
    let alice = connected::user(&authority, "alice").await;
    let mallory = connected::user(&authority, "mallory").await;
    let alices = Browser::new();
    let browser = Browser::new();

    // Replay: the same callback twice (in the browser that started it).
    let url = connected::authorize_url(&authority, &alice).await;
    let callback = alices.authorize(&url, "alice").await.to_string();
    let (_, page) = alices.visit(&callback).await;
    assert_eq!(
        page.as_deref(),
        Some(format!("{SUCCESS_URL}?provider={PROVIDER}").as_str())
    );
    let before = connection_keys(&setup.redis.url()).await;
    let (_, replay) = alices.visit(&callback).await;
    assert_eq!(
        replay.as_deref(),
        Some(failure("replayed_state", true).as_str())
    );
    assert_eq!(
        setup.provider.stat("code_grants").await,
        1,
        "no second exchange"
    );
    assert_eq!(connection_keys(&setup.redis.url()).await, before);

    // Tampering: mallory's own flow, with the state's subject changed to
    // alice's (signature kept).
    let url = connected::authorize_url(&authority, &mallory).await;
    let genuine = browser.authorize(&url, "mallory").await;
    let state = parameter(genuine.as_str(), "state").expect("state");
    let (payload, tag) = state.split_once('.').expect("signed state");
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64")).expect("json");
    claims["s"] = alice.subject.clone().into();
    let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(claims.to_string()));
    let mut tampered = genuine.clone();
    let pairs: Vec<(String, String)> = genuine
        .query_pairs()
        .map(|(k, v)| {
            let value = if k == "state" {
                forged.clone()
            } else {
                v.into_owned()
            };
            (k.into_owned(), value)
        })
        .collect();
    tampered.query_pairs_mut().clear().extend_pairs(pairs);
    let before = connection_keys(&setup.redis.url()).await;
    let (status, page) = browser.visit(tampered.as_str()).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        page.as_deref(),
        Some(failure("invalid_state", false).as_str())
    );
    let (_, page) = browser
        .visit(&authority.url("/v1/connect/callback?code=x"))
        .await;
    assert_eq!(
        page.as_deref(),
        Some(failure("invalid_state", false).as_str())
    );
    assert_eq!(
        connection_keys(&setup.redis.url()).await,
        before,
        "nothing stored"
    );
    assert_eq!(setup.provider.stat("code_grants").await, 1);
    assert!(authority.logged(&["invalid state"]), "{}", authority.logs());

    // The genuine callback is still good: tampering used nothing up.
    let (_, page) = browser.visit(genuine.as_str()).await;
    assert_eq!(
        page.as_deref(),
        Some(format!("{SUCCESS_URL}?provider={PROVIDER}").as_str())
    );
    assert!(setup.stored(&mallory.subject).await.is_some());

    // The user refuses at the provider: the provider redirects with
    // error=access_denied and the (valid) state.
    let carol = connected::user(&authority, "carol").await;
    let link = connected::authorize_url(&authority, &carol).await;
    let browser = Browser::new();
    let url = browser.provider_url(&link, "carol").await.to_string();
    let state = parameter(&url, "state").expect("state");
    let denied = format!(
        "{}?error=access_denied&state={state}&iss={}",
        authority.url("/v1/connect/callback"),
        setup.provider.issuer()
    );
    let (_, page) = browser.visit(&denied).await;
    assert_eq!(
        page.as_deref(),
        Some(failure("access_denied", true).as_str())
    );
    assert!(setup.stored(&carol.subject).await.is_none());
}

/// A state older than CONNECT_STATE_TTL is refused (expired_state) even
/// with a valid code: no exchange happens, nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_states_are_refused() {
    let setup = Setup::start(&[], "");
    let authority = setup.authority(BIN, &[("CONNECT_STATE_TTL", "1")]);
    let alice = connected::user(&authority, "alice").await;
    let link = connected::authorize_url(&authority, &alice).await;
    let browser = Browser::new();
    let url = browser.provider_url(&link, "alice").await;
    let issued = Instant::now();
    let callback = browser.authorize(url.as_str(), "alice").await;
    let expired = wait_until(Duration::from_secs(10), || {
        (issued.elapsed() > Duration::from_millis(1100)).then_some(())
    });
    assert!(expired.is_some());
    let (_, page) = browser.visit(callback.as_str()).await;
    assert_eq!(
        page.as_deref(),
        Some(failure("expired_state", false).as_str())
    );
    assert_eq!(setup.provider.stat("code_grants").await, 0);
    assert!(setup.stored(&alice.subject).await.is_none());
}

/// Service clients: with `view_access_tokens` from an allowed address a
/// client gets a user's provider token; without the permission, from
/// another address, or as a user, the answer is 403 and the attempt is
/// logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_clients_need_the_permission_and_an_allowed_address() {
    let setup = Setup::start(&[], "");
    let authority = setup.authority(BIN, &[]);
    let alice = connected::user(&authority, "alice").await;
    connected::connect(&authority, &alice).await;
    let users_token = json_of(provider_token(&authority, &alice, 10).await).await["access_token"]
        .as_str()
        .expect("token")
        .to_owned();

    let client_token = |client_id: &'static str, options: &'static [&'static str]| {
        let secret = authority.add_client_with(client_id, &[], options);
        let authority = &authority;
        async move {
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
    };
    let path = format!(
        "/v1/users/{}/connect/{PROVIDER}/token?expires=10",
        alice.subject
    );

    let trusted = client_token(
        "workflows",
        &["--view-access-tokens", "--allow-ip", "127.0.0.1/32"],
    )
    .await;
    let response = authority.get_with(&path, &trusted).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        json_of(response).await["access_token"],
        users_token.as_str()
    );
    let anywhere = client_token("anywhere", &["--view-access-tokens"]).await;
    assert_eq!(
        authority.get_with(&path, &anywhere).await.status(),
        StatusCode::OK
    );

    let unprivileged = client_token("reporting", &["--allow-ip", "127.0.0.1"]).await;
    let response = authority.get_with(&path, &unprivileged).await;
    assert_eq!(error_of(response).await, (403, "access_denied".into()));
    let elsewhere = client_token(
        "remote",
        &["--view-access-tokens", "--allow-ip", "10.0.0.0/8"],
    )
    .await;
    let response = authority.get_with(&path, &elsewhere).await;
    assert_eq!(error_of(response).await, (403, "access_denied".into()));
    let response = authority.get_with(&path, &alice.bearer).await;
    assert_eq!(error_of(response).await, (403, "access_denied".into()));

    for (client, reason) in [
        ("reporting", "permission"),
        ("remote", "address"),
        ("-", "not_a_client"),
    ] {
        assert!(
            authority.logged(&[
                "service client denied",
                &format!("client_id={client} "),
                &format!("reason={reason}"),
            ]),
            "no log line for {client} / {reason}:\n{}",
            authority.logs()
        );
    }
    assert!(!authority.logs().contains(&users_token));

    let nobody = authority
        .get_with(
            &format!("/v1/users/nobody/connect/{PROVIDER}/token"),
            &trusted,
        )
        .await;
    assert_eq!(error_of(nobody).await, (404, "not_connected".into()));
    // Disabling the user stops handing out its tokens.
    let output = authority.cli(&["user", "disable", "alice"], None);
    assert!(output.status.success());
    let response = authority.get_with(&path, &trusted).await;
    assert_eq!(error_of(response).await, (404, "not_connected".into()));
}

/// The keep-alive refreshes a connection nobody uses once it is older than
/// the provider's `keepalive_after`, without any request, and stores the
/// rotated refresh token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_refreshes_idle_connections() {
    let setup = Setup::start(&[], "keepalive_after = 2");
    let authority = setup.authority(BIN, &[("CONNECT_KEEPALIVE_INTERVAL", "1")]);
    let alice = connected::user(&authority, "alice").await;
    connected::connect(&authority, &alice).await;
    let first = setup.decrypt(&alice.subject, KEY_1).await;
    let refreshed = wait_until_async(Duration::from_secs(20), tokio::time::sleep, || async {
        (setup.provider.stat("refresh_grants").await >= 1).then_some(())
    })
    .await;
    assert!(
        refreshed.is_some(),
        "no keep-alive refresh:\n{}",
        authority.logs()
    );
    let kept = wait_until_async(Duration::from_secs(5), tokio::time::sleep, || async {
        let now = setup.decrypt(&alice.subject, KEY_1).await;
        (now.refresh_token != first.refresh_token).then_some(now)
    })
    .await
    .map(|(connection, _)| connection)
    .expect("the rotated refresh token is stored");
    assert!(kept.refreshed_at > first.refreshed_at);
    assert!(authority.logged(&["keep-alive pass", "refreshed=1"]));
}

/// Key rotation: with a new current key listed first, records sealed with
/// the old key still decrypt; `connect reencrypt` moves them to the new
/// key, after which the old key can be dropped (and an authority with only
/// the old key can no longer read them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_and_reencryption() {
    let setup = Setup::start(&[], "");
    let old = setup.authority(BIN, &[]);
    let alice = connected::user(&old, "alice").await;
    connected::connect(&old, &alice).await;
    let token = json_of(provider_token(&old, &alice, 10).await).await["access_token"].clone();

    let both = format!("{KEY_2},{KEY_1}");
    // One deployment: the same ISSUER (alice's token is for it).
    let issuer = old.url("");
    let rotated = setup.authority(BIN, &[("CONNECT_KEYS", &both), ("ISSUER", &issuer)]);
    assert_eq!(
        json_of(provider_token(&rotated, &alice, 10).await).await["access_token"],
        token
    );
    let kid = |raw: String| match Stored::parse(&raw).expect("value") {
        Stored::Sealed { kid, .. } => kid,
        Stored::Reconnect { .. } => panic!("tombstone"),
    };
    assert_eq!(
        kid(setup.stored(&alice.subject).await.expect("stored")),
        "k1"
    );

    let output = rotated.cli(&["connect", "reencrypt"], None);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("re-encrypted: 1"), "{stdout}");
    assert_eq!(
        kid(setup.stored(&alice.subject).await.expect("stored")),
        "k2"
    );
    assert_eq!(
        setup.decrypt(&alice.subject, KEY_2).await.access_token,
        token.as_str().expect("text")
    );

    let new_only = setup.authority(BIN, &[("CONNECT_KEYS", KEY_2), ("ISSUER", &issuer)]);
    assert_eq!(
        json_of(provider_token(&new_only, &alice, 10).await).await["access_token"],
        token
    );
    let unreadable = provider_token(&old, &alice, 10).await;
    assert_eq!(
        error_of(unreadable).await,
        (409, "reconnect_required".into())
    );
}

/// Start-up refuses a configuration with two providers of one name, or
/// providers without the keys they need, naming the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misconfigured_providers_stop_the_start_up() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("authority.toml");
    let provider = "[[providers]]\nname = \"orcid\"\nissuer = \"http://127.0.0.1:9\"\nclient_id = \"c\"\nclient_secret = \"s\"\n";
    std::fs::write(&path, format!("{provider}{provider}")).expect("write");
    let env = Authority::environment(
        "redis://127.0.0.1:9",
        &[
            ("CONNECT_STATE_KEY", connected::STATE_KEY),
            ("CONNECT_KEYS", KEY_1),
            ("CONNECT_SUCCESS_URL", SUCCESS_URL),
            ("CONNECT_FAILURE_URL", FAILURE_URL),
        ],
    );
    let config = path.to_str().expect("utf-8");
    let output = run_cli(
        std::path::Path::new(BIN),
        &env,
        &["--config", config, "serve"],
        None,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("providers[1].name"), "{stderr}");
    assert!(stderr.contains("unique"), "{stderr}");

    std::fs::write(&path, provider).expect("write");
    let bare = Authority::environment("redis://127.0.0.1:9", &[]);
    let output = run_cli(
        std::path::Path::new(BIN),
        &bare,
        &["--config", config, "serve"],
        None,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("CONNECT_STATE_KEY"), "{stderr}");
}

/// `expires` equal to the provider's token lifetime cannot be met (a
/// fresh token is already some milliseconds old when handed out): it is
/// refused with the largest `expires` that can be, before any refresh at
/// the provider, however often it is asked. One second less refreshes
/// and serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expires_at_the_token_lifetime_is_refused_before_refreshing() {
    let setup = Setup::start(&[("OIDC_ACCESS_TOKEN_TTL", "5")], "");
    let authority = setup.authority(BIN, &[]);
    let alice = connected::user(&authority, "alice").await;
    connected::connect(&authority, &alice).await;
    let stored = setup.decrypt(&alice.subject, KEY_1).await;
    assert_eq!(stored.lifetime(), Duration::from_secs(5));

    let mut descriptions = Vec::new();
    for _ in 0..2 {
        let response = provider_token(&authority, &alice, 5).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = json_of(response).await;
        assert_eq!(body["error"], "invalid_request");
        descriptions.push(body["error_description"].as_str().map(str::to_owned));
    }
    assert_eq!(
        setup.provider.stat("refresh_grants").await,
        0,
        "refused before refreshing"
    );
    for description in descriptions {
        let description = description.expect("description");
        assert!(description.contains("expires <= 4"), "{description}");
    }

    // Once the stored token has less than 4 s left, expires=4 refreshes
    // and the fresh 5 s token serves it.
    let under = wait_until(Duration::from_secs(10), || {
        (Timestamp::now().as_unix_millis() + 4_000 > stored.expires_at).then_some(())
    });
    assert!(under.is_some());
    let response = provider_token(&authority, &alice, 4).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = json_of(response).await;
    assert_ne!(body["access_token"], stored.access_token.as_str());
    assert!(
        body["expires_in"].as_u64().expect("expires_in") >= 4,
        "{body}"
    );
    assert_eq!(setup.provider.stat("refresh_grants").await, 1);
}

/// A provider whose OpenID discovery document has no revocation endpoint
/// but whose RFC 8414 metadata has one (as Django OAuth Toolkit does):
/// with an issuer-only configuration, disconnecting revokes the grant
/// there instead of answering "unsupported".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_endpoint_from_rfc8414_metadata() {
    let setup = Setup::start(&[("OIDC_METADATA", "rfc8414-revocation")], "");
    let issuer = setup.provider.issuer();
    let http = reqwest::Client::new();
    let document = |path: &'static str| {
        let request = http.get(format!("{issuer}{path}"));
        async move {
            json_of(request.send().await.expect("metadata")).await["revocation_endpoint"].clone()
        }
    };
    assert_eq!(
        document("/.well-known/openid-configuration").await,
        Value::Null
    );
    assert!(
        document("/.well-known/oauth-authorization-server")
            .await
            .is_string()
    );

    let authority = setup.authority(BIN, &[]);
    let alice = connected::user(&authority, "alice").await;
    connected::connect(&authority, &alice).await;
    let refresh = setup
        .decrypt(&alice.subject, KEY_1)
        .await
        .refresh_token
        .clone()
        .expect("refresh token");
    let response = authority
        .http
        .delete(authority.url(&format!("/v1/connect/{PROVIDER}")))
        .bearer_auth(&alice.bearer)
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_of(response).await["provider_revocation"], "revoked");
    assert_eq!(setup.provider.stat("revoked_refresh_tokens").await, 1);
    assert_eq!(setup.provider.introspect(&refresh).await["active"], false);
}

/// An OAuth 2.0 provider without OpenID discovery, publishing only RFC
/// 8414 metadata: the authority finds its endpoints there, connects,
/// serves tokens and revokes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_with_only_rfc8414_metadata() {
    let setup = Setup::start(&[("OIDC_METADATA", "rfc8414")], "");
    let authority = setup.authority(BIN, &[]);
    let alice = connected::user(&authority, "alice").await;
    let (_, page) = connected::connect(&authority, &alice).await;
    assert_eq!(page, format!("{SUCCESS_URL}?provider={PROVIDER}"));
    let response = provider_token(&authority, &alice, 10).await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = authority
        .http
        .delete(authority.url(&format!("/v1/connect/{PROVIDER}")))
        .bearer_auth(&alice.bearer)
        .send()
        .await
        .expect("delete");
    assert_eq!(json_of(response).await["provider_revocation"], "revoked");
}

/// When the provider refuses the authorization request or the code
/// exchange, its OAuth error code reaches the failure page as `error=`;
/// its free-text description never does, nor a code of another shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_error_codes_reach_the_failure_page() {
    // prompt=none without a session at the provider: the real provider
    // refuses the authorization request with login_required.
    let setup = Setup::start(&[], "authorize_params = { prompt = \"none\" }");
    let authority = setup.authority(BIN, &[]);
    let alice = connected::user(&authority, "alice").await;
    let browser = Browser::new();
    let url = connected::authorize_url(&authority, &alice).await;
    let callback = browser.authorize(&url, "alice").await;
    assert_eq!(
        parameter(callback.as_str(), "error").as_deref(),
        Some("login_required")
    );
    assert!(
        parameter(callback.as_str(), "error_description").is_some(),
        "the provider explains in free text, which is not passed on"
    );
    let (status, page) = browser.visit(callback.as_str()).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        page.expect("Location"),
        format!("{}&error=login_required", failure("provider_error", true))
    );

    // Crafted redirects with a genuine state each.
    let redirect = |query: String| format!("{}?{query}", authority.url("/v1/connect/callback"));
    let issuer = setup.provider.issuer();
    let cases = [
        (
            "error=invalid_scope&error_description=Unknown%20scope%20%3Cb%3Eadmin%3C%2Fb%3E",
            format!("{}&error=invalid_scope", failure("provider_error", true)),
        ),
        (
            "error=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
            failure("provider_error", true),
        ),
        ("error=Server%20Error", failure("provider_error", true)),
        ("error=access_denied", failure("access_denied", true)),
        // The provider refuses a code it never issued: invalid_grant.
        (
            "code=not-a-code",
            format!("{}&error=invalid_grant", failure("exchange_failed", true)),
        ),
    ];
    for (query, expected) in cases {
        let link = connected::authorize_url(&authority, &alice).await;
        let url = browser.provider_url(&link, "alice").await.to_string();
        let state = parameter(&url, "state").expect("state");
        let (_, page) = browser
            .visit(&redirect(format!("{query}&state={state}&iss={issuer}")))
            .await;
        assert_eq!(page.as_deref(), Some(expected.as_str()), "{query}");
    }
    assert!(setup.stored(&alice.subject).await.is_none());
}

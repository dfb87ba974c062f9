//! The provider registry at run time (issue 18, item 3; Sciebo RDS's
//! `addService` / `removeService`): providers added, changed, disabled and
//! removed through `/v1/admin/providers`, stored in Redis with the client
//! secret sealed, picked up by every replica without a restart; the file's
//! providers read-only; a removal deletes the provider's connections.
//! Two providers at once: the file's (one client of the real OpenID
//! Connect provider) and the API's (its second client).

use std::future::Future;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use token_repository::{KeyPrefix, SubjectTag};
use token_service_tests::connected::{self, PROVIDER, SECOND, Setup, User};
use token_service_tests::oidc::{SECOND_CLIENT_ID, SECOND_CLIENT_SECRET};
use token_service_tests::{Authority, PASSWORD};
use token_test_harness::wait_until_async;

const BIN: &str = env!("CARGO_BIN_EXE_e2e-token-authority");
/// How often the replicas poll the change counter here.
const POLL: (&str, &str) = ("CONNECT_PROVIDERS_POLL_MS", "200");
/// Far more than a few polls: a replica that has not caught up by then
/// never will.
const CATCH_UP: Duration = Duration::from_secs(15);

/// An administrator's access token.
async fn admin_token(authority: &Authority) -> String {
    authority.add_user("root", PASSWORD, &["admin"]);
    authority.login("root", PASSWORD).await["access_token"]
        .as_str()
        .expect("access token")
        .to_owned()
}

/// `method path` with a JSON body (or none) and a bearer token; answers
/// the status and the body.
async fn call(
    authority: &Authority,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .request(method, authority.url(path))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// `POST /v1/admin/providers` with `table`.
async fn add_provider(authority: &Authority, token: &str, table: &Value) -> (StatusCode, Value) {
    call(
        authority,
        reqwest::Method::POST,
        "/v1/admin/providers",
        token,
        Some(table),
    )
    .await
}

/// The second client of the test provider, as an API table.
fn second_table(setup: &Setup) -> Value {
    json!({
        "name": SECOND,
        "display_name": "Added at run time",
        "issuer": setup.provider.issuer(),
        "client_id": SECOND_CLIENT_ID,
        "client_secret": SECOND_CLIENT_SECRET,
        "scopes": ["openid", "offline_access"],
    })
}

/// Whether `authority` offers `provider` to `user` (`GET /v1/connect`).
async fn offered(authority: &Authority, user: &User, provider: &str) -> bool {
    let response = authority.get_with("/v1/connect", &user.bearer).await;
    if response.status() != StatusCode::OK {
        return false;
    }
    let body: Value = response.json().await.expect("json");
    body["providers"]
        .as_array()
        .is_some_and(|offers| offers.iter().any(|offer| offer["name"] == provider))
}

/// Redis commands on the test's own server.
async fn redis(setup: &Setup) -> ::redis::aio::MultiplexedConnection {
    redis::Client::open(setup.redis.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

/// The raw `P providers` hash.
async fn stored_providers(setup: &Setup) -> Vec<(String, String)> {
    redis::cmd("HGETALL")
        .arg(KeyPrefix::default().providers())
        .query_async(&mut redis(setup).await)
        .await
        .expect("HGETALL")
}

/// Waits until `condition` holds (polling), or fails with `what`.
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let held = wait_until_async(CATCH_UP, tokio::time::sleep, || {
        let check = condition();
        async move { check.await.then_some(()) }
    })
    .await;
    assert!(held.is_some(), "{what}");
}

/// A provider added on one replica is offered by the other within the
/// poll period; its secret is sealed in Redis and works for the code
/// exchange on the other replica; disabling it there stops new
/// connections everywhere; removing it deletes its connections and stored
/// credentials, and a provider added again under the name starts with
/// none of them. The file's provider is listed and read-only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_added_at_run_time_reach_every_replica() {
    let setup = Setup::start(&[], "");
    let a = setup.authority(BIN, &[POLL]);
    // Replicas share the issuer: tokens are for it.
    let issuer = a.url("");
    let b = setup.authority(BIN, &[POLL, ("ISSUER", issuer.as_str())]);
    let admin = admin_token(&a).await;
    let user = connected::user(&a, "carol").await;
    assert!(!offered(&b, &user, SECOND).await);

    // Added on A.
    let (status, view) = add_provider(&a, &admin, &second_table(&setup)).await;
    assert_eq!(status, StatusCode::CREATED, "{view}");
    assert_eq!(view["source"], "api");
    assert_eq!(view["kind"], "oauth");
    assert!(!view.to_string().contains(SECOND_CLIENT_SECRET), "{view}");
    let stored = format!("{:?}", stored_providers(&setup).await);
    assert!(stored.contains(SECOND_CLIENT_ID), "{stored}");
    assert!(!stored.contains(SECOND_CLIENT_SECRET), "sealed: {stored}");

    // Offered by B without a restart, and the flow works there: B opened
    // the sealed secret for the code exchange.
    let caught_up = wait_until_async(CATCH_UP, tokio::time::sleep, || async {
        offered(&b, &user, SECOND).await.then_some(())
    })
    .await;
    assert!(
        caught_up.is_some(),
        "B offers the provider added on A:\n{}",
        b.logs()
    );
    connected::connect_to(&b, &user, SECOND).await;
    let response = a
        .get_with(
            &format!("/v1/connect/{SECOND}/token?expires=1"),
            &user.bearer,
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);

    // A provider of a credentials kind too; the user stores a password.
    let (status, view) = add_provider(
        &b,
        &admin,
        &json!({"name": "webdav", "kind": "password", "display_name": "WebDAV"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{view}");
    eventually("A knows the credentials provider", || async {
        let response = reqwest::Client::new()
            .put(a.url("/v1/connect/webdav/credentials"))
            .bearer_auth(&user.bearer)
            .json(&json!({"username": "carol", "password": "dav-password"}))
            .send()
            .await
            .expect("request");
        response.status().is_success()
    })
    .await;
    assert!(
        setup
            .stored_credentials(&user.subject, "webdav")
            .await
            .is_some()
    );

    // The file's provider: listed, read-only.
    let (status, list) = call(
        &b,
        reqwest::Method::GET,
        "/v1/admin/providers",
        &admin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let sources: Vec<(String, String)> = list["providers"]
        .as_array()
        .expect("providers")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or_default().to_owned(),
                p["source"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert!(
        sources.contains(&(PROVIDER.to_owned(), "file".to_owned())),
        "{list}"
    );
    assert!(
        sources.contains(&(SECOND.to_owned(), "api".to_owned())),
        "{list}"
    );
    assert!(!list.to_string().contains(SECOND_CLIENT_SECRET));
    for (method, body) in [
        (reqwest::Method::PUT, Some(json!({"kind": "api_key"}))),
        (reqwest::Method::PATCH, Some(json!({"enabled": false}))),
        (reqwest::Method::DELETE, None),
    ] {
        let (status, problem) = call(
            &a,
            method.clone(),
            &format!("/v1/admin/providers/{PROVIDER}"),
            &admin,
            body.as_ref(),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "{method} {problem}");
        assert!(
            problem["error_description"]
                .as_str()
                .unwrap_or_default()
                .contains("file"),
            "{problem}"
        );
    }
    assert!(offered(&a, &user, PROVIDER).await);

    // Disabled on B: A stops offering it.
    let (status, view) = call(
        &b,
        reqwest::Method::PATCH,
        &format!("/v1/admin/providers/{SECOND}"),
        &admin,
        Some(&json!({"enabled": false})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["enabled"], false);
    assert_eq!(view["settings"]["enabled"], false);
    eventually("A no longer offers the disabled provider", || async {
        !offered(&a, &user, SECOND).await
    })
    .await;
    // The secret was kept through the change (still sealed, still there).
    let stored = stored_providers(&setup).await;
    let (_, record) = stored
        .iter()
        .find(|(name, _)| name == SECOND)
        .expect("stored");
    let record: Value = serde_json::from_str(record).expect("json");
    assert!(record["secret"].is_object(), "{record}");
    assert_eq!(record["table"]["enabled"], false);

    // Removed on A: the connection, the credentials and the index entry
    // go; neither replica knows the provider any more.
    let connection_key = KeyPrefix::default().connection(&SubjectTag::of(&user.subject), SECOND);
    let mut redis_connection = redis(&setup).await;
    let exists: bool = redis::cmd("EXISTS")
        .arg(&connection_key)
        .query_async(&mut redis_connection)
        .await
        .expect("EXISTS");
    assert!(exists, "the connection is stored before the removal");
    for name in [SECOND, "webdav"] {
        let (status, body) = call(
            &a,
            reqwest::Method::DELETE,
            &format!("/v1/admin/providers/{name}"),
            &admin,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    eventually("the removals finish", || async {
        stored_providers(&setup)
            .await
            .iter()
            .all(|(name, _)| name == "~version")
    })
    .await;
    let exists: bool = redis::cmd("EXISTS")
        .arg(&connection_key)
        .query_async(&mut redis_connection)
        .await
        .expect("EXISTS");
    assert!(!exists, "the connection was deleted");
    assert!(
        setup
            .stored_credentials(&user.subject, "webdav")
            .await
            .is_none()
    );
    let indexed: Option<f64> = redis::cmd("ZSCORE")
        .arg(KeyPrefix::default().connections())
        .arg(format!("{SECOND}:{}", user.subject))
        .query_async(&mut redis_connection)
        .await
        .expect("ZSCORE");
    assert_eq!(indexed, None);
    for replica in [&a, &b] {
        eventually("the provider is gone on every replica", || async {
            replica
                .get_with(&format!("/v1/connect/{SECOND}"), &user.bearer)
                .await
                .status()
                == StatusCode::NOT_FOUND
        })
        .await;
    }

    // Added again: a new provider, none of the old connections.
    let (status, _) = add_provider(&b, &admin, &second_table(&setup)).await;
    assert_eq!(status, StatusCode::CREATED);
    eventually("A knows it again", || offered(&a, &user, SECOND)).await;
    let (status, view) = call(
        &a,
        reqwest::Method::GET,
        &format!("/v1/connect/{SECOND}"),
        &user.bearer,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(view["status"], "not_connected", "{view}");

    for replica in [&a, &b] {
        assert!(!replica.logs().contains(SECOND_CLIENT_SECRET));
        assert!(!replica.logs().contains("dav-password"));
    }
}

/// A removed provider's name cannot be taken again while its removal is
/// under way (a new provider would inherit the old one's connections): the
/// test holds the removal lock, as a replica sweeping slowly would, and
/// adding the name answers 409 naming the removal; replacing or changing
/// it answers the same. Once the lock is free the sweep finishes by itself
/// and the name can be taken again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_being_removed_is_not_taken_again() {
    let setup = Setup::start(&[], "");
    let authority = setup.authority(BIN, &[POLL]);
    let admin = admin_token(&authority).await;
    let table = json!({"name": "vault", "kind": "api_key"});
    let (status, body) = add_provider(&authority, &admin, &table).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let lock = KeyPrefix::default().provider_sweep("vault");
    let held: Option<String> = redis::cmd("SET")
        .arg(&lock)
        .arg("held-by-the-test")
        .arg("NX")
        .arg("PX")
        .arg(120_000)
        .query_async(&mut redis(&setup).await)
        .await
        .expect("SET");
    assert_eq!(held.as_deref(), Some("OK"));
    let (status, body) = call(
        &authority,
        reqwest::Method::DELETE,
        "/v1/admin/providers/vault",
        &admin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    let (status, problem) = add_provider(&authority, &admin, &table).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert!(
        problem["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains("being removed"),
        "{problem}"
    );
    for (method, body) in [
        (reqwest::Method::PUT, Some(json!({"kind": "api_key"}))),
        (reqwest::Method::PATCH, Some(json!({"enabled": false}))),
    ] {
        let (status, problem) = call(
            &authority,
            method.clone(),
            "/v1/admin/providers/vault",
            &admin,
            body.as_ref(),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "{method}: {problem}");
    }
    let entries = stored_providers(&setup).await;
    let (_, entry) = entries
        .iter()
        .find(|(name, _)| name == "vault")
        .expect("the entry stays while its removal is under way");
    let entry: Value = serde_json::from_str(entry).expect("entry");
    assert_eq!(entry["removing"], true, "{entry}");

    let released: i64 = redis::cmd("DEL")
        .arg(&lock)
        .query_async(&mut redis(&setup).await)
        .await
        .expect("DEL");
    assert_eq!(released, 1, "the sweep never took the lock");
    eventually("the removal finishes once the lock is free", || async {
        !stored_providers(&setup)
            .await
            .iter()
            .any(|(name, _)| name == "vault")
    })
    .await;
    let (status, body) = add_provider(&authority, &admin, &table).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// Bad requests get a clear error and change nothing: wrong content type,
/// unknown or refused fields, a missing secret, the name of the file's
/// provider, a rename, an unknown provider, a caller without `admin`.
/// The number of providers the API may add is capped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_provider_changes_change_nothing() {
    let setup = Setup::start(&[], "");
    let authority = setup.authority(BIN, &[POLL]);
    let admin = admin_token(&authority).await;
    let user = connected::user(&authority, "dave").await;
    let issuer = setup.provider.issuer();
    let cases = [
        (
            json!({"name": "x", "kind": "api_key", "surprise": 1}),
            StatusCode::BAD_REQUEST,
            "body",
        ),
        (
            json!({"name": "x", "issuer": issuer, "client_id": "c", "client_secret_file": "/etc/shadow"}),
            StatusCode::BAD_REQUEST,
            "client_secret_file",
        ),
        (
            json!({"name": "x", "issuer": issuer, "client_id": "c"}),
            StatusCode::BAD_REQUEST,
            "client_secret",
        ),
        (
            json!({"name": "x", "issuer": "http://idp.example", "client_id": "c", "client_secret": "s"}),
            StatusCode::BAD_REQUEST,
            "issuer",
        ),
        (
            json!({"name": "Bad Name", "kind": "api_key"}),
            StatusCode::BAD_REQUEST,
            "name",
        ),
        (
            json!({"name": "x", "kind": "api_key", "logo_url": null}),
            StatusCode::BAD_REQUEST,
            "body",
        ),
        (
            json!({"name": PROVIDER, "kind": "api_key"}),
            StatusCode::CONFLICT,
            "exists",
        ),
    ];
    for (body, expected, named) in cases {
        let (status, problem) = add_provider(&authority, &admin, &body).await;
        assert_eq!(status, expected, "{body}: {problem}");
        assert!(
            problem["error_description"]
                .as_str()
                .unwrap_or_default()
                .contains(named),
            "{body}: {problem}"
        );
        assert!(!problem.to_string().contains("/etc/shadow"));
    }
    // Not JSON.
    let response = reqwest::Client::new()
        .post(authority.url("/v1/admin/providers"))
        .bearer_auth(&admin)
        .header("content-type", "text/plain")
        .body("name=x")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // Not an administrator.
    let (status, _) = add_provider(
        &authority,
        &user.bearer,
        &json!({"name": "x", "kind": "api_key"}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Unknown.
    for method in [
        reqwest::Method::GET,
        reqwest::Method::PATCH,
        reqwest::Method::DELETE,
    ] {
        let body = (method == reqwest::Method::PATCH).then(|| json!({"enabled": false}));
        let (status, _) = call(
            &authority,
            method.clone(),
            "/v1/admin/providers/nope",
            &admin,
            body.as_ref(),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method}");
    }
    assert!(
        stored_providers(&setup).await.is_empty(),
        "nothing was stored"
    );

    // A rename is refused; the entry is unchanged.
    let (status, _) = add_provider(
        &authority,
        &admin,
        &json!({"name": "keys", "kind": "api_key"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let before = stored_providers(&setup).await;
    for (method, body) in [
        (reqwest::Method::PATCH, json!({"name": "other"})),
        (
            reqwest::Method::PUT,
            json!({"name": "other", "kind": "api_key"}),
        ),
        (reqwest::Method::PATCH, json!({"kind": "saml"})),
    ] {
        let (status, problem) = call(
            &authority,
            method.clone(),
            "/v1/admin/providers/keys",
            &admin,
            Some(&body),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{method} {body}: {problem}"
        );
    }
    assert_eq!(stored_providers(&setup).await, before);

    // The cap: 100 in all through the API.
    for index in 1..token_broker::catalog::MAX_API_PROVIDERS {
        let (status, problem) = add_provider(
            &authority,
            &admin,
            &json!({"name": format!("keys-{index}"), "kind": "api_key"}),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{index}: {problem}");
    }
    let (status, problem) = add_provider(
        &authority,
        &admin,
        &json!({"name": "one-too-many", "kind": "api_key"}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert!(
        problem["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains("at most")
    );
}

/// Key rotation covers the client secrets of providers added through the
/// API: `connect reencrypt` re-seals them under the new key, and an
/// authority holding only the new key serves the provider; one holding
/// only the old key lists it as `invalid` and does not offer it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_secrets_follow_key_rotation() {
    use token_service_tests::connected::{KEY_1, KEY_2};
    let setup = Setup::start(&[], "");
    let old = setup.authority(BIN, &[POLL]);
    let issuer = old.url("");
    let admin = admin_token(&old).await;
    let user = connected::user(&old, "erin").await;
    let (status, view) = add_provider(&old, &admin, &second_table(&setup)).await;
    assert_eq!(status, StatusCode::CREATED, "{view}");
    let kid = |stored: &[(String, String)]| {
        let (_, text) = stored
            .iter()
            .find(|(name, _)| name == SECOND)
            .expect("stored");
        let record: Value = serde_json::from_str(text).expect("json");
        record["secret"]["kid"].as_str().expect("kid").to_owned()
    };
    assert_eq!(kid(&stored_providers(&setup).await), "k1");

    let both = format!("{KEY_2},{KEY_1}");
    let rotated = setup.authority(BIN, &[POLL, ("CONNECT_KEYS", &both), ("ISSUER", &issuer)]);
    let output = rotated.cli(&["connect", "reencrypt"], None);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("re-encrypted: 1"), "{stdout}");
    assert_eq!(kid(&stored_providers(&setup).await), "k2");

    let new_only = setup.authority(BIN, &[POLL, ("CONNECT_KEYS", KEY_2), ("ISSUER", &issuer)]);
    // Offered: the new key alone opened the secret (an entry whose secret
    // does not open is left out).
    assert!(offered(&new_only, &user, SECOND).await);
    // The old key alone no longer opens it (the old replica reloads on
    // the counter's move): left out, listed as invalid.
    eventually("the old-key replica leaves it out", || async {
        !offered(&old, &user, SECOND).await
    })
    .await;
    let (status, view) = call(
        &old,
        reqwest::Method::GET,
        &format!("/v1/admin/providers/{SECOND}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(view["status"], "invalid", "{view}");
}

/// A backup carries the providers added through the API, their secrets
/// still sealed: exported from one Redis, imported into an empty one, an
/// authority with the same keys offers them there; an import into a
/// deployment that has such a provider is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_carry_the_providers_of_the_api() {
    let setup = Setup::start(&[], "");
    let source = setup.authority(BIN, &[POLL]);
    let admin = admin_token(&source).await;
    let (status, view) = add_provider(&source, &admin, &second_table(&setup)).await;
    assert_eq!(status, StatusCode::CREATED, "{view}");
    let output = source.cli(&["export"], None);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let export = String::from_utf8(output.stdout).expect("utf-8");
    assert!(export.contains("\"kind\":\"provider\""), "{export}");
    assert!(
        !export.contains(SECOND_CLIENT_SECRET),
        "the secret stays sealed"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("1 providers"));

    let other = token_test_harness::RedisServer::start();
    let target = setup.authority_on(BIN, &other.url(), &[POLL]);
    let imported = target.cli(&["import"], Some(&export));
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    assert!(String::from_utf8_lossy(&imported.stderr).contains("1 providers"));
    let user = connected::user(&target, "frank").await;
    eventually("the target offers the imported provider", || {
        offered(&target, &user, SECOND)
    })
    .await;

    // The source has a provider of the API: an import there is refused.
    let again = source.cli(&["import"], Some(&export));
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("1 providers"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

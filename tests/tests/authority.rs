//! End to end: the real `token-authority` binary, a private redis-server,
//! HTTP on loopback.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use token_service_tests::Authority;
use token_service_tests::snapshot::snapshot;
use token_test_harness::{RedisServer, wait_until_async};

const BIN: &str = env!("CARGO_BIN_EXE_e2e-token-authority");
const PASSWORD: &str = "correct horse battery";

fn start(redis: &RedisServer) -> Authority {
    Authority::start(BIN, redis, &[])
}

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.expect("json body")
}

fn basic(client_id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{secret}"))
    )
}

async fn error_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body = json_of(response).await;
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

/// The password grant returns an RFC 6749 §5.1 pair with no-store headers,
/// and the access token identifies the user at /v1/me.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_grant_issues_a_pair() {
    let redis = RedisServer::start();
    let authority = start(&redis);
    authority.add_user("alice", PASSWORD, &["read", "write"]);
    let response = authority
        .token(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
        ])
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["pragma"], "no-cache");
    let body = json_of(response).await;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "read write");
    assert!(
        body["expires_in"]
            .as_u64()
            .is_some_and(|s| s > 800 && s <= 900)
    );
    let access = body["access_token"].as_str().expect("access token");
    assert!(access.starts_with("tsa_"));
    assert!(
        body["refresh_token"]
            .as_str()
            .expect("refresh")
            .starts_with("tsr_")
    );
    let me = json_of(authority.get_with("/v1/me", access).await).await;
    assert_eq!(me["username"], "alice");
    assert_eq!(me["name"], "Test User");
    assert_eq!(me["email"], "alice@example.com");
    assert_eq!(me["scope"], "read write");
    // A narrower scope can be asked for; a wider one cannot.
    let narrow = authority
        .token(&[
            ("grant_type", "password"),
            ("username", "ALICE"),
            ("password", PASSWORD),
            ("scope", "read"),
        ])
        .await;
    assert_eq!(json_of(narrow).await["scope"], "read");
    let wide = authority
        .token(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
            ("scope", "read admin"),
        ])
        .await;
    assert_eq!(error_of(wide).await, (400, "invalid_scope".into()));
}

/// client_credentials, by HTTP Basic or in the body: a token for the client
/// itself, without refresh token; a wrong secret is 401 invalid_client with
/// a Basic challenge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_grant() {
    let redis = RedisServer::start();
    let authority = start(&redis);
    let secret = authority.add_client("reporting", &["reports.read", "reports.write"], false);
    let response = authority
        .http
        .post(authority.url("/oauth/token"))
        .header("authorization", basic("reporting", &secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "reports.read"),
        ])
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let body = json_of(response).await;
    assert_eq!(body["scope"], "reports.read");
    assert!(
        body.get("refresh_token").is_none(),
        "no refresh token for client_credentials"
    );
    let me = json_of(
        authority
            .get_with("/v1/me", body["access_token"].as_str().expect("token"))
            .await,
    )
    .await;
    assert_eq!(me["sub"], "client:reporting");
    assert_eq!(me["client_id"], "reporting");

    let in_body = authority
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", "reporting"),
            ("client_secret", &secret),
        ])
        .await;
    assert_eq!(
        json_of(in_body).await["scope"],
        "reports.read reports.write"
    );

    let wrong = authority
        .http
        .post(authority.url("/oauth/token"))
        .header("authorization", basic("reporting", "tsc_wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("request");
    assert_eq!(wrong.status(), 401);
    assert!(
        wrong.headers()["www-authenticate"]
            .to_str()
            .expect("ascii")
            .starts_with("Basic realm=")
    );
    assert_eq!(json_of(wrong).await["error"], "invalid_client");
    let unknown = authority
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", "nobody"),
            ("client_secret", "x"),
        ])
        .await;
    assert_eq!(error_of(unknown).await, (401, "invalid_client".into()));
    let too_wide = authority
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", "reporting"),
            ("client_secret", &secret),
            ("scope", "admin"),
        ])
        .await;
    assert_eq!(error_of(too_wide).await, (400, "invalid_scope".into()));
}

/// Refreshing rotates the refresh token; presenting the old one again
/// revokes the whole family, including the pair it was exchanged for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rotation_and_reuse_detection() {
    let redis = RedisServer::start();
    let authority = start(&redis);
    authority.add_user("alice", PASSWORD, &["read"]);
    let first = authority.login("alice", PASSWORD).await;
    let old_refresh = first["refresh_token"].as_str().expect("refresh");
    let rotated = authority
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", old_refresh),
        ])
        .await;
    assert_eq!(rotated.status(), 200);
    let second = json_of(rotated).await;
    let new_access = second["access_token"].as_str().expect("access");
    let new_refresh = second["refresh_token"].as_str().expect("refresh");
    assert_ne!(new_refresh, old_refresh);
    assert_eq!(authority.get_with("/v1/me", new_access).await.status(), 200);

    let reuse = authority
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", old_refresh),
        ])
        .await;
    assert_eq!(error_of(reuse).await, (400, "invalid_grant".into()));
    assert_eq!(
        authority.get_with("/v1/me", new_access).await.status(),
        401,
        "family revoked"
    );
    let after = authority
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", new_refresh),
        ])
        .await;
    assert_eq!(error_of(after).await, (400, "invalid_grant".into()));
    assert!(
        authority.logged(&["family is revoked"]),
        "{}",
        authority.logs()
    );
}

/// A refresh token issued through a client needs that client to refresh it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_tokens_are_bound_to_their_client() {
    let redis = RedisServer::start();
    let authority = start(&redis);
    authority.add_user("alice", PASSWORD, &["read"]);
    let web = authority.add_client("web", &[], false);
    let other = authority.add_client("other", &[], false);
    let login = authority
        .token(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
            ("client_id", "web"),
            ("client_secret", &web),
        ])
        .await;
    let refresh = json_of(login).await["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    let anonymous = authority
        .token(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)])
        .await;
    assert_eq!(error_of(anonymous).await, (401, "invalid_client".into()));
    let stranger = authority
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", "other"),
            ("client_secret", &other),
        ])
        .await;
    assert_eq!(error_of(stranger).await, (400, "invalid_grant".into()));
    let owner = authority
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", "web"),
            ("client_secret", &web),
        ])
        .await;
    assert_eq!(owner.status(), 200);
}

/// Refresh tokens are active at introspection only to the client they were
/// issued to: a resource server that checks `active` alone must not accept a
/// 14-day refresh token as an access token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_of_refresh_tokens() {
    let redis = RedisServer::start();
    let authority = start(&redis);
    authority.add_user("alice", PASSWORD, &["read"]);
    let gateway = authority.add_client("gateway", &[], true);
    let web = authority.add_client("web", &[], true);
    let introspect = |token: String, client: &'static str, secret: String| {
        let http = authority.http.clone();
        let url = authority.url("/oauth/introspect");
        async move {
            let response = http
                .post(url)
                .header("authorization", basic(client, &secret))
                .form(&[("token", token.as_str())])
                .send()
                .await
                .expect("introspect");
            assert_eq!(response.status(), 200);
            json_of(response).await
        }
    };
    // Issued without a client: inactive to every caller.
    let tokens = authority.login("alice", PASSWORD).await;
    let refresh = tokens["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    let access = tokens["access_token"].as_str().expect("access").to_owned();
    assert_eq!(
        introspect(refresh, "gateway", gateway.clone()).await,
        json!({ "active": false })
    );
    assert_eq!(
        introspect(access, "gateway", gateway.clone()).await["active"],
        true
    );
    // Issued to web: active to web, inactive to gateway.
    let response = authority
        .token(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
            ("client_id", "web"),
            ("client_secret", &web),
        ])
        .await;
    assert_eq!(response.status(), 200);
    let bound = json_of(response).await["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    assert_eq!(
        introspect(bound.clone(), "gateway", gateway.clone()).await,
        json!({ "active": false })
    );
    let own = introspect(bound.clone(), "web", web.clone()).await;
    assert_eq!(own["active"], true, "{own}");
    assert_eq!(own["client_id"], "web");
    assert!(own.get("token_type").is_none(), "{own}");
    // The refresh token still works for its client.
    let rotated = authority
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &bound),
            ("client_id", "web"),
            ("client_secret", &web),
        ])
        .await;
    assert_eq!(rotated.status(), 200);
}

/// Revocation (RFC 7009) and introspection (RFC 7662): active tokens are
/// described, revoked and unknown ones answer exactly {"active": false}.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_and_introspect() {
    let redis = RedisServer::start();
    let authority = start(&redis);
    authority.add_user("alice", PASSWORD, &["read"]);
    let gateway = authority.add_client("gateway", &[], true);
    let plain = authority.add_client("plain", &[], false);
    let tokens = authority.login("alice", PASSWORD).await;
    let access = tokens["access_token"].as_str().expect("access");
    let refresh = tokens["refresh_token"].as_str().expect("refresh");
    let introspect = |token: String, secret: String, client: &'static str| {
        let http = authority.http.clone();
        let url = authority.url("/oauth/introspect");
        async move {
            http.post(url)
                .header("authorization", basic(client, &secret))
                .form(&[("token", token.as_str())])
                .send()
                .await
                .expect("introspect")
        }
    };
    let active = json_of(introspect(access.into(), gateway.clone(), "gateway").await).await;
    assert_eq!(active["active"], true);
    assert_eq!(active["username"], "alice");
    assert_eq!(active["scope"], "read");
    assert_eq!(active["token_type"], "Bearer");
    assert!(active["exp"].as_u64().is_some() && active["sub"].as_str().is_some());

    let refused = introspect(access.into(), plain, "plain").await;
    assert_eq!(refused.status(), 403);
    let unauthenticated = authority
        .http
        .post(authority.url("/oauth/introspect"))
        .form(&[("token", access)])
        .send()
        .await
        .expect("request");
    assert_eq!(
        error_of(unauthenticated).await,
        (401, "invalid_client".into())
    );

    let revoked = authority
        .http
        .post(authority.url("/oauth/revoke"))
        .form(&[("token", refresh), ("token_type_hint", "refresh_token")])
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoked.status(), 200);
    for token in [access, refresh, "tsa_not-even-a-token"] {
        let body = json_of(introspect(token.into(), gateway.clone(), "gateway").await).await;
        assert_eq!(
            body,
            json!({ "active": false }),
            "inactive answers say nothing else"
        );
    }
    assert_eq!(authority.get_with("/v1/me", access).await.status(), 401);
    // Unknown tokens are revoked "successfully" too (RFC 7009 §2.2).
    let unknown = authority
        .http
        .post(authority.url("/oauth/revoke"))
        .form(&[("token", "whatever")])
        .send()
        .await
        .expect("revoke");
    assert_eq!(unknown.status(), 200);
}

/// A client's tokens can only be revoked by that client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_of_client_tokens_needs_the_client() {
    let redis = RedisServer::start();
    let authority = start(&redis);
    let secret = authority.add_client("svc", &["x"], false);
    let other = authority.add_client("other", &[], false);
    let token = json_of(
        authority
            .token(&[
                ("grant_type", "client_credentials"),
                ("client_id", "svc"),
                ("client_secret", &secret),
            ])
            .await,
    )
    .await["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let revoke = |form: Vec<(&'static str, String)>| {
        let request = authority
            .http
            .post(authority.url("/oauth/revoke"))
            .form(&form);
        async move { request.send().await.expect("revoke") }
    };
    let anonymous = revoke(vec![("token", token.clone())]).await;
    assert_eq!(error_of(anonymous).await, (401, "invalid_client".into()));
    let stranger = revoke(vec![
        ("token", token.clone()),
        ("client_id", "other".into()),
        ("client_secret", other),
    ])
    .await;
    assert_eq!(
        error_of(stranger).await,
        (400, "unauthorized_client".into())
    );
    assert_eq!(
        authority.get_with("/v1/me", &token).await.status(),
        200,
        "still live"
    );
    let owner = revoke(vec![
        ("token", token.clone()),
        ("client_id", "svc".into()),
        ("client_secret", secret),
    ])
    .await;
    assert_eq!(owner.status(), 200);
    assert_eq!(authority.get_with("/v1/me", &token).await.status(), 401);
}

/// Sessions: the list shows live tokens by id (never the token), one
/// session can be signed out, and sign-out-everywhere revokes the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_sign_out_everywhere() {
    let redis = RedisServer::start();
    let authority = start(&redis);
    authority.add_user("alice", PASSWORD, &["read"]);
    let laptop = authority.login("alice", PASSWORD).await;
    let phone = authority.login("alice", PASSWORD).await;
    let tablet = authority.login("alice", PASSWORD).await;
    let laptop_access = laptop["access_token"].as_str().expect("access");
    let list_response = authority.get_with("/v1/sessions", laptop_access).await;
    let list_text = list_response.text().await.expect("text");
    for tokens in [&laptop, &phone, &tablet] {
        for kind in ["access_token", "refresh_token"] {
            assert!(
                !list_text.contains(tokens[kind].as_str().expect("token")),
                "the list shows a token"
            );
        }
    }
    let list: Value = serde_json::from_str(&list_text).expect("json");
    let entries = list["tokens"].as_array().expect("tokens");
    assert_eq!(entries.len(), 6);
    assert_eq!(
        entries
            .iter()
            .filter(|entry| entry["current"] == true)
            .count(),
        1
    );

    let phone_access = phone["access_token"].as_str().expect("access");
    let phone_me = json_of(authority.get_with("/v1/me", phone_access).await).await;
    let phone_token_id = phone_me["token_id"].as_str().expect("id");
    let signed_out = authority
        .http
        .delete(authority.url(&format!("/v1/sessions/{phone_token_id}")))
        .bearer_auth(laptop_access)
        .send()
        .await
        .expect("delete");
    assert_eq!(json_of(signed_out).await["tokens_revoked"], 2);
    assert_eq!(
        authority.get_with("/v1/me", phone_access).await.status(),
        401
    );
    let phone_refresh = phone["refresh_token"].as_str().expect("refresh");
    let refresh = authority
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", phone_refresh),
        ])
        .await;
    assert_eq!(
        refresh.status(),
        400,
        "the session's refresh token went with it"
    );

    let everywhere = authority
        .http
        .delete(authority.url("/v1/sessions"))
        .bearer_auth(laptop_access)
        .send()
        .await
        .expect("delete");
    assert_eq!(json_of(everywhere).await["tokens_revoked"], 4);
    for tokens in [&laptop, &tablet] {
        let access = tokens["access_token"].as_str().expect("access");
        assert_eq!(authority.get_with("/v1/me", access).await.status(), 401);
    }
    let unknown = authority
        .http
        .delete(authority.url(&format!("/v1/sessions/{phone_token_id}")))
        .bearer_auth(json_of_login(&authority).await)
        .send()
        .await
        .expect("delete");
    assert_eq!(unknown.status(), 404);
}

async fn json_of_login(authority: &Authority) -> String {
    authority.login("alice", PASSWORD).await["access_token"]
        .as_str()
        .expect("access")
        .to_owned()
}

/// Changing a password (CLI or admin API) revokes every token of the user;
/// the old password stops working, the new one works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_change_revokes_all_tokens() {
    let redis = RedisServer::start();
    let authority = start(&redis);
    authority.add_user("alice", PASSWORD, &["read"]);
    authority.add_user("root", PASSWORD, &["admin"]);
    let before = authority.login("alice", PASSWORD).await;
    let output = authority.cli(
        &["user", "passwd", "alice", "--password-stdin"],
        Some("new password one\n"),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("2 tokens revoked"));
    let access = before["access_token"].as_str().expect("access");
    assert_eq!(authority.get_with("/v1/me", access).await.status(), 401);
    let old = authority
        .token(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
        ])
        .await;
    assert_eq!(error_of(old).await, (400, "invalid_grant".into()));
    let second = authority.login("alice", "new password one").await;

    let admin = authority.login("root", PASSWORD).await;
    let admin_token = admin["access_token"].as_str().expect("access");
    let changed = authority
        .http
        .patch(authority.url("/v1/admin/users/alice"))
        .bearer_auth(admin_token)
        .json(&json!({ "password": "new password two" }))
        .send()
        .await
        .expect("patch");
    assert_eq!(changed.status(), 200);
    assert_eq!(json_of(changed).await["tokens_revoked"], 2);
    let access = second["access_token"].as_str().expect("access");
    assert_eq!(authority.get_with("/v1/me", access).await.status(), 401);
    let _ = authority.login("alice", "new password two").await;
}

/// Failed logins are throttled per username: 429 with Retry-After, even
/// for the right password, until the window passes; a success resets the
/// count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_throttled() {
    let redis = RedisServer::start();
    let authority = Authority::start(
        BIN,
        &redis,
        &[("LOGIN_MAX_FAILURES", "3"), ("LOGIN_FAILURE_WINDOW", "2")],
    );
    authority.add_user("alice", PASSWORD, &[]);
    let authority = &authority;
    let attempt = |password: &'static str| async move {
        authority
            .token(&[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", password),
            ])
            .await
    };
    // Two failures, a success (resets), two failures: still not throttled.
    for _ in 0..2 {
        assert_eq!(attempt("wrong").await.status(), 400);
    }
    assert_eq!(attempt(PASSWORD).await.status(), 200);
    for _ in 0..2 {
        assert_eq!(attempt("wrong").await.status(), 400);
    }
    assert_eq!(
        attempt(PASSWORD).await.status(),
        200,
        "the success reset the counter"
    );
    for _ in 0..3 {
        assert_eq!(attempt("wrong").await.status(), 400);
    }
    let throttled = attempt(PASSWORD).await;
    assert_eq!(throttled.status(), 429);
    let retry_after: u64 = throttled.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_eq!(json_of(throttled).await["error"], "temporarily_unavailable");
    // Another user is not affected.
    authority.add_user("bob", PASSWORD, &[]);
    let _ = authority.login("bob", PASSWORD).await;
    // Once the window has passed, the right password works again.
    let unblocked = wait_until_async(Duration::from_secs(10), tokio::time::sleep, || async {
        (attempt(PASSWORD).await.status() == 200).then_some(())
    })
    .await;
    assert!(
        unblocked.is_some(),
        "throttling did not end with its window"
    );
}

/// An unknown user and a wrong password get byte-identical answers (and a
/// disabled user with the right password the same), so the endpoint does
/// not reveal which usernames exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_and_wrong_password_are_indistinguishable() {
    let redis = RedisServer::start();
    let authority = start(&redis);
    authority.add_user("alice", PASSWORD, &[]);
    authority.add_user("dora", PASSWORD, &[]);
    let output = authority.cli(&["user", "disable", "dora"], None);
    assert!(output.status.success());
    let mut answers = Vec::new();
    for (username, password) in [
        ("alice", "wrong password"),
        ("nobody", "wrong password"),
        ("dora", PASSWORD),
    ] {
        let response = authority
            .token(&[
                ("grant_type", "password"),
                ("username", username),
                ("password", password),
            ])
            .await;
        let status = response.status();
        let mut headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .filter(|(name, _)| *name != "date" && *name != "x-request-id")
            .map(|(name, value)| {
                (
                    name.to_string(),
                    value.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        headers.sort();
        let body = response.bytes().await.expect("body");
        answers.push((status, headers, body));
    }
    assert_eq!(
        answers[0], answers[1],
        "unknown user differs from wrong password"
    );
    assert_eq!(
        answers[0], answers[2],
        "disabled user differs from wrong password"
    );
    assert_eq!(answers[0].0, 400);
}

/// The server metadata (RFC 8414) names the endpoints under the issuer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_document() {
    let redis = RedisServer::start();
    let authority = start(&redis);
    let metadata = json_of(
        authority
            .http
            .get(authority.url("/.well-known/oauth-authorization-server"))
            .send()
            .await
            .expect("metadata"),
    )
    .await;
    let issuer = metadata["issuer"].as_str().expect("issuer");
    assert_eq!(issuer, authority.url(""));
    assert_eq!(metadata["token_endpoint"], format!("{issuer}/oauth/token"));
    assert_eq!(
        metadata["revocation_endpoint"],
        format!("{issuer}/oauth/revoke")
    );
    assert_eq!(
        metadata["introspection_endpoint"],
        format!("{issuer}/oauth/introspect")
    );
    assert_eq!(
        metadata["grant_types_supported"],
        json!([
            "authorization_code",
            "refresh_token",
            "client_credentials",
            "password"
        ])
    );
    assert_eq!(
        metadata["authorization_endpoint"],
        format!("{issuer}/oauth/authorize")
    );
}

/// The admin API mirrors the CLI: create, read, disable (revokes, refuses
/// logins), remove users; register clients whose secret works; a token
/// without the admin scope gets 403 insufficient_scope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api() {
    let redis = RedisServer::start();
    let authority = start(&redis);
    authority.add_user("root", PASSWORD, &["admin"]);
    authority.add_user("alice", PASSWORD, &["read"]);
    let admin = json_of_login_as(&authority, "root").await;
    let user_token = json_of_login_as(&authority, "alice").await;
    let forbidden = authority.get_with("/v1/admin/users", &user_token).await;
    assert_eq!(forbidden.status(), 403);
    assert!(
        forbidden.headers()["www-authenticate"]
            .to_str()
            .expect("ascii")
            .contains("error=\"insufficient_scope\", scope=\"admin\"")
    );

    let created = authority
        .http
        .post(authority.url("/v1/admin/users"))
        .bearer_auth(&admin)
        .json(&json!({ "username": "carol@example.com", "password": "carol's password", "scope": "read write" }))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), 201);
    let carol = json_of(created).await;
    assert_eq!(carol["scope"], "read write");
    assert!(carol.get("password_hash").is_none());
    let duplicate = authority
        .http
        .post(authority.url("/v1/admin/users"))
        .bearer_auth(&admin)
        .json(&json!({ "username": "carol@example.com", "password": "another password" }))
        .send()
        .await
        .expect("create");
    assert_eq!(duplicate.status(), 409);
    let fetched = json_of(
        authority
            .get_with("/v1/admin/users/carol%40example.com", &admin)
            .await,
    )
    .await;
    assert_eq!(fetched["subject"], carol["subject"]);
    let carol_token = json_of(
        authority
            .token(&[
                ("grant_type", "password"),
                ("username", "carol@example.com"),
                ("password", "carol's password"),
            ])
            .await,
    )
    .await["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let disabled = authority
        .http
        .patch(authority.url("/v1/admin/users/carol@example.com"))
        .bearer_auth(&admin)
        .json(&json!({ "disabled": true }))
        .send()
        .await
        .expect("patch");
    assert_eq!(json_of(disabled).await["tokens_revoked"], 2);
    assert_eq!(
        authority.get_with("/v1/me", &carol_token).await.status(),
        401
    );
    let refused = authority
        .token(&[
            ("grant_type", "password"),
            ("username", "carol@example.com"),
            ("password", "carol's password"),
        ])
        .await;
    assert_eq!(refused.status(), 400);
    let removed = authority
        .http
        .delete(authority.url("/v1/admin/users/carol@example.com"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("delete");
    assert_eq!(removed.status(), 200);
    assert_eq!(
        authority
            .get_with("/v1/admin/users/carol@example.com", &admin)
            .await
            .status(),
        404
    );
    let listed = json_of(authority.get_with("/v1/admin/users", &admin).await).await;
    let names: Vec<&str> = listed["users"]
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|user| user["username"].as_str())
        .collect();
    assert_eq!(names, ["alice", "root"]);

    let client = json_of(
        authority
            .http
            .post(authority.url("/v1/admin/clients"))
            .bearer_auth(&admin)
            .json(&json!({ "client_id": "batch", "scope": "jobs" }))
            .send()
            .await
            .expect("create client"),
    )
    .await;
    let secret = client["client_secret"].as_str().expect("secret shown once");
    let fetched = json_of(authority.get_with("/v1/admin/clients/batch", &admin).await).await;
    assert!(
        fetched.get("client_secret").is_none(),
        "the secret is never shown again"
    );
    let token = authority
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", "batch"),
            ("client_secret", secret),
        ])
        .await;
    assert_eq!(json_of(token).await["scope"], "jobs");
    let removed = authority
        .http
        .delete(authority.url("/v1/admin/clients/batch"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("delete");
    assert_eq!(json_of(removed).await["tokens_revoked"], 1);
}

/// One malformed request and the answer it must get.
struct Case {
    method: &'static str,
    url: String,
    content_type: Option<String>,
    authorization: Option<String>,
    body: Vec<u8>,
    status: u16,
    error: &'static str,
}

impl Case {
    fn new(method: &'static str, url: &str) -> Self {
        Self {
            method,
            url: url.to_owned(),
            content_type: None,
            authorization: None,
            body: Vec::new(),
            status: 0,
            error: "",
        }
    }

    fn content_type(mut self, value: &str) -> Self {
        self.content_type = Some(value.to_owned());
        self
    }

    fn authorization(mut self, value: &str) -> Self {
        self.authorization = Some(value.to_owned());
        self
    }

    fn body(mut self, body: &[u8]) -> Self {
        self.body = body.to_vec();
        self
    }

    fn expect(mut self, status: u16, error: &'static str) -> Self {
        self.status = status;
        self.error = error;
        self
    }

    /// Sends the request and checks status, error code and body shape.
    async fn check(self, http: &reqwest::Client) {
        let mut request = http
            .request(self.method.parse().expect("method"), &self.url)
            .body(self.body);
        if let Some(content_type) = &self.content_type {
            request = request.header("content-type", content_type);
        }
        if let Some(authorization) = &self.authorization {
            request = request.header("authorization", authorization);
        }
        let response = request.send().await.expect("request");
        let got = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let what = format!("{} {}", self.method, self.url);
        assert_eq!(got, self.status, "{what}: {body}");
        assert_eq!(body["error"], self.error, "{what}");
        assert!(body["error_description"].is_string(), "{what}: {body}");
    }
}

async fn json_of_login_as(authority: &Authority, username: &str) -> String {
    authority.login(username, PASSWORD).await["access_token"]
        .as_str()
        .expect("access")
        .to_owned()
}

/// The CLI lists and removes what it created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_lists_and_removes() {
    let redis = RedisServer::start();
    let authority = start(&redis);
    authority.add_user("alice", PASSWORD, &["read"]);
    let _ = authority.add_client("svc", &["x"], true);
    let users = authority.cli(&["user", "list"], None);
    assert!(String::from_utf8_lossy(&users.stdout).contains("alice"));
    let clients = authority.cli(&["client", "list"], None);
    let listed = String::from_utf8_lossy(&clients.stdout).into_owned();
    assert!(
        listed.contains("svc") && !listed.contains("tsc_"),
        "{listed}"
    );
    let duplicate = authority.cli(
        &["user", "add", "alice", "--password-stdin"],
        Some("another one\n"),
    );
    assert!(!duplicate.status.success());
    assert!(String::from_utf8_lossy(&duplicate.stderr).contains("exists"));
    assert!(
        authority
            .cli(&["client", "remove", "svc"], None)
            .status
            .success()
    );
    assert!(
        authority
            .cli(&["user", "remove", "alice"], None)
            .status
            .success()
    );
    let users = authority.cli(&["user", "list"], None);
    assert!(!String::from_utf8_lossy(&users.stdout).contains("alice"));
    let bad = authority.cli(&["user", "remove", "alice"], None);
    assert!(!bad.status.success());
}

/// Redis stopped: /readyz and the token endpoint answer 503 (nothing is
/// issued, nothing hangs), /healthz stays 200; when Redis returns the same
/// process serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_fails_closed_and_recovers() {
    let mut redis = RedisServer::start();
    let authority = start(&redis);
    authority.add_user("alice", PASSWORD, &["read"]);
    let before = authority.login("alice", PASSWORD).await;
    redis.stop();
    let started = std::time::Instant::now();
    let ready = authority
        .http
        .get(authority.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 503);
    let login = authority
        .token(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
        ])
        .await;
    assert_eq!(login.status(), 503);
    assert_eq!(login.headers()["retry-after"], "1");
    assert_eq!(json_of(login).await["error"], "temporarily_unavailable");
    let access = before["access_token"].as_str().expect("access");
    assert_eq!(
        authority.get_with("/v1/me", access).await.status(),
        503,
        "never let through"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answers within the timeout"
    );
    let health = authority
        .http
        .get(authority.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);

    redis.restart();
    let recovered = wait_until_async(Duration::from_secs(10), tokio::time::sleep, || async {
        let ready = authority
            .http
            .get(authority.url("/readyz"))
            .send()
            .await
            .ok()?;
        (ready.status() == 200).then_some(())
    })
    .await;
    assert!(recovered.is_some(), "the authority did not recover");
    // The restarted Redis kept nothing: the account is re-created.
    authority.add_user("alice", PASSWORD, &["read"]);
    let _ = authority.login("alice", PASSWORD).await;
}

/// SIGTERM shuts the server down cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_on_sigterm() {
    let redis = RedisServer::start();
    let mut authority = start(&redis);
    assert_eq!(
        authority
            .http
            .get(authority.url("/healthz"))
            .send()
            .await
            .expect("healthz")
            .status(),
        200
    );
    let status = authority.process().terminate(Duration::from_secs(10));
    assert!(
        status.is_some_and(|status| status.success()),
        "did not exit cleanly: {status:?}\n{}",
        authority.logs()
    );
}

/// `WORKER_THREADS` sets the runtime's request-serving threads (the
/// runtime reports its own count in the start-up line), and the authority
/// serves with one as with several.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_threads_setting_sizes_the_runtime() {
    let redis = RedisServer::start();
    for threads in ["1", "3"] {
        let authority = Authority::start(BIN, &redis, &[("WORKER_THREADS", threads)]);
        let status = authority
            .http
            .get(authority.url("/healthz"))
            .send()
            .await
            .expect("healthz")
            .status();
        assert_eq!(status, 200);
        // The log is read from the child's pipe by a thread: wait for it.
        let starting = wait_until_async(Duration::from_secs(10), tokio::time::sleep, || {
            let line = authority
                .logs()
                .lines()
                .find(|line| line.contains("starting"))
                .map(str::to_owned);
            async move { line }
        })
        .await
        .map(|(line, _)| line)
        .unwrap_or_else(|| panic!("no start-up line:\n{}", authority.logs()));
        assert!(
            starting.contains(&format!("workers={threads}")),
            "{starting}"
        );
    }
}

/// A hash made with weaker parameters is upgraded at the next login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weak_hashes_are_upgraded_on_login() {
    let redis = RedisServer::start();
    let authority = Authority::start(BIN, &redis, &[("ARGON2_MEMORY_KIB", "512")]);
    let weak_env = Authority::environment(&redis.url(), &[("ARGON2_MEMORY_KIB", "128")]);
    let output = token_service_tests::authority::run_cli(
        std::path::Path::new(BIN),
        &weak_env,
        &["user", "add", "alice", "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(output.status.success());
    let stored_hash = || async {
        let client = redis::Client::open(redis.url()).expect("url");
        let mut connection = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        // Its only user; the key is named by a keyed digest of "alice".
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("ts:user:*")
            .query_async(&mut connection)
            .await
            .expect("keys");
        assert_eq!(keys.len(), 1, "{keys:?}");
        let user: String = redis::cmd("GET")
            .arg(&keys[0])
            .query_async(&mut connection)
            .await
            .expect("user");
        serde_json::from_str::<Value>(&user).expect("json")["password_hash"]
            .as_str()
            .expect("hash")
            .to_owned()
    };
    assert!(stored_hash().await.contains("m=128,"));
    let _ = authority.login("alice", PASSWORD).await;
    let upgraded = wait_until_async(Duration::from_secs(10), tokio::time::sleep, || async {
        stored_hash().await.contains("m=512,").then_some(())
    })
    .await;
    assert!(upgraded.is_some(), "the hash was not upgraded");
    let _ = authority.login("alice", PASSWORD).await;
}

/// At least twenty malformed requests: each gets the right 4xx and a
/// standard error body, none a 5xx, and Redis is byte-for-byte unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_get_clear_errors_and_change_nothing() {
    let redis = RedisServer::start();
    let authority = start(&redis);
    authority.add_user("alice", PASSWORD, &["read", "admin"]);
    let secret = authority.add_client("svc", &[], true);
    let tokens = authority.login("alice", PASSWORD).await;
    let access = tokens["access_token"].as_str().expect("access").to_owned();
    let refresh = tokens["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    let before = snapshot(&redis.url()).await;

    let form = "application/x-www-form-urlencoded";
    let token_url = authority.url("/oauth/token");
    let mut wrong_checksum = access.clone();
    let last = wrong_checksum.pop().expect("char");
    wrong_checksum.push(if last == 'A' { 'B' } else { 'A' });
    let bearer = format!("Bearer {access}");
    let token_form = |body: &[u8]| Case::new("POST", &token_url).content_type(form).body(body);
    let admin_json = |body: &[u8]| {
        Case::new("POST", &authority.url("/v1/admin/users"))
            .content_type("application/json")
            .authorization(&bearer)
            .body(body)
    };
    let cases = vec![
        Case::new("POST", &token_url)
            .body(b"grant_type=password")
            .expect(400, "invalid_request"),
        Case::new("POST", &token_url)
            .content_type("application/json")
            .body(br#"{"grant_type":"password"}"#)
            .expect(400, "invalid_request"),
        Case::new("POST", &token_url)
            .content_type("application/x-www-form-urlencoded; charset=latin1")
            .body(b"grant_type=password")
            .expect(400, "invalid_request"),
        token_form(b"grant_type=password&username=alice&password=%ff%fe")
            .expect(400, "invalid_request"),
        token_form(b"grant_type=password&username=\xff\xfe&password=x")
            .expect(400, "invalid_request"),
        token_form(b"grant_type=password&username=alice&password=%zz")
            .expect(400, "invalid_request"),
        token_form(b"grant_type=password&grant_type=password&username=alice&password=x")
            .expect(400, "invalid_request"),
        token_form(b"username=alice&password=x").expect(400, "invalid_request"),
        token_form(b"grant_type=implicit").expect(400, "unsupported_grant_type"),
        token_form(b"grant_type=password&username=alice").expect(400, "invalid_request"),
        token_form(b"grant_type=password&password=x").expect(400, "invalid_request"),
        token_form(b"grant_type=password&username=alice&password=x&scope=read%20%20admin")
            .expect(400, "invalid_scope"),
        token_form(&[b'a'; 100_000]).expect(413, "invalid_request"),
        token_form(b"grant_type=refresh_token&refresh_token=garbage").expect(400, "invalid_grant"),
        token_form(format!("grant_type=refresh_token&refresh_token={access}").as_bytes())
            .expect(400, "invalid_grant"),
        token_form(b"grant_type=refresh_token").expect(400, "invalid_request"),
        token_form(b"grant_type=client_credentials")
            .authorization("Basic !!!not-base64")
            .expect(401, "invalid_client"),
        token_form(format!("grant_type=client_credentials&client_secret={secret}").as_bytes())
            .authorization(&basic("svc", &secret))
            .expect(400, "invalid_request"),
        token_form(b"grant_type=client_credentials&client_id=svc").expect(401, "invalid_client"),
        token_form(b"grant_type=client_credentials&client_secret=x").expect(400, "invalid_request"),
        Case::new("GET", &token_url).expect(405, "invalid_request"),
        Case::new("POST", &authority.url("/oauth/revoke"))
            .content_type(form)
            .body(b"token_type_hint=access_token")
            .expect(400, "invalid_request"),
        Case::new("POST", &authority.url("/oauth/introspect"))
            .content_type(form)
            .body(format!("token={access}").as_bytes())
            .expect(401, "invalid_client"),
        Case::new("GET", &authority.url("/v1/me"))
            .authorization(&format!("Bearer {access} {access}"))
            .expect(400, "invalid_request"),
        Case::new("GET", &authority.url("/v1/me"))
            .authorization("Bearer tsa_garbage")
            .expect(401, "invalid_token"),
        Case::new("GET", &authority.url("/v1/me"))
            .authorization(&format!("Bearer {wrong_checksum}"))
            .expect(401, "invalid_token"),
        Case::new("GET", &authority.url("/v1/me"))
            .authorization(&format!("Bearer {refresh}"))
            .expect(401, "invalid_token"),
        Case::new("GET", &authority.url("/v1/me"))
            .authorization("Bearer ")
            .expect(400, "invalid_request"),
        admin_json(b"{\"username\":").expect(400, "invalid_request"),
        admin_json(br#"{"username":"eve","password":"long enough","role":"root"}"#)
            .expect(400, "invalid_request"),
        admin_json(br#"{"username":"eve","password":"long enough"}"#)
            .content_type("text/plain")
            .expect(400, "invalid_request"),
        admin_json(br#"{"username":"Eve Spaces","password":"long enough"}"#)
            .expect(400, "invalid_request"),
        admin_json(br#"{"username":"eve","password":"short"}"#).expect(400, "invalid_request"),
        admin_json(br#"{"username":"eve","password":"long enough","scope":"a\"b"}"#)
            .expect(400, "invalid_request"),
        Case::new("PATCH", &authority.url("/v1/admin/users/nobody"))
            .content_type("application/json")
            .authorization(&bearer)
            .body(br#"{"disabled":true}"#)
            .expect(404, "not_found"),
        Case::new("DELETE", &authority.url("/v1/sessions/not-a-uuid"))
            .authorization(&bearer)
            .expect(400, "invalid_request"),
        Case::new("GET", &authority.url("/no/such/path")).expect(404, "not_found"),
        Case::new("PUT", &authority.url("/v1/me")).expect(405, "invalid_request"),
    ];
    assert!(cases.len() >= 20);
    for case in cases {
        case.check(&authority.http).await;
    }
    // A body streamed without Content-Length is limited too.
    let chunks =
        futures_util::stream::iter((0..64).map(|_| Ok::<_, std::io::Error>(vec![b'a'; 1024])));
    let streamed = authority
        .http
        .post(&token_url)
        .header("content-type", form)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .expect("request");
    assert_eq!(streamed.status(), 413);

    assert_eq!(
        snapshot(&redis.url()).await,
        before,
        "a bad request changed stored state"
    );
    // And the good credentials still work afterwards.
    let _ = authority.login("alice", PASSWORD).await;
}

/// After real traffic, /metrics exposes the documented series with bounded
/// labels, and never a username, token or secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_real_traffic() {
    let redis = RedisServer::start();
    let authority = Authority::start(BIN, &redis, &[("LOGIN_MAX_FAILURES", "2")]);
    authority.add_user("alice", PASSWORD, &["read"]);
    authority.add_user("mallory", PASSWORD, &[]);
    let secret = authority.add_client("svc", &["x"], false);
    let tokens = authority.login("alice", PASSWORD).await;
    let refresh = tokens["refresh_token"].as_str().expect("refresh");
    let rotated = authority
        .token(&[("grant_type", "refresh_token"), ("refresh_token", refresh)])
        .await;
    assert_eq!(rotated.status(), 200);
    let reuse = authority
        .token(&[("grant_type", "refresh_token"), ("refresh_token", refresh)])
        .await;
    assert_eq!(reuse.status(), 400);
    for _ in 0..3 {
        let _ = authority
            .token(&[
                ("grant_type", "password"),
                ("username", "mallory"),
                ("password", "wrong-secret-guess"),
            ])
            .await;
    }
    let client = authority
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", "svc"),
            ("client_secret", &secret),
        ])
        .await;
    let client_token = json_of(client).await["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let revoke = authority
        .http
        .post(authority.url("/oauth/revoke"))
        .form(&[
            ("token", client_token.as_str()),
            ("client_id", "svc"),
            ("client_secret", secret.as_str()),
        ])
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoke.status(), 200);

    let response = authority
        .http
        .get(authority.url("/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/plain")
    );
    let text = response.text().await.expect("text");
    for series in [
        r#"authority_tokens_issued_total{grant="password"} 1"#,
        r#"authority_tokens_issued_total{grant="refresh_token"} 1"#,
        r#"authority_tokens_issued_total{grant="client_credentials"} 1"#,
        r#"authority_token_requests_refused_total{grant="refresh_token",reason="invalid_grant"} 1"#,
        r#"authority_token_requests_refused_total{grant="password",reason="invalid_grant"} 2"#,
        r#"authority_token_requests_refused_total{grant="password",reason="temporarily_unavailable"} 1"#,
        // The new access token and the new refresh token (the rotation
        // retired the old access token).
        r#"authority_tokens_revoked_total{reason="refresh_reuse"} 2"#,
        r#"authority_tokens_revoked_total{reason="revocation_endpoint"} 1"#,
        "authority_logins_throttled_total 1",
        r#"authority_login_duration_seconds_bucket{outcome="success","#,
        r#"authority_login_duration_seconds_count{outcome="failure"} 3"#,
        r#"authority_redis_pool_connections{state="open"}"#,
        r#"authority_http_requests_total{status="2xx"}"#,
    ] {
        assert!(text.contains(series), "missing {series} in\n{text}");
    }
    for secret_or_unbounded in ["alice", "mallory", "svc", "tsa_", "tsr_", "tsc_", PASSWORD] {
        assert!(
            !text.contains(secret_or_unbounded),
            "{secret_or_unbounded} appears in /metrics"
        );
    }
}

/// Every response carries an X-Request-Id: the caller's, or a fresh one;
/// the authority's log lines for that request carry it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_propagated() {
    let redis = RedisServer::start();
    let authority = start(&redis);
    let given = authority
        .http
        .get(authority.url("/healthz"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .expect("healthz");
    assert_eq!(given.headers()["x-request-id"], "trace-me-42");
    let fresh = authority
        .http
        .get(authority.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    let id = fresh.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let logged = token_test_harness::wait_until(Duration::from_secs(5), || {
        authority
            .logs()
            .contains("request_id=\"trace-me-42\"")
            .then_some(())
    });
    assert!(logged.is_some(), "{}", authority.logs());
}

/// A client's secret is hashed once, then remembered: repeated calls with
/// the right secret skip argon2, but a wrong secret is still refused, and
/// a removed client is refused at once although its secret was remembered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remembered_client_secrets_never_outlive_the_client() {
    let redis = RedisServer::start();
    let authority = start(&redis);
    authority.add_user("alice", PASSWORD, &["read"]);
    let secret = authority.add_client("gateway", &[], true);
    let tokens = authority.login("alice", PASSWORD).await;
    let access = tokens["access_token"].as_str().expect("access").to_owned();
    let introspect = |secret: String| {
        let http = authority.http.clone();
        let url = authority.url("/oauth/introspect");
        let access = access.clone();
        async move {
            http.post(url)
                .header("authorization", basic("gateway", &secret))
                .form(&[("token", access.as_str())])
                .send()
                .await
                .expect("introspect")
        }
    };
    for _ in 0..3 {
        let answer = json_of(introspect(secret.clone()).await).await;
        assert_eq!(answer["active"], true);
    }
    let wrong = format!("{secret}x");
    assert_eq!(
        error_of(introspect(wrong).await).await,
        (401, "invalid_client".into())
    );
    let output = authority.cli(&["client", "remove", "gateway"], None);
    assert!(output.status.success(), "client remove failed");
    assert_eq!(
        error_of(introspect(secret).await).await,
        (401, "invalid_client".into())
    );
}

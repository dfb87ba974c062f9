//! `token-authority export` / `import` end to end: the real binary, two
//! private redis-servers and the real OpenID Connect provider. Users,
//! clients and connected services move to an empty Redis; tokens do not.

use reqwest::StatusCode;
use serde_json::Value;
use token_repository::KeyPrefix;
use token_service_tests::connected::{self, PASSWORD, PROVIDER, Setup, provider_token};
use token_service_tests::oidc::Browser;
use token_test_harness::RedisServer;

const BIN: &str = env!("CARGO_BIN_EXE_e2e-token-authority");

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.expect("json body")
}

/// A round trip into an empty Redis, after which the user logs in with the
/// same password, the client authenticates with the same secret, and the
/// connected service is "connected" and serves the same provider token.
/// The export holds hashes and sealed envelopes, never a token, password,
/// secret or provider token. A second import into the now non-empty Redis
/// is refused and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_import_round_trip() {
    let setup = Setup::start(&[], "");
    let source = setup.authority(BIN, &[]);
    let alice = connected::user(&source, "alice").await;
    let (_, page) = connected::connect(&source, &alice).await;
    assert!(page.contains("provider="), "{page}");
    let served = json_of(provider_token(&source, &alice, 30).await).await;
    let provider_access = served["access_token"]
        .as_str()
        .expect("provider token")
        .to_owned();
    let secret = source.add_client("gateway", &["jobs"], true);

    let output = source.cli(&["export"], None);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let export = String::from_utf8(output.stdout).expect("utf-8");
    let lines: Vec<Value> = export
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let kinds: Vec<&str> = lines
        .iter()
        .map(|line| line["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(
        kinds,
        ["export", "deployment_key", "user", "client", "connection"],
        "{export}"
    );
    assert_eq!(lines[4]["subject"], alice.subject.as_str());
    assert_eq!(lines[4]["provider"], PROVIDER);
    for secret_text in [
        PASSWORD,
        secret.as_str(),
        provider_access.as_str(),
        alice.bearer.as_str(),
        "tsa_",
        "tsr_",
    ] {
        assert!(!export.contains(secret_text), "the export holds a secret");
    }
    assert!(export.contains("$argon2id$"), "hashes as stored");

    let target_redis = RedisServer::start();
    let target = setup.authority_on(BIN, &target_redis.url(), &[]);
    let imported = target.cli(&["import"], Some(&export));
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    assert!(
        String::from_utf8_lossy(&imported.stderr)
            .contains("imported 1 users, 1 clients, 1 connections")
    );

    // Tokens stay behind: the source's bearer means nothing at the target.
    assert_eq!(
        target.get_with("/v1/me", &alice.bearer).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let bearer = target.login("alice", PASSWORD).await["access_token"]
        .as_str()
        .expect("access token")
        .to_owned();
    let moved = connected::User {
        bearer,
        ..alice.clone()
    };
    let me = json_of(target.get_with("/v1/me", &moved.bearer).await).await;
    assert_eq!(me["sub"], alice.subject.as_str(), "the same subject");
    let status = json_of(
        target
            .get_with(&format!("/v1/connect/{PROVIDER}"), &moved.bearer)
            .await,
    )
    .await;
    assert_eq!(status["status"], "connected", "{status}");
    let response = provider_token(&target, &moved, 30).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        json_of(response).await["access_token"],
        provider_access.as_str(),
        "the stored provider token is served"
    );
    let client = target
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", "gateway"),
            ("client_secret", &secret),
        ])
        .await;
    assert_eq!(client.status(), StatusCode::OK);

    // A second import into the now non-empty Redis: refused, nothing written.
    let before = target.cli(&["export"], None);
    assert!(before.status.success());
    let again = target.cli(&["import"], Some(&export));
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let after = target.cli(&["export"], None);
    assert_eq!(before.stdout, after.stdout, "nothing changed");
}

/// Bad input is refused before anything is written, without echoing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_refuses_bad_input() {
    let redis = RedisServer::start();
    let authority = token_service_tests::Authority::start(BIN, &redis, &[]);
    let input = "{\"kind\":\"export\",\"version\":1}\n\
                 {\"kind\":\"user\",\"record\":{\"subject\":\"s\",\"username\":\"bob\"}}\n\
                 {\"kind\":\"user\",\"record\":\"$argon2id$hidden\"}\n";
    let output = authority.cli(&["import"], Some(input));
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 2"), "{stderr}");
    assert!(!stderr.contains("hidden"), "{stderr}");
    let list = authority.cli(&["user", "list"], None);
    assert!(
        !String::from_utf8_lossy(&list.stdout).contains("bob"),
        "nothing written"
    );
}

/// The `P fid:` index entries (key name and username) of `redis_url`.
async fn identity_index(redis_url: &str) -> Vec<(String, String)> {
    let client = redis::Client::open(redis_url).expect("url");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let pattern = format!("{}*", KeyPrefix::default().identity(""));
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut connection)
        .await
        .expect("KEYS");
    keys.sort();
    let mut entries = Vec::new();
    for key in keys {
        let username: String = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut connection)
            .await
            .expect("GET");
        entries.push((key, username));
    }
    entries
}

/// A federated account (made by sign-in with the provider) moves with its
/// identity index entry (`P fid:`): the same key name and username at the
/// target, and the next sign-in there finds the same account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federated_accounts_keep_their_identity_index() {
    let setup = Setup::start(
        &[("OIDC_ID_TOKEN_CLAIMS", "1")],
        "login = true\nprovision = true",
    );
    let source = setup.authority(BIN, &[]);
    let start = source.url(&format!(
        "/signin/federated?provider={PROVIDER}&return_to=%2Faccount"
    ));
    let browser = Browser::new();
    let callback = browser.authorize(&start, "dora").await;
    let (status, _) = browser.visit(callback.as_str()).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{}", source.logs());
    let index = identity_index(&setup.redis.url()).await;
    assert_eq!(index.len(), 1, "{index:?}");
    let username = index[0].1.clone();
    assert!(username.starts_with(&format!("{PROVIDER}.")), "{username}");

    let output = source.cli(&["export"], None);
    assert!(output.status.success());
    let export = String::from_utf8(output.stdout).expect("utf-8");
    let target_redis = RedisServer::start();
    let target = setup.authority_on(BIN, &target_redis.url(), &[]);
    let imported = target.cli(&["import"], Some(&export));
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    assert_eq!(
        identity_index(&target_redis.url()).await,
        index,
        "the same entry at the target"
    );

    // The next sign-in at the target is the same account: nothing created.
    let users = |authority: &token_service_tests::Authority| {
        let list = authority.cli(&["user", "list"], None);
        assert!(list.status.success());
        String::from_utf8_lossy(&list.stdout).into_owned()
    };
    let before = users(&target);
    let again = Browser::new();
    let start = target.url(&format!(
        "/signin/federated?provider={PROVIDER}&return_to=%2Faccount"
    ));
    let callback = again.authorize(&start, "dora").await;
    let (status, _) = again.visit(callback.as_str()).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{}", target.logs());
    let page = again.page(&target.url("/account")).await;
    assert!(page.contains(&username), "signed in as {username}: {page}");
    assert_eq!(users(&target).lines().count(), before.lines().count());
}

//! Per-provider permissions of service clients (issue 18, item 4): with
//! two providers configured at once (two clients of the real OpenID
//! Connect provider, `tests/oidc-provider`), a client limited to one
//! provider gets that provider's tokens only; a client without the list
//! keeps getting every provider's; every handout and every refusal is
//! logged with the client, the user's subject and the provider, never the
//! token.

use reqwest::StatusCode;
use serde_json::{Value, json};
use token_service_tests::Authority;
use token_service_tests::connected::{self, PASSWORD, PROVIDER, SECOND, Setup, User};

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

/// `user`'s own access token for `provider`.
async fn own_token(authority: &Authority, user: &User, provider: &str) -> String {
    let response = authority
        .get_with(
            &format!("/v1/connect/{provider}/token?expires=10"),
            &user.bearer,
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    json_of(response).await["access_token"]
        .as_str()
        .expect("token")
        .to_owned()
}

fn service_path(user: &User, provider: &str) -> String {
    format!(
        "/v1/users/{}/connect/{provider}/token?expires=10",
        user.subject
    )
}

/// A client with `--view-provider` gets the tokens of that provider and a
/// 403 (logged with reason `provider`) for the other; a client without the
/// list gets both, and `client list` shows it as `all`; the admin API sets
/// and clears the list, taking effect on the next request. Handouts are
/// logged with client, subject and provider, and the log holds no token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn view_access_tokens_per_provider() {
    let setup = Setup::start_two(&[], "", "");
    let authority = setup.authority(BIN, &[]);
    let alice = connected::user(&authority, "alice").await;
    connected::connect_to(&authority, &alice, PROVIDER).await;
    connected::connect_to(&authority, &alice, SECOND).await;
    let first_token = own_token(&authority, &alice, PROVIDER).await;
    let second_token = own_token(&authority, &alice, SECOND).await;
    assert_ne!(first_token, second_token);

    let limited = client_token(
        &authority,
        "appdb-first",
        &["--view-access-tokens", "--view-provider", PROVIDER],
    )
    .await;
    let response = authority
        .get_with(&service_path(&alice, PROVIDER), &limited)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        json_of(response).await["access_token"],
        first_token.as_str()
    );
    let response = authority
        .get_with(&service_path(&alice, SECOND), &limited)
        .await;
    assert_eq!(error_of(response).await, (403, "access_denied".into()));
    assert!(
        authority.logged(&[
            "service client denied",
            "client_id=appdb-first ",
            &format!("provider=\"{SECOND}\""),
            "reason=provider",
        ]),
        "{}",
        authority.logs()
    );

    let everything = client_token(&authority, "appdb-all", &["--view-access-tokens"]).await;
    for (provider, token) in [(PROVIDER, &first_token), (SECOND, &second_token)] {
        let response = authority
            .get_with(&service_path(&alice, provider), &everything)
            .await;
        assert_eq!(response.status(), StatusCode::OK, "{provider}");
        assert_eq!(json_of(response).await["access_token"], token.as_str());
        assert!(
            authority.logged(&[
                "provider token handed to a service client",
                "client_id=appdb-all ",
                &format!("user_subject=\"{}\"", alice.subject),
                &format!("provider=\"{provider}\""),
            ]),
            "{}",
            authority.logs()
        );
    }

    // The list is shown: `all` without one, the names with one.
    let output = authority.cli(&["client", "list"], None);
    assert!(output.status.success());
    let listing = String::from_utf8_lossy(&output.stdout).to_string();
    let row = |client: &str| {
        listing
            .lines()
            .find(|line| line.starts_with(&format!("{client} ")))
            .map(|line| line.split_whitespace().collect::<Vec<_>>())
            .expect("a row")
    };
    assert!(listing.contains("VIEW_PROVIDERS"), "{listing}");
    assert_eq!(row("appdb-all")[3], "all", "{listing}");
    assert_eq!(row("appdb-first")[3], PROVIDER, "{listing}");

    // The admin API: swap the list, then clear it (every provider again).
    authority.add_user("root", PASSWORD, &["admin"]);
    let admin = authority.login("root", PASSWORD).await["access_token"]
        .as_str()
        .expect("admin token")
        .to_owned();
    let patch = |body: Value| {
        let (authority, admin) = (&authority, &admin);
        async move {
            authority
                .http
                .patch(authority.url("/v1/admin/clients/appdb-first"))
                .bearer_auth(admin)
                .json(&body)
                .send()
                .await
                .expect("patch")
        }
    };
    let changed = patch(json!({ "view_providers": [SECOND] })).await;
    assert_eq!(changed.status(), StatusCode::OK);
    assert_eq!(
        json_of(changed).await["client"]["view_providers"],
        json!([SECOND])
    );
    let status = |provider: &'static str| {
        let (authority, alice, limited) = (&authority, &alice, &limited);
        async move {
            authority
                .get_with(&service_path(alice, provider), limited)
                .await
                .status()
        }
    };
    assert_eq!(status(PROVIDER).await, StatusCode::FORBIDDEN);
    assert_eq!(status(SECOND).await, StatusCode::OK);
    let cleared = patch(json!({ "view_providers": null })).await;
    assert_eq!(cleared.status(), StatusCode::OK);
    assert_eq!(
        json_of(cleared).await["client"]["view_providers"],
        Value::Null
    );
    assert_eq!(status(PROVIDER).await, StatusCode::OK);

    // Bad lists are 400 and change nothing; the list is capped.
    for bad in [
        json!({ "view_providers": ["Not A Name"] }),
        json!({ "view_providers": "test-idp" }),
        json!({ "view_providers": (0..65).map(|i| format!("p{i}")).collect::<Vec<_>>() }),
    ] {
        let response = patch(bad.clone()).await;
        assert_eq!(error_of(response).await.0, 400, "{bad}");
    }
    let sixty_four: Vec<String> = (0..64).map(|i| format!("p{i}")).collect();
    let created = authority
        .http
        .post(authority.url("/v1/admin/clients"))
        .bearer_auth(&admin)
        .json(&json!({ "client_id": "capped", "view_access_tokens": true, "view_providers": sixty_four }))
        .send()
        .await
        .expect("post");
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(
        json_of(created).await["view_providers"]
            .as_array()
            .map(Vec::len),
        Some(64)
    );
    assert_eq!(status(PROVIDER).await, StatusCode::OK, "unchanged by 400s");

    let logs = authority.logs();
    assert!(!logs.contains(&first_token) && !logs.contains(&second_token));
}

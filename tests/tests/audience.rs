//! End to end: audience-restricted tokens (RFC 8707). The real authority,
//! two real example services (`protected-service`) with their own
//! `AUDIENCE`, a private redis-server, HTTP on loopback.

use oauth2::{PkceCodeChallenge, PkceCodeVerifier};
use reqwest::StatusCode;
use serde_json::{Value, json};
use token_service_tests::Authority;
use token_service_tests::authority::run_cli;
use token_service_tests::browser::{
    Browser, add_public_client, hidden_value, location, query_param,
};
use token_service_tests::protected::{Options, ProtectedService, Reply};
use token_test_harness::RedisServer;

const BIN: &str = env!("CARGO_BIN_EXE_e2e-token-authority");
const SERVICE: &str = env!("CARGO_BIN_EXE_protected-service");
const PASSWORD: &str = "correct horse battery";
/// Service A's resource URI (it declares the scope `read`).
const ORDERS: &str = "https://orders.example";
/// Service B's resource URI (it declares no scopes).
const BILLING: &str = "https://billing.example/";
/// What every audience refusal says, and all it says.
const WRONG_AUDIENCE: &str = "the token's audience does not include this service";

struct Setup {
    authority: Authority,
    orders: ProtectedService,
    billing: ProtectedService,
    redis: RedisServer,
}

impl Setup {
    /// An authority with `alice` (read, admin), the two resources
    /// registered, and the two services.
    fn start() -> Self {
        let redis = RedisServer::start();
        let authority = Authority::start(BIN, &redis, &[]);
        authority.add_user("alice", PASSWORD, &["read", "admin"]);
        cli_ok(&authority, &["resource", "add", ORDERS, "--scope", "read"]);
        cli_ok(&authority, &["resource", "add", BILLING]);
        let service = |audience: &str| {
            ProtectedService::start(
                SERVICE,
                &Options::new(redis.url()).env("AUDIENCE", audience),
            )
        };
        Self {
            orders: service(ORDERS),
            billing: service(BILLING),
            authority,
            redis,
        }
    }

    /// The authority's own resource: its issuer.
    fn issuer(&self) -> String {
        self.authority.url("")
    }

    /// A password login for `resources` (and `extra` form fields).
    async fn login(&self, resources: &[&str], extra: &[(&str, &str)]) -> reqwest::Response {
        let mut form = vec![
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
        ];
        form.extend(resources.iter().map(|resource| ("resource", *resource)));
        form.extend_from_slice(extra);
        self.authority.token(&form).await
    }

    /// [`login`](Self::login), which must succeed: the token response.
    async fn tokens(&self, resources: &[&str]) -> Value {
        let response = self.login(resources, &[]).await;
        assert_eq!(response.status(), 200, "{}", self.authority.logs());
        response.json().await.expect("json")
    }

    async fn at_authority(&self, method: reqwest::Method, path: &str, token: &str) -> u16 {
        self.authority
            .http
            .request(method, self.authority.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
            .status()
            .as_u16()
    }
}

fn cli_ok(authority: &Authority, args: &[&str]) -> String {
    let output = authority.cli(args, None);
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn access(tokens: &Value) -> &str {
    tokens["access_token"].as_str().expect("access token")
}

fn assert_wrong_audience(reply: &Reply, what: &str) {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}");
    let challenge = reply.challenge().unwrap_or_default();
    assert!(
        challenge.contains("error=\"invalid_token\""),
        "{what}: {challenge}"
    );
    assert!(challenge.contains(WRONG_AUDIENCE), "{what}: {challenge}");
    assert!(
        !challenge.contains("orders") && !challenge.contains("billing"),
        "{challenge}"
    );
}

async fn error_of(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("json error body");
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
        body["error_description"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// A token for service A works there and nowhere else: service B and the
/// authority's own endpoints (`/v1/connect/{p}/token`, `DELETE
/// /v1/sessions`, `/v1/admin/users`, `/v1/me`) answer 401 `invalid_token`
/// without naming its audience, and the refused sign-out changed nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_one_service_is_refused_elsewhere() {
    let setup = Setup::start();
    let tokens = setup.tokens(&[ORDERS]).await;
    let token = access(&tokens);

    let reply = setup.orders.get("/whoami", Some(token)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.json["username"], "alice");
    assert_wrong_audience(
        &setup.billing.get("/whoami", Some(token)).await,
        "service B",
    );

    for (method, path) in [
        (reqwest::Method::GET, "/v1/connect/github/token"),
        (reqwest::Method::DELETE, "/v1/sessions"),
        (reqwest::Method::GET, "/v1/admin/users"),
        (reqwest::Method::GET, "/v1/me"),
    ] {
        let response = setup
            .authority
            .http
            .request(method.clone(), setup.authority.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 401, "{method} {path}");
        let challenge = response.headers()["www-authenticate"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(challenge.contains(WRONG_AUDIENCE), "{challenge}");
        let (_, error, description) = error_of(response).await;
        assert_eq!(error, "invalid_token");
        assert_eq!(description, WRONG_AUDIENCE);
    }
    // The refused sign-out-everywhere revoked nothing.
    let reply = setup.orders.get("/whoami", Some(token)).await;
    assert_eq!(reply.status, StatusCode::OK);
}

/// A token whose audience is [A, the authority] works at both, and still
/// not at B; `/v1/me` shows the audience.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_a_service_and_the_authority_works_at_both() {
    let setup = Setup::start();
    let issuer = setup.issuer();
    let tokens = setup.tokens(&[ORDERS, &issuer]).await;
    let token = access(&tokens);

    assert_eq!(
        setup.orders.get("/whoami", Some(token)).await.status,
        StatusCode::OK
    );
    assert_wrong_audience(
        &setup.billing.get("/whoami", Some(token)).await,
        "service B",
    );
    assert_eq!(
        setup
            .at_authority(reqwest::Method::GET, "/v1/admin/users", token)
            .await,
        200
    );
    let me: Value = setup
        .authority
        .get_with("/v1/me", token)
        .await
        .json()
        .await
        .expect("json");
    let mut aud: Vec<&str> = me["aud"]
        .as_array()
        .expect("two resources: an array")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    aud.sort_unstable();
    let mut expected = vec![ORDERS, issuer.as_str()];
    expected.sort_unstable();
    assert_eq!(aud, expected);

    // Without `resource`, the audience is DEFAULT_AUDIENCE: the authority.
    let default = setup.tokens(&[]).await;
    let token = access(&default);
    assert_eq!(
        setup
            .at_authority(reqwest::Method::GET, "/v1/me", token)
            .await,
        200
    );
    assert_wrong_audience(&setup.orders.get("/whoami", Some(token)).await, "service A");
}

/// Unknown resources, resources the client may not use, and malformed or
/// too many `resource` values answer 400 `invalid_target`; nothing is
/// issued for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_targets_are_refused() {
    let setup = Setup::start();
    let authority = &setup.authority;
    let issuer = setup.issuer();
    let admin = setup.tokens(&[&issuer]).await;
    let sessions = |token: String| async move {
        let body: Value = authority
            .get_with("/v1/sessions", &token)
            .await
            .json()
            .await
            .expect("json");
        body.to_string().matches("\"session\"").count()
    };
    let before = sessions(access(&admin).to_owned()).await;

    let nine: Vec<String> = (0..9).map(|n| format!("https://s{n}.example")).collect();
    let nine: Vec<&str> = nine.iter().map(String::as_str).collect();
    for resources in [
        vec!["https://unknown.example"],
        vec!["orders"],
        vec!["/orders"],
        vec!["https://orders.example#fragment"],
        nine,
    ] {
        let (status, error, _) = error_of(setup.login(&resources, &[]).await).await;
        assert_eq!(
            (status, error.as_str()),
            (400, "invalid_target"),
            "{resources:?}"
        );
    }
    assert_eq!(
        sessions(access(&admin).to_owned()).await,
        before,
        "nothing issued"
    );

    // A client limited to B may not get tokens for A.
    let secret = authority.add_client_with("reports", &["read"], &["--resource", BILLING]);
    let client_token = |resource: &'static str| {
        let secret = secret.clone();
        async move {
            authority
                .token(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", "reports"),
                    ("client_secret", &secret),
                    ("resource", resource),
                ])
                .await
        }
    };
    let (status, error, _) = error_of(client_token(ORDERS).await).await;
    assert_eq!((status, error.as_str()), (400, "invalid_target"));
    let allowed = client_token(BILLING).await;
    assert_eq!(allowed.status(), 200);
    let allowed: Value = allowed.json().await.expect("json");
    assert_eq!(
        setup
            .billing
            .get("/whoami", Some(access(&allowed)))
            .await
            .status,
        StatusCode::OK
    );
    // A client cannot be limited to an unregistered resource.
    let output = authority.cli(
        &[
            "client",
            "add",
            "stray",
            "--resource",
            "https://unknown.example",
        ],
        None,
    );
    assert!(!output.status.success());
}

/// A refresh keeps the audience or narrows it, never widens it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_cannot_widen_the_audience() {
    let setup = Setup::start();
    let issuer = setup.issuer();
    let tokens = setup.tokens(&[ORDERS]).await;
    let refresh = |token: String, resources: Vec<&'static str>| {
        let authority = &setup.authority;
        async move {
            let mut form = vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", token.as_str()),
            ];
            form.extend(resources.into_iter().map(|resource| ("resource", resource)));
            authority.token(&form).await
        }
    };
    let refresh_token = tokens["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    let widen = setup
        .authority
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh_token),
            ("resource", ORDERS),
            ("resource", &issuer),
        ])
        .await;
    let (status, error, _) = error_of(widen).await;
    assert_eq!((status, error.as_str()), (400, "invalid_target"));
    let (status, error, _) = error_of(refresh(refresh_token.clone(), vec![BILLING]).await).await;
    assert_eq!((status, error.as_str()), (400, "invalid_target"));

    // The refused refreshes left the refresh token usable; without
    // `resource` the audience stays A.
    let kept = refresh(refresh_token, vec![]).await;
    assert_eq!(kept.status(), 200);
    let kept: Value = kept.json().await.expect("json");
    assert_eq!(
        setup
            .orders
            .get("/whoami", Some(access(&kept)))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        setup
            .at_authority(reqwest::Method::GET, "/v1/me", access(&kept))
            .await,
        401
    );

    // Narrowing [A, issuer] to A works and drops the authority.
    let both = setup.tokens(&[ORDERS, &issuer]).await;
    let narrowed = refresh(
        both["refresh_token"].as_str().expect("refresh").to_owned(),
        vec![ORDERS],
    )
    .await;
    assert_eq!(narrowed.status(), 200);
    let narrowed: Value = narrowed.json().await.expect("json");
    assert_eq!(
        setup
            .orders
            .get("/whoami", Some(access(&narrowed)))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        setup
            .at_authority(reqwest::Method::GET, "/v1/me", access(&narrowed))
            .await,
        401
    );
}

/// Introspection answers `aud`: a string for one resource, an array for
/// several (RFC 7662).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_shows_the_audience() {
    let setup = Setup::start();
    let issuer = setup.issuer();
    let secret = setup.authority.add_client("gateway", &[], true);
    let introspect = |token: String| {
        let secret = secret.clone();
        let authority = &setup.authority;
        async move {
            let body: Value = authority
                .http
                .post(authority.url("/oauth/introspect"))
                .basic_auth("gateway", Some(secret))
                .form(&[("token", token.as_str())])
                .send()
                .await
                .expect("introspect")
                .json()
                .await
                .expect("json");
            body
        }
    };
    let one = introspect(access(&setup.tokens(&[ORDERS]).await).to_owned()).await;
    assert_eq!(one["active"], true);
    assert_eq!(one["aud"], json!(ORDERS));
    let two = introspect(access(&setup.tokens(&[BILLING, &issuer]).await).to_owned()).await;
    let aud = two["aud"].as_array().expect("an array");
    assert_eq!(aud.len(), 2);
    assert!(
        aud.contains(&json!(BILLING)) && aud.contains(&json!(issuer)),
        "{two}"
    );
}

/// A resource that declares scopes takes only those: an explicit request
/// for another is `invalid_scope`, and without `scope` the token carries
/// only the declared ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_scopes_bound_the_token() {
    let setup = Setup::start();
    let (status, error, _) = error_of(setup.login(&[ORDERS], &[("scope", "admin")]).await).await;
    assert_eq!((status, error.as_str()), (400, "invalid_scope"));
    let tokens = setup.tokens(&[ORDERS]).await;
    assert_eq!(tokens["scope"], "read");
    let tokens = setup.tokens(&[BILLING]).await;
    assert_eq!(tokens["scope"], "read admin");
}

/// The resource registry over the admin API (an admin token for the
/// authority), and `DEFAULT_AUDIENCE`: an unregistered one refuses the
/// start; a registered one is the audience of tokens without `resource`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_and_default_audience() {
    let setup = Setup::start();
    let issuer = setup.issuer();
    let admin = setup.tokens(&[&issuer]).await;
    let token = access(&admin);
    let http = &setup.authority.http;
    let listed: Value = setup
        .authority
        .get_with("/v1/admin/resources", token)
        .await
        .json()
        .await
        .expect("json");
    let uris: Vec<&str> = listed["resources"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|resource| resource["uri"].as_str())
        .collect();
    assert_eq!(uris, [issuer.as_str(), BILLING, ORDERS]);
    let added = http
        .post(setup.authority.url("/v1/admin/resources"))
        .bearer_auth(token)
        .json(&json!({ "uri": "https://search.example", "scope": "read" }))
        .send()
        .await
        .expect("add");
    assert_eq!(added.status(), 201);
    let added: Value = added.json().await.expect("json");
    assert_eq!(added["scope"], "read");
    let again = http
        .post(setup.authority.url("/v1/admin/resources"))
        .bearer_auth(token)
        .json(&json!({ "uri": "https://SEARCH.example:443/" }))
        .send()
        .await
        .expect("add again");
    assert_eq!(again.status(), 409);
    let tag = added["tag"].as_str().expect("tag");
    let removed = http
        .delete(setup.authority.url(&format!("/v1/admin/resources/{tag}")))
        .bearer_auth(token)
        .send()
        .await
        .expect("remove");
    assert_eq!(removed.status(), 200);
    let (status, error, _) = error_of(setup.login(&["https://search.example"], &[]).await).await;
    assert_eq!((status, error.as_str()), (400, "invalid_target"));
    let unknown = http
        .delete(setup.authority.url("/v1/admin/resources/x"))
        .bearer_auth(token)
        .send()
        .await
        .expect("remove unknown");
    assert_eq!(unknown.status(), 404);

    // DEFAULT_AUDIENCE: refused when unregistered ...
    let env = Authority::environment(
        &setup.redis.url(),
        &[("DEFAULT_AUDIENCE", "https://nowhere.example")],
    );
    let output = run_cli(std::path::Path::new(BIN), &env, &["serve"], None);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("DEFAULT_AUDIENCE") && stderr.contains("nowhere.example"),
        "{stderr}"
    );
    // ... and the audience of tokens without `resource` when registered.
    let second = Authority::start(BIN, &setup.redis, &[("DEFAULT_AUDIENCE", ORDERS)]);
    let tokens = second.login("alice", PASSWORD).await;
    assert_eq!(
        setup
            .orders
            .get("/whoami", Some(access(&tokens)))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        second.get_with("/v1/me", access(&tokens)).await.status(),
        401
    );
}

/// The shop's registered redirect URI.
const SHOP: &str = "https://shop.example/cb";

/// `GET /oauth/authorize` for the public client `shop`, scope `read`, with
/// `resource` parameters, in `browser`.
async fn authorize(
    setup: &Setup,
    browser: &Browser,
    challenge: &str,
    resources: &[&str],
) -> reqwest::Response {
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", "shop"),
        ("redirect_uri", SHOP),
        ("scope", "read"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ];
    params.extend(resources.iter().map(|resource| ("resource", *resource)));
    let url = reqwest::Url::parse_with_params(&setup.authority.url("/oauth/authorize"), &params)
        .expect("authorize URL");
    browser.get(url.as_str()).await
}

/// The authorization code flow carries `resource` (RFC 8707 §2.1) for a
/// third-party client: the consent page names the services the tokens
/// will be for, the token from the code works at them only, consent is
/// remembered per resource (a request for another service asks again),
/// and an unknown resource goes back to the client as `invalid_target`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_code_flow_carries_the_resource() {
    let setup = Setup::start();
    let authority = &setup.authority;
    add_public_client(authority, "shop", &[SHOP], &[]);
    let browser = Browser::new();
    assert_eq!(
        browser.sign_in(authority, "alice", PASSWORD).await.status(),
        303
    );
    let verifier = PkceCodeVerifier::new("a-verifier-of-at-least-43-characters-0123456789".into());
    let challenge = PkceCodeChallenge::from_code_verifier_sha256(&verifier);

    // The consent page names the requested service, and only it.
    let page = authorize(&setup, &browser, challenge.as_str(), &[ORDERS]).await;
    assert_eq!(page.status(), 200, "the consent page");
    let html = page.text().await.expect("page");
    assert!(html.contains(ORDERS), "{html}");
    assert!(!html.contains(BILLING), "{html}");
    let allowed = browser
        .post(
            &authority.url("/oauth/consent"),
            &[
                ("csrf", &hidden_value(&html, "csrf").expect("csrf")),
                ("request", &hidden_value(&html, "request").expect("request")),
                ("decision", "allow"),
            ],
        )
        .await;
    assert_eq!(allowed.status(), 303, "back to the shop");
    let code = query_param(&location(&allowed), "code").expect("code");

    // The code's token is for the orders service only.
    let exchanged = authority
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", SHOP),
            ("client_id", "shop"),
            ("code_verifier", verifier.secret()),
        ])
        .await;
    assert_eq!(exchanged.status(), 200, "{}", authority.logs());
    let tokens: Value = exchanged.json().await.expect("json");
    let token = access(&tokens);
    assert_eq!(
        setup.orders.get("/whoami", Some(token)).await.status,
        StatusCode::OK
    );
    assert_wrong_audience(
        &setup.billing.get("/whoami", Some(token)).await,
        "billing, with a code for orders",
    );
    assert_eq!(
        setup
            .at_authority(reqwest::Method::GET, "/v1/me", token)
            .await,
        401
    );

    // Consent is remembered for that service: straight back to the shop.
    let again = authorize(&setup, &browser, challenge.as_str(), &[ORDERS]).await;
    assert_eq!(again.status(), 303, "no consent page the second time");
    assert!(location(&again).starts_with(SHOP), "{}", location(&again));

    // Another service is another consent.
    let billing = authorize(&setup, &browser, challenge.as_str(), &[BILLING]).await;
    assert_eq!(billing.status(), 200, "asked again for a new service");
    let html = billing.text().await.expect("page");
    assert!(html.contains(BILLING), "{html}");

    // The account page lists what was approved, service included.
    let account = browser.account(authority).await;
    assert!(account.contains(ORDERS), "{account}");

    // An unknown service goes back to the client as invalid_target.
    let unknown = authorize(
        &setup,
        &browser,
        challenge.as_str(),
        &["https://unknown.example"],
    )
    .await;
    assert_eq!(unknown.status(), 303);
    let back = location(&unknown);
    assert!(back.starts_with(SHOP), "{back}");
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("invalid_target")
    );
}

/// `PATCH /v1/admin/clients/{id}` with `resources` takes effect at once:
/// the client's tokens are revoked, a resource no longer allowed answers
/// `invalid_target`, and an unregistered resource is refused with nothing
/// changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_a_clients_resources() {
    let setup = Setup::start();
    let authority = &setup.authority;
    let secret = authority.add_client_with("batch", &["read"], &["--resource", ORDERS]);
    let grant = |resource: &'static str| {
        let secret = secret.clone();
        async move {
            authority
                .http
                .post(authority.url("/oauth/token"))
                .basic_auth("batch", Some(&secret))
                .form(&[("grant_type", "client_credentials"), ("resource", resource)])
                .send()
                .await
                .expect("token request")
        }
    };
    let first = grant(ORDERS).await;
    assert_eq!(first.status(), 200, "{}", authority.logs());
    let first: Value = first.json().await.expect("json");
    let old = access(&first).to_owned();
    assert_eq!(
        setup.orders.get("/whoami", Some(&old)).await.status,
        StatusCode::OK
    );
    assert_eq!(error_of(grant(BILLING).await).await.1, "invalid_target");

    let admin = setup.tokens(&[&setup.issuer()]).await;
    let patch = |body: Value| {
        let admin = access(&admin).to_owned();
        async move {
            authority
                .http
                .patch(authority.url("/v1/admin/clients/batch"))
                .bearer_auth(admin)
                .json(&body)
                .send()
                .await
                .expect("PATCH")
        }
    };
    let changed = patch(json!({ "resources": [BILLING] })).await;
    assert_eq!(changed.status(), 200);
    let changed: Value = changed.json().await.expect("json");
    assert_eq!(
        changed["client"]["resources"],
        json!([BILLING]),
        "{changed}"
    );
    assert!(
        changed["tokens_revoked"].as_u64() >= Some(1),
        "the client's tokens are revoked: {changed}"
    );
    assert_eq!(
        setup.orders.get("/whoami", Some(&old)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(error_of(grant(ORDERS).await).await.1, "invalid_target");
    assert_eq!(grant(BILLING).await.status(), 200);

    // An unregistered resource: refused, nothing changed.
    let refused = patch(json!({ "resources": ["https://nowhere.example"] })).await;
    assert_eq!(refused.status(), 400);
    let shown: Value = authority
        .http
        .get(authority.url("/v1/admin/clients/batch"))
        .bearer_auth(access(&admin))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(shown["resources"], json!([BILLING]), "{shown}");
    assert_eq!(grant(BILLING).await.status(), 200);
}

//! End to end: sign-in with an external identity provider (issue 18,
//! item 1), with the real authority, a private redis-server and two
//! instances of the local OpenID Connect provider (`tests/oidc-provider`,
//! RS256 ID tokens), four providers configured at once:
//!
//! | provider | instance, client | sign-in |
//! |---|---|---|
//! | `test-idp` | A, first | `login`, `provision`, `default_scopes`, `scope_map` on `groups` |
//! | `test-idp-b` | A, second | none (a connected service only) |
//! | `idp-two` | B, first | `login`, `provision`, two `login_options` (`login_hint`) |
//! | `idp-closed` | B, second | `login`, `provision = false` |

use reqwest::StatusCode;
use serde_json::Value;
use token_service_tests::browser::hidden_value;
use token_service_tests::connected::{Setup, user};
use token_service_tests::oidc::{
    Browser, CLIENT_ID, CLIENT_SECRET, OidcProvider, SECOND_CLIENT_ID, SECOND_CLIENT_SECRET,
};
use token_service_tests::{Authority, PASSWORD};

const BIN: &str = env!("CARGO_BIN_EXE_e2e-token-authority");

/// The claims of ID tokens (e-mail, name, groups) as sign-in providers
/// send them; alice is in `admins`.
const PROVIDER_ENV: &[(&str, &str)] = &[
    ("OIDC_ID_TOKEN_CLAIMS", "1"),
    ("OIDC_GROUPS", r#"{"alice":["admins"]}"#),
];

/// Redis, two provider instances and the configuration naming them.
struct Federation {
    setup: Setup,
    second: OidcProvider,
}

impl Federation {
    fn start() -> Self {
        let setup = Setup::start(PROVIDER_ENV, "");
        let second = OidcProvider::start(PROVIDER_ENV);
        let (a, b) = (setup.provider.issuer(), second.issuer());
        let scopes = r#"scopes = ["openid", "email", "profile", "offline_access"]"#;
        let config = format!(
            r#"
[[providers]]
name = "test-idp"
display_name = "Test IdP"
issuer = "{a}"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
{scopes}
login = true
provision = true
default_scopes = ["read"]
scope_map = {{ claim = "groups", values = {{ admins = ["admin"], staff = ["write"] }} }}

[[providers]]
name = "test-idp-b"
issuer = "{a}"
client_id = "{SECOND_CLIENT_ID}"
client_secret = "{SECOND_CLIENT_SECRET}"
{scopes}

[[providers]]
name = "idp-two"
display_name = "Second IdP"
issuer = "{b}"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
{scopes}
login = true
provision = true
login_options = [
  {{ name = "as alice", params = {{ login_hint = "alice" }} }},
  {{ name = "as carol", params = {{ login_hint = "carol" }} }},
]

[[providers]]
name = "idp-closed"
issuer = "{b}"
client_id = "{SECOND_CLIENT_ID}"
client_secret = "{SECOND_CLIENT_SECRET}"
{scopes}
login = true
"#
        );
        std::fs::write(setup.config_path(), config).expect("configuration");
        Self { setup, second }
    }

    fn authority(&self) -> Authority {
        self.setup.authority(BIN, &[])
    }
}

/// `/signin/federated` for `provider` (and `option`), returning to
/// `return_to`.
fn start_url(
    authority: &Authority,
    provider: &str,
    option: Option<&str>,
    return_to: &str,
) -> String {
    let mut url = reqwest::Url::parse(&authority.url("/signin/federated")).expect("url");
    url.query_pairs_mut().append_pair("provider", provider);
    if let Some(option) = option {
        url.query_pairs_mut().append_pair("option", option);
    }
    url.query_pairs_mut().append_pair("return_to", return_to);
    url.into()
}

/// Signs `browser` in with `provider` as `login` at the provider: answers
/// the callback's status and `Location`.
async fn sign_in(
    browser: &Browser,
    authority: &Authority,
    provider: &str,
    option: Option<&str>,
    login: &str,
    return_to: &str,
) -> (StatusCode, Option<String>) {
    let callback = browser
        .authorize(&start_url(authority, provider, option, return_to), login)
        .await;
    browser.visit(callback.as_str()).await
}

/// Whether `browser` has a browser session at `authority`.
async fn signed_in(browser: &Browser, authority: &Authority) -> bool {
    let (status, _) = browser.visit(&authority.url("/account")).await;
    status == StatusCode::OK
}

/// The users the admin API lists.
async fn users(authority: &Authority, admin: &str) -> Vec<Value> {
    let response = authority.get_with("/v1/admin/users", admin).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("json");
    body["users"].as_array().expect("users").clone()
}

fn federated<'a>(users: &'a [Value], provider: &str) -> Vec<&'a Value> {
    users
        .iter()
        .filter(|user| user["identity_provider"]["provider"] == provider)
        .collect()
}

/// The first sign-in with a provider creates the account (just in time),
/// with `default_scopes` and the `groups` claim's mapped scopes, the
/// claims' name and e-mail, a username derived from the identity, the
/// identity provider in the admin API and `user list`; it ends in the
/// browser session a password sign-in makes, at `return_to`, and connects
/// the provider. A second sign-in finds the same account; the same login
/// at the second provider instance (another issuer) is another account.
/// The sign-in page shows one button per sign-in provider and option.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_signin_creates_the_account_and_connects() {
    let federation = Federation::start();
    let authority = federation.authority();
    authority.add_user("root", PASSWORD, &["admin"]);
    let admin = authority.login("root", PASSWORD).await["access_token"]
        .as_str()
        .expect("token")
        .to_owned();

    let browser = Browser::new();
    let page = browser.page(&authority.url("/signin")).await;
    assert!(page.contains("Sign in with Test IdP<"), "{page}");
    assert!(page.contains("Sign in with Second IdP: as alice"));
    assert!(page.contains("Sign in with Second IdP: as carol"));
    assert!(page.contains("Sign in with idp-closed"));
    assert!(
        !page.contains("test-idp-b"),
        "no button without login = true"
    );

    let (status, location) = sign_in(
        &browser,
        &authority,
        "test-idp",
        None,
        "alice",
        "/account?from=idp",
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{}", authority.logs());
    assert_eq!(location.as_deref(), Some("/account?from=idp"));
    let account = browser.page(&authority.url("/account")).await;
    assert!(
        account.contains("alice@example.test"),
        "name and e-mail from the claims"
    );
    // No password to change: the page names the provider instead.
    assert!(!account.contains("current_password"), "{account}");
    assert!(
        account.contains("it signs in with <strong>Test IdP</strong>"),
        "{account}"
    );

    let listed = users(&authority, &admin).await;
    let alice = federated(&listed, "test-idp");
    assert_eq!(alice.len(), 1, "{listed:?}");
    let alice = alice[0].clone();
    let username = alice["username"].as_str().expect("username").to_owned();
    assert!(
        username.starts_with("test-idp.") && !username.contains('@'),
        "{username}"
    );
    assert_eq!(alice["email"], "alice@example.test");
    assert_eq!(alice["name"], "alice");
    assert_eq!(alice["scope"], "read admin", "default_scopes + scope_map");
    assert_eq!(
        alice["identity_provider"]["issuer"],
        federation.setup.provider.issuer()
    );
    assert_eq!(alice["identity_provider"]["subject"], "alice");
    let subject = alice["subject"].as_str().expect("subject").to_owned();

    // The browser session is a session of the account, kind browser.
    let sessions = federation_sessions(&authority, &admin, &username).await;
    assert_eq!(sessions, 1);

    // A password change posted anyway is refused, and changes nothing: no
    // password, and the session (which a change would end) lives on.
    let csrf = hidden_value(&account, "csrf").expect("csrf");
    let response = browser
        .post(
            &authority.url("/account"),
            &[
                ("csrf", csrf.as_str()),
                ("action", "password"),
                ("current_password", "!federated"),
                ("new_password", "a new password"),
                ("confirm_password", "a new password"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        response
            .headers()
            .get("location")
            .and_then(|value| value.to_str().ok()),
        Some("/account?failed=no_password")
    );
    assert!(response.headers().get("set-cookie").is_none());
    assert!(signed_in(&browser, &authority).await);
    assert_eq!(federation_sessions(&authority, &admin, &username).await, 1);
    let refused = authority
        .token(&[
            ("grant_type", "password"),
            ("username", &username),
            ("password", "a new password"),
        ])
        .await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let page = browser
        .page(&authority.url("/account?failed=no_password"))
        .await;
    assert!(page.contains("no password to change"), "{page}");

    // A password account's page still has the form.
    let local = Browser::new();
    let signin = local
        .page(&authority.url("/signin?return_to=%2Faccount"))
        .await;
    let response = local
        .post(
            &authority.url("/signin"),
            &[
                ("username", "root"),
                ("password", PASSWORD),
                (
                    "csrf",
                    hidden_value(&signin, "csrf").expect("csrf").as_str(),
                ),
                ("return_to", "/account"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let page = local.page(&authority.url("/account")).await;
    assert!(page.contains("current_password"), "{page}");
    assert!(!page.contains("it signs in with"));
    // Connected at sign-in: the provider's tokens are stored.
    assert!(
        federation
            .setup
            .stored_at(&subject, "test-idp")
            .await
            .is_some(),
        "connected at sign-in"
    );
    let list = authority.cli(&["user", "list"], None);
    let text = String::from_utf8_lossy(&list.stdout);
    let line = text
        .lines()
        .find(|line| line.starts_with(&username))
        .expect("listed");
    assert!(line.contains("test-idp"), "{text}");
    assert!(text.lines().next().expect("header").contains("PROVIDER"));

    // Again, in a fresh browser: the same account, nothing created.
    let again = Browser::new();
    let (status, location) = sign_in(
        &again,
        &authority,
        "test-idp",
        None,
        "alice",
        "//evil.example/",
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some("/account"), "only local paths");
    let listed = users(&authority, &admin).await;
    assert_eq!(federated(&listed, "test-idp").len(), 1);
    assert_eq!(
        federated(&listed, "test-idp")[0]["subject"],
        subject.as_str()
    );

    // The same login at the other instance (another issuer), with a login
    // option: another account.
    let other = Browser::new();
    let (status, _) = sign_in(
        &other,
        &authority,
        "idp-two",
        Some("as alice"),
        "nobody",
        "/account",
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{}", authority.logs());
    let listed = users(&authority, &admin).await;
    let two = federated(&listed, "idp-two");
    assert_eq!(two.len(), 1);
    assert_ne!(two[0]["subject"], subject.as_str());
    assert_eq!(
        two[0]["identity_provider"]["subject"], "alice",
        "login_hint reached the provider"
    );
    assert_eq!(two[0]["scope"], "", "no default scopes there");
    assert!(
        !authority.logs().contains("alice@example.test"),
        "no e-mail in the logs"
    );
}

/// How many browser sessions `username` has (through the admin's view of
/// the user's sessions is not in the API: count the session index).
async fn federation_sessions(authority: &Authority, admin: &str, username: &str) -> usize {
    let response = authority
        .get_with(&format!("/v1/admin/users/{username}"), admin)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("json");
    let subject = body["subject"].as_str().expect("subject");
    let client = redis::Client::open(authority_redis(authority)).expect("url");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let key =
        token_repository::KeyPrefix::default().sessions(&token_repository::SubjectTag::of(subject));
    redis::cmd("ZCARD")
        .arg(key)
        .query_async(&mut connection)
        .await
        .expect("ZCARD")
}

fn authority_redis(authority: &Authority) -> String {
    authority
        .env()
        .iter()
        .find(|(name, _)| name == "REDIS_URL")
        .map(|(_, value)| value.clone())
        .expect("REDIS_URL")
}

/// Login CSRF and replays: a callback URL finished in another browser
/// signs nobody in (and exchanges no code); a callback replayed in the
/// browser that started it is refused; a tampered state is refused; a
/// provider without `login = true`, an unknown provider and an unknown
/// option are not offered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signin_states_are_bound_and_single_use() {
    let federation = Federation::start();
    let authority = federation.authority();
    let provider = &federation.setup.provider;

    // The attacker's sign-in, finished in the victim's browser.
    let attacker = Browser::new();
    let callback = attacker
        .authorize(
            &start_url(&authority, "test-idp", None, "/account"),
            "mallory",
        )
        .await;
    let victim = Browser::new();
    let (status, location) = victim.visit(callback.as_str()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(location.is_none());
    assert!(
        !signed_in(&victim, &authority).await,
        "the victim is not signed in as mallory"
    );
    assert_eq!(provider.stat("code_grants").await, 0, "no code exchanged");
    // The attacker's own browser signs the attacker in (nothing to gain).
    let (status, _) = attacker.visit(callback.as_str()).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(provider.stat("code_grants").await, 1);

    // Replayed, in the browser that started it, after it signed in: its
    // state is used up (and so is the code: never exchanged again).
    let (status, location) = attacker.visit(callback.as_str()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{location:?}");
    assert_eq!(provider.stat("code_grants").await, 1, "no second exchange");
    // Replayed in another browser: refused too.
    let fresh = Browser::new();
    let (status, _) = fresh.visit(callback.as_str()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!signed_in(&fresh, &authority).await);

    // A tampered state (one character of the signed payload).
    let tampering = Browser::new();
    let callback = tampering
        .authorize(&start_url(&authority, "test-idp", None, "/account"), "erin")
        .await;
    let mut url = callback.clone();
    let pairs: Vec<(String, String)> = callback
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                // One character of the signature.
                let mut bytes = v.into_owned().into_bytes();
                let at = bytes.len() - 2;
                bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
                String::from_utf8(bytes).expect("ascii")
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    let (status, _) = tampering.visit(url.as_str()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!signed_in(&tampering, &authority).await);

    // Not offered: no login = true, unknown provider, unknown option.
    for (provider, option) in [
        ("test-idp-b", None),
        ("nope", None),
        ("idp-two", Some("as nobody")),
        ("idp-two", None),
    ] {
        let (status, location) = Browser::new()
            .visit(&start_url(&authority, provider, option, "/account"))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{provider} {option:?}");
        assert!(location.is_none());
    }
    assert!(
        authority.logged(&["sign-in state presented by another browser"]),
        "{}",
        authority.logs()
    );
    assert!(
        authority.logged(&["sign-in state replayed"]),
        "{}",
        authority.logs()
    );
}

/// Accounts are keyed by (issuer, subject): an identity whose e-mail is a
/// local account's gets its own account, the local one untouched. A
/// disabled federated account stays signed out. A provider with
/// `provision = false` signs in no unknown identity and creates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_are_keyed_by_issuer_and_subject() {
    let federation = Federation::start();
    let authority = federation.authority();
    authority.add_user("root", PASSWORD, &["admin"]);
    let admin = authority.login("root", PASSWORD).await["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let output = authority.cli(
        &[
            "user",
            "add",
            "carol",
            "--email",
            "carol@example.test",
            "--password-stdin",
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(output.status.success());
    let local = user(&authority, "bob").await;

    let browser = Browser::new();
    let (status, _) = sign_in(&browser, &authority, "test-idp", None, "carol", "/account").await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{}", authority.logs());
    let listed = users(&authority, &admin).await;
    let carols: Vec<&Value> = listed
        .iter()
        .filter(|user| user["email"] == "carol@example.test")
        .collect();
    assert_eq!(carols.len(), 2, "never linked by e-mail: {listed:?}");
    let local_carol = carols
        .iter()
        .find(|u| u["username"] == "carol")
        .expect("local");
    assert!(local_carol.get("identity_provider").is_none());
    let federated_carol = carols
        .iter()
        .find(|u| u["username"] != "carol")
        .expect("federated");
    let username = federated_carol["username"]
        .as_str()
        .expect("username")
        .to_owned();
    // The local account still signs in with its password, as itself.
    assert_eq!(
        authority.login("carol", PASSWORD).await["token_type"],
        "Bearer"
    );
    // The federated account has no password.
    let response = authority
        .token(&[
            ("grant_type", "password"),
            ("username", &username),
            ("password", "!federated"),
        ])
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // Disabled: the next sign-in is refused, and no session starts.
    let output = authority.cli(&["user", "disable", &username], None);
    assert!(output.status.success());
    let later = Browser::new();
    let (status, _) = sign_in(&later, &authority, "test-idp", None, "carol", "/account").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!signed_in(&later, &authority).await);
    let after = users(&authority, &admin).await;
    let still = after
        .iter()
        .find(|u| u["username"] == username.as_str())
        .expect("kept");
    assert_eq!(still["disabled"], true, "a disabled account stays disabled");

    // provision = false: an unknown identity is refused, nothing created.
    let count = after.len();
    let closed = Browser::new();
    let (status, _) = sign_in(&closed, &authority, "idp-closed", None, "bob", "/account").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!signed_in(&closed, &authority).await);
    assert_eq!(
        users(&authority, &admin).await.len(),
        count,
        "nothing created"
    );
    // The local bob is untouched (same login name at the provider).
    let me = authority.get_with("/v1/me", &local.bearer).await;
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(
        federation.second.stat("code_grants").await,
        1,
        "one exchange"
    );
}

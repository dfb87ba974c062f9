//! End to end: connected services bound to the browser session (issue 15),
//! with the real authority, a private redis-server and the local OpenID
//! Connect provider.

use reqwest::StatusCode;
use token_service_tests::browser::{hidden_value, location};
use token_service_tests::connected::{self, PROVIDER, Setup};
use token_service_tests::oidc::Browser;

const BIN: &str = env!("CARGO_BIN_EXE_e2e-token-authority");

/// The cross-user attack fails: alice's connect link opened in bob's
/// browser shows bob an error page; alice's provider URL (its state bound
/// to alice's browser session) completed in bob's browser shows bob an
/// error page at the callback; nothing is stored for either, and the code
/// is never exchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_connect_url_stores_nothing() {
    let setup = Setup::start(&[], "");
    let authority = setup.authority(BIN, &[]);
    let alice = connected::user(&authority, "alice").await;
    let bob = connected::user(&authority, "bob").await;

    // Bob signs in at the authority in his browser.
    let bobs = Browser::new();
    let own = connected::authorize_url(&authority, &bob).await;
    let _ = bobs.provider_url(&own, "bob").await;

    // Alice's link, opened by bob: refused before any provider.
    let link = connected::authorize_url(&authority, &alice).await;
    let (status, _) = bobs.visit(&link).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Alice's provider URL (bound to her session), finished by bob.
    let alices = Browser::new();
    let url = alices.provider_url(&link, "alice").await;
    let callback = bobs.authorize(url.as_str(), "bob").await;
    let (status, page) = bobs.visit(callback.as_str()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "an error page, no redirect");
    assert!(page.is_none());
    assert!(
        setup.stored(&alice.subject).await.is_none(),
        "nothing for alice"
    );
    assert!(
        setup.stored(&bob.subject).await.is_none(),
        "nothing for bob"
    );
    assert_eq!(setup.provider.stat("code_grants").await, 0, "no exchange");
    assert!(
        authority.logged(&["another browser session"]),
        "{}",
        authority.logs()
    );
}

/// The account page connects the provider from the browser session and
/// comes back to it: status "connected" with the provider account; a
/// reconnect as another provider account is refused and said so on the
/// page (the connection is kept); Disconnect forgets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_page_connects_and_disconnects() {
    let setup = Setup::start(&[], "");
    let authority = setup.authority(BIN, &[]);
    let alice = connected::user(&authority, "alice").await;
    let browser = Browser::new();
    let link = connected::authorize_url(&authority, &alice).await;
    let _ = browser.provider_url(&link, "alice").await; // signs in

    let account = |browser: &Browser| {
        let url = authority.url("/account");
        let browser = browser.clone();
        async move { browser.page(&url).await }
    };
    let page = account(&browser).await;
    assert!(
        page.contains(&format!(
            "data-provider=\"{PROVIDER}\" data-status=\"not_connected\""
        )),
        "{page}"
    );
    let csrf = hidden_value(&page, "csrf").expect("csrf");

    let start = browser
        .post(
            &authority.url("/account"),
            &[
                ("csrf", &csrf),
                ("action", "connect"),
                ("provider", PROVIDER),
            ],
        )
        .await;
    assert_eq!(start.status(), StatusCode::SEE_OTHER);
    let provider_url = location(&start);
    let callback = browser.authorize(&provider_url, "alice").await;
    let (status, back) = browser.visit(callback.as_str()).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        back.as_deref(),
        Some(format!("/account?done=connected&provider={PROVIDER}").as_str())
    );
    let page = browser
        .page(&authority.url(&back.unwrap_or_default()))
        .await;
    assert!(page.contains("is connected"), "{page}");
    assert!(page.contains(&format!(
        "data-provider=\"{PROVIDER}\" data-status=\"connected\""
    )));
    assert!(
        page.contains("as <code>alice</code>"),
        "the provider account: {page}"
    );
    let stored = setup.stored(&alice.subject).await.expect("stored");

    // Reconnecting as another provider account (another browser of
    // alice's, signed in at the provider as mallory): refused, kept, shown.
    let other = Browser::new();
    let _ = other.provider_url(&link, "alice").await; // signs in as alice
    let other_csrf = hidden_value(&account(&other).await, "csrf").expect("csrf");
    let start = other
        .post(
            &authority.url("/account"),
            &[
                ("csrf", &other_csrf),
                ("action", "connect"),
                ("provider", PROVIDER),
            ],
        )
        .await;
    let callback = other.authorize(&location(&start), "mallory").await;
    let (_, back) = other.visit(callback.as_str()).await;
    let back = back.expect("back to the account page");
    assert!(back.contains("failed=account_mismatch"), "{back}");
    let page = other.page(&authority.url(&back)).await;
    assert!(page.contains("different account"), "{page}");
    assert_eq!(
        setup.stored(&alice.subject).await.as_deref(),
        Some(stored.as_str())
    );

    let gone = browser
        .post(
            &authority.url("/account"),
            &[
                ("csrf", &csrf),
                ("action", "disconnect"),
                ("provider", PROVIDER),
            ],
        )
        .await;
    assert_eq!(gone.status(), StatusCode::SEE_OTHER);
    assert!(setup.stored(&alice.subject).await.is_none());
    let page = account(&browser).await;
    assert!(page.contains("data-status=\"not_connected\""));
}

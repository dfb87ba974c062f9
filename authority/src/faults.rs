//! Test-only fault injection: pause points and injected store failures, so
//! that unit tests can force the interleavings and failures that matter
//! (a password change between two reads of a login, a revocation that fails
//! after the account change was written). Compiled only for tests.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::oneshot;

/// A one-shot pause point. The test arms it; the first time the code under
/// test reaches it, it signals `reached` and waits until the test sends
/// `release` (or drops it).
#[derive(Debug, Default)]
pub(crate) struct Pause {
    armed: Mutex<Option<(oneshot::Sender<()>, oneshot::Receiver<()>)>>,
}

impl Pause {
    /// Arms the pause: answers the receiver that fires when the code gets
    /// there and the sender that lets it go on.
    pub(crate) fn arm(&self) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (reached_tx, reached_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel();
        *self.armed.lock().unwrap() = Some((reached_tx, release_rx));
        (reached_rx, release_tx)
    }

    /// The pause point: waits when armed (once), passes otherwise.
    pub(crate) async fn point(&self) {
        let armed = self.armed.lock().unwrap().take();
        if let Some((reached, release)) = armed {
            let _ = reached.send(());
            let _ = release.await;
        }
    }
}

/// Faults shared by the stores of one [`crate::AppState`].
#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// Reached right after a user record was read (`Accounts::user`).
    pub(crate) after_user_read: Pause,
    /// How many of the next revocations of all of a subject's tokens fail
    /// as if Redis were unreachable.
    pub(crate) failing_revocations: AtomicUsize,
}

impl Faults {
    /// Whether this revocation is to fail (counts one down).
    pub(crate) fn revocation_fails(&self) -> bool {
        self.failing_revocations
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok()
    }
}

/// An authority state on the private Redis `redis`, with cheap hashing.
pub(crate) fn state(redis: &token_test_harness::RedisServer) -> crate::AppState {
    let mut values = std::collections::BTreeMap::new();
    values.insert("REDIS_URL".to_owned(), redis.url());
    values.insert("ARGON2_MEMORY_KIB".to_owned(), "64".to_owned());
    values.insert("ARGON2_ITERATIONS".to_owned(), "1".to_owned());
    crate::AppState::new(crate::Config::from_values(&values).expect("config")).expect("state")
}

/// Logs `username` in with the password grant; answers the status and body.
pub(crate) async fn login(
    state: &crate::AppState,
    username: &str,
    password: &str,
) -> (http::StatusCode, serde_json::Value) {
    token(
        state,
        &format!("grant_type=password&username={username}&password={password}"),
    )
    .await
}

/// `POST /oauth/token` with the form `body`; answers the status and body.
pub(crate) async fn token(
    state: &crate::AppState,
    body: &str,
) -> (http::StatusCode, serde_json::Value) {
    use http_body_util::BodyExt as _;
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    let response = crate::oauth::token::handle(
        state.clone(),
        headers,
        crate::address::ClientAddress::Ip(std::net::Ipv4Addr::LOCALHOST.into()),
        bytes::Bytes::from(body.to_owned()),
    )
    .await;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, serde_json::from_slice(&bytes).expect("json"))
}

/// Whether the token `text` is live in the repository.
pub(crate) async fn live(state: &crate::AppState, text: &str) -> bool {
    use token_repository::TokenReader as _;
    let token = token_repository::Token::parse(text).expect("a token");
    state
        .store()
        .lookup(&token)
        .await
        .expect("lookup")
        .is_some()
}

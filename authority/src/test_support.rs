//! Test-only helpers shared by the unit tests of several modules: an
//! authority state on a private Redis, token requests through the real
//! handler, a liveness check, and a log writer to read back. Compiled only
//! for tests.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

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
    (response.status(), json_body(response).await)
}

/// A response's body read to the end and parsed as JSON.
pub(crate) async fn json_body(response: warp::reply::Response) -> serde_json::Value {
    use http_body_util::BodyExt as _;
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    serde_json::from_slice(&bytes).expect("json")
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

/// Collects what a `tracing` subscriber writes (`with_writer(captured.clone())`).
#[derive(Clone, Default)]
pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Everything written so far.
    pub(crate) fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8(bytes.clone()).expect("UTF-8 lines")
    }
}

impl io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Self;

    fn make_writer(&'a self) -> Self {
        self.clone()
    }
}

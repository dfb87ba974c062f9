//! The middleware's example service (`protected-service`) as a process, and
//! a small HTTP client for its routes.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER, WWW_AUTHENTICATE};
use serde_json::Value;

use token_test_harness::wait_until_async;

use crate::process::ServiceProcess;
use crate::redis_admin;

/// How to start a [`ProtectedService`].
#[derive(Debug, Clone)]
pub struct Options {
    /// `REDIS_URL`.
    pub redis_url: String,
    /// `TOKEN_CACHE`.
    pub cache: bool,
    /// `TOKEN_CACHE_STALENESS_MS`.
    pub staleness: Duration,
    /// More environment (for example `REDIS_CLUSTER_URLS`); wins over the
    /// fields above.
    pub env: Vec<(String, String)>,
}

impl Options {
    /// Cache off, against `redis_url`.
    #[must_use]
    pub fn new(redis_url: impl Into<String>) -> Self {
        Self {
            redis_url: redis_url.into(),
            cache: false,
            staleness: Duration::from_secs(30),
            env: Vec::new(),
        }
    }

    /// With one more environment variable.
    #[must_use]
    pub fn env(mut self, name: &str, value: impl Into<String>) -> Self {
        self.env.push((name.to_owned(), value.into()));
        self
    }

    /// With the cache on and this staleness bound.
    #[must_use]
    pub fn cached(mut self, staleness: Duration) -> Self {
        self.cache = true;
        self.staleness = staleness;
        self
    }
}

/// One answer of the service.
#[derive(Debug)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The JSON body, `Null` when empty or not JSON.
    pub json: Value,
    /// The body as text.
    pub text: String,
    /// How long the request took.
    pub elapsed: Duration,
}

impl Reply {
    /// The `WWW-Authenticate` header, when present.
    #[must_use]
    pub fn challenge(&self) -> Option<&str> {
        self.headers
            .get(WWW_AUTHENTICATE)
            .and_then(|value| value.to_str().ok())
    }

    /// The `Retry-After` header, when present.
    #[must_use]
    pub fn retry_after(&self) -> Option<&str> {
        self.headers
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
    }
}

/// A running `protected-service` and a client for it.
#[derive(Debug)]
pub struct ProtectedService {
    process: ServiceProcess,
    http: reqwest::Client,
}

impl ProtectedService {
    /// Starts `binary` (pass `env!("CARGO_BIN_EXE_protected-service")`) on a
    /// free port with `options`.
    ///
    /// # Panics
    ///
    /// When it does not start.
    #[must_use]
    pub fn start(binary: &str, options: &Options) -> Self {
        let staleness = options.staleness.as_millis().to_string();
        let cache = if options.cache { "on" } else { "off" };
        let mut env: Vec<(&str, &str)> = vec![
            ("REDIS_URL", options.redis_url.as_str()),
            ("LISTEN_ADDR", "127.0.0.1:0"),
            ("KEY_PREFIX", "ts:"),
            ("TOKEN_CACHE", cache),
            ("TOKEN_CACHE_STALENESS_MS", staleness.as_str()),
        ];
        for (name, value) in &options.env {
            env.retain(|(existing, _)| existing != name);
            env.push((name.as_str(), value.as_str()));
        }
        let process = ServiceProcess::start(binary, &env);
        // reqwest brings no rustls crypto provider of its own (ring is ours).
        token_repository::redis::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("HTTP client");
        Self { process, http }
    }

    /// The process.
    pub fn process(&mut self) -> &mut ServiceProcess {
        &mut self.process
    }

    /// `GET path` with `Authorization: Bearer <token>` when a token is
    /// given.
    ///
    /// # Panics
    ///
    /// When the service does not answer at all.
    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let mut request = self.http.get(self.process.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.send(request).await
    }

    /// `GET path` with extra request headers.
    ///
    /// # Panics
    ///
    /// When the service does not answer at all.
    pub async fn get_with_headers(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut request = self.http.get(self.process.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request).await
    }

    /// `GET path` with a raw `Authorization` header value.
    ///
    /// # Panics
    ///
    /// When the service does not answer at all.
    pub async fn get_with_authorization(&self, path: &str, authorization: &str) -> Reply {
        let request = self
            .http
            .get(self.process.url(path))
            .header(reqwest::header::AUTHORIZATION, authorization);
        self.send(request).await
    }

    /// Waits until the service answers `token` from its cache: two
    /// requests in a row that cost Redis (reached at `admin_url`) no `GET`.
    ///
    /// # Panics
    ///
    /// When that does not happen within 10 s (the cache's tracking
    /// connection never came up), or the token is refused.
    pub async fn wait_until_cached(&self, admin_url: &str, token: &str) {
        let admin = redis_admin::connect(admin_url).await;
        let cached = wait_until_async(Duration::from_secs(10), tokio::time::sleep, || {
            let mut admin = admin.clone();
            async move {
                assert_eq!(
                    self.get("/whoami", Some(token)).await.status,
                    StatusCode::OK
                );
                let before = redis_admin::command_calls(&mut admin, "get").await;
                for _ in 0..2 {
                    assert_eq!(
                        self.get("/whoami", Some(token)).await.status,
                        StatusCode::OK
                    );
                }
                (redis_admin::command_calls(&mut admin, "get").await == before).then_some(())
            }
        })
        .await;
        assert!(
            cached.is_some(),
            "the service never answered from its cache"
        );
    }

    /// Polls `/whoami` with `token` until it is refused with
    /// `invalid_token`; answers how long that took from `since`.
    ///
    /// # Panics
    ///
    /// When the token still works after 5 s, or an answer is neither 200
    /// nor `invalid_token`.
    pub async fn time_until_refused(&self, token: &str, since: Instant) -> Duration {
        loop {
            let reply = self.get("/whoami", Some(token)).await;
            if reply.status == StatusCode::UNAUTHORIZED {
                let challenge = reply.challenge().unwrap_or_default();
                assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
                return since.elapsed();
            }
            assert_eq!(reply.status, StatusCode::OK);
            assert!(
                since.elapsed() < Duration::from_secs(5),
                "the revoked token still works after 5 s"
            );
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let started = Instant::now();
        let response = request.send().await.expect("the service answers");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.expect("body");
        Reply {
            status,
            headers,
            json: serde_json::from_slice(&body).unwrap_or(Value::Null),
            text: String::from_utf8_lossy(&body).into_owned(),
            elapsed: started.elapsed(),
        }
    }
}

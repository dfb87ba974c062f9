//! The keep-alive over many connections, against a private redis-server
//! and a stub provider token endpoint: entries it must skip or cannot
//! refresh never starve the others.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use token_broker::Connect;
use token_broker::ConnectConfig;
use token_broker::crypto::Keyring;
use token_broker::keepalive::PASS_REFRESHES;
use token_broker::providers::{AuthMethod, ProviderConfig};
use token_broker::record::{Connection, Stored};
use token_repository::{RedisConfig, RedisStore, Timestamp};
use token_test_harness::RedisServer;
use zeroize::Zeroizing;

const KEYS: &str = "k1:nkRyspRZdtE/w5aNWCi+xgxKlMlHb991iMZeCTDCE1E=";
const HOUR: u64 = 3_600_000;

/// What the stub provider saw.
#[derive(Debug, Default)]
struct Seen {
    /// Refresh tokens it refreshed.
    refreshed: HashSet<String>,
    /// Refresh tokens it failed (503).
    failed: HashSet<String>,
}

/// A token endpoint on a free loopback port: refresh tokens starting with
/// `bad-` get a 503 (a refresh that fails for now, retried), the others a
/// fresh token (and the same refresh token back).
async fn stub_provider() -> (String, Arc<Mutex<Seen>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let shared = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = Arc::clone(&shared);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<_>| {
                    let seen = Arc::clone(&seen);
                    async move { Ok::<_, Infallible>(answer(request, &seen).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, seen)
}

async fn answer(
    request: Request<hyper::body::Incoming>,
    seen: &Mutex<Seen>,
) -> Response<Full<Bytes>> {
    let body = request
        .into_body()
        .collect()
        .await
        .map(|body| body.to_bytes())
        .unwrap_or_default();
    let body = String::from_utf8_lossy(&body).into_owned();
    let token = body
        .split('&')
        .find_map(|pair| pair.strip_prefix("refresh_token="))
        .unwrap_or_default()
        .to_owned();
    let (status, text) = if token.starts_with("bad-") {
        seen.lock().expect("seen").failed.insert(token);
        (StatusCode::SERVICE_UNAVAILABLE, String::new())
    } else {
        let text = format!(
            r#"{{"access_token":"new-{token}","token_type":"Bearer","expires_in":3600,"refresh_token":"{token}"}}"#
        );
        seen.lock().expect("seen").refreshed.insert(token);
        (StatusCode::OK, text)
    };
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn provider(name: &str, stub: &str, keepalive_after: Duration) -> ProviderConfig {
    ProviderConfig {
        name: name.to_owned(),
        display_name: name.to_owned(),
        logo_url: None,
        issuer: None,
        authorize_url: Some(format!("{stub}/authorize")),
        token_url: Some(format!("{stub}/token")),
        revocation_url: None,
        client_id: "authority".to_owned(),
        client_secret: Zeroizing::new("secret".to_owned()),
        auth_method: AuthMethod::ClientSecretPost,
        scopes: Vec::new(),
        redirect_url: None,
        default_expires_in: Duration::from_secs(3600),
        authorize_params: Vec::new(),
        enabled: true,
        keepalive_after: Some(keepalive_after),
        refresh_token_expires_in: None,
        allow_insecure_http: false,
        login: None,
        connect: true,
    }
}

fn connect(redis: &RedisServer, providers: Vec<ProviderConfig>) -> Connect {
    let config = ConnectConfig {
        providers,
        keys: Some(Keyring::parse(KEYS, "CONNECT_KEYS").expect("keys")),
        provider_timeout: Duration::from_secs(5),
        keepalive_interval: Duration::from_secs(1),
        ..ConnectConfig::default()
    };
    let store = RedisStore::new(RedisConfig::new(redis.url())).expect("store");
    Connect::new(&config, store, "http://auth.test").expect("connect")
}

/// Stores a connection of `subject` to `provider` whose tokens were
/// obtained at `refreshed_at` (Unix ms), refresh token `refresh`.
async fn plant(connect: &Connect, subject: &str, provider: &str, refresh: &str, refreshed_at: u64) {
    let keys = Keyring::parse(KEYS, "CONNECT_KEYS").expect("keys");
    let connection = Connection {
        username: subject.to_owned(),
        access_token: format!("old-{refresh}"),
        token_type: "Bearer".to_owned(),
        refresh_token: Some(refresh.to_owned()),
        expires_at: refreshed_at + HOUR,
        scope: None,
        connected_at: refreshed_at,
        refreshed_at,
        provider_subject: None,
        refresh_expires_at: None,
    };
    let sealed = Stored::seal(&keys, subject, provider, &connection).expect("seal");
    connect
        .store()
        .put(
            subject,
            provider,
            &sealed.to_text(),
            Some(Timestamp::from_unix_millis(refreshed_at)),
        )
        .await
        .expect("redis");
}

/// Runs keep-alive passes until `done` says so, at most `bound` passes;
/// answers how many it took (`None`: not within the bound).
async fn passes_until(connect: &Connect, bound: usize, done: impl Fn() -> bool) -> Option<usize> {
    for pass in 1..=bound {
        connect.keep_alive().await.expect("keep-alive pass");
        if done() {
            return Some(pass);
        }
    }
    None
}

/// 300 due connections, the oldest 150 of which the provider keeps
/// failing: the failing ones stay the oldest in the index, yet every good
/// connection is refreshed within 300 / PASS_REFRESHES + 1 passes (the
/// old keep-alive retried the same oldest 100 failing ones every pass and
/// never reached the others), and the failing ones are all tried too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_connections_do_not_starve_the_rest() {
    let redis = RedisServer::start();
    let (stub, seen) = stub_provider().await;
    let connect = connect(
        &redis,
        vec![provider("idp", &stub, Duration::from_secs(3600))],
    );
    let start = Timestamp::now().as_unix_millis() - 3 * HOUR;
    for i in 0..300_u64 {
        let refresh = if i < 150 {
            format!("bad-{i}")
        } else {
            format!("good-{i}")
        };
        plant(&connect, &format!("user-{i}"), "idp", &refresh, start + i).await;
    }

    let bound = 300 / PASS_REFRESHES + 1;
    let took = passes_until(&connect, bound, || {
        seen.lock().expect("seen").refreshed.len() == 150
    })
    .await;
    let seen_now = || {
        let seen = seen.lock().expect("seen");
        (seen.refreshed.len(), seen.failed.len())
    };
    assert!(
        took.is_some(),
        "good connections refreshed after {bound} passes, and failing ones tried: {:?}",
        seen_now()
    );
    assert_eq!(seen_now(), (150, 150), "every connection was tried");

    // The refreshed ones left the due range; the failing ones are still
    // due and still indexed (retried later, not forgotten).
    let due = connect
        .store()
        .due(Timestamp::now(), 1_000)
        .await
        .expect("redis");
    let still: Vec<&str> = due
        .iter()
        .filter(|entry| entry.refreshed_at < start + 300)
        .map(|entry| entry.subject.as_str())
        .collect();
    assert_eq!(still.len(), 150);
    assert!(still.iter().all(|subject| {
        subject
            .trim_start_matches("user-")
            .parse::<u64>()
            .is_ok_and(|i| i < 150)
    }));
}

/// Connections of a provider with a longer `keepalive_after` are the
/// oldest in the index but not due: they are passed over without using up
/// the pass, and the due connections behind them are all refreshed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_not_due_yet_do_not_starve_the_rest() {
    let redis = RedisServer::start();
    let (stub, seen) = stub_provider().await;
    let connect = connect(
        &redis,
        vec![
            provider("weekly", &stub, Duration::from_secs(7 * 86_400)),
            provider("hourly", &stub, Duration::from_secs(3600)),
        ],
    );
    let now = Timestamp::now().as_unix_millis();
    for i in 0..150_u64 {
        let at = now - 10 * HOUR + i;
        plant(
            &connect,
            &format!("w-{i}"),
            "weekly",
            &format!("weekly-{i}"),
            at,
        )
        .await;
    }
    for i in 0..150_u64 {
        let at = now - 2 * HOUR + i;
        plant(
            &connect,
            &format!("h-{i}"),
            "hourly",
            &format!("hourly-{i}"),
            at,
        )
        .await;
    }
    let bound = 300 / PASS_REFRESHES + 1;
    let took = passes_until(&connect, bound, || {
        seen.lock().expect("seen").refreshed.len() == 150
    })
    .await;
    let seen = seen.lock().expect("seen");
    assert!(
        took.is_some(),
        "{} of 150 due connections refreshed after {bound} passes",
        seen.refreshed.len()
    );
    assert!(
        seen.refreshed
            .iter()
            .all(|token| token.starts_with("hourly-")),
        "only due connections are refreshed"
    );
}

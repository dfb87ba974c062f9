//! End to end over TLS: a private redis-server listening with `--tls-port`
//! only (certificates made by the test with `openssl`), the real authority
//! binary (server and CLI) and the middleware's example service, all given
//! `REDIS_CA_FILE` and a client certificate. A wrong CA stops the authority
//! at start-up with an error naming the variable.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use token_service_tests::Authority;
use token_service_tests::protected::{Options, ProtectedService};
use token_test_harness::{RedisServer, TestCertificates, wait_until};

const AUTHORITY: &str = env!("CARGO_BIN_EXE_e2e-token-authority");
const SERVICE: &str = env!("CARGO_BIN_EXE_protected-service");

/// `REDIS_CA_FILE` and the client certificate of `redis`'s own CA.
fn tls_env(redis: &RedisServer) -> Vec<(String, String)> {
    let certificates = redis.certificates().expect("a TLS server");
    let path = |path: &Path| path.display().to_string();
    vec![
        ("REDIS_CA_FILE".to_owned(), path(&certificates.ca_cert)),
        (
            "REDIS_CLIENT_CERT_FILE".to_owned(),
            path(&certificates.client_cert),
        ),
        (
            "REDIS_CLIENT_KEY_FILE".to_owned(),
            path(&certificates.client_key),
        ),
    ]
}

fn pairs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Runs `token-authority args…` with `env` until it exits (killed after
/// `deadline`, which fails the test).
fn run_until_exit(args: &[&str], env: &[(String, String)], deadline: Duration) -> Output {
    let mut child = Command::new(AUTHORITY)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the authority");
    let exited = wait_until(deadline, || child.try_wait().ok().flatten());
    if exited.is_none() {
        let _ = child.kill();
        let output = child.wait_with_output().expect("output");
        panic!(
            "token-authority {args:?} still running after {deadline:?}; stderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    child.wait_with_output().expect("output")
}

/// Whether Redis has a client with key tracking on (the middleware's
/// cache connection).
fn tracking_client(redis: &RedisServer) -> Option<()> {
    redis
        .cli(&["CLIENT", "LIST"])
        .lines()
        .filter_map(|line| {
            line.split(' ')
                .find_map(|field| field.strip_prefix("flags="))
        })
        .any(|flags| flags.contains('t'))
        .then_some(())
}

/// Redis reachable only over TLS, with client certificates required: the
/// CLI creates a user, the authority logs it in and answers `/v1/me`, the
/// example service validates the token and its cache's tracking connection
/// comes up, and a revocation made through the CLI reaches the service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authority_cli_and_middleware_over_tls_only_redis() {
    let redis = RedisServer::builder().tls(true).start();
    assert!(redis.url().starts_with("rediss://"));
    let env = tls_env(&redis);
    let authority = Authority::start_with_url(AUTHORITY, &redis.url(), &pairs(&env));
    authority.add_user("alice", "correct horse battery", &["read"]);
    let tokens = authority.login("alice", "correct horse battery").await;
    let access = tokens["access_token"].as_str().expect("access token");
    let me = authority.get_with("/v1/me", access).await;
    assert_eq!(me.status(), 200, "{}", authority.logs());

    let mut options = Options::new(redis.url()).cached(Duration::from_secs(600));
    for (name, value) in &env {
        options = options.env(name, value.clone());
    }
    let service = ProtectedService::start(SERVICE, &options);
    let whoami = service.get("/whoami", Some(access)).await;
    assert_eq!(whoami.status, StatusCode::OK, "{}", whoami.text);
    assert_eq!(whoami.json["username"], "alice");
    assert!(
        wait_until(Duration::from_secs(10), || tracking_client(&redis)).is_some(),
        "the cache's tracking connection never came up over TLS"
    );
    assert_eq!(
        service.get("/whoami", Some("not-a-token")).await.status,
        StatusCode::UNAUTHORIZED
    );

    let disabled = authority.cli(&["user", "disable", "alice"], None);
    assert!(
        disabled.status.success(),
        "{}",
        String::from_utf8_lossy(&disabled.stderr)
    );
    // Cached with a 600 s staleness bound: only the invalidation pushed over
    // the TLS tracking connection can explain a prompt refusal.
    let took = service.time_until_refused(access, Instant::now()).await;
    assert!(took < Duration::from_secs(5), "{took:?}");
}

/// A CA that did not sign the server's certificate: `serve` exits at
/// start-up with an error naming REDIS_CA_FILE (instead of serving 503s
/// forever), and the CLI fails; without REDIS_CA_FILE the webpki roots do
/// not know the test CA either, and the error names REDIS_URL.
#[test]
fn a_wrong_ca_stops_the_authority_naming_the_variable() {
    let redis = RedisServer::builder().tls(false).start();
    let other_dir = tempfile::tempdir().expect("tempdir");
    let other = TestCertificates::generate(other_dir.path()).expect("another CA");
    let base = Authority::environment(&redis.url(), &[]);
    let mut wrong = base.clone();
    wrong.push((
        "REDIS_CA_FILE".to_owned(),
        other.ca_cert.display().to_string(),
    ));

    let output = run_until_exit(&["serve"], &wrong, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("REDIS_CA_FILE"), "{stderr}");
    assert!(stderr.contains("certificate"), "{stderr}");
    assert!(
        String::from_utf8_lossy(&output.stdout).is_empty(),
        "it never listened"
    );

    let listed = run_until_exit(&["user", "list"], &wrong, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&listed.stderr);
    assert!(!listed.status.success(), "{stderr}");
    assert!(stderr.contains("REDIS_CA_FILE"), "{stderr}");

    let output = run_until_exit(&["serve"], &base, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("REDIS_URL"), "{stderr}");

    // The right CA (no client certificate asked for here) serves.
    let certificates = redis.certificates().expect("TLS");
    let right = [(
        "REDIS_CA_FILE",
        certificates.ca_cert.to_str().expect("utf-8"),
    )];
    let authority = Authority::start_with_url(AUTHORITY, &redis.url(), &right);
    let listed = authority.cli(&["user", "list"], None);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
}

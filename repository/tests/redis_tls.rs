//! The Redis store over TLS: a private redis-server with `--tls-port` only
//! and client certificates required (certificates made with `openssl` by
//! the harness).

use std::path::Path;
use std::time::Duration;

use token_repository::{RedisConfig, RedisStore, RedisTls, RedisTokenReader, TokenReader as _};
use token_test_harness::{RedisServer, TestCertificates};

fn tls(ca: &Path, client: Option<&TestCertificates>) -> RedisTls {
    let path = |path: &Path| path.to_str().expect("utf-8").to_owned();
    let settings: Vec<(&str, String)> = [("REDIS_CA_FILE", path(ca))]
        .into_iter()
        .chain(client.into_iter().flat_map(|client| {
            [
                ("REDIS_CLIENT_CERT_FILE", path(&client.client_cert)),
                ("REDIS_CLIENT_KEY_FILE", path(&client.client_key)),
            ]
        }))
        .collect();
    RedisTls::from_settings(|name| {
        settings
            .iter()
            .find(|(set, _)| *set == name)
            .map(|(_, value)| value.as_str())
    })
    .expect("valid settings")
    .expect("TLS material")
}

fn config(redis: &RedisServer, tls: RedisTls) -> RedisConfig {
    RedisConfig::new(redis.url())
        .timeout(Duration::from_secs(2))
        .tls(tls)
}

/// With the server's CA and a client certificate the store and the reader
/// work; a wrong CA, or no client certificate, fails closed and is
/// recognised as a certificate problem rather than an outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_and_reader_over_tls() {
    let redis = RedisServer::builder().tls(true).start();
    let certificates = redis.certificates().expect("TLS").clone();

    let good = config(&redis, tls(&certificates.ca_cert, Some(&certificates)));
    let store = RedisStore::new(good.clone()).expect("store");
    store.ping().await.expect("ping over TLS");
    let reader = RedisTokenReader::new(good).expect("reader");
    reader.ping().await.expect("reader ping over TLS");

    let other_dir = tempfile::tempdir().expect("tempdir");
    let other = TestCertificates::generate(other_dir.path()).expect("other CA");
    let wrong_ca =
        RedisStore::new(config(&redis, tls(&other.ca_cert, Some(&certificates)))).expect("store");
    let error = wrong_ca.ping().await.expect_err("an unknown CA is refused");
    assert!(error.is_tls_rejected(), "{error}");

    let anonymous =
        RedisStore::new(config(&redis, tls(&certificates.ca_cert, None))).expect("store");
    let error = anonymous
        .ping()
        .await
        .expect_err("the server requires a client certificate");
    assert!(error.is_tls_rejected(), "{error}");

    let plain = RedisStore::new(RedisConfig::new(redis.url().replacen("rediss", "redis", 1)))
        .expect("store");
    let error = plain.ping().await.expect_err("no plain RESP on a TLS port");
    assert!(!error.is_tls_rejected(), "{error}");
}

/// TLS material with a plain redis:// URL is a configuration error.
#[test]
fn tls_material_needs_rediss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certificates = TestCertificates::generate(dir.path()).expect("certificates");
    let error = RedisStore::new(
        RedisConfig::new("redis://127.0.0.1:1/").tls(tls(&certificates.ca_cert, None)),
    )
    .expect_err("refused");
    assert!(error.to_string().contains("rediss://"), "{error}");
}

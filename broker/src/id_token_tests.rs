//! ID token verification against a local key-set server: every check
//! that can fail, fails on its own (attack tests of federated sign-in).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;

/// Ed25519 keys (PKCS#8 DER), made for these tests only.
const KEY_A: &str = "302e020100300506032b657004220420ff4d812f1cd15ecd9e2a3a642855dda03d9f046f4436120304daa746396077b7";
const KEY_B: &str = "302e020100300506032b6570042204204bc3b25e719e470cddaadbe085ae2f8c4b60e57a915140f7af6c4b69877624e6";

const ISSUER: &str = "https://idp.example";
const CLIENT: &str = "authority";
const NONCE: &str = "n-0S6_WzA2Mj";

fn der(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

fn key(hex: &str) -> EncodingKey {
    EncodingKey::from_ed_der(&der(hex))
}

fn jwk(hex: &str, kid: &str) -> Value {
    let mut jwk =
        serde_json::to_value(Jwk::from_encoding_key(&key(hex), Algorithm::EdDSA).expect("jwk"))
            .expect("json");
    jwk["kid"] = kid.into();
    jwk
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn claims() -> Value {
    json!({
        "iss": ISSUER, "aud": CLIENT, "sub": "user-1", "nonce": NONCE,
        "iat": now(), "exp": now() + 300, "email": "a@example.org", "email_verified": true,
    })
}

fn sign(hex: &str, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key(hex)).expect("sign")
}

/// A key-set server: answers every request with the current set and
/// counts the requests.
struct KeyServer {
    url: Url,
    set: Arc<Mutex<Value>>,
    hits: Arc<AtomicUsize>,
}

impl KeyServer {
    async fn start(keys: Vec<Value>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = Url::parse(&format!(
            "http://{}/jwks",
            listener.local_addr().expect("addr")
        ))
        .expect("url");
        let set = Arc::new(Mutex::new(json!({ "keys": keys })));
        let hits = Arc::new(AtomicUsize::new(0));
        let (served, counter) = (set.clone(), hits.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buffer = [0_u8; 4096];
                let _ = stream.read(&mut buffer).await;
                counter.fetch_add(1, Ordering::SeqCst);
                let body = served.lock().expect("lock").to_string();
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            }
        });
        Self { url, set, hits }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn expected() -> Expected<'static> {
    Expected {
        issuer: ISSUER,
        client_id: CLIENT,
        nonce: NONCE,
    }
}

fn client() -> ProviderClient {
    ProviderClient::new(Duration::from_secs(5)).expect("client")
}

/// A genuine token verifies and gives its claims; the e-mail counts only
/// when verified.
#[tokio::test]
async fn genuine_token_verifies() {
    let server = KeyServer::start(vec![jwk(KEY_A, "a")]).await;
    let sets = KeySets::default();
    let token = sign(KEY_A, Some("a"), &claims());
    let verified = verify(&sets, &client(), &server.url, &token, expected())
        .await
        .expect("genuine");
    assert_eq!(verified.subject, "user-1");
    assert_eq!(verified.verified_email(), Some("a@example.org"));
    let mut unverified = claims();
    unverified["email_verified"] = false.into();
    let token = sign(KEY_A, Some("a"), &unverified);
    let verified = verify(&sets, &client(), &server.url, &token, expected())
        .await
        .expect("genuine");
    assert_eq!(verified.verified_email(), None);
    assert!(!format!("{verified:?}").contains("example.org"));
    assert_eq!(server.hits(), 1, "the key set is cached");
}

/// Each claim the authority checks refuses the token on its own: wrong
/// issuer, audience, expired, missing or wrong nonce, no subject, several
/// audiences without this client as `azp`.
#[tokio::test]
async fn claims_are_checked() {
    let server = KeyServer::start(vec![jwk(KEY_A, "a")]).await;
    let sets = KeySets::default();
    let cases: Vec<(&str, Value, IdTokenError)> = vec![
        ("iss", json!("https://evil.example"), IdTokenError::Issuer),
        ("aud", json!("another-client"), IdTokenError::Audience),
        (
            "aud",
            json!([CLIENT, "another-client"]),
            IdTokenError::Audience,
        ),
        ("exp", json!(now() - 3600), IdTokenError::Expired),
        ("nonce", json!("another-nonce"), IdTokenError::Nonce),
        ("nonce", Value::Null, IdTokenError::Nonce),
        ("sub", json!(""), IdTokenError::Malformed),
    ];
    for (claim, value, error) in cases {
        let mut changed = claims();
        if value.is_null() {
            changed.as_object_mut().expect("object").remove(claim);
        } else {
            changed[claim] = value.clone();
        }
        let token = sign(KEY_A, Some("a"), &changed);
        assert_eq!(
            verify(&sets, &client(), &server.url, &token, expected())
                .await
                .unwrap_err(),
            error,
            "{claim} = {value}"
        );
    }
    // Several audiences with this client as the authorized party pass.
    let mut shared = claims();
    shared["aud"] = json!([CLIENT, "another-client"]);
    shared["azp"] = CLIENT.into();
    let token = sign(KEY_A, Some("a"), &shared);
    assert!(
        verify(&sets, &client(), &server.url, &token, expected())
            .await
            .is_ok()
    );
}

/// A token whose claims were changed after signing, one signed with
/// another key under a known key id, an unsigned (`alg: none`) one and an
/// HMAC one are all refused.
#[tokio::test]
async fn forged_tokens_are_refused() {
    let server = KeyServer::start(vec![jwk(KEY_A, "a")]).await;
    let sets = KeySets::default();
    let token = sign(KEY_A, Some("a"), &claims());
    let (head, rest) = token.split_once('.').expect("jwt");
    let (_, signature) = rest.split_once('.').expect("jwt");
    let mut changed = claims();
    changed["sub"] = "admin".into();
    let payload = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        changed.to_string(),
    );
    let tampered = format!("{head}.{payload}.{signature}");
    assert_eq!(
        verify(&sets, &client(), &server.url, &tampered, expected())
            .await
            .unwrap_err(),
        IdTokenError::Signature
    );
    let wrong_key = sign(KEY_B, Some("a"), &claims());
    assert_eq!(
        verify(&sets, &client(), &server.url, &wrong_key, expected())
            .await
            .unwrap_err(),
        IdTokenError::Signature
    );
    let none_header = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        r#"{"alg":"none","kid":"a"}"#,
    );
    let unsigned = format!("{none_header}.{payload}.");
    assert!(
        verify(&sets, &client(), &server.url, &unsigned, expected())
            .await
            .is_err()
    );
    let hmac = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(b"public"),
    )
    .expect("sign");
    assert_eq!(
        verify(&sets, &client(), &server.url, &hmac, expected())
            .await
            .unwrap_err(),
        IdTokenError::Algorithm
    );
    for garbage in ["", "a.b.c", "not a token"] {
        assert!(
            verify(&sets, &client(), &server.url, garbage, expected())
                .await
                .is_err()
        );
    }
}

/// An unknown key id fetches the set again (the provider rotated its
/// keys), but not again within the interval: a flood of made-up key ids
/// costs the provider one request.
#[tokio::test]
async fn unknown_key_id_refetches_once() {
    let server = KeyServer::start(vec![jwk(KEY_A, "a")]).await;
    let sets = KeySets::default();
    let token = sign(KEY_A, Some("a"), &claims());
    verify(&sets, &client(), &server.url, &token, expected())
        .await
        .expect("genuine");
    assert_eq!(server.hits(), 1);
    // Age the cache past the interval, then rotate the provider's keys.
    {
        let mut cached = sets.sets.lock().await;
        let entry = cached.get_mut(server.url.as_str()).expect("cached");
        entry.fetched = Instant::now()
            .checked_sub(REFETCH_INTERVAL)
            .expect("monotonic clock");
    }
    *server.set.lock().expect("lock") = json!({ "keys": [jwk(KEY_A, "a"), jwk(KEY_B, "b")] });
    let rotated = sign(KEY_B, Some("b"), &claims());
    verify(&sets, &client(), &server.url, &rotated, expected())
        .await
        .expect("the new key is fetched");
    assert_eq!(server.hits(), 2);
    for kid in ["x", "y", "z"] {
        let unknown = sign(KEY_B, Some(kid), &claims());
        assert_eq!(
            verify(&sets, &client(), &server.url, &unknown, expected())
                .await
                .unwrap_err(),
            IdTokenError::UnknownKey
        );
    }
    assert_eq!(server.hits(), 2, "refetching is rate-limited");
}

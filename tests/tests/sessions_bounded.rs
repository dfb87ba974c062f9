//! End to end, the bounded repository (issue 12): the session cap through
//! the real authority binary, and forged refresh tokens that cost Redis one
//! `GET` and no script.

use serde_json::Value;
use token_repository::{Token, TokenKind};
use token_service_tests::Authority;
use token_service_tests::redis_admin::calls_in;
use token_test_harness::RedisServer;

const BIN: &str = env!("CARGO_BIN_EXE_e2e-token-authority");
const PASSWORD: &str = "correct horse battery";

async fn error_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("json body");
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Logging in past `MAX_SESSIONS_PER_SUBJECT` revokes the oldest session:
/// its access token answers 401, the newer ones 200, and
/// `authority_sessions_evicted_total` counts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_in_past_the_session_cap_evicts_the_oldest_session() {
    let redis = RedisServer::start();
    let authority = Authority::start(BIN, &redis, &[("MAX_SESSIONS_PER_SUBJECT", "2")]);
    authority.add_user("alice", PASSWORD, &["read"]);
    let mut access = Vec::new();
    for _ in 0..3 {
        let tokens = authority.login("alice", PASSWORD).await;
        access.push(
            tokens["access_token"]
                .as_str()
                .expect("access token")
                .to_owned(),
        );
    }
    assert_eq!(
        authority.get_with("/v1/me", &access[0]).await.status(),
        401,
        "the oldest session was evicted"
    );
    for token in &access[1..] {
        assert_eq!(authority.get_with("/v1/me", token).await.status(), 200);
    }
    let metrics = authority.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|line| line.trim() == "authority_sessions_evicted_total 1"),
        "{metrics}"
    );
    assert!(
        authority.logged(&["session cap reached"]),
        "{}",
        authority.logs()
    );
}

/// 1 000 forged, checksum-valid refresh tokens for a real user's tag (half
/// of them naming the user's live session) are all `invalid_grant`, and the
/// authority runs no script for any of them; the real session survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_refresh_tokens_are_refused_without_a_script() {
    let redis = RedisServer::start();
    let authority = Authority::start(BIN, &redis, &[]);
    authority.add_user("alice", PASSWORD, &["read"]);
    let tokens = authority.login("alice", PASSWORD).await;
    let real = Token::parse(tokens["refresh_token"].as_str().expect("refresh")).expect("token");
    let session = real.family().expect("tokens name their session");
    let _ = redis.cli(&["CONFIG", "RESETSTAT"]);
    for attempt in 0_u32..1_000 {
        let family = if attempt % 2 == 0 {
            session
        } else {
            uuid_from(attempt)
        };
        let mut secret = [0_u8; 32];
        secret[..4].copy_from_slice(&attempt.to_be_bytes());
        let forged = Token::forge(TokenKind::Refresh, real.tag(), family, &secret);
        let answer = authority
            .token(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", forged.expose_secret()),
            ])
            .await;
        assert_eq!(error_of(answer).await, (400, "invalid_grant".into()));
    }
    let stats = redis.cli(&["INFO", "commandstats"]);
    for script in ["evalsha", "eval", "evalsha_ro", "eval_ro", "fcall"] {
        assert_eq!(calls_in(&stats, script), 0, "{script}: {stats}");
    }
    assert!(calls_in(&stats, "get") >= 1_000, "{stats}");
    let access = tokens["access_token"].as_str().expect("access");
    assert_eq!(authority.get_with("/v1/me", access).await.status(), 200);
}

fn uuid_from(n: u32) -> uuid::Uuid {
    uuid::Uuid::from_u128(0x5eed_0000_0000_4000_8000_0000_0000_0000 | u128::from(n))
}

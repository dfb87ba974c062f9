//! The authority's log output over a real process: lines written in
//! batches by the request-serving threads still arrive whole and once.

use std::time::Duration;

use token_service_tests::Authority;
use token_test_harness::{RedisServer, wait_until_async};

const BIN: &str = env!("CARGO_BIN_EXE_e2e-token-authority");

/// Under concurrent load, on two workers that write their log lines in
/// batches: every request's line arrives, whole and once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_log_every_line_whole() {
    const REQUESTS: usize = 400;
    let redis = RedisServer::start();
    let authority = Authority::start(BIN, &redis, &[("WORKER_THREADS", "2")]);
    let mut sent = tokio::task::JoinSet::new();
    for worker in 0..16 {
        let http = authority.http.clone();
        let url = authority.url("/healthz");
        sent.spawn(async move {
            for n in (worker..REQUESTS).step_by(16) {
                let response = http
                    .get(&url)
                    .header("x-request-id", format!("batch-{n:04}-end"))
                    .send()
                    .await
                    .expect("healthz");
                assert_eq!(response.status(), 200);
            }
        });
    }
    while let Some(done) = sent.join_next().await {
        done.expect("sender");
    }
    let all_logged = wait_until_async(Duration::from_secs(10), tokio::time::sleep, || async {
        let logs = authority.logs();
        (logs.matches("-end\"").count() >= REQUESTS).then_some(logs)
    })
    .await
    .map(|(logs, _)| logs);
    let logs =
        all_logged.unwrap_or_else(|| panic!("not every request was logged:\n{}", authority.logs()));
    for n in 0..REQUESTS {
        let id = format!("request_id=\"batch-{n:04}-end\"");
        let lines: Vec<&str> = logs.lines().filter(|line| line.contains(&id)).collect();
        assert_eq!(lines.len(), 1, "{id}: {lines:?}");
        let line = lines[0];
        assert_eq!(
            line.matches("request_id=").count(),
            1,
            "one record per line: {line}"
        );
        assert!(line.contains("status=200"), "the whole line: {line}");
    }
}

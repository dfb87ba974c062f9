//! End to end: the real authority binary against slow, idle and excess
//! connections (slowloris), its separate metrics listener, its security
//! headers, and its refusal to run on a Redis that may evict keys.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use token_service_tests::Authority;
use token_service_tests::protected::{Options, ProtectedService};
use token_test_harness::{RedisServer, wait_until_async};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_e2e-token-authority");
const SERVICE: &str = env!("CARGO_BIN_EXE_protected-service");

/// A fresh client, so that every request opens its own connection.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0)
        .build()
        .expect("client")
}

fn addr_of(authority: &Authority) -> SocketAddr {
    authority
        .url("")
        .strip_prefix("http://")
        .and_then(|addr| addr.parse().ok())
        .expect("address")
}

/// Waits until the server closes `stream` (EOF or reset); the time it took,
/// or `None` past `deadline`.
async fn closed_by_server(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    deadline: Instant,
) -> Option<Instant> {
    let mut buffer = [0_u8; 1024];
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(Instant::now()),
            // Some answer (a 408 before closing, say): keep reading.
            Ok(Ok(_)) => {}
        }
    }
}

/// Opens `count` connections to `addr` that send half a request header
/// (every fifth sends nothing), asserts that a normal request to
/// `healthz` is answered within a second meanwhile, and that the server
/// closes every slow connection after `header_timeout` (not before).
async fn assert_slow_clients_are_shed(
    addr: SocketAddr,
    healthz: &str,
    count: usize,
    header_timeout: Duration,
) {
    let mut slow = Vec::new();
    for index in 0..count {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let opened = Instant::now();
        if index % 5 != 0 {
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: service\r\nX-Slow: ")
                .await
                .expect("partial header");
        }
        slow.push((stream, opened));
    }

    let started = Instant::now();
    let response = client()
        .get(healthz)
        .send()
        .await
        .expect("healthz while slow connections dawdle");
    let elapsed = started.elapsed();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert!(
        elapsed < Duration::from_secs(1),
        "answered after {elapsed:?}"
    );

    let deadline = Instant::now() + header_timeout + Duration::from_secs(18);
    let waits = slow.into_iter().map(|(mut stream, opened)| {
        tokio::spawn(async move {
            closed_by_server(&mut stream, deadline)
                .await
                .map(|closed| closed.duration_since(opened))
        })
    });
    let mut lifetimes = Vec::new();
    for wait in waits {
        lifetimes.push(wait.await.expect("task"));
    }
    let open = lifetimes.iter().filter(|life| life.is_none()).count();
    assert_eq!(open, 0, "{open} of {count} slow connections never closed");
    let shortest = lifetimes.iter().flatten().min().copied();
    assert!(
        shortest.is_some_and(|life| life >= header_timeout - Duration::from_millis(100)),
        "a connection was closed before the header timeout: {shortest:?}"
    );
    // And the server is still serving.
    let response = client().get(healthz).send().await.expect("healthz");
    assert_eq!(response.status(), StatusCode::OK);
}

/// 500 connections that send half a request header (or nothing at all) do
/// not stop a normal request from being answered within a second, and the
/// server closes every one of them after the header timeout (2 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_neither_block_nor_linger() {
    let redis = RedisServer::start();
    let authority = Authority::start(BIN, &redis, &[("HTTP_HEADER_TIMEOUT_MS", "2000")]);
    assert_slow_clients_are_shed(
        addr_of(&authority),
        &authority.url("/healthz"),
        500,
        Duration::from_secs(2),
    )
    .await;
}

/// The example service (what users copy) sheds slow clients the same way,
/// and makes connections past its cap wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_service_sheds_slow_clients() {
    let redis = RedisServer::start();
    let options = Options::new(redis.url()).env("HTTP_HEADER_TIMEOUT_MS", "2000");
    let mut service = ProtectedService::start(SERVICE, &options);
    let addr = service_addr(&mut service);
    assert_slow_clients_are_shed(
        addr,
        &format!("http://{addr}/healthz"),
        300,
        Duration::from_secs(2),
    )
    .await;

    let mut capped = ProtectedService::start(
        SERVICE,
        &Options::new(redis.url())
            .env("MAX_CONNECTIONS", "2")
            .env("HTTP_HEADER_TIMEOUT_MS", "60000"),
    );
    let addr = service_addr(&mut capped);
    let mut idle = Vec::new();
    for _ in 0..2 {
        idle.push(TcpStream::connect(addr).await.expect("connect"));
    }
    let url = format!("http://{addr}/healthz");
    let waiting = tokio::spawn(async move { client().get(url).send().await });
    let early = tokio::time::timeout(Duration::from_millis(500), async {
        while !waiting.is_finished() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(early.is_err(), "a third connection was served at once");
    drop(idle.pop());
    let response = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("served once a slot is free")
        .expect("task")
        .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
}

/// Reads one response to `GET /healthz` off `stream`: its header, then
/// as many body bytes as its `content-length` says.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut bytes = Vec::new();
    let mut buffer = [0_u8; 1024];
    loop {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|line| {
                    line.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .and_then(|value| value.trim().parse().ok())
                .expect("a content-length");
            if body.len() >= length {
                return text;
            }
        }
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
            .await
            .expect("an answer within 5 s")
            .expect("read");
        assert!(read > 0, "closed before the response ended: {text}");
        bytes.extend_from_slice(&buffer[..read]);
    }
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: authority\r\n\r\n";

/// The header timeout (1 s here) holds for every request of a keep-alive
/// connection to `addr`, counted from the end of the response before it:
/// a connection that keeps asking is served long past it; one that
/// trickles its next header a byte at a time (enough to keep an idle
/// timeout away) is closed once it has passed, not before.
async fn assert_every_request_gets_the_header_timeout(addr: SocketAddr) {
    let mut busy = TcpStream::connect(addr).await.expect("connect");
    let opened = Instant::now();
    for _ in 0..8 {
        busy.write_all(HEALTHZ).await.expect("request");
        let response = read_response(&mut busy).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        // A client between two requests, well inside the timeout.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        opened.elapsed() > Duration::from_secs(2),
        "served past the timeout"
    );

    let mut slow = TcpStream::connect(addr).await.expect("connect");
    slow.write_all(HEALTHZ).await.expect("request");
    read_response(&mut slow).await;
    let answered = Instant::now();
    let (mut reader, mut writer) = slow.into_split();
    let trickle = tokio::spawn(async move {
        for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: "
            .iter()
            .cycle()
            .take(100)
        {
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let closed = closed_by_server(&mut reader, answered + Duration::from_secs(9))
        .await
        .map(|closed| closed.duration_since(answered));
    trickle.abort();
    assert!(
        closed.is_some_and(|life| life >= Duration::from_millis(900)),
        "the trickling connection: {closed:?} after its first response"
    );
}

/// [`assert_every_request_gets_the_header_timeout`] for the authority.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_keep_alive_request_gets_the_header_timeout() {
    let redis = RedisServer::start();
    let authority = Authority::start(BIN, &redis, &[("HTTP_HEADER_TIMEOUT_MS", "1000")]);
    assert_every_request_gets_the_header_timeout(addr_of(&authority)).await;
}

/// [`assert_every_request_gets_the_header_timeout`] for the example
/// service (what users copy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_service_times_every_keep_alive_header() {
    let redis = RedisServer::start();
    let options = Options::new(redis.url()).env("HTTP_HEADER_TIMEOUT_MS", "1000");
    let mut service = ProtectedService::start(SERVICE, &options);
    assert_every_request_gets_the_header_timeout(service_addr(&mut service)).await;
}

/// A request that takes longer than the header timeout to answer (a
/// password grant with slow hashing) is answered, not cut off: the header
/// deadline runs only while no request is in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_answer_outlives_the_header_timeout() {
    let redis = RedisServer::start();
    let authority = Authority::start(
        BIN,
        &redis,
        &[
            ("HTTP_HEADER_TIMEOUT_MS", "100"),
            ("ARGON2_MEMORY_KIB", "8192"),
            ("ARGON2_ITERATIONS", "8"),
        ],
    );
    authority.add_user("slow", "a long password", &["read"]);
    let started = Instant::now();
    let token = authority.login("slow", "a long password").await;
    let elapsed = started.elapsed();
    assert!(token["access_token"].is_string(), "{token}");
    assert!(
        elapsed > Duration::from_millis(100),
        "the login was not slower than the header timeout ({elapsed:?}): the test shows nothing"
    );
}

/// A client that sends its request and then closes its side of the
/// connection (`shutdown(SHUT_WR)`, as `nc -N` and some HTTP/1.0 clients
/// do) still gets its answer, even a slow one: the server does not take
/// the half-close for a client gone mid-request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_closed_request_is_answered() {
    let redis = RedisServer::start();
    let authority = Authority::start(
        BIN,
        &redis,
        &[("ARGON2_MEMORY_KIB", "8192"), ("ARGON2_ITERATIONS", "8")],
    );
    authority.add_user("half", "a long password", &["read"]);
    let body = "grant_type=password&username=half&password=a+long+password";
    let request = format!(
        "POST /oauth/token HTTP/1.1\r\nHost: test\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(addr_of(&authority))
        .await
        .expect("connect");
    let started = Instant::now();
    stream.write_all(request.as_bytes()).await.expect("write");
    stream.shutdown().await.expect("half-close");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection after answering")
        .expect("read");
    let elapsed = started.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.contains("\"access_token\""), "{answer}");
    assert!(
        elapsed > Duration::from_millis(50),
        "the login was not slow ({elapsed:?}): the half-close could not arrive mid-request"
    );
}

fn service_addr(service: &mut ProtectedService) -> SocketAddr {
    service.process().addr()
}

/// Past `MAX_CONNECTIONS`, a new connection waits (neither refused nor
/// crashing the server) and is served as soon as another one closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let redis = RedisServer::start();
    let mut authority = Authority::start(
        BIN,
        &redis,
        &[
            ("MAX_CONNECTIONS", "3"),
            ("HTTP_HEADER_TIMEOUT_MS", "60000"),
        ],
    );
    let addr = addr_of(&authority);
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(addr).await.expect("connect"));
    }
    // The server accepts these three and then stops accepting.
    let logged = wait_until_async(Duration::from_secs(10), tokio::time::sleep, || async {
        authority
            .logs()
            .contains("connection limit reached")
            .then_some(())
    })
    .await;
    assert!(logged.is_some(), "{}", authority.logs());

    let url = authority.url("/healthz");
    let waiting = tokio::spawn(async move { client().get(url).send().await });
    let early = tokio::time::timeout(Duration::from_millis(500), async {
        while !waiting.is_finished() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(early.is_err(), "a fourth connection was served at once");

    drop(idle.pop());
    let response = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("served once a slot is free")
        .expect("task")
        .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(authority.process().is_running());
}

/// A connection that has been answered and then sends nothing is closed
/// after the idle timeout, even with a long header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed() {
    let redis = RedisServer::start();
    let authority = Authority::start(
        BIN,
        &redis,
        &[
            ("HTTP_HEADER_TIMEOUT_MS", "60000"),
            ("HTTP_REQUEST_TIMEOUT_MS", "1000"),
            ("HTTP_IDLE_TIMEOUT_MS", "2000"),
        ],
    );
    let mut stream = TcpStream::connect(addr_of(&authority))
        .await
        .expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: authority\r\n\r\n")
        .await
        .expect("request");
    let mut buffer = [0_u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
        .await
        .expect("an answer")
        .expect("read");
    let answered = Instant::now();
    assert!(
        String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buffer[..n])
    );
    let closed = closed_by_server(&mut stream, answered + Duration::from_secs(15))
        .await
        .expect("the idle connection was closed");
    let idle = closed.duration_since(answered);
    assert!(idle >= Duration::from_millis(1900), "closed after {idle:?}");
}

/// A request whose body does not arrive within the request timeout gets
/// 408 with the standard error body, and the connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_get_408() {
    let redis = RedisServer::start();
    let authority = Authority::start(BIN, &redis, &[("HTTP_REQUEST_TIMEOUT_MS", "1000")]);
    let mut stream = TcpStream::connect(addr_of(&authority))
        .await
        .expect("connect");
    stream
        .write_all(
            b"POST /oauth/token HTTP/1.1\r\nHost: authority\r\n\
              Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n\
              grant_type=pass",
        )
        .await
        .expect("partial body");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buffer = [0_u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(read.is_ok(), "no answer and not closed: {answer:?}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"invalid_request\""), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("x-content-type-options: nosniff"),
        "{answer}"
    );
}

/// With `METRICS_ADDR`, `/metrics` is served there only: the public
/// listener answers 404 (standard body), the metrics listener serves
/// nothing else. Every response has `nosniff`; HSTS only with an https
/// issuer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_on_their_own_listener() {
    let redis = RedisServer::start();
    let port = token_test_harness::port::free_port().expect("free port");
    let metrics_addr = format!("127.0.0.1:{port}");
    let authority = Authority::start(
        BIN,
        &redis,
        &[
            ("METRICS_ADDR", &metrics_addr),
            ("ISSUER", "https://auth.example.com"),
        ],
    );
    let http = client();
    let public = http
        .get(authority.url("/metrics"))
        .send()
        .await
        .expect("public /metrics");
    assert_eq!(public.status(), StatusCode::NOT_FOUND);
    assert_eq!(public.headers()["x-content-type-options"], "nosniff");
    assert_eq!(
        public.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    let body: serde_json::Value = public.json().await.expect("error body");
    assert_eq!(body["error"], "not_found");

    let metrics = http
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .expect("metrics listener");
    assert_eq!(metrics.status(), StatusCode::OK);
    assert_eq!(metrics.headers()["x-content-type-options"], "nosniff");
    let text = metrics.text().await.expect("text");
    assert!(text.contains("authority_http_requests_total"), "{text}");
    assert!(text.contains("authority_http_connections"), "{text}");

    let other = http
        .get(format!("http://{metrics_addr}/healthz"))
        .send()
        .await
        .expect("metrics listener");
    assert_eq!(other.status(), StatusCode::NOT_FOUND);

    // Without METRICS_ADDR the public listener serves them, and an http
    // issuer gets no HSTS.
    let plain = Authority::start(BIN, &redis, &[]);
    let response = http
        .get(plain.url("/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!response.headers().contains_key("strict-transport-security"));
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
}

/// Runs `serve` to its exit (it must exit within 20 s): exit success and
/// standard error.
fn serve_until_exit(redis: &RedisServer, extra: &[(&str, &str)]) -> (bool, String) {
    let mut command = Command::new(BIN);
    command
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(Authority::environment(&redis.url(), extra))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("start the authority");
    let exited =
        token_test_harness::wait_until(Duration::from_secs(20), || child.try_wait().ok().flatten());
    let Some((status, _)) = exited else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the authority kept running on an evicting Redis");
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
    }
    (status.success(), stderr)
}

/// A Redis whose `maxmemory-policy` may evict keys: the authority refuses
/// to start, naming the policy and the override; with
/// `ALLOW_REDIS_EVICTION=true` it starts with a warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_to_start_on_an_evicting_redis() {
    let redis = RedisServer::builder()
        .config_line("maxmemory-policy allkeys-lru")
        .start();
    let (success, stderr) = serve_until_exit(&redis, &[]);
    assert!(!success, "{stderr}");
    assert!(stderr.contains("allkeys-lru"), "{stderr}");
    assert!(stderr.contains("ALLOW_REDIS_EVICTION"), "{stderr}");

    let authority = Authority::start(BIN, &redis, &[("ALLOW_REDIS_EVICTION", "true")]);
    assert!(authority.logged(&["allkeys-lru"]), "{}", authority.logs());
    let ready = client()
        .get(authority.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), StatusCode::OK);
}

/// `/readyz` checks the policy each time: a switch to an evicting policy
/// makes the authority unready (503, standard body) until it is undone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_while_redis_may_evict() {
    let redis = RedisServer::start();
    let authority = Authority::start(BIN, &redis, &[]);
    let http = client();
    let readyz = || async {
        http.get(authority.url("/readyz"))
            .send()
            .await
            .expect("readyz")
    };
    assert_eq!(readyz().await.status(), StatusCode::OK);
    let reply = redis.cli(&["CONFIG", "SET", "maxmemory-policy", "volatile-lru"]);
    assert_eq!(reply.trim(), "OK");
    let response = readyz().await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = response.json().await.expect("error body");
    assert_eq!(body["error"], "temporarily_unavailable");
    let reply = redis.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    assert_eq!(reply.trim(), "OK");
    assert_eq!(readyz().await.status(), StatusCode::OK);
}

/// The authority's ACL user of `docker/redis-users.acl` may read the policy
/// (`INFO`): the authority starts as that user and reports ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_acl_user_can_read_the_policy() {
    let acl = token_service_tests::acl::RenderedAcl::new();
    let redis = RedisServer::builder().acl_file(acl.path()).start();
    let url = redis.url_as("authority", &acl.authority_password);
    let authority = Authority::start_with_url(BIN, &url, &[]);
    let ready = client()
        .get(authority.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), StatusCode::OK, "{}", authority.logs());
}

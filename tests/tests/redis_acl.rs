//! The Redis ACL of `docker/redis-users.acl`, rendered with fresh passwords
//! and loaded into a private redis-server: the template holds no password
//! in clear, Redis keeps only hashes; the middleware's user may read token keys (and track them)
//! and nothing else; the authority's user runs the store and nothing
//! dangerous; the example service works end to end as the middleware's
//! user, cache included.

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use reqwest::StatusCode;
use token_repository::{
    KeyPrefix, RedisConfig, RedisStore, RedisTokenReader, RefreshState, Rotation, TokenReader as _,
    TokenWriter as _,
};
use token_service_tests::acl::{self, AUTHORITY_USER, CLIENT_USER, RenderedAcl};
use token_service_tests::protected::{Options, ProtectedService};
use token_service_tests::tokens;
use token_test_harness::RedisServer;

const SERVICE: &str = env!("CARGO_BIN_EXE_protected-service");

/// A private Redis with the ACL rendered for it, and its users' passwords.
struct AclRedis {
    server: RedisServer,
    acl: RenderedAcl,
}

impl std::ops::Deref for AclRedis {
    type Target = RedisServer;

    fn deref(&self) -> &RedisServer {
        &self.server
    }
}

impl AclRedis {
    fn authority_url(&self) -> String {
        self.server
            .url_as(AUTHORITY_USER, &self.acl.authority_password)
    }

    fn client_url(&self) -> String {
        self.server.url_as(CLIENT_USER, &self.acl.client_password)
    }
}

fn redis_with_acl() -> AclRedis {
    let acl = RenderedAcl::new();
    let server = RedisServer::builder().acl_file(acl.path()).start();
    AclRedis { server, acl }
}

fn authority_store(redis: &AclRedis) -> RedisStore {
    RedisStore::new(RedisConfig::new(redis.authority_url()).timeout(Duration::from_secs(2)))
        .expect("store")
}

async fn connect_as(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connection")
}

/// Runs `args` and asserts Redis refused it with `NOPERM`.
async fn assert_noperm(connection: &mut MultiplexedConnection, args: &[&[u8]]) {
    let mut command = redis::cmd(std::str::from_utf8(args[0]).expect("ascii name"));
    for arg in &args[1..] {
        command.arg(*arg);
    }
    let shown: Vec<String> = args
        .iter()
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect();
    match command.query_async::<redis::Value>(connection).await {
        Ok(value) => panic!("{shown:?} was allowed: {value:?}"),
        Err(error) => assert_eq!(error.code(), Some("NOPERM"), "{shown:?}: {error}"),
    }
}

/// The middleware's user reads session (token) keys; every write (on token keys or
/// elsewhere), every read of another key, every script and every admin
/// command is refused with `NOPERM`, and the token survives the attempts.
#[tokio::test]
async fn token_client_user_reads_token_keys_and_nothing_else() {
    let redis = redis_with_acl();
    let store = authority_store(&redis);
    let minted = tokens::issue(&store, &tokens::grant("alice", "read")).await;
    let token = &minted.access.token;
    let prefix = KeyPrefix::default();
    let key = prefix.session(token.tag(), minted.family());
    let index = prefix.sessions(token.tag());

    let reader = RedisTokenReader::new(RedisConfig::new(redis.client_url())).expect("reader");
    reader.ping().await.expect("the reader may PING");
    let record = reader.lookup(token).await.expect("the reader may GET");
    assert_eq!(record.expect("live").holder.username, "alice");

    let mut client = connect_as(&redis.client_url()).await;
    let value: Option<Vec<u8>> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut client)
        .await
        .expect("GET of a token key");
    assert!(value.is_some());

    let unissued = tokens::grant("alice", "read").mint().expect("mint");
    let new_key = prefix.session(token.tag(), unissued.family());
    let attempts: Vec<Vec<&[u8]>> = vec![
        vec![b"SET", &key, b"forged"],
        vec![b"SET", &new_key, b"forged"],
        vec![b"DEL", &key],
        vec![b"UNLINK", &key],
        vec![b"PEXPIRE", &key, b"1"],
        vec![b"PERSIST", &key],
        vec![b"RENAME", &key, &new_key],
        vec![b"GETDEL", &key],
        vec![b"GETEX", &key, b"PX", b"1"],
        vec![b"APPEND", &key, b"x"],
        vec![b"GET", &index],
        vec![b"ZRANGE", &index, b"0", b"-1"],
        vec![b"GET", b"unrelated"],
        vec![b"MGET", &key],
        vec![b"KEYS", b"*"],
        vec![b"SCAN", b"0"],
        vec![b"EVAL", b"return 1", b"0"],
        vec![b"EVAL", b"return redis.call('DEL', KEYS[1])", b"1", &key],
        vec![b"FCALL", b"f", b"0"],
        vec![b"PUBLISH", b"channel", b"message"],
        vec![b"FLUSHALL"],
        vec![b"FLUSHDB"],
        vec![b"CONFIG", b"SET", b"maxmemory", b"1"],
        vec![b"ACL", b"SETUSER", b"token-client", b"+@all"],
        vec![b"CLIENT", b"KILL", b"ID", b"1"],
        vec![b"CLIENT", b"LIST"],
        vec![b"INFO"],
        vec![b"SHUTDOWN", b"NOSAVE"],
    ];
    for attempt in &attempts {
        assert_noperm(&mut client, attempt).await;
    }

    let after: Option<Vec<u8>> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut client)
        .await
        .expect("GET");
    assert_eq!(after, value, "the token key is unchanged");
    assert!(reader.lookup(token).await.expect("lookup").is_some());
}

/// The middleware's user may enable tracking of the token keys, which the
/// cache needs.
#[tokio::test]
async fn token_client_user_may_track_token_keys() {
    let redis = redis_with_acl();
    let url = format!("{}?protocol=resp3", redis.client_url());
    let mut client = redis::Client::open(url)
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("RESP3 connection (HELLO 3)");
    redis::cmd("CLIENT")
        .arg("TRACKING")
        .arg("ON")
        .arg("BCAST")
        .arg("PREFIX")
        .arg("ts:s:")
        .arg("PREFIX")
        .arg("ts:tok:")
        .exec_async(&mut client)
        .await
        .expect("CLIENT TRACKING");
}

/// The authority's user runs every operation of the store (its Lua scripts
/// included), and is refused dangerous commands and keys outside the
/// prefix.
#[tokio::test]
async fn authority_user_runs_the_store_and_nothing_dangerous() {
    let redis = redis_with_acl();
    let store = authority_store(&redis);
    store.ping().await.expect("ping");
    let grant = tokens::grant("alice", "read");
    let guard = store.generation("user-alice").await.expect("generation");
    let minted = grant.mint().expect("mint");
    store.issue(&minted, Some(guard)).await.expect("issue");
    let refresh = &minted.refresh.as_ref().expect("refresh").token;
    assert!(matches!(
        store.inspect_refresh(refresh).await.expect("inspect"),
        RefreshState::Live(_)
    ));
    let next = grant.mint_in_family(minted.family()).expect("mint");
    assert_eq!(
        store.rotate(refresh, &next).await.expect("rotate"),
        Rotation::Rotated
    );
    assert_eq!(
        store.list("user-alice").await.expect("list").len(),
        2,
        "the rotated pair only"
    );
    assert_eq!(store.revoke(&next.access.token).await.expect("revoke"), 1);
    let other = tokens::issue(&store, &grant).await;
    assert_eq!(
        store
            .revoke_family("user-alice", other.family())
            .await
            .expect("revoke_family"),
        2
    );
    // The rotated session's refresh token (its access token was revoked).
    assert_eq!(store.revoke_all("user-alice").await.expect("revoke_all"), 1);

    let mut authority = connect_as(&redis.authority_url()).await;
    for attempt in [
        vec![b"GET".as_slice(), b"elsewhere:key"],
        vec![b"SET", b"elsewhere:key", b"x"],
        vec![b"KEYS", b"*"],
        vec![b"FLUSHALL"],
        vec![b"FLUSHDB"],
        vec![b"CONFIG", b"SET", b"maxmemory", b"1"],
        vec![b"ACL", b"SETUSER", b"authority", b"+@all"],
        vec![b"PUBLISH", b"channel", b"message"],
        vec![b"SHUTDOWN", b"NOSAVE"],
    ] {
        assert_noperm(&mut authority, &attempt).await;
    }
}

/// The example service, connected as the middleware's user with its cache
/// on, authenticates, caches (tracking allowed) and sees a revocation by
/// the authority's user within 100 ms.
#[tokio::test]
async fn service_works_as_the_token_client_user() {
    let redis = redis_with_acl();
    let store = authority_store(&redis);
    let minted = tokens::issue(&store, &tokens::grant("alice", "read")).await;
    let token = minted.access.token.expose_secret();
    let options = Options::new(redis.client_url()).cached(Duration::from_secs(600));
    let service = ProtectedService::start(SERVICE, &options);

    let reply = service.get("/whoami", Some(token)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json["username"], "alice");
    assert_eq!(
        service.get("/admin", Some(token)).await.status,
        StatusCode::FORBIDDEN
    );
    service.wait_until_cached(&redis.admin_url(), token).await;

    store.revoke(&minted.access.token).await.expect("revoke");
    let latency = service.time_until_refused(token, Instant::now()).await;
    assert!(latency < Duration::from_millis(100), "{latency:?}");
}

/// Reads `total_connections_received` from `INFO stats`.
async fn connections_received(redis: &AclRedis) -> u64 {
    let mut admin = redis::Client::open(redis.admin_url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("admin connection");
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut admin)
        .await
        .expect("INFO");
    info.lines()
        .find_map(|line| line.strip_prefix("total_connections_received:"))
        .and_then(|value| value.trim().parse().ok())
        .expect("total_connections_received")
}

/// The ACL users allow what the connection pool needs to keep its
/// connections (its health check sends UNWATCH and PING): a hundred
/// operations reuse a handful of connections instead of opening one each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connections_are_reused_under_the_acl() {
    let redis = redis_with_acl();
    let store = authority_store(&redis);
    let reader =
        RedisTokenReader::new(RedisConfig::new(redis.client_url()).timeout(Duration::from_secs(2)))
            .expect("reader");
    let minted = tokens::grant("alice", "read").mint().expect("mint");
    store.issue(&minted, None).await.expect("issue");
    assert!(
        reader
            .lookup(&minted.access.token)
            .await
            .expect("lookup")
            .is_some()
    );
    let before = connections_received(&redis).await;
    for _ in 0..50 {
        let minted = tokens::grant("alice", "read").mint().expect("mint");
        store.issue(&minted, None).await.expect("issue");
        assert!(
            reader
                .lookup(&minted.access.token)
                .await
                .expect("lookup")
                .is_some()
        );
    }
    let opened = connections_received(&redis).await - before;
    // One for each INFO call, at most a couple more for the pools.
    assert!(
        opened <= 4,
        "{opened} connections opened for 100 sequential operations"
    );
}

/// The authority's pooled connections (its account and throttling keys)
/// are reused under its ACL: the pool's check (`UNWATCH` + `PING`) is
/// allowed, so operations do not open a connection each.
#[tokio::test]
async fn authority_user_keeps_its_pooled_connections() {
    let redis = redis_with_acl();
    let store = authority_store(&redis);
    let connections = || {
        let stats = redis.cli(&["INFO", "stats"]);
        stats
            .lines()
            .find_map(|line| line.strip_prefix("total_connections_received:"))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .expect("total_connections_received")
    };
    let key = format!("{}user:nobody", store.prefix());
    let get = |store: RedisStore, key: String| async move {
        store
            .with_connection(|mut connection| async move {
                let value: Option<String> = redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut connection)
                    .await?;
                Ok(value)
            })
            .await
            .expect("GET as the authority")
    };
    assert_eq!(get(store.clone(), key.clone()).await, None);
    let before = connections();
    for _ in 0..20 {
        assert_eq!(get(store.clone(), key.clone()).await, None);
    }
    // One connection for redis-cli asking, none for the store.
    assert_eq!(
        connections() - before,
        1,
        "pooled connections were not reused"
    );
}

/// The topology and durability commands the ACL grants are really allowed:
/// `WAIT` for the authority, `ROLE` and `CLUSTER SLOTS` for both users (on a
/// server without cluster support that is an error, but not `NOPERM`).
#[tokio::test]
async fn topology_and_durability_commands_are_permitted() {
    let redis = redis_with_acl();
    let mut authority = connect_as(&redis.authority_url()).await;
    let acknowledged: i64 = redis::cmd("WAIT")
        .arg(0)
        .arg(10)
        .query_async(&mut authority)
        .await
        .expect("WAIT is allowed");
    assert_eq!(acknowledged, 0);
    let mut client = connect_as(&redis.client_url()).await;
    for connection in [&mut authority, &mut client] {
        let role: redis::Value = redis::cmd("ROLE")
            .query_async(connection)
            .await
            .expect("ROLE is allowed");
        assert!(!matches!(role, redis::Value::Nil));
        let slots = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async::<redis::Value>(connection)
            .await;
        if let Err(error) = slots {
            assert_ne!(error.code(), Some("NOPERM"), "{error}");
        }
    }
    assert_noperm(&mut client, &[b"WAIT", b"0", b"10"]).await;
}

/// `docker/redis-users.acl` holds no password in clear: every user is off
/// or has only a `#{{…_SHA256}}` hash placeholder (no `>password`, no
/// `nopass`), so the repository ships no credential anyone could reuse.
#[test]
fn template_holds_no_password_in_clear() {
    let template = std::fs::read_to_string(acl::TEMPLATE).expect("template");
    let mut users = Vec::new();
    for line in template.lines().filter(|line| !line.trim().is_empty()) {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words.first(), Some(&"user"), "{line}");
        let name = words.get(1).copied().expect("user name");
        for word in &words[2..] {
            assert!(
                !word.starts_with('>') && !word.starts_with('<') && *word != "nopass",
                "user {name} has a clear password or none: {word}"
            );
        }
        if words.contains(&"on") {
            let placeholder = match name {
                AUTHORITY_USER => acl::AUTHORITY_PLACEHOLDER,
                CLIENT_USER => acl::CLIENT_PLACEHOLDER,
                other => panic!("unexpected user {other}"),
            };
            assert!(
                words.contains(&format!("#{placeholder}").as_str()),
                "user {name} lacks its hash placeholder: {line}"
            );
        }
        users.push(name.to_owned());
    }
    assert_eq!(users, ["default", AUTHORITY_USER, CLIENT_USER]);
}

/// The rendered file gives Redis hashes only: `ACL LIST` shows the
/// SHA-256 of each password and never the password; the passwords work, a
/// wrong one is refused.
#[tokio::test]
async fn redis_keeps_only_password_hashes() {
    let redis = redis_with_acl();
    let list = redis.cli(&["ACL", "LIST"]);
    for (user, password) in [
        (AUTHORITY_USER, &redis.acl.authority_password),
        (CLIENT_USER, &redis.acl.client_password),
    ] {
        assert!(!list.contains(password.as_str()), "{list}");
        let line = list
            .lines()
            .find(|line| line.starts_with(&format!("user {user} ")))
            .unwrap_or_else(|| panic!("no user {user} in {list}"));
        assert!(
            line.contains(&format!("#{}", acl::sha256_hex(password))),
            "{line}"
        );
    }
    let rendered = std::fs::read_to_string(redis.acl.path()).expect("rendered");
    assert!(!rendered.contains(&redis.acl.authority_password));
    assert!(!rendered.contains(&redis.acl.client_password));

    let _ = connect_as(&redis.authority_url()).await;
    let _ = connect_as(&redis.client_url()).await;
    let wrong = redis::Client::open(redis.url_as(CLIENT_USER, "not-the-password"))
        .expect("url")
        .get_multiplexed_async_connection()
        .await;
    assert!(wrong.is_err(), "a wrong password was accepted");
}

/// The template as it is in the repository does not load: a placeholder is
/// no valid hash, so a Redis started with the unrendered file fails to
/// start instead of running with users nobody can log in as.
#[test]
fn unrendered_template_does_not_load() {
    let started = RedisServer::builder().acl_file(acl::TEMPLATE).try_start();
    assert!(started.is_err(), "redis-server accepted the raw template");
}

/// Reads `redis://USER:PASSWORD@HOST/` from a file the compose renderer
/// wrote.
fn url_password(path: &std::path::Path, user: &str) -> String {
    let url = std::fs::read_to_string(path).expect("URL file");
    let rest = url
        .trim_end()
        .strip_prefix(&format!("redis://{user}:"))
        .unwrap_or_else(|| panic!("{} is not a URL of {user}", path.display()));
    let (password, host) = rest.split_once('@').expect("user info");
    assert_eq!(host, "redis:6379/");
    password.to_owned()
}

/// What the compose demo's `credentials` service runs
/// (`docker/render-secrets.sh`, no Docker needed): it writes a hashed ACL
/// and a URL file per program, owner-only; a Redis loaded with that ACL
/// accepts exactly those passwords with the template's rights; a second run
/// (every `docker compose up`) changes nothing.
#[tokio::test]
async fn compose_renderer_makes_working_credentials() {
    let docker = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../docker"));
    let out = tempfile::tempdir().expect("dir");
    let dirs = ["acl", "authority", "service"].map(|name| {
        let dir = out.path().join(name);
        std::fs::create_dir(&dir).expect("mkdir");
        dir
    });
    let render = || {
        let output = std::process::Command::new("sh")
            .arg(docker.join("render-secrets.sh"))
            .arg(acl::TEMPLATE)
            .args(&dirs)
            .output()
            .expect("run sh");
        assert!(
            output.status.success(),
            "render-secrets.sh failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    render();
    let acl_file = dirs[0].join("users.acl");
    let authority_url = dirs[1].join("redis_url");
    let client_url = dirs[2].join("redis_url");
    let authority_password = url_password(&authority_url, AUTHORITY_USER);
    let client_password = url_password(&client_url, CLIENT_USER);
    assert_eq!(authority_password.len(), 32);
    assert_ne!(authority_password, client_password);
    for file in [&authority_url, &client_url] {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(file).expect("stat").permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} is readable by others", file.display());
    }
    let rendered = std::fs::read_to_string(&acl_file).expect("acl");
    assert!(!rendered.contains(&authority_password) && !rendered.contains(&client_password));
    assert!(rendered.contains(&format!("#{}", acl::sha256_hex(&authority_password))));
    assert!(rendered.contains(&format!("#{}", acl::sha256_hex(&client_password))));

    let before =
        [&acl_file, &authority_url, &client_url].map(|file| std::fs::read(file).expect("read"));
    render();
    let after =
        [&acl_file, &authority_url, &client_url].map(|file| std::fs::read(file).expect("read"));
    assert_eq!(before, after, "a second run changed the credentials");

    let redis = RedisServer::builder().acl_file(&acl_file).start();
    let mut authority = connect_as(&redis.url_as(AUTHORITY_USER, &authority_password)).await;
    let mut client = connect_as(&redis.url_as(CLIENT_USER, &client_password)).await;
    redis::cmd("SET")
        .arg("ts:tok:x")
        .arg("1")
        .exec_async(&mut authority)
        .await
        .expect("the authority writes");
    let value: Option<String> = redis::cmd("GET")
        .arg("ts:tok:x")
        .query_async(&mut client)
        .await
        .expect("the client reads");
    assert_eq!(value.as_deref(), Some("1"));
    assert_noperm(&mut client, &[b"SET", b"ts:tok:x", b"2"]).await;
}

//! The authority's settings, each declared once: name, default, bounds and
//! a line of help. [`super::Config::from_sources`] parses them from here;
//! `--help` prints them ([`super::all_settings`]), the configuration file's keys
//! are their names in lower case, and a test compares the README's
//! configuration table with them. The broker's `CONNECT_*` settings are
//! its own table ([`token_broker::settings`]), embedded after these.
//!
//! The Redis topology and TLS settings are read by the repository
//! (`Topology::from_settings`, `RedisTls::from_settings`); a test checks
//! that its default is the one declared here.

use token_settings::Setting;

/// `REDIS_URL`: one Redis server.
pub const REDIS_URL: Setting = Setting::text(
    "REDIS_URL",
    "redis://127.0.0.1:6379",
    "Redis holding tokens, users and clients",
);
/// `REDIS_CLUSTER_URLS`: a Redis Cluster instead.
pub const REDIS_CLUSTER_URLS: Setting = Setting::optional(
    "REDIS_CLUSTER_URLS",
    "Redis Cluster seed nodes, comma-separated (instead of REDIS_URL)",
);
/// `REDIS_SENTINEL_URLS`: a master behind Sentinel instead.
pub const REDIS_SENTINEL_URLS: Setting = Setting::optional(
    "REDIS_SENTINEL_URLS",
    "Sentinel addresses, comma-separated (instead of REDIS_URL)",
);
/// `REDIS_SENTINEL_MASTER`: the master's name at the sentinels.
pub const REDIS_SENTINEL_MASTER: Setting = Setting::optional(
    "REDIS_SENTINEL_MASTER",
    "the master's name at the sentinels (with REDIS_SENTINEL_URLS)",
);
/// `REDIS_SENTINEL_USERNAME`: ACL user for the data nodes behind Sentinel.
pub const REDIS_SENTINEL_USERNAME: Setting = Setting::optional(
    "REDIS_SENTINEL_USERNAME",
    "ACL user for the data nodes behind Sentinel",
);
/// `REDIS_SENTINEL_PASSWORD`: its password.
pub const REDIS_SENTINEL_PASSWORD: Setting = Setting::optional(
    "REDIS_SENTINEL_PASSWORD",
    "password for the data nodes behind Sentinel",
);
/// `REDIS_CA_FILE`: the CA of a `rediss://` server.
pub const REDIS_CA_FILE: Setting = Setting::text_computed(
    "REDIS_CA_FILE",
    "webpki roots",
    "PEM file of the CA that signed the rediss:// server's certificate",
);
/// `REDIS_CLIENT_CERT_FILE`: a client certificate for `rediss://`.
pub const REDIS_CLIENT_CERT_FILE: Setting = Setting::optional(
    "REDIS_CLIENT_CERT_FILE",
    "PEM client certificate for a server with tls-auth-clients (with REDIS_CLIENT_KEY_FILE)",
);
/// `REDIS_CLIENT_KEY_FILE`: its private key.
pub const REDIS_CLIENT_KEY_FILE: Setting = Setting::optional(
    "REDIS_CLIENT_KEY_FILE",
    "PEM private key of REDIS_CLIENT_CERT_FILE",
);
/// `REDIS_WAIT_REPLICAS`: replicas that must acknowledge issued tokens.
pub const REDIS_WAIT_REPLICAS: Setting = Setting::number(
    "REDIS_WAIT_REPLICAS",
    0,
    0..=16,
    "replicas that must acknowledge each issued token (WAIT); 0: off",
);
/// `REDIS_WAIT_TIMEOUT_MS`: how long to wait for them.
pub const REDIS_WAIT_TIMEOUT_MS: Setting = Setting::number(
    "REDIS_WAIT_TIMEOUT_MS",
    500,
    1..=60_000,
    "how long to wait for them before revoking and answering 503, in milliseconds",
);
/// `REDIS_POOL_SIZE`: pooled Redis connections.
pub const REDIS_POOL_SIZE: Setting =
    Setting::number("REDIS_POOL_SIZE", 16, 1..=1024, "pooled Redis connections");
/// `REDIS_TIMEOUT_MS`: bound on every Redis operation.
pub const REDIS_TIMEOUT_MS: Setting = Setting::number(
    "REDIS_TIMEOUT_MS",
    1000,
    10..=60_000,
    "bound on every Redis operation, in milliseconds",
);
/// `KEY_PREFIX`: namespace of every key.
pub const KEY_PREFIX: Setting = Setting::text("KEY_PREFIX", "ts:", "namespace of every Redis key");
/// `MAX_SESSIONS_PER_SUBJECT`: live sessions per user or client.
pub const MAX_SESSIONS_PER_SUBJECT: Setting = Setting::number(
    "MAX_SESSIONS_PER_SUBJECT",
    token_repository::DEFAULT_MAX_SESSIONS_PER_SUBJECT as u64,
    1..=10_000,
    "live sessions (logins, client_credentials grants) per user or client; \
     issuing beyond it revokes the one that expires soonest",
);
/// `LISTEN_ADDR`: where the HTTP server binds.
pub const LISTEN_ADDR: Setting = Setting::text(
    "LISTEN_ADDR",
    "127.0.0.1:8080",
    "HTTP listen address (port 0: any free port)",
);
/// `ISSUER`: the public base URL.
pub const ISSUER: Setting = Setting::text_computed(
    "ISSUER",
    "from the bound address",
    "public base URL, for RFC 8414 metadata",
);
/// `DEFAULT_AUDIENCE`: the audience of tokens requested without
/// `resource`.
pub const DEFAULT_AUDIENCE: Setting = Setting::text_computed(
    "DEFAULT_AUDIENCE",
    "the authority (ISSUER)",
    "registered resource URIs, comma-separated: the audience of tokens requested without resource",
);
/// `ACCESS_TOKEN_TTL`: access token lifetime.
pub const ACCESS_TOKEN_TTL: Setting = Setting::number(
    "ACCESS_TOKEN_TTL",
    900,
    1..=86_400,
    "access token lifetime, seconds",
);
/// `REFRESH_TOKEN_TTL`: refresh token lifetime.
pub const REFRESH_TOKEN_TTL: Setting = Setting::number(
    "REFRESH_TOKEN_TTL",
    1_209_600,
    60..=31_536_000,
    "refresh token lifetime, seconds (renewed on rotation)",
);
/// `ARGON2_MEMORY_KIB`: argon2id memory cost.
pub const ARGON2_MEMORY_KIB: Setting = Setting::number(
    "ARGON2_MEMORY_KIB",
    19_456,
    8..=4_194_304,
    "argon2id memory cost",
);
/// `ARGON2_ITERATIONS`: argon2id time cost.
pub const ARGON2_ITERATIONS: Setting =
    Setting::number("ARGON2_ITERATIONS", 2, 1..=100, "argon2id time cost");
/// `ARGON2_PARALLELISM`: argon2id lanes.
pub const ARGON2_PARALLELISM: Setting =
    Setting::number("ARGON2_PARALLELISM", 1, 1..=64, "argon2id lanes");
/// `HASH_WORKERS`: password hashes computed at once.
pub const HASH_WORKERS: Setting = Setting::number_computed(
    "HASH_WORKERS",
    "CPU count",
    1..=1024,
    "password hashes computed at once",
);
/// `WORKER_THREADS`: the async runtime's worker threads.
pub const WORKER_THREADS: Setting = Setting::number_computed(
    "WORKER_THREADS",
    "CPU count",
    1..=1024,
    "async worker threads serving requests",
);
/// `HASH_QUEUE`: logins waiting for a hash worker.
pub const HASH_QUEUE: Setting = Setting::number(
    "HASH_QUEUE",
    256,
    0..=1_000_000,
    "logins waiting for a hash worker before 503",
);
/// `LOGIN_MAX_FAILURES`: failed logins per username per window.
pub const LOGIN_MAX_FAILURES: Setting = Setting::number(
    "LOGIN_MAX_FAILURES",
    5,
    1..=1_000_000,
    "failed logins per username per window before 429",
);
/// `ADDRESS_MAX_FAILURES`: failed logins per client address per window.
pub const ADDRESS_MAX_FAILURES: Setting = Setting::number(
    "ADDRESS_MAX_FAILURES",
    50,
    1..=1_000_000,
    "failed logins per client address per window before 429",
);
/// `LOGIN_FAILURE_WINDOW`: the throttling window.
pub const LOGIN_FAILURE_WINDOW: Setting = Setting::number(
    "LOGIN_FAILURE_WINDOW",
    900,
    1..=86_400,
    "throttling window, seconds",
);
/// `INTROSPECTION_CACHE`: tokens, verified clients and resource URIs from
/// memory, kept exact by Redis tracking.
pub const INTROSPECTION_CACHE: Setting = Setting::flag(
    "INTROSPECTION_CACHE",
    true,
    "answer introspection and bearer checks from memory, invalidated by Redis tracking",
);
/// `INTROSPECTION_CACHE_CLIENTS`: verified clients kept in memory.
pub const INTROSPECTION_CACHE_CLIENTS: Setting = Setting::number(
    "INTROSPECTION_CACHE_CLIENTS",
    10_000,
    1..=1_000_000,
    "with INTROSPECTION_CACHE: the most verified clients kept in memory",
);
/// `INTROSPECTION_CACHE_USERS`: user records kept in memory for refresh
/// rotations.
pub const INTROSPECTION_CACHE_USERS: Setting = Setting::number(
    "INTROSPECTION_CACHE_USERS",
    10_000,
    0..=1_000_000,
    "with INTROSPECTION_CACHE: the most user records a refresh rotation reads from memory (0: every rotation reads Redis)",
);
/// `ROTATION_CACHE_SESSIONS`: sessions this process rotated last, held by
/// their new refresh token.
pub const ROTATION_CACHE_SESSIONS: Setting = Setting::number(
    "ROTATION_CACHE_SESSIONS",
    32_768,
    0..=1_000_000,
    "the sessions this process rotated last, held so that their next rotation here skips one Redis read (0: every rotation reads the session first)",
);
/// `TRUST_FORWARDED_FOR`: the client address from `X-Forwarded-For`.
pub const TRUST_FORWARDED_FOR: Setting = Setting::flag(
    "TRUST_FORWARDED_FOR",
    false,
    "use X-Forwarded-For for the client address",
);
/// `TRUSTED_PROXY_HOPS`: proxies of ours appending to `X-Forwarded-For`.
pub const TRUSTED_PROXY_HOPS: Setting = Setting::number(
    "TRUSTED_PROXY_HOPS",
    1,
    1..=16,
    "with TRUST_FORWARDED_FOR: proxies of yours appending to X-Forwarded-For",
);
/// `IPV6_THROTTLE_PREFIX`: IPv6 clients are throttled per network.
pub const IPV6_THROTTLE_PREFIX: Setting = Setting::number(
    "IPV6_THROTTLE_PREFIX",
    64,
    1..=128,
    "IPv6 clients are throttled per network of this prefix length",
);
/// `MAX_BODY_BYTES`: request body limit.
pub const MAX_BODY_BYTES: Setting = Setting::number(
    "MAX_BODY_BYTES",
    16_384,
    1024..=1_048_576,
    "request body limit",
);
/// `LOG_FORMAT`: `text` or `json`.
pub const LOG_FORMAT: Setting = Setting::choice(
    "LOG_FORMAT",
    "text",
    &["text", "json"],
    "log format (level: RUST_LOG, default info)",
);
/// `HTTP_HEADER_TIMEOUT_MS`: time to send a request header.
pub const HTTP_HEADER_TIMEOUT_MS: Setting = Setting::number(
    "HTTP_HEADER_TIMEOUT_MS",
    10_000,
    100..=3_600_000,
    "time to send a request header (and, on keep-alive, the next one)",
);
/// `HTTP_REQUEST_TIMEOUT_MS`: time from a request header to its response.
pub const HTTP_REQUEST_TIMEOUT_MS: Setting = Setting::number(
    "HTTP_REQUEST_TIMEOUT_MS",
    30_000,
    100..=3_600_000,
    "time from a request header to its response (408 for a slow body, 503 otherwise)",
);
/// `HTTP_IDLE_TIMEOUT_MS`: an idle connection is closed.
pub const HTTP_IDLE_TIMEOUT_MS: Setting = Setting::number(
    "HTTP_IDLE_TIMEOUT_MS",
    60_000,
    100..=3_600_000,
    "a connection with no bytes read or written for this long is closed",
);
/// `MAX_CONNECTIONS`: open connections per listener.
pub const MAX_CONNECTIONS: Setting = Setting::number(
    "MAX_CONNECTIONS",
    10_000,
    1..=1_000_000,
    "open connections; further ones wait to be accepted",
);
/// `HTTP2_MAX_STREAMS`: concurrent streams per HTTP/2 connection.
pub const HTTP2_MAX_STREAMS: Setting = Setting::number(
    "HTTP2_MAX_STREAMS",
    100,
    1..=10_000,
    "concurrent streams per HTTP/2 connection",
);
/// `METRICS_ADDR`: a listener serving `/metrics` only.
pub const METRICS_ADDR: Setting = Setting::optional(
    "METRICS_ADDR",
    "serve /metrics on this address only (production: set it, keep it private)",
);
/// `ALLOW_REDIS_EVICTION`: start although Redis may evict keys.
pub const ALLOW_REDIS_EVICTION: Setting = Setting::flag(
    "ALLOW_REDIS_EVICTION",
    false,
    "start although Redis's maxmemory-policy is not noeviction",
);
/// `BROWSER_SESSION_TTL`: how long a browser stays signed in.
pub const BROWSER_SESSION_TTL: Setting = Setting::number(
    "BROWSER_SESSION_TTL",
    28_800,
    60..=2_592_000,
    "seconds a browser stays signed in at the authority",
);
/// `PASSWORD_GRANT`: whether `grant_type=password` is accepted.
pub const PASSWORD_GRANT: Setting = Setting::choice(
    "PASSWORD_GRANT",
    "enabled",
    &["enabled", "disabled"],
    "whether grant_type=password is accepted",
);

/// The authority's own settings, in the README's order.
pub const AUTHORITY: &[Setting] = &[
    REDIS_URL,
    REDIS_CLUSTER_URLS,
    REDIS_SENTINEL_URLS,
    REDIS_SENTINEL_MASTER,
    REDIS_SENTINEL_USERNAME,
    REDIS_SENTINEL_PASSWORD,
    REDIS_CA_FILE,
    REDIS_CLIENT_CERT_FILE,
    REDIS_CLIENT_KEY_FILE,
    REDIS_WAIT_REPLICAS,
    REDIS_WAIT_TIMEOUT_MS,
    REDIS_POOL_SIZE,
    REDIS_TIMEOUT_MS,
    KEY_PREFIX,
    MAX_SESSIONS_PER_SUBJECT,
    LISTEN_ADDR,
    ISSUER,
    DEFAULT_AUDIENCE,
    ACCESS_TOKEN_TTL,
    REFRESH_TOKEN_TTL,
    ARGON2_MEMORY_KIB,
    ARGON2_ITERATIONS,
    ARGON2_PARALLELISM,
    HASH_WORKERS,
    WORKER_THREADS,
    HASH_QUEUE,
    INTROSPECTION_CACHE,
    INTROSPECTION_CACHE_CLIENTS,
    INTROSPECTION_CACHE_USERS,
    ROTATION_CACHE_SESSIONS,
    LOGIN_MAX_FAILURES,
    ADDRESS_MAX_FAILURES,
    LOGIN_FAILURE_WINDOW,
    TRUST_FORWARDED_FOR,
    TRUSTED_PROXY_HOPS,
    IPV6_THROTTLE_PREFIX,
    MAX_BODY_BYTES,
    LOG_FORMAT,
    HTTP_HEADER_TIMEOUT_MS,
    HTTP_REQUEST_TIMEOUT_MS,
    HTTP_IDLE_TIMEOUT_MS,
    MAX_CONNECTIONS,
    HTTP2_MAX_STREAMS,
    METRICS_ADDR,
    ALLOW_REDIS_EVICTION,
    BROWSER_SESSION_TTL,
    PASSWORD_GRANT,
];

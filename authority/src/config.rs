//! The authority's configuration: one typed struct, loaded once from the
//! environment and an optional TOML file (the environment wins), validated at
//! start-up with errors that name the variable and the expected form.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use token_repository::redis::Topology;
use token_repository::{KeyPrefix, RedisTls};

use crate::connect::config::ConnectConfig;

/// Everything `token-authority serve` (and the admin CLI) can be told.
#[derive(Clone)]
pub struct Config {
    /// Where Redis is: `REDIS_URL` (one server), `REDIS_CLUSTER_URLS` (a
    /// Redis Cluster) or `REDIS_SENTINEL_URLS` + `REDIS_SENTINEL_MASTER`
    /// (a master behind Sentinel).
    pub redis_topology: Topology,
    /// `REDIS_CA_FILE`, `REDIS_CLIENT_CERT_FILE`, `REDIS_CLIENT_KEY_FILE`:
    /// the CA to trust for `rediss://` and a client certificate.
    pub redis_tls: Option<RedisTls>,
    /// `REDIS_WAIT_REPLICAS` and `REDIS_WAIT_TIMEOUT_MS`: replicas that must
    /// acknowledge every issued token, and how long to wait for them.
    pub redis_wait: Option<(u32, Duration)>,
    /// `REDIS_POOL_SIZE`: pooled Redis connections.
    pub redis_pool_size: usize,
    /// `REDIS_TIMEOUT_MS`: bound on every Redis operation.
    pub redis_timeout: Duration,
    /// `MAX_SESSIONS_PER_SUBJECT`: live sessions one user or client may
    /// hold; issuing beyond it revokes its soonest-expiring session.
    pub max_sessions_per_subject: usize,
    /// `KEY_PREFIX`: namespace of every key.
    pub key_prefix: KeyPrefix,
    /// `LISTEN_ADDR`: where the HTTP server binds (port 0 = any free port).
    pub listen_addr: SocketAddr,
    /// `ISSUER`: this authority's public base URL (RFC 8414 `issuer`);
    /// `None` derives it from the bound address.
    pub issuer: Option<String>,
    /// `ACCESS_TOKEN_TTL`: access token lifetime.
    pub access_token_ttl: Duration,
    /// `REFRESH_TOKEN_TTL`: refresh token lifetime (sliding: every
    /// rotation starts a new one).
    pub refresh_token_ttl: Duration,
    /// `ARGON2_MEMORY_KIB`, `ARGON2_ITERATIONS`, `ARGON2_PARALLELISM`.
    pub argon2: Argon2Config,
    /// `HASH_WORKERS`: password hashes computed at once (blocking threads).
    pub hash_workers: usize,
    /// `HASH_QUEUE`: logins allowed to wait for a hashing worker before the
    /// authority answers 503 (bounds memory under a login flood).
    pub hash_queue: usize,
    /// `LOGIN_MAX_FAILURES`: failed logins per username per window.
    pub login_max_failures: u32,
    /// `ADDRESS_MAX_FAILURES`: failed logins per client address per window.
    pub address_max_failures: u32,
    /// `LOGIN_FAILURE_WINDOW`: the throttling window.
    pub login_failure_window: Duration,
    /// `TRUST_FORWARDED_FOR`: take the client address from the last entry
    /// of `X-Forwarded-For` (only behind a proxy that sets it).
    pub trust_forwarded_for: bool,
    /// `TRUSTED_PROXY_HOPS`: how many proxies of our own append to
    /// `X-Forwarded-For`; the client address is the entry that many places
    /// from the end (with `TRUST_FORWARDED_FOR`).
    pub trusted_proxy_hops: usize,
    /// `IPV6_THROTTLE_PREFIX`: IPv6 clients are throttled per network of
    /// this prefix length (a /64 is usually one subscriber).
    pub ipv6_throttle_prefix: u8,
    /// `MAX_BODY_BYTES`: request body limit.
    pub max_body_bytes: u64,
    /// `LOG_FORMAT`: `text` or `json`.
    pub log_format: LogFormat,
    /// `HTTP_*` and `MAX_CONNECTIONS`: timeouts and limits of the HTTP
    /// server.
    pub http: HttpLimits,
    /// `METRICS_ADDR`: a second listener serving `/metrics` only; when set,
    /// the public listener no longer serves it.
    pub metrics_addr: Option<SocketAddr>,
    /// `ALLOW_REDIS_EVICTION`: start (and report ready) even though Redis's
    /// `maxmemory-policy` is not `noeviction`.
    pub allow_redis_eviction: bool,
    /// Connected services: `CONNECT_*` and the file's `[[providers]]`.
    pub connect: ConnectConfig,
    /// `BROWSER_SESSION_TTL`: lifetime of a browser session at the
    /// authority (sign-in page, `/account`, `/oauth/authorize`).
    pub browser_session_ttl: Duration,
    /// `PASSWORD_GRANT`: whether `grant_type=password` is accepted.
    pub password_grant: bool,
}

/// Argon2id cost parameters for password and client-secret hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Config {
    /// Memory in KiB (OWASP: 19456).
    pub memory_kib: u32,
    /// Passes (OWASP: 2).
    pub iterations: u32,
    /// Lanes (OWASP: 1).
    pub parallelism: u32,
}

impl Default for Argon2Config {
    /// OWASP's recommendation, which is also RustCrypto's default.
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// Timeouts and limits of the HTTP server (against slow or idle clients
/// holding connections open: slowloris).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// `HTTP_HEADER_TIMEOUT_MS`: time a client has to send a request's
    /// complete header; on an HTTP/1.1 keep-alive connection the clock also
    /// runs while waiting for the next request.
    pub header_timeout: Duration,
    /// `HTTP_REQUEST_TIMEOUT_MS`: time from a request's header to its
    /// response (reading the body included).
    pub request_timeout: Duration,
    /// `HTTP_IDLE_TIMEOUT_MS`: a connection on which nothing is read or
    /// written for this long is closed (HTTP/1.1 and HTTP/2).
    pub idle_timeout: Duration,
    /// `MAX_CONNECTIONS`: open connections; further ones wait to be accepted.
    pub max_connections: usize,
    /// `HTTP2_MAX_STREAMS`: concurrent streams per HTTP/2 connection.
    pub http2_max_streams: u32,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            http2_max_streams: 100,
        }
    }
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A configuration value that cannot be used; names the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    /// The environment variable (or TOML key, lower-cased) at fault.
    pub variable: String,
    /// What is wrong and what is expected.
    pub problem: String,
}

impl ConfigError {
    /// An error about `variable`.
    pub(crate) fn new(variable: &str, problem: impl Into<String>) -> Self {
        Self {
            variable: variable.to_owned(),
            problem: problem.into(),
        }
    }
}

/// Every variable, its default and what it means (for the README and `--help`).
pub const VARIABLES: &[(&str, &str, &str)] = &[
    (
        "REDIS_URL",
        "redis://127.0.0.1:6379",
        "Redis holding tokens, users and clients",
    ),
    (
        "REDIS_CLUSTER_URLS",
        "—",
        "Redis Cluster seed nodes, comma-separated (instead of REDIS_URL)",
    ),
    (
        "REDIS_SENTINEL_URLS",
        "—",
        "Sentinel addresses, comma-separated (instead of REDIS_URL)",
    ),
    (
        "REDIS_SENTINEL_MASTER",
        "—",
        "the master's name at the sentinels (with REDIS_SENTINEL_URLS)",
    ),
    (
        "REDIS_SENTINEL_USERNAME",
        "—",
        "ACL user for the data nodes behind Sentinel",
    ),
    (
        "REDIS_SENTINEL_PASSWORD",
        "—",
        "password for the data nodes behind Sentinel",
    ),
    (
        "REDIS_WAIT_REPLICAS",
        "0",
        "replicas that must acknowledge each issued token (WAIT); 0: off",
    ),
    (
        "REDIS_WAIT_TIMEOUT_MS",
        "500",
        "how long to wait for them before revoking and answering 503",
    ),
    (
        "REDIS_CA_FILE",
        "webpki roots",
        "PEM file of the CA that signed the rediss:// server's certificate",
    ),
    (
        "REDIS_CLIENT_CERT_FILE",
        "—",
        "PEM client certificate for a server with tls-auth-clients (with REDIS_CLIENT_KEY_FILE)",
    ),
    (
        "REDIS_CLIENT_KEY_FILE",
        "—",
        "PEM private key of REDIS_CLIENT_CERT_FILE",
    ),
    ("REDIS_POOL_SIZE", "16", "pooled Redis connections"),
    (
        "REDIS_TIMEOUT_MS",
        "1000",
        "bound on every Redis operation, in milliseconds",
    ),
    (
        "MAX_SESSIONS_PER_SUBJECT",
        "100",
        "live sessions (logins, client_credentials grants) per user or client; \
         issuing beyond it revokes the one that expires soonest",
    ),
    ("KEY_PREFIX", "ts:", "namespace of every Redis key"),
    (
        "LISTEN_ADDR",
        "127.0.0.1:8080",
        "HTTP listen address (port 0: any free port)",
    ),
    (
        "ISSUER",
        "http://<LISTEN_ADDR>",
        "public base URL, for RFC 8414 metadata",
    ),
    ("ACCESS_TOKEN_TTL", "900", "access token lifetime, seconds"),
    (
        "REFRESH_TOKEN_TTL",
        "1209600",
        "refresh token lifetime, seconds (renewed on rotation)",
    ),
    ("ARGON2_MEMORY_KIB", "19456", "argon2id memory cost"),
    ("ARGON2_ITERATIONS", "2", "argon2id time cost"),
    ("ARGON2_PARALLELISM", "1", "argon2id lanes"),
    (
        "HASH_WORKERS",
        "<CPU count>",
        "password hashes computed at once",
    ),
    (
        "HASH_QUEUE",
        "256",
        "logins waiting for a hash worker before 503",
    ),
    (
        "LOGIN_MAX_FAILURES",
        "5",
        "failed logins per username per window before 429",
    ),
    (
        "ADDRESS_MAX_FAILURES",
        "50",
        "failed logins per client address per window before 429",
    ),
    ("LOGIN_FAILURE_WINDOW", "900", "throttling window, seconds"),
    (
        "TRUST_FORWARDED_FOR",
        "false",
        "use X-Forwarded-For for the client address",
    ),
    (
        "TRUSTED_PROXY_HOPS",
        "1",
        "with TRUST_FORWARDED_FOR: proxies of yours appending to X-Forwarded-For",
    ),
    (
        "IPV6_THROTTLE_PREFIX",
        "64",
        "IPv6 clients are throttled per network of this prefix length",
    ),
    ("MAX_BODY_BYTES", "16384", "request body limit"),
    (
        "LOG_FORMAT",
        "text",
        "text or json (level: RUST_LOG, default info)",
    ),
    (
        "HTTP_HEADER_TIMEOUT_MS",
        "10000",
        "time to send a request header (and, on keep-alive, the next one)",
    ),
    (
        "HTTP_REQUEST_TIMEOUT_MS",
        "30000",
        "time from a request header to its response (408 for a slow body, 503 otherwise)",
    ),
    (
        "HTTP_IDLE_TIMEOUT_MS",
        "60000",
        "a connection with no bytes read or written for this long is closed",
    ),
    (
        "MAX_CONNECTIONS",
        "10000",
        "open connections; further ones wait to be accepted",
    ),
    (
        "HTTP2_MAX_STREAMS",
        "100",
        "concurrent streams per HTTP/2 connection",
    ),
    (
        "METRICS_ADDR",
        "-",
        "serve /metrics on this address only (production: set it, keep it private)",
    ),
    (
        "ALLOW_REDIS_EVICTION",
        "false",
        "start although Redis's maxmemory-policy is not noeviction",
    ),
    (
        "CONNECT_STATE_KEY",
        "-",
        "connected services: base64, >= 32 bytes, signs states (required with providers)",
    ),
    (
        "CONNECT_STATE_KEY_FILE",
        "-",
        "a file holding CONNECT_STATE_KEY",
    ),
    (
        "CONNECT_KEYS",
        "-",
        "id:base64key,... 32-byte keys encrypting provider tokens, first = current (required with providers)",
    ),
    ("CONNECT_KEYS_FILE", "-", "a file holding CONNECT_KEYS"),
    (
        "CONNECT_SUCCESS_URL",
        "-",
        "where the callback sends the browser after connecting (?provider=)",
    ),
    (
        "CONNECT_FAILURE_URL",
        "-",
        "where it sends the browser otherwise (?reason=&provider=)",
    ),
    (
        "CONNECT_STATE_TTL",
        "600",
        "seconds a user may take at the provider",
    ),
    (
        "CONNECT_PROVIDER_TIMEOUT_MS",
        "10000",
        "bound on every call to a provider",
    ),
    (
        "CONNECT_CA_FILE",
        "webpki roots",
        "PEM file of CA certificates trusted for provider calls, on top of the webpki roots",
    ),
    (
        "CONNECT_KEEPALIVE_INTERVAL",
        "300",
        "seconds between keep-alive passes",
    ),
    (
        "BROWSER_SESSION_TTL",
        "28800",
        "seconds a browser stays signed in at the authority",
    ),
    (
        "PASSWORD_GRANT",
        "enabled",
        "enabled or disabled: whether grant_type=password is accepted",
    ),
];

/// Prefix of the per-provider secret variables
/// (`CONNECT_PROVIDER_<NAME>_CLIENT_SECRET`).
const PROVIDER_SECRET_PREFIX: &str = "CONNECT_PROVIDER_";

impl Config {
    /// Loads the configuration from the process environment, over the TOML
    /// file at `file` when given. Every variable can also be given as
    /// `NAME_FILE`, the path of a file holding the value (for secrets such as
    /// a `REDIS_URL` with a password); it wins over `NAME`.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first invalid variable.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let (mut values, providers) = match file {
            Some(path) => read_toml(path)?,
            None => (BTreeMap::new(), Vec::new()),
        };
        for (name, _, _) in VARIABLES {
            if let Ok(value) = std::env::var(name) {
                values.insert((*name).to_owned(), value);
            }
            // NAME_FILE: the value is in a file (a Docker or Kubernetes
            // secret), so it needs to be in no environment and no image.
            let file_variable = format!("{name}_FILE");
            if let Some(path) = std::env::var_os(&file_variable) {
                let text = std::fs::read_to_string(&path).map_err(|error| {
                    ConfigError::new(
                        &file_variable,
                        format!("cannot read {}: {error}", Path::new(&path).display()),
                    )
                })?;
                values.insert(
                    (*name).to_owned(),
                    text.trim_end_matches(['\r', '\n']).to_owned(),
                );
            }
        }
        for (name, value) in std::env::vars() {
            if name.starts_with(PROVIDER_SECRET_PREFIX) {
                values.insert(name, value);
            }
        }
        Self::from_sources(&values, &providers)
    }

    /// Builds a configuration from `NAME → value` pairs (missing names take
    /// their defaults), without providers.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first invalid variable.
    pub fn from_values(values: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        Self::from_sources(values, &[])
    }

    /// Builds a configuration from `NAME → value` pairs and the
    /// `[[providers]]` tables of a configuration file.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first invalid variable or provider field.
    pub fn from_sources(
        values: &BTreeMap<String, String>,
        providers: &[toml::Table],
    ) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            values
                .get(name)
                .map(String::as_str)
                .filter(|v| !v.is_empty())
        };
        let listen_addr: SocketAddr =
            parse(get("LISTEN_ADDR"), "LISTEN_ADDR", "127.0.0.1:8080", |v| {
                v.parse()
                    .map_err(|_| "expected an IP address and port, like 127.0.0.1:8080".into())
            })?;
        let redis_topology = Topology::from_settings(get)
            .map_err(|error| ConfigError::new(error.variable, error.problem))?;
        let redis_tls = RedisTls::from_settings(get)
            .map_err(|error| ConfigError::new(error.variable, error.problem))?;
        if let Some(tls) = &redis_tls {
            tls.check_topology(&redis_topology)
                .map_err(|error| ConfigError::new(error.variable, error.problem))?;
        }
        let wait_replicas: u32 =
            number(get("REDIS_WAIT_REPLICAS"), "REDIS_WAIT_REPLICAS", 0, 0..=16)?;
        let wait_timeout = Duration::from_millis(number(
            get("REDIS_WAIT_TIMEOUT_MS"),
            "REDIS_WAIT_TIMEOUT_MS",
            500,
            1..=60_000,
        )?);
        let key_prefix = KeyPrefix::new(get("KEY_PREFIX").unwrap_or("ts:"))
            .map_err(|error| ConfigError::new("KEY_PREFIX", error.to_string()))?;
        let issuer = get("ISSUER").map(|issuer| issuer.trim_end_matches('/').to_owned());
        if issuer.as_deref().is_some_and(|issuer| {
            !(issuer.starts_with("http://") || issuer.starts_with("https://"))
        }) {
            return Err(ConfigError::new(
                "ISSUER",
                "expected an http:// or https:// URL",
            ));
        }
        let metrics_addr = get("METRICS_ADDR")
            .map(|text| {
                parse(Some(text), "METRICS_ADDR", "", |v| {
                    v.parse()
                        .map_err(|_| "expected an IP address and port, like 127.0.0.1:9090".into())
                })
            })
            .transpose()?;
        let http = http_limits(&get)?;
        let cpus = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        let config = Self {
            redis_topology,
            redis_tls,
            redis_wait: (wait_replicas > 0).then_some((wait_replicas, wait_timeout)),
            redis_pool_size: number(get("REDIS_POOL_SIZE"), "REDIS_POOL_SIZE", 16, 1..=1024)?,
            redis_timeout: Duration::from_millis(number(
                get("REDIS_TIMEOUT_MS"),
                "REDIS_TIMEOUT_MS",
                1000,
                10..=60_000,
            )?),
            max_sessions_per_subject: number(
                get("MAX_SESSIONS_PER_SUBJECT"),
                "MAX_SESSIONS_PER_SUBJECT",
                token_repository::DEFAULT_MAX_SESSIONS_PER_SUBJECT,
                1..=10_000,
            )?,
            key_prefix,
            listen_addr,
            issuer,
            access_token_ttl: seconds(
                get("ACCESS_TOKEN_TTL"),
                "ACCESS_TOKEN_TTL",
                900,
                1..=86_400,
            )?,
            refresh_token_ttl: seconds(
                get("REFRESH_TOKEN_TTL"),
                "REFRESH_TOKEN_TTL",
                1_209_600,
                60..=31_536_000,
            )?,
            argon2: Argon2Config {
                memory_kib: number(
                    get("ARGON2_MEMORY_KIB"),
                    "ARGON2_MEMORY_KIB",
                    19_456,
                    8..=4_194_304,
                )?,
                iterations: number(get("ARGON2_ITERATIONS"), "ARGON2_ITERATIONS", 2, 1..=100)?,
                parallelism: number(get("ARGON2_PARALLELISM"), "ARGON2_PARALLELISM", 1, 1..=64)?,
            },
            hash_workers: number(get("HASH_WORKERS"), "HASH_WORKERS", cpus, 1..=1024)?,
            hash_queue: number(get("HASH_QUEUE"), "HASH_QUEUE", 256, 0..=1_000_000)?,
            login_max_failures: number(
                get("LOGIN_MAX_FAILURES"),
                "LOGIN_MAX_FAILURES",
                5,
                1..=1_000_000,
            )?,
            address_max_failures: number(
                get("ADDRESS_MAX_FAILURES"),
                "ADDRESS_MAX_FAILURES",
                50,
                1..=1_000_000,
            )?,
            login_failure_window: seconds(
                get("LOGIN_FAILURE_WINDOW"),
                "LOGIN_FAILURE_WINDOW",
                900,
                1..=86_400,
            )?,
            trust_forwarded_for: boolean(get("TRUST_FORWARDED_FOR"), "TRUST_FORWARDED_FOR", false)?,
            trusted_proxy_hops: number(get("TRUSTED_PROXY_HOPS"), "TRUSTED_PROXY_HOPS", 1, 1..=16)?,
            ipv6_throttle_prefix: number(
                get("IPV6_THROTTLE_PREFIX"),
                "IPV6_THROTTLE_PREFIX",
                64,
                1..=128,
            )?,
            max_body_bytes: number(
                get("MAX_BODY_BYTES"),
                "MAX_BODY_BYTES",
                16_384,
                1024..=1_048_576,
            )?,
            log_format: match get("LOG_FORMAT").unwrap_or("text") {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => return Err(ConfigError::new("LOG_FORMAT", "expected `text` or `json`")),
            },
            http,
            metrics_addr,
            allow_redis_eviction: boolean(
                get("ALLOW_REDIS_EVICTION"),
                "ALLOW_REDIS_EVICTION",
                false,
            )?,
            connect: ConnectConfig::load(&|name| get(name).map(str::to_owned), providers)?,
            browser_session_ttl: seconds(
                get("BROWSER_SESSION_TTL"),
                "BROWSER_SESSION_TTL",
                28_800,
                60..=2_592_000,
            )?,
            password_grant: match get("PASSWORD_GRANT").unwrap_or("enabled") {
                "enabled" => true,
                "disabled" => false,
                _ => {
                    return Err(ConfigError::new(
                        "PASSWORD_GRANT",
                        "expected `enabled` or `disabled`",
                    ));
                }
            },
        };
        if config.refresh_token_ttl <= config.access_token_ttl {
            return Err(ConfigError::new(
                "REFRESH_TOKEN_TTL",
                "must be longer than ACCESS_TOKEN_TTL",
            ));
        }
        Ok(config)
    }

    /// The Redis store configuration.
    #[must_use]
    pub fn redis(&self) -> token_repository::RedisConfig {
        let mut config = token_repository::RedisConfig::with_topology(self.redis_topology.clone())
            .prefix(self.key_prefix.clone())
            .pool_size(self.redis_pool_size)
            .timeout(self.redis_timeout)
            .max_sessions_per_subject(self.max_sessions_per_subject);
        if let Some(tls) = &self.redis_tls {
            config = config.tls(tls.clone());
        }
        match self.redis_wait {
            Some((replicas, timeout)) => config.wait_for_replicas(replicas, timeout),
            None => config,
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("redis_topology", &self.redis_topology)
            .field("redis_tls", &self.redis_tls)
            .field("redis_wait", &self.redis_wait)
            .field("redis_pool_size", &self.redis_pool_size)
            .field("redis_timeout", &self.redis_timeout)
            .field("max_sessions_per_subject", &self.max_sessions_per_subject)
            .field("key_prefix", &self.key_prefix)
            .field("listen_addr", &self.listen_addr)
            .field("issuer", &self.issuer)
            .field("access_token_ttl", &self.access_token_ttl)
            .field("refresh_token_ttl", &self.refresh_token_ttl)
            .field("argon2", &self.argon2)
            .field("hash_workers", &self.hash_workers)
            .field("hash_queue", &self.hash_queue)
            .field("login_max_failures", &self.login_max_failures)
            .field("address_max_failures", &self.address_max_failures)
            .field("login_failure_window", &self.login_failure_window)
            .field("trust_forwarded_for", &self.trust_forwarded_for)
            .field("trusted_proxy_hops", &self.trusted_proxy_hops)
            .field("ipv6_throttle_prefix", &self.ipv6_throttle_prefix)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("browser_session_ttl", &self.browser_session_ttl)
            .field("password_grant", &self.password_grant)
            .field("log_format", &self.log_format)
            .field("http", &self.http)
            .field("metrics_addr", &self.metrics_addr)
            .field("allow_redis_eviction", &self.allow_redis_eviction)
            .field("connect", &self.connect)
            .finish()
    }
}

/// The `HTTP_*` timeouts and `MAX_CONNECTIONS`.
fn http_limits<'a>(get: &impl Fn(&str) -> Option<&'a str>) -> Result<HttpLimits, ConfigError> {
    let defaults = HttpLimits::default();
    let millis = |name: &str, default: Duration| -> Result<Duration, ConfigError> {
        let default = u64::try_from(default.as_millis()).unwrap_or(u64::MAX);
        number(get(name), name, default, 100..=3_600_000).map(Duration::from_millis)
    };
    let limits = HttpLimits {
        header_timeout: millis("HTTP_HEADER_TIMEOUT_MS", defaults.header_timeout)?,
        request_timeout: millis("HTTP_REQUEST_TIMEOUT_MS", defaults.request_timeout)?,
        idle_timeout: millis("HTTP_IDLE_TIMEOUT_MS", defaults.idle_timeout)?,
        max_connections: number(
            get("MAX_CONNECTIONS"),
            "MAX_CONNECTIONS",
            defaults.max_connections,
            1..=1_000_000,
        )?,
        http2_max_streams: number(
            get("HTTP2_MAX_STREAMS"),
            "HTTP2_MAX_STREAMS",
            defaults.http2_max_streams,
            1..=10_000,
        )?,
    };
    // A request in progress may read and write nothing for a while (a slow
    // Redis, a hash queue); it ends (answered or timed out) before the
    // connection counts as idle.
    if limits.idle_timeout < limits.request_timeout {
        return Err(ConfigError::new(
            "HTTP_IDLE_TIMEOUT_MS",
            "must not be shorter than HTTP_REQUEST_TIMEOUT_MS",
        ));
    }
    Ok(limits)
}

/// Reads a configuration file: `NAME → value` for the variables, and the
/// `[[providers]]` tables.
fn read_toml(path: &Path) -> Result<(BTreeMap<String, String>, Vec<toml::Table>), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        ConfigError::new(
            "--config",
            format!("cannot read {}: {error}", path.display()),
        )
    })?;
    let table: toml::Table = text.parse().map_err(|error| {
        ConfigError::new(
            "--config",
            format!("{} is not valid TOML: {error}", path.display()),
        )
    })?;
    let mut values = BTreeMap::new();
    let mut providers = Vec::new();
    for (key, value) in table {
        if key == "providers" {
            let toml::Value::Array(entries) = value else {
                return Err(ConfigError::new(
                    "providers",
                    "expected an array of tables ([[providers]])",
                ));
            };
            for entry in entries {
                let toml::Value::Table(table) = entry else {
                    return Err(ConfigError::new(
                        "providers",
                        "expected an array of tables ([[providers]])",
                    ));
                };
                providers.push(table);
            }
            continue;
        }
        let name = key.to_ascii_uppercase();
        if !VARIABLES.iter().any(|(known, _, _)| *known == name) {
            return Err(ConfigError::new(
                &key,
                format!(
                    "unknown setting in {} (known: the environment variable names, lower-case, \
                     and [[providers]])",
                    path.display()
                ),
            ));
        }
        let text = match value {
            toml::Value::String(text) => text,
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => {
                return Err(ConfigError::new(
                    &key,
                    "expected a string, integer or boolean",
                ));
            }
        };
        values.insert(name, text);
    }
    Ok((values, providers))
}

fn parse<T>(
    value: Option<&str>,
    name: &str,
    default: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    let text = value.unwrap_or(default);
    parse(text).map_err(|problem| ConfigError::new(name, format!("{problem} (got {text:?})")))
}

fn number<T>(
    value: Option<&str>,
    name: &str,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
{
    let Some(text) = value else {
        return Ok(default);
    };
    match text.trim().parse::<T>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(ConfigError::new(
            name,
            format!(
                "expected a whole number from {} to {} (got {text:?})",
                range.start(),
                range.end()
            ),
        )),
    }
}

fn seconds(
    value: Option<&str>,
    name: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Duration, ConfigError> {
    number(value, name, default, range).map(Duration::from_secs)
}

fn boolean(value: Option<&str>, name: &str, default: bool) -> Result<bool, ConfigError> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None => Ok(default),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some("false" | "0" | "no" | "off") => Ok(false),
        Some(other) => Err(ConfigError::new(
            name,
            format!("expected true or false (got {other:?})"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// With nothing set, the documented defaults apply.
    #[test]
    fn defaults() {
        let config = Config::from_values(&BTreeMap::new()).expect("defaults are valid");
        assert_eq!(
            config.redis_topology,
            Topology::Single {
                url: "redis://127.0.0.1:6379".into()
            }
        );
        assert_eq!(config.redis_wait, None);
        assert_eq!(config.listen_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(config.issuer, None);
        assert_eq!(config.access_token_ttl, Duration::from_secs(900));
        assert_eq!(config.argon2, Argon2Config::default());
        assert_eq!(config.key_prefix.as_str(), "ts:");
        assert_eq!(config.http, HttpLimits::default());
        assert_eq!(config.http.header_timeout, Duration::from_secs(10));
        assert_eq!(config.http.request_timeout, Duration::from_secs(30));
        assert_eq!(config.http.max_connections, 10_000);
        assert_eq!(config.metrics_addr, None);
        assert!(!config.allow_redis_eviction);
    }

    /// The HTTP limits and the metrics listener are configurable; an idle
    /// timeout shorter than the request timeout is refused.
    #[test]
    fn http_limits_and_metrics_address() {
        let config = Config::from_values(&values(&[
            ("HTTP_HEADER_TIMEOUT_MS", "2000"),
            ("HTTP_REQUEST_TIMEOUT_MS", "5000"),
            ("HTTP_IDLE_TIMEOUT_MS", "7000"),
            ("MAX_CONNECTIONS", "12"),
            ("HTTP2_MAX_STREAMS", "8"),
            ("METRICS_ADDR", "127.0.0.1:0"),
            ("ALLOW_REDIS_EVICTION", "true"),
        ]))
        .expect("valid");
        assert_eq!(config.http.header_timeout, Duration::from_secs(2));
        assert_eq!(config.http.request_timeout, Duration::from_secs(5));
        assert_eq!(config.http.idle_timeout, Duration::from_secs(7));
        assert_eq!(config.http.max_connections, 12);
        assert_eq!(config.http.http2_max_streams, 8);
        assert_eq!(
            config.metrics_addr.map(|addr| addr.to_string()).as_deref(),
            Some("127.0.0.1:0")
        );
        assert!(config.allow_redis_eviction);
        let error = Config::from_values(&values(&[("HTTP_IDLE_TIMEOUT_MS", "1000")])).unwrap_err();
        assert_eq!(error.variable, "HTTP_IDLE_TIMEOUT_MS");
        let error = Config::from_values(&values(&[("MAX_CONNECTIONS", "0")])).unwrap_err();
        assert_eq!(error.variable, "MAX_CONNECTIONS");
        let error = Config::from_values(&values(&[("METRICS_ADDR", "metrics")])).unwrap_err();
        assert_eq!(error.variable, "METRICS_ADDR");
    }

    /// Errors name the variable and the expected form.
    #[test]
    fn errors_name_the_variable() {
        let error = Config::from_values(&values(&[("ACCESS_TOKEN_TTL", "soon")])).unwrap_err();
        assert_eq!(error.variable, "ACCESS_TOKEN_TTL");
        assert!(error.problem.contains("whole number"), "{error}");
        let error = Config::from_values(&values(&[("LISTEN_ADDR", "localhost")])).unwrap_err();
        assert_eq!(error.variable, "LISTEN_ADDR");
        let error = Config::from_values(&values(&[("KEY_PREFIX", "a{b")])).unwrap_err();
        assert_eq!(error.variable, "KEY_PREFIX");
        let error = Config::from_values(&values(&[("REDIS_URL", "http://x")])).unwrap_err();
        assert_eq!(error.variable, "REDIS_URL");
        let error = Config::from_values(&values(&[
            ("ACCESS_TOKEN_TTL", "3600"),
            ("REFRESH_TOKEN_TTL", "600"),
        ]))
        .unwrap_err();
        assert_eq!(error.variable, "REFRESH_TOKEN_TTL");
    }

    /// A TOML file supplies values; unknown keys are refused (typos).
    #[test]
    fn toml_file() {
        let dir = std::env::temp_dir().join(format!("authority-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("config.toml");
        std::fs::write(&path, "access_token_ttl = 60\nkey_prefix = \"x:\"\n").expect("write");
        let (values, providers) = read_toml(&path).expect("valid");
        assert!(providers.is_empty());
        assert_eq!(
            values.get("ACCESS_TOKEN_TTL").map(String::as_str),
            Some("60")
        );
        let config = Config::from_values(&values).expect("valid");
        assert_eq!(config.access_token_ttl, Duration::from_secs(60));
        std::fs::write(&path, "acess_token_ttl = 60\n").expect("write");
        assert_eq!(read_toml(&path).unwrap_err().variable, "acess_token_ttl");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The file's `[[providers]]` tables configure connected services; the
    /// keys they need are named when missing, duplicate names are refused.
    #[test]
    fn providers_in_the_file() {
        let dir = std::env::temp_dir().join(format!("authority-providers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("config.toml");
        let provider = "[[providers]]\nname = \"orcid\"\nissuer = \"http://127.0.0.1:9\"\nclient_id = \"c\"\nclient_secret = \"s\"\n";
        let settings = "connect_state_key = \"c3RhdGUta2V5LXN0YXRlLWtleS1zdGF0ZS1rZXktc3RhdGU=\"\n\
            connect_keys = \"k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\"\n\
            connect_success_url = \"/ok\"\nconnect_failure_url = \"/failed\"\n";
        std::fs::write(&path, format!("{settings}{provider}")).expect("write");
        let (values, providers) = read_toml(&path).expect("valid");
        let config = Config::from_sources(&values, &providers).expect("valid");
        assert_eq!(config.connect.providers[0].name, "orcid");
        std::fs::write(&path, format!("{settings}{provider}{provider}")).expect("write");
        let (values, providers) = read_toml(&path).expect("valid");
        let error = Config::from_sources(&values, &providers).unwrap_err();
        assert_eq!(error.variable, "providers[1].name");
        std::fs::write(&path, provider).expect("write");
        let (values, providers) = read_toml(&path).expect("valid");
        let error = Config::from_sources(&values, &providers).unwrap_err();
        assert_eq!(error.variable, "CONNECT_STATE_KEY");
        std::fs::write(&path, "providers = 1\n").expect("write");
        assert_eq!(read_toml(&path).unwrap_err().variable, "providers");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// `REDIS_CA_FILE` and the client certificate: a file that cannot be
    /// read or holds no PEM certificate, half a client certificate, or TLS
    /// material without a `rediss://` REDIS_URL is refused, naming the
    /// variable; a good set reaches the store configuration.
    #[test]
    fn redis_tls_settings() {
        let dir = std::env::temp_dir().join(format!("authority-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let certificates =
            token_test_harness::TestCertificates::generate(&dir).expect("certificates");
        let path = |path: &Path| path.to_str().expect("utf-8").to_owned();
        let ca = path(&certificates.ca_cert);
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").expect("write");
        let tls_url = ("REDIS_URL", "rediss://127.0.0.1:6380/");
        let refused = |pairs: &[(&str, &str)]| {
            Config::from_values(&values(pairs))
                .expect_err("refused")
                .variable
        };
        assert_eq!(
            refused(&[tls_url, ("REDIS_CA_FILE", "/nonexistent/ca.pem")]),
            "REDIS_CA_FILE"
        );
        assert_eq!(
            refused(&[tls_url, ("REDIS_CA_FILE", &path(&garbage))]),
            "REDIS_CA_FILE"
        );
        assert_eq!(
            refused(&[("REDIS_CA_FILE", &ca)]),
            "REDIS_CA_FILE",
            "plain redis:// with a CA"
        );
        assert_eq!(
            refused(&[
                ("REDIS_CLUSTER_URLS", "rediss://127.0.0.1:7000"),
                ("REDIS_CA_FILE", &ca)
            ]),
            "REDIS_CA_FILE"
        );
        assert_eq!(
            refused(&[
                tls_url,
                ("REDIS_CLIENT_CERT_FILE", &path(&certificates.client_cert))
            ]),
            "REDIS_CLIENT_KEY_FILE"
        );
        assert_eq!(
            refused(&[
                tls_url,
                ("REDIS_CLIENT_CERT_FILE", &path(&certificates.client_cert)),
                ("REDIS_CLIENT_KEY_FILE", &path(&garbage)),
            ]),
            "REDIS_CLIENT_KEY_FILE"
        );
        let config = Config::from_values(&values(&[
            tls_url,
            ("REDIS_CA_FILE", &ca),
            ("REDIS_CLIENT_CERT_FILE", &path(&certificates.client_cert)),
            ("REDIS_CLIENT_KEY_FILE", &path(&certificates.client_key)),
        ]))
        .expect("valid");
        let redis = config.redis();
        let tls = redis.tls_certificates().expect("TLS material");
        assert!(tls.root_cert.is_some() && tls.client_tls.is_some());
        let shown = format!("{config:?}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The README's configuration table names every variable.
    #[test]
    fn readme_lists_every_variable() {
        let readme = include_str!("../../README.md");
        for (name, _, _) in VARIABLES {
            assert!(
                readme.contains(&format!("`{name}`")),
                "README.md does not document {name}"
            );
        }
    }

    /// Cluster and Sentinel configurations; one topology at a time; the
    /// Sentinel master name is required; WAIT is off unless asked for.
    #[test]
    fn redis_topologies() {
        let cluster = Config::from_values(&values(&[(
            "REDIS_CLUSTER_URLS",
            "redis://10.0.0.1:7000, redis://10.0.0.2:7000",
        )]))
        .expect("valid");
        assert_eq!(
            cluster.redis_topology,
            Topology::Cluster {
                urls: vec![
                    "redis://10.0.0.1:7000".into(),
                    "redis://10.0.0.2:7000".into()
                ]
            }
        );
        let sentinel = Config::from_values(&values(&[
            ("REDIS_SENTINEL_URLS", "redis://s1:26379,redis://s2:26379"),
            ("REDIS_SENTINEL_MASTER", "tokens"),
            ("REDIS_SENTINEL_PASSWORD", "node-secret"),
            ("REDIS_WAIT_REPLICAS", "1"),
        ]))
        .expect("valid");
        assert!(
            matches!(sentinel.redis_topology, Topology::Sentinel { ref master, .. } if master == "tokens")
        );
        assert_eq!(sentinel.redis_wait, Some((1, Duration::from_millis(500))));
        assert!(!format!("{sentinel:?}").contains("node-secret"));
        let error = Config::from_values(&values(&[("REDIS_SENTINEL_URLS", "redis://s1:26379")]))
            .unwrap_err();
        assert_eq!(error.variable, "REDIS_SENTINEL_MASTER");
        let error = Config::from_values(&values(&[
            ("REDIS_URL", "redis://a"),
            ("REDIS_CLUSTER_URLS", "redis://b"),
        ]))
        .unwrap_err();
        assert_eq!(error.variable, "REDIS_CLUSTER_URLS");
        let error =
            Config::from_values(&values(&[("REDIS_CLUSTER_URLS", "http://b")])).unwrap_err();
        assert_eq!(error.variable, "REDIS_CLUSTER_URLS");
    }

    /// Debug never shows the Redis password.
    #[test]
    fn debug_redacts_the_redis_password() {
        let config = Config::from_values(&values(&[(
            "REDIS_URL",
            "redis://authority:hunter2@db:6379",
        )]))
        .expect("valid");
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}

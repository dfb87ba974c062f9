//! The authority's configuration: one typed struct, loaded once from the
//! environment and an optional TOML file (the environment wins), validated at
//! start-up with errors that name the variable and the expected form.
//!
//! Every setting is declared once, in [`settings`] (the broker's
//! `CONNECT_*` in [`token_broker::settings`]): its name, default, bounds and
//! help. Parsing reads the declarations ([`token_settings::Values`]),
//! `--help` prints them ([`all_settings`]), and a test compares the
//! README's configuration table with them.
//!
//! # Layout
//!
//! - [`settings`]: the authority's settings table.
//! - `sources`: the environment, `NAME_FILE` and the TOML file.
//! - this module: [`Config`] and its parts, parsed from those values.

pub mod settings;
mod sources;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use token_broker::ConnectConfig;
use token_repository::redis::Topology;
use token_repository::{KeyPrefix, MAX_AUDIENCE, RedisTls, ResourceUri};
pub use token_settings::ConfigError;
use token_settings::{Setting, Values};

use self::settings as s;

/// Every setting: the authority's ([`settings::AUTHORITY`]), then the
/// broker's (`CONNECT_*`, [`token_broker::settings::SETTINGS`]).
pub fn all_settings() -> impl Iterator<Item = &'static Setting> + Clone {
    s::AUTHORITY.iter().chain(token_broker::settings::SETTINGS)
}

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
    /// `DEFAULT_AUDIENCE`: the audience of tokens requested without
    /// `resource`; `None`: the authority itself.
    pub default_audience: Option<Vec<ResourceUri>>,
    /// `ACCESS_TOKEN_TTL`: access token lifetime.
    pub access_token_ttl: Duration,
    /// `REFRESH_TOKEN_TTL`: refresh token lifetime (sliding: every
    /// rotation starts a new one).
    pub refresh_token_ttl: Duration,
    /// `ARGON2_MEMORY_KIB`, `ARGON2_ITERATIONS`, `ARGON2_PARALLELISM`.
    pub argon2: Argon2Config,
    /// `HASH_WORKERS`: password hashes computed at once (blocking threads).
    pub hash_workers: usize,
    /// `WORKER_THREADS`: the async runtime's worker threads (request
    /// handling; hashing has its own `HASH_WORKERS` threads).
    pub worker_threads: usize,
    /// `HASH_QUEUE`: logins allowed to wait for a hashing worker before the
    /// authority answers 503 (bounds memory under a login flood).
    pub hash_queue: usize,
    /// `LOGIN_MAX_FAILURES`: failed logins per username per window.
    pub login_max_failures: u32,
    /// `ADDRESS_MAX_FAILURES`: failed logins per client address per window.
    pub address_max_failures: u32,
    /// `LOGIN_FAILURE_WINDOW`: the throttling window.
    pub login_failure_window: Duration,
    /// `INTROSPECTION_CACHE`: tokens, verified clients and resource URIs
    /// answered from memory, invalidated by Redis tracking
    /// ([`crate::tracked`]).
    pub introspection_cache: bool,
    /// `INTROSPECTION_CACHE_CLIENTS`: the most verified clients kept.
    pub introspection_cache_clients: usize,
    /// `INTROSPECTION_CACHE_USERS`: the most user records kept for refresh
    /// rotations (0: none).
    pub introspection_cache_users: usize,
    /// `ROTATION_CACHE_SESSIONS`: the most sessions held after their
    /// rotation here ([`crate::rotated`]; 0: none).
    pub rotation_cache_sessions: usize,
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

impl Argon2Config {
    /// `ARGON2_*` from `values`.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the variable.
    pub fn from_values(values: &Values<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            memory_kib: values.number(&s::ARGON2_MEMORY_KIB)?,
            iterations: values.number(&s::ARGON2_ITERATIONS)?,
            parallelism: values.number(&s::ARGON2_PARALLELISM)?,
        })
    }
}

impl Default for Argon2Config {
    /// The declared defaults: OWASP's recommendation, which is also
    /// RustCrypto's default.
    fn default() -> Self {
        Self::from_values(&Values::new(&BTreeMap::new())).expect("the declared defaults are valid")
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

impl HttpLimits {
    /// The `HTTP_*` timeouts and `MAX_CONNECTIONS` from `values`.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the variable; an idle timeout shorter than
    /// the request timeout is refused.
    pub fn from_values(values: &Values<'_>) -> Result<Self, ConfigError> {
        let limits = Self {
            header_timeout: values.millis(&s::HTTP_HEADER_TIMEOUT_MS)?,
            request_timeout: values.millis(&s::HTTP_REQUEST_TIMEOUT_MS)?,
            idle_timeout: values.millis(&s::HTTP_IDLE_TIMEOUT_MS)?,
            max_connections: values.number(&s::MAX_CONNECTIONS)?,
            http2_max_streams: values.number(&s::HTTP2_MAX_STREAMS)?,
        };
        // A request in progress may read and write nothing for a while (a
        // slow Redis, a hash queue); it ends (answered or timed out) before
        // the connection counts as idle.
        if limits.idle_timeout < limits.request_timeout {
            return Err(ConfigError::new(
                s::HTTP_IDLE_TIMEOUT_MS.name,
                "must not be shorter than HTTP_REQUEST_TIMEOUT_MS",
            ));
        }
        Ok(limits)
    }
}

impl Default for HttpLimits {
    /// The declared defaults.
    fn default() -> Self {
        Self::from_values(&Values::new(&BTreeMap::new())).expect("the declared defaults are valid")
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
        let (values, providers) = sources::gather(file)?;
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
        let values = Values::new(values);
        let listen_addr: SocketAddr = values.parse(&s::LISTEN_ADDR, |text| {
            text.parse()
                .map_err(|_| "expected an IP address and port, like 127.0.0.1:8080".into())
        })?;
        let (redis_topology, redis_tls) = redis_location(&values)?;
        let wait_replicas: u32 = values.number(&s::REDIS_WAIT_REPLICAS)?;
        let wait_timeout = values.millis(&s::REDIS_WAIT_TIMEOUT_MS)?;
        let key_prefix = KeyPrefix::new(values.text(&s::KEY_PREFIX).unwrap_or_default())
            .map_err(|error| ConfigError::new(s::KEY_PREFIX.name, error.to_string()))?;
        let issuer = values
            .get(s::ISSUER.name)
            .map(|issuer| issuer.trim_end_matches('/').to_owned());
        if issuer.as_deref().is_some_and(|issuer| {
            !(issuer.starts_with("http://") || issuer.starts_with("https://"))
        }) {
            return Err(ConfigError::new(
                s::ISSUER.name,
                "expected an http:// or https:// URL",
            ));
        }
        let default_audience = values
            .get(s::DEFAULT_AUDIENCE.name)
            .map(parse_audience)
            .transpose()
            .map_err(|error| ConfigError::new(s::DEFAULT_AUDIENCE.name, error))?;
        let metrics_addr = values.parse_optional(&s::METRICS_ADDR, |text| {
            text.parse()
                .map_err(|_| "expected an IP address and port, like 127.0.0.1:9090".into())
        })?;
        let http = HttpLimits::from_values(&values)?;
        let cpus = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        let config = Self {
            redis_topology,
            redis_tls,
            redis_wait: (wait_replicas > 0).then_some((wait_replicas, wait_timeout)),
            redis_pool_size: values.number(&s::REDIS_POOL_SIZE)?,
            redis_timeout: values.millis(&s::REDIS_TIMEOUT_MS)?,
            max_sessions_per_subject: values.number(&s::MAX_SESSIONS_PER_SUBJECT)?,
            key_prefix,
            listen_addr,
            issuer,
            default_audience,
            access_token_ttl: values.seconds(&s::ACCESS_TOKEN_TTL)?,
            refresh_token_ttl: values.seconds(&s::REFRESH_TOKEN_TTL)?,
            argon2: Argon2Config::from_values(&values)?,
            hash_workers: values
                .number_computed(&s::HASH_WORKERS, u64::try_from(cpus).unwrap_or(u64::MAX))?,
            worker_threads: values
                .number_computed(&s::WORKER_THREADS, u64::try_from(cpus).unwrap_or(u64::MAX))?,
            hash_queue: values.number(&s::HASH_QUEUE)?,
            login_max_failures: values.number(&s::LOGIN_MAX_FAILURES)?,
            address_max_failures: values.number(&s::ADDRESS_MAX_FAILURES)?,
            login_failure_window: values.seconds(&s::LOGIN_FAILURE_WINDOW)?,
            introspection_cache: values.flag(&s::INTROSPECTION_CACHE)?,
            introspection_cache_clients: values.number(&s::INTROSPECTION_CACHE_CLIENTS)?,
            introspection_cache_users: values.number(&s::INTROSPECTION_CACHE_USERS)?,
            rotation_cache_sessions: values.number(&s::ROTATION_CACHE_SESSIONS)?,
            trust_forwarded_for: values.flag(&s::TRUST_FORWARDED_FOR)?,
            trusted_proxy_hops: values.number(&s::TRUSTED_PROXY_HOPS)?,
            ipv6_throttle_prefix: values.number(&s::IPV6_THROTTLE_PREFIX)?,
            max_body_bytes: values.number(&s::MAX_BODY_BYTES)?,
            log_format: match values.choice(&s::LOG_FORMAT)? {
                "json" => LogFormat::Json,
                _ => LogFormat::Text,
            },
            http,
            metrics_addr,
            allow_redis_eviction: values.flag(&s::ALLOW_REDIS_EVICTION)?,
            connect: ConnectConfig::load(&values, providers)?,
            browser_session_ttl: values.seconds(&s::BROWSER_SESSION_TTL)?,
            password_grant: values.choice(&s::PASSWORD_GRANT)? == "enabled",
        };
        if config.refresh_token_ttl <= config.access_token_ttl {
            return Err(ConfigError::new(
                s::REFRESH_TOKEN_TTL.name,
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
            .field("default_audience", &self.default_audience)
            .field("access_token_ttl", &self.access_token_ttl)
            .field("refresh_token_ttl", &self.refresh_token_ttl)
            .field("argon2", &self.argon2)
            .field("hash_workers", &self.hash_workers)
            .field("worker_threads", &self.worker_threads)
            .field("hash_queue", &self.hash_queue)
            .field("login_max_failures", &self.login_max_failures)
            .field("address_max_failures", &self.address_max_failures)
            .field("login_failure_window", &self.login_failure_window)
            .field("introspection_cache", &self.introspection_cache)
            .field(
                "introspection_cache_clients",
                &self.introspection_cache_clients,
            )
            .field("introspection_cache_users", &self.introspection_cache_users)
            .field("rotation_cache_sessions", &self.rotation_cache_sessions)
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

/// `DEFAULT_AUDIENCE`: comma-separated resource URIs (1 to
/// [`MAX_AUDIENCE`]); whether they are registered is checked at start-up.
fn parse_audience(text: &str) -> Result<Vec<ResourceUri>, String> {
    let mut resources = Vec::new();
    for entry in text
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
    {
        let resource = ResourceUri::parse(entry).map_err(|error| format!("{entry:?}: {error}"))?;
        if !resources
            .iter()
            .any(|seen: &ResourceUri| seen.tag() == resource.tag())
        {
            resources.push(resource);
        }
    }
    if resources.is_empty() || resources.len() > MAX_AUDIENCE {
        return Err(format!(
            "expected 1 to {MAX_AUDIENCE} resource URIs, comma-separated"
        ));
    }
    Ok(resources)
}

/// Where Redis is and how to reach it over TLS: the repository reads these
/// settings (`REDIS_URL`, `REDIS_CLUSTER_URLS`, `REDIS_SENTINEL_*`,
/// `REDIS_CA_FILE`, `REDIS_CLIENT_*`).
fn redis_location(values: &Values<'_>) -> Result<(Topology, Option<RedisTls>), ConfigError> {
    let get = |name: &str| values.get(name);
    let topology = Topology::from_settings(get)
        .map_err(|error| ConfigError::new(error.variable, error.problem))?;
    let tls = RedisTls::from_settings(get)
        .map_err(|error| ConfigError::new(error.variable, error.problem))?;
    if let Some(tls) = &tls {
        tls.check_topology(&topology)
            .map_err(|error| ConfigError::new(error.variable, error.problem))?;
    }
    Ok((topology, tls))
}

#[cfg(test)]
mod tests {
    use super::sources::read_toml;
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

    /// `WORKER_THREADS` defaults to the CPU count, like `HASH_WORKERS`;
    /// zero threads would serve nothing and is refused.
    #[test]
    fn worker_threads() {
        let cpus = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        let config = Config::from_values(&BTreeMap::new()).expect("defaults are valid");
        assert_eq!(config.worker_threads, cpus);
        let config = Config::from_values(&values(&[("WORKER_THREADS", "3")])).expect("valid");
        assert_eq!(config.worker_threads, 3);
        let error = Config::from_values(&values(&[("WORKER_THREADS", "0")])).unwrap_err();
        assert_eq!(error.variable, "WORKER_THREADS");
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

    /// The README's configuration table and the settings tables agree:
    /// every setting has a row showing its declared default, and every row
    /// names settings (or the per-provider secret variables).
    #[test]
    fn readme_table_matches_the_settings() {
        let readme = include_str!("../../../README.md");
        let rows = readme
            .split("### Configuration")
            .nth(1)
            .expect("a Configuration section")
            .lines()
            .skip_while(|line| !line.starts_with("| variable | default |"))
            .skip(2)
            .take_while(|line| line.starts_with('|'));
        let mut documented = BTreeMap::new();
        for row in rows {
            let mut cells = row.trim_start_matches('|').split(" | ");
            let (names, default) = (cells.next().unwrap_or_default(), cells.next());
            for name in names.split('`').skip(1).step_by(2) {
                let earlier = documented.insert(name.to_owned(), default.map(str::trim));
                assert!(earlier.is_none(), "README.md lists {name} twice");
            }
        }
        for setting in all_settings() {
            let shown = setting.markdown_default();
            assert_eq!(
                documented.remove(setting.name),
                Some(Some(shown.as_str())),
                "README.md's row of {} (default {shown})",
                setting.name
            );
        }
        documented.retain(|name, _| !name.contains('<'));
        assert!(
            documented.is_empty(),
            "README.md documents what is not a setting: {documented:?}"
        );
    }

    /// Every setting is declared once, and the repository's own default
    /// Redis URL is the one declared.
    #[test]
    fn settings_declared_once() {
        let mut names: Vec<&str> = all_settings().map(|setting| setting.name).collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "a setting is declared twice");
        assert_eq!(
            Topology::from_settings(|_| None).expect("the default topology"),
            Topology::Single {
                url: s::REDIS_URL.default_value().expect("a default URL")
            }
        );
        let help: Vec<String> = all_settings().map(Setting::help_line).collect();
        assert!(help.iter().any(|line| line.contains("CONNECT_STATE_TTL")));
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

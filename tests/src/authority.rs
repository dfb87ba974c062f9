//! A real `token-authority` process for a test.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use token_test_harness::RedisServer;

use crate::process::ServiceProcess;
use crate::redis_admin::command_calls_cli;

/// Cheap argon2 parameters: tests check behaviour, not hashing cost.
pub const FAST_ARGON2: &[(&str, &str)] =
    &[("ARGON2_MEMORY_KIB", "256"), ("ARGON2_ITERATIONS", "1")];

/// A running authority on a free port, talking to a harness Redis; killed
/// when dropped.
#[derive(Debug)]
pub struct Authority {
    process: ServiceProcess,
    binary: PathBuf,
    env: Vec<(String, String)>,
    /// Arguments before the subcommand (`--config FILE`).
    global_args: Vec<String>,
    /// An HTTP client for it.
    pub http: reqwest::Client,
}

impl Authority {
    /// The environment a test authority runs with: the harness Redis, a free
    /// port, short Redis timeouts, cheap hashing, then `extra` (which wins).
    #[must_use]
    pub fn environment(redis_url: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            ("REDIS_URL", redis_url),
            ("LISTEN_ADDR", "127.0.0.1:0"),
            ("REDIS_TIMEOUT_MS", "500"),
        ]
        .iter()
        .chain(FAST_ARGON2)
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        for (name, value) in extra {
            env.retain(|(existing, _)| existing != name);
            env.push(((*name).to_owned(), (*value).to_owned()));
        }
        env
    }

    /// Starts the authority binary `binary` against `redis`.
    ///
    /// # Panics
    ///
    /// When it does not start.
    #[must_use]
    pub fn start(binary: &str, redis: &RedisServer, extra: &[(&str, &str)]) -> Self {
        Self::start_with_url(binary, &redis.url(), extra)
    }

    /// Starts the authority against the Redis at `redis_url` (for ACL users).
    ///
    /// # Panics
    ///
    /// When it does not start.
    #[must_use]
    pub fn start_with_url(binary: &str, redis_url: &str, extra: &[(&str, &str)]) -> Self {
        Self::start_with_config(binary, redis_url, extra, None)
    }

    /// Starts the authority against the Redis at `redis_url` with the
    /// configuration file `config` (`--config`, also given to [`Self::cli`]).
    ///
    /// # Panics
    ///
    /// When it does not start.
    #[must_use]
    pub fn start_with_config(
        binary: &str,
        redis_url: &str,
        extra: &[(&str, &str)],
        config: Option<&Path>,
    ) -> Self {
        let binary = PathBuf::from(binary);
        let env = Self::environment(redis_url, extra);
        let env_refs: Vec<(&str, &str)> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let global_args: Vec<String> = config
            .map(|path| vec!["--config".to_owned(), path.display().to_string()])
            .unwrap_or_default();
        let mut args: Vec<&str> = global_args.iter().map(String::as_str).collect();
        args.push("serve");
        let process = ServiceProcess::start_with_args(&binary, &args, &env_refs);
        // reqwest brings no rustls crypto provider of its own (ring is ours).
        token_repository::redis::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("http client");
        Self {
            process,
            binary,
            env,
            global_args,
            http,
        }
    }

    /// `http://127.0.0.1:<port>` followed by `path`.
    #[must_use]
    pub fn url(&self, path: &str) -> String {
        self.process.url(path)
    }

    /// The authority's log so far.
    #[must_use]
    pub fn logs(&self) -> String {
        self.process.stderr()
    }

    /// Whether the authority logs a line holding all of `parts` within a
    /// few seconds. A line can arrive a moment after the response it
    /// belongs to: a busy worker writes its lines in batches when it goes
    /// idle, and another thread of this process reads the pipe.
    #[must_use]
    pub fn logged(&self, parts: &[&str]) -> bool {
        token_test_harness::wait_until(Duration::from_secs(5), || {
            self.logs()
                .lines()
                .any(|line| parts.iter().all(|part| line.contains(part)))
                .then_some(())
        })
        .is_some()
    }

    /// The process, for signals.
    pub fn process(&mut self) -> &mut ServiceProcess {
        &mut self.process
    }

    /// Runs the binary's CLI (`user …`, `client …`) with the same
    /// configuration, feeding `stdin`.
    ///
    /// # Panics
    ///
    /// When it cannot be run.
    #[must_use]
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut all: Vec<&str> = self.global_args.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        run_cli(&self.binary, &self.env, &all, stdin)
    }

    /// The environment it runs with.
    #[must_use]
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// Creates a user through the CLI.
    ///
    /// # Panics
    ///
    /// When the CLI fails.
    pub fn add_user(&self, username: &str, password: &str, scopes: &[&str]) {
        let mut args = vec![
            "user",
            "add",
            username,
            "--password-stdin",
            "--name",
            "Test User",
            "--email",
        ];
        let email = format!("{username}@example.com");
        args.push(&email);
        for scope in scopes {
            args.extend(["--scope", scope]);
        }
        let output = self.cli(&args, Some(&format!("{password}\n")));
        assert!(
            output.status.success(),
            "user add failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Registers a client through the CLI; answers its secret.
    ///
    /// # Panics
    ///
    /// When the CLI fails.
    #[must_use]
    pub fn add_client(&self, client_id: &str, scopes: &[&str], introspect: bool) -> String {
        let mut args = vec![];
        if introspect {
            args.push("--introspect");
        }
        self.add_client_with(client_id, scopes, &args)
    }

    /// Registers a client through the CLI with extra `client add` options
    /// (`--view-access-tokens`, `--allow-ip CIDR`); answers its secret.
    ///
    /// # Panics
    ///
    /// When the CLI fails.
    #[must_use]
    pub fn add_client_with(&self, client_id: &str, scopes: &[&str], options: &[&str]) -> String {
        let mut args = vec!["client", "add", client_id];
        for scope in scopes {
            args.extend(["--scope", scope]);
        }
        args.extend_from_slice(options);
        let output = self.cli(&args, None);
        assert!(
            output.status.success(),
            "client add failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .find_map(|line| line.strip_prefix("client_secret: "))
            .expect("the CLI prints the secret")
            .to_owned()
    }

    /// `POST /oauth/token` with `form`.
    ///
    /// # Panics
    ///
    /// On transport errors.
    pub async fn token(&self, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(self.url("/oauth/token"))
            .form(form)
            .send()
            .await
            .expect("token request")
    }

    /// Logs in with the password grant and answers the token response.
    ///
    /// # Panics
    ///
    /// Unless the login succeeds.
    pub async fn login(&self, username: &str, password: &str) -> Value {
        let response = self
            .token(&[
                ("grant_type", "password"),
                ("username", username),
                ("password", password),
            ])
            .await;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert_eq!(
            status,
            200,
            "login of {username} failed: {body}\n{}",
            self.logs()
        );
        serde_json::from_str(&body).expect("token json")
    }

    /// `GET path` with a bearer token.
    ///
    /// # Panics
    ///
    /// On transport errors.
    pub async fn get_with(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    /// The text of `GET /metrics` (Prometheus exposition).
    ///
    /// # Panics
    ///
    /// On transport errors.
    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// The value of one series of `GET /metrics`: `name{labels}` (labels
    /// as exposed, e.g. `result="hit"`; empty for none); 0 when absent.
    ///
    /// # Panics
    ///
    /// On transport errors.
    pub async fn metric(&self, name: &str, labels: &str) -> f64 {
        let text = self.metrics().await;
        let series = if labels.is_empty() {
            format!("{name} ")
        } else {
            format!("{name}{{{labels}}} ")
        };
        text.lines()
            .find_map(|line| line.strip_prefix(&series))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Rotates `refresh` `n` (> 0) times, each answer's refresh token the
    /// next one presented; answers the last response and how many `GET`s
    /// `redis` ran meanwhile (`INFO commandstats`).
    ///
    /// # Panics
    ///
    /// When a rotation is refused.
    pub async fn rotations(&self, redis: &RedisServer, refresh: String, n: u64) -> (Value, u64) {
        let before = command_calls_cli(redis, "get");
        let mut last = Value::Null;
        let mut refresh = refresh;
        for _ in 0..n {
            let (status, body) = self.rotate(&refresh).await;
            assert_eq!(status, 200, "{body}");
            body["refresh_token"]
                .as_str()
                .expect("a refresh token")
                .clone_into(&mut refresh);
            last = body;
        }
        (last, command_calls_cli(redis, "get") - before)
    }

    /// Presents `refresh` to the `refresh_token` grant (no client): the
    /// status and the JSON body (`null` when there is none).
    ///
    /// # Panics
    ///
    /// On transport errors.
    pub async fn rotate(&self, refresh: &str) -> (u16, Value) {
        let response = self
            .token(&[("grant_type", "refresh_token"), ("refresh_token", refresh)])
            .await;
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// Runs the authority CLI `binary` with `env`.
///
/// # Panics
///
/// When it cannot be run.
#[must_use]
pub fn run_cli(
    binary: &Path,
    env: &[(String, String)],
    args: &[&str],
    stdin: Option<&str>,
) -> Output {
    let mut command = Command::new(binary);
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("run the authority CLI");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    child.wait_with_output().expect("CLI output")
}

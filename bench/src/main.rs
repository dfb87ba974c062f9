//! `token-bench`: the token service's benchmark harness.
//!
//! Every figure is measured side by side with its baseline in the same run
//! (these machines are shared and noisy), on loopback, each measurement
//! bounded in time and request count. The harness starts and stops every
//! process it uses: private `redis-server`s (through `token-test-harness`),
//! the authority binary, and the services under test on runtimes of their
//! own. It prints a Markdown table and writes it, with a JSON twin, to
//! `bench/results/` (or `--out`). See `bench/README.md`.
//!
//! # Layout
//!
//! - `load`: the load generator (HTTP and Redis), HDR latency histograms.
//! - `server`: servers under test on their own runtimes; CPU accounting.
//! - `apps`: the axum services under test (unprotected, `TokenAuthLayer`
//!   uncached / cached, `tower-sessions`, JWT).
//! - `fixtures`: realistic users, tokens, sessions and JWTs.
//! - `authority`: the authority binary as a child process.
//! - `validation`: rows 1–3. `revocation`: row 4. `login`: row 5.
//!   `rotation`: row 6. `footprint`: row 7. `http_path`: rows H1–H4
//!   (the HTTP path against nginx).
//! - `report`: the table, Markdown and JSON.

mod apps;
mod authority;
mod fixtures;
mod footprint;
mod http_path;
mod load;
mod login;
mod report;
mod revocation;
mod rotation;
mod server;
mod validation;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};

use crate::load::{Bounds, Generator};
use crate::report::{Machine, Report};

/// Benchmarks of the token service, every figure beside its baseline.
#[derive(Debug, Clone, Parser)]
#[command(name = "token-bench", version)]
pub(crate) struct Settings {
    /// Which rows to run.
    #[arg(value_enum, default_values_t = [Part::All])]
    parts: Vec<Part>,
    /// A run of a few seconds that proves the harness works (CI): short
    /// measurements, small data sets, cheap argon2 parameters.
    #[arg(long)]
    smoke: bool,
    /// Measured seconds per measurement.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Unmeasured warm-up seconds before each measurement.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Rounds of rows 1–3 (every variant once per round, interleaved); the
    /// median round of each variant is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Slices of each round of rows 1–3: every variant's measurement (and
    /// its warm-up) is cut into this many slices, taken in turn with the
    /// other variants' (in reverse order every other slice), so that the
    /// machine drifting during a round moves every variant alike.
    #[arg(long, default_value_t = 10)]
    slices: usize,
    /// Concurrent connections of the load generator.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Upper bound on the requests of one measurement.
    #[arg(long, default_value_t = 5_000_000)]
    max_requests: u64,
    /// Worker threads of the runtime that serves the service under test:
    /// the in-process services', the authority's (`WORKER_THREADS`) and
    /// the example service's (`TOKIO_WORKER_THREADS`).
    #[arg(long, default_value_t = 1)]
    server_threads: usize,
    /// Worker threads of the load generator's runtime.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Access tokens (and sessions, JWTs) the validation rows cycle through.
    #[arg(long, default_value_t = 10_000)]
    tokens: usize,
    /// Measure only these variants of rows 1–3 (for profiling; no rows are
    /// computed then): unprotected, raw-get, uncached, uncached-acl, cached,
    /// sessions, jwt-hs256, jwt-eddsa, unprotected-1, cached-1, empty-layer.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// fred clients in the session store's pool (its documented example).
    #[arg(long, default_value_t = 6)]
    session_pool: usize,
    /// Revocations measured in row 4.
    #[arg(long, default_value_t = 300)]
    revocations: usize,
    /// Token pairs issued in row 7.
    #[arg(long, default_value_t = 1_000_000)]
    pairs: usize,
    /// Users whose sessions row 6 rotates (one session each).
    #[arg(long, default_value_t = 2_000)]
    rotation_users: usize,
    /// Concurrent password grants that saturate the authority in row 5.
    #[arg(long, default_value_t = 16)]
    login_concurrency: usize,
    /// Where to write `latest.md` and `latest.json`.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
    out: PathBuf,
    /// The authority binary (default: `token-bench-authority` beside this one).
    #[arg(long)]
    authority: Option<PathBuf>,
    /// The example service binary of rows H (default: the release example
    /// `examples/protected_service` beside this one, built by `bench/run`).
    #[arg(long)]
    example: Option<PathBuf>,
}

/// A row group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    /// Everything.
    All,
    /// Rows 1–3: validation, uncached and cached, against the alternatives.
    Validation,
    /// Row 4: revocation latency.
    Revocation,
    /// Row 5: logins against the argon2 limit.
    Login,
    /// Row 6: refresh-token rotation against raw `SET`.
    Rotation,
    /// Row 7: Redis memory per token pair.
    Footprint,
    /// Rows H1–H4: the HTTP path of both servers against nginx.
    Http,
}

impl Settings {
    fn apply_smoke(&mut self) {
        if self.smoke {
            self.duration = self.duration.min(0.3);
            self.warmup = self.warmup.min(0.1);
            self.rounds = 1;
            self.slices = 1;
            self.concurrency = self.concurrency.min(8);
            self.tokens = self.tokens.min(200);
            self.revocations = self.revocations.min(10);
            self.pairs = self.pairs.min(2_000);
            self.login_concurrency = self.login_concurrency.min(4);
            self.rotation_users = self.rotation_users.min(50);
        }
    }

    fn wants(&self, part: Part) -> bool {
        self.parts.contains(&Part::All) || self.parts.contains(&part)
    }
}

/// What every row shares.
pub(crate) struct Context {
    pub(crate) settings: Settings,
    pub(crate) generator: Generator,
    pub(crate) report: Report,
    started: Instant,
}

impl Context {
    /// The bounds of one measurement at the configured concurrency.
    pub(crate) fn bounds(&self) -> Bounds {
        self.bounds_at(self.settings.concurrency)
    }

    pub(crate) fn bounds_at(&self, concurrency: usize) -> Bounds {
        Bounds {
            concurrency: concurrency.max(1),
            warmup: Duration::from_secs_f64(self.settings.warmup.max(0.0)),
            duration: Duration::from_secs_f64(self.settings.duration.max(0.05)),
            max_requests: self.settings.max_requests,
        }
    }

    /// A progress line on stderr.
    pub(crate) fn progress(&self, line: &str) {
        eprintln!("[{:>6.1}s] {line}", self.started.elapsed().as_secs_f64());
    }
}

/// Redis's CPU time so far (user + system, seconds), from `INFO cpu`.
pub(crate) fn redis_cpu(generator: &Generator, url: &str) -> f64 {
    let info = generator
        .block_on(redis_info(url, "cpu"))
        .unwrap_or_default();
    ["used_cpu_sys:", "used_cpu_user:"]
        .iter()
        .filter_map(|field| info_field(&info, field))
        .filter_map(|value| value.parse::<f64>().ok())
        .sum()
}

/// `INFO <section>` of the Redis at `url`.
pub(crate) async fn redis_info(url: &str, section: &str) -> Result<String, String> {
    let client = redis::Client::open(url).map_err(|error| error.to_string())?;
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|error| error.to_string())?;
    redis::cmd("INFO")
        .arg(section)
        .query_async(&mut connection)
        .await
        .map_err(|error| error.to_string())
}

/// `INFO commandstats` as (command, calls, microseconds), commands run
/// inside scripts included.
pub(crate) fn redis_commandstats(generator: &Generator, url: &str) -> Vec<(String, u64, u64)> {
    let info = generator
        .block_on(redis_info(url, "commandstats"))
        .unwrap_or_default();
    info.lines()
        .filter_map(|line| {
            let (name, fields) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let field = |key: &str| {
                fields
                    .split(',')
                    .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
                    .and_then(|value| value.parse::<u64>().ok())
            };
            Some((name.to_owned(), field("calls")?, field("usec")?))
        })
        .collect()
}

/// One `field:value` line of an `INFO` answer.
pub(crate) fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|line| line.strip_prefix(field))
        .map(str::trim)
}

fn main() -> ExitCode {
    let mut settings = Settings::parse();
    settings.apply_smoke();
    match run(settings) {
        Ok(report) => {
            let failed = report
                .rows
                .iter()
                .filter(|row| row.met == Some(false))
                .count();
            eprintln!(
                "{} rows, {} goals met, {failed} missed",
                report.rows.len(),
                report
                    .rows
                    .iter()
                    .filter(|row| row.met == Some(true))
                    .count()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("token-bench: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(settings: Settings) -> Result<Report, String> {
    let generator = Generator::new(settings.client_threads).map_err(|error| error.to_string())?;
    let redis_version = std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .ok()
        .and_then(|output| {
            String::from_utf8_lossy(&output.stdout)
                .split_whitespace()
                .find_map(|word| word.strip_prefix("v=").map(str::to_owned))
        })
        .unwrap_or_else(|| "unknown".into());
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let settings_text = format!(
        "{} s measured after {} s warm-up per measurement, {} round(s) of rows 1–3 (each in {} interleaved slices), \
         {} connections, server runtime {} thread(s), load generator {} thread(s), {} tokens cycled",
        settings.duration,
        settings.warmup,
        settings.rounds,
        settings.slices,
        settings.concurrency,
        settings.server_threads,
        settings.client_threads,
        settings.tokens
    );
    let mut context = Context {
        report: Report {
            command,
            machine: Machine::detect(redis_version),
            settings: settings_text,
            rows: Vec::new(),
            figures: Vec::new(),
            notes: Vec::new(),
        },
        settings,
        generator,
        started: Instant::now(),
    };
    type Step = fn(&mut Context) -> Result<(), String>;
    let steps: [(Part, &str, Step); 6] = [
        (Part::Validation, "rows 1–3 (validation)", validation::run),
        (Part::Revocation, "row 4 (revocation)", revocation::run),
        (Part::Login, "row 5 (login)", login::run),
        (Part::Rotation, "row 6 (rotation)", rotation::run),
        (Part::Footprint, "row 7 (footprint)", footprint::run),
        (Part::Http, "rows H (HTTP path)", http_path::run),
    ];
    for (part, name, step) in steps {
        if context.settings.wants(part) {
            context.progress(&format!("{name}…"));
            step(&mut context).map_err(|error| format!("{name}: {error}"))?;
        }
    }
    let markdown = context.report.markdown();
    println!("{markdown}");
    let out = &context.settings.out;
    std::fs::create_dir_all(out).map_err(|error| format!("{}: {error}", out.display()))?;
    std::fs::write(out.join("latest.md"), &markdown).map_err(|error| error.to_string())?;
    let json = serde_json::to_string_pretty(&context.report).map_err(|error| error.to_string())?;
    std::fs::write(out.join("latest.json"), json).map_err(|error| error.to_string())?;
    context.progress(&format!(
        "wrote {}/latest.md and latest.json",
        out.display()
    ));
    Ok(context.report)
}

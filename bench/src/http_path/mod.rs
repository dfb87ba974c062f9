//! Rows H1–H4, the HTTP path: what one request costs our two servers against
//! the machine's floor, nginx answering `return 200` from memory.
//!
//! Every target is a separate process with its own configuration and
//! threads (nginx with one worker process, the authority and the example
//! service as they ship), loaded by the same generator at the same
//! concurrency, in interleaved rounds; the median round of each is
//! reported, and each ratio is of medians. When `wrk` is installed the same
//! targets are measured with it too (rows H1w–H4w), so that the result does
//! not depend on this harness's own client. Without nginx the group is
//! skipped with a note saying how to install it.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use token_test_harness::RedisServer;

use crate::Context;
use crate::authority::{self, Authority};
use crate::load::{self, Fixed, Measured};
use crate::login::{
    add_users, authority_env, basic_credentials, introspecting_client, password_login,
};
use crate::report::{Figures, Row, micros, thousands, times};
use crate::server::process_cpu;

mod wrk;

use self::wrk::wrk_round;

/// One request target of the group.
struct Target {
    /// `nginx`, `authority /healthz`, …
    name: &'static str,
    addr: SocketAddr,
    pid: u32,
    /// The request, as (method, path, headers, body).
    request: Shape,
}

#[derive(Clone)]
struct Shape {
    post: bool,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl Shape {
    fn get(path: &'static str) -> Self {
        Self {
            post: false,
            path,
            headers: Vec::new(),
            body: String::new(),
        }
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let mut builder = if self.post {
            Request::post(self.path)
        } else {
            Request::get(self.path)
        };
        // HTTP/1.1 requires Host (nginx answers 400 without it); every
        // target gets the same one.
        builder = builder.header("host", "127.0.0.1");
        for (name, value) in &self.headers {
            builder = builder.header(*name, value.as_str());
        }
        builder
            .body(Full::new(Bytes::from(self.body.clone())))
            .unwrap_or_default()
    }
}

/// A measured target: its rate in each round and its CPU per request.
struct Series {
    rates: Vec<f64>,
    cpu_us: Vec<f64>,
    last: Option<Measured>,
}

impl Series {
    fn new() -> Self {
        Self {
            rates: Vec::new(),
            cpu_us: Vec::new(),
            last: None,
        }
    }

    fn median_rate(&self) -> f64 {
        median(&self.rates)
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The goals of issue 17, by target index (nginx has none).
const GOALS: [Option<f64>; 5] = [None, Some(0.85), Some(0.5), Some(0.9), None];

pub(crate) fn run(context: &mut Context) -> Result<(), String> {
    let Some(nginx_binary) = find_binary("nginx", &["/usr/sbin/nginx"]) else {
        context.report.notes.push(
            "HTTP path (H1–H4) skipped: nginx is not installed (Debian: \
             `apt-get install nginx-light`)."
                .into(),
        );
        context.progress("HTTP path skipped: nginx not installed");
        return Ok(());
    };
    let example_binary = match locate_example(context.settings.example.as_deref()) {
        Ok(path) => path,
        Err(error) => {
            context
                .report
                .notes
                .push(format!("HTTP path (H1–H4) skipped: {error}"));
            context.progress("HTTP path skipped: example service not built");
            return Ok(());
        }
    };
    let dir = tempfile::tempdir().map_err(|error| error.to_string())?;
    let nginx = Nginx::start(&nginx_binary, dir.path())?;

    let redis = RedisServer::builder()
        .try_start()
        .map_err(|error| error.to_string())?;
    let binary = authority::locate(context.settings.authority.as_deref())?;
    let env = authority_env(&redis.url(), &context.settings, &[("RUST_LOG", "warn")]);
    let authority = Authority::start(&binary, &env, &dir.path().join("authority.log"))?;
    let users = add_users(&authority, 1)?;
    let secret = introspecting_client(&authority)?;
    let token = password_login(context, authority.addr(), &users[0])?;
    let example = Example::start(
        &example_binary,
        &redis.url(),
        context.settings.server_threads,
        dir.path(),
    )?;

    let bearer = format!("Bearer {token}");
    let basic = format!("Basic {}", basic_credentials("bench-gateway", &secret));
    let targets = [
        Target {
            name: "nginx `return 200`",
            addr: nginx.addr,
            pid: nginx.child.id(),
            request: Shape::get("/"),
        },
        Target {
            name: "authority `GET /healthz`",
            addr: authority.addr(),
            pid: authority.pid(),
            request: Shape::get("/healthz"),
        },
        Target {
            name: "authority `POST /oauth/introspect`",
            addr: authority.addr(),
            pid: authority.pid(),
            request: Shape {
                post: true,
                path: "/oauth/introspect",
                headers: vec![
                    ("authorization", basic),
                    (
                        "content-type",
                        "application/x-www-form-urlencoded".to_owned(),
                    ),
                ],
                body: format!("token={token}"),
            },
        },
        Target {
            name: "example service `GET /healthz`",
            addr: example.addr,
            pid: example.child.id(),
            request: Shape::get("/healthz"),
        },
        Target {
            name: "example service `GET /whoami` (cached token)",
            addr: example.addr,
            pid: example.child.id(),
            request: Shape {
                headers: vec![("authorization", bearer)],
                ..Shape::get("/whoami")
            },
        },
    ];

    let bounds = context.bounds();
    let mut ours: Vec<Series> = targets.iter().map(|_| Series::new()).collect();
    let wrk = find_binary("wrk", &[]);
    let mut theirs: Vec<Series> = targets.iter().map(|_| Series::new()).collect();
    for round in 0..context.settings.rounds.max(1) {
        for (target, series) in targets.iter().zip(ours.iter_mut()) {
            context.progress(&format!("HTTP path round {}: {}", round + 1, target.name));
            let shape = target.request.clone();
            let scenario: load::ScenarioFactory = Arc::new(move |_| {
                let shape = shape.clone();
                Fixed::boxed(move |_| shape.request(), StatusCode::OK)
            });
            let cpu_before = process_cpu(target.pid);
            let measured = context.generator.http(target.addr, bounds, scenario);
            let cpu = process_cpu(target.pid).saturating_sub(cpu_before);
            series.rates.push(measured.rate());
            series.cpu_us.push(cpu_per_request(cpu, &measured, bounds));
            series.last = Some(measured);
        }
        if let Some(wrk) = &wrk {
            context.progress(&format!("HTTP path round {}: wrk", round + 1));
            for (rate, series) in wrk_round(wrk, &targets, bounds, dir.path())?
                .into_iter()
                .zip(theirs.iter_mut())
            {
                series.rates.push(rate);
            }
        }
    }

    let nginx_rate = ours[0].median_rate();
    for (index, (target, series)) in targets.iter().zip(&ours).enumerate() {
        if let Some(measured) = &series.last {
            let mut figures = Figures::of(
                format!("H: {} (last round)", target.name),
                measured,
                bounds.concurrency,
            );
            figures.rate = series.median_rate();
            figures.server_cpu_us = Some(median(&series.cpu_us));
            context.report.figures.push(figures);
        }
        if index == 0 {
            continue;
        }
        let ratio = ratio(series.median_rate(), nginx_rate);
        let mut row = Row::new(
            &format!("H{index}"),
            format!("{} vs nginx static (harness client)", target.name),
        )
        .figures(
            format!(
                "{} req/s, {} CPU/req",
                thousands(series.median_rate()),
                micros(median(&series.cpu_us))
            ),
            format!(
                "{} req/s, {} CPU/req",
                thousands(nginx_rate),
                micros(median(&ours[0].cpu_us))
            ),
        )
        .ratio(times(ratio));
        if let Some(goal) = GOALS[index] {
            row = row.goal(format!("≥ {goal:.2}×"), ratio >= goal);
        }
        context.report.rows.push(row);
    }
    if wrk.is_some() {
        let nginx_rate = theirs[0].median_rate();
        for (index, (target, series)) in targets.iter().zip(&theirs).enumerate().skip(1) {
            let ratio = ratio(series.median_rate(), nginx_rate);
            let mut row = Row::new(
                &format!("H{index}w"),
                format!("{} vs nginx static (`wrk -t1`)", target.name),
            )
            .figures(
                format!("{} req/s", thousands(series.median_rate())),
                format!("{} req/s", thousands(nginx_rate)),
            )
            .ratio(times(ratio));
            if let Some(goal) = GOALS[index] {
                row = row.goal(format!("≥ {goal:.2}×"), ratio >= goal);
            }
            context.report.rows.push(row);
        }
    } else {
        context
            .report
            .notes
            .push("HTTP path: `wrk` is not installed, rows H1w–H4w not measured.".into());
    }
    context
        .report
        .notes
        .push(rounds_note(&targets, &ours, &theirs));
    drop(example);
    drop(nginx);
    Ok(())
}

/// Every target's req/s round by round, with each client: what the medians
/// in rows H1–H4w were taken from.
fn rounds_note(targets: &[Target], ours: &[Series], theirs: &[Series]) -> String {
    let rates = |series: &Series| {
        series
            .rates
            .iter()
            .map(|rate| thousands(*rate))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let each = targets
        .iter()
        .zip(ours.iter().zip(theirs))
        .map(|(target, (ours, theirs))| {
            if theirs.rates.is_empty() {
                format!("{}: {}", target.name, rates(ours))
            } else {
                format!(
                    "{}: {} (`wrk`: {})",
                    target.name,
                    rates(ours),
                    rates(theirs)
                )
            }
        })
        .collect::<Vec<_>>()
        .join("; ");
    let clients = if theirs.iter().any(|series| !series.rates.is_empty()) {
        "the harness client (and `wrk`)"
    } else {
        "the harness client"
    };
    format!("HTTP path, req/s round by round with {clients}: {each}.")
}

fn ratio(ours: f64, baseline: f64) -> f64 {
    if baseline > 0.0 { ours / baseline } else { 0.0 }
}

/// Server CPU per request: the process's CPU over the whole measurement
/// (warm-up included) divided by the requests of the whole measurement,
/// estimated from the measured rate.
fn cpu_per_request(cpu: Duration, measured: &Measured, bounds: load::Bounds) -> f64 {
    let requests = measured.rate() * (bounds.warmup + bounds.duration).as_secs_f64();
    if requests > 0.0 {
        cpu.as_secs_f64() * 1e6 / requests
    } else {
        0.0
    }
}

/// `name` on `PATH`, or the first of `fallbacks` that exists.
fn find_binary(name: &str, fallbacks: &[&str]) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .chain(fallbacks.iter().map(PathBuf::from))
        .find(|path| path.is_file())
}

/// The example service's binary: `--example`, or the release example
/// `examples/protected_service` beside this executable (`bench/run` builds
/// it).
fn locate_example(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    let me = std::env::current_exe().map_err(|error| error.to_string())?;
    let path = me.with_file_name("examples").join("protected_service");
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} not found: build it with `cargo build --release -p token-client --features axum \
             --example protected_service` (bench/run does), or pass --example PATH",
            path.display()
        ))
    }
}

/// A free loopback port (bound, then released for the child to bind).
fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|error| format!("no free port: {error}"))
}

/// Waits until `addr` accepts connections, or `child` exits.
fn wait_listening(addr: SocketAddr, child: &mut Child, what: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{what} exited: {status}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("{what} did not listen on {addr} within 10 s"))
}

/// nginx with one process, answering `200 ok` from memory, access log off.
struct Nginx {
    child: Child,
    addr: SocketAddr,
}

impl Nginx {
    fn start(binary: &Path, dir: &Path) -> Result<Self, String> {
        let port = free_port()?;
        let root = dir.join("nginx");
        std::fs::create_dir_all(&root).map_err(|error| error.to_string())?;
        let root_text = root.display();
        let config = format!(
            "daemon off;\n\
             master_process off;\n\
             worker_processes 1;\n\
             pid {root_text}/nginx.pid;\n\
             error_log {root_text}/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n\
             \x20 access_log off;\n\
             \x20 client_body_temp_path {root_text}/body;\n\
             \x20 proxy_temp_path {root_text}/proxy;\n\
             \x20 fastcgi_temp_path {root_text}/fastcgi;\n\
             \x20 uwsgi_temp_path {root_text}/uwsgi;\n\
             \x20 scgi_temp_path {root_text}/scgi;\n\
             \x20 keepalive_requests 100000000;\n\
             \x20 server {{\n\
             \x20   listen 127.0.0.1:{port};\n\
             \x20   location / {{ default_type text/plain; return 200 'ok'; }}\n\
             \x20 }}\n\
             }}\n"
        );
        let path = root.join("nginx.conf");
        std::fs::write(&path, config).map_err(|error| error.to_string())?;
        let log = std::fs::File::create(root.join("stderr.log")).map_err(|e| e.to_string())?;
        let mut child = Command::new(binary)
            .arg("-p")
            .arg(&root)
            .arg("-c")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|error| format!("cannot start {}: {error}", binary.display()))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if let Err(error) = wait_listening(addr, &mut child, "nginx") {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(root.join("stderr.log")).unwrap_or_default();
            return Err(format!("{error}; its log:\n{log}"));
        }
        Ok(Self { child, addr })
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The example service (`client-middleware/examples/protected_service.rs`)
/// as it ships: token cache on, `RUST_LOG=warn`.
struct Example {
    child: Child,
    addr: SocketAddr,
}

impl Example {
    fn start(binary: &Path, redis_url: &str, threads: usize, dir: &Path) -> Result<Self, String> {
        let log = std::fs::File::create(dir.join("example.log")).map_err(|e| e.to_string())?;
        let mut child = Command::new(binary)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("REDIS_URL", redis_url)
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "warn")
            // `#[tokio::main]` reads it: one worker, like the authority here.
            .env("TOKIO_WORKER_THREADS", threads.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|error| format!("cannot start {}: {error}", binary.display()))?;
        let addr = child.stdout.take().and_then(|stdout| {
            use std::io::BufRead as _;
            let mut line = String::new();
            std::io::BufReader::new(stdout).read_line(&mut line).ok()?;
            line.trim()
                .strip_prefix("listening on http://")?
                .parse::<SocketAddr>()
                .ok()
        });
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(dir.join("example.log")).unwrap_or_default();
            return Err(format!(
                "the example service did not start; its log:\n{log}"
            ));
        };
        Ok(Self { child, addr })
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! The load generator: N workers, each with one keep-alive HTTP/1.1
//! connection (or one Redis connection), sending requests back to back for a
//! bounded time and a bounded count, latencies in an HDR histogram.
//!
//! It runs on its own Tokio runtime ([`Generator`]), never on the runtime of
//! the server under test, so both get a fixed number of threads.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How long and how much one measurement may run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// Concurrent workers (connections).
    pub(crate) concurrency: usize,
    /// Not measured: connections warm up, caches fill.
    pub(crate) warmup: Duration,
    /// Measured.
    pub(crate) duration: Duration,
    /// At most this many requests in all (warm-up included).
    pub(crate) max_requests: u64,
}

/// What one measurement found.
#[derive(Debug, Clone)]
pub(crate) struct Measured {
    /// Requests completed in the measured window, with the expected answer.
    pub(crate) ok: u64,
    /// Requests completed in the measured window with another answer, or
    /// failed.
    pub(crate) errors: u64,
    /// The measured window.
    pub(crate) elapsed: Duration,
    /// Latency of every measured request, in nanoseconds.
    pub(crate) latency: Histogram<u64>,
    /// The first unexpected answer, for the report.
    pub(crate) first_error: Option<String>,
}

impl Measured {
    /// Nothing measured yet.
    pub(crate) fn empty() -> Self {
        Self {
            ok: 0,
            errors: 0,
            elapsed: Duration::ZERO,
            latency: histogram(),
            first_error: None,
        }
    }

    /// Successful requests per second.
    pub(crate) fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            u64_to_f64(self.ok) / secs
        } else {
            0.0
        }
    }

    /// A latency quantile in microseconds.
    pub(crate) fn quantile_us(&self, quantile: f64) -> f64 {
        u64_to_f64(self.latency.value_at_quantile(quantile)) / 1000.0
    }

    /// Adds a later measurement of the same target (another slice of a
    /// round): its requests, latencies and measured time.
    pub(crate) fn append(&mut self, other: &Self) {
        self.merge(other);
        self.elapsed += other.elapsed;
    }

    fn merge(&mut self, other: &Self) {
        self.ok += other.ok;
        self.errors += other.errors;
        let _ = self.latency.add(&other.latency);
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }
}

/// Lossless for every count and latency this harness sees (below 2^52).
#[allow(clippy::cast_precision_loss)]
pub(crate) fn u64_to_f64(value: u64) -> f64 {
    value as f64
}

/// A histogram from 1 ns to 100 s with 3 significant digits.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).unwrap_or_else(|_| {
        // The bounds above are valid constants.
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits are valid"))
    })
}

/// One worker's requests: what to send next and whether an answer is the
/// expected one. Stateful scenarios (refresh-token rotation) keep their
/// state here.
pub(crate) trait Scenario: Send + 'static {
    /// The next request.
    fn request(&mut self) -> Request<Full<Bytes>>;

    /// Whether `status` and `body` are the expected answer to the last
    /// request (and learn from it).
    fn answer(&mut self, status: StatusCode, body: &Bytes) -> Result<(), String>;
}

/// A scenario for every worker, by worker index.
pub(crate) type ScenarioFactory = Arc<dyn Fn(usize) -> Box<dyn Scenario> + Send + Sync>;

/// The same request over and over (the header and the path vary with the
/// worker and the sequence number through `make`), expecting `expect`.
pub(crate) struct Fixed<F> {
    make: F,
    sequence: usize,
    expect: StatusCode,
}

impl<F> Fixed<F>
where
    F: FnMut(usize) -> Request<Full<Bytes>> + Send + 'static,
{
    pub(crate) fn boxed(make: F, expect: StatusCode) -> Box<dyn Scenario> {
        Box::new(Self {
            make,
            sequence: 0,
            expect,
        })
    }
}

impl<F> Scenario for Fixed<F>
where
    F: FnMut(usize) -> Request<Full<Bytes>> + Send + 'static,
{
    fn request(&mut self) -> Request<Full<Bytes>> {
        self.sequence = self.sequence.wrapping_add(1);
        (self.make)(self.sequence)
    }

    fn answer(&mut self, status: StatusCode, body: &Bytes) -> Result<(), String> {
        if status == self.expect {
            Ok(())
        } else {
            Err(format!(
                "expected {}, got {status}: {}",
                self.expect,
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ))
        }
    }
}

/// A dedicated Tokio runtime for load generation.
#[derive(Debug)]
pub(crate) struct Generator {
    runtime: tokio::runtime::Runtime,
}

impl Generator {
    /// A runtime with `threads` worker threads named `loadgen`.
    pub(crate) fn new(threads: usize) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("loadgen")
            .enable_all()
            .build()?;
        Ok(Self { runtime })
    }

    /// Runs `future` on the generator's runtime.
    pub(crate) fn block_on<T>(&self, future: impl Future<Output = T>) -> T {
        self.runtime.block_on(future)
    }

    /// Drives HTTP load at `addr` within `bounds`.
    pub(crate) fn http(
        &self,
        addr: SocketAddr,
        bounds: Bounds,
        scenario: ScenarioFactory,
    ) -> Measured {
        self.block_on(http(addr, bounds, scenario))
    }
}

/// The shared clock of one measurement.
struct Window {
    start: Instant,
    measure_from: Instant,
    end: Instant,
    budget: AtomicU64,
}

impl Window {
    fn new(bounds: Bounds) -> Self {
        let start = Instant::now();
        Self {
            start,
            measure_from: start + bounds.warmup,
            end: start + bounds.warmup + bounds.duration,
            budget: AtomicU64::new(bounds.max_requests),
        }
    }

    /// Whether another request may start now.
    fn admit(&self) -> bool {
        Instant::now() < self.end
            && self
                .budget
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                    left.checked_sub(1)
                })
                .is_ok()
    }

    /// The measured window, as far as it went.
    fn elapsed(&self, finished: Instant) -> Duration {
        finished
            .min(self.end)
            .saturating_duration_since(self.measure_from)
    }
}

/// HTTP load: one keep-alive connection per worker.
pub(crate) async fn http(addr: SocketAddr, bounds: Bounds, scenario: ScenarioFactory) -> Measured {
    let window = Arc::new(Window::new(bounds));
    let mut workers = Vec::with_capacity(bounds.concurrency);
    for index in 0..bounds.concurrency {
        let window = Arc::clone(&window);
        let scenario = scenario(index);
        workers.push(tokio::spawn(http_worker(addr, window, scenario)));
    }
    collect(workers, &window).await
}

async fn collect(workers: Vec<tokio::task::JoinHandle<Measured>>, window: &Window) -> Measured {
    let mut total = Measured::empty();
    for worker in workers {
        match worker.await {
            Ok(measured) => total.merge(&measured),
            Err(error) => {
                total.errors += 1;
                total
                    .first_error
                    .get_or_insert(format!("worker failed: {error}"));
            }
        }
    }
    total.elapsed = window.elapsed(Instant::now());
    let _ = window.start;
    total
}

async fn http_worker(
    addr: SocketAddr,
    window: Arc<Window>,
    mut scenario: Box<dyn Scenario>,
) -> Measured {
    let mut measured = Measured::empty();
    let mut sender = None;
    while window.admit() {
        if sender.is_none() {
            match connect(addr).await {
                Ok(connected) => sender = Some(connected),
                Err(error) => {
                    measured.errors += 1;
                    measured.first_error.get_or_insert(error);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(connection) = sender.as_mut() else {
            continue;
        };
        let request = scenario.request();
        let started = Instant::now();
        let outcome = send(connection, request).await;
        let finished = Instant::now();
        let counted = started >= window.measure_from && finished <= window.end;
        let result = match outcome {
            Ok((status, body)) => scenario.answer(status, &body),
            Err(error) => {
                sender = None;
                Err(error)
            }
        };
        if counted {
            match result {
                Ok(()) => {
                    measured.ok += 1;
                    let nanos = u64::try_from(finished.duration_since(started).as_nanos())
                        .unwrap_or(u64::MAX);
                    let _ = measured.latency.record(nanos.max(1));
                }
                Err(error) => {
                    measured.errors += 1;
                    measured.first_error.get_or_insert(error);
                }
            }
        }
    }
    measured
}

/// One keep-alive HTTP/1.1 connection.
pub(crate) type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// Opens one keep-alive connection to `addr`.
pub(crate) async fn connect(addr: SocketAddr) -> Result<Sender, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|error| format!("connect {addr}: {error}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| format!("handshake: {error}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Sends one request and reads the whole answer.
pub(crate) async fn send(
    sender: &mut Sender,
    request: Request<Full<Bytes>>,
) -> Result<(StatusCode, Bytes), String> {
    sender
        .ready()
        .await
        .map_err(|error| format!("connection closed: {error}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|error| format!("request failed: {error}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|error| format!("reading the body: {error}"))?
        .to_bytes();
    Ok((status, body))
}

/// One Redis command per request, on one connection per worker: the
/// physical limit of one round trip per request at this concurrency.
pub(crate) async fn redis_commands<F>(url: &str, bounds: Bounds, command: F) -> Measured
where
    F: Fn(usize, u64) -> redis::Cmd + Send + Sync + 'static,
{
    let window = Arc::new(Window::new(bounds));
    let command = Arc::new(command);
    let client = match redis::Client::open(url) {
        Ok(client) => client,
        Err(error) => {
            let mut failed = Measured::empty();
            failed.errors = 1;
            failed.first_error = Some(error.to_string());
            return failed;
        }
    };
    let mut workers = Vec::with_capacity(bounds.concurrency);
    for index in 0..bounds.concurrency {
        let window = Arc::clone(&window);
        let command = Arc::clone(&command);
        let client = client.clone();
        workers.push(tokio::spawn(async move {
            let mut measured = Measured::empty();
            let mut connection = match client.get_multiplexed_async_connection().await {
                Ok(connection) => connection,
                Err(error) => {
                    measured.errors += 1;
                    measured.first_error = Some(error.to_string());
                    return measured;
                }
            };
            let mut sequence = 0_u64;
            while window.admit() {
                sequence += 1;
                let cmd = command(index, sequence);
                let started = Instant::now();
                let result: redis::RedisResult<redis::Value> =
                    cmd.query_async(&mut connection).await;
                let finished = Instant::now();
                if started >= window.measure_from && finished <= window.end {
                    match result {
                        Ok(_) => {
                            measured.ok += 1;
                            let nanos = u64::try_from(finished.duration_since(started).as_nanos())
                                .unwrap_or(u64::MAX);
                            let _ = measured.latency.record(nanos.max(1));
                        }
                        Err(error) => {
                            measured.errors += 1;
                            measured.first_error.get_or_insert(error.to_string());
                        }
                    }
                }
            }
            measured
        }));
    }
    collect(workers, &window).await
}

//! Row 5: password grants at saturation against the argon2id limit of the
//! same machine (verifications per second with the authority's parameters,
//! one thread per core, measured alone in the same run); `/readyz` and
//! introspection latency while logins are saturated; the authority's peak
//! RSS.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, PasswordHasher as _, Version};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{Request, StatusCode};
use http_body_util::Full;
use token_test_harness::RedisServer;

use crate::authority::{self, Authority};
use crate::load::{self, Fixed, Measured, histogram, u64_to_f64};
use crate::report::{Figures, Row, micros, thousands, times};
use crate::server::process_cpu;
use crate::{Context, Settings};

/// The authority's argon2id parameters: its defaults (OWASP), or cheap ones
/// for a smoke run.
fn argon2_params(smoke: bool) -> (u32, u32, u32) {
    if smoke { (256, 1, 1) } else { (19_456, 2, 1) }
}

/// The environment of a benchmarked authority: realistic defaults
/// (`HASH_WORKERS` = cores, OWASP argon2id, `RUST_LOG=info`), throttling
/// out of the way (every password is right anyway), then `extra`.
pub(crate) fn authority_env(
    redis_url: &str,
    settings: &Settings,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let smoke = settings.smoke;
    let (memory, iterations, parallelism) = argon2_params(smoke);
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let mut env: Vec<(String, String)> = vec![
        ("REDIS_URL".into(), redis_url.into()),
        ("LISTEN_ADDR".into(), "127.0.0.1:0".into()),
        ("HASH_WORKERS".into(), cores.to_string()),
        // One request-serving thread, as the in-process services and
        // nginx's one worker: on two cores shared with Redis and the load
        // generator, more threads measure contention (bench README).
        ("WORKER_THREADS".into(), settings.server_threads.to_string()),
        ("ARGON2_MEMORY_KIB".into(), memory.to_string()),
        ("ARGON2_ITERATIONS".into(), iterations.to_string()),
        ("ARGON2_PARALLELISM".into(), parallelism.to_string()),
        ("LOGIN_MAX_FAILURES".into(), "1000000".into()),
        ("ADDRESS_MAX_FAILURES".into(), "1000000".into()),
        ("RUST_LOG".into(), "info".into()),
    ];
    for (name, value) in extra {
        env.retain(|(existing, _)| existing != name);
        env.push(((*name).to_owned(), (*value).to_owned()));
    }
    env
}

/// Password of every benchmark user.
pub(crate) const PASSWORD: &str = "correct horse battery staple";

/// An argon2id hash of [`PASSWORD`] with the authority's default parameters.
pub(crate) fn hash_password() -> Result<String, String> {
    let (memory, iterations, parallelism) = argon2_params(false);
    let params =
        Params::new(memory, iterations, parallelism, None).map_err(|error| error.to_string())?;
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(PASSWORD.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|error| error.to_string())
}

/// Creates `count` users (`bench-user-<i>`) through the authority's CLI.
pub(crate) fn add_users(authority: &Authority, count: usize) -> Result<Vec<String>, String> {
    (0..count)
        .map(|index| {
            let username = format!("bench-user-{index}");
            let email = format!("{username}@example.com");
            authority.cli(
                &[
                    "user",
                    "add",
                    &username,
                    "--password-stdin",
                    "--name",
                    "Bench User",
                    "--email",
                    &email,
                    "--scope",
                    "read",
                    "--scope",
                    "write",
                ],
                Some(&format!("{PASSWORD}\n")),
            )?;
            Ok(username)
        })
        .collect()
}

/// A password grant for `username` (password [`PASSWORD`]); answers the
/// access token.
pub(crate) fn password_login(
    context: &Context,
    addr: std::net::SocketAddr,
    username: &str,
) -> Result<String, String> {
    let body = format!(
        "grant_type=password&username={username}&password={}",
        PASSWORD.replace(' ', "+")
    );
    context.generator.block_on(async {
        let mut sender = load::connect(addr).await?;
        let (status, answer) = load::send(&mut sender, form("/oauth/token", body, None)).await?;
        if status != StatusCode::OK {
            return Err(format!(
                "login failed: {status} {}",
                String::from_utf8_lossy(&answer)
            ));
        }
        let value: serde_json::Value =
            serde_json::from_slice(&answer).map_err(|error| error.to_string())?;
        value["access_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "no access token".to_owned())
    })
}

/// A form POST.
pub(crate) fn form(path: &str, body: String, basic: Option<&str>) -> Request<Full<Bytes>> {
    let mut request =
        Request::post(path).header("content-type", "application/x-www-form-urlencoded");
    if let Some(basic) = basic {
        request = request.header("authorization", basic);
    }
    request
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

/// Verifications per second with these parameters, `threads` at once, for
/// `duration`, nothing else running.
fn argon2_limit(
    params: (u32, u32, u32),
    threads: usize,
    duration: Duration,
) -> Result<f64, String> {
    let params =
        Params::new(params.0, params.1, params.2, None).map_err(|error| error.to_string())?;
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let hash = argon2
        .hash_password(PASSWORD.as_bytes())
        .map_err(|error| error.to_string())?
        .to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..threads.max(1))
        .map(|_| {
            let stop = Arc::clone(&stop);
            let done = Arc::clone(&done);
            let hash = hash.clone();
            let argon2 = argon2.clone();
            std::thread::spawn(move || {
                let Ok(parsed) = PasswordHash::new(&hash) else {
                    return;
                };
                let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
                    return;
                };
                // As the authority's hashing threads: their priority, one
                // memory block per thread, reused.
                token_authority::password::hashing_priority();
                let mut memory = vec![Block::default(); argon2.params().block_count()];
                let mut out = vec![0_u8; expected.len()];
                while !stop.load(Ordering::Relaxed) {
                    let hashed = argon2.hash_password_into_with_memory(
                        PASSWORD.as_bytes(),
                        salt,
                        &mut out,
                        &mut memory,
                    );
                    if hashed.is_ok() && out.as_slice() == expected.as_bytes() {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.join();
    }
    // Verifications finished after the stop count, over the time they took.
    Ok(u64_to_f64(done.load(Ordering::Relaxed)) / started.elapsed().as_secs_f64())
}

/// Latency of sequential requests made by `make`, one every `gap`, until
/// `stop`.
async fn probe(
    addr: std::net::SocketAddr,
    make: impl Fn() -> Request<Full<Bytes>>,
    gap: Duration,
    stop: Arc<AtomicBool>,
    limit: usize,
) -> Result<(Histogram<u64>, u64), String> {
    let mut sender = load::connect(addr).await?;
    let mut latency = histogram();
    let mut failures = 0;
    let mut count = 0;
    while !stop.load(Ordering::Relaxed) && count < limit {
        count += 1;
        let started = Instant::now();
        let (status, _) = load::send(&mut sender, make()).await?;
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let _ = latency.record(nanos.max(1));
        if status != StatusCode::OK {
            failures += 1;
        }
        tokio::time::sleep(gap).await;
    }
    Ok((latency, failures))
}

fn quantile_us(histogram: &Histogram<u64>, q: f64) -> f64 {
    u64_to_f64(histogram.value_at_quantile(q)) / 1000.0
}

pub(crate) fn run(context: &mut Context) -> Result<(), String> {
    let smoke = context.settings.smoke;
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let duration = Duration::from_secs_f64(context.settings.duration.max(0.2) * 2.0);

    let redis = RedisServer::builder()
        .try_start()
        .map_err(|error| error.to_string())?;
    let binary = authority::locate(context.settings.authority.as_deref())?;
    let dir = tempfile::tempdir().map_err(|error| error.to_string())?;
    let env = authority_env(&redis.url(), &context.settings, &[]);
    let authority = Authority::start(&binary, &env, &dir.path().join("authority.log"))?;
    let concurrency = context.settings.login_concurrency.max(1);
    let users = Arc::new(add_users(&authority, concurrency)?);
    let secret = introspecting_client(&authority)?;
    let basic = format!("Basic {}", basic_credentials("bench-gateway", &secret));
    let addr = authority.addr();
    let rss_idle = authority.peak_rss_kib();

    // A token to introspect, and the probes' latency with nothing else running.
    let first_user = users.first().cloned().unwrap_or_default();
    let token = password_login(context, addr, &first_user)?;
    let readyz = || {
        Request::get("/readyz")
            .body(Full::new(Bytes::new()))
            .unwrap_or_default()
    };
    let introspect_body = format!("token={token}");
    let introspect = { move || form("/oauth/introspect", introspect_body.clone(), Some(&basic)) };
    let samples = if smoke { 20 } else { 400 };
    let gap = Duration::from_millis(if smoke { 1 } else { 5 });
    let idle = context.generator.block_on(async {
        let never = Arc::new(AtomicBool::new(false));
        let ready = probe(addr, readyz, gap, Arc::clone(&never), samples).await?;
        let intro = probe(addr, introspect.clone(), gap, never, samples).await?;
        Ok::<_, String>((ready, intro))
    })?;
    let ((ready_idle, _), (intro_idle, _)) = idle;

    // Saturation: every worker logs in back to back; the probes run beside.
    let bounds = context.bounds_at(concurrency);
    let cpu_before = process_cpu(authority.pid());
    let factory: load::ScenarioFactory = {
        let users = Arc::clone(&users);
        Arc::new(move |worker| {
            let username = users[worker % users.len()].clone();
            let body = format!(
                "grant_type=password&username={username}&password={}",
                PASSWORD.replace(' ', "+")
            );
            Fixed::boxed(
                move |_| form("/oauth/token", body.clone(), None),
                StatusCode::OK,
            )
        })
    };
    // Rounds alternate the limit (the authority idle) and the saturation,
    // so that the machine's noise hits both alike; medians are reported.
    let rounds = context.settings.rounds.max(1);
    let mut limits = Vec::with_capacity(rounds);
    let mut runs = Vec::with_capacity(rounds);
    let (mut ready_busy, mut intro_busy) = ((histogram(), 0), (histogram(), 0));
    for round in 0..rounds {
        let limit = argon2_limit(argon2_params(smoke), cores, duration)?;
        limits.push(limit);
        let stop = Arc::new(AtomicBool::new(false));
        let factory = Arc::clone(&factory);
        let introspect = introspect.clone();
        let (logins, ready, intro) = context.generator.block_on(async {
            let ready = tokio::spawn(probe(addr, readyz, gap, Arc::clone(&stop), usize::MAX));
            let intro = tokio::spawn(probe(addr, introspect, gap, Arc::clone(&stop), usize::MAX));
            tokio::time::sleep(bounds.warmup).await;
            let logins = load::http(addr, bounds, factory).await;
            stop.store(true, Ordering::Relaxed);
            let ready = ready.await.map_err(|error| error.to_string())??;
            let intro = intro.await.map_err(|error| error.to_string())??;
            Ok::<_, String>((logins, ready, intro))
        })?;
        context.progress(&format!(
            "round {}/{rounds}: argon2id alone {limit:.1}/s, logins {:.1}/s",
            round + 1,
            logins.rate()
        ));
        let _ = ready_busy.0.add(&ready.0);
        ready_busy.1 += ready.1;
        let _ = intro_busy.0.add(&intro.0);
        intro_busy.1 += intro.1;
        runs.push(logins);
    }
    limits.sort_by(f64::total_cmp);
    let limit = limits[limits.len() / 2];
    let all_logins: u64 = runs.iter().map(|run| run.ok + run.errors).sum();
    runs.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
    let logins = runs.swap_remove(runs.len() / 2);
    let cpu = process_cpu(authority.pid()).saturating_sub(cpu_before);
    let rss_peak = authority.peak_rss_kib();
    drop(authority);

    let ratio = logins.rate() / limit;
    let mut figures = Figures::of("password grant at saturation", &logins, concurrency);
    let total = u64_to_f64(all_logins);
    if total > 0.0 {
        figures.server_cpu_us = Some(cpu.as_secs_f64() * 1e6 / total);
    }
    let rows = &mut context.report.rows;
    rows.push(
        Row::new(
            "5a",
            format!("Login: `password` grants/s at saturation ({concurrency} connections) vs argon2id verifications/s alone ({cores} threads, m=19456 KiB t=2 p=1)"),
        )
        .figures(figures.summary("login"), format!("{} verifications/s", thousands(limit)))
        .ratio(times(ratio))
        .goal("≥ 0.90×", ratio >= 0.90),
    );
    let (ready_p99, ready_idle_p99) = (
        quantile_us(&ready_busy.0, 0.99),
        quantile_us(&ready_idle, 0.99),
    );
    rows.push(
        Row::new("5b", "`/readyz` while logins are saturated vs idle")
            .figures(
                format!(
                    "p50 {} / p99 {} ({} probes, {} failed)",
                    micros(quantile_us(&ready_busy.0, 0.5)),
                    micros(ready_p99),
                    ready_busy.0.len(),
                    ready_busy.1
                ),
                format!(
                    "p50 {} / p99 {}",
                    micros(quantile_us(&ready_idle, 0.5)),
                    micros(ready_idle_p99)
                ),
            )
            .ratio(times(ready_p99 / ready_idle_p99))
            .goal("p99 < 5 ms", ready_p99 < 5000.0 && ready_busy.1 == 0),
    );
    let (intro_p99, intro_idle_p99) = (
        quantile_us(&intro_busy.0, 0.99),
        quantile_us(&intro_idle, 0.99),
    );
    rows.push(
        Row::new(
            "5c",
            "`/oauth/introspect` (client authenticated) while logins are saturated vs idle",
        )
        .figures(
            format!(
                "p50 {} / p99 {} ({} probes, {} failed)",
                micros(quantile_us(&intro_busy.0, 0.5)),
                micros(intro_p99),
                intro_busy.0.len(),
                intro_busy.1
            ),
            format!(
                "p50 {} / p99 {}",
                micros(quantile_us(&intro_idle, 0.5)),
                micros(intro_idle_p99)
            ),
        )
        .ratio(times(intro_p99 / intro_idle_p99))
        .goal("p99 < 5 ms", intro_p99 < 5000.0 && intro_busy.1 == 0),
    );
    let kib = |value: Option<u64>| {
        value.map_or_else(
            || "unknown".to_owned(),
            |kib| format!("{:.1} MiB", u64_to_f64(kib) / 1024.0),
        )
    };
    rows.push(
        Row::new(
            "5d",
            "Authority peak RSS (VmHWM) after the saturation vs after start-up",
        )
        .figures(kib(rss_peak), kib(rss_idle))
        .ratio(match (rss_peak, rss_idle) {
            (Some(peak), Some(idle)) if idle > 0 => times(u64_to_f64(peak) / u64_to_f64(idle)),
            _ => "—".into(),
        })
        .goal(
            format!("bounded: ≤ start-up + (HASH_WORKERS={cores}) × 19 MiB + 64 MiB"),
            match (rss_peak, rss_idle) {
                (Some(peak), Some(idle)) => {
                    peak <= idle + u64::try_from(cores).unwrap_or(1) * 19_456 + 65_536
                }
                _ => false,
            },
        ),
    );
    context.report.figures.push(figures);
    let mut limit_figures = Figures::of(
        "argon2id verify alone (all cores)",
        &Measured::empty(),
        cores,
    );
    limit_figures.rate = limit;
    context.report.figures.push(limit_figures);
    Ok(())
}

/// Registers the client `bench-gateway`, allowed to introspect, with the
/// authority's CLI; answers its secret.
pub(crate) fn introspecting_client(authority: &Authority) -> Result<String, String> {
    authority
        .cli(&["client", "add", "bench-gateway", "--introspect"], None)?
        .lines()
        .find_map(|line| line.strip_prefix("client_secret: "))
        .map(str::to_owned)
        .ok_or_else(|| "the CLI printed no client secret".to_owned())
}

/// `base64(id:secret)` for HTTP Basic.
pub(crate) fn basic_credentials(id: &str, secret: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// HTTP Basic credentials are standard base64 with padding.
    #[test]
    fn basic() {
        assert_eq!(
            basic_credentials("Aladdin", "open sesame"),
            "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(basic_credentials("a", "b"), "YTpi");
    }
}

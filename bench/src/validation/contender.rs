//! One variant of rows 1–3 during a round: its server, its share of the
//! load slice by slice, and what the slices measured.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use jsonwebtoken::{Algorithm, DecodingKey};

use super::{Fixture, Variant};
use crate::apps;
use crate::fixtures;
use crate::load::{self, Bounds, Measured, ScenarioFactory};
use crate::report::Figures;
use crate::server::Server;
use crate::{Context, redis_cpu};

/// Requests `GET /` with `header: values[i]`, each worker walking the list
/// from its own offset.
fn requests(header: &'static str, values: &Arc<Vec<String>>, stride: usize) -> ScenarioFactory {
    let values = Arc::clone(values);
    Arc::new(move |worker| {
        let values = Arc::clone(&values);
        let offset = worker * 7919;
        load::Fixed::boxed(
            move |sequence| {
                let value = &values[(offset + sequence * stride) % values.len()];
                Request::get("/")
                    .header(header, value.as_str())
                    .body(Full::new(Bytes::new()))
                    .unwrap_or_default()
            },
            StatusCode::OK,
        )
    })
}

/// One variant during a round: its server (none for raw `GET`s) and what its
/// slices have measured so far.
pub(super) struct Contender {
    pub(super) variant: Variant,
    server: Option<Server>,
    measured: Measured,
    concurrency: usize,
    server_cpu: Duration,
    redis_cpu: f64,
    /// Requests sent in all, warm-ups included (estimated from the
    /// measured rate): what the CPU times are divided by.
    sent: f64,
}

impl Contender {
    /// Starts the variant's server; a cached one has every token in its
    /// cache before anything is measured (its rows are about hits; misses
    /// are row 1).
    pub(super) fn start(
        context: &Context,
        fixture: &Fixture,
        variant: Variant,
    ) -> Result<Self, String> {
        let server = Self::serve(context, fixture, variant)?;
        if let (Some(server), Variant::Cached | Variant::CachedOne) = (&server, variant) {
            prewarm(context, server.addr(), &fixture.bearer)?;
        }
        let concurrency = Self::bounds(context, variant, 1).concurrency;
        Ok(Self {
            variant,
            server,
            measured: Measured::empty(),
            concurrency,
            server_cpu: Duration::ZERO,
            redis_cpu: 0.0,
            sent: 0.0,
        })
    }

    /// The variant's load, cut into `slices`: each slice warms up and
    /// measures its share of the settings' seconds and requests.
    fn bounds(context: &Context, variant: Variant, slices: usize) -> Bounds {
        let whole = match variant {
            Variant::UnprotectedOne | Variant::CachedOne => context.bounds_at(1),
            _ => context.bounds(),
        };
        let share = u32::try_from(slices.max(1)).unwrap_or(1);
        Bounds {
            concurrency: whole.concurrency,
            warmup: whole.warmup / share,
            duration: whole.duration / share,
            max_requests: whole.max_requests / u64::from(share),
        }
    }

    fn serve(
        context: &Context,
        fixture: &Fixture,
        variant: Variant,
    ) -> Result<Option<Server>, String> {
        let url = fixture.redis.url();
        let threads = context.settings.server_threads;
        let prefix = fixture.prefix.clone();
        let server = match variant {
            Variant::RawGet => return Ok(None),
            Variant::EmptyLayer => Server::start(threads, || async { Ok(apps::empty_layer()) }),
            Variant::Unprotected | Variant::UnprotectedOne => {
                Server::start(threads, || async { Ok(apps::unprotected()) })
            }
            Variant::Uncached | Variant::Cached | Variant::CachedOne => {
                let cached = variant != Variant::Uncached;
                Server::start(threads, move || async move {
                    apps::opaque(&url, &prefix, cached).await
                })
            }
            Variant::UncachedAcl => {
                let url = fixture
                    .redis
                    .url_as("token-client", "bench-client-password");
                Server::start(threads, move || async move {
                    apps::opaque(&url, &prefix, false).await
                })
            }
            Variant::Sessions => {
                let pool = context.settings.session_pool;
                Server::start(
                    threads,
                    move || async move { apps::sessions(&url, pool).await },
                )
            }
            Variant::JwtHs256 => {
                let key = DecodingKey::from_secret(&fixture.hs256_secret);
                Server::start(threads, move || async move {
                    Ok(apps::jwt(key, Algorithm::HS256))
                })
            }
            Variant::JwtEdDsa => {
                let key = DecodingKey::from_ed_der(&fixtures::ED25519_PUBLIC);
                Server::start(threads, move || async move {
                    Ok(apps::jwt(key, Algorithm::EdDSA))
                })
            }
        };
        server.map(Some)
    }

    /// One slice of the variant's load; adds what it measured.
    pub(super) fn measure_slice(&mut self, context: &Context, fixture: &Fixture, slices: usize) {
        let bounds = Self::bounds(context, self.variant, slices);
        let url = fixture.redis.url();
        let cpu_before = self.server.as_ref().map(Server::cpu);
        let redis_before = redis_cpu(&context.generator, &url);
        let measured: Measured = match (&self.server, self.variant) {
            (None, _) => {
                let keys = Arc::clone(&fixture.token_keys);
                context.generator.block_on(load::redis_commands(
                    &url,
                    bounds,
                    move |worker, sequence| {
                        let index = usize::try_from(sequence).unwrap_or(0);
                        let key = &keys[(worker * 7919 + index) % keys.len()];
                        let mut cmd = redis::cmd("GET");
                        cmd.arg(key.as_slice());
                        cmd
                    },
                ))
            }
            (Some(server), Variant::Sessions) => context.generator.http(
                server.addr(),
                bounds,
                requests("cookie", &fixture.cookies, 1),
            ),
            (Some(server), Variant::JwtHs256) => context.generator.http(
                server.addr(),
                bounds,
                requests("authorization", &fixture.hs256, 1),
            ),
            (Some(server), Variant::JwtEdDsa) => context.generator.http(
                server.addr(),
                bounds,
                requests("authorization", &fixture.eddsa, 1),
            ),
            (Some(server), _) => context.generator.http(
                server.addr(),
                bounds,
                requests("authorization", &fixture.bearer, 1),
            ),
        };
        if let (Some(server), Some(before)) = (&self.server, cpu_before) {
            self.server_cpu += server.cpu().saturating_sub(before);
        }
        self.redis_cpu += redis_cpu(&context.generator, &url) - redis_before;
        // Warm-up requests used CPU too: the slice's requests in all are
        // estimated from its measured part.
        let measured_requests = load::u64_to_f64(measured.ok + measured.errors);
        self.sent += measured_requests * (bounds.warmup + bounds.duration).as_secs_f64()
            / bounds.duration.as_secs_f64();
        self.measured.append(&measured);
    }

    /// The round's figures for this variant (its server stops here).
    pub(super) fn figures(self) -> Figures {
        let mut figures = Figures::of(self.variant.name(), &self.measured, self.concurrency);
        if self.sent > 0.0 {
            if self.server.is_some() {
                figures.server_cpu_us = Some(self.server_cpu.as_secs_f64() * 1e6 / self.sent);
            }
            figures.redis_cpu_us = Some(self.redis_cpu * 1e6 / self.sent);
        }
        figures
    }
}

/// Sends every token once (32 connections, each its share), unmeasured.
fn prewarm(
    context: &Context,
    addr: std::net::SocketAddr,
    bearer: &Arc<Vec<String>>,
) -> Result<(), String> {
    const CONNECTIONS: usize = 32;
    let count = bearer.len();
    let bounds = Bounds {
        concurrency: CONNECTIONS,
        warmup: Duration::ZERO,
        duration: Duration::from_secs(60),
        max_requests: u64::try_from(count).unwrap_or(u64::MAX),
    };
    let values = Arc::clone(bearer);
    let factory: ScenarioFactory = Arc::new(move |worker| {
        let values = Arc::clone(&values);
        load::Fixed::boxed(
            move |sequence| {
                // Worker w sends tokens w, w + 32, w + 64, …
                let index = (worker + (sequence - 1) * CONNECTIONS) % values.len();
                Request::get("/")
                    .header("authorization", values[index].as_str())
                    .body(Full::new(Bytes::new()))
                    .unwrap_or_default()
            },
            StatusCode::OK,
        )
    });
    let warmed = context.generator.http(addr, bounds, factory);
    match warmed.first_error {
        Some(error) => Err(format!("warming the cache: {error}")),
        None => Ok(()),
    }
}

//! Row 4: from `/oauth/revoke` returning to the first 401 in a downstream
//! service with the cache on.
//!
//! Each round: a token is issued (repository writer, no client, so its
//! holder may revoke it), the downstream service answers it twice (the
//! second answer comes from its cache), the authority revokes it, and the
//! harness polls the service back to back until it answers 401; the figure
//! is the time from the revocation's response to the 401's. The baseline is
//! one request answered from the cache: polling cannot see a 401 sooner.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use token_repository::{KeyPrefix, RedisConfig, RedisStore};
use token_test_harness::RedisServer;

use crate::apps;
use crate::authority::{self, Authority};
use crate::fixtures::{self, Person};
use crate::load::{self, Sender, histogram, u64_to_f64};
use crate::report::{Figures, Row, micros, times};
use crate::server::Server;
use crate::{Context, login};

/// A poll that never sees the 401 gives up after this long.
const GIVE_UP: Duration = Duration::from_secs(5);

pub(crate) fn run(context: &mut Context) -> Result<(), String> {
    let redis = RedisServer::builder()
        .try_start()
        .map_err(|error| error.to_string())?;
    let binary = authority::locate(context.settings.authority.as_deref())?;
    let dir = tempfile::tempdir().map_err(|error| error.to_string())?;
    let env = login::authority_env(&redis.url(), &context.settings, &[]);
    let authority = Authority::start(&binary, &env, &dir.path().join("authority.log"))?;
    let url = redis.url();
    let prefix = KeyPrefix::default();
    let service = Server::start(context.settings.server_threads, move || async move {
        apps::opaque(&url, &prefix, true).await
    })?;
    let rounds = context.settings.revocations.max(1);
    let users: Vec<Person> = (0..rounds.div_ceil(10)).map(Person::new).collect();
    let url = redis.url();
    let measured = context.generator.block_on(async {
        let store = RedisStore::new(RedisConfig::new(&url)).map_err(|error| error.to_string())?;
        let minted = fixtures::issue(&store, &users, 10, 16, |grant| {
            grant.holder.client_id = None;
        })
        .await?;
        let mut downstream = load::connect(service.addr()).await?;
        let mut revoker = load::connect(authority.addr()).await?;
        let mut revocation = histogram();
        let mut hit = histogram();
        let mut polls = 0_u64;
        for minted in minted.iter().take(rounds) {
            let token = minted.access.token.expose_secret();
            let bearer = format!("Bearer {token}");
            expect(&mut downstream, get(&bearer), StatusCode::OK).await?;
            let started = Instant::now();
            expect(&mut downstream, get(&bearer), StatusCode::OK).await?;
            record(&mut hit, started.elapsed());
            let form = format!("token={token}");
            expect(&mut revoker, revoke(form), StatusCode::OK).await?;
            let revoked = Instant::now();
            loop {
                polls += 1;
                let (status, _) = load::send(&mut downstream, get(&bearer)).await?;
                if status == StatusCode::UNAUTHORIZED {
                    record(&mut revocation, revoked.elapsed());
                    break;
                }
                if status != StatusCode::OK || revoked.elapsed() > GIVE_UP {
                    return Err(format!(
                        "after the revocation the service answered {status}"
                    ));
                }
            }
        }
        Ok::<_, String>((revocation, hit, polls))
    })?;
    let (revocation, hit, polls) = measured;
    drop(service);
    drop(authority);
    let p = |histogram: &hdrhistogram::Histogram<u64>, q: f64| {
        u64_to_f64(histogram.value_at_quantile(q)) / 1000.0
    };
    let (p50, p99) = (p(&revocation, 0.5), p(&revocation, 0.99));
    let (hit50, hit99) = (p(&hit, 0.5), p(&hit, 0.99));
    context.report.rows.push(
        Row::new(
            "4",
            format!(
                "Revocation: `/oauth/revoke` returns → first 401 downstream (cache on), {} revocations",
                revocation.len()
            ),
        )
        .figures(
            format!("p50 {} / p99 {}", micros(p50), micros(p99)),
            format!("one cached request: p50 {} / p99 {}", micros(hit50), micros(hit99)),
        )
        .ratio(times(p99 / hit99))
        .goal("p99 < 10 ms", p99 < 10_000.0),
    );
    let mut figures = Figures::of("revocation → first 401", &load::Measured::empty(), 1);
    figures.p50_us = p50;
    figures.p99_us = p99;
    figures.max_us = p(&revocation, 1.0);
    figures.ok = revocation.len();
    context.report.figures.push(figures);
    context.report.notes.push(format!(
        "Row 4: {} polls for {} revocations: the 401 is usually the first answer after the revocation returns \
         (Redis pushes the invalidation while the revocation script runs, before the authority answers).",
        polls,
        revocation.len()
    ));
    Ok(())
}

fn record(histogram: &mut hdrhistogram::Histogram<u64>, elapsed: Duration) {
    let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
    let _ = histogram.record(nanos.max(1));
}

fn get(bearer: &str) -> Request<Full<Bytes>> {
    Request::get("/")
        .header("authorization", bearer)
        .body(Full::new(Bytes::new()))
        .unwrap_or_default()
}

fn revoke(form: String) -> Request<Full<Bytes>> {
    Request::post("/oauth/revoke")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(form)))
        .unwrap_or_default()
}

async fn expect(
    sender: &mut Sender,
    request: Request<Full<Bytes>>,
    expected: StatusCode,
) -> Result<Bytes, String> {
    let (status, body) = load::send(sender, request).await?;
    if status == expected {
        Ok(body)
    } else {
        Err(format!(
            "expected {expected}, got {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        ))
    }
}

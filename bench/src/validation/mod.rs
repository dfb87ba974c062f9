//! Rows 1–3: what validating a request costs, uncached and cached, against
//! the unprotected handler, raw Redis `GET`, a session store on Redis and
//! JWT verification; every variant driven by the same generator at the
//! same concurrency. Each round's variants take turns in slices
//! ([`contender`]), so that compared pairs see the same machine.

use std::collections::HashMap;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, EncodingKey};
use token_repository::{KeyPrefix, RedisConfig, RedisStore};
use token_test_harness::RedisServer;

mod contender;

use contender::Contender;

use crate::Context;
use crate::apps;
use crate::fixtures::{self, Person};
use crate::report::{Figures, Row, median_run, micros, thousands, times};

/// One way of authenticating the handler's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Variant {
    Unprotected,
    RawGet,
    Uncached,
    UncachedAcl,
    Cached,
    Sessions,
    JwtHs256,
    JwtEdDsa,
    /// The unprotected handler on one connection: latency without queueing.
    UnprotectedOne,
    /// The cached layer on one connection.
    CachedOne,
    /// The unprotected handler behind a layer that does nothing: what
    /// axum's `route_layer` plumbing costs by itself.
    EmptyLayer,
}

impl Variant {
    const ALL: [Self; 11] = [
        Self::Unprotected,
        Self::RawGet,
        Self::Uncached,
        Self::UncachedAcl,
        Self::Cached,
        Self::Sessions,
        Self::JwtHs256,
        Self::JwtEdDsa,
        Self::UnprotectedOne,
        Self::CachedOne,
        Self::EmptyLayer,
    ];

    /// The order the variants take turns in within a round: the pairs the
    /// goals compare side by side (2a unprotected and cached, 3b cached and
    /// HS256, 1b raw `GET` and uncached, 3a uncached and sessions, 2b the
    /// two single connections), so that each pair's slices are measured
    /// back to back.
    const TURNS: [Self; 11] = [
        Self::EmptyLayer,
        Self::Unprotected,
        Self::Cached,
        Self::JwtHs256,
        Self::JwtEdDsa,
        Self::RawGet,
        Self::Uncached,
        Self::Sessions,
        Self::UncachedAcl,
        Self::UnprotectedOne,
        Self::CachedOne,
    ];

    fn id(self) -> &'static str {
        match self {
            Self::Unprotected => "unprotected",
            Self::RawGet => "raw-get",
            Self::Uncached => "uncached",
            Self::UncachedAcl => "uncached-acl",
            Self::Cached => "cached",
            Self::Sessions => "sessions",
            Self::JwtHs256 => "jwt-hs256",
            Self::JwtEdDsa => "jwt-eddsa",
            Self::UnprotectedOne => "unprotected-1",
            Self::CachedOne => "cached-1",
            Self::EmptyLayer => "empty-layer",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Unprotected => "unprotected handler",
            Self::RawGet => "raw Redis GET (one connection per worker)",
            Self::Uncached => "TokenAuthLayer, uncached",
            Self::UncachedAcl => "TokenAuthLayer, uncached, as the read-only ACL user",
            Self::Cached => "TokenAuthLayer, cached (tracking)",
            Self::Sessions => "tower-sessions + RedisStore (fred)",
            Self::JwtHs256 => "jsonwebtoken HS256",
            Self::JwtEdDsa => "jsonwebtoken EdDSA",
            Self::UnprotectedOne => "unprotected handler, 1 connection",
            Self::CachedOne => "TokenAuthLayer, cached, 1 connection",
            Self::EmptyLayer => "unprotected handler behind an empty route_layer",
        }
    }
}

/// The ACL of the middleware's Redis user (the README's), for the ACL
/// variant.
const CLIENT_ACL: &[&str] = &[
    "ACL",
    "SETUSER",
    "token-client",
    "on",
    ">bench-client-password",
    "resetkeys",
    "resetchannels",
    "%R~ts:s:*",
    "-@all",
    "+get",
    "+ping",
    "+client|tracking",
];

/// Everything the variants need, prepared once.
struct Fixture {
    redis: RedisServer,
    prefix: KeyPrefix,
    token_keys: Arc<Vec<Vec<u8>>>,
    bearer: Arc<Vec<String>>,
    cookies: Arc<Vec<String>>,
    hs256: Arc<Vec<String>>,
    eddsa: Arc<Vec<String>>,
    hs256_secret: Vec<u8>,
}

pub(crate) fn run(context: &mut Context) -> Result<(), String> {
    let fixture = prepare(context)?;
    let rounds = context.settings.rounds.max(1);
    let mut results: HashMap<Variant, Vec<Figures>> = HashMap::new();
    let only = &context.settings.only;
    let variants: Vec<Variant> = Variant::TURNS
        .into_iter()
        .filter(|variant| only.is_empty() || only.iter().any(|id| id == variant.id()))
        .collect();
    let slices = context.settings.slices.max(1);
    for round in 0..rounds {
        // Every variant's server is up for the whole round; the variants
        // take turns, a slice each, A B C | C B A | A B C …: a pair
        // compared in a row is measured side by side, slice by slice,
        // rather than seconds apart.
        let mut contenders = variants
            .iter()
            .map(|&variant| Contender::start(context, &fixture, variant))
            .collect::<Result<Vec<_>, _>>()?;
        for _ in 0..slices {
            for contender in &mut contenders {
                contender.measure_slice(context, &fixture, slices);
            }
            // The next slice goes the other way.
            contenders.reverse();
        }
        for contender in contenders {
            let variant = contender.variant;
            let figures = contender.figures();
            context.progress(&format!(
                "round {}/{rounds}: {:<55} {}",
                round + 1,
                variant.name(),
                figures.summary("req")
            ));
            results.entry(variant).or_default().push(figures);
        }
    }
    // The median round of each variant (by rate): one noisy round moves
    // nothing.
    // Round by round, the ratios the goals are about: how much the
    // machine's noise moves them.
    let round_ratios = |ours: Variant, base: Variant| -> Option<Vec<f64>> {
        let (ours, base) = (results.get(&ours)?, results.get(&base)?);
        Some(
            ours.iter()
                .zip(base)
                .map(|(o, b)| o.rate / b.rate)
                .collect(),
        )
    };
    let per_round = |ours: Variant, base: Variant| -> Option<String> {
        let ratios: Vec<String> = round_ratios(ours, base)?
            .iter()
            .map(|ratio| format!("{ratio:.2}"))
            .collect();
        Some(ratios.join(", "))
    };
    // Issue 17: the cached layer at 0.95× the bare handler in every round.
    let cached_worst_round = round_ratios(Variant::Cached, Variant::Unprotected)
        .and_then(|ratios| ratios.into_iter().min_by(f64::total_cmp));
    let round_notes = [
        (
            "2a (cached / unprotected)",
            per_round(Variant::Cached, Variant::Unprotected),
        ),
        (
            "3a (uncached / sessions)",
            per_round(Variant::Uncached, Variant::Sessions),
        ),
        (
            "3b (cached / HS256)",
            per_round(Variant::Cached, Variant::JwtHs256),
        ),
    ];
    let round_note = round_notes
        .iter()
        .filter_map(|(name, ratios)| ratios.as_ref().map(|ratios| format!("{name}: {ratios}")))
        .collect::<Vec<_>>()
        .join("; ");
    let mut median = HashMap::new();
    for (variant, runs) in results {
        median.insert(variant, median_run(runs, |figures| figures.rate));
    }
    if variants.len() < Variant::ALL.len() {
        for variant in variants {
            if let Some(figures) = median.remove(&variant) {
                context.report.figures.push(figures);
            }
        }
        return Ok(());
    }
    let get = |variant: Variant| median.get(&variant).cloned().ok_or("missing variant");
    let unprotected = get(Variant::Unprotected)?;
    let raw = get(Variant::RawGet)?;
    let uncached = get(Variant::Uncached)?;
    let uncached_acl = get(Variant::UncachedAcl)?;
    let cached = get(Variant::Cached)?;
    let sessions = get(Variant::Sessions)?;
    let hs256 = get(Variant::JwtHs256)?;
    let eddsa = get(Variant::JwtEdDsa)?;
    let unprotected_one = get(Variant::UnprotectedOne)?;
    let cached_one = get(Variant::CachedOne)?;

    let rate = |f: &Figures| format!("{} req/s", thousands(f.rate));
    let latency = |f: &Figures| format!("p50 {} / p99 {}", micros(f.p50_us), micros(f.p99_us));
    let both = |f: &Figures| format!("{}; {}", rate(f), latency(f));
    let rows = &mut context.report.rows;
    rows.push(
        Row::new(
            "1a",
            "Validation, uncached: handler behind `TokenAuthLayer` vs the same handler without it",
        )
        .figures(both(&uncached), both(&unprotected))
        .ratio(times(uncached.rate / unprotected.rate)),
    );
    rows.push(
        Row::new(
            "1b",
            "Validation, uncached vs raw Redis `GET` of the same keys (one round trip per request)",
        )
        .figures(both(&uncached), both(&raw))
        .ratio(times(uncached.rate / raw.rate)),
    );
    rows.push(
        Row::new("1c", "Validation, uncached, as the read-only ACL user (the README's deployment) vs the unprotected handler")
            .figures(both(&uncached_acl), both(&unprotected))
            .ratio(times(uncached_acl.rate / unprotected.rate)),
    );
    let cached_ratio = cached.rate / unprotected.rate;
    rows.push(
        Row::new(
            "2a",
            "Validation, cached: throughput vs the unprotected handler",
        )
        .figures(both(&cached), both(&unprotected))
        .ratio(times(cached_ratio))
        .goal(
            "≥ 0.95× in every round",
            cached_worst_round.unwrap_or(cached_ratio) >= 0.95,
        ),
    );
    // Latency added by the layer itself: on one connection (no queueing).
    // At saturation every request also waits for the ones ahead of it, so
    // the added p99 there follows the throughput (row 2a); shown beside.
    let added = cached_one.p99_us - unprotected_one.p99_us;
    let added_saturated = cached.p99_us - unprotected.p99_us;
    rows.push(
        Row::new(
            "2b",
            format!(
                "Validation, cached: p99 latency added to the unprotected handler's, one connection \
                 (at {} connections: {} vs {}, {}{})",
                cached.concurrency,
                micros(cached.p99_us),
                micros(unprotected.p99_us),
                if added_saturated < 0.0 { "−" } else { "+" },
                micros(added_saturated.abs())
            ),
        )
        .figures(
            format!("p50 {} / p99 {}", micros(cached_one.p50_us), micros(cached_one.p99_us)),
            format!("p50 {} / p99 {}", micros(unprotected_one.p50_us), micros(unprotected_one.p99_us)),
        )
        .ratio(format!(
            "{}{}",
            if added < 0.0 { "−" } else { "+" },
            micros(added.abs())
        ))
        .goal("added < 50 µs", added < 50.0),
    );
    let vs_sessions = uncached.rate / sessions.rate;
    rows.push(
        Row::new("3a", "Uncached vs a session store on Redis (`tower-sessions` + `tower-sessions-redis-store`, session id per request)")
            .figures(both(&uncached), both(&sessions))
            .ratio(times(vs_sessions))
            .goal("≥ 1.00×", vs_sessions >= 1.0),
    );
    let vs_hs = cached.rate / hs256.rate;
    rows.push(
        Row::new(
            "3b",
            "Cached vs stateless JWT validation, `jsonwebtoken` HS256",
        )
        .figures(both(&cached), both(&hs256))
        .ratio(times(vs_hs))
        .goal("> 1.00×", vs_hs > 1.0),
    );
    let vs_ed = cached.rate / eddsa.rate;
    rows.push(
        Row::new(
            "3c",
            "Cached vs stateless JWT validation, `jsonwebtoken` EdDSA (Ed25519)",
        )
        .figures(both(&cached), both(&eddsa))
        .ratio(times(vs_ed))
        .goal("> 1.00×", vs_ed > 1.0),
    );
    for variant in Variant::ALL {
        if let Some(figures) = median.remove(&variant) {
            context.report.figures.push(figures);
        }
    }
    context.report.notes.push(format!(
        "Rows 1–3 report each variant's median round; a round gives every variant {slices} slices \
         of its measurement, taken in turn with the others' (in reverse order every other slice; \
         the pairs rows 1b, 2a, 2b, 3a and 3b compare take their turns back to back). \
         The ratios round by round were {round_note}."
    ));
    drop(fixture);
    Ok(())
}

fn prepare(context: &Context) -> Result<Fixture, String> {
    let redis = RedisServer::builder()
        .try_start()
        .map_err(|error| error.to_string())?;
    let url = redis.url();
    let _ = redis.cli(CLIENT_ACL);
    let prefix = KeyPrefix::default();
    let tokens = context.settings.tokens.max(10);
    let users: Vec<Person> = (0..tokens / 10).map(Person::new).collect();
    let hs256_secret: Vec<u8> = uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .chain(uuid::Uuid::new_v4().as_bytes())
        .copied()
        .collect();
    let setup = context.generator.block_on(async {
        let store = RedisStore::new(RedisConfig::new(&url).prefix(prefix.clone()))
            .map_err(|error| error.to_string())?;
        // Ten sessions per user, as in the footprint row.
        let minted = fixtures::issue(&store, &users, 10, 32, |_| {}).await?;
        let session_store = apps::session_store(&url, 1).await?;
        let cookies = fixtures::sessions(&session_store, &users).await?;
        Ok::<_, String>((minted, cookies))
    })?;
    let (minted, cookies) = setup;
    let token_keys = minted
        .iter()
        .map(|m| prefix.session(m.access.token.tag(), m.family()))
        .collect();
    let bearer: Vec<String> = minted
        .iter()
        .map(|m| format!("Bearer {}", m.access.token.expose_secret()))
        .collect();
    let hs256 = fixtures::jwts(
        &users,
        Algorithm::HS256,
        &EncodingKey::from_secret(&hs256_secret),
    )?;
    let eddsa = fixtures::jwts(
        &users,
        Algorithm::EdDSA,
        &EncodingKey::from_ed_der(&fixtures::ed25519_pkcs8(&fixtures::ED25519_SEED)),
    )?;
    context.progress(&format!(
        "rows 1–3: {} access tokens of {} users, {} sessions, {} JWTs of each kind",
        minted.len(),
        users.len(),
        cookies.len(),
        users.len()
    ));
    Ok(Fixture {
        redis,
        prefix,
        token_keys: Arc::new(token_keys),
        bearer: Arc::new(bearer),
        cookies: Arc::new(cookies),
        hs256: Arc::new(hs256.into_iter().map(|t| format!("Bearer {t}")).collect()),
        eddsa: Arc::new(eddsa.into_iter().map(|t| format!("Bearer {t}")).collect()),
        hs256_secret,
    })
}

//! Row 7: Redis memory per live token pair (access + refresh + their index
//! entries) at a million pairs, from `INFO memory`, and the time to issue
//! them through the repository's writer.

use std::time::Instant;

use futures_util::StreamExt as _;
use token_repository::{RedisConfig, RedisStore, TokenWriter as _};
use token_test_harness::RedisServer;

use crate::fixtures::Person;
use crate::report::{Row, thousands};
use crate::{Context, info_field, redis_info};

/// Sessions (token pairs) per user.
const SESSIONS_PER_USER: usize = 10;
/// Issues in flight.
const IN_FLIGHT: usize = 64;

pub(crate) fn run(context: &mut Context) -> Result<(), String> {
    let redis = RedisServer::builder()
        .try_start()
        .map_err(|error| error.to_string())?;
    let url = redis.url();
    let pairs = context.settings.pairs.max(SESSIONS_PER_USER);
    let users: Vec<Person> = (0..pairs / SESSIONS_PER_USER).map(Person::new).collect();
    let pairs = users.len() * SESSIONS_PER_USER;
    let used = |info: &str| info_field(info, "used_memory:").and_then(|v| v.parse::<f64>().ok());
    let (elapsed, before, after, sample) = context.generator.block_on(async {
        let store = RedisStore::new(RedisConfig::new(&url).pool_size(IN_FLIGHT))
            .map_err(|error| error.to_string())?;
        let before = used(&redis_info(&url, "memory").await?).ok_or("no used_memory")?;
        let started = Instant::now();
        let failures = futures_util::stream::iter(0..pairs)
            .map(|index| {
                let store = store.clone();
                let grant = users[index % users.len()].grant();
                async move {
                    let minted = grant.mint().map_err(|error| error.to_string())?;
                    store
                        .issue(&minted, None)
                        .await
                        .map_err(|error| error.to_string())
                }
            })
            .buffer_unordered(IN_FLIGHT)
            .filter(|result| std::future::ready(result.is_err()))
            .count()
            .await;
        let elapsed = started.elapsed();
        if failures > 0 {
            return Err(format!("{failures} issues failed"));
        }
        let after = used(&redis_info(&url, "memory").await?).ok_or("no used_memory")?;
        let sample = breakdown(&url).await?;
        Ok::<_, String>((elapsed, before, after, sample))
    })?;
    let per_pair = (after - before) / crate::load::u64_to_f64(u64::try_from(pairs).unwrap_or(0));
    let rate = crate::load::u64_to_f64(u64::try_from(pairs).unwrap_or(0)) / elapsed.as_secs_f64();
    let raw = sample.raw_bytes_per_pair;
    context.report.rows.push(
        Row::new(
            "7a",
            format!(
                "Footprint: Redis `used_memory` per live token pair (access + refresh + index), {} pairs of {} users",
                thousands(crate::load::u64_to_f64(u64::try_from(pairs).unwrap_or(0))),
                thousands(crate::load::u64_to_f64(u64::try_from(users.len()).unwrap_or(0)))
            ),
        )
        .figures(
            format!("{per_pair:.0} B/pair"),
            format!("{raw:.0} B/pair of keys, values and index members (the data itself)"),
        )
        .ratio(format!("{:.2}× the data", per_pair / raw))
        .goal("< 400 B/pair", per_pair < 400.0),
    );
    context.report.rows.push(
        Row::new(
            "7b",
            "Footprint: time to issue them (`RedisStore::issue`, 64 in flight)",
        )
        .figures(
            format!(
                "{:.1} s ({} pairs/s)",
                elapsed.as_secs_f64(),
                thousands(rate)
            ),
            "—",
        ),
    );
    context.report.notes.push(format!(
        "Row 7 breakdown (`MEMORY USAGE` of one user's keys; excludes the expires table and hash-table slots): \
         session key {:.0} B per pair (key name {} B, session record {} B: holder, both tokens' truncated digests and expiries), \
         index {:.0} B for {} sessions = {:.0} B per pair (member {} B + score); \
         the rest, {:.0} B per pair, is Redis's per-key bookkeeping (expires entry, dict slots).",
        sample.session_usage,
        sample.session_key_len,
        sample.session_value_len,
        sample.index_usage,
        sample.index_entries,
        sample.index_per_pair,
        sample.member_len,
        per_pair - sample.session_usage - sample.index_per_pair,
    ));
    Ok(())
}

/// What one user's keys weigh.
#[derive(Debug, Default)]
struct Sample {
    session_usage: f64,
    session_key_len: usize,
    session_value_len: usize,
    index_usage: f64,
    index_entries: usize,
    index_per_pair: f64,
    member_len: usize,
    raw_bytes_per_pair: f64,
}

async fn breakdown(url: &str) -> Result<Sample, String> {
    let client = redis::Client::open(url).map_err(|error| error.to_string())?;
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|error| error.to_string())?;
    let (_, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
        .arg(0)
        .arg("MATCH")
        .arg("ts:sidx:*")
        .arg("COUNT")
        .arg(1000)
        .query_async(&mut connection)
        .await
        .map_err(|error| error.to_string())?;
    let index = keys.first().ok_or("no index key found")?;
    let tag = &index[b"ts:sidx:".len()..];
    let members: Vec<Vec<u8>> = redis::cmd("ZRANGE")
        .arg(index.as_slice())
        .arg(0)
        .arg(-1)
        .query_async(&mut connection)
        .await
        .map_err(|error| error.to_string())?;
    let usage = |key: Vec<u8>| {
        let mut connection = connection.clone();
        async move {
            let usage: Option<u64> = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(key.as_slice())
                .arg("SAMPLES")
                .arg(0)
                .query_async(&mut connection)
                .await
                .map_err(|error| error.to_string())?;
            let len: usize = redis::cmd("STRLEN")
                .arg(key.as_slice())
                .query_async(&mut connection)
                .await
                .unwrap_or(0);
            Ok::<_, String>((crate::load::u64_to_f64(usage.unwrap_or(0)), key.len(), len))
        }
    };
    let mut sessions = Vec::new();
    for member in &members {
        // session id: 16 raw bytes
        let mut key = b"ts:s:".to_vec();
        key.extend_from_slice(tag);
        key.push(b':');
        key.extend_from_slice(member);
        sessions.push(usage(key).await?);
    }
    let n = crate::load::u64_to_f64(u64::try_from(sessions.len().max(1)).unwrap_or(1));
    let mut sample = Sample {
        session_usage: sessions.iter().map(|item| item.0).sum::<f64>() / n,
        session_key_len: sessions.first().map_or(0, |item| item.1),
        session_value_len: sessions.first().map_or(0, |item| item.2),
        ..Sample::default()
    };
    let (index_usage, _, _) = usage(index.clone()).await?;
    sample.index_usage = index_usage;
    sample.index_entries = members.len();
    sample.index_per_pair = index_usage / n;
    sample.member_len = members.first().map_or(0, Vec::len);
    let member_bytes = crate::load::u64_to_f64(u64::try_from(sample.member_len + 8).unwrap_or(0));
    sample.raw_bytes_per_pair = crate::load::u64_to_f64(
        u64::try_from(sample.session_key_len + sample.session_value_len).unwrap_or(0),
    ) + member_bytes
        + crate::load::u64_to_f64(u64::try_from(index.len()).unwrap_or(0)) / n;
    Ok(sample)
}

//! Measures how fast a revocation reaches a service by each push mechanism
//! the cache could use, on a private redis-server (the test harness starts
//! one; `redis-server` must be on `PATH`):
//!
//! - `CLIENT TRACKING ON BCAST PREFIX ts:tok:` (what the cache's
//!   `Invalidations` use),
//! - `CLIENT TRACKING ON` in default mode, after a `GET` of the key,
//! - a revocation channel: `SUBSCRIBE`, with the writer publishing.
//!
//! Each round stores a token key, then one script deletes it and publishes
//! its name, the way an authority would revoke with a channel; the clock
//! runs from just before the script is sent until each listener's push
//! callback sees the message. Then it measures what broadcast tracking
//! costs the writer: pipelined `SET`s of token keys with 0, 10 and 100
//! broadcast listeners.
//!
//! ```sh
//! cargo run --release -p token-client --example invalidation_latency
//! ```

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ProtocolVersion, PushInfo, PushKind};
use token_test_harness::RedisServer;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

const ROUNDS: usize = 2000;
const CHANNEL: &str = "ts:revoked";
const KEY: &str = "ts:tok:{measurement}:key";
const DELETE_AND_PUBLISH: &str =
    "redis.call('DEL', KEYS[1]); redis.call('PUBLISH', ARGV[1], KEYS[1]); return 1";

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// A RESP3 connection whose pushes of `kind` are timestamped into a channel.
async fn listener(
    redis: &RedisServer,
    kind: PushKind,
) -> Result<(MultiplexedConnection, UnboundedReceiver<Instant>)> {
    let (sender, receiver): (UnboundedSender<Instant>, _) = unbounded_channel();
    let on_push = move |push: PushInfo| {
        if push.kind == kind {
            let _ = sender.send(Instant::now());
        }
        Ok::<(), std::convert::Infallible>(())
    };
    let client = redis::Client::open(format!("{}?protocol=resp3", redis.url()))?;
    assert_eq!(
        client.get_connection_info().redis_settings().protocol(),
        ProtocolVersion::RESP3
    );
    let connection = client
        .get_multiplexed_async_connection_with_config(
            &AsyncConnectionConfig::new().set_push_sender(on_push),
        )
        .await?;
    Ok((connection, receiver))
}

fn percentile(sorted: &[Duration], permille: usize) -> Duration {
    sorted[(sorted.len() - 1) * permille / 1000]
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{name:<34} p50 {:>7.1?}  p99 {:>7.1?}  max {:>7.1?}",
        percentile(&samples, 500),
        percentile(&samples, 990),
        samples[samples.len() - 1]
    );
}

async fn latency(redis: &RedisServer) -> Result<()> {
    let mut writer = redis::Client::open(redis.url())?
        .get_multiplexed_async_connection()
        .await?;
    let (mut bcast, mut bcast_pushes) = listener(redis, PushKind::Invalidate).await?;
    redis::cmd("CLIENT")
        .arg(&["TRACKING", "ON", "BCAST", "PREFIX", "ts:tok:"])
        .exec_async(&mut bcast)
        .await?;
    let (mut default, mut default_pushes) = listener(redis, PushKind::Invalidate).await?;
    redis::cmd("CLIENT")
        .arg(&["TRACKING", "ON"])
        .exec_async(&mut default)
        .await?;
    let (mut subscriber, mut messages) = listener(redis, PushKind::Message).await?;
    subscriber.subscribe(CHANNEL).await?;

    let script = redis::Script::new(DELETE_AND_PUBLISH);
    let (mut by_bcast, mut by_default, mut by_channel) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        redis::cmd("SET")
            .arg(KEY)
            .arg("record")
            .exec_async(&mut writer)
            .await?;
        // The SET itself is broadcast; drain it before the clock starts.
        bcast_pushes.recv().await;
        // Default mode tracks only what this connection read.
        redis::cmd("GET").arg(KEY).exec_async(&mut default).await?;
        let started = Instant::now();
        script
            .key(KEY)
            .arg(CHANNEL)
            .invoke_async::<i64>(&mut writer)
            .await?;
        let received = |at: Option<Instant>| at.map(|at| at.duration_since(started));
        by_bcast.push(received(bcast_pushes.recv().await).ok_or("bcast closed")?);
        by_default.push(received(default_pushes.recv().await).ok_or("default closed")?);
        by_channel.push(received(messages.recv().await).ok_or("channel closed")?);
    }
    println!("revocation → push received, {ROUNDS} rounds, one listener each:");
    report("CLIENT TRACKING BCAST (chosen)", by_bcast);
    report("CLIENT TRACKING default mode", by_default);
    report("revocation channel (PUBLISH)", by_channel);
    Ok(())
}

/// Time for the writer to store `count` token keys, pipelined, while
/// `listeners` connections track the prefix in broadcast mode.
async fn issuance(redis: &RedisServer, listeners: usize, count: usize) -> Result<Duration> {
    let mut held = Vec::new();
    for _ in 0..listeners {
        let (mut connection, receiver) = listener(redis, PushKind::Invalidate).await?;
        redis::cmd("CLIENT")
            .arg(&["TRACKING", "ON", "BCAST", "PREFIX", "ts:tok:"])
            .exec_async(&mut connection)
            .await?;
        held.push((connection, receiver));
    }
    let mut writer = redis::Client::open(redis.url())?
        .get_multiplexed_async_connection()
        .await?;
    let mut pipeline = redis::pipe();
    for index in 0..count {
        pipeline
            .cmd("SET")
            .arg(format!("ts:tok:{{tag}}:{index:032}"))
            .arg([0_u8; 120].as_slice())
            .arg("PX")
            .arg(60_000)
            .ignore();
    }
    let started = Instant::now();
    pipeline.exec_async(&mut writer).await?;
    let elapsed = started.elapsed();
    redis::cmd("FLUSHALL").exec_async(&mut writer).await?;
    drop(held);
    Ok(elapsed)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let redis = RedisServer::start();
    latency(&redis).await?;
    const COUNT: usize = 20_000;
    println!("\nwriter: {COUNT} pipelined SETs of token keys with broadcast listeners:");
    for listeners in [0, 10, 100] {
        let elapsed = issuance(&redis, listeners, COUNT).await?;
        let rate = COUNT as f64 / elapsed.as_secs_f64();
        println!("{listeners:>4} listeners: {elapsed:>9.1?}  ({rate:>9.0} SET/s)");
    }
    Ok(())
}

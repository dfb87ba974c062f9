//! Asking a harness Redis directly, as its admin user.

use redis::aio::MultiplexedConnection;

/// A connection with every permission.
///
/// # Panics
///
/// When Redis does not answer.
pub async fn connect(admin_url: &str) -> MultiplexedConnection {
    redis::Client::open(admin_url)
        .expect("admin URL")
        .get_multiplexed_async_connection()
        .await
        .expect("admin connection")
}

/// How many times `command` (lower case, e.g. `get`) has run since Redis
/// started, from `INFO commandstats`.
///
/// # Panics
///
/// When Redis does not answer.
pub async fn command_calls(admin: &mut MultiplexedConnection, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(admin)
        .await
        .expect("INFO commandstats");
    calls_in(&info, command)
}

/// How many times `command` has run in `redis`, through `redis-cli` (for
/// tests without an admin connection of their own).
#[must_use]
pub fn command_calls_cli(redis: &token_test_harness::RedisServer, command: &str) -> u64 {
    calls_in(&redis.cli(&["INFO", "commandstats"]), command)
}

/// The calls of `command` in the text of `INFO commandstats`; 0 when it
/// has not run.
#[must_use]
pub fn calls_in(info: &str, command: &str) -> u64 {
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .and_then(|calls| calls.parse().ok())
        .unwrap_or(0)
}

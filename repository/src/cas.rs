//! Compare-and-set on single string keys of a [`RedisStore`]: the
//! authority's way of changing a record without losing a concurrent change
//! (its accounts, the broker's connections).

use std::sync::LazyLock;
use std::time::Duration;

use crate::{RedisStore, Result};

/// Replace the value only if it is still the one read; `ARGV[3]`, when not
/// empty, gives the new value a TTL in milliseconds.
static COMPARE_AND_SET: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then \
           if ARGV[3] ~= '' then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) \
           else redis.call('SET', KEYS[1], ARGV[2]) end \
           return 1 \
         end return 0",
    )
});

/// Delete the value only if it is still the one read.
static COMPARE_AND_DELETE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then \
           redis.call('DEL', KEYS[1]) return 1 \
         end return 0",
    )
});

/// Replaces `old` by `new` at `key` if it still holds `old`; `ttl` gives the
/// new value an expiry (none: no expiry). Answers whether it replaced.
///
/// # Errors
///
/// Redis failures.
pub async fn replace(
    store: &RedisStore,
    key: &str,
    old: &str,
    new: &str,
    ttl: Option<Duration>,
) -> Result<bool> {
    let (key, old, new) = (key.to_owned(), old.to_owned(), new.to_owned());
    let ttl = ttl
        .map(|ttl| {
            u64::try_from(ttl.as_millis())
                .unwrap_or(u64::MAX)
                .max(1)
                .to_string()
        })
        .unwrap_or_default();
    let swapped: i64 = store
        .with_connection(|mut connection| async move {
            Ok(COMPARE_AND_SET
                .key(&key)
                .arg(&old)
                .arg(&new)
                .arg(&ttl)
                .invoke_async(&mut connection)
                .await?)
        })
        .await?;
    Ok(swapped == 1)
}

/// Deletes `key` if it still holds `old`; answers whether it did.
///
/// # Errors
///
/// Redis failures.
pub async fn delete_if(store: &RedisStore, key: &str, old: &str) -> Result<bool> {
    let (key, old) = (key.to_owned(), old.to_owned());
    let deleted: i64 = store
        .with_connection(|mut connection| async move {
            Ok(COMPARE_AND_DELETE
                .key(&key)
                .arg(&old)
                .invoke_async(&mut connection)
                .await?)
        })
        .await?;
    Ok(deleted == 1)
}

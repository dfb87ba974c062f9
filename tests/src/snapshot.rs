//! The complete contents of a Redis data set, for "nothing changed" checks.

use std::collections::BTreeMap;

/// Every key with its serialized value (`DUMP`) and whether it expires.
pub type Snapshot = BTreeMap<Vec<u8>, (Vec<u8>, bool)>;

/// Reads every key of the Redis at `url`.
///
/// # Panics
///
/// When Redis cannot be read.
pub async fn snapshot(url: &str) -> Snapshot {
    let client = redis::Client::open(url).expect("redis url");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect for a snapshot");
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut connection)
        .await
        .expect("KEYS");
    let mut snapshot = Snapshot::new();
    for key in keys {
        let dump: Vec<u8> = redis::cmd("DUMP")
            .arg(&key)
            .query_async(&mut connection)
            .await
            .expect("DUMP");
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut connection)
            .await
            .expect("PTTL");
        snapshot.insert(key, (dump, ttl >= 0));
    }
    snapshot
}

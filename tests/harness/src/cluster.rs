//! A local Redis Cluster: three masters (no replicas) on free loopback
//! ports, joined with `redis-cli --cluster create`.

use std::time::Duration;

use crate::{HarnessError, RedisServer, port, wait_until};

/// How long the cluster may take to report `cluster_state:ok`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running Redis Cluster; every node is killed when this is dropped.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three masters and joins them into one cluster covering all
    /// 16384 slots.
    ///
    /// # Panics
    ///
    /// When a node does not start or the cluster does not become ready.
    #[must_use]
    pub fn start() -> Self {
        Self::try_start(3)
            .unwrap_or_else(|error| panic!("could not start a Redis Cluster: {error}"))
    }

    /// Starts `masters` nodes (at least 3) and joins them.
    ///
    /// # Errors
    ///
    /// When a node does not start, `redis-cli --cluster create` fails, or
    /// the cluster does not report `cluster_state:ok` in time.
    pub fn try_start(masters: usize) -> Result<Self, HarnessError> {
        let mut nodes = Vec::with_capacity(masters);
        for _ in 0..masters.max(3) {
            // The cluster bus needs a port of its own; without `cluster-port`
            // Redis would take port + 10000, which may be taken or invalid.
            let bus = port::free_port()?;
            nodes.push(
                RedisServer::builder()
                    .config_line("cluster-enabled yes")
                    .config_line("cluster-config-file nodes.conf")
                    .config_line("cluster-node-timeout 2000")
                    .config_line(format!("cluster-port {bus}"))
                    .try_start()?,
            );
        }
        let cluster = Self { nodes };
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(addresses.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        let _ = cluster.nodes[0].cli(&args);
        let ready = wait_until(READY_TIMEOUT, || {
            cluster
                .nodes
                .iter()
                .all(|node| node.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
                .then_some(())
        });
        if ready.is_none() {
            return Err(HarnessError::NotReady(format!(
                "the cluster did not reach cluster_state:ok within {READY_TIMEOUT:?}: {}",
                cluster.nodes[0].cli(&["CLUSTER", "INFO"])
            )));
        }
        Ok(cluster)
    }

    /// The nodes.
    #[must_use]
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// One `redis://127.0.0.1:<port>/` seed URL per node.
    #[must_use]
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The hash slot of `key`, as the cluster computes it (the test below
    /// checks it against `CLUSTER KEYSLOT`). Computed here, because keys
    /// hold raw bytes (NUL included) that no command-line argument can
    /// carry.
    #[must_use]
    pub fn slot_of(&self, key: &[u8]) -> u16 {
        key_slot(key)
    }
}

/// The Redis Cluster hash slot of `key`: CRC16 (XMODEM) of its hash tag
/// (the bytes between the first `{` and the next `}`, when not empty) or of
/// the whole key, modulo 16384.
#[must_use]
pub fn key_slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&byte| byte == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let len = rest.iter().position(|&byte| byte == b'}')?;
        (len > 0).then(|| &rest[..len])
    });
    crc16(tagged.unwrap_or(key)) % 16384
}

/// CRC16-CCITT (XMODEM), the checksum of Redis Cluster's key slots.
fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0, |crc, &byte| {
        (0..8).fold(crc ^ (u16::from(byte) << 8), |crc, _| {
            if crc & 0x8000 == 0 {
                crc << 1
            } else {
                (crc << 1) ^ 0x1021
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three nodes form one cluster that covers every slot, and a key's
    /// slot follows its hash tag.
    #[test]
    fn three_masters_cover_all_slots() {
        let cluster = RedisCluster::start();
        assert_eq!(cluster.urls().len(), 3);
        let info = cluster.nodes()[1].cli(&["CLUSTER", "INFO"]);
        assert!(info.contains("cluster_slots_assigned:16384"), "{info}");
        assert!(info.contains("cluster_known_nodes:3"), "{info}");
        assert_eq!(cluster.slot_of(b"a{user-1}"), cluster.slot_of(b"b{user-1}"));
        assert_ne!(cluster.slot_of(b"{a}"), cluster.slot_of(b"{b}"));
        for key in [
            "a{user-1}",
            "{a}",
            "foo",
            "{}x",
            "x{}{y}",
            "ts:s:{abc}:z",
            "{a}{b}",
            "x{y",
        ] {
            let by_server: u16 = cluster.nodes()[0]
                .cli(&["CLUSTER", "KEYSLOT", key])
                .trim()
                .parse()
                .expect("a number");
            assert_eq!(key_slot(key.as_bytes()), by_server, "{key}");
        }
    }
}

//! A local Sentinel set-up: one master, its replicas, three sentinels
//! watching them, on free loopback ports.

use std::time::Duration;

use crate::{HarnessError, RedisServer, wait_until};

/// How long the set-up may take to settle (replica synced, sentinels
/// aware of each other).
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The name the sentinels know the master by.
pub const MASTER_NAME: &str = "tokens";

/// A master, its replicas and three sentinels; all killed when dropped.
#[derive(Debug)]
pub struct RedisSentinels {
    master: RedisServer,
    replicas: Vec<RedisServer>,
    sentinels: Vec<RedisServer>,
}

impl RedisSentinels {
    /// Starts the set-up and waits until the replica is in sync and every
    /// sentinel knows the replica and the two other sentinels (so that a
    /// failover can be voted).
    ///
    /// # Panics
    ///
    /// When it does not settle in time.
    #[must_use]
    pub fn start() -> Self {
        Self::start_with_replicas(1)
    }

    /// A master with `replicas` replicas (at least 1) and three sentinels.
    ///
    /// # Panics
    ///
    /// When it does not settle in time.
    #[must_use]
    pub fn start_with_replicas(replicas: usize) -> Self {
        Self::try_start(replicas)
            .unwrap_or_else(|error| panic!("could not start the Sentinel set-up: {error}"))
    }

    /// [`Self::start_with_replicas`], with errors.
    ///
    /// # Errors
    ///
    /// When a process does not start or the set-up does not settle.
    pub fn try_start(replicas: usize) -> Result<Self, HarnessError> {
        // Replicas sync at once (Redis waits 5 s by default), also with a
        // promoted replica as the new master.
        let master = RedisServer::builder()
            .config_line("repl-diskless-sync-delay 0")
            .try_start()?;
        let replicas = (0..replicas.max(1))
            .map(|_| {
                RedisServer::builder()
                    .config_line("repl-diskless-sync-delay 0")
                    .config_line(format!("replicaof 127.0.0.1 {}", master.port()))
                    .try_start()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let expected_replicas = replicas.len().to_string();
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            sentinels.push(
                RedisServer::builder()
                    .sentinel()
                    .config_line(format!(
                        "sentinel monitor {MASTER_NAME} 127.0.0.1 {} 2",
                        master.port()
                    ))
                    .config_line(format!(
                        "sentinel down-after-milliseconds {MASTER_NAME} 1000"
                    ))
                    .config_line(format!("sentinel failover-timeout {MASTER_NAME} 5000"))
                    .config_line(format!("sentinel parallel-syncs {MASTER_NAME} 1"))
                    .try_start()?,
            );
        }
        let set = Self {
            master,
            replicas,
            sentinels,
        };
        let settled = wait_until(READY_TIMEOUT, || {
            let synced = set.replicas.iter().all(|replica| {
                replica
                    .cli(&["INFO", "replication"])
                    .contains("master_link_status:up")
            });
            let aware = set.sentinels.iter().all(|sentinel| {
                let master = sentinel.cli(&["SENTINEL", "MASTER", MASTER_NAME]);
                field(&master, "num-slaves") == Some(expected_replicas.as_str())
                    && field(&master, "num-other-sentinels") == Some("2")
            });
            (synced && aware).then_some(())
        });
        if settled.is_none() {
            return Err(HarnessError::NotReady(format!(
                "the Sentinel set-up did not settle within {READY_TIMEOUT:?}: {}",
                set.sentinels[0].cli(&["SENTINEL", "MASTER", MASTER_NAME])
            )));
        }
        Ok(set)
    }

    /// The sentinels' `redis://127.0.0.1:<port>/` URLs.
    #[must_use]
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels.iter().map(RedisServer::url).collect()
    }

    /// The initial master.
    #[must_use]
    pub fn master(&self) -> &RedisServer {
        &self.master
    }

    /// The initial master, to stop it.
    pub fn master_mut(&mut self) -> &mut RedisServer {
        &mut self.master
    }

    /// The initial replicas.
    #[must_use]
    pub fn replicas(&self) -> &[RedisServer] {
        &self.replicas
    }

    /// The port of the master the sentinels currently name.
    #[must_use]
    pub fn current_master_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|sentinel| {
            let reply = sentinel.cli(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME]);
            reply
                .lines()
                .nth(1)
                .and_then(|port| port.trim().parse().ok())
        })
    }

    /// Waits until the sentinels have promoted one of the replicas; answers
    /// its port and how long that took.
    #[must_use]
    pub fn wait_for_failover(&self, timeout: Duration) -> Option<(u16, Duration)> {
        wait_until(timeout, || {
            let port = self.current_master_port()?;
            self.replicas
                .iter()
                .find(|replica| {
                    replica.port() == port && replica.cli(&["ROLE"]).starts_with("master")
                })
                .map(RedisServer::port)
        })
    }
}

/// The value after `name` in a flat `SENTINEL MASTER` reply (one item per
/// line).
fn field<'a>(reply: &'a str, name: &str) -> Option<&'a str> {
    let mut lines = reply.lines();
    while let Some(line) = lines.next() {
        if line.trim() == name {
            return lines.next().map(str::trim);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Killing the master makes the sentinels promote the replica.
    #[test]
    fn killing_the_master_fails_over_to_the_replica() {
        let mut set = RedisSentinels::start();
        assert_eq!(set.current_master_port(), Some(set.master().port()));
        set.master_mut().stop();
        let (promoted, _) = set
            .wait_for_failover(Duration::from_secs(30))
            .expect("no failover");
        assert_eq!(promoted, set.replicas()[0].port());
        assert_eq!(set.current_master_port(), Some(promoted));
    }
}

//! [`Tracker`]: the background task that keeps the tracking connections
//! and turns their pushes into [`Invalidation`]s.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, PushInfo, PushKind, Value};
use tokio::sync::{Notify, oneshot};

use super::keys::KeyNames;
use super::target::Target;
use super::{Epoch, Invalidation, InvalidationSink};

/// Shortest and longest wait between connection attempts.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The task's state: what to track, and whom to tell.
pub(super) struct Tracker {
    pub(super) target: Arc<Target>,
    pub(super) keys: Arc<KeyNames>,
    pub(super) health_interval: Duration,
    pub(super) sink: Arc<dyn InvalidationSink>,
}

impl Tracker {
    /// Connects, tracks, supervises and reconnects until `stop` fires (or
    /// its sender is dropped).
    pub(super) async fn run(self, mut stop: oneshot::Receiver<()>) {
        let url = self.target.describe();
        let prefixes = self.keys.prefixes();
        let mut backoff = MIN_BACKOFF;
        let mut reported = false;
        for attempt in 1.. {
            let epoch = Epoch(attempt);
            self.sink.on_event(Invalidation::Connecting(epoch));
            let lost = Arc::new(Notify::new());
            let connected = tokio::select! {
                _ = &mut stop => return,
                connected = self.connect(epoch, &lost) => connected,
            };
            match connected {
                Ok(mut connections) => {
                    self.sink.on_event(Invalidation::Tracking(epoch));
                    tracing::info!(%url, ?prefixes, "token cache: tracking invalidations");
                    backoff = MIN_BACKOFF;
                    reported = false;
                    let reason = tokio::select! {
                        _ = &mut stop => return,
                        reason = self.supervise(&mut connections, &lost) => reason,
                    };
                    self.sink.on_event(Invalidation::Lost(epoch));
                    tracing::warn!(%url, %reason, "token cache: tracking connection lost; cache cleared and bypassed until it is back");
                }
                Err(error) => {
                    self.sink.on_event(Invalidation::Lost(epoch));
                    if !reported {
                        tracing::warn!(%url, %error, "token cache: cannot enable tracking; cache bypassed");
                        reported = true;
                    }
                }
            }
            tokio::select! {
                _ = &mut stop => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Opens RESP3 connections whose pushes feed the sink, one per server
    /// to track, and enables broadcast tracking on each.
    async fn connect(
        &self,
        epoch: Epoch,
        lost: &Arc<Notify>,
    ) -> redis::RedisResult<Vec<MultiplexedConnection>> {
        let timeout = self.health_interval;
        let mut connections = Vec::new();
        for client in self.target.clients(timeout).await? {
            let sink = Arc::clone(&self.sink);
            let keys = Arc::clone(&self.keys);
            let lost = Arc::clone(lost);
            let on_push = move |push: PushInfo| -> Result<(), Infallible> {
                match push.kind {
                    PushKind::Invalidate => {
                        let pushed = keys.read_push(&push.data);
                        if pushed.flushed {
                            sink.on_event(Invalidation::Flushed);
                        }
                        if !pushed.keys.is_empty() {
                            sink.on_event(Invalidation::Keys(&pushed.keys));
                        }
                        if !pushed.names.is_empty() {
                            sink.on_event(Invalidation::Names(&pushed.names));
                        }
                    }
                    PushKind::Disconnection => {
                        sink.on_event(Invalidation::Lost(epoch));
                        lost.notify_one();
                    }
                    _ => {}
                }
                Ok(())
            };
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_push_sender(on_push);
            let mut redis = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            let mut tracking = redis::cmd("CLIENT");
            tracking.arg("TRACKING").arg("ON").arg("BCAST");
            for prefix in self.keys.prefixes() {
                tracking.arg("PREFIX").arg(prefix);
            }
            tracking.exec_async(&mut redis).await?;
            connections.push(redis);
        }
        Ok(connections)
    }

    /// Waits until a connection is lost or fails a health check; answers
    /// why.
    async fn supervise(&self, connections: &mut [MultiplexedConnection], lost: &Notify) -> String {
        let interval = self.health_interval;
        loop {
            tokio::select! {
                () = lost.notified() => return "disconnected".to_owned(),
                () = tokio::time::sleep(interval) => {
                    for redis in connections.iter_mut() {
                        let command = redis::cmd("PING");
                        let ping = command.query_async::<Value>(redis);
                        match tokio::time::timeout(interval, ping).await {
                            Ok(Ok(_)) => {}
                            Ok(Err(error)) => return format!("health check failed: {error}"),
                            Err(_) => return format!("health check unanswered within {interval:?}"),
                        }
                    }
                }
            }
        }
    }
}

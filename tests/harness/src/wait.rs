//! Waiting for a condition instead of sleeping for a fixed time.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often a condition is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// Polls `condition` until it returns `Some`, or gives up after `timeout`.
///
/// Returns the value and the time it took, so tests can both wait for an
/// event and report how long it needed.
pub fn wait_until<T>(
    timeout: Duration,
    mut condition: impl FnMut() -> Option<T>,
) -> Option<(T, Duration)> {
    let start = Instant::now();
    loop {
        if let Some(value) = condition() {
            return Some((value, start.elapsed()));
        }
        if start.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// The async form of [`wait_until`], for tests on a tokio runtime.
///
/// `sleep` is the runtime's sleep function (for example
/// `tokio::time::sleep`), passed in so this crate does not depend on a
/// runtime.
pub async fn wait_until_async<T, F, S, Fut>(
    timeout: Duration,
    sleep: S,
    mut condition: impl FnMut() -> F,
) -> Option<(T, Duration)>
where
    F: Future<Output = Option<T>>,
    S: Fn(Duration) -> Fut,
    Fut: Future<Output = ()>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = condition().await {
            return Some((value, start.elapsed()));
        }
        if start.elapsed() >= timeout {
            return None;
        }
        sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The poll returns as soon as the condition holds, with its value.
    #[test]
    fn returns_the_value_once_the_condition_holds() {
        let mut calls = 0;
        let (value, _) = wait_until(Duration::from_secs(5), || {
            calls += 1;
            (calls == 3).then_some(calls * 10)
        })
        .expect("condition holds on the third poll");
        assert_eq!(value, 30);
    }

    /// A condition that never holds gives up after the timeout.
    #[test]
    fn gives_up_after_the_timeout() {
        let start = Instant::now();
        let result = wait_until(Duration::from_millis(30), || None::<()>);
        assert!(result.is_none());
        assert!(start.elapsed() >= Duration::from_millis(30));
    }
}

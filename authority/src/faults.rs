//! Test-only fault injection: pause points and injected store failures, so
//! that unit tests can force the interleavings and failures that matter
//! (a password change between two reads of a login, a revocation that fails
//! after the account change was written). Compiled only for tests.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::oneshot;

/// A one-shot pause point. The test arms it; the first time the code under
/// test reaches it, it signals `reached` and waits until the test sends
/// `release` (or drops it).
#[derive(Debug, Default)]
pub(crate) struct Pause {
    armed: Mutex<Option<(oneshot::Sender<()>, oneshot::Receiver<()>)>>,
}

impl Pause {
    /// Arms the pause: answers the receiver that fires when the code gets
    /// there and the sender that lets it go on.
    pub(crate) fn arm(&self) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (reached_tx, reached_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel();
        *self.armed.lock().unwrap() = Some((reached_tx, release_rx));
        (reached_rx, release_tx)
    }

    /// The pause point: waits when armed (once), passes otherwise.
    pub(crate) async fn point(&self) {
        let armed = self.armed.lock().unwrap().take();
        if let Some((reached, release)) = armed {
            let _ = reached.send(());
            let _ = release.await;
        }
    }
}

/// Faults shared by the stores of one [`crate::AppState`].
#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// Reached right after a user record was read (`Accounts::user`).
    pub(crate) after_user_read: Pause,
    /// How many of the next revocations of all of a subject's tokens fail
    /// as if Redis were unreachable.
    pub(crate) failing_revocations: AtomicUsize,
}

impl Faults {
    /// Whether this revocation is to fail (counts one down).
    pub(crate) fn revocation_fails(&self) -> bool {
        self.failing_revocations
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok()
    }
}

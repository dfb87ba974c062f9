//! Password and client-secret hashing: argon2id on a bounded blocking pool.
//!
//! One verification costs tens of milliseconds of CPU and about 19 MiB of
//! memory (OWASP parameters). It runs on [`Hasher::workers`] dedicated
//! threads (about the core count: more would only thrash), never on the
//! async workers. Logins beyond that wait in a queue of bounded length; past
//! it the authority answers 503 at once instead of piling up memory. An
//! unknown user is verified against a dummy hash, so it costs the same time
//! as a wrong password.
//!
//! Why dedicated threads rather than tokio's blocking pool (measured by
//! `token-bench`, row 5): the blocking pool starts a new thread whenever no
//! idle one is at hand, and each new thread's malloc arena kept its own
//! 19 MiB blocks, so the authority's resident memory grew to 845 MiB under
//! a login flood although only two hashes ever ran at once. A fixed set of
//! long-lived threads, each verifying in one argon2 memory block of its own
//! that it reuses, keeps peak RSS near `workers` × 19 MiB, and spares every
//! verification the page faults of fresh memory. The threads run at nice
//! 10 ([`HASHING_NICENESS`]): with every core busy hashing, a health check
//! or an introspection still gets a core at once.

use std::cell::RefCell;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError, mpsc};

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, PasswordHasher as _, Version};
use subtle::ConstantTimeEq as _;
use tokio::sync::{Semaphore, oneshot};
use zeroize::Zeroizing;

use crate::config::Argon2Config;

/// Why hashing could not be done.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every worker is busy and the queue is full: try again shortly.
    #[error("password hashing is saturated")]
    Busy,
    /// The parameters or the stored hash are unusable, or a worker failed.
    #[error("password hashing failed: {0}")]
    Internal(String),
}

/// What checking a password found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// The password matches. `needs_rehash`: the stored hash uses other
    /// parameters than the configured ones and should be replaced.
    Match {
        /// Whether to store a new hash made with the current parameters.
        needs_rehash: bool,
    },
    /// It does not (or there was no such account).
    Mismatch,
}

/// Hashes and verifies secrets with argon2id, bounded as described in the
/// module documentation. Cloning shares the bounds.
#[derive(Clone)]
pub struct Hasher {
    params: Params,
    /// The hashing threads' queue; they stop when the last clone is gone.
    jobs: mpsc::Sender<Job>,
    admission: Arc<Semaphore>,
    worker_count: usize,
    dummy: Arc<str>,
}

/// One hash to compute. It holds its admission permit until it is done, so
/// a caller that gives up does not make room for more work than the queue
/// bound while its hash still runs.
type Job = Box<dyn FnOnce() + Send>;

/// Starts `count` hashing threads that take jobs from one queue.
fn start_workers(count: usize) -> Result<mpsc::Sender<Job>, HashError> {
    let (sender, receiver) = mpsc::channel::<Job>();
    let receiver = Arc::new(Mutex::new(receiver));
    for index in 0..count {
        let receiver = Arc::clone(&receiver);
        std::thread::Builder::new()
            .name(format!("argon2-{index}"))
            .spawn(move || {
                hashing_priority();
                loop {
                    // Hold the lock only to take one job.
                    let job = receiver
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .recv();
                    let Ok(work) = job else { return };
                    // A panicking hash must not take the thread with it.
                    if std::panic::catch_unwind(AssertUnwindSafe(work)).is_err() {
                        tracing::error!("a password hashing job panicked");
                    }
                }
            })
            .map_err(|error| HashError::Internal(format!("hashing thread: {error}")))?;
    }
    Ok(sender)
}

/// The niceness of hashing threads: 10, so that on saturated cores the
/// async workers (health checks, introspection, token lookups) are
/// scheduled ahead of hashing, while hashing still gets every core the
/// rest of the process leaves idle.
pub const HASHING_NICENESS: i32 = 10;

/// Gives the calling thread the scheduling priority of the hashing threads
/// ([`HASHING_NICENESS`]); best effort, logged when the OS refuses. Public
/// for the benchmark, whose argon2 limit is measured at the same priority.
pub fn hashing_priority() {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadPriority, ThreadPriorityValue, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id,
    };
    // thread-priority maps 0..=99 onto niceness 19..=-20: 22 is nice 10.
    let result = ThreadPriorityValue::try_from(22_u8).and_then(|value| {
        set_thread_priority_and_policy(
            thread_native_id(),
            ThreadPriority::Crossplatform(value),
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other),
        )
        .map_err(|error| error.to_string())
    });
    if let Err(error) = result {
        tracing::warn!(%error, "hashing threads keep the default priority");
    }
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hasher")
            .field("m_cost", &self.params.m_cost())
            .field("t_cost", &self.params.t_cost())
            .field("p_cost", &self.params.p_cost())
            .field("workers", &self.worker_count)
            .finish_non_exhaustive()
    }
}

impl Hasher {
    /// A hasher with these parameters, `workers` hashes at once and `queue`
    /// more waiting. Computes the dummy hash (one hash's worth of time).
    ///
    /// # Errors
    ///
    /// [`HashError::Internal`] for parameters argon2 refuses.
    pub fn new(config: Argon2Config, workers: usize, queue: usize) -> Result<Self, HashError> {
        let params = Params::new(
            config.memory_kib,
            config.iterations,
            config.parallelism,
            None,
        )
        .map_err(|error| HashError::Internal(format!("argon2 parameters: {error}")))?;
        let dummy = hash_blocking(&params, b"dummy password for unknown accounts")?;
        let workers = workers.max(1);
        Ok(Self {
            params,
            jobs: start_workers(workers)?,
            admission: Arc::new(Semaphore::new(workers + queue)),
            worker_count: workers,
            dummy: dummy.into(),
        })
    }

    /// How many hashes run at once.
    #[must_use]
    pub fn workers(&self) -> usize {
        self.worker_count
    }

    /// Hashes `secret` with the configured parameters (PHC string form).
    ///
    /// # Errors
    ///
    /// [`HashError::Busy`] when saturated, [`HashError::Internal`] otherwise.
    pub async fn hash(&self, secret: Zeroizing<String>) -> Result<String, HashError> {
        let params = self.params.clone();
        self.run(move || hash_blocking(&params, secret.as_bytes()))
            .await
    }

    /// Checks `secret` against `stored` (a PHC string), or against the dummy
    /// hash when there is no account, so both cost the same.
    ///
    /// # Errors
    ///
    /// [`HashError::Busy`] when saturated. A stored hash that cannot be
    /// parsed is a mismatch, logged, not an error.
    pub async fn verify(
        &self,
        secret: Zeroizing<String>,
        stored: Option<&str>,
    ) -> Result<Verification, HashError> {
        let known = stored.is_some();
        let stored: Arc<str> = stored.map_or_else(|| self.dummy.clone(), Arc::from);
        let params = self.params.clone();
        self.run(move || {
            let Ok(hash) = PasswordHash::new(&stored) else {
                tracing::error!("a stored password hash is not a valid PHC string");
                return Ok(Verification::Mismatch);
            };
            let matches = verify_in_place(&hash, secret.as_bytes());
            Ok(if matches && known {
                Verification::Match {
                    needs_rehash: !uses(&hash, &params),
                }
            } else {
                Verification::Mismatch
            })
        })
        .await
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
        let admitted = self
            .admission
            .clone()
            .try_acquire_owned()
            .map_err(|_| HashError::Busy)?;
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move || {
            let result = work();
            // Capacity is back before the caller hears the result.
            drop(admitted);
            let _ = reply.send(result);
        });
        self.jobs
            .send(job)
            .map_err(|_| HashError::Internal("hashing threads stopped".into()))?;
        answer
            .await
            .map_err(|_| HashError::Internal("a hashing job failed".into()))?
    }
}

fn argon2(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

/// A verifier for whatever algorithm and parameters `hash` was made with.
fn verifier(hash: &PasswordHash) -> Argon2<'static> {
    let algorithm = Algorithm::try_from(hash.algorithm.as_str()).unwrap_or_default();
    let params = Params::try_from(hash).unwrap_or_default();
    let version = hash
        .version
        .and_then(|version| Version::try_from(version).ok())
        .unwrap_or_default();
    Argon2::new(algorithm, version, params)
}

thread_local! {
    /// This hashing thread's argon2 memory, reused by every verification
    /// it runs (19 MiB with the default parameters): allocating it afresh
    /// each time spread the blocks over every malloc arena.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Whether `password` matches `hash`, computed in this thread's reused
/// memory; the comparison is constant-time.
fn verify_in_place(hash: &PasswordHash, password: &[u8]) -> bool {
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let argon2 = verifier(hash);
    let mut computed = Zeroizing::new(vec![0_u8; expected.len()]);
    let hashed = MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        let blocks = argon2.params().block_count();
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        argon2.hash_password_into_with_memory(password, salt, &mut computed, &mut memory[..blocks])
    });
    hashed.is_ok() && bool::from(computed.as_slice().ct_eq(expected.as_bytes()))
}

/// Whether `hash` was made with argon2id, version 0x13 and `params`.
fn uses(hash: &PasswordHash, params: &Params) -> bool {
    let Ok(own) = Params::try_from(hash) else {
        return false;
    };
    hash.algorithm.as_str() == Algorithm::Argon2id.ident().as_str()
        && hash.version == Some(Version::V0x13.into())
        && own.m_cost() == params.m_cost()
        && own.t_cost() == params.t_cost()
        && own.p_cost() == params.p_cost()
}

fn hash_blocking(params: &Params, secret: &[u8]) -> Result<String, HashError> {
    argon2(params)
        .hash_password(secret)
        .map(|hash| hash.to_string())
        .map_err(|error| HashError::Internal(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap parameters: these tests check logic, not cost.
    fn cheap() -> Argon2Config {
        Argon2Config {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        }
    }

    fn secret(text: &str) -> Zeroizing<String> {
        Zeroizing::new(text.to_owned())
    }

    /// Hashes are argon2id PHC strings that verify the right secret only.
    #[tokio::test]
    async fn hash_and_verify() {
        let hasher = Hasher::new(cheap(), 2, 8).expect("hasher");
        let hash = hasher.hash(secret("correct horse")).await.expect("hash");
        assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{hash}");
        assert_eq!(
            hasher
                .verify(secret("correct horse"), Some(&hash))
                .await
                .expect("verify"),
            Verification::Match {
                needs_rehash: false
            }
        );
        assert_eq!(
            hasher
                .verify(secret("wrong"), Some(&hash))
                .await
                .expect("verify"),
            Verification::Mismatch
        );
    }

    /// Unknown accounts and garbage hashes are mismatches, never matches.
    #[tokio::test]
    async fn unknown_accounts_never_match() {
        let hasher = Hasher::new(cheap(), 1, 1).expect("hasher");
        for guess in ["", "dummy password for unknown accounts", "x"] {
            assert_eq!(
                hasher.verify(secret(guess), None).await.expect("verify"),
                Verification::Mismatch
            );
        }
        assert_eq!(
            hasher
                .verify(secret("x"), Some("not a hash"))
                .await
                .expect("verify"),
            Verification::Mismatch
        );
    }

    /// A hash made with other parameters still verifies, and asks to be
    /// upgraded.
    #[tokio::test]
    async fn weaker_hashes_ask_for_a_rehash() {
        let old = Hasher::new(cheap(), 1, 1).expect("hasher");
        let hash = old.hash(secret("pw")).await.expect("hash");
        let stronger = Argon2Config {
            memory_kib: 128,
            ..cheap()
        };
        let new = Hasher::new(stronger, 1, 1).expect("hasher");
        assert_eq!(
            new.verify(secret("pw"), Some(&hash)).await.expect("verify"),
            Verification::Match { needs_rehash: true }
        );
        // Another variant of argon2 verifies too, and is upgraded to argon2id.
        let params = Params::new(128, 1, 1, None).expect("params");
        let argon2i = Argon2::new(Algorithm::Argon2i, Version::V0x13, params)
            .hash_password(b"pw")
            .expect("hash")
            .to_string();
        assert_eq!(
            new.verify(secret("pw"), Some(&argon2i))
                .await
                .expect("verify"),
            Verification::Match { needs_rehash: true }
        );
    }

    /// With every worker busy and the queue full, callers get Busy at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn saturation_is_refused_not_queued_forever() {
        let hasher = Hasher::new(cheap(), 1, 0).expect("hasher");
        let (started_tx, started_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let busy = hasher.clone();
        let blocker = tokio::spawn(async move {
            busy.run(move || {
                started_tx.send(()).expect("signal");
                release_rx.recv().expect("release");
                Ok(())
            })
            .await
        });
        tokio::task::spawn_blocking(move || started_rx.recv().expect("started"))
            .await
            .expect("join");
        let refused = hasher.hash(secret("pw")).await;
        assert!(matches!(refused, Err(HashError::Busy)), "{refused:?}");
        release_tx.send(()).expect("release");
        blocker.await.expect("join").expect("blocker");
        assert!(hasher.hash(secret("pw")).await.is_ok(), "capacity is back");
    }
}

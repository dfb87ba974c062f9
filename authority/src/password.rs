//! Password and client-secret hashing: argon2id on a bounded blocking pool.
//!
//! One verification costs tens of milliseconds of CPU and about 19 MiB of
//! memory (OWASP parameters). It runs on tokio's blocking threads, never on
//! the async workers, and at most [`Hasher::workers`] run at once (about the
//! core count: more would only thrash). Logins beyond that wait in a queue
//! of bounded length; past it the authority answers 503 at once instead of
//! piling up memory. An unknown user is verified against a dummy hash, so it
//! costs the same time as a wrong password.

use std::fmt;
use std::sync::Arc;

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use tokio::sync::Semaphore;
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
    workers: Arc<Semaphore>,
    admission: Arc<Semaphore>,
    worker_count: usize,
    dummy: Arc<str>,
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
            workers: Arc::new(Semaphore::new(workers)),
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
            let matches = verifier(&hash)
                .verify_password(secret.as_bytes(), &hash)
                .is_ok();
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
        let _admitted = self
            .admission
            .clone()
            .try_acquire_owned()
            .map_err(|_| HashError::Busy)?;
        let _worker = self
            .workers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| HashError::Internal("hashing pool closed".into()))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|error| HashError::Internal(format!("hashing worker: {error}")))?
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
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
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

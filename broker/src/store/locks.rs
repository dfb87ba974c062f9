//! Refresh locks (`SET NX PX` with a random owner, released only by
//! their owner) and single-use connect states.

use std::time::Duration;

use token_repository::{Result, SubjectTag};

use super::{ConnectionStore, millis, random_text};

/// A held refresh lock.
#[derive(Debug)]
pub struct Lock {
    key: String,
    owner: String,
}

impl ConnectionStore {
    /// Takes the refresh lock of a connection for `ttl`, unless someone
    /// holds it.
    ///
    /// # Errors
    ///
    /// Redis failures.
    pub async fn try_lock(
        &self,
        subject: &str,
        provider: &str,
        ttl: Duration,
    ) -> Result<Option<Lock>> {
        let key = self
            .prefix()
            .connection_lock(&SubjectTag::of(subject), provider);
        self.try_lock_key(key, ttl).await
    }

    /// Takes the lock at `key` for `ttl`, unless someone holds it.
    ///
    /// # Errors
    ///
    /// Redis failures.
    pub async fn try_lock_key(&self, key: String, ttl: Duration) -> Result<Option<Lock>> {
        let owner = random_text()?;
        let (lock_key, lock_owner) = (key.clone(), owner.clone());
        let taken: Option<String> = self
            .store
            .with_connection(|mut connection| async move {
                Ok(redis::cmd("SET")
                    .arg(&lock_key)
                    .arg(&lock_owner)
                    .arg("NX")
                    .arg("PX")
                    .arg(millis(ttl))
                    .query_async(&mut connection)
                    .await?)
            })
            .await?;
        Ok(taken.map(|_| Lock { key, owner }))
    }

    /// Releases a lock if it is still ours (it may have expired and been
    /// taken by another replica meanwhile).
    ///
    /// # Errors
    ///
    /// Redis failures (the lock then expires by itself).
    pub async fn unlock(&self, lock: Lock) -> Result<()> {
        self.delete_if(&lock.key, &lock.owner).await.map(drop)
    }

    /// Marks the state with `nonce` as used until it would expire anyway;
    /// answers `false` when it already was (a replay).
    ///
    /// # Errors
    ///
    /// Redis failures.
    pub async fn use_state(&self, nonce: &str, remaining: Duration) -> Result<bool> {
        let key = self.prefix().connect_state(nonce);
        let set: Option<String> = self
            .store
            .with_connection(|mut connection| async move {
                Ok(redis::cmd("SET")
                    .arg(&key)
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(millis(remaining))
                    .query_async(&mut connection)
                    .await?)
            })
            .await?;
        Ok(set.is_some())
    }
}

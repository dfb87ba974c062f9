//! The keep-alive index `P conns`: every connection scored by its last
//! refresh, paged by due time.

use std::sync::LazyLock;

use token_repository::{Result, Timestamp};

use super::ConnectionStore;

/// A page of the keep-alive index after a cursor, in one round trip.
/// `ARGV`: the cursor's member (empty: from the start) and score, the
/// exclusive upper score, the page size. Every entry ranked before the
/// cursor scores at most the cursor's score, which was below an earlier
/// bound and so is below this one: the cursor's rank is the offset within
/// the range. A cursor that moved (refreshed) starts the page at the
/// first entry of its old score.
static DUE_AFTER: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "local offset = 0 \
         if ARGV[1] ~= '' then \
           local score = redis.call('ZSCORE', KEYS[1], ARGV[1]) \
           if score and tonumber(score) == tonumber(ARGV[2]) then \
             offset = redis.call('ZRANK', KEYS[1], ARGV[1]) + 1 \
           else \
             offset = redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. ARGV[2]) \
           end \
         end \
         return redis.call('ZRANGE', KEYS[1], '-inf', '(' .. ARGV[3], 'BYSCORE', \
           'LIMIT', offset, ARGV[4], 'WITHSCORES')",
    )
});

/// One entry of the connection index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// The provider.
    pub provider: String,
    /// The subject.
    pub subject: String,
    /// Last refresh (Unix ms).
    pub refreshed_at: u64,
}

impl ConnectionStore {
    fn member(subject: &str, provider: &str) -> String {
        format!("{provider}:{subject}")
    }

    /// Records (or moves) a connection in the keep-alive index.
    ///
    /// # Errors
    ///
    /// Redis failures.
    pub async fn index(
        &self,
        subject: &str,
        provider: &str,
        refreshed_at: Timestamp,
    ) -> Result<()> {
        let index = self.prefix().connections();
        let member = Self::member(subject, provider);
        self.store
            .with_connection(|mut connection| async move {
                let _: i64 = redis::cmd("ZADD")
                    .arg(&index)
                    .arg(refreshed_at.as_unix_millis())
                    .arg(&member)
                    .query_async(&mut connection)
                    .await?;
                Ok(())
            })
            .await
    }

    /// Removes a connection from the keep-alive index.
    ///
    /// # Errors
    ///
    /// Redis failures.
    pub async fn unindex(&self, subject: &str, provider: &str) -> Result<()> {
        let index = self.prefix().connections();
        let member = Self::member(subject, provider);
        self.store
            .with_connection(|mut connection| async move {
                let _: i64 = redis::cmd("ZREM")
                    .arg(&index)
                    .arg(&member)
                    .query_async(&mut connection)
                    .await?;
                Ok(())
            })
            .await
    }

    /// When the connection was last refreshed according to the keep-alive
    /// index (`None`: not indexed).
    ///
    /// # Errors
    ///
    /// Redis failures.
    pub async fn indexed_at(&self, subject: &str, provider: &str) -> Result<Option<Timestamp>> {
        let index = self.prefix().connections();
        let member = Self::member(subject, provider);
        let score: Option<f64> = self
            .store
            .with_connection(|mut connection| async move {
                Ok(redis::cmd("ZSCORE")
                    .arg(&index)
                    .arg(&member)
                    .query_async(&mut connection)
                    .await?)
            })
            .await?;
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "scores are Unix milliseconds written by `index`"
        )]
        let millis = score.map(|millis| millis.max(0.0) as u64);
        Ok(millis.map(Timestamp::from_unix_millis))
    }

    /// Up to `limit` indexed connections last refreshed before `before`,
    /// oldest first.
    ///
    /// # Errors
    ///
    /// Redis failures.
    pub async fn due(&self, before: Timestamp, limit: usize) -> Result<Vec<IndexEntry>> {
        let index = self.prefix().connections();
        let found: Vec<(String, u64)> = self
            .store
            .with_connection(|mut connection| async move {
                Ok(redis::cmd("ZRANGE")
                    .arg(&index)
                    .arg("-inf")
                    .arg(format!("({}", before.as_unix_millis()))
                    .arg("BYSCORE")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit)
                    .arg("WITHSCORES")
                    .query_async(&mut connection)
                    .await?)
            })
            .await?;
        Ok(found
            .into_iter()
            .filter_map(|(member, score)| {
                let (provider, subject) = member.split_once(':')?;
                Some(IndexEntry {
                    provider: provider.to_owned(),
                    subject: subject.to_owned(),
                    refreshed_at: score,
                })
            })
            .collect())
    }

    /// Up to `limit` indexed connections last refreshed before `before`,
    /// in index order (oldest first), starting after `after` (none: from
    /// the oldest). When `after` has moved since (refreshed meanwhile),
    /// the page starts at the first entry of its old score, so nothing is
    /// passed over; some may be seen twice.
    ///
    /// # Errors
    ///
    /// Redis failures.
    pub async fn due_after(
        &self,
        before: Timestamp,
        after: Option<&IndexEntry>,
        limit: usize,
    ) -> Result<Vec<IndexEntry>> {
        let index = self.prefix().connections();
        let (member, score) = after.map_or((String::new(), 0), |entry| {
            (
                Self::member(&entry.subject, &entry.provider),
                entry.refreshed_at,
            )
        });
        let found: Vec<(String, u64)> = self
            .store
            .with_connection(|mut connection| async move {
                Ok(DUE_AFTER
                    .key(&index)
                    .arg(&member)
                    .arg(score)
                    .arg(before.as_unix_millis())
                    .arg(limit)
                    .invoke_async(&mut connection)
                    .await?)
            })
            .await?;
        Ok(found
            .into_iter()
            .filter_map(|(member, score)| {
                let (provider, subject) = member.split_once(':')?;
                Some(IndexEntry {
                    provider: provider.to_owned(),
                    subject: subject.to_owned(),
                    refreshed_at: score,
                })
            })
            .collect())
    }

    /// Removes every keep-alive index entry of `provider` (`ZSCAN` in
    /// batches); answers how many. Like [`Self::delete_matching`], for the
    /// removal of a provider.
    ///
    /// # Errors
    ///
    /// Redis failures.
    pub async fn unindex_provider(&self, provider: &str) -> Result<usize> {
        let index = self.prefix().connections();
        // ZSCAN answers member, score, member, score, …
        let members: Vec<String> = self
            .scan_with(Some(&index), format!("{provider}:*"))
            .await?
            .into_iter()
            .step_by(2)
            .collect();
        let mut removed = 0;
        for batch in members.chunks(500) {
            let (index, batch) = (index.clone(), batch.to_vec());
            let count: usize = self
                .store
                .with_connection(|mut connection| async move {
                    Ok(redis::cmd("ZREM")
                        .arg(&index)
                        .arg(&batch)
                        .query_async(&mut connection)
                        .await?)
                })
                .await?;
            removed += count;
        }
        Ok(removed)
    }
}

//! Walking the keyspace (`SCAN`, `ZSCAN`): for an administrator's
//! removal of a provider and for re-encryption, never for a user's
//! request.

use token_repository::Result;

use super::ConnectionStore;

impl ConnectionStore {
    /// Deletes every key matching `pattern` (`SCAN` in batches, one `DEL`
    /// per key, so keys of any slot); answers how many it deleted. Its
    /// cost grows with the keyspace: for an administrator's removal of a
    /// provider, in the background, never for a user's request.
    ///
    /// # Errors
    ///
    /// Redis failures (what was deleted stays deleted; run it again).
    pub async fn delete_matching(&self, pattern: &str) -> Result<usize> {
        let mut deleted = 0;
        for key in self.scan(pattern.to_owned()).await? {
            let removed: usize = self
                .store
                .with_connection(|mut connection| async move {
                    Ok(redis::cmd("DEL")
                        .arg(&key)
                        .query_async(&mut connection)
                        .await?)
                })
                .await?;
            deleted += removed;
        }
        Ok(deleted)
    }

    /// Every connection key (`SCAN`; for re-encryption).
    ///
    /// # Errors
    ///
    /// Redis failures.
    pub async fn keys(&self) -> Result<Vec<String>> {
        self.scan(self.prefix().connection_pattern()).await
    }

    /// Every stored credentials key (`P cred:`; `SCAN`, for re-encryption
    /// and export).
    ///
    /// # Errors
    ///
    /// Redis failures.
    pub async fn credential_keys(&self) -> Result<Vec<String>> {
        self.scan(self.prefix().credential_pattern()).await
    }

    /// The keys matching `pattern`, sorted (`SCAN` in batches of 500).
    async fn scan(&self, pattern: String) -> Result<Vec<String>> {
        let mut keys = self.scan_with(None, pattern).await?;
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// Everything `SCAN` (no `key`) or `ZSCAN key` answers for `pattern`,
    /// in batches of 500, one round trip each within the store's timeout.
    pub(super) async fn scan_with(
        &self,
        key: Option<&str>,
        pattern: String,
    ) -> Result<Vec<String>> {
        let mut cursor: u64 = 0;
        let mut found = Vec::new();
        loop {
            let (key, pattern) = (key.map(str::to_owned), pattern.clone());
            let (next, batch): (u64, Vec<String>) = self
                .store
                .with_connection(|mut connection| async move {
                    let mut command = match &key {
                        Some(key) => {
                            let mut command = redis::cmd("ZSCAN");
                            command.arg(key);
                            command
                        }
                        None => redis::cmd("SCAN"),
                    };
                    Ok(command
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(500)
                        .query_async(&mut connection)
                        .await?)
                })
                .await?;
            found.extend(batch);
            if next == 0 {
                return Ok(found);
            }
            cursor = next;
        }
    }
}

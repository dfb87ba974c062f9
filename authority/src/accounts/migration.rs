//! The one-time move of account records from key names of older versions
//! (`P user:<name>`, `P client:<id>`) to keyed digests.

use super::{AccountError, Accounts, Client, Record, User};

impl Accounts {
    /// Moves the records of older versions from `P user:<name>` and
    /// `P client:<id>` to their hashed names, unless `P keynames-v2` says
    /// this was done. Safe to run by several authorities at once: a record
    /// is copied with `SET NX` and its old key deleted only while it still
    /// holds what was copied.
    ///
    /// # Errors
    ///
    /// Store failures (the next operation tries again).
    pub async fn migrate_key_names(&self) -> Result<(), AccountError> {
        let marker = self.store.prefix().keynames_migrated();
        let done: bool = {
            let marker = marker.clone();
            self.store
                .with_shared(|mut connection| async move {
                    redis::cmd("EXISTS")
                        .arg(&marker)
                        .query_async(&mut connection)
                        .await
                })
                .await?
        };
        if done {
            return Ok(());
        }
        let users = self.migrate_kind::<User>().await?;
        let clients = self.migrate_kind::<Client>().await?;
        if users + clients > 0 {
            tracing::info!(
                users,
                clients,
                "migrated account key names to keyed digests"
            );
        }
        self.store
            .with_shared(|mut connection| async move {
                redis::cmd("SET")
                    .arg(&marker)
                    .arg(1)
                    .query_async::<()>(&mut connection)
                    .await
            })
            .await?;
        Ok(())
    }

    async fn migrate_kind<T: Record>(&self) -> Result<usize, AccountError> {
        let prefix = self.store.prefix().clone();
        let set = T::set(&prefix);
        let ids: Vec<String> = self
            .store
            .with_shared(|mut connection| async move {
                redis::cmd("SMEMBERS")
                    .arg(&set)
                    .query_async(&mut connection)
                    .await
            })
            .await?;
        let mut moved = 0;
        for id in ids {
            let legacy = T::key(&prefix, &id);
            let hashed = T::key(&prefix, &self.key.name(T::KIND, &id).await?);
            let raw: Option<String> = {
                let legacy = legacy.clone();
                self.store
                    .with_shared(|mut connection| async move {
                        redis::cmd("GET")
                            .arg(&legacy)
                            .query_async(&mut connection)
                            .await
                    })
                    .await?
            };
            let Some(json) = raw else { continue };
            {
                let json = json.clone();
                self.store
                    .with_shared(|mut connection| async move {
                        redis::cmd("SET")
                            .arg(&hashed)
                            .arg(&json)
                            .arg("NX")
                            .query_async::<Option<String>>(&mut connection)
                            .await
                    })
                    .await?;
            }
            if token_repository::cas::delete_if(&self.store, &legacy, &json).await? {
                moved += 1;
            }
        }
        Ok(moved)
    }
}

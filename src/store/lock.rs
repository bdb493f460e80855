//! One runner at a time per store (DESIGN §6): a MySQL named lock held on one dedicated
//! connection for the whole run, which also carries the run's writes.
//!
//! `GET_LOCK` belongs to a session, not a process, so the lock is exactly as alive as the
//! connection: a daemon killed mid-run, or a server restart, frees it with nothing to clean
//! up. Writing the batches on the same connection means a run can never keep writing after
//! losing its lock: a dropped connection fails the next batch instead.

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::{Store, StoreError};

/// The held lock and the connection it lives on.
pub struct RunLock {
    conn: Conn,
    name: String,
}

/// The lock's server-wide name for a store: database and prefix, as two shops may share a
/// database. MySQL 8 caps names at 64 characters.
pub fn name(store: &Store) -> String {
    format!("wc-retention:{}:{}", store.database(), store.prefix())
        .chars()
        .take(64)
        .collect()
}

impl RunLock {
    /// Takes the store's lock, waiting up to `wait_secs` (0: not at all): `None` when
    /// another runner holds it.
    pub async fn acquire(store: &Store, wait_secs: u32) -> Result<Option<RunLock>, StoreError> {
        let mut conn = store.conn().await?;
        let name = name(store);
        let got: Option<Option<i64>> = conn
            .exec_first("SELECT GET_LOCK(?, ?)", (&name, wait_secs))
            .await
            .map_err(StoreError::sql("taking the run lock", store))?;
        match got.flatten() {
            Some(1) => Ok(Some(RunLock { conn, name })),
            _ => Ok(None),
        }
    }

    /// The lock's connection, for the run's writes.
    pub fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }

    /// Releases the lock. Dropping a `RunLock` also frees it (the pool resets the
    /// connection), but only once that reset has run; releasing says so at once.
    pub async fn release(mut self) {
        if let Err(e) = self.conn.exec_drop("DO RELEASE_LOCK(?)", (&self.name,)).await {
            tracing::debug!(error = %e, "releasing the run lock failed; it ends with its connection");
        }
    }
}

//! The only crate with SQL: implementations of the core's `Store` port, on SQLite (the embedded
//! default) and PostgreSQL (several nodes sharing one database). Both run the same SQL
//! (`portable`); each backend module holds only what differs.

mod blobs;
mod buckets;
mod portable;
mod postgres;
mod rows;
mod sqlite;

pub use blobs::FileBlobs;
pub use buckets::PgBuckets;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use std::sync::Arc;
use switchboard_core::ports::{Store, StoreError};

/// Opens the database `url` names and applies its pending migrations: `postgres://…` or
/// `postgresql://…` is PostgreSQL, anything else SQLite (`sqlite://path`).
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    open_with(url, PgStore::DEFAULT_CONNECTIONS).await
}

/// `open`, with PostgreSQL's pool holding up to `pg_connections` connections.
pub async fn open_with(url: &str, pg_connections: u32) -> Result<Arc<dyn Store>, StoreError> {
    if is_postgres(url) {
        let store = PgStore::open_with(url, pg_connections).await?;
        store.migrate().await?;
        Ok(Arc::new(store))
    } else {
        let store = SqliteStore::open(url).await?;
        store.migrate().await?;
        Ok(Arc::new(store))
    }
}

pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

pub mod copy;
pub mod backup;
pub mod relay;

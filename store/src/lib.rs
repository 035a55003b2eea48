//! The only crate with SQL: implementations of the core's `Store` port, on SQLite (the embedded
//! default) and PostgreSQL (several nodes sharing one database). Both run the same SQL
//! (`portable`); each backend module holds only what differs.

mod blobs;
mod buckets;
mod portable;
mod postgres;
mod report_sql;
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

/// Migration texts an interim build ran before they were final: (version, SHA-384 of that text)
/// per backend. Such a database gets the released text's checksum before migrating (else sqlx
/// refuses it as "modified"), and a later migration settles the schema: 0014 rebuilds
/// `rate_buckets`, which 0012's interim text had created with a `per_second` column already.
const INTERIM_SQLITE: &[(i64, &str)] = &[(12, "6cfffc7817314ea1b6ed14b67ff313453d8f779950887faf70b809dac1d5e6796042a693d706cd01addaf58842079e11")];
const INTERIM_POSTGRES: &[(i64, &str)] = &[(12, "6b6281a74d035faa1262c5fe91cd4148f26d7553cf22e6ba1ab0f14f6488cda4232a4ecbd1009250012737b1c936bca1")];

/// (version, released checksum, interim checksum) for each interim text `migrator` releases.
fn interim_checksums(migrator: &sqlx::migrate::Migrator, interim: &[(i64, &str)]) -> Vec<(i64, Vec<u8>, Vec<u8>)> {
    interim
        .iter()
        .filter_map(|(version, text)| {
            let released = migrator.iter().find(|m| m.version == *version)?;
            Some((*version, released.checksum.to_vec(), hex::decode(text).expect("a hex checksum")))
        })
        .collect()
}

/// Each backend's group commit reports every group it committed (or failed): how many steps it
/// held and how long it took (on SQLite with the WAL's truncation when one was due before it:
/// the commits wait for it too). The rate of the time's sum is how busy the committers are: at 1
/// on SQLite (one writer) it is what holds messages back, whatever the CPU shows.
fn group_committed(steps: usize, started: std::time::Instant) {
    metrics::histogram!("switchboard_store_group_steps").record(steps as f64);
    metrics::histogram!("switchboard_store_group_commit_seconds").record(started.elapsed().as_secs_f64());
}

pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

pub mod copy;
pub mod backup;
pub mod relay;

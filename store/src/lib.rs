//! The only crate with SQL: implementations of the core's `Store` port.

mod blobs;
mod rows;
mod sqlite;

pub use blobs::FileBlobs;
pub use sqlite::SqliteStore;

//! The only crate with SQL: implementations of the core's `Store` port.

mod rows;
mod sqlite;

pub use sqlite::SqliteStore;

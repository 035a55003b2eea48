//! Backups of the embedded database: `VACUUM INTO` writes a consistent copy while the server
//! runs (it reads one snapshot), and a restore puts a checked copy in place of the database.
//! PostgreSQL has its own tools (`pg_dump`, `pg_restore`); docs/DEPLOYMENT.md shows them.

use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use std::path::{Path, PathBuf};
use std::str::FromStr;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "database.url is PostgreSQL: back it up with `pg_dump --format=custom --file=FILE <url>` and restore with \
         `pg_restore --dbname=<url> FILE` (docs/DEPLOYMENT.md)"
    )]
    Postgres,
    #[error("{0} exists already; choose a new file (a backup never overwrites one)")]
    TargetExists(PathBuf),
    #[error("{0} does not exist")]
    Missing(PathBuf),
    #[error("a database is already at {0}; add --replace to keep it aside and restore over it")]
    DatabaseExists(PathBuf),
    #[error("{file} is not a sound Switchboard backup: {why}")]
    NotABackup { file: PathBuf, why: String },
    #[error("{0}")]
    Sqlite(String),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
}

fn sqlite(error: sqlx::Error) -> BackupError {
    BackupError::Sqlite(error.to_string())
}

/// The file an SQLite URL names.
fn database_file(url: &str) -> Result<PathBuf, BackupError> {
    if crate::is_postgres(url) {
        return Err(BackupError::Postgres);
    }
    let options = SqliteConnectOptions::from_str(url).map_err(sqlite)?;
    Ok(options.get_filename().to_path_buf())
}

/// Writes a consistent copy of the database at `url` to `to` (which must not exist) and
/// checks it; returns the copy's size in bytes.
pub async fn backup(url: &str, to: &Path) -> Result<u64, BackupError> {
    let source = database_file(url)?;
    if !source.exists() {
        return Err(BackupError::Missing(source));
    }
    if to.exists() {
        return Err(BackupError::TargetExists(to.to_path_buf()));
    }
    // Read-write only so a WAL database opens without its side files; VACUUM INTO writes nothing to it.
    let mut connection = SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(&source)).await.map_err(sqlite)?;
    sqlx::query("VACUUM INTO ?").bind(to.to_string_lossy().into_owned()).execute(&mut connection).await.map_err(sqlite)?;
    connection.close().await.map_err(sqlite)?;
    check(to).await?;
    std::fs::metadata(to).map(|m| m.len()).map_err(|e| BackupError::Io(to.to_path_buf(), e))
}

/// Puts the backup `from` in place of the database at `url`. An existing database is kept aside
/// as `<file>.before-restore-<time>` when `replace` is given, and refused otherwise. The server
/// must be stopped; the next start migrates an older backup forward.
pub async fn restore(from: &Path, url: &str, replace: bool) -> Result<PathBuf, BackupError> {
    let target = database_file(url)?;
    if !from.exists() {
        return Err(BackupError::Missing(from.to_path_buf()));
    }
    check(from).await?;
    if target.exists() {
        if !replace {
            return Err(BackupError::DatabaseExists(target));
        }
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let aside = PathBuf::from(format!("{}.before-restore-{stamp}", target.display()));
        std::fs::rename(&target, &aside).map_err(|e| BackupError::Io(target.clone(), e))?;
        // The old database's WAL belongs to it, not to the restored file.
        for suffix in ["-wal", "-shm"] {
            let side = PathBuf::from(format!("{}{suffix}", target.display()));
            if side.exists() {
                std::fs::rename(&side, format!("{}{suffix}", aside.display())).map_err(|e| BackupError::Io(side.clone(), e))?;
            }
        }
    }
    std::fs::copy(from, &target).map_err(|e| BackupError::Io(target.clone(), e))?;
    Ok(target)
}

/// An SQLite file that passes `integrity_check` and holds Switchboard's tables.
async fn check(file: &Path) -> Result<(), BackupError> {
    let not_a_backup = |why: String| BackupError::NotABackup { file: file.to_path_buf(), why };
    let mut connection = SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(file).read_only(true))
        .await
        .map_err(|e| not_a_backup(e.to_string()))?;
    let integrity: String =
        sqlx::query_scalar("PRAGMA integrity_check").fetch_one(&mut connection).await.map_err(|e| not_a_backup(e.to_string()))?;
    if integrity != "ok" {
        return Err(not_a_backup(integrity));
    }
    let tables: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('messages', 'conversations', 'contacts')")
        .fetch_one(&mut connection)
        .await
        .map_err(|e| not_a_backup(e.to_string()))?;
    if tables != 3 {
        return Err(not_a_backup("it has no Switchboard tables".into()));
    }
    connection.close().await.map_err(sqlite)?;
    Ok(())
}

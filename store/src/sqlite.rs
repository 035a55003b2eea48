//! The embedded store: one SQLite file in WAL mode. All step writes go through one writer task
//! that commits whatever steps are waiting in a single transaction (group commit): SQLite has one
//! writer anyway, and each round trip to it costs more than the SQL itself. Reads use a pool.
//!
//! A failed write never leaves state behind: the writer connection that saw a storage error
//! (disk full, I/O error, read-only file) is closed and a fresh one opened for the next write,
//! so nothing of a failed transaction can be committed or delivered later.

use crate::portable::portable_store;
use crate::rows::backend;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Acquire, Sqlite, SqliteConnection, SqlitePool};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;
use switchboard_core::ports::{Committed, StepWrite, StoreError};
use tokio::sync::{mpsc, oneshot};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// Steps committed together at most; more wait for the next transaction.
const MAX_GROUP: usize = 256;

struct Job {
    write: StepWrite,
    done: oneshot::Sender<Result<Committed, StoreError>>,
}

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    checkpointer: SqlitePool,
    jobs: mpsc::Sender<Job>,
    webhooks: Arc<WebhooksActive>,
}

/// Whether any webhook is active, as the step writer last read it: a statement per group
/// (a round trip to the connection's thread) for a table that changes when an admin edits it.
/// Every change of webhooks goes through this store on the writer's one connection, and the
/// answer is forgotten after it commits, before the connection goes back to the step writer.
#[derive(Default)]
struct WebhooksActive(AtomicU8);

impl WebhooksActive {
    const UNKNOWN: u8 = 0;
    const NO: u8 = 1;
    const YES: u8 = 2;

    fn forget(&self) {
        self.0.store(Self::UNKNOWN, Ordering::SeqCst);
    }

    /// Read on the writer's connection, so no change of webhooks is half way meanwhile.
    async fn read(&self, connection: &mut SqliteConnection) -> Result<bool, StoreError> {
        match self.0.load(Ordering::SeqCst) {
            Self::NO => Ok(false),
            Self::YES => Ok(true),
            _ => {
                let (active,): (bool,) = sqlx::query_as("SELECT EXISTS (SELECT 1 FROM webhooks WHERE active = TRUE)")
                    .fetch_one(&mut *connection)
                    .await
                    .map_err(backend)?;
                self.0.store(if active { Self::YES } else { Self::NO }, Ordering::SeqCst);
                Ok(active)
            }
        }
    }
}

/// How long a connection waits for a lock another holds before giving up.
const WRITER_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of the database file each reading connection maps at most (virtual memory; the
/// pages are the OS's file cache, shared by all connections).
const READER_MMAP_BYTES: u64 = 1 << 30;

/// A pool without a ping before each use: a SQLite connection lives in this process and cannot
/// be lost as a network one can, and each ping is a round trip to the connection's own thread
/// (in a storm of widget openings those threads had a fifth of the server's CPU, half of it in
/// being woken).
fn pool_options() -> SqlitePoolOptions {
    SqlitePoolOptions::new().test_before_acquire(false)
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url`, e.g. `sqlite://switchboard.db`.
    /// Does not migrate; call `migrate` first. Needs a Tokio runtime (starts the writer task).
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Backend(format!("invalid SQLite URL `{url}`: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(WRITER_BUSY_TIMEOUT)
            .pragma("cache_size", "-16000")
            // When a checkpoint lets the WAL start over, it is cut back to this size instead of
            // keeping its high-water mark forever.
            .pragma("journal_size_limit", "67108864");
        let database_file = options.get_filename().as_os_str().to_owned();
        let wal = (!database_file.is_empty() && database_file != ":memory:").then(|| {
            let mut name = database_file;
            name.push("-wal");
            std::path::PathBuf::from(name)
        });
        // Checkpoints copy the WAL into the database file and fsync it; done by the writer they
        // would stall every commit behind them, so a separate connection does them.
        let writer = pool_options()
            .max_connections(1)
            .min_connections(1)
            // Its statement journals (every multi-row statement keeps one) stay in memory instead
            // of spilling to a temporary file past 64 KiB; readers' sorts still may.
            .connect_with(options.clone().pragma("wal_autocheckpoint", "0").pragma("temp_store", "memory"))
            .await
            .map_err(|e| StoreError::Backend(format!("cannot open `{url}`: {e}")))?;
        let checkpointer = pool_options()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(|e| StoreError::Backend(format!("cannot open `{url}` for checkpoints: {e}")))?;
        // Readers map the file: a report's scan of months of rows reads pages in place instead
        // of copying each into every connection's own cache (the OS keeps one copy for all).
        let reader = pool_options()
            .max_connections(4)
            .connect_with(options.read_only(true).pragma("mmap_size", READER_MMAP_BYTES.to_string()))
            .await
            .map_err(|e| StoreError::Backend(format!("cannot open `{url}` for reading: {e}")))?;
        let (jobs, queue) = mpsc::channel(4 * MAX_GROUP);
        let wal_reset_wanted = Arc::new(AtomicBool::new(false));
        let webhooks = Arc::new(WebhooksActive::default());
        spawn_writer_thread(group_commit(writer.clone(), queue, wal_reset_wanted.clone(), webhooks.clone()))?;
        tokio::spawn(checkpoint_regularly(checkpointer.clone(), wal, jobs.downgrade(), wal_reset_wanted));
        Ok(Self { writer, reader, checkpointer, jobs, webhooks })
    }

    fn webhooks_changed(&self) {
        self.webhooks.forget();
    }

    /// Applies the embedded migrations that have not run yet.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let recorded: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'")
            .fetch_one(&self.writer)
            .await
            .map_err(backend)?;
        for (version, released, interim) in crate::interim_checksums(&MIGRATOR, crate::INTERIM_SQLITE).into_iter().filter(|_| recorded > 0) {
            sqlx::query("UPDATE _sqlx_migrations SET checksum = $1 WHERE version = $2 AND checksum = $3")
                .bind(released)
                .bind(version)
                .bind(interim)
                .execute(&self.writer)
                .await
                .map_err(backend)?;
        }
        MIGRATOR
            .run(&self.writer)
            .await
            .map_err(|e| StoreError::Backend(format!("migration failed: {e}")))
    }
}

/// Runs the writer task on a thread of its own. Each statement of a group is a round trip to
/// SQLite's connection thread; on the shared runtime every return waited its turn behind the
/// message path's tasks, so under load a group took 150–230 ms and commits fell behind.
fn spawn_writer_thread(writer: impl std::future::Future<Output = ()> + Send + 'static) -> Result<(), StoreError> {
    // The runtime is built on the thread itself: one dropped inside the caller's runtime (were
    // the spawn refused) would panic instead of returning this error.
    std::thread::Builder::new()
        .name("sqlite-writer".into())
        .spawn(move || match tokio::runtime::Builder::new_current_thread().enable_time().build() {
            Ok(runtime) => runtime.block_on(writer),
            Err(error) => tracing::error!(%error, "cannot start the SQLite writer's runtime; every write is refused"),
        })
        .map(drop)
        .map_err(|e| StoreError::Backend(format!("cannot start the SQLite writer thread: {e}")))
}

/// The writer task: takes every waiting step, commits them in one transaction, answers each.
/// If the group fails, each step is retried alone so one bad write fails only itself.
/// Between groups it truncates the WAL when the checkpointer asks (`wal_reset_wanted`).
async fn group_commit(pool: SqlitePool, mut queue: mpsc::Receiver<Job>, wal_reset_wanted: Arc<AtomicBool>, webhooks: Arc<WebhooksActive>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    let mut failing = false;
    while queue.recv_many(&mut group, MAX_GROUP).await > 0 {
        let (started, steps) = (std::time::Instant::now(), group.len());
        if wal_reset_wanted.swap(false, Ordering::Relaxed) {
            truncate_wal(&pool).await;
        }
        let writes: Vec<&StepWrite> = group.iter().map(|job| &job.write).collect();
        let outcome = match write_group(&pool, &writes, &webhooks).await {
            Ok(results) => {
                for (job, result) in group.drain(..).zip(results) {
                    let _ = job.done.send(Ok(result));
                }
                Ok(())
            }
            Err(_) if group.len() > 1 => {
                let mut last = Ok(());
                for job in group.drain(..) {
                    let result = write_group(&pool, &[&job.write], &webhooks).await.map(|mut r| r.remove(0));
                    if let Err(error) = &result {
                        last = Err(error.to_string());
                    }
                    let _ = job.done.send(result);
                }
                last
            }
            Err(error) => {
                for job in group.drain(..) {
                    let _ = job.done.send(Err(StoreError::Backend(error.to_string())));
                }
                Err(error.to_string())
            }
        };
        crate::group_committed(steps, started);
        // Once per episode: the first failure and the recovery, not every refused write.
        match outcome {
            Err(error) if !failing => {
                failing = true;
                tracing::error!(%error, "the database refuses writes; messages are refused (not acknowledged) until it recovers");
            }
            Ok(()) if failing => {
                failing = false;
                tracing::info!("the database accepts writes again");
            }
            _ => {}
        }
    }
}

const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// A checkpoint slower than this is logged (a TRUNCATE holds every commit back meanwhile).
const SLOW_CHECKPOINT: Duration = Duration::from_millis(100);

/// A WAL larger than this is truncated: passive checkpoints copy it into the database, but under
/// steady load readers keep it from starting over, so it would only grow.
const WAL_TRUNCATE_ABOVE: u64 = 32 * 1024 * 1024;

/// Runs passive checkpoints (they never block the writer) until the store is dropped or closed;
/// when the WAL has grown past `WAL_TRUNCATE_ABOVE`, asks the writer task to truncate it.
async fn checkpoint_regularly(pool: SqlitePool, wal: Option<std::path::PathBuf>, store_alive: mpsc::WeakSender<Job>, wal_reset_wanted: Arc<AtomicBool>) {
    while store_alive.upgrade().is_some() && !pool.is_closed() {
        tokio::time::sleep(CHECKPOINT_EVERY).await;
        let started = std::time::Instant::now();
        match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
            Err(error) if !pool.is_closed() => tracing::warn!(%error, "WAL checkpoint failed; will retry"),
            Err(_) => {}
            Ok(_) if started.elapsed() > SLOW_CHECKPOINT => {
                tracing::info!(millis = started.elapsed().as_millis() as u64, "slow passive WAL checkpoint");
            }
            Ok(_) => {}
        }
        // Just after a passive checkpoint little is left to copy, so the truncation is short.
        if wal.as_ref().and_then(|path| std::fs::metadata(path).ok()).is_some_and(|m| m.len() > WAL_TRUNCATE_ABOVE) {
            wal_reset_wanted.store(true, Ordering::Relaxed);
        }
    }
}

/// Copies what is left of the WAL into the database and empties it, on the writer's own
/// connection between groups: commits wait for it, but only for the copy itself. (Another
/// connection would first wait for the writer's lock, then hold every commit back meanwhile,
/// and the writer would retry on its busy timeout's growing sleeps: 0.1-1.7 s stalls at 1,000
/// messages a second.)
/// It waits at most `TRUNCATE_WAITS_FOR_READERS` for readers still on an older snapshot (a long
/// report, say), then gives up until the checkpointer asks again.
async fn truncate_wal(pool: &SqlitePool) {
    let started = std::time::Instant::now();
    let truncated = async {
        let mut connection = pool.acquire().await?;
        let waits = format!("PRAGMA busy_timeout = {}", TRUNCATE_WAITS_FOR_READERS.as_millis());
        sqlx::query(sqlx::AssertSqlSafe(waits)).execute(&mut *connection).await?;
        let result = sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&mut *connection).await;
        let restored = format!("PRAGMA busy_timeout = {}", WRITER_BUSY_TIMEOUT.as_millis());
        sqlx::query(sqlx::AssertSqlSafe(restored)).execute(&mut *connection).await?;
        result.map(|(busy, _, _)| busy == 0)
    };
    match truncated.await {
        Err(error) => tracing::warn!(%error, "truncating the WAL failed; it is tried again when it grows"),
        Ok(false) => tracing::info!("the WAL was not truncated: a reader is still on an older snapshot; tried again shortly"),
        Ok(true) if started.elapsed() > SLOW_CHECKPOINT => {
            tracing::info!(millis = started.elapsed().as_millis() as u64, "slow WAL truncation");
        }
        Ok(true) => {}
    }
}

/// How long a truncation of the WAL holds commits back at most, waiting for readers.
const TRUNCATE_WAITS_FOR_READERS: Duration = Duration::from_millis(200);

/// One transaction on the writer connection. After any error the connection is closed rather
/// than returned to the pool: SQLite may have rolled back on its own (SQLITE_FULL, SQLITE_IOERR)
/// or not, and a connection whose transaction state is in doubt must not take the next write.
async fn write_group(pool: &SqlitePool, writes: &[&StepWrite], webhooks: &WebhooksActive) -> Result<Vec<Committed>, StoreError> {
    let mut connection = pool.acquire().await.map_err(backend)?;
    let result = write_all(&mut connection, writes, webhooks).await;
    if result.is_err() {
        connection.close_on_drop();
    }
    result
}

async fn write_all(connection: &mut SqliteConnection, writes: &[&StepWrite], webhooks: &WebhooksActive) -> Result<Vec<Committed>, StoreError> {
    // Once for the group rather than a statement per step (steps never change webhooks), and
    // kept until they change. Read before the transaction, so that it still begins with a
    // write (a deferred one that read first could find another process's write in between and
    // fail).
    let webhooks_active = webhooks.read(connection).await?;
    let mut tx = connection.begin().await.map_err(backend)?;
    let mut results = Vec::with_capacity(writes.len());
    for write in writes {
        results.push(portable::write_step(&mut *tx, write, Some(webhooks_active)).await?);
    }
    if results.iter().any(|result| matches!(result, Committed::Stored { seqs } if !seqs.is_empty())) {
        sqlx::query(INDEX_NEW_MESSAGES).execute(&mut *tx).await.map_err(backend)?;
    }
    tx.commit().await.map_err(backend)?;
    Ok(results)
}

/// Adds the messages stored since the last time to the full-text index, once per group, in
/// the group's transaction (migration 0036: per message, FTS5 wrote an index segment each).
const INDEX_NEW_MESSAGES: &str = "INSERT INTO messages_fts (rowid, body) \
     SELECT seq, body FROM messages WHERE seq > (SELECT seq FROM messages_fts_through) ORDER BY seq; \
     UPDATE messages_fts_through SET seq = (SELECT MAX(seq) FROM messages) WHERE seq < (SELECT MAX(seq) FROM messages)";

/// The newest `limit` messages holding every word (seq, conversation_id): the FTS5 index read
/// backwards by rowid (= seq), which stops after `limit` hits however common the words are.
fn message_hits(words: &[switchboard_core::search::SearchWord], limit: u32) -> (String, String) {
    let query = words.iter().map(|w| format!("\"{}\"{}", w.text, if w.prefix { "*" } else { "" })).collect::<Vec<_>>().join(" AND ");
    let sql = format!(
        "SELECT m.seq, m.conversation_id FROM messages m WHERE m.seq IN \
         (SELECT rowid FROM messages_fts WHERE messages_fts MATCH ? ORDER BY rowid DESC LIMIT {limit})"
    );
    (sql, query)
}

/// Contacts whose name or channel id contains `text` (SQL with `?` for the one value): the
/// trigram index for three characters or more, a scan of contacts for shorter text.
fn contact_hits(text: &str) -> (String, String) {
    if text.chars().count() >= 3 {
        let phrase = format!("\"{}\"", text.replace('"', "\"\""));
        ("SELECT contact_id FROM contacts_search WHERE contacts_search MATCH ?".into(), phrase)
    } else {
        let sql = "SELECT n.id FROM contacts n WHERE n.display_name LIKE ? ESCAPE '\\' OR n.external_id LIKE ? ESCAPE '\\'";
        (sql.into(), crate::portable::contains_pattern(text))
    }
}

/// The replies due for delivery ($2 now, $3 how many). INDEXED BY: with bound parameters the
/// planner otherwise walks the whole table in seq order (seconds on a million messages) instead
/// of the small pending index.
const OUTBOX_DUE: &str = "SELECT seq FROM messages INDEXED BY messages_outbox WHERE outbound = 1 AND delivered_at IS NULL \
     AND gave_up_at IS NULL AND next_attempt_at <= $2 AND (lease_until IS NULL OR lease_until <= $2) ORDER BY seq LIMIT $3";

/// Leases due timers: $1 the lease's end, $2 now, $3 how many.
const TIMER_CLAIM: &str = "UPDATE timers SET claimed_until = $1 WHERE rowid IN ( \
     SELECT rowid FROM timers WHERE due_at <= $2 AND (claimed_until IS NULL OR claimed_until <= $2) \
     ORDER BY due_at LIMIT $3) \
     RETURNING conversation_id, kind, due_at";

portable_store! {
    store: SqliteStore,
    conn: SqliteConnection,
    db: Sqlite,
    contact_search: contact_hits,
    text_search: message_hits,
    claim_timers: TIMER_CLAIM,
    outbox_due: OUTBOX_DUE,
    // Its multi-index OR reads both indexes in one pass.
    gather_search_first: false,
    // SQLite has no data-modifying WITH; its statements are calls within the process.
    chained_writes: false,
    conversations: {
        async fn commit(&self, write: StepWrite) -> Result<Committed, StoreError> {
            let (done, result) = oneshot::channel();
            let stopped = || StoreError::Backend("the database writer has stopped".into());
            self.jobs.send(Job { write, done }).await.map_err(|_| stopped())?;
            result.await.map_err(|_| stopped())?
        }
    },
    outbox: {
        async fn outbox_backlog(&self) -> Result<(u64, Option<Timestamp>), StoreError> {
            let (count, oldest): (i64, Option<i64>) = sqlx::query_as(
                "SELECT COUNT(*), MIN(created_at) FROM messages INDEXED BY messages_outbox \
                 WHERE outbound = 1 AND delivered_at IS NULL AND gave_up_at IS NULL",
            )
            .fetch_one(&self.reader)
            .await
            .map_err(backend)?;
            Ok((count as u64, oldest.and_then(chrono::DateTime::from_timestamp_millis)))
        }
    },
    coordination: {
        /// One process owns an SQLite file's server, so the engine's own lock is enough.
        async fn exclusive(&self, _name: &str) -> Result<Box<dyn switchboard_core::ports::Exclusive>, StoreError> {
            struct Alone;
            impl switchboard_core::ports::Exclusive for Alone {}
            Ok(Box::new(Alone))
        }

        async fn close(&self) {
            // Everything committed is folded into the database file and the WAL emptied, so a
            // stopped installation is one file again (for backups and copies).
            if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.checkpointer).await {
                tracing::warn!(%error, "the final WAL checkpoint failed; the WAL is folded in on the next start");
            }
            self.checkpointer.close().await;
            self.reader.close().await;
            self.writer.close().await;
        }
    }

}

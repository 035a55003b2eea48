//! The scale-out store: PostgreSQL, shared by any number of Switchboard nodes. Steps waiting at
//! the same moment commit together: a few committer tasks each take the waiting steps into one
//! transaction (a refused step writes nothing; a failing one is written again alone), so many
//! steps share one commit and its WAL flush. The outbox is claimed with `FOR UPDATE SKIP
//! LOCKED`, so two nodes never lease the same reply.
//!
//! A connection that failed (the server restarted, the backend was terminated, the network
//! dropped) is discarded by the pool; the next request opens a new one, so the store recovers
//! without a restart. A failed transaction is rolled back by the server and answered as an error.

use crate::portable::portable_store;
use crate::rows::backend;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Acquire, PgConnection, PgPool, Postgres};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use switchboard_core::ports::{Committed, StepWrite, StoreError};
use tokio::sync::{Mutex, mpsc, oneshot};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

pub struct PgStore {
    /// Both names refer to one pool: the shared SQL reads from `reader` and writes to `writer`.
    writer: PgPool,
    reader: PgPool,
    /// Steps waiting for a committer.
    steps: mpsc::Sender<Job>,
}

/// A step and who waits for its outcome.
struct Job {
    write: StepWrite,
    done: oneshot::Sender<Result<Committed, StoreError>>,
}

/// Transactions committing steps at once, and the most steps one takes. Four: fewer, larger
/// groups cost PostgreSQL less per step than eight did (BENCHMARKS.md, "committers"), while
/// three left the CPU waiting on commits.
const COMMITTERS: usize = 4;
const MAX_GROUP: usize = 32;

impl PgStore {
    /// Connects to the database at `url`, e.g. `postgres://switchboard@db.example.com/switchboard`.
    /// Does not migrate; call `migrate` first.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, Self::DEFAULT_CONNECTIONS).await
    }

    /// The pool's size when not configured (`database.max_connections`).
    pub const DEFAULT_CONNECTIONS: u32 = 24;
    /// The fewest connections a pool may have: the committers' and some for reading.
    pub const MIN_CONNECTIONS: u32 = COMMITTERS as u32 + 8;

    /// `open` with a pool of up to `connections` (at least `MIN_CONNECTIONS`).
    pub async fn open_with(url: &str, connections: u32) -> Result<Self, StoreError> {
        let pool = connect(url, "switchboard", connections.max(Self::MIN_CONNECTIONS), Duration::from_secs(5)).await?;
        let (steps, queue) = mpsc::channel(COMMITTERS * MAX_GROUP * 4);
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..COMMITTERS {
            tokio::spawn(commit_steps(pool.clone(), queue.clone()));
        }
        Ok(Self { writer: pool.clone(), reader: pool, steps })
    }

    /// Each step group learns from its own statements whether webhooks listen: nothing kept.
    fn webhooks_changed(&self) {}

    /// Applies the embedded migrations that have not run yet. Several nodes starting at once
    /// are safe: sqlx takes an advisory lock for the run.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let recorded: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
            .fetch_one(&self.writer)
            .await
            .map_err(backend)?;
        for (version, released, interim) in crate::interim_checksums(&MIGRATOR, crate::INTERIM_POSTGRES).into_iter().filter(|_| recorded) {
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

    pub fn pool(&self) -> &PgPool {
        &self.writer
    }
}

/// A pool of up to `connections` to the database at `url`, named `application_name` there.
pub(crate) async fn connect(url: &str, application_name: &str, connections: u32, acquire_timeout: Duration) -> Result<PgPool, StoreError> {
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::Backend(format!("invalid PostgreSQL URL: {e}")))?
        .application_name(application_name);
    PgPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(acquire_timeout)
        // A pooled connection the server dropped is found before use, not by a failed write.
        .test_before_acquire(true)
        .connect_with(options)
        .await
        .map_err(|e| StoreError::Backend(format!("cannot connect to PostgreSQL: {e}")))
}

/// An advisory lock's connection, closed (and the lock so released) when dropped.
struct Held {
    _connection: sqlx::pool::PoolConnection<Postgres>,
}

impl switchboard_core::ports::Exclusive for Held {}

/// A committer: takes the steps waiting now (one at a time while the load is light) and commits
/// them together. When a statement fails (a failed statement aborts the whole transaction on
/// PostgreSQL) or the server refuses the commit itself (a deferred foreign key of one step),
/// nothing was stored and each step is written again on its own, so a bad step fails alone. Any
/// other failure of the transaction (no connection, a commit that got no answer) fails every
/// step in it at once and runs none again: nobody knows what was stored, so each caller is told
/// "not stored" and retries.
async fn commit_steps(pool: PgPool, queue: Arc<Mutex<mpsc::Receiver<Job>>>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    loop {
        if queue.lock().await.recv_many(&mut group, MAX_GROUP).await == 0 {
            return;
        }
        let (started, steps) = (std::time::Instant::now(), group.len());
        let writes: Vec<&StepWrite> = group.iter().map(|job| &job.write).collect();
        match write_group(&pool, &writes).await {
            Ok(results) => {
                for (job, result) in group.drain(..).zip(results) {
                    let _ = job.done.send(Ok(result));
                }
            }
            Err(GroupFailed::RolledBack(_)) if group.len() > 1 => {
                for job in group.drain(..) {
                    let result = match write_group(&pool, &[&job.write]).await {
                        Ok(mut results) => Ok(results.remove(0)),
                        Err(GroupFailed::RolledBack(error) | GroupFailed::InDoubt(error)) => Err(error),
                    };
                    let _ = job.done.send(result);
                }
            }
            Err(GroupFailed::RolledBack(error) | GroupFailed::InDoubt(error)) if group.len() == 1 => {
                let _ = group.remove(0).done.send(Err(error));
            }
            Err(GroupFailed::RolledBack(error) | GroupFailed::InDoubt(error)) => {
                for job in group.drain(..) {
                    let _ = job.done.send(Err(StoreError::Backend(error.to_string())));
                }
            }
        }
        crate::group_committed(steps, started);
    }
}

/// One transaction for the steps, one after another. Like SQLite's group, a refused step
/// (`Duplicate`, `Conflict`) writes nothing it guards (`portable::write_step` checks first or
/// undoes), so no step needs a savepoint of its own: a savepoint is a round trip, and each one
/// that writes is a subtransaction every snapshot of the server then has to account for.
async fn write_group(pool: &PgPool, writes: &[&StepWrite]) -> Result<Vec<Committed>, GroupFailed> {
    let mut connection = pool.acquire().await.map_err(|e| GroupFailed::InDoubt(backend(e)))?;
    let result = write_all(&mut connection, writes).await;
    // After any failure the connection goes: a session the server turned read-only, say, would
    // refuse every later step too, while a fresh one sees the database as it is now.
    if result.is_err() {
        connection.close_on_drop();
    }
    result
}

/// Why a group's transaction failed.
enum GroupFailed {
    /// A statement or the commit was refused: nothing of the group was stored.
    RolledBack(StoreError),
    /// The transaction broke off: what was stored is not known.
    InDoubt(StoreError),
}

async fn write_all(connection: &mut PgConnection, writes: &[&StepWrite]) -> Result<Vec<Committed>, GroupFailed> {
    let in_doubt = |e| GroupFailed::InDoubt(backend(e));
    let mut tx = connection.begin().await.map_err(in_doubt)?;
    let mut results = Vec::with_capacity(writes.len());
    for write in writes {
        match portable::write_step(&mut *tx, write, None).await {
            Ok(committed) => results.push(committed),
            // The server refuses the rest of an aborted transaction (a COMMIT would only roll
            // it back), so the group ends here.
            Err(error) => {
                tx.rollback().await.map_err(in_doubt)?;
                return Err(GroupFailed::RolledBack(error));
            }
        }
    }
    tx.commit().await.map_err(|e| match e {
        sqlx::Error::Database(_) => GroupFailed::RolledBack(backend(e)),
        other => GroupFailed::InDoubt(backend(other)),
    })?;
    Ok(results)
}

/// The newest `limit` messages holding every word (seq, conversation_id): the GIN index on the
/// stored words of the body (`body_words`, migration 0007) for rare words; for common ones the
/// planner walks seq backwards instead.
fn message_hits(words: &[switchboard_core::search::SearchWord], limit: u32) -> (String, String) {
    let query = words.iter().map(|w| format!("{}{}", w.text, if w.prefix { ":*" } else { "" })).collect::<Vec<_>>().join(" & ");
    let sql = format!(
        "SELECT s.seq, s.conversation_id FROM messages s WHERE s.body_words @@ to_tsquery('simple', ?) \
         ORDER BY s.seq DESC LIMIT {limit}"
    );
    (sql, query)
}

/// Contacts whose name or channel id contains `text`, in any case (SQL with `?` for the one
/// value): the trigram index on `search_text` answers it for three characters or more.
fn contact_hits(text: &str) -> (String, String) {
    let sql = "SELECT n.id FROM contacts n WHERE n.search_text LIKE lower(?) ESCAPE '\\'";
    (sql.into(), crate::portable::contains_pattern(text))
}

/// The replies due for delivery ($2 now, $3 how many); rows another node is claiming right now
/// are skipped, not waited for.
const OUTBOX_DUE: &str = "SELECT seq FROM messages WHERE outbound AND delivered_at IS NULL \
     AND gave_up_at IS NULL AND next_attempt_at <= $2 AND (lease_until IS NULL OR lease_until <= $2) ORDER BY seq LIMIT $3 \
     FOR UPDATE SKIP LOCKED";

/// Leases due timers: $1 the lease's end, $2 now, $3 how many.
const TIMER_CLAIM: &str = "UPDATE timers SET claimed_until = $1 WHERE (conversation_id, kind) IN ( \
     SELECT conversation_id, kind FROM timers WHERE due_at <= $2 AND (claimed_until IS NULL OR claimed_until <= $2) \
     ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
     RETURNING conversation_id, kind, due_at";

portable_store! {
    store: PgStore,
    conn: PgConnection,
    db: Postgres,
    contact_search: contact_hits,
    text_search: message_hits,
    claim_timers: TIMER_CLAIM,
    outbox_due: OUTBOX_DUE,
    gather_search_first: true,
    // Writes to several tables in one statement (data-modifying WITH): fewer round trips.
    chained_writes: true,
    conversations: {
        async fn commit(&self, write: StepWrite) -> Result<Committed, StoreError> {
            let (done, result) = oneshot::channel();
            let stopped = || StoreError::Backend("the database committers have stopped".into());
            self.steps.send(Job { write, done }).await.map_err(|_| stopped())?;
            result.await.map_err(|_| stopped())?
        }
    },
    outbox: {
        async fn outbox_backlog(&self) -> Result<(u64, Option<Timestamp>), StoreError> {
            let (count, oldest): (i64, Option<i64>) = sqlx::query_as(
                "SELECT COUNT(*), MIN(created_at) FROM messages WHERE outbound AND delivered_at IS NULL AND gave_up_at IS NULL",
            )
            .fetch_one(&self.reader)
            .await
            .map_err(backend)?;
            Ok((count as u64, oldest.and_then(chrono::DateTime::from_timestamp_millis)))
        }
    },
    coordination: {
        /// A session-level advisory lock on a connection of its own; the guard closes that
        /// connection when dropped, which ends the session and so releases the lock (no await
        /// is needed in `Drop`, and a lock can never stay behind on a pooled connection).
        async fn exclusive(&self, name: &str) -> Result<Box<dyn switchboard_core::ports::Exclusive>, StoreError> {
            let mut connection = self.writer.acquire().await.map_err(backend)?;
            let locked = sqlx::query("SELECT pg_advisory_lock(hashtext($1))").bind(name).execute(&mut *connection).await;
            if let Err(error) = locked {
                connection.close_on_drop();
                return Err(backend(error));
            }
            connection.close_on_drop();
            Ok(Box::new(Held { _connection: connection }))
        }

        async fn close(&self) {
            self.writer.close().await;
        }
    }

}

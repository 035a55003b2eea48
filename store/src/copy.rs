//! `switchboard db copy`: moves an installation from SQLite to PostgreSQL, table by table in
//! batches. Re-running it resumes: rows already in the target are kept, missing ones copied.
//! At the end every table's row count is compared.

use crate::rows::{Columns, backend};
use crate::{PgStore, SqliteStore};
use sqlx::{Connection, PgConnection, SqliteConnection};
use std::str::FromStr;
use switchboard_core::ports::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("--from must be a SQLite URL (sqlite://path) and --to a PostgreSQL URL (postgres://user@host/database)")]
    Direction,
    #[error(
        "the target already holds {rows} rows in `{table}`; copy into an empty database, or pass --resume to finish an interrupted copy into it"
    )]
    TargetNotEmpty { table: &'static str, rows: i64 },
    #[error("after copying, `{table}` has {in_target} rows in the target but {in_source} in the source")]
    CountMismatch { table: &'static str, in_source: i64, in_target: i64 },
}

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Int,
    Flag,
    Real,
    Bytes,
}

use Kind::{Bytes, Flag, Int, Real, Text};

struct Table {
    name: &'static str,
    columns: &'static [(&'static str, Kind)],
    /// Without a unique key a resumed copy could not tell copied rows: such a table is
    /// emptied in the target and copied whole.
    keyed: bool,
}

/// Parents before children (foreign keys that are not deferred point at agents). The reports'
/// per-day counts (`intent_days`, `report_rollup`) are not copied: the target's `reports` job
/// counts them again from the copied messages. Leases and the connections' states belong to
/// the running nodes and are not copied either.
const TABLES: &[Table] = &[
    Table { name: "settings", columns: &[("key", Text), ("value", Text)], keyed: true },
    Table {
        name: "agents",
        columns: &[
            ("id", Text), ("email", Text), ("name", Text), ("role", Text), ("presence", Text), ("capacity", Int),
            ("active", Flag), ("created_at", Int), ("password_hash", Text), ("skills", Text),
        ],
        keyed: true,
    },
    Table {
        name: "webhooks",
        columns: &[
            ("id", Text), ("url", Text), ("events", Text), ("secret", Text), ("active", Flag), ("description", Text),
            ("consecutive_failures", Int), ("disabled_reason", Text), ("created_by", Text), ("created_at", Int), ("updated_at", Int),
        ],
        keyed: true,
    },
    Table {
        name: "webhook_deliveries",
        columns: &[
            ("id", Int), ("webhook_id", Text), ("event", Text), ("event_id", Text), ("payload", Text), ("state", Text), ("attempts", Int),
            ("created_at", Int), ("next_attempt_at", Int), ("last_attempt_at", Int), ("last_status", Int), ("last_response", Text),
            ("last_error", Text),
        ],
        keyed: true,
    },
    Table {
        name: "inbound_dead_letters",
        columns: &[
            ("id", Int), ("channel", Text), ("external_id", Text), ("payload", Bytes), ("error", Text), ("attempts", Int),
            ("first_failed_at", Int), ("last_failed_at", Int), ("state", Text), ("settled_by", Text), ("settled_at", Int),
        ],
        keyed: true,
    },
    Table { name: "agent_presence_log", columns: &[("agent_id", Text), ("presence", Text), ("at", Int)], keyed: false },
    Table {
        name: "contacts",
        columns: &[
            ("id", Text), ("channel", Text), ("external_id", Text), ("display_name", Text), ("created_at", Int),
            ("unreachable_since", Int), ("unreachable_reason", Text), ("email", Text), ("person_id", Text),
        ],
        keyed: true,
    },
    Table {
        name: "contact_links",
        columns: &[
            ("id", Text), ("person_id", Text), ("joined_id", Text), ("moved", Text), ("proof", Text), ("agent_id", Text),
            ("created_at", Int), ("undone_at", Int), ("undone_by", Text),
        ],
        keyed: true,
    },
    Table {
        name: "link_codes",
        columns: &[("code_hash", Text), ("contact_id", Text), ("email", Text), ("created_at", Int), ("expires_at", Int), ("used_at", Int)],
        keyed: true,
    },
    Table {
        name: "conversations",
        columns: &[
            ("id", Text), ("contact_id", Text), ("channel", Text), ("handler", Text), ("agent_id", Text), ("status", Text),
            ("category", Text), ("priority", Text), ("escalation_reason", Text), ("escalation_summary", Text),
            ("escalated_at", Int), ("low_confidence_streak", Int), ("created_at", Int), ("updated_at", Int),
            ("version", Int), ("waiting_notice_at", Int), ("first_reply_due_at", Int), ("resolution_due_at", Int),
            ("sla_notices", Int), ("awaiting", Text), ("language", Text), ("last_agent_id", Text),
        ],
        keyed: true,
    },
    Table {
        name: "messages",
        columns: &[
            ("seq", Int), ("id", Text), ("conversation_id", Text), ("contact_id", Text), ("channel", Text), ("sender", Text),
            ("agent_id", Text), ("body", Text), ("internal", Flag), ("attachments", Text), ("quick_replies", Text),
            ("classification", Text), ("intent", Text), ("confidence", Real), ("answered_from_intent", Flag), ("external_id", Text), ("created_at", Int), ("outbound", Flag), ("attempts", Int),
            ("next_attempt_at", Int), ("lease_until", Int), ("delivered_at", Int), ("gave_up_at", Int), ("last_error", Text),
            ("sent_id", Text), ("seen_at", Int), ("retry_from", Int),
        ],
        keyed: true,
    },
    Table {
        name: "waiting_messages",
        columns: &[("message_seq", Int), ("contact_id", Text), ("channel", Text), ("created_at", Int)],
        keyed: true,
    },
    Table {
        name: "conversation_seen",
        columns: &[("conversation_id", Text), ("up_to_seq", Int), ("agent_id", Text), ("seen_at", Int)],
        keyed: true,
    },
    Table {
        name: "timers",
        columns: &[("conversation_id", Text), ("kind", Text), ("due_at", Int), ("claimed_until", Int)],
        keyed: false,
    },
    Table {
        name: "audit_log",
        columns: &[
            ("id", Int), ("at", Int), ("actor_id", Text), ("action", Text), ("conversation_id", Text), ("subject_agent", Text),
            ("before_state", Text), ("after_state", Text),
        ],
        keyed: true,
    },
    Table {
        name: "customer_mails",
        columns: &[
            ("id", Int), ("conversation_id", Text), ("address", Text), ("text", Text), ("created_at", Int), ("mail_pending", Flag),
            ("mailed_at", Int), ("mail_error", Text),
        ],
        keyed: true,
    },
    Table {
        name: "notifications",
        columns: &[
            ("id", Int), ("agent_id", Text), ("kind", Text), ("conversation_id", Text), ("text", Text), ("created_at", Int),
            ("read_at", Int), ("mail_pending", Flag), ("mailed_at", Int), ("mail_error", Text),
        ],
        keyed: true,
    },
    Table {
        name: "conversation_events",
        columns: &[
            ("id", Int), ("conversation_id", Text), ("kind", Text), ("at", Int), ("channel", Text), ("agent_id", Text),
            ("category", Text), ("priority", Text), ("reason", Text), ("wait_ms", Int),
        ],
        keyed: true,
    },
    Table {
        name: "ratings",
        columns: &[
            ("id", Int), ("conversation_id", Text), ("agent_id", Text), ("channel", Text), ("resolved_at", Int), ("score", Int),
            ("comment", Text), ("created_at", Int),
        ],
        keyed: true,
    },
    Table {
        name: "documents",
        columns: &[
            ("id", Text), ("conversation_id", Text), ("contact_id", Text), ("channel", Text), ("message_seq", Int), ("file_key", Text),
            ("file_name", Text), ("content_type", Text), ("size", Int), ("kind", Text), ("state", Text), ("reviewer_id", Text),
            ("decided_at", Int), ("note", Text), ("created_at", Int), ("purged_at", Int),
        ],
        keyed: true,
    },
    Table {
        name: "escalations",
        columns: &[
            ("id", Int), ("conversation_id", Text), ("at", Int), ("reason", Text), ("confidence", Real), ("priority", Text),
            ("category", Text),
        ],
        keyed: true,
    },
    Table {
        name: "panel_settings",
        columns: &[("key", Text), ("value", Text), ("updated_by", Text), ("updated_at", Int)],
        keyed: true,
    },
    Table {
        name: "sessions",
        columns: &[("token_hash", Text), ("agent_id", Text), ("csrf", Text), ("created_at", Int), ("expires_at", Int)],
        keyed: true,
    },
    Table {
        name: "password_resets",
        columns: &[("token_hash", Text), ("agent_id", Text), ("created_by", Text), ("created_at", Int), ("expires_at", Int), ("used_at", Int)],
        keyed: true,
    },
    Table {
        name: "api_tokens",
        columns: &[("id", Text), ("token_hash", Text), ("agent_id", Text), ("name", Text), ("created_at", Int)],
        keyed: true,
    },
    Table {
        name: "intents_versions",
        columns: &[
            ("number", Int), ("text", Text), ("digest", Text), ("file_digest", Text), ("origin", Text), ("note", Text), ("author_id", Text),
            ("created_at", Int), ("labelled", Int), ("accuracy_before", Real), ("accuracy_after", Real), ("measured_at", Int),
        ],
        keyed: true,
    },
    Table {
        name: "intent_labels",
        columns: &[("message_seq", Int), ("text", Text), ("intent", Text), ("version", Int), ("agent_id", Text), ("labelled_at", Int)],
        keyed: true,
    },
    Table {
        name: "message_embeddings",
        columns: &[("message_seq", Int), ("vector", Bytes)],
        keyed: true,
    },
    Table {
        name: "canned_responses",
        columns: &[("id", Text), ("title", Text), ("body", Text), ("created_by", Text), ("created_at", Int), ("shared", Flag)],
        keyed: true,
    },
];

/// Tables whose ids PostgreSQL generates: their sequences continue after the copied ids.
const SEQUENCES: &[(&str, &str)] =
    &[("messages", "seq"), ("audit_log", "id"), ("notifications", "id"), ("ratings", "id"), ("escalations", "id"), ("customer_mails", "id"), ("conversation_events", "id"), ("webhook_deliveries", "id"), ("inbound_dead_letters", "id")];

const BATCH: i64 = 500;

/// Rows per table, as compared at the end: (table, rows in source, rows in target).
pub type CopyReport = Vec<(&'static str, i64, i64)>;

/// Copies every table from the SQLite database `from` into the PostgreSQL database `to`
/// (both migrated first). `progress(table, copied, total)` is called after each batch.
pub async fn copy(from: &str, to: &str, resume: bool, progress: &mut dyn FnMut(&str, u64, u64)) -> Result<CopyReport, CopyError> {
    if crate::is_postgres(from) || !crate::is_postgres(to) {
        return Err(CopyError::Direction);
    }
    // Both schemas at the latest migration, so the column lists match.
    SqliteStore::open(from).await?.migrate().await?;
    PgStore::open(to).await?.migrate().await?;
    let source_options = sqlx::sqlite::SqliteConnectOptions::from_str(from).map_err(backend)?.read_only(true);
    let mut source = SqliteConnection::connect_with(&source_options).await.map_err(backend)?;
    let mut target = PgConnection::connect(to).await.map_err(backend)?;

    if !resume {
        for table in TABLES {
            let rows = count(&mut target, table.name).await?;
            if rows > 0 {
                return Err(CopyError::TargetNotEmpty { table: table.name, rows });
            }
        }
    }
    let mut report = Vec::new();
    for table in TABLES {
        let total = count_sqlite(&mut source, table.name).await?;
        copy_table(&mut source, &mut target, table, total, progress).await?;
        let copied = count(&mut target, table.name).await?;
        if copied != total {
            return Err(CopyError::CountMismatch { table: table.name, in_source: total, in_target: copied });
        }
        report.push((table.name, total, copied));
    }
    for (table, column) in SEQUENCES {
        let sql = format!(
            "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut target).await.map_err(backend)?;
    }
    Ok(report)
}

async fn count(target: &mut PgConnection, table: &str) -> Result<i64, StoreError> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}"))).fetch_one(target).await.map_err(backend)
}

async fn count_sqlite(source: &mut SqliteConnection, table: &str) -> Result<i64, StoreError> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}"))).fetch_one(source).await.map_err(backend)
}

/// One table in batches by SQLite rowid; each batch is one target transaction.
async fn copy_table(
    source: &mut SqliteConnection,
    target: &mut PgConnection,
    table: &Table,
    total: i64,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<(), StoreError> {
    let names: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
    let select = format!("SELECT rowid AS rowid_, {} FROM {} WHERE rowid > $1 ORDER BY rowid LIMIT {BATCH}", names.join(", "), table.name);
    let mut tx = target.begin().await.map_err(backend)?;
    if !table.keyed {
        sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {}", table.name))).execute(&mut *tx).await.map_err(backend)?;
    }
    let (mut after, mut copied) = (0i64, 0u64);
    loop {
        let rows = sqlx::query(sqlx::AssertSqlSafe(select.clone())).bind(after).fetch_all(&mut *source).await.map_err(backend)?;
        let Some(last) = rows.last() else { break };
        after = last.int("rowid_")?;
        let width = names.len();
        let values = (0..rows.len())
            .map(|r| format!("({})", (1..=width).map(|c| format!("${}", r * width + c)).collect::<Vec<_>>().join(", ")))
            .collect::<Vec<_>>()
            .join(", ");
        let insert = format!("INSERT INTO {} ({}) VALUES {values} ON CONFLICT DO NOTHING", table.name, names.join(", "));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(insert));
        for row in &rows {
            for (name, kind) in table.columns {
                query = match kind {
                    Text => query.bind(row.text_opt(name)?),
                    Int => query.bind(row.int_opt(name)?),
                    Flag => query.bind(row.flag(name)?),
                    Real => query.bind(row.real_opt(name)?),
                    Bytes => query.bind(row.bytes_opt(name)?),
                };
            }
        }
        query.execute(&mut *tx).await.map_err(backend)?;
        copied += rows.len() as u64;
        if table.keyed {
            // Keyed tables commit batch by batch, so an interrupted copy keeps its progress.
            tx.commit().await.map_err(backend)?;
            tx = target.begin().await.map_err(backend)?;
        }
        progress(table.name, copied, total.max(0) as u64);
    }
    tx.commit().await.map_err(backend)?;
    progress(table.name, copied, total.max(0) as u64);
    Ok(())
}

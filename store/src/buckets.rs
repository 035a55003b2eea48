//! Rate-limit buckets shared by the nodes on one PostgreSQL database (table `rate_buckets`,
//! migration 0012). Each take is one statement, so two nodes never spend the same token.

use crate::rows::{backend, millis};
use async_trait::async_trait;
use sqlx::PgPool;
use std::time::Duration;
use switchboard_core::ports::{BucketTake, StoreError, TokenBuckets};
use switchboard_models::Timestamp;

pub struct PgBuckets {
    pool: PgPool,
}

impl PgBuckets {
    /// Its own few connections, so a busy store never makes a rate check wait for one.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Ok(Self { pool: crate::postgres::connect(url, "switchboard-limits", 4, Duration::from_secs(2)).await? })
    }
}

#[async_trait]
impl TokenBuckets for PgBuckets {
    async fn take_tokens(&self, takes: &[BucketTake<'_>], now: Timestamp) -> Result<Vec<Option<Duration>>, StoreError> {
        // `refilled` is what a bucket holds now (capacity = the inserted tokens + 1); every SET
        // expression reads the row as it was.
        let refilled = "LEAST(excluded.tokens + 1, b.tokens + GREATEST($5 - b.touched_at, 0) * excluded.per_second / 1000.0)";
        let sql = format!(
            "INSERT INTO rate_buckets AS b (scope, key, tokens, per_second, touched_at, refused) \
             SELECT t.scope, t.key, t.capacity - 1, t.per_second, $5, FALSE \
             FROM unnest($1::text[], $2::text[], $3::float8[], $4::float8[]) AS t(scope, key, capacity, per_second) \
             ON CONFLICT (scope, key) DO UPDATE SET \
               refused = {refilled} < 1, \
               tokens = {refilled} - CASE WHEN {refilled} >= 1 THEN 1 ELSE 0 END, \
               per_second = excluded.per_second, \
               touched_at = GREATEST(b.touched_at, $5) \
             RETURNING scope, key, tokens, refused, per_second"
        );
        let rows: Vec<(String, String, f64, bool, f64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(takes.iter().map(|t| t.scope).collect::<Vec<_>>())
            .bind(takes.iter().map(|t| t.key).collect::<Vec<_>>())
            .bind(takes.iter().map(|t| t.capacity.max(1.0)).collect::<Vec<_>>())
            .bind(takes.iter().map(|t| t.per_second).collect::<Vec<_>>())
            .bind(millis(now))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        takes
            .iter()
            .map(|take| {
                let (_, _, tokens, refused, per_second) = rows
                    .iter()
                    .find(|(scope, key, ..)| scope == take.scope && key == take.key)
                    .ok_or_else(|| StoreError::Corrupt(format!("no rate bucket came back for {} {}", take.scope, take.key)))?;
                Ok(refused.then(|| Duration::from_secs_f64(((1.0 - tokens) / per_second).max(0.0))))
            })
            .collect()
    }

    async fn forget_idle(&self, before: Timestamp) -> Result<u64, StoreError> {
        let deleted = sqlx::query("DELETE FROM rate_buckets WHERE touched_at < $1")
            .bind(millis(before))
            .execute(&self.pool)
            .await
            .map_err(backend)?
            .rows_affected();
        Ok(deleted)
    }
}

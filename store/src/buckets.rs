//! Rate-limit buckets shared by the nodes on one PostgreSQL database (table `rate_buckets`,
//! migration 0012). Each take is one statement, so two nodes never spend the same token.

use crate::rows::{backend, millis};
use async_trait::async_trait;
use sqlx::PgPool;
use std::time::Duration;
use switchboard_core::ports::{StoreError, TokenBuckets};
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
    async fn take_token(
        &self,
        scope: &str,
        key: &str,
        capacity: f64,
        per_second: f64,
        now: Timestamp,
    ) -> Result<Option<Duration>, StoreError> {
        // `refilled` is what the bucket holds now; every SET expression reads the row as it was.
        let (tokens, refused): (f64, bool) = sqlx::query_as(
            "INSERT INTO rate_buckets AS b (scope, key, tokens, touched_at, refused) VALUES ($1, $2, $3 - 1, $5, FALSE) \
             ON CONFLICT (scope, key) DO UPDATE SET \
               refused = LEAST($3, b.tokens + GREATEST($5 - b.touched_at, 0) * $4 / 1000.0) < 1, \
               tokens = LEAST($3, b.tokens + GREATEST($5 - b.touched_at, 0) * $4 / 1000.0) \
                 - CASE WHEN LEAST($3, b.tokens + GREATEST($5 - b.touched_at, 0) * $4 / 1000.0) >= 1 THEN 1 ELSE 0 END, \
               touched_at = GREATEST(b.touched_at, $5) \
             RETURNING tokens, refused",
        )
        .bind(scope)
        .bind(key)
        .bind(capacity.max(1.0))
        .bind(per_second)
        .bind(millis(now))
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        Ok(refused.then(|| Duration::from_secs_f64(((1.0 - tokens) / per_second).max(0.0))))
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

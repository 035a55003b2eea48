//! The recurring jobs `[jobs]` configures, and the loop that runs them when due
//! (`switchboard_core::schedule` keeps each run to one node and one time).

use crate::config::{Config, RetentionJobConfig};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use switchboard_core::ports::{BlobStore, Clock, Jobs, PurgeRules, Purged, Store, StoreError};
use switchboard_core::schedule::{Job, PlannedJob, Scheduler};
use switchboard_models::Timestamp;

/// Builds the scheduler of the configured jobs (validated with the config).
pub fn scheduler(config: &Config, store: Arc<dyn Store>, blobs: Arc<dyn BlobStore>, clock: Arc<dyn Clock>) -> anyhow::Result<Scheduler> {
    let zone = config.jobs_time_zone()?;
    let mut planned = Vec::new();
    for (name, schedule) in config.job_schedules()? {
        let job: Arc<dyn Job> = match name {
            "backup" => Arc::new(BackupJob {
                url: config.database.url.clone(),
                dir: config.jobs.backup.dir.clone(),
                keep: config.jobs.backup.keep as usize,
            }),
            "reports" => Arc::new(ReportsJob { store: store.clone() }),
            _ => Arc::new(RetentionJob { store: store.clone(), blobs: blobs.clone(), settings: config.jobs.retention.clone() }),
        };
        planned.push(PlannedJob { name, schedule, job });
    }
    let jobs: Arc<dyn Jobs> = store;
    Ok(Scheduler::new(jobs, clock, zone, config.node_name(), planned))
}

/// Runs due jobs every 5 s (the scheduler is planned at start), so a run starts within 5 s of
/// its time; at once, the runs that came due while the server was stopped (once each).
pub async fn run_scheduled(scheduler: Arc<Scheduler>) {
    loop {
        if let Err(error) = scheduler.run_due().await {
            tracing::warn!(%error, "checking the scheduled jobs failed; trying again in 5 s");
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// A consistent copy of the SQLite database in `dir`, named by its time; the oldest copies
/// beyond `keep` are deleted once the new one is checked.
struct BackupJob {
    url: String,
    dir: PathBuf,
    keep: usize,
}

const BACKUP_PREFIX: &str = "switchboard-";

#[async_trait::async_trait]
impl Job for BackupJob {
    async fn run(&self, now: Timestamp) -> Result<String, String> {
        let dir = &self.dir;
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create jobs.backup.dir {}: {e}", dir.display()))?;
        let file = dir.join(format!("{BACKUP_PREFIX}{}.db", now.format("%Y%m%dT%H%M%SZ")));
        let bytes = match switchboard_store::backup::backup(&self.url, &file).await {
            Ok(bytes) => bytes,
            Err(error) => {
                // A copy that failed its check must not count among the kept ones.
                let _ = std::fs::remove_file(&file);
                return Err(format!("backup to {} failed: {error}", file.display()));
            }
        };
        let mut kept: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| format!("cannot list jobs.backup.dir {}: {e}", dir.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(BACKUP_PREFIX) && n.ends_with(".db")))
            .collect();
        // The names sort by time.
        kept.sort();
        let removed = kept.len().saturating_sub(self.keep);
        for old in &kept[..removed] {
            std::fs::remove_file(old).map_err(|e| format!("wrote {}, but could not delete the old backup {}: {e}", file.display(), old.display()))?;
        }
        Ok(format!("wrote {} ({bytes} bytes); deleted {removed} older", file.display()))
    }
}

/// Deletes expired panel sessions, old read notifications and old documents' files.
struct RetentionJob {
    store: Arc<dyn Store>,
    blobs: Arc<dyn BlobStore>,
    settings: RetentionJobConfig,
}

/// What retention lets go at `now`.
pub fn purge_rules(read_notifications_days: u64, now: Timestamp) -> PurgeRules {
    PurgeRules {
        sessions_expired_before: now,
        read_notifications_before: (read_notifications_days > 0).then(|| now - chrono::Duration::days(read_notifications_days as i64)),
    }
}

/// Everything retention lets go at `now`, as `[jobs.retention]` says; with `dry_run`, only counted.
pub async fn retain(store: &dyn Store, blobs: &dyn BlobStore, settings: &RetentionJobConfig, now: Timestamp, dry_run: bool) -> Result<String, StoreError> {
    let purged = store.purge(&purge_rules(settings.read_notifications_days, now), dry_run).await?;
    let described = describe_purge(purged);
    Ok(match settings.document_files_days {
        0 => described,
        days => {
            let files = purge_document_files(store, blobs, now - chrono::Duration::days(days as i64), now, dry_run).await?;
            format!("{described}, {files} document files")
        }
    })
}

/// Removes the files of decided documents received before `before`; each record stays, marked
/// removed. The file goes before its record says so: a crash between the two only repeats the
/// deletion at the next run.
pub async fn purge_document_files(store: &dyn Store, blobs: &dyn BlobStore, before: Timestamp, now: Timestamp, dry_run: bool) -> Result<u64, StoreError> {
    if dry_run {
        return Ok(store.documents_to_purge(before, u32::MAX).await?.len() as u64);
    }
    let mut removed = 0;
    loop {
        let batch = store.documents_to_purge(before, 200).await?;
        if batch.is_empty() {
            return Ok(removed);
        }
        for document in batch {
            blobs.delete(&document.file.key).await?;
            store.mark_document_purged(document.id, now).await?;
            removed += 1;
        }
    }
}

pub fn describe_purge(purged: Purged) -> String {
    format!("{} expired sessions, {} read notifications", purged.sessions, purged.notifications)
}

#[async_trait::async_trait]
impl Job for RetentionJob {
    async fn run(&self, now: Timestamp) -> Result<String, String> {
        let deleted = retain(self.store.as_ref(), self.blobs.as_ref(), &self.settings, now, false).await.map_err(|e| format!("retention failed: {e}"))?;
        Ok(format!("deleted {deleted}"))
    }
}

/// Counts the customer messages of whole days that ended at least `SETTLED` ago per day, channel
/// and intent, so reports over months read a row per day (`Reports::roll_up_reports`).
struct ReportsJob {
    store: Arc<dyn Store>,
}

/// How long after a UTC day ends it is counted: longer than any clock difference between nodes.
const SETTLED: chrono::Duration = chrono::Duration::hours(6);
/// Days counted per transaction, so catching up on a long history never holds the writer long.
const DAYS_PER_TRANSACTION: i64 = 7;

/// Counts every settled day at `now` (never beyond the real clock's now: a test clock ahead
/// must not count days that are still going on); returns how many days it moved over.
pub async fn roll_up_reports(store: &dyn Store, now: Timestamp) -> Result<i64, StoreError> {
    let settled = now.min(chrono::Utc::now()) - SETTLED;
    let before_day = settled.timestamp_millis().div_euclid(86_400_000);
    let mut days = 0;
    loop {
        match store.roll_up_reports(before_day, DAYS_PER_TRANSACTION).await? {
            0 => return Ok(days),
            moved => days += moved,
        }
    }
}

#[async_trait::async_trait]
impl Job for ReportsJob {
    async fn run(&self, now: Timestamp) -> Result<String, String> {
        let days = roll_up_reports(self.store.as_ref(), now).await.map_err(|e| format!("counting the reports' days failed: {e}"))?;
        Ok(format!("counted {days} more days"))
    }
}

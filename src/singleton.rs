//! Work only one node may do at a time: Telegram long polling, the Discord gateway, the IMAP
//! session. On SQLite there is one node, which simply runs it. On PostgreSQL a node runs it
//! while it holds the lease of that name, renewing it every `RENEW_EVERY`; when the node dies,
//! its lease runs out and another node takes over within `LEASE` + `RENEW_EVERY`. A clean stop
//! gives the leases up, so another node takes over at once.

use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_core::HealthBoard;
use switchboard_core::ports::Store;
use tokio::task::JoinHandle;

pub const LEASE: Duration = Duration::from_secs(10);
pub const RENEW_EVERY: Duration = Duration::from_secs(3);

pub struct Singletons {
    store: Arc<dyn Store>,
    node: String,
    /// Several nodes may share the database (PostgreSQL).
    shared: bool,
    names: std::sync::Mutex<Vec<&'static str>>,
    /// Told when work stops here, so this node no longer reports its connection.
    health: Arc<HealthBoard>,
}

impl Singletons {
    pub fn new(store: Arc<dyn Store>, node: String, shared: bool, health: Arc<HealthBoard>) -> Self {
        Self { store, node, shared, names: std::sync::Mutex::new(Vec::new()), health }
    }

    /// Runs what `start` spawns, on this node only while it holds the lease `name`.
    pub fn spawn(&self, name: &'static str, start: impl Fn() -> JoinHandle<()> + Send + 'static) -> JoinHandle<()> {
        if !self.shared {
            return start();
        }
        self.names.lock().expect("singleton names").push(name);
        tokio::spawn(hold(self.store.clone(), self.health.clone(), self.node.clone(), name, start))
    }

    /// Gives up every lease this node holds (a clean stop).
    pub async fn release_all(&self) {
        let names = self.names.lock().expect("singleton names").clone();
        for name in names {
            if let Err(error) = self.store.release_lease(name, &self.node).await {
                tracing::warn!(%error, name, "could not give up the lease; another node takes over when it runs out");
            }
        }
    }
}

/// The running work; aborted when dropped, so stopping the holder stops the work.
struct Work(Option<JoinHandle<()>>);

impl Drop for Work {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

async fn hold(store: Arc<dyn Store>, health: Arc<HealthBoard>, node: String, name: &'static str, start: impl Fn() -> JoinHandle<()>) {
    let mut work = Work(None);
    let mut held_until: Option<Instant> = None;
    loop {
        let now = chrono::Utc::now();
        let until = now + chrono::Duration::from_std(LEASE).expect("lease fits");
        match store.acquire_lease(name, &node, now, until).await {
            Ok(true) => {
                held_until = Some(Instant::now() + LEASE);
                if work.0.is_none() {
                    tracing::info!(name, node, "this node now runs it");
                    work.0 = Some(start());
                }
            }
            Ok(false) => {
                if work.0.take().is_some_and(|task| {
                    task.abort();
                    true
                }) {
                    tracing::warn!(name, node, "another node holds the lease now; stopped here");
                    health.forget(name);
                }
                held_until = None;
            }
            // The database cannot say: keep going until our own lease would have run out.
            Err(error) => {
                tracing::warn!(%error, name, "could not renew the lease");
                if held_until.is_some_and(|until| Instant::now() >= until) {
                    drop(work.0.take());
                    health.forget(name);
                    held_until = None;
                }
            }
        }
        tokio::time::sleep(RENEW_EVERY).await;
    }
}

//! Fresh databases for tests, on either backend. PostgreSQL is the server `scripts/test.sh`
//! found or started (`TEST_POSTGRES_URL`, default the local server on 127.0.0.1:5432); each
//! test gets a database of its own, dropped when the test ends.

use sqlx::Connection;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestDatabase {
    pub backend: Backend,
    /// What `database.url` would be set to.
    pub url: String,
    dir: tempfile::TempDir,
    /// The maintenance URL and the database's name, to drop it afterwards.
    postgres: Option<(String, String)>,
}

/// The PostgreSQL server tests use, as a URL to its maintenance database.
pub fn postgres_server_url() -> String {
    std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

impl TestDatabase {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => Self::sqlite(),
            Backend::Postgres => Self::postgres().await,
        }
    }

    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("switchboard.db").display());
        Self { backend: Backend::Sqlite, url, dir, postgres: None }
    }

    /// A SQLite database at `path` (e.g. on a small file system).
    pub fn sqlite_at(path: &std::path::Path) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        Self { backend: Backend::Sqlite, url: format!("sqlite://{}", path.display()), dir, postgres: None }
    }

    /// A new, empty database on the test server.
    pub async fn postgres() -> Self {
        let server = postgres_server_url();
        let name = format!("switchboard_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&server).await.unwrap_or_else(|e| {
            panic!("PostgreSQL tests need a server at {server} (TEST_POSTGRES_URL); ./scripts/test.sh starts one: {e}")
        });
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await.expect("create test database");
        let mut url = url::Url::parse(&server).expect("TEST_POSTGRES_URL is a URL");
        url.set_path(&format!("/{name}"));
        Self {
            backend: Backend::Postgres,
            url: url.to_string(),
            dir: tempfile::tempdir().expect("temp dir"),
            postgres: Some((server, name)),
        }
    }

    /// A directory that lives as long as the database (attachments, config files).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub async fn open(&self) -> std::sync::Arc<dyn switchboard_core::ports::Store> {
        switchboard_store::open(&self.url).await.expect("the test database opens")
    }

    /// The SQLite database file, when this is one.
    pub fn sqlite_path(&self) -> Option<std::path::PathBuf> {
        self.url.strip_prefix("sqlite://").map(std::path::PathBuf::from)
    }

    /// The PostgreSQL database's name.
    pub fn postgres_name(&self) -> &str {
        &self.postgres.as_ref().expect("a PostgreSQL test database").1
    }

    /// Runs one statement on the server's maintenance database, as its administrator would.
    pub async fn execute_on_server(&self, sql: &str) {
        let (server, _) = self.postgres.as_ref().expect("a PostgreSQL test database");
        let mut admin = sqlx::PgConnection::connect(server).await.expect("connect to the server");
        sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).execute(&mut admin).await.expect("administrative statement");
    }

    /// Ends every session on this database, as a server restart or a failover would.
    pub async fn terminate_sessions(&self) {
        let name = self.postgres_name();
        self.execute_on_server(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        ))
        .await;
    }

    /// Runs one statement outside Switchboard, as another program would.
    pub async fn execute(&self, sql: &str) -> Result<u64, sqlx::Error> {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match self.backend {
            Backend::Sqlite => {
                let mut connection = sqlx::SqliteConnection::connect(&self.url).await?;
                Ok(sqlx::query(sql).execute(&mut connection).await?.rows_affected())
            }
            Backend::Postgres => {
                let mut connection = sqlx::PgConnection::connect(&self.url).await?;
                Ok(sqlx::query(sql).execute(&mut connection).await?.rows_affected())
            }
        }
    }

    /// One number from a query such as `SELECT COUNT(*) FROM messages`.
    pub async fn count(&self, sql: &str) -> i64 {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match self.backend {
            Backend::Sqlite => {
                let mut connection = sqlx::SqliteConnection::connect(&self.url).await.expect("connect");
                sqlx::query_scalar(sql).fetch_one(&mut connection).await.expect("count")
            }
            Backend::Postgres => {
                let mut connection = sqlx::PgConnection::connect(&self.url).await.expect("connect");
                sqlx::query_scalar(sql).fetch_one(&mut connection).await.expect("count")
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((server, name)) = self.postgres.take() else { return };
        // Drop runs outside any async context we may block; a thread with its own runtime does it.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                if let Ok(mut admin) = sqlx::PgConnection::connect(&server).await {
                    let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&mut admin).await;
                }
            });
        })
        .join();
    }
}

//! Storage: one API, two backends (SQLite, the embedded default, and
//! PostgreSQL), one set of SQL through sqlx's `Any` driver.
//!
//! Tenant scoping is part of every call of this API (every query names the
//! tenant); on PostgreSQL, row-level security on `machi.tenant` is a second
//! wall, and the application role may not UPDATE or DELETE facts.

mod migrations;
pub mod records;
pub mod tenants;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use machi_domain::ids::MunicipalityCode;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyConnection, AnyPool, Connection, Executor, Row};

pub use migrations::Migration;

/// A transaction on either backend.
pub type Tx = sqlx::Transaction<'static, Any>;

/// Which database is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    #[error("another change to the same record was committed first; retry")]
    Conflict,
}

impl StoreError {
    /// Maps unique-key violations (two writers on one record) to `Conflict`.
    pub fn from_db(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(d) = &e
            && d.is_unique_violation()
        {
            return StoreError::Conflict;
        }
        StoreError::Db(e)
    }
}

/// Where the data lives: a SQLite file or a PostgreSQL URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseLocation {
    Sqlite(PathBuf),
    Postgres(String),
}

impl DatabaseLocation {
    /// `postgres://…` or `postgresql://…` is PostgreSQL; `sqlite://PATH` or
    /// anything else is a SQLite file path.
    pub fn parse(s: &str) -> Self {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            DatabaseLocation::Postgres(s.to_string())
        } else {
            let p = s.strip_prefix("sqlite://").unwrap_or(s);
            DatabaseLocation::Sqlite(PathBuf::from(p))
        }
    }

    /// The location with any password hidden, for logs and messages.
    pub fn display(&self) -> String {
        match self {
            DatabaseLocation::Sqlite(p) => format!("SQLite {}", p.display()),
            DatabaseLocation::Postgres(url) => {
                let shown = match (url.find("://"), url.rfind('@')) {
                    (Some(s), Some(at)) if at > s => {
                        let creds = &url[s + 3..at];
                        match creds.find(':') {
                            Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                            None => url.clone(),
                        }
                    }
                    _ => url.clone(),
                };
                format!("PostgreSQL {shown}")
            }
        }
    }
}

/// How durable a SQLite commit is. `Full` syncs the WAL on every commit (no
/// committed change is lost even on power loss); `Normal` syncs at
/// checkpoints (a crash of the process loses nothing, a power loss may lose
/// the last commits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SqliteSync {
    Full,
    Normal,
}

/// The storage API's handle. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    read: AnyPool,
    /// SQLite has one writer at a time: a pool of one connection serialises
    /// writers in-process instead of making them poll a busy database.
    write: AnyPool,
    backend: Backend,
}

impl Store {
    /// Opens (creating if needed) the database and runs pending migrations.
    pub async fn connect(location: &DatabaseLocation) -> Result<Store, StoreError> {
        Self::connect_with(location, SqliteSync::Full).await
    }

    pub async fn connect_with(
        location: &DatabaseLocation,
        sync: SqliteSync,
    ) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        match location {
            DatabaseLocation::Sqlite(path) => Self::connect_sqlite(path, sync).await,
            DatabaseLocation::Postgres(url) => Self::connect_postgres(url).await,
        }
    }

    async fn connect_sqlite(path: &Path, sync: SqliteSync) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let opts = AnyConnectOptions::from_str(&url)?;
        let sync_pragma: &'static str = match sync {
            SqliteSync::Full => "PRAGMA synchronous = FULL",
            SqliteSync::Normal => "PRAGMA synchronous = NORMAL",
        };
        let pool = |max: u32| {
            AnyPoolOptions::new()
                .max_connections(max)
                .min_connections(1)
                .acquire_timeout(Duration::from_secs(30))
                .after_connect(move |conn, _| {
                    Box::pin(async move {
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute(sync_pragma).await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        Ok(())
                    })
                })
        };
        {
            let mut conn = AnyConnection::connect_with(&opts).await?;
            conn.execute("PRAGMA busy_timeout = 10000").await?;
            conn.execute("PRAGMA journal_mode = WAL").await?;
            migrate(&mut conn, Backend::Sqlite).await?;
            conn.close().await?;
        }
        let write = pool(1).connect_with(opts.clone()).await?;
        let read = pool(4).connect_with(opts).await?;
        Ok(Store {
            read,
            write,
            backend: Backend::Sqlite,
        })
    }

    async fn connect_postgres(url: &str) -> Result<Store, StoreError> {
        let opts = AnyConnectOptions::from_str(url)?;
        {
            let mut conn = AnyConnection::connect_with(&opts).await?;
            conn.execute("SELECT pg_advisory_lock(7249001)").await?;
            let result = migrate(&mut conn, Backend::Postgres).await;
            conn.execute("SELECT pg_advisory_unlock(7249001)").await?;
            result?;
            conn.close().await?;
        }
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // A superuser bypasses row-level security: act as the
                    // application role instead, so the policies apply.
                    let row = conn
                        .fetch_one("SELECT CASE WHEN rolsuper THEN 1 ELSE 0 END AS s FROM pg_roles WHERE rolname = current_user")
                        .await?;
                    let is_super: i32 = row.try_get("s")?;
                    if is_super == 1 {
                        conn.execute("SET ROLE machi_app").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(opts)
            .await?;
        Ok(Store {
            read: pool.clone(),
            write: pool,
            backend: Backend::Postgres,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts a write transaction scoped to `tenant` (None: platform-level,
    /// e.g. creating a tenant). SQLite takes the write lock at once
    /// (`BEGIN IMMEDIATE`) so a read-then-write transaction cannot fail on a
    /// lock upgrade.
    pub async fn begin_write(&self, tenant: Option<&MunicipalityCode>) -> Result<Tx, StoreError> {
        let mut tx = match self.backend {
            Backend::Sqlite => self.write.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.write.begin().await?,
        };
        self.scope(&mut tx, tenant).await?;
        Ok(tx)
    }

    /// Starts a read transaction scoped to `tenant`.
    pub async fn begin_read(&self, tenant: Option<&MunicipalityCode>) -> Result<Tx, StoreError> {
        let mut tx = self.read.begin().await?;
        self.scope(&mut tx, tenant).await?;
        Ok(tx)
    }

    async fn scope(&self, tx: &mut Tx, tenant: Option<&MunicipalityCode>) -> Result<(), StoreError> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT set_config('machi.tenant', $1, true)")
                .bind(tenant.map(|t| t.as_str().to_string()).unwrap_or_default())
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// An empty write transaction: the benchmark's baseline.
    pub async fn empty_transaction(&self, tenant: &MunicipalityCode) -> Result<(), StoreError> {
        let tx = self.begin_write(Some(tenant)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The applied migrations, oldest first.
    pub async fn applied_migrations(&self) -> Result<Vec<(i64, String)>, StoreError> {
        let rows = sqlx::query("SELECT version, name FROM schema_migrations ORDER BY version")
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("version")?, r.try_get("name")?)))
            .collect()
    }

    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

async fn migrate(conn: &mut AnyConnection, backend: Backend) -> Result<(), StoreError> {
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .await?;
    let applied: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations")
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| r.try_get::<i64, _>("version"))
        .collect::<Result<_, _>>()?;
    for m in migrations::all() {
        if applied.contains(&m.version) {
            continue;
        }
        let sql = match backend {
            Backend::Sqlite => m.sqlite,
            Backend::Postgres => m.postgres,
        };
        let mut tx = conn.begin().await?;
        if !sql.is_empty() {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut *tx).await?;
        }
        sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
            .bind(m.version)
            .bind(m.name)
            .bind(chrono::Utc::now().timestamp_micros())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(version = m.version, name = m.name, "applied migration");
    }
    Ok(())
}

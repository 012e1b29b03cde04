//! Storage: one API, two backends (SQLite, the embedded default, and
//! PostgreSQL), one SQL dialect, run through [`db::Tx`].
//!
//! Tenant scoping is part of every call of this API (every query names the
//! tenant); on PostgreSQL, row-level security on `machi.tenant` is a second
//! wall, and the application role may not UPDATE or DELETE facts.

pub mod accounts;
pub mod db;
pub mod grants;
pub mod hooks;
pub mod listen;
mod migrations;
pub mod oversight;
pub mod pending;
mod pg_writer;
pub mod portal_filings;
pub mod portal_pushes;
pub mod portal_refusals;
pub mod portal_signatures;
pub mod procedure_definitions;
pub mod record_format;
pub mod records;
pub mod support;
pub mod tenants;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use machi_domain::ids::MunicipalityCode;

use crate::crypto::{Keyring, SealError};
pub use db::{BulkRows, COUNTERS, Param, Row, Tx, counts};
pub use migrations::Migration;

/// Which database is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] postgres::Error),
    #[error("connection pool: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    /// A sealed value (個人番号) that does not open: a different master key,
    /// or altered data. Never a silent `None`.
    #[error("an encrypted 個人番号 (My Number) {0}")]
    Sealed(#[from] SealError),
    #[error("another change to the same record was committed first; retry")]
    Conflict,
    #[error("the storage task stopped: {0}")]
    Task(String),
    #[error("the commit failed, nothing was written: {0}")]
    Commit(String),
    /// The readiness check found the database not answering.
    #[error("the database is not ready: {0}")]
    NotReady(String),
}

impl StoreError {
    /// Whether the error is a unique-key violation (two writers on one record).
    pub fn is_unique_violation(&self) -> bool {
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                    || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            }
            StoreError::Postgres(e) => {
                e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION)
            }
            StoreError::Conflict => true,
            _ => false,
        }
    }

    /// PostgreSQL's lock_not_available (55P03): a `lock_timeout` ran out.
    pub fn is_lock_timeout(&self) -> bool {
        match self {
            StoreError::Postgres(e) => {
                e.code() == Some(&postgres::error::SqlState::LOCK_NOT_AVAILABLE)
            }
            _ => false,
        }
    }

    /// Maps unique-key violations to `Conflict`.
    pub fn conflict_if_unique(self) -> Self {
        if self.is_unique_violation() {
            StoreError::Conflict
        } else {
            self
        }
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
                            Some(c) => {
                                format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..])
                            }
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
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
    /// Seals and opens 個人番号 for every transaction (see [`Tx::tenant_keys`]).
    keyring: Arc<Keyring>,
    /// Counts this process's committed writes: long polls and the webhook
    /// worker wake on it instead of polling. On PostgreSQL other
    /// processes' outbox events bump it too (`LISTEN`/`NOTIFY`, see
    /// [`listen`]); their fallback poll stays for a lost connection.
    commits: Arc<tokio::sync::watch::Sender<u64>>,
    /// When callers cached in memory must be checked again (see
    /// [`Store::auth_epoch`]).
    auth: Arc<AuthWatch>,
}

/// Whether callers (bearer tokens, sessions) this process cached are
/// still what the database says: `epoch` moves on whenever a transaction
/// that takes access away commits ([`Tx::mark_auth_changed`]) in this
/// process, or, on PostgreSQL, in any process (its notification on
/// [`listen::AUTH_CHANNEL`]), and whenever the listener (re)connects;
/// `listening` says whether another process's notification would reach
/// this one now (PostgreSQL's listener is connected). SQLite has one
/// process per database file: always listening.
#[derive(Debug, Default)]
pub struct AuthWatch {
    epoch: AtomicU64,
    listening: AtomicBool,
}

impl AuthWatch {
    fn listening() -> Arc<AuthWatch> {
        Arc::new(AuthWatch {
            epoch: AtomicU64::new(0),
            listening: AtomicBool::new(true),
        })
    }

    /// Every cached caller is stale from now on.
    pub(crate) fn bump(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn set_listening(&self, on: bool) {
        self.listening.store(on, Ordering::SeqCst);
    }

    /// After a commit: a transaction that took access away makes every
    /// cached caller stale before its writer is answered.
    pub(crate) fn committed(&self, tx_changed_auth: bool) {
        if tx_changed_auth {
            self.bump();
        }
    }

    fn epoch(&self) -> Option<u64> {
        self.listening
            .load(Ordering::SeqCst)
            .then(|| self.epoch.load(Ordering::SeqCst))
    }
}

enum Inner {
    Sqlite {
        /// SQLite has one writer at a time: one connection on a thread of
        /// its own takes the writes in order (see [`writer`]).
        writer: writer::Writer,
        readers: r2d2::Pool<SqliteManager>,
        /// Callers waiting for a reader connection.
        waiting: AtomicUsize,
        path: PathBuf,
    },
    Postgres {
        /// How to connect: [`Store::vacuum_after_load`] takes a connection
        /// of its own (`VACUUM` runs outside a transaction, as the owner).
        config: Box<postgres::Config>,
        pool: r2d2::Pool<PgManager>,
        /// Callers waiting for a connection.
        waiting: AtomicUsize,
        /// Group-commit appends (the access log's entries, changes), each
        /// on a connection of its own (see [`pg_writer`]); a tenant's
        /// appends always go to the same one. Empty when
        /// `MACHI_PG_GROUP_COMMIT=off`: each append commits alone.
        appenders: Vec<pg_writer::PgWriter>,
        /// Milliseconds between the drops of cached plans, shared by
        /// every connection ([`PgConn::begin_sql`]).
        plan_refresh: Arc<AtomicU64>,
    },
}

/// The state of one connection pool, as `/metrics` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolState {
    /// `sqlite_readers` or `postgres`.
    pub pool: &'static str,
    pub in_use: u32,
    pub idle: u32,
    pub max: u32,
    /// Callers waiting to check a connection out.
    pub waiting: usize,
}

/// Pools and queues of the store at one moment (for `/metrics`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreState {
    pub pools: Vec<PoolState>,
    /// SQLite: writes waiting for the writer thread (see [`writer`]); none
    /// on PostgreSQL, where writes wait for a pool connection instead.
    pub sqlite_writer_queue: Option<usize>,
}

fn pool_state<M: r2d2::ManageConnection>(
    name: &'static str,
    pool: &r2d2::Pool<M>,
    waiting: &AtomicUsize,
) -> PoolState {
    let s = pool.state();
    PoolState {
        pool: name,
        in_use: s.connections.saturating_sub(s.idle_connections),
        idle: s.idle_connections,
        max: pool.max_size(),
        waiting: waiting.load(Ordering::Relaxed),
    }
}

/// Checks a connection out of `pool`, counted in `waiting` meanwhile.
fn checkout<M: r2d2::ManageConnection>(
    pool: &r2d2::Pool<M>,
    waiting: &AtomicUsize,
    timeout: Option<Duration>,
) -> Result<r2d2::PooledConnection<M>, r2d2::Error> {
    struct Waiting<'a>(&'a AtomicUsize);
    impl Drop for Waiting<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::Relaxed);
        }
    }
    waiting.fetch_add(1, Ordering::Relaxed);
    let _w = Waiting(waiting);
    match timeout {
        Some(t) => pool.get_timeout(t),
        None => pool.get(),
    }
}

impl Store {
    /// SQLite: waits for the copy of a bulk write's log into the database
    /// file, which runs after the write's commit (see `writer`). Nothing on
    /// PostgreSQL.
    pub async fn wait_for_checkpoint(&self) {
        let inner = self.inner.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Inner::Sqlite { writer, .. } = &*inner {
                writer.wait_for_checkpoint();
            }
        })
        .await;
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({:?})", self.backend())
    }
}

struct SqliteManager {
    path: PathBuf,
    sync: SqliteSync,
}

/// Opens the database file. Only the writer, at start-up, may create it: a
/// reader pool that opened a connection while the file was moved away
/// would otherwise create an empty database in its place and take the old
/// write-ahead log with it (the pool opens connections in the background
/// to keep one idle, at any time).
fn open_sqlite(
    path: &Path,
    sync: SqliteSync,
    create: bool,
) -> Result<rusqlite::Connection, rusqlite::Error> {
    use rusqlite::OpenFlags;
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = rusqlite::Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        match sync {
            SqliteSync::Full => "FULL",
            SqliteSync::Normal => "NORMAL",
        },
    )?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Plans that do not depend on bound values: otherwise SQLite re-prepares
    // a statement whenever a parameter changes (measured: a tenth of a
    // change's time).
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    // 64 MiB of page cache: the indexes a change touches stay in memory.
    conn.pragma_update(None, "cache_size", -65536)?;
    // After a bulk load the log is cut back to this size once copied.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

impl r2d2::ManageConnection for SqliteManager {
    type Connection = rusqlite::Connection;
    type Error = rusqlite::Error;
    fn connect(&self) -> Result<Self::Connection, Self::Error> {
        open_sqlite(&self.path, self.sync, false)
    }
    fn is_valid(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
        conn.execute_batch("")
    }
    fn has_broken(&self, _: &mut Self::Connection) -> bool {
        false
    }
}

/// A PostgreSQL connection with its prepared statements.
pub struct PgConn {
    client: Option<postgres::Client>,
    statements: db::PgStatements,
    /// This connection's backend process id, listed in `own` while it is
    /// open (the listener ignores notifications of this store's own
    /// commits, which bumped the counter already).
    backend_pid: i32,
    own: listen::OwnBackends,
    /// When this connection's cached plans were last dropped (see
    /// [`PgConn::begin_sql`]).
    plans_since: Instant,
    plan_refresh: Arc<AtomicU64>,
}

impl PgConn {
    /// `begin` (a batch that starts with `BEGIN`), followed by `DISCARD
    /// PLANS` when this connection's cached plans are older than the
    /// refresh interval ([`PLAN_REFRESH_ENV`]): in the same round trip.
    ///
    /// PostgreSQL plans a prepared statement for its parameters five
    /// times, then caches a generic plan made from the tables' size of
    /// that moment when it costs no more, and keeps it while the
    /// connection lives unless an `ANALYZE` or DDL invalidates it. A
    /// cached plan saves the planning: on the hash-partitioned registry
    /// tables planning costs 0.13–0.27 ms a statement against
    /// 0.01–0.03 ms of execution (`pg_stat_statements` with
    /// `track_planning`, `machi bench-http`). But a plan cached while a
    /// table was small is a sequential scan, and it stayed one while the
    /// table grew: on a new database without autovacuum a change read
    /// the tenant's whole `resident_current` partition three times,
    /// O(n²) over a run (docs/notes/wt-pgperf.md). Dropping the cached
    /// plans every few seconds bounds that: the next executions are
    /// planned again for the tables as they are now. The prepared
    /// statements themselves stay.
    fn begin_sql<'b>(&mut self, begin: &'b str) -> std::borrow::Cow<'b, str> {
        if self.plans_due() {
            format!("{begin}; DISCARD PLANS").into()
        } else {
            begin.into()
        }
    }

    /// Whether this connection's cached plans are to be dropped by the
    /// transaction it begins now (and then counted as dropped).
    fn plans_due(&mut self) -> bool {
        let every = self.plan_refresh.load(Ordering::Relaxed);
        let due = every > 0 && self.plans_since.elapsed() >= Duration::from_millis(every);
        if due {
            self.plans_since = Instant::now();
        }
        due
    }
}

impl Drop for PgConn {
    fn drop(&mut self) {
        self.own
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.backend_pid);
        // Closing a synchronous client blocks on its own runtime, which
        // tokio forbids on an async thread: close it on a thread of its own.
        if let Some(client) = self.client.take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            let _ = std::thread::spawn(move || drop(client)).join();
        }
    }
}

#[derive(Clone)]
struct PgManager {
    config: postgres::Config,
    own: listen::OwnBackends,
    /// Milliseconds between the drops of a connection's cached plans
    /// ([`PgConn::begin_sql`]); 0: never.
    plan_refresh: Arc<AtomicU64>,
}

impl r2d2::ManageConnection for PgManager {
    type Connection = PgConn;
    type Error = postgres::Error;
    fn connect(&self) -> Result<Self::Connection, Self::Error> {
        let mut client = self.config.connect(postgres::NoTls)?;
        let row = client.query_one(
            "SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user), pg_backend_pid()",
            &[],
        )?;
        let is_super: bool = row.try_get(0)?;
        let backend_pid: i32 = row.try_get(1)?;
        if is_super {
            // A superuser bypasses row-level security: act as the
            // application role instead, so the policies apply.
            client.batch_execute("SET ROLE machi_app")?;
        }
        // The server's `plan_cache_mode` (`auto` unless it or the URL,
        // `?options=-c plan_cache_mode=…`, says otherwise): plans are
        // cached, dropped every few seconds ([`PgConn::begin_sql`]), and
        // a search plans each statement for its texts
        // ([`records::search`]).
        self.own
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(backend_pid);
        Ok(PgConn {
            client: Some(client),
            statements: HashMap::new(),
            backend_pid,
            own: self.own.clone(),
            plans_since: Instant::now(),
            plan_refresh: self.plan_refresh.clone(),
        })
    }
    fn is_valid(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
        match conn.client.as_mut() {
            Some(c) => c.batch_execute(""),
            None => Ok(()),
        }
    }
    fn has_broken(&self, conn: &mut Self::Connection) -> bool {
        conn.client.as_ref().is_none_or(|c| c.is_closed())
    }
}

/// Runs blocking storage work off the async threads.
async fn blocking<T, E, F>(f: F) -> Result<T, E>
where
    F: FnOnce() -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(_) => tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| E::from(StoreError::Task(e.to_string())))?,
        Err(_) => f(),
    }
}

impl Store {
    /// Opens (creating if needed) the database and runs pending migrations.
    /// `keyring` seals 個人番号 on the way in and opens it on the way out; a
    /// database must always be opened with the keyring of the same master
    /// key (see [`crate::config::master_key`]).
    pub async fn connect(
        location: &DatabaseLocation,
        keyring: impl Into<Arc<Keyring>>,
    ) -> Result<Store, StoreError> {
        Self::connect_with(location, SqliteSync::Full, keyring).await
    }

    pub async fn connect_with(
        location: &DatabaseLocation,
        sync: SqliteSync,
        keyring: impl Into<Arc<Keyring>>,
    ) -> Result<Store, StoreError> {
        let location = location.clone();
        let keyring = keyring.into();
        blocking(move || match &location {
            DatabaseLocation::Sqlite(path) => Self::connect_sqlite(path, sync, keyring),
            DatabaseLocation::Postgres(url) => Self::connect_postgres(url, keyring),
        })
        .await
    }

    /// The keyring the store seals and opens 個人番号 with.
    pub fn keyring(&self) -> Arc<Keyring> {
        self.keyring.clone()
    }

    fn connect_sqlite(
        path: &Path,
        sync: SqliteSync,
        keyring: Arc<Keyring>,
    ) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let mut writer = open_sqlite(path, sync, true)?;
        {
            let tx = writer.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            migrate_sqlite(tx)?;
        }
        {
            let tx = writer.transaction_with_behavior(rusqlite::TransactionBehavior::Deferred)?;
            records::check_keyring(&mut Tx::sqlite(tx, &keyring))?;
        }
        let readers = r2d2::Pool::builder()
            .max_size(4)
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(30))
            // A file connection does not go stale: testing it costs a call.
            .test_on_check_out(false)
            .build(SqliteManager {
                path: path.to_path_buf(),
                sync,
            })?;
        let auth = AuthWatch::listening();
        Ok(Store {
            inner: Arc::new(Inner::Sqlite {
                writer: writer::Writer::start(writer, keyring.clone(), auth.clone())?,
                readers,
                waiting: AtomicUsize::new(0),
                path: path.to_path_buf(),
            }),
            keyring,
            commits: Arc::new(tokio::sync::watch::Sender::new(0)),
            auth,
        })
    }

    fn connect_postgres(url: &str, keyring: Arc<Keyring>) -> Result<Store, StoreError> {
        let config: postgres::Config = url.parse()?;
        {
            let mut client = config.connect(postgres::NoTls)?;
            client.batch_execute("SELECT pg_advisory_lock(7249001)")?;
            let result = migrate_postgres(&mut client);
            client.batch_execute("SELECT pg_advisory_unlock(7249001)")?;
            result?;
            let mut statements = HashMap::new();
            let tx = db::PgTx::begin(&mut client, "BEGIN READ ONLY")?;
            records::check_keyring(&mut Tx::postgres(tx, &mut statements, &keyring))?;
        }
        let own = listen::OwnBackends::default();
        let plan_refresh = Arc::new(AtomicU64::new(
            std::env::var(PLAN_REFRESH_ENV)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(DEFAULT_PLAN_REFRESH_MS),
        ));
        let pool_size = std::env::var(POOL_SIZE_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
            .filter(|n| (1..=256).contains(n))
            .unwrap_or(DEFAULT_POOL_SIZE);
        let pool = r2d2::Pool::builder()
            .max_size(pool_size)
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(30))
            // No test round trip per checkout: a transaction's BEGIN finds
            // a closed connection, and `Inner::run` begins again on another.
            .test_on_check_out(false)
            .build(PgManager {
                config: config.clone(),
                own: own.clone(),
                plan_refresh: plan_refresh.clone(),
            })?;
        let grouped = std::env::var(PG_GROUP_COMMIT_ENV).map_or(true, |v| v.trim() != "off");
        // Not listening until the listener has connected: nothing cached.
        let auth = Arc::new(AuthWatch::default());
        let appenders = if grouped {
            (0..PG_APPENDERS)
                .map(|_| {
                    pg_writer::PgWriter::start(
                        PgManager {
                            config: config.clone(),
                            own: own.clone(),
                            plan_refresh: plan_refresh.clone(),
                        },
                        keyring.clone(),
                        auth.clone(),
                    )
                })
                .collect::<Result<Vec<_>, _>>()?
        } else {
            tracing::info!("{PG_GROUP_COMMIT_ENV}=off: appends commit one by one");
            Vec::new()
        };
        let commits = Arc::new(tokio::sync::watch::Sender::new(0));
        listen::spawn(config.clone(), Arc::downgrade(&commits), own, auth.clone())
            .map_err(|e| StoreError::Task(e.to_string()))?;
        Ok(Store {
            inner: Arc::new(Inner::Postgres {
                config: Box::new(config),
                pool,
                waiting: AtomicUsize::new(0),
                appenders,
                plan_refresh,
            }),
            keyring,
            commits,
            auth,
        })
    }

    /// PostgreSQL: how often each connection drops its cached plans
    /// (see [`PgConn::begin_sql`]; [`PLAN_REFRESH_ENV`] sets it when the
    /// store connects). `Duration::ZERO`: never. SQLite: nothing.
    pub fn set_plan_refresh(&self, every: Duration) {
        if let Inner::Postgres { plan_refresh, .. } = &*self.inner {
            plan_refresh.store(
                u64::try_from(every.as_millis()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
        }
    }

    pub fn backend(&self) -> Backend {
        match &*self.inner {
            Inner::Sqlite { .. } => Backend::Sqlite,
            Inner::Postgres { .. } => Backend::Postgres,
        }
    }

    /// The pools and queues now (no database call).
    pub fn state(&self) -> StoreState {
        match &*self.inner {
            Inner::Sqlite {
                writer,
                readers,
                waiting,
                ..
            } => StoreState {
                pools: vec![pool_state("sqlite_readers", readers, waiting)],
                sqlite_writer_queue: Some(writer.queued()),
            },
            Inner::Postgres { pool, waiting, .. } => StoreState {
                pools: vec![pool_state("postgres", pool, waiting)],
                sqlite_writer_queue: None,
            },
        }
    }

    /// The readiness check: whether the database answers a trivial query
    /// within `timeout`. SQLite: the writer thread runs, and a new
    /// connection opens the file (never creating it: a database file that
    /// was moved, removed or made unreadable is not ready) and reads it.
    /// PostgreSQL: a pool connection, checked out within `timeout`, answers.
    pub async fn check_ready(&self, timeout: Duration) -> Result<(), StoreError> {
        let inner = self.inner.clone();
        let probe = tokio::task::spawn_blocking(move || inner.probe(timeout));
        match tokio::time::timeout(timeout, probe).await {
            Ok(done) => done.map_err(|e| StoreError::Task(e.to_string()))?,
            Err(_) => Err(StoreError::NotReady(format!(
                "no answer within {} ms",
                timeout.as_millis()
            ))),
        }
    }

    /// Runs `f` in one write transaction scoped to `tenant` (None:
    /// platform-level, e.g. creating a tenant) and commits if it returns Ok;
    /// on Err nothing is written. SQLite takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so a read-then-write transaction cannot fail on
    /// a lock upgrade.
    pub async fn write<T, E, F>(&self, tenant: Option<&MunicipalityCode>, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Tx<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let r = self.write_quiet(tenant, f).await;
        if r.is_ok() {
            self.commits.send_modify(|n| *n = n.wrapping_add(1));
        }
        r
    }

    /// [`Store::write`] without waking [`Store::commits`] watchers: for
    /// the webhook worker's own bookkeeping, which publishes nothing.
    pub async fn write_quiet<T, E, F>(
        &self,
        tenant: Option<&MunicipalityCode>,
        f: F,
    ) -> Result<T, E>
    where
        F: FnOnce(&mut Tx<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        if let Inner::Sqlite { writer, .. } = &*self.inner {
            writer.submit(f).await
        } else {
            let (inner, keyring, auth) =
                (self.inner.clone(), self.keyring.clone(), self.auth.clone());
            let tenant = tenant.cloned();
            blocking(move || inner.run(&keyring, &auth, tenant.as_ref(), true, f)).await
        }
    }

    /// Runs `f` as one atomic write scoped to `tenant`, group-committed
    /// with the other appends and writes waiting at the same time (one
    /// commit, one disk flush for all): for short writes that many callers
    /// make at once, the access log's entries above all. Each caller is
    /// answered only after the commit that holds its write is durable; a
    /// failing `f` is rolled back alone. SQLite: the writer thread, as every
    /// write; PostgreSQL: the tenant's appender, a connection of its own
    /// (see [`pg_writer`]), unless `MACHI_PG_GROUP_COMMIT=off`.
    pub async fn append<T, E, F>(&self, tenant: Option<&MunicipalityCode>, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Tx<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let r = self.append_quiet(tenant, f).await;
        if r.is_ok() {
            self.commits.send_modify(|n| *n = n.wrapping_add(1));
        }
        r
    }

    /// [`Store::append`] without waking [`Store::commits`] watchers: for a
    /// write that adds no linkage event (an access-log entry).
    pub async fn append_quiet<T, E, F>(
        &self,
        tenant: Option<&MunicipalityCode>,
        f: F,
    ) -> Result<T, E>
    where
        F: FnOnce(&mut Tx<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let appender = match &*self.inner {
            Inner::Postgres { appenders, .. } if !appenders.is_empty() => {
                // By tenant: one tenant's appends keep their order on one
                // connection; other tenants' commit beside them.
                let n = tenant.map_or(0, |t| {
                    t.as_str()
                        .bytes()
                        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b.into()))
                });
                &appenders[n % appenders.len()]
            }
            _ => return self.write_quiet(tenant, f).await,
        };
        appender.submit(tenant, f).await
    }

    /// A receiver that changes whenever this process commits a write.
    pub fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.commits.subscribe()
    }

    /// The generation of what callers may do: a caller read from the
    /// database while it was `Some(e)` may be served from memory as long
    /// as it is still `Some(e)`. It moves on as soon as a transaction that
    /// takes access away commits in this process (before its caller is
    /// answered) and when another process's such commit is notified (on
    /// PostgreSQL). `None` while a notification could be missed (the
    /// PostgreSQL listener is not connected): nothing may be cached then.
    pub fn auth_epoch(&self) -> Option<u64> {
        self.auth.epoch()
    }

    /// Runs `f` in one read transaction scoped to `tenant`.
    pub async fn read<T, E, F>(&self, tenant: Option<&MunicipalityCode>, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Tx<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (inner, keyring, auth) = (self.inner.clone(), self.keyring.clone(), self.auth.clone());
        let tenant = tenant.cloned();
        blocking(move || inner.run(&keyring, &auth, tenant.as_ref(), false, f)).await
    }

    /// [`Store::read`] for a read of a few rows by key (one person's
    /// history, a household): on SQLite it runs on the calling thread when
    /// a reader connection is free at once, instead of being handed to a
    /// blocking thread and back (two thread wake-ups, most of such a read's
    /// cost). A busy pool, PostgreSQL (network round trips) and
    /// `MACHI_SQLITE_INLINE_READS=0` take the path of [`Store::read`].
    pub async fn read_short<T, E, F>(&self, tenant: Option<&MunicipalityCode>, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Tx<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        if let Inner::Sqlite {
            readers, waiting, ..
        } = &*self.inner
            && inline_reads()
            // Callers already waiting for a reader go first.
            && waiting.load(Ordering::Relaxed) == 0
            && let Some(mut conn) = readers.try_get()
        {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Deferred)
                .map_err(|e| E::from(e.into()))?;
            // A panic is an error of this read, as on a blocking thread.
            return std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                finish(Tx::sqlite(tx, &self.keyring), &self.auth, f)
            }))
            .unwrap_or_else(|_| Err(E::from(StoreError::Task("a read panicked".into()))));
        }
        self.read(tenant, f).await
    }

    /// PostgreSQL: `VACUUM` of what a load into `tenant` wrote to (its
    /// partitions of the registry tables and the search postings, which
    /// every tenant shares), on a connection of its own as the URL's
    /// login role (the owner, as for migrations), after the load
    /// committed; a table another session holds locked is skipped.
    /// A load leaves every page it wrote unmarked in the visibility map,
    /// and until autovacuum gets there (for an insert-only table, once a
    /// fifth of it is new) the planner cannot count on an index-only scan:
    /// the keys of a common trigram (`search_key_gram`, 180,403 address
    /// keys at 1,000,000 residents) were read whole by a bitmap scan,
    /// 2,447 pages and 20 ms, where after the vacuum an index-only scan
    /// stops at the page (19 pages; `EXPLAIN (ANALYZE, BUFFERS)`, see
    /// docs/decisions.md). Nothing on SQLite.
    pub async fn vacuum_after_load(&self, tenant: &MunicipalityCode) -> Result<(), StoreError> {
        let config = match &*self.inner {
            Inner::Postgres { config, .. } => config.clone(),
            Inner::Sqlite { .. } => return Ok(()),
        };
        let t = tenant.clone();
        let sql = self
            .read(Some(tenant), move |tx| {
                records::vacuum_after_load_sql(tx, &t)
            })
            .await?;
        blocking(move || {
            let mut client = config.connect(postgres::NoTls)?;
            // Not cut short by a `statement_timeout` of the URL (a
            // statement of its own: VACUUM runs outside any transaction).
            client.batch_execute("SET statement_timeout = 0")?;
            client.batch_execute(&sql)?;
            Ok(())
        })
        .await
    }

    /// An empty write transaction: the benchmark's baseline.
    pub async fn empty_transaction(&self, tenant: &MunicipalityCode) -> Result<(), StoreError> {
        self.write(Some(tenant), |_| Ok::<_, StoreError>(())).await
    }

    /// An empty read transaction: the benchmark's baseline.
    pub async fn empty_read(&self, tenant: &MunicipalityCode) -> Result<(), StoreError> {
        self.read(Some(tenant), |_| Ok::<_, StoreError>(())).await
    }

    /// The applied migrations, oldest first.
    pub async fn applied_migrations(&self) -> Result<Vec<(i64, String)>, StoreError> {
        self.read(None, |tx| {
            tx.query(
                "SELECT version, name FROM schema_migrations ORDER BY version",
                &[],
            )?
            .iter()
            .map(|r| Ok((r.int(0)?, r.text(1)?)))
            .collect()
        })
        .await
    }
}

/// `0`: SQLite's short reads ([`Store::read_short`]) go to a blocking
/// thread like every read (for a comparison in one binary).
pub const SQLITE_INLINE_READS_ENV: &str = "MACHI_SQLITE_INLINE_READS";

fn inline_reads() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var(SQLITE_INLINE_READS_ENV).map_or(true, |v| v.trim() != "0"))
}

/// `off`: PostgreSQL appends commit one by one, as plain writes (for a
/// comparison: `machi bench-http` measures both).
pub const PG_GROUP_COMMIT_ENV: &str = "MACHI_PG_GROUP_COMMIT";

/// PostgreSQL appenders (connections) per server.
const PG_APPENDERS: usize = 4;

/// Milliseconds between the drops of a PostgreSQL connection's cached
/// plans ([`PgConn::begin_sql`]); `0` never drops them.
pub const PLAN_REFRESH_ENV: &str = "MACHI_PG_PLAN_REFRESH_MS";
const DEFAULT_PLAN_REFRESH_MS: u64 = 10_000;

/// Connections of a server's PostgreSQL pool (reads and plain writes; the
/// appenders and the listener have their own), 1–256.
pub const POOL_SIZE_ENV: &str = "MACHI_PG_POOL_SIZE";
const DEFAULT_POOL_SIZE: u32 = 8;

/// The readiness probe's query: reads a table, not only the connection.
const PROBE_SQL: &str = "SELECT version FROM schema_migrations LIMIT 1";

impl Inner {
    fn probe(&self, timeout: Duration) -> Result<(), StoreError> {
        match self {
            Inner::Sqlite { writer, path, .. } => {
                if !writer.is_running() {
                    return Err(StoreError::NotReady("the SQLite writer has stopped".into()));
                }
                use rusqlite::OpenFlags;
                let conn = rusqlite::Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                conn.busy_timeout(timeout)?;
                conn.query_row(PROBE_SQL, [], |_| Ok(()))?;
                Ok(())
            }
            Inner::Postgres { pool, waiting, .. } => {
                let mut conn = checkout(pool, waiting, Some(timeout))?;
                let client = conn
                    .client
                    .as_mut()
                    .ok_or_else(|| StoreError::NotReady("closed connection".into()))?;
                client.batch_execute(PROBE_SQL)?;
                Ok(())
            }
        }
    }

    fn run<T, E, F>(
        &self,
        keyring: &Keyring,
        auth: &AuthWatch,
        tenant: Option<&MunicipalityCode>,
        write: bool,
        f: F,
    ) -> Result<T, E>
    where
        F: FnOnce(&mut Tx<'_>) -> Result<T, E>,
        E: From<StoreError>,
    {
        match self {
            Inner::Sqlite {
                readers, waiting, ..
            } => {
                // SQLite writes go through the writer thread, never here.
                let mut conn = checkout(readers, waiting, None).map_err(|e| E::from(e.into()))?;
                let tx = conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Deferred)
                    .map_err(|e| E::from(e.into()))?;
                finish(Tx::sqlite(tx, keyring), auth, f)
            }
            Inner::Postgres { pool, waiting, .. } => {
                // Reads see one snapshot (as SQLite's do): an export's files
                // agree. The second wall: row-level security reads the
                // tenant from `machi.tenant`, set with the BEGIN.
                let begin = db::pg_begin_sql(
                    if write {
                        "BEGIN"
                    } else {
                        "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"
                    },
                    tenant,
                )
                .map_err(E::from)?;
                // The pool does not test a connection when it hands it out
                // (a round trip per transaction): the BEGIN is the test. A
                // connection found closed there (the server restarted, or
                // ended it) is dropped and the transaction begun once more
                // on another; nothing had run on it.
                let mut retried = false;
                loop {
                    let mut conn = checkout(pool, waiting, None).map_err(|e| E::from(e.into()))?;
                    let begin = conn.begin_sql(&begin).into_owned();
                    let PgConn {
                        client, statements, ..
                    } = &mut *conn;
                    let client = client
                        .as_mut()
                        .ok_or_else(|| E::from(StoreError::Task("closed connection".into())))?;
                    let tx = match db::PgTx::begin_or_closed(client, &begin) {
                        Ok(tx) => tx,
                        Err((e, true)) if !retried => {
                            tracing::info!(error = %e, "a pooled PostgreSQL connection was closed; beginning on another");
                            retried = true;
                            continue;
                        }
                        Err((e, _)) => return Err(E::from(e)),
                    };
                    return finish(Tx::postgres(tx, statements, keyring), auth, f);
                }
            }
        }
    }
}

fn finish<T, E, F>(mut tx: Tx<'_>, auth: &AuthWatch, f: F) -> Result<T, E>
where
    F: FnOnce(&mut Tx<'_>) -> Result<T, E>,
    E: From<StoreError>,
{
    let out = f(&mut tx)?;
    let changed_auth = tx.auth_changed();
    tx.commit().map_err(|e| E::from(e.conflict_if_unique()))?;
    auth.committed(changed_auth);
    Ok(out)
}

const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)";

fn migrate_sqlite(tx: rusqlite::Transaction<'_>) -> Result<(), StoreError> {
    migrate_sqlite_through(tx, i64::MAX)
}

/// Applies the SQLite migrations up to version `last` only, on the
/// database file at `path` (created if missing): for a test of what a
/// later migration does to the rows an earlier schema held, as
/// [`migrate_postgres_until`]. [`Store::connect`] applies the rest.
pub async fn migrate_sqlite_until(path: &Path, last: i64) -> Result<(), StoreError> {
    let path = path.to_path_buf();
    blocking(move || {
        let mut conn = open_sqlite(&path, SqliteSync::Full, true)?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        migrate_sqlite_through(tx, last)
    })
    .await
}

fn migrate_sqlite_through(tx: rusqlite::Transaction<'_>, last: i64) -> Result<(), StoreError> {
    tx.execute_batch(MIGRATIONS_TABLE)?;
    let applied: Vec<i64> = {
        let mut st = tx.prepare("SELECT version FROM schema_migrations")?;
        st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?
    };
    for m in migrations::all() {
        if applied.contains(&m.version) || m.version > last {
            continue;
        }
        tx.execute_batch(m.sqlite)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            rusqlite::params![m.version, m.name, chrono::Utc::now().timestamp_micros()],
        )?;
        tracing::info!(version = m.version, name = m.name, "applied migration");
    }
    tx.commit()?;
    Ok(())
}

fn migrate_postgres(client: &mut postgres::Client) -> Result<(), StoreError> {
    migrate_postgres_through(client, i64::MAX)
}

/// Applies the PostgreSQL migrations up to version `last` only, on the
/// database at `url`: for a test of what a later migration does to the
/// rows an earlier schema held. [`Store::connect`] applies the rest.
pub async fn migrate_postgres_until(url: &str, last: i64) -> Result<(), StoreError> {
    let url = url.to_string();
    blocking(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls)?;
        migrate_postgres_through(&mut client, last)
    })
    .await
}

fn migrate_postgres_through(client: &mut postgres::Client, last: i64) -> Result<(), StoreError> {
    client.batch_execute(MIGRATIONS_TABLE)?;
    let applied: Vec<i64> = client
        .query("SELECT version FROM schema_migrations", &[])?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    for m in migrations::all() {
        if applied.contains(&m.version) || m.version > last {
            continue;
        }
        let mut tx = client.transaction()?;
        tx.batch_execute(m.postgres)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &chrono::Utc::now().timestamp_micros()],
        )?;
        tx.commit()?;
        tracing::info!(version = m.version, name = m.name, "applied migration");
    }
    Ok(())
}

/// `url` with its database name replaced by `db` (query string kept).
pub fn postgres_url_with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let root = match base[after_scheme..].find('/') {
        Some(i) => &base[..after_scheme + i],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{db}?{q}"),
        None => format!("{root}/{db}"),
    }
}

/// Creates a fresh PostgreSQL database `db` on the server of `url` (dropping
/// an old one of the same name) and returns its URL. For tests and benchmarks.
pub async fn create_fresh_postgres_database(url: &str, db: &str) -> Result<String, StoreError> {
    let (url, db) = (url.to_string(), db.to_string());
    blocking(move || create_fresh_postgres_database_sync(&url, &db)).await
}

fn create_fresh_postgres_database_sync(url: &str, db: &str) -> Result<String, StoreError> {
    if !db.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(StoreError::Corrupt(format!("bad database name {db:?}")));
    }
    let admin = postgres_url_with_database(url, "postgres");
    let mut client = postgres::Client::connect(&admin, postgres::NoTls)?;
    client.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))?;
    client.batch_execute(&format!("CREATE DATABASE {db}"))?;
    Ok(postgres_url_with_database(url, db))
}

/// Asks the server at `url` for a checkpoint (a benchmark's step between
/// measurements, so that one run's writes are not flushed during the next):
/// needs a superuser or `pg_checkpoint`.
pub async fn checkpoint_postgres(url: &str) -> Result<(), StoreError> {
    let url = url.to_string();
    blocking(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls)?;
        client.batch_execute("CHECKPOINT")?;
        Ok(())
    })
    .await
}

/// Drops a database made by [`create_fresh_postgres_database`].
pub async fn drop_postgres_database(url: &str, db: &str) -> Result<(), StoreError> {
    let (url, db) = (url.to_string(), db.to_string());
    blocking(move || drop_postgres_database_sync(&url, &db)).await
}

fn drop_postgres_database_sync(url: &str, db: &str) -> Result<(), StoreError> {
    if !db.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(StoreError::Corrupt(format!("bad database name {db:?}")));
    }
    let admin = postgres_url_with_database(url, "postgres");
    let mut client = postgres::Client::connect(&admin, postgres::NoTls)?;
    client.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))?;
    Ok(())
}

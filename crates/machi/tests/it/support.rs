//! Fresh databases for tests: a SQLite file in a temporary directory, or a
//! new PostgreSQL database on the server of `MACHI_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). PostgreSQL tests fail, not
//! skip, when the server is unreachable.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use machi::crypto::{Keyring, MasterKey};
use machi::service::{Clock, Registry};
use machi::store::{DatabaseLocation, SqliteSync, Store};
use machi_domain::dates::EraTable;
use machi_domain::ids::MunicipalityCode;

pub const FUCHU: &str = "132063";
pub const AKISHIMA: &str = "132071";

/// The master key of test databases (a test key, never a real one).
pub const TEST_MASTER_KEY: &str =
    "6d616368692d746573742d6d61737465722d6b65792d6e6f742d7265616c2121";

/// A keyring of [`TEST_MASTER_KEY`].
pub fn test_keyring() -> Arc<Keyring> {
    Arc::new(Keyring::new(&MasterKey::from_hex(TEST_MASTER_KEY).unwrap()))
}

pub fn postgres_server() -> String {
    std::env::var("MACHI_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A fresh database; dropped (PostgreSQL) or deleted (SQLite) with the value.
pub struct TestDb {
    pub registry: Registry,
    pub store: Store,
    _dir: Option<tempfile::TempDir>,
    pg_db: Option<String>,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::connect_with(
            &DatabaseLocation::Sqlite(dir.path().join("test.sqlite")),
            SqliteSync::Normal,
            test_keyring(),
        )
        .await
        .expect("open SQLite");
        TestDb {
            registry: Registry::new(store.clone(), EraTable::standard(), Clock::System),
            store,
            _dir: Some(dir),
            pg_db: None,
        }
    }

    pub async fn postgres() -> TestDb {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let db = format!("machi_t_{}_{n}", std::process::id());
        let url = machi::store::create_fresh_postgres_database(&postgres_server(), &db)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL is required for this test (MACHI_TEST_POSTGRES={}): {e}",
                    postgres_server()
                )
            });
        let store = Store::connect(&DatabaseLocation::Postgres(url), test_keyring())
            .await
            .expect("open PostgreSQL");
        TestDb {
            registry: Registry::new(store.clone(), EraTable::standard(), Clock::System),
            store,
            _dir: None,
            pg_db: Some(db),
        }
    }

    pub async fn with_tenants(self) -> TestDb {
        for (code, name) in [(FUCHU, "府中市"), (AKISHIMA, "昭島市")] {
            self.registry
                .create_tenant(code.parse().unwrap(), name, "東京都")
                .await
                .expect("tenant");
        }
        self
    }

    pub fn url(&self) -> Option<String> {
        self.pg_db
            .as_ref()
            .map(|db| machi::store::postgres_url_with_database(&postgres_server(), db))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(db) = self.pg_db.take() {
            let server = postgres_server();
            // Best effort, on a thread of its own (Drop may run inside a runtime).
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(rt) = rt {
                    let _ = rt.block_on(machi::store::drop_postgres_database(&server, &db));
                }
            })
            .join();
        }
    }
}

pub fn code(s: &str) -> MunicipalityCode {
    s.parse().unwrap()
}

impl TestDb {
    /// Where the database is: its PostgreSQL URL or its SQLite file.
    pub async fn location(&self) -> DatabaseLocation {
        match self.url() {
            Some(url) => DatabaseLocation::Postgres(url),
            None => DatabaseLocation::Sqlite(self.sqlite_path().await.into()),
        }
    }

    async fn sqlite_path(&self) -> String {
        self.store
            .read(None, |tx| {
                tx.query_one("PRAGMA database_list", &[])?.text(2)
            })
            .await
            .unwrap()
    }

    /// Every row of every table, each value as text (NULL as None), read
    /// with the database owner's rights, bypassing machi: what someone with
    /// a copy of the database sees.
    pub async fn raw_dump(&self) -> Vec<(String, Vec<Vec<Option<String>>>)> {
        match self.url() {
            Some(url) => tokio::task::spawn_blocking(move || {
                let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
                let tables: Vec<String> = c
                    .query(
                        "SELECT table_name::text FROM information_schema.tables \
                         WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1",
                        &[],
                    )
                    .unwrap()
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                tables
                    .into_iter()
                    .map(|t| {
                        let mut rows = Vec::new();
                        for m in c.simple_query(&format!("SELECT * FROM {t}")).unwrap() {
                            if let postgres::SimpleQueryMessage::Row(r) = m {
                                rows.push(
                                    (0..r.len()).map(|i| r.get(i).map(str::to_string)).collect(),
                                );
                            }
                        }
                        (t, rows)
                    })
                    .collect()
            })
            .await
            .unwrap(),
            None => {
                let path = self.sqlite_path().await;
                tokio::task::spawn_blocking(move || {
                    let c = rusqlite::Connection::open(path).unwrap();
                    let tables: Vec<String> = c
                        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1")
                        .unwrap()
                        .query_map([], |r| r.get(0))
                        .unwrap()
                        .collect::<Result<_, _>>()
                        .unwrap();
                    tables
                        .into_iter()
                        .map(|t| {
                            let mut st = c.prepare(&format!("SELECT * FROM \"{t}\"")).unwrap();
                            let n = st.column_count();
                            let rows = st
                                .query_map([], |r| {
                                    (0..n)
                                        .map(|i| {
                                            use rusqlite::types::ValueRef;
                                            Ok(match r.get_ref(i)? {
                                                ValueRef::Null => None,
                                                ValueRef::Integer(v) => Some(v.to_string()),
                                                ValueRef::Real(v) => Some(v.to_string()),
                                                ValueRef::Text(b) | ValueRef::Blob(b) => {
                                                    Some(String::from_utf8_lossy(b).into_owned())
                                                }
                                            })
                                        })
                                        .collect::<Result<Vec<_>, rusqlite::Error>>()
                                })
                                .unwrap()
                                .collect::<Result<Vec<_>, _>>()
                                .unwrap();
                            (t, rows)
                        })
                        .collect()
                })
                .await
                .unwrap()
            }
        }
    }

    /// Runs SQL with the database owner's rights, bypassing machi (to tamper
    /// with data the way an attacker with database access could).
    pub async fn raw(&self, sql: &str) {
        let sql = sql.to_string();
        match self.url() {
            Some(url) => tokio::task::spawn_blocking(move || {
                let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
                c.batch_execute(&sql).unwrap();
            })
            .await
            .unwrap(),
            None => {
                let path = self.sqlite_path().await;
                tokio::task::spawn_blocking(move || {
                    let c = rusqlite::Connection::open(path).unwrap();
                    c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
                    c.execute_batch(&sql).unwrap();
                })
                .await
                .unwrap()
            }
        }
    }
}

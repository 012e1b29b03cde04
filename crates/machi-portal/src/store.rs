//! The portal's own small SQLite database. It holds published definitions,
//! encrypted drafts, sealed filings and statuses, nothing else: no table
//! here can hold a name, an address or an answer in the clear.

use std::path::Path;
use std::sync::Mutex;

use machi_procedures::Definition;
use rusqlite::{Connection, OptionalExtension, params};

use crate::seal::{self, SealError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS settings (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS tenants (
    code TEXT PRIMARY KEY,
    name_ja TEXT NOT NULL,
    name_en TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS definitions (
    tenant TEXT NOT NULL REFERENCES tenants(code),
    procedure TEXT NOT NULL,
    version INTEGER NOT NULL,
    source TEXT NOT NULL,
    published_at TEXT NOT NULL,
    PRIMARY KEY (tenant, procedure, version)
);
CREATE TABLE IF NOT EXISTS drafts (
    id TEXT PRIMARY KEY,
    sealed BLOB NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS filings (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    procedure TEXT NOT NULL,
    version INTEGER NOT NULL,
    sealed BLOB,
    received_at TEXT NOT NULL,
    status TEXT NOT NULL,
    reason BLOB,
    status_at TEXT NOT NULL
);
-- Signing nonces (署名番号) of filings received, as keyed hashes: a
-- nonce is used once, so a signature can never be filed twice.
CREATE TABLE IF NOT EXISTS used_nonces (
    id TEXT PRIMARY KEY,
    used_at TEXT NOT NULL
);
";

/// Changes to the schema after [`SCHEMA`] (the portal's own store
/// migrations), applied in order by `PRAGMA user_version`: the database
/// is at version N when the first N have run.
const MIGRATIONS: &[&str] = &[
    // 1: the receipt of the filing that used a nonce, encrypted under the
    // nonce (a replay is told which filing was received).
    "ALTER TABLE used_nonces ADD COLUMN receipt BLOB;",
    // 2: the back office's refusal on import (issue 11): why, as a reason
    // word the status page turns into the citizen's words (no personal
    // data), and how many times a filing was left here to be offered
    // after the others (a refusal that may pass later).
    "ALTER TABLE filings ADD COLUMN refusal TEXT;
     ALTER TABLE filings ADD COLUMN deferrals INTEGER NOT NULL DEFAULT 0;
     CREATE INDEX filings_pending ON filings (deferrals, received_at, id) WHERE sealed IS NOT NULL;",
];

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let at: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, m) in MIGRATIONS.iter().enumerate().skip(at.max(0) as usize) {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {m} PRAGMA user_version = {}; COMMIT;",
            i + 1
        ))?;
    }
    Ok(())
}

/// What went wrong with the portal's database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("portal database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("{0}")]
    Seal(#[from] SealError),
    #[error(
        "the procedure {procedure} version {version} is already published with a different text; publish it as a new version"
    )]
    VersionChanged { procedure: String, version: u32 },
    #[error("the tenant {0} is not known to the portal")]
    UnknownTenant(String),
    /// The filing's signing nonce was already used by a filing received.
    #[error("this signature was already used for a filing")]
    NonceUsed,
    /// The filing's draft was already sent.
    #[error("this application was already sent")]
    AlreadySent,
    /// A batch could not be stored (none of it was).
    #[error("portal database: {0}")]
    Batch(String),
}

/// A published procedure, as listed.
#[derive(Debug, Clone)]
pub struct Published {
    pub tenant: String,
    pub procedure: String,
    pub version: u32,
    pub source: String,
}

/// Where a filing stands, as the citizen sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Received,
    UnderReview,
    CorrectionRequested,
    Approved,
    Rejected,
    /// The back office could not accept the filing on import (it did not
    /// open, its signature was used before, its answers or its form could
    /// not be confirmed): the sealed copy is gone, the reason kept.
    NotAccepted,
}

impl Status {
    pub const ALL: [(&'static str, Status); 6] = [
        ("received", Status::Received),
        ("under_review", Status::UnderReview),
        ("correction_requested", Status::CorrectionRequested),
        ("approved", Status::Approved),
        ("rejected", Status::Rejected),
        ("not_accepted", Status::NotAccepted),
    ];
    pub fn code(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, s)| *s == self)
            .map(|(c, _)| *c)
            .unwrap_or("received")
    }
    pub fn parse(s: &str) -> Option<Status> {
        Self::ALL.iter().find(|(c, _)| *c == s).map(|(_, s)| *s)
    }
}

/// One filing's row, as the status page or the back office sees it.
#[derive(Debug, Clone)]
pub struct FilingRow {
    pub tenant: String,
    pub procedure: String,
    pub version: u32,
    pub received_at: String,
    pub status: Status,
    pub reason: Option<String>,
    pub status_at: String,
    pub sealed: Option<Vec<u8>>,
    /// Why the back office refused it on import ([`Refusal`]), for
    /// [`Status::NotAccepted`].
    pub refusal: Option<Refusal>,
}

/// Why the back office refused a filing on import, in the citizen's terms
/// (the status page words it; issue 11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The filing could not be opened or read as sent.
    Unreadable,
    /// Its signature had been used for another filing.
    Replayed,
    /// The form it was made on could not be confirmed by the municipality.
    Procedure,
    /// Its answers did not meet the form's rules.
    Answers,
}

impl Refusal {
    pub const ALL: [(&'static str, Refusal); 4] = [
        ("unreadable", Refusal::Unreadable),
        ("replayed", Refusal::Replayed),
        ("procedure", Refusal::Procedure),
        ("answers", Refusal::Answers),
    ];
    pub fn code(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, r)| *r == self)
            .map(|(c, _)| *c)
            .unwrap_or("unreadable")
    }
    pub fn parse(s: &str) -> Option<Refusal> {
        Self::ALL.iter().find(|(c, _)| *c == s).map(|(_, r)| *r)
    }
}

/// A filing to store (see [`Store::file`]).
pub struct NewFiling<'a> {
    pub receipt: &'a str,
    pub tenant: &'a str,
    pub procedure: &'a str,
    pub version: u32,
    pub sealed: &'a [u8],
    pub now: &'a str,
    /// The resume code of the draft it came from (deleted with it).
    pub draft_code: &'a str,
    /// The signing nonce of a signed filing: recorded as used in the same
    /// transaction, refused if it was used before.
    pub nonce: Option<&'a str>,
}

/// A sealed filing ready to store (see [`Store::file_many`]).
#[derive(Debug, Clone)]
pub struct SealedFiling {
    /// The keyed hash of the receipt number.
    pub id: String,
    /// The receipt number (受付番号): stored only encrypted under the
    /// signing nonce, to name this filing to a second one with its nonce.
    pub receipt: String,
    pub tenant: String,
    pub procedure: String,
    pub version: u32,
    pub sealed: Vec<u8>,
    pub received_at: String,
    /// The signing nonce of a signed filing: marked used in the same
    /// transaction; a filing whose nonce was used before is refused.
    pub nonce: Option<String>,
    /// The resume code of the draft it came from: deleted in the same
    /// transaction; a draft already gone (sent twice) refuses the filing.
    pub draft_code: Option<String>,
}

/// Why one filing of a batch was not stored (the others are).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conflict {
    /// Its signing nonce was already used, by the filing with this
    /// 受付番号 when it is known.
    NonceUsed { earlier: Option<String> },
    /// Its draft was already sent (or is gone).
    AlreadySent,
    /// Encrypting the receipt under the nonce failed.
    Seal(String),
    /// The database refused this filing's rows.
    Failed(String),
}

impl From<rusqlite::Error> for Conflict {
    fn from(e: rusqlite::Error) -> Conflict {
        Conflict::Failed(e.to_string())
    }
}

/// Purpose label of a receipt encrypted under its signing nonce.
const NONCE_RECEIPT: &str = "machi-portal/nonce-receipt/v1";

/// The portal's database: one connection writes; reads (drafts, nonces,
/// statuses, definitions) go through their own connections, so in WAL
/// mode they never wait for a write transaction's commit (its fsync):
/// the citizen's submit loads its draft and verifies its signature while
/// the group commit before it is syncing, and joins the next commit
/// (issue 11, item 10). An in-memory database (tests) has one connection.
pub struct Store {
    conn: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: std::sync::atomic::AtomicUsize,
    secret: Vec<u8>,
}

/// Read connections of a database file.
const READERS: usize = 4;

impl Store {
    /// Opens (and creates) the database at `path`; `:memory:` for tests.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.execute_batch(SCHEMA)?;
        migrate(&conn)?;
        let secret: Option<Vec<u8>> = conn
            .query_row(
                "SELECT value FROM settings WHERE name = 'secret'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        let secret = match secret {
            Some(s) => s,
            None => {
                let s = seal::random::<32>()?.to_vec();
                conn.execute(
                    "INSERT INTO settings (name, value) VALUES ('secret', ?1)",
                    params![s],
                )?;
                s
            }
        };
        let mut readers = Vec::new();
        if path != Path::new(":memory:") && !path.as_os_str().is_empty() {
            for _ in 0..READERS {
                let r = Connection::open_with_flags(
                    path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                readers.push(Mutex::new(r));
            }
        }
        Ok(Store {
            conn: Mutex::new(conn),
            readers,
            next_reader: std::sync::atomic::AtomicUsize::new(0),
            secret,
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection for reading: a free reader, else the next one in turn
    /// (the writer when the database has no readers).
    fn read(&self) -> std::sync::MutexGuard<'_, Connection> {
        if self.readers.is_empty() {
            return self.conn();
        }
        for r in &self.readers {
            if let Ok(g) = r.try_lock() {
                return g;
            }
        }
        let i = self
            .next_reader
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            % self.readers.len();
        self.readers[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// Adds or renames a tenant (団体コード and its names).
    pub fn put_tenant(&self, code: &str, name_ja: &str, name_en: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO tenants (code, name_ja, name_en) VALUES (?1, ?2, ?3)
             ON CONFLICT (code) DO UPDATE SET name_ja = excluded.name_ja, name_en = excluded.name_en",
            params![code, name_ja, name_en],
        )?;
        Ok(())
    }

    pub fn tenants(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let c = self.read();
        let mut st = c.prepare("SELECT code, name_ja, name_en FROM tenants ORDER BY code")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Publishes a validated definition. The same text again is a no-op
    /// (returns false); a different text under a published version is refused.
    pub fn publish(
        &self,
        tenant: &str,
        def: &Definition,
        source: &str,
        now: &str,
    ) -> Result<bool, StoreError> {
        let c = self.conn();
        let known: Option<String> = c
            .query_row(
                "SELECT code FROM tenants WHERE code = ?1",
                params![tenant],
                |r| r.get(0),
            )
            .optional()?;
        if known.is_none() {
            return Err(StoreError::UnknownTenant(tenant.to_owned()));
        }
        let existing: Option<String> = c
            .query_row(
                "SELECT source FROM definitions WHERE tenant = ?1 AND procedure = ?2 AND version = ?3",
                params![tenant, def.id(), def.version()],
                |r| r.get(0),
            )
            .optional()?;
        match existing {
            Some(s) if s == source => Ok(false),
            Some(_) => Err(StoreError::VersionChanged {
                procedure: def.id().to_owned(),
                version: def.version(),
            }),
            None => {
                c.execute(
                    "INSERT INTO definitions (tenant, procedure, version, source, published_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![tenant, def.id(), def.version(), source, now],
                )?;
                Ok(true)
            }
        }
    }

    /// The newest version of each procedure a tenant has published.
    pub fn latest(&self, tenant: &str) -> Result<Vec<Published>, StoreError> {
        let c = self.read();
        let mut st = c.prepare(
            "SELECT d.tenant, d.procedure, d.version, d.source FROM definitions d
             WHERE d.tenant = ?1 AND d.version = (SELECT MAX(version) FROM definitions e
               WHERE e.tenant = d.tenant AND e.procedure = d.procedure)
             ORDER BY d.published_at, d.procedure",
        )?;
        let rows = st.query_map(params![tenant], |r| {
            Ok(Published {
                tenant: r.get(0)?,
                procedure: r.get(1)?,
                version: r.get(2)?,
                source: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One published version (None when it was never published).
    pub fn definition(
        &self,
        tenant: &str,
        procedure: &str,
        version: u32,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .read()
            .query_row(
                "SELECT source FROM definitions WHERE tenant = ?1 AND procedure = ?2 AND version = ?3",
                params![tenant, procedure, version],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Saves a draft, encrypted under its resume code, until `expires_at`
    /// (Unix seconds). Expired drafts are removed on the way.
    pub fn save_draft(
        &self,
        code: &str,
        plain: &[u8],
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let id = seal::lookup_id(&self.secret, "draft-id", code);
        let sealed = seal::encrypt_with(&self.secret, "machi-portal/draft/v1", code, plain)?;
        let c = self.conn();
        c.execute("DELETE FROM drafts WHERE expires_at <= ?1", params![now])?;
        c.execute(
            "INSERT INTO drafts (id, sealed, expires_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET sealed = excluded.sealed, expires_at = excluded.expires_at",
            params![id, sealed, expires_at],
        )?;
        Ok(())
    }

    /// A draft by its resume code, with when it expires; None when there is
    /// none, it expired, or it does not open.
    pub fn load_draft(&self, code: &str, now: i64) -> Result<Option<(Vec<u8>, i64)>, StoreError> {
        let id = seal::lookup_id(&self.secret, "draft-id", code);
        let row: Option<(Vec<u8>, i64)> = self
            .read()
            .query_row(
                "SELECT sealed, expires_at FROM drafts WHERE id = ?1 AND expires_at > ?2",
                params![id, now],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(row.and_then(|(s, exp)| {
            seal::decrypt_with(&self.secret, "machi-portal/draft/v1", code, &s)
                .ok()
                .map(|p| (p, exp))
        }))
    }

    /// Whether a signing nonce was already used by a filing received.
    pub fn nonce_used(&self, nonce: &str) -> Result<bool, StoreError> {
        let nid = seal::lookup_id(&self.secret, "nonce", nonce);
        Ok(self
            .read()
            .query_row(
                "SELECT 1 FROM used_nonces WHERE id = ?1",
                params![nid],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    pub fn delete_draft(&self, code: &str) -> Result<(), StoreError> {
        let id = seal::lookup_id(&self.secret, "draft-id", code);
        self.conn()
            .execute("DELETE FROM drafts WHERE id = ?1", params![id])?;
        Ok(())
    }

    /// Stores a sealed filing and, in the same transaction, deletes the
    /// draft it came from and marks its signing nonce used (the same
    /// per-filing write as [`Store::file_many`], for one filing).
    pub fn file(&self, f: &NewFiling<'_>) -> Result<(), StoreError> {
        let row = SealedFiling {
            id: seal::lookup_id(&self.secret, "receipt", f.receipt),
            receipt: f.receipt.to_owned(),
            tenant: f.tenant.to_owned(),
            procedure: f.procedure.to_owned(),
            version: f.version,
            sealed: f.sealed.to_vec(),
            received_at: f.now.to_owned(),
            nonce: f.nonce.map(str::to_owned),
            draft_code: Some(f.draft_code.to_owned()),
        };
        match self.file_many(std::slice::from_ref(&row))?.pop() {
            Some(Ok(())) => Ok(()),
            Some(Err(Conflict::NonceUsed { .. })) => Err(StoreError::NonceUsed),
            Some(Err(Conflict::AlreadySent)) => Err(StoreError::AlreadySent),
            Some(Err(Conflict::Failed(e))) | Some(Err(Conflict::Seal(e))) => {
                Err(StoreError::Batch(e))
            }
            None => Err(StoreError::Batch("no result".into())),
        }
    }

    /// Stores sealed filings in **one transaction** (one commit, one fsync
    /// for the whole batch), each in its own savepoint: a filing that
    /// cannot be stored (its signing nonce already used — by an earlier
    /// filing or by one before it in this batch —, its draft already sent)
    /// is rolled back alone and the others are kept. Returns one result
    /// per row, in order; an error of the transaction itself stores none.
    pub fn file_many(
        &self,
        rows: &[SealedFiling],
    ) -> Result<Vec<Result<(), Conflict>>, StoreError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn();
        let mut tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut out = Vec::with_capacity(rows.len());
        for f in rows {
            let sp = tx.savepoint()?;
            match self.file_one(&sp, f) {
                Ok(()) => {
                    sp.commit()?;
                    out.push(Ok(()));
                }
                // Dropping the savepoint rolls back this filing alone.
                Err(e) => out.push(Err(e)),
            }
        }
        tx.commit()?;
        Ok(out)
    }

    /// One filing's writes, inside the batch's transaction.
    fn file_one(&self, c: &Connection, f: &SealedFiling) -> Result<(), Conflict> {
        if let Some(nonce) = &f.nonce {
            let nid = seal::lookup_id(&self.secret, "nonce", nonce);
            // The receipt, readable only with the nonce: a second filing
            // with this nonce is told which one was received.
            let receipt =
                seal::encrypt_with(&self.secret, NONCE_RECEIPT, nonce, f.receipt.as_bytes())
                    .map_err(|e| Conflict::Seal(e.to_string()))?;
            let n = c
                .prepare_cached(
                    "INSERT INTO used_nonces (id, used_at, receipt) VALUES (?1, ?2, ?3)
                     ON CONFLICT (id) DO NOTHING",
                )?
                .execute(params![nid, f.received_at, receipt])?;
            if n == 0 {
                let earlier: Option<Vec<u8>> = c
                    .prepare_cached("SELECT receipt FROM used_nonces WHERE id = ?1")?
                    .query_row(params![nid], |r| r.get(0))
                    .optional()?
                    .flatten();
                let earlier = earlier.and_then(|b| {
                    seal::decrypt_with(&self.secret, NONCE_RECEIPT, nonce, &b)
                        .ok()
                        .and_then(|p| String::from_utf8(p).ok())
                });
                return Err(Conflict::NonceUsed { earlier });
            }
        }
        c.prepare_cached(
            "INSERT INTO filings (id, tenant, procedure, version, sealed, received_at, status, status_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'received', ?6)",
        )?
        .execute(params![
            f.id,
            f.tenant,
            f.procedure,
            f.version,
            f.sealed,
            f.received_at
        ])?;
        if let Some(code) = &f.draft_code {
            let draft = seal::lookup_id(&self.secret, "draft-id", code);
            let n = c
                .prepare_cached("DELETE FROM drafts WHERE id = ?1")?
                .execute(params![draft])?;
            if n == 0 {
                return Err(Conflict::AlreadySent);
            }
        }
        Ok(())
    }

    /// A filing by its receipt number (the status page).
    pub fn filing(&self, receipt: &str) -> Result<Option<FilingRow>, StoreError> {
        let id = seal::lookup_id(&self.secret, "receipt", receipt);
        let row = self
            .read()
            .query_row(
                "SELECT tenant, procedure, version, received_at, status, reason, status_at, sealed, refusal FROM filings WHERE id = ?1",
                params![id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, u32>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, Option<Vec<u8>>>(5)?,
                        r.get::<_, String>(6)?,
                        r.get::<_, Option<Vec<u8>>>(7)?,
                        r.get::<_, Option<String>>(8)?,
                    ))
                },
            )
            .optional()?;
        Ok(row.map(
            |(
                tenant,
                procedure,
                version,
                received_at,
                status,
                reason,
                status_at,
                sealed,
                refusal,
            )| {
                FilingRow {
                    tenant,
                    procedure,
                    version,
                    received_at,
                    status: Status::parse(&status).unwrap_or(Status::Received),
                    reason: reason.and_then(|r| {
                        seal::decrypt_with(&self.secret, "machi-portal/reason/v1", receipt, &r)
                            .ok()
                            .and_then(|b| String::from_utf8(b).ok())
                    }),
                    status_at,
                    sealed,
                    refusal: refusal.as_deref().and_then(Refusal::parse),
                }
            },
        ))
    }

    /// Sealed filings not yet acknowledged by the back office, oldest
    /// first, those the back office deferred ([`Store::defer`]) after the
    /// others: (row id, tenant, procedure, version, received_at, sealed).
    /// The row id is the keyed hash of the receipt; the receipt itself is
    /// inside the sealed bytes.
    #[allow(clippy::type_complexity)]
    pub fn pending(
        &self,
        limit: usize,
    ) -> Result<Vec<(String, String, String, u32, String, Vec<u8>)>, StoreError> {
        let c = self.conn();
        let mut st = c.prepare(
            "SELECT id, tenant, procedure, version, received_at, sealed FROM filings
             WHERE sealed IS NOT NULL ORDER BY deferrals, received_at, id LIMIT ?1",
        )?;
        let rows = st.query_map(params![limit as i64], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The back office has stored these filings: drop the sealed copies and
    /// keep the receipt and status. Returns how many were dropped.
    pub fn acknowledge(&self, ids: &[String]) -> Result<usize, StoreError> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        let mut n = 0;
        for id in ids {
            n += tx.execute(
                "UPDATE filings SET sealed = NULL WHERE id = ?1 AND sealed IS NOT NULL",
                params![id],
            )?;
        }
        tx.commit()?;
        Ok(n)
    }

    /// The back office refused these filings on import and recorded them
    /// (the quarantine acknowledgement, issue 11): the sealed copies are
    /// dropped, the status becomes [`Status::NotAccepted`] with the reason,
    /// and they are never offered again. A row already acknowledged is
    /// left alone (a refused copy of a stored filing must not change what
    /// the citizen sees). Returns how many were marked.
    pub fn refuse(&self, refused: &[(String, Refusal)], now: &str) -> Result<usize, StoreError> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        let mut n = 0;
        {
            let mut st = tx.prepare_cached(
                "UPDATE filings SET sealed = NULL, status = 'not_accepted', refusal = ?2, status_at = ?3
                 WHERE id = ?1 AND sealed IS NOT NULL",
            )?;
            for (id, r) in refused {
                n += st.execute(params![id, r.code(), now])?;
            }
        }
        tx.commit()?;
        Ok(n)
    }

    /// The back office refused these on import but they may pass later
    /// (a tenant it does not serve yet; a key, a definition or a version
    /// it has yet to fix — it quarantines them only after a grace
    /// period): they stay, offered after the others so they cannot fill
    /// every pull. Returns how many.
    pub fn defer(&self, ids: &[String]) -> Result<usize, StoreError> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        let mut n = 0;
        {
            let mut st = tx.prepare_cached(
                "UPDATE filings SET deferrals = deferrals + 1 WHERE id = ?1 AND sealed IS NOT NULL",
            )?;
            for id in ids {
                n += st.execute(params![id])?;
            }
        }
        tx.commit()?;
        Ok(n)
    }

    /// A status from the back office; the reason is encrypted under the
    /// receipt number. Returns false when no filing has that receipt.
    ///
    /// A filing the back office refused on import ([`Status::NotAccepted`])
    /// takes the status too, and its refusal is cleared: the back office
    /// pushes statuses only of filings it has stored, so a status for a
    /// refused one means staff imported it again after all (issue 11: the
    /// quarantined copy is kept there and can be re-imported once the
    /// cause is fixed; it first pushes `received`, but a clerk may have
    /// moved it on before the push got through, and the queue keeps only
    /// the newest status). The sealed copy stays dropped.
    pub fn set_status(
        &self,
        receipt: &str,
        status: Status,
        reason: Option<&str>,
        now: &str,
    ) -> Result<bool, StoreError> {
        let id = seal::lookup_id(&self.secret, "receipt", receipt);
        let reason = match reason.filter(|r| !r.trim().is_empty()) {
            Some(r) => Some(seal::encrypt_with(
                &self.secret,
                "machi-portal/reason/v1",
                receipt,
                r.as_bytes(),
            )?),
            None => None,
        };
        let n = self.conn().execute(
            "UPDATE filings SET status = ?2, reason = ?3, status_at = ?4, refusal = NULL WHERE id = ?1",
            params![id, status.code(), reason, now],
        )?;
        Ok(n == 1)
    }

    /// Every cell of every table, as text or bytes (for the test that looks
    /// for personal data in the clear).
    pub fn dump_cells(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let c = self.conn();
        let tables: Vec<String> = {
            let mut st = c.prepare("SELECT name FROM sqlite_master WHERE type = 'table'")?;
            st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?
        };
        let mut out = Vec::new();
        for t in tables {
            let mut st = c.prepare(&format!("SELECT * FROM \"{t}\""))?;
            let n = st.column_count();
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                for i in 0..n {
                    let v: rusqlite::types::Value = r.get(i)?;
                    let bytes = match v {
                        rusqlite::types::Value::Text(s) => s.into_bytes(),
                        rusqlite::types::Value::Blob(b) => b,
                        rusqlite::types::Value::Integer(n) => n.to_string().into_bytes(),
                        rusqlite::types::Value::Real(f) => f.to_string().into_bytes(),
                        rusqlite::types::Value::Null => Vec::new(),
                    };
                    out.push((t.clone(), bytes));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(s: &Store, receipt: &str, nonce: Option<&str>, draft: Option<&str>) -> SealedFiling {
        SealedFiling {
            id: seal::lookup_id(s.secret(), "receipt", receipt),
            receipt: receipt.into(),
            tenant: "132063".into(),
            procedure: "tenshutsu".into(),
            version: 1,
            sealed: b"sealed".to_vec(),
            received_at: "2026-12-06T10:00:00+09:00".into(),
            nonce: nonce.map(str::to_owned),
            draft_code: draft.map(str::to_owned),
        }
    }

    #[test]
    fn one_batch_refuses_a_used_nonce_alone_and_names_the_first() {
        let s = Store::open(Path::new(":memory:")).unwrap();
        s.save_draft("AAAA-BBBB-CCCC-DDDD", b"{}", 0, i64::MAX)
            .unwrap();
        let out = s
            .file_many(&[
                row(&s, "R1R1-R1R1-R1R1", Some("n1"), None),
                row(&s, "R2R2-R2R2-R2R2", Some("n1"), None),
                row(&s, "R3R3-R3R3-R3R3", None, Some("AAAA-BBBB-CCCC-DDDD")),
                row(&s, "R4R4-R4R4-R4R4", None, Some("AAAA-BBBB-CCCC-DDDD")),
                row(&s, "R5R5-R5R5-R5R5", Some("n2"), None),
            ])
            .unwrap();
        assert_eq!(
            out,
            vec![
                Ok(()),
                Err(Conflict::NonceUsed {
                    earlier: Some("R1R1-R1R1-R1R1".into())
                }),
                Ok(()),
                Err(Conflict::AlreadySent),
                Ok(()),
            ]
        );
        // The refused ones left nothing behind; the others are all there.
        assert!(s.filing("R2R2-R2R2-R2R2").unwrap().is_none());
        assert!(s.filing("R4R4-R4R4-R4R4").unwrap().is_none());
        for r in ["R1R1-R1R1-R1R1", "R3R3-R3R3-R3R3", "R5R5-R5R5-R5R5"] {
            assert!(s.filing(r).unwrap().is_some(), "{r}");
        }
        assert!(s.load_draft("AAAA-BBBB-CCCC-DDDD", 1).unwrap().is_none());
        // A later batch: the nonce is still used, by the first filing.
        let out = s
            .file_many(&[row(&s, "R6R6-R6R6-R6R6", Some("n1"), None)])
            .unwrap();
        assert_eq!(
            out,
            vec![Err(Conflict::NonceUsed {
                earlier: Some("R1R1-R1R1-R1R1".into())
            })]
        );
        assert!(s.nonce_used("n2").unwrap());
        // The receipt is not in the clear anywhere.
        for (_, cell) in s.dump_cells().unwrap() {
            assert!(!String::from_utf8_lossy(&cell).contains("R1R1-R1R1"));
        }
    }

    #[test]
    fn refused_filings_are_dropped_and_marked_deferred_ones_offered_last() {
        let s = Store::open(Path::new(":memory:")).unwrap();
        let mut rows = Vec::new();
        for (i, r) in [
            "A1A1-A1A1-A1A1",
            "B2B2-B2B2-B2B2",
            "C3C3-C3C3-C3C3",
            "D4D4-D4D4-D4D4",
        ]
        .iter()
        .enumerate()
        {
            let mut f = row(&s, r, None, None);
            f.received_at = format!("2026-12-06T10:00:0{i}+09:00");
            rows.push(f);
        }
        assert!(s.file_many(&rows).unwrap().iter().all(|r| r.is_ok()));
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        let order = |s: &Store| -> Vec<String> {
            s.pending(10).unwrap().into_iter().map(|r| r.0).collect()
        };
        assert_eq!(order(&s), ids);
        // Deferred: offered after the others.
        assert_eq!(s.defer(std::slice::from_ref(&ids[0])).unwrap(), 1);
        assert_eq!(
            order(&s),
            vec![
                ids[1].clone(),
                ids[2].clone(),
                ids[3].clone(),
                ids[0].clone()
            ]
        );
        // Acknowledged, then a refused copy of it: the stored one is kept.
        assert_eq!(s.acknowledge(std::slice::from_ref(&ids[3])).unwrap(), 1);
        let now = "2026-12-06T11:00:00+09:00";
        let n = s
            .refuse(
                &[
                    (ids[1].clone(), Refusal::Replayed),
                    (ids[3].clone(), Refusal::Unreadable),
                ],
                now,
            )
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(order(&s), vec![ids[2].clone(), ids[0].clone()]);
        let b = s.filing("B2B2-B2B2-B2B2").unwrap().unwrap();
        assert_eq!(
            (b.status, b.refusal, b.sealed),
            (Status::NotAccepted, Some(Refusal::Replayed), None)
        );
        assert_eq!(b.status_at, now);
        let d = s.filing("D4D4-D4D4-D4D4").unwrap().unwrap();
        assert_eq!((d.status, d.refusal), (Status::Received, None));
        // Refused again (a second acknowledgement): nothing changes.
        assert_eq!(
            s.refuse(&[(ids[1].clone(), Refusal::Unreadable)], now)
                .unwrap(),
            0
        );
        assert_eq!(
            s.filing("B2B2-B2B2-B2B2").unwrap().unwrap().refusal,
            Some(Refusal::Replayed)
        );
        // Imported again by staff at the back office: its status comes,
        // the refusal goes, the sealed copy stays dropped and it is not
        // offered again.
        assert!(
            s.set_status("B2B2-B2B2-B2B2", Status::Received, None, now)
                .unwrap()
        );
        let b = s.filing("B2B2-B2B2-B2B2").unwrap().unwrap();
        assert_eq!(
            (b.status, b.refusal, b.sealed),
            (Status::Received, None, None)
        );
        assert_eq!(order(&s), vec![ids[2].clone(), ids[0].clone()]);
        assert!(
            !s.set_status("Z9Z9-Z9Z9-Z9Z9", Status::Received, None, now)
                .unwrap(),
            "no such receipt"
        );
    }

    #[test]
    fn an_old_database_gains_the_receipt_column() {
        let dir = std::env::temp_dir().join(format!(
            "machi-portal-migrate-{}",
            hex::encode(seal::random::<6>().unwrap())
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(SCHEMA).unwrap();
            c.execute(
                "INSERT INTO used_nonces (id, used_at) VALUES ('x', 't')",
                [],
            )
            .unwrap();
        }
        let s = Store::open(&path).unwrap();
        let v: i64 = s
            .conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
        drop(s);
        // Opening again runs nothing twice.
        assert!(Store::open(&path).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

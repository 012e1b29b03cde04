//! The thin layer under the storage API: a transaction on SQLite
//! (rusqlite) or PostgreSQL (postgres), one SQL dialect for both (`$1`
//! placeholders, BIGINT and TEXT columns), values as [`Value`].
//!
//! Storage functions are written once against [`Tx`] and run on a blocking
//! thread: a whole change is one call, not one round trip per statement.

use std::collections::HashMap;

use std::sync::{Arc, LazyLock};

use machi_domain::ids::MunicipalityCode;

use super::StoreError;
use crate::crypto::{Keyring, TenantKeys};

/// A parameter of a statement.
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    Null,
    Int(i64),
    Text(&'a str),
}

impl From<i64> for Param<'_> {
    fn from(v: i64) -> Self {
        Param::Int(v)
    }
}

impl<'a> From<&'a str> for Param<'a> {
    fn from(v: &'a str) -> Self {
        Param::Text(v)
    }
}

impl<'a> From<&'a String> for Param<'a> {
    fn from(v: &'a String) -> Self {
        Param::Text(v.as_str())
    }
}

impl<'a> From<Option<&'a str>> for Param<'a> {
    fn from(v: Option<&'a str>) -> Self {
        v.map_or(Param::Null, Param::Text)
    }
}

impl<'a> From<&'a Option<String>> for Param<'a> {
    fn from(v: &'a Option<String>) -> Self {
        v.as_deref().map_or(Param::Null, Param::Text)
    }
}

impl From<Option<i64>> for Param<'_> {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Param::Null, Param::Int)
    }
}

/// A value read from a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
}

/// A result row; columns by position, in the order of the SELECT list.
#[derive(Debug, Clone)]
pub struct Row(pub Vec<Value>);

fn bad_column(i: usize, want: &str, got: &Value) -> StoreError {
    StoreError::Corrupt(format!("column {i}: expected {want}, found {got:?}"))
}

impl Row {
    fn get(&self, i: usize) -> Result<&Value, StoreError> {
        self.0
            .get(i)
            .ok_or_else(|| StoreError::Corrupt(format!("no column {i}")))
    }

    pub fn int(&self, i: usize) -> Result<i64, StoreError> {
        match self.get(i)? {
            Value::Int(v) => Ok(*v),
            v => Err(bad_column(i, "integer", v)),
        }
    }

    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        match self.get(i)? {
            Value::Int(v) => Ok(Some(*v)),
            Value::Null => Ok(None),
            v => Err(bad_column(i, "integer or null", v)),
        }
    }

    pub fn text(&self, i: usize) -> Result<String, StoreError> {
        match self.get(i)? {
            Value::Text(v) => Ok(v.clone()),
            v => Err(bad_column(i, "text", v)),
        }
    }

    pub fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        match self.get(i)? {
            Value::Text(v) => Ok(Some(v.clone())),
            Value::Null => Ok(None),
            v => Err(bad_column(i, "text or null", v)),
        }
    }
}

/// One value of a [`BulkRows`] batch; text lives in the batch's buffer.
#[derive(Debug, Clone, Copy)]
enum Cell {
    Null,
    Int(i64),
    Text { start: u32, end: u32 },
}

/// Rows for a bulk insert ([`Tx::insert_rows`]): every value of every row in
/// one buffer, so that filling and writing a batch allocates nothing per
/// value, and a batch can be reused once written ([`BulkRows::clear`]).
#[derive(Debug, Clone)]
pub struct BulkRows {
    columns: usize,
    text: Vec<u8>,
    cells: Vec<Cell>,
}

impl BulkRows {
    /// An empty batch of rows of `columns` values each.
    pub fn new(columns: usize) -> Self {
        BulkRows {
            columns,
            text: Vec::new(),
            cells: Vec::new(),
        }
    }

    pub fn clear(&mut self) {
        self.text.clear();
        self.cells.clear();
    }

    /// Complete rows in the batch.
    pub fn rows(&self) -> usize {
        self.cells.len() / self.columns
    }

    pub fn push_null(&mut self) {
        self.cells.push(Cell::Null);
    }

    pub fn push_int(&mut self, v: i64) {
        self.cells.push(Cell::Int(v));
    }

    pub fn push_opt_int(&mut self, v: Option<i64>) {
        self.cells.push(v.map_or(Cell::Null, Cell::Int));
    }

    pub fn push_text(&mut self, s: &str) {
        self.push_text_with(|buf| buf.extend_from_slice(s.as_bytes()));
    }

    pub fn push_opt_text(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.push_text(s),
            None => self.push_null(),
        }
    }

    /// A text value written by `write` straight into the batch's buffer
    /// (which must receive UTF-8 only).
    pub fn push_text_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        let start = self.text.len();
        write(&mut self.text);
        self.cells.push(Cell::Text {
            start: start as u32,
            end: self.text.len() as u32,
        });
    }

    /// Copies row `row` of `from` (of the same width) to the end of this batch.
    pub fn push_row_of(&mut self, from: &BulkRows, row: usize) {
        for c in from.row(row) {
            match *c {
                Cell::Text { start, end } => {
                    let bytes = &from.text[start as usize..end as usize];
                    self.push_text_with(|buf| buf.extend_from_slice(bytes));
                }
                other => self.cells.push(other),
            }
        }
    }

    /// Copies the values at `columns` of row `row` of `from` to the end of
    /// this batch, as one row.
    pub fn push_columns_of(&mut self, from: &BulkRows, row: usize, columns: &[usize]) {
        let cells = from.row(row);
        for &i in columns {
            match cells[i] {
                Cell::Text { start, end } => {
                    let bytes = &from.text[start as usize..end as usize];
                    self.push_text_with(|buf| buf.extend_from_slice(bytes));
                }
                other => self.cells.push(other),
            }
        }
    }

    fn row(&self, row: usize) -> &[Cell] {
        &self.cells[row * self.columns..(row + 1) * self.columns]
    }

    fn bytes(&self, start: u32, end: u32) -> &[u8] {
        &self.text[start as usize..end as usize]
    }

    /// Row `row` as statement parameters.
    pub fn params(&self, row: usize) -> Vec<Param<'_>> {
        self.row(row)
            .iter()
            .map(|c| match *c {
                Cell::Null => Param::Null,
                Cell::Int(v) => Param::Int(v),
                // Only `push_text*` fill the buffer, always with UTF-8.
                Cell::Text { start, end } => {
                    Param::Text(std::str::from_utf8(self.bytes(start, end)).unwrap_or_default())
                }
            })
            .collect()
    }

    /// The batch in PostgreSQL's binary COPY format, header and trailer
    /// included, appended to `out`: integers as BIGINT, texts as TEXT
    /// (the server checks their encoding), no escaping or number parsing.
    pub fn copy_binary(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        out.extend_from_slice(&0i32.to_be_bytes()); // flags
        out.extend_from_slice(&0i32.to_be_bytes()); // no header extension
        let columns = i16::try_from(self.columns).unwrap_or(i16::MAX);
        for row in 0..self.rows() {
            out.extend_from_slice(&columns.to_be_bytes());
            for c in self.row(row) {
                match *c {
                    Cell::Null => out.extend_from_slice(&(-1i32).to_be_bytes()),
                    Cell::Int(v) => {
                        out.extend_from_slice(&8i32.to_be_bytes());
                        out.extend_from_slice(&v.to_be_bytes());
                    }
                    Cell::Text { start, end } => {
                        let bytes = self.bytes(start, end);
                        let len = i32::try_from(bytes.len()).unwrap_or(i32::MAX);
                        out.extend_from_slice(&len.to_be_bytes());
                        out.extend_from_slice(bytes);
                    }
                }
            }
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
    }
}

/// Prepared statements of one PostgreSQL connection, by SQL text.
pub type PgStatements = HashMap<String, postgres::Statement>;

/// What this process asked of its database, counted where it is sent:
/// `/metrics` shows it and `machi bench-http` divides it by requests.
///
/// - `statements`: SQL statements run, `BEGIN`, `COMMIT`, `SAVEPOINT` and
///   `set_config` included (a batch counts each of its statements; on
///   SQLite each row of [`Tx::insert_rows`] is one);
/// - `round_trips` (PostgreSQL only; SQLite runs in the process): each
///   time machi waits for the server: a statement, a batch, a prepare, a
///   COPY's start and its end;
/// - `transactions`: transactions begun (a group commit's is one).
pub struct DbCounters {
    pub statements: prometheus_client::metrics::counter::Counter,
    pub round_trips: prometheus_client::metrics::counter::Counter,
    pub transactions: prometheus_client::metrics::counter::Counter,
}

/// This process's [`DbCounters`].
pub static COUNTERS: LazyLock<DbCounters> = LazyLock::new(|| DbCounters {
    statements: Default::default(),
    round_trips: Default::default(),
    transactions: Default::default(),
});

/// The three counters now: statements, round trips, transactions.
pub fn counts() -> (u64, u64, u64) {
    let c = &*COUNTERS;
    (
        c.statements.get(),
        c.round_trips.get(),
        c.transactions.get(),
    )
}

/// Logs `sql` at trace level (`MACHI_LOG=machi::sql=trace`): what one
/// request sends, statement by statement.
fn trace(sql: &str) {
    tracing::trace!(target: "machi::sql", "{sql}");
}

fn count(statements: u64, round_trips: u64) {
    let c = &*COUNTERS;
    c.statements.inc_by(statements);
    if round_trips > 0 {
        c.round_trips.inc_by(round_trips);
    }
}

/// Statements in a batch of SQL without parameters (`;`-separated; the
/// batches machi sends have no `;` inside a literal).
fn batch_statements(sql: &str) -> u64 {
    sql.split(';').filter(|s| !s.trim().is_empty()).count() as u64
}

/// An open PostgreSQL transaction on a connection: begun by one batch
/// (`BEGIN` and the tenant scope in one round trip), rolled back when
/// dropped uncommitted.
pub(super) struct PgTx<'c> {
    client: &'c mut postgres::Client,
    open: bool,
}

impl<'c> PgTx<'c> {
    /// Runs `begin` (a batch that starts with `BEGIN`) on `client`.
    pub(super) fn begin(client: &'c mut postgres::Client, begin: &str) -> Result<Self, StoreError> {
        Self::begin_or_closed(client, begin).map_err(|(e, _)| e)
    }

    /// [`PgTx::begin`]; a failure says whether the connection was found
    /// closed (then nothing ran on it).
    pub(super) fn begin_or_closed(
        client: &'c mut postgres::Client,
        begin: &str,
    ) -> Result<Self, (StoreError, bool)> {
        COUNTERS.transactions.inc();
        count(batch_statements(begin), 1);
        trace(begin);
        match client.batch_execute(begin) {
            Ok(()) => Ok(PgTx { client, open: true }),
            Err(e) => {
                let closed = client.is_closed();
                if !closed {
                    // The BEGIN may have run and a later statement of the
                    // batch failed: the connection goes back to the pool
                    // outside any transaction (a ROLLBACK without one only
                    // warns).
                    count(1, 1);
                    let _ = client.batch_execute("ROLLBACK");
                }
                Err((e.into(), closed))
            }
        }
    }

    /// Runs `sql` (without parameters) and commits, in one round trip.
    fn commit_after(&mut self, sql: &str) -> Result<(), StoreError> {
        count(batch_statements(sql) + 1, 1);
        if sql.is_empty() {
            self.client.batch_execute("COMMIT")?;
        } else {
            // A failure before the COMMIT leaves the transaction open (and
            // aborted): `open` stays set, so dropping this rolls it back
            // and the connection is not returned inside it.
            self.client.batch_execute(&format!("{sql}; COMMIT"))?;
        }
        self.open = false;
        Ok(())
    }
}

impl Drop for PgTx<'_> {
    fn drop(&mut self) {
        if self.open && !self.client.is_closed() {
            count(1, 1);
            let _ = self.client.batch_execute("ROLLBACK");
        }
    }
}

/// The SQL that begins a PostgreSQL transaction scoped to `tenant`, in one
/// round trip: row-level security reads the tenant from `machi.tenant`.
/// A tenant code is six ASCII digits (checked when parsed), so it is
/// inlined; anything else is refused.
pub(super) fn pg_begin_sql(
    begin: &str,
    tenant: Option<&MunicipalityCode>,
) -> Result<String, StoreError> {
    let scope = tenant.map(|t| t.as_str()).unwrap_or("");
    if !scope.bytes().all(|b| b.is_ascii_digit()) {
        return Err(StoreError::Corrupt(format!("tenant code {scope:?}")));
    }
    Ok(format!(
        "{begin}; SELECT set_config('machi.tenant', '{scope}', true)"
    ))
}

/// An open transaction on either backend, with the keyring of the store
/// (for the values it seals, see [`Tx::tenant_keys`]).
pub struct Tx<'c> {
    conn: Conn<'c>,
    keyring: &'c Keyring,
    /// SQLite: the commit is not to copy the log into the database file
    /// (see [`Tx::defer_checkpoint`]).
    checkpoint_deferred: bool,
    /// The transaction changed who may sign in (see [`Tx::auth_changed`]).
    auth_changed: bool,
    /// The access-log chain head this transaction moved last, when it is
    /// ahead of `tenant_heads` (see [`AuditHead`]).
    audit_head: Option<AuditHead>,
    /// PostgreSQL: commit without waiting for the WAL flush (see
    /// [`Tx::relax_commit`]).
    relaxed: bool,
}

/// A tenant's access-log chain head as this transaction left it
/// (`records::append_next_audit`): the entries after the first that one
/// transaction appends for a tenant take their number and previous hash
/// from here, one INSERT each, and `tenant_heads` is written once, before
/// the commit or before anything else that reads or moves it
/// ([`Tx::flush_audit_head`]). A group commit's readers thus share the
/// head's two updates instead of making two each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHead {
    pub tenant: String,
    /// The number and hash of the last entry appended.
    pub seq: i64,
    pub hash: String,
}

enum Conn<'c> {
    Sqlite(rusqlite::Transaction<'c>),
    Postgres {
        tx: PgTx<'c>,
        statements: &'c mut PgStatements,
    },
}

/// SQLite numbers parameters `?NNN`; the shared dialect writes `$NNN`.
/// (`$` and digits are ASCII, so replacing bytes keeps the text valid UTF-8.)
fn sqlite_sql(sql: &str) -> String {
    let mut bytes = sql.as_bytes().to_vec();
    for i in 0..bytes.len().saturating_sub(1) {
        if bytes[i] == b'$' && bytes[i + 1].is_ascii_digit() {
            bytes[i] = b'?';
        }
    }
    String::from_utf8(bytes).unwrap_or_else(|_| sql.to_string())
}

fn sqlite_params<'a>(params: &'a [Param<'a>]) -> Vec<rusqlite::types::ToSqlOutput<'a>> {
    use rusqlite::types::{ToSqlOutput, ValueRef};
    params
        .iter()
        .map(|p| match p {
            Param::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Param::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Param::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
        .collect()
}

/// SQL NULL of whatever type the statement expects.
#[derive(Debug)]
struct PgNull;

impl postgres::types::ToSql for PgNull {
    fn to_sql(
        &self,
        _: &postgres::types::Type,
        _: &mut bytes::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        Ok(postgres::types::IsNull::Yes)
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

fn pg_params<'a>(params: &'a [Param<'a>]) -> Vec<Box<dyn postgres::types::ToSql + Sync + 'a>> {
    params
        .iter()
        .map(|p| -> Box<dyn postgres::types::ToSql + Sync + 'a> {
            match p {
                Param::Null => Box::new(PgNull),
                Param::Int(v) => Box::new(*v),
                Param::Text(s) => Box::new(*s),
            }
        })
        .collect()
}

fn sqlite_value(v: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(v) => Value::Int(v),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Real(f) => Value::Int(f as i64),
        ValueRef::Blob(b) => Value::Text(String::from_utf8_lossy(b).into_owned()),
    }
}

fn pg_value(row: &postgres::Row, i: usize) -> Result<Value, StoreError> {
    use postgres::types::Type;
    let ty = row.columns()[i].type_().clone();
    Ok(if ty == Type::INT8 {
        row.try_get::<_, Option<i64>>(i)?
            .map_or(Value::Null, Value::Int)
    } else if ty == Type::INT4 {
        row.try_get::<_, Option<i32>>(i)?
            .map_or(Value::Null, |v| Value::Int(v.into()))
    } else if ty == Type::BOOL {
        row.try_get::<_, Option<bool>>(i)?
            .map_or(Value::Null, |v| Value::Int(v.into()))
    } else {
        row.try_get::<_, Option<String>>(i)?
            .map_or(Value::Null, Value::Text)
    })
}

impl<'c> Tx<'c> {
    pub(super) fn sqlite(tx: rusqlite::Transaction<'c>, keyring: &'c Keyring) -> Self {
        // Its BEGIN was sent by the caller.
        COUNTERS.transactions.inc();
        count(1, 0);
        Tx {
            conn: Conn::Sqlite(tx),
            keyring,
            checkpoint_deferred: false,
            auth_changed: false,
            audit_head: None,
            relaxed: false,
        }
    }

    pub(super) fn postgres(
        tx: PgTx<'c>,
        statements: &'c mut PgStatements,
        keyring: &'c Keyring,
    ) -> Self {
        Tx {
            conn: Conn::Postgres { tx, statements },
            keyring,
            checkpoint_deferred: false,
            auth_changed: false,
            audit_head: None,
            relaxed: false,
        }
    }

    /// SQLite: asks that this transaction's commit not copy the log back
    /// into the database file: a bulk load's log holds gigabytes, and its
    /// rows are durable once the log is synced. The writer copies it
    /// afterwards on a thread of its own (`writer::checkpoint_after_deferred`),
    /// while writes go on.
    pub(super) fn defer_checkpoint(&mut self) -> Result<(), StoreError> {
        self.execute_batch("PRAGMA wal_autocheckpoint = 0")?;
        self.checkpoint_deferred = true;
        Ok(())
    }

    pub(super) fn checkpoint_deferred(&self) -> bool {
        self.checkpoint_deferred
    }

    /// PostgreSQL: this transaction commits without waiting for its WAL
    /// flush (`SET LOCAL synchronous_commit = off`, sent in the same round
    /// trip as the COMMIT, so it costs no round trip of its own). SQLite:
    /// nothing (its writer commits in groups already).
    pub fn relax_commit(&mut self) {
        if matches!(self.conn, Conn::Postgres { .. }) {
            self.relaxed = true;
        }
    }

    /// Marks the transaction as one that takes access away (a session or
    /// token ended, an account or client disabled, scopes or roles
    /// changed): once it commits, every caller this store's process has
    /// cached is checked in the database again (`Store::auth_epoch`). On
    /// PostgreSQL it also notifies [`super::listen::AUTH_CHANNEL`] in the
    /// same transaction, so the other processes on the database drop their
    /// cached callers when it commits, and not if it rolls back.
    pub fn mark_auth_changed(&mut self) -> Result<(), StoreError> {
        if self.auth_changed {
            return Ok(());
        }
        if self.backend() == super::Backend::Postgres {
            self.execute(
                "SELECT pg_notify($1, '')",
                &[super::listen::AUTH_CHANNEL.into()],
            )?;
        }
        self.auth_changed = true;
        Ok(())
    }

    /// Whether [`Tx::mark_auth_changed`] was called.
    pub(super) fn auth_changed(&self) -> bool {
        self.auth_changed
    }

    /// Puts back [`Tx::auth_changed`] as it was before a write that a
    /// writer rolled back (its `pg_notify` went with it).
    pub(super) fn restore_auth_changed(&mut self, changed: bool) {
        self.auth_changed = changed;
    }

    /// The keys of `tenant`, to seal what is stored and open what is read.
    pub fn tenant_keys(&self, tenant: &MunicipalityCode) -> Result<Arc<TenantKeys>, StoreError> {
        Ok(self.keyring.tenant(tenant)?)
    }
}

impl Tx<'_> {
    /// Runs a statement; returns the number of rows it changed.
    pub fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        trace(sql);
        match &mut self.conn {
            Conn::Sqlite(tx) => {
                count(1, 0);
                let mut st = tx.prepare_cached(&sqlite_sql(sql))?;
                let ps = sqlite_params(params);
                Ok(st.execute(rusqlite::params_from_iter(ps.iter()))? as u64)
            }
            Conn::Postgres { tx, statements } => {
                count(1, 1);
                let st = pg_statement(tx, statements, sql)?;
                let ps = pg_params(params);
                let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
                    ps.iter().map(|b| b.as_ref()).collect();
                Ok(tx.client.execute(&st, &refs)?)
            }
        }
    }

    /// Runs a query; returns every row.
    pub fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError> {
        let mut out = Vec::new();
        self.query_each(sql, params, |r| {
            out.push(r);
            Ok(())
        })?;
        Ok(out)
    }

    /// Runs a query and hands each row to `f` as it arrives, without
    /// collecting them (exports of a whole tenant).
    pub fn query_each(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        mut f: impl FnMut(Row) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        trace(sql);
        match &mut self.conn {
            Conn::Sqlite(tx) => {
                count(1, 0);
                let mut st = tx.prepare_cached(&sqlite_sql(sql))?;
                let n = st.column_count();
                let ps = sqlite_params(params);
                let mut rows = st.query(rusqlite::params_from_iter(ps.iter()))?;
                while let Some(r) = rows.next()? {
                    let mut vals = Vec::with_capacity(n);
                    for i in 0..n {
                        vals.push(sqlite_value(r.get_ref(i)?));
                    }
                    f(Row(vals))?;
                }
                Ok(())
            }
            Conn::Postgres { tx, statements } => {
                use postgres::fallible_iterator::FallibleIterator;
                count(1, 1);
                let st = pg_statement(tx, statements, sql)?;
                let ps = pg_params(params);
                let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
                    ps.iter().map(|b| b.as_ref()).collect();
                let mut rows = tx.client.query_raw(&st, refs)?;
                while let Some(r) = rows.next()? {
                    let vals = (0..r.len())
                        .map(|i| pg_value(&r, i))
                        .collect::<Result<Vec<_>, _>>()?;
                    f(Row(vals))?;
                }
                Ok(())
            }
        }
    }

    /// Inserts every row of `rows` into `table` (`columns` in the order the
    /// rows hold them): one prepared statement on SQLite, one binary COPY
    /// on PostgreSQL. On PostgreSQL only into a table the current role may
    /// COPY into (no row-level security applies to it: a registry table's
    /// partition, as its owner), whose integer columns are BIGINT (see
    /// [`super::records`]). Returns the rows written.
    pub fn insert_rows(
        &mut self,
        table: &str,
        columns: &str,
        rows: &BulkRows,
    ) -> Result<u64, StoreError> {
        use std::io::Write;
        if rows.rows() == 0 {
            return Ok(0);
        }
        match &mut self.conn {
            Conn::Sqlite(tx) => {
                let values = (1..=rows.columns)
                    .map(|i| format!("?{i}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let mut st = tx.prepare_cached(&format!(
                    "INSERT INTO {table} ({columns}) VALUES ({values})"
                ))?;
                use rusqlite::types::{ToSqlOutput, ValueRef};
                count(rows.rows() as u64, 0);
                for row in 0..rows.rows() {
                    for (i, c) in rows.row(row).iter().enumerate() {
                        let v = match *c {
                            Cell::Null => ValueRef::Null,
                            Cell::Int(v) => ValueRef::Integer(v),
                            Cell::Text { start, end } => ValueRef::Text(rows.bytes(start, end)),
                        };
                        st.raw_bind_parameter(i + 1, ToSqlOutput::Borrowed(v))?;
                    }
                    st.raw_execute()?;
                }
                Ok(rows.rows() as u64)
            }
            Conn::Postgres { tx, .. } => {
                // `COPY … FROM STDIN`, then the data and its end.
                let mut data = Vec::with_capacity(rows.text.len() + rows.cells.len() * 4);
                rows.copy_binary(&mut data);
                count(1, 2);
                let mut w = tx.client.copy_in(&format!(
                    "COPY {table} ({columns}) FROM STDIN (FORMAT binary)"
                ))?;
                w.write_all(&data)
                    .map_err(|e| StoreError::Task(format!("COPY {table}: {e}")))?;
                Ok(w.finish()?)
            }
        }
    }

    /// The first row of a query, if any.
    pub fn query_opt(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// The first row of a query; an error if there is none.
    pub fn query_one(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Row, StoreError> {
        self.query_opt(sql, params)?
            .ok_or_else(|| StoreError::Corrupt(format!("no row from: {sql}")))
    }

    /// The chain head this transaction holds ahead of `tenant_heads`.
    pub fn audit_head(&self) -> Option<&AuditHead> {
        self.audit_head.as_ref()
    }

    /// Holds `head` ahead of `tenant_heads` (written by
    /// [`Tx::flush_audit_head`]); the caller has written every entry up to
    /// it and holds the tenant's head row (it moved it in this transaction).
    pub fn hold_audit_head(&mut self, head: AuditHead) {
        self.audit_head = Some(head);
    }

    /// Writes the held chain head to `tenant_heads`, if any: before the
    /// commit, a savepoint of the caller's, and anything that reads or
    /// moves the head (`records::advance`).
    pub fn flush_audit_head(&mut self) -> Result<(), StoreError> {
        if let Some(h) = self.audit_head.take() {
            let n = self.execute(
                "UPDATE tenant_heads SET audit_seq = $2, audit_hash = $3 WHERE tenant = $1",
                &[
                    h.tenant.as_str().into(),
                    h.seq.into(),
                    h.hash.as_str().into(),
                ],
            )?;
            // Row-level security hides another tenant's row: a head written
            // under the wrong scope must fail, never vanish.
            if n != 1 {
                return Err(StoreError::Corrupt(format!(
                    "the access-log head of tenant {} was not written",
                    h.tenant
                )));
            }
        }
        Ok(())
    }

    /// A writer's view of the held head around one write's savepoint: taken
    /// before it, put back when the savepoint is rolled back.
    pub(super) fn audit_head_snapshot(&self) -> Option<AuditHead> {
        self.audit_head.clone()
    }

    pub(super) fn restore_audit_head(&mut self, head: Option<AuditHead>) {
        self.audit_head = head;
    }

    /// Runs SQL without parameters (e.g. SAVEPOINT). A held chain head is
    /// written first (a savepoint rolled back must not lose or keep it).
    pub fn execute_batch(&mut self, sql: &str) -> Result<(), StoreError> {
        self.flush_audit_head()?;
        self.execute_batch_raw(sql)
    }

    /// [`Tx::execute_batch`] keeping the held chain head: for the writers'
    /// own savepoints, which take and restore it themselves.
    pub(super) fn execute_batch_raw(&mut self, sql: &str) -> Result<(), StoreError> {
        trace(sql);
        match &mut self.conn {
            Conn::Sqlite(tx) => {
                count(batch_statements(sql), 0);
                tx.execute_batch(sql)?
            }
            Conn::Postgres { tx, .. } => {
                count(batch_statements(sql), 1);
                tx.client.batch_execute(sql)?
            }
        }
        Ok(())
    }

    /// SQLite: the pages this connection has written to the log (WAL
    /// frames) since it was opened, `SQLITE_DBSTATUS_CACHE_WRITE`: what a
    /// commit costs the disk, counted (`machi bench`'s breakdown). None on
    /// PostgreSQL.
    pub fn sqlite_pages_written(&self) -> Option<i64> {
        let Conn::Sqlite(tx) = &self.conn else {
            return None;
        };
        let (mut current, mut highest) = (0, 0);
        // SAFETY: the handle is this open connection's, used on its own
        // thread for the duration of the call; sqlite3_db_status only
        // reads counters into the two integers it is given.
        let rc = unsafe {
            rusqlite::ffi::sqlite3_db_status(
                tx.handle(),
                rusqlite::ffi::SQLITE_DBSTATUS_CACHE_WRITE,
                &mut current,
                &mut highest,
                0,
            )
        };
        (rc == rusqlite::ffi::SQLITE_OK).then_some(i64::from(current))
    }

    pub fn backend(&self) -> super::Backend {
        match &self.conn {
            Conn::Sqlite(_) => super::Backend::Sqlite,
            Conn::Postgres { .. } => super::Backend::Postgres,
        }
    }

    pub fn commit(self) -> Result<(), StoreError> {
        self.commit_after("")
    }

    /// Runs `sql` (without parameters, e.g. releasing a savepoint) and
    /// commits: one round trip on PostgreSQL.
    pub(super) fn commit_after(mut self, sql: &str) -> Result<(), StoreError> {
        self.flush_audit_head()?;
        if let Conn::Sqlite(_) = self.conn
            && !sql.is_empty()
        {
            self.execute_batch_raw(sql)?;
        }
        match self.conn {
            Conn::Sqlite(tx) => {
                count(1, 0);
                tx.commit()?
            }
            Conn::Postgres { mut tx, .. } => {
                if self.relaxed {
                    const RELAX: &str = "SET LOCAL synchronous_commit = off";
                    if sql.is_empty() {
                        tx.commit_after(RELAX)?
                    } else {
                        tx.commit_after(&format!("{sql}; {RELAX}"))?
                    }
                } else {
                    tx.commit_after(sql)?
                }
            }
        }
        Ok(())
    }
}

fn pg_statement(
    tx: &mut PgTx<'_>,
    statements: &mut PgStatements,
    sql: &str,
) -> Result<postgres::Statement, StoreError> {
    if let Some(st) = statements.get(sql) {
        return Ok(st.clone());
    }
    count(0, 1);
    let st = tx.client.prepare(sql)?;
    statements.insert(sql.to_string(), st.clone());
    Ok(st)
}

//! The registry's tables: changes, history rows, the current-state
//! projection, counters, the audit chain and the linkage outbox.
//!
//! Every function takes an open transaction, so a change writes its facts,
//! history rows, audit entry and outbox event in one commit.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use machi_domain::change::{ChangeInfo, ChangeReason, HistoryRow};
use machi_domain::dates::DateValue;
use machi_domain::ids::{AddresseeNumber, HouseholdNumber, MunicipalityCode};
use machi_domain::model::ResidentRecord;
use machi_domain::names::search_key;
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{StoreError, Tx};

/// The `prev_hash` of a tenant's first audit entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Columns of the history row that carry its change (j200).
const HISTORY_COLUMNS: &str = "h.addressee_number, h.history_number, h.record, h.change_id, h.reason, h.effective_date, h.processed_on, h.filed_on, h.input_place, h.input_terminal, h.recorded_at, h.cancels";

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn date_key(d: &DateValue) -> Option<String> {
    d.sort_key()
        .map(|(y, m, dd)| format!("{y:04}-{m:02}-{dd:02}"))
}

/// Keys a record is found by: folded names and address (j330), birth date.
pub struct SearchKeys {
    pub name_key: String,
    pub kana_key: String,
    pub address_key: String,
    pub birth_key: Option<String>,
}

/// Separates the names folded into one key, so a partial match never spans two.
const KEY_SEPARATOR: char = '\u{1F}';

impl SearchKeys {
    pub fn of(r: &ResidentRecord) -> Self {
        let mut names = vec![search_key(r.name.as_str())];
        let mut kana = vec![r.name_kana.as_ref().map(|k| search_key(k.as_str())).unwrap_or_default()];
        if let Some(f) = &r.foreign {
            names.push(search_key(&f.alphabet_name));
            if let Some(a) = &f.alias {
                names.push(search_key(a.as_str()));
            }
            if let Some(k) = &f.alias_kana {
                kana.push(search_key(k.as_str()));
            }
        }
        let sep = KEY_SEPARATOR.to_string();
        SearchKeys {
            name_key: names.join(&sep),
            kana_key: kana.join(&sep),
            address_key: search_key(&r.address.full()),
            birth_key: date_key(&r.birth_date),
        }
    }
}

/// The key 個人番号 is looked up by (j600), never the number itself.
pub fn my_number_key(tenant: &MunicipalityCode, number: &str) -> String {
    let mut h = Sha256::new();
    h.update(tenant.as_str().as_bytes());
    h.update(b":");
    h.update(number.as_bytes());
    hex::encode(h.finalize())
}

/// Adds `n` to a tenant's counter and returns the new value; the allocated
/// values are `value - n + 1 ..= value`.
pub async fn bump_counter(
    tx: &mut Tx,
    tenant: &MunicipalityCode,
    name: &str,
    n: i64,
) -> Result<i64, StoreError> {
    let row = sqlx::query(
        "UPDATE counters SET value = value + $3 WHERE tenant = $1 AND name = $2 RETURNING value",
    )
    .bind(tenant.as_str())
    .bind(name)
    .bind(n)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| corrupt(format!("counter {name} missing for tenant {tenant}")))?;
    Ok(row.try_get("value")?)
}

fn history_row(r: &AnyRow) -> Result<HistoryRow, StoreError> {
    let record: String = r.try_get("record")?;
    let record: ResidentRecord =
        serde_json::from_str(&record).map_err(|e| corrupt(format!("history record: {e}")))?;
    let reason: String = r.try_get("reason")?;
    let effective: String = r.try_get("effective_date")?;
    let processed: String = r.try_get("processed_on")?;
    let filed: Option<String> = r.try_get("filed_on")?;
    Ok(HistoryRow {
        history_number: r.try_get("history_number")?,
        record,
        change: ChangeInfo {
            change_id: r.try_get("change_id")?,
            reason: ChangeReason::from_code(&reason).ok_or_else(|| corrupt(format!("reason {reason}")))?,
            effective_date: serde_json::from_str(&effective)
                .map_err(|e| corrupt(format!("effective date: {e}")))?,
            processed_on: parse_day(&processed)?,
            filed_on: filed.as_deref().map(parse_day).transpose()?,
            input_place: r.try_get("input_place")?,
            input_terminal: r.try_get("input_terminal")?,
            recorded_at: r.try_get("recorded_at")?,
            cancels: r.try_get("cancels")?,
        },
    })
}

fn parse_day(s: &str) -> Result<NaiveDate, StoreError> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|e| corrupt(format!("date {s}: {e}")))
}

fn placeholders(start: usize, n: usize) -> String {
    (start..start + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Current rows (any status) of the given persons.
pub async fn current_rows(
    tx: &mut Tx,
    tenant: &MunicipalityCode,
    persons: &[AddresseeNumber],
) -> Result<Vec<HistoryRow>, StoreError> {
    if persons.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {HISTORY_COLUMNS} FROM resident_current c JOIN resident_history h \
         ON h.tenant = c.tenant AND h.addressee_number = c.addressee_number AND h.history_number = c.history_number \
         WHERE c.tenant = $1 AND c.addressee_number IN ({})",
        placeholders(2, persons.len())
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant.as_str());
    for p in persons {
        q = q.bind(p.as_str());
    }
    q.fetch_all(&mut **tx).await?.iter().map(history_row).collect()
}

/// Current rows of the resident members of the given households.
pub async fn household_rows(
    tx: &mut Tx,
    tenant: &MunicipalityCode,
    households: &[HouseholdNumber],
) -> Result<Vec<HistoryRow>, StoreError> {
    if households.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {HISTORY_COLUMNS} FROM resident_current c JOIN resident_history h \
         ON h.tenant = c.tenant AND h.addressee_number = c.addressee_number AND h.history_number = c.history_number \
         WHERE c.tenant = $1 AND c.status = 'resident' AND c.household_number IN ({}) \
         ORDER BY c.addressee_number",
        placeholders(2, households.len())
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant.as_str());
    for h in households {
        q = q.bind(h.as_str());
    }
    q.fetch_all(&mut **tx).await?.iter().map(history_row).collect()
}

/// Persons (any status) holding the given 個人番号 or 住民票コード (j600).
pub async fn rows_by_identity(
    tx: &mut Tx,
    tenant: &MunicipalityCode,
    my_number_key: Option<&str>,
    resident_code: Option<&str>,
) -> Result<Vec<HistoryRow>, StoreError> {
    let sql = format!(
        "SELECT {HISTORY_COLUMNS} FROM resident_current c JOIN resident_history h \
         ON h.tenant = c.tenant AND h.addressee_number = c.addressee_number AND h.history_number = c.history_number \
         WHERE c.tenant = $1 AND (c.my_number_key = $2 OR c.resident_code = $3)"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant.as_str())
        .bind(my_number_key.unwrap_or("-"))
        .bind(resident_code.unwrap_or("-"))
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(history_row)
        .collect()
}

/// One person's whole history, oldest first (j200, j350).
pub async fn history(
    tx: &mut Tx,
    tenant: &MunicipalityCode,
    person: &AddresseeNumber,
) -> Result<Vec<HistoryRow>, StoreError> {
    let sql = format!(
        "SELECT {HISTORY_COLUMNS} FROM resident_history h WHERE h.tenant = $1 AND h.addressee_number = $2 ORDER BY h.history_number"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant.as_str())
        .bind(person.as_str())
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(history_row)
        .collect()
}

/// The whole histories of the persons a change touched.
pub async fn histories_of_change(
    tx: &mut Tx,
    tenant: &MunicipalityCode,
    change_id: i64,
) -> Result<BTreeMap<AddresseeNumber, Vec<HistoryRow>>, StoreError> {
    let sql = format!(
        "SELECT {HISTORY_COLUMNS} FROM resident_history h WHERE h.tenant = $1 AND h.addressee_number IN \
         (SELECT addressee_number FROM resident_history WHERE tenant = $1 AND change_id = $2) \
         ORDER BY h.addressee_number, h.history_number"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant.as_str())
        .bind(change_id)
        .fetch_all(&mut **tx)
        .await?;
    let mut out: BTreeMap<AddresseeNumber, Vec<HistoryRow>> = BTreeMap::new();
    for r in &rows {
        let h = history_row(r)?;
        out.entry(h.record.addressee_number.clone()).or_default().push(h);
    }
    Ok(out)
}

/// Every person who was ever in a household, with their whole history.
pub async fn household_histories(
    tx: &mut Tx,
    tenant: &MunicipalityCode,
    household: &HouseholdNumber,
) -> Result<BTreeMap<AddresseeNumber, Vec<HistoryRow>>, StoreError> {
    let sql = format!(
        "SELECT {HISTORY_COLUMNS} FROM resident_history h WHERE h.tenant = $1 AND h.addressee_number IN \
         (SELECT addressee_number FROM resident_history WHERE tenant = $1 AND household_number = $2) \
         ORDER BY h.addressee_number, h.history_number"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant.as_str())
        .bind(household.as_str())
        .fetch_all(&mut **tx)
        .await?;
    let mut out: BTreeMap<AddresseeNumber, Vec<HistoryRow>> = BTreeMap::new();
    for r in &rows {
        let h = history_row(r)?;
        out.entry(h.record.addressee_number.clone()).or_default().push(h);
    }
    Ok(out)
}

/// A change as the `changes` table records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChangeRecord {
    pub change_id: i64,
    pub reason: ChangeReason,
    pub effective_date: DateValue,
    pub processed_on: NaiveDate,
    pub filed_on: Option<NaiveDate>,
    pub input_place: String,
    pub input_terminal: String,
    pub operator: String,
    pub recorded_at: i64,
    pub cancels: Option<i64>,
    /// The request as submitted (JSON).
    pub request: serde_json::Value,
    pub notices: serde_json::Value,
    /// The persons whose history the change appended to.
    pub persons: Vec<AddresseeNumber>,
}

pub async fn insert_change(
    tx: &mut Tx,
    tenant: &MunicipalityCode,
    c: &ChangeRecord,
) -> Result<(), StoreError> {
    let persons: Vec<&str> = c.persons.iter().map(|p| p.as_str()).collect();
    sqlx::query(
        "INSERT INTO changes (tenant, change_id, reason, effective_date, effective_key, processed_on, filed_on, \
         input_place, input_terminal, operator, recorded_at, cancels, request, notices, persons) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(tenant.as_str())
    .bind(c.change_id)
    .bind(c.reason.code())
    .bind(serde_json::to_string(&c.effective_date).map_err(|e| corrupt(e))?)
    .bind(date_key(&c.effective_date))
    .bind(c.processed_on.to_string())
    .bind(c.filed_on.map(|d| d.to_string()))
    .bind(&c.input_place)
    .bind(&c.input_terminal)
    .bind(&c.operator)
    .bind(c.recorded_at)
    .bind(c.cancels)
    .bind(c.request.to_string())
    .bind(c.notices.to_string())
    .bind(serde_json::to_string(&persons).map_err(|e| corrupt(e))?)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::from_db)?;
    Ok(())
}

fn change_record(r: &AnyRow) -> Result<ChangeRecord, StoreError> {
    let reason: String = r.try_get("reason")?;
    let effective: String = r.try_get("effective_date")?;
    let processed: String = r.try_get("processed_on")?;
    let filed: Option<String> = r.try_get("filed_on")?;
    let request: String = r.try_get("request")?;
    let notices: String = r.try_get("notices")?;
    let persons: String = r.try_get("persons")?;
    let persons: Vec<String> = serde_json::from_str(&persons).map_err(corrupt)?;
    Ok(ChangeRecord {
        change_id: r.try_get("change_id")?,
        reason: ChangeReason::from_code(&reason).ok_or_else(|| corrupt(format!("reason {reason}")))?,
        effective_date: serde_json::from_str(&effective).map_err(corrupt)?,
        processed_on: parse_day(&processed)?,
        filed_on: filed.as_deref().map(parse_day).transpose()?,
        input_place: r.try_get("input_place")?,
        input_terminal: r.try_get("input_terminal")?,
        operator: r.try_get("operator")?,
        recorded_at: r.try_get("recorded_at")?,
        cancels: r.try_get("cancels")?,
        request: serde_json::from_str(&request).map_err(corrupt)?,
        notices: serde_json::from_str(&notices).map_err(corrupt)?,
        persons: persons
            .iter()
            .map(|p| p.parse().map_err(|_| corrupt(format!("addressee {p}"))))
            .collect::<Result<_, _>>()?,
    })
}

const CHANGE_COLUMNS: &str = "change_id, reason, effective_date, processed_on, filed_on, input_place, input_terminal, operator, recorded_at, cancels, request, notices, persons";

pub async fn get_change(
    tx: &mut Tx,
    tenant: &MunicipalityCode,
    change_id: i64,
) -> Result<Option<ChangeRecord>, StoreError> {
    let sql = format!("SELECT {CHANGE_COLUMNS} FROM changes WHERE tenant = $1 AND change_id = $2");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant.as_str())
        .bind(change_id)
        .fetch_optional(&mut **tx)
        .await?
        .as_ref()
        .map(change_record)
        .transpose()
}

/// Whether a cancellation of `change_id` has been recorded.
pub async fn cancellation_of(
    tx: &mut Tx,
    tenant: &MunicipalityCode,
    change_id: i64,
) -> Result<Option<i64>, StoreError> {
    let row = sqlx::query("SELECT change_id FROM changes WHERE tenant = $1 AND cancels = $2")
        .bind(tenant.as_str())
        .bind(change_id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(match row {
        Some(r) => Some(r.try_get("change_id")?),
        None => None,
    })
}

/// Changes newest first, after the cursor (a change id).
pub async fn list_changes(
    tx: &mut Tx,
    tenant: &MunicipalityCode,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<ChangeRecord>, StoreError> {
    let sql = format!(
        "SELECT {CHANGE_COLUMNS} FROM changes WHERE tenant = $1 AND change_id < $2 ORDER BY change_id DESC LIMIT $3"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant.as_str())
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(change_record)
        .collect()
}

/// Appends a history row and points the current-state projection at it.
pub async fn append_history(
    tx: &mut Tx,
    tenant: &MunicipalityCode,
    row: &HistoryRow,
) -> Result<(), StoreError> {
    let r = &row.record;
    let keys = SearchKeys::of(r);
    let record = serde_json::to_string(r).map_err(corrupt)?;
    let status = serde_json::to_value(r.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let c = &row.change;
    sqlx::query(
        "INSERT INTO resident_history (tenant, addressee_number, history_number, change_id, household_number, status, \
         name_key, kana_key, address_key, birth_key, record, reason, effective_date, effective_key, processed_on, filed_on, \
         input_place, input_terminal, recorded_at, cancels) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)",
    )
    .bind(tenant.as_str())
    .bind(r.addressee_number.as_str())
    .bind(row.history_number)
    .bind(c.change_id)
    .bind(r.household_number.as_str())
    .bind(&status)
    .bind(&keys.name_key)
    .bind(&keys.kana_key)
    .bind(&keys.address_key)
    .bind(keys.birth_key.clone())
    .bind(record)
    .bind(c.reason.code())
    .bind(serde_json::to_string(&c.effective_date).map_err(corrupt)?)
    .bind(date_key(&c.effective_date))
    .bind(c.processed_on.to_string())
    .bind(c.filed_on.map(|d| d.to_string()))
    .bind(&c.input_place)
    .bind(&c.input_terminal)
    .bind(c.recorded_at)
    .bind(c.cancels)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::from_db)?;
    sqlx::query(
        "INSERT INTO resident_current (tenant, addressee_number, history_number, household_number, status, name_key, \
         kana_key, address_key, birth_key, my_number_key, resident_code) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (tenant, addressee_number) DO UPDATE SET history_number = excluded.history_number, \
         household_number = excluded.household_number, status = excluded.status, name_key = excluded.name_key, \
         kana_key = excluded.kana_key, address_key = excluded.address_key, birth_key = excluded.birth_key, \
         my_number_key = excluded.my_number_key, resident_code = excluded.resident_code",
    )
    .bind(tenant.as_str())
    .bind(r.addressee_number.as_str())
    .bind(row.history_number)
    .bind(r.household_number.as_str())
    .bind(status)
    .bind(keys.name_key)
    .bind(keys.kana_key)
    .bind(keys.address_key)
    .bind(keys.birth_key)
    .bind(r.my_number.as_ref().map(|n| my_number_key(tenant, n.as_str())))
    .bind(r.resident_code.as_ref().map(|c| c.as_str().to_string()))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// One entry of the access log (j1370).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditEntry {
    pub operator: String,
    pub terminal: String,
    /// What was done, e.g. `change.move_in`, `resident.read`, `search`.
    pub function: String,
    /// The record(s) concerned, e.g. addressee numbers.
    pub target: String,
    /// Free detail (JSON).
    pub detail: String,
    /// Whether 個人番号 was shown to the operator.
    pub my_number_shown: bool,
}

/// The hash that chains an audit entry to the one before it.
pub fn audit_hash(tenant: &MunicipalityCode, seq: i64, at: i64, prev: &str, e: &AuditEntry) -> String {
    let mut h = Sha256::new();
    for part in [
        tenant.as_str(),
        &seq.to_string(),
        &at.to_string(),
        prev,
        &e.operator,
        &e.terminal,
        &e.function,
        &e.target,
        &e.detail,
        if e.my_number_shown { "1" } else { "0" },
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Appends an audit entry to the tenant's hash chain; returns its sequence number.
pub async fn append_audit(
    tx: &mut Tx,
    tenant: &MunicipalityCode,
    at: i64,
    e: &AuditEntry,
) -> Result<i64, StoreError> {
    let head = sqlx::query("UPDATE audit_head SET seq = seq + 1 WHERE tenant = $1 RETURNING seq, hash")
        .bind(tenant.as_str())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| corrupt(format!("audit chain missing for tenant {tenant}")))?;
    let seq: i64 = head.try_get("seq")?;
    let prev: String = head.try_get("hash")?;
    let hash = audit_hash(tenant, seq, at, &prev, e);
    sqlx::query(
        "INSERT INTO audit_log (tenant, seq, at, operator, terminal, function, target, detail, my_number_shown, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(tenant.as_str())
    .bind(seq)
    .bind(at)
    .bind(&e.operator)
    .bind(&e.terminal)
    .bind(&e.function)
    .bind(&e.target)
    .bind(&e.detail)
    .bind(i64::from(e.my_number_shown))
    .bind(&prev)
    .bind(&hash)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE audit_head SET hash = $2 WHERE tenant = $1")
        .bind(tenant.as_str())
        .bind(&hash)
        .execute(&mut **tx)
        .await?;
    Ok(seq)
}

/// A stored audit entry with its chain fields.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredAudit {
    pub seq: i64,
    pub at: i64,
    pub prev_hash: String,
    pub hash: String,
    #[serde(flatten)]
    pub entry: AuditEntry,
}

/// Audit entries in order, after `after_seq`.
pub async fn audit_entries(
    tx: &mut Tx,
    tenant: &MunicipalityCode,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<StoredAudit>, StoreError> {
    let rows = sqlx::query(
        "SELECT seq, at, operator, terminal, function, target, detail, my_number_shown, prev_hash, hash \
         FROM audit_log WHERE tenant = $1 AND seq > $2 ORDER BY seq LIMIT $3",
    )
    .bind(tenant.as_str())
    .bind(after_seq)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(StoredAudit {
                seq: r.try_get("seq")?,
                at: r.try_get("at")?,
                prev_hash: r.try_get("prev_hash")?,
                hash: r.try_get("hash")?,
                entry: AuditEntry {
                    operator: r.try_get("operator")?,
                    terminal: r.try_get("terminal")?,
                    function: r.try_get("function")?,
                    target: r.try_get("target")?,
                    detail: r.try_get("detail")?,
                    my_number_shown: r.try_get::<i64, _>("my_number_shown")? != 0,
                },
            })
        })
        .collect()
}

/// Appends a linkage event to the tenant's outbox; returns its sequence number.
/// The event id `{tenant}-{seq}` is stable, so a consumer applies it once.
pub async fn append_event(
    tx: &mut Tx,
    tenant: &MunicipalityCode,
    kind: &str,
    change_id: Option<i64>,
    payload: &serde_json::Value,
    at: i64,
) -> Result<i64, StoreError> {
    let seq = bump_counter(tx, tenant, "event", 1).await?;
    sqlx::query(
        "INSERT INTO outbox (tenant, seq, event_id, kind, change_id, payload, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(tenant.as_str())
    .bind(seq)
    .bind(format!("{tenant}-{seq}"))
    .bind(kind)
    .bind(change_id)
    .bind(payload.to_string())
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(seq)
}

/// A linkage event as stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OutboxEvent {
    pub seq: i64,
    pub event_id: String,
    pub kind: String,
    pub change_id: Option<i64>,
    pub payload: serde_json::Value,
    pub created_at: i64,
}

pub async fn events_after(
    tx: &mut Tx,
    tenant: &MunicipalityCode,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<OutboxEvent>, StoreError> {
    let rows = sqlx::query(
        "SELECT seq, event_id, kind, change_id, payload, created_at FROM outbox WHERE tenant = $1 AND seq > $2 ORDER BY seq LIMIT $3",
    )
    .bind(tenant.as_str())
    .bind(after_seq)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|r| {
            let payload: String = r.try_get("payload")?;
            Ok(OutboxEvent {
                seq: r.try_get("seq")?,
                event_id: r.try_get("event_id")?,
                kind: r.try_get("kind")?,
                change_id: r.try_get("change_id")?,
                payload: serde_json::from_str(&payload).map_err(corrupt)?,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect()
}

/// Search filters over current records (j340). Keys are already folded.
#[derive(Debug, Clone, Default)]
pub struct SearchFilter {
    pub name_key: Option<String>,
    pub kana_key: Option<String>,
    pub address_key: Option<String>,
    pub birth_key: Option<String>,
    pub addressee_number: Option<AddresseeNumber>,
    pub household_number: Option<HouseholdNumber>,
    /// Also match names and addresses of past history rows (j340).
    pub include_history: bool,
    /// Also return persons who are no longer residents (除票).
    pub include_removed: bool,
}

fn like_pattern(key: &str) -> String {
    let mut out = String::from("%");
    for ch in key.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('%');
    out
}

/// Current rows matching `f`, by addressee number, after `after`.
pub async fn search(
    tx: &mut Tx,
    tenant: &MunicipalityCode,
    f: &SearchFilter,
    after: Option<&AddresseeNumber>,
    limit: i64,
) -> Result<Vec<HistoryRow>, StoreError> {
    let mut conds: Vec<String> = vec!["c.tenant = $1".into()];
    let mut binds: Vec<String> = vec![tenant.as_str().to_string()];
    let mut bind = |binds: &mut Vec<String>, v: String| {
        binds.push(v);
        format!("${}", binds.len())
    };
    let source = if f.include_history { "resident_history" } else { "resident_current" };
    let mut sub: Vec<String> = Vec::new();
    for (col, key) in [
        ("name_key", &f.name_key),
        ("kana_key", &f.kana_key),
        ("address_key", &f.address_key),
    ] {
        if let Some(k) = key {
            let p = bind(&mut binds, like_pattern(k));
            sub.push(format!("{col} LIKE {p} ESCAPE '\\'"));
        }
    }
    if !sub.is_empty() {
        if f.include_history {
            conds.push(format!(
                "c.addressee_number IN (SELECT addressee_number FROM {source} WHERE tenant = $1 AND {})",
                sub.join(" AND ")
            ));
        } else {
            conds.extend(sub.into_iter().map(|s| format!("c.{s}")));
        }
    }
    if let Some(b) = &f.birth_key {
        let p = bind(&mut binds, b.clone());
        conds.push(format!("c.birth_key = {p}"));
    }
    if let Some(a) = &f.addressee_number {
        let p = bind(&mut binds, a.as_str().to_string());
        conds.push(format!("c.addressee_number = {p}"));
    }
    if let Some(h) = &f.household_number {
        let p = bind(&mut binds, h.as_str().to_string());
        conds.push(format!("c.household_number = {p}"));
    }
    if !f.include_removed {
        conds.push("c.status = 'resident'".into());
    }
    if let Some(a) = after {
        let p = bind(&mut binds, a.as_str().to_string());
        conds.push(format!("c.addressee_number > {p}"));
    }
    let limit_p = format!("${}", binds.len() + 1);
    let sql = format!(
        "SELECT {HISTORY_COLUMNS} FROM resident_current c JOIN resident_history h \
         ON h.tenant = c.tenant AND h.addressee_number = c.addressee_number AND h.history_number = c.history_number \
         WHERE {} ORDER BY c.addressee_number LIMIT {limit_p}",
        conds.join(" AND ")
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for b in binds {
        q = q.bind(b);
    }
    q.bind(limit)
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(history_row)
        .collect()
}

/// Counts of the tenant's current records: (residents, households).
pub async fn counts(tx: &mut Tx, tenant: &MunicipalityCode) -> Result<(i64, i64), StoreError> {
    let r = sqlx::query(
        "SELECT COUNT(*) AS n, COUNT(DISTINCT household_number) AS h FROM resident_current WHERE tenant = $1 AND status = 'resident'",
    )
    .bind(tenant.as_str())
    .fetch_one(&mut **tx)
    .await?;
    Ok((r.try_get("n")?, r.try_get("h")?))
}

//! The registry's tables: changes, history rows, the current-state
//! projection, counters, the audit chain and the linkage outbox.
//!
//! Every function takes an open transaction, so a change writes its facts,
//! history rows, audit entry and outbox event in one commit.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use machi_domain::change::{ChangeInfo, ChangeReason, HistoryRow};
use machi_domain::dates::DateValue;
use machi_domain::ids::{AddresseeNumber, HouseholdNumber, MunicipalityCode};
use machi_domain::model::{ResidentRecord, ResidentStatus};
use machi_domain::names::search_key;
use sha2::{Digest, Sha256};

use super::StoreError;
use super::db::{BulkRows, Param, Row, Tx};
use super::record_format;
use crate::crypto::{NoncePool, SealError, TenantKeys};

/// The `prev_hash` of a tenant's first audit entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Columns of the history row that carry its change (j200), and those a
/// stored record of the v2 form leaves to the row ([`record_format`]).
/// In this order: see [`history_row`].
const HISTORY_COLUMNS: &str = "h.history_number, h.record, h.change_id, h.reason, h.effective_date, h.processed_on, h.filed_on, h.input_place, h.input_terminal, h.recorded_at, h.cancels, h.my_number_key, h.addressee_number, h.household_number, h.status";

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// The sortable `YYYY-MM-DD` key of a date (its earliest day; None for 年月日不詳).
pub fn date_key(d: &DateValue) -> Option<String> {
    d.sort_key()
        .map(|(y, m, dd)| format!("{y:04}-{m:02}-{dd:02}"))
}

/// Separates the names folded into one key, so a partial match never spans two.
const KEY_SEPARATOR: char = '\u{1F}';

/// The names folded into `name_key`: the name, and a foreign resident's
/// alphabet name and alias.
fn name_parts(r: &ResidentRecord) -> Vec<&str> {
    let mut parts = vec![r.name.as_str()];
    if let Some(f) = &r.foreign {
        parts.push(&f.alphabet_name);
        if let Some(a) = &f.alias {
            parts.push(a.as_str());
        }
    }
    parts
}

/// The furigana folded into `kana_key` (an absent one folds to "").
fn kana_parts(r: &ResidentRecord) -> Vec<&str> {
    let mut parts = vec![r.name_kana.as_ref().map_or("", |k| k.as_str())];
    if let Some(k) = r.foreign.as_ref().and_then(|f| f.alias_kana.as_ref()) {
        parts.push(k.as_str());
    }
    parts
}

/// The search keys of `parts` ([`FoldCache::key`]), joined by [`KEY_SEPARATOR`].
fn write_key(out: &mut Vec<u8>, parts: &[&str], folds: &mut FoldCache) {
    let mut sep = [0u8; 4];
    let sep = KEY_SEPARATOR.encode_utf8(&mut sep).as_bytes();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(sep);
        }
        out.extend_from_slice(folds.key(p).as_bytes());
    }
}

/// The search keys of recently folded texts: a bulk load folds the same
/// names (a person's rows) and addresses (a household's members) over and
/// over. Direct-mapped by a hash of the text.
#[derive(Default)]
pub struct FoldCache {
    slots: Vec<Option<(String, String)>>,
}

impl FoldCache {
    const SLOTS: usize = 256;

    /// The [`search_key`] of `s`.
    pub fn key(&mut self, s: &str) -> &str {
        if self.slots.is_empty() {
            self.slots = vec![None; Self::SLOTS];
        }
        // FNV-1a: good enough to spread short texts over the slots.
        let mut h: u32 = 0x811c_9dc5;
        for b in s.bytes() {
            h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
        let slot = &mut self.slots[h as usize % Self::SLOTS];
        if slot.as_ref().is_none_or(|(text, _)| text != s) {
            *slot = Some((s.to_string(), search_key(s)));
        }
        slot.as_ref().map_or("", |(_, key)| key.as_str())
    }
}

/// The key 個人番号 is looked up by (j600), never the number itself: an
/// HMAC with the tenant's index key (see [`TenantKeys::my_number_key`]).
pub fn my_number_key(
    tx: &Tx<'_>,
    tenant: &MunicipalityCode,
    number: &str,
) -> Result<String, StoreError> {
    Ok(tx.tenant_keys(tenant)?.my_number_key(number))
}

/// What a sealed 個人番号 in a history row is bound to: its person.
fn record_context(a: &str) -> String {
    format!("resident_history.record/{a}")
}

/// What a sealed 個人番号 in a change's request is bound to: its change.
fn request_context(change_id: i64) -> String {
    format!("changes.request/{change_id}")
}

/// Reads a record stored by [`HistoryEncoder`] (or in the earlier v1 form,
/// see [`record_format`]), opening its 個人番号, and checks it against the
/// row's lookup key (`my_number_key`). A number that does not open, one
/// stored in plain text, or one that disagrees with the lookup key (a
/// number or key removed or altered) is an error.
pub fn open_record(
    keys: &TenantKeys,
    json: &str,
    columns: record_format::RowColumns<'_>,
    lookup_key: Option<&str>,
) -> Result<ResidentRecord, StoreError> {
    let stored = record_format::read(json, columns).map_err(corrupt)?;
    if stored.plain_my_number {
        return Err(SealError::Unsealed.into());
    }
    let mut record = stored.record;
    if let Some(sealed) = stored.sealed_my_number {
        let plain = keys.open_str(&record_context(record.addressee_number.as_str()), &sealed)?;
        record.my_number = Some(plain.parse().map_err(|_| SealError::Malformed)?);
    }
    let agrees = match (&record.my_number, lookup_key) {
        (None, None) => true,
        (Some(n), Some(k)) => keys.my_number_key(n.as_str()) == k,
        _ => false,
    };
    if agrees {
        Ok(record)
    } else {
        Err(SealError::Inconsistent.into())
    }
}

/// Applies `f` to every string under a `my_number` key, at any depth.
fn each_my_number(
    v: &mut serde_json::Value,
    f: &mut impl FnMut(&str) -> Result<String, SealError>,
) -> Result<(), SealError> {
    match v {
        serde_json::Value::Object(map) => {
            for (k, x) in map.iter_mut() {
                match x {
                    serde_json::Value::String(s) if k == "my_number" => *s = f(s)?,
                    _ => each_my_number(x, f)?,
                }
            }
        }
        serde_json::Value::Array(items) => {
            for x in items {
                each_my_number(x, f)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// A change's request as stored: every `my_number` in it sealed.
fn seal_request(
    keys: &TenantKeys,
    change_id: i64,
    request: &serde_json::Value,
) -> Result<String, StoreError> {
    seal_json(keys, &request_context(change_id), request)
}

/// Reads a request stored by [`seal_request`], opening every `my_number`.
fn open_request(
    keys: &TenantKeys,
    change_id: i64,
    stored: &str,
) -> Result<serde_json::Value, StoreError> {
    open_json(keys, &request_context(change_id), stored)
}

/// JSON as stored: every `my_number` in it sealed, bound to `context`
/// (the table and row it lives in).
pub fn seal_json(
    keys: &TenantKeys,
    context: &str,
    value: &serde_json::Value,
) -> Result<String, StoreError> {
    let mut v = value.clone();
    each_my_number(&mut v, &mut |plain| keys.seal_str(context, plain))?;
    Ok(v.to_string())
}

/// Reads JSON stored by [`seal_json`] with the same `context`, opening
/// every `my_number`.
pub fn open_json(
    keys: &TenantKeys,
    context: &str,
    stored: &str,
) -> Result<serde_json::Value, StoreError> {
    let mut v: serde_json::Value = serde_json::from_str(stored).map_err(corrupt)?;
    each_my_number(&mut v, &mut |sealed| {
        if !sealed.contains(':') {
            return Err(SealError::Unsealed);
        }
        keys.open_str(context, sealed).map(|p| p.to_string())
    })?;
    Ok(v)
}

/// How much to advance each of a tenant's sequences.
#[derive(Debug, Clone, Copy, Default)]
pub struct Advance {
    pub addressee: i64,
    pub household: i64,
    pub change: i64,
    pub event: i64,
    pub audit: i64,
}

/// Takes the tenant's write lock before a change reads anything, so that
/// changes of one tenant see each other's effects (on PostgreSQL the row
/// lock waits for the previous change to commit; SQLite has one writer).
/// False if the tenant does not exist.
pub fn lock_tenant(tx: &mut Tx<'_>, tenant: &MunicipalityCode) -> Result<bool, StoreError> {
    if tx.backend() == super::Backend::Sqlite {
        // One writer at a time already; the tenant is known to exist
        // (callers check it before writing).
        return Ok(true);
    }
    let n = tx.execute(
        "UPDATE tenant_heads SET change_seq = change_seq WHERE tenant = $1",
        &[tenant.as_str().into()],
    )?;
    Ok(n == 1)
}

/// A tenant's sequences after an [`advance`], and the hash of the last
/// audit entry before it.
#[derive(Debug, Clone)]
pub struct Heads {
    pub addressee: i64,
    pub household: i64,
    pub change: i64,
    pub event: i64,
    pub audit: i64,
    pub audit_hash: String,
}

/// Advances the tenant's sequences in one statement (which also serialises
/// the tenant's writers on PostgreSQL). The allocated values of a sequence
/// advanced by `n` are `value - n + 1 ..= value`.
pub fn advance(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    a: Advance,
) -> Result<Heads, StoreError> {
    // A chain head held ahead of the row is written first.
    tx.flush_audit_head()?;
    let r = tx
        .query_opt(
            "UPDATE tenant_heads SET addressee_seq = addressee_seq + $2, household_seq = household_seq + $3, \
             change_seq = change_seq + $4, event_seq = event_seq + $5, audit_seq = audit_seq + $6 \
             WHERE tenant = $1 RETURNING addressee_seq, household_seq, change_seq, event_seq, audit_seq, audit_hash",
            &[
                tenant.as_str().into(),
                a.addressee.into(),
                a.household.into(),
                a.change.into(),
                a.event.into(),
                a.audit.into(),
            ],
        )?
        .ok_or_else(|| corrupt(format!("sequences missing for tenant {tenant}")))?;
    Ok(Heads {
        addressee: r.int(0)?,
        household: r.int(1)?,
        change: r.int(2)?,
        event: r.int(3)?,
        audit: r.int(4)?,
        audit_hash: r.text(5)?,
    })
}

fn history_row(keys: &TenantKeys, r: &Row) -> Result<HistoryRow, StoreError> {
    let (a, h, status) = (r.text(12)?, r.text(13)?, r.text(14)?);
    let columns = record_format::RowColumns {
        addressee_number: &a,
        household_number: &h,
        status: &status,
    };
    let record = open_record(keys, &r.text(1)?, columns, r.opt_text(11)?.as_deref())?;
    let reason = r.text(3)?;
    Ok(HistoryRow {
        history_number: r.int(0)?,
        record,
        change: ChangeInfo {
            change_id: r.int(2)?,
            reason: ChangeReason::from_code(&reason)
                .ok_or_else(|| corrupt(format!("reason {reason}")))?,
            effective_date: record_format::read_date(&r.text(4)?)
                .map_err(|e| corrupt(format!("effective date: {e}")))?,
            processed_on: parse_day(&r.text(5)?)?,
            filed_on: r.opt_text(6)?.as_deref().map(parse_day).transpose()?,
            input_place: r.text(7)?,
            input_terminal: r.text(8)?,
            recorded_at: r.int(9)?,
            cancels: r.opt_int(10)?,
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

const CURRENT_JOIN: &str = "FROM resident_current c JOIN resident_history h \
     ON h.tenant = c.tenant AND h.addressee_number = c.addressee_number AND h.history_number = c.history_number";

fn rows(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    sql: &str,
    params: &[Param<'_>],
) -> Result<Vec<HistoryRow>, StoreError> {
    let keys = tx.tenant_keys(tenant)?;
    tx.query(sql, params)?
        .iter()
        .map(|r| history_row(&keys, r))
        .collect()
}

/// Opens one stored 個人番号, if there is any, so that a store opened with
/// a different master key fails at start rather than at its first read. (On
/// PostgreSQL, rows hidden by row-level security from the configured user
/// are not checked.)
pub fn check_keyring(tx: &mut Tx<'_>) -> Result<(), StoreError> {
    let Some(r) = tx.query_opt(
        "SELECT tenant, record, my_number_key, addressee_number, household_number, status \
         FROM resident_history WHERE my_number_key IS NOT NULL LIMIT 1",
        &[],
    )?
    else {
        return Ok(());
    };
    let tenant: MunicipalityCode = r
        .text(0)?
        .parse()
        .map_err(|_| corrupt("tenant of a history row"))?;
    let keys = tx.tenant_keys(&tenant)?;
    let (a, h, status) = (r.text(3)?, r.text(4)?, r.text(5)?);
    let columns = record_format::RowColumns {
        addressee_number: &a,
        household_number: &h,
        status: &status,
    };
    open_record(&keys, &r.text(1)?, columns, r.opt_text(2)?.as_deref()).map(|_| ())
}

/// Current rows (any status) of the given persons, and the current rows of
/// the resident members of their households and of `households`: what a
/// change needs to be planned. A person may appear twice; callers key by person.
pub fn change_context(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    persons: &[AddresseeNumber],
    households: &[HouseholdNumber],
) -> Result<Vec<HistoryRow>, StoreError> {
    let mut out = Vec::new();
    let mut households: Vec<HouseholdNumber> = households.to_vec();
    if !persons.is_empty() {
        let sql = format!(
            "SELECT {HISTORY_COLUMNS} {CURRENT_JOIN} WHERE c.tenant = $1 AND c.addressee_number IN ({})",
            placeholders(2, persons.len())
        );
        let mut params: Vec<Param<'_>> = vec![tenant.as_str().into()];
        params.extend(persons.iter().map(|p| Param::Text(p.as_str())));
        for row in rows(tx, tenant, &sql, &params)? {
            if row.record.status.is_resident() && !households.contains(&row.record.household_number)
            {
                households.push(row.record.household_number.clone());
            }
            out.push(row);
        }
    }
    out.extend(household_rows(tx, tenant, &households)?);
    Ok(out)
}

/// Current rows of the resident members of the given households.
pub fn household_rows(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    households: &[HouseholdNumber],
) -> Result<Vec<HistoryRow>, StoreError> {
    if households.is_empty() {
        return Ok(Vec::new());
    }
    // No ORDER BY: SQLite would walk the whole tenant in key order rather
    // than sort the few members it finds through the household index.
    let sql = format!(
        "SELECT {HISTORY_COLUMNS} {CURRENT_JOIN} WHERE c.tenant = $1 AND c.status = 'resident' \
         AND c.household_number IN ({})",
        placeholders(2, households.len())
    );
    let mut params: Vec<Param<'_>> = vec![tenant.as_str().into()];
    params.extend(households.iter().map(|h| Param::Text(h.as_str())));
    let mut found = rows(tx, tenant, &sql, &params)?;
    found.sort_by(|a, b| a.record.addressee_number.cmp(&b.record.addressee_number));
    Ok(found)
}

/// Persons (any status) holding the given 個人番号 or 住民票コード (j600).
pub fn rows_by_identity(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    my_number_key: Option<&str>,
    resident_code: Option<&str>,
) -> Result<Vec<HistoryRow>, StoreError> {
    // Two indexed lookups (an OR would scan the tenant).
    let mut found = Vec::new();
    if let Some(key) = my_number_key {
        let sql = format!(
            "SELECT {HISTORY_COLUMNS} {CURRENT_JOIN} WHERE c.tenant = $1 AND c.my_number_key = $2"
        );
        found.extend(rows(
            tx,
            tenant,
            &sql,
            &[tenant.as_str().into(), key.into()],
        )?);
    }
    if let Some(code) = resident_code {
        let sql = format!(
            "SELECT {HISTORY_COLUMNS} {CURRENT_JOIN} WHERE c.tenant = $1 AND c.resident_code = $2"
        );
        found.extend(rows(
            tx,
            tenant,
            &sql,
            &[tenant.as_str().into(), code.into()],
        )?);
    }
    found.sort_by(|a, b| a.record.addressee_number.cmp(&b.record.addressee_number));
    found.dedup_by(|a, b| a.record.addressee_number == b.record.addressee_number);
    Ok(found)
}

/// Every history row of the tenant, by 宛名番号 then 履歴番号, handed to `f`
/// one at a time (exports).
/// With `after_change`, only the rows appended by later changes (a
/// difference extract).
pub fn each_history_row(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    after_change: Option<i64>,
    mut f: impl FnMut(HistoryRow) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let sql = format!(
        "SELECT {HISTORY_COLUMNS} FROM resident_history h WHERE h.tenant = $1 AND h.change_id > $2 \
         ORDER BY h.addressee_number, h.history_number"
    );
    let keys = tx.tenant_keys(tenant)?;
    tx.query_each(
        &sql,
        &[
            tenant.as_str().into(),
            after_change.unwrap_or(i64::MIN).into(),
        ],
        |r| f(history_row(&keys, &r)?),
    )
}

/// The highest change id among the tenant's history rows (0 if none).
/// Which of `ids` are changes with history rows in the tenant, looked up
/// 500 at a time (the history has no index by change id: one scan each).
pub fn existing_change_ids(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    ids: &[i64],
) -> Result<std::collections::HashSet<i64>, StoreError> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut found = std::collections::HashSet::new();
    for chunk in ids.chunks(500) {
        let sql = format!(
            "SELECT DISTINCT change_id FROM resident_history WHERE tenant = $1 AND change_id IN ({})",
            placeholders(2, chunk.len())
        );
        let mut params: Vec<Param<'_>> = vec![tenant.as_str().into()];
        params.extend(chunk.iter().map(|t| Param::Int(*t)));
        for r in tx.query(&sql, &params)? {
            found.insert(r.int(0)?);
        }
    }
    Ok(found)
}

pub fn last_change_id(tx: &mut Tx<'_>, tenant: &MunicipalityCode) -> Result<i64, StoreError> {
    tx.query_one(
        "SELECT COALESCE(MAX(change_id), 0) FROM resident_history WHERE tenant = $1",
        &[tenant.as_str().into()],
    )?
    .int(0)
}

/// Every current resident row of the tenant, by 世帯番号 then 宛名番号.
pub fn each_current_by_household(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    mut f: impl FnMut(HistoryRow) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let sql = format!(
        "SELECT {HISTORY_COLUMNS} {CURRENT_JOIN} WHERE c.tenant = $1 AND c.status = 'resident' \
         ORDER BY c.household_number, c.addressee_number"
    );
    let keys = tx.tenant_keys(tenant)?;
    tx.query_each(&sql, &[tenant.as_str().into()], |r| {
        f(history_row(&keys, &r)?)
    })
}

/// One person's whole history, oldest first (j200, j350).
pub fn history(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    person: &AddresseeNumber,
) -> Result<Vec<HistoryRow>, StoreError> {
    let sql = format!(
        "SELECT {HISTORY_COLUMNS} FROM resident_history h WHERE h.tenant = $1 AND h.addressee_number = $2 ORDER BY h.history_number"
    );
    rows(
        tx,
        tenant,
        &sql,
        &[tenant.as_str().into(), person.as_str().into()],
    )
}

fn by_person(list: Vec<HistoryRow>) -> BTreeMap<AddresseeNumber, Vec<HistoryRow>> {
    let mut out: BTreeMap<AddresseeNumber, Vec<HistoryRow>> = BTreeMap::new();
    for h in list {
        out.entry(h.record.addressee_number.clone())
            .or_default()
            .push(h);
    }
    out
}

/// The whole histories of the persons a change touched (as the change
/// recorded them).
pub fn histories_of_change(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    change_id: i64,
) -> Result<BTreeMap<AddresseeNumber, Vec<HistoryRow>>, StoreError> {
    let Some(change) = get_change(tx, tenant, change_id)? else {
        return Ok(BTreeMap::new());
    };
    let mut out = BTreeMap::new();
    for person in change.persons {
        let h = history(tx, tenant, &person)?;
        out.insert(person, h);
    }
    Ok(out)
}

/// Every person who was ever in a household, with their whole history.
pub fn household_histories(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    household: &HouseholdNumber,
) -> Result<BTreeMap<AddresseeNumber, Vec<HistoryRow>>, StoreError> {
    let sql = format!(
        "SELECT {HISTORY_COLUMNS} FROM resident_history h WHERE h.tenant = $1 AND h.addressee_number IN \
         (SELECT addressee_number FROM resident_history WHERE tenant = $1 AND household_number = $2) \
         ORDER BY h.addressee_number, h.history_number"
    );
    Ok(by_person(rows(
        tx,
        tenant,
        &sql,
        &[tenant.as_str().into(), household.as_str().into()],
    )?))
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

pub fn insert_change(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    c: &ChangeRecord,
) -> Result<(), StoreError> {
    let persons: Vec<&str> = c.persons.iter().map(|p| p.as_str()).collect();
    let effective = serde_json::to_string(&c.effective_date).map_err(corrupt)?;
    let effective_key = date_key(&c.effective_date);
    let processed = c.processed_on.to_string();
    let filed = c.filed_on.map(|d| d.to_string());
    let request = seal_request(&*tx.tenant_keys(tenant)?, c.change_id, &c.request)?;
    let notices = c.notices.to_string();
    let persons = serde_json::to_string(&persons).map_err(corrupt)?;
    tx.execute(
        "INSERT INTO changes (tenant, change_id, reason, effective_date, effective_key, processed_on, filed_on, \
         input_place, input_terminal, operator, recorded_at, cancels, request, notices, persons) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        &[
            tenant.as_str().into(),
            c.change_id.into(),
            c.reason.code().into(),
            (&effective).into(),
            (&effective_key).into(),
            (&processed).into(),
            (&filed).into(),
            (&c.input_place).into(),
            (&c.input_terminal).into(),
            (&c.operator).into(),
            c.recorded_at.into(),
            c.cancels.into(),
            (&request).into(),
            (&notices).into(),
            (&persons).into(),
        ],
    )
    .map_err(StoreError::conflict_if_unique)?;
    Ok(())
}

const CHANGE_COLUMNS: &str = "change_id, reason, effective_date, processed_on, filed_on, input_place, input_terminal, operator, recorded_at, cancels, request, notices, persons";

fn change_record(keys: &TenantKeys, r: &Row) -> Result<ChangeRecord, StoreError> {
    let reason = r.text(1)?;
    let change_id = r.int(0)?;
    let persons: Vec<String> = serde_json::from_str(&r.text(12)?).map_err(corrupt)?;
    Ok(ChangeRecord {
        change_id,
        reason: ChangeReason::from_code(&reason)
            .ok_or_else(|| corrupt(format!("reason {reason}")))?,
        effective_date: serde_json::from_str(&r.text(2)?).map_err(corrupt)?,
        processed_on: parse_day(&r.text(3)?)?,
        filed_on: r.opt_text(4)?.as_deref().map(parse_day).transpose()?,
        input_place: r.text(5)?,
        input_terminal: r.text(6)?,
        operator: r.text(7)?,
        recorded_at: r.int(8)?,
        cancels: r.opt_int(9)?,
        request: open_request(keys, change_id, &r.text(10)?)?,
        notices: serde_json::from_str(&r.text(11)?).map_err(corrupt)?,
        persons: persons
            .iter()
            .map(|p| p.parse().map_err(|_| corrupt(format!("addressee {p}"))))
            .collect::<Result<_, _>>()?,
    })
}

pub fn get_change(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    change_id: i64,
) -> Result<Option<ChangeRecord>, StoreError> {
    let sql = format!("SELECT {CHANGE_COLUMNS} FROM changes WHERE tenant = $1 AND change_id = $2");
    let keys = tx.tenant_keys(tenant)?;
    tx.query_opt(&sql, &[tenant.as_str().into(), change_id.into()])?
        .as_ref()
        .map(|r| change_record(&keys, r))
        .transpose()
}

/// The change that cancelled `change_id`, if one was recorded.
pub fn cancellation_of(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    change_id: i64,
) -> Result<Option<i64>, StoreError> {
    tx.query_opt(
        "SELECT change_id FROM changes WHERE tenant = $1 AND cancels = $2",
        &[tenant.as_str().into(), change_id.into()],
    )?
    .map(|r| r.int(0))
    .transpose()
}

/// Changes newest first, before the cursor (a change id).
pub fn list_changes(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<ChangeRecord>, StoreError> {
    let sql = format!(
        "SELECT {CHANGE_COLUMNS} FROM changes WHERE tenant = $1 AND change_id < $2 ORDER BY change_id DESC LIMIT $3"
    );
    let keys = tx.tenant_keys(tenant)?;
    tx.query(
        &sql,
        &[
            tenant.as_str().into(),
            before.unwrap_or(i64::MAX).into(),
            limit.into(),
        ],
    )?
    .iter()
    .map(|r| change_record(&keys, r))
    .collect()
}

/// The stored code of a status (its serde name, as the `status` columns hold it).
fn status_code(s: ResidentStatus) -> &'static str {
    match s {
        ResidentStatus::Resident => "resident",
        ResidentStatus::MovedOut => "moved_out",
        ResidentStatus::Deceased => "deceased",
        ResidentStatus::Removed => "removed",
        ResidentStatus::EntryCancelled => "entry_cancelled",
    }
}

/// The columns of `resident_history`, in [`HistoryEncoder`] order.
pub const HISTORY_INSERT_COLUMNS: &str = "tenant, addressee_number, history_number, change_id, household_number, status, \
     name_key, kana_key, address_key, birth_key, record, reason, effective_date, effective_key, processed_on, filed_on, \
     input_place, input_terminal, recorded_at, cancels, my_number_key, resident_code";

/// How many values a history row has ([`HISTORY_INSERT_COLUMNS`]).
pub const HISTORY_WIDTH: usize = 22;

/// The columns of `resident_current`.
pub const CURRENT_COLUMNS: &str = "tenant, addressee_number, history_number, household_number, status, name_key, \
     kana_key, address_key, birth_key, my_number_key, resident_code";

/// Where each column of [`CURRENT_COLUMNS`] is among a history row's values:
/// the projection holds the same values as the person's latest history row.
pub const CURRENT_FROM_HISTORY: [usize; 11] = [0, 1, 2, 4, 5, 6, 7, 8, 9, 20, 21];

/// Turns history rows into the values of their stored columns
/// ([`HISTORY_INSERT_COLUMNS`] order): the record in its stored form with
/// its 個人番号 sealed, the keyed lookup of the number, the folded search
/// keys. Keeps what helps a long run of rows (a bulk load): recently
/// folded texts and a pool of nonces.
pub struct HistoryEncoder<'k> {
    keys: &'k TenantKeys,
    folds: FoldCache,
    nonces: NoncePool,
    /// The last person's 個人番号 as pushed: (宛名番号, number, sealed,
    /// lookup key). A person's rows follow each other in a load and mostly
    /// keep their number: the sealed value (bound to the person, not the
    /// row) and the key are the same, so they are made once.
    last_number: Option<(String, String, String, String)>,
}

impl<'k> HistoryEncoder<'k> {
    pub fn new(keys: &'k TenantKeys) -> Self {
        HistoryEncoder {
            keys,
            folds: FoldCache::default(),
            nonces: NoncePool::default(),
            last_number: None,
        }
    }

    /// Appends the stored values of `row` to `out` (a batch of
    /// [`HISTORY_WIDTH`] values a row).
    pub fn push(&mut self, row: &HistoryRow, out: &mut BulkRows) -> Result<(), StoreError> {
        use std::io::Write;
        let r = &row.record;
        let c = &row.change;
        let folds = &mut self.folds;
        out.push_text(self.keys.tenant().as_str());
        out.push_text(r.addressee_number.as_str());
        out.push_int(row.history_number);
        out.push_int(c.change_id);
        out.push_text(r.household_number.as_str());
        out.push_text(status_code(r.status));
        for parts in [name_parts(r), kana_parts(r)] {
            out.push_text_with(|buf| {
                write_key(buf, &parts, folds);
            });
        }
        match r.address.annex.as_deref() {
            Some(annex) if !annex.is_empty() => out.push_text(folds.key(&r.address.full())),
            _ => out.push_text(folds.key(&r.address.address)),
        }
        push_date_key(out, &r.birth_date);
        let number = match &r.my_number {
            Some(n) => {
                let a = r.addressee_number.as_str();
                let same = self
                    .last_number
                    .as_ref()
                    .is_some_and(|(la, ln, _, _)| la == a && ln == n.as_str());
                if !same {
                    let sealed = self.keys.seal_str_pooled(
                        &mut self.nonces,
                        &record_context(a),
                        n.as_str(),
                    )?;
                    let key = self.keys.my_number_key(n.as_str());
                    self.last_number = Some((a.to_string(), n.as_str().to_string(), sealed, key));
                }
                self.last_number
                    .as_ref()
                    .map(|(_, _, sealed, key)| (sealed.as_str(), key.as_str()))
            }
            None => None,
        };
        let sealed = number.map(|(sealed, _)| sealed);
        let mut failed = None;
        out.push_text_with(|buf| {
            failed = record_format::write_v2(buf, r, sealed).err();
        });
        out.push_text(c.reason.code());
        out.push_text_with(|buf| {
            failed = failed
                .take()
                .or(record_format::write_date(buf, &c.effective_date).err());
        });
        if let Some(e) = failed {
            return Err(corrupt(e));
        }
        push_date_key(out, &c.effective_date);
        out.push_text_with(|buf| {
            let _ = write!(buf, "{}", c.processed_on);
        });
        match c.filed_on {
            Some(d) => out.push_text_with(|buf| {
                let _ = write!(buf, "{d}");
            }),
            None => out.push_null(),
        }
        out.push_text(&c.input_place);
        out.push_text(&c.input_terminal);
        out.push_int(c.recorded_at);
        out.push_opt_int(c.cancels);
        out.push_opt_text(number.map(|(_, key)| key));
        out.push_opt_text(r.resident_code.as_ref().map(|c| c.as_str()));
        Ok(())
    }
}

/// A date's key ([`date_key`]), written straight into the batch.
fn push_date_key(out: &mut BulkRows, d: &DateValue) {
    use std::io::Write;
    match d.sort_key() {
        Some((y, m, dd)) => out.push_text_with(|buf| {
            let _ = write!(buf, "{y:04}-{m:02}-{dd:02}");
        }),
        None => out.push_null(),
    }
}

/// A history row turned into the values of its stored columns
/// ([`HISTORY_INSERT_COLUMNS`] order).
pub struct HistoryValues(BulkRows);

impl HistoryValues {
    /// The values of `row` in the tenant of `keys`, its 個人番号 sealed and
    /// keyed with them.
    pub fn new(tenant_keys: &TenantKeys, row: &HistoryRow) -> Result<Self, StoreError> {
        let mut rows = BulkRows::new(HISTORY_WIDTH);
        HistoryEncoder::new(tenant_keys).push(row, &mut rows)?;
        Ok(HistoryValues(rows))
    }

    fn params(&self) -> Vec<Param<'_>> {
        self.0.params(0)
    }
}

/// Inserts a history row only.
pub fn insert_history(tx: &mut Tx<'_>, values: &HistoryValues) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO resident_history ({HISTORY_INSERT_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)"
    );
    tx.execute(&sql, &values.params())
        .map_err(StoreError::conflict_if_unique)?;
    Ok(())
}

/// The secondary indexes of the two registry tables, by name, with what
/// they index. On SQLite a large bulk load drops them and builds them again
/// after the rows (one sort instead of millions of random inserts); on
/// PostgreSQL they are the parent indexes of the hash partitions (migration
/// 25). Must match the schema (tested on both backends).
pub const REGISTRY_INDEXES: [(&str, &str); 5] = [
    (
        "resident_history_household",
        "resident_history (tenant, household_number)",
    ),
    (
        "resident_current_household",
        "resident_current (tenant, household_number)",
    ),
    (
        "resident_current_birth",
        "resident_current (tenant, birth_key)",
    ),
    (
        "resident_current_my_number",
        "resident_current (tenant, my_number_key)",
    ),
    (
        "resident_current_resident_code",
        "resident_current (tenant, resident_code)",
    ),
];

/// The search indexes of the registry tables (migrations 21 and 34), per
/// backend: B-trees over each folded key of the current and the history
/// rows (tenant first) for exact and prefix matches, and for the keys
/// that contain a text, found through the distinct keys (migration 33;
/// see [`search`]). SQLite's history B-trees leave out 宛名番号 (see
/// migration 34). Dropped and built again like [`REGISTRY_INDEXES`].
pub const SEARCH_INDEXES_SQLITE: [(&str, &str); 6] = [
    (
        "resident_current_name_key",
        "resident_current (tenant, name_key, addressee_number)",
    ),
    (
        "resident_current_kana_key",
        "resident_current (tenant, kana_key, addressee_number)",
    ),
    (
        "resident_current_address_key",
        "resident_current (tenant, address_key, addressee_number)",
    ),
    (
        "resident_history_name_key",
        "resident_history (tenant, name_key)",
    ),
    (
        "resident_history_kana_key",
        "resident_history (tenant, kana_key)",
    ),
    (
        "resident_history_address_key",
        "resident_history (tenant, address_key)",
    ),
];

/// [`SEARCH_INDEXES_SQLITE`] for PostgreSQL: keys compared in code-point
/// order (`COLLATE "C"`), as SQLite compares them; the current rows'
/// carry what [`key_probe`] checks, so it reads the index alone
/// (migration 35).
pub const SEARCH_INDEXES_POSTGRES: [(&str, &str); 6] = [
    (
        "resident_current_name_key",
        "resident_current (tenant, name_key COLLATE \"C\", addressee_number) INCLUDE (status)",
    ),
    (
        "resident_current_kana_key",
        "resident_current (tenant, kana_key COLLATE \"C\", addressee_number) INCLUDE (status)",
    ),
    (
        "resident_current_address_key",
        "resident_current (tenant, address_key COLLATE \"C\", addressee_number) INCLUDE (status, household_number)",
    ),
    (
        "resident_history_name_key",
        "resident_history (tenant, name_key COLLATE \"C\", addressee_number)",
    ),
    (
        "resident_history_kana_key",
        "resident_history (tenant, kana_key COLLATE \"C\", addressee_number)",
    ),
    (
        "resident_history_address_key",
        "resident_history (tenant, address_key COLLATE \"C\", addressee_number)",
    ),
];

/// Every secondary index of the two registry tables on `backend`:
/// [`REGISTRY_INDEXES`] and the search indexes.
pub fn registry_indexes(backend: super::Backend) -> Vec<(&'static str, &'static str)> {
    let mut all = REGISTRY_INDEXES.to_vec();
    match backend {
        super::Backend::Sqlite => all.extend(SEARCH_INDEXES_SQLITE),
        super::Backend::Postgres => all.extend(SEARCH_INDEXES_POSTGRES),
    }
    all
}

/// Drops the search indexes (the key B-trees): only for `machi bench
/// --without-search-indexes`, which measures what they cost a change.
pub fn drop_search_indexes(tx: &mut Tx<'_>) -> Result<(), StoreError> {
    match tx.backend() {
        super::Backend::Sqlite => {
            for (name, _) in SEARCH_INDEXES_SQLITE {
                tx.execute_batch(&format!("DROP INDEX {name}"))?;
            }
            Ok(())
        }
        super::Backend::Postgres => as_owner(tx, |tx| {
            for (name, _) in SEARCH_INDEXES_POSTGRES {
                tx.execute_batch(&format!("DROP INDEX {name}"))?;
            }
            Ok(())
        }),
    }
}

/// The primary keys of the two registry tables.
const REGISTRY_KEYS: [(&str, &str); 2] = [
    (
        "resident_history",
        "tenant, addressee_number, history_number",
    ),
    ("resident_current", "tenant, addressee_number"),
];

/// PostgreSQL: how many hash partitions each registry table has
/// (migration 24): a fixed number, however many tenants there are.
pub const REGISTRY_PARTITIONS: i64 = 16;

/// The hash partition of a registry table that holds `tenant`'s rows
/// (PostgreSQL), named `{table}_hNN` by migration 24. Asked of the server
/// with the function its partition constraints use, so it always agrees
/// with where PostgreSQL routes the tenant's rows (and a row written to
/// the wrong one would be refused by that constraint).
fn tenant_partition(
    tx: &mut Tx<'_>,
    table: &str,
    tenant: &MunicipalityCode,
) -> Result<String, StoreError> {
    if !REGISTRY_KEYS.iter().any(|(t, _)| *t == table) {
        return Err(StoreError::Corrupt(format!(
            "not a registry table: {table}"
        )));
    }
    let r = tx
        .query_one(
            &format!(
                "SELECT r::bigint FROM generate_series(0, {last}) r \
                 WHERE satisfies_hash_partition('{table}'::regclass, {REGISTRY_PARTITIONS}, r, $1::text)",
                last = REGISTRY_PARTITIONS - 1
            ),
            &[tenant.as_str().into()],
        )?
        .int(0)?;
    Ok(format!("{table}_h{r:02}"))
}

/// The `VACUUM` after a load into `tenant` (PostgreSQL, see
/// [`super::Store::vacuum_after_load`]): the tenant's partitions of the
/// registry tables and the search postings. It sets the visibility map
/// and `relallvisible`, which the planner reads; the statistics were
/// taken in the load's own transaction (a full load) or are left to
/// autovacuum.
pub(crate) fn vacuum_after_load_sql(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
) -> Result<String, StoreError> {
    let current = tenant_partition(tx, "resident_current", tenant)?;
    let history = tenant_partition(tx, "resident_history", tenant)?;
    Ok(format!(
        "VACUUM (SKIP_LOCKED) {current}, {history}, resident_gram, search_key_gram, search_gram_count"
    ))
}

/// Runs `f` as the role that owns the schema (the one that ran the
/// migrations), then returns to the application role: writing to a
/// partition directly and DDL need the owner. PostgreSQL only.
fn as_owner<T>(
    tx: &mut Tx<'_>,
    f: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let role = tx.query_one("SELECT current_user::text", &[])?.text(0)?;
    tx.execute_batch("SET LOCAL ROLE NONE")?;
    // On an error the transaction is rolled back, which ends the switch
    // too; trying to switch back in it would only hide the error.
    let out = f(tx)?;
    // The role name comes from the server; quoted as an identifier.
    tx.execute_batch(&format!("SET LOCAL ROLE \"{}\"", role.replace('"', "\"\"")))?;
    Ok(out)
}

/// Whether the tenant has any history row.
pub fn tenant_has_history(tx: &mut Tx<'_>, tenant: &MunicipalityCode) -> Result<bool, StoreError> {
    Ok(tx
        .query_opt(
            "SELECT 1 FROM resident_history WHERE tenant = $1 LIMIT 1",
            &[tenant.as_str().into()],
        )?
        .is_some())
}

/// A bulk load into a tenant without history (a full import): history rows
/// and, for each person, the projection of their latest row, written batch
/// by batch ([`BulkLoad::write`]), then [`BulkLoad::finish`]ed, all in the
/// caller's transaction.
///
/// - SQLite: when the load is at least as large as what the tables hold
///   already, their secondary indexes are dropped first and built again at
///   the end.
/// - PostgreSQL: the rows are COPied straight into the hash partitions
///   that hold the tenant (migration 24), as the schema owner: no
///   row-level security to check per row (the partitions have none; the
///   rows' tenant is checked by the partition constraint and the import
///   writes only the tenant's rows), no staging copy. The partitions'
///   indexes are kept up to date row by row (they hold other tenants'
///   rows too, so they cannot be dropped or built aside), and the
///   partitions are analysed at the end. Only row locks and the
///   partitions' ordinary write lock are taken: other tenants' reads and
///   changes, and other imports, go on meanwhile.
pub struct BulkLoad {
    mode: LoadMode,
}

enum LoadMode {
    Sqlite {
        rebuild: bool,
        tenant: MunicipalityCode,
        /// The last current row before the load: grams are added for the
        /// rows after it.
        current_before: i64,
        /// The last history row before the load: history grams are added
        /// for the rows after it.
        history_before: i64,
    },
    Postgres {
        tenant: MunicipalityCode,
        history: String,
        current: String,
    },
}

impl BulkLoad {
    /// `expected_rows`: about how many history rows the load brings.
    pub fn begin(
        tx: &mut Tx<'_>,
        tenant: &MunicipalityCode,
        expected_rows: u64,
    ) -> Result<BulkLoad, StoreError> {
        if tx.backend() == super::Backend::Postgres {
            let (history, current) = as_owner(tx, |tx| {
                Ok((
                    tenant_partition(tx, "resident_history", tenant)?,
                    tenant_partition(tx, "resident_current", tenant)?,
                ))
            })?;
            return Ok(BulkLoad {
                mode: LoadMode::Postgres {
                    tenant: tenant.clone(),
                    history,
                    current,
                },
            });
        }
        // Rows already there (rowids only grow: history is never deleted).
        let present = tx
            .query_one("SELECT COALESCE(MAX(rowid), 0) FROM resident_history", &[])?
            .int(0)?;
        let rebuild = expected_rows >= present.max(0) as u64;
        let current_before = tx
            .query_one("SELECT COALESCE(MAX(rowid), 0) FROM resident_current", &[])?
            .int(0)?;
        tx.defer_checkpoint()?;
        if rebuild {
            for (name, _) in registry_indexes(super::Backend::Sqlite) {
                tx.execute_batch(&format!("DROP INDEX {name}"))?;
            }
        }
        Ok(BulkLoad {
            mode: LoadMode::Sqlite {
                rebuild,
                tenant: tenant.clone(),
                current_before,
                history_before: present,
            },
        })
    }

    /// Writes a batch of history rows ([`HistoryEncoder`]) and of current
    /// rows ([`CURRENT_COLUMNS`]).
    pub fn write(
        &self,
        tx: &mut Tx<'_>,
        history: &BulkRows,
        current: &BulkRows,
    ) -> Result<(), StoreError> {
        match &self.mode {
            LoadMode::Sqlite { .. } => {
                tx.insert_rows("resident_history", HISTORY_INSERT_COLUMNS, history)
                    .map_err(StoreError::conflict_if_unique)?;
                tx.insert_rows("resident_current", CURRENT_COLUMNS, current)
                    .map_err(StoreError::conflict_if_unique)?;
            }
            LoadMode::Postgres {
                history: h,
                current: c,
                ..
            } => {
                // The partitions are the owner's; the role is switched for
                // the COPY only.
                as_owner(tx, |tx| {
                    tx.insert_rows(h, HISTORY_INSERT_COLUMNS, history)
                        .map_err(StoreError::conflict_if_unique)?;
                    tx.insert_rows(c, CURRENT_COLUMNS, current)
                        .map_err(StoreError::conflict_if_unique)?;
                    Ok(())
                })?;
            }
        }
        Ok(())
    }

    pub fn finish(self, tx: &mut Tx<'_>) -> Result<(), StoreError> {
        match self.mode {
            LoadMode::Sqlite {
                rebuild,
                tenant,
                current_before,
                history_before,
            } => {
                if rebuild {
                    for (name, on) in registry_indexes(super::Backend::Sqlite) {
                        let t = std::time::Instant::now();
                        tx.execute_batch(&format!("CREATE INDEX {name} ON {on}"))?;
                        tracing::debug!(name, seconds = t.elapsed().as_secs_f64(), "index built");
                    }
                }
                let t = std::time::Instant::now();
                tx.execute(
                    &gram_fill_sql(
                        super::Backend::Sqlite,
                        "resident_current",
                        "c.tenant = $1 AND c.rowid > $2",
                    ),
                    &[tenant.as_str().into(), current_before.into()],
                )?;
                tx.execute(
                    &history_gram_fill_sql(
                        super::Backend::Sqlite,
                        "resident_history",
                        "c.tenant = $1 AND c.rowid > $2",
                    ),
                    &[tenant.as_str().into(), history_before.into()],
                )?;
                tx.execute(
                    &key_gram_fill_sql(
                        super::Backend::Sqlite,
                        "resident_history",
                        "c.tenant = $1 AND c.rowid > $2",
                    ),
                    &[tenant.as_str().into(), history_before.into()],
                )?;
                tx.execute(KEY_GRAM_COUNT_SQL, &[tenant.as_str().into()])?;
                tracing::debug!(seconds = t.elapsed().as_secs_f64(), "grams added");
                Ok(())
            }
            // Statistics for the first queries after the load (autovacuum
            // would get there later), and the grams of the loaded rows (a
            // full load fills an empty tenant, which has none yet).
            LoadMode::Postgres {
                tenant,
                history,
                current,
            } => as_owner(tx, |tx| {
                tx.execute(
                    "DELETE FROM resident_gram WHERE tenant = $1",
                    &[tenant.as_str().into()],
                )?;
                tx.execute(
                    &gram_fill_sql(
                        super::Backend::Postgres,
                        "resident_current",
                        "c.tenant = $1",
                    ),
                    &[tenant.as_str().into()],
                )?;
                tx.execute(
                    &history_gram_fill_sql(
                        super::Backend::Postgres,
                        "resident_history",
                        "c.tenant = $1",
                    ),
                    &[tenant.as_str().into()],
                )?;
                tx.execute(
                    &key_gram_fill_sql(
                        super::Backend::Postgres,
                        "resident_history",
                        "c.tenant = $1",
                    ),
                    &[tenant.as_str().into()],
                )?;
                tx.execute(KEY_GRAM_COUNT_SQL, &[tenant.as_str().into()])?;
                tx.execute_batch(&format!(
                    "ANALYZE {history}; ANALYZE {current}; ANALYZE resident_gram; \
                     ANALYZE search_key_gram; ANALYZE search_gram_count"
                ))
            }),
        }
    }
}

/// Appends the history rows of one change and points the current-state
/// projection at them: for up to [`ROWS_PER_APPEND`] persons, one
/// statement each for the history rows, the current rows they replace (of
/// persons who had one), the current rows and the grams, instead of four
/// per person. The same rows as [`append_history`] for each row in turn
/// (which it does when a person has two rows in `rows`).
pub fn append_histories(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    rows: &[HistoryRow],
) -> Result<(), StoreError> {
    let mut persons = std::collections::HashSet::new();
    if !rows
        .iter()
        .all(|r| persons.insert(r.record.addressee_number.as_str()))
    {
        for row in rows {
            append_history(tx, tenant, row)?;
        }
        return Ok(());
    }
    let keys = tx.tenant_keys(tenant)?;
    for chunk in rows.chunks(ROWS_PER_APPEND) {
        let values: Vec<HistoryValues> = chunk
            .iter()
            .map(|r| HistoryValues::new(&keys, r))
            .collect::<Result<_, _>>()?;
        let params: Vec<Param<'_>> = values.iter().flat_map(|v| v.params()).collect();
        let tuples: Vec<String> = (0..chunk.len())
            .map(|i| format!("({})", placeholders(1 + i * HISTORY_WIDTH, HISTORY_WIDTH)))
            .collect();
        tx.execute(
            &format!(
                "INSERT INTO resident_history ({HISTORY_INSERT_COLUMNS}) VALUES {}",
                tuples.join(", ")
            ),
            &params,
        )
        .map_err(StoreError::conflict_if_unique)?;
        // The keys posted until now, of persons with an earlier row.
        let earlier: Vec<&str> = chunk
            .iter()
            .filter(|r| r.history_number != 1)
            .map(|r| r.record.addressee_number.as_str())
            .collect();
        let mut old: HashMap<String, [Option<String>; 3]> = HashMap::new();
        if !earlier.is_empty() {
            let mut ps: Vec<Param<'_>> = vec![tenant.as_str().into()];
            ps.extend(earlier.iter().map(|p| Param::Text(p)));
            for r in tx.query(
                &format!(
                    "SELECT addressee_number, name_key, kana_key, address_key FROM resident_current \
                     WHERE tenant = $1 AND addressee_number IN ({})",
                    placeholders(2, earlier.len())
                ),
                &ps,
            )? {
                old.insert(r.text(0)?, [r.opt_text(1)?, r.opt_text(2)?, r.opt_text(3)?]);
            }
        }
        // The projection takes the same values (positions in HISTORY_INSERT_COLUMNS).
        let current: Vec<Param<'_>> = values
            .iter()
            .flat_map(|v| {
                let p = v.params();
                [
                    p[0], p[1], p[2], p[4], p[5], p[6], p[7], p[8], p[9], p[20], p[21],
                ]
            })
            .collect();
        let tuples: Vec<String> = (0..chunk.len())
            .map(|i| format!("({})", placeholders(1 + i * 11, 11)))
            .collect();
        tx.execute(
            &format!(
                "INSERT INTO resident_current ({CURRENT_COLUMNS}) VALUES {} \
                 ON CONFLICT (tenant, addressee_number) DO UPDATE SET history_number = excluded.history_number, \
                 household_number = excluded.household_number, status = excluded.status, name_key = excluded.name_key, \
                 kana_key = excluded.kana_key, address_key = excluded.address_key, birth_key = excluded.birth_key, \
                 my_number_key = excluded.my_number_key, resident_code = excluded.resident_code",
                tuples.join(", ")
            ),
            &current,
        )?;
        let text = |p: &Param<'_>| match p {
            Param::Text(s) => Some(s.to_string()),
            _ => None,
        };
        let mut grams: Vec<(String, i64, String)> = Vec::new();
        let mut keys: Vec<(i64, String)> = Vec::new();
        for (row, v) in chunk.iter().zip(&values) {
            let person = row.record.addressee_number.as_str();
            let p = v.params();
            let new = [text(&p[6]), text(&p[7]), text(&p[8])];
            let before = old.remove(person).unwrap_or_default();
            let before = [
                before[0].as_deref(),
                before[1].as_deref(),
                before[2].as_deref(),
            ];
            let new = [new[0].as_deref(), new[1].as_deref(), new[2].as_deref()];
            let mut come = delete_current_grams(tx, tenant, person, before, new)?;
            come.extend(history_grams_to_add(before, new));
            grams.extend(come.into_iter().map(|(c, g)| (person.to_string(), c, g)));
            keys.extend(
                changed_keys(before, new)
                    .into_iter()
                    .map(|(c, k)| (c, k.to_string())),
            );
        }
        let grams: Vec<(&str, i64, &str)> = grams
            .iter()
            .map(|(p, c, g)| (p.as_str(), *c, g.as_str()))
            .collect();
        insert_grams_of(tx, tenant, &grams)?;
        let keys: Vec<(i64, &str)> = keys.iter().map(|(c, k)| (*c, k.as_str())).collect();
        post_keys(tx, tenant, &keys)?;
    }
    Ok(())
}

/// Most rows of one change written by one statement ([`append_histories`]):
/// 22 parameters each, within SQLite's limit.
const ROWS_PER_APPEND: usize = 100;

/// Appends a history row and points the current-state projection at it.
pub fn append_history(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    row: &HistoryRow,
) -> Result<(), StoreError> {
    let values = HistoryValues::new(&*tx.tenant_keys(tenant)?, row)?;
    insert_history(tx, &values)?;
    let person = row.record.addressee_number.as_str();
    // A person's first history row has no current row before it (the
    // history row's primary key would have refused a second first row):
    // a move-in's new persons skip the read.
    let old = if row.history_number == 1 {
        Vec::new()
    } else {
        tx.query(
            "SELECT name_key, kana_key, address_key FROM resident_current WHERE tenant = $1 AND addressee_number = $2",
            &[tenant.as_str().into(), person.into()],
        )?
    };
    let old: [Option<String>; 3] = match old.first() {
        Some(r) => [r.opt_text(0)?, r.opt_text(1)?, r.opt_text(2)?],
        None => [None, None, None],
    };
    // The projection takes the same values (positions in HISTORY_INSERT_COLUMNS).
    let p = values.params();
    let text = |p: &Param<'_>| match p {
        Param::Text(s) => Some(s.to_string()),
        _ => None,
    };
    let new = [text(&p[6]), text(&p[7]), text(&p[8])];
    tx.execute(
        "INSERT INTO resident_current (tenant, addressee_number, history_number, household_number, status, name_key, \
         kana_key, address_key, birth_key, my_number_key, resident_code) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (tenant, addressee_number) DO UPDATE SET history_number = excluded.history_number, \
         household_number = excluded.household_number, status = excluded.status, name_key = excluded.name_key, \
         kana_key = excluded.kana_key, address_key = excluded.address_key, birth_key = excluded.birth_key, \
         my_number_key = excluded.my_number_key, resident_code = excluded.resident_code",
        &[p[0], p[1], p[2], p[4], p[5], p[6], p[7], p[8], p[9], p[20], p[21]],
    )?;
    let old = [old[0].as_deref(), old[1].as_deref(), old[2].as_deref()];
    let new = [new[0].as_deref(), new[1].as_deref(), new[2].as_deref()];
    let mut come = delete_current_grams(tx, tenant, person, old, new)?;
    come.extend(history_grams_to_add(old, new));
    insert_grams(tx, tenant, person, &come)?;
    post_keys(tx, tenant, &changed_keys(old, new))
}

/// One entry of the access log (j1370).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditEntry {
    pub operator: String,
    pub terminal: String,
    /// What was done, e.g. `change.move_in`.
    pub function: String,
    /// The record(s) concerned, e.g. addressee numbers.
    pub target: String,
    /// Free detail (JSON).
    pub detail: String,
    /// Whether 個人番号 was shown to the operator.
    pub my_number_shown: bool,
}

/// The hash that chains an audit entry to the one before it: SHA-256 over
/// the length-prefixed fields, the previous hash among them.
pub fn audit_hash(
    tenant: &MunicipalityCode,
    seq: i64,
    at: i64,
    prev: &str,
    e: &AuditEntry,
) -> String {
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

/// Appends audit entry number `seq` (allocated by [`advance`], with the
/// previous entry's hash `prev`) and moves the tenant's chain head to it.
pub fn append_audit(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    seq: i64,
    prev: &str,
    at: i64,
    e: &AuditEntry,
) -> Result<String, StoreError> {
    let hash = insert_audit(tx, tenant, seq, prev, at, e)?;
    tx.execute(
        "UPDATE tenant_heads SET audit_hash = $2 WHERE tenant = $1",
        &[tenant.as_str().into(), (&hash).into()],
    )?;
    Ok(hash)
}

/// Writes audit entry `seq` chained to `prev`; returns its hash. The head
/// row is the caller's to update.
fn insert_audit(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    seq: i64,
    prev: &str,
    at: i64,
    e: &AuditEntry,
) -> Result<String, StoreError> {
    let hash = audit_hash(tenant, seq, at, prev, e);
    tx.execute(
        "INSERT INTO audit_log (tenant, seq, at, operator, terminal, function, target, detail, my_number_shown, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        &[
            tenant.as_str().into(),
            seq.into(),
            at.into(),
            (&e.operator).into(),
            (&e.terminal).into(),
            (&e.function).into(),
            (&e.target).into(),
            (&e.detail).into(),
            i64::from(e.my_number_shown).into(),
            prev.into(),
            (&hash).into(),
        ],
    )?;
    Ok(hash)
}

/// Appends `entry` as the tenant's next audit entry, in `tx`: allocates its
/// number and chains it to the head. Returns its number.
///
/// The first entry of a tenant in a transaction moves the head row
/// ([`advance`], which locks it on PostgreSQL) and writes the entry; the
/// head's new hash is held in the transaction ([`Tx::hold_audit_head`]),
/// and the tenant's next entries in the same transaction (a group
/// commit's) chain to it with one INSERT each. The row gets the last
/// number and hash once, before the commit. The chain is the same as if
/// each entry had been appended alone.
pub fn append_next_audit(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    at: i64,
    entry: &AuditEntry,
) -> Result<i64, StoreError> {
    let held = tx
        .audit_head()
        .filter(|h| h.tenant == tenant.as_str())
        .map(|h| (h.seq, h.hash.clone()));
    let (seq, prev) = match held {
        Some((seq, hash)) => (seq + 1, hash),
        None => {
            let heads = advance(
                tx,
                tenant,
                Advance {
                    audit: 1,
                    ..Default::default()
                },
            )?;
            (heads.audit, heads.audit_hash)
        }
    };
    let hash = insert_audit(tx, tenant, seq, &prev, at, entry)?;
    tx.hold_audit_head(super::db::AuditHead {
        tenant: tenant.as_str().to_string(),
        seq,
        hash,
    });
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
pub fn audit_entries(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<StoredAudit>, StoreError> {
    tx.query(
        &format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE tenant = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        ),
        &[tenant.as_str().into(), after_seq.into(), limit.into()],
    )?
    .iter()
    .map(stored_audit)
    .collect()
}

/// The columns [`stored_audit`] reads, in its order.
pub const AUDIT_COLUMNS: &str =
    "seq, at, operator, terminal, function, target, detail, my_number_shown, prev_hash, hash";

/// An audit entry from a row of [`AUDIT_COLUMNS`].
pub fn stored_audit(r: &Row) -> Result<StoredAudit, StoreError> {
    Ok(StoredAudit {
        seq: r.int(0)?,
        at: r.int(1)?,
        prev_hash: r.text(8)?,
        hash: r.text(9)?,
        entry: AuditEntry {
            operator: r.text(2)?,
            terminal: r.text(3)?,
            function: r.text(4)?,
            target: r.text(5)?,
            detail: r.text(6)?,
            my_number_shown: r.int(7)? != 0,
        },
    })
}

/// Appends linkage event number `seq` (allocated by [`advance`]). The event
/// id `{tenant}-{seq}` is stable, so a consumer applies it once.
pub fn append_event(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    seq: i64,
    kind: &str,
    change_id: Option<i64>,
    payload: &serde_json::Value,
    at: i64,
) -> Result<(), StoreError> {
    let id = format!("{tenant}-{seq}");
    let payload = payload.to_string();
    tx.execute(
        "INSERT INTO outbox (tenant, seq, event_id, kind, change_id, payload, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            tenant.as_str().into(),
            seq.into(),
            (&id).into(),
            kind.into(),
            change_id.into(),
            (&payload).into(),
            at.into(),
        ],
    )?;
    if tx.backend() == super::Backend::Postgres {
        // Delivered at commit to every listening process (see
        // `store::listen`); the tenant only, never personal data.
        tx.execute(
            &format!("SELECT pg_notify('{}', $1)", super::listen::CHANNEL),
            &[tenant.as_str().into()],
        )?;
    }
    Ok(())
}

/// Appends `kind` as the tenant's next linkage event, in `tx` (after the
/// tenant's write lock): allocates its number. Returns the number.
pub fn append_next_event(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    kind: &str,
    payload: &serde_json::Value,
    at: i64,
) -> Result<i64, StoreError> {
    let heads = advance(
        tx,
        tenant,
        Advance {
            event: 1,
            ..Default::default()
        },
    )?;
    append_event(tx, tenant, heads.event, kind, None, payload, at)?;
    Ok(heads.event)
}

/// Events after `after_seq` whose kind is one of `kinds` (all when empty),
/// in order.
pub fn events_after_of(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    after_seq: i64,
    kinds: &[String],
    limit: i64,
) -> Result<Vec<OutboxEvent>, StoreError> {
    if kinds.is_empty() {
        return events_after(tx, tenant, after_seq, limit);
    }
    let (filter, values) = kind_filter(kinds, 4);
    let sql = format!(
        "SELECT seq, event_id, kind, change_id, payload, created_at FROM outbox WHERE tenant = $1 AND seq > $2{filter} ORDER BY seq LIMIT $3"
    );
    let mut params: Vec<Param<'_>> = vec![tenant.as_str().into(), after_seq.into(), limit.into()];
    params.extend(values.into_iter().map(Param::from));
    tx.query(&sql, &params)?.iter().map(outbox_event).collect()
}

/// The condition (` AND (…)`) of an event type filter on `kind`: each
/// entry a type name, or a `prefix.*` pattern taking every type under the
/// prefix (types added later included; `substr`, not `LIKE`, whose `_`
/// would match any character); with the values to bind from `$first` on.
/// Empty filter: no condition.
pub fn kind_filter(kinds: &[String], first: usize) -> (String, Vec<&str>) {
    if kinds.is_empty() {
        return (String::new(), Vec::new());
    }
    let mut names = Vec::new();
    let mut prefixes = Vec::new();
    for k in kinds {
        match k.strip_suffix('*') {
            Some(prefix) => prefixes.push(prefix),
            None => names.push(k.as_str()),
        }
    }
    let mut terms = Vec::new();
    let mut values = Vec::new();
    if !names.is_empty() {
        let marks: Vec<String> = (0..names.len())
            .map(|i| format!("${}", first + i))
            .collect();
        terms.push(format!("kind IN ({})", marks.join(", ")));
        values.extend(names);
    }
    for p in prefixes {
        terms.push(format!(
            "substr(kind, 1, {}) = ${}",
            p.len(),
            first + values.len()
        ));
        values.push(p);
    }
    (format!(" AND ({})", terms.join(" OR ")), values)
}

/// The tenant's last event number (0 before the first).
pub fn last_event_seq(tx: &mut Tx<'_>, tenant: &MunicipalityCode) -> Result<i64, StoreError> {
    Ok(tx
        .query_opt(
            "SELECT COALESCE(MAX(seq), 0) FROM outbox WHERE tenant = $1",
            &[tenant.as_str().into()],
        )?
        .map(|r| r.int(0))
        .transpose()?
        .unwrap_or(0))
}

fn outbox_event(r: &Row) -> Result<OutboxEvent, StoreError> {
    Ok(OutboxEvent {
        seq: r.int(0)?,
        event_id: r.text(1)?,
        kind: r.text(2)?,
        change_id: r.opt_int(3)?,
        payload: serde_json::from_str(&r.text(4)?).map_err(corrupt)?,
        created_at: r.int(5)?,
    })
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

pub fn events_after(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<OutboxEvent>, StoreError> {
    tx.query(
        "SELECT seq, event_id, kind, change_id, payload, created_at FROM outbox WHERE tenant = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        &[tenant.as_str().into(), after_seq.into(), limit.into()],
    )?
    .iter()
    .map(outbox_event)
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
    /// Leave out everyone the shield of a support measure covers
    /// ([`super::support::shielded_sql`]): set for a search by address or
    /// household, so that it cannot confirm where a protected person lives.
    pub exclude_shielded: bool,
}

fn like_pattern(key: &str) -> String {
    let mut out = String::from("%");
    out.push_str(&like_escaped(key));
    out.push('%');
    out
}

fn like_escaped(key: &str) -> String {
    let mut out = String::new();
    for ch in key.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// How a person matched the main text of a search (j340): the rank orders
/// the results, exact matches first, then prefix, then contained.
pub const RANK_EXACT: u8 = 0;
pub const RANK_PREFIX: u8 = 1;
pub const RANK_CONTAINS: u8 = 2;

/// Where a page of a [`search`] ended: the rank of its last row, that
/// row's key (prefix matches are walked in key order) and its 宛名番号.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchCursor {
    pub rank: u8,
    pub key: String,
    pub after: AddresseeNumber,
}

/// One result of a [`search`] and the cursor that continues after it.
#[derive(Debug, Clone)]
pub struct SearchHit {
    pub row: HistoryRow,
    pub cursor: SearchCursor,
}

/// Contained matches found through the distinct keys are collected whole
/// when there are at most this many, and sorted; a query matching more is
/// common enough that a walk in 宛名番号 order meets a page of them soon.
const TRIGRAM_PROBE: i64 = 2000;

/// The upper bound of the keys that start with `key` (code-point order).
fn prefix_end(key: &str) -> String {
    let mut s = key.to_string();
    s.push(char::MAX);
    s
}

/// What makes a key comparison use code-point order, as the key B-trees
/// do: PostgreSQL's are `COLLATE "C"` whatever the database's collation;
/// SQLite compares bytes already.
fn code_point_order(backend: super::Backend) -> &'static str {
    match backend {
        super::Backend::Postgres => " COLLATE \"C\"",
        super::Backend::Sqlite => "",
    }
}

/// Builds one phase's SQL: the conditions and their bound texts.
#[derive(Clone)]
struct SqlBuilder {
    conds: Vec<String>,
    binds: Vec<String>,
}

impl SqlBuilder {
    fn bind(&mut self, v: String) -> String {
        self.binds.push(v);
        format!("${}", self.binds.len())
    }
}

/// Searches current rows (j340) matching `f`, ranked by how the main text
/// (the name or furigana, else the address) matched: exact, then prefix
/// (in key order), then contained (in 宛名番号 order); by 宛名番号 when
/// the search has no text. `after` continues after a page.
///
/// Index use: exact and prefix matches walk the key B-trees (tenant
/// first); a contained match of at least three characters reads the
/// distinct keys that contain it (migration 33) and joins them to the
/// rows, or walks the gram postings (`resident_gram`) in 宛名番号 order
/// when the text is shorter or very common (see [`contains_phase`]).
/// With `include_history` the text may match any history row of the
/// person, and a person's rank is their best row's; one or two characters
/// walk the history postings of the rank's gram ([`history_grams`]) in
/// 宛名番号 order, each person rechecked against their history rows;
/// three or more find the persons through the matching keys and the
/// history's key B-trees ([`history_key_probe`], migration 34).
pub fn search(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    f: &SearchFilter,
    after: Option<&SearchCursor>,
    limit: i64,
) -> Result<Vec<SearchHit>, StoreError> {
    if tx.backend() == super::Backend::Postgres {
        // A search's plans depend on its texts (how common a gram is, how
        // wide a range of keys): each statement is planned for its own
        // values, never from a cached generic plan (see
        // `PgConn::begin_sql`, which lets the key lookups cache theirs).
        // And without parallel workers: a page is a few dozen rows, which
        // a worker's start (3–5 ms) costs more than, and a parallel plan
        // looked cheaper than walking a key B-tree in order: a common
        // family name's prefix page took 45–81 ms as a parallel bitmap
        // scan and sort, 0.5–1.5 ms walking the B-tree (`EXPLAIN ANALYZE`
        // at 200,000 residents once `resident_history` was analysed).
        tx.execute_batch(
            "SET LOCAL plan_cache_mode = force_custom_plan; \
             SET LOCAL max_parallel_workers_per_gather = 0",
        )?;
    }
    let texts: Vec<(&str, &String)> = [
        ("name_key", &f.name_key),
        ("kana_key", &f.kana_key),
        ("address_key", &f.address_key),
    ]
    .into_iter()
    .filter_map(|(c, k)| k.as_ref().map(|k| (c, k)))
    .collect();
    let mut out: Vec<SearchHit> = Vec::new();
    let Some(&(main_col, main_key)) = texts.first() else {
        // No text: one phase, by 宛名番号.
        let mut b = base_conditions(tenant, f);
        if let Some(a) = after {
            let p = b.bind(a.after.as_str().to_string());
            b.conds.push(format!("c.addressee_number > {p}"));
        }
        // With an indexed equality filter, sort the few matches (`|| ''`
        // keeps the planner from walking the tenant in key order instead).
        let order = if f.household_number.is_some()
            || f.birth_key.is_some()
            || f.addressee_number.is_some()
        {
            "c.addressee_number || ''"
        } else {
            "c.addressee_number"
        };
        let rows = run_phase(tx, tenant, &b, order, limit)?;
        return Ok(rows
            .into_iter()
            .map(|row| hit(row, RANK_EXACT, String::new()))
            .collect());
    };
    // No shortcut for a history text that no posted key contains: it
    // would answer at once where a text that only support-measure
    // protected persons have (or had) takes the history probe, and that
    // difference in time would tell a clerk without a release that such a
    // person has the text (session 16's review).
    let first = after.map_or(RANK_EXACT, |a| a.rank);
    for rank in first..=RANK_CONTAINS {
        let want = limit - out.len() as i64;
        if want <= 0 {
            break;
        }
        let cursor = after.filter(|a| a.rank == rank);
        let mut b = base_conditions(tenant, f);
        for &(col, key) in &texts[1..] {
            let p = b.bind(like_pattern(key));
            let m = format!("LIKE {p} ESCAPE '\\'");
            // With history: the person's own rows, through the history's
            // key (not every history row of the tenant that matches).
            b.conds.push(if f.include_history {
                person_history_has(col, &m)
            } else {
                text_condition(false, col, &m)
            });
        }
        let backend = tx.backend();
        let c_order = code_point_order(backend);
        let narrow =
            f.household_number.is_some() || f.birth_key.is_some() || f.addressee_number.is_some();
        let short = main_key.chars().count() <= 2;
        let rows = if f.include_history && short && !narrow {
            history_gram_phase(tx, tenant, b, main_col, main_key, rank, cursor, want)?
        } else if f.include_history {
            // The person's best row decides the rank: a row of this rank,
            // none of a better one.
            let exact =
                |b: &mut SqlBuilder| format!("LIKE {} ESCAPE '\\'", b.bind(like_escaped(main_key)));
            let prefix = |b: &mut SqlBuilder| {
                format!(
                    "LIKE {} ESCAPE '\\'",
                    b.bind(format!("{}%", like_escaped(main_key)))
                )
            };
            let contains =
                |b: &mut SqlBuilder| format!("LIKE {} ESCAPE '\\'", b.bind(like_pattern(main_key)));
            // The persons whose history holds the text of this rank,
            // through the distinct keys and the history's key B-trees
            // (migration 34), first; when they are few, each is checked
            // by primary key. When they are many, the current rows are
            // walked in 宛名番号 order, each person checked by primary
            // key, until the page is full. A text the keys cannot answer
            // (a LIKE wildcard in it, or longer than the posted trigrams)
            // is matched against the tenant's history rows.
            let probed = if trigram_usable(main_key) {
                history_key_probe(tx, main_col, main_key, rank, tenant, cursor)?
            } else {
                KeyProbe::Unknown
            };
            let (listed, walk) = match probed {
                KeyProbe::Found(persons) if persons.is_empty() => continue,
                KeyProbe::Found(persons) => {
                    let ps: Vec<String> = persons.into_iter().map(|p| b.bind(p)).collect();
                    b.conds
                        .push(format!("c.addressee_number IN ({})", ps.join(", ")));
                    (true, false)
                }
                // With an indexed equality filter its few rows are
                // checked and sorted instead.
                KeyProbe::Many => (true, !narrow),
                KeyProbe::Unknown => (false, false),
            };
            let has = |m: &str| {
                if listed {
                    person_history_has(main_col, m)
                } else {
                    text_condition(true, main_col, m)
                }
            };
            match rank {
                RANK_EXACT => {
                    let m = exact(&mut b);
                    b.conds.push(has(&m));
                }
                RANK_PREFIX => {
                    let (m, better) = (prefix(&mut b), exact(&mut b));
                    b.conds.push(has(&m));
                    b.conds.push(format!("NOT {}", has(&better)));
                }
                _ => {
                    let (m, better) = (contains(&mut b), prefix(&mut b));
                    b.conds.push(has(&m));
                    b.conds.push(format!("NOT {}", has(&better)));
                }
            }
            if let Some(a) = cursor {
                let p = b.bind(a.after.as_str().to_string());
                b.conds.push(format!("c.addressee_number > {p}"));
            }
            if walk {
                ordered_walk(tx, |tx| {
                    run_phase(tx, tenant, &b, "c.addressee_number", want)
                })?
            } else {
                run_phase(tx, tenant, &b, "c.addressee_number || ''", want)?
            }
        } else {
            let col = format!("c.{main_col}{c_order}");
            let q = b.bind(main_key.clone());
            match rank {
                RANK_EXACT => {
                    b.conds.push(format!("{col} = {q}"));
                    if let Some(a) = cursor {
                        let p = b.bind(a.after.as_str().to_string());
                        b.conds.push(format!("c.addressee_number > {p}"));
                    }
                    run_phase(tx, tenant, &b, "c.addressee_number", want)?
                }
                RANK_PREFIX => {
                    let q_end = b.bind(prefix_end(main_key));
                    b.conds.push(format!("{col} > {q} AND {col} < {q_end}"));
                    if let Some(a) = cursor {
                        let k = b.bind(a.key.clone());
                        let p = b.bind(a.after.as_str().to_string());
                        b.conds.push(format!(
                            "({col} > {k} OR ({col} = {k} AND c.addressee_number > {p}))"
                        ));
                    }
                    run_phase(tx, tenant, &b, &format!("{col}, c.addressee_number"), want)?
                }
                _ => {
                    let q_end = b.bind(prefix_end(main_key));
                    b.conds
                        .push(format!("NOT ({col} >= {q} AND {col} < {q_end})"));
                    let found =
                        contains_phase(tx, tenant, b, main_col, main_key, narrow, cursor, want)?;
                    out.extend(found.into_iter().map(|(row, key)| hit(row, rank, key)));
                    continue;
                }
            }
        };
        out.extend(rows.into_iter().map(|row| {
            let key = if rank == RANK_PREFIX && !f.include_history {
                main_key_of(&row, main_col)
            } else {
                String::new()
            };
            hit(row, rank, key)
        }));
    }
    Ok(out)
}

fn hit(row: HistoryRow, rank: u8, key: String) -> SearchHit {
    let after = row.record.addressee_number.clone();
    SearchHit {
        row,
        cursor: SearchCursor { rank, key, after },
    }
}

/// The folded key of `col` for a current row, as stored (see
/// [`HistoryEncoder::push`]).
fn main_key_of(row: &HistoryRow, col: &str) -> String {
    let r = &row.record;
    let mut folds = FoldCache::default();
    let mut buf = Vec::new();
    match col {
        "name_key" => write_key(&mut buf, &name_parts(r), &mut folds),
        "kana_key" => write_key(&mut buf, &kana_parts(r), &mut folds),
        _ => {
            let a = match r.address.annex.as_deref() {
                Some(annex) if !annex.is_empty() => r.address.full(),
                _ => r.address.address.clone(),
            };
            buf.extend_from_slice(folds.key(&a).as_bytes());
        }
    }
    String::from_utf8(buf).unwrap_or_default()
}

/// Conditions every phase shares: tenant, birth date, numbers, status,
/// the shield of support measures.
fn base_conditions(tenant: &MunicipalityCode, f: &SearchFilter) -> SqlBuilder {
    let mut b = SqlBuilder {
        conds: vec!["c.tenant = $1".into()],
        binds: vec![tenant.as_str().to_string()],
    };
    if let Some(k) = &f.birth_key {
        let p = b.bind(k.clone());
        b.conds.push(format!("c.birth_key = {p}"));
    }
    if let Some(a) = &f.addressee_number {
        let p = b.bind(a.as_str().to_string());
        b.conds.push(format!("c.addressee_number = {p}"));
    }
    if let Some(h) = &f.household_number {
        let p = b.bind(h.as_str().to_string());
        b.conds.push(format!("c.household_number = {p}"));
    }
    if !f.include_removed {
        b.conds.push("c.status = 'resident'".into());
    }
    if f.exclude_shielded {
        b.conds
            .push(format!("NOT {}", super::support::shielded_sql("c")));
    }
    b
}

/// A text condition on the current row, or with history on any of the
/// person's rows.
fn text_condition(history: bool, col: &str, m: &str) -> String {
    if history {
        format!(
            "c.addressee_number IN (SELECT h.addressee_number FROM resident_history h WHERE h.tenant = $1 AND h.{col} {m})"
        )
    } else {
        format!("c.{col} {m}")
    }
}

/// Whether any history row of the current row `c`'s person has `col`
/// matching `m`: read through the history's primary key, person by person
/// (for a walk that already holds few persons: the gram postings, or the
/// rows of an indexed equality filter).
fn person_history_has(col: &str, m: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM resident_history hx WHERE hx.tenant = c.tenant \
         AND hx.addressee_number = c.addressee_number AND hx.{col} {m})"
    )
}

/// One rank of a search with `include_history` by a text of one or two
/// characters (migration 28): the history postings of the rank's gram
/// ([`history_grams`]: the whole key for exact, its start for prefix, the
/// text itself for contained), walked in 宛名番号 order; each person is
/// rechecked against their history rows (a match of this rank, none of a
/// better one), so the results and their order are those of the
/// conditions alone, whatever the postings hold. The shield of support
/// measures and the other filters are in `b`, tested on the same row.
#[allow(clippy::too_many_arguments)]
fn history_gram_phase(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    mut b: SqlBuilder,
    col: &str,
    key: &str,
    rank: u8,
    cursor: Option<&SearchCursor>,
    want: i64,
) -> Result<Vec<HistoryRow>, StoreError> {
    let gcol = history_gram_col(col).ok_or_else(|| corrupt(format!("no grams for {col}")))?;
    let like = |b: &mut SqlBuilder, pattern: String| {
        let p = b.bind(pattern);
        person_history_has(col, &format!("LIKE {p} ESCAPE '\\'"))
    };
    let exact = like_escaped(key);
    let prefix = format!("{exact}%");
    let gram = match rank {
        RANK_EXACT => {
            let m = like(&mut b, exact);
            b.conds.push(m);
            format!("{GRAM_EXACT}{key}")
        }
        RANK_PREFIX => {
            let (m, better) = (like(&mut b, prefix), like(&mut b, exact));
            b.conds.push(m);
            b.conds.push(format!("NOT {better}"));
            format!("{GRAM_START}{key}")
        }
        _ => {
            let (m, better) = (like(&mut b, like_pattern(key)), like(&mut b, prefix));
            b.conds.push(m);
            b.conds.push(format!("NOT {better}"));
            key.to_string()
        }
    };
    let g = b.bind(gram);
    b.conds
        .push(format!("g.tenant = $1 AND g.col = {gcol} AND g.gram = {g}"));
    if let Some(a) = cursor {
        let p = b.bind(a.after.as_str().to_string());
        b.conds.push(format!("g.addressee_number > {p}"));
    }
    let limit_p = format!("${}", b.binds.len() + 1);
    let sql = format!(
        "SELECT {HISTORY_COLUMNS} {} ORDER BY g.addressee_number LIMIT {limit_p}",
        gram_walk(tx.backend(), &b.conds)
    );
    let mut params: Vec<Param<'_>> = b.binds.iter().map(|s| Param::Text(s.as_str())).collect();
    params.push(want.into());
    ordered_walk(tx, |tx| rows(tx, tenant, &sql, &params))
}

/// The persons of tenant `tenant` with a history row whose `col` matches
/// `key` (three characters or more, no wildcard) at `rank`, after the
/// cursor's (migrations 33 and 34): the keys that match are
/// the text itself (exact), the posted keys that start with it (found
/// under its first trigram, in key order) or those that contain it (see
/// [`contained_keys`]); their history rows are read through the history's
/// key B-trees. [`KeyProbe::Many`] past [`KEY_MATCHES`] keys or
/// [`TRIGRAM_PROBE`] persons. Whether anyone matches or nobody does, the
/// reads are a few index lookups: no scan of the tenant, whose time
/// would tell a clerk whether a hidden (support-measure) person has the
/// text (session 16's review).
fn history_key_probe(
    tx: &mut Tx<'_>,
    col: &str,
    key: &str,
    rank: u8,
    tenant: &MunicipalityCode,
    cursor: Option<&SearchCursor>,
) -> Result<KeyProbe, StoreError> {
    let Some(gcol) = gram_col(col) else {
        return Ok(KeyProbe::Unknown);
    };
    let keys: Vec<String> = match rank {
        RANK_EXACT => vec![key.to_string()],
        RANK_PREFIX => {
            let first: String = key.chars().take(3).collect();
            let end = prefix_end(key);
            tx.query(
                &format!(
                    "SELECT key FROM search_key_gram WHERE tenant = $1 AND col = {gcol} AND gram = $2 \
                     AND key > $3 AND key < $4 ORDER BY key LIMIT {}",
                    KEY_MATCHES + 1
                ),
                &[
                    tenant.as_str().into(),
                    first.as_str().into(),
                    key.into(),
                    end.as_str().into(),
                ],
            )?
            .iter()
            .map(|r| r.text(0))
            .collect::<Result<_, _>>()?
        }
        _ => match contained_keys(tx, tenant.as_str(), gcol, key)? {
            Some(keys) => keys,
            None => return Ok(KeyProbe::Unknown),
        },
    };
    if keys.is_empty() {
        return Ok(KeyProbe::Found(Vec::new()));
    }
    if keys.len() > KEY_MATCHES {
        return Ok(KeyProbe::Many);
    }
    // Rows, not persons, are limited (a person has a few): DISTINCT would
    // read every match before the limit.
    let rows_limit = TRIGRAM_PROBE * 4;
    let mut params: Vec<Param<'_>> = vec![tenant.as_str().into()];
    params.extend(keys.iter().map(|k| Param::Text(k.as_str())));
    let c_order = code_point_order(tx.backend());
    let mut sql = format!(
        "SELECT h.addressee_number FROM resident_history h WHERE h.tenant = $1 \
         AND h.{col}{c_order} IN ({})",
        placeholders(2, keys.len())
    );
    let after = cursor.map(|a| a.after.as_str().to_string());
    if let Some(a) = &after {
        sql.push_str(&format!(" AND h.addressee_number > ${}", params.len() + 1));
        params.push(Param::Text(a));
    }
    sql.push_str(&format!(" LIMIT {}", rows_limit + 1));
    let found = tx.query(&sql, &params)?;
    if found.len() as i64 > rows_limit {
        return Ok(KeyProbe::Many);
    }
    let mut persons: Vec<String> = found.iter().map(|r| r.text(0)).collect::<Result<_, _>>()?;
    persons.sort();
    persons.dedup();
    if persons.len() as i64 > TRIGRAM_PROBE {
        return Ok(KeyProbe::Many);
    }
    Ok(KeyProbe::Found(persons))
}

/// Whether the posted trigrams (migration 33) can serve a contained match
/// of `key`: three characters or more, none a LIKE wildcard.
fn trigram_usable(key: &str) -> bool {
    key.chars().count() >= 3 && !key.contains(['%', '_', '\\'])
}

/// Grams are taken up to this character position of a key (1-based; the
/// rows of `search_gram_positions`, migration 25).
pub const GRAM_POSITIONS: usize = 512;

/// The `col` of `resident_gram` for a key column of the current row:
/// names 1, furigana 2 (migration 25), addresses 3 (migration 28).
fn gram_col(col: &str) -> Option<i64> {
    match col {
        "name_key" => Some(1),
        "kana_key" => Some(2),
        "address_key" => Some(3),
        _ => None,
    }
}

/// The `col` of `resident_gram` for a key column of any history row of
/// the person (migration 28): names 4, furigana 5, addresses 6.
fn history_gram_col(col: &str) -> Option<i64> {
    gram_col(col).map(|c| c + 3)
}

/// A history gram ([`history_grams`]) that starts with this character is
/// the start of a key: `START` + its first one or two characters.
pub const GRAM_START: char = '\u{2}';
/// A history gram that starts with this character is a whole key of one
/// or two characters.
pub const GRAM_EXACT: char = '\u{3}';

/// The grams of one history key (migration 28; `col` 4–6 of
/// `resident_gram`), which with `include_history` serve one and two
/// characters for every rank: [`GRAM_EXACT`] and the key when it has at
/// most two characters (exact), [`GRAM_START`] and its first character,
/// and with its first two (prefix), and for each character after the first, up
/// to [`GRAM_POSITIONS`], that is not the separator of name parts: the
/// character alone and with the next one of its part (contained). A
/// person's postings are the union over all their history rows (the
/// current one included); grams are only added, never taken away (a
/// stale one costs a recheck, never a wrong result). Must give what
/// [`history_gram_fill_sql`] gives (tested).
pub fn history_grams(key: &str) -> Vec<String> {
    let cs: Vec<char> = key.chars().collect();
    let mut out: Vec<String> = Vec::new();
    if cs.is_empty() {
        return out;
    }
    if cs.len() <= 2 {
        out.push(format!("{GRAM_EXACT}{key}"));
    }
    if cs[0] != KEY_SEPARATOR {
        out.push(format!("{GRAM_START}{}", cs[0]));
        if let Some(&n) = cs.get(1).filter(|&&n| n != KEY_SEPARATOR) {
            out.push(format!("{GRAM_START}{}{n}", cs[0]));
        }
    }
    for (i, &c) in cs.iter().enumerate().take(GRAM_POSITIONS).skip(1) {
        if c == KEY_SEPARATOR {
            continue;
        }
        out.push(c.to_string());
        if let Some(&n) = cs.get(i + 1).filter(|&&n| n != KEY_SEPARATOR) {
            out.push(format!("{c}{n}"));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// SQL that adds the history grams ([`history_grams`]) of the history
/// rows `source c` that match `cond` to `resident_gram` (a bulk fill:
/// imports). Existing grams are left as they are. Migration 28 ran a
/// frozen copy of it (`store::migrations`): a change here does not
/// change what that migration does.
pub fn history_gram_fill_sql(backend: super::Backend, source: &str, cond: &str) -> String {
    let (sep, start, exact) = match backend {
        super::Backend::Sqlite => ("char(31)", "char(2)", "char(3)"),
        super::Backend::Postgres => ("chr(31)", "chr(2)", "chr(3)"),
    };
    let mut parts = Vec::new();
    for (col, k) in [(4, "name_key"), (5, "kana_key"), (6, "address_key")] {
        let sel = |gram: &str, from: &str, w: &str| {
            format!(
                "SELECT c.tenant, {col}, {gram}, c.addressee_number FROM {source} c {from} WHERE {cond} AND {w}"
            )
        };
        parts.push(sel(
            &format!("{exact} || c.{k}"),
            "",
            &format!("length(c.{k}) BETWEEN 1 AND 2"),
        ));
        parts.push(sel(
            &format!("{start} || substr(c.{k}, 1, 1)"),
            "",
            &format!("length(c.{k}) >= 1 AND substr(c.{k}, 1, 1) <> {sep}"),
        ));
        parts.push(sel(
            &format!("{start} || substr(c.{k}, 1, 2)"),
            "",
            &format!("substr(c.{k}, 1, 1) <> {sep} AND substr(c.{k}, 2, 1) NOT IN ('', {sep})"),
        ));
        let positions = format!("JOIN search_gram_positions p ON p.i <= length(c.{k})");
        parts.push(sel(
            &format!("substr(c.{k}, p.i, 1)"),
            &positions,
            &format!("substr(c.{k}, p.i, 1) <> {sep}"),
        ));
        parts.push(sel(
            &format!("substr(c.{k}, p.i, 2)"),
            &positions,
            &format!(
                "substr(c.{k}, p.i, 1) <> {sep} AND substr(c.{k}, p.i + 1, 1) NOT IN ('', {sep})"
            ),
        ));
    }
    let select = format!("{} ORDER BY 1, 2, 3, 4", parts.join(" UNION ALL "));
    insert_grams_from(backend, &select)
}

/// `INSERT` of the gram rows a `SELECT` gives (tenant, col, gram,
/// 宛名番号), rows already posted left as they are: the bulk fills of the
/// current and the history grams.
fn insert_grams_from(backend: super::Backend, select: &str) -> String {
    match backend {
        super::Backend::Sqlite => format!(
            "INSERT OR IGNORE INTO resident_gram (tenant, col, gram, addressee_number) {select}"
        ),
        super::Backend::Postgres => format!(
            "INSERT INTO resident_gram (tenant, col, gram, addressee_number) {select} \
             ON CONFLICT DO NOTHING"
        ),
    }
}

/// Adds the history grams of a person's new history row's keys `new`
/// (name, furigana, address) that the keys of their current row `old`
/// (already posted, as every history row's are) do not give.
pub fn add_history_grams(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    person: &str,
    old: [Option<&str>; 3],
    new: [Option<&str>; 3],
) -> Result<(), StoreError> {
    insert_grams(tx, tenant, person, &history_grams_to_add(old, new))
}

/// The history grams (`col`, gram) of the keys `new` that the keys `old`
/// do not give (see [`add_history_grams`]).
fn history_grams_to_add(old: [Option<&str>; 3], new: [Option<&str>; 3]) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    for (i, (o, n)) in old.into_iter().zip(new).enumerate() {
        if o == n {
            continue;
        }
        let col = i as i64 + 4;
        let before = o.map(history_grams).unwrap_or_default();
        out.extend(
            n.map(history_grams)
                .unwrap_or_default()
                .into_iter()
                .filter(|g| !before.contains(g))
                .map(|g| (col, g)),
        );
    }
    out
}

/// Most gram rows in one `INSERT`.
const GRAMS_PER_INSERT: usize = 2000;

/// Posts a person's grams, each a (`col`, gram) (see [`insert_grams_of`]).
fn insert_grams(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    person: &str,
    grams: &[(i64, String)],
) -> Result<(), StoreError> {
    let all: Vec<(&str, i64, &str)> = grams
        .iter()
        .map(|(col, g)| (person, *col, g.as_str()))
        .collect();
    insert_grams_of(tx, tenant, &all)
}

/// Posts grams, each a (宛名番号, `col`, gram), of any persons of the
/// tenant: one statement (one round trip on PostgreSQL) up to
/// [`GRAMS_PER_INSERT`], whatever their persons and columns. The rows go
/// as one JSON array bound to one parameter, so the statement's text is
/// the same for every change (prepared once per connection; a `VALUES`
/// list would be a new statement for every count of grams). Grams already
/// posted are left as they are.
fn insert_grams_of(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    grams: &[(&str, i64, &str)],
) -> Result<(), StoreError> {
    let sql = match tx.backend() {
        super::Backend::Sqlite => {
            "INSERT INTO resident_gram (tenant, col, gram, addressee_number) \
             SELECT $1, json_extract(e.value, '$[1]'), json_extract(e.value, '$[2]'), \
             json_extract(e.value, '$[0]') FROM json_each($2) AS e WHERE true \
             ON CONFLICT DO NOTHING"
        }
        super::Backend::Postgres => {
            "INSERT INTO resident_gram (tenant, col, gram, addressee_number) \
             SELECT $1, (e->>1)::smallint, e->>2, e->>0 FROM jsonb_array_elements($2::text::jsonb) AS e \
             ON CONFLICT DO NOTHING"
        }
    };
    for chunk in grams.chunks(GRAMS_PER_INSERT) {
        let rows =
            serde_json::to_string(chunk).map_err(|e| StoreError::Corrupt(format!("grams: {e}")))?;
        tx.execute(sql, &[tenant.as_str().into(), rows.as_str().into()])?;
    }
    Ok(())
}

/// The grams of a folded key (migration 25): for each character after
/// the first, up to [`GRAM_POSITIONS`], that is not the separator of name
/// parts: the character and the next one of its part, or the character
/// alone at the end of a part. A key's first character starts only prefix
/// matches. Sorted, without repeats. What `col` 1–3 held up to
/// migration 29, and what migration 28's frozen fill gives (tested:
/// `migration::*::an_upgrade_to_29_keeps_every_search`).
pub fn grams(key: &str) -> Vec<String> {
    let cs: Vec<char> = key.chars().collect();
    let mut out: Vec<String> = Vec::new();
    for (i, &c) in cs.iter().enumerate().take(GRAM_POSITIONS).skip(1) {
        if c == KEY_SEPARATOR {
            continue;
        }
        let mut g = String::from(c);
        if let Some(&n) = cs.get(i + 1).filter(|&&n| n != KEY_SEPARATOR) {
            g.push(n);
        }
        out.push(g);
    }
    out.sort();
    out.dedup();
    out
}

/// The grams of a current row's key that are stored in `col` 1–3 of
/// `resident_gram` (migration 29): those of [`grams`] of one character
/// (a character at the end of a part). Its two-character grams are the
/// same as the contained two-character grams of the history postings of
/// the same key (`col` 4–6, [`history_grams`]; every history row's keys
/// are posted there, the current one's included), so a contained walk
/// by two characters reads those instead (rechecked against the current
/// row); storing them twice cost a quarter of a change's gram rows.
pub fn current_grams(key: &str) -> Vec<String> {
    grams(key)
        .into_iter()
        .filter(|g| g.chars().count() == 1)
        .collect()
}

/// SQL that adds the grams of the current rows `source c` that match
/// `cond` to `resident_gram` (a bulk fill: imports, the re-fold): names,
/// furigana and addresses, [`current_grams`] only. Existing grams are
/// left as they are. Migration 28 ran a frozen copy of what this was
/// then (`store::migrations`): a change here does not change what that
/// migration does; a change to the grams stored needs a migration of
/// its own (as 29).
pub fn gram_fill_sql(backend: super::Backend, source: &str, cond: &str) -> String {
    let sep = match backend {
        super::Backend::Sqlite => "char(31)",
        super::Backend::Postgres => "chr(31)",
    };
    let one = |col: i64, k: &str| {
        format!(
            "SELECT c.tenant, {col}, substr(c.{k}, p.i, 1), c.addressee_number \
             FROM {source} c JOIN search_gram_positions p ON p.i <= length(c.{k}) \
             WHERE {cond} AND substr(c.{k}, p.i, 1) <> {sep} \
             AND substr(c.{k}, p.i + 1, 1) IN ('', {sep})"
        )
    };
    // In key order: the B-tree is appended to rather than split at random.
    let select = format!(
        "{} UNION ALL {} UNION ALL {} ORDER BY 1, 2, 3, 4",
        one(1, "name_key"),
        one(2, "kana_key"),
        one(3, "address_key")
    );
    insert_grams_from(backend, &select)
}

/// Trigrams of a key are posted from at most this many start positions
/// (characters 1–511: the rows 2–512 of `search_gram_positions`, each
/// less one).
pub const KEY_TRIGRAM_STARTS: usize = GRAM_POSITIONS - 1;

/// The trigrams of a key posted in `search_key_gram` (migration 33): every
/// run of three characters starting within the first
/// [`KEY_TRIGRAM_STARTS`], the separator of name parts included. Sorted,
/// without repeats; none for a key shorter than three characters (it
/// contains no text of three). Must give what [`key_gram_fill_sql`]
/// gives (tested).
pub fn key_trigrams(key: &str) -> Vec<String> {
    let cs: Vec<char> = key.chars().collect();
    let mut out: Vec<String> = cs
        .windows(3)
        .take(KEY_TRIGRAM_STARTS)
        .map(|w| w.iter().collect())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The key columns of the current row posted in `search_key_gram`, with
/// their `col` (as [`gram_col`]).
const KEY_GRAM_COLUMNS: [(i64, &str); 3] = [(1, "name_key"), (2, "kana_key"), (3, "address_key")];

/// SQL that posts the keys of the rows `source c` (the history rows:
/// every key a person has had, the current one included) matching `cond`
/// in `search_key_gram`, each distinct key once with each of its
/// [`key_trigrams`] (a bulk fill: imports). Keys already posted are left
/// as they are; [`KEY_GRAM_COUNT_SQL`] must run after it.
pub fn key_gram_fill_sql(backend: super::Backend, source: &str, cond: &str) -> String {
    let parts: Vec<String> = KEY_GRAM_COLUMNS
        .iter()
        .map(|(col, k)| {
            format!(
                "SELECT c.tenant, {col}, substr(c.{k}, p.i - 1, 3), c.{k} \
                 FROM {source} c JOIN search_gram_positions p ON p.i + 1 <= length(c.{k}) \
                 WHERE {cond}"
            )
        })
        .collect();
    let select = format!("{} ORDER BY 1, 2, 3, 4", parts.join(" UNION "));
    match backend {
        super::Backend::Sqlite => {
            format!("INSERT OR IGNORE INTO search_key_gram (tenant, col, gram, key) {select}")
        }
        super::Backend::Postgres => format!(
            "INSERT INTO search_key_gram (tenant, col, gram, key) {select} ON CONFLICT DO NOTHING"
        ),
    }
}

/// Counts a tenant's (`$1`) posted keys per trigram again
/// (`search_gram_count`), after a bulk fill.
pub const KEY_GRAM_COUNT_SQL: &str = "INSERT INTO search_gram_count (tenant, col, gram, keys) \
     SELECT tenant, col, gram, count(*) FROM search_key_gram WHERE tenant = $1 \
     GROUP BY tenant, col, gram \
     ON CONFLICT (tenant, col, gram) DO UPDATE SET keys = excluded.keys";

/// The keys of `new` (name, furigana, address) that differ from `old`,
/// each with its `col`: what [`post_keys`] is given for a changed row.
fn changed_keys<'a>(old: [Option<&str>; 3], new: [Option<&'a str>; 3]) -> Vec<(i64, &'a str)> {
    old.into_iter()
        .zip(new)
        .enumerate()
        .filter(|(_, (o, n))| o != n)
        .filter_map(|(i, (_, n))| n.map(|n| (i as i64 + 1, n)))
        .collect()
}

/// Posts keys (`col`, key) of a new history row (which is the person's
/// current row) in `search_key_gram` with their trigrams, and counts each
/// trigram's new keys in `search_gram_count` (both in the change's
/// transaction). A key posted already costs one conflict per trigram and
/// writes nothing. Keys are never taken away, so the posted keys are
/// those of every history row: a key nobody has now costs a recheck in a
/// search of current rows (the keys found are joined to them), never a
/// wrong result.
pub fn post_keys(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    keys: &[(i64, &str)],
) -> Result<(), StoreError> {
    let mut rows: Vec<(i64, String, &str)> = keys
        .iter()
        .flat_map(|&(col, k)| key_trigrams(k).into_iter().map(move |g| (col, g, k)))
        .collect();
    rows.sort();
    rows.dedup();
    for chunk in rows.chunks(GRAMS_PER_INSERT) {
        let json =
            serde_json::to_string(chunk).map_err(|e| StoreError::Corrupt(format!("keys: {e}")))?;
        match tx.backend() {
            super::Backend::Postgres => {
                tx.execute(
                    "WITH ins AS (INSERT INTO search_key_gram (tenant, col, gram, key) \
                     SELECT $1, (e->>0)::smallint, e->>1, e->>2 FROM jsonb_array_elements($2::text::jsonb) AS e \
                     ON CONFLICT DO NOTHING RETURNING col, gram) \
                     INSERT INTO search_gram_count (tenant, col, gram, keys) \
                     SELECT $1, col, gram, count(*) FROM ins GROUP BY col, gram \
                     ON CONFLICT (tenant, col, gram) DO UPDATE SET keys = search_gram_count.keys + excluded.keys",
                    &[tenant.as_str().into(), json.as_str().into()],
                )?;
            }
            super::Backend::Sqlite => {
                let added = tx.query(
                    "INSERT INTO search_key_gram (tenant, col, gram, key) \
                     SELECT $1, json_extract(e.value, '$[0]'), json_extract(e.value, '$[1]'), \
                     json_extract(e.value, '$[2]') FROM json_each($2) AS e WHERE true \
                     ON CONFLICT DO NOTHING RETURNING col, gram",
                    &[tenant.as_str().into(), json.as_str().into()],
                )?;
                let mut counts: std::collections::BTreeMap<(i64, String), i64> = Default::default();
                for r in &added {
                    *counts.entry((r.int(0)?, r.text(1)?)).or_default() += 1;
                }
                if counts.is_empty() {
                    continue;
                }
                let counts: Vec<(i64, &str, i64)> = counts
                    .iter()
                    .map(|((c, g), n)| (*c, g.as_str(), *n))
                    .collect();
                let json = serde_json::to_string(&counts)
                    .map_err(|e| StoreError::Corrupt(format!("keys: {e}")))?;
                tx.execute(
                    "INSERT INTO search_gram_count (tenant, col, gram, keys) \
                     SELECT $1, json_extract(e.value, '$[0]'), json_extract(e.value, '$[1]'), \
                     json_extract(e.value, '$[2]') FROM json_each($2) AS e WHERE true \
                     ON CONFLICT (tenant, col, gram) DO UPDATE SET keys = keys + excluded.keys",
                    &[tenant.as_str().into(), json.as_str().into()],
                )?;
            }
        }
    }
    Ok(())
}

/// Replaces a person's grams of the current row: those of the keys `old`
/// (name, furigana, address, as stored until now) go, those of `new`
/// come. Keys that did not change cost nothing.
pub fn replace_grams(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    person: &str,
    old: [Option<&str>; 3],
    new: [Option<&str>; 3],
) -> Result<(), StoreError> {
    let come = delete_current_grams(tx, tenant, person, old, new)?;
    insert_grams(tx, tenant, person, &come)
}

/// Of a person's grams of the current row, those of the keys `old`
/// (name, furigana, address, as stored until now) are deleted here, and
/// those of `new` that `old` did not give are returned, (`col`, gram),
/// for the caller to post with [`insert_grams`] (with the history grams
/// in the same statement). Keys that did not change cost nothing.
fn delete_current_grams(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    person: &str,
    old: [Option<&str>; 3],
    new: [Option<&str>; 3],
) -> Result<Vec<(i64, String)>, StoreError> {
    let mut out = Vec::new();
    for (i, (o, n)) in old.into_iter().zip(new).enumerate() {
        if o == n {
            continue;
        }
        let col = i as i64 + 1;
        let before = o.map(current_grams).unwrap_or_default();
        let after = n.map(current_grams).unwrap_or_default();
        let gone: Vec<&String> = before.iter().filter(|g| !after.contains(*g)).collect();
        let come: Vec<&String> = after.iter().filter(|g| !before.contains(*g)).collect();
        for chunk in gone.chunks(200) {
            let sql = format!(
                "DELETE FROM resident_gram WHERE tenant = $1 AND col = {col} AND addressee_number = $2 \
                 AND gram IN ({})",
                placeholders(3, chunk.len())
            );
            let mut params: Vec<Param<'_>> = vec![tenant.as_str().into(), person.into()];
            params.extend(chunk.iter().map(|g| Param::Text(g.as_str())));
            tx.execute(&sql, &params)?;
        }
        out.extend(come.into_iter().map(|g| (col, g.clone())));
    }
    Ok(out)
}

/// The contained (not prefix) matches of `key` in `col` of current rows,
/// at most `want`, each with the key of its place in the order (see
/// [`SearchCursor`]): in 宛名番号 order, except for one character
/// (gram, then 宛名番号). Every path reads at most about a page:
///
/// - with an indexed equality filter (`narrow`: birth date, 宛名番号,
///   世帯番号), its few rows are tested and sorted;
/// - three characters or more: the distinct keys that contain the text
///   are found through their rarest trigram and joined to the current
///   rows ([`key_probe`], migration 33), up to [`TRIGRAM_PROBE`] persons
///   (sorted in memory); a text matching more (or more than
///   [`KEY_MATCHES`] keys) is common, and the posting list
///   (`resident_gram`) of its sparsest pair of characters
///   ([`sparsest_pairs`]) is walked in 宛名番号 order, kept to the
///   persons in the next sparsest pair's list too, each row rechecked,
///   until the page is full (so is a text longer than the posted
///   trigrams);
/// - two characters: that bigram's posting list, in 宛名番号 order;
/// - one character: the posting lists of the grams that start with it,
///   in (gram, 宛名番号) order; a person is listed at their first such
///   gram only.
///
/// Names, furigana (migration 25) and addresses (migration 28) alike.
#[allow(clippy::too_many_arguments)]
fn contains_phase(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    mut b: SqlBuilder,
    col: &str,
    key: &str,
    narrow: bool,
    cursor: Option<&SearchCursor>,
    want: i64,
) -> Result<Vec<(HistoryRow, String)>, StoreError> {
    let pattern = like_pattern(key);
    let plain = |rows: Vec<HistoryRow>| -> Vec<(HistoryRow, String)> {
        rows.into_iter().map(|r| (r, String::new())).collect()
    };
    let n = key.chars().count();
    let gcol = gram_col(col);
    // On PostgreSQL `|| ''` keeps a key B-tree out of a recheck.
    let recheck = |b: &mut SqlBuilder, backend: super::Backend| {
        let p = b.bind(pattern.clone());
        match backend {
            super::Backend::Sqlite => format!("c.{col} LIKE {p} ESCAPE '\\'"),
            super::Backend::Postgres => format!("(c.{col} || '') LIKE {p} ESCAPE '\\'"),
        }
    };
    if narrow {
        if let Some(a) = cursor {
            let p = b.bind(a.after.as_str().to_string());
            b.conds.push(format!("c.addressee_number > {p}"));
        }
        let m = recheck(&mut b, tx.backend());
        b.conds.push(m);
        return Ok(plain(run_phase(
            tx,
            tenant,
            &b,
            "c.addressee_number || ''",
            want,
        )?));
    }
    if n >= 3 && trigram_usable(key) {
        // More, or a text the keys cannot answer: the walk below.
        if let KeyProbe::Found(found) = key_probe(tx, &b, col, key, cursor, want)? {
            return fetch_persons(tx, tenant, found, want).map(plain);
        }
    }
    let gcol = gcol.ok_or_else(|| corrupt(format!("no grams for {col}")))?;
    let backend = tx.backend();
    let m = recheck(&mut b, backend);
    b.conds.push(m);
    // Two-character grams: the history postings of the same key column
    // (migration 29; they hold every current key's, and stale ones of past
    // keys, which the recheck drops).
    let hcol = gcol + 3;
    b.conds.push("g.tenant = $1".to_string());
    if n >= 2 {
        // The sparsest posting list of the text's pairs of characters.
        let after = cursor.map(|a| a.after.as_str());
        let mut pairs = sparsest_pairs(tx, b.binds[0].as_str(), hcol, key, after)?.into_iter();
        let first2: String = key.chars().take(2).collect();
        let g = b.bind(pairs.next().unwrap_or(first2));
        b.conds.push(format!("g.col = {hcol} AND g.gram = {g}"));
        // The next sparsest pair's list too: a person must be in both
        // (PostgreSQL merges the two lists, SQLite looks each posting up),
        // so the rows of fewer persons are read and rechecked.
        if let Some(second) = pairs.next() {
            let g2 = b.bind(second);
            b.conds.push(format!(
                "EXISTS (SELECT 1 FROM resident_gram g2 WHERE g2.tenant = g.tenant \
                 AND g2.col = g.col AND g2.gram = {g2} AND g2.addressee_number = g.addressee_number)"
            ));
        }
        if let Some(a) = after {
            let p = b.bind(a.to_string());
            b.conds.push(format!("g.addressee_number > {p}"));
        }
        let limit_p = format!("${}", b.binds.len() + 1);
        let sql = format!(
            "SELECT {HISTORY_COLUMNS} {} ORDER BY g.addressee_number LIMIT {limit_p}",
            gram_walk(backend, &b.conds)
        );
        let mut params: Vec<Param<'_>> = b.binds.iter().map(|s| Param::Text(s.as_str())).collect();
        params.push(want.into());
        return Ok(plain(ordered_walk(tx, |tx| {
            rows(tx, tenant, &sql, &params)
        })?));
    }
    // One character: the grams starting with it, in (gram, 宛名番号)
    // order; a person is listed at their smallest such gram only, so
    // pages are read until `want` persons are found or the grams end. The
    // character alone (at the end of a part) is posted for current rows
    // (`gcol`), and comes first; the two-character grams after it are read
    // from the history postings (`hcol`), whose one-character grams (any
    // position) are not this rank's and are skipped by the range.
    // (Each list binds only what it uses: PostgreSQL refuses a statement
    // with a parameter it cannot type.)
    let segment = |b: &mut SqlBuilder, second: bool| {
        let lo = b.bind(key.to_string());
        if second {
            let hi = b.bind(prefix_end(key));
            format!("g.col = {hcol} AND g.gram > {lo} AND g.gram < {hi}")
        } else {
            format!("g.col = {gcol} AND g.gram = {lo}")
        }
    };
    // A cursor without a gram (the earlier form) continues after that
    // person in the first gram's list.
    let mut at: Option<(String, String)> = cursor.map(|a| {
        let gram = if a.key.is_empty() {
            key
        } else {
            a.key.as_str()
        };
        (gram.to_string(), a.after.as_str().to_string())
    });
    let keys = tx.tenant_keys(tenant)?;
    let mut out: Vec<(HistoryRow, String)> = Vec::new();
    let batch = (want.max(1) * 2).min(1000);
    for second in [false, true] {
        // A cursor past the character alone starts in the second list.
        if !second && at.as_ref().is_some_and(|(k, _)| k.as_str() != key) {
            continue;
        }
        loop {
            let mut b2 = b.clone();
            let list = segment(&mut b2, second);
            b2.conds.push(list);
            if let Some((k, a)) = &at {
                let k = b2.bind(k.clone());
                let a = b2.bind(a.clone());
                b2.conds.push(format!(
                    "(g.gram > {k} OR (g.gram = {k} AND g.addressee_number > {a}))"
                ));
            }
            let limit_p = format!("${}", b2.binds.len() + 1);
            let sql = format!(
                "SELECT {HISTORY_COLUMNS}, g.gram, c.{col} {} \
                 ORDER BY g.gram, g.addressee_number LIMIT {limit_p}",
                gram_walk(backend, &b2.conds)
            );
            let mut params: Vec<Param<'_>> =
                b2.binds.iter().map(|s| Param::Text(s.as_str())).collect();
            params.push(batch.into());
            let got = ordered_walk(tx, |tx| tx.query(&sql, &params))?;
            let full = got.len() as i64 == batch;
            for r in &got {
                let (gram, stored) = (r.text(15)?, r.text(16)?);
                at = Some((gram.clone(), r.text(12)?));
                let first = grams(&stored).into_iter().find(|g| g.starts_with(key));
                if first.as_deref() != Some(gram.as_str()) {
                    continue;
                }
                out.push((history_row(&keys, r)?, gram));
                if out.len() as i64 >= want {
                    return Ok(out);
                }
            }
            if !full {
                break;
            }
        }
    }
    Ok(out)
}

/// Postings read of each pair of characters by [`sparsest_pairs`].
const PAIR_SAMPLE: usize = 128;

/// Pairs of characters sampled at most by [`sparsest_pairs`].
const MAX_PAIRS_SAMPLED: usize = 16;

/// The pairs of adjacent characters of `key` (two or more characters),
/// sparsest first, by their contained postings (`hcol` of `resident_gram`)
/// after the cursor `after`: the walk of a common text reads the first
/// one's list in 宛名番号 order, keeping the persons also in the second
/// one's, rechecking each person, until its page is full, so it reads
/// about (postings / matches) × page rows; every person whose (non-prefix)
/// key contains the text is in every one of its pairs' lists (posted from
/// the key's second character on). Each list's [`PAIR_SAMPLE`]th posting
/// after the cursor is read (one statement, an index range each): the
/// list whose sample ends furthest on in 宛名番号 order is the sparsest
/// there, and a list that ends before it is short. The first pair alone
/// was walked before: at 1,000,000 residents the address text 丁目19
/// walked 丁目 (in every address) and read 3,833 postings for a page of
/// 51, where 19 is posted for one person in eight; and 4番1号 (4番 the
/// sparsest, for 128,015 persons) read 2,928 postings and their rows,
/// 17.2 ms, where merged with 1号 (161,981) it read 529 rows, 4.7 ms
/// (`EXPLAIN ANALYZE` on PostgreSQL).
fn sparsest_pairs(
    tx: &mut Tx<'_>,
    tenant: &str,
    hcol: i64,
    key: &str,
    after: Option<&str>,
) -> Result<Vec<String>, StoreError> {
    let cs: Vec<char> = key.chars().collect();
    let mut pairs: Vec<String> = cs
        .windows(2)
        .filter(|w| !w.contains(&KEY_SEPARATOR))
        .map(|w| w.iter().collect())
        .collect();
    pairs.sort();
    pairs.dedup();
    if pairs.len() < 2 {
        return Ok(pairs);
    }
    // A long text (one the keys cannot answer: a LIKE wildcard in it, or
    // longer than the posted trigrams) samples a spread of its pairs:
    // any pair serves, and the statement stays small (SQLite allows 500
    // terms in a compound SELECT).
    if pairs.len() > MAX_PAIRS_SAMPLED {
        let step = pairs.len().div_ceil(MAX_PAIRS_SAMPLED);
        pairs = pairs.into_iter().step_by(step).collect();
    }
    let mut params: Vec<Param<'_>> = vec![tenant.into()];
    let from = match after {
        Some(a) => {
            params.push(a.into());
            " AND g.addressee_number > $2"
        }
        None => "",
    };
    let base = params.len();
    params.extend(pairs.iter().map(|p| Param::Text(p.as_str())));
    let sql = (0..pairs.len())
        .map(|i| {
            format!(
                "SELECT {i}, (SELECT g.addressee_number FROM resident_gram g WHERE g.tenant = $1 \
                 AND g.col = {hcol} AND g.gram = ${}{from} ORDER BY g.addressee_number \
                 LIMIT 1 OFFSET {})",
                base + i + 1,
                PAIR_SAMPLE - 1
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let mut ends: Vec<(Option<String>, usize)> = Vec::new();
    for r in tx.query(&sql, &params)? {
        let i = usize::try_from(r.int(0)?).map_err(|_| corrupt("pair index".to_string()))?;
        ends.push((r.opt_text(1)?, i));
    }
    // A short list (no sample's end) first, then the furthest end.
    ends.sort_by(|(a, i), (b, j)| (a.is_some(), b).cmp(&(b.is_some(), a)).then(i.cmp(j)));
    Ok(ends
        .into_iter()
        .filter_map(|(_, i)| pairs.get(i).cloned())
        .collect())
}

/// The current rows of the persons `found` (宛名番号, the matches of a
/// phase that [`key_probe`] found, at most [`TRIGRAM_PROBE`]): the first
/// `want` in 宛名番号 order.
fn fetch_persons(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    mut found: Vec<String>,
    want: i64,
) -> Result<Vec<HistoryRow>, StoreError> {
    found.sort();
    found.truncate(want.max(0) as usize);
    if found.is_empty() {
        return Ok(Vec::new());
    }
    let persons: Vec<AddresseeNumber> = found
        .iter()
        .map(|a| {
            a.parse()
                .map_err(|_| corrupt(format!("addressee number {a}")))
        })
        .collect::<Result<_, _>>()?;
    let sql = format!(
        "SELECT {HISTORY_COLUMNS} {CURRENT_JOIN} WHERE c.tenant = $1 AND c.addressee_number IN ({})",
        placeholders(2, persons.len())
    );
    let mut params: Vec<Param<'_>> = vec![tenant.as_str().into()];
    params.extend(persons.iter().map(|p| Param::Text(p.as_str())));
    let mut rows = rows(tx, tenant, &sql, &params)?;
    rows.sort_by(|a, b| a.record.addressee_number.cmp(&b.record.addressee_number));
    Ok(rows)
}

/// At most this many distinct keys found by [`key_probe`] are joined to
/// the persons through the key B-tree; more, and the text is common
/// enough for a walk of postings in 宛名番号 order.
const KEY_MATCHES: usize = 500;

/// The trigram of `key` that the fewest posted keys of `col` (`gcol`)
/// have (by `search_gram_count`); None for a text too long for the posted
/// trigrams. Even when every trigram is common its keys are far fewer than
/// the persons (a tenant's distinct keys), and a common text stops the
/// read of them early (see [`key_probe`]).
fn rarest_trigram(
    tx: &mut Tx<'_>,
    tenant: &str,
    gcol: i64,
    key: &str,
) -> Result<Option<String>, StoreError> {
    let trigrams = key_trigrams(key);
    // Keys are posted from their first KEY_TRIGRAM_STARTS characters: a
    // longer text could be in the part that is not.
    if trigrams.is_empty() || key.chars().count() > KEY_TRIGRAM_STARTS {
        return Ok(None);
    }
    let mut params: Vec<Param<'_>> = vec![tenant.into()];
    params.extend(trigrams.iter().map(|g| Param::Text(g.as_str())));
    let counts: HashMap<String, i64> = tx
        .query(
            &format!(
                "SELECT gram, keys FROM search_gram_count WHERE tenant = $1 AND col = {gcol} \
                 AND gram IN ({})",
                placeholders(2, trigrams.len())
            ),
            &params,
        )?
        .iter()
        .map(|r| Ok((r.text(0)?, r.int(1)?)))
        .collect::<Result<_, StoreError>>()?;
    // A trigram nobody's key has counts 0: its (empty) list is read.
    Ok(trigrams
        .iter()
        .map(|g| (g, counts.get(g).copied().unwrap_or(0)))
        .min_by_key(|(_, n)| *n)
        .map(|(g, _)| g.clone()))
}

/// What [`key_probe`] found.
enum KeyProbe {
    /// The persons of the phase (宛名番号), at most [`TRIGRAM_PROBE`]:
    /// every one, or on SQLite at least the first page of them in
    /// 宛名番号 order ([`sqlite_key_probe`]).
    Found(Vec<String>),
    /// More than a probe takes: a walk in 宛名番号 order meets a page soon.
    Many,
    /// Not answered here (no keys for the column, or a text longer than
    /// the posted trigrams).
    Unknown,
}

/// The posted keys of `col` (`gcol`) that contain `key` (three characters
/// or more) but do not start with it (a prefix is a better rank), at most
/// [`KEY_MATCHES`] + 1: the keys of the text's rarest trigram, each
/// checked against the text on the index entry itself (no row read). None
/// for a text longer than the posted trigrams.
fn contained_keys(
    tx: &mut Tx<'_>,
    tenant: &str,
    gcol: i64,
    key: &str,
) -> Result<Option<Vec<String>>, StoreError> {
    let Some(rarest) = rarest_trigram(tx, tenant, gcol, key)? else {
        return Ok(None);
    };
    let pattern = like_pattern(key);
    let end = prefix_end(key);
    let matched = tx
        .query(
            &format!(
                "SELECT key FROM search_key_gram WHERE tenant = $1 AND col = {gcol} AND gram = $2 \
                 AND key LIKE $3 ESCAPE '\\' AND NOT (key >= $4 AND key < $5) LIMIT {}",
                KEY_MATCHES + 1
            ),
            &[
                tenant.into(),
                rarest.as_str().into(),
                pattern.as_str().into(),
                key.into(),
                end.as_str().into(),
            ],
        )?
        .iter()
        .map(|r| r.text(0))
        .collect::<Result<_, _>>()?;
    Ok(Some(matched))
}

/// The contained matches (three characters or more) of `key` in `col`
/// through the distinct keys posted in `search_key_gram` (migration 33):
/// the key's rarest trigram (by `search_gram_count`) is read, each posted
/// key checked against the text on the index entry itself (no row read),
/// and the keys found are joined to the current rows by the key B-tree
/// with the phase's other conditions `b` (and the cursor). A town's
/// residents share far fewer addresses than they are (144,140 address
/// keys for 1,000,000 residents), and a key holds its own text, so a full
/// address whose every trigram is common still reads only the keys of
/// its rarest trigram, and a common text stops after [`KEY_MATCHES`]
/// keys. The trigram probe read instead, on PostgreSQL, every current row
/// of the tenant (under row-level security a `LIKE` cannot use the
/// trigram index: `textlike` is not leakproof), on SQLite the whole
/// doclists of common trigrams (see docs/notes/wt-search16.md).
fn key_probe(
    tx: &mut Tx<'_>,
    b: &SqlBuilder,
    col: &str,
    key: &str,
    cursor: Option<&SearchCursor>,
    want: i64,
) -> Result<KeyProbe, StoreError> {
    let Some(gcol) = gram_col(col) else {
        return Ok(KeyProbe::Unknown);
    };
    let Some(matched) = contained_keys(tx, b.binds[0].as_str(), gcol, key)? else {
        return Ok(KeyProbe::Unknown);
    };
    let c_order = code_point_order(tx.backend());
    if matched.is_empty() {
        return Ok(KeyProbe::Found(Vec::new()));
    }
    if matched.len() > KEY_MATCHES {
        return Ok(KeyProbe::Many);
    }
    let mut probe = b.clone();
    if tx.backend() == super::Backend::Sqlite {
        // The cursor only in the persons' read: with it beside the chunk's
        // 宛名番号 SQLite (no statistics) ranged over the primary key from
        // the cursor instead of looking the chunk up.
        return sqlite_key_probe(tx, probe, col, &matched, cursor, want);
    }
    if let Some(a) = cursor {
        let p = probe.bind(a.after.as_str().to_string());
        probe.conds.push(format!("c.addressee_number > {p}"));
    }
    let ks: Vec<String> = matched.into_iter().map(|k| probe.bind(k)).collect();
    probe
        .conds
        .push(format!("c.{col}{c_order} IN ({})", ks.join(", ")));
    let sql = format!(
        "SELECT c.addressee_number FROM resident_current c WHERE {} LIMIT {}",
        probe.conds.join(" AND "),
        TRIGRAM_PROBE + 1
    );
    let params: Vec<Param<'_>> = probe.binds.iter().map(|s| Param::Text(s)).collect();
    let found: Vec<String> = tx
        .query(&sql, &params)?
        .iter()
        .map(|r| r.text(0))
        .collect::<Result<_, _>>()?;
    if found.len() as i64 > TRIGRAM_PROBE {
        return Ok(KeyProbe::Many);
    }
    Ok(KeyProbe::Found(found))
}

/// [`key_probe`] on SQLite, whose key B-trees hold 宛名番号 and nothing
/// else of the row: the persons who have one of the `keys` of `col` now
/// (after the cursor), whatever their status, are read from the key
/// B-tree alone, at most [`TRIGRAM_PROBE`] (more: [`KeyProbe::Many`]);
/// then the phase's conditions (`probe`: 住民 only, the shield of support
/// measures, the other texts; not the cursor, see below) are checked on
/// their rows in 宛名番号 order, a
/// chunk at a time, until `want` persons pass. So a text whose few keys
/// many persons share reads about a page of rows, not every person's.
/// Before (session 18) every person's row was read for `status`: the given
/// name 久美子 at 1,000,000 residents (44 keys, 23,383 persons) read 2,001
/// rows before giving up for the walk (14–24 ms in the `sqlite3` shell,
/// against about 1 ms for the key B-tree alone). PostgreSQL's key B-trees
/// carry `status` (migration 35) and answer the probe from the index.
/// Tried and not kept: SQLite key B-trees with `status` and 世帯番号 after
/// 宛名番号: without statistics SQLite then read other statements'
/// persons by a scan of the wider index instead of the primary key (the
/// shield's protected persons: 250 ms per address search and 108 ms per
/// logged read at 1,000,000).
fn sqlite_key_probe(
    tx: &mut Tx<'_>,
    probe: SqlBuilder,
    col: &str,
    keys: &[String],
    cursor: Option<&SearchCursor>,
    want: i64,
) -> Result<KeyProbe, StoreError> {
    let mut params: Vec<Param<'_>> = vec![Param::Text(probe.binds[0].as_str())];
    params.extend(keys.iter().map(|k| Param::Text(k.as_str())));
    let after = match cursor {
        Some(a) => {
            params.push(Param::Text(a.after.as_str()));
            format!(" AND c.addressee_number > ${}", keys.len() + 2)
        }
        None => String::new(),
    };
    let sql = format!(
        "SELECT c.addressee_number FROM resident_current c WHERE c.tenant = $1 \
         AND c.{col} IN ({}){after} LIMIT {}",
        placeholders(2, keys.len()),
        TRIGRAM_PROBE + 1
    );
    let mut candidates: Vec<String> = tx
        .query(&sql, &params)?
        .iter()
        .map(|r| r.text(0))
        .collect::<Result<_, _>>()?;
    if candidates.len() as i64 > TRIGRAM_PROBE {
        return Ok(KeyProbe::Many);
    }
    candidates.sort();
    candidates.dedup();
    // Each candidate is read by primary key (its key is known to match).
    let want = usize::try_from(want.max(1)).unwrap_or(1);
    // Most persons of a key are residents: a chunk of twice the page
    // usually fills it; each further chunk is twice as large (few pass
    // when another text or filter narrows the phase).
    let mut found: Vec<String> = Vec::new();
    let mut size = want.saturating_mul(2).clamp(16, 500);
    let mut rest: &[String] = &candidates;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        size = size.saturating_mul(2).min(1000);
        let mut c = probe.clone();
        let ps: Vec<String> = chunk.iter().map(|a| c.bind(a.clone())).collect();
        c.conds
            .push(format!("c.addressee_number IN ({})", ps.join(", ")));
        let sql = format!(
            "SELECT c.addressee_number FROM resident_current c WHERE {}",
            c.conds.join(" AND ")
        );
        let params: Vec<Param<'_>> = c.binds.iter().map(|s| Param::Text(s)).collect();
        for r in tx.query(&sql, &params)? {
            found.push(r.text(0)?);
        }
        if found.len() >= want {
            break;
        }
    }
    Ok(KeyProbe::Found(found))
}

/// `FROM … WHERE …` of a walk of gram postings `g` in their key order,
/// each joined to the person's current row `c` and its history row `h`;
/// `conds` are the conditions on `g` (those naming `g.`) and on `c`.
/// The postings must drive the walk, which stops at the page: SQLite
/// keeps them the outer loop with `CROSS JOIN`. On PostgreSQL the
/// conditions on `c` go into a `LATERAL` subquery fenced by `OFFSET 0`,
/// so each posting reads its person by primary key: the planner misjudges
/// the recheck of a text (`(c.key || '') LIKE …`) and otherwise scanned
/// the tenant's current rows and joined them to the postings (the address
/// bigram 1番 at 1,000,000 residents: 1,033 ms, with the fence 1.7 ms,
/// `EXPLAIN ANALYZE`, see docs/decisions.md).
fn gram_walk(backend: super::Backend, conds: &[String]) -> String {
    const HISTORY_OF_C: &str = "JOIN resident_history h ON h.tenant = c.tenant \
         AND h.addressee_number = c.addressee_number AND h.history_number = c.history_number";
    match backend {
        super::Backend::Sqlite => format!(
            "FROM resident_gram g CROSS JOIN resident_current c \
             ON c.tenant = g.tenant AND c.addressee_number = g.addressee_number \
             {HISTORY_OF_C} WHERE {}",
            conds.join(" AND ")
        ),
        super::Backend::Postgres => {
            let (outer, inner): (Vec<&String>, Vec<&String>) =
                conds.iter().partition(|c| names_gram(c));
            let mut inner: Vec<&str> = inner.iter().map(|c| c.as_str()).collect();
            inner.insert(
                0,
                "c.tenant = g.tenant AND c.addressee_number = g.addressee_number",
            );
            let outer: Vec<&str> = outer.iter().map(|c| c.as_str()).collect();
            format!(
                "FROM resident_gram g CROSS JOIN LATERAL (SELECT c.* FROM resident_current c \
                 WHERE {} OFFSET 0) c {HISTORY_OF_C} WHERE {}",
                inner.join(" AND "),
                if outer.is_empty() {
                    "TRUE".to_string()
                } else {
                    outer.join(" AND ")
                }
            )
        }
    }
}

/// Whether a condition names the postings `g` (`g.` not inside another
/// name).
fn names_gram(cond: &str) -> bool {
    cond.match_indices("g.").any(|(i, _)| {
        cond[..i]
            .chars()
            .next_back()
            .is_none_or(|p| !(p.is_alphanumeric() || p == '_'))
    })
}

/// Runs `f` (a walk of gram postings in their key order) on PostgreSQL
/// with sorting disabled: the planner misjudges the recheck of a common
/// text (`(c.key || '') LIKE …`, a default selectivity) and otherwise
/// scanned the tenant's current rows, joined each to its posting and
/// sorted (733 ms for the address bigram 京都 at 100,000 residents,
/// `EXPLAIN ANALYZE`); without a sort it walks the postings in order and
/// stops at the page (17 ms).
fn ordered_walk<T>(
    tx: &mut Tx<'_>,
    f: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    if tx.backend() != super::Backend::Postgres {
        return f(tx);
    }
    tx.execute_batch("SET LOCAL enable_sort = off")?;
    // After a failed walk the transaction is aborted: resetting would fail
    // too and hide the walk's own error, so the error is returned as it is.
    let out = f(tx)?;
    tx.execute_batch("SET LOCAL enable_sort = on")?;
    Ok(out)
}

fn run_phase(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    b: &SqlBuilder,
    order: &str,
    limit: i64,
) -> Result<Vec<HistoryRow>, StoreError> {
    let limit_p = format!("${}", b.binds.len() + 1);
    let sql = format!(
        "SELECT {HISTORY_COLUMNS} {CURRENT_JOIN} WHERE {} ORDER BY {order} LIMIT {limit_p}",
        b.conds.join(" AND ")
    );
    let mut params: Vec<Param<'_>> = b.binds.iter().map(|s| Param::Text(s.as_str())).collect();
    params.push(limit.into());
    rows(tx, tenant, &sql, &params)
}

/// The three search keys of a record, folded as [`HistoryEncoder::push`]
/// stores them (name, furigana, address).
pub fn search_keys_of(r: &ResidentRecord) -> [String; 3] {
    let mut folds = FoldCache::default();
    let mut name = Vec::new();
    write_key(&mut name, &name_parts(r), &mut folds);
    let mut kana = Vec::new();
    write_key(&mut kana, &kana_parts(r), &mut folds);
    let address = match r.address.annex.as_deref() {
        Some(annex) if !annex.is_empty() => folds.key(&r.address.full()).to_string(),
        _ => folds.key(&r.address.address).to_string(),
    };
    [
        String::from_utf8(name).unwrap_or_default(),
        String::from_utf8(kana).unwrap_or_default(),
        address,
    ]
}

/// What the fold gives today: a digest of the MJ 縮退マップ table and the
/// hand-made pairs, kept with the re-fold's progress so that a new table
/// starts it again.
pub fn fold_table_id() -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(machi_domain::names::MJ_FOLD_TABLE.as_bytes());
    for (a, b) in machi_domain::names::KANJI_VARIANTS {
        h.update(format!("{a}{b}").as_bytes());
    }
    hex::encode(&h.finalize()[..8])
}

/// Where the re-fold of a tenant stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefoldProgress {
    pub fold_table: String,
    pub after: Option<String>,
    pub finished: bool,
    pub updated_rows: i64,
}

pub fn refold_progress(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
) -> Result<Option<RefoldProgress>, StoreError> {
    let rows = tx.query(
        "SELECT fold_table, after_person, finished, updated_rows FROM search_refold_progress WHERE tenant = $1",
        &[tenant.as_str().into()],
    )?;
    rows.first()
        .map(|r| {
            Ok(RefoldProgress {
                fold_table: r.text(0)?,
                after: r.opt_text(1)?,
                finished: r.int(2)? != 0,
                updated_rows: r.int(3)?,
            })
        })
        .transpose()
}

/// One batch of the re-fold (j330): the next `batch` persons of the
/// tenant after where the last batch stopped (`search_refold_progress`),
/// each history row's name, furigana and address keys folded again with
/// today's table and written where they differ, the current row and its
/// grams with them; then the progress. Run in the caller's transaction,
/// so a batch is whole or not at all, and a stopped re-fold resumes after
/// its last committed batch. Rows already folded with this table are
/// left alone (running it again changes nothing). `restart` begins at the
/// first person again. Returns the progress after the batch.
pub fn refold_batch(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    batch: i64,
    restart: bool,
) -> Result<RefoldProgress, StoreError> {
    // The tenant's lock first, as every change takes it: a batch posts new
    // keys and moves the shared trigram counts (`post_keys`), which a
    // change to a new address moves too; without it the two could take
    // those rows in opposite orders and deadlock on PostgreSQL (session
    // 16's review). Changes of the tenant wait for the batch instead.
    lock_tenant(tx, tenant)?;
    let table = fold_table_id();
    let before = refold_progress(tx, tenant)?;
    let (after, mut updated) = match &before {
        Some(p) if !restart && p.fold_table == table => {
            if p.finished {
                return Ok(p.clone());
            }
            (p.after.clone(), p.updated_rows)
        }
        _ => (None, 0),
    };
    let persons: Vec<String> = tx
        .query(
            "SELECT addressee_number FROM resident_current WHERE tenant = $1 AND addressee_number > $2 \
             ORDER BY addressee_number LIMIT $3",
            &[
                tenant.as_str().into(),
                after.as_deref().unwrap_or("").into(),
                batch.into(),
            ],
        )?
        .iter()
        .map(|r| r.text(0))
        .collect::<Result<_, _>>()?;
    if !persons.is_empty() {
        let sql = format!(
            "SELECT {HISTORY_COLUMNS}, h.name_key, h.kana_key, h.address_key, \
             c.history_number, c.name_key, c.kana_key, c.address_key \
             FROM resident_history h JOIN resident_current c \
             ON c.tenant = h.tenant AND c.addressee_number = h.addressee_number \
             WHERE h.tenant = $1 AND h.addressee_number IN ({})",
            placeholders(2, persons.len())
        );
        let mut params: Vec<Param<'_>> = vec![tenant.as_str().into()];
        params.extend(persons.iter().map(|p| Param::Text(p.as_str())));
        let keys = tx.tenant_keys(tenant)?;
        let found = tx.query(&sql, &params)?;
        let mut history_updates: Vec<(String, i64, [String; 3])> = Vec::new();
        let mut current_updates: Vec<(String, [Option<String>; 3], [String; 3])> = Vec::new();
        for r in &found {
            let row = history_row(&keys, r)?;
            let now = search_keys_of(&row.record);
            let stored = [r.opt_text(15)?, r.opt_text(16)?, r.opt_text(17)?];
            let person = row.record.addressee_number.as_str().to_string();
            let differs = |s: &[Option<String>; 3]| {
                s.iter()
                    .zip(&now)
                    .any(|(s, n)| s.as_deref() != Some(n.as_str()))
            };
            if differs(&stored) {
                history_updates.push((person.clone(), row.history_number, now.clone()));
            }
            if r.int(18)? == row.history_number {
                let current = [r.opt_text(19)?, r.opt_text(20)?, r.opt_text(21)?];
                if differs(&current) {
                    current_updates.push((person, current, now));
                }
            }
        }
        updated += (history_updates.len() + current_updates.len()) as i64;
        // History rows are written by no one else (the application role
        // may only add them): as the owner, on PostgreSQL.
        let write_history = |tx: &mut Tx<'_>| -> Result<(), StoreError> {
            for (person, number, k) in &history_updates {
                tx.execute(
                    "UPDATE resident_history SET name_key = $1, kana_key = $2, address_key = $3 \
                     WHERE tenant = $4 AND addressee_number = $5 AND history_number = $6",
                    &[
                        k[0].as_str().into(),
                        k[1].as_str().into(),
                        k[2].as_str().into(),
                        tenant.as_str().into(),
                        person.as_str().into(),
                        (*number).into(),
                    ],
                )?;
            }
            Ok(())
        };
        match tx.backend() {
            super::Backend::Postgres => as_owner(tx, write_history)?,
            super::Backend::Sqlite => write_history(tx)?,
        }
        // The history postings gain the new keys' grams (the old ones
        // stay: a stale gram costs a recheck only), and the new keys are
        // posted.
        for (person, _, k) in &history_updates {
            post_keys(
                tx,
                tenant,
                &[(1, k[0].as_str()), (2, k[1].as_str()), (3, k[2].as_str())],
            )?;
            add_history_grams(
                tx,
                tenant,
                person,
                [None, None, None],
                [
                    Some(k[0].as_str()),
                    Some(k[1].as_str()),
                    Some(k[2].as_str()),
                ],
            )?;
        }
        for (person, old, k) in &current_updates {
            tx.execute(
                "UPDATE resident_current SET name_key = $1, kana_key = $2, address_key = $3 \
                 WHERE tenant = $4 AND addressee_number = $5",
                &[
                    k[0].as_str().into(),
                    k[1].as_str().into(),
                    k[2].as_str().into(),
                    tenant.as_str().into(),
                    person.as_str().into(),
                ],
            )?;
            let come = delete_current_grams(
                tx,
                tenant,
                person,
                [old[0].as_deref(), old[1].as_deref(), old[2].as_deref()],
                [
                    Some(k[0].as_str()),
                    Some(k[1].as_str()),
                    Some(k[2].as_str()),
                ],
            )?;
            insert_grams(tx, tenant, person, &come)?;
            let old = [old[0].as_deref(), old[1].as_deref(), old[2].as_deref()];
            let new = [
                Some(k[0].as_str()),
                Some(k[1].as_str()),
                Some(k[2].as_str()),
            ];
            post_keys(tx, tenant, &changed_keys(old, new))?;
        }
    }
    let progress = RefoldProgress {
        fold_table: table,
        after: persons.last().cloned().or(after),
        finished: (persons.len() as i64) < batch,
        updated_rows: updated,
    };
    tx.execute(
        "INSERT INTO search_refold_progress (tenant, fold_table, after_person, finished, updated_rows) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant) DO UPDATE SET fold_table = excluded.fold_table, \
         after_person = excluded.after_person, finished = excluded.finished, updated_rows = excluded.updated_rows",
        &[
            tenant.as_str().into(),
            progress.fold_table.as_str().into(),
            progress
                .after
                .as_deref()
                .map_or(Param::Null, Param::Text),
            i64::from(progress.finished).into(),
            progress.updated_rows.into(),
        ],
    )?;
    Ok(progress)
}

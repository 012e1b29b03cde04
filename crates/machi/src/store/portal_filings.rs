//! Filings imported from the citizen portal (issue 11, item 4). Each row is
//! one filing as the portal sealed it, opened by the back office, checked,
//! and kept here encrypted with the tenant's key (bound to the portal's row
//! id). `(tenant, portal_id)` is unique: importing the same filing twice
//! stores it once.

use machi_domain::ids::MunicipalityCode;

use super::{Param, Row, StoreError, Tx};

/// The portal id of a filing made at the counter (書かない窓口, issue 11
/// item 7) is this prefix and its 受付番号; the filing's `counter` member
/// names the clerk and the applicant.
pub const COUNTER_PREFIX: &str = "counter:";

/// Whether a stored filing was made at the counter, not on the portal.
pub fn filed_at_counter(portal_id: &str) -> bool {
    portal_id.starts_with(COUNTER_PREFIX)
}

/// A filing to store.
pub struct NewPortalFiling<'a> {
    /// The portal's row id (an HMAC of the receipt number).
    pub portal_id: &'a str,
    /// 受付番号.
    pub receipt: &'a str,
    pub procedure: &'a str,
    pub version: i64,
    /// When the portal received it (RFC 3339, JST).
    pub received_at: &'a str,
    pub imported_at: i64,
    /// The filing as the citizen sent it (JSON).
    pub filing: &'a [u8],
    /// Whether the filing carries a signature (its check is stored apart,
    /// [`set_signature`]).
    pub signed: bool,
}

/// A stored filing, opened.
#[derive(Debug, Clone)]
pub struct StoredPortalFiling {
    pub filing_id: i64,
    pub portal_id: String,
    pub receipt: String,
    pub procedure: String,
    pub version: i64,
    pub received_at: String,
    pub imported_at: i64,
    pub status: String,
    pub filing: serde_json::Value,
    pub signed: bool,
    /// The back office's own check of the signature (JSON), when made.
    pub signature: Option<serde_json::Value>,
    /// The login of the clerk handling it.
    pub assigned_to: Option<String>,
    /// Party key (`applicant`, `members.0`, …) → 宛名番号 confirmed by a clerk.
    pub matches: std::collections::BTreeMap<String, String>,
    /// The message of the last correction request or rejection.
    pub message: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    /// What the approval did (ids only).
    pub outcome: serde_json::Value,
    /// The provisional change awaiting 決裁, if any.
    pub pending_id: Option<i64>,
    pub updated_at: i64,
    /// Status changes not yet told to the portal.
    pub notify_seq: i64,
    pub notified_seq: i64,
    /// The definition the filing names (tenant, procedure, version): the
    /// tenant's published text imported with it, or the shipped one; None
    /// when the back office does not know it.
    pub definition: Option<std::sync::Arc<machi_procedures::Definition>>,
    /// Whether the back office acts on that definition (shipped, or the
    /// tenant administrator's decision on the tenant's own version).
    pub trust: super::procedure_definitions::Trust,
}

fn context(portal_id: &str) -> String {
    format!("portal_filing:{portal_id}")
}

/// Stores a filing unless one with the same portal id is already here;
/// returns whether it was new. The caller holds the tenant's write lock.
pub fn insert_if_new(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    f: &NewPortalFiling<'_>,
) -> Result<bool, StoreError> {
    Ok(insert_returning_id(tx, tenant, f)?.is_some())
}

/// As [`insert_if_new`], returning the new filing's number (None when
/// this portal id is already here).
pub fn insert_returning_id(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    f: &NewPortalFiling<'_>,
) -> Result<Option<i64>, StoreError> {
    let sealed = tx
        .tenant_keys(tenant)?
        .seal(&context(f.portal_id), f.filing)?;
    // One statement (one round trip on PostgreSQL): the next number and
    // the row, or nothing when this portal id is already here.
    let row = tx.query_opt(
        "INSERT INTO portal_filings (tenant, filing_id, portal_id, receipt, procedure, version, \
         received_at, imported_at, filing, status, signed, updated_at) \
         SELECT $1, COALESCE(MAX(filing_id), 0) + 1, $2, $3, $4, $5, $6, $7, $8, 'received', $9, $7 \
         FROM portal_filings WHERE tenant = $1 \
         ON CONFLICT (tenant, portal_id) DO NOTHING RETURNING filing_id",
        &[
            tenant.as_str().into(),
            f.portal_id.into(),
            f.receipt.into(),
            f.procedure.into(),
            f.version.into(),
            f.received_at.into(),
            f.imported_at.into(),
            (&sealed).into(),
            i64::from(f.signed).into(),
        ],
    )?;
    row.map(|r| r.int(0)).transpose()
}

const COLUMNS: &str = "filing_id, portal_id, receipt, procedure, version, received_at, \
     imported_at, status, filing, signed, signature, assigned_to, matches, message, decided_by, \
     decided_at, outcome, pending_id, updated_at, notify_seq, notified_seq";

fn message_context(portal_id: &str) -> String {
    format!("portal_filing_message:{portal_id}")
}

fn signature_context(portal_id: &str) -> String {
    format!("portal_filing_signature:{portal_id}")
}

/// The back office's check of the filing's signature made on import
/// (`portal_signatures`, issue 11 item 3) in the inbox's shape:
/// `{"verified", "result", "message_ja", "message_en", "certificate",
/// "demo"}` (`demo`: made with a synthetic demo card).
fn with_import_check(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    mut f: StoredPortalFiling,
) -> Result<StoredPortalFiling, StoreError> {
    if f.signature.is_none()
        && let Some(c) = super::portal_signatures::get(tx, tenant, f.filing_id)?
        && c.result != super::portal_signatures::result::NOT_CHECKED
        && c.result != super::portal_signatures::result::MISSING
    {
        f.signature = Some(serde_json::json!({
            "verified": c.is_valid(),
            "result": c.result,
            "message_ja": c.message_ja,
            "message_en": c.message_en,
            "certificate": c.certificate,
            "demo": c.demo,
        }));
        f.signed = true;
    }
    Ok(f)
}

/// Definitions already looked up in one call, by (procedure, version).
type DefCache = std::collections::HashMap<
    (String, i64),
    (
        Option<std::sync::Arc<machi_procedures::Definition>>,
        super::procedure_definitions::Trust,
    ),
>;

/// Attaches the definition the filing names.
fn with_definition(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    mut f: StoredPortalFiling,
    cache: &mut DefCache,
) -> Result<StoredPortalFiling, StoreError> {
    let key = (f.procedure.clone(), f.version);
    let (def, trust) = match cache.get(&key) {
        Some(d) => d.clone(),
        None => {
            let d = super::procedure_definitions::lookup(tx, tenant, &f.procedure, f.version)?;
            let t = super::procedure_definitions::trust(tx, tenant, &f.procedure, f.version)?;
            cache.insert(key, (d.clone(), t));
            (d, t)
        }
    };
    f.definition = def;
    f.trust = trust;
    Ok(f)
}

fn from_row(
    tx: &Tx<'_>,
    tenant: &MunicipalityCode,
    r: &Row,
) -> Result<StoredPortalFiling, StoreError> {
    let portal_id = r.text(1)?;
    let keys = tx.tenant_keys(tenant)?;
    let plain = keys.open(&context(&portal_id), &r.text(8)?)?;
    let corrupt = |what: &str, e: serde_json::Error| {
        StoreError::Corrupt(format!("portal filing {portal_id} {what}: {e}"))
    };
    let filing = serde_json::from_slice(&plain).map_err(|e| corrupt("filing", e))?;
    let signature = match r.opt_text(10)? {
        Some(s) => Some(
            serde_json::from_slice(&keys.open(&signature_context(&portal_id), &s)?)
                .map_err(|e| corrupt("signature", e))?,
        ),
        None => None,
    };
    let message = match r.opt_text(13)? {
        Some(s) => Some(
            String::from_utf8(keys.open(&message_context(&portal_id), &s)?.to_vec())
                .map_err(|e| StoreError::Corrupt(format!("portal filing message: {e}")))?,
        ),
        None => None,
    };
    Ok(StoredPortalFiling {
        filing_id: r.int(0)?,
        receipt: r.text(2)?,
        procedure: r.text(3)?,
        version: r.int(4)?,
        received_at: r.text(5)?,
        imported_at: r.int(6)?,
        status: r.text(7)?,
        filing,
        signed: r.int(9)? != 0,
        signature,
        assigned_to: r.opt_text(11)?,
        matches: serde_json::from_str(&r.text(12)?).map_err(|e| corrupt("matches", e))?,
        message,
        decided_by: r.opt_text(14)?,
        decided_at: r.opt_int(15)?,
        outcome: serde_json::from_str(&r.text(16)?).map_err(|e| corrupt("outcome", e))?,
        pending_id: r.opt_int(17)?,
        updated_at: r.int(18)?,
        notify_seq: r.int(19)?,
        notified_seq: r.int(20)?,
        portal_id,
        definition: None,
        trust: super::procedure_definitions::Trust::Pending,
    })
}

/// What the inbox list is filtered by; every condition is optional.
#[derive(Debug, Clone, Default)]
pub struct FilingFilter {
    pub procedure: Option<String>,
    pub statuses: Vec<String>,
    /// Received on or after this day (`YYYY-MM-DD`, Japan time).
    pub received_from: Option<String>,
    /// Received on or before this day.
    pub received_to: Option<String>,
    /// A login; `Some("")` for filings nobody handles yet.
    pub assigned_to: Option<String>,
    pub signed: Option<bool>,
    /// Only filings made at the counter (`true`) or on the portal (`false`).
    pub at_counter: Option<bool>,
    /// Filings with a smaller id (the page cursor).
    pub before: Option<i64>,
}

/// The tenant's imported filings matching `f`, newest first.
pub fn search(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    f: &FilingFilter,
    limit: i64,
) -> Result<Vec<StoredPortalFiling>, StoreError> {
    let mut sql = format!("SELECT {COLUMNS} FROM portal_filings WHERE tenant = $1");
    let mut params: Vec<super::Param<'_>> = vec![tenant.as_str().into()];
    let mut n = 1;
    let mut next = |sql: &mut String, clause: &str| {
        n += 1;
        sql.push_str(&clause.replace('?', &format!("${n}")));
    };
    if let Some(p) = &f.procedure {
        next(&mut sql, " AND procedure = ?");
        params.push(p.as_str().into());
    }
    if !f.statuses.is_empty() {
        sql.push_str(" AND status IN (");
        for (i, st) in f.statuses.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            next(&mut sql, "?");
            params.push(st.as_str().into());
        }
        sql.push(')');
    }
    if let Some(d) = &f.received_from {
        next(&mut sql, " AND received_at >= ?");
        params.push(d.as_str().into());
    }
    // The day's end: every instant of that day sorts before the next day.
    let to_next = f.received_to.as_deref().and_then(|d| {
        chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.succ_opt())
            .map(|d| d.format("%Y-%m-%d").to_string())
    });
    if let Some(d) = &to_next {
        next(&mut sql, " AND received_at < ?");
        params.push(d.as_str().into());
    }
    match f.assigned_to.as_deref() {
        Some("") => sql.push_str(" AND assigned_to IS NULL"),
        Some(who) => {
            next(&mut sql, " AND assigned_to = ?");
            params.push(who.into());
        }
        None => {}
    }
    if let Some(signed) = f.signed {
        next(&mut sql, " AND signed = ?");
        params.push(i64::from(signed).into());
    }
    let counter_ids = format!("{COUNTER_PREFIX}%");
    match f.at_counter {
        Some(true) => {
            next(&mut sql, " AND portal_id LIKE ?");
            params.push(counter_ids.as_str().into());
        }
        Some(false) => {
            next(&mut sql, " AND portal_id NOT LIKE ?");
            params.push(counter_ids.as_str().into());
        }
        None => {}
    }
    if let Some(b) = f.before {
        next(&mut sql, " AND filing_id < ?");
        params.push(b.into());
    }
    next(&mut sql, " ORDER BY filing_id DESC LIMIT ?");
    params.push(limit.into());
    let rows = tx.query(&sql, &params)?;
    let found: Vec<StoredPortalFiling> = rows
        .iter()
        .map(|r| from_row(tx, tenant, r))
        .collect::<Result<_, _>>()?;
    let mut cache = DefCache::new();
    found
        .into_iter()
        .map(|f| {
            let f = with_import_check(tx, tenant, f)?;
            with_definition(tx, tenant, f, &mut cache)
        })
        .collect()
}

/// One filing.
pub fn get(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    filing_id: i64,
) -> Result<Option<StoredPortalFiling>, StoreError> {
    let row = tx.query_opt(
        &format!("SELECT {COLUMNS} FROM portal_filings WHERE tenant = $1 AND filing_id = $2"),
        &[tenant.as_str().into(), filing_id.into()],
    )?;
    match row {
        Some(r) => {
            let f = from_row(tx, tenant, &r)?;
            let f = with_import_check(tx, tenant, f)?;
            Ok(Some(with_definition(tx, tenant, f, &mut DefCache::new())?))
        }
        None => Ok(None),
    }
}

/// The number of the filing stored under this portal id, if one is.
pub fn id_by_portal(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    portal_id: &str,
) -> Result<Option<i64>, StoreError> {
    tx.query_opt(
        "SELECT filing_id FROM portal_filings WHERE tenant = $1 AND portal_id = $2",
        &[tenant.as_str().into(), portal_id.into()],
    )?
    .map(|r| r.int(0))
    .transpose()
}

/// The filing number of the tenant's filing with this 受付番号.
pub fn id_by_receipt(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    receipt: &str,
) -> Result<Option<i64>, StoreError> {
    tx.query_opt(
        "SELECT filing_id FROM portal_filings WHERE tenant = $1 AND receipt = $2 \
         ORDER BY filing_id LIMIT 1",
        &[tenant.as_str().into(), receipt.into()],
    )?
    .map(|r| r.int(0))
    .transpose()
}

/// How many later filings of a procedure [`corrections_of`] opens.
pub const CORRECTIONS_SCANNED: i64 = 500;

/// The filings that say they correct the filing with `receipt` (the
/// citizen sent it again after a correction request; the portal carries
/// `corrects` in the sealed filing), as (filing number, 受付番号), oldest
/// first. The link lives only inside the encrypted filing, so the newest
/// [`CORRECTIONS_SCANNED`] filings of the same procedure received since
/// `received_at` are opened and read.
pub fn corrections_of(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    procedure: &str,
    receipt: &str,
    received_at: &str,
) -> Result<Vec<(i64, String)>, StoreError> {
    let rows = tx.query(
        "SELECT filing_id, portal_id, receipt, filing FROM portal_filings \
         WHERE tenant = $1 AND procedure = $2 AND received_at >= $3 AND receipt <> $4 \
         ORDER BY filing_id DESC LIMIT $5",
        &[
            tenant.as_str().into(),
            procedure.into(),
            received_at.into(),
            receipt.into(),
            CORRECTIONS_SCANNED.into(),
        ],
    )?;
    let keys = tx.tenant_keys(tenant)?;
    let mut out = Vec::new();
    for r in rows.iter().rev() {
        let portal_id = r.text(1)?;
        let plain = keys.open(&context(&portal_id), &r.text(3)?)?;
        let filing: serde_json::Value = serde_json::from_slice(&plain)
            .map_err(|e| StoreError::Corrupt(format!("portal filing {portal_id} filing: {e}")))?;
        if filing["corrects"].as_str() == Some(receipt) {
            out.push((r.int(0)?, r.text(2)?));
        }
    }
    Ok(out)
}

/// The number and 受付番号 of the filing stored under `portal_id`, if any.
pub fn by_portal_id(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    portal_id: &str,
) -> Result<Option<(i64, String)>, StoreError> {
    tx.query_opt(
        "SELECT filing_id, receipt FROM portal_filings WHERE tenant = $1 AND portal_id = $2",
        &[tenant.as_str().into(), portal_id.into()],
    )?
    .map(|r| Ok((r.int(0)?, r.text(1)?)))
    .transpose()
}

/// Sets the party → 宛名番号 matches of a filing just stored (a counter
/// filing's members, known from the registry when it was filed).
pub fn set_matches(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    filing_id: i64,
    matches: &std::collections::BTreeMap<String, String>,
) -> Result<(), StoreError> {
    let m =
        serde_json::to_string(matches).map_err(|e| StoreError::Corrupt(format!("matches: {e}")))?;
    tx.execute(
        "UPDATE portal_filings SET matches = $3 WHERE tenant = $1 AND filing_id = $2",
        &[tenant.as_str().into(), filing_id.into(), m.as_str().into()],
    )?;
    Ok(())
}

/// The filing whose approval entered provisional change `pending_id`.
pub fn by_pending(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    pending_id: i64,
) -> Result<Option<StoredPortalFiling>, StoreError> {
    let row = tx.query_opt(
        &format!("SELECT {COLUMNS} FROM portal_filings WHERE tenant = $1 AND pending_id = $2"),
        &[tenant.as_str().into(), pending_id.into()],
    )?;
    match row {
        Some(r) => {
            let f = from_row(tx, tenant, &r)?;
            Ok(Some(with_definition(tx, tenant, f, &mut DefCache::new())?))
        }
        None => Ok(None),
    }
}

/// How many filings have `status`.
pub fn count_status(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    status: &str,
) -> Result<i64, StoreError> {
    tx.query_one(
        "SELECT COUNT(*) FROM portal_filings WHERE tenant = $1 AND status = $2",
        &[tenant.as_str().into(), status.into()],
    )?
    .int(0)
}

/// Writes the inbox's part of a filing back (everything but what the
/// citizen sent). A changed status the portal should hear of raises
/// `notify_seq` (the caller sets it).
pub fn update(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    f: &StoredPortalFiling,
) -> Result<(), StoreError> {
    let keys = tx.tenant_keys(tenant)?;
    let message = f
        .message
        .as_deref()
        .map(|m| keys.seal(&message_context(&f.portal_id), m.as_bytes()))
        .transpose()?;
    let signature = f
        .signature
        .as_ref()
        .map(|s| keys.seal(&signature_context(&f.portal_id), s.to_string().as_bytes()))
        .transpose()?;
    let matches = serde_json::to_string(&f.matches)
        .map_err(|e| StoreError::Corrupt(format!("matches: {e}")))?;
    let outcome = f.outcome.to_string();
    tx.execute(
        "UPDATE portal_filings SET status = $3, signed = $4, signature = $5, assigned_to = $6, \
         matches = $7, message = $8, decided_by = $9, decided_at = $10, outcome = $11, \
         pending_id = $12, updated_at = $13, notify_seq = $14 \
         WHERE tenant = $1 AND filing_id = $2",
        &[
            tenant.as_str().into(),
            f.filing_id.into(),
            f.status.as_str().into(),
            i64::from(f.signed).into(),
            (&signature).into(),
            (&f.assigned_to).into(),
            matches.as_str().into(),
            (&message).into(),
            (&f.decided_by).into(),
            f.decided_at.into(),
            outcome.as_str().into(),
            f.pending_id.into(),
            f.updated_at.into(),
            f.notify_seq.into(),
        ],
    )?;
    Ok(())
}

/// Stores the back office's check of a filing's signature (issue 11,
/// item 3: the back office verifies again on import): `result` is what
/// the inbox shows, e.g. `{"verified": true, "certificate": {…}}` with
/// the signer's certificate items, or `{"verified": false, "message_ja":
/// …, "message_en": …}`.
pub fn set_signature(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    filing_id: i64,
    result: &serde_json::Value,
) -> Result<bool, StoreError> {
    let Some(mut f) = get(tx, tenant, filing_id)? else {
        return Ok(false);
    };
    f.signed = true;
    f.signature = Some(result.clone());
    update(tx, tenant, &f)?;
    Ok(true)
}

/// The tenant's imported filings, newest first.
pub fn list(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    limit: i64,
) -> Result<Vec<StoredPortalFiling>, StoreError> {
    search(tx, tenant, &FilingFilter::default(), limit)
}

/// The answers of every filing of `procedure` (all versions), opened, as
/// (version, status, answers): what a survey's counts are computed from
/// (issue 11, item 1). One row per stored filing, so a filing imported
/// twice (stored once, `(tenant, portal_id)` unique) is counted once.
pub fn answers_of_procedure(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    procedure: &str,
) -> Result<Vec<(i64, String, serde_json::Value)>, StoreError> {
    let rows = tx.query(
        "SELECT portal_id, version, status, filing FROM portal_filings \
         WHERE tenant = $1 AND procedure = $2 ORDER BY filing_id",
        &[tenant.as_str().into(), procedure.into()],
    )?;
    let keys = tx.tenant_keys(tenant)?;
    rows.iter()
        .map(|r| {
            let portal_id = r.text(0)?;
            let plain = keys.open(&context(&portal_id), &r.text(3)?)?;
            let mut filing: serde_json::Value = serde_json::from_slice(&plain).map_err(|e| {
                StoreError::Corrupt(format!("portal filing {portal_id} filing: {e}"))
            })?;
            let answers = filing["signed_content"]["answers"].take();
            Ok((r.int(1)?, r.text(2)?, answers))
        })
        .collect()
}

/// Rows per multi-row statement of the batched import (9 parameters a
/// row: far below SQLite's and PostgreSQL's limits).
pub const BATCH_ROWS: usize = 100;

/// `$from, $from+1, …` for `n` parameters.
pub(crate) fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Which of these portal ids are already stored for the tenant (one
/// statement per [`BATCH_ROWS`] ids).
pub fn existing_portal_ids(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    ids: &[&str],
) -> Result<std::collections::HashSet<String>, StoreError> {
    let mut out = std::collections::HashSet::new();
    for chunk in ids.chunks(BATCH_ROWS) {
        let sql = format!(
            "SELECT portal_id FROM portal_filings WHERE tenant = $1 AND portal_id IN ({})",
            placeholders(2, chunk.len())
        );
        let mut params: Vec<Param<'_>> = Vec::with_capacity(chunk.len() + 1);
        params.push(tenant.as_str().into());
        params.extend(chunk.iter().map(|id| Param::from(*id)));
        for r in tx.query(&sql, &params)? {
            out.insert(r.text(0)?);
        }
    }
    Ok(out)
}

/// The next free filing number of the tenant.
pub fn next_filing_id(tx: &mut Tx<'_>, tenant: &MunicipalityCode) -> Result<i64, StoreError> {
    tx.query_one(
        "SELECT COALESCE(MAX(filing_id), 0) + 1 FROM portal_filings WHERE tenant = $1",
        &[tenant.as_str().into()],
    )?
    .int(0)
}

/// Stores new filings numbered `first_id`, `first_id + 1`, … (the caller
/// holds the tenant's write lock and checked that none is here yet, see
/// [`existing_portal_ids`]): one multi-row INSERT per [`BATCH_ROWS`]
/// filings instead of one statement (one PostgreSQL round trip) each. A
/// portal id stored meanwhile fails the whole transaction (nothing
/// half-written).
pub fn insert_many(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    rows: &[NewPortalFiling<'_>],
    first_id: i64,
) -> Result<(), StoreError> {
    let keys = tx.tenant_keys(tenant)?;
    let sealed: Vec<String> = rows
        .iter()
        .map(|f| keys.seal(&context(f.portal_id), f.filing))
        .collect::<Result<_, _>>()?;
    for (n, chunk) in rows.chunks(BATCH_ROWS).enumerate() {
        let base = n * BATCH_ROWS;
        let mut values = Vec::with_capacity(chunk.len());
        let mut params: Vec<Param<'_>> = Vec::with_capacity(chunk.len() * 10 + 1);
        params.push(tenant.as_str().into());
        let ids: Vec<i64> = (0..chunk.len())
            .map(|i| first_id + (base + i) as i64)
            .collect();
        for (i, f) in chunk.iter().enumerate() {
            let p = 2 + i * 9;
            values.push(format!(
                "($1, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, 'received', ${}, ${})",
                p,
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5,
                p + 6,
                p + 7,
                p + 8,
                p + 6
            ));
            params.push(ids[i].into());
            params.push(f.portal_id.into());
            params.push(f.receipt.into());
            params.push(f.procedure.into());
            params.push(f.version.into());
            params.push(f.received_at.into());
            params.push(f.imported_at.into());
            params.push((&sealed[base + i]).into());
            params.push(i64::from(f.signed).into());
        }
        let sql = format!(
            "INSERT INTO portal_filings (tenant, filing_id, portal_id, receipt, procedure, version, \
             received_at, imported_at, filing, status, signed, updated_at) VALUES {}",
            values.join(", ")
        );
        tx.execute(&sql, &params)?;
    }
    Ok(())
}

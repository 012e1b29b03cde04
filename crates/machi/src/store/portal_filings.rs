//! Filings imported from the citizen portal (issue 11, item 4). Each row is
//! one filing as the portal sealed it, opened by the back office, checked,
//! and kept here encrypted with the tenant's key (bound to the portal's row
//! id). `(tenant, portal_id)` is unique: importing the same filing twice
//! stores it once.

use machi_domain::ids::MunicipalityCode;

use super::{Row, StoreError, Tx};

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
    let sealed = tx
        .tenant_keys(tenant)?
        .seal(&context(f.portal_id), f.filing)?;
    // One statement (one round trip on PostgreSQL): the next number and
    // the row, or nothing when this portal id is already here.
    let n = tx.execute(
        "INSERT INTO portal_filings (tenant, filing_id, portal_id, receipt, procedure, version, \
         received_at, imported_at, filing, status) \
         SELECT $1, COALESCE(MAX(filing_id), 0) + 1, $2, $3, $4, $5, $6, $7, $8, 'received' \
         FROM portal_filings WHERE tenant = $1 \
         ON CONFLICT (tenant, portal_id) DO NOTHING",
        &[
            tenant.as_str().into(),
            f.portal_id.into(),
            f.receipt.into(),
            f.procedure.into(),
            f.version.into(),
            f.received_at.into(),
            f.imported_at.into(),
            (&sealed).into(),
        ],
    )?;
    Ok(n == 1)
}

fn from_row(
    tx: &Tx<'_>,
    tenant: &MunicipalityCode,
    r: &Row,
) -> Result<StoredPortalFiling, StoreError> {
    let portal_id = r.text(1)?;
    let plain = tx
        .tenant_keys(tenant)?
        .open(&context(&portal_id), &r.text(8)?)?;
    let filing = serde_json::from_slice(&plain)
        .map_err(|e| StoreError::Corrupt(format!("portal filing {portal_id}: {e}")))?;
    Ok(StoredPortalFiling {
        filing_id: r.int(0)?,
        portal_id,
        receipt: r.text(2)?,
        procedure: r.text(3)?,
        version: r.int(4)?,
        received_at: r.text(5)?,
        imported_at: r.int(6)?,
        status: r.text(7)?,
        filing,
    })
}

/// The tenant's imported filings, newest first.
pub fn list(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    limit: i64,
) -> Result<Vec<StoredPortalFiling>, StoreError> {
    let rows = tx.query(
        "SELECT filing_id, portal_id, receipt, procedure, version, received_at, imported_at, \
         status, filing FROM portal_filings WHERE tenant = $1 ORDER BY filing_id DESC LIMIT $2",
        &[tenant.as_str().into(), limit.into()],
    )?;
    rows.iter().map(|r| from_row(tx, tenant, r)).collect()
}

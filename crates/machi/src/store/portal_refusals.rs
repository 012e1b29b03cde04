//! Filings the back office refused on import (issue 11, migration 30):
//! recorded once per portal row, with why, so staff can see them and the
//! portal can be told to stop offering them (the quarantine
//! acknowledgement, [`crate::portal::pull_once`]). A refused filing is
//! never pulled again: a hundred of them cannot fill every pull batch and
//! starve the good ones. The sealed bytes are kept as they were pulled
//! (still sealed to the back office's key), so nothing is lost.
//! A refusal that may pass later is first only deferred
//! (`portal_deferrals`, [`defer`]): quarantined only if it still fails
//! after a grace period ([`crate::portal::QUARANTINE_AFTER_SECS`]).
//! Insert-only.

use machi_domain::ids::MunicipalityCode;

use super::{StoreError, Tx};

/// A refusal to record.
#[derive(Debug, Clone)]
pub struct NewRefusal<'a> {
    pub portal_id: &'a str,
    /// The 受付番号 when the filing opened (None when it did not).
    pub receipt: Option<&'a str>,
    /// As the portal listed it (not trusted: it may not match the filing).
    pub procedure: &'a str,
    pub version: i64,
    pub received_at: &'a str,
    /// The import's code (`does_not_open`, `replayed`, `answers_invalid`…).
    pub code: &'a str,
    /// The reason the citizen reads on the portal's status page, as a
    /// word the portal turns into its own text (`unreadable`, `replayed`,
    /// `procedure`, `answers`).
    pub citizen_reason: &'a str,
    pub message_ja: &'a str,
    pub message_en: &'a str,
    /// The sealed filing as pulled (base64).
    pub sealed: &'a str,
    /// Unix seconds.
    pub refused_at: i64,
}

/// What recording did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Recorded now.
    New,
    /// Recorded by an earlier pull (the portal was not told, or the
    /// acknowledgement was lost): nothing written.
    Already,
    /// A filing with this portal id is stored as imported: a refused copy
    /// of it must not make the portal mark it refused. Nothing written.
    Imported,
}

/// Records a refusal once. The caller holds the tenant's write lock.
pub fn record(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    r: &NewRefusal<'_>,
) -> Result<Recorded, StoreError> {
    let imported = tx
        .query_opt(
            "SELECT 1 FROM portal_filings WHERE tenant = $1 AND portal_id = $2",
            &[tenant.as_str().into(), r.portal_id.into()],
        )?
        .is_some();
    if imported {
        return Ok(Recorded::Imported);
    }
    let n = tx.execute(
        "INSERT INTO portal_refusals (tenant, portal_id, receipt, procedure, version, received_at, code, \
         citizen_reason, message_ja, message_en, sealed, refused_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (tenant, portal_id) DO NOTHING",
        &[
            tenant.as_str().into(),
            r.portal_id.into(),
            r.receipt.into(),
            r.procedure.into(),
            r.version.into(),
            r.received_at.into(),
            r.code.into(),
            r.citizen_reason.into(),
            r.message_ja.into(),
            r.message_en.into(),
            r.sealed.into(),
            r.refused_at.into(),
        ],
    )?;
    Ok(if n == 1 {
        Recorded::New
    } else {
        Recorded::Already
    })
}

/// One recorded refusal, as staff read it (without the sealed bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRefusal {
    pub portal_id: String,
    pub receipt: Option<String>,
    pub procedure: String,
    pub version: i64,
    /// RFC 3339, as the portal listed it.
    pub received_at: String,
    pub code: String,
    pub citizen_reason: String,
    pub message_ja: String,
    pub message_en: String,
    /// Unix seconds.
    pub refused_at: i64,
    /// The filing it became when staff imported it again (the refusal
    /// stays, as history).
    pub imported_as: Option<i64>,
}

/// The tenant's refusals, newest first.
pub fn list(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    limit: i64,
) -> Result<Vec<StoredRefusal>, StoreError> {
    tx.query(
        "SELECT r.portal_id, r.receipt, r.procedure, r.version, r.received_at, r.code, \
         r.citizen_reason, r.message_ja, r.message_en, r.refused_at, f.filing_id \
         FROM portal_refusals r LEFT JOIN portal_filings f \
         ON f.tenant = r.tenant AND f.portal_id = r.portal_id WHERE r.tenant = $1 \
         ORDER BY r.refused_at DESC, r.portal_id LIMIT $2",
        &[tenant.as_str().into(), limit.into()],
    )?
    .into_iter()
    .map(|r| {
        Ok(StoredRefusal {
            portal_id: r.text(0)?,
            receipt: r.opt_text(1)?,
            procedure: r.text(2)?,
            version: r.int(3)?,
            received_at: r.text(4)?,
            code: r.text(5)?,
            citizen_reason: r.text(6)?,
            message_ja: r.text(7)?,
            message_en: r.text(8)?,
            refused_at: r.int(9)?,
            imported_as: r.opt_int(10)?,
        })
    })
    .collect()
}

/// How many filings of the tenant were refused.
pub fn count(tx: &mut Tx<'_>, tenant: &MunicipalityCode) -> Result<i64, StoreError> {
    tx.query_one(
        "SELECT COUNT(*) FROM portal_refusals WHERE tenant = $1",
        &[tenant.as_str().into()],
    )?
    .int(0)
}

/// A refusal that may pass later, the first time it was seen
/// (`portal_deferrals`, migration 30).
#[derive(Debug, Clone)]
pub struct NewDeferral<'a> {
    pub portal_id: &'a str,
    pub code: &'a str,
    pub message_ja: &'a str,
    pub message_en: &'a str,
    /// Unix seconds.
    pub at: i64,
}

/// Records the first deferral of a filing (nothing when one is recorded)
/// and returns (when it was first deferred, recorded now). The caller
/// holds the tenant's write lock.
pub fn defer(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    d: &NewDeferral<'_>,
) -> Result<(i64, bool), StoreError> {
    let n = tx.execute(
        "INSERT INTO portal_deferrals (tenant, portal_id, code, message_ja, message_en, first_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant, portal_id) DO NOTHING",
        &[
            tenant.as_str().into(),
            d.portal_id.into(),
            d.code.into(),
            d.message_ja.into(),
            d.message_en.into(),
            d.at.into(),
        ],
    )?;
    if n == 1 {
        return Ok((d.at, true));
    }
    let first = tx
        .query_one(
            "SELECT first_at FROM portal_deferrals WHERE tenant = $1 AND portal_id = $2",
            &[tenant.as_str().into(), d.portal_id.into()],
        )?
        .int(0)?;
    Ok((first, false))
}

/// A quarantined filing as pulled (portal id, procedure, version,
/// received_at, the sealed bytes in base64), to import it again once the
/// cause is fixed ([`crate::portal::reimport_refused`]).
pub fn sealed(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    portal_id: &str,
) -> Result<Option<(String, i64, String, String)>, StoreError> {
    tx.query_opt(
        "SELECT procedure, version, received_at, sealed FROM portal_refusals \
         WHERE tenant = $1 AND portal_id = $2",
        &[tenant.as_str().into(), portal_id.into()],
    )?
    .map(|r| Ok((r.text(0)?, r.int(1)?, r.text(2)?, r.text(3)?)))
    .transpose()
}

/// A refusal that may pass later, deferred and not (yet) quarantined
/// nor imported since: as staff read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDeferral {
    pub portal_id: String,
    pub code: String,
    pub message_ja: String,
    pub message_en: String,
    /// When it was first deferred (Unix seconds); it is quarantined at
    /// the first pull [`crate::portal::QUARANTINE_AFTER_SECS`] after this
    /// if it still fails.
    pub first_at: i64,
}

/// The tenant's deferred refusals still pending (neither quarantined in
/// `portal_refusals` nor imported into `portal_filings` since), oldest
/// first.
pub fn deferred(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    limit: i64,
) -> Result<Vec<StoredDeferral>, StoreError> {
    tx.query(
        "SELECT d.portal_id, d.code, d.message_ja, d.message_en, d.first_at FROM portal_deferrals d \
         WHERE d.tenant = $1 \
         AND NOT EXISTS (SELECT 1 FROM portal_refusals r WHERE r.tenant = d.tenant AND r.portal_id = d.portal_id) \
         AND NOT EXISTS (SELECT 1 FROM portal_filings f WHERE f.tenant = d.tenant AND f.portal_id = d.portal_id) \
         ORDER BY d.first_at, d.portal_id LIMIT $2",
        &[tenant.as_str().into(), limit.into()],
    )?
    .into_iter()
    .map(|r| {
        Ok(StoredDeferral {
            portal_id: r.text(0)?,
            code: r.text(1)?,
            message_ja: r.text(2)?,
            message_en: r.text(3)?,
            first_at: r.int(4)?,
        })
    })
    .collect()
}

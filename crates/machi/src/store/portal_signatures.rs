//! The signature of an imported portal filing as the back office checked
//! it (issue 11, items 3 and 8), and the signing nonces accepted: each
//! nonce and each signed content is accepted once per tenant, so a
//! signature replayed in another filing is refused on import.
//!
//! The result is a plain column (`valid`, `missing`, `not_checked` or the
//! code of the refusal, e.g. `certificate_revoked`) so an inbox can filter
//! on it; the certificate's basic four items and the messages are sealed
//! with the tenant's key, like the filing.

use machi_domain::ids::MunicipalityCode;
use serde::{Deserialize, Serialize};

use super::{StoreError, Tx};

/// The result of a signature check on import.
pub mod result {
    /// The signature verified: anchor, validity, CRL, content.
    pub const VALID: &str = "valid";
    /// The procedure needs a signature and the filing carries none.
    pub const MISSING: &str = "missing";
    /// The back office has no trust anchors configured: nothing was checked.
    pub const NOT_CHECKED: &str = "not_checked";
}

/// What the back office found, as stored (sealed) with the filing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignatureCheck {
    /// `valid`, `missing`, `not_checked` or a refusal code.
    pub result: String,
    /// Why it is not valid, for the clerk (empty when valid).
    pub message_ja: String,
    pub message_en: String,
    /// The certificate's items (when it could be read and verified).
    pub certificate: Option<machi_sign::CertificateInfo>,
    /// The signing-time attribute (RFC 3339), when verified.
    pub signing_time: Option<String>,
    /// Whether the portal said it was signed with a demo card.
    pub demo: bool,
    /// When the back office checked it (Unix seconds).
    pub checked_at: i64,
}

impl SignatureCheck {
    pub fn is_valid(&self) -> bool {
        self.result == result::VALID
    }
}

/// A signature record to add beside a newly imported filing.
pub struct NewSignature<'a> {
    pub nonce: Option<&'a str>,
    pub content_sha256: Option<&'a str>,
    pub check: &'a SignatureCheck,
}

fn context(tenant: &MunicipalityCode, filing_id: i64) -> String {
    format!("portal_signature:{}:{filing_id}", tenant.as_str())
}

/// The receipt of another filing that already used this nonce or this
/// signed content (a replay), if any. `portal_id` is the filing being
/// imported: the same filing imported again is not a replay.
pub fn replay_of(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    portal_id: &str,
    nonce: Option<&str>,
    content_sha256: Option<&str>,
) -> Result<Option<String>, StoreError> {
    if nonce.is_none() && content_sha256.is_none() {
        return Ok(None);
    }
    // The signatures holding either key, each an equality on a whole
    // unique key (at most two rows), then their filings, each an equality
    // on the primary key: no join order for the planner to get wrong when
    // it misjudges how many rows the tenant has. (One join with `nonce = $3 OR
    // content_sha256 = $4` was planned, on tables without statistics, as
    // a walk through all the tenant's filings probing each one's
    // signature: an import of n filings cost O(n²) on PostgreSQL;
    // docs/notes/wt-pgperf.md.)
    let ids = tx.query(
        "SELECT filing_id FROM portal_signatures WHERE tenant = $1 AND nonce = $2 \
         UNION ALL \
         SELECT filing_id FROM portal_signatures WHERE tenant = $1 AND content_sha256 = $3",
        &[tenant.as_str().into(), nonce.into(), content_sha256.into()],
    )?;
    for id in ids {
        let row = tx.query_opt(
            "SELECT receipt, portal_id FROM portal_filings WHERE tenant = $1 AND filing_id = $2",
            &[tenant.as_str().into(), id.int(0)?.into()],
        )?;
        if let Some(r) = row
            && r.text(1)? != portal_id
        {
            return Ok(Some(r.text(0)?));
        }
    }
    Ok(None)
}

/// Records the check of filing `filing_id` (just imported).
pub fn insert(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    filing_id: i64,
    s: &NewSignature<'_>,
) -> Result<(), StoreError> {
    let plain = serde_json::to_vec(s.check)
        .map_err(|e| StoreError::Corrupt(format!("signature check: {e}")))?;
    let sealed = tx
        .tenant_keys(tenant)?
        .seal(&context(tenant, filing_id), &plain)?;
    tx.execute(
        "INSERT INTO portal_signatures (tenant, filing_id, nonce, content_sha256, result, \
         checked_at, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            tenant.as_str().into(),
            filing_id.into(),
            s.nonce.into(),
            s.content_sha256.into(),
            s.check.result.as_str().into(),
            s.check.checked_at.into(),
            (&sealed).into(),
        ],
    )?;
    Ok(())
}

/// The signature check of a filing (None: the filing needed none and
/// carried none).
pub fn get(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    filing_id: i64,
) -> Result<Option<SignatureCheck>, StoreError> {
    let Some(row) = tx.query_opt(
        "SELECT detail FROM portal_signatures WHERE tenant = $1 AND filing_id = $2",
        &[tenant.as_str().into(), filing_id.into()],
    )?
    else {
        return Ok(None);
    };
    let plain = tx
        .tenant_keys(tenant)?
        .open(&context(tenant, filing_id), &row.text(0)?)?;
    serde_json::from_slice(&plain)
        .map(Some)
        .map_err(|e| StoreError::Corrupt(format!("signature check of filing {filing_id}: {e}")))
}

/// The filing id of a portal filing stored here.
pub fn filing_id_of(
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

/// For a batch of signed filings: every stored signature holding one of
/// these nonces or signed-content digests, as (`nonce` or `sha:` + digest,
/// the receipt and portal id of its filing). One statement per
/// [`super::portal_filings::BATCH_ROWS`] keys of each kind (each an
/// equality on a whole unique key), then one per hit (a replay is rare).
pub fn replay_candidates(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    nonces: &[&str],
    digests: &[&str],
) -> Result<Vec<(String, String, String)>, StoreError> {
    use super::portal_filings::{BATCH_ROWS, placeholders};
    let mut hits: Vec<(String, i64)> = Vec::new();
    for (column, prefix, keys) in [("nonce", "", nonces), ("content_sha256", "sha:", digests)] {
        for chunk in keys.chunks(BATCH_ROWS) {
            let sql = format!(
                "SELECT {column}, filing_id FROM portal_signatures WHERE tenant = $1 AND {column} IN ({})",
                placeholders(2, chunk.len())
            );
            let mut params: Vec<super::db::Param<'_>> = Vec::with_capacity(chunk.len() + 1);
            params.push(tenant.as_str().into());
            params.extend(chunk.iter().map(|k| super::db::Param::from(*k)));
            for r in tx.query(&sql, &params)? {
                hits.push((format!("{prefix}{}", r.text(0)?), r.int(1)?));
            }
        }
    }
    let mut out = Vec::with_capacity(hits.len());
    for (key, id) in hits {
        if let Some(r) = tx.query_opt(
            "SELECT receipt, portal_id FROM portal_filings WHERE tenant = $1 AND filing_id = $2",
            &[tenant.as_str().into(), id.into()],
        )? {
            out.push((key, r.text(0)?, r.text(1)?));
        }
    }
    Ok(out)
}

/// Stores the signature checks of new filings: one multi-row INSERT per
/// [`super::portal_filings::BATCH_ROWS`] rows.
pub fn insert_many(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    rows: &[(i64, NewSignature<'_>)],
) -> Result<(), StoreError> {
    use super::portal_filings::BATCH_ROWS;
    let keys = tx.tenant_keys(tenant)?;
    let mut sealed = Vec::with_capacity(rows.len());
    for (id, s) in rows {
        let plain = serde_json::to_vec(s.check)
            .map_err(|e| StoreError::Corrupt(format!("signature check: {e}")))?;
        sealed.push(keys.seal(&context(tenant, *id), &plain)?);
    }
    for (n, chunk) in rows.chunks(BATCH_ROWS).enumerate() {
        let mut values = Vec::with_capacity(chunk.len());
        let mut params: Vec<super::db::Param<'_>> = Vec::with_capacity(chunk.len() * 6 + 1);
        params.push(tenant.as_str().into());
        for (i, (id, s)) in chunk.iter().enumerate() {
            let p = 2 + i * 6;
            values.push(format!(
                "($1, ${}, ${}, ${}, ${}, ${}, ${})",
                p,
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5
            ));
            params.push((*id).into());
            params.push(s.nonce.into());
            params.push(s.content_sha256.into());
            params.push(s.check.result.as_str().into());
            params.push(s.check.checked_at.into());
            params.push((&sealed[n * BATCH_ROWS + i]).into());
        }
        let sql = format!(
            "INSERT INTO portal_signatures (tenant, filing_id, nonce, content_sha256, result, \
             checked_at, detail) VALUES {}",
            values.join(", ")
        );
        tx.execute(&sql, &params)?;
    }
    Ok(())
}

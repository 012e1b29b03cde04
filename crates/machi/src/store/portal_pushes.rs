//! Status updates waiting to reach the citizen portal (issue 11): the
//! latest status of a filing the portal has not yet been told of. A status
//! change queues its update in the same transaction that makes it
//! ([`queue`]); the pull worker (and [`crate::portal::PortalLink::flush_statuses`])
//! pushes them and removes each one the portal accepted. The portal being
//! unreachable loses nothing: the row stays and is pushed later.

use machi_domain::ids::MunicipalityCode;

use super::{StoreError, Tx};

/// One queued status update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedStatus {
    pub filing_id: i64,
    pub receipt: String,
    pub status: String,
    pub reason: Option<String>,
    pub queued_at: i64,
    pub attempts: i64,
}

fn context(tenant: &MunicipalityCode, filing_id: i64) -> String {
    format!("portal_status_reason:{}:{filing_id}", tenant.as_str())
}

/// The status codes the portal knows.
pub const STATUSES: [&str; 5] = [
    "received",
    "under_review",
    "correction_requested",
    "approved",
    "rejected",
];

/// Queues the portal's status of filing `filing_id` (replacing an update
/// not yet pushed). The reason, which the citizen reads, is sealed with
/// the tenant's key until it is pushed.
pub fn queue(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    filing_id: i64,
    status: &str,
    reason: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    if !STATUSES.contains(&status) {
        return Err(StoreError::Corrupt(format!(
            "portal status {status:?} is not one of {STATUSES:?}"
        )));
    }
    // A filing made at the counter has no portal to tell: the applicant
    // was there.
    let portal_id = tx
        .query_opt(
            "SELECT portal_id FROM portal_filings WHERE tenant = $1 AND filing_id = $2",
            &[tenant.as_str().into(), filing_id.into()],
        )?
        .map(|r| r.text(0))
        .transpose()?;
    if portal_id.is_some_and(|p| super::portal_filings::filed_at_counter(&p)) {
        return Ok(());
    }
    let reason = match reason.filter(|r| !r.trim().is_empty()) {
        Some(r) => Some(
            tx.tenant_keys(tenant)?
                .seal(&context(tenant, filing_id), r.as_bytes())?,
        ),
        None => None,
    };
    tx.execute(
        "INSERT INTO portal_status_pushes (tenant, filing_id, status, reason, queued_at, attempts) \
         VALUES ($1, $2, $3, $4, $5, 0) ON CONFLICT (tenant, filing_id) DO UPDATE SET \
         status = excluded.status, reason = excluded.reason, queued_at = excluded.queued_at, attempts = 0",
        &[
            tenant.as_str().into(),
            filing_id.into(),
            status.into(),
            (&reason).into(),
            now.into(),
        ],
    )?;
    Ok(())
}

/// Updates waiting for the portal, oldest first.
pub fn pending(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    limit: i64,
) -> Result<Vec<QueuedStatus>, StoreError> {
    let rows = tx.query(
        "SELECT p.filing_id, f.receipt, p.status, p.reason, p.queued_at, p.attempts \
         FROM portal_status_pushes p JOIN portal_filings f \
         ON f.tenant = p.tenant AND f.filing_id = p.filing_id \
         WHERE p.tenant = $1 ORDER BY p.queued_at, p.filing_id LIMIT $2",
        &[tenant.as_str().into(), limit.into()],
    )?;
    let keys = tx.tenant_keys(tenant)?;
    rows.iter()
        .map(|r| {
            let filing_id = r.int(0)?;
            let reason = match r.opt_text(3)? {
                Some(s) => Some(
                    String::from_utf8(keys.open(&context(tenant, filing_id), &s)?.to_vec())
                        .map_err(|e| StoreError::Corrupt(format!("status reason: {e}")))?,
                ),
                None => None,
            };
            Ok(QueuedStatus {
                filing_id,
                receipt: r.text(1)?,
                status: r.text(2)?,
                reason,
                queued_at: r.int(4)?,
                attempts: r.int(5)?,
            })
        })
        .collect()
}

/// The portal accepted this update: removed unless a newer one was
/// queued meanwhile (`queued_at` differs).
pub fn done(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    filing_id: i64,
    queued_at: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "DELETE FROM portal_status_pushes WHERE tenant = $1 AND filing_id = $2 AND queued_at = $3",
        &[tenant.as_str().into(), filing_id.into(), queued_at.into()],
    )?;
    Ok(())
}

/// The push failed: counted, kept for the next round.
pub fn failed(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    filing_id: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE portal_status_pushes SET attempts = attempts + 1 WHERE tenant = $1 AND filing_id = $2",
        &[tenant.as_str().into(), filing_id.into()],
    )?;
    Ok(())
}

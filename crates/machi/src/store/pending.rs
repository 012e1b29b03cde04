//! Provisional changes (仮登録, j530): entered by a clerk, waiting for a
//! supervisor's decision. They are not facts: the registry, certificates and
//! the linkage feed never see them.

use machi_domain::ids::{AddresseeNumber, MunicipalityCode};

use super::{Row, StoreError, Tx};

/// Where a provisional change stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PendingStatus {
    /// 仮登録: waiting for review.
    Pending,
    /// 本登録: approved, committed as a change.
    Approved,
    /// 差戻し: sent back to the clerk.
    Returned,
    /// 取下げ: withdrawn by the clerk before a decision.
    Withdrawn,
}

impl PendingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PendingStatus::Pending => "pending",
            PendingStatus::Approved => "approved",
            PendingStatus::Returned => "returned",
            PendingStatus::Withdrawn => "withdrawn",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [
            PendingStatus::Pending,
            PendingStatus::Approved,
            PendingStatus::Returned,
            PendingStatus::Withdrawn,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }
    pub fn label_ja(self) -> &'static str {
        match self {
            PendingStatus::Pending => "仮登録（審査待ち）",
            PendingStatus::Approved => "本登録済み",
            PendingStatus::Returned => "差戻し",
            PendingStatus::Withdrawn => "取下げ",
        }
    }
    pub fn label_en(self) -> &'static str {
        match self {
            PendingStatus::Pending => "Provisional (awaiting review)",
            PendingStatus::Approved => "Approved",
            PendingStatus::Returned => "Sent back",
            PendingStatus::Withdrawn => "Withdrawn",
        }
    }
}

/// One provisional change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingChange {
    pub pending_id: i64,
    /// The reason code the dry run found, e.g. `move_in`.
    pub reason: String,
    /// The request as entered (JSON of `ChangeRequest`); stored with every
    /// 個人番号 in it sealed.
    pub request: serde_json::Value,
    /// A line for the list: reason and persons.
    pub summary: String,
    pub status: PendingStatus,
    pub entered_by: String,
    pub entered_terminal: String,
    pub entered_at: i64,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub comment: Option<String>,
    pub change_id: Option<i64>,
    /// The persons the change would touch (from its dry run).
    pub persons: Vec<AddresseeNumber>,
    /// The entry sent back (差戻し) that this one enters again.
    pub resubmits: Option<i64>,
}

const COLUMNS: &str = "pending_id, reason, request, summary, status, entered_by, entered_terminal, entered_at, \
     decided_by, decided_at, comment, change_id, persons, resubmits";

/// What a sealed 個人番号 in a provisional request is bound to.
fn context(id: i64) -> String {
    format!("pending_changes.request/{id}")
}

fn from_row(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    r: &Row,
) -> Result<PendingChange, StoreError> {
    let status = r.text(4)?;
    let id = r.int(0)?;
    let keys = tx.tenant_keys(tenant)?;
    Ok(PendingChange {
        pending_id: id,
        reason: r.text(1)?,
        request: super::records::open_json(&keys, &context(id), &r.text(2)?)?,
        summary: r.text(3)?,
        status: PendingStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("pending status {status:?}")))?,
        entered_by: r.text(5)?,
        entered_terminal: r.text(6)?,
        entered_at: r.int(7)?,
        decided_by: r.opt_text(8)?,
        decided_at: r.opt_int(9)?,
        comment: r.opt_text(10)?,
        change_id: r.opt_int(11)?,
        persons: {
            let list: Vec<String> = serde_json::from_str(&r.text(12)?)
                .map_err(|e| StoreError::Corrupt(format!("pending persons: {e}")))?;
            list.iter()
                .map(|p| {
                    p.parse()
                        .map_err(|_| StoreError::Corrupt(format!("pending person {p:?}")))
                })
                .collect::<Result<_, _>>()?
        },
        resubmits: r.opt_int(13)?,
    })
}

/// Inserts a provisional change with the next id of the tenant (the caller
/// holds the tenant lock).
pub fn insert(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    p: &PendingChange,
) -> Result<i64, StoreError> {
    let id = tx
        .query_one(
            "SELECT COALESCE(MAX(pending_id), 0) + 1 FROM pending_changes WHERE tenant = $1",
            &[tenant.as_str().into()],
        )?
        .int(0)?;
    let request = super::records::seal_json(&*tx.tenant_keys(tenant)?, &context(id), &p.request)?;
    let persons: Vec<&str> = p.persons.iter().map(|a| a.as_str()).collect();
    let persons = serde_json::to_string(&persons)
        .map_err(|e| StoreError::Corrupt(format!("pending persons: {e}")))?;
    tx.execute(
        "INSERT INTO pending_changes (tenant, pending_id, reason, request, summary, status, entered_by, \
         entered_terminal, entered_at, persons, resubmits) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        &[
            tenant.as_str().into(),
            id.into(),
            (&p.reason).into(),
            (&request).into(),
            (&p.summary).into(),
            p.status.as_str().into(),
            (&p.entered_by).into(),
            (&p.entered_terminal).into(),
            p.entered_at.into(),
            (&persons).into(),
            p.resubmits.into(),
        ],
    )?;
    Ok(id)
}

pub fn get(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    id: i64,
) -> Result<Option<PendingChange>, StoreError> {
    let row = tx.query_opt(
        &format!("SELECT {COLUMNS} FROM pending_changes WHERE tenant = $1 AND pending_id = $2"),
        &[tenant.as_str().into(), id.into()],
    )?;
    row.map(|r| from_row(tx, tenant, &r)).transpose()
}

/// Provisional changes with `status`, oldest first (the review queue), or
/// newest first for other statuses.
pub fn list(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    status: PendingStatus,
    limit: i64,
) -> Result<Vec<PendingChange>, StoreError> {
    let order = if status == PendingStatus::Pending {
        "ASC"
    } else {
        "DESC"
    };
    let rows = tx.query(
        &format!(
            "SELECT {COLUMNS} FROM pending_changes WHERE tenant = $1 AND status = $2 \
             ORDER BY pending_id {order} LIMIT $3"
        ),
        &[tenant.as_str().into(), status.as_str().into(), limit.into()],
    )?;
    rows.iter().map(|r| from_row(tx, tenant, r)).collect()
}

/// Replaces the persons an entry names (on approval: the committed ones).
pub fn set_persons(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    id: i64,
    persons: &[AddresseeNumber],
) -> Result<(), StoreError> {
    let persons: Vec<&str> = persons.iter().map(|a| a.as_str()).collect();
    let persons = serde_json::to_string(&persons)
        .map_err(|e| StoreError::Corrupt(format!("pending persons: {e}")))?;
    tx.execute(
        "UPDATE pending_changes SET persons = $3 WHERE tenant = $1 AND pending_id = $2",
        &[tenant.as_str().into(), id.into(), (&persons).into()],
    )?;
    Ok(())
}

/// Moves a pending change to its decision; false if it was no longer pending.
#[allow(clippy::too_many_arguments)]
pub fn decide(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    id: i64,
    status: PendingStatus,
    by: &str,
    at: i64,
    comment: Option<&str>,
    change_id: Option<i64>,
) -> Result<bool, StoreError> {
    Ok(tx.execute(
        "UPDATE pending_changes SET status = $3, decided_by = $4, decided_at = $5, comment = $6, change_id = $7 \
         WHERE tenant = $1 AND pending_id = $2 AND status = 'pending'",
        &[
            tenant.as_str().into(),
            id.into(),
            status.as_str().into(),
            by.into(),
            at.into(),
            comment.into(),
            change_id.into(),
        ],
    )? == 1)
}

pub fn count_pending(tx: &mut Tx<'_>, tenant: &MunicipalityCode) -> Result<i64, StoreError> {
    tx.query_one(
        "SELECT COUNT(*) FROM pending_changes WHERE tenant = $1 AND status = 'pending'",
        &[tenant.as_str().into()],
    )?
    .int(0)
}

/// The entries `entered_by` entered that were sent back (差戻し) and not yet
/// entered again, newest first: the clerk's work to redo.
pub fn returned_to(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    entered_by: &str,
    limit: i64,
) -> Result<Vec<PendingChange>, StoreError> {
    let cols = COLUMNS
        .split(", ")
        .map(|c| format!("p.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = tx.query(
        &format!(
            "SELECT {cols} FROM pending_changes p WHERE p.tenant = $1 AND p.status = 'returned' \
             AND p.entered_by = $2 AND NOT EXISTS (SELECT 1 FROM pending_changes n \
             WHERE n.tenant = p.tenant AND n.resubmits = p.pending_id) \
             ORDER BY p.pending_id DESC LIMIT $3"
        ),
        &[tenant.as_str().into(), entered_by.into(), limit.into()],
    )?;
    rows.iter().map(|r| from_row(tx, tenant, r)).collect()
}

/// How many entries of `entered_by` were sent back and not entered again.
pub fn count_returned_to(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    entered_by: &str,
) -> Result<i64, StoreError> {
    tx.query_one(
        "SELECT COUNT(*) FROM pending_changes p WHERE p.tenant = $1 AND p.status = 'returned' \
         AND p.entered_by = $2 AND NOT EXISTS (SELECT 1 FROM pending_changes n \
         WHERE n.tenant = p.tenant AND n.resubmits = p.pending_id)",
        &[tenant.as_str().into(), entered_by.into()],
    )?
    .int(0)
}

/// Whether entry `id` was already entered again.
pub fn resubmitted(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    id: i64,
) -> Result<bool, StoreError> {
    Ok(tx
        .query_one(
            "SELECT COUNT(*) FROM pending_changes WHERE tenant = $1 AND resubmits = $2",
            &[tenant.as_str().into(), id.into()],
        )?
        .int(0)?
        > 0)
}

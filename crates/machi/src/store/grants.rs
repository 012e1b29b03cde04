//! Access proposals (職務の分離): what the tenant administrator proposed
//! that gives an account or an API client personal data, waiting for a
//! second person's decision. Nothing proposed takes effect before approval.

use machi_domain::ids::MunicipalityCode;

use super::{Row, StoreError, Tx};

/// Where a proposal stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantStatus {
    /// Waiting for a second person.
    Pending,
    /// Approved: it took effect.
    Approved,
    /// Rejected by an approver.
    Rejected,
    /// Withdrawn by whoever proposed it.
    Withdrawn,
}

impl GrantStatus {
    pub const ALL: [GrantStatus; 4] = [
        GrantStatus::Pending,
        GrantStatus::Approved,
        GrantStatus::Rejected,
        GrantStatus::Withdrawn,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GrantStatus::Pending => "pending",
            GrantStatus::Approved => "approved",
            GrantStatus::Rejected => "rejected",
            GrantStatus::Withdrawn => "withdrawn",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.as_str() == s)
    }

    pub fn label_ja(self) -> &'static str {
        match self {
            GrantStatus::Pending => "承認待ち",
            GrantStatus::Approved => "承認済み",
            GrantStatus::Rejected => "却下",
            GrantStatus::Withdrawn => "取下げ",
        }
    }

    pub fn label_en(self) -> &'static str {
        match self {
            GrantStatus::Pending => "Awaiting approval",
            GrantStatus::Approved => "Approved",
            GrantStatus::Rejected => "Rejected",
            GrantStatus::Withdrawn => "Withdrawn",
        }
    }
}

/// One proposal as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredGrant {
    pub grant_id: i64,
    /// `account.create`, `account.role`, `client.create`, `client.scopes`
    /// or `client.direct_commit`.
    pub kind: String,
    /// The account's login or the client's id.
    pub target: String,
    /// What is proposed (JSON of the service's proposal).
    pub detail: String,
    pub status: GrantStatus,
    pub proposed_by: String,
    pub proposed_terminal: String,
    pub proposed_at: i64,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub comment: Option<String>,
}

const COLUMNS: &str = "grant_id, kind, target, detail, status, proposed_by, proposed_terminal, \
     proposed_at, decided_by, decided_at, comment";

fn from_row(r: &Row) -> Result<StoredGrant, StoreError> {
    let status = r.text(4)?;
    Ok(StoredGrant {
        grant_id: r.int(0)?,
        kind: r.text(1)?,
        target: r.text(2)?,
        detail: r.text(3)?,
        status: GrantStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("grant status {status:?}")))?,
        proposed_by: r.text(5)?,
        proposed_terminal: r.text(6)?,
        proposed_at: r.int(7)?,
        decided_by: r.opt_text(8)?,
        decided_at: r.opt_int(9)?,
        comment: r.opt_text(10)?,
    })
}

/// Inserts a pending proposal with the tenant's next id (the caller holds
/// the tenant lock).
pub fn insert(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    g: &StoredGrant,
) -> Result<i64, StoreError> {
    let id = tx
        .query_one(
            "SELECT COALESCE(MAX(grant_id), 0) + 1 FROM access_grants WHERE tenant = $1",
            &[tenant.as_str().into()],
        )?
        .int(0)?;
    tx.execute(
        "INSERT INTO access_grants (tenant, grant_id, kind, target, detail, status, proposed_by, \
         proposed_terminal, proposed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            tenant.as_str().into(),
            id.into(),
            (&g.kind).into(),
            (&g.target).into(),
            (&g.detail).into(),
            g.status.as_str().into(),
            (&g.proposed_by).into(),
            (&g.proposed_terminal).into(),
            g.proposed_at.into(),
        ],
    )?;
    Ok(id)
}

pub fn get(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    id: i64,
) -> Result<Option<StoredGrant>, StoreError> {
    tx.query_opt(
        &format!("SELECT {COLUMNS} FROM access_grants WHERE tenant = $1 AND grant_id = $2"),
        &[tenant.as_str().into(), id.into()],
    )?
    .map(|r| from_row(&r))
    .transpose()
}

/// The tenant's proposals, newest first: pending ones, or every decided one.
pub fn list(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    pending: bool,
    limit: i64,
) -> Result<Vec<StoredGrant>, StoreError> {
    let op = if pending { "=" } else { "<>" };
    tx.query(
        &format!(
            "SELECT {COLUMNS} FROM access_grants WHERE tenant = $1 AND status {op} 'pending' \
             ORDER BY grant_id DESC LIMIT $2"
        ),
        &[tenant.as_str().into(), limit.into()],
    )?
    .iter()
    .map(from_row)
    .collect()
}

/// Whether a pending proposal of `kind` about `target` exists.
pub fn pending_exists(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    kind: &str,
    target: &str,
) -> Result<bool, StoreError> {
    Ok(tx
        .query_opt(
            "SELECT grant_id FROM access_grants WHERE tenant = $1 AND kind = $2 AND target = $3 \
             AND status = 'pending'",
            &[tenant.as_str().into(), kind.into(), target.into()],
        )?
        .is_some())
}

/// Moves a pending proposal to its decision; false if it was no longer pending.
pub fn decide(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    id: i64,
    status: GrantStatus,
    by: &str,
    at: i64,
    comment: Option<&str>,
) -> Result<bool, StoreError> {
    Ok(tx.execute(
        "UPDATE access_grants SET status = $3, decided_by = $4, decided_at = $5, comment = $6 \
         WHERE tenant = $1 AND grant_id = $2 AND status = 'pending'",
        &[
            tenant.as_str().into(),
            id.into(),
            status.as_str().into(),
            by.into(),
            at.into(),
            comment.into(),
        ],
    )? == 1)
}

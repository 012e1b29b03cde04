//! Reads for supervisors and CIOs: the access log filtered (j1370), and
//! aggregate counts with no personal data.

use machi_domain::ids::MunicipalityCode;

use super::records::{AUDIT_COLUMNS, StoredAudit, stored_audit};
use super::{Param, StoreError, Tx};

/// Conditions on the access log; all optional.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub operator: Option<String>,
    /// A prefix of the function, e.g. `read.` or `change.`.
    pub function: Option<String>,
    /// Part of the target, e.g. an addressee number.
    pub target: Option<String>,
    /// Microseconds since the epoch, inclusive.
    pub from: Option<i64>,
    /// Microseconds since the epoch, exclusive.
    pub to: Option<i64>,
}

/// Entries matching `f`, newest first, at most `limit`.
pub fn search_audit(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    f: &AuditFilter,
    limit: i64,
) -> Result<Vec<StoredAudit>, StoreError> {
    let function = f.function.as_ref().map(|p| format!("{}%", escape_like(p)));
    let target = f.target.as_ref().map(|p| format!("%{}%", escape_like(p)));
    let mut params: Vec<Param<'_>> = vec![tenant.as_str().into()];
    let mut conds: Vec<(String, Param<'_>)> = vec![];
    if let Some(o) = &f.operator {
        conds.push(("operator =".into(), Param::Text(o)));
    }
    if let Some(p) = &function {
        conds.push(("function LIKE".into(), Param::Text(p)));
    }
    if let Some(p) = &target {
        conds.push(("target LIKE".into(), Param::Text(p)));
    }
    if let Some(v) = f.from {
        conds.push(("at >=".into(), Param::Int(v)));
    }
    if let Some(v) = f.to {
        conds.push(("at <".into(), Param::Int(v)));
    }
    let mut sql = format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE tenant = $1");
    for (cond, p) in conds {
        params.push(p);
        let escape = if cond.ends_with("LIKE") {
            " ESCAPE '\\'"
        } else {
            ""
        };
        sql.push_str(&format!(" AND {cond} ${}{escape}", params.len()));
    }
    params.push(Param::Int(limit));
    sql.push_str(&format!(" ORDER BY seq DESC LIMIT ${}", params.len()));
    tx.query(&sql, &params)?.iter().map(stored_audit).collect()
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Counts for a CIO: no person can be identified from them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aggregates {
    /// (status, count) of every person ever recorded.
    pub by_status: Vec<(String, i64)>,
    pub households: i64,
    /// (reason code, count) of changes since the given instant.
    pub changes_by_reason: Vec<(String, i64)>,
    pub pending: i64,
    pub certificates: i64,
}

pub fn aggregates(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    since: i64,
) -> Result<Aggregates, StoreError> {
    let t = tenant.as_str();
    let pairs = |rows: Vec<super::Row>| -> Result<Vec<(String, i64)>, StoreError> {
        rows.iter().map(|r| Ok((r.text(0)?, r.int(1)?))).collect()
    };
    Ok(Aggregates {
        by_status: pairs(tx.query(
            "SELECT status, COUNT(*) FROM resident_current WHERE tenant = $1 GROUP BY status ORDER BY status",
            &[t.into()],
        )?)?,
        households: tx
            .query_one(
                "SELECT COUNT(DISTINCT household_number) FROM resident_current WHERE tenant = $1 AND status = 'resident'",
                &[t.into()],
            )?
            .int(0)?,
        changes_by_reason: pairs(tx.query(
            "SELECT reason, COUNT(*) FROM changes WHERE tenant = $1 AND recorded_at >= $2 GROUP BY reason ORDER BY reason",
            &[t.into(), since.into()],
        )?)?,
        pending: tx
            .query_one(
                "SELECT COUNT(*) FROM pending_changes WHERE tenant = $1 AND status = 'pending'",
                &[t.into()],
            )?
            .int(0)?,
        certificates: tx
            .query_one(
                "SELECT COUNT(*) FROM certificates WHERE tenant = $1 AND issued_at >= $2",
                &[t.into(), since.into()],
            )?
            .int(0)?,
    })
}

//! Tenants (団体): the municipalities sharing one deployment.

use super::{Row, Store, StoreError};
use machi_domain::ids::MunicipalityCode;
use serde::Serialize;

/// A municipality served by this deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Tenant {
    /// 団体コード (6 digits with check digit)
    #[schema(value_type = String, example = "132063")]
    pub municipality_code: MunicipalityCode,
    /// e.g. 府中市
    pub name: String,
    /// e.g. 東京都
    pub prefecture: String,
    /// Microseconds since the Unix epoch.
    pub created_at: i64,
}

impl Store {
    /// Creates a tenant with its sequences and audit chain; false if it
    /// already exists (nothing changes then).
    pub async fn create_tenant(&self, t: &Tenant) -> Result<bool, StoreError> {
        let t = t.clone();
        let code = t.municipality_code.clone();
        self.write(Some(&code), move |tx| {
            let code = t.municipality_code.as_str();
            if tx
                .query_opt("SELECT 1 FROM tenants WHERE municipality_code = $1", &[code.into()])?
                .is_some()
            {
                return Ok(false);
            }
            // A concurrent creation of the same tenant is "already exists".
            let inserted = tx.execute(
                "INSERT INTO tenants (municipality_code, name, prefecture, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (municipality_code) DO NOTHING",
                &[code.into(), (&t.name).into(), (&t.prefecture).into(), t.created_at.into()],
            )?;
            if inserted == 0 {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO tenant_heads (tenant, addressee_seq, household_seq, change_seq, event_seq, audit_seq, audit_hash) \
                 VALUES ($1, 0, 0, 0, 0, 0, $2)",
                &[code.into(), super::records::GENESIS_HASH.into()],
            )?;
            Ok(true)
        })
        .await
    }

    pub async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        self.read(None, |tx| {
            tx.query(
                "SELECT municipality_code, name, prefecture, created_at FROM tenants ORDER BY municipality_code",
                &[],
            )?
            .iter()
            .map(tenant_from_row)
            .collect()
        })
        .await
    }

    pub async fn get_tenant(&self, code: &MunicipalityCode) -> Result<Option<Tenant>, StoreError> {
        let code = code.clone();
        self.read(None, move |tx| {
            tx.query_opt(
                "SELECT municipality_code, name, prefecture, created_at FROM tenants WHERE municipality_code = $1",
                &[code.as_str().into()],
            )?
            .as_ref()
            .map(tenant_from_row)
            .transpose()
        })
        .await
    }
}

fn tenant_from_row(r: &Row) -> Result<Tenant, StoreError> {
    let code = r.text(0)?;
    Ok(Tenant {
        municipality_code: code
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("tenant code {code:?}")))?,
        name: r.text(1)?,
        prefecture: r.text(2)?,
        created_at: r.int(3)?,
    })
}

//! Tenants (団体): the municipalities sharing one deployment.

use machi_domain::ids::MunicipalityCode;
use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError};

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

/// The per-tenant counters a new tenant starts with.
pub const COUNTERS: [&str; 4] = ["addressee", "household", "change", "event"];

impl Store {
    /// Creates a tenant; false if it already exists (nothing changes then).
    pub async fn create_tenant(&self, t: &Tenant) -> Result<bool, StoreError> {
        let code = &t.municipality_code;
        let mut tx = self.begin_write(Some(code)).await?;
        let exists = sqlx::query("SELECT 1 AS one FROM tenants WHERE municipality_code = $1")
            .bind(code.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if exists {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO tenants (municipality_code, name, prefecture, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(code.as_str())
        .bind(&t.name)
        .bind(&t.prefecture)
        .bind(t.created_at)
        .execute(&mut *tx)
        .await?;
        for c in COUNTERS {
            sqlx::query("INSERT INTO counters (tenant, name, value) VALUES ($1, $2, 0)")
                .bind(code.as_str())
                .bind(c)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("INSERT INTO audit_head (tenant, seq, hash) VALUES ($1, 0, $2)")
            .bind(code.as_str())
            .bind(super::records::GENESIS_HASH)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let mut tx = self.begin_read(None).await?;
        let rows = sqlx::query(
            "SELECT municipality_code, name, prefecture, created_at FROM tenants ORDER BY municipality_code",
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter().map(tenant_from_row).collect()
    }

    pub async fn get_tenant(&self, code: &MunicipalityCode) -> Result<Option<Tenant>, StoreError> {
        let mut tx = self.begin_read(None).await?;
        let row = sqlx::query(
            "SELECT municipality_code, name, prefecture, created_at FROM tenants WHERE municipality_code = $1",
        )
        .bind(code.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.as_ref().map(tenant_from_row).transpose()
    }
}

fn tenant_from_row(r: &sqlx::any::AnyRow) -> Result<Tenant, StoreError> {
    let code: String = r.try_get("municipality_code")?;
    Ok(Tenant {
        municipality_code: code
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("tenant code {code:?}")))?,
        name: r.try_get("name")?,
        prefecture: r.try_get("prefecture")?,
        created_at: r.try_get("created_at")?,
    })
}

//! The tenant's own addresses, offered when a clerk enters one (住所辞書,
//! j250; 転出先入力 j650: from the dictionary, or typed directly).

use machi_domain::ids::MunicipalityCode;
use machi_domain::names::search_key;

use super::registry::{Registry, ServiceError};
use crate::store::records::{self, SearchFilter};

/// One address of the tenant, with its postal code when one is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownAddress {
    pub address: String,
    pub postal_code: Option<String>,
}

/// How many current records one address-book read looks at.
const SCAN: i64 = 2000;

impl Registry {
    /// The distinct addresses current residents live at, with their postal
    /// codes, sorted, at most `limit`; those containing `part` (folded like a
    /// search, j330) when given. Addresses of persons a support measure
    /// shields (j440) are left out: the list never shows where they live.
    /// No person is shown, so nothing is logged.
    pub async fn address_book(
        &self,
        tenant: &MunicipalityCode,
        part: Option<&str>,
        limit: usize,
    ) -> Result<Vec<KnownAddress>, ServiceError> {
        self.ensure_tenant(tenant).await?;
        let filter = SearchFilter {
            address_key: part
                .map(|p| search_key(p).chars().filter(|c| !c.is_control()).collect())
                .filter(|k: &String| !k.is_empty()),
            exclude_shielded: true,
            ..SearchFilter::default()
        };
        let t = tenant.clone();
        let rows = self
            .store()
            .read(Some(tenant), move |tx| {
                Ok::<_, ServiceError>(records::search(tx, &t, &filter, None, SCAN)?)
            })
            .await?;
        let mut book: std::collections::BTreeMap<String, Option<String>> = Default::default();
        for r in rows {
            let a = &r.row.record.address;
            let code = a.postal_code.as_ref().map(|p| p.to_string());
            let e = book.entry(a.address.clone()).or_default();
            if e.is_none() {
                *e = code;
            }
        }
        Ok(book
            .into_iter()
            .take(limit)
            .map(|(address, postal_code)| KnownAddress {
                address,
                postal_code,
            })
            .collect())
    }

    /// The postal code recorded for `address` in the tenant, if any.
    pub async fn postal_code_of(
        &self,
        tenant: &MunicipalityCode,
        address: &str,
    ) -> Result<Option<String>, ServiceError> {
        Ok(self
            .address_book(tenant, Some(address), usize::MAX)
            .await?
            .into_iter()
            .find(|k| k.address == address)
            .and_then(|k| k.postal_code))
    }
}

//! Counter-assisted filing (書かない窓口, issue 11 item 7): a clerk fills a
//! published procedure for a resident at the counter, the registry's data
//! prefilled, the applicant checks it, and the filing joins the filings
//! imported from the portal (`portal_filings`), marked as filed at the
//! counter, with the clerk and the applicant recorded, in one transaction
//! with its access-log entry (j1370).

use machi_domain::ids::{AddresseeNumber, MunicipalityCode};

use super::registry::access_entry;
use super::{Actor, Registry, ServiceError};
use crate::store::portal_filings::{self, NewPortalFiling};
use crate::store::records;

/// What the clerk files for the applicant.
pub struct CounterFiling {
    /// The resident the filing is made for (the applicant).
    pub applicant: AddresseeNumber,
    pub procedure: String,
    pub version: u32,
    /// The answers as the filing carries them
    /// ([`machi_procedures::Definition::filing_payload`]).
    pub answers: serde_json::Value,
    /// File fields whose originals the clerk saw at the counter (their
    /// copies are not kept).
    pub documents_seen: Vec<String>,
    /// The clerk's name as staff see it.
    pub clerk_name: String,
    /// An anonymous procedure (a survey): the applicant is not recorded,
    /// neither in the filing nor in the access log.
    pub anonymous: bool,
}

impl Registry {
    /// Stores a counter-assisted filing; returns its 受付番号. The filing
    /// is stored like an imported one (same format, same table), its
    /// portal id `counter:<受付番号>` (see
    /// [`portal_filings::COUNTER_PREFIX`]) and its `counter` member naming
    /// the clerk, the applicant and the documents seen.
    pub async fn file_at_counter(
        &self,
        tenant: &MunicipalityCode,
        f: CounterFiling,
        actor: &Actor,
    ) -> Result<String, ServiceError> {
        let receipt = machi_portal::seal::new_code(3)
            .map_err(|e| ServiceError::Store(crate::store::StoreError::Task(e.to_string())))?;
        let now = self.clock().now();
        let at = now.timestamp_micros();
        let submitted_at = now.with_timezone(&super::clock::jst()).to_rfc3339();
        let filing = serde_json::json!({
            "format": "machi-portal-filing/1",
            "receipt": receipt,
            "submitted_at": submitted_at,
            "signed_content": {
                "tenant": tenant.as_str(),
                "procedure": f.procedure,
                "version": f.version,
                "answers": f.answers,
            },
            "signature": null,
            "counter": {
                "clerk": actor.operator,
                "clerk_name": f.clerk_name,
                "terminal": actor.terminal,
                "applicant": (!f.anonymous).then(|| f.applicant.as_str()),
                "documents_seen": f.documents_seen,
                "applicant_confirmed": true,
            },
        });
        let bytes = serde_json::to_vec(&filing)
            .map_err(|e| ServiceError::Store(crate::store::StoreError::Task(e.to_string())))?;
        let entry = access_entry(
            actor,
            "counter_filing.file",
            if f.anonymous {
                format!("procedure:{}", f.procedure)
            } else {
                f.applicant.to_string()
            },
            serde_json::json!({
                "procedure": f.procedure,
                "version": f.version,
                "receipt": receipt,
            }),
            false,
        );
        let (t, r) = (tenant.clone(), receipt.clone());
        let (procedure, version) = (f.procedure.clone(), i64::from(f.version));
        self.store()
            .write(Some(tenant), move |tx| {
                let portal_id = format!("{}{r}", portal_filings::COUNTER_PREFIX);
                portal_filings::insert_if_new(
                    tx,
                    &t,
                    &NewPortalFiling {
                        portal_id: &portal_id,
                        receipt: &r,
                        procedure: &procedure,
                        version,
                        received_at: &submitted_at,
                        imported_at: at,
                        filing: &bytes,
                        // Identity was checked in person at the counter.
                        signed: false,
                    },
                )?;
                records::append_next_audit(tx, &t, at, &entry)?;
                Ok::<_, ServiceError>(())
            })
            .await?;
        Ok(receipt)
    }
}

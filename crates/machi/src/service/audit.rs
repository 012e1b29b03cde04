//! The access log's hash chain (j1370): verification.
//!
//! Each tenant's entries are numbered 1, 2, 3, … and each carries the hash
//! of the one before it; the tenant's head row holds the number and hash of
//! the last. An entry edited, removed or moved breaks the chain at the
//! first place it touches, and that is the entry reported.

use machi_domain::ids::MunicipalityCode;
use serde::Serialize;

use super::{Registry, ServiceError};
use crate::store::StoreError;
use crate::store::records::{self, GENESIS_HASH};

/// What is wrong with the first bad entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChainProblem {
    /// The entry's content no longer matches its hash.
    Altered,
    /// The entry does not chain to the one before it (moved, or one before it removed or altered).
    Unlinked,
    /// The entry with this number was removed.
    Missing,
    /// Entries at the end were removed: the head records more than the log holds.
    Truncated,
}

/// The result of verifying one tenant's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainVerdict {
    pub municipality_code: String,
    pub entries: u64,
    /// The first bad entry's number and what is wrong with it.
    pub first_bad: Option<(i64, ChainProblem)>,
}

impl Registry {
    /// Verifies a tenant's access-log chain from its first entry to the head.
    pub async fn verify_audit(
        &self,
        tenant: &MunicipalityCode,
    ) -> Result<ChainVerdict, ServiceError> {
        self.ensure_tenant(tenant).await?;
        let t = tenant.clone();
        self.store()
            .read(Some(tenant), move |tx| {
                let mut expected_seq = 1i64;
                let mut prev = GENESIS_HASH.to_string();
                let mut entries = 0u64;
                let mut first_bad: Option<(i64, ChainProblem)> = None;
                let mut after = 0i64;
                loop {
                    let page = records::audit_entries(tx, &t, after, 10_000)?;
                    if page.is_empty() {
                        break;
                    }
                    for e in &page {
                        entries += 1;
                        after = e.seq;
                        if first_bad.is_some() {
                            continue;
                        }
                        if e.seq != expected_seq {
                            first_bad = Some((expected_seq, ChainProblem::Missing));
                        } else if e.prev_hash != prev {
                            first_bad = Some((e.seq, ChainProblem::Unlinked));
                        } else if records::audit_hash(&t, e.seq, e.at, &e.prev_hash, &e.entry)
                            != e.hash
                        {
                            first_bad = Some((e.seq, ChainProblem::Altered));
                        }
                        expected_seq = e.seq + 1;
                        prev = e.hash.clone();
                    }
                }
                if first_bad.is_none() {
                    let head = tx.query_one(
                        "SELECT audit_seq, audit_hash FROM tenant_heads WHERE tenant = $1",
                        &[t.as_str().into()],
                    )?;
                    let (seq, hash) = (head.int(0)?, head.text(1)?);
                    if seq != expected_seq - 1 || hash != prev {
                        first_bad = Some((expected_seq, ChainProblem::Truncated));
                    }
                }
                Ok::<_, StoreError>(ChainVerdict {
                    municipality_code: t.to_string(),
                    entries,
                    first_bad,
                })
            })
            .await
            .map_err(Into::into)
    }
}

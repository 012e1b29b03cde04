//! Procedure definitions the back office knows, per tenant and version
//! (issue 11, item 1): the five shipped with machi (compiled in, known to
//! every tenant) and every version a tenant published on the portal,
//! imported with the filings made on it (migration 23).
//!
//! A published version never changes: one text per (tenant, procedure,
//! version). The same text again stores nothing; a different text for a
//! version already here — or for a shipped version — is refused
//! ([`Stored::Conflict`]). The text is kept exactly as published and
//! parsed when read; parsed definitions are cached by the SHA-256 of their
//! text (content-addressed, so a cache entry is right for every tenant and
//! every database).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use machi_domain::ids::MunicipalityCode;
use machi_procedures::{ActionKind, Definition};
use sha2::{Digest, Sha256};

use super::{StoreError, Tx};

/// The SHA-256 of a definition's text (hex).
pub fn digest(source: &str) -> String {
    hex::encode(Sha256::digest(source.as_bytes()))
}

fn cache() -> &'static Mutex<HashMap<String, Arc<Definition>>> {
    static C: OnceLock<Mutex<HashMap<String, Arc<Definition>>>> = OnceLock::new();
    C.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Parses a definition's text, once per distinct text.
pub fn parsed(source: &str) -> Result<Arc<Definition>, machi_procedures::Report> {
    let key = digest(source);
    if let Some(d) = cache().lock().ok().and_then(|c| c.get(&key).cloned()) {
        return Ok(d);
    }
    let d = Arc::new(Definition::parse(source)?);
    if let Ok(mut c) = cache().lock() {
        // Bounded: definitions are few; a flood of distinct texts only
        // stops caching, never grows memory without end.
        if c.len() < 10_000 {
            c.insert(key, d.clone());
        }
    }
    Ok(d)
}

/// The five shipped definitions: (id, version, text).
pub fn shipped() -> &'static [(String, i64, &'static str)] {
    static S: OnceLock<Vec<(String, i64, &'static str)>> = OnceLock::new();
    S.get_or_init(|| {
        machi_procedures::SHIPPED
            .iter()
            .filter_map(|(_, src)| {
                Definition::parse(src)
                    .ok()
                    .map(|d| (d.id().to_owned(), i64::from(d.version()), *src))
            })
            .collect()
    })
}

/// The shipped text of (procedure, version), if machi ships it.
pub fn shipped_source(procedure: &str, version: i64) -> Option<&'static str> {
    shipped()
        .iter()
        .find(|(id, v, _)| id == procedure && *v == version)
        .map(|(_, _, s)| *s)
}

/// The action kind's word as stored.
pub fn kind_code(k: ActionKind) -> &'static str {
    match k {
        ActionKind::RegistryChange => "registry_change",
        ActionKind::Certificate => "certificate",
        ActionKind::Handoff => "handoff",
        ActionKind::Survey => "survey",
    }
}

/// What storing a definition did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Stored now.
    New,
    /// Exactly this text is already here (or shipped): nothing written.
    Same,
    /// Another text is already here (or shipped) for this version:
    /// nothing written.
    Conflict,
}

/// Stores a validated definition's text for a tenant, unless this version
/// is already known (see [`Stored`]). The caller holds the tenant's write
/// lock.
pub fn store(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    def: &Definition,
    source: &str,
    now: i64,
) -> Result<Stored, StoreError> {
    let version = i64::from(def.version());
    if let Some(s) = shipped_source(def.id(), version) {
        // A shipped version is the same everywhere; a tenant's text under
        // its id and version must be exactly it.
        if s != source {
            return Ok(Stored::Conflict);
        }
    }
    let sha = digest(source);
    if let Some(existing) = stored_digest(tx, tenant, def.id(), version)? {
        return Ok(if existing == sha {
            Stored::Same
        } else {
            Stored::Conflict
        });
    }
    let n = tx.execute(
        "INSERT INTO procedure_definitions (tenant, procedure, version, source, sha256, action_kind, imported_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant, procedure, version) DO NOTHING",
        &[
            tenant.as_str().into(),
            def.id().into(),
            version.into(),
            source.into(),
            sha.as_str().into(),
            kind_code(def.action_kind()).into(),
            now.into(),
        ],
    )?;
    Ok(if n == 1 { Stored::New } else { Stored::Same })
}

fn stored_digest(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    procedure: &str,
    version: i64,
) -> Result<Option<String>, StoreError> {
    tx.query_opt(
        "SELECT sha256 FROM procedure_definitions WHERE tenant = $1 AND procedure = $2 AND version = $3",
        &[tenant.as_str().into(), procedure.into(), version.into()],
    )?
    .map(|r| r.text(0))
    .transpose()
}

/// The definition of (procedure, version) for a tenant: the tenant's
/// imported text, else the shipped one. None when neither is known (an
/// old portal that sends no definitions) or the stored text no longer
/// parses (it was valid on import; a newer machi reading it differently
/// is reported, not hidden: logged).
pub fn lookup(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    procedure: &str,
    version: i64,
) -> Result<Option<Arc<Definition>>, StoreError> {
    let row = tx.query_opt(
        "SELECT source FROM procedure_definitions WHERE tenant = $1 AND procedure = $2 AND version = $3",
        &[tenant.as_str().into(), procedure.into(), version.into()],
    )?;
    let source = match row {
        Some(r) => r.text(0)?,
        None => match shipped_source(procedure, version) {
            Some(s) => s.to_owned(),
            None => return Ok(None),
        },
    };
    match parsed(&source) {
        Ok(d) => Ok(Some(d)),
        Err(e) => {
            tracing::warn!(procedure, version, error = %e.message_en(), "a stored procedure definition no longer validates");
            Ok(None)
        }
    }
}

/// Every definition a tenant knows, newest version of each procedure
/// first within the procedure: the shipped ones and the tenant's own.
pub fn all(tx: &mut Tx<'_>, tenant: &MunicipalityCode) -> Result<Vec<Arc<Definition>>, StoreError> {
    let mut out: Vec<Arc<Definition>> = shipped()
        .iter()
        .filter_map(|(_, _, s)| parsed(s).ok())
        .collect();
    let rows = tx.query(
        "SELECT source FROM procedure_definitions WHERE tenant = $1 ORDER BY procedure, version",
        &[tenant.as_str().into()],
    )?;
    for r in rows {
        if let Ok(d) = parsed(&r.text(0)?)
            && !out
                .iter()
                .any(|o| o.id() == d.id() && o.version() == d.version())
        {
            out.push(d);
        }
    }
    out.sort_by(|a, b| {
        a.id()
            .cmp(b.id())
            .then_with(|| b.version().cmp(&a.version()))
    });
    Ok(out)
}

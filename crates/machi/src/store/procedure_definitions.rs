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
//!
//! A tenant's own version is not trusted because it arrived with a pull: a
//! compromised portal could deliver a new version whose `[action]` does
//! something else. Until the tenant's administrator accepts it in the back
//! office ([`decide`], migration 26) no filing made on it is approved; a
//! refused version's filings can only be rejected ([`Trust`]). An
//! acceptance can be withdrawn ([`withdraw`], migration 30): approval
//! stops until the version is accepted again. The shipped
//! versions are machi's own and need no acceptance.

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

/// The shipped definitions, current and superseded versions: (id,
/// version, text).
pub fn shipped() -> &'static [(String, i64, &'static str)] {
    static S: OnceLock<Vec<(String, i64, &'static str)>> = OnceLock::new();
    S.get_or_init(|| {
        machi_procedures::SHIPPED
            .iter()
            .chain(machi_procedures::SUPERSEDED.iter())
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
    // The tenant's stored texts first: under a number machi also ships, the
    // stored text is the one [`lookup`] (and so approval) uses.
    let rows = tx.query(
        "SELECT source FROM procedure_definitions WHERE tenant = $1 ORDER BY procedure, version",
        &[tenant.as_str().into()],
    )?;
    let mut out: Vec<Arc<Definition>> = Vec::new();
    for r in rows {
        if let Ok(d) = parsed(&r.text(0)?) {
            out.push(d);
        }
    }
    for d in shipped().iter().filter_map(|(_, _, s)| parsed(s).ok()) {
        if !out
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

/// Whether the back office acts on a definition version (see the module
/// documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// Shipped with machi.
    Shipped,
    /// The tenant's own, accepted by its administrator.
    Accepted,
    /// The tenant's own, not yet accepted or refused.
    Pending,
    /// The tenant's own, refused by its administrator.
    Refused,
    /// The tenant's own, accepted and then withdrawn by its administrator:
    /// no approval until accepted again (or refused).
    Withdrawn,
}

impl Trust {
    /// Whether a filing made on it may be approved.
    pub fn approvable(self) -> bool {
        matches!(self, Trust::Shipped | Trust::Accepted)
    }
    pub fn label_ja(self) -> &'static str {
        match self {
            Trust::Shipped => "標準の手続",
            Trust::Accepted => "受入れ済み",
            Trust::Pending => "受入れ待ち",
            Trust::Refused => "受入れ拒否",
            Trust::Withdrawn => "受入れ取消し（再判断待ち）",
        }
    }
    pub fn label_en(self) -> &'static str {
        match self {
            Trust::Shipped => "shipped with machi",
            Trust::Accepted => "accepted",
            Trust::Pending => "awaiting acceptance",
            Trust::Refused => "refused",
            Trust::Withdrawn => "acceptance withdrawn (awaiting a new decision)",
        }
    }
    /// Whether the administrator has a decision to make (pending, or an
    /// acceptance withdrawn).
    pub fn awaits_decision(self) -> bool {
        matches!(self, Trust::Pending | Trust::Withdrawn)
    }
    /// The word of the API.
    pub fn code(self) -> &'static str {
        match self {
            Trust::Shipped => "shipped",
            Trust::Accepted => "accepted",
            Trust::Pending => "pending",
            Trust::Refused => "refused",
            Trust::Withdrawn => "withdrawn",
        }
    }
    fn from_decision(d: Option<&str>) -> Result<Trust, StoreError> {
        Ok(match d {
            None => Trust::Pending,
            Some("accepted") => Trust::Accepted,
            Some("refused") => Trust::Refused,
            Some("withdrawn") => Trust::Withdrawn,
            Some(other) => return Err(StoreError::Corrupt(format!("definition decision {other}"))),
        })
    }
}

/// Whether (procedure, version) is the shipped text for this tenant: machi
/// ships that version and the tenant stored no other text under it. A
/// tenant's own text stored before a later machi shipped a version of the
/// same number stays the tenant's own (it still needs the administrator's
/// decision): a release must not turn an unreviewed, or refused, text into
/// a trusted one.
fn is_shipped_text(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    procedure: &str,
    version: i64,
) -> Result<bool, StoreError> {
    let Some(shipped) = shipped_source(procedure, version) else {
        return Ok(false);
    };
    Ok(match stored_digest(tx, tenant, procedure, version)? {
        None => true,
        Some(sha) => sha == digest(shipped),
    })
}

/// Whether the back office acts on (procedure, version) for a tenant:
/// shipped, or the administrator's decision on the tenant's own text
/// (none yet: [`Trust::Pending`]).
pub fn trust(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    procedure: &str,
    version: i64,
) -> Result<Trust, StoreError> {
    if is_shipped_text(tx, tenant, procedure, version)? {
        return Ok(Trust::Shipped);
    }
    Ok(latest(tx, tenant, procedure, version)?.map_or(Trust::Pending, |l| l.trust))
}

/// The newest decision on a tenant's own version.
struct Latest {
    seq: i64,
    trust: Trust,
}

fn latest(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    procedure: &str,
    version: i64,
) -> Result<Option<Latest>, StoreError> {
    let row = tx.query_opt(
        "SELECT seq, decision FROM procedure_definition_decision_log \
         WHERE tenant = $1 AND procedure = $2 AND version = $3 ORDER BY seq DESC LIMIT 1",
        &[tenant.as_str().into(), procedure.into(), version.into()],
    )?;
    row.map(|r| {
        Ok(Latest {
            seq: r.int(0)?,
            trust: Trust::from_decision(Some(r.text(1)?.as_str()))?,
        })
    })
    .transpose()
}

/// A tenant's own definition version with the decision on it.
#[derive(Debug, Clone)]
pub struct OwnDefinition {
    pub definition: Arc<Definition>,
    pub sha256: String,
    /// When it was imported: Unix seconds (the pull's time).
    pub imported_at: i64,
    pub trust: Trust,
    pub decided_by: Option<String>,
    /// When it was decided: microseconds since the epoch.
    pub decided_at: Option<i64>,
}

/// The tenant's own definition versions (not the shipped ones), oldest
/// import first, each with the administrator's decision. A stored text
/// that no longer parses is left out (logged by [`lookup`]'s rule).
pub fn own(tx: &mut Tx<'_>, tenant: &MunicipalityCode) -> Result<Vec<OwnDefinition>, StoreError> {
    let rows = tx.query(
        "SELECT d.source, d.sha256, d.imported_at, x.decision, x.decided_by, x.decided_at \
         FROM procedure_definitions d LEFT JOIN procedure_definition_decision_log x \
         ON x.tenant = d.tenant AND x.procedure = d.procedure AND x.version = d.version \
         AND x.seq = (SELECT MAX(y.seq) FROM procedure_definition_decision_log y \
           WHERE y.tenant = d.tenant AND y.procedure = d.procedure AND y.version = d.version) \
         WHERE d.tenant = $1 ORDER BY d.imported_at, d.procedure, d.version",
        &[tenant.as_str().into()],
    )?;
    let mut out = Vec::new();
    for r in rows {
        let source = r.text(0)?;
        let Ok(def) = parsed(&source) else {
            tracing::warn!("a stored procedure definition no longer validates");
            continue;
        };
        let sha256 = r.text(1)?;
        // The shipped text itself (stored as delivered) needs no decision;
        // another text under a shipped number does (see `is_shipped_text`).
        let shipped = shipped_source(def.id(), i64::from(def.version()))
            .is_some_and(|src| digest(src) == sha256);
        let trust = if shipped {
            Trust::Shipped
        } else {
            Trust::from_decision(r.opt_text(3)?.as_deref())?
        };
        if trust == Trust::Shipped {
            continue;
        }
        out.push(OwnDefinition {
            definition: def,
            sha256,
            imported_at: r.int(2)?,
            trust,
            decided_by: r.opt_text(4)?,
            decided_at: r.opt_int(5)?,
        });
    }
    Ok(out)
}

/// What a decision on a definition did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    /// Recorded now (the SHA-256 of the text decided on).
    Done { sha256: String },
    /// Nothing to do in this state (decided before, or for a withdrawal
    /// not accepted): nothing written. The standing decision.
    Already(Trust),
    /// A shipped version: nothing to decide.
    Shipped,
    /// The tenant has no such own version.
    NotFound,
}

/// Records the administrator's acceptance (`accept`) or refusal of a
/// tenant's own definition version awaiting a decision (never decided, or
/// its acceptance withdrawn, [`withdraw`]): a refusal is final (the
/// portal publishes a new version instead); an acceptance stands until
/// withdrawn. The caller holds the tenant's write lock and writes the
/// access log.
pub fn decide(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    procedure: &str,
    version: i64,
    accept: bool,
    by: &str,
    now: i64,
) -> Result<Decided, StoreError> {
    let decision = if accept { "accepted" } else { "refused" };
    record(
        tx,
        tenant,
        procedure,
        version,
        decision,
        Trust::awaits_decision,
        by,
        now,
    )
}

/// Withdraws the administrator's acceptance of a tenant's own definition
/// version (issue 11): its filings cannot be approved until it is
/// accepted again. Only an acceptance can be withdrawn
/// ([`Decided::Already`] with the decision standing otherwise). The
/// caller holds the tenant's write lock and writes the access log.
pub fn withdraw(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    procedure: &str,
    version: i64,
    by: &str,
    now: i64,
) -> Result<Decided, StoreError> {
    record(
        tx,
        tenant,
        procedure,
        version,
        "withdrawn",
        |t| t == Trust::Accepted,
        by,
        now,
    )
}

#[allow(clippy::too_many_arguments)]
fn record(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    procedure: &str,
    version: i64,
    decision: &str,
    allowed: fn(Trust) -> bool,
    by: &str,
    now: i64,
) -> Result<Decided, StoreError> {
    if is_shipped_text(tx, tenant, procedure, version)? {
        return Ok(Decided::Shipped);
    }
    let Some(sha) = stored_digest(tx, tenant, procedure, version)? else {
        return Ok(Decided::NotFound);
    };
    let last = latest(tx, tenant, procedure, version)?;
    let (seq, now_trust) = last.map_or((0, Trust::Pending), |l| (l.seq, l.trust));
    if !allowed(now_trust) {
        return Ok(Decided::Already(now_trust));
    }
    let n = tx.execute(
        "INSERT INTO procedure_definition_decision_log (tenant, procedure, version, seq, sha256, decision, decided_by, decided_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (tenant, procedure, version, seq) DO NOTHING",
        &[
            tenant.as_str().into(),
            procedure.into(),
            version.into(),
            (seq + 1).into(),
            sha.as_str().into(),
            decision.into(),
            by.into(),
            now.into(),
        ],
    )?;
    if n == 0 {
        return Ok(Decided::Already(trust(tx, tenant, procedure, version)?));
    }
    Ok(Decided::Done { sha256: sha })
}

//! Support measures (支援措置, j160, j440) and their one-request releases:
//! tables `support_measures`, `support_measure_persons` and
//! `support_releases`.
//!
//! A measure's whole record (the domain's [`SupportMeasure`]) is kept as
//! JSON in `detail`; `addressee_number` (the requester), `status`,
//! `start_date` and `end_date` repeat what the detail says so that they can
//! be queried, and are written together with it. Every function takes an
//! open transaction: the service writes a measure, its persons and its
//! audit entry in one commit.

use std::collections::BTreeMap;

use machi_domain::ids::{AddresseeNumber, HouseholdNumber, MunicipalityCode};
use machi_domain::support::{MeasureStatus, SupportMeasure, SupportPurpose};

use super::StoreError;
use super::db::{Param, Row, Tx};

/// Most persons bound into one `IN (...)` list.
const CHUNK: usize = 500;

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn placeholders(start: usize, n: usize) -> String {
    (start..start + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `IN (...)` list of the statuses in effect (provisional, confirmed, extended).
fn in_effect_codes() -> String {
    MeasureStatus::ALL
        .iter()
        .filter(|s| s.in_effect())
        .map(|s| format!("'{}'", s.code()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A stored measure with its bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredMeasure {
    pub measure_id: i64,
    #[serde(flatten)]
    pub measure: SupportMeasure,
    pub created_by: String,
    pub created_at: i64,
    pub updated_by: String,
    pub updated_at: i64,
}

const MEASURE_COLUMNS: &str =
    "m.measure_id, m.status, m.detail, m.created_by, m.created_at, m.updated_by, m.updated_at";

fn measure_row(r: &Row) -> Result<StoredMeasure, StoreError> {
    let measure_id = r.int(0)?;
    let measure: SupportMeasure = serde_json::from_str(&r.text(2)?)
        .map_err(|e| corrupt(format!("support measure {measure_id}: {e}")))?;
    let status = r.text(1)?;
    if status != measure.status.code() {
        return Err(corrupt(format!(
            "support measure {measure_id}: status {status} but detail says {}",
            measure.status
        )));
    }
    Ok(StoredMeasure {
        measure_id,
        measure,
        created_by: r.text(3)?,
        created_at: r.int(4)?,
        updated_by: r.text(5)?,
        updated_at: r.int(6)?,
    })
}

/// The columns that repeat the detail: status, start date, end date, detail.
fn derived(
    m: &SupportMeasure,
) -> Result<(String, Option<String>, Option<String>, String), StoreError> {
    Ok((
        m.status.code().to_string(),
        m.period.map(|p| p.start.to_string()),
        m.period.map(|p| p.end.to_string()),
        serde_json::to_string(m).map_err(corrupt)?,
    ))
}

/// The next free measure id (MAX + 1). Call under the tenant lock
/// ([`super::records::lock_tenant`]).
pub fn next_measure_id(tx: &mut Tx<'_>, tenant: &MunicipalityCode) -> Result<i64, StoreError> {
    tx.query_one(
        "SELECT COALESCE(MAX(measure_id), 0) + 1 FROM support_measures WHERE tenant = $1",
        &[tenant.as_str().into()],
    )?
    .int(0)
}

/// Inserts a new measure and the persons it protects.
pub fn insert_measure(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    measure_id: i64,
    m: &SupportMeasure,
    by: &str,
    at: i64,
) -> Result<(), StoreError> {
    let (status, start, end, detail) = derived(m)?;
    tx.execute(
        "INSERT INTO support_measures (tenant, measure_id, addressee_number, status, start_date, end_date, detail, \
         created_by, created_at, updated_by, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $8, $9)",
        &[
            tenant.as_str().into(),
            measure_id.into(),
            m.requester.addressee_number.as_str().into(),
            (&status).into(),
            (&start).into(),
            (&end).into(),
            (&detail).into(),
            by.into(),
            at.into(),
        ],
    )
    .map_err(StoreError::conflict_if_unique)?;
    for (i, person) in m.protected_persons().iter().enumerate() {
        let role = if i == 0 { "requester" } else { "related" };
        tx.execute(
            "INSERT INTO support_measure_persons (tenant, measure_id, addressee_number, role) VALUES ($1, $2, $3, $4)",
            &[
                tenant.as_str().into(),
                measure_id.into(),
                person.as_str().into(),
                role.into(),
            ],
        )
        .map_err(StoreError::conflict_if_unique)?;
    }
    Ok(())
}

/// Rewrites a measure after a transition (its persons do not change).
pub fn update_measure(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    measure_id: i64,
    m: &SupportMeasure,
    by: &str,
    at: i64,
) -> Result<(), StoreError> {
    let (status, start, end, detail) = derived(m)?;
    let n = tx.execute(
        "UPDATE support_measures SET status = $3, start_date = $4, end_date = $5, detail = $6, updated_by = $7, \
         updated_at = $8 WHERE tenant = $1 AND measure_id = $2",
        &[
            tenant.as_str().into(),
            measure_id.into(),
            (&status).into(),
            (&start).into(),
            (&end).into(),
            (&detail).into(),
            by.into(),
            at.into(),
        ],
    )?;
    if n != 1 {
        return Err(StoreError::Conflict);
    }
    Ok(())
}

/// One measure.
pub fn get_measure(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    measure_id: i64,
) -> Result<Option<StoredMeasure>, StoreError> {
    let sql = format!(
        "SELECT {MEASURE_COLUMNS} FROM support_measures m WHERE m.tenant = $1 AND m.measure_id = $2"
    );
    tx.query_opt(&sql, &[tenant.as_str().into(), measure_id.into()])?
        .as_ref()
        .map(measure_row)
        .transpose()
}

/// Every measure (any status) protecting `person`, as requester or as a
/// related person, oldest first.
pub fn measures_of_person(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    person: &AddresseeNumber,
) -> Result<Vec<StoredMeasure>, StoreError> {
    let sql = format!(
        "SELECT {MEASURE_COLUMNS} FROM support_measures m WHERE m.tenant = $1 AND m.measure_id IN \
         (SELECT measure_id FROM support_measure_persons WHERE tenant = $1 AND addressee_number = $2) \
         ORDER BY m.measure_id"
    );
    tx.query(&sql, &[tenant.as_str().into(), person.as_str().into()])?
        .iter()
        .map(measure_row)
        .collect()
}

/// Every measure of the tenant in effect (provisional, confirmed or
/// extended), by id.
pub fn measures_in_effect(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
) -> Result<Vec<StoredMeasure>, StoreError> {
    let sql = format!(
        "SELECT {MEASURE_COLUMNS} FROM support_measures m WHERE m.tenant = $1 AND m.status IN ({}) \
         ORDER BY m.measure_id",
        in_effect_codes()
    );
    tx.query(&sql, &[tenant.as_str().into()])?
        .iter()
        .map(measure_row)
        .collect()
}

/// Of `persons`, those a measure in effect protects, each with the ids of
/// those measures.
pub fn protected_among(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    persons: &[AddresseeNumber],
) -> Result<BTreeMap<AddresseeNumber, Vec<i64>>, StoreError> {
    let mut out: BTreeMap<AddresseeNumber, Vec<i64>> = BTreeMap::new();
    for chunk in persons.chunks(CHUNK) {
        let sql = format!(
            "SELECT p.addressee_number, p.measure_id FROM support_measure_persons p JOIN support_measures m \
             ON m.tenant = p.tenant AND m.measure_id = p.measure_id \
             WHERE p.tenant = $1 AND p.addressee_number IN ({}) AND m.status IN ({}) \
             ORDER BY p.measure_id",
            placeholders(2, chunk.len()),
            in_effect_codes()
        );
        let mut params: Vec<Param<'_>> = vec![tenant.as_str().into()];
        params.extend(chunk.iter().map(|p| Param::Text(p.as_str())));
        for r in tx.query(&sql, &params)? {
            let text = r.text(0)?;
            let person: AddresseeNumber = text
                .parse()
                .map_err(|e| corrupt(format!("addressee number {text:?}: {e}")))?;
            out.entry(person).or_default().push(r.int(1)?);
        }
    }
    Ok(out)
}

/// Where a protected person lives now, as the shield of a support measure
/// sees it (j440): their current row's folded address (住所 and 方書) and
/// household, if they are a resident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedPlace {
    pub person: AddresseeNumber,
    /// `(address_key, household_number)` of a resident; `None` for a
    /// former resident (除票), whose old address and household are not
    /// where they live.
    pub resident_at: Option<(String, String)>,
}

/// The SQL of the persons a measure in effect protects (the tenant is `$1`).
fn protected_persons_sql() -> String {
    format!(
        "SELECT sp.addressee_number FROM support_measures sm JOIN support_measure_persons sp \
         ON sp.tenant = sm.tenant AND sp.measure_id = sm.measure_id \
         WHERE sm.tenant = $1 AND sm.status IN ({})",
        in_effect_codes()
    )
}

/// SQL of one boolean: whether [`protected_places`] of tenant `$1` would
/// find anyone (a person a measure in effect protects, on record): a
/// reader of many events asks this with its first statement and loads the
/// shield only when it is true.
pub fn any_protected_sql() -> String {
    format!(
        "EXISTS (SELECT 1 FROM resident_current c WHERE c.tenant = $1 AND c.addressee_number IN ({}))",
        protected_persons_sql()
    )
}

/// Every person a measure in effect protects, with where they live now.
/// A tenant has few (a measure per victim); the list is read whole.
pub fn protected_places(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
) -> Result<Vec<ProtectedPlace>, StoreError> {
    let sql = format!(
        "SELECT c.addressee_number, c.status, c.address_key, c.household_number FROM resident_current c \
         WHERE c.tenant = $1 AND c.addressee_number IN ({})",
        protected_persons_sql()
    );
    tx.query(&sql, &[tenant.as_str().into()])?
        .iter()
        .map(|r| {
            let text = r.text(0)?;
            let person: AddresseeNumber = text
                .parse()
                .map_err(|e| corrupt(format!("addressee number {text:?}: {e}")))?;
            let resident_at = (r.text(1)? == "resident").then(|| (r.text(2), r.text(3)));
            let resident_at = match resident_at {
                Some((a, h)) => Some((a?, h?)),
                None => None,
            };
            Ok(ProtectedPlace {
                person,
                resident_at,
            })
        })
        .collect()
}

/// Where `persons` are recorded now: `(address_key, household_number)`
/// of each one's current row (any status).
pub fn places_of(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    persons: &[AddresseeNumber],
) -> Result<BTreeMap<AddresseeNumber, (String, String)>, StoreError> {
    let mut out = BTreeMap::new();
    for chunk in persons.chunks(CHUNK) {
        let sql = format!(
            "SELECT addressee_number, address_key, household_number FROM resident_current \
             WHERE tenant = $1 AND addressee_number IN ({})",
            placeholders(2, chunk.len())
        );
        let mut params: Vec<Param<'_>> = vec![tenant.as_str().into()];
        params.extend(chunk.iter().map(|p| Param::Text(p.as_str())));
        for r in tx.query(&sql, &params)? {
            let text = r.text(0)?;
            let person: AddresseeNumber = text
                .parse()
                .map_err(|e| corrupt(format!("addressee number {text:?}: {e}")))?;
            out.insert(person, (r.text(1)?, r.text(2)?));
        }
    }
    Ok(out)
}

/// The folded addresses of the current members (any status) of `households`.
pub fn household_addresses(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    households: &[HouseholdNumber],
) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    for chunk in households.chunks(CHUNK) {
        let sql = format!(
            "SELECT DISTINCT address_key FROM resident_current WHERE tenant = $1 AND household_number IN ({})",
            placeholders(2, chunk.len())
        );
        let mut params: Vec<Param<'_>> = vec![tenant.as_str().into()];
        params.extend(chunk.iter().map(|h| Param::Text(h.as_str())));
        for r in tx.query(&sql, &params)? {
            out.push(r.text(0)?);
        }
    }
    Ok(out)
}

/// SQL true for a current row (`alias`, of `resident_current`) that the
/// shield of a support measure covers (j440, j410 世帯単位の抑止): a
/// protected person, or anyone recorded in the household or at the
/// address (住所 and 方書) where a protected person lives now. The tenant
/// is `$1`. A search by address or household leaves these rows out.
pub fn shielded_sql(alias: &str) -> String {
    let protected = protected_persons_sql();
    let where_they_live = |col: &str| {
        format!(
            "SELECT sc.{col} FROM resident_current sc WHERE sc.tenant = $1 AND sc.status = 'resident' \
             AND sc.addressee_number IN ({protected})"
        )
    };
    format!(
        "({alias}.addressee_number IN ({protected}) OR {alias}.address_key IN ({}) \
         OR {alias}.household_number IN ({}))",
        where_they_live("address_key"),
        where_they_live("household_number"),
    )
}

/// Everyone the shield covers now ([`shielded_sql`]), each with whether
/// a measure in effect protects them themselves (true) or they live with
/// a protected person (false). For a file-linkage extract (j1190).
pub fn shielded_persons(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
) -> Result<BTreeMap<AddresseeNumber, bool>, StoreError> {
    let mut out = BTreeMap::new();
    let parse = |text: String| -> Result<AddresseeNumber, StoreError> {
        text.parse()
            .map_err(|e| corrupt(format!("addressee number {text:?}: {e}")))
    };
    let sql = format!(
        "SELECT c.addressee_number FROM resident_current c WHERE c.tenant = $1 AND {}",
        shielded_sql("c")
    );
    for r in tx.query(&sql, &[tenant.as_str().into()])? {
        out.insert(parse(r.text(0)?)?, false);
    }
    for p in protected_places(tx, tenant)? {
        out.insert(p.person, true);
    }
    Ok(out)
}

/// Of `persons`, those with a record in the registry (any status).
pub fn existing_persons(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    persons: &[AddresseeNumber],
) -> Result<Vec<AddresseeNumber>, StoreError> {
    let mut out = Vec::new();
    for chunk in persons.chunks(CHUNK) {
        let sql = format!(
            "SELECT addressee_number FROM resident_current WHERE tenant = $1 AND addressee_number IN ({})",
            placeholders(2, chunk.len())
        );
        let mut params: Vec<Param<'_>> = vec![tenant.as_str().into()];
        params.extend(chunk.iter().map(|p| Param::Text(p.as_str())));
        for r in tx.query(&sql, &params)? {
            let text = r.text(0)?;
            out.push(
                text.parse()
                    .map_err(|e| corrupt(format!("addressee number {text:?}: {e}")))?,
            );
        }
    }
    Ok(out)
}

/// A release (一時解除, j440, j410): lets one request of `purpose` by
/// `granted_to` show `person` once, until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SupportRelease {
    pub release_id: i64,
    pub addressee_number: AddresseeNumber,
    pub purpose: SupportPurpose,
    /// The operator whose one request it lets through.
    pub granted_to: String,
    /// The authorised officer (支援措置責任者) who released it.
    pub released_by: String,
    pub released_at: i64,
    /// After this instant (µs) an unused release no longer counts.
    pub expires_at: i64,
    /// The measure it lifts (the oldest in effect when it was granted).
    pub measure_id: Option<i64>,
    pub used_by: Option<String>,
    pub used_at: Option<i64>,
}

const RELEASE_COLUMNS: &str = "release_id, addressee_number, purpose, granted_to, released_by, released_at, \
     expires_at, measure_id, used_by, used_at";

fn release_row(r: &Row) -> Result<SupportRelease, StoreError> {
    let release_id = r.int(0)?;
    let person = r.text(1)?;
    let purpose = r.text(2)?;
    Ok(SupportRelease {
        release_id,
        addressee_number: person
            .parse()
            .map_err(|e| corrupt(format!("release {release_id}: {e}")))?,
        purpose: SupportPurpose::from_code(&purpose)
            .ok_or_else(|| corrupt(format!("release {release_id}: purpose {purpose}")))?,
        granted_to: r.text(3)?,
        released_by: r.text(4)?,
        released_at: r.int(5)?,
        expires_at: r.int(6)?,
        measure_id: r.opt_int(7)?,
        used_by: r.opt_text(8)?,
        used_at: r.opt_int(9)?,
    })
}

/// The next free release id (MAX + 1). Call under the tenant lock.
pub fn next_release_id(tx: &mut Tx<'_>, tenant: &MunicipalityCode) -> Result<i64, StoreError> {
    tx.query_one(
        "SELECT COALESCE(MAX(release_id), 0) + 1 FROM support_releases WHERE tenant = $1",
        &[tenant.as_str().into()],
    )?
    .int(0)
}

/// Inserts a new, unused release.
pub fn insert_release(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    r: &SupportRelease,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO support_releases (tenant, release_id, addressee_number, purpose, granted_to, released_by, \
         released_at, expires_at, measure_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            tenant.as_str().into(),
            r.release_id.into(),
            r.addressee_number.as_str().into(),
            r.purpose.code().into(),
            (&r.granted_to).into(),
            (&r.released_by).into(),
            r.released_at.into(),
            r.expires_at.into(),
            r.measure_id.into(),
        ],
    )
    .map_err(StoreError::conflict_if_unique)?;
    Ok(())
}

/// The ids of the unused releases that would let a request of `purpose`
/// by `operator` show `person` at `at`, oldest first.
pub fn usable_releases(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    person: &AddresseeNumber,
    purpose: SupportPurpose,
    operator: &str,
    at: i64,
) -> Result<Vec<i64>, StoreError> {
    tx.query(
        "SELECT release_id FROM support_releases WHERE tenant = $1 AND addressee_number = $2 AND purpose = $3 \
         AND granted_to = $4 AND used_at IS NULL AND expires_at > $5 ORDER BY release_id",
        &[
            tenant.as_str().into(),
            person.as_str().into(),
            purpose.code().into(),
            operator.into(),
            at.into(),
        ],
    )?
    .iter()
    .map(|r| r.int(0))
    .collect()
}

/// Marks a release used, if it still is unused; false if another request
/// used it first (on PostgreSQL the statement waits for that request to
/// commit, then finds the release used).
pub fn use_release(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    release_id: i64,
    by: &str,
    at: i64,
) -> Result<bool, StoreError> {
    let n = tx.execute(
        "UPDATE support_releases SET used_by = $3, used_at = $4 WHERE tenant = $1 AND release_id = $2 \
         AND used_at IS NULL",
        &[tenant.as_str().into(), release_id.into(), by.into(), at.into()],
    )?;
    Ok(n == 1)
}

/// Releases concerning `person`, newest first, at most `limit`.
pub fn releases_of_person(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    person: &AddresseeNumber,
    limit: i64,
) -> Result<Vec<SupportRelease>, StoreError> {
    let sql = format!(
        "SELECT {RELEASE_COLUMNS} FROM support_releases WHERE tenant = $1 AND addressee_number = $2 \
         ORDER BY release_id DESC LIMIT $3"
    );
    tx.query(
        &sql,
        &[tenant.as_str().into(), person.as_str().into(), limit.into()],
    )?
    .iter()
    .map(release_row)
    .collect()
}

/// One release.
pub fn get_release(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    release_id: i64,
) -> Result<Option<SupportRelease>, StoreError> {
    let sql = format!(
        "SELECT {RELEASE_COLUMNS} FROM support_releases WHERE tenant = $1 AND release_id = $2"
    );
    tx.query_opt(&sql, &[tenant.as_str().into(), release_id.into()])?
        .as_ref()
        .map(release_row)
        .transpose()
}

//! 支援措置 (j160, j380, j440): registering, confirming, extending and ending
//! support measures, releasing one request for a protected person, and the
//! guard that the read and certificate paths call.
//!
//! Every operation, reads included, writes its access-log entry (j1370) in
//! the same transaction: `support.register`, `support.confirm`,
//! `support.extend`, `support.end`, `support.cancel`, `support.view`,
//! `support.list`, `support.list_active`, `support.release`,
//! `support.release_used` and `support.blocked`.
//!
//! Who may do what is the caller's to check (j1380: the rights for 1.1.16
//! 支援対象者管理 and 2.2.4 支援対象者照会 are controlled separately); a
//! release in particular is for an authorised officer (支援措置責任者) only.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Duration, NaiveDate};
use machi_domain::ids::{AddresseeNumber, HouseholdNumber, MunicipalityCode};
use machi_domain::support::{
    CancelReason, EndReason, MeasureStatus, NewSupportMeasure, SupportAlert, SupportError,
    SupportMeasure, SupportPurpose,
};
use serde::Serialize;

use super::registry::{Actor, Registry, ServiceError};
use crate::store::Tx;
use crate::store::records::{self, AuditEntry};
use crate::store::support::{self as store, StoredMeasure, SupportRelease};

/// How long a release stays usable when none is given (j410: 一時解除後、
/// 一定時間経過後に自動で抑止状態に戻ること).
pub const DEFAULT_RELEASE_VALIDITY: Duration = Duration::hours(1);
/// The shortest validity a release may be given.
pub const MIN_RELEASE_VALIDITY: Duration = Duration::minutes(1);
/// The longest validity a release may be given.
pub const MAX_RELEASE_VALIDITY: Duration = Duration::hours(24);

/// Longest operator id a release may be granted to.
const MAX_OPERATOR_CHARS: usize = 64;

/// A measure as the service returns it: the record and the alert for today
/// (j380, j440).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SupportMeasureView {
    #[serde(flatten)]
    pub stored: StoredMeasure,
    pub alert: SupportAlert,
}

impl SupportMeasureView {
    fn new(stored: StoredMeasure, today: NaiveDate) -> Self {
        let alert = stored.measure.alert(today);
        SupportMeasureView { stored, alert }
    }

    pub fn measure_id(&self) -> i64 {
        self.stored.measure_id
    }

    pub fn measure(&self) -> &SupportMeasure {
        &self.stored.measure
    }
}

/// What the registry shows about a protected person (j380: 支援措置期間中
/// 又は仮支援措置期間中である旨, and the alert of j440).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Protection {
    /// The measures in effect protecting the person, oldest first.
    pub measure_ids: Vec<i64>,
    /// Whether one of them is still provisional (仮支援措置期間中).
    pub provisional: bool,
    /// The most urgent alert among them.
    pub alert: SupportAlert,
}

fn alert_rank(a: &SupportAlert) -> u8 {
    match a {
        SupportAlert::PeriodEnded { .. } => 0,
        SupportAlert::EndingSoon { .. } => 1,
        SupportAlert::None => 2,
    }
}

fn joined(persons: &[AddresseeNumber]) -> String {
    persons
        .iter()
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Appends one access-log entry (j1370) in the caller's transaction.
fn audit(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    actor: &Actor,
    function: &str,
    target: String,
    detail: serde_json::Value,
    at: i64,
) -> Result<i64, ServiceError> {
    Ok(records::append_next_audit(
        tx,
        tenant,
        at,
        &AuditEntry {
            operator: actor.operator.clone(),
            terminal: actor.terminal.clone(),
            function: function.to_string(),
            target,
            detail: detail.to_string(),
            my_number_shown: false,
        },
    )?)
}

/// The linkage event of a measure's registration or transition (j440), in
/// the caller's transaction. It says which persons are protected from when
/// to when, so other systems block them too; it carries no address, no
/// household, no 加害者 and no detail of the request (a subscriber must not
/// learn where a protected person lives, nor from whom they hide).
fn support_event(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    action: &str,
    measure_id: i64,
    m: &SupportMeasure,
    at: i64,
) -> Result<i64, ServiceError> {
    let data = serde_json::json!({
        "measure_id": measure_id,
        "status": m.status.code(),
        "protected_persons": m.protected_persons().iter().map(|p| p.as_str()).collect::<Vec<_>>(),
        "start_date": m.period.map(|p| p.start.to_string()).unwrap_or_else(|| m.provisional_start.to_string()),
        "end_date": m.period.map(|p| p.end.to_string()),
    });
    Ok(records::append_next_event(
        tx,
        tenant,
        &super::events::support_type(action),
        &data,
        at,
    )?)
}

fn lock(tx: &mut Tx<'_>, tenant: &MunicipalityCode) -> Result<(), ServiceError> {
    if !records::lock_tenant(tx, tenant)? {
        return Err(ServiceError::TenantNotFound(tenant.to_string()));
    }
    Ok(())
}

fn load(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    measure_id: i64,
) -> Result<StoredMeasure, ServiceError> {
    store::get_measure(tx, tenant, measure_id)?
        .ok_or(ServiceError::SupportMeasureNotFound(measure_id))
}

/// The shield of the support measures in effect (j440; j410 lets a block
/// be set per person or per household): whom a request may not show
/// without a release, and whose release it needs.
///
/// A measure protects its persons (the requester and everyone asking with
/// them). Showing anyone who lives where a protected person lives (the
/// same household, or the same 住所 and 方書) shows that person's address
/// too, so such a person is covered by the protected person's measure:
/// their record, their household and their changes are refused like the
/// protected person's own, and a release of the protected person lets one
/// such request through. Nobody can then tell from a refusal which member
/// of a household is the protected one.
#[derive(Debug, Clone, Default)]
pub struct Shield {
    places: Vec<store::ProtectedPlace>,
}

impl Shield {
    /// The shield of `tenant` now (reads the protected persons whole: a
    /// tenant has few).
    pub fn load(tx: &mut Tx<'_>, tenant: &MunicipalityCode) -> Result<Shield, ServiceError> {
        Ok(Shield {
            places: store::protected_places(tx, tenant)?,
        })
    }

    /// Nobody is protected.
    pub fn is_empty(&self) -> bool {
        self.places.is_empty()
    }

    /// The protected persons whose release a request showing `person`,
    /// recorded now at `place` (`(address_key, household_number)` of their
    /// current row), needs: a protected person needs their own; anyone
    /// else needs those of the protected persons living in their household
    /// or at their address; nobody, if none does.
    fn sources(
        &self,
        person: &AddresseeNumber,
        place: Option<&(String, String)>,
    ) -> Vec<&AddresseeNumber> {
        if let Some(p) = self.places.iter().find(|p| p.person == *person) {
            return vec![&p.person];
        }
        self.places
            .iter()
            .filter(|p| match (&p.resident_at, place) {
                (Some((address, household)), Some((a, h))) => address == a || household == h,
                _ => false,
            })
            .map(|p| &p.person)
            .collect()
    }

    /// The protected persons whose measure covers any of `persons` or any
    /// member of `households`: the releases a request showing them needs.
    pub fn sources_of(
        &self,
        tx: &mut Tx<'_>,
        tenant: &MunicipalityCode,
        persons: &[AddresseeNumber],
        households: &[HouseholdNumber],
    ) -> Result<BTreeSet<AddresseeNumber>, ServiceError> {
        let mut out = BTreeSet::new();
        if self.is_empty() {
            return Ok(out);
        }
        let places = store::places_of(tx, tenant, persons)?;
        for person in persons {
            out.extend(
                self.sources(person, places.get(person))
                    .into_iter()
                    .cloned(),
            );
        }
        if !households.is_empty() {
            let addresses = store::household_addresses(tx, tenant, households)?;
            for p in &self.places {
                if let Some((address, household)) = &p.resident_at
                    && (addresses.contains(address)
                        || households.iter().any(|h| h.as_str() == household))
                {
                    out.insert(p.person.clone());
                }
            }
        }
        Ok(out)
    }

    /// Of `persons`, those the shield covers: a list shows them only as
    /// "restricted", the same way for the protected person and for those
    /// who live with them.
    pub fn covered(
        &self,
        tx: &mut Tx<'_>,
        tenant: &MunicipalityCode,
        persons: &[AddresseeNumber],
    ) -> Result<BTreeSet<AddresseeNumber>, ServiceError> {
        let mut out = BTreeSet::new();
        if self.is_empty() {
            return Ok(out);
        }
        let places = store::places_of(tx, tenant, persons)?;
        for person in persons {
            if !self.sources(person, places.get(person)).is_empty() {
                out.insert(person.clone());
            }
        }
        Ok(out)
    }
}

/// 支援措置 (j440): the guard the read and certificate paths call inside
/// their transaction, before they show or issue anything.
///
/// `persons` are everyone the request would show (all members of a
/// household, the persons on a certificate). If the shield of a measure in
/// effect (provisional, confirmed or extended, whatever the dates: j410
/// says a passed end date does not lift it) covers one of them (see
/// [`Shield`]), the request needs an unused, unexpired release of
/// `purpose` granted to `actor.operator` for each protected person whose
/// measure covers it; those releases are marked used (single use), a
/// `support.release_used` entry is logged, and their ids are returned.
/// Nobody covered: `Ok(vec![])`, nothing written.
///
/// Otherwise fails with [`ServiceError::SupportBlocked`] naming the
/// protected persons still blocking (for the access log; what the caller
/// is told names nobody). The caller must then let its transaction roll
/// back (as `Store::write` does on `Err`), which also undoes any release
/// marked used here; to log the refusal, call
/// [`Registry::support_record_block`] afterwards (its own transaction).
///
/// Marking a release used writes: call it in a write transaction
/// (`Store::write`). It then takes the tenant lock
/// ([`records::lock_tenant`]) before touching the releases, so it may be
/// called before or after the caller takes that lock. On PostgreSQL two
/// requests racing for one release are serialised; the second finds it used.
pub fn guard(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    persons: &[AddresseeNumber],
    actor: &Actor,
    purpose: SupportPurpose,
    at: i64,
) -> Result<Vec<i64>, ServiceError> {
    guard_concerning(tx, tenant, persons, &[], actor, purpose, at)
}

/// [`guard`] for a request that concerns whole households too (a change
/// naming a household, a household's page): each household counts like
/// all of its members.
pub fn guard_concerning(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    persons: &[AddresseeNumber],
    households: &[HouseholdNumber],
    actor: &Actor,
    purpose: SupportPurpose,
    at: i64,
) -> Result<Vec<i64>, ServiceError> {
    let mut persons = persons.to_vec();
    persons.sort();
    persons.dedup();
    let shield = Shield::load(tx, tenant)?;
    let protected = shield.sources_of(tx, tenant, &persons, households)?;
    if protected.is_empty() {
        return Ok(Vec::new());
    }
    let mut candidates = Vec::with_capacity(protected.len());
    let mut blocked = Vec::new();
    for person in &protected {
        let ids = store::usable_releases(tx, tenant, person, purpose, &actor.operator, at)?;
        if ids.is_empty() {
            blocked.push(person.clone());
        } else {
            candidates.push((person.clone(), ids));
        }
    }
    if !blocked.is_empty() {
        return Err(ServiceError::SupportBlocked {
            persons: blocked,
            purpose,
        });
    }
    // The tenant lock before the release rows, in the order every writer
    // takes them (a caller that already holds it takes it again at no cost).
    lock(tx, tenant)?;
    let mut used = Vec::with_capacity(candidates.len());
    let mut used_for = Vec::with_capacity(candidates.len());
    for (person, ids) in candidates {
        let mut taken = None;
        for id in ids {
            if store::use_release(tx, tenant, id, &actor.operator, at)? {
                taken = Some(id);
                break;
            }
        }
        match taken {
            Some(id) => {
                used.push(id);
                used_for.push(person);
            }
            None => blocked.push(person),
        }
    }
    if !blocked.is_empty() {
        return Err(ServiceError::SupportBlocked {
            persons: blocked,
            purpose,
        });
    }
    audit(
        tx,
        tenant,
        actor,
        "support.release_used",
        joined(&used_for),
        serde_json::json!({ "release_ids": used, "purpose": purpose }),
        at,
    )?;
    Ok(used)
}

/// j380, j440: of `persons`, those a measure in effect protects, with what
/// the registry shows about them on `today`. Reads only.
pub fn protection(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    persons: &[AddresseeNumber],
    today: NaiveDate,
) -> Result<BTreeMap<AddresseeNumber, Protection>, ServiceError> {
    let mut persons = persons.to_vec();
    persons.sort();
    persons.dedup();
    let protected = store::protected_among(tx, tenant, &persons)?;
    let mut measures: BTreeMap<i64, SupportMeasure> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for (person, ids) in protected {
        let mut p = Protection {
            measure_ids: ids.clone(),
            provisional: false,
            alert: SupportAlert::None,
        };
        for id in ids {
            let m = match measures.get(&id) {
                Some(m) => m.clone(),
                None => {
                    let m = load(tx, tenant, id)?.measure;
                    measures.insert(id, m.clone());
                    m
                }
            };
            p.provisional |= m.status == MeasureStatus::Provisional;
            let alert = m.alert(today);
            if alert_rank(&alert) < alert_rank(&p.alert) {
                p.alert = alert;
            }
        }
        out.insert(person, p);
    }
    Ok(out)
}

fn check_operator(for_operator: &str) -> Result<String, ServiceError> {
    let op = for_operator.trim();
    let chars = op.chars().count();
    if op.is_empty() || chars > MAX_OPERATOR_CHARS || op.chars().any(char::is_control) {
        return Err(ServiceError::Invalid {
            field: "for_operator".into(),
            code: "invalid_operator",
            message_ja: format!(
                "解除の対象となる職員のIDを1〜{MAX_OPERATOR_CHARS}文字で指定してください。"
            ),
            message_en: format!(
                "give the id of the operator the release is for, 1 to {MAX_OPERATOR_CHARS} characters"
            ),
        });
    }
    Ok(op.to_string())
}

impl Registry {
    /// Runs one support-measure write: under the tenant lock, with `now`
    /// and `today` from the registry's clock.
    async fn support_write<T, F>(&self, tenant: &MunicipalityCode, f: F) -> Result<T, ServiceError>
    where
        F: FnOnce(&mut Tx<'_>, i64, NaiveDate) -> Result<T, ServiceError> + Send + 'static,
        T: Send + 'static,
    {
        self.ensure_tenant(tenant).await?;
        let at = self.clock().now().timestamp_micros();
        let today = self.clock().today();
        let t = tenant.clone();
        self.store()
            .write(Some(tenant), move |tx| {
                lock(tx, &t)?;
                f(tx, at, today)
            })
            .await
    }

    /// Applies a transition to one measure and logs it as `function`.
    async fn support_transition<F>(
        &self,
        tenant: &MunicipalityCode,
        measure_id: i64,
        actor: &Actor,
        function: &'static str,
        detail: serde_json::Value,
        f: F,
    ) -> Result<SupportMeasureView, ServiceError>
    where
        F: FnOnce(&SupportMeasure, NaiveDate) -> Result<SupportMeasure, SupportError>
            + Send
            + 'static,
    {
        let (t, actor) = (tenant.clone(), actor.clone());
        self.support_write(tenant, move |tx, at, today| {
            let stored = load(tx, &t, measure_id)?;
            let next = f(&stored.measure, today)?;
            store::update_measure(tx, &t, measure_id, &next, &actor.operator, at)?;
            let mut detail = detail;
            if let Some(obj) = detail.as_object_mut() {
                obj.insert("measure_id".into(), measure_id.into());
                obj.insert("status".into(), next.status.code().into());
                if let Some(p) = next.period {
                    obj.insert("start_date".into(), p.start.to_string().into());
                    obj.insert("end_date".into(), p.end.to_string().into());
                }
            }
            audit(
                tx,
                &t,
                &actor,
                function,
                joined(&next.protected_persons()),
                detail,
                at,
            )?;
            let action = match function {
                "support.confirm" => "confirmed",
                "support.extend" => "extended",
                "support.end" => "ended",
                _ => "cancelled",
            };
            support_event(tx, &t, action, measure_id, &next, at)?;
            let stored = StoredMeasure {
                measure: next,
                updated_by: actor.operator.clone(),
                updated_at: at,
                ..stored
            };
            Ok(SupportMeasureView::new(stored, today))
        })
        .await
    }

    /// 支援措置の申出の受付 (j160, j440): records a request as a provisional
    /// measure (仮支援措置), which blocks from this commit on. Every 宛名番号
    /// it names must be in the registry (any status: a former resident's
    /// measure is kept by the former municipality, j160 ②).
    pub async fn support_register(
        &self,
        tenant: &MunicipalityCode,
        req: &NewSupportMeasure,
        actor: &Actor,
    ) -> Result<SupportMeasureView, ServiceError> {
        let today = self.clock().today();
        let measure = SupportMeasure::register(req.clone(), today, self.eras())?;
        let (t, actor) = (tenant.clone(), actor.clone());
        self.support_write(tenant, move |tx, at, today| {
            let named = measure.named_persons();
            let numbers: Vec<AddresseeNumber> = named.iter().map(|(_, a)| a.clone()).collect();
            let found = store::existing_persons(tx, &t, &numbers)?;
            if let Some((_, missing)) = named.iter().find(|(_, a)| !found.contains(a)) {
                return Err(ServiceError::PersonNotFound(missing.to_string()));
            }
            let measure_id = store::next_measure_id(tx, &t)?;
            store::insert_measure(tx, &t, measure_id, &measure, &actor.operator, at)?;
            audit(
                tx,
                &t,
                &actor,
                "support.register",
                joined(&measure.protected_persons()),
                serde_json::json!({
                    "measure_id": measure_id,
                    "status": measure.status,
                    "filed_on": measure.filed_on,
                    "provisional_start": measure.provisional_start,
                }),
                at,
            )?;
            support_event(tx, &t, "registered", measure_id, &measure, at)?;
            let stored = StoredMeasure {
                measure_id,
                measure,
                created_by: actor.operator.clone(),
                created_at: at,
                updated_by: actor.operator.clone(),
                updated_at: at,
            };
            Ok(SupportMeasureView::new(stored, today))
        })
        .await
    }

    /// 本登録 (j440): the need is confirmed; the period starts on `start`
    /// and ends one year later (令和2年4月1日 → 令和3年3月31日) unless `end`
    /// corrects it.
    pub async fn support_confirm(
        &self,
        tenant: &MunicipalityCode,
        measure_id: i64,
        start: NaiveDate,
        end: Option<NaiveDate>,
        actor: &Actor,
    ) -> Result<SupportMeasureView, ServiceError> {
        self.support_transition(
            tenant,
            measure_id,
            actor,
            "support.confirm",
            serde_json::json!({ "end_corrected": end.is_some() }),
            move |m, today| m.confirm(start, end, today),
        )
        .await
    }

    /// 延長 (j440): from one month before the end date on (also after it,
    /// while the measure is not ended), one year from the day after the end
    /// date, unless `end` corrects it.
    pub async fn support_extend(
        &self,
        tenant: &MunicipalityCode,
        measure_id: i64,
        end: Option<NaiveDate>,
        actor: &Actor,
    ) -> Result<SupportMeasureView, ServiceError> {
        self.support_transition(
            tenant,
            measure_id,
            actor,
            "support.extend",
            serde_json::json!({ "end_corrected": end.is_some() }),
            move |m, today| m.extend(end, today),
        )
        .await
    }

    /// 終了 (j440): a confirmed measure ends today.
    pub async fn support_end(
        &self,
        tenant: &MunicipalityCode,
        measure_id: i64,
        reason: EndReason,
        actor: &Actor,
    ) -> Result<SupportMeasureView, ServiceError> {
        self.support_transition(
            tenant,
            measure_id,
            actor,
            "support.end",
            serde_json::json!({ "reason": reason }),
            move |m, today| m.end(reason, today),
        )
        .await
    }

    /// 取消し (j160, j440): a provisional measure is closed without starting.
    pub async fn support_cancel(
        &self,
        tenant: &MunicipalityCode,
        measure_id: i64,
        reason: CancelReason,
        actor: &Actor,
    ) -> Result<SupportMeasureView, ServiceError> {
        self.support_transition(
            tenant,
            measure_id,
            actor,
            "support.cancel",
            serde_json::json!({ "reason": reason }),
            move |m, today| m.cancel(reason, today),
        )
        .await
    }

    /// 支援対象者照会 (j160, j380): one measure with its alert; logged.
    pub async fn support_measure(
        &self,
        tenant: &MunicipalityCode,
        measure_id: i64,
        actor: &Actor,
    ) -> Result<SupportMeasureView, ServiceError> {
        let (t, actor) = (tenant.clone(), actor.clone());
        self.support_write(tenant, move |tx, at, today| {
            let stored = load(tx, &t, measure_id)?;
            audit(
                tx,
                &t,
                &actor,
                "support.view",
                joined(&stored.measure.protected_persons()),
                serde_json::json!({ "measure_id": measure_id }),
                at,
            )?;
            Ok(SupportMeasureView::new(stored, today))
        })
        .await
    }

    /// 支援対象者照会 (j380): every measure (any status) protecting `person`,
    /// as requester or related person, oldest first; logged.
    pub async fn support_measures_of(
        &self,
        tenant: &MunicipalityCode,
        person: &AddresseeNumber,
        actor: &Actor,
    ) -> Result<Vec<SupportMeasureView>, ServiceError> {
        let (t, p, actor) = (tenant.clone(), person.clone(), actor.clone());
        self.support_write(tenant, move |tx, at, today| {
            let list = store::measures_of_person(tx, &t, &p)?;
            audit(
                tx,
                &t,
                &actor,
                "support.list",
                p.to_string(),
                serde_json::json!({
                    "measure_ids": list.iter().map(|m| m.measure_id).collect::<Vec<_>>()
                }),
                at,
            )?;
            Ok(list
                .into_iter()
                .map(|s| SupportMeasureView::new(s, today))
                .collect())
        })
        .await
    }

    /// Every measure in effect (provisional, confirmed, extended) with its
    /// alert for today (j440), the most urgent first: period ended without
    /// extension, then ending within a month (each by end date), then the
    /// rest by id. For the staff screen; logged.
    pub async fn support_active(
        &self,
        tenant: &MunicipalityCode,
        actor: &Actor,
    ) -> Result<Vec<SupportMeasureView>, ServiceError> {
        let (t, actor) = (tenant.clone(), actor.clone());
        self.support_write(tenant, move |tx, at, today| {
            let list = store::measures_in_effect(tx, &t)?;
            audit(
                tx,
                &t,
                &actor,
                "support.list_active",
                "*".into(),
                serde_json::json!({ "count": list.len() }),
                at,
            )?;
            let mut views: Vec<SupportMeasureView> = list
                .into_iter()
                .map(|s| SupportMeasureView::new(s, today))
                .collect();
            views.sort_by_key(|v| {
                let end = match v.alert {
                    SupportAlert::None => None,
                    _ => v.stored.measure.period.map(|p| p.end),
                };
                (alert_rank(&v.alert), end, v.stored.measure_id)
            });
            Ok(views)
        })
        .await
    }

    /// 支援措置 (j440): an authorised officer (`actor`) releases ONE request
    /// of `purpose` by `for_operator` concerning the protected `person`,
    /// usable for [`DEFAULT_RELEASE_VALIDITY`]; logged as `support.release`.
    pub async fn support_release(
        &self,
        tenant: &MunicipalityCode,
        person: &AddresseeNumber,
        purpose: SupportPurpose,
        for_operator: &str,
        actor: &Actor,
    ) -> Result<SupportRelease, ServiceError> {
        self.support_release_for(
            tenant,
            person,
            purpose,
            for_operator,
            DEFAULT_RELEASE_VALIDITY,
            actor,
        )
        .await
    }

    /// [`Registry::support_release`] with the time the release stays usable
    /// (j410: 抑止状態に戻るまでの時間を設定できること), from
    /// [`MIN_RELEASE_VALIDITY`] to [`MAX_RELEASE_VALIDITY`].
    pub async fn support_release_for(
        &self,
        tenant: &MunicipalityCode,
        person: &AddresseeNumber,
        purpose: SupportPurpose,
        for_operator: &str,
        valid_for: Duration,
        actor: &Actor,
    ) -> Result<SupportRelease, ServiceError> {
        let granted_to = check_operator(for_operator)?;
        if valid_for < MIN_RELEASE_VALIDITY || valid_for > MAX_RELEASE_VALIDITY {
            return Err(ServiceError::Invalid {
                field: "valid_for".into(),
                code: "invalid_release_validity",
                message_ja: "解除の有効時間は1分から24時間までで指定してください。".into(),
                message_en: "a release is valid for 1 minute to 24 hours".into(),
            });
        }
        let (t, p, actor) = (tenant.clone(), person.clone(), actor.clone());
        self.support_write(tenant, move |tx, at, _today| {
            let protected = store::protected_among(tx, &t, std::slice::from_ref(&p))?;
            let measure_id = protected
                .get(&p)
                .and_then(|ids| ids.first().copied())
                .ok_or_else(|| SupportError::NotProtected(p.clone()))?;
            let release = SupportRelease {
                release_id: store::next_release_id(tx, &t)?,
                addressee_number: p.clone(),
                purpose,
                granted_to,
                released_by: actor.operator.clone(),
                released_at: at,
                expires_at: at.saturating_add(valid_for.num_microseconds().unwrap_or(0)),
                measure_id: Some(measure_id),
                used_by: None,
                used_at: None,
            };
            store::insert_release(tx, &t, &release)?;
            audit(
                tx,
                &t,
                &actor,
                "support.release",
                p.to_string(),
                serde_json::json!({
                    "release_id": release.release_id,
                    "measure_id": measure_id,
                    "purpose": purpose,
                    "granted_to": release.granted_to,
                    "expires_at": release.expires_at,
                }),
                at,
            )?;
            Ok(release)
        })
        .await
    }

    /// The releases concerning `person`, newest first (at most 100); logged.
    pub async fn support_releases_of(
        &self,
        tenant: &MunicipalityCode,
        person: &AddresseeNumber,
        actor: &Actor,
    ) -> Result<Vec<SupportRelease>, ServiceError> {
        let (t, p, actor) = (tenant.clone(), person.clone(), actor.clone());
        self.support_write(tenant, move |tx, at, _today| {
            let list = store::releases_of_person(tx, &t, &p, 100)?;
            audit(
                tx,
                &t,
                &actor,
                "support.list_releases",
                p.to_string(),
                serde_json::json!({ "count": list.len() }),
                at,
            )?;
            Ok(list)
        })
        .await
    }

    /// Logs a request the guard refused (`support.blocked`), in its own
    /// transaction: the refused request's transaction was rolled back.
    pub async fn support_record_block(
        &self,
        tenant: &MunicipalityCode,
        blocked: &[AddresseeNumber],
        purpose: SupportPurpose,
        actor: &Actor,
    ) -> Result<i64, ServiceError> {
        let (t, blocked, actor) = (tenant.clone(), blocked.to_vec(), actor.clone());
        self.support_write(tenant, move |tx, at, _today| {
            audit(
                tx,
                &t,
                &actor,
                "support.blocked",
                joined(&blocked),
                serde_json::json!({ "purpose": purpose }),
                at,
            )
        })
        .await
    }

    /// The guard in a transaction of its own, for a path that checks before
    /// it reads: passes (using releases) or fails with
    /// [`ServiceError::SupportBlocked`], in which case the refusal is logged
    /// (`support.blocked`). Prefer [`guard`] inside the request's own
    /// transaction where there is one.
    pub async fn support_guard(
        &self,
        tenant: &MunicipalityCode,
        persons: &[AddresseeNumber],
        purpose: SupportPurpose,
        actor: &Actor,
    ) -> Result<Vec<i64>, ServiceError> {
        self.support_guard_concerning(tenant, persons, &[], purpose, actor)
            .await
    }

    /// [`Registry::support_guard`] for a request that also names whole
    /// households ([`guard_concerning`]).
    pub async fn support_guard_concerning(
        &self,
        tenant: &MunicipalityCode,
        persons: &[AddresseeNumber],
        households: &[HouseholdNumber],
        purpose: SupportPurpose,
        actor: &Actor,
    ) -> Result<Vec<i64>, ServiceError> {
        self.ensure_tenant(tenant).await?;
        let at = self.clock().now().timestamp_micros();
        let (t, persons_c, households_c, actor_c) = (
            tenant.clone(),
            persons.to_vec(),
            households.to_vec(),
            actor.clone(),
        );
        let result = self
            .store()
            .write(Some(tenant), move |tx| {
                guard_concerning(tx, &t, &persons_c, &households_c, &actor_c, purpose, at)
            })
            .await;
        if let Err(ServiceError::SupportBlocked { persons, .. }) = &result {
            self.support_record_block(tenant, persons, purpose, actor)
                .await?;
        }
        result
    }

    /// Of `persons`, those the shield of a measure in effect covers
    /// ([`Shield::covered`]): lists show them only as restricted. Not
    /// logged: the read that lists them logs.
    pub async fn support_covered(
        &self,
        tenant: &MunicipalityCode,
        persons: &[AddresseeNumber],
    ) -> Result<BTreeSet<AddresseeNumber>, ServiceError> {
        self.ensure_tenant(tenant).await?;
        let (t, persons) = (tenant.clone(), persons.to_vec());
        self.store()
            .read(Some(tenant), move |tx| {
                let shield = Shield::load(tx, &t)?;
                shield.covered(tx, &t, &persons)
            })
            .await
    }

    /// j380, j440: of `persons`, those a measure in effect protects, with
    /// the alert for today. Not logged: the read that shows the persons logs.
    pub async fn support_protection(
        &self,
        tenant: &MunicipalityCode,
        persons: &[AddresseeNumber],
    ) -> Result<BTreeMap<AddresseeNumber, Protection>, ServiceError> {
        self.ensure_tenant(tenant).await?;
        let today = self.clock().today();
        let (t, persons) = (tenant.clone(), persons.to_vec());
        self.store()
            .read(Some(tenant), move |tx| protection(tx, &t, &persons, today))
            .await
    }
}

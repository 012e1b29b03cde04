//! 審査・決裁 (j530): a clerk enters a change provisionally (仮登録); a
//! supervisor approves it (本登録: the change is committed, with its history,
//! audit entry and linkage event) or sends it back. Provisional changes are
//! not facts: registry reads, certificates and the linkage feed never see
//! them.

use machi_domain::change::{ChangeRequest, PlanContext};
use machi_domain::ids::MunicipalityCode;

use super::registry::{Actor, ChangeOutcome, Registry, ServiceError, submit_in};
use crate::store::StoreError;
use crate::store::pending::{self, PendingChange, PendingStatus};
use crate::store::records::{self, AuditEntry};

/// The most provisional changes approved in one bulk decision (j530 allows
/// an upper limit on 全部本登録).
pub const BULK_LIMIT: usize = 50;

/// A dry run's result: the store rolls back on `Err`, so a validated change
/// travels back as the error value.
enum DryRun {
    Valid(Box<ChangeOutcome>),
    Failed(ServiceError),
}

impl From<StoreError> for DryRun {
    fn from(e: StoreError) -> Self {
        DryRun::Failed(e.into())
    }
}

impl From<ServiceError> for DryRun {
    fn from(e: ServiceError) -> Self {
        DryRun::Failed(e)
    }
}

fn summary_of(out: &ChangeOutcome) -> String {
    let names: Vec<String> = out
        .rows
        .iter()
        .map(|r| r.record.name.as_str().to_string())
        .collect();
    let shown = names.iter().take(3).cloned().collect::<Vec<_>>().join("、");
    let more = if names.len() > 3 {
        format!(" ほか{}名", names.len() - 3)
    } else {
        String::new()
    };
    format!("{}: {shown}{more}", out.reason.label_ja())
}

fn entry(actor: &Actor, function: &str, target: String, detail: serde_json::Value) -> AuditEntry {
    AuditEntry {
        operator: actor.operator.clone(),
        terminal: actor.terminal.clone(),
        function: function.into(),
        target,
        detail: detail.to_string(),
        my_number_shown: false,
    }
}

/// A provisional entry of `req`, whose dry run gave `out`.
pub(crate) fn provisional_entry(
    out: &ChangeOutcome,
    req: &ChangeRequest,
    actor: &Actor,
    now: i64,
    resubmits: Option<i64>,
) -> Result<PendingChange, ServiceError> {
    Ok(PendingChange {
        pending_id: 0,
        reason: out.reason.code().to_string(),
        request: serde_json::to_value(req)
            .map_err(|e| StoreError::Corrupt(format!("request: {e}")))?,
        summary: summary_of(out),
        status: PendingStatus::Pending,
        entered_by: actor.operator.clone(),
        entered_terminal: actor.terminal.clone(),
        entered_at: now,
        decided_by: None,
        decided_at: None,
        comment: None,
        change_id: None,
        persons: out.existing_persons(),
        resubmits,
    })
}

/// 仮登録 inside the caller's transaction (the tenant locked): queues `p`
/// and writes its `change.provisional` log entry.
pub(crate) fn insert_provisional(
    tx: &mut crate::store::Tx<'_>,
    t: &MunicipalityCode,
    p: &PendingChange,
    actor: &Actor,
    now: i64,
) -> Result<i64, ServiceError> {
    if let Some(old) = p.resubmits {
        let o = pending::get(tx, t, old)?.ok_or(ServiceError::PendingNotFound(old))?;
        if o.entered_by != actor.operator {
            return Err(ServiceError::Forbidden);
        }
        if o.status != PendingStatus::Returned || pending::resubmitted(tx, t, old)? {
            return Err(ServiceError::PendingDecided(old));
        }
    }
    let persons: Vec<String> = p.persons.iter().map(|a| a.to_string()).collect();
    let id = pending::insert(tx, t, p)?;
    records::append_next_audit(
        tx,
        t,
        now,
        &entry(
            actor,
            "change.provisional",
            std::iter::once(format!("pending:{id}"))
                .chain(persons)
                .collect::<Vec<_>>()
                .join(","),
            serde_json::json!({ "pending_id": id, "reason": p.reason, "resubmits": p.resubmits }),
        ),
    )?;
    Ok(id)
}

impl Registry {
    /// Validates `req` against the current registry without committing
    /// anything: what the change would do, or why it is refused.
    pub async fn dry_run(
        &self,
        tenant: &MunicipalityCode,
        req: &ChangeRequest,
        actor: &Actor,
    ) -> Result<ChangeOutcome, ServiceError> {
        self.ensure_tenant(tenant).await?;
        self.guard_change(tenant, req, &[], actor).await?;
        let now = self.clock().now().timestamp_micros();
        let today = self.clock().today();
        let eras = std::sync::Arc::new(self.eras().clone());
        let municipality = self.municipality_for(tenant, req).await?;
        let (t, req, actor) = (tenant.clone(), req.clone(), actor.clone());
        let r: Result<(), DryRun> = self
            .store()
            .write(Some(tenant), move |tx| {
                let ctx = PlanContext {
                    eras: &eras,
                    today,
                    municipality: municipality.as_ref(),
                };
                let out = submit_in(tx, &t, &req, &actor, &ctx, now)?;
                Err(DryRun::Valid(Box::new(out)))
            })
            .await;
        match r {
            Err(DryRun::Valid(out)) => Ok(*out),
            Err(DryRun::Failed(e)) => Err(e),
            Ok(()) => Err(ServiceError::Store(StoreError::Task(
                "dry run committed".into(),
            ))),
        }
    }

    /// 仮登録: validates the change (nothing is committed to the registry)
    /// and queues it for review. Logged as `change.provisional`.
    pub async fn enter_provisional(
        &self,
        tenant: &MunicipalityCode,
        req: &ChangeRequest,
        actor: &Actor,
    ) -> Result<(i64, ChangeOutcome), ServiceError> {
        self.enter_linked(tenant, req, actor, None).await
    }

    /// 仮登録 again of entry `returned` that a supervisor sent back
    /// (差戻し): a new provisional entry naming the returned one, which stays
    /// as decided with its reason. Only the clerk who entered it may, once.
    pub async fn resubmit(
        &self,
        tenant: &MunicipalityCode,
        returned: i64,
        req: &ChangeRequest,
        actor: &Actor,
    ) -> Result<(i64, ChangeOutcome), ServiceError> {
        self.enter_linked(tenant, req, actor, Some(returned)).await
    }

    /// The caller's entries sent back and not yet entered again, newest first.
    pub async fn returned_to(
        &self,
        tenant: &MunicipalityCode,
        entered_by: &str,
        limit: i64,
    ) -> Result<Vec<PendingChange>, ServiceError> {
        self.ensure_tenant(tenant).await?;
        let (t, by) = (tenant.clone(), entered_by.to_string());
        self.store()
            .read(Some(tenant), move |tx| {
                Ok::<_, ServiceError>(pending::returned_to(tx, &t, &by, limit)?)
            })
            .await
    }

    /// How many of the caller's entries wait to be entered again.
    pub async fn returned_count(
        &self,
        tenant: &MunicipalityCode,
        entered_by: &str,
    ) -> Result<i64, ServiceError> {
        let (t, by) = (tenant.clone(), entered_by.to_string());
        self.store()
            .read(Some(tenant), move |tx| {
                Ok::<_, ServiceError>(pending::count_returned_to(tx, &t, &by)?)
            })
            .await
    }

    async fn enter_linked(
        &self,
        tenant: &MunicipalityCode,
        req: &ChangeRequest,
        actor: &Actor,
        resubmits: Option<i64>,
    ) -> Result<(i64, ChangeOutcome), ServiceError> {
        let out = self.dry_run(tenant, req, actor).await?;
        let now = self.clock().now().timestamp_micros();
        let p = provisional_entry(&out, req, actor, now, resubmits)?;
        let (t, actor) = (tenant.clone(), actor.clone());
        let id = self
            .store()
            .write(Some(tenant), move |tx| {
                records::lock_tenant(tx, &t)?;
                insert_provisional(tx, &t, &p, &actor, now)
            })
            .await?;
        Ok((id, out))
    }

    pub async fn pending(
        &self,
        tenant: &MunicipalityCode,
        id: i64,
    ) -> Result<PendingChange, ServiceError> {
        self.ensure_tenant(tenant).await?;
        let t = tenant.clone();
        self.store()
            .read(Some(tenant), move |tx| {
                pending::get(tx, &t, id)?.ok_or(ServiceError::PendingNotFound(id))
            })
            .await
    }

    pub async fn pending_list(
        &self,
        tenant: &MunicipalityCode,
        status: PendingStatus,
        limit: i64,
    ) -> Result<Vec<PendingChange>, ServiceError> {
        self.ensure_tenant(tenant).await?;
        let t = tenant.clone();
        self.store()
            .read(Some(tenant), move |tx| {
                Ok::<_, ServiceError>(pending::list(tx, &t, status, limit)?)
            })
            .await
    }

    /// 本登録: commits a provisional change as entered, in one transaction
    /// with the decision and its log entry. The approver must not be the
    /// person who entered it. If the registry changed since and the change
    /// no longer applies, nothing is written and it stays pending.
    pub async fn approve(
        &self,
        tenant: &MunicipalityCode,
        id: i64,
        actor: &Actor,
    ) -> Result<ChangeOutcome, ServiceError> {
        self.ensure_tenant(tenant).await?;
        // j440: approving re-runs the change against the registry; for a
        // change concerning a protected person it needs a release too.
        let entered = self.pending(tenant, id).await?;
        if entered.status == PendingStatus::Pending
            && entered.entered_by != actor.operator
            && let Ok(req) = serde_json::from_value::<ChangeRequest>(entered.request.clone())
        {
            self.guard_change(tenant, &req, &entered.persons, actor)
                .await?;
        }
        let now = self.clock().now().timestamp_micros();
        let today = self.clock().today();
        let eras = std::sync::Arc::new(self.eras().clone());
        let municipality = match serde_json::from_value::<ChangeRequest>(entered.request.clone()) {
            Ok(req) => self.municipality_for(tenant, &req).await?,
            Err(_) => None,
        };
        let (t, actor) = (tenant.clone(), actor.clone());
        let r = self
            .store()
            .write(Some(tenant), move |tx| {
                records::lock_tenant(tx, &t)?;
                let p = pending::get(tx, &t, id)?.ok_or(ServiceError::PendingNotFound(id))?;
                if p.status != PendingStatus::Pending {
                    return Err(ServiceError::PendingDecided(id));
                }
                if p.entered_by == actor.operator {
                    return Err(ServiceError::SelfApproval);
                }
                let req: ChangeRequest = serde_json::from_value(p.request.clone())
                    .map_err(|e| StoreError::Corrupt(format!("pending request: {e}")))?;
                let ctx = PlanContext {
                    eras: &eras,
                    today,
                    municipality: municipality.as_ref(),
                };
                let out = submit_in(tx, &t, &req, &actor, &ctx, now)?;
                // From now on the entry names the persons the change
                // committed, new ones included, under their real numbers.
                let committed = out.persons();
                pending::set_persons(tx, &t, id, &committed)?;
                if !pending::decide(
                    tx,
                    &t,
                    id,
                    PendingStatus::Approved,
                    &actor.operator,
                    now,
                    None,
                    Some(out.change_id),
                )? {
                    return Err(ServiceError::PendingDecided(id));
                }
                records::append_next_audit(
                    tx,
                    &t,
                    now,
                    &entry(
                        &actor,
                        "change.approve",
                        committed
                            .iter()
                            .map(|a| a.as_str())
                            .collect::<Vec<_>>()
                            .join(","),
                        serde_json::json!({
                            "pending_id": id, "change_id": out.change_id,
                            "entered_by": p.entered_by,
                        }),
                    ),
                )?;
                // A filing from the portal whose approval entered this
                // change is approved with it (申請管理).
                super::inbox::on_pending_approved(tx, &t, id, &out, &actor, now)?;
                Ok(out)
            })
            .await;
        if r.is_ok() {
            self.push_portal_statuses(tenant).await;
        }
        r
    }

    /// 差戻し (by a supervisor) or 取下げ (by the clerk who entered it).
    pub async fn close_pending(
        &self,
        tenant: &MunicipalityCode,
        id: i64,
        status: PendingStatus,
        comment: &str,
        actor: &Actor,
    ) -> Result<(), ServiceError> {
        if !matches!(status, PendingStatus::Returned | PendingStatus::Withdrawn) {
            return Err(ServiceError::PendingDecided(id));
        }
        self.ensure_tenant(tenant).await?;
        let comment: String = comment
            .chars()
            .filter(|c| !c.is_control() || *c == '\n')
            .take(500)
            .collect();
        let now = self.clock().now().timestamp_micros();
        let (t, actor) = (tenant.clone(), actor.clone());
        let r = self
            .store()
            .write(Some(tenant), move |tx| {
                records::lock_tenant(tx, &t)?;
                let p = pending::get(tx, &t, id)?.ok_or(ServiceError::PendingNotFound(id))?;
                if status == PendingStatus::Withdrawn && p.entered_by != actor.operator {
                    return Err(ServiceError::Forbidden);
                }
                let c = comment.trim();
                if !pending::decide(
                    tx,
                    &t,
                    id,
                    status,
                    &actor.operator,
                    now,
                    (!c.is_empty()).then_some(c),
                    None,
                )? {
                    return Err(ServiceError::PendingDecided(id));
                }
                let function = if status == PendingStatus::Returned {
                    "change.return"
                } else {
                    "change.withdraw"
                };
                records::append_next_audit(
                    tx,
                    &t,
                    now,
                    &entry(
                        &actor,
                        function,
                        String::new(),
                        serde_json::json!({ "pending_id": id, "comment": c }),
                    ),
                )?;
                super::inbox::on_pending_closed(tx, &t, id, &actor, now)?;
                Ok(())
            })
            .await;
        if r.is_ok() {
            self.push_portal_statuses(tenant).await;
        }
        r
    }

    pub async fn pending_count(&self, tenant: &MunicipalityCode) -> Result<i64, ServiceError> {
        let t = tenant.clone();
        self.store()
            .read(Some(tenant), move |tx| {
                Ok::<_, ServiceError>(pending::count_pending(tx, &t)?)
            })
            .await
    }
}

/// One person in a review (j530): the record before the change (None for
/// a person the change enters) and after it.
#[derive(Debug, Clone)]
pub struct ReviewedPerson {
    pub before: Option<machi_domain::model::ResidentRecord>,
    pub after: machi_domain::model::ResidentRecord,
    /// A person a provisional change enters: their 宛名番号 is given on
    /// approval; the dry run's is a prediction and never shown.
    pub number_on_approval: bool,
    /// A household a provisional change creates: its 世帯番号 too is given
    /// on approval.
    pub household_on_approval: bool,
}

/// What a reviewer reads of a change (j530): each person's record before
/// and after, and the warnings the rules raise; or, for a provisional
/// change the registry no longer accepts, why not.
#[derive(Debug)]
pub struct Review {
    pub reason: Option<machi_domain::change::ChangeReason>,
    pub effective_date: Option<machi_domain::dates::DateValue>,
    pub filed_on: Option<machi_domain::dates::DateValue>,
    pub input_place: String,
    pub persons: Vec<ReviewedPerson>,
    pub warnings: Vec<machi_domain::change::review::Warning>,
    /// The refusal a dry run gives today (a provisional change only).
    pub refused: Option<ServiceError>,
}

impl Registry {
    fn review_of(
        &self,
        tenant: &crate::store::tenants::Tenant,
        reason: machi_domain::change::ChangeReason,
        effective_date: machi_domain::dates::DateValue,
        today: chrono::NaiveDate,
        persons: Vec<ReviewedPerson>,
    ) -> Review {
        let pairs: Vec<_> = persons
            .iter()
            .map(|p| (p.before.as_ref(), &p.after))
            .collect();
        let warnings = machi_domain::change::review::warnings(
            reason,
            &effective_date,
            today,
            &tenant.prefecture,
            &tenant.name,
            &pairs,
            self.eras(),
        );
        Review {
            reason: Some(reason),
            effective_date: Some(effective_date),
            filed_on: None,
            input_place: String::new(),
            persons,
            warnings,
            refused: None,
        }
    }

    /// The review of a provisional change: for one still open (or sent
    /// back, or withdrawn), the current registry against a dry run of the
    /// entry; for an approved one, the committed change. The caller has
    /// logged the read of the entry's persons (`read.provisional`).
    pub async fn review_pending(
        &self,
        tenant: &MunicipalityCode,
        p: &PendingChange,
        actor: &Actor,
    ) -> Result<Review, ServiceError> {
        if let Some(change_id) = p.change_id {
            return self.review_change(tenant, change_id).await;
        }
        let t = self.tenant(tenant).await?;
        let req: ChangeRequest = serde_json::from_value(p.request.clone())
            .map_err(|e| StoreError::Corrupt(format!("provisional request: {e}")))?;
        let parse = |s: &str| {
            machi_domain::dates::DateValue::parse(
                s,
                self.eras(),
                machi_domain::dates::DatePolicy::AllowIrregular,
            )
            .ok()
        };
        let effective = parse(&req.meta.effective_date);
        let filed_on = req.meta.filed_on.as_deref().and_then(parse);
        let out = match self.dry_run(tenant, &req, actor).await {
            Ok(out) => out,
            Err(e) => {
                return Ok(Review {
                    reason: machi_domain::change::ChangeReason::from_code(&p.reason),
                    effective_date: effective,
                    filed_on,
                    input_place: req.meta.input_place.clone(),
                    persons: vec![],
                    warnings: vec![],
                    refused: Some(e),
                });
            }
        };
        let rows = out.rows.clone();
        let tc = tenant.clone();
        let persons: Vec<ReviewedPerson> = self
            .store()
            .read(Some(tenant), move |tx| {
                let mut persons = Vec::with_capacity(rows.len());
                let mut known_households = std::collections::HashMap::new();
                for row in rows {
                    let before = if row.history_number > 1 {
                        records::history(tx, &tc, &row.record.addressee_number)?
                            .into_iter()
                            .find(|h| h.history_number == row.history_number - 1)
                            .map(|h| h.record)
                    } else {
                        None
                    };
                    let h = row.record.household_number.clone();
                    let exists = match known_households.get(&h) {
                        Some(e) => *e,
                        None => {
                            let e = before.as_ref().is_some_and(|b| b.household_number == h)
                                || !records::household_rows(tx, &tc, std::slice::from_ref(&h))?
                                    .is_empty();
                            known_households.insert(h, e);
                            e
                        }
                    };
                    persons.push(ReviewedPerson {
                        number_on_approval: row.history_number == 1,
                        household_on_approval: !exists,
                        before,
                        after: row.record,
                    });
                }
                Ok::<_, ServiceError>(persons)
            })
            .await?;
        let effective = effective
            .unwrap_or_else(|| machi_domain::dates::DateValue::calendar(self.clock().today()));
        let mut r = self.review_of(&t, out.reason, effective, self.clock().today(), persons);
        r.filed_on = filed_on;
        r.input_place = req.meta.input_place.clone();
        Ok(r)
    }

    /// The review of a committed change: each person's row before it and
    /// the row it appended. The caller has logged the read (`read.change`).
    pub async fn review_change(
        &self,
        tenant: &MunicipalityCode,
        change_id: i64,
    ) -> Result<Review, ServiceError> {
        let t = self.tenant(tenant).await?;
        let tc = tenant.clone();
        let (change, histories) = self
            .store()
            .read(Some(tenant), move |tx| {
                let c = records::get_change(tx, &tc, change_id)?
                    .ok_or(ServiceError::ChangeNotFound(change_id))?;
                let h = records::histories_of_change(tx, &tc, change_id)?;
                Ok::<_, ServiceError>((c, h))
            })
            .await?;
        let persons = histories
            .into_values()
            .filter_map(|rows| {
                let after = rows.iter().find(|r| r.change.change_id == change_id)?;
                let before = rows
                    .iter()
                    .find(|r| r.history_number == after.history_number - 1)
                    .map(|r| r.record.clone());
                Some(ReviewedPerson {
                    before,
                    after: after.record.clone(),
                    number_on_approval: false,
                    household_on_approval: false,
                })
            })
            .collect();
        let mut r = self.review_of(
            &t,
            change.reason,
            change.effective_date.clone(),
            change.processed_on,
            persons,
        );
        r.filed_on = change
            .filed_on
            .map(machi_domain::dates::DateValue::calendar);
        r.input_place = change.input_place.clone();
        Ok(r)
    }
}

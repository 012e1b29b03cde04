//! 申請管理 (issue 11, items 5 and 6): the inbox of filings imported from
//! the citizen portal. A clerk lists and filters them, takes one up,
//! matches each person it names to a resident (candidates from the
//! registry's own search, support measures applied exactly as there), asks
//! the citizen for a correction, rejects it with a reason, or approves it.
//!
//! Approval does what the procedure's definition says, with nothing typed
//! again (the mapping comes from the definition):
//! - `registry_change` (転出届): the 転出 of every named member on the
//!   planned date, through the counter's path: 仮登録 awaiting 決裁 (j530)
//!   when the approver's role may not commit, committed at once otherwise;
//!   the 転出証明書 data is built from the committed records;
//! - `certificate` (住民票の写し交付請求): the certificate, numbered and
//!   recorded (j1040, j300), for mailing;
//! - `handoff` and `survey`: a thin linkage event
//!   (`jp.machi.portal.filing.approved.v1`) for the business system.
//!
//! Each decision is one transaction with its effect and its access-log
//! entry; the filing's state is checked inside it with the tenant locked,
//! so the same filing approved twice (a double click, two clerks, a retry)
//! has one effect. The status the citizen sees is queued in the same
//! transaction and pushed to the portal afterwards (again on every later
//! push until the portal confirms).

use std::sync::{Arc, OnceLock};

use chrono::NaiveDate;
use machi_domain::certificate::counter::{CounterRequest, IdentityDocument, Requester};
use machi_domain::certificate::{
    self, CertificateInput, CertificateKind, CertificateOptions, ItemKind, PersonSelection,
};
use machi_domain::change::{AddressInput, ChangeCommand, ChangeMeta, ChangeRequest, PlanContext};
use machi_domain::dates::EraTable;
use machi_domain::ids::{AddresseeNumber, MunicipalityCode};
use machi_domain::support::SupportPurpose;
use machi_procedures::{ActionKind, Definition, FieldKind, Identity};
use serde_json::{Value, json};

use super::certificates::{CertificateRequest, Subject, issue_in};
use super::registry::{Actor, ChangeOutcome, Registry, SearchParams, ServiceError, submit_in};
use crate::api::views::ResidentView;
use crate::store::portal_filings::{self, FilingFilter, StoredPortalFiling};
use crate::store::records::{self, AuditEntry};
use crate::store::{StoreError, Tx};

/// The linkage event of an approved filing handed to a business system.
pub const FILING_APPROVED: &str = "jp.machi.portal.filing.approved.v1";

/// Where a filing stands in the inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilingStatus {
    /// 新着: imported, nobody has taken it up.
    Received,
    /// 審査中.
    UnderReview,
    /// 補正依頼中: the citizen was asked to correct it.
    CorrectionRequested,
    /// 決裁待ち: approved by a clerk; its change waits for a supervisor (j530).
    AwaitingDecision,
    /// 承認済み: its effect is done.
    Approved,
    /// 却下.
    Rejected,
}

impl FilingStatus {
    pub const ALL: [FilingStatus; 6] = [
        FilingStatus::Received,
        FilingStatus::UnderReview,
        FilingStatus::CorrectionRequested,
        FilingStatus::AwaitingDecision,
        FilingStatus::Approved,
        FilingStatus::Rejected,
    ];
    pub fn code(self) -> &'static str {
        match self {
            FilingStatus::Received => "received",
            FilingStatus::UnderReview => "under_review",
            FilingStatus::CorrectionRequested => "correction_requested",
            FilingStatus::AwaitingDecision => "awaiting_decision",
            FilingStatus::Approved => "approved",
            FilingStatus::Rejected => "rejected",
        }
    }
    pub fn parse(s: &str) -> Option<FilingStatus> {
        Self::ALL.into_iter().find(|x| x.code() == s)
    }
    pub fn label_ja(self) -> &'static str {
        match self {
            FilingStatus::Received => "新着",
            FilingStatus::UnderReview => "審査中",
            FilingStatus::CorrectionRequested => "補正依頼中",
            FilingStatus::AwaitingDecision => "決裁待ち",
            FilingStatus::Approved => "承認済み",
            FilingStatus::Rejected => "却下",
        }
    }
    pub fn label_en(self) -> &'static str {
        match self {
            FilingStatus::Received => "new",
            FilingStatus::UnderReview => "under review",
            FilingStatus::CorrectionRequested => "correction requested",
            FilingStatus::AwaitingDecision => "awaiting a supervisor's decision",
            FilingStatus::Approved => "approved",
            FilingStatus::Rejected => "rejected",
        }
    }
    /// The status the citizen sees on the portal.
    pub fn portal_code(self) -> &'static str {
        match self {
            FilingStatus::Received => "received",
            FilingStatus::UnderReview | FilingStatus::AwaitingDecision => "under_review",
            FilingStatus::CorrectionRequested => "correction_requested",
            FilingStatus::Approved => "approved",
            FilingStatus::Rejected => "rejected",
        }
    }
    /// Still open: a clerk may act on it.
    pub fn is_open(self) -> bool {
        matches!(self, FilingStatus::Received | FilingStatus::UnderReview)
    }
}

/// A filing's links through corrections ([`Registry::inbox_correction_links`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorrectionLinks {
    /// The filing this one corrects: (filing number, 受付番号).
    pub corrects: Option<(i64, String)>,
    /// The filings sent to correct this one, oldest first.
    pub corrected_by: Vec<(i64, String)>,
}

/// A step of the inbox in words (for the refusal of a wrong transition).
pub fn action_label(action: &str) -> (&'static str, &'static str) {
    match action {
        "assign" => ("担当の割当て", "assigned"),
        "match" => ("住民との照合", "matched"),
        "correction" => ("補正の依頼", "sent back for correction"),
        "reject" => ("却下", "rejected"),
        "approve" => ("承認", "approved"),
        _ => ("この操作", "changed"),
    }
}

/// How the back office reaches the portal to tell it a filing's status
/// (`MACHI_PORTAL_URL`, `MACHI_PORTAL_PULL_TOKEN`).
#[derive(Clone)]
pub struct PortalLink {
    pub url: String,
    pub token: String,
    pub client: reqwest::Client,
}

/// A shipped procedure by (id, version) (the access log's words for a
/// procedure id use it). A filing's own definition — shipped, or the
/// tenant's published text imported with it — is [`def_of`].
pub fn definition(procedure: &str, version: i64) -> Option<&'static Definition> {
    static DEFS: OnceLock<Vec<Definition>> = OnceLock::new();
    DEFS.get_or_init(|| {
        machi_procedures::SHIPPED
            .iter()
            .chain(machi_procedures::SUPERSEDED.iter())
            .filter_map(|(_, src)| Definition::parse(src).ok())
            .collect()
    })
    .iter()
    .find(|d| d.id() == procedure && i64::from(d.version()) == version)
}

/// The definition a filing names (tenant, procedure, version): shipped,
/// or published by the tenant and imported with the filing (issue 11,
/// item 1). None only for a filing whose definition never reached the
/// back office (a portal older than this back office).
pub fn def_of(f: &StoredPortalFiling) -> Option<&Definition> {
    f.definition.as_deref()
}

/// The procedures of the inbox filter, as (id, Japanese title, English
/// title), from the definitions a tenant knows (shipped and its own; the
/// newest version's title).
pub fn procedures_of(defs: &[Arc<Definition>]) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = Vec::new();
    let mut newest: Vec<&Arc<Definition>> = Vec::new();
    for d in defs {
        match newest.iter_mut().find(|n| n.id() == d.id()) {
            Some(n) if n.version() < d.version() => *n = d,
            Some(_) => {}
            None => newest.push(d),
        }
    }
    for d in newest {
        out.push((
            d.id().to_string(),
            d.procedure.title.ja.clone(),
            d.procedure
                .title
                .get(machi_procedures::Lang::En)
                .to_string(),
        ));
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

/// The answers of a filing (the typed payload the portal made).
pub fn answers(f: &StoredPortalFiling) -> &Value {
    &f.filing["signed_content"]["answers"]
}

/// A person the filing names, to be matched to a resident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    /// `applicant`, or `members.0`, `members.1`, … for the persons of a
    /// `people` field the action maps.
    pub key: String,
    pub role_ja: String,
    pub role_en: String,
    pub name: Option<String>,
    pub kana: Option<String>,
    pub birth_date: Option<NaiveDate>,
    /// The address as the filing gives it (compared by the clerk).
    pub address: Option<String>,
}

fn text_of(v: &Value) -> Option<String> {
    v.as_str()
        .map(str::to_string)
        .filter(|s| !s.trim().is_empty())
}

fn date_of(v: &Value) -> Option<NaiveDate> {
    v.as_str()
        .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
}

fn address_of(v: &Value) -> Option<String> {
    let a = v["address"].as_str()?;
    Some(match v["postal_code"].as_str() {
        Some(p) if p.len() == 7 => format!("〒{}-{} {a}", &p[..3], &p[3..]),
        _ => a.to_string(),
    })
}

/// The persons a filing names, from its definition: for a registry
/// change, each person of the `people` field its mapping calls `members`;
/// otherwise the applicant, found as the first name field (`X_name`) with
/// its `X_kana`, `X_birth_date` and `X_address`. A survey names nobody.
pub fn parties(def: &Definition, answers: &Value) -> Vec<Party> {
    if def.action_kind() == ActionKind::RegistryChange
        && let Some(field_id) = def.action.mapping.get("members")
        && let Some(field) = def.field(field_id)
    {
        let by_kind = |k: FieldKind| {
            field
                .fields
                .iter()
                .find(|f| f.kind() == k)
                .map(|f| f.id().to_string())
        };
        let (name, kana, birth) = (
            by_kind(FieldKind::Name),
            by_kind(FieldKind::Kana),
            by_kind(FieldKind::Date),
        );
        return answers[field_id]
            .as_array()
            .map(|people| {
                people
                    .iter()
                    .enumerate()
                    .map(|(i, p)| Party {
                        key: format!("members.{i}"),
                        role_ja: format!("{}（{}人目）", field.label.ja, i + 1),
                        role_en: format!(
                            "{} ({})",
                            field.label.get(machi_procedures::Lang::En),
                            i + 1
                        ),
                        name: name.as_ref().and_then(|k| text_of(&p[k])),
                        kana: kana.as_ref().and_then(|k| text_of(&p[k])),
                        birth_date: birth.as_ref().and_then(|k| date_of(&p[k])),
                        address: None,
                    })
                    .collect()
            })
            .unwrap_or_default();
    }
    if def.action_kind() == ActionKind::Survey {
        return vec![];
    }
    let Some((_, name_field)) = def.fields().find(|(_, f)| f.kind() == FieldKind::Name) else {
        return vec![];
    };
    let prefix = name_field
        .id()
        .strip_suffix("_name")
        .unwrap_or(name_field.id());
    vec![Party {
        key: "applicant".into(),
        role_ja: "申請者".into(),
        role_en: "Applicant".into(),
        name: text_of(&answers[name_field.id()]),
        kana: text_of(&answers[format!("{prefix}_kana")]),
        birth_date: date_of(&answers[format!("{prefix}_birth_date")]),
        address: address_of(&answers[format!("{prefix}_address")]),
    }]
}

/// The signer's items from the back office's check of the signature, when
/// it verified: (name, birth date, sex, address).
pub fn signer_items(f: &StoredPortalFiling) -> Option<(String, Option<NaiveDate>, String, String)> {
    let s = f.signature.as_ref()?;
    if s["verified"] != true {
        return None;
    }
    let b = &s["certificate"]["basic_four"];
    let sex = match &b["sex"] {
        Value::String(x) if x == "male" => "男".to_string(),
        Value::String(x) if x == "female" => "女".to_string(),
        _ => "その他・不明".to_string(),
    };
    Some((
        b["name"].as_str()?.to_string(),
        date_of(&b["date_of_birth"]["date"]),
        sex,
        b["address"].as_str().unwrap_or_default().to_string(),
    ))
}

/// Where resident `row` differs from what the filing gives for `party`:
/// the name (or the furigana, when the filing gives no name) compared
/// folded as the search folds them, and the birth date.
fn differences(party: &Party, row: &machi_domain::change::HistoryRow) -> Vec<(String, String)> {
    use machi_domain::names::search_key;
    let mut out = Vec::new();
    let r = &row.record;
    let same_name = match (&party.name, &party.kana) {
        (Some(n), _) => search_key(n) == search_key(r.name.as_ref()),
        (None, Some(k)) => r
            .name_kana
            .as_ref()
            .is_some_and(|rk| search_key(k) == search_key(rk.as_ref())),
        (None, None) => true,
    };
    if !same_name {
        out.push((
            "氏名が申請と一致しません".into(),
            "the name differs from the filing".into(),
        ));
    }
    if let Some(b) = party.birth_date
        && r.birth_date.as_calendar() != Some(b)
    {
        out.push((
            "生年月日が申請と一致しません".into(),
            "the birth date differs from the filing".into(),
        ));
    }
    out
}

/// A candidate resident for one party, as the search shows it.
pub struct Candidate {
    pub addressee_number: AddresseeNumber,
    pub view: ResidentView,
    /// Covered by a support measure's shield (j440): shown as the search
    /// shows such a person, without address.
    pub restricted: bool,
    /// Where the resident differs from what the filing gives for this
    /// person (name, birth date), in Japanese and English: the clerk sees
    /// it before matching.
    pub differs: Vec<(String, String)>,
}

/// The candidates of one party.
pub struct PartyCandidates {
    pub party: Party,
    pub candidates: Vec<Candidate>,
    /// Why nothing could be searched (e.g. no name in the filing).
    pub note: Option<(String, String)>,
}

/// What an approval did.
#[derive(Debug, Clone, PartialEq)]
pub struct Approval {
    pub filing_id: i64,
    pub status: FilingStatus,
    /// The filing had been approved already: nothing was done again.
    pub already: bool,
    /// Ids only: `change_id`, `pending_id`, `batch` and `issue_numbers`,
    /// `event_seq`.
    pub outcome: Value,
}

fn corrupt(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Store(StoreError::Corrupt(e.to_string()))
}

fn entry(actor: &Actor, function: &str, id: i64, persons: &[String], detail: Value) -> AuditEntry {
    AuditEntry {
        operator: actor.operator.clone(),
        terminal: actor.terminal.clone(),
        function: function.into(),
        target: std::iter::once(format!("filing:{id}"))
            .chain(persons.iter().cloned())
            .collect::<Vec<_>>()
            .join(","),
        detail: detail.to_string(),
        my_number_shown: false,
    }
}

fn load(
    tx: &mut Tx<'_>,
    t: &MunicipalityCode,
    id: i64,
) -> Result<StoredPortalFiling, ServiceError> {
    portal_filings::get(tx, t, id)?.ok_or(ServiceError::FilingNotFound(id))
}

fn status_of(f: &StoredPortalFiling) -> Result<FilingStatus, ServiceError> {
    FilingStatus::parse(&f.status).ok_or_else(|| corrupt(format!("filing status {}", f.status)))
}

/// Refuses a step on a filing whose definition the tenant's administrator
/// has not accepted: pending, no approval (everything else may go on, so
/// that a clerk can prepare it or reject it); refused, nothing but the
/// rejection.
fn trusted(f: &StoredPortalFiling, action: &'static str) -> Result<(), ServiceError> {
    use crate::store::procedure_definitions::Trust;
    let refused = match f.trust {
        Trust::Shipped | Trust::Accepted => return Ok(()),
        Trust::Pending | Trust::Withdrawn if action != "approve" => return Ok(()),
        Trust::Refused if action == "reject" || action == "assign" => return Ok(()),
        Trust::Pending | Trust::Withdrawn => false,
        Trust::Refused => true,
    };
    Err(ServiceError::DefinitionNotTrusted {
        id: f.filing_id,
        title_ja: filing_title(f, false),
        title_en: filing_title(f, true),
        version: f.version,
        refused,
        withdrawn: f.trust == Trust::Withdrawn,
        action,
    })
}

fn refuse(f: &StoredPortalFiling, action: &'static str) -> ServiceError {
    ServiceError::FilingState {
        id: f.filing_id,
        status: f.status.clone(),
        action,
    }
}

/// Moves `f` to `to`, queueing the status for the portal when the
/// citizen's view of it changes.
fn set_status(f: &mut StoredPortalFiling, to: FilingStatus, now: i64) {
    let before = FilingStatus::parse(&f.status);
    if before.map(FilingStatus::portal_code) != Some(to.portal_code())
        || to == FilingStatus::CorrectionRequested
        || to == FilingStatus::Rejected
    {
        f.notify_seq += 1;
    }
    f.status = to.code().to_string();
    f.updated_at = now;
}

/// Writes the inbox's part of `f`; when the citizen's view of it changed,
/// queues the status for the portal in the same transaction
/// ([`crate::portal::status_changed`], pushed by the pull worker and by
/// [`Registry::push_portal_statuses`]).
fn save(
    tx: &mut Tx<'_>,
    t: &MunicipalityCode,
    f: &StoredPortalFiling,
    now: i64,
) -> Result<(), ServiceError> {
    let before = portal_filings::get(tx, t, f.filing_id)?
        .map(|x| x.notify_seq)
        .unwrap_or(0);
    portal_filings::update(tx, t, f)?;
    if f.notify_seq > before
        && let Some(st) = FilingStatus::parse(&f.status)
    {
        let reason = match st {
            FilingStatus::CorrectionRequested | FilingStatus::Rejected => f.message.as_deref(),
            _ => None,
        };
        crate::portal::status_changed(
            tx,
            t,
            f.filing_id,
            st.portal_code(),
            reason,
            now / 1_000_000,
        )?;
    }
    Ok(())
}

/// A clerk's message to the citizen: 1 to 500 characters, no control
/// characters but line breaks.
fn message(field: &str, m: &str) -> Result<String, ServiceError> {
    let m: String = m
        .chars()
        .filter(|c| !c.is_control() || *c == '\n')
        .collect();
    let m = m.trim().to_string();
    if m.is_empty() || m.chars().count() > 500 {
        return Err(ServiceError::Invalid {
            field: field.into(),
            code: "invalid_message",
            message_ja: "申請者へのメッセージ（理由）を1〜500文字で入力してください。".into(),
            message_en: "write the message (reason) to the applicant, 1 to 500 characters".into(),
        });
    }
    Ok(m)
}

fn matched(f: &StoredPortalFiling, key: &str) -> Result<AddresseeNumber, ServiceError> {
    f.matches
        .get(key)
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| ServiceError::Invalid {
            field: "matches".into(),
            code: "filing_not_matched",
            message_ja: "承認の前に、申請に書かれた全員を住民と照合してください。".into(),
            message_en: "match every person the filing names to a resident before approving".into(),
        })
}

/// A correction (補正後の申請, issue 11 item 5): the filing it corrects,
/// when it is here. One correction of a filing is approved: another one
/// approved (or waiting for 決裁) already refuses this approval, so a
/// correction request answered twice never records a change twice.
fn one_correction(
    tx: &mut Tx<'_>,
    t: &MunicipalityCode,
    f: &StoredPortalFiling,
) -> Result<Option<StoredPortalFiling>, ServiceError> {
    let Some(receipt) = f.filing["corrects"].as_str() else {
        return Ok(None);
    };
    let Some(oid) = portal_filings::id_by_receipt(tx, t, receipt)? else {
        return Ok(None);
    };
    let o = load(tx, t, oid)?;
    for (cid, creceipt) in
        portal_filings::corrections_of(tx, t, &o.procedure, &o.receipt, &o.received_at)?
    {
        if cid == f.filing_id {
            continue;
        }
        let c = load(tx, t, cid)?;
        if matches!(
            status_of(&c)?,
            FilingStatus::Approved | FilingStatus::AwaitingDecision
        ) {
            return Err(ServiceError::Invalid {
                field: "filing".into(),
                code: "correction_already_approved",
                message_ja: format!(
                    "この申請が直している申請（受付番号 {receipt}）は、別の補正後の申請（受付番号 {creceipt}）ですでに承認されています。この申請は却下してください。"
                ),
                message_en: format!(
                    "the filing this one corrects (reference {receipt}) was already corrected by another filing (reference {creceipt}), which is approved; reject this one"
                ),
            });
        }
    }
    Ok(Some(o))
}

/// What to do on approval, decided before the transaction.
enum Plan {
    /// 転出 (or another registry change): the request, committed at once
    /// or entered provisionally.
    Change {
        req: Box<ChangeRequest>,
        commit: bool,
    },
    Certificate(Box<super::certificates::IssueJob>),
    Handoff {
        system: String,
        event: String,
    },
}

impl Registry {
    /// The registry telling the portal each filing's status through `link`.
    pub fn with_portal_link(mut self, link: Option<PortalLink>) -> Self {
        self.portal_link = link.map(Arc::new);
        self
    }

    /// The registry re-importing quarantined filings with `link` (the
    /// pull worker's: its opening key and trust anchors), on a staff
    /// member's request ([`Registry::inbox_reimport`]).
    pub fn with_portal_importer(mut self, link: Option<Arc<crate::portal::PortalLink>>) -> Self {
        self.portal_importer = link;
        self
    }

    /// The filings matching `filter`, newest first, and the cursor of the
    /// next page. The list names applicants, so it is logged.
    pub async fn inbox_list(
        &self,
        tenant: &MunicipalityCode,
        filter: &FilingFilter,
        limit: i64,
        actor: &Actor,
    ) -> Result<(Vec<StoredPortalFiling>, Option<i64>), ServiceError> {
        self.ensure_tenant(tenant).await?;
        for (field, d) in [
            ("received_from", &filter.received_from),
            ("received_to", &filter.received_to),
        ] {
            if let Some(d) = d
                && NaiveDate::parse_from_str(d, "%Y-%m-%d").is_err()
            {
                return Err(ServiceError::Invalid {
                    field: field.into(),
                    code: "invalid_date",
                    message_ja: "受付日は暦上の日付で指定してください。".into(),
                    message_en: "the received date must be a calendar date".into(),
                });
            }
        }
        let limit = limit.clamp(1, 200);
        let (t, f) = (tenant.clone(), filter.clone());
        let mut rows = self
            .store()
            .read(Some(tenant), move |tx| {
                portal_filings::search(tx, &t, &f, limit + 1)
            })
            .await?;
        let next = if rows.len() as i64 > limit {
            rows.truncate(limit as usize);
            rows.last().map(|r| r.filing_id)
        } else {
            None
        };
        let ids: Vec<String> = rows
            .iter()
            .map(|r| format!("filing:{}", r.filing_id))
            .collect();
        self.record_access(
            tenant,
            actor,
            "filing.list",
            &ids.join(","),
            json!({ "results": rows.len() }),
        )
        .await?;
        Ok((rows, next))
    }

    /// Filings the import refused and recorded (issue 11: acknowledged to
    /// the portal as refused, never pulled again), newest first, each with
    /// the title of the procedure it names when known. Logged (they name
    /// 受付番号).
    pub async fn inbox_refusals(
        &self,
        tenant: &MunicipalityCode,
        limit: i64,
        actor: &Actor,
    ) -> Result<Vec<RefusalRow>, ServiceError> {
        self.ensure_tenant(tenant).await?;
        let (t, limit) = (tenant.clone(), limit.clamp(1, 500));
        let rows = self
            .store()
            .read(Some(tenant), move |tx| {
                let list = crate::store::portal_refusals::list(tx, &t, limit)?;
                let mut out = Vec::with_capacity(list.len());
                for r in list {
                    let def = if is_procedure_id(&r.procedure) {
                        crate::store::procedure_definitions::lookup(
                            tx,
                            &t,
                            &r.procedure,
                            r.version,
                        )?
                    } else {
                        None
                    };
                    out.push(RefusalRow {
                        title_ja: def.as_ref().map(|d| d.procedure.title.ja.clone()),
                        title_en: def.as_ref().map(|d| {
                            d.procedure
                                .title
                                .get(machi_procedures::Lang::En)
                                .to_string()
                        }),
                        refusal: r,
                    });
                }
                Ok::<_, ServiceError>(out)
            })
            .await?;
        self.record_access(
            tenant,
            actor,
            "filing.refusals",
            "portal_refusals",
            json!({ "results": rows.len() }),
        )
        .await?;
        Ok(rows)
    }

    /// Refusals that may pass later (the key, a definition or this
    /// version of machi to be fixed here), deferred and neither
    /// quarantined nor imported since, oldest first: each is quarantined
    /// at the first pull [`crate::portal::QUARANTINE_AFTER_SECS`] after it
    /// was first deferred if it still fails. Logged with the refusals'
    /// read (`filing.deferrals`).
    pub async fn inbox_deferrals(
        &self,
        tenant: &MunicipalityCode,
        limit: i64,
        actor: &Actor,
    ) -> Result<Vec<crate::store::portal_refusals::StoredDeferral>, ServiceError> {
        self.ensure_tenant(tenant).await?;
        let (t, limit) = (tenant.clone(), limit.clamp(1, 500));
        let rows = self
            .store()
            .read(Some(tenant), move |tx| {
                crate::store::portal_refusals::deferred(tx, &t, limit)
            })
            .await?;
        self.record_access(
            tenant,
            actor,
            "filing.deferrals",
            "portal_deferrals",
            json!({ "results": rows.len() }),
        )
        .await?;
        Ok(rows)
    }

    /// Imports a quarantined filing again (issue 11), with this server's
    /// portal link (its opening key and trust anchors), once its cause is
    /// fixed: the same checks as a pull ([`crate::portal::reimport_refused_logged`]).
    /// Imported: the access-log entry and the status `received` for the
    /// portal are written in the import's transaction, and the status is
    /// pushed at once (kept queued if the portal cannot be reached), so the
    /// citizen's status page no longer says it was not accepted. Imported
    /// before (a double click, two staff members): nothing is done again.
    /// Refused again: nothing is written but the access-log entry of the
    /// attempt, and the reason is returned. Supervisors only (the API and
    /// the page check [`roles::REIMPORT`]).
    pub async fn inbox_reimport(
        &self,
        tenant: &MunicipalityCode,
        portal_id: &str,
        actor: &Actor,
    ) -> Result<Reimport, ServiceError> {
        self.ensure_tenant(tenant).await?;
        let portal_id = portal_id.trim();
        if portal_id.is_empty()
            || portal_id.len() > 200
            || portal_id.chars().any(|c| c.is_control())
        {
            return Err(ServiceError::RefusalNotFound);
        }
        let Some(link) = self.portal_importer.clone() else {
            return Err(ServiceError::PortalNotConfigured);
        };
        let (t, p) = (tenant.clone(), portal_id.to_owned());
        let (quarantined, stored) = self
            .store()
            .read(Some(tenant), move |tx| {
                let q = crate::store::portal_refusals::sealed(tx, &t, &p)?.is_some();
                let s = portal_filings::id_by_portal(tx, &t, &p)?;
                Ok::<_, ServiceError>((q, s))
            })
            .await?;
        if !quarantined {
            return Err(ServiceError::RefusalNotFound);
        }
        let attempt = |outcome: &str, filing_id: Option<i64>, code: Option<&str>| {
            (
                filing_id.map_or_else(
                    || format!("portal_refusal:{portal_id}"),
                    |id| format!("filing:{id}"),
                ),
                json!({ "outcome": outcome, "filing_id": filing_id, "code": code }),
            )
        };
        if let Some(filing_id) = stored {
            let (target, detail) = attempt("already", Some(filing_id), None);
            self.record_access(tenant, actor, "filing.reimport", &target, detail)
                .await?;
            return Ok(Reimport::Already { filing_id });
        }
        let now = self.clock().now();
        let log = crate::portal::ReimportLog {
            entry: records::AuditEntry {
                operator: actor.operator.clone(),
                terminal: actor.terminal.clone(),
                function: "filing.reimport".into(),
                target: String::new(),
                detail: String::new(),
                my_number_shown: false,
            },
            at_micros: now.timestamp_micros(),
        };
        let out = crate::portal::reimport_refused_logged(
            self.store(),
            &link.key,
            link.signing.as_deref(),
            tenant,
            portal_id,
            now.timestamp(),
            &log,
        )
        .await?
        .ok_or(ServiceError::RefusalNotFound)?;
        let (t, p) = (tenant.clone(), portal_id.to_owned());
        let filing_id = self
            .store()
            .read(Some(tenant), move |tx| {
                portal_filings::id_by_portal(tx, &t, &p)
            })
            .await?;
        match (out.imported, filing_id, out.refused.first()) {
            (1, Some(filing_id), _) => {
                // Logged and queued with the import; told to the portal now.
                self.push_portal_statuses(tenant).await;
                Ok(Reimport::Imported { filing_id })
            }
            (_, Some(filing_id), _) => {
                let (target, detail) = attempt("already", Some(filing_id), None);
                self.record_access(tenant, actor, "filing.reimport", &target, detail)
                    .await?;
                Ok(Reimport::Already { filing_id })
            }
            (_, None, Some(r)) => {
                let (target, detail) = attempt("refused", None, Some(r.code));
                self.record_access(tenant, actor, "filing.reimport", &target, detail)
                    .await?;
                Ok(Reimport::Refused {
                    code: r.code.to_owned(),
                    ja: r.ja.clone(),
                    en: r.en.clone(),
                })
            }
            (_, None, None) => Err(corrupt(format!(
                "re-import of {portal_id}: neither stored nor refused"
            ))),
        }
    }

    /// The procedures a tenant's inbox knows (shipped and the tenant's
    /// own published ones), as (id, Japanese title, English title).
    pub async fn inbox_procedures(
        &self,
        tenant: &MunicipalityCode,
    ) -> Result<Vec<(String, String, String)>, ServiceError> {
        let t = tenant.clone();
        let defs = self
            .store()
            .read(Some(tenant), move |tx| {
                Ok::<_, ServiceError>(crate::store::procedure_definitions::all(tx, &t)?)
            })
            .await?;
        Ok(procedures_of(&defs))
    }

    /// How many filings nobody has taken up yet (the menu's count).
    pub async fn inbox_new_count(&self, tenant: &MunicipalityCode) -> Result<i64, ServiceError> {
        let t = tenant.clone();
        self.store()
            .read(Some(tenant), move |tx| {
                Ok::<_, ServiceError>(portal_filings::count_status(
                    tx,
                    &t,
                    FilingStatus::Received.code(),
                )?)
            })
            .await
    }

    /// One filing, logged as read.
    pub async fn inbox_filing(
        &self,
        tenant: &MunicipalityCode,
        id: i64,
        actor: &Actor,
    ) -> Result<StoredPortalFiling, ServiceError> {
        self.ensure_tenant(tenant).await?;
        let t = tenant.clone();
        let f = self
            .store()
            .read(Some(tenant), move |tx| load(tx, &t, id))
            .await?;
        self.record_access(
            tenant,
            actor,
            "filing.view",
            &format!("filing:{id}"),
            json!({ "filing_id": id, "procedure": f.procedure }),
        )
        .await?;
        Ok(f)
    }

    /// The filings linked by a correction (issue 11, item 5): the one this
    /// filing corrects, as (filing number, 受付番号) when it is here, and
    /// those sent again to correct this one.
    pub async fn inbox_correction_links(
        &self,
        tenant: &MunicipalityCode,
        f: &StoredPortalFiling,
    ) -> Result<CorrectionLinks, ServiceError> {
        let t = tenant.clone();
        let corrects = f.filing["corrects"].as_str().map(str::to_owned);
        let (procedure, receipt, received_at) = (
            f.procedure.clone(),
            f.receipt.clone(),
            f.received_at.clone(),
        );
        Ok(self
            .store()
            .read(Some(tenant), move |tx| {
                let corrects = match corrects {
                    Some(r) => portal_filings::id_by_receipt(tx, &t, &r)?.map(|id| (id, r)),
                    None => None,
                };
                let corrected_by =
                    portal_filings::corrections_of(tx, &t, &procedure, &receipt, &received_at)?;
                Ok::<_, StoreError>(CorrectionLinks {
                    corrects,
                    corrected_by,
                })
            })
            .await?)
    }

    /// Gives the filing to a clerk (`to`: a login of the tenant whose role
    /// may handle filings), or to nobody. Taking up a new filing puts it
    /// under review.
    pub async fn inbox_assign(
        &self,
        tenant: &MunicipalityCode,
        id: i64,
        to: Option<&str>,
        actor: &Actor,
    ) -> Result<StoredPortalFiling, ServiceError> {
        self.ensure_tenant(tenant).await?;
        let to = to
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        if let Some(login) = &to {
            let ok = self.accounts(tenant).await?.iter().any(|a| {
                a.login == *login
                    && !a.disabled
                    && a.role
                        .parse::<machi_domain::access::Role>()
                        .is_ok_and(|r| r.allows(machi_domain::access::Permission::EnterChange))
            });
            if !ok {
                return Err(ServiceError::Invalid {
                    field: "assigned_to".into(),
                    code: "unknown_clerk",
                    message_ja: format!(
                        "「{}」は申請を担当できる職員ではありません。",
                        login.chars().take(40).collect::<String>()
                    ),
                    message_en: format!(
                        "\"{}\" is not a staff member who may handle filings",
                        login.chars().take(40).collect::<String>()
                    ),
                });
            }
        }
        let now = self.clock().now().timestamp_micros();
        let (t, a) = (tenant.clone(), actor.clone());
        let f = self
            .store()
            .write(Some(tenant), move |tx| {
                records::lock_tenant(tx, &t)?;
                let mut f = load(tx, &t, id)?;
                let st = status_of(&f)?;
                if !st.is_open() && st != FilingStatus::CorrectionRequested {
                    return Err(refuse(&f, "assign"));
                }
                f.assigned_to = to.clone();
                if st == FilingStatus::Received && to.is_some() {
                    set_status(&mut f, FilingStatus::UnderReview, now);
                }
                f.updated_at = now;
                save(tx, &t, &f, now)?;
                records::append_next_audit(
                    tx,
                    &t,
                    now,
                    &entry(
                        &a,
                        "filing.assign",
                        id,
                        &[],
                        json!({ "filing_id": id, "assigned_to": to }),
                    ),
                )?;
                Ok::<_, ServiceError>(f)
            })
            .await?;
        self.push_portal_statuses(tenant).await;
        Ok(f)
    }

    /// The candidates of each person the filing names: the registry's
    /// search by name and birth date (by who they are, j340), with support
    /// measures applied exactly as the search applies them (j440: a
    /// protected person is found, restricted). Each search is logged by the
    /// search itself. The signer's certificate items, when the signature
    /// verified, search for the first person too.
    pub async fn inbox_candidates(
        &self,
        tenant: &MunicipalityCode,
        f: &StoredPortalFiling,
        actor: &Actor,
    ) -> Result<Vec<PartyCandidates>, ServiceError> {
        let Some(def) = def_of(f) else {
            return Ok(vec![]);
        };
        let signer = signer_items(f);
        let mut out = Vec::new();
        for party in parties(def, answers(f)) {
            // Each person is searched by what the filing gives for that
            // person. The signer's certificate names only the applicant (the
            // person who signed): it is searched first for the `applicant`
            // party, never for a person moving, who may be someone else.
            let mut queries: Vec<(String, Option<NaiveDate>)> = Vec::new();
            if party.key == "applicant"
                && let Some((name, born, _, _)) = &signer
            {
                queries.push((name.clone(), *born));
            }
            if let Some(n) = &party.name {
                queries.push((n.clone(), party.birth_date));
            }
            if let Some(k) = &party.kana {
                queries.push((k.clone(), party.birth_date));
            }
            if queries.is_empty() {
                out.push(PartyCandidates {
                    party,
                    candidates: vec![],
                    note: Some((
                        "申請に氏名がないため検索できません。".into(),
                        "the filing gives no name to search by".into(),
                    )),
                });
                continue;
            }
            // A birth date mistyped in the filing finds nobody with it:
            // the person's own name and furigana are then searched without
            // it, and the candidates say the birth date differs.
            let fallback: Vec<(String, Option<NaiveDate>)> = if party.birth_date.is_some() {
                [&party.name, &party.kana]
                    .into_iter()
                    .flatten()
                    .map(|n| (n.clone(), None))
                    .collect()
            } else {
                Vec::new()
            };
            let mut candidates: Vec<Candidate> = Vec::new();
            for (round, queries) in [queries, fallback].into_iter().enumerate() {
                if round > 0 && !candidates.is_empty() {
                    break;
                }
                for (name, born) in queries {
                    let page = self
                        .search(
                            tenant,
                            &SearchParams {
                                name: Some(name),
                                birth_date: born.map(|d| d.format("%Y-%m-%d").to_string()),
                                limit: 20,
                                ..Default::default()
                            },
                            actor,
                        )
                        .await?;
                    for row in &page.rows {
                        let a = row.record.addressee_number.clone();
                        if candidates.iter().any(|c| c.addressee_number == a) {
                            continue;
                        }
                        candidates.push(Candidate {
                            restricted: page.restricted.contains(&a),
                            differs: differences(&party, row),
                            view: ResidentView::new(row, self.eras()),
                            addressee_number: a,
                        });
                    }
                }
            }
            out.push(PartyCandidates {
                party,
                candidates,
                note: None,
            });
        }
        Ok(out)
    }

    /// The clerk confirms that the person `party` of the filing is resident
    /// `addressee`, one of the candidates the search gave (anything else is
    /// refused: a match is never typed in).
    pub async fn inbox_match(
        &self,
        tenant: &MunicipalityCode,
        id: i64,
        party: &str,
        addressee: &str,
        actor: &Actor,
    ) -> Result<StoredPortalFiling, ServiceError> {
        self.ensure_tenant(tenant).await?;
        let t = tenant.clone();
        let f = self
            .store()
            .read(Some(tenant), move |tx| load(tx, &t, id))
            .await?;
        if !status_of(&f)?.is_open() {
            return Err(refuse(&f, "match"));
        }
        trusted(&f, "match")?;
        let all = self.inbox_candidates(tenant, &f, actor).await?;
        let Some(pc) = all.iter().find(|p| p.party.key == party) else {
            return Err(ServiceError::Invalid {
                field: "party".into(),
                code: "unknown_party",
                message_ja: "この申請にその人は書かれていません。".into(),
                message_en: "the filing names no such person".into(),
            });
        };
        let Some(c) = pc
            .candidates
            .iter()
            .find(|c| c.addressee_number.as_str() == addressee.trim())
        else {
            return Err(ServiceError::Invalid {
                field: "addressee_number".into(),
                code: "not_a_candidate",
                message_ja: "照合できるのは候補に挙がった住民だけです。".into(),
                message_en: "only a candidate the search found can be matched".into(),
            });
        };
        let chosen = c.addressee_number.to_string();
        let now = self.clock().now().timestamp_micros();
        let (t, a, key) = (tenant.clone(), actor.clone(), party.to_string());
        let f = self
            .store()
            .write(Some(tenant), move |tx| {
                records::lock_tenant(tx, &t)?;
                let mut f = load(tx, &t, id)?;
                if !status_of(&f)?.is_open() {
                    return Err(refuse(&f, "match"));
                }
                trusted(&f, "match")?;
                f.matches.insert(key.clone(), chosen.clone());
                if status_of(&f)? == FilingStatus::Received {
                    set_status(&mut f, FilingStatus::UnderReview, now);
                }
                f.updated_at = now;
                save(tx, &t, &f, now)?;
                records::append_next_audit(
                    tx,
                    &t,
                    now,
                    &entry(
                        &a,
                        "filing.match",
                        id,
                        std::slice::from_ref(&chosen),
                        json!({ "filing_id": id, "party": key, "addressee_number": chosen }),
                    ),
                )?;
                Ok::<_, ServiceError>(f)
            })
            .await?;
        self.push_portal_statuses(tenant).await;
        Ok(f)
    }

    /// Asks the citizen to correct the filing: the message goes to the
    /// portal's status page, where they read it and can file again.
    pub async fn inbox_request_correction(
        &self,
        tenant: &MunicipalityCode,
        id: i64,
        text: &str,
        actor: &Actor,
    ) -> Result<StoredPortalFiling, ServiceError> {
        let m = message("message", text)?;
        self.close_filing(tenant, id, FilingStatus::CorrectionRequested, m, actor)
            .await
    }

    /// Rejects the filing with a reason the citizen reads.
    pub async fn inbox_reject(
        &self,
        tenant: &MunicipalityCode,
        id: i64,
        reason: &str,
        actor: &Actor,
    ) -> Result<StoredPortalFiling, ServiceError> {
        let m = message("reason", reason)?;
        self.close_filing(tenant, id, FilingStatus::Rejected, m, actor)
            .await
    }

    async fn close_filing(
        &self,
        tenant: &MunicipalityCode,
        id: i64,
        to: FilingStatus,
        m: String,
        actor: &Actor,
    ) -> Result<StoredPortalFiling, ServiceError> {
        self.ensure_tenant(tenant).await?;
        let now = self.clock().now().timestamp_micros();
        let (t, a) = (tenant.clone(), actor.clone());
        let (function, action) = if to == FilingStatus::Rejected {
            ("filing.reject", "reject")
        } else {
            ("filing.correction", "correction")
        };
        let f = self
            .store()
            .write(Some(tenant), move |tx| {
                records::lock_tenant(tx, &t)?;
                let mut f = load(tx, &t, id)?;
                let st = status_of(&f)?;
                let allowed = st.is_open()
                    || (to == FilingStatus::Rejected && st == FilingStatus::CorrectionRequested);
                if !allowed {
                    return Err(refuse(&f, action));
                }
                // A counter filing never reaches the portal: nobody would
                // read a correction request. The clerk rejects it and
                // files it again at the counter with the applicant.
                if to == FilingStatus::CorrectionRequested
                    && crate::store::portal_filings::filed_at_counter(&f.portal_id)
                {
                    return Err(ServiceError::Invalid {
                        field: "action".into(),
                        code: "counter_filing_no_correction",
                        message_ja: "窓口で受け付けた申請はポータルに表示されないため、補正を依頼できません。直す必要があれば却下し、窓口申請をやり直してください。".into(),
                        message_en: "a filing made at the counter is not shown on the portal, so no correction can be asked for; reject it and file it again at the counter".into(),
                    });
                }
                trusted(&f, action)?;
                set_status(&mut f, to, now);
                f.message = Some(m.clone());
                f.decided_by = Some(a.operator.clone());
                f.decided_at = Some(now);
                save(tx, &t, &f, now)?;
                records::append_next_audit(
                    tx,
                    &t,
                    now,
                    &entry(
                        &a,
                        function,
                        id,
                        &[],
                        // The message itself is kept sealed with the
                        // filing, not in the log.
                        json!({ "filing_id": id, "status": to.code(), "message_chars": m.chars().count() }),
                    ),
                )?;
                Ok::<_, ServiceError>(f)
            })
            .await?;
        self.push_portal_statuses(tenant).await;
        Ok(f)
    }

    /// Approves the filing and does what its procedure says (module
    /// documentation). `commit`: whether the approver's role commits
    /// registry changes at once ([`super::Caller::commits_directly`]);
    /// otherwise a registry change is entered provisionally for 決裁.
    /// `identity`: for a certificate by post, the identity document the
    /// clerk saw in the attachment (a signed filing needs none).
    /// Approving an approved filing again does nothing and answers what
    /// the first approval did.
    pub async fn inbox_approve(
        &self,
        tenant: &MunicipalityCode,
        id: i64,
        commit: bool,
        identity: Option<IdentityDocument>,
        verification_url: &str,
        actor: &Actor,
    ) -> Result<Approval, ServiceError> {
        self.ensure_tenant(tenant).await?;
        let t = tenant.clone();
        let f = self
            .store()
            .read(Some(tenant), move |tx| load(tx, &t, id))
            .await?;
        let st = status_of(&f)?;
        if matches!(st, FilingStatus::Approved | FilingStatus::AwaitingDecision) {
            return Ok(Approval {
                filing_id: id,
                status: st,
                already: true,
                outcome: f.outcome.clone(),
            });
        }
        if !st.is_open() {
            return Err(refuse(&f, "approve"));
        }
        trusted(&f, "approve")?;
        let def = f.definition.clone().ok_or_else(|| ServiceError::Invalid {
            field: "procedure".into(),
            code: "unknown_procedure",
            message_ja: "この申請の手続定義が基幹側にないため、承認できません。".into(),
            message_en: "the back office does not know this filing's procedure version, so it cannot be approved"
                .into(),
        })?;
        // At the counter the clerk saw the applicant's identity document
        // (書かない窓口): its record stands in for the signature; a
        // counter filing without one is not approved unsigned.
        if def.identity() == Identity::Signature
            && !f.signed
            && portal_filings::filed_at_counter(&f.portal_id)
            && super::counter_filing::identity_of(&f).is_none()
        {
            return Err(ServiceError::Invalid {
                field: "identity".into(),
                code: "counter_identity_missing",
                message_ja: "窓口で受け付けた申請ですが、本人確認書類と窓口に来た方（本人・代理人）の記録がないため、署名なしでは承認できません。窓口で本人確認をして受け付け直してください。".into(),
                message_en: "this filing was made at the counter without a record of the identity document and of who came (the applicant or a representative), so it cannot be approved without a signature; file it again at the counter with the identity check".into(),
            });
        }
        if def.identity() == Identity::Signature
            && !f.signed
            && !portal_filings::filed_at_counter(&f.portal_id)
        {
            return Err(ServiceError::Invalid {
                field: "signature".into(),
                code: "filing_unsigned",
                message_ja: "この手続には電子署名が必要ですが、申請に署名がありません。".into(),
                message_en: "this procedure needs an electronic signature and the filing has none"
                    .into(),
            });
        }
        if f.signature.as_ref().is_some_and(|s| s["verified"] == false) {
            return Err(ServiceError::Invalid {
                field: "signature".into(),
                code: "signature_not_verified",
                message_ja: "電子署名を確認できなかった申請は承認できません。".into(),
                message_en: "a filing whose signature did not verify cannot be approved".into(),
            });
        }
        let plan = self
            .approval_plan(tenant, &def, &f, commit, identity, verification_url, actor)
            .await?;
        let now = self.clock().now().timestamp_micros();
        let today = self.clock().today();
        let eras = Arc::new(self.eras().clone());
        let municipality = match &plan {
            Plan::Change { req, .. } => self.municipality_for(tenant, req).await?,
            _ => None,
        };
        let (t, a) = (tenant.clone(), actor.clone());
        let r = self
            .store()
            .write(Some(tenant), move |tx| {
                records::lock_tenant(tx, &t)?;
                let mut f = load(tx, &t, id)?;
                let st = status_of(&f)?;
                if matches!(st, FilingStatus::Approved | FilingStatus::AwaitingDecision) {
                    return Ok(Approval {
                        filing_id: id,
                        status: st,
                        already: true,
                        outcome: f.outcome.clone(),
                    });
                }
                if !st.is_open() {
                    return Err(refuse(&f, "approve"));
                }
                // Decided again here, under the tenant's lock: a refusal
                // recorded while the approval was being prepared holds.
                trusted(&f, "approve")?;
                let original = one_correction(tx, &t, &f)?;
                let persons: Vec<String> = f.matches.values().cloned().collect();
                let (to, outcome) = match &plan {
                    Plan::Change { req, commit: true } => {
                        let ctx = PlanContext {
                            eras: &eras,
                            today,
                            municipality: municipality.as_ref(),
                        };
                        let out = submit_in(tx, &t, req, &a, &ctx, now)?;
                        (
                            FilingStatus::Approved,
                            json!({ "change_id": out.change_id, "reason": out.reason.code() }),
                        )
                    }
                    Plan::Change { req, commit: false } => {
                        let ctx = PlanContext {
                            eras: &eras,
                            today,
                            municipality: municipality.as_ref(),
                        };
                        // The dry run inside this transaction: the savepoint
                        // is rolled back, the entry queued.
                        let out = dry_run_in(tx, &t, req, &a, &ctx, now)?;
                        let p = super::approvals::provisional_entry(&out, req, &a, now, None)?;
                        let pending_id =
                            super::approvals::insert_provisional(tx, &t, &p, &a, now)?;
                        f.pending_id = Some(pending_id);
                        (
                            FilingStatus::AwaitingDecision,
                            json!({ "pending_id": pending_id, "reason": out.reason.code() }),
                        )
                    }
                    Plan::Certificate(job) => {
                        let batch = issue_in(tx, &t, &a, job)?;
                        (
                            FilingStatus::Approved,
                            json!({
                                "batch": batch.batch,
                                "kind": batch.kind.code(),
                                "issue_numbers": batch.copies.iter().map(|c| c.issue_number.clone()).collect::<Vec<_>>(),
                                "mailing": true,
                            }),
                        )
                    }
                    Plan::Handoff { system, event } => {
                        let seq = records::append_next_event(
                            tx,
                            &t,
                            FILING_APPROVED,
                            &json!({
                                "filing_id": id,
                                "procedure": f.procedure,
                                "version": f.version,
                                "system": system,
                                "event": event,
                                "persons": persons.iter().map(|p| json!({ "addressee_number": p })).collect::<Vec<_>>(),
                            }),
                            now,
                        )?;
                        (
                            FilingStatus::Approved,
                            json!({ "event_seq": seq, "system": system }),
                        )
                    }
                };
                set_status(&mut f, to, now);
                f.outcome = outcome.clone();
                f.decided_by = Some(a.operator.clone());
                f.decided_at = Some(now);
                f.message = None;
                save(tx, &t, &f, now)?;
                let mut detail = json!({ "filing_id": id, "status": to.code() });
                if let (Value::Object(d), Value::Object(o)) = (&mut detail, &outcome) {
                    for (k, v) in o {
                        d.insert(k.clone(), v.clone());
                    }
                }
                records::append_next_audit(
                    tx,
                    &t,
                    now,
                    &entry(&a, "filing.approve", id, &persons, detail),
                )?;
                // The filing this one corrects ends here: its citizen is
                // told, and it offers no further correction.
                if let Some(mut o) = original
                    && status_of(&o)? == FilingStatus::CorrectionRequested
                {
                    set_status(&mut o, FilingStatus::Rejected, now);
                    o.message = Some(format!(
                        "補正後の申請（受付番号 {}）を承認したため、この申請は終了しました。 / The corrected filing (reference {}) was approved, so this filing is closed.",
                        f.receipt, f.receipt
                    ));
                    o.decided_by = Some(a.operator.clone());
                    o.decided_at = Some(now);
                    save(tx, &t, &o, now)?;
                    records::append_next_audit(
                        tx,
                        &t,
                        now,
                        &entry(
                            &a,
                            "filing.reject",
                            o.filing_id,
                            &[],
                            json!({ "filing_id": o.filing_id, "status": FilingStatus::Rejected.code(), "superseded_by": id }),
                        ),
                    )?;
                }
                Ok(Approval {
                    filing_id: id,
                    status: to,
                    already: false,
                    outcome,
                })
            })
            .await;
        if let Err(ServiceError::SupportBlocked { persons, purpose }) = &r {
            self.support_record_block(tenant, persons, *purpose, actor)
                .await?;
        }
        let r = r?;
        self.push_portal_statuses(tenant).await;
        Ok(r)
    }

    /// 届出人 (住民基本台帳法第24条・第26条): a signed 転出届 is filed by a
    /// person who moves, or by the householder or another member of the
    /// household of a person who moves. The signer is found by the
    /// certificate's name and birth date (基本4情報); a signer who is none
    /// of these (someone else's card, or a person living elsewhere) is
    /// refused: such a filing needs a representative's mandate (委任状),
    /// checked at the counter. Counter filings were checked there.
    async fn check_filer(
        &self,
        tenant: &MunicipalityCode,
        f: &StoredPortalFiling,
        persons: &[String],
        actor: &Actor,
    ) -> Result<(), ServiceError> {
        if !f.signed || portal_filings::filed_at_counter(&f.portal_id) {
            return Ok(());
        }
        let refused = || {
            ServiceError::Invalid {
            field: "signature".into(),
            code: "filer_not_related",
            message_ja: "署名した人が、転出する人にも、その世帯の人にも見当たりません。本人・世帯主・世帯員以外の届出には委任状が必要なため、この申請は承認できません（照合を確かめ、違っていれば補正を依頼するか却下してください）。".into(),
            message_en: "the person who signed is neither a person moving nor a member of their household; a filing by anyone else needs a mandate, so this filing cannot be approved (check the matching, then ask for a correction or reject it)".into(),
        }
        };
        let Some((name, born, _, _)) = signer_items(f) else {
            return Err(refused());
        };
        let page = self
            .search(
                tenant,
                &SearchParams {
                    name: Some(name.clone()),
                    birth_date: born.map(|d| d.format("%Y-%m-%d").to_string()),
                    limit: 20,
                    ..Default::default()
                },
                actor,
            )
            .await?;
        let key = machi_domain::names::search_key(&name);
        let signers: Vec<&machi_domain::change::HistoryRow> = page
            .rows
            .iter()
            .filter(|r| machi_domain::names::search_key(r.record.name.as_ref()) == key)
            .filter(|r| born.is_none() || r.record.birth_date.as_calendar() == born)
            .collect();
        if signers.iter().any(|r| {
            persons
                .iter()
                .any(|p| p == r.record.addressee_number.as_str())
        }) {
            return Ok(());
        }
        let (t, ps) = (tenant.clone(), persons.to_vec());
        let households = self
            .store()
            .read(Some(tenant), move |tx| {
                let mut out = Vec::new();
                for p in &ps {
                    let Ok(a) = p.parse::<AddresseeNumber>() else {
                        continue;
                    };
                    if let Some(last) = records::history(tx, &t, &a)?.pop() {
                        out.push(last.record.household_number);
                    }
                }
                Ok::<_, ServiceError>(out)
            })
            .await?;
        if signers
            .iter()
            .any(|r| households.contains(&r.record.household_number))
        {
            return Ok(());
        }
        Err(refused())
    }

    #[allow(clippy::too_many_arguments)]
    async fn approval_plan(
        &self,
        tenant: &MunicipalityCode,
        def: &Definition,
        f: &StoredPortalFiling,
        commit: bool,
        identity: Option<IdentityDocument>,
        verification_url: &str,
        actor: &Actor,
    ) -> Result<Plan, ServiceError> {
        let ans = answers(f);
        let parties = parties(def, ans);
        let mapped = |param: &str| -> &Value {
            match def.action.mapping.get(param) {
                Some(field) => &ans[field.as_str()],
                None => &Value::Null,
            }
        };
        match def.action_kind() {
            ActionKind::RegistryChange => {
                if def.action.change.as_deref() != Some("move_out") {
                    return Err(ServiceError::Invalid {
                        field: "procedure".into(),
                        code: "unsupported_change",
                        message_ja: "この手続の異動は申請からはまだ記録できません。".into(),
                        message_en: "this procedure's change cannot yet be recorded from a filing"
                            .into(),
                    });
                }
                let persons = parties
                    .iter()
                    .map(|p| matched(f, &p.key).map(|a| a.to_string()))
                    .collect::<Result<Vec<_>, _>>()?;
                if persons.is_empty() {
                    return Err(matched(f, "members.0").unwrap_err());
                }
                self.check_filer(tenant, f, &persons, actor).await?;
                let dest = mapped("destination");
                let moving = mapped("moving_date")
                    .as_str()
                    .ok_or_else(|| corrupt("the filing has no moving date"))?;
                let received_on = f.received_at.get(..10).unwrap_or_default().to_string();
                let req = ChangeRequest {
                    meta: ChangeMeta {
                        effective_date: moving.to_string(),
                        filed_on: Some(received_on),
                        input_place: "電子申請".into(),
                        input_terminal: actor.terminal.clone(),
                        allow_headless_household: false,
                    },
                    command: ChangeCommand::MoveOut {
                        persons: persons.clone(),
                        destination: AddressInput {
                            address: dest["address"].as_str().unwrap_or_default().to_string(),
                            annex: None,
                            postal_code: dest["postal_code"].as_str().map(str::to_string),
                        },
                    },
                };
                // j440: the change guard, as at the counter.
                let more: Vec<AddresseeNumber> =
                    persons.iter().filter_map(|p| p.parse().ok()).collect();
                self.guard_change(tenant, &req, &more, actor).await?;
                Ok(Plan::Change {
                    req: Box::new(req),
                    commit,
                })
            }
            ActionKind::Certificate => {
                let kind = match def.action.certificate.as_deref() {
                    Some("juminhyo_copy") | Some("resident_copy") => CertificateKind::ResidentCopy,
                    _ => {
                        return Err(ServiceError::Invalid {
                            field: "procedure".into(),
                            code: "unsupported_certificate",
                            message_ja: "この手続の証明書は申請からはまだ発行できません。".into(),
                            message_en:
                                "this procedure's certificate cannot yet be issued from a filing"
                                    .into(),
                        });
                    }
                };
                let person = matched(f, "applicant")?;
                // A counter filing names the document seen at the counter.
                let identity = if f.signed {
                    Some(IdentityDocument::MyNumberCard)
                } else {
                    identity.or_else(|| {
                        super::counter_filing::identity_of(f)
                            .and_then(|c| c.document.as_certificate_identity())
                    })
                };
                if identity.is_none() {
                    return Err(ServiceError::Invalid {
                        field: "identity".into(),
                        code: "identity_required",
                        message_ja: "添付された本人確認書類の種類を選んでください。".into(),
                        message_en: "choose the kind of identity document attached".into(),
                    });
                }
                let scope = mapped("scope").as_str().unwrap_or("self");
                let items: Vec<&str> = mapped("items")
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let copies = mapped("copies").as_i64().unwrap_or(1).clamp(1, 10) as u32;
                let purpose_code = mapped("purpose").as_str().unwrap_or_default();
                let purpose = def
                    .action
                    .mapping
                    .get("purpose")
                    .and_then(|fid| def.field(fid))
                    .and_then(|fd| fd.options.iter().find(|o| o.value == purpose_code))
                    .map(|o| o.label.ja.clone())
                    .unwrap_or_default();
                let options = CertificateOptions {
                    persons: if scope == "household" {
                        PersonSelection::WholeHousehold
                    } else {
                        PersonSelection::Persons(vec![person.clone()])
                    },
                    head_and_relationship: items.contains(&"household_head"),
                    registered_domicile: items.contains(&"honseki"),
                    ..Default::default()
                };
                let job = self
                    .prepare_issue(
                        tenant,
                        CertificateRequest {
                            kind,
                            subject: Subject::HouseholdOf(person),
                            options,
                            verification_url: verification_url.to_string(),
                            may_show_my_number: false,
                            counter: Some(CounterRequest {
                                requester: Some(Requester::Themselves),
                                requester_name: String::new(),
                                relationship: String::new(),
                                identity,
                                power_of_attorney: false,
                                ground: None,
                                purpose,
                                copies,
                            }),
                        },
                    )
                    .await?;
                Ok(Plan::Certificate(Box::new(job)))
            }
            ActionKind::Handoff | ActionKind::Survey => {
                for p in &parties {
                    matched(f, &p.key)?;
                }
                Ok(Plan::Handoff {
                    system: def.action.system.clone().unwrap_or_else(|| "survey".into()),
                    event: def
                        .action
                        .event
                        .clone()
                        .unwrap_or_else(|| "answers_received".into()),
                })
            }
        }
    }

    /// The 転出証明書 data of an approved 転出届 (j660): what the old town
    /// sends ahead to the new one (引越しワンストップ), built from the
    /// committed records of the persons who moved out. Logged, and guarded
    /// by support measures (j440) like a certificate. The 個人番号 item is
    /// left out of this view.
    pub async fn inbox_move_out_data(
        &self,
        tenant: &MunicipalityCode,
        f: &StoredPortalFiling,
        actor: &Actor,
    ) -> Result<Option<certificate::Certificate>, ServiceError> {
        let Some(def) = def_of(f) else {
            return Ok(None);
        };
        if def.action_kind() != ActionKind::RegistryChange
            || status_of(f)? != FilingStatus::Approved
        {
            return Ok(None);
        }
        let persons: Vec<AddresseeNumber> = parties(def, answers(f))
            .iter()
            .filter_map(|p| f.matches.get(&p.key)?.parse().ok())
            .collect();
        self.log_access_of(
            tenant,
            actor,
            "filing.move_out_data",
            &format!("filing:{}", f.filing_id),
            &persons,
            json!({ "filing_id": f.filing_id, "kind": "move_out_certificate" }),
            Some(SupportPurpose::Issue),
        )
        .await?;
        let municipality = self.tenant(tenant).await?.name;
        let today = self.clock().today();
        let eras: EraTable = self.eras().clone();
        let t = tenant.clone();
        self.store()
            .read(Some(tenant), move |tx| {
                let histories = persons
                    .iter()
                    .map(|p| records::history(tx, &t, p))
                    .collect::<Result<Vec<_>, _>>()?;
                let issuer =
                    super::certificates::issuer_of(tx, &t)?.unwrap_or(certificate::Issuer {
                        title: String::new(),
                        name: String::new(),
                        seal_text: None,
                        seal_note: None,
                    });
                let options = CertificateOptions {
                    persons: PersonSelection::Persons(persons.clone()),
                    ..Default::default()
                };
                match certificate::build(&CertificateInput {
                    kind: CertificateKind::MoveOutCertificate,
                    persons: &histories,
                    municipality: &municipality,
                    issuer: &issuer,
                    issue_date: today,
                    eras: &eras,
                    options: &options,
                }) {
                    Ok(mut c) => {
                        for p in &mut c.persons {
                            p.items.retain(|i| i.kind != ItemKind::MyNumber);
                        }
                        c.common.retain(|i| i.kind != ItemKind::MyNumber);
                        Ok(Some(c))
                    }
                    Err(e) => Err(ServiceError::invalid("certificate", &e)),
                }
            })
            .await
    }

    /// Tells the portal the status of every filing whose citizen-facing
    /// status changed and was not told yet. Without a portal link, or when
    /// the portal cannot be reached, the statuses stay queued for the next
    /// push (nothing is lost); the count told is returned.
    pub async fn push_portal_statuses(&self, tenant: &MunicipalityCode) -> usize {
        // The pull worker, when one runs, pushes the queued statuses now.
        crate::portal::wake();
        let (client, url, token) = match (&self.portal_link, &self.portal_importer) {
            (Some(l), _) => (l.client.clone(), l.url.clone(), l.token.clone()),
            (None, Some(l)) => (l.client.clone(), l.url.clone(), l.token.clone()),
            (None, None) => return 0,
        };
        // The same queue the pull worker drains (`portal::status_changed`).
        match crate::portal::push_queued(self.store(), tenant, &client, &url, &token).await {
            Ok((pushed, _)) => pushed,
            Err(e) => {
                tracing::warn!(error = %e, "statuses not told to the portal; kept for the next push");
                0
            }
        }
    }
}

/// [`super::approvals`]'s dry run inside the caller's transaction: the
/// change is planned and written under a savepoint that is rolled back.
fn dry_run_in(
    tx: &mut Tx<'_>,
    t: &MunicipalityCode,
    req: &ChangeRequest,
    a: &Actor,
    ctx: &PlanContext<'_>,
    now: i64,
) -> Result<ChangeOutcome, ServiceError> {
    tx.execute_batch("SAVEPOINT filing_dry_run")?;
    let r = submit_in(tx, t, req, a, ctx, now);
    tx.execute_batch("ROLLBACK TO SAVEPOINT filing_dry_run")?;
    tx.execute_batch("RELEASE SAVEPOINT filing_dry_run")?;
    r
}

/// Called in the transaction of a 決裁 (j530): the filing whose approval
/// entered provisional change `pending_id` is approved with it — unless
/// the tenant administrator withdrew the acceptance of its definition
/// meanwhile: then the 決裁 fails with `definition_withdrawn` (the whole
/// transaction rolls back).
pub(crate) fn on_pending_approved(
    tx: &mut Tx<'_>,
    t: &MunicipalityCode,
    pending_id: i64,
    out: &ChangeOutcome,
    actor: &Actor,
    now: i64,
) -> Result<(), ServiceError> {
    let Some(mut f) = portal_filings::by_pending(tx, t, pending_id)? else {
        return Ok(());
    };
    if status_of(&f)? != FilingStatus::AwaitingDecision {
        return Ok(());
    }
    // The clerk's approval checked the definition; the administrator may
    // have withdrawn its acceptance since (or refused it): the 決裁 is
    // refused then, and nothing of the change is committed.
    trusted(&f, "approve")?;
    set_status(&mut f, FilingStatus::Approved, now);
    if let Value::Object(o) = &mut f.outcome {
        o.insert("change_id".into(), json!(out.change_id));
    }
    save(tx, t, &f, now)?;
    let persons: Vec<String> = out.persons().iter().map(|p| p.to_string()).collect();
    records::append_next_audit(
        tx,
        t,
        now,
        &entry(
            actor,
            "filing.decided",
            f.filing_id,
            &persons,
            json!({ "filing_id": f.filing_id, "pending_id": pending_id, "change_id": out.change_id, "status": "approved" }),
        ),
    )?;
    Ok(())
}

/// Called when a provisional change is sent back or withdrawn: the filing
/// whose approval entered it is under review again (the clerk decides
/// anew; the citizen is not told of the internal step).
pub(crate) fn on_pending_closed(
    tx: &mut Tx<'_>,
    t: &MunicipalityCode,
    pending_id: i64,
    actor: &Actor,
    now: i64,
) -> Result<(), ServiceError> {
    let Some(mut f) = portal_filings::by_pending(tx, t, pending_id)? else {
        return Ok(());
    };
    if status_of(&f)? != FilingStatus::AwaitingDecision {
        return Ok(());
    }
    set_status(&mut f, FilingStatus::UnderReview, now);
    f.pending_id = None;
    f.outcome = json!({ "returned_pending_id": pending_id });
    save(tx, t, &f, now)?;
    records::append_next_audit(
        tx,
        t,
        now,
        &entry(
            actor,
            "filing.returned",
            f.filing_id,
            &[],
            json!({ "filing_id": f.filing_id, "pending_id": pending_id, "status": "under_review" }),
        ),
    )?;
    Ok(())
}

/// One answer of a filing as a person reads it: the field's label and
/// its values (dates in 和暦, choices by their label).
#[derive(Debug, Clone)]
pub struct AnswerView {
    pub label: String,
    pub values: Vec<String>,
    /// A file field: its id, for the download link.
    pub file: Option<String>,
}

fn display_value(f: &machi_procedures::Field, v: &Value, eras: &EraTable, en: bool) -> Vec<String> {
    let lang = if en {
        machi_procedures::Lang::En
    } else {
        machi_procedures::Lang::Ja
    };
    match f.kind() {
        FieldKind::Date => date_of(v)
            .map(|d| {
                if en {
                    d.format("%-d %B %Y").to_string()
                } else {
                    eras.format_wareki(d)
                }
            })
            .into_iter()
            .collect(),
        FieldKind::Address => address_of(v).into_iter().collect(),
        FieldKind::Choice => v
            .as_str()
            .and_then(|x| f.options.iter().find(|o| o.value == x))
            .map(|o| o.label.get(lang).to_string())
            .into_iter()
            .collect(),
        FieldKind::Choices => v
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| {
                        f.options
                            .iter()
                            .find(|o| Some(o.value.as_str()) == x.as_str())
                    })
                    .map(|o| o.label.get(lang).to_string())
                    .collect()
            })
            .unwrap_or_default(),
        FieldKind::YesNo => match v.as_bool() {
            Some(true) => vec![if en { "Yes" } else { "はい" }.into()],
            Some(false) => vec![if en { "No" } else { "いいえ" }.into()],
            None => vec![],
        },
        FieldKind::People => v
            .as_array()
            .map(|people| {
                people
                    .iter()
                    .map(|p| {
                        f.fields
                            .iter()
                            .map(|sub| display_value(sub, &p[sub.id()], eras, en).join(" "))
                            .filter(|s| !s.is_empty())
                            .collect::<Vec<_>>()
                            .join("・")
                    })
                    .collect()
            })
            .unwrap_or_default(),
        FieldKind::File => {
            let name = v["name"].as_str().unwrap_or_default();
            if name.is_empty() {
                vec![]
            } else {
                let size = v["size"].as_u64().unwrap_or(0);
                let kb = size.div_ceil(1024);
                vec![if en {
                    format!("{name} ({kb} KB)")
                } else {
                    format!("{name}（{kb} KB）")
                }]
            }
        }
        FieldKind::Number => v.as_i64().map(|n| n.to_string()).into_iter().collect(),
        _ => text_of(v).into_iter().collect(),
    }
}

/// The filing's answers in the definition's order, labelled.
pub fn answer_views(
    def: &Definition,
    answers: &Value,
    eras: &EraTable,
    en: bool,
) -> Vec<AnswerView> {
    let lang = if en {
        machi_procedures::Lang::En
    } else {
        machi_procedures::Lang::Ja
    };
    def.fields()
        .filter(|(_, f)| !answers[f.id()].is_null())
        .map(|(_, f)| AnswerView {
            label: f.label.get(lang).to_string(),
            values: display_value(f, &answers[f.id()], eras, en),
            file: (f.kind() == FieldKind::File).then(|| f.id().to_string()),
        })
        .filter(|a| !a.values.is_empty())
        .collect()
}

/// An attachment of the filing: (file name, MIME type, bytes). Only the
/// types a definition may accept are served.
pub fn attachment(f: &StoredPortalFiling, field: &str) -> Option<(String, String, Vec<u8>)> {
    use base64::Engine as _;
    let def = def_of(f)?;
    let fd = def.field(field)?;
    if fd.kind() != FieldKind::File {
        return None;
    }
    let v = &answers(f)[field];
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v["data"].as_str()?)
        .ok()?;
    let kind = machi_procedures::file_type_of(&bytes)?;
    Some((
        v["name"].as_str().unwrap_or("file").to_string(),
        kind.to_string(),
        bytes,
    ))
}

/// The 受付日 of a filing as a date.
pub fn received_on(f: &StoredPortalFiling) -> Option<NaiveDate> {
    chrono::DateTime::parse_from_rfc3339(&f.received_at)
        .ok()
        .map(|t| t.with_timezone(&super::clock::jst()).date_naive())
}

/// Party keys to the name the filing gives, for lists.
pub fn applicant_name(f: &StoredPortalFiling) -> String {
    let Some(def) = def_of(f) else {
        return String::new();
    };
    let ans = answers(f);
    def.fields()
        .find(|(_, fd)| fd.kind() == FieldKind::Name)
        .and_then(|(_, fd)| text_of(&ans[fd.id()]))
        .unwrap_or_default()
}

/// The title of the procedure a filing was made on, in the reader's
/// language (its own definition: shipped or the tenant's).
pub fn filing_title(f: &StoredPortalFiling, en: bool) -> String {
    title_of(def_of(f), en)
}

/// A shipped procedure's title in the reader's language.
pub fn procedure_title(procedure: &str, version: i64, en: bool) -> String {
    title_of(definition(procedure, version), en)
}

fn title_of(def: Option<&Definition>, en: bool) -> String {
    match def {
        Some(d) => {
            if en {
                d.procedure
                    .title
                    .get(machi_procedures::Lang::En)
                    .to_string()
            } else {
                d.procedure.title.ja.clone()
            }
        }
        None => {
            if en {
                "Unknown procedure".into()
            } else {
                "不明な手続".into()
            }
        }
    }
}

/// The signature as the inbox shows it: (signed, verified?, message).
pub fn signature_summary(f: &StoredPortalFiling, en: bool) -> String {
    let t = |ja: &str, e: &str| if en { e.to_string() } else { ja.to_string() };
    match (&f.signature, f.signed) {
        (_, false) if portal_filings::filed_at_counter(&f.portal_id) => {
            if super::counter_filing::identity_of(f).is_some() {
                t(
                    "署名なし（窓口で受付。署名に代えて本人確認書類を確認）",
                    "not signed (filed at the counter; an identity document was checked instead)",
                )
            } else {
                t(
                    "署名なし（窓口で受付。本人確認の記録なし）",
                    "not signed (filed at the counter; no record of an identity check)",
                )
            }
        }
        (_, false) => t("署名なし", "not signed"),
        (None, true) => t(
            "署名あり（基幹側の検証結果はまだありません）",
            "signed (not yet verified by the back office)",
        ),
        (Some(s), true) if s["verified"] == true && s["demo"] == true => t(
            "署名を確認済み（デモ用の架空のカードによる署名です。本物の本人確認ではありません）",
            "signature verified (made with a synthetic DEMO card: not a real identity check)",
        ),
        (Some(s), true) if s["verified"] == true => t("署名を確認済み", "signature verified"),
        (Some(s), true) => {
            let why = if en {
                s["message_en"].as_str()
            } else {
                s["message_ja"].as_str()
            }
            .unwrap_or_default();
            format!(
                "{}{}",
                t("署名を確認できません：", "signature not verified: "),
                japan_times(why, en)
            )
        }
    }
}

/// A stored message as a person reads it: every UTC time in it —
/// machi-sign's refusals stored before they named Japan time
/// (`2026-12-06 09:00 UTC`), or an RFC 3339 time — becomes Japan time,
/// the date in 和暦 (`令和8年12月6日 18時00分`; in English
/// `6 December 2026, 18:00 JST`).
pub fn japan_times(text: &str, en: bool) -> String {
    use chrono::Timelike;
    static ERAS: std::sync::OnceLock<machi_domain::dates::EraTable> = std::sync::OnceLock::new();
    let eras = ERAS.get_or_init(machi_domain::dates::EraTable::standard);
    let show = |t: chrono::DateTime<chrono::Utc>| {
        let t = t.with_timezone(&super::clock::jst());
        if en {
            t.format("%-d %B %Y, %H:%M JST").to_string()
        } else {
            format!(
                "{} {}時{:02}分",
                eras.format_wareki(t.date_naive()),
                t.hour(),
                t.minute()
            )
        }
    };
    let b = text.as_bytes();
    let is_date = |i: usize| {
        b.len() >= i + 10
            && b[i..i + 10].iter().enumerate().all(|(k, c)| {
                if k == 4 || k == 7 {
                    *c == b'-'
                } else {
                    c.is_ascii_digit()
                }
            })
    };
    let mut out = String::with_capacity(text.len());
    let (mut i, mut copied) = (0, 0);
    while i < b.len() {
        if (i == 0 || !b[i - 1].is_ascii_digit()) && is_date(i) {
            // `2026-12-06 09:00 UTC` (machi-sign's old wording).
            let old = b
                .get(i..i + 20)
                .and_then(|s| std::str::from_utf8(s).ok())
                .and_then(|s| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M UTC").ok());
            if let Some(n) = old {
                out.push_str(&text[copied..i]);
                out.push_str(&show(n.and_utc()));
                i += 20;
                copied = i;
                continue;
            }
            // RFC 3339: the longest run of its characters that parses.
            let mut end = i + 10;
            while end < b.len() && (b[end].is_ascii_digit() || b"T:.Z+-".contains(&b[end])) {
                end += 1;
            }
            let parsed = (i + 11..=end).rev().find_map(|e| {
                chrono::DateTime::parse_from_rfc3339(&text[i..e])
                    .ok()
                    .map(|t| (e, t))
            });
            if let Some((e, t)) = parsed {
                out.push_str(&text[copied..i]);
                out.push_str(&show(t.with_timezone(&chrono::Utc)));
                i = e;
                copied = i;
                continue;
            }
        }
        i += 1;
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod japan_times_tests {
    #[test]
    fn utc_times_in_stored_messages_read_as_japan_time_in_wareki() {
        let old = "電子証明書の有効期限が切れています（2026-12-06 09:00 UTC まで）。";
        assert_eq!(
            super::japan_times(old, false),
            "電子証明書の有効期限が切れています（令和8年12月6日 18時00分 まで）。"
        );
        assert_eq!(
            super::japan_times("The certificate expired (2026-12-06 20:30 UTC).", true),
            "The certificate expired (7 December 2026, 05:30 JST)."
        );
        assert_eq!(
            super::japan_times(
                "at 2026-12-06T00:00:00Z and 2026-12-06T10:00:00+09:00",
                false
            ),
            "at 令和8年12月6日 9時00分 and 令和8年12月6日 10時00分"
        );
        let plain = "署名が電子証明書の持ち主によるものと確認できません。";
        assert_eq!(super::japan_times(plain, false), plain);
    }
}

/// Who may do what in the inbox (the notes say why).
pub mod roles {
    use machi_domain::access::Permission;

    /// See the list and the filings: the roles that handle them (clerks
    /// and supervisors). A support officer, an administrator or the CIO
    /// does not see citizens' filings.
    pub const READ: Permission = Permission::EnterChange;
    /// Take up, match, ask for a correction, reject, approve: whoever
    /// enters changes (clerks and supervisors); a clerk's approval of a
    /// registry change is provisional.
    pub const ACT: Permission = Permission::EnterChange;
    /// Import a quarantined filing again (取り込み直し): whoever decides
    /// on changes (supervisors). A clerk reads the refused filings but
    /// does not bring one into the inbox past the import's refusal; a
    /// tenant administrator does not see citizens' filings at all.
    pub const REIMPORT: Permission = Permission::ApproveChange;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_definitions_are_known_and_name_their_parties() {
        for id in [
            "tenshutsu",
            "juminhyo",
            "gakudo",
            "jidoteate",
            "survey_internet",
        ] {
            assert!(definition(id, 1).is_some(), "{id}");
        }
        let d = definition("tenshutsu", 1).unwrap();
        let ans = json!({
            "applicant_name": "架空 太郎",
            "members": [
                {"name": "架空 太郎", "kana": "カクウ タロウ", "birth_date": "1980-05-05"},
                {"name": "架空 花子", "birth_date": "1982-07-07"},
            ],
        });
        let p = parties(d, &ans);
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].key, "members.1");
        assert_eq!(p[1].birth_date, NaiveDate::from_ymd_opt(1982, 7, 7));
        let j = definition("juminhyo", 1).unwrap();
        let p = parties(
            j,
            &json!({"applicant_name": "架空 花子", "applicant_birth_date": "1980-03-14",
                    "applicant_address": {"postal_code": "1830056", "address": "東京都府中市寿町"}}),
        );
        assert_eq!(p[0].key, "applicant");
        assert_eq!(p[0].address.as_deref(), Some("〒183-0056 東京都府中市寿町"));
        assert!(parties(definition("survey_internet", 1).unwrap(), &json!({})).is_empty());
        assert!(definition("tenshutsu", 99).is_none());
    }

    #[test]
    fn statuses_read_as_words_and_map_to_the_portal() {
        for s in FilingStatus::ALL {
            assert_eq!(FilingStatus::parse(s.code()), Some(s));
            assert!(!s.label_ja().is_empty());
        }
        assert_eq!(FilingStatus::AwaitingDecision.portal_code(), "under_review");
    }
}

/// What a staff re-import of a quarantined filing did
/// ([`Registry::inbox_reimport`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reimport {
    /// Imported now, as this filing of the inbox (新着); the portal is
    /// told it was received.
    Imported { filing_id: i64 },
    /// Imported before: nothing was done again.
    Already { filing_id: i64 },
    /// Refused again, with the import's code and why (nothing written but
    /// the access-log entry): it stays quarantined.
    Refused {
        code: String,
        ja: String,
        en: String,
    },
}

/// A filing the import refused, with the title of the procedure it names
/// (None when the back office does not know that version).
#[derive(Debug, Clone)]
pub struct RefusalRow {
    pub refusal: crate::store::portal_refusals::StoredRefusal,
    pub title_ja: Option<String>,
    pub title_en: Option<String>,
}

fn is_procedure_id(s: &str) -> bool {
    crate::api::inbox::is_procedure_id(s)
}

//! 申請管理 over the API (issue 11, item 5): the inbox of portal filings.
//! Staff whose role enters changes (clerks, supervisors) read and act;
//! another system with `residents:read` may read filings (the business
//! system that receives the thin `jp.machi.portal.filing.approved.v1`
//! event reads the filing here) but never acts on them.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use machi_domain::certificate::counter::IdentityDocument;
use machi_domain::ids::MunicipalityCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::Auth;
use super::edge::{json_error, path_error, query_error};
use super::error::{ApiError, ErrorBody};
use super::handlers::tenant_code;
use crate::service::inbox::{self, Approval, FilingStatus, roles};
use crate::service::{Caller, ServiceError};
use crate::store::portal_filings::{FilingFilter, StoredPortalFiling};

type ApiResult<T> = Result<Json<T>, ApiError>;

const ERRORS: &str = "bad input (400, `field` names it), unauthenticated (401), forbidden (403: \
     not a staff session, or the role may not), filing_not_found (404), filing_state (409: the \
     step does not apply to the filing as it stands); each with message_ja and message_en.";

/// Who may read filings: staff who handle them, or a client that reads
/// personal data.
fn reader(caller: &Caller, tenant: &MunicipalityCode) -> Result<(), ApiError> {
    match caller {
        Caller::Staff { .. } => caller.check(tenant, roles::READ)?,
        Caller::Client { .. } => {
            caller.check(tenant, machi_domain::access::Permission::ReadPersonal)?
        }
    }
    Ok(())
}

/// Only staff act on filings (see the module documentation).
fn staff(
    caller: &Caller,
    tenant: &MunicipalityCode,
    p: machi_domain::access::Permission,
) -> Result<(), ApiError> {
    caller.check(tenant, p)?;
    if !matches!(caller, Caller::Staff { .. }) {
        return Err(ServiceError::Forbidden.into());
    }
    Ok(())
}

fn filing_id(s: &str) -> Result<i64, ApiError> {
    super::params::integer_text("filing_id", s).map_err(|_| {
        ApiError::bad_request(
            "invalid_filing_id",
            format!(
                "申請番号「{}」は数字で指定してください。",
                s.chars().take(20).collect::<String>()
            ),
            format!(
                "filing id {:?} must be a number",
                s.chars().take(20).collect::<String>()
            ),
        )
        .with_field("filing_id")
    })
}

/// A filing in the list.
#[derive(Serialize, ToSchema)]
pub struct FilingSummary {
    pub filing_id: i64,
    /// 受付番号 the citizen holds.
    pub receipt: String,
    /// The procedure's id, e.g. `tenshutsu`.
    pub procedure: String,
    pub procedure_title_ja: String,
    pub version: i64,
    /// `received`, `under_review`, `correction_requested`,
    /// `awaiting_decision`, `approved`, `rejected`.
    pub status: String,
    pub status_label_ja: String,
    /// When the portal received it (RFC 3339).
    pub received_at: String,
    /// 受付日 in 和暦.
    pub received_wareki: String,
    /// The name the filing gives for its applicant.
    pub applicant_name: String,
    pub assigned_to: Option<String>,
    pub signed: bool,
    /// Filed by a clerk at the counter (書かない窓口), not on the portal.
    pub at_counter: bool,
}

fn summary(f: &StoredPortalFiling, s: &AppState) -> FilingSummary {
    let st = FilingStatus::parse(&f.status);
    FilingSummary {
        filing_id: f.filing_id,
        receipt: f.receipt.clone(),
        procedure: f.procedure.clone(),
        procedure_title_ja: inbox::filing_title(f, false),
        version: f.version,
        status: f.status.clone(),
        status_label_ja: st.map(|s| s.label_ja().to_string()).unwrap_or_default(),
        received_at: f.received_at.clone(),
        received_wareki: inbox::received_on(f)
            .map(|d| s.registry.eras().format_wareki(d))
            .unwrap_or_default(),
        applicant_name: inbox::applicant_name(f),
        assigned_to: f.assigned_to.clone(),
        signed: f.signed,
        at_counter: crate::store::portal_filings::filed_at_counter(&f.portal_id),
    }
}

/// One page of filings, newest first.
#[derive(Serialize, ToSchema)]
pub struct FilingList {
    pub filings: Vec<FilingSummary>,
    /// Give as `before` for the next page; absent on the last page.
    pub next: Option<i64>,
}

/// The inbox's filters ([`super::params::FilingConditions`]).
#[derive(Deserialize)]
pub struct FilingQuery {
    procedure: Option<String>,
    status: Option<String>,
    received_from: Option<String>,
    received_to: Option<String>,
    assigned_to: Option<String>,
    signed: Option<String>,
    filed: Option<String>,
    before: Option<String>,
}

/// A procedure id as definitions spell it (`machi-procedures`): a-z
/// first, then a-z, 0-9 and `_`, at most 40 characters.
pub fn is_procedure_id(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 40
        && p.starts_with(|c: char| c.is_ascii_lowercase())
        && p.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Turns the query's words into a filter (shared with the staff UI).
#[allow(clippy::too_many_arguments)]
pub fn filter_of(
    procedure: Option<&str>,
    status: Option<&str>,
    received_from: Option<&str>,
    received_to: Option<&str>,
    assigned_to: Option<&str>,
    signed: Option<&str>,
    filed: Option<&str>,
    before: Option<i64>,
) -> Result<FilingFilter, ServiceError> {
    let given = |v: Option<&str>| {
        v.map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let statuses = match given(status).as_deref() {
        None => vec![],
        Some("open") => vec!["received".into(), "under_review".into()],
        Some(s) => match FilingStatus::parse(s) {
            Some(st) => vec![st.code().to_string()],
            None => {
                return Err(ServiceError::Invalid {
                    field: "status".into(),
                    code: "invalid_status",
                    message_ja: "状態の指定が正しくありません。".into(),
                    message_en: "the status filter is not one of the inbox's statuses".into(),
                });
            }
        },
    };
    // Not trimmed: an id with spaces around it is not the documented
    // pattern (only an empty or blank value means "any procedure").
    let procedure = procedure
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string);
    let before = match before {
        Some(n) if n < 1 => {
            return Err(ServiceError::Invalid {
                field: "before".into(),
                code: "invalid_cursor",
                message_ja: "ページ位置（before）は1以上の整数です。".into(),
                message_en: "before must be an integer of at least 1".into(),
            });
        }
        b => b,
    };
    // Any well-formed procedure id: shipped, or one the tenant published
    // (a version the back office has not seen yet matches nothing).
    if let Some(p) = &procedure
        && !is_procedure_id(p)
    {
        return Err(ServiceError::Invalid {
            field: "procedure".into(),
            code: "invalid_procedure",
            message_ja:
                "手続の指定が正しくありません（英小文字で始まり、英小文字・数字・_ の40文字以内）。"
                    .into(),
            message_en:
                "the procedure must start with a-z and use only a-z, 0-9 and _ (at most 40)".into(),
        });
    }
    let signed = match given(signed).as_deref() {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => {
            return Err(ServiceError::Invalid {
                field: "signed".into(),
                code: "invalid_signed",
                message_ja: "署名の有無は true か false で指定してください。".into(),
                message_en: "signed must be true or false".into(),
            });
        }
    };
    let at_counter = match given(filed).as_deref() {
        None => None,
        Some("counter") => Some(true),
        Some("portal") => Some(false),
        Some(_) => {
            return Err(ServiceError::Invalid {
                field: "filed".into(),
                code: "invalid_filed",
                message_ja:
                    "受付の経路は counter（窓口）か portal（オンライン）で指定してください。".into(),
                message_en: "filed must be counter or portal".into(),
            });
        }
    };
    Ok(FilingFilter {
        procedure,
        statuses,
        received_from: given(received_from),
        received_to: given(received_to),
        // A login has no control characters: such a value matches nobody.
        assigned_to: given(assigned_to).map(|a| {
            if a == "none" {
                String::new()
            } else {
                a.chars()
                    .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
                    .collect()
            }
        }),
        signed,
        at_counter,
        before,
    })
}

/// The inbox (申請管理): filings imported from the citizen portal.
#[utoipa::path(get, path = "/api/v1/tenants/{municipality_code}/filings", tag = "inbox",
    security(("bearer" = []), ("session" = [])),
    params(super::params::TenantPath, super::params::FilingConditions),
    responses((status = 200, description = "One page of filings.", body = FilingList),
              (status = 400, description = ERRORS, body = ErrorBody),
              (status = 401, description = ERRORS, body = ErrorBody),
              (status = 403, description = ERRORS, body = ErrorBody),
              (status = 404, description = ERRORS, body = ErrorBody),
              (status = 500, description = ERRORS, body = ErrorBody)))]
pub async fn list_filings(
    State(s): State<AppState>,
    Auth(caller): Auth,
    path: Result<Path<String>, PathRejection>,
    q: Result<Query<FilingQuery>, QueryRejection>,
) -> ApiResult<FilingList> {
    let Path(code) = path.map_err(path_error)?;
    let tenant = tenant_code(&code)?;
    let Query(q) = q.map_err(query_error)?;
    let day = |field: &str, v: &Option<String>| -> Result<Option<String>, ApiError> {
        let Some(v) = super::params::given(v) else {
            return Ok(None);
        };
        machi_domain::dates::DateValue::parse(
            v,
            s.registry.eras(),
            machi_domain::dates::DatePolicy::CalendarOnly,
        )
        .ok()
        .and_then(|d| d.as_calendar())
        .map(|d| Some(d.format("%Y-%m-%d").to_string()))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_date",
                format!("{field} は暦上の日付（和暦または西暦）で指定してください。"),
                format!("{field} must be a calendar date (和暦 or 西暦)"),
            )
            .with_field(field)
        })
    };
    let from = day("received_from", &q.received_from)?;
    let to = day("received_to", &q.received_to)?;
    let before = match super::params::given(&q.before) {
        Some(b) => Some(super::params::integer_text("before", b)?),
        None => None,
    };
    let filter = filter_of(
        q.procedure.as_deref(),
        q.status.as_deref(),
        from.as_deref(),
        to.as_deref(),
        q.assigned_to.as_deref(),
        q.signed.as_deref(),
        q.filed.as_deref(),
        before,
    )?;
    reader(&caller, &tenant)?;
    let (rows, next) = s
        .registry
        .inbox_list(&tenant, &filter, 50, &caller.actor())
        .await?;
    Ok(Json(FilingList {
        filings: rows.iter().map(|f| summary(f, &s)).collect(),
        next,
    }))
}

/// One answer, labelled as the definition labels it.
#[derive(Serialize, ToSchema)]
pub struct AnswerItem {
    pub label: String,
    pub values: Vec<String>,
}

/// A person the filing names and the resident confirmed for them.
#[derive(Serialize, ToSchema)]
pub struct PartyView {
    /// `applicant` or `members.N`.
    pub key: String,
    pub role_ja: String,
    pub name: Option<String>,
    pub birth_date_wareki: Option<String>,
    /// 宛名番号 confirmed by a clerk.
    pub matched: Option<String>,
}

/// Who came to the counter for a filing made there, and how the clerk
/// checked who they are (書かない窓口).
#[derive(Serialize, ToSchema)]
pub struct CounterIdentityView {
    /// The identity document the clerk saw: `my_number_card`,
    /// `drivers_licence`, `passport`, `residence_card`,
    /// `two_without_photo` (two documents without a photo, named in
    /// `note`) or `other` (named in `note`).
    pub document: String,
    pub document_label_ja: String,
    pub document_label_en: String,
    /// `principal` (本人, the applicant came) or `representative` (代理人).
    pub appeared: String,
    /// The representative's name, for a representative.
    pub representative_name: Option<String>,
    /// 本人との関係 (e.g. 妻, 長男, 知人), for a representative.
    pub representative_relationship: Option<String>,
    /// Whether the clerk saw a 委任状 (power of attorney), for a
    /// representative; absent for the applicant in person.
    pub power_of_attorney_seen: Option<bool>,
    /// The clerk's note (the documents named, when two without a photo or
    /// another document).
    pub note: String,
}

/// The filing made at the counter: who took it and the identity check.
#[derive(Serialize, ToSchema)]
pub struct CounterView {
    /// The clerk who took it, as staff see their name.
    pub clerk_name: Option<String>,
    /// The identity check; absent when none was recorded (then the filing
    /// is not approved unsigned: `counter_identity_missing`).
    pub identity: Option<CounterIdentityView>,
}

fn counter_view(f: &StoredPortalFiling) -> Option<CounterView> {
    use crate::service::counter_filing::{Appeared, identity_of};
    if !crate::store::portal_filings::filed_at_counter(&f.portal_id) {
        return None;
    }
    let identity = identity_of(f).map(|i| {
        let (appeared, name, relationship, poa) = match &i.appeared {
            Appeared::Themselves => ("principal", None, None, None),
            Appeared::Representative {
                name,
                relationship,
                power_of_attorney,
            } => (
                "representative",
                Some(name.clone()),
                Some(relationship.clone()),
                Some(*power_of_attorney),
            ),
        };
        CounterIdentityView {
            document: i.document.code().to_string(),
            document_label_ja: i.document.label_ja().to_string(),
            document_label_en: i.document.label_en().to_string(),
            appeared: appeared.to_string(),
            representative_name: name,
            representative_relationship: relationship,
            power_of_attorney_seen: poa,
            note: i.note.clone(),
        }
    });
    Some(CounterView {
        clerk_name: f.filing["counter"]["clerk_name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .map(str::to_string),
        identity,
    })
}

/// A filing as a clerk reads it.
#[derive(Serialize, ToSchema)]
pub struct FilingDetail {
    pub filing: FilingSummary,
    pub answers: Vec<AnswerItem>,
    /// The signature in words.
    pub signature_ja: String,
    /// The back office's check of the signature, when made (the signer's
    /// certificate items).
    #[schema(value_type = Option<Object>)]
    pub signature: Option<serde_json::Value>,
    pub parties: Vec<PartyView>,
    /// The last correction request or rejection reason.
    pub message: Option<String>,
    /// What the approval did: `change_id`, `pending_id`, `batch` and
    /// `issue_numbers`, or `event_seq`.
    #[schema(value_type = Object)]
    pub outcome: serde_json::Value,
    /// For a filing made at the counter (書かない窓口): the clerk and the
    /// identity check as a structured record; absent for a filing from
    /// the portal.
    pub counter: Option<CounterView>,
    /// Whether the back office acts on the filing's procedure definition:
    /// `shipped` (machi's own), `accepted` by the tenant administrator,
    /// `pending` (not yet: approval is refused, `definition_not_accepted`)
    /// `refused` (the filing can only be rejected, `definition_refused`)
    /// or `withdrawn` (accepted, then the acceptance withdrawn: approval
    /// is refused, `definition_withdrawn`, until accepted again).
    pub definition_status: String,
}

fn detail(f: &StoredPortalFiling, s: &AppState) -> FilingDetail {
    let eras = s.registry.eras();
    let (answers, parties) = match inbox::def_of(f) {
        Some(def) => (
            inbox::answer_views(def, inbox::answers(f), eras, false)
                .into_iter()
                .map(|a| AnswerItem {
                    label: a.label,
                    values: a.values,
                })
                .collect(),
            inbox::parties(def, inbox::answers(f))
                .into_iter()
                .map(|p| PartyView {
                    matched: f.matches.get(&p.key).cloned(),
                    key: p.key,
                    role_ja: p.role_ja,
                    name: p.name,
                    birth_date_wareki: p.birth_date.map(|d| eras.format_wareki(d)),
                })
                .collect(),
        ),
        None => (vec![], vec![]),
    };
    FilingDetail {
        filing: summary(f, s),
        answers,
        signature_ja: inbox::signature_summary(f, false),
        signature: f.signature.clone(),
        parties,
        message: f.message.clone(),
        outcome: f.outcome.clone(),
        counter: counter_view(f),
        definition_status: f.trust.code().to_string(),
    }
}

/// One filing.
#[utoipa::path(get, path = "/api/v1/tenants/{municipality_code}/filings/{filing_id}", tag = "inbox",
    security(("bearer" = []), ("session" = [])),
    params(super::params::FilingPath),
    responses((status = 200, description = "The filing.", body = FilingDetail),
              (status = 400, description = ERRORS, body = ErrorBody),
              (status = 401, description = ERRORS, body = ErrorBody),
              (status = 403, description = ERRORS, body = ErrorBody),
              (status = 404, description = ERRORS, body = ErrorBody),
              (status = 500, description = ERRORS, body = ErrorBody)))]
pub async fn get_filing(
    State(s): State<AppState>,
    Auth(caller): Auth,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<FilingDetail> {
    let Path((code, id)) = path.map_err(path_error)?;
    let tenant = tenant_code(&code)?;
    let id = filing_id(&id)?;
    reader(&caller, &tenant)?;
    let f = s
        .registry
        .inbox_filing(&tenant, id, &caller.actor())
        .await?;
    Ok(Json(detail(&f, &s)))
}

/// A candidate resident.
#[derive(Serialize, ToSchema)]
pub struct CandidateView {
    pub addressee_number: String,
    pub name: String,
    pub name_kana: Option<String>,
    pub birth_date_wareki: String,
    /// Absent for a person a support measure's shield covers (j440).
    pub address: Option<String>,
    pub status_label_ja: String,
    pub restricted: bool,
    /// Where the resident differs from what the filing gives for this
    /// person (name, birth date), in Japanese; empty when nothing differs.
    pub differs_ja: Vec<String>,
    /// The same in English.
    pub differs_en: Vec<String>,
}

/// The candidates of one person the filing names.
#[derive(Serialize, ToSchema)]
pub struct PartyCandidatesView {
    pub key: String,
    pub role_ja: String,
    pub name: Option<String>,
    pub candidates: Vec<CandidateView>,
}

/// Candidates for each person the filing names, from the registry's
/// search (support measures applied as there).
#[utoipa::path(get, path = "/api/v1/tenants/{municipality_code}/filings/{filing_id}/candidates", tag = "inbox",
    security(("bearer" = []), ("session" = [])),
    params(super::params::FilingPath),
    responses((status = 200, description = "Candidates per person.", body = [PartyCandidatesView]),
              (status = 400, description = ERRORS, body = ErrorBody),
              (status = 401, description = ERRORS, body = ErrorBody),
              (status = 403, description = ERRORS, body = ErrorBody),
              (status = 404, description = ERRORS, body = ErrorBody),
              (status = 500, description = ERRORS, body = ErrorBody)))]
pub async fn filing_candidates(
    State(s): State<AppState>,
    Auth(caller): Auth,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<Vec<PartyCandidatesView>> {
    let Path((code, id)) = path.map_err(path_error)?;
    let tenant = tenant_code(&code)?;
    let id = filing_id(&id)?;
    reader(&caller, &tenant)?;
    let actor = caller.actor();
    let f = s.registry.inbox_filing(&tenant, id, &actor).await?;
    let all = s.registry.inbox_candidates(&tenant, &f, &actor).await?;
    Ok(Json(
        all.into_iter()
            .map(|pc| PartyCandidatesView {
                key: pc.party.key,
                role_ja: pc.party.role_ja,
                name: pc.party.name,
                candidates: pc
                    .candidates
                    .into_iter()
                    .map(|c| CandidateView {
                        addressee_number: c.addressee_number.to_string(),
                        name: c.view.name.clone(),
                        name_kana: c.view.name_kana.clone(),
                        birth_date_wareki: c.view.birth_date.text.clone(),
                        address: (!c.restricted).then(|| c.view.address.clone()),
                        status_label_ja: c.view.status_label_ja.clone(),
                        restricted: c.restricted,
                        differs_ja: c.differs.iter().map(|d| d.0.clone()).collect(),
                        differs_en: c.differs.iter().map(|d| d.1.clone()).collect(),
                    })
                    .collect(),
            })
            .collect(),
    ))
}

/// Who handles the filing.
#[derive(Deserialize, ToSchema)]
pub struct AssignBody {
    /// A clerk's login; null or empty: nobody.
    pub assigned_to: Option<String>,
}

/// Gives the filing to a clerk (or to nobody).
#[utoipa::path(post, path = "/api/v1/tenants/{municipality_code}/filings/{filing_id}/assign", tag = "inbox",
    security(("session" = [])),
    params(super::params::FilingPath),
    request_body = AssignBody,
    responses((status = 200, description = "The filing.", body = FilingDetail),
              (status = 400, description = ERRORS, body = ErrorBody),
              (status = 401, description = ERRORS, body = ErrorBody),
              (status = 403, description = ERRORS, body = ErrorBody),
              (status = 404, description = ERRORS, body = ErrorBody),
              (status = 409, description = ERRORS, body = ErrorBody),
              (status = 413, description = ERRORS, body = ErrorBody),
              (status = 415, description = ERRORS, body = ErrorBody),
              (status = 422, description = ERRORS, body = ErrorBody),
              (status = 500, description = ERRORS, body = ErrorBody)))]
pub async fn assign_filing(
    State(s): State<AppState>,
    Auth(caller): Auth,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<AssignBody>, JsonRejection>,
) -> ApiResult<FilingDetail> {
    let Path((code, id)) = path.map_err(path_error)?;
    let tenant = tenant_code(&code)?;
    let id = filing_id(&id)?;
    let Json(b) = body.map_err(json_error)?;
    staff(&caller, &tenant, roles::ACT)?;
    let f = s
        .registry
        .inbox_assign(&tenant, id, b.assigned_to.as_deref(), &caller.actor())
        .await?;
    Ok(Json(detail(&f, &s)))
}

/// The resident a person of the filing is.
#[derive(Deserialize, ToSchema)]
pub struct MatchBody {
    /// `applicant` or `members.N` (a `key` of the candidates).
    pub party: String,
    /// One of the candidates' 宛名番号.
    pub addressee_number: String,
}

/// Confirms a candidate for a person the filing names.
#[utoipa::path(post, path = "/api/v1/tenants/{municipality_code}/filings/{filing_id}/match", tag = "inbox",
    security(("session" = [])),
    params(super::params::FilingPath),
    request_body = MatchBody,
    responses((status = 200, description = "The filing.", body = FilingDetail),
              (status = 400, description = ERRORS, body = ErrorBody),
              (status = 401, description = ERRORS, body = ErrorBody),
              (status = 403, description = ERRORS, body = ErrorBody),
              (status = 404, description = ERRORS, body = ErrorBody),
              (status = 409, description = ERRORS, body = ErrorBody),
              (status = 413, description = ERRORS, body = ErrorBody),
              (status = 415, description = ERRORS, body = ErrorBody),
              (status = 422, description = ERRORS, body = ErrorBody),
              (status = 500, description = ERRORS, body = ErrorBody)))]
pub async fn match_filing(
    State(s): State<AppState>,
    Auth(caller): Auth,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<MatchBody>, JsonRejection>,
) -> ApiResult<FilingDetail> {
    let Path((code, id)) = path.map_err(path_error)?;
    let tenant = tenant_code(&code)?;
    let id = filing_id(&id)?;
    let Json(b) = body.map_err(json_error)?;
    staff(&caller, &tenant, roles::ACT)?;
    let f = s
        .registry
        .inbox_match(&tenant, id, &b.party, &b.addressee_number, &caller.actor())
        .await?;
    Ok(Json(detail(&f, &s)))
}

/// A message to the citizen.
#[derive(Deserialize, ToSchema)]
pub struct MessageBody {
    /// 1 to 500 characters; the citizen reads it on the portal.
    pub message: String,
}

/// Asks the citizen to correct the filing (they read the message on the
/// portal's status page).
#[utoipa::path(post, path = "/api/v1/tenants/{municipality_code}/filings/{filing_id}/correction", tag = "inbox",
    security(("session" = [])),
    params(super::params::FilingPath),
    request_body = MessageBody,
    responses((status = 200, description = "The filing.", body = FilingDetail),
              (status = 400, description = ERRORS, body = ErrorBody),
              (status = 401, description = ERRORS, body = ErrorBody),
              (status = 403, description = ERRORS, body = ErrorBody),
              (status = 404, description = ERRORS, body = ErrorBody),
              (status = 409, description = ERRORS, body = ErrorBody),
              (status = 413, description = ERRORS, body = ErrorBody),
              (status = 415, description = ERRORS, body = ErrorBody),
              (status = 422, description = ERRORS, body = ErrorBody),
              (status = 500, description = ERRORS, body = ErrorBody)))]
pub async fn request_correction(
    State(s): State<AppState>,
    Auth(caller): Auth,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<MessageBody>, JsonRejection>,
) -> ApiResult<FilingDetail> {
    let Path((code, id)) = path.map_err(path_error)?;
    let tenant = tenant_code(&code)?;
    let id = filing_id(&id)?;
    let Json(b) = body.map_err(json_error)?;
    staff(&caller, &tenant, roles::ACT)?;
    let f = s
        .registry
        .inbox_request_correction(&tenant, id, &b.message, &caller.actor())
        .await?;
    Ok(Json(detail(&f, &s)))
}

/// Rejects the filing with a reason (as `message`).
#[utoipa::path(post, path = "/api/v1/tenants/{municipality_code}/filings/{filing_id}/reject", tag = "inbox",
    security(("session" = [])),
    params(super::params::FilingPath),
    request_body = MessageBody,
    responses((status = 200, description = "The filing.", body = FilingDetail),
              (status = 400, description = ERRORS, body = ErrorBody),
              (status = 401, description = ERRORS, body = ErrorBody),
              (status = 403, description = ERRORS, body = ErrorBody),
              (status = 404, description = ERRORS, body = ErrorBody),
              (status = 409, description = ERRORS, body = ErrorBody),
              (status = 413, description = ERRORS, body = ErrorBody),
              (status = 415, description = ERRORS, body = ErrorBody),
              (status = 422, description = ERRORS, body = ErrorBody),
              (status = 500, description = ERRORS, body = ErrorBody)))]
pub async fn reject_filing(
    State(s): State<AppState>,
    Auth(caller): Auth,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<MessageBody>, JsonRejection>,
) -> ApiResult<FilingDetail> {
    let Path((code, id)) = path.map_err(path_error)?;
    let tenant = tenant_code(&code)?;
    let id = filing_id(&id)?;
    let Json(b) = body.map_err(json_error)?;
    staff(&caller, &tenant, roles::ACT)?;
    let f = s
        .registry
        .inbox_reject(&tenant, id, &b.message, &caller.actor())
        .await?;
    Ok(Json(detail(&f, &s)))
}

/// An approval.
#[derive(Deserialize, ToSchema, Default)]
pub struct ApproveBody {
    /// For a certificate by post: the identity document seen in the
    /// attachment (`my_number_card`, `drivers_licence`, `passport`,
    /// `residence_card`, `two_documents`, `official_id`).
    #[serde(default)]
    pub identity: Option<String>,
}

/// What an approval did.
#[derive(Serialize, ToSchema)]
pub struct ApprovalView {
    pub filing_id: i64,
    /// `approved`, or `awaiting_decision` when a registry change waits for
    /// a supervisor's 決裁.
    pub status: String,
    pub status_label_ja: String,
    /// Approved before: nothing was done again.
    pub already: bool,
    #[schema(value_type = Object)]
    pub outcome: serde_json::Value,
}

impl From<Approval> for ApprovalView {
    fn from(a: Approval) -> Self {
        ApprovalView {
            filing_id: a.filing_id,
            status: a.status.code().to_string(),
            status_label_ja: a.status.label_ja().to_string(),
            already: a.already,
            outcome: a.outcome,
        }
    }
}

/// Parses the identity document of an approval.
pub fn identity_of(s: Option<&str>) -> Result<Option<IdentityDocument>, ServiceError> {
    match s.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(code) => {
            IdentityDocument::from_code(code)
                .map(Some)
                .ok_or_else(|| ServiceError::Invalid {
                    field: "identity".into(),
                    code: "invalid_identity",
                    message_ja: "本人確認書類の種類が正しくありません。".into(),
                    message_en: "the identity document is not one of the accepted kinds".into(),
                })
        }
    }
}

/// Approves the filing: the 転出 (provisional for a clerk, committed for a
/// supervisor), the certificate, or the linkage event its procedure
/// says. Approving again does nothing more and answers `already`.
#[utoipa::path(post, path = "/api/v1/tenants/{municipality_code}/filings/{filing_id}/approve", tag = "inbox",
    security(("session" = [])),
    params(super::params::FilingPath),
    request_body = ApproveBody,
    responses((status = 200, description = "What the approval did.", body = ApprovalView),
              (status = 400, description = ERRORS, body = ErrorBody),
              (status = 401, description = ERRORS, body = ErrorBody),
              (status = 403, description = ERRORS, body = ErrorBody),
              (status = 404, description = ERRORS, body = ErrorBody),
              (status = 409, description = ERRORS, body = ErrorBody),
              (status = 413, description = ERRORS, body = ErrorBody),
              (status = 415, description = ERRORS, body = ErrorBody),
              (status = 422, description = ERRORS, body = ErrorBody),
              (status = 500, description = ERRORS, body = ErrorBody)))]
pub async fn approve_filing(
    State(s): State<AppState>,
    Auth(caller): Auth,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<ApproveBody>, JsonRejection>,
) -> ApiResult<ApprovalView> {
    let Path((code, id)) = path.map_err(path_error)?;
    let tenant = tenant_code(&code)?;
    let id = filing_id(&id)?;
    let Json(b) = body.map_err(json_error)?;
    let identity = identity_of(b.identity.as_deref())?;
    staff(&caller, &tenant, roles::ACT)?;
    let url = format!("{}/verify?tenant={tenant}", crate::ui::public_url(&headers));
    let a = s
        .registry
        .inbox_approve(
            &tenant,
            id,
            caller.commits_directly(),
            identity,
            &url,
            &caller.actor(),
        )
        .await?;
    Ok(Json(a.into()))
}

/// One option of a counted question.
#[derive(Serialize, ToSchema)]
pub struct SurveyOptionView {
    pub value: String,
    pub label_ja: String,
    pub label_en: String,
    pub count: u64,
    /// Of the respondents asked the question, in percent (one decimal).
    pub percent: f64,
}

/// One counted question of a survey.
#[derive(Serialize, ToSchema)]
pub struct SurveyQuestionView {
    pub field: String,
    pub label_ja: String,
    pub label_en: String,
    /// Several options may be chosen (percentages may add up to more than 100).
    pub multiple: bool,
    pub answered: u64,
    pub unanswered: u64,
    pub options: Vec<SurveyOptionView>,
}

/// The counts of one definition version (or, `version` absent, of all).
#[derive(Serialize, ToSchema)]
pub struct SurveyCountsView {
    pub version: Option<i64>,
    /// Answers counted: every imported answer but the rejected ones.
    pub respondents: u64,
    /// Answers a clerk rejected (not counted).
    pub rejected: u64,
    pub questions: Vec<SurveyQuestionView>,
}

/// A survey's results for the tenant (counts only; respondents are not
/// identified).
#[derive(Serialize, ToSchema)]
pub struct SurveyResultsView {
    pub procedure: String,
    pub title_ja: String,
    pub title_en: String,
    pub total: SurveyCountsView,
    /// Each definition version counted, newest first.
    pub versions: Vec<SurveyCountsView>,
    /// Answers on versions of the tenant's own definition its
    /// administrator has not accepted (awaiting a decision, refused, or
    /// the acceptance withdrawn): not counted.
    pub not_accepted: u64,
}

fn counts_view(c: crate::service::surveys::SurveyCounts) -> SurveyCountsView {
    SurveyCountsView {
        version: c.version,
        respondents: c.respondents,
        rejected: c.rejected,
        questions: c
            .questions
            .into_iter()
            .map(|q| SurveyQuestionView {
                field: q.field,
                label_ja: q.label_ja,
                label_en: q.label_en,
                multiple: q.multiple,
                answered: q.answered,
                unanswered: q.unanswered,
                options: q
                    .options
                    .into_iter()
                    .map(|o| SurveyOptionView {
                        value: o.value,
                        label_ja: o.label_ja,
                        label_en: o.label_en,
                        count: o.count,
                        percent: o.percent,
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// A survey's results (アンケート集計): answers counted per question and
/// option, for the tenant, all versions together and per version; counted
/// from the stored filings (a filing imported twice counts once), without
/// approval, leaving out rejected answers and answers on versions the
/// tenant administrator has not accepted (`not_accepted`). The same
/// readers as the inbox.
#[utoipa::path(get, path = "/api/v1/tenants/{municipality_code}/surveys/{survey}/results", tag = "inbox",
    security(("bearer" = []), ("session" = [])),
    params(super::params::SurveyPath),
    responses((status = 200, description = "The survey's counts.", body = SurveyResultsView),
              (status = 400, description = ERRORS, body = ErrorBody),
              (status = 401, description = ERRORS, body = ErrorBody),
              (status = 403, description = ERRORS, body = ErrorBody),
              (status = 404, description = "survey_not_found, or the tenant is unknown", body = ErrorBody),
              (status = 500, description = ERRORS, body = ErrorBody)))]
pub async fn survey_results(
    State(s): State<AppState>,
    Auth(caller): Auth,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<SurveyResultsView> {
    let Path((code, procedure)) = path.map_err(path_error)?;
    let tenant = tenant_code(&code)?;
    reader(&caller, &tenant)?;
    let not_found = || {
        ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "survey_not_found",
            "そのアンケートはありません。",
            "no such survey",
        )
    };
    if !is_procedure_id(&procedure) {
        return Err(ApiError::bad_request(
            "invalid_survey",
            "アンケートの指定が正しくありません（英小文字で始まり、英小文字・数字・_ の40文字以内）。",
            "the survey must start with a-z and use only a-z, 0-9 and _ (at most 40)",
        )
        .with_field("survey"));
    }
    let r = s
        .registry
        .survey_results(&tenant, &procedure)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(SurveyResultsView {
        procedure: r.procedure,
        title_ja: r.title_ja,
        title_en: r.title_en,
        total: counts_view(r.total),
        versions: r.versions.into_iter().map(counts_view).collect(),
        not_accepted: r.not_accepted,
    }))
}

/// One page of a procedure definition: its title and its fields' labels.
#[derive(Serialize, ToSchema)]
pub struct DefinitionPageView {
    pub title_ja: String,
    pub title_en: String,
    pub fields_ja: Vec<String>,
    pub fields_en: Vec<String>,
}

/// A procedure definition version the portal delivered, as the tenant
/// administrator decides on it.
#[derive(Serialize, ToSchema)]
pub struct OwnDefinitionView {
    /// The procedure's id, e.g. `sodaigomi`.
    pub procedure: String,
    pub version: i64,
    pub title_ja: String,
    pub title_en: String,
    /// `pending` (awaiting the administrator), `accepted`, `refused` or
    /// `withdrawn` (the acceptance withdrawn: awaiting a new decision).
    pub status: String,
    pub status_label_ja: String,
    /// What approving a filing made on it does, in words.
    pub action_ja: String,
    pub action_en: String,
    /// `registry_change`, `certificate`, `handoff` or `survey`.
    pub action_kind: String,
    /// Who may file, in words.
    pub identity_ja: String,
    pub identity_en: String,
    pub pages: Vec<DefinitionPageView>,
    /// SHA-256 (hex) of the definition's text as published.
    pub sha256: String,
    /// When it arrived (RFC 3339).
    pub imported_at: String,
    /// Who decided, and when (RFC 3339); absent while pending.
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
    /// Filings imported on this version.
    pub filings: i64,
}

fn rfc3339(micros: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_micros(micros)
        .map(|t| t.with_timezone(&crate::service::clock::jst()).to_rfc3339())
        .unwrap_or_default()
}

fn own_view(v: &crate::service::definitions::OwnVersion) -> OwnDefinitionView {
    use crate::service::definitions as d;
    let def = &v.own.definition;
    let (title_ja, title_en) = d::title(def);
    let (action_ja, action_en) = d::action_words(def);
    let (identity_ja, identity_en) = d::identity_words(def);
    let ja = d::pages_words(def, false);
    let en = d::pages_words(def, true);
    OwnDefinitionView {
        procedure: def.id().to_string(),
        version: i64::from(def.version()),
        title_ja,
        title_en,
        status: v.own.trust.code().to_string(),
        status_label_ja: v.own.trust.label_ja().to_string(),
        action_ja,
        action_en,
        action_kind: crate::store::procedure_definitions::kind_code(def.action_kind()).to_string(),
        identity_ja: identity_ja.to_string(),
        identity_en: identity_en.to_string(),
        pages: ja
            .into_iter()
            .zip(en)
            .map(|((tj, fj), (te, fe))| DefinitionPageView {
                title_ja: tj,
                title_en: te,
                fields_ja: fj,
                fields_en: fe,
            })
            .collect(),
        sha256: v.own.sha256.clone(),
        imported_at: rfc3339(v.own.imported_at.saturating_mul(1_000_000)),
        decided_by: v.own.decided_by.clone(),
        decided_at: v.own.decided_at.map(rfc3339),
        filings: v.filings,
    }
}

/// The tenant's own procedure definition versions the portal delivered
/// (not the shipped ones), awaiting a decision first: until the tenant
/// administrator accepts a version, no filing made on it is approved
/// (`definition_not_accepted`; after a withdrawal `definition_withdrawn`);
/// a refused version's filings can only be
/// rejected (`definition_refused`). Tenant administrators only.
#[utoipa::path(get, path = "/api/v1/tenants/{municipality_code}/procedure-definitions", tag = "inbox",
    security(("session" = [])),
    params(super::params::TenantPath),
    responses((status = 200, description = "The tenant's own definition versions.", body = [OwnDefinitionView]),
              (status = 400, description = ERRORS, body = ErrorBody),
              (status = 401, description = ERRORS, body = ErrorBody),
              (status = 403, description = ERRORS, body = ErrorBody),
              (status = 404, description = ERRORS, body = ErrorBody),
              (status = 500, description = ERRORS, body = ErrorBody)))]
pub async fn list_procedure_definitions(
    State(s): State<AppState>,
    Auth(caller): Auth,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Vec<OwnDefinitionView>> {
    let Path(code) = path.map_err(path_error)?;
    let tenant = tenant_code(&code)?;
    staff(
        &caller,
        &tenant,
        machi_domain::access::Permission::ManageAccounts,
    )?;
    let all = s.registry.own_definitions(&tenant).await?;
    Ok(Json(all.iter().map(own_view).collect()))
}

/// The tenant administrator's decision on one definition version.
#[derive(Deserialize, ToSchema)]
pub struct DefinitionDecisionBody {
    pub procedure: String,
    pub version: i64,
    /// `accept`, `refuse` or `withdraw` (an acceptance).
    pub decision: String,
}

/// Accepts or refuses a procedure definition version the portal
/// delivered that awaits a decision, or withdraws an acceptance
/// (`withdraw`: its filings cannot be approved until it is accepted
/// again, `definition_withdrawn`). A refusal is final and an acceptance
/// stands until withdrawn (`definition_decided`, 409); only an acceptance
/// can be withdrawn (`definition_not_accepted`, 409); a version the tenant
/// does not have: `definition_not_found`, 404. Recorded in the access log
/// with the SHA-256 of the text. A shipped version needs none
/// (`definition_shipped`, 409). Tenant administrators only.
#[utoipa::path(post, path = "/api/v1/tenants/{municipality_code}/procedure-definitions/decision", tag = "inbox",
    security(("session" = [])),
    params(super::params::TenantPath),
    request_body = DefinitionDecisionBody,
    responses((status = 200, description = "The version as decided.", body = OwnDefinitionView),
              (status = 400, description = ERRORS, body = ErrorBody),
              (status = 401, description = ERRORS, body = ErrorBody),
              (status = 403, description = ERRORS, body = ErrorBody),
              (status = 404, description = "definition_not_found, or the tenant is unknown", body = ErrorBody),
              (status = 409, description = "definition_decided: refused before, or accepted and not withdrawn; definition_not_accepted: nothing to withdraw; definition_shipped: a version shipped with machi needs no decision", body = ErrorBody),
              (status = 413, description = ERRORS, body = ErrorBody),
              (status = 415, description = ERRORS, body = ErrorBody),
              (status = 422, description = ERRORS, body = ErrorBody),
              (status = 500, description = ERRORS, body = ErrorBody)))]
pub async fn decide_procedure_definition(
    State(s): State<AppState>,
    Auth(caller): Auth,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<DefinitionDecisionBody>, JsonRejection>,
) -> ApiResult<OwnDefinitionView> {
    let Path(code) = path.map_err(path_error)?;
    let tenant = tenant_code(&code)?;
    let Json(b) = body.map_err(json_error)?;
    staff(
        &caller,
        &tenant,
        machi_domain::access::Permission::ManageAccounts,
    )?;
    let Some(decision) = crate::service::definitions::DefinitionDecision::parse(&b.decision) else {
        return Err(ApiError::bad_request(
            "invalid_decision",
            "decision は accept（受け入れる）、refuse（拒否する）、withdraw（受入れを取り消す）のどれかで指定してください。",
            "decision must be accept, refuse or withdraw",
        )
        .with_field("decision"));
    };
    s.registry
        .decide_definition(
            &tenant,
            b.procedure.trim(),
            b.version,
            decision,
            &caller.actor(),
        )
        .await?;
    let all = s.registry.own_definitions(&tenant).await?;
    all.iter()
        .find(|v| {
            v.own.definition.id() == b.procedure.trim()
                && i64::from(v.own.definition.version()) == b.version
        })
        .map(|v| Json(own_view(v)))
        .ok_or_else(ApiError::internal)
}

/// A filing the import refused and recorded (issue 11): the portal was
/// told (it dropped its sealed copy and shows the citizen it could not be
/// accepted, and why); it is never pulled again.
#[derive(Serialize, ToSchema)]
pub struct RefusedFilingView {
    /// The portal's id of the filing (to import it again:
    /// `POST …/filings/refused/{id}/reimport`).
    pub id: String,
    /// The 受付番号; absent when the filing did not open.
    pub receipt: Option<String>,
    /// The procedure and version as the portal listed them.
    pub procedure: String,
    pub version: i64,
    /// The procedure's title when the back office knows that version.
    pub title_ja: Option<String>,
    pub title_en: Option<String>,
    /// When the portal received it (RFC 3339).
    pub received_at: String,
    /// 受付日 in 和暦.
    pub received_on_wareki: String,
    /// Why it was refused: `does_not_open`, `not_base64`, `not_json`,
    /// `listing_mismatch`, `reserved_id`, `replayed`, `definition_refused`,
    /// `unknown_definition`, `answers_invalid`.
    pub code: String,
    pub reason_ja: String,
    pub reason_en: String,
    /// What the citizen's status page says: `unreadable`, `replayed`,
    /// `procedure` or `answers`.
    pub citizen_reason: String,
    /// When it was recorded (RFC 3339).
    pub refused_at: String,
    /// The filing it became when staff imported it again
    /// (`POST …/filings/refused/{id}/reimport`); the refusal stays listed.
    pub imported_as: Option<i64>,
}

/// Filings refused on import (取り込めなかった申請), newest first: each
/// recorded once with why, acknowledged to the portal as refused. The
/// read is logged (`filing.refusals`).
#[utoipa::path(get, path = "/api/v1/tenants/{municipality_code}/filings/refused", tag = "inbox",
    security(("bearer" = []), ("session" = [])),
    params(super::params::TenantPath),
    responses((status = 200, description = "The refused filings, newest first (at most 500).", body = [RefusedFilingView]),
              (status = 400, description = ERRORS, body = ErrorBody),
              (status = 401, description = ERRORS, body = ErrorBody),
              (status = 403, description = ERRORS, body = ErrorBody),
              (status = 404, description = ERRORS, body = ErrorBody),
              (status = 500, description = ERRORS, body = ErrorBody)))]
pub async fn list_refused_filings(
    State(s): State<AppState>,
    Auth(caller): Auth,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Vec<RefusedFilingView>> {
    let Path(code) = path.map_err(path_error)?;
    let tenant = tenant_code(&code)?;
    reader(&caller, &tenant)?;
    let rows = s
        .registry
        .inbox_refusals(&tenant, 500, &caller.actor())
        .await?;
    let eras = s.registry.eras();
    Ok(Json(
        rows.into_iter()
            .map(|r| {
                let f = r.refusal;
                RefusedFilingView {
                    id: f.portal_id.clone(),
                    received_on_wareki: chrono::DateTime::parse_from_rfc3339(&f.received_at)
                        .map(|t| {
                            eras.format_wareki(
                                t.with_timezone(&crate::service::clock::jst()).date_naive(),
                            )
                        })
                        .unwrap_or_default(),
                    receipt: f.receipt,
                    procedure: f.procedure,
                    version: f.version,
                    title_ja: r.title_ja,
                    title_en: r.title_en,
                    received_at: f.received_at,
                    code: f.code,
                    reason_ja: f.message_ja,
                    reason_en: f.message_en,
                    citizen_reason: f.citizen_reason,
                    refused_at: chrono::DateTime::<chrono::Utc>::from_timestamp(f.refused_at, 0)
                        .unwrap_or_default()
                        .to_rfc3339(),
                    imported_as: f.imported_as,
                }
            })
            .collect(),
    ))
}

/// A refusal that may pass later (the opening key, a definition or this
/// version of machi to be fixed here): the portal keeps the filing and
/// offers it after the others; it is quarantined at the first pull after
/// `quarantine_from` if it still fails.
#[derive(Serialize, ToSchema)]
pub struct DeferredFilingView {
    /// The portal's id of the filing.
    pub id: String,
    /// Why it was not imported: `does_not_open`, `not_base64`, `not_json`,
    /// `unknown_format`, `definition_invalid`, `unknown_definition`,
    /// `answers_invalid`.
    pub code: String,
    pub reason_ja: String,
    pub reason_en: String,
    /// When it was first deferred (RFC 3339).
    pub first_deferred_at: String,
    /// From when it is quarantined if it still fails (RFC 3339).
    pub quarantine_from: String,
    /// That day (Japan time) in 和暦.
    pub quarantine_from_wareki: String,
}

/// Filings not imported yet for a cause that may be fixed here
/// (取り込みを保留している申請), oldest first: not quarantined yet; each
/// is quarantined at the first pull a week after it was first deferred if
/// it still fails. The read is logged (`filing.deferrals`).
#[utoipa::path(get, path = "/api/v1/tenants/{municipality_code}/filings/deferred", tag = "inbox",
    security(("bearer" = []), ("session" = [])),
    params(super::params::TenantPath),
    responses((status = 200, description = "The deferred filings, oldest first (at most 500).", body = [DeferredFilingView]),
              (status = 400, description = ERRORS, body = ErrorBody),
              (status = 401, description = ERRORS, body = ErrorBody),
              (status = 403, description = ERRORS, body = ErrorBody),
              (status = 404, description = ERRORS, body = ErrorBody),
              (status = 500, description = ERRORS, body = ErrorBody)))]
pub async fn list_deferred_filings(
    State(s): State<AppState>,
    Auth(caller): Auth,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Vec<DeferredFilingView>> {
    let Path(code) = path.map_err(path_error)?;
    let tenant = tenant_code(&code)?;
    reader(&caller, &tenant)?;
    let rows = s
        .registry
        .inbox_deferrals(&tenant, 500, &caller.actor())
        .await?;
    let eras = s.registry.eras();
    let rfc = |t: i64| {
        chrono::DateTime::<chrono::Utc>::from_timestamp(t, 0)
            .unwrap_or_default()
            .to_rfc3339()
    };
    Ok(Json(
        rows.into_iter()
            .map(|d| {
                let due = d
                    .first_at
                    .saturating_add(crate::portal::QUARANTINE_AFTER_SECS);
                DeferredFilingView {
                    quarantine_from_wareki: chrono::DateTime::<chrono::Utc>::from_timestamp(due, 0)
                        .map(|t| {
                            eras.format_wareki(
                                t.with_timezone(&crate::service::clock::jst()).date_naive(),
                            )
                        })
                        .unwrap_or_default(),
                    first_deferred_at: rfc(d.first_at),
                    quarantine_from: rfc(due),
                    id: d.portal_id,
                    code: d.code,
                    reason_ja: d.message_ja,
                    reason_en: d.message_en,
                }
            })
            .collect(),
    ))
}

/// What a re-import of a quarantined filing did.
#[derive(Serialize, ToSchema)]
pub struct ReimportView {
    /// `imported` (now, as `filing_id`; the portal is told it was
    /// received), `already` (imported before: nothing done again) or
    /// `refused` (refused again: it stays quarantined, `code` and the
    /// reason say why).
    pub outcome: String,
    /// The filing in the inbox (`imported`, `already`).
    pub filing_id: Option<i64>,
    /// The import's code (`refused`): as `GET …/filings/refused`.
    pub code: Option<String>,
    pub message_ja: String,
    pub message_en: String,
}

/// Imports a quarantined filing again (取り込み直し), once the cause is
/// fixed (the opening key, a definition, this version of machi), with the
/// server's portal link and the same checks as a pull. Imported: it joins
/// the inbox as new and the portal is told it was received (its status
/// page no longer says it was not accepted). Imported before: nothing is
/// done again. Refused again: nothing changes. Each attempt is in the
/// access log (`filing.reimport`). Supervisors only; 503
/// `portal_not_configured` when this server has no portal link.
#[utoipa::path(post, path = "/api/v1/tenants/{municipality_code}/filings/refused/{portal_id}/reimport", tag = "inbox",
    security(("session" = [])),
    params(super::params::RefusalPath),
    responses((status = 200, description = "What the re-import did.", body = ReimportView),
              (status = 400, description = ERRORS, body = ErrorBody),
              (status = 401, description = ERRORS, body = ErrorBody),
              (status = 403, description = ERRORS, body = ErrorBody),
              (status = 404, description = ERRORS, body = ErrorBody),
              (status = 500, description = ERRORS, body = ErrorBody),
              (status = 503, description = ERRORS, body = ErrorBody)))]
pub async fn reimport_refused_filing(
    State(s): State<AppState>,
    Auth(caller): Auth,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<ReimportView> {
    let Path((code, portal_id)) = path.map_err(path_error)?;
    let tenant = tenant_code(&code)?;
    staff(&caller, &tenant, roles::REIMPORT)?;
    let r = s
        .registry
        .inbox_reimport(&tenant, &portal_id, &caller.actor())
        .await?;
    Ok(Json(reimport_view(&r)))
}

/// The outcome of a re-import in words (the API's and the page's).
pub fn reimport_view(r: &crate::service::inbox::Reimport) -> ReimportView {
    use crate::service::inbox::Reimport;
    match r {
        Reimport::Imported { filing_id } => ReimportView {
            outcome: "imported".into(),
            filing_id: Some(*filing_id),
            code: None,
            message_ja: format!(
                "取り込みました。申請管理の申請 {filing_id}（新着）です。ポータルには受け付けたことを伝えます。"
            ),
            message_en: format!(
                "Imported: filing {filing_id} in the inbox (new). The portal is told it was received."
            ),
        },
        Reimport::Already { filing_id } => ReimportView {
            outcome: "already".into(),
            filing_id: Some(*filing_id),
            code: None,
            message_ja: format!(
                "この申請はすでに取り込まれています（申請管理の申請 {filing_id}）。同じ処理は二度行いません。"
            ),
            message_en: format!(
                "This filing was imported already (filing {filing_id} in the inbox); nothing was done twice."
            ),
        },
        Reimport::Refused { code, ja, en } => ReimportView {
            outcome: "refused".into(),
            filing_id: None,
            code: Some(code.clone()),
            message_ja: format!(
                "取り込めませんでした。受け付けられなかった申請のままです。理由: {}",
                crate::service::inbox::japan_times(ja, false)
            ),
            message_en: format!(
                "Not imported: it stays refused. Why: {}",
                crate::service::inbox::japan_times(en, true)
            ),
        },
    }
}

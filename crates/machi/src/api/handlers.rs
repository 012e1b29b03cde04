//! The API's handlers.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::StatusCode;
use machi_domain::change::ChangeRequest;
use machi_domain::error::Localized;
use machi_domain::ids::{AddresseeNumber, HouseholdNumber, MunicipalityCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::Auth;
use super::edge::{json_error, path_error, query_error};
use super::error::{ApiError, ErrorBody};
use super::params::{self, given, int_param};
use super::views::*;
use crate::service::ServiceError;
use crate::service::events::CloudEvent;
use crate::service::registry::{ListedChange, SearchParams, encode_cursor};
use crate::store::records::OutboxEvent;
use crate::store::tenants::Tenant;
use machi_domain::access::Permission;

type ApiResult<T> = Result<Json<T>, ApiError>;

// What the error statuses mean, as the OpenAPI document says it.
const UNAUTHENTICATED: &str = "unauthenticated: no valid credential (a bearer access token, or a \
    staff session cookie; a session on a write also needs its X-CSRF-Token).";
const INTERNAL: &str = "internal_error: the database failed; nothing was changed.";
const BAD_PARAMETER: &str = "A parameter does not match its schema; `field` names it.";
const FORBIDDEN_READ: &str =
    "forbidden: the token lacks a `residents` scope or the role may not read personal data.";
const FORBIDDEN_PERSONAL: &str = "forbidden: the token lacks a `residents` scope or the role may \
    not read personal data; or support_measure_block: the person is under a support measure \
    (j440), or lives in the household or at the address of one, and this read was not released \
    (one message for all, naming nobody).";
const BODY_TOO_LARGE: &str = "body_too_large: the body is larger than 2 MB.";
const NOT_JSON: &str = "invalid_json: the body is not sent as application/json.";

fn parse<T>(field: &str, s: &str) -> Result<T, ApiError>
where
    T: std::str::FromStr,
    T::Err: Localized,
{
    s.parse::<T>()
        .map_err(|e| ApiError::localized(StatusCode::BAD_REQUEST, &e).with_field(field))
}

pub(super) fn tenant_code(s: &str) -> Result<MunicipalityCode, ApiError> {
    parse("municipality_code", s)
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    status: String,
    /// `sqlite` or `postgres`
    backend: String,
}

fn health(s: &AppState, status: &str) -> Json<Health> {
    let backend = match s.registry.store().backend() {
        crate::store::Backend::Sqlite => "sqlite",
        crate::store::Backend::Postgres => "postgres",
    };
    Json(Health {
        status: status.into(),
        backend: backend.into(),
    })
}

/// Liveness.
///
/// The process is up and answers HTTP. It asks nothing of the database (see
/// `/readyz`), so a database outage does not get the process restarted.
#[utoipa::path(get, path = "/healthz", tag = "platform", security(()),
    responses((status = 200, description = "The process answers.", body = Health)))]
pub async fn healthz(State(s): State<AppState>) -> Json<Health> {
    health(&s, "ok")
}

/// How long `/readyz` waits for the database.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Readiness.
///
/// 200 when the database answers a trivial query within 2 seconds;
/// otherwise 503 (send no traffic here until it answers again).
#[utoipa::path(get, path = "/readyz", tag = "platform", security(()),
    responses((status = 200, description = "The database answers.", body = Health),
              (status = 503, description = "not_ready: the database does not answer within 2 seconds.", body = ErrorBody)))]
pub async fn readyz(State(s): State<AppState>) -> ApiResult<Health> {
    if let Err(e) = s.registry.store().check_ready(READY_TIMEOUT).await {
        tracing::warn!(error = %e, "not ready");
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "データベースが応答しないため、受付できません。しばらくしてからやり直してください。",
            "not ready: the database does not answer; try again later",
        ));
    }
    Ok(health(&s, "ok"))
}

pub async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "指定の URL はありません。/openapi.json を参照してください。",
        "no such URL; see /openapi.json",
    )
}

#[derive(Serialize, ToSchema)]
pub struct TenantList {
    tenants: Vec<Tenant>,
}

/// Lists the municipalities (tenants) of this deployment: all of them for
/// the platform operator, the caller's own for anyone else.
#[utoipa::path(get, path = "/api/v1/tenants", tag = "platform",
    security(("bearer" = []), ("session" = [])),
    responses((status = 200, description = "The tenants the caller may see.", body = TenantList),
              (status = 401, description = UNAUTHENTICATED, body = ErrorBody),
              (status = 500, description = INTERNAL, body = ErrorBody)))]
pub async fn list_tenants(State(s): State<AppState>, Auth(caller): Auth) -> ApiResult<TenantList> {
    let all = s.registry.tenants().await?;
    // The platform operator sees every tenant; anyone else only their own.
    let tenants = if caller.allows(Permission::ManageTenants) {
        all
    } else {
        all.into_iter()
            .filter(|t| Some(&t.municipality_code) == caller.tenant())
            .collect()
    };
    Ok(Json(TenantList { tenants }))
}

#[derive(Deserialize, ToSchema)]
pub struct NewTenant {
    /// 団体コード, 6 digits with its check digit.
    #[schema(value_type = params::MunicipalityCodeSchema)]
    municipality_code: String,
    /// 1 to 64 characters, not all white space, no control characters;
    /// surrounding white space is removed.
    #[schema(
        example = "府中市",
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    name: String,
    /// Like `name`.
    #[schema(
        example = "東京都",
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    prefecture: String,
}

/// Adds a municipality (tenant). Platform operator only (a staff session).
#[utoipa::path(post, path = "/api/v1/tenants", tag = "platform",
    security(("session" = [])),
    request_body(content = NewTenant, example = json!({"municipality_code": "131202", "name": "練馬区", "prefecture": "東京都"})),
    responses((status = 201, description = "Created.", body = Tenant),
              (status = 400, description = "invalid_municipality_code or invalid_tenant (`field` names it), or invalid_json: the body is not JSON.", body = ErrorBody),
              (status = 401, description = UNAUTHENTICATED, body = ErrorBody),
              (status = 403, description = "forbidden: only the platform operator adds tenants, or the X-CSRF-Token is wrong.", body = ErrorBody),
              (status = 409, description = "tenant_exists.", body = ErrorBody),
              (status = 413, description = BODY_TOO_LARGE, body = ErrorBody),
              (status = 415, description = NOT_JSON, body = ErrorBody),
              (status = 422, description = "invalid_json: JSON of the wrong shape (a field missing or of the wrong type).", body = ErrorBody),
              (status = 500, description = INTERNAL, body = ErrorBody)))]
pub async fn create_tenant(
    State(s): State<AppState>,
    Auth(caller): Auth,
    body: Result<Json<NewTenant>, JsonRejection>,
) -> Result<(StatusCode, Json<Tenant>), ApiError> {
    if !caller.allows(Permission::ManageTenants) {
        return Err(ServiceError::Forbidden.into());
    }
    let Json(t) = body.map_err(json_error)?;
    let code = tenant_code(&t.municipality_code)?;
    let created = s
        .registry
        .create_tenant(code, &t.name, &t.prefecture)
        .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// One municipality (tenant): the caller's own, or any for the platform operator.
#[utoipa::path(get, path = "/api/v1/tenants/{municipality_code}", tag = "platform",
    security(("bearer" = []), ("session" = [])),
    params(params::TenantPath),
    responses((status = 200, description = "The tenant.", body = Tenant),
              (status = 400, description = BAD_PARAMETER, body = ErrorBody),
              (status = 401, description = UNAUTHENTICATED, body = ErrorBody),
              (status = 404, description = "tenant_not_found: no tenant with this code, or not the caller's.", body = ErrorBody),
              (status = 500, description = INTERNAL, body = ErrorBody)))]
pub async fn get_tenant(
    State(s): State<AppState>,
    Auth(caller): Auth,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Tenant> {
    let Path(code) = path.map_err(path_error)?;
    let code = tenant_code(&code)?;
    if !caller.allows(Permission::ManageTenants) && caller.tenant() != Some(&code) {
        return Err(ServiceError::TenantNotFound(code.to_string()).into());
    }
    Ok(Json(s.registry.tenant(&code).await?))
}

/// "As of" parameters: the state on an effective date and/or as recorded at a time.
/// "As of" parameters ([`params::AsOfParams`]): the state on an effective
/// date and/or as recorded at an instant.
#[derive(Deserialize)]
pub struct AsOfQuery {
    as_of: Option<String>,
    recorded_as_of: Option<String>,
}

/// A resident's record (current, or as of a date / recording time) with the whole history.
#[utoipa::path(get, path = "/api/v1/tenants/{municipality_code}/residents/{addressee_number}", tag = "registry",
    security(("bearer" = []), ("session" = [])),
    params(params::ResidentPath, params::AsOfParams),
    responses((status = 200, description = "The record and its history.", body = ResidentDetail),
              (status = 400, description = BAD_PARAMETER, body = ErrorBody),
              (status = 401, description = UNAUTHENTICATED, body = ErrorBody),
              (status = 403, description = FORBIDDEN_PERSONAL, body = ErrorBody),
              (status = 404, description = "tenant_not_found, person_not_found, or not_recorded_as_of: the person has no record at the requested time.", body = ErrorBody),
              (status = 500, description = INTERNAL, body = ErrorBody)))]
pub async fn get_resident(
    State(s): State<AppState>,
    Auth(caller): Auth,
    path: Result<Path<(String, String)>, PathRejection>,
    q: Result<Query<AsOfQuery>, QueryRejection>,
) -> ApiResult<ResidentDetail> {
    let Path((code, person)) = path.map_err(path_error)?;
    let Query(q) = q.map_err(query_error)?;
    let tenant = tenant_code(&code)?;
    caller.check(&tenant, Permission::ReadPersonal)?;
    let actor = caller.actor();
    let person: AddresseeNumber = parse("addressee_number", &person)?;
    let as_of = s
        .registry
        .parse_as_of(q.as_of.as_deref(), q.recorded_as_of.as_deref())?;
    let (row, history, protection) = s
        .registry
        .resident_protected(&tenant, &person, as_of, &actor)
        .await?;
    let eras = s.registry.eras();
    Ok(Json(ResidentDetail {
        record: ResidentView::new(&row, eras).protected(protection.as_ref()),
        history: history.iter().map(|r| ResidentView::new(r, eras)).collect(),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct HistoryList {
    /// 宛名番号
    addressee_number: String,
    /// Oldest first; 履歴番号 1, 2, 3, ...
    history: Vec<ResidentView>,
}

/// `recorded_as_of` ([`params::RecordedAsOfParams`]).
#[derive(Deserialize)]
pub struct RecordedAsOfQuery {
    recorded_as_of: Option<String>,
}

/// A resident's history rows (j200, j350), as recorded (optionally at a past instant).
#[utoipa::path(get, path = "/api/v1/tenants/{municipality_code}/residents/{addressee_number}/history", tag = "registry",
    security(("bearer" = []), ("session" = [])),
    params(params::ResidentPath, params::RecordedAsOfParams),
    responses((status = 200, description = "The history rows.", body = HistoryList),
              (status = 400, description = BAD_PARAMETER, body = ErrorBody),
              (status = 401, description = UNAUTHENTICATED, body = ErrorBody),
              (status = 403, description = FORBIDDEN_PERSONAL, body = ErrorBody),
              (status = 404, description = "tenant_not_found, person_not_found, or not_recorded_as_of.", body = ErrorBody),
              (status = 500, description = INTERNAL, body = ErrorBody)))]
pub async fn get_resident_history(
    State(s): State<AppState>,
    Auth(caller): Auth,
    path: Result<Path<(String, String)>, PathRejection>,
    q: Result<Query<RecordedAsOfQuery>, QueryRejection>,
) -> ApiResult<HistoryList> {
    let Path((code, person)) = path.map_err(path_error)?;
    let Query(q) = q.map_err(query_error)?;
    let tenant = tenant_code(&code)?;
    caller.check(&tenant, Permission::ReadPersonal)?;
    let actor = caller.actor();
    let person: AddresseeNumber = parse("addressee_number", &person)?;
    let as_of = s.registry.parse_as_of(None, q.recorded_as_of.as_deref())?;
    let (_, history) = s.registry.resident(&tenant, &person, as_of, &actor).await?;
    let eras = s.registry.eras();
    Ok(Json(HistoryList {
        addressee_number: person.to_string(),
        history: history.iter().map(|r| ResidentView::new(r, eras)).collect(),
    }))
}

/// A household with its resident members (current, or as of a date / recording time).
#[utoipa::path(get, path = "/api/v1/tenants/{municipality_code}/households/{household_number}", tag = "registry",
    security(("bearer" = []), ("session" = [])),
    params(params::HouseholdPath, params::AsOfParams),
    responses((status = 200, description = "The household and its members.", body = HouseholdView),
              (status = 400, description = BAD_PARAMETER, body = ErrorBody),
              (status = 401, description = UNAUTHENTICATED, body = ErrorBody),
              (status = 403, description = FORBIDDEN_PERSONAL, body = ErrorBody),
              (status = 404, description = "tenant_not_found, or household_not_found: no household with this number (at the requested time).", body = ErrorBody),
              (status = 500, description = INTERNAL, body = ErrorBody)))]
pub async fn get_household(
    State(s): State<AppState>,
    Auth(caller): Auth,
    path: Result<Path<(String, String)>, PathRejection>,
    q: Result<Query<AsOfQuery>, QueryRejection>,
) -> ApiResult<HouseholdView> {
    let Path((code, household)) = path.map_err(path_error)?;
    let Query(q) = q.map_err(query_error)?;
    let tenant = tenant_code(&code)?;
    caller.check(&tenant, Permission::ReadPersonal)?;
    let actor = caller.actor();
    let household: HouseholdNumber = parse("household_number", &household)?;
    let as_of = s
        .registry
        .parse_as_of(q.as_of.as_deref(), q.recorded_as_of.as_deref())?;
    let members = s
        .registry
        .household(&tenant, &household, as_of, &actor)
        .await?;
    let eras = s.registry.eras();
    let head = members.iter().find(|m| m.record.relationship.is_head());
    let Some(first) = members.first().map(|m| &m.record) else {
        return Err(ServiceError::HouseholdNotFound(household.to_string()).into());
    };
    Ok(Json(HouseholdView {
        household_number: household.to_string(),
        address: first.address.address.clone(),
        address_annex: first.address.annex.clone(),
        head_addressee_number: head.map(|h| h.record.addressee_number.to_string()),
        head_name: first.head_name.as_ref().map(|n| n.as_str().to_string()),
        members: members.iter().map(|m| ResidentView::new(m, eras)).collect(),
    }))
}

/// Submits a change (異動). Validated against the current state. A caller
/// who may commit directly (a supervisor, or a client the tenant allowed to,
/// by a second person's approval) gets 201: the history rows, the audit
/// entry and the linkage event are committed in one transaction. Anyone
/// else who may write changes gets 202: the change is entered provisionally
/// (仮登録, j530) and becomes a change when a supervisor approves it. On any
/// error nothing is written.
#[utoipa::path(post, path = "/api/v1/tenants/{municipality_code}/changes", tag = "changes",
    security(("bearer" = []), ("session" = [])),
    params(params::TenantPath),
    request_body(content = ChangeRequestDoc,
        description = "The change: what every change carries (effective_date, filed_on, input_place, input_terminal) and `command`, tagged by `type`.",
        example = json!({"effective_date": "2024-04-01", "filed_on": "2024-04-01", "input_place": "市民課窓口", "input_terminal": "T-01",
            "command": {"type": "move_in", "previous_address": "東京都調布市小島町二丁目",
                "persons": [{"name": "見本　花子", "name_kana": "ミホン　ハナコ", "birth_date": "平成2年5月6日", "sex": "female", "relationship": "世帯主"}],
                "household": {"type": "new", "address": {"address": "東京都府中市宮西町二丁目24番地", "annex": "府中ハイツ101", "postal_code": "183-0056"}}}})),
    responses((status = 201, description = "Committed: the rows appended and the event published (a supervisor, or a client the tenant allowed direct commits by an approved proposal).", body = ChangeResult),
              (status = 202, description = "Entered provisionally (仮登録, j530): validated, not committed; it waits for a supervisor's approval. Follow it at provisional-changes/{pending_id}.", body = ProvisionalChange),
              (status = 400, description = "A parameter does not match its schema (`field` names it), or invalid_json: the body is not JSON.", body = ErrorBody),
              (status = 401, description = UNAUTHENTICATED, body = ErrorBody),
              (status = 403, description = "forbidden: the token lacks the `changes:write` scope, the role may not enter changes, or the X-CSRF-Token is wrong; or support_measure_block: the change names a person or household a support measure covers (j410, j440) and no release of viewing was granted to this caller (checked before validation; the release is used by the attempt).", body = ErrorBody),
              (status = 404, description = "tenant_not_found.", body = ErrorBody),
              (status = 409, description = "The change conflicts with the registry (a duplicate identity, later changes, a change that cannot be cancelled, or another change to the same record committed first); nothing was written.", body = ErrorBody),
              (status = 413, description = BODY_TOO_LARGE, body = ErrorBody),
              (status = 415, description = NOT_JSON, body = ErrorBody),
              (status = 422, description = "The change is refused by the rules (a field wrong or missing: `field` names it), or invalid_json: JSON of the wrong shape; nothing was written.", body = ErrorBody),
              (status = 500, description = INTERNAL, body = ErrorBody)))]
pub async fn submit_change(
    State(s): State<AppState>,
    Auth(caller): Auth,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<ChangeRequest>, JsonRejection>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let Path(code) = path.map_err(path_error)?;
    let tenant = tenant_code(&code)?;
    caller.check(&tenant, Permission::EnterChange)?;
    let actor = caller.actor();
    let Json(req) = body.map_err(json_error)?;
    if !caller.commits_directly() {
        let (pending_id, out) = s.registry.enter_provisional(&tenant, &req, &actor).await?;
        return Ok((
            StatusCode::ACCEPTED,
            Json(ProvisionalChange {
                pending_id,
                status: "pending".into(),
                reason: out.reason.code().to_string(),
                reason_label_ja: out.reason.label_ja().to_string(),
                persons: out
                    .existing_persons()
                    .iter()
                    .map(|a| a.to_string())
                    .collect(),
                new_persons: out.new_persons(),
                notices: out.notices,
            }),
        )
            .into_response());
    }
    let out = s.registry.submit(&tenant, &req, &actor).await?;
    let eras = s.registry.eras();
    let touched: Vec<AddresseeNumber> = out.persons();
    let restricted = s.registry.support_covered(&tenant, &touched).await?;
    Ok((
        StatusCode::CREATED,
        Json(ChangeResult {
            change_id: out.change_id,
            reason: out.reason.code().to_string(),
            reason_label_ja: out.reason.label_ja().to_string(),
            rows: out
                .rows
                .iter()
                .map(|r| {
                    ResidentEntry::new(r, eras, restricted.contains(&r.record.addressee_number))
                })
                .collect(),
            notices: out.notices,
            event_seq: out.event_seq,
        }),
    )
        .into_response())
}

/// Where a provisional change stands (仮登録, j530): pending, approved (with
/// the committed change's id), sent back (with the comment) or withdrawn.
/// A caller who may not approve sees only what they entered themselves.
#[utoipa::path(get, path = "/api/v1/tenants/{municipality_code}/provisional-changes/{pending_id}", tag = "changes",
    security(("bearer" = []), ("session" = [])),
    params(params::ProvisionalPath),
    responses((status = 200, description = "Where the provisional change stands.", body = ProvisionalStatus),
              (status = 400, description = BAD_PARAMETER, body = ErrorBody),
              (status = 401, description = UNAUTHENTICATED, body = ErrorBody),
              (status = 403, description = "forbidden: the token lacks the `changes:write` scope or the role may not enter changes.", body = ErrorBody),
              (status = 404, description = "tenant_not_found, or pending_not_found: no such provisional change, or one the caller neither entered nor may approve.", body = ErrorBody),
              (status = 500, description = INTERNAL, body = ErrorBody)))]
pub async fn get_provisional_change(
    State(s): State<AppState>,
    Auth(caller): Auth,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<ProvisionalStatus> {
    let Path((code, id)) = path.map_err(path_error)?;
    let tenant = tenant_code(&code)?;
    caller.check(&tenant, Permission::EnterChange)?;
    let id: i64 = params::integer_text("pending_id", &id).map_err(|_| {
        ApiError::bad_request(
            "invalid_pending_id",
            format!("仮登録番号「{id}」は数字で指定してください。"),
            format!("provisional change id {id:?} must be a number"),
        )
        .with_field("pending_id")
    })?;
    let p = s.registry.pending(&tenant, id).await?;
    if !caller.allows(Permission::ApproveChange) && p.entered_by != caller.actor().operator {
        return Err(ServiceError::PendingNotFound(id).into());
    }
    Ok(Json(ProvisionalStatus {
        pending_id: p.pending_id,
        status: p.status.as_str().to_string(),
        reason: p.reason,
        entered_at: rfc3339(p.entered_at),
        decided_at: p.decided_at.map(rfc3339),
        change_id: p.change_id,
        comment: p.comment,
    }))
}

/// Schema of the change request (the domain's `ChangeRequest`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ChangeRequestDoc {
    /// 異動日 (和暦 or 西暦); not after today except for 転出 (j480).
    #[schema(example = "令和7年4月1日")]
    effective_date: String,
    /// 届出日
    filed_on: Option<String>,
    /// 入力場所
    input_place: Option<String>,
    /// 入力端末
    input_terminal: Option<String>,
    /// j490: leave a household of two or more without a head.
    allow_headless_household: Option<bool>,
    command: machi_domain::change::ChangeCommand,
}

/// A page of changes ([`params::PageParams`]).
#[derive(Deserialize)]
pub struct PageQuery {
    after: Option<String>,
    limit: Option<String>,
}

/// Changes of the tenant, newest first.
///
/// A change concerning a person a support measure covers (the protected
/// person, or anyone in their household or at their address; j440) is
/// listed withheld: `{change_id, withheld: "support_measure", notice_ja,
/// notice_en}`, nothing of its reason, dates, persons or content.
#[utoipa::path(get, path = "/api/v1/tenants/{municipality_code}/changes", tag = "changes",
    security(("bearer" = []), ("session" = [])),
    params(params::TenantPath, params::PageParams),
    responses((status = 200, description = "A page of changes.", body = ChangeList),
              (status = 400, description = BAD_PARAMETER, body = ErrorBody),
              (status = 401, description = UNAUTHENTICATED, body = ErrorBody),
              (status = 403, description = "forbidden: the token lacks a `changes` scope or the role may not read changes.", body = ErrorBody),
              (status = 404, description = "tenant_not_found.", body = ErrorBody),
              (status = 500, description = INTERNAL, body = ErrorBody)))]
pub async fn list_changes(
    State(s): State<AppState>,
    Auth(caller): Auth,
    path: Result<Path<String>, PathRejection>,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> ApiResult<ChangeList> {
    let Path(code) = path.map_err(path_error)?;
    let Query(q) = q.map_err(query_error)?;
    let tenant = tenant_code(&code)?;
    caller.check(&tenant, Permission::ReadChanges)?;
    let actor = caller.actor();
    let before = given(&q.after).map(decode_id_cursor).transpose()?;
    let limit = int_param("limit", &q.limit, 50, 1, 200)?;
    let (changes, more) = s.registry.changes(&tenant, before, limit, &actor).await?;
    let next = if more {
        changes.last().map(|c| encode_id_cursor(c.change_id()))
    } else {
        None
    };
    let eras = s.registry.eras();
    Ok(Json(ChangeList {
        changes: changes
            .iter()
            .map(|c| match c {
                ListedChange::Shown(c) => ChangeEntry::Shown(Box::new(ChangeView::new(c, eras))),
                ListedChange::Withheld(id) => ChangeEntry::Withheld(WithheldChange::new(*id)),
            })
            .collect(),
        next,
    }))
}

fn encode_id_cursor(id: i64) -> String {
    hex::encode(id.to_string())
}

fn decode_id_cursor(c: &str) -> Result<i64, ApiError> {
    hex::decode(c.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_cursor",
                "ページ位置（cursor）が正しくありません。",
                "the page cursor is not valid",
            )
            .with_field("after")
        })
}

/// One change (異動).
#[utoipa::path(get, path = "/api/v1/tenants/{municipality_code}/changes/{change_id}", tag = "changes",
    security(("bearer" = []), ("session" = [])),
    params(params::ChangePath),
    responses((status = 200, description = "The change.", body = ChangeView),
              (status = 400, description = BAD_PARAMETER, body = ErrorBody),
              (status = 401, description = UNAUTHENTICATED, body = ErrorBody),
              (status = 403, description = "forbidden: the token lacks a `changes` scope or the role may not read changes; or support_measure_block: the change concerns a person a support measure covers (j440: the protected person, or someone in their household or at their address) and this read was not released.", body = ErrorBody),
              (status = 404, description = "tenant_not_found, or change_not_found.", body = ErrorBody),
              (status = 500, description = INTERNAL, body = ErrorBody)))]
pub async fn get_change(
    State(s): State<AppState>,
    Auth(caller): Auth,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<ChangeView> {
    let Path((code, id)) = path.map_err(path_error)?;
    let tenant = tenant_code(&code)?;
    caller.check(&tenant, Permission::ReadChanges)?;
    let actor = caller.actor();
    let id: i64 = params::integer_text("change_id", &id).map_err(|_| {
        ApiError::bad_request(
            "invalid_change_id",
            format!("異動番号「{id}」は数字で指定してください。"),
            format!("change id {id:?} must be a number"),
        )
        .with_field("change_id")
    })?;
    let c = s.registry.change(&tenant, id, &actor).await?;
    Ok(Json(ChangeView::new(&c, s.registry.eras())))
}

/// Search conditions ([`params::SearchConditions`]).
#[derive(Deserialize)]
pub struct SearchQuery {
    name: Option<String>,
    birth_date: Option<String>,
    address: Option<String>,
    addressee_number: Option<String>,
    household_number: Option<String>,
    include_history: Option<String>,
    include_removed: Option<String>,
    after: Option<String>,
    limit: Option<String>,
}

/// Searches residents (j320–j340).
///
/// Support measures (j380, j410, j440): a search with an address or a
/// 世帯番号 never answers with a protected person or anyone in their
/// household or at their address, so it cannot confirm where they live.
/// A search by name, reading, birth date or 宛名番号 finds them as a
/// restricted entry (`support_measure: "restricted"`): who they are and a
/// notice, the same for each of them, no address, household, head or
/// relationship.
#[utoipa::path(get, path = "/api/v1/tenants/{municipality_code}/search", tag = "registry",
    security(("bearer" = []), ("session" = [])),
    params(params::TenantPath, params::SearchConditions),
    responses((status = 200, description = "A page of matching persons; the address items of a person under a support measure are withheld (j380).", body = SearchResults),
              (status = 400, description = "A parameter does not match its schema (`field` names it), or empty_search: none of name, birth_date, address, addressee_number, household_number was given (`field` is `query`).", body = ErrorBody),
              (status = 401, description = UNAUTHENTICATED, body = ErrorBody),
              (status = 403, description = FORBIDDEN_READ, body = ErrorBody),
              (status = 404, description = "tenant_not_found.", body = ErrorBody),
              (status = 500, description = INTERNAL, body = ErrorBody)))]
pub async fn search(
    State(s): State<AppState>,
    Auth(caller): Auth,
    path: Result<Path<String>, PathRejection>,
    q: Result<Query<SearchQuery>, QueryRejection>,
) -> ApiResult<SearchResults> {
    let Path(code) = path.map_err(path_error)?;
    let Query(q) = q.map_err(query_error)?;
    let tenant = tenant_code(&code)?;
    caller.check(&tenant, Permission::ReadPersonal)?;
    let actor = caller.actor();
    let include_history = params::bool_param("include_history", &q.include_history)?;
    let include_removed = params::bool_param("include_removed", &q.include_removed)?;
    let limit = int_param("limit", &q.limit, 50, 1, 200)?;
    let page = s
        .registry
        .search(
            &tenant,
            &SearchParams {
                name: q.name,
                birth_date: q.birth_date,
                address: q.address,
                addressee_number: q.addressee_number,
                household_number: q.household_number,
                include_history,
                include_removed,
                after: given(&q.after).map(str::to_string),
                limit,
            },
            &actor,
        )
        .await?;
    let eras = s.registry.eras();
    Ok(Json(SearchResults {
        results: page
            .rows
            .iter()
            .map(|r| {
                ResidentEntry::new(
                    r,
                    eras,
                    page.restricted.contains(&r.record.addressee_number),
                )
            })
            .collect(),
        next: page.next_after.as_ref().map(encode_cursor),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct EventList {
    /// CloudEvents 1.0 (JSON format), in sequence order.
    events: Vec<CloudEvent>,
    /// The `after` for the next pull.
    next_after: i64,
}

/// The linkage feed (pull): every event (changes, support measures,
/// certificate issues, imports) as CloudEvents, in order, after a sequence
/// number; filtered by type; with an optional long-poll wait.
///
/// The data of a change concerning a person a support measure covers
/// (j440) is withheld: `{change_id, withheld: "support_measure"}`; the
/// event keeps its sequence, id and type. Webhooks deliver the same.
#[utoipa::path(get, path = "/api/v1/tenants/{municipality_code}/events", tag = "changes",
    security(("bearer" = []), ("session" = [])),
    params(params::TenantPath, params::EventParams),
    responses((status = 200, description = "The events after `after`, oldest first.", body = EventList),
              (status = 400, description = BAD_PARAMETER, body = ErrorBody),
              (status = 401, description = UNAUTHENTICATED, body = ErrorBody),
              (status = 403, description = "forbidden: the token lacks an `events` scope or the role may not read the feed.", body = ErrorBody),
              (status = 404, description = "tenant_not_found.", body = ErrorBody),
              (status = 409, description = "invalid_after: `after` is past the latest event (a cursor there would skip the events between); the message names the latest.", body = ErrorBody),
              (status = 500, description = INTERNAL, body = ErrorBody)))]
pub async fn list_events(
    State(s): State<AppState>,
    Auth(caller): Auth,
    path: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> ApiResult<EventList> {
    let Path(code) = path.map_err(path_error)?;
    let tenant = tenant_code(&code)?;
    caller.check(&tenant, Permission::ReadEvents)?;
    let (mut after, mut limit, mut wait) = (None, None, None);
    let mut types: Vec<String> = Vec::new();
    for (k, v) in url::form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes()) {
        match &*k {
            "after" => after = Some(v.into_owned()),
            "limit" => limit = Some(v.into_owned()),
            "wait" => wait = Some(v.into_owned()),
            "type" => types.push(v.into_owned()),
            _ => {}
        }
    }
    let after = int_param("after", &after, 0, 0, i64::MAX)?;
    let limit = int_param("limit", &limit, 100, 1, 1000)?;
    let wait = int_param("wait", &wait, 0, 0, params::MAX_WAIT_SECONDS)? as u64;
    let types =
        crate::service::events::parse_type_filter("type", types.iter().map(String::as_str))?;
    let actor = caller.actor();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(wait);
    let mut commits = s.registry.store().commits();
    let events: Vec<OutboxEvent> = loop {
        commits.borrow_and_update();
        let events = s
            .registry
            .events_of(&tenant, after, &types, limit, &actor)
            .await
            .map_err(|e| match e {
                // Well-formed but past the latest event: the state, not
                // the request's shape, refuses it.
                ServiceError::Invalid {
                    code: "invalid_after",
                    message_ja,
                    message_en,
                    ..
                } => ApiError::new(
                    StatusCode::CONFLICT,
                    "invalid_after",
                    message_ja,
                    message_en,
                )
                .with_field("after"),
                e => e.into(),
            })?;
        if !events.is_empty() || tokio::time::Instant::now() >= deadline {
            break events;
        }
        // Woken by a commit of this process, and on PostgreSQL by other
        // processes' events (`store::listen`); the fallback poll bounds a
        // lost wake-up (a listener reconnecting).
        let poll = tokio::time::Instant::now() + s.registry.feed_poll();
        tokio::select! {
            _ = commits.changed() => {}
            _ = tokio::time::sleep_until(poll.min(deadline)) => {}
        }
    };
    let next_after = events.last().map_or(after, |e| e.seq);
    let code = tenant.to_string();
    Ok(Json(EventList {
        events: events
            .iter()
            .map(|e| crate::service::events::cloud_event(&code, e, rfc3339))
            .collect(),
        next_after,
    }))
}

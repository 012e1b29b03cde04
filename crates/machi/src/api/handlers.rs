//! The API's handlers.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use machi_domain::change::ChangeRequest;
use machi_domain::error::Localized;
use machi_domain::ids::{AddresseeNumber, HouseholdNumber, MunicipalityCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::Auth;
use super::error::{ApiError, ErrorBody};
use super::views::*;
use crate::service::ServiceError;
use crate::service::registry::{SearchParams, encode_cursor};
use crate::store::records::OutboxEvent;
use crate::store::tenants::Tenant;
use machi_domain::access::Permission;

type ApiResult<T> = Result<Json<T>, ApiError>;

fn path_error(e: PathRejection) -> ApiError {
    ApiError::bad_request(
        "invalid_path",
        format!("URL のパスが正しくありません: {e}"),
        format!("invalid path: {e}"),
    )
}

fn query_error(e: QueryRejection) -> ApiError {
    ApiError::bad_request(
        "invalid_query",
        format!("クエリパラメータが正しくありません: {}", e.body_text()),
        format!("invalid query parameters: {}", e.body_text()),
    )
}

fn json_error(e: JsonRejection) -> ApiError {
    let status = match &e {
        JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        JsonRejection::JsonDataError(_) => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError::new(
        status,
        "invalid_json",
        format!(
            "リクエスト本文（JSON）が正しくありません: {}",
            e.body_text()
        ),
        format!("invalid request body: {}", e.body_text()),
    )
}

fn parse<T>(field: &str, s: &str) -> Result<T, ApiError>
where
    T: std::str::FromStr,
    T::Err: Localized,
{
    s.parse::<T>()
        .map_err(|e| ApiError::localized(StatusCode::BAD_REQUEST, &e).with_field(field))
}

fn tenant_code(s: &str) -> Result<MunicipalityCode, ApiError> {
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
#[utoipa::path(get, path = "/healthz", tag = "platform",
    responses((status = 200, body = Health)))]
pub async fn healthz(State(s): State<AppState>) -> Json<Health> {
    health(&s, "ok")
}

/// How long `/readyz` waits for the database.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Readiness.
///
/// 200 when the database answers a trivial query within 2 seconds;
/// otherwise 503 (send no traffic here until it answers again).
#[utoipa::path(get, path = "/readyz", tag = "platform",
    responses((status = 200, body = Health), (status = 503, body = ErrorBody)))]
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

/// Lists the municipalities (tenants) of this deployment.
#[utoipa::path(get, path = "/api/v1/tenants", tag = "platform",
    responses((status = 200, body = TenantList)))]
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
    #[schema(example = "132063")]
    municipality_code: String,
    #[schema(example = "府中市")]
    name: String,
    #[schema(example = "東京都")]
    prefecture: String,
}

/// Adds a municipality (tenant).
#[utoipa::path(post, path = "/api/v1/tenants", tag = "platform", request_body = NewTenant,
    responses((status = 201, body = Tenant), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
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

/// One municipality (tenant).
#[utoipa::path(get, path = "/api/v1/tenants/{municipality_code}", tag = "platform",
    params(("municipality_code" = String, Path, description = "団体コード")),
    responses((status = 200, body = Tenant), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
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
#[derive(Deserialize, IntoParams)]
pub struct AsOfQuery {
    /// The state on this effective date (和暦 or 西暦, e.g. `2024-04-01` or `令和6年4月1日`).
    as_of: Option<String>,
    /// The state as the registry recorded it at this instant (RFC 3339).
    recorded_as_of: Option<String>,
}

/// A resident's record (current, or as of a date / recording time) with the whole history.
#[utoipa::path(get, path = "/api/v1/tenants/{municipality_code}/residents/{addressee_number}", tag = "registry",
    params(("municipality_code" = String, Path, description = "団体コード"),
           ("addressee_number" = String, Path, description = "宛名番号"), AsOfQuery),
    responses((status = 200, body = ResidentDetail), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
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
    let (row, history) = s.registry.resident(&tenant, &person, as_of, &actor).await?;
    let eras = s.registry.eras();
    let protection = s
        .registry
        .support_protection(&tenant, std::slice::from_ref(&person))
        .await?;
    Ok(Json(ResidentDetail {
        record: ResidentView::new(&row, eras).protected(protection.get(&person), false),
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

/// A resident's history rows (j200, j350), as recorded (optionally at a past instant).
#[utoipa::path(get, path = "/api/v1/tenants/{municipality_code}/residents/{addressee_number}/history", tag = "registry",
    params(("municipality_code" = String, Path, description = "団体コード"),
           ("addressee_number" = String, Path, description = "宛名番号"), AsOfQuery),
    responses((status = 200, body = HistoryList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_resident_history(
    State(s): State<AppState>,
    Auth(caller): Auth,
    path: Result<Path<(String, String)>, PathRejection>,
    q: Result<Query<AsOfQuery>, QueryRejection>,
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
    params(("municipality_code" = String, Path, description = "団体コード"),
           ("household_number" = String, Path, description = "世帯番号"), AsOfQuery),
    responses((status = 200, body = HouseholdView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
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

/// Submits a change (異動). Validated against the current state; on success
/// the history rows, the audit entry and the linkage event are committed in
/// one transaction. On any error nothing is written.
#[utoipa::path(post, path = "/api/v1/tenants/{municipality_code}/changes", tag = "changes",
    params(("municipality_code" = String, Path, description = "団体コード")),
    request_body(content = ChangeRequestDoc, description = "The change: what every change carries (effective_date, filed_on, input_place, input_terminal) and `command`, tagged by `type`."),
    responses((status = 201, body = ChangeResult), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn submit_change(
    State(s): State<AppState>,
    Auth(caller): Auth,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<ChangeRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<ChangeResult>), ApiError> {
    let Path(code) = path.map_err(path_error)?;
    let tenant = tenant_code(&code)?;
    caller.check(&tenant, Permission::ApproveChange)?;
    let actor = caller.actor();
    let Json(req) = body.map_err(json_error)?;
    let out = s.registry.submit(&tenant, &req, &actor).await?;
    let eras = s.registry.eras();
    let touched: Vec<AddresseeNumber> = out
        .rows
        .iter()
        .map(|r| r.record.addressee_number.clone())
        .collect();
    let protected = s.registry.support_protection(&tenant, &touched).await?;
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
                    ResidentView::new(r, eras)
                        .protected(protected.get(&r.record.addressee_number), true)
                })
                .collect(),
            notices: out.notices,
            event_seq: out.event_seq,
        }),
    ))
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

#[derive(Deserialize, IntoParams)]
pub struct PageQuery {
    /// Cursor from the previous page's `next`.
    after: Option<String>,
    /// Page size (1–200, default 50).
    limit: Option<i64>,
}

/// Changes of the tenant, newest first.
#[utoipa::path(get, path = "/api/v1/tenants/{municipality_code}/changes", tag = "changes",
    params(("municipality_code" = String, Path, description = "団体コード"), PageQuery),
    responses((status = 200, body = ChangeList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
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
    let before = match q.after.as_deref() {
        Some(c) => Some(decode_id_cursor(c)?),
        None => None,
    };
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let mut changes = s
        .registry
        .changes(&tenant, before, limit + 1, &actor)
        .await?;
    let next = if changes.len() as i64 > limit {
        changes.truncate(limit as usize);
        changes.last().map(|c| encode_id_cursor(c.change_id))
    } else {
        None
    };
    let eras = s.registry.eras();
    let persons: Vec<AddresseeNumber> = changes
        .iter()
        .flat_map(|c| c.persons.iter().cloned())
        .collect();
    let protected = s.registry.support_protection(&tenant, &persons).await?;
    Ok(Json(ChangeList {
        changes: changes
            .iter()
            .map(|c| {
                let mut v = ChangeView::new(c, eras);
                // j380: what was entered for a protected person is withheld
                // here; the change itself is readable after a release.
                if c.persons.iter().any(|p| protected.contains_key(p)) {
                    v.request = serde_json::json!({ "withheld": "support_measure" });
                }
                v
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
    params(("municipality_code" = String, Path, description = "団体コード"),
           ("change_id" = i64, Path, description = "Change id")),
    responses((status = 200, body = ChangeView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_change(
    State(s): State<AppState>,
    Auth(caller): Auth,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<ChangeView> {
    let Path((code, id)) = path.map_err(path_error)?;
    let tenant = tenant_code(&code)?;
    caller.check(&tenant, Permission::ReadChanges)?;
    let actor = caller.actor();
    let id: i64 = id.trim().parse().map_err(|_| {
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

#[derive(Deserialize, IntoParams)]
pub struct SearchQuery {
    /// 氏名, アルファベット氏名, 通称 or フリガナ; partial match; width,
    /// かな/カナ, 濁点, 拗音 and common 異体字 (髙→高 …) are folded (j330).
    name: Option<String>,
    /// 生年月日, 和暦 or 西暦.
    birth_date: Option<String>,
    /// 住所 or 方書, partial.
    address: Option<String>,
    /// 宛名番号
    addressee_number: Option<String>,
    /// 世帯番号
    household_number: Option<String>,
    /// Also match past names and addresses (j340).
    include_history: Option<bool>,
    /// Also return persons who are no longer residents (除票).
    include_removed: Option<bool>,
    /// Cursor from the previous page's `next`.
    after: Option<String>,
    /// Page size (1–200, default 50).
    limit: Option<i64>,
}

/// Searches residents (j320–j340).
#[utoipa::path(get, path = "/api/v1/tenants/{municipality_code}/search", tag = "registry",
    params(("municipality_code" = String, Path, description = "団体コード"), SearchQuery),
    responses((status = 200, body = SearchResults), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
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
                include_history: q.include_history.unwrap_or(false),
                include_removed: q.include_removed.unwrap_or(false),
                after: q.after,
                limit: q.limit.unwrap_or(50),
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
                ResidentView::new(r, eras)
                    .protected(page.protected.get(&r.record.addressee_number), true)
            })
            .collect(),
        next: page.next_after.as_ref().map(encode_cursor),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct EventView {
    /// Per-tenant, strictly increasing.
    seq: i64,
    /// Stable id: a consumer applies each event once.
    event_id: String,
    #[schema(example = "resident.changed")]
    kind: String,
    change_id: Option<i64>,
    #[schema(value_type = Object)]
    payload: serde_json::Value,
    created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct EventList {
    events: Vec<EventView>,
    /// The `after` for the next pull.
    next_after: i64,
}

#[derive(Deserialize, IntoParams)]
pub struct EventQuery {
    /// Return events with `seq` greater than this (default 0).
    after: Option<i64>,
    /// Page size (1–1000, default 100).
    limit: Option<i64>,
}

/// The linkage feed (pull): every change's event, in order, after a sequence number.
#[utoipa::path(get, path = "/api/v1/tenants/{municipality_code}/events", tag = "changes",
    params(("municipality_code" = String, Path, description = "団体コード"), EventQuery),
    responses((status = 200, body = EventList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_events(
    State(s): State<AppState>,
    Auth(caller): Auth,
    path: Result<Path<String>, PathRejection>,
    q: Result<Query<EventQuery>, QueryRejection>,
) -> ApiResult<EventList> {
    let Path(code) = path.map_err(path_error)?;
    let Query(q) = q.map_err(query_error)?;
    let tenant = tenant_code(&code)?;
    caller.check(&tenant, Permission::ReadEvents)?;
    let actor = caller.actor();
    let after = q.after.unwrap_or(0).max(0);
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let events: Vec<OutboxEvent> = s.registry.events(&tenant, after, limit, &actor).await?;
    let next_after = events.last().map_or(after, |e| e.seq);
    Ok(Json(EventList {
        events: events
            .into_iter()
            .map(|e| EventView {
                seq: e.seq,
                event_id: e.event_id,
                kind: e.kind,
                change_id: e.change_id,
                payload: e.payload,
                created_at: rfc3339(e.created_at),
            })
            .collect(),
        next_after,
    }))
}

//! Webhook subscriptions of an API client (`{system}:subscriptions:write`).

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use machi_domain::access::Permission;
use machi_domain::ids::MunicipalityCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::Auth;
use super::edge::{json_error, path_error};
use super::error::{ApiError, ErrorBody};
use super::handlers::tenant_code;
use super::params::{self, integer_text};
use super::views::rfc3339;
use crate::service::hooks::{NewSubscription, SubscriptionView};
use crate::service::{Caller, ServiceError};

type ApiResult<T> = Result<Json<T>, ApiError>;

const UNAUTHENTICATED: &str = "unauthenticated: no valid bearer access token.";
const FORBIDDEN: &str = "forbidden: the token lacks a `subscriptions:write` scope (subscriptions belong to API clients).";
const NOT_FOUND: &str = "tenant_not_found, or subscription_not_found.";
const BAD: &str = "A parameter or the body does not match its schema (invalid_callback_url, invalid_event_type, …); `field` names it.";
const BODY_TOO_LARGE: &str = "body_too_large: the body is larger than 2 MB.";
const NOT_JSON: &str = "invalid_json: the body is not sent as application/json.";
const WRONG_SHAPE: &str = "invalid_json: the body is JSON of another shape.";
const INTERNAL: &str = "internal_error: the database failed; nothing was changed.";

/// A new subscription.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionRequest {
    /// Where events are POSTed: HTTPS, not a private address.
    #[schema(example = "https://jidou-teate.example.lg.jp/machi/events")]
    url: String,
    /// Event types to deliver (names or `prefix.*`, as on the pull feed);
    /// none or empty: every type.
    #[serde(default)]
    #[schema(example = json!(["jp.machi.registry.change.move_in.v1"]))]
    types: Vec<String>,
    /// Deliver events after this sequence (default: only events from now on).
    /// Not past the latest event: that would skip the events between
    /// (400 `invalid_after`, like a replay `from` an event not yet there).
    #[schema(example = 0, minimum = 0)]
    after: Option<i64>,
}

/// Replay from a sequence.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// The first sequence to deliver again.
    #[schema(example = 1, minimum = 1)]
    from: i64,
}

#[derive(Serialize, ToSchema)]
pub struct SubscriptionList {
    subscriptions: Vec<SubscriptionView>,
}

/// One delivery attempt.
#[derive(Serialize, ToSchema)]
pub struct AttemptView {
    seq: i64,
    webhook_id: String,
    at: String,
    /// The receiver's HTTP status; absent when no answer came.
    status: Option<i64>,
    latency_ms: i64,
    error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SubscriptionDetail {
    subscription: SubscriptionView,
    /// The latest attempts (up to 100), newest first.
    attempts: Vec<AttemptView>,
}

/// The calling client, allowed to manage subscriptions of `code`.
fn client(caller: &Caller, code: &str) -> Result<(MunicipalityCode, String), ApiError> {
    let tenant = tenant_code(code)?;
    caller.check(&tenant, Permission::ManageSubscriptions)?;
    match caller {
        Caller::Client { client_id, .. } => Ok((tenant, client_id.clone())),
        Caller::Staff { .. } => Err(ServiceError::Forbidden.into()),
    }
}

fn not_found(e: ServiceError) -> ApiError {
    match e {
        ServiceError::Invalid {
            code: "subscription_not_found",
            message_ja,
            message_en,
            ..
        } => ApiError::new(
            StatusCode::NOT_FOUND,
            "subscription_not_found",
            message_ja,
            message_en,
        ),
        e => e.into(),
    }
}

/// Subscribes the calling client to the tenant's events (webhooks, signed
/// per Standard Webhooks; the answer holds the secret, shown once).
#[utoipa::path(post, path = "/api/v1/tenants/{municipality_code}/subscriptions", tag = "linkage",
    security(("bearer" = [])),
    params(params::TenantPath),
    request_body = SubscriptionRequest,
    responses((status = 201, description = "The new subscription, with its secret (shown once).", body = SubscriptionView),
              (status = 400, description = BAD, body = ErrorBody),
              (status = 401, description = UNAUTHENTICATED, body = ErrorBody),
              (status = 403, description = FORBIDDEN, body = ErrorBody),
              (status = 404, description = NOT_FOUND, body = ErrorBody),
              (status = 413, description = BODY_TOO_LARGE, body = ErrorBody),
              (status = 415, description = NOT_JSON, body = ErrorBody),
              (status = 422, description = WRONG_SHAPE, body = ErrorBody),
              (status = 500, description = INTERNAL, body = ErrorBody)))]
pub async fn create_subscription(
    State(s): State<AppState>,
    Auth(caller): Auth,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<SubscriptionRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<SubscriptionView>), ApiError> {
    let Path(code) = path.map_err(path_error)?;
    let (tenant, client_id) = client(&caller, &code)?;
    let Json(req) = body.map_err(json_error)?;
    let view = s
        .registry
        .create_subscription(
            &tenant,
            &client_id,
            NewSubscription {
                url: req.url,
                types: req.types,
                after: req.after,
            },
            &caller.actor(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// The calling client's subscriptions.
#[utoipa::path(get, path = "/api/v1/tenants/{municipality_code}/subscriptions", tag = "linkage",
    security(("bearer" = [])),
    params(params::TenantPath),
    responses((status = 200, description = "The calling client's subscriptions.", body = SubscriptionList),
              (status = 400, description = BAD, body = ErrorBody),
              (status = 401, description = UNAUTHENTICATED, body = ErrorBody),
              (status = 403, description = FORBIDDEN, body = ErrorBody),
              (status = 404, description = NOT_FOUND, body = ErrorBody),
              (status = 500, description = INTERNAL, body = ErrorBody)))]
pub async fn list_subscriptions(
    State(s): State<AppState>,
    Auth(caller): Auth,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<SubscriptionList> {
    let Path(code) = path.map_err(path_error)?;
    let (tenant, client_id) = client(&caller, &code)?;
    let subscriptions = s.registry.subscriptions(&tenant, Some(&client_id)).await?;
    Ok(Json(SubscriptionList { subscriptions }))
}

/// One subscription with its latest delivery attempts.
#[utoipa::path(get, path = "/api/v1/tenants/{municipality_code}/subscriptions/{subscription_id}", tag = "linkage",
    security(("bearer" = [])),
    params(params::SubscriptionPath),
    responses((status = 200, description = "The subscription and its latest attempts.", body = SubscriptionDetail),
              (status = 400, description = BAD, body = ErrorBody),
              (status = 401, description = UNAUTHENTICATED, body = ErrorBody),
              (status = 403, description = FORBIDDEN, body = ErrorBody),
              (status = 404, description = NOT_FOUND, body = ErrorBody),
              (status = 500, description = INTERNAL, body = ErrorBody)))]
pub async fn get_subscription(
    State(s): State<AppState>,
    Auth(caller): Auth,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<SubscriptionDetail> {
    let Path((code, id)) = path.map_err(path_error)?;
    let (tenant, client_id) = client(&caller, &code)?;
    let id = integer_text("subscription_id", &id)?;
    let (subscription, attempts) = s
        .registry
        .subscription(&tenant, Some(&client_id), id)
        .await
        .map_err(not_found)?;
    Ok(Json(SubscriptionDetail {
        subscription,
        attempts: attempts
            .into_iter()
            .map(|a| AttemptView {
                seq: a.seq,
                webhook_id: a.webhook_id,
                at: rfc3339(a.at),
                status: a.status,
                latency_ms: a.latency_ms,
                error: a.error,
            })
            .collect(),
    }))
}

/// Ends a subscription (its attempts stay on record).
#[utoipa::path(delete, path = "/api/v1/tenants/{municipality_code}/subscriptions/{subscription_id}", tag = "linkage",
    security(("bearer" = [])),
    params(params::SubscriptionDeletePath),
    responses((status = 204, description = "Deleted."),
              (status = 400, description = BAD, body = ErrorBody),
              (status = 401, description = UNAUTHENTICATED, body = ErrorBody),
              (status = 403, description = FORBIDDEN, body = ErrorBody),
              (status = 404, description = NOT_FOUND, body = ErrorBody),
              (status = 500, description = INTERNAL, body = ErrorBody)))]
pub async fn delete_subscription(
    State(s): State<AppState>,
    Auth(caller): Auth,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path((code, id)) = path.map_err(path_error)?;
    let (tenant, client_id) = client(&caller, &code)?;
    let id = integer_text("subscription_id", &id)?;
    s.registry
        .delete_subscription(&tenant, Some(&client_id), id, &caller.actor())
        .await
        .map_err(not_found)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Delivers again every matching event from sequence `from` on, in order;
/// also resumes a paused or disabled subscription.
#[utoipa::path(post, path = "/api/v1/tenants/{municipality_code}/subscriptions/{subscription_id}/replay", tag = "linkage",
    security(("bearer" = [])),
    params(params::SubscriptionPath),
    request_body = ReplayRequest,
    responses((status = 200, description = "The subscription, restarted at `from`.", body = SubscriptionView),
              (status = 400, description = BAD, body = ErrorBody),
              (status = 401, description = UNAUTHENTICATED, body = ErrorBody),
              (status = 403, description = FORBIDDEN, body = ErrorBody),
              (status = 404, description = NOT_FOUND, body = ErrorBody),
              (status = 413, description = BODY_TOO_LARGE, body = ErrorBody),
              (status = 415, description = NOT_JSON, body = ErrorBody),
              (status = 422, description = WRONG_SHAPE, body = ErrorBody),
              (status = 500, description = INTERNAL, body = ErrorBody)))]
pub async fn replay_subscription(
    State(s): State<AppState>,
    Auth(caller): Auth,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<serde_json::Map<String, serde_json::Value>>, JsonRejection>,
) -> ApiResult<SubscriptionView> {
    let Path((code, id)) = path.map_err(path_error)?;
    let (tenant, client_id) = client(&caller, &code)?;
    let id = integer_text("subscription_id", &id)?;
    // An object only (serde would also take `[1]` for the struct).
    let Json(map) = body.map_err(json_error)?;
    let req: ReplayRequest =
        serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_json",
                format!("リクエスト本文（JSON）が正しくありません: {e}"),
                format!("invalid request body: {e}"),
            )
        })?;
    let view = s
        .registry
        .replay_subscription(&tenant, Some(&client_id), id, req.from, &caller.actor())
        .await
        .map_err(not_found)?;
    Ok(Json(view))
}

/// A new signing secret (shown once); the previous one keeps signing, as a
/// second signature, for 24 hours.
#[utoipa::path(post, path = "/api/v1/tenants/{municipality_code}/subscriptions/{subscription_id}/rotate-secret", tag = "linkage",
    security(("bearer" = [])),
    params(params::SubscriptionPath),
    responses((status = 200, description = "The subscription with its new secret (shown once).", body = SubscriptionView),
              (status = 400, description = BAD, body = ErrorBody),
              (status = 401, description = UNAUTHENTICATED, body = ErrorBody),
              (status = 403, description = FORBIDDEN, body = ErrorBody),
              (status = 404, description = NOT_FOUND, body = ErrorBody),
              (status = 500, description = INTERNAL, body = ErrorBody)))]
pub async fn rotate_secret(
    State(s): State<AppState>,
    Auth(caller): Auth,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<SubscriptionView> {
    let Path((code, id)) = path.map_err(path_error)?;
    let (tenant, client_id) = client(&caller, &code)?;
    let id = integer_text("subscription_id", &id)?;
    let view = s
        .registry
        .rotate_subscription_secret(&tenant, Some(&client_id), id, &caller.actor())
        .await
        .map_err(not_found)?;
    Ok(Json(view))
}

/// A pause or resume refused by the subscription's state (409: the
/// request is well-formed, the state refuses it; nothing changed).
fn state_refused(e: ServiceError) -> ApiError {
    match e {
        ServiceError::Invalid {
            code: code @ ("subscription_not_active" | "subscription_not_paused"),
            message_ja,
            message_en,
            ..
        } => ApiError::new(StatusCode::CONFLICT, code, message_ja, message_en),
        e => not_found(e),
    }
}

/// Pauses the calling client's subscription: nothing is sent until it is
/// resumed; its position is kept. The answer's `pause_reason` is then
/// `paused_by_request`. Logged as `webhook.pause`.
#[utoipa::path(post, path = "/api/v1/tenants/{municipality_code}/subscriptions/{subscription_id}/pause", tag = "linkage",
    security(("bearer" = [])),
    params(params::SubscriptionPath),
    responses((status = 200, description = "The subscription, paused.", body = SubscriptionView),
              (status = 400, description = BAD, body = ErrorBody),
              (status = 401, description = UNAUTHENTICATED, body = ErrorBody),
              (status = 403, description = FORBIDDEN, body = ErrorBody),
              (status = 404, description = NOT_FOUND, body = ErrorBody),
              (status = 409, description = "subscription_not_active: the subscription is paused or disabled already; nothing changed.", body = ErrorBody),
              (status = 500, description = INTERNAL, body = ErrorBody)))]
pub async fn pause_subscription(
    State(s): State<AppState>,
    Auth(caller): Auth,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<SubscriptionView> {
    let Path((code, id)) = path.map_err(path_error)?;
    let (tenant, client_id) = client(&caller, &code)?;
    let id = integer_text("subscription_id", &id)?;
    let view = s
        .registry
        .pause_subscription(&tenant, Some(&client_id), id, &caller.actor())
        .await
        .map_err(state_refused)?;
    Ok(Json(view))
}

/// Resumes the calling client's paused or disabled subscription (whatever
/// paused it: the client, the tenant administrator, or the worker after 72
/// hours of failures), or retries a failing one now: delivery restarts at
/// the first event not yet delivered (`position + 1`), in order; nothing
/// is skipped. Logged as `webhook.resume`.
#[utoipa::path(post, path = "/api/v1/tenants/{municipality_code}/subscriptions/{subscription_id}/resume", tag = "linkage",
    security(("bearer" = [])),
    params(params::SubscriptionPath),
    responses((status = 200, description = "The subscription, delivering again from `position + 1`.", body = SubscriptionView),
              (status = 400, description = BAD, body = ErrorBody),
              (status = 401, description = UNAUTHENTICATED, body = ErrorBody),
              (status = 403, description = FORBIDDEN, body = ErrorBody),
              (status = 404, description = NOT_FOUND, body = ErrorBody),
              (status = 409, description = "subscription_not_paused: the subscription is delivering normally; nothing changed.", body = ErrorBody),
              (status = 500, description = INTERNAL, body = ErrorBody)))]
pub async fn resume_subscription(
    State(s): State<AppState>,
    Auth(caller): Auth,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<SubscriptionView> {
    let Path((code, id)) = path.map_err(path_error)?;
    let (tenant, client_id) = client(&caller, &code)?;
    let id = integer_text("subscription_id", &id)?;
    let view = s
        .registry
        .resume_subscription(&tenant, Some(&client_id), id, &caller.actor())
        .await
        .map_err(state_refused)?;
    Ok(Json(view))
}

/// What extract to make.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtractRequest {
    /// `full` (every history row and the households) or `diff` (rows of
    /// changes since the last complete extract at the target).
    kind: crate::linkage::Kind,
    /// Include 個人番号 in residents.csv (default false: the column is
    /// empty). Only for receiving systems whose affairs use it (番号法);
    /// its use is marked in the access log.
    #[serde(default)]
    include_my_number: bool,
}

/// Makes a file-linkage extract now (ファイル連携): CSV in the migration
/// layout with SHA256SUMS and `linkage-manifest.json` (written last), at
/// the server's extract target (`MACHI_EXTRACT_TO`: a directory or
/// S3-compatible storage). The answer is the manifest (files, rows,
/// checksums, the event range covered); no personal data. For the tenant
/// administrator, or an API client of a receiving system holding
/// `{system}:extracts:write`. residents.csv ends with the
/// `support_measure` column (支援措置対象: `protected`, `covered` or empty;
/// j440, j1190); support_persons.csv lists the persons a support measure
/// protects with its state, period and affairs only (never the measure's
/// 記録内容). 個人番号 only with `include_my_number`, which a client may
/// ask for only if it also holds `{system}:my_number:read`.
#[utoipa::path(post, path = "/api/v1/tenants/{municipality_code}/extracts", tag = "linkage",
    security(("bearer" = []), ("session" = [])),
    params(params::TenantPath),
    request_body = ExtractRequest,
    responses((status = 201, description = "The extract's manifest.", body = crate::linkage::LinkageManifest),
              (status = 400, description = "The body does not match its schema; `field` names it.", body = ErrorBody),
              (status = 401, description = "unauthenticated.", body = ErrorBody),
              (status = 403, description = "forbidden: the caller is neither the tenant administrator nor a client holding `{system}:extracts:write`, or asks for `include_my_number` without `{system}:my_number:read`; the message names the missing scope.", body = ErrorBody),
              (status = 404, description = "tenant_not_found.", body = ErrorBody),
              (status = 409, description = "extract_no_base: a difference extract needs a complete earlier extract at the target; extract_not_configured: the server has no extract target; or extract_running: another extract of the tenant (scheduled or on demand) holds its claim, nothing was written.", body = ErrorBody),
              (status = 415, description = NOT_JSON, body = ErrorBody),
              (status = 422, description = WRONG_SHAPE, body = ErrorBody),
              (status = 500, description = "internal_error or extract_failed: the database or the target failed; no manifest was written, the next run redoes it.", body = ErrorBody)))]
pub async fn create_extract(
    State(s): State<AppState>,
    Auth(caller): Auth,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<ExtractRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<crate::linkage::LinkageManifest>), ApiError> {
    use crate::linkage::{self, ExtractError};
    let Path(code) = path.map_err(path_error)?;
    let tenant = tenant_code(&code)?;
    caller.check(&tenant, Permission::MakeExtract)?;
    let Json(req) = body.map_err(json_error)?;
    // 個人番号 only for a caller allowed to have it written (番号法 第9条):
    // a client needs `{system}:my_number:read` besides the extract scope;
    // the refusal names it, and nothing is written.
    if req.include_my_number {
        caller.check(&tenant, Permission::ExtractMyNumber)?;
    }
    let Some(target) = s.registry.extract_target() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "extract_not_configured",
            "このサーバーにはファイル連携の出力先（MACHI_EXTRACT_TO）が設定されていません。",
            "this server has no extract target (MACHI_EXTRACT_TO)",
        ));
    };
    let failed = |e: ExtractError| -> ApiError {
        match e {
            ExtractError::NoBase(t) => ApiError::new(
                StatusCode::CONFLICT,
                "extract_no_base",
                format!(
                    "出力先に {t} の完了した抽出がありません。先に全件抽出（full）を行ってください。"
                ),
                format!(
                    "no earlier complete extract of {t} at the target: make a full extract first"
                ),
            ),
            ExtractError::Running(t) => ApiError::new(
                StatusCode::CONFLICT,
                "extract_running",
                format!(
                    "{t} のファイル連携の抽出が実行中です（定期または随時。途中で止まった抽出は、その確保が切れるまで最長5分）。何も書き込んでいません。終わってからやり直してください。"
                ),
                format!(
                    "an extract of {t} is running (scheduled or on demand; one stopped on the way holds its claim until its lease runs out, at most 5 minutes); nothing was written, try again when it has finished"
                ),
            ),
            ExtractError::Service(e) => e.into(),
            e => {
                tracing::warn!(error = %e, "linkage: extract failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "extract_failed",
                    "抽出を書き込めませんでした（管理者にお知らせください）。次の実行でやり直します。",
                    "the extract could not be written (tell the administrator); the next run redoes it",
                )
            }
        }
    };
    let (store, prefix) = linkage::open_target(target).map_err(failed)?;
    let m = linkage::extract_with(
        &s.registry,
        &tenant,
        req.kind,
        linkage::ExtractOptions {
            include_my_number: req.include_my_number,
        },
        store.as_ref(),
        &prefix,
        &caller.actor(),
    )
    .await
    .map_err(failed)?;
    Ok((StatusCode::CREATED, Json(m)))
}

//! Errors as the API returns them: an HTTP status and
//! `{ "code", "message_ja", "message_en", "field"? }`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use machi_domain::change::ChangeError;
use machi_domain::error::Localized;
use machi_domain::support::SupportError;
use serde::Serialize;
use utoipa::ToSchema;

use crate::service::ServiceError;
use crate::store::StoreError;

/// An error answer. `code` is stable and machine-readable.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    #[schema(example = "invalid_my_number")]
    pub code: String,
    pub message_ja: String,
    pub message_en: String,
    /// The request field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An API error: status + body (+ `Retry-After` seconds for a 429).
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &str,
        ja: impl Into<String>,
        en: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            body: ErrorBody {
                code: code.to_string(),
                message_ja: ja.into(),
                message_en: en.into(),
                field: None,
            },
            retry_after: None,
        }
    }

    pub fn localized(status: StatusCode, e: &dyn Localized) -> Self {
        Self::new(status, e.code(), e.message_ja(), e.message_en())
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.body.field = Some(field.into());
        self
    }

    pub fn bad_request(code: &str, ja: impl Into<String>, en: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, ja, en)
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "内部エラーが発生しました。処理は行われていません。管理者に連絡してください。",
            "an internal error occurred; nothing was changed; contact the administrator",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (self.status, Json(self.body)).into_response();
        if let Some(s) = self.retry_after {
            res.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, s.into());
        }
        res
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        use StatusCode as S;
        match e {
            ServiceError::TenantNotFound(c) => ApiError::new(
                S::NOT_FOUND,
                "tenant_not_found",
                format!("団体コード {c} の団体は登録されていません。"),
                format!("no tenant with municipality code {c}"),
            ),
            ServiceError::PersonNotFound(a) => ApiError::new(
                S::NOT_FOUND,
                "person_not_found",
                format!("宛名番号 {a} の住民は存在しません。"),
                format!("no person with addressee number {a}"),
            ),
            ServiceError::NotRecordedAsOf(a) => ApiError::new(
                S::NOT_FOUND,
                "not_recorded_as_of",
                format!("宛名番号 {a} の方は指定の時点では記録されていません。"),
                format!("person {a} has no record at the requested time"),
            ),
            ServiceError::HouseholdNotFound(h) => ApiError::new(
                S::NOT_FOUND,
                "household_not_found",
                format!("世帯番号 {h} の世帯は存在しません。"),
                format!("no household with number {h}"),
            ),
            ServiceError::ChangeNotFound(id) => ApiError::new(
                S::NOT_FOUND,
                "change_not_found",
                format!("異動 {id} は存在しません。"),
                format!("no change with id {id}"),
            ),
            ServiceError::TenantExists(c) => ApiError::new(
                S::CONFLICT,
                "tenant_exists",
                format!("団体コード {c} の団体はすでに登録されています。"),
                format!("tenant {c} already exists"),
            ),
            ServiceError::Unauthenticated => ApiError::new(
                S::UNAUTHORIZED,
                "unauthenticated",
                "認証が必要です。アクセストークン（Bearer）またはログインが必要です。",
                "authentication required: a bearer access token or a signed-in session",
            ),
            ServiceError::Forbidden => ApiError::new(
                S::FORBIDDEN,
                "forbidden",
                "この操作を行う権限がありません。",
                "your role or scopes do not allow this operation",
            ),
            ServiceError::ScopeMissing { scope: Some(scope) } => {
                let words = scope
                    .rsplitn(3, ':')
                    .collect::<Vec<_>>()
                    .get(..2)
                    .and_then(|v| crate::service::auth::scope_words(v[1], v[0]));
                let (ja, en) = words.unwrap_or(("", ""));
                ApiError::new(
                    S::FORBIDDEN,
                    "forbidden",
                    format!(
                        "この操作にはスコープ「{scope}」（{ja}）が必要ですが、このアクセストークンにはありません。"
                    ),
                    format!(
                        "this operation needs the scope {scope} ({en}), which the access token lacks"
                    ),
                )
            }
            ServiceError::ScopeMissing { scope: None } => ApiError::new(
                S::FORBIDDEN,
                "forbidden",
                "この操作は職員だけが行えます（どのスコープでも許されません）。",
                "this operation is for staff only: no scope allows it",
            ),
            ServiceError::LoginFailed => ApiError::new(
                S::UNAUTHORIZED,
                "login_failed",
                "団体コード・ログインID・パスワードのいずれかが正しくありません。",
                "the municipality code, login or password is not correct",
            ),
            ServiceError::TooManyAttempts { retry_after } => {
                let (ja, en) = crate::service::throttle::try_again(retry_after);
                let mut e = ApiError::new(S::TOO_MANY_REQUESTS, "too_many_attempts", ja, en);
                e.retry_after = Some(retry_after);
                e
            }
            ServiceError::AccountExists(l) => ApiError::new(
                S::CONFLICT,
                "account_exists",
                format!("「{l}」はすでに登録されています。"),
                format!("{l} already exists"),
            ),
            ServiceError::PendingNotFound(id) => ApiError::new(
                S::NOT_FOUND,
                "pending_not_found",
                format!("仮登録 {id} はありません。"),
                format!("no provisional change {id}"),
            ),
            ServiceError::RefusalNotFound => ApiError::new(
                S::NOT_FOUND,
                "refusal_not_found",
                "その取り込めなかった申請はありません。".to_string(),
                "no such filing refused on import".to_string(),
            ),
            ServiceError::PortalNotConfigured => ApiError::new(
                S::SERVICE_UNAVAILABLE,
                "portal_not_configured",
                "このサーバーにはポータルとの接続（ポータルの所在、取込みの鍵）が設定されていないため、申請を取り込み直せません。システム管理者に設定を依頼してください。".to_string(),
                "this server has no portal link configured (the portal's address and the opening key), so the filing cannot be imported again; ask the system administrator to configure it".to_string(),
            ),
            ServiceError::FilingNotFound(id) => ApiError::new(
                S::NOT_FOUND,
                "filing_not_found",
                format!("申請 {id} はありません。"),
                format!("no filing {id}"),
            ),
            ServiceError::FilingState { id, status, action } => {
                let st = crate::service::inbox::FilingStatus::parse(&status);
                let (st_ja, st_en) =
                    st.map_or(("不明", "unknown"), |s| (s.label_ja(), s.label_en()));
                let (act_ja, act_en) = crate::service::inbox::action_label(action);
                ApiError::new(
                    S::CONFLICT,
                    "filing_state",
                    format!("申請 {id} は「{st_ja}」のため、{act_ja}はできません。"),
                    format!("filing {id} is {st_en}: it cannot be {act_en}"),
                )
            }
            ServiceError::DefinitionNotTrusted {
                id,
                title_ja,
                title_en,
                version,
                refused,
                withdrawn,
                action,
            } => {
                let (act_ja, act_en) = crate::service::inbox::action_label(action);
                if withdrawn {
                    ApiError::new(
                        S::CONFLICT,
                        "definition_withdrawn",
                        format!(
                            "申請 {id} の手続「{title_ja}」（第{version}版）は、団体管理者が手続定義の受入れを取り消したため、{act_ja}はできません。団体管理者が改めて受け入れると{act_ja}できます。"
                        ),
                        format!(
                            "filing {id} was made on a procedure definition ({title_en}, version {version}) whose acceptance the tenant administrator withdrew: it cannot be {act_en} until the definition is accepted again"
                        ),
                    )
                } else if refused {
                    ApiError::new(
                        S::CONFLICT,
                        "definition_refused",
                        format!(
                            "申請 {id} の手続「{title_ja}」（第{version}版）は団体管理者が受入れを拒否した定義のため、{act_ja}はできません。却下だけができます。"
                        ),
                        format!(
                            "filing {id} was made on a procedure definition the tenant administrator refused ({title_en}, version {version}): it cannot be {act_en}, only rejected"
                        ),
                    )
                } else {
                    ApiError::new(
                        S::CONFLICT,
                        "definition_not_accepted",
                        format!(
                            "申請 {id} の手続「{title_ja}」（第{version}版）は、ポータルから届いた新しい手続定義で、団体管理者がまだ受け入れていません。受入れの後でなければ{act_ja}はできません。"
                        ),
                        format!(
                            "filing {id} was made on a procedure definition the portal delivered ({title_en}, version {version}) that the tenant administrator has not accepted yet: it cannot be {act_en} before that"
                        ),
                    )
                }
            }
            ServiceError::DefinitionNotFound { procedure, version } => {
                let p: String = procedure.chars().take(40).collect();
                ApiError::new(
                    S::NOT_FOUND,
                    "definition_not_found",
                    format!(
                        "受入れを判断できる手続定義「{p}」第{version}版はありません（標準の手続は判断不要です）。"
                    ),
                    format!(
                        "no procedure definition {p:?} version {version} of the tenant to decide on (shipped procedures need no decision)"
                    ),
                )
            }
            ServiceError::DefinitionShipped {
                title_ja,
                title_en,
                version,
            } => ApiError::new(
                S::CONFLICT,
                "definition_shipped",
                format!(
                    "手続「{title_ja}」第{version}版は machi の標準の手続で、受入れの判断は要りません。"
                ),
                format!(
                    "procedure {title_en} version {version} is shipped with machi and needs no decision"
                ),
            ),
            ServiceError::DefinitionDecided {
                title_ja,
                title_en,
                version,
                accepted,
            } => {
                if accepted {
                    ApiError::new(
                        S::CONFLICT,
                        "definition_decided",
                        format!(
                            "手続「{title_ja}」第{version}版はすでに受け入れています。判断を改めるには、先に受入れを取り消してください。"
                        ),
                        format!(
                            "procedure {title_en} version {version} is already accepted; withdraw the acceptance first to decide again"
                        ),
                    )
                } else {
                    ApiError::new(
                        S::CONFLICT,
                        "definition_decided",
                        format!(
                            "手続「{title_ja}」第{version}版はすでに受入れを拒否しています。拒否は取り消せません（変更はポータルで新しい版として公開します）。"
                        ),
                        format!(
                            "procedure {title_en} version {version} was already refused; a refusal is final (publish a new version on the portal)"
                        ),
                    )
                }
            }
            ServiceError::DefinitionNotAccepted {
                title_ja,
                title_en,
                version,
                trust,
            } => ApiError::new(
                S::CONFLICT,
                "definition_not_accepted",
                format!(
                    "手続「{title_ja}」第{version}版は受け入れていないため（現在：{}）、取り消す受入れがありません。",
                    trust.label_ja()
                ),
                format!(
                    "procedure {title_en} version {version} is not accepted (now: {}): there is no acceptance to withdraw",
                    trust.label_en()
                ),
            ),
            ServiceError::PendingDecided(id) => ApiError::new(
                S::CONFLICT,
                "pending_decided",
                format!("仮登録 {id} はすでに決裁・差戻し・取下げされています。"),
                format!("provisional change {id} was already decided"),
            ),
            ServiceError::SelfApproval => ApiError::new(
                S::FORBIDDEN,
                "self_approval",
                "自分が入力した異動は決裁できません。別の決裁者が決裁してください。",
                "you cannot approve a change you entered; another supervisor must",
            ),
            ServiceError::SelfGrant => ApiError::new(
                S::FORBIDDEN,
                "self_grant",
                "自分が申請したもの、自分についての申請は承認・却下できません。別の承認者が判断してください。",
                "you cannot decide a proposal you made or one about yourself; another approver must",
            ),
            ServiceError::GrantNotFound(id) => ApiError::new(
                S::NOT_FOUND,
                "grant_not_found",
                format!("権限の申請 {id} はありません。"),
                format!("no access proposal {id}"),
            ),
            ServiceError::GrantDecided(id) => ApiError::new(
                S::CONFLICT,
                "grant_decided",
                format!("権限の申請 {id} はすでに承認・却下・取下げされています。"),
                format!("access proposal {id} was already decided"),
            ),
            ServiceError::AccountNotFound(l) => ApiError::new(
                S::NOT_FOUND,
                "account_not_found",
                format!("アカウント「{l}」はありません。"),
                format!("no account {l:?}"),
            ),
            ServiceError::ClientNotFound(c) => ApiError::new(
                S::NOT_FOUND,
                "client_not_found",
                format!("連携先「{c}」はありません。"),
                format!("no API client {c:?}"),
            ),
            ServiceError::ActivationFailed => ApiError::new(
                S::UNAUTHORIZED,
                "activation_failed",
                "団体コード・ログインID・有効化コードのいずれかが正しくないか、コードの有効期限が切れています。",
                "the municipality code, login or activation code is not correct, or the code has expired",
            ),
            ServiceError::Invalid {
                field,
                code,
                message_ja,
                message_en,
            } => ApiError::new(S::BAD_REQUEST, code, message_ja, message_en).with_field(field),
            ServiceError::Change(c) => {
                let status = match &c {
                    ChangeError::DuplicateIdentity(..)
                    | ChangeError::LaterChangesExist { .. }
                    | ChangeError::NotCancellable(_) => S::CONFLICT,
                    _ => S::UNPROCESSABLE_ENTITY,
                };
                let field = match &c {
                    ChangeError::Field { field, .. } => Some(field.clone()),
                    ChangeError::Missing(f) => Some(f.clone()),
                    _ => None,
                };
                let mut e = ApiError::localized(status, &c);
                if let ChangeError::Field {
                    message_ja,
                    message_en,
                    ..
                } = &c
                {
                    e.body.message_ja = message_ja.clone();
                    e.body.message_en = message_en.clone();
                }
                e.body.field = field;
                e
            }
            ServiceError::Store(StoreError::Conflict) => ApiError::new(
                S::CONFLICT,
                "conflict",
                "同じ記録への別の処理が先に確定しました。内容を確認してやり直してください。",
                "another change to the same record was committed first; check and retry",
            ),
            ServiceError::Store(e) => {
                tracing::error!(error = %e, "storage error");
                ApiError::internal()
            }
            ServiceError::Support(e) => {
                let status = if e.is_conflict() {
                    S::CONFLICT
                } else {
                    S::UNPROCESSABLE_ENTITY
                };
                let mut err = ApiError::localized(status, &e);
                if let SupportError::Field {
                    field,
                    message_ja,
                    message_en,
                    ..
                } = e
                {
                    err.body.message_ja = message_ja;
                    err.body.message_en = message_en;
                    err.body.field = Some(field);
                }
                err
            }
            ServiceError::SupportMeasureNotFound(id) => ApiError::new(
                S::NOT_FOUND,
                "support_measure_not_found",
                format!("支援措置 {id} は存在しません。"),
                format!("no support measure with id {id}"),
            ),
            // One refusal for every request a support measure blocks: it
            // names nobody, so it cannot tell which member of a household
            // is protected (j440; the access log records whom it concerned).
            ServiceError::SupportBlocked { purpose, .. } => ApiError::new(
                S::FORBIDDEN,
                "support_measure_block",
                format!(
                    "支援措置により、この{}はできません。支援措置責任者による解除が必要です。",
                    purpose.label_ja()
                ),
                format!(
                    "{} is blocked by a support measure; an authorised officer must release it first",
                    purpose.label_en()
                ),
            ),
        }
    }
}

//! Access proposals and their approval (職務の分離): the tenant
//! administrator's proposals wait here for a second person (a supervisor or
//! the CIO), who approves or rejects them and is the only one to see an
//! approved account's activation code or a client's secret. Also the public
//! activation page where a new account's holder sets their password.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use machi_domain::access::Permission;
use machi_domain::ids::MunicipalityCode;
use serde::Deserialize;

use super::admin::{AccountRow, ClientRow, accounts_and_clients};
use super::forms::FormData;
use super::{Chrome, Ctx, Lang, UiError, html, when};
use crate::api::AppState;
use crate::api::source::ClientAddr;
use crate::service::grants::{AccessGrant, ActivationCode, Decision, GrantOutcome};

/// One proposal as people read it.
pub struct GrantRow {
    pub id: i64,
    pub what: String,
    pub status: String,
    pub proposed_by: String,
    pub proposed_at: String,
    pub decided_by: String,
    pub decided_at: String,
    pub comment: String,
    /// Proposed by whoever looks at it (they may withdraw it, not decide it).
    pub mine: bool,
}

impl GrantRow {
    pub fn new(g: &AccessGrant, ctx: &Ctx) -> GrantRow {
        let en = ctx.lang.en;
        GrantRow {
            id: g.grant_id,
            what: g.proposal.describe(en),
            status: if en {
                g.status.label_en()
            } else {
                g.status.label_ja()
            }
            .to_string(),
            proposed_by: g.proposed_by.clone(),
            proposed_at: when(g.proposed_at),
            decided_by: g.decided_by.clone().unwrap_or_default(),
            decided_at: g.decided_at.map(when).unwrap_or_default(),
            comment: g.comment.clone().unwrap_or_default(),
            mine: g.proposed_by == ctx.login,
        }
    }
}

/// A credential shown once, to be handed over.
pub enum Handover {
    /// An account's activation code for its holder.
    Activation {
        login: String,
        code: String,
        expires: String,
    },
    /// An API client's secret for the other system's operator.
    Secret { client_id: String, secret: String },
}

impl Handover {
    pub fn activation(a: &ActivationCode) -> Handover {
        Handover::Activation {
            login: a.login.clone(),
            code: a.code.clone(),
            expires: when(a.expires_at),
        }
    }
}

#[derive(Template)]
#[template(path = "grants.html")]
struct GrantsPage {
    c: Chrome,
    pending: Vec<GrantRow>,
    decided: Vec<GrantRow>,
    can_decide: bool,
    accounts: Vec<AccountRow>,
    clients: Vec<ClientRow>,
    error: Option<String>,
    handover: Option<Handover>,
}

/// The page is for whoever proposes (the administrator) and whoever approves.
async fn load(s: &AppState, headers: &HeaderMap) -> Result<(Ctx, MunicipalityCode), Response> {
    let ctx = Ctx::load(s, headers).await?;
    let tenant = if ctx.can(Permission::ApproveGrant) {
        ctx.require(Permission::ApproveGrant)?
    } else {
        ctx.require(Permission::ManageAccounts)?
    };
    Ok((ctx, tenant))
}

async fn grants_page(
    s: &AppState,
    ctx: &Ctx,
    tenant: &MunicipalityCode,
    result: Result<(String, Option<Handover>), UiError>,
) -> Response {
    let (pending, decided, lists) = match (
        s.registry.grants(tenant, true, 200).await,
        s.registry.grants(tenant, false, 50).await,
        accounts_and_clients(s, ctx, tenant).await,
    ) {
        (Ok(p), Ok(d), Ok(l)) => (p, d, l),
        (Err(e), _, _) | (_, Err(e), _) => return ctx.error(&e.into()),
        (_, _, Err(e)) => return ctx.error(&e),
    };
    let can_decide = ctx.can(Permission::ApproveGrant);
    let (accounts, clients) = if can_decide { lists } else { (vec![], vec![]) };
    let (status, error, flash, handover) = match result {
        Ok((flash, handover)) => (StatusCode::OK, None, Some(flash), handover),
        Err(e) => (
            e.status,
            Some(ctx.lang.t(&e.ja, &e.en).to_string()),
            None,
            None,
        ),
    };
    let page = GrantsPage {
        c: Chrome::new(ctx, "権限の申請と承認", "Access proposals and approval").with_flash(flash),
        pending: pending.iter().map(|g| GrantRow::new(g, ctx)).collect(),
        decided: decided.iter().map(|g| GrantRow::new(g, ctx)).collect(),
        can_decide,
        accounts: accounts.into_iter().filter(|a| a.awaiting).collect(),
        clients,
        error,
        handover,
    };
    (status, html(&page)).into_response()
}

pub async fn list(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let (ctx, tenant) = match load(&s, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    grants_page(&s, &ctx, &tenant, Ok((String::new(), None))).await
}

/// Approves or rejects a proposal (an approver), or withdraws it (whoever
/// proposed it).
pub async fn decide(
    State(s): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let f = FormData(form);
    let ctx = match Ctx::load(&s, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Err(r) = ctx.check_csrf(&f.text("csrf")) {
        return r;
    }
    let decision = match f.text("action").as_str() {
        "approve" => Decision::Approve,
        "reject" => Decision::Reject,
        _ => Decision::Withdraw,
    };
    let needed = if decision == Decision::Withdraw {
        Permission::ManageAccounts
    } else {
        Permission::ApproveGrant
    };
    let tenant = match ctx.require(needed) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let id = match path.ok().and_then(|Path(p)| p.trim().parse::<i64>().ok()) {
        Some(id) => id,
        None => {
            return grants_page(
                &s,
                &ctx,
                &tenant,
                Err(UiError {
                    status: StatusCode::BAD_REQUEST,
                    ja: "申請番号が正しくありません。".into(),
                    en: "not a proposal number".into(),
                }),
            )
            .await;
        }
    };
    let result = s
        .registry
        .decide_grant(&tenant, id, decision, f.v("comment"), &ctx.caller.actor())
        .await
        .map(|out| {
            let l = ctx.lang;
            match out {
                GrantOutcome::Activation(code) => (
                    l.t(
                        "承認しました。有効化コードを本人に渡してください。",
                        "Approved. Hand the activation code to the account's holder.",
                    )
                    .to_string(),
                    Some(Handover::activation(&code)),
                ),
                GrantOutcome::ClientSecret { client_id, secret } => (
                    l.t(
                        "承認しました。シークレットを連携先の担当者に渡してください。",
                        "Approved. Hand the secret to the other system's operator.",
                    )
                    .to_string(),
                    Some(Handover::Secret { client_id, secret }),
                ),
                GrantOutcome::Applied => (l.t("承認しました。", "Approved.").to_string(), None),
                GrantOutcome::Closed => (
                    l.t("申請を終了しました。", "The proposal is closed.")
                        .to_string(),
                    None,
                ),
            }
        })
        .map_err(UiError::from);
    grants_page(&s, &ctx, &tenant, result).await
}

/// Rotates an API client's secret (an approver sees the new one once).
pub async fn rotate(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let f = FormData(form);
    let (ctx, tenant) = match Ctx::for_form(&s, &headers, &f, Permission::ApproveGrant).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let client_id = f.text("client_id");
    let result = s
        .registry
        .rotate_client_secret(&tenant, &client_id, &ctx.caller.actor())
        .await
        .map(|secret| {
            (
                ctx.lang
                    .t(
                        "シークレットを更新しました。以前のシークレットとトークンは使えません。",
                        "Secret rotated. The old secret and its tokens no longer work.",
                    )
                    .to_string(),
                Some(Handover::Secret { client_id, secret }),
            )
        })
        .map_err(UiError::from);
    grants_page(&s, &ctx, &tenant, result).await
}

/// A new activation code for an account still waiting for its holder.
pub async fn reissue(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let f = FormData(form);
    let (ctx, tenant) = match Ctx::for_form(&s, &headers, &f, Permission::ApproveGrant).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let result = s
        .registry
        .reissue_activation(&tenant, &f.text("login"), &ctx.caller.actor())
        .await
        .map(|code| {
            (
                ctx.lang
                    .t(
                        "有効化コードを発行し直しました。以前のコードは使えません。",
                        "A new activation code; the old one no longer works.",
                    )
                    .to_string(),
                Some(Handover::activation(&code)),
            )
        })
        .map_err(UiError::from);
    grants_page(&s, &ctx, &tenant, result).await
}

#[derive(Template)]
#[template(path = "activate.html")]
struct ActivatePage<'a> {
    l: Lang,
    tenant: &'a str,
    login: &'a str,
    error: Option<String>,
    form_csrf: String,
}

/// The activation form's own CSRF defence (no session yet): a random value
/// in a cookie and in the form, which must match.
const ACTIVATE_COOKIE: &str = "machi_activate";

fn activate_page(l: Lang, tenant: &str, login: &str, error: Option<String>) -> Response {
    let token = crate::service::auth::random_hex(16).unwrap_or_default();
    let mut res = html(&ActivatePage {
        l,
        tenant,
        login,
        error,
        form_csrf: token.clone(),
    });
    if let Ok(c) = HeaderValue::from_str(&format!(
        "{ACTIVATE_COOKIE}={token}; Path=/activate; HttpOnly; SameSite=Strict; Max-Age=3600{}",
        super::secure_attr()
    )) {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    res
}

pub async fn activate_form(headers: HeaderMap) -> Response {
    activate_page(Lang::of(&headers), "", "", None)
}

#[derive(Deserialize)]
pub struct ActivateForm {
    #[serde(default)]
    form_csrf: String,
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    login: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_again: String,
    #[serde(default)]
    terminal: String,
}

/// Sets a new account's password with its activation code, then sends the
/// person to sign in.
pub async fn activate(
    State(s): State<AppState>,
    ClientAddr(source): ClientAddr,
    headers: HeaderMap,
    Form(f): Form<ActivateForm>,
) -> Response {
    let l = Lang::of(&headers);
    let fail = |e: UiError| {
        let mut res = activate_page(l, &f.tenant, &f.login, Some(l.t(&e.ja, &e.en).to_string()));
        *res.status_mut() = e.status;
        res
    };
    let cookie = crate::api::auth::cookie(&headers, ACTIVATE_COOKIE).unwrap_or_default();
    if cookie.is_empty()
        || !crate::api::auth::constant_time_eq(cookie.as_bytes(), f.form_csrf.as_bytes())
    {
        return fail(UiError {
            status: StatusCode::FORBIDDEN,
            ja: "画面の有効期限が切れました。もう一度入力してください。".into(),
            en: "the form expired; please enter your details again".into(),
        });
    }
    if f.password != f.password_again {
        return fail(UiError {
            status: StatusCode::BAD_REQUEST,
            ja: "確認のパスワードが一致しません。".into(),
            en: "the two passwords differ".into(),
        });
    }
    let tenant: MunicipalityCode = match f.tenant.trim().parse() {
        Ok(t) => t,
        Err(e) => {
            let e: &dyn machi_domain::error::Localized = &e;
            return fail(e.into());
        }
    };
    match s
        .registry
        .activate_account(source, &tenant, &f.login, &f.code, &f.password, &f.terminal)
        .await
    {
        Ok(()) => Redirect::to("/login?activated=1").into_response(),
        Err(e) => {
            let retry_after = match &e {
                crate::service::ServiceError::TooManyAttempts { retry_after } => Some(*retry_after),
                _ => None,
            };
            let mut res = fail(e.into());
            if let Some(secs) = retry_after {
                res.headers_mut().insert(header::RETRY_AFTER, secs.into());
            }
            res
        }
    }
}

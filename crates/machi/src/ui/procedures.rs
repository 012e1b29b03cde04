//! 手続定義の受入れ: the tenant administrator reads each procedure
//! definition version the portal delivered — its title, version, pages and
//! fields, who may file and what approving a filing would do, in words —
//! and accepts or refuses it (issue 11; [`crate::service::definitions`]).
//! Until it is accepted no filing made on it is approved. An acceptance
//! can be withdrawn here: approval stops until it is accepted again.

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use machi_domain::access::Permission;
use machi_domain::ids::MunicipalityCode;

use super::forms::FormData;
use super::{Chrome, Ctx, UiError, html, when};
use crate::api::AppState;
use crate::service::definitions::{self, DefinitionDecision, OwnVersion};
use crate::store::procedure_definitions::Trust;

/// One definition version as the administrator reads it.
pub struct DefRow {
    pub procedure: String,
    pub version: i64,
    pub title: String,
    pub state: String,
    pub pending: bool,
    /// Accepted: the acceptance can be withdrawn.
    pub accepted: bool,
    pub imported: String,
    pub decided: String,
    pub identity: String,
    pub action: String,
    pub department: String,
    pub pages: Vec<(String, Vec<String>)>,
    pub filings: i64,
}

#[derive(Template)]
#[template(path = "procedures.html")]
struct ProceduresPage {
    c: Chrome,
    pending: Vec<DefRow>,
    decided: Vec<DefRow>,
    error: Option<String>,
}

fn row(v: &OwnVersion, en: bool) -> DefRow {
    let d = &v.own.definition;
    let lang = if en {
        machi_procedures::Lang::En
    } else {
        machi_procedures::Lang::Ja
    };
    let (action_ja, action_en) = definitions::action_words(d);
    let (id_ja, id_en) = definitions::identity_words(d);
    DefRow {
        procedure: d.id().to_string(),
        version: i64::from(d.version()),
        title: d.procedure.title.get(lang).to_string(),
        state: if en {
            v.own.trust.label_en()
        } else {
            v.own.trust.label_ja()
        }
        .to_string(),
        pending: v.own.trust.awaits_decision(),
        accepted: v.own.trust == Trust::Accepted,
        imported: when(v.own.imported_at.saturating_mul(1_000_000)),
        decided: match (&v.own.decided_by, v.own.decided_at) {
            (Some(by), Some(at)) => format!("{}（{by}）", when(at)),
            _ => String::new(),
        },
        identity: if en { id_en } else { id_ja }.to_string(),
        action: if en { action_en } else { action_ja },
        department: d
            .procedure
            .department
            .as_ref()
            .map(|t| t.get(lang).to_string())
            .unwrap_or_default(),
        pages: definitions::pages_words(d, en),
        filings: v.filings,
    }
}

async fn page(
    s: &AppState,
    ctx: &Ctx,
    tenant: &MunicipalityCode,
    flash: Option<String>,
    error: Option<UiError>,
) -> Response {
    let all = match s.registry.own_definitions(tenant).await {
        Ok(a) => a,
        Err(e) => return ctx.error(&e.into()),
    };
    let en = ctx.lang.en;
    let (pending, decided): (Vec<_>, Vec<_>) =
        all.iter().map(|v| row(v, en)).partition(|r| r.pending);
    let status = error.as_ref().map_or(StatusCode::OK, |e| e.status);
    let p = ProceduresPage {
        c: Chrome::new(ctx, "手続定義の受入れ", "Procedure definitions").with_flash(flash),
        pending,
        decided,
        error: error.map(|e| if en { e.en } else { e.ja }),
    };
    (status, html(&p)).into_response()
}

/// The definitions awaiting a decision, and those decided.
pub async fn list(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let (ctx, tenant) = match Ctx::for_page(&s, &headers, Permission::ManageAccounts).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    page(&s, &ctx, &tenant, None, None).await
}

/// Accepts or refuses one version, or withdraws its acceptance
/// (`procedure`, `version`, `decision=accept|refuse|withdraw`).
pub async fn decide(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let f = FormData(form);
    let (ctx, tenant) = match Ctx::for_form(&s, &headers, &f, Permission::ManageAccounts).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let l = ctx.lang;
    let Some(decision) = DefinitionDecision::parse(f.text("decision").as_str()) else {
        {
            let e = UiError {
                status: StatusCode::BAD_REQUEST,
                ja: "受け入れるか拒否するかを選んでください。".into(),
                en: "choose whether to accept or to refuse".into(),
            };
            return page(&s, &ctx, &tenant, None, Some(e)).await;
        }
    };
    let version = f.text("version").trim().parse::<i64>().unwrap_or(0);
    match s
        .registry
        .decide_definition(
            &tenant,
            f.text("procedure").trim(),
            version,
            decision,
            &ctx.caller.actor(),
        )
        .await
    {
        Ok(d) => {
            let title = d
                .procedure
                .title
                .get(if l.en {
                    machi_procedures::Lang::En
                } else {
                    machi_procedures::Lang::Ja
                })
                .to_string();
            let flash = match (decision, l.en) {
                (DefinitionDecision::Accept, false) => format!(
                    "「{title}」第{version}版を受け入れました。この版の申請を承認できるようになりました。"
                ),
                (DefinitionDecision::Accept, true) => {
                    format!("Accepted {title}, version {version}: its filings can now be approved.")
                }
                (DefinitionDecision::Refuse, false) => format!(
                    "「{title}」第{version}版の受入れを拒否しました。この版の申請は却下だけができます。"
                ),
                (DefinitionDecision::Refuse, true) => {
                    format!("Refused {title}, version {version}: its filings can only be rejected.")
                }
                (DefinitionDecision::Withdraw, false) => format!(
                    "「{title}」第{version}版の受入れを取り消しました。改めて受け入れるまで、この版の申請は承認できません。"
                ),
                (DefinitionDecision::Withdraw, true) => format!(
                    "Withdrew the acceptance of {title}, version {version}: its filings cannot be approved until it is accepted again."
                ),
            };
            page(&s, &ctx, &tenant, Some(flash), None).await
        }
        Err(e) => page(&s, &ctx, &tenant, None, Some(e.into())).await,
    }
}

//! Entering changes (仮登録) and reviewing them (審査・決裁, j530).

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use machi_domain::access::Permission;
use serde_json::Value;

use super::forms::{self, FormData, KINDS, PERSON_SLOTS};
use super::{Chrome, Ctx, UiError, html, when};
use crate::api::AppState;
use crate::store::pending::{PendingChange, PendingStatus};

/// Correctable items: form suffix, label ja, label en, field name.
const PATCH_FIELDS: [(&str, &str, &str, &str); 12] = [
    ("name", "氏名", "Name", "patch_name"),
    ("name_kana", "フリガナ", "Reading", "patch_name_kana"),
    (
        "birth_date",
        "生年月日",
        "Date of birth",
        "patch_birth_date",
    ),
    ("relationship", "続柄", "Relationship", "patch_relationship"),
    ("domicile", "本籍", "Domicile", "patch_domicile"),
    (
        "domicile_head",
        "筆頭者",
        "Head of family register",
        "patch_domicile_head",
    ),
    (
        "address_annex",
        "方書",
        "Building / room",
        "patch_address_annex",
    ),
    (
        "postal_code",
        "郵便番号",
        "Postal code",
        "patch_postal_code",
    ),
    ("my_number", "個人番号", "My Number", "patch_my_number"),
    (
        "resident_code",
        "住民票コード",
        "Resident code",
        "patch_resident_code",
    ),
    (
        "address_since",
        "住定日",
        "At address since",
        "patch_address_since",
    ),
    (
        "resident_since",
        "住民となった日",
        "Resident since",
        "patch_resident_since",
    ),
];

#[derive(Template)]
#[template(path = "entry.html")]
struct EntryPage {
    c: Chrome,
    kinds: Vec<(&'static str, &'static str, &'static str)>,
    kind: String,
    kind_label: String,
    f: FormData,
    error: Option<String>,
    error_field: Option<String>,
    slots: Vec<usize>,
    patch_fields: Vec<(&'static str, &'static str, &'static str, &'static str)>,
    show_target: bool,
    show_move_within_household: bool,
    show_previous: bool,
    show_household_number: bool,
    show_persons: bool,
    show_address: bool,
    show_from_into: bool,
    show_into: bool,
    show_new_head: bool,
    show_relationships: bool,
    show_person: bool,
    show_patch: bool,
    show_change_id: bool,
}

fn entry_page(ctx: &Ctx, kind: &str, f: FormData, error: Option<(String, String)>) -> EntryPage {
    let known = KINDS.iter().find(|k| k.0 == kind);
    let kind = known.map_or("", |k| k.0);
    let is = |ks: &[&str]| ks.contains(&kind);
    let slots = match kind {
        "move_in" | "move_in_from_abroad" => (0..PERSON_SLOTS).collect(),
        "birth" | "ex_officio_entry" => vec![0],
        _ => vec![],
    };
    let (error, error_field) = match error {
        Some((msg, field)) => (Some(msg), Some(field)),
        None => (None, None),
    };
    EntryPage {
        c: Chrome::new(ctx, "異動入力（仮登録）", "Enter a change (provisional)"),
        kinds: KINDS.to_vec(),
        kind_label: known
            .map(|k| ctx.lang.t(k.1, k.2).to_string())
            .unwrap_or_default(),
        f,
        error,
        error_field,
        slots,
        patch_fields: PATCH_FIELDS.to_vec(),
        show_target: is(&["move_in", "move_in_from_abroad", "ex_officio_entry"]),
        show_move_within_household: is(&["move_within"]),
        show_previous: is(&["move_in", "move_in_from_abroad"]),
        show_household_number: is(&["birth", "head_change"]),
        show_persons: is(&["move_within", "move_out", "move_out_abroad"]),
        show_address: is(&[
            "move_in",
            "move_in_from_abroad",
            "ex_officio_entry",
            "move_within",
            "move_out",
            "move_out_abroad",
        ]),
        show_from_into: is(&["household_merge"]),
        show_into: is(&["household_merge", "household_transfer"]),
        show_new_head: is(&["head_change"]),
        show_relationships: is(&[
            "move_within",
            "household_split",
            "household_merge",
            "household_transfer",
            "head_change",
        ]),
        show_person: is(&[
            "death",
            "ex_officio_correction",
            "clerical_correction",
            "ex_officio_removal",
        ]),
        show_patch: is(&["ex_officio_correction", "clerical_correction"]),
        show_change_id: is(&["cancel"]),
        kind: kind.to_string(),
    }
}

/// The entry form; query parameters prefill it (e.g. `?type=move_within&persons=…`).
pub async fn entry_form(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let ctx = match Ctx::load(&s, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Err(r) = ctx.require(Permission::EnterChange) {
        return r;
    }
    let f = FormData(q.ok().map(|Query(q)| q).unwrap_or_default());
    let kind = f.text("type");
    let mut f = f;
    if f.get("input_terminal").is_none() {
        let terminal = match &ctx.caller {
            crate::service::Caller::Staff { terminal, .. } => terminal.clone(),
            _ => String::new(),
        };
        f.0.push(("input_terminal".into(), terminal));
    }
    html(&entry_page(&ctx, &kind, f, None))
}

/// Validates the form against the registry (a dry run) and enters it
/// provisionally; the clerk lands on the provisional change's page.
pub async fn enter(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let f = FormData(form);
    let (ctx, tenant) = match Ctx::for_form(&s, &headers, &f, Permission::EnterChange).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let kind = f.text("type");
    let again = |msg: String, field: String| {
        let page = entry_page(&ctx, &kind, f.clone(), Some((msg, field)));
        (StatusCode::UNPROCESSABLE_ENTITY, html(&page)).into_response()
    };
    let req = match forms::parse(&kind, &f) {
        Ok(r) => r,
        Err(e) => return again(ctx.lang.t(&e.ja, &e.en).to_string(), e.field),
    };
    match s
        .registry
        .enter_provisional(&tenant, &req, &ctx.caller.actor())
        .await
    {
        Ok((id, _)) => Redirect::to(&format!("/ui/approvals/{id}?done=entered")).into_response(),
        // j440: refused before validation, with the one refusal every
        // support-measure block gives.
        Err(e @ crate::service::ServiceError::SupportBlocked { .. }) => ctx.error(&e.into()),
        Err(e) => {
            let api = crate::api::error::ApiError::from(e);
            let field = api.body.field.clone().unwrap_or_default();
            again(
                ctx.lang
                    .t(&api.body.message_ja, &api.body.message_en)
                    .to_string(),
                field,
            )
        }
    }
}

/// A provisional change as the review list shows it.
pub struct PendingRow {
    pub id: i64,
    pub summary: String,
    pub status: String,
    pub entered_by: String,
    pub entered_terminal: String,
    pub entered_at: String,
    pub decided_by: String,
    pub decided_at: String,
    pub comment: String,
    pub change_id: Option<i64>,
}

fn row(p: &PendingChange, en: bool) -> PendingRow {
    PendingRow {
        id: p.pending_id,
        summary: p.summary.clone(),
        status: if en {
            p.status.label_en()
        } else {
            p.status.label_ja()
        }
        .to_string(),
        entered_by: p.entered_by.clone(),
        entered_terminal: p.entered_terminal.clone(),
        entered_at: when(p.entered_at),
        decided_by: p.decided_by.clone().unwrap_or_default(),
        decided_at: p.decided_at.map(when).unwrap_or_default(),
        comment: p.comment.clone().unwrap_or_default(),
        change_id: p.change_id,
    }
}

#[derive(Template)]
#[template(path = "approvals.html")]
struct ApprovalsPage {
    c: Chrome,
    rows: Vec<PendingRow>,
    status: String,
    statuses: Vec<(&'static str, String)>,
    can_approve: bool,
    bulk_limit: usize,
}

#[derive(serde::Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    done: Option<String>,
}

pub async fn approvals(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let (ctx, tenant) = match Ctx::for_page(&s, &headers, Permission::EnterChange).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (status, done) = q.map(|Query(q)| (q.status, q.done)).unwrap_or_default();
    let status = status
        .as_deref()
        .and_then(PendingStatus::parse)
        .unwrap_or(PendingStatus::Pending);
    let list = match s.registry.pending_list(&tenant, status, 200).await {
        Ok(l) => l,
        Err(e) => return ctx.error(&e.into()),
    };
    let persons: Vec<machi_domain::ids::AddresseeNumber> = list
        .iter()
        .flat_map(|p| p.persons.iter().cloned())
        .collect();
    let restricted = match s.registry.support_covered(&tenant, &persons).await {
        Ok(p) => p,
        Err(e) => return ctx.error(&e.into()),
    };
    if !list.is_empty()
        && let Err(e) = s
            .registry
            .log_access_of(
                &tenant,
                &ctx.caller.actor(),
                "read.provisional_list",
                &list
                    .iter()
                    .map(|p| format!("pending:{}", p.pending_id))
                    .collect::<Vec<_>>()
                    .join(","),
                &persons,
                serde_json::json!({ "status": status.as_str(), "entries": list.len() }),
                None,
            )
            .await
    {
        return ctx.error(&e.into());
    }
    let en = ctx.lang.en;
    html(&ApprovalsPage {
        c: Chrome::new(&ctx, "審査・決裁", "Review and approval")
            .with_flash(done.map(|d| flash(&ctx, &d))),
        rows: list
            .iter()
            .map(|p| {
                let mut r = row(p, en);
                // j440: an entry concerning a person the shield of a
                // support measure covers shows no names or reason.
                if p.persons.iter().any(|a| restricted.contains(a)) {
                    r.summary = if en {
                        "(includes a person under a support measure: withheld)"
                    } else {
                        "（支援措置対象者を含むため非表示）"
                    }
                    .into();
                }
                r
            })
            .collect(),
        status: status.as_str().into(),
        statuses: [
            PendingStatus::Pending,
            PendingStatus::Approved,
            PendingStatus::Returned,
            PendingStatus::Withdrawn,
        ]
        .into_iter()
        .map(|st| {
            (
                st.as_str(),
                if en { st.label_en() } else { st.label_ja() }.to_string(),
            )
        })
        .collect(),
        can_approve: ctx.can(Permission::ApproveChange),
        bulk_limit: crate::service::approvals::BULK_LIMIT,
    })
}

fn flash(ctx: &Ctx, done: &str) -> String {
    match done {
        "entered" => ctx.lang.t(
            "仮登録しました。決裁者の審査を待っています。",
            "Entered provisionally; awaiting a supervisor's review.",
        ),
        "approved" => ctx.lang.t("本登録しました。", "Approved and committed."),
        "returned" => ctx.lang.t("差し戻しました。", "Sent back."),
        "withdrawn" => ctx.lang.t("取り下げました。", "Withdrawn."),
        _ => "",
    }
    .to_string()
}

#[derive(Template)]
#[template(path = "pending.html")]
struct PendingPage {
    c: Chrome,
    p: PendingRow,
    request: String,
    can_approve: bool,
    can_withdraw: bool,
    /// After an approved 転出: the movers, for the 転出証明書 (j660).
    move_out_persons: Vec<String>,
}

pub async fn pending_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let (ctx, tenant) = match Ctx::for_page(&s, &headers, Permission::EnterChange).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(id) = path.ok().and_then(|Path(id)| id.parse::<i64>().ok()) else {
        return ctx.error(&UiError {
            status: StatusCode::BAD_REQUEST,
            ja: "仮登録の番号は数字です。".into(),
            en: "a provisional change id is a number".into(),
        });
    };
    let p = match s.registry.pending(&tenant, id).await {
        Ok(p) => p,
        Err(e) => return ctx.error(&e.into()),
    };
    // Viewing the provisional content is a read of personal data, blocked
    // for protected persons like their record (j380, j440).
    if let Err(e) = s
        .registry
        .log_access_of(
            &tenant,
            &ctx.caller.actor(),
            "read.provisional",
            &format!("pending:{id}"),
            &p.persons,
            serde_json::json!({ "pending_id": id }),
            Some(machi_domain::support::SupportPurpose::View),
        )
        .await
    {
        return ctx.error(&e.into());
    }
    let request: Value = p.request.clone();
    let move_out_persons = if p.status == PendingStatus::Approved && p.reason == "move_out" {
        request["command"]["persons"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    } else {
        vec![]
    };
    let done = q.ok().and_then(|Query(q)| q.done);
    html(&PendingPage {
        c: Chrome::new(&ctx, "仮登録の内容", "Provisional change")
            .with_flash(done.map(|d| flash(&ctx, &d))),
        request: {
            let mut shown = request;
            crate::api::views::mask_my_numbers(&mut shown);
            serde_json::to_string_pretty(&shown).unwrap_or_default()
        },
        can_approve: ctx.can(Permission::ApproveChange)
            && p.status == PendingStatus::Pending
            && p.entered_by != ctx.login,
        can_withdraw: p.status == PendingStatus::Pending && p.entered_by == ctx.login,
        move_out_persons,
        p: row(&p, ctx.lang.en),
    })
}

/// Approve, send back or withdraw one provisional change.
pub async fn decide(
    State(s): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let ctx = match Ctx::load(&s, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let f = FormData(form);
    if let Err(r) = ctx.check_csrf(&f.text("csrf")) {
        return r;
    }
    let Some(id) = path.ok().and_then(|Path(id)| id.parse::<i64>().ok()) else {
        return ctx.error(&UiError::forbidden());
    };
    let action = f.text("action");
    let needed = if action == "withdraw" {
        Permission::EnterChange
    } else {
        Permission::ApproveChange
    };
    let tenant = match ctx.require(needed) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let actor = ctx.caller.actor();
    let result = match action.as_str() {
        "approve" => s
            .registry
            .approve(&tenant, id, &actor)
            .await
            .map(|_| "approved"),
        "return" => s
            .registry
            .close_pending(
                &tenant,
                id,
                PendingStatus::Returned,
                &f.text("comment"),
                &actor,
            )
            .await
            .map(|_| "returned"),
        "withdraw" => s
            .registry
            .close_pending(
                &tenant,
                id,
                PendingStatus::Withdrawn,
                &f.text("comment"),
                &actor,
            )
            .await
            .map(|_| "withdrawn"),
        _ => return ctx.error(&UiError::forbidden()),
    };
    match result {
        Ok(done) => Redirect::to(&format!("/ui/approvals/{id}?done={done}")).into_response(),
        Err(e) => ctx.error(&e.into()),
    }
}

/// 本登録 of the selected provisional changes (j530: all or a part, with
/// an upper limit). Each is committed in its own transaction; the page
/// reports which failed and why.
pub async fn approve_bulk(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let f = FormData(form);
    let (ctx, tenant) = match Ctx::for_form(&s, &headers, &f, Permission::ApproveChange).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let ids: Vec<i64> = f.all("id").iter().filter_map(|i| i.parse().ok()).collect();
    if ids.len() > crate::service::approvals::BULK_LIMIT {
        return ctx.error(&UiError {
            status: StatusCode::BAD_REQUEST,
            ja: format!(
                "一括決裁は{}件までです。",
                crate::service::approvals::BULK_LIMIT
            ),
            en: format!(
                "at most {} changes per bulk approval",
                crate::service::approvals::BULK_LIMIT
            ),
        });
    }
    let actor = ctx.caller.actor();
    let mut failed = vec![];
    for id in &ids {
        if let Err(e) = s.registry.approve(&tenant, *id, &actor).await {
            let e = UiError::from(e);
            failed.push(format!("{id}: {}", ctx.lang.t(&e.ja, &e.en)));
        }
    }
    if failed.is_empty() {
        Redirect::to("/ui/approvals?done=approved").into_response()
    } else {
        ctx.error(&UiError {
            status: StatusCode::CONFLICT,
            ja: format!(
                "決裁できなかった仮登録があります（他は本登録済み）: {}",
                failed.join(" / ")
            ),
            en: format!(
                "some could not be approved (the others were): {}",
                failed.join(" / ")
            ),
        })
    }
}

//! Entering changes (仮登録) and reviewing them (審査・決裁, j530).

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use machi_domain::access::Permission;

use super::forms::{self, FormData, KINDS, PERSON_SLOTS};
use super::prefill::{self, Known};
use super::{Chrome, Ctx, Lang, UiError, html, when};
use crate::api::AppState;
use crate::api::views::ResidentView;
use crate::store::pending::{PendingChange, PendingStatus};
use machi_domain::change::{AsOf, ChangeRequest, Notice};
use machi_domain::ids::MunicipalityCode;

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
    /// What the registry knows: members, person, addresses.
    known: Known,
    /// The entry sent back that this form enters again, with its reason.
    resubmits: Option<i64>,
    returned_reason: String,
}

impl EntryPage {
    /// Whether `a` is the value of field `k` (a select's chosen option).
    fn chosen(&self, k: &str, a: &str) -> bool {
        self.f.v(k) == a
    }
}

fn entry_page(
    ctx: &Ctx,
    kind: &str,
    f: FormData,
    error: Option<(String, String)>,
    known: Known,
) -> EntryPage {
    let kind_known = KINDS.iter().find(|k| k.0 == kind);
    let kind = kind_known.map_or("", |k| k.0);
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
        kind_label: kind_known
            .map(|k| ctx.lang.t(k.1, k.2).to_string())
            .unwrap_or_default(),
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
        resubmits: f.get("resubmits").and_then(|v| v.parse().ok()),
        returned_reason: String::new(),
        f,
        known,
    }
}

/// The entry form; query parameters name what it is opened from (e.g.
/// `?type=move_within&household_number=…`, `?type=death&person=…`) and the
/// registry fills in the rest (members, current values, addresses).
/// `?resubmit=N` opens entry N, sent back to the clerk, as it was entered.
pub async fn entry_form(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let ctx = match Ctx::load(&s, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let tenant = match ctx.require(Permission::EnterChange) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let mut f = FormData(q.ok().map(|Query(q)| q).unwrap_or_default());
    let mut returned_reason = String::new();
    if let Some(id) = f.get("resubmit").and_then(|v| v.parse::<i64>().ok()) {
        match returned_entry(&s, &ctx, &tenant, id).await {
            Ok((kind, pairs, reason)) => {
                f = FormData(pairs);
                f.0.push(("type".into(), kind));
                f.0.push(("resubmits".into(), id.to_string()));
                returned_reason = reason;
            }
            Err(r) => return r,
        }
    }
    let kind = f.text("type");
    if f.get("input_terminal").is_none() {
        let terminal = match &ctx.caller {
            crate::service::Caller::Staff { terminal, .. } => terminal.clone(),
            _ => String::new(),
        };
        f.0.push(("input_terminal".into(), terminal));
    }
    let known = match prefill::load(&s, &ctx, &tenant, &kind, &mut f).await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let mut page = entry_page(&ctx, &kind, f, None, known);
    page.returned_reason = returned_reason;
    html(&page)
}

/// Entry `id` as form fields, if it was sent back to the caller and not yet
/// entered again; with the supervisor's reason.
async fn returned_entry(
    s: &AppState,
    ctx: &Ctx,
    tenant: &MunicipalityCode,
    id: i64,
) -> Result<(String, Vec<(String, String)>, String), Response> {
    let p = s
        .registry
        .pending(tenant, id)
        .await
        .map_err(|e| ctx.error(&e.into()))?;
    if p.entered_by != ctx.login || p.status != PendingStatus::Returned {
        return Err(ctx.error(&UiError {
            status: StatusCode::CONFLICT,
            ja: "差し戻された自分の仮登録だけを修正して再登録できます。".into(),
            en: "only your own entries that were sent back can be edited and entered again".into(),
        }));
    }
    // Reading the entry is a read of its persons' data (j380, j440).
    s.registry
        .log_access_of(
            tenant,
            &ctx.caller.actor(),
            "read.provisional",
            &format!("pending:{id}"),
            &p.persons,
            serde_json::json!({ "pending_id": id, "for": "resubmit" }),
            Some(machi_domain::support::SupportPurpose::View),
        )
        .await
        .map_err(|e| ctx.error(&e.into()))?;
    let req: ChangeRequest = serde_json::from_value(p.request.clone()).map_err(|_| {
        ctx.error(&UiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            ja: "仮登録の内容を読めませんでした。".into(),
            en: "the entry could not be read".into(),
        })
    })?;
    let (kind, pairs) = forms::to_form(&req);
    Ok((kind, pairs, p.comment.unwrap_or_default()))
}

/// One item of a person before and after the change.
pub struct DiffItem {
    pub label: String,
    pub before: String,
    pub after: String,
    pub changed: bool,
}

/// One person the change touches, as the confirmation shows them.
pub struct DiffPerson {
    pub name: String,
    /// 宛名番号, or "" for a person the change enters (numbered on approval).
    pub addressee_number: String,
    pub items: Vec<DiffItem>,
}

#[derive(Template)]
#[template(path = "entry_confirm.html")]
struct ConfirmPage {
    c: Chrome,
    kind_label: String,
    effective_date: String,
    persons: Vec<DiffPerson>,
    notices: Vec<String>,
    /// Every field of the form, carried to the button that enters it.
    hidden: Vec<(String, String)>,
}

fn status_label(en: bool, v: &ResidentView) -> String {
    if !en {
        return v.status_label_ja.clone();
    }
    match v.status.as_str() {
        "resident" => "Resident",
        "moved_out" => "Moved out",
        "deceased" => "Deceased",
        "removed" => "Removed ex officio",
        "entry_cancelled" => "Entry cancelled",
        _ => "",
    }
    .to_string()
}

/// The items of a record the confirmation compares.
fn items(l: Lang, v: &ResidentView, household: String) -> Vec<(String, String)> {
    let mut address = v.address.clone();
    if let Some(x) = &v.address_annex {
        address.push('　');
        address.push_str(x);
    }
    if let Some(p) = &v.postal_code {
        address.push_str(&format!("（〒{p}）"));
    }
    vec![
        (l.t("氏名", "Name").into(), v.name.clone()),
        (
            l.t("フリガナ", "Reading").into(),
            v.name_kana.clone().unwrap_or_default(),
        ),
        (
            l.t("生年月日", "Date of birth").into(),
            v.birth_date.text.clone(),
        ),
        (l.t("続柄", "Relationship").into(), v.relationship.clone()),
        (
            l.t("世帯主", "Head of household").into(),
            v.head_name.clone().unwrap_or_default(),
        ),
        (l.t("世帯番号", "Household").into(), household),
        (l.t("住所", "Address").into(), address),
        (
            l.t("本籍・筆頭者", "Domicile / head").into(),
            v.registered_domicile
                .as_ref()
                .map(|d| format!("{}　{}", d.domicile, d.head))
                .unwrap_or_default(),
        ),
        (
            l.t("住定日", "At address since").into(),
            v.address_since
                .as_ref()
                .map(|d| d.text.clone())
                .unwrap_or_default(),
        ),
        (l.t("状態", "Status").into(), status_label(l.en, v)),
        (
            l.t("転出先", "Moving to").into(),
            v.removal
                .as_ref()
                .and_then(|m| {
                    let d = m.destination.clone()?;
                    Some(match &m.destination_postal_code {
                        Some(p) => format!("{d}（〒{p}）"),
                        None => d,
                    })
                })
                .unwrap_or_default(),
        ),
    ]
}

/// The confirmation of a validated form: who, from what to what, and what
/// the rules say (j490, j500), before anything is entered.
async fn confirm_page(
    s: &AppState,
    ctx: &Ctx,
    tenant: &MunicipalityCode,
    kind: &str,
    f: &FormData,
    out: &crate::service::registry::ChangeOutcome,
) -> Response {
    let l = ctx.lang;
    let eras = s.registry.eras();
    let actor = ctx.caller.actor();
    // Household numbers the clerk named or that exist already; any other in
    // the outcome is a new household, numbered on approval.
    let mut known_households: Vec<String> = [
        "household_number",
        "join_household",
        "into_household",
        "from_household",
    ]
    .iter()
    .filter_map(|k| f.get(k).map(str::to_string))
    .collect();
    let mut persons: Vec<(Option<ResidentView>, ResidentView)> = vec![];
    for row in &out.rows {
        let after = ResidentView::new(row, eras);
        let before = if row.history_number > 1 {
            match s
                .registry
                .resident(
                    tenant,
                    &row.record.addressee_number,
                    AsOf::default(),
                    &actor,
                )
                .await
            {
                Ok((r, _)) => Some(ResidentView::new(&r, eras)),
                Err(e) => return ctx.error(&e.into()),
            }
        } else {
            None
        };
        if let Some(b) = &before {
            known_households.push(b.household_number.clone());
        }
        persons.push((before, after));
    }
    let household_text = |h: &str| {
        if known_households.iter().any(|k| k == h) {
            h.to_string()
        } else {
            l.t(
                "（新しい世帯・決裁時に採番）",
                "(new household, numbered on approval)",
            )
            .to_string()
        }
    };
    let shown: Vec<DiffPerson> = persons
        .iter()
        .map(|(before, after)| {
            let a = items(l, after, household_text(&after.household_number));
            let items = match before {
                Some(b) => items(l, b, household_text(&b.household_number))
                    .into_iter()
                    .zip(a)
                    .map(|((label, before), (_, after))| DiffItem {
                        changed: before != after,
                        label,
                        before,
                        after,
                    })
                    .collect(),
                None => a
                    .into_iter()
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(label, after)| DiffItem {
                        label,
                        before: l.t("（新規）", "(new)").to_string(),
                        after,
                        changed: true,
                    })
                    .collect(),
            };
            DiffPerson {
                name: after.name.clone(),
                addressee_number: if before.is_some() {
                    after.addressee_number.clone()
                } else {
                    String::new()
                },
                items,
            }
        })
        .collect();
    let notices = out
        .notices
        .iter()
        .map(|n| match n {
            Notice::HeadAssigned {
                addressee_number, ..
            } => {
                let name = persons
                    .iter()
                    .find(|(_, a)| a.addressee_number == addressee_number.as_str())
                    .map(|(_, a)| a.name.clone())
                    .unwrap_or_else(|| addressee_number.to_string());
                if l.en {
                    format!("{name}, the only member left, becomes head of household ex officio.")
                } else {
                    format!("残る世帯員が1人のため、{name}さんを職権で世帯主とします。")
                }
            }
            Notice::HeadChangeRequested { household_number } => {
                if l.en {
                    format!(
                        "Household {household_number} is left without a head: send a request to notify a change of head."
                    )
                } else {
                    format!(
                        "世帯番号 {household_number} の世帯は世帯主がいなくなります。世帯主変更依頼通知書を送付してください。"
                    )
                }
            }
        })
        .collect();
    let kind_label = KINDS
        .iter()
        .find(|k| k.0 == kind)
        .map(|k| l.t(k.1, k.2).to_string())
        .unwrap_or_default();
    html(&ConfirmPage {
        c: Chrome::new(ctx, "入力内容の確認", "Check before entering"),
        kind_label,
        effective_date: persons
            .first()
            .map(|(_, a)| a.change.effective_date.text.clone())
            .unwrap_or_default(),
        persons: shown,
        notices,
        hidden: f
            .0
            .iter()
            .filter(|(k, v)| k != "csrf" && k != "step" && !v.trim().is_empty())
            .cloned()
            .collect(),
    })
}

/// The form's two steps. Sent from the form (`step` absent or `confirm`):
/// validated against the registry (a dry run) and shown as a confirmation
/// of who changes from what to what. Sent from the confirmation
/// (`step=enter`): entered provisionally (or, with `resubmits`, entered
/// again after 差戻し); the clerk lands on the provisional change's page.
/// `step=edit` goes back to the form with what was typed.
pub async fn enter(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let mut f = FormData(form);
    let (ctx, tenant) = match Ctx::for_form(&s, &headers, &f, Permission::EnterChange).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let kind = f.text("type");
    let step = f.text("step");
    let failure = if step == "edit" {
        None
    } else {
        if step != "enter" {
            prefill::fill_postal_code(&s, &tenant, &mut f).await;
        }
        match forms::parse(&kind, &f) {
            Err(e) => Some((ctx.lang.t(&e.ja, &e.en).to_string(), e.field)),
            Ok(req) => {
                let actor = ctx.caller.actor();
                let result = if step == "enter" {
                    match f.get("resubmits").and_then(|v| v.parse().ok()) {
                        Some(old) => s.registry.resubmit(&tenant, old, &req, &actor).await,
                        None => s.registry.enter_provisional(&tenant, &req, &actor).await,
                    }
                    .map(|(id, out)| (Some(id), out))
                } else {
                    s.registry
                        .dry_run(&tenant, &req, &actor)
                        .await
                        .map(|out| (None, out))
                };
                match result {
                    Ok((Some(id), _)) => {
                        return Redirect::to(&format!("/ui/approvals/{id}?done=entered"))
                            .into_response();
                    }
                    Ok((None, out)) => {
                        return confirm_page(&s, &ctx, &tenant, &kind, &f, &out).await;
                    }
                    // j440: refused before validation, with the one refusal
                    // every support-measure block gives.
                    Err(e @ crate::service::ServiceError::SupportBlocked { .. }) => {
                        return ctx.error(&e.into());
                    }
                    Err(e) => {
                        let api = crate::api::error::ApiError::from(e);
                        Some((
                            ctx.lang
                                .t(&api.body.message_ja, &api.body.message_en)
                                .to_string(),
                            api.body.field.clone().unwrap_or_default(),
                        ))
                    }
                }
            }
        }
    };
    let status = if failure.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let known = match prefill::load(&s, &ctx, &tenant, &kind, &mut f).await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let page = entry_page(&ctx, &kind, f, failure, known);
    (status, html(&page)).into_response()
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
    rv: super::review::ReviewView,
    can_approve: bool,
    can_withdraw: bool,
    /// After an approved 転出: the movers (宛名番号, 氏名), for the
    /// 転出証明書 (j660).
    move_out_persons: Vec<(String, String)>,
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
    let review = match s
        .registry
        .review_pending(&tenant, &p, &ctx.caller.actor())
        .await
    {
        Ok(r) => r,
        Err(e) => return ctx.error(&e.into()),
    };
    let move_out_persons = if p.status == PendingStatus::Approved && p.reason == "move_out" {
        review
            .persons
            .iter()
            .map(|r| {
                (
                    r.after.addressee_number.to_string(),
                    r.after.name.as_str().to_string(),
                )
            })
            .collect()
    } else {
        vec![]
    };
    let done = q.ok().and_then(|Query(q)| q.done);
    html(&PendingPage {
        c: Chrome::new(&ctx, "仮登録の内容", "Provisional change")
            .with_flash(done.map(|d| flash(&ctx, &d))),
        rv: super::review::ReviewView::new(review, &[], ctx.lang, s.registry.eras()),
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

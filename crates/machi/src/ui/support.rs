//! Support measures (支援措置, j160, j380, j440) for the support-measures
//! officer: the list with period alerts, registration, confirmation,
//! extension, ending, and the release of one blocked request.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::NaiveDate;
use machi_domain::access::Permission;
use machi_domain::dates::{DatePolicy, DateValue};
use machi_domain::ids::{AddresseeNumber, MunicipalityCode};
use machi_domain::support::{
    Affair, AffairRequest, CancelReason, Contact, EndReason, NewSupportMeasure, Offender,
    RelatedPerson, Requester, SupportAlert, SupportPurpose,
};

use super::forms::FormData;
use super::{Chrome, Ctx, UiError, html, when};
use crate::api::AppState;
use crate::service::support::SupportMeasureView;

/// A measure as the list and the detail page show it.
pub struct MeasureRow {
    pub id: i64,
    pub requester: String,
    pub persons: String,
    pub status: String,
    pub filed_on: String,
    pub period: String,
    pub alert: String,
    pub urgent: bool,
    pub in_effect: bool,
    pub provisional: bool,
}

fn wareki(s: &AppState, d: NaiveDate) -> String {
    s.registry.eras().format_wareki(d)
}

fn alert_text(s: &AppState, en: bool, a: &SupportAlert) -> (String, bool) {
    match a {
        SupportAlert::None => (String::new(), false),
        SupportAlert::EndingSoon {
            end_date,
            days_left,
        } => (
            if en {
                format!(
                    "ends on {} ({days_left} days left): extension possible",
                    wareki(s, *end_date)
                )
            } else {
                format!(
                    "{}に終了（残り{days_left}日）: 延長できます",
                    wareki(s, *end_date)
                )
            },
            true,
        ),
        SupportAlert::PeriodEnded { end_date } => (
            if en {
                format!(
                    "period ended on {}: extend or end the measure",
                    wareki(s, *end_date)
                )
            } else {
                format!(
                    "{}で期間が終了: 延長または終了の処理をしてください",
                    wareki(s, *end_date)
                )
            },
            true,
        ),
    }
}

fn row(s: &AppState, en: bool, v: &SupportMeasureView) -> MeasureRow {
    let m = &v.stored.measure;
    let (alert, urgent) = alert_text(s, en, &v.alert);
    MeasureRow {
        id: v.stored.measure_id,
        requester: m.requester.addressee_number.to_string(),
        persons: m
            .protected_persons()
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(" "),
        status: m.status.label_ja().to_string(),
        filed_on: wareki(s, m.filed_on),
        period: m
            .period
            .map(|p| format!("{} 〜 {}", wareki(s, p.start), wareki(s, p.end)))
            .unwrap_or_else(|| {
                format!(
                    "{} {} 〜",
                    if en {
                        "provisional from"
                    } else {
                        "仮支援措置"
                    },
                    wareki(s, m.provisional_start)
                )
            }),
        alert,
        urgent,
        in_effect: m.in_effect(),
        provisional: m.confirmed_on.is_none() && m.in_effect(),
    }
}

/// What a measure records (j160), item by item as a person reads it:
/// dates in 和暦, affairs, reasons and roles by their names.
fn recorded_items(
    s: &AppState,
    l: super::Lang,
    m: &machi_domain::support::SupportMeasure,
) -> Vec<(String, String)> {
    use machi_domain::support::{Closing, MunicipalityRole};
    let d = |x: NaiveDate| wareki(s, x);
    let eras = s.registry.eras();
    let mut out: Vec<(String, String)> = vec![];
    let mut put = |ja: &str, en: &str, v: String| {
        if !v.is_empty() {
            out.push((l.t(ja, en).to_string(), v));
        }
    };
    put("申出日", "Filed on", d(m.filed_on));
    put(
        "仮支援措置の開始日",
        "Provisional from",
        d(m.provisional_start),
    );
    if let Some(c) = m.confirmed_on {
        put("支援の必要性を確認した日", "Confirmed on", d(c));
    }
    if let Some(p) = m.period {
        put(
            "支援措置の期間",
            "Period",
            format!("{} 〜 {}", d(p.start), d(p.end)),
        );
    }
    for e in &m.extensions {
        put(
            "延長",
            "Extension",
            format!(
                "{} → {}（{}{}）",
                d(e.previous_end),
                d(e.new_end),
                d(e.extended_on),
                l.t("に処理", " processed")
            ),
        );
    }
    match m.closing {
        Some(Closing::Ended { on, reason }) => put(
            "終了",
            "Ended",
            format!("{}（{}）", d(on), reason.label_ja()),
        ),
        Some(Closing::Cancelled { on, reason }) => put(
            "取消し",
            "Cancelled",
            format!("{}（{}）", d(on), reason.label_ja()),
        ),
        None => {}
    }
    put(
        "申出者の宛名番号",
        "Requester's addressee no.",
        m.requester.addressee_number.to_string(),
    );
    put(
        "申出を受けた市区町村",
        "This municipality is",
        match m.requester.municipality_role {
            MunicipalityRole::CurrentAddress => l.t("現住所地", "the current address"),
            MunicipalityRole::FormerAddress => l.t("前住所地等", "a former address"),
        }
        .to_string(),
    );
    let c = &m.requester.contact;
    for (ja, en, v) in [
        ("電話番号", "Phone", &c.phone),
        ("携帯電話番号", "Mobile phone", &c.mobile_phone),
        ("メールアドレス", "E-mail", &c.email),
        ("その他の連絡先", "Other contact", &c.other),
    ] {
        put(ja, en, v.clone().unwrap_or_default());
    }
    for r in &m.related_persons {
        let who = [
            r.name.as_ref().map(|n| n.as_str().to_string()),
            r.addressee_number
                .as_ref()
                .map(|a| format!("{}{a}", l.t("宛名番号 ", "addressee no. "))),
            r.birth_date.as_ref().map(|b| b.display_wareki(eras)),
            r.sex.map(|x| x.label_ja().to_string()),
            Some(format!(
                "{}{}",
                l.t("申出者との関係 ", "relationship "),
                r.relationship
            )),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("・");
        put("併せて支援を求める者", "Also protected", who);
    }
    for o in &m.offenders {
        let who = [
            o.name.as_ref().map(|n| n.as_str().to_string()),
            o.addressee_number
                .as_ref()
                .map(|a| format!("{}{a}", l.t("宛名番号 ", "addressee no. "))),
            o.birth_date.as_ref().map(|b| b.display_wareki(eras)),
            o.sex.map(|x| x.label_ja().to_string()),
            o.address.clone(),
            o.other.clone(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("・");
        put("加害者", "Offender", who);
    }
    for a in &m.affairs {
        let mut v = a.affair.label_ja().to_string();
        if !a.addresses.is_empty() {
            v = format!("{v}（{}）", a.addresses.join("、"));
        }
        put("支援を求める事務", "Affair", v);
    }
    let f = &m.forwarding;
    for t in &f.forwarded_to {
        put(
            "転送先",
            "Forwarded to",
            format!("{}（{}）", t.municipality, d(t.on)),
        );
    }
    if let Some(i) = &f.initial_municipality {
        put("当初受付市区町村", "First received by", i.to_string());
    }
    if let Some(r) = f.received_on {
        put(
            "転送された申出書の受付日",
            "Forwarded request received on",
            d(r),
        );
    }
    if let Some(n) = f.no_need_notified_on {
        put("必要性なしの連絡日", "No-need notice sent on", d(n));
    }
    out
}

/// Alerts for the home page of a support-measures officer.
pub async fn alerts(s: &AppState, ctx: &Ctx) -> Vec<(String, String, String)> {
    let Some(t) = ctx
        .tenant
        .as_ref()
        .filter(|_| ctx.can(Permission::ManageSupportMeasures))
    else {
        return vec![];
    };
    let Ok(list) = s.registry.support_active(t, &ctx.caller.actor()).await else {
        return vec![];
    };
    list.iter()
        .map(|v| row(s, ctx.lang.en, v))
        .filter(|r| r.urgent)
        .map(|r| (r.requester, format!("#{}", r.id), r.alert))
        .collect()
}

#[derive(Template)]
#[template(path = "support_list.html")]
struct ListPage {
    c: Chrome,
    rows: Vec<MeasureRow>,
    person: String,
    error: Option<String>,
}

#[derive(serde::Deserialize)]
pub struct ListQuery {
    person: Option<String>,
    done: Option<String>,
}

pub async fn list(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let (ctx, tenant) = match Ctx::for_page(&s, &headers, Permission::ManageSupportMeasures).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (person, done) = q
        .ok()
        .map(|Query(q)| (q.person, q.done))
        .unwrap_or_default();
    let person = person.unwrap_or_default();
    let actor = ctx.caller.actor();
    let (list, error) = if person.trim().is_empty() {
        (s.registry.support_active(&tenant, &actor).await, None)
    } else {
        match person.trim().parse::<AddresseeNumber>() {
            Ok(p) => (
                s.registry.support_measures_of(&tenant, &p, &actor).await,
                None,
            ),
            Err(e) => {
                let e: &dyn machi_domain::error::Localized = &e;
                let e = UiError::from(e);
                (Ok(vec![]), Some(ctx.lang.t(&e.ja, &e.en).to_string()))
            }
        }
    };
    let list = match list {
        Ok(l) => l,
        Err(e) => return ctx.error(&e.into()),
    };
    let flash = done.map(|d| {
        match d.as_str() {
            "registered" => ctx.lang.t(
                "仮支援措置として登録しました。",
                "Registered as a provisional measure.",
            ),
            _ => ctx.lang.t("処理しました。", "Done."),
        }
        .to_string()
    });
    html(&ListPage {
        c: Chrome::new(&ctx, "支援措置", "Support measures").with_flash(flash),
        rows: list.iter().map(|v| row(&s, ctx.lang.en, v)).collect(),
        person,
        error,
    })
}

#[derive(Template)]
#[template(path = "support_new.html")]
struct NewPage {
    c: Chrome,
    f: FormData,
    error: Option<String>,
}

pub async fn new_form(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let ctx = match Ctx::load(&s, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Err(r) = ctx.require(Permission::ManageSupportMeasures) {
        return r;
    }
    let mut f = FormData(q.ok().map(|Query(q)| q).unwrap_or_default());
    if f.get("filed_on").is_none() {
        f.0.push(("filed_on".into(), s.registry.today().to_string()));
    }
    html(&NewPage {
        c: Chrome::new(&ctx, "支援措置の申出を登録", "Register a support request"),
        f,
        error: None,
    })
}

fn day(s: &AppState, f: &FormData, field: &str) -> Result<Option<NaiveDate>, UiError> {
    let Some(v) = f.get(field) else {
        return Ok(None);
    };
    let d = DateValue::parse(v, s.registry.eras(), DatePolicy::CalendarOnly).map_err(|e| {
        let e: &dyn machi_domain::error::Localized = &e;
        UiError::from(e)
    })?;
    Ok(d.as_calendar())
}

fn person_list(f: &FormData, field: &str) -> Result<Vec<AddresseeNumber>, UiError> {
    f.text(field)
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<AddresseeNumber>().map_err(|e| {
                let e: &dyn machi_domain::error::Localized = &e;
                UiError::from(e)
            })
        })
        .collect()
}

fn request_of(s: &AppState, f: &FormData) -> Result<NewSupportMeasure, UiError> {
    let bad = |ja: &str, en: &str| UiError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        ja: ja.into(),
        en: en.into(),
    };
    let requester = f
        .get("requester")
        .ok_or_else(|| {
            bad(
                "申出者の宛名番号を入力してください。",
                "enter the requester's addressee number",
            )
        })?
        .parse::<AddresseeNumber>()
        .map_err(|e| {
            let e: &dyn machi_domain::error::Localized = &e;
            UiError::from(e)
        })?;
    let filed_on = day(s, f, "filed_on")?
        .ok_or_else(|| bad("申出日を入力してください。", "enter the filing date"))?;
    let mut affairs = vec![];
    for (key, affair) in [
        ("affair_viewing", Affair::RegistryViewing),
        ("affair_copy", Affair::ResidentRecordCopy),
        ("affair_annex", Affair::FamilyRegisterAnnexCopy),
    ] {
        if f.checked(key) {
            affairs.push(AffairRequest {
                affair,
                addresses: f
                    .get("blocked_address")
                    .map(|a| vec![a.to_string()])
                    .unwrap_or_default(),
            });
        }
    }
    let offenders = if f.get("offender_name").is_some() || f.get("offender_address").is_some() {
        vec![Offender {
            name: f
                .get("offender_name")
                .map(|n| n.parse())
                .transpose()
                .map_err(|e: machi_domain::names::NameError| {
                    let e: &dyn machi_domain::error::Localized = &e;
                    UiError::from(e)
                })?,
            addressee_number: None,
            birth_date: None,
            sex: None,
            address: f.get("offender_address").map(str::to_string),
            other: f.get("offender_other").map(str::to_string),
        }]
    } else {
        vec![]
    };
    Ok(NewSupportMeasure {
        filed_on,
        provisional_start: day(s, f, "provisional_start")?,
        requester: Requester {
            addressee_number: requester,
            municipality_role: Default::default(),
            contact: Contact {
                phone: f.get("phone").map(str::to_string),
                ..Default::default()
            },
        },
        related_persons: person_list(f, "related")?
            .into_iter()
            .map(|a| RelatedPerson {
                addressee_number: Some(a),
                name: None,
                name_kana: None,
                alias: None,
                alias_kana: None,
                birth_date: None,
                sex: None,
                previous_address: None,
                relationship: f.text("related_relationship"),
            })
            .collect(),
        offenders,
        affairs,
        forwarding: Default::default(),
    })
}

pub async fn register(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let f = FormData(form);
    let (ctx, tenant) =
        match Ctx::for_form(&s, &headers, &f, Permission::ManageSupportMeasures).await {
            Ok(c) => c,
            Err(r) => return r,
        };
    let again = |e: UiError| {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            html(&NewPage {
                c: Chrome::new(&ctx, "支援措置の申出を登録", "Register a support request"),
                f: f.clone(),
                error: Some(ctx.lang.t(&e.ja, &e.en).to_string()),
            }),
        )
            .into_response()
    };
    let req = match request_of(&s, &f) {
        Ok(r) => r,
        Err(e) => return again(e),
    };
    match s
        .registry
        .support_register(&tenant, &req, &ctx.caller.actor())
        .await
    {
        Ok(v) => {
            Redirect::to(&format!("/ui/support/{}?done=registered", v.measure_id())).into_response()
        }
        Err(e) => again(e.into()),
    }
}

pub struct ReleaseRow {
    pub id: i64,
    pub person: String,
    pub purpose: String,
    pub granted_to: String,
    pub released_by: String,
    pub released_at: String,
    pub used: String,
}

#[derive(Template)]
#[template(path = "support_detail.html")]
struct DetailPage {
    c: Chrome,
    m: MeasureRow,
    /// What is recorded (j160), item by item.
    detail: Vec<(String, String)>,
    releases: Vec<ReleaseRow>,
    can_release: bool,
    persons: Vec<String>,
}

pub async fn detail(
    State(s): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let (ctx, tenant) = match Ctx::for_page(&s, &headers, Permission::ManageSupportMeasures).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(id) = path.ok().and_then(|Path(id)| id.parse::<i64>().ok()) else {
        return ctx.error(&UiError::forbidden());
    };
    let done = q.ok().and_then(|Query(q)| q.done);
    render_detail(
        &s,
        &ctx,
        &tenant,
        id,
        done.map(|_| ctx.lang.t("処理しました。", "Done.").to_string()),
    )
    .await
}

async fn render_detail(
    s: &AppState,
    ctx: &Ctx,
    tenant: &MunicipalityCode,
    id: i64,
    flash: Option<String>,
) -> Response {
    let actor = ctx.caller.actor();
    let v = match s.registry.support_measure(tenant, id, &actor).await {
        Ok(v) => v,
        Err(e) => return ctx.error(&e.into()),
    };
    let persons: Vec<AddresseeNumber> = v.stored.measure.protected_persons();
    let mut releases = vec![];
    for p in &persons {
        match s.registry.support_releases_of(tenant, p, &actor).await {
            Ok(list) => releases.extend(list.into_iter().map(|r| {
                ReleaseRow {
                    id: r.release_id,
                    person: r.addressee_number.to_string(),
                    purpose: match r.purpose {
                        SupportPurpose::View => ctx.lang.t("閲覧・照会", "viewing"),
                        SupportPurpose::Issue => ctx.lang.t("証明書の交付", "certificate"),
                    }
                    .to_string(),
                    granted_to: r.granted_to,
                    released_by: r.released_by,
                    released_at: when(r.released_at),
                    used: match (r.used_by, r.used_at) {
                        (Some(b), Some(a)) => format!("{b} {}", when(a)),
                        _ => ctx.lang.t("未使用", "unused").to_string(),
                    },
                }
            })),
            Err(e) => return ctx.error(&e.into()),
        }
    }
    html(&DetailPage {
        c: Chrome::new(ctx, "支援措置の内容", "Support measure").with_flash(flash),
        m: row(s, ctx.lang.en, &v),
        detail: recorded_items(s, ctx.lang, &v.stored.measure),
        releases,
        can_release: ctx.can(Permission::ReleaseSupportMeasure),
        persons: persons.iter().map(|p| p.to_string()).collect(),
    })
}

/// confirm, extend, end, cancel, or release one request.
pub async fn act(
    State(s): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let f = FormData(form);
    let (ctx, tenant) =
        match Ctx::for_form(&s, &headers, &f, Permission::ManageSupportMeasures).await {
            Ok(c) => c,
            Err(r) => return r,
        };
    let Some(id) = path.ok().and_then(|Path(id)| id.parse::<i64>().ok()) else {
        return ctx.error(&UiError::forbidden());
    };
    let actor = ctx.caller.actor();
    let today = s.registry.today();
    let result: Result<(), UiError> = async {
        match f.text("action").as_str() {
            "confirm" => {
                let start = day(&s, &f, "start")?.unwrap_or(today);
                let end = day(&s, &f, "end")?;
                s.registry
                    .support_confirm(&tenant, id, start, end, &actor)
                    .await?;
            }
            "extend" => {
                let end = day(&s, &f, "end")?;
                s.registry.support_extend(&tenant, id, end, &actor).await?;
            }
            "end" => {
                let reason = match f.text("reason").as_str() {
                    "period_expired" => EndReason::PeriodExpired,
                    "no_longer_needed" => EndReason::NoLongerNeeded,
                    _ => EndReason::Requested,
                };
                s.registry.support_end(&tenant, id, reason, &actor).await?;
            }
            "cancel" => {
                let reason = if f.text("reason") == "withdrawn" {
                    CancelReason::Withdrawn
                } else {
                    CancelReason::NotNeeded
                };
                s.registry
                    .support_cancel(&tenant, id, reason, &actor)
                    .await?;
            }
            "release" => {
                if !ctx.can(Permission::ReleaseSupportMeasure) {
                    return Err(UiError::forbidden());
                }
                let person: AddresseeNumber = f.text("person").parse().map_err(|e| {
                    let e: &dyn machi_domain::error::Localized = &e;
                    UiError::from(e)
                })?;
                let purpose = if f.text("purpose") == "issue" {
                    SupportPurpose::Issue
                } else {
                    SupportPurpose::View
                };
                let operator = f.text("for_operator");
                if operator.is_empty() {
                    return Err(UiError {
                        status: StatusCode::UNPROCESSABLE_ENTITY,
                        ja: "解除する職員のログインIDを入力してください。".into(),
                        en: "enter the login of the staff member the release is for".into(),
                    });
                }
                s.registry
                    .support_release(&tenant, &person, purpose, &operator, &actor)
                    .await?;
            }
            _ => return Err(UiError::forbidden()),
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => Redirect::to(&format!("/ui/support/{id}?done=1")).into_response(),
        Err(e) => ctx.error(&e),
    }
}

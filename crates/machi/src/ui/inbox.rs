//! 申請管理 in the staff UI (issue 11, item 5): the inbox of filings from
//! the citizen portal, one filing as a person reads it (the procedure's
//! labels, dates in 和暦, the signature, the candidates for each person it
//! names), and the clerk's steps, each a form button.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use machi_domain::certificate::counter::IdentityDocument;
use serde::Deserialize;

use super::forms::FormData;
use super::{Chrome, Ctx, UiError, html, when};
use crate::api::AppState;
use crate::api::inbox::{filter_of, identity_of};
use crate::service::inbox::{self, FilingStatus, roles};
use crate::store::portal_filings::StoredPortalFiling;

#[derive(Deserialize, Default)]
pub struct ListQuery {
    procedure: Option<String>,
    status: Option<String>,
    received_from: Option<String>,
    received_to: Option<String>,
    assigned_to: Option<String>,
    signed: Option<String>,
    filed: Option<String>,
    before: Option<i64>,
}

struct Row {
    id: i64,
    receipt: String,
    procedure: String,
    applicant: String,
    received: String,
    status: String,
    assigned: String,
    signed: String,
    /// Why the filing's definition holds it back, if it does.
    definition: String,
    /// Filed by a clerk at the counter (書かない窓口), not online.
    at_counter: bool,
}

#[derive(Template)]
#[template(path = "inbox.html")]
struct ListPage {
    c: Chrome,
    rows: Vec<Row>,
    procedures: Vec<(String, String)>,
    statuses: Vec<(String, String)>,
    clerks: Vec<(String, String)>,
    q: ListQuery,
    next: Option<String>,
    error: Option<String>,
}

impl ListQuery {
    fn v(o: &Option<String>) -> &str {
        o.as_deref().unwrap_or("")
    }
    fn procedure(&self) -> &str {
        Self::v(&self.procedure)
    }
    fn status(&self) -> &str {
        Self::v(&self.status)
    }
    fn received_from(&self) -> &str {
        Self::v(&self.received_from)
    }
    fn received_to(&self) -> &str {
        Self::v(&self.received_to)
    }
    fn assigned_to(&self) -> &str {
        Self::v(&self.assigned_to)
    }
    fn signed(&self) -> &str {
        Self::v(&self.signed)
    }
    fn filed(&self) -> &str {
        Self::v(&self.filed)
    }
}

/// A day as people type it (和暦 or 西暦) to `YYYY-MM-DD`; an unreadable
/// day is kept as typed, so the service refuses it with its message.
fn iso_day(s: &AppState, v: &Option<String>) -> Option<String> {
    let v = v.as_deref().map(str::trim).filter(|v| !v.is_empty())?;
    Some(
        machi_domain::dates::DateValue::parse(
            v,
            s.registry.eras(),
            machi_domain::dates::DatePolicy::CalendarOnly,
        )
        .ok()
        .and_then(|d| d.as_calendar())
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "invalid".into()),
    )
}

/// The staff who may handle filings (login, name): enabled accounts of a
/// role that acts on filings.
async fn clerks_of(
    s: &AppState,
    tenant: &machi_domain::ids::MunicipalityCode,
) -> Vec<(String, String)> {
    s.registry
        .accounts(tenant)
        .await
        .map(|accounts| {
            accounts
                .into_iter()
                .filter(|a| {
                    !a.disabled
                        && a.role
                            .parse::<machi_domain::access::Role>()
                            .is_ok_and(|r| r.allows(roles::ACT))
                })
                .map(|a| (a.login, a.display_name))
                .collect()
        })
        .unwrap_or_default()
}

/// A staff member's name as people read it (the login when unknown).
fn name_of(clerks: &[(String, String)], login: &str) -> String {
    clerks
        .iter()
        .find(|(l, _)| l == login)
        .map(|(_, n)| n.clone())
        .unwrap_or_else(|| login.to_string())
}

fn status_label(f: &StoredPortalFiling, en: bool) -> String {
    FilingStatus::parse(&f.status)
        .map(|s| if en { s.label_en() } else { s.label_ja() }.to_string())
        .unwrap_or_default()
}

/// The inbox: filters and one page of filings, newest first.
pub async fn list(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let (ctx, tenant) = match Ctx::for_page(&s, &headers, roles::READ).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let q = q.ok().map(|Query(q)| q).unwrap_or_default();
    let en = ctx.lang.en;
    let known = match s.registry.inbox_procedures(&tenant).await {
        Ok(k) => k,
        Err(e) => return ctx.error(&UiError::from(e)),
    };
    let mut page = ListPage {
        c: Chrome::new(&ctx, "申請管理", "Inbox"),
        rows: vec![],
        procedures: known
            .iter()
            .map(|(id, ja, e)| (id.clone(), if en { e.clone() } else { ja.clone() }))
            .collect(),
        statuses: std::iter::once((
            "open".to_string(),
            ctx.lang
                .t("未処理（新着・審査中）", "open (new or under review)")
                .to_string(),
        ))
        .chain(FilingStatus::ALL.iter().map(|st| {
            (
                st.code().to_string(),
                ctx.lang.t(st.label_ja(), st.label_en()).to_string(),
            )
        }))
        .collect(),
        clerks: vec![],
        q: ListQuery::default(),
        next: None,
        error: None,
    };
    page.clerks = clerks_of(&s, &tenant).await;
    let from = iso_day(&s, &q.received_from);
    let to = iso_day(&s, &q.received_to);
    let result = match filter_of(
        q.procedure.as_deref(),
        q.status.as_deref(),
        from.as_deref(),
        to.as_deref(),
        q.assigned_to.as_deref(),
        q.signed.as_deref(),
        q.filed.as_deref(),
        q.before,
    ) {
        Ok(filter) => {
            s.registry
                .inbox_list(&tenant, &filter, 50, &ctx.caller.actor())
                .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok((rows, next)) => {
            let eras = s.registry.eras();
            page.rows = rows
                .iter()
                .map(|f| Row {
                    id: f.filing_id,
                    receipt: f.receipt.clone(),
                    procedure: inbox::filing_title(f, en),
                    applicant: inbox::applicant_name(f),
                    received: inbox::received_on(f)
                        .map(|d| eras.format_wareki(d))
                        .unwrap_or_default(),
                    status: status_label(f, en),
                    definition: match f.trust {
                        crate::store::procedure_definitions::Trust::Pending => ctx
                            .lang
                            .t(
                                "手続定義の受入れ待ち（承認できません）",
                                "definition awaiting acceptance: cannot be approved",
                            )
                            .to_string(),
                        crate::store::procedure_definitions::Trust::Refused => ctx
                            .lang
                            .t(
                                "手続定義の受入れ拒否（却下だけができます）",
                                "definition refused: can only be rejected",
                            )
                            .to_string(),
                        crate::store::procedure_definitions::Trust::Withdrawn => ctx
                            .lang
                            .t(
                                "手続定義の受入れ取消し（承認できません）",
                                "definition acceptance withdrawn: cannot be approved",
                            )
                            .to_string(),
                        _ => String::new(),
                    },
                    assigned: f
                        .assigned_to
                        .as_deref()
                        .map(|l| name_of(&page.clerks, l))
                        .unwrap_or_default(),
                    at_counter: crate::store::portal_filings::filed_at_counter(&f.portal_id),
                    signed: if f.signed {
                        ctx.lang.t("あり", "yes")
                    } else {
                        ctx.lang.t("なし", "no")
                    }
                    .to_string(),
                })
                .collect();
            page.next = next.map(|n| {
                let mut parts = vec![];
                for (k, v) in [
                    ("procedure", &q.procedure),
                    ("status", &q.status),
                    ("received_from", &q.received_from),
                    ("received_to", &q.received_to),
                    ("assigned_to", &q.assigned_to),
                    ("signed", &q.signed),
                    ("filed", &q.filed),
                ] {
                    if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                        parts.push(format!("{k}={}", super::pages::urlencode(v)));
                    }
                }
                parts.push(format!("before={n}"));
                parts.join("&")
            });
        }
        Err(e) => {
            let e = UiError::from(e);
            page.error = Some(if en { e.en } else { e.ja });
        }
    }
    page.q = q;
    html(&page)
}

/// One filing the import refused, as staff read it.
struct RefusedRow {
    /// The portal's id (the re-import form's hidden field; not shown).
    id: String,
    received: String,
    receipt: String,
    procedure: String,
    reason: String,
    citizen: String,
    refused: String,
    /// Imported again by staff: the filing in the inbox.
    imported_as: Option<i64>,
}

/// One filing not imported yet for a cause that may be fixed here.
struct DeferredRow {
    first: String,
    quarantine_on: String,
    reason: String,
}

/// What a re-import did, as the page says it.
struct ReimportResult {
    /// `imported`, `already` or `refused` (the element's id).
    outcome: &'static str,
    text: String,
    /// The filing in the inbox (imported, already).
    filing: Option<i64>,
}

#[derive(Template)]
#[template(path = "inbox_refused.html")]
struct RefusedPage {
    c: Chrome,
    rows: Vec<RefusedRow>,
    deferred: Vec<DeferredRow>,
    /// The caller may import a refused filing again (supervisors).
    can_reimport: bool,
    result: Option<ReimportResult>,
    error: Option<String>,
}

/// What the citizen was told on the portal's status page, in the staff
/// member's words.
fn citizen_reason_label(code: &str, en: bool) -> &'static str {
    match (code, en) {
        ("replayed", false) => "電子署名が別の申請で使用済み",
        ("replayed", true) => "the signature was already used for another filing",
        ("procedure", false) => "申請書（手続定義）を確認できない",
        ("procedure", true) => "the form (procedure definition) could not be confirmed",
        ("answers", false) => "回答が手続の決まりに合わない",
        ("answers", true) => "the answers do not meet the form's rules",
        (_, false) => "申請のデータを開けない",
        (_, true) => "the filing could not be opened or read",
    }
}

/// 取り込めなかった申請: filings the import refused and recorded (issue
/// 11). The portal was told: it dropped its sealed copy and its status
/// page tells the citizen the filing could not be accepted, and why.
/// Below, the filings not imported yet for a cause that may be fixed here
/// (deferred), with the day they are quarantined if they still fail.
pub async fn refused(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let (ctx, tenant) = match Ctx::for_page(&s, &headers, roles::READ).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    refused_page(&s, &ctx, &tenant, None, None, StatusCode::OK).await
}

async fn refused_page(
    s: &AppState,
    ctx: &Ctx,
    tenant: &machi_domain::ids::MunicipalityCode,
    result: Option<ReimportResult>,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let en = ctx.lang.en;
    let actor = ctx.caller.actor();
    let rows = match s.registry.inbox_refusals(tenant, 200, &actor).await {
        Ok(r) => r,
        Err(e) => return ctx.error(&UiError::from(e)),
    };
    let deferred = match s.registry.inbox_deferrals(tenant, 200, &actor).await {
        Ok(r) => r,
        Err(e) => return ctx.error(&UiError::from(e)),
    };
    let eras = s.registry.eras();
    let day_of = |secs: i64| {
        chrono::DateTime::<chrono::Utc>::from_timestamp(secs, 0)
            .map(|t| {
                eras.format_wareki(t.with_timezone(&crate::service::clock::jst()).date_naive())
            })
            .unwrap_or_default()
    };
    let rows = rows
        .into_iter()
        .map(|r| {
            let f = &r.refusal;
            let title = if en { r.title_en } else { r.title_ja };
            RefusedRow {
                id: f.portal_id.clone(),
                received: chrono::DateTime::parse_from_rfc3339(&f.received_at)
                    .map(|t| {
                        eras.format_wareki(
                            t.with_timezone(&crate::service::clock::jst()).date_naive(),
                        )
                    })
                    .unwrap_or_default(),
                receipt: f.receipt.clone().unwrap_or_else(|| {
                    ctx.lang
                        .t("（開けないため不明）", "(unknown: did not open)")
                        .to_string()
                }),
                procedure: match title {
                    Some(t) => format!(
                        "{t}{}{}{}",
                        ctx.lang.t("（第", " (version "),
                        f.version,
                        ctx.lang.t("版）", ")")
                    ),
                    None => ctx
                        .lang
                        .t(
                            "（この基幹システムが知らない手続）",
                            "(a procedure this back office does not know)",
                        )
                        .to_string(),
                },
                reason: inbox::japan_times(if en { &f.message_en } else { &f.message_ja }, en),
                citizen: if f.imported_as.is_some() {
                    ctx.lang
                        .t(
                            "取り込み直したため「受け付けました」",
                            "imported again: “received”",
                        )
                        .to_string()
                } else {
                    citizen_reason_label(&f.citizen_reason, en).to_string()
                },
                refused: when(f.refused_at.saturating_mul(1_000_000)),
                imported_as: f.imported_as,
            }
        })
        .collect();
    let deferred = deferred
        .into_iter()
        .map(|d| DeferredRow {
            first: when(d.first_at.saturating_mul(1_000_000)),
            quarantine_on: day_of(
                d.first_at
                    .saturating_add(crate::portal::QUARANTINE_AFTER_SECS),
            ),
            reason: inbox::japan_times(if en { &d.message_en } else { &d.message_ja }, en),
        })
        .collect();
    let mut res = html(&RefusedPage {
        c: Chrome::new(ctx, "取り込めなかった申請", "Filings refused on import"),
        rows,
        deferred,
        can_reimport: ctx.can(roles::REIMPORT),
        result,
        error,
    });
    *res.status_mut() = status;
    res
}

/// 取り込み直し: a supervisor imports a quarantined filing again (form
/// field `portal_id`), once its cause is fixed. The page says what
/// happened: imported (a link to the filing), imported before, refused
/// again (why), or no portal configured on this server.
pub async fn reimport(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let f = FormData(form);
    let (ctx, tenant) = match Ctx::for_form(&s, &headers, &f, roles::REIMPORT).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let en = ctx.lang.en;
    match s
        .registry
        .inbox_reimport(&tenant, &f.text("portal_id"), &ctx.caller.actor())
        .await
    {
        Ok(r) => {
            let v = crate::api::inbox::reimport_view(&r);
            let result = ReimportResult {
                outcome: match r {
                    inbox::Reimport::Imported { .. } => "imported",
                    inbox::Reimport::Already { .. } => "already",
                    inbox::Reimport::Refused { .. } => "refused",
                },
                text: if en { v.message_en } else { v.message_ja },
                filing: v.filing_id,
            };
            refused_page(&s, &ctx, &tenant, Some(result), None, StatusCode::OK).await
        }
        Err(e) => {
            let e = UiError::from(e);
            let status = e.status;
            refused_page(
                &s,
                &ctx,
                &tenant,
                None,
                Some(if en { e.en } else { e.ja }),
                status,
            )
            .await
        }
    }
}

struct Answer {
    label: String,
    values: Vec<String>,
    file: Option<String>,
}

struct CandidateRow {
    number: String,
    name: String,
    kana: String,
    born: String,
    sex: String,
    address: String,
    status: String,
    restricted: bool,
    chosen: bool,
    /// Where the resident differs from the filing (name, birth date).
    differs: Vec<String>,
}

struct PartyRow {
    key: String,
    role: String,
    name: String,
    kana: String,
    born: String,
    address: String,
    matched: Option<String>,
    note: Option<String>,
    candidates: Vec<CandidateRow>,
}

struct Item {
    label: String,
    value: String,
}

struct MoveOutPerson {
    items: Vec<Item>,
}

#[derive(Template)]
#[template(path = "inbox_filing.html")]
struct FilingPage {
    c: Chrome,
    id: i64,
    receipt: String,
    procedure: String,
    received: String,
    status: String,
    open: bool,
    /// The assigned clerk's name.
    assigned: String,
    assigned_login: String,
    /// Who may be assigned (login, name).
    clerks: Vec<(String, String)>,
    me: String,
    signature: String,
    signer: Vec<Item>,
    counter: Vec<Item>,
    answers: Vec<Answer>,
    parties: Vec<PartyRow>,
    message: Option<String>,
    decided: String,
    outcome: Vec<Item>,
    pending_id: Option<i64>,
    change_id: Option<i64>,
    batch: Option<String>,
    needs_identity: bool,
    identities: Vec<(String, String)>,
    approve_note: String,
    move_out: Vec<MoveOutPerson>,
    move_out_common: Vec<Item>,
    move_out_error: Option<String>,
    error: Option<String>,
    /// The filing's definition is the tenant's own version its
    /// administrator has not accepted (or refused): why it cannot be
    /// approved.
    trust_notice: Option<String>,
    /// Approval may be tried (open, and the definition accepted).
    can_approve: bool,
    /// Matching and correction may be tried (open, definition not refused).
    can_prepare: bool,
    /// Rejecting (closing) may be tried: open, or waiting for the
    /// applicant's correction.
    can_reject: bool,
    /// Waiting for the applicant's correction.
    awaiting_correction: bool,
    /// The filing this one corrects: (filing number, 受付番号).
    corrects: Option<(i64, String)>,
    /// The filings sent to correct this one.
    corrected_by: Vec<(i64, String)>,
    /// Filed at the counter: no correction request (the portal never
    /// shows it); the reason of a rejection stays with the record.
    at_counter: bool,
    /// Where the clerk files it again at the counter.
    refile: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct FilingQuery {
    done: Option<String>,
}

fn filing_id(ctx: &Ctx, id: &str) -> Result<i64, Response> {
    id.parse::<i64>().map_err(|_| {
        ctx.error(&UiError {
            status: StatusCode::BAD_REQUEST,
            ja: "申請番号は数字です。".into(),
            en: "a filing number is a number".into(),
        })
    })
}

async fn filing_page(
    s: &AppState,
    ctx: &Ctx,
    tenant: &machi_domain::ids::MunicipalityCode,
    id: i64,
    flash: Option<String>,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let actor = ctx.caller.actor();
    let f = match s.registry.inbox_filing(tenant, id, &actor).await {
        Ok(f) => f,
        Err(e) => {
            return ctx.error_back(
                &e.into(),
                Some(("/ui/inbox", "申請管理へ", "Back to the inbox")),
            );
        }
    };
    let links = match s.registry.inbox_correction_links(tenant, &f).await {
        Ok(x) => x,
        Err(e) => {
            return ctx.error_back(
                &e.into(),
                Some(("/ui/inbox", "申請管理へ", "Back to the inbox")),
            );
        }
    };
    let en = ctx.lang.en;
    let l = ctx.lang;
    let eras = s.registry.eras();
    let st = FilingStatus::parse(&f.status);
    let open = st.is_some_and(FilingStatus::is_open);
    let def = inbox::def_of(&f);
    let answers = def
        .map(|d| {
            inbox::answer_views(d, inbox::answers(&f), eras, en)
                .into_iter()
                .map(|a| Answer {
                    label: a.label,
                    values: a.values,
                    file: a.file,
                })
                .collect()
        })
        .unwrap_or_default();
    // Candidates are searched only while a clerk may still match.
    let mut parties = vec![];
    if let Some(d) = def {
        let found = if open {
            match s.registry.inbox_candidates(tenant, &f, &actor).await {
                Ok(c) => c,
                Err(e) => return ctx.error(&e.into()),
            }
        } else {
            inbox::parties(d, inbox::answers(&f))
                .into_iter()
                .map(|p| inbox::PartyCandidates {
                    party: p,
                    candidates: vec![],
                    note: None,
                })
                .collect()
        };
        for pc in found {
            let matched = f.matches.get(&pc.party.key).cloned();
            parties.push(PartyRow {
                role: l.t(&pc.party.role_ja, &pc.party.role_en).to_string(),
                name: pc.party.name.clone().unwrap_or_default(),
                kana: pc.party.kana.clone().unwrap_or_default(),
                born: pc
                    .party
                    .birth_date
                    .map(|d| eras.format_wareki(d))
                    .unwrap_or_default(),
                address: pc.party.address.clone().unwrap_or_default(),
                note: pc.note.map(|(ja, e)| if en { e } else { ja }),
                candidates: pc
                    .candidates
                    .iter()
                    .map(|c| CandidateRow {
                        number: c.addressee_number.to_string(),
                        name: c.view.name.clone(),
                        kana: c.view.name_kana.clone().unwrap_or_default(),
                        born: c.view.birth_date.text.clone(),
                        sex: c.view.sex_label_ja.clone(),
                        address: if c.restricted {
                            String::new()
                        } else {
                            match &c.view.address_annex {
                                Some(a) => format!("{}　{a}", c.view.address),
                                None => c.view.address.clone(),
                            }
                        },
                        status: c.view.status_label_ja.clone(),
                        restricted: c.restricted,
                        chosen: matched.as_deref() == Some(c.addressee_number.as_str()),
                        differs: c
                            .differs
                            .iter()
                            .map(|(ja, e)| if en { e.clone() } else { ja.clone() })
                            .collect(),
                    })
                    .collect(),
                key: pc.party.key,
                matched,
            });
        }
    }
    let signer = inbox::signer_items(&f)
        .map(|(name, born, sex, address)| {
            vec![
                Item {
                    label: l.t("氏名", "Name").into(),
                    value: name,
                },
                Item {
                    label: l.t("生年月日", "Date of birth").into(),
                    value: born.map(|d| eras.format_wareki(d)).unwrap_or_default(),
                },
                Item {
                    label: l.t("性別", "Sex").into(),
                    value: sex,
                },
                Item {
                    label: l.t("住所", "Address").into(),
                    value: address,
                },
            ]
        })
        .unwrap_or_default();
    let mut outcome = vec![];
    let o = &f.outcome;
    if let Some(n) = o["change_id"].as_i64() {
        outcome.push(Item {
            label: l.t("記録した異動", "Change recorded").into(),
            value: format!("{}{n}", l.t("異動番号 ", "change no. ")),
        });
    }
    if let Some(n) = o["pending_id"].as_i64() {
        outcome.push(Item {
            label: l.t("仮登録", "Provisional change").into(),
            value: format!("{}{n}", l.t("仮登録番号 ", "no. ")),
        });
    }
    if let Some(nums) = o["issue_numbers"].as_array() {
        outcome.push(Item {
            label: l
                .t("郵送用に発行した証明書", "Certificates issued for mailing")
                .into(),
            value: nums
                .iter()
                .filter_map(|n| n.as_str())
                .collect::<Vec<_>>()
                .join("、"),
        });
    }
    if o["event_seq"].as_i64().is_some() {
        outcome.push(Item {
            label: l
                .t("業務システムへの引継ぎ", "Handed to the business system")
                .into(),
            value: l
                .t(
                    "連携イベントとして公開しました",
                    "published as a linkage event",
                )
                .into(),
        });
    }
    let (mut move_out, mut move_out_common, mut move_out_error) = (vec![], vec![], None);
    match s.registry.inbox_move_out_data(tenant, &f, &actor).await {
        Ok(Some(c)) => {
            move_out_common = c
                .common
                .iter()
                .map(|i| Item {
                    label: i.label.clone(),
                    value: i.value.clone(),
                })
                .collect();
            move_out = c
                .persons
                .iter()
                .map(|p| MoveOutPerson {
                    items: p
                        .items
                        .iter()
                        .map(|i| Item {
                            label: i.label.clone(),
                            value: i.value.clone(),
                        })
                        .collect(),
                })
                .collect();
        }
        Ok(None) => {}
        Err(e) => {
            let e = UiError::from(e);
            move_out_error = Some(if en { e.en } else { e.ja });
        }
    }
    let kind = def.map(|d| d.action_kind());
    let counter_identity = crate::service::counter_filing::identity_of(&f);
    let needs_identity = kind == Some(machi_procedures::ActionKind::Certificate)
        && !f.signed
        && counter_identity
            .as_ref()
            .and_then(|c| c.document.as_certificate_identity())
            .is_none();
    // Filed at the counter: who took it and how identity was checked.
    let mut counter = vec![];
    if crate::store::portal_filings::filed_at_counter(&f.portal_id) {
        let c = &f.filing["counter"];
        counter.push(Item {
            label: l.t("受付", "Filed").into(),
            value: l
                .t("窓口（書かない窓口）", "at the counter (clerk-assisted)")
                .into(),
        });
        if let Some(n) = c["clerk_name"].as_str().filter(|n| !n.is_empty()) {
            counter.push(Item {
                label: l.t("受け付けた職員", "Clerk").into(),
                value: n.to_string(),
            });
        }
        match &counter_identity {
            Some(i) => counter.extend(i.describe().into_iter().map(|(lja, len, vja, ven)| Item {
                label: l.t(lja, len).into(),
                value: if en { ven } else { vja },
            })),
            None => counter.push(Item {
                label: l.t("本人確認", "Identity check").into(),
                value: l
                    .t(
                        "記録がありません（この申請は署名なしでは承認できません）",
                        "not recorded (this filing cannot be approved without a signature)",
                    )
                    .into(),
            }),
        }
    }
    let approve_note = match kind {
        Some(machi_procedures::ActionKind::RegistryChange) => {
            if ctx.caller.commits_directly() {
                l.t(
                    "承認すると、届け出た全員の転出を転出予定日で本登録します（窓口での入力と同じ手順）。",
                    "Approving records the move-out of every person named, on the planned date, as at the counter.",
                )
            } else {
                l.t(
                    "承認すると、届け出た全員の転出を転出予定日で仮登録し、決裁者の決裁を待ちます（窓口での入力と同じ手順）。",
                    "Approving enters the move-out of every person named provisionally, for a supervisor's decision, as at the counter.",
                )
            }
        }
        Some(machi_procedures::ActionKind::Certificate) => l.t(
            "承認すると、証明書を発行番号を付けて発行し、郵送用に記録します。",
            "Approving issues the certificate, numbered and recorded, for mailing.",
        ),
        Some(_) => l.t(
            "承認すると、この申請を担当の業務システムへ連携イベントとして引き継ぎます。",
            "Approving hands the filing to the business system that owns it, as a linkage event.",
        ),
        None => l.t(
            "この手続の定義が基幹側にないため、承認できません。",
            "The back office does not know this procedure, so it cannot be approved.",
        ),
    }
    .to_string();
    use crate::store::procedure_definitions::Trust;
    let trust_notice = match f.trust {
        Trust::Shipped | Trust::Accepted => None,
        Trust::Pending => Some(l.t(
            "この申請の手続定義は、ポータルから届いた新しい版で、団体管理者がまだ受け入れていません。受入れまで承認できません（照合・補正の依頼・却下はできます）。団体管理者が「手続定義の受入れ」の画面で内容と承認時の処理を確かめて受け入れます。",
            "This filing was made on a new procedure definition version the portal delivered, which the tenant administrator has not accepted yet. It cannot be approved until then (matching, asking for a correction and rejecting are possible). The administrator checks what it asks and what approval does on the \"Procedure definitions\" page.",
        ).to_string()),
        Trust::Refused => Some(l.t(
            "この申請の手続定義は、団体管理者が受入れを拒否しました。この申請は却下だけができます。",
            "The tenant administrator refused this filing's procedure definition. The filing can only be rejected.",
        ).to_string()),
        Trust::Withdrawn => Some(l.t(
            "この申請の手続定義は、団体管理者がいったん受け入れた後、受入れを取り消しました。改めて受け入れるまで承認できません（照合・補正の依頼・却下はできます）。",
            "The tenant administrator accepted this filing's procedure definition and then withdrew the acceptance. It cannot be approved until the definition is accepted again (matching, asking for a correction and rejecting are possible).",
        ).to_string()),
    };
    let at_counter = crate::store::portal_filings::filed_at_counter(&f.portal_id);
    // A counter filing is corrected by filing it again at the counter,
    // from the applicant's page, prefilled.
    let refile = f.filing["counter"]["applicant"]
        .as_str()
        .filter(|_| at_counter)
        .map(|a| format!("/ui/residents/{a}/counter/{}", f.procedure));
    let can_approve = open && f.trust.approvable();
    let can_prepare = open && f.trust != Trust::Refused;
    let clerks = clerks_of(s, tenant).await;
    let page = FilingPage {
        c: Chrome::new(ctx, "申請の審査", "Filing").with_flash(flash),
        id,
        receipt: f.receipt.clone(),
        procedure: inbox::filing_title(&f, en),
        received: chrono::DateTime::parse_from_rfc3339(&f.received_at)
            .map(|t| when(t.timestamp_micros()))
            .unwrap_or_default(),
        status: status_label(&f, en),
        open,
        assigned: f
            .assigned_to
            .as_deref()
            .map(|l| name_of(&clerks, l))
            .unwrap_or_default(),
        assigned_login: f.assigned_to.clone().unwrap_or_default(),
        me: ctx.login.clone(),
        signature: inbox::signature_summary(&f, en),
        signer,
        counter,
        answers,
        parties,
        message: f.message.clone(),
        decided: match (&f.decided_by, f.decided_at) {
            (Some(by), Some(at)) => format!("{}（{}）", when(at), name_of(&clerks, by)),
            _ => String::new(),
        },
        outcome,
        pending_id: f.pending_id.or(f.outcome["pending_id"].as_i64()),
        change_id: f.outcome["change_id"].as_i64(),
        batch: f.outcome["batch"].as_str().map(str::to_string),
        needs_identity,
        identities: IdentityDocument::ALL
            .iter()
            .map(|d| {
                (
                    d.code().to_string(),
                    l.t(d.label_ja(), d.label_en()).to_string(),
                )
            })
            .collect(),
        approve_note,
        move_out,
        move_out_common,
        move_out_error,
        error,
        trust_notice,
        can_approve,
        can_prepare,
        clerks,
        can_reject: open || st == Some(FilingStatus::CorrectionRequested),
        awaiting_correction: st == Some(FilingStatus::CorrectionRequested),
        corrects: links.corrects,
        corrected_by: links.corrected_by,
        at_counter,
        refile,
    };
    (status, html(&page)).into_response()
}

/// One filing.
pub async fn filing(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    q: Result<Query<FilingQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let (ctx, tenant) = match Ctx::for_page(&s, &headers, roles::READ).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let id = match filing_id(&ctx, &id) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let l = ctx.lang;
    let flash = q.ok().and_then(|Query(q)| q.done).map(|d| {
        match d.as_str() {
            "assigned" => l.t("担当を設定しました。", "Assigned."),
            "matched" => l.t("住民と照合しました。", "Matched."),
            "correction" => l.t(
                "補正を依頼しました。申請者のポータルの状況ページに表示されます。",
                "Correction requested; the applicant sees it on the portal.",
            ),
            "rejected" => l.t("却下しました。", "Rejected."),
            "approved" => l.t("承認しました。", "Approved."),
            "already" => l.t(
                "この申請はすでに承認されています。同じ処理は二度行いません。",
                "This filing was approved already; nothing was done twice.",
            ),
            _ => "",
        }
        .to_string()
    });
    filing_page(&s, &ctx, &tenant, id, flash, None, StatusCode::OK).await
}

/// A clerk's step: `action` = `assign` (with `to`, the caller's own login
/// for "to me"), `match` (`party`, `addressee_number`), `correction`
/// (`message`), `reject` (`message`), `approve` (`identity` for a
/// certificate by post).
pub async fn act(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let f = FormData(form);
    let (ctx, tenant) = match Ctx::for_form(&s, &headers, &f, roles::ACT).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let id = match filing_id(&ctx, &id) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let actor = ctx.caller.actor();
    let r = match f.text("action").as_str() {
        "assign" => s
            .registry
            .inbox_assign(&tenant, id, f.get("to"), &actor)
            .await
            .map(|_| "assigned"),
        "match" => s
            .registry
            .inbox_match(
                &tenant,
                id,
                &f.text("party"),
                &f.text("addressee_number"),
                &actor,
            )
            .await
            .map(|_| "matched"),
        "correction" => s
            .registry
            .inbox_request_correction(&tenant, id, &f.text("message"), &actor)
            .await
            .map(|_| "correction"),
        "reject" => s
            .registry
            .inbox_reject(&tenant, id, &f.text("message"), &actor)
            .await
            .map(|_| "rejected"),
        "approve" => match identity_of(f.get("identity")) {
            Ok(identity) => {
                let url = format!("{}/verify?tenant={tenant}", super::public_url(&headers));
                s.registry
                    .inbox_approve(
                        &tenant,
                        id,
                        ctx.caller.commits_directly(),
                        identity,
                        &url,
                        &actor,
                    )
                    .await
                    .map(|a| if a.already { "already" } else { "approved" })
            }
            Err(e) => Err(e),
        },
        _ => {
            return ctx.error(&UiError {
                status: StatusCode::BAD_REQUEST,
                ja: "この操作はありません。".into(),
                en: "no such step".into(),
            });
        }
    };
    match r {
        Ok(done) => Redirect::to(&format!("/ui/inbox/{id}?done={done}")).into_response(),
        Err(e @ crate::service::ServiceError::FilingNotFound(_)) => ctx.error_back(
            &e.into(),
            Some(("/ui/inbox", "申請管理へ", "Back to the inbox")),
        ),
        Err(e @ crate::service::ServiceError::SupportBlocked { .. }) => {
            ctx.refused(e, &format!("申請 {id}"), &format!("filing {id}"))
        }
        Err(e) => {
            let e = UiError::from(e);
            let status = e.status;
            let msg = if ctx.lang.en { e.en } else { e.ja };
            filing_page(&s, &ctx, &tenant, id, None, Some(msg), status).await
        }
    }
}

/// An attachment of a filing (e.g. the identity document), logged.
pub async fn attachment(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path((id, field)): Path<(String, String)>,
) -> Response {
    let (ctx, tenant) = match Ctx::for_page(&s, &headers, roles::READ).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let id = match filing_id(&ctx, &id) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let actor = ctx.caller.actor();
    let f = match s.registry.inbox_filing(&tenant, id, &actor).await {
        Ok(f) => f,
        Err(e) => return ctx.error(&e.into()),
    };
    let Some((_, kind, bytes)) = inbox::attachment(&f, &field) else {
        return ctx.error(&UiError {
            status: StatusCode::NOT_FOUND,
            ja: "この申請にその添付ファイルはありません。".into(),
            en: "the filing has no such attachment".into(),
        });
    };
    if let Err(e) = s
        .registry
        .record_access(
            &tenant,
            &actor,
            "filing.attachment",
            &format!("filing:{id}"),
            serde_json::json!({ "filing_id": id }),
        )
        .await
    {
        return ctx.error(&e.into());
    }
    let ext = match kind.as_str() {
        "application/pdf" => "pdf",
        "image/png" => "png",
        _ => "jpg",
    };
    let mut res = (StatusCode::OK, bytes).into_response();
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&kind) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"filing-{id}-{}.{ext}\"",
        field
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect::<String>()
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    res
}

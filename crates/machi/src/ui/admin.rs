//! Oversight and administration: the access log for supervisors (j1370),
//! aggregates for the CIO, staff accounts and API clients for the tenant
//! administrator, tenants for the platform operator.

use std::collections::BTreeMap;

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDate, Timelike};
use machi_domain::access::{Permission, Role};
use machi_domain::ids::MunicipalityCode;

use super::forms::FormData;
use super::grants::{GrantRow, Handover};
use super::{Chrome, Ctx, UiError, html, when};
use crate::api::AppState;
use crate::service::ServiceError;
use crate::service::clock::jst;
use crate::service::grants::{AccountStep, ClientStep};
use crate::store::oversight::{self, AuditFilter};

/// One access-log entry as the supervisor sees it.
pub struct AuditRow {
    pub seq: i64,
    pub at: String,
    pub operator: String,
    pub terminal: String,
    /// What was done, in words.
    pub function: String,
    /// The stored function code (kept in a data attribute for tools).
    pub code: String,
    pub target: String,
    /// The detail in words (folded in a disclosure on the page).
    pub detail: String,
    pub my_number_shown: bool,
    pub late: bool,
}

/// Reads by one operator within one hour, above the threshold.
pub struct MassRow {
    pub operator: String,
    pub hour: String,
    pub reads: usize,
    pub searches: usize,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    c: Chrome,
    f: FormData,
    rows: Vec<AuditRow>,
    mass: Vec<MassRow>,
    threshold: usize,
    late_only: bool,
    scanned: usize,
    /// The function filter's choices: (prefix, label).
    function_options: Vec<(String, String)>,
}

/// The function filter's choices: groups by prefix, and the single
/// functions supervisors look for most.
fn function_options(ctx: &Ctx, current: &str) -> Vec<(String, String)> {
    let l = ctx.lang;
    let mut out: Vec<(String, String)> = [
        ("", "すべて", "All"),
        ("read.", "参照（すべて）", "Reads (all)"),
        ("change.", "異動（すべて）", "Changes (all)"),
        (
            "login",
            "ログイン（失敗を含む）",
            "Sign-in (incl. failures)",
        ),
        ("support.", "支援措置（すべて）", "Support measures (all)"),
        ("certificate.", "証明書（すべて）", "Certificates (all)"),
        (
            "account.",
            "職員アカウント（すべて）",
            "Staff accounts (all)",
        ),
        ("client.", "連携先（すべて）", "API clients (all)"),
        ("webhook.", "通知先（すべて）", "Webhooks (all)"),
        (
            "grant.",
            "権限の申請・承認（すべて）",
            "Access proposals (all)",
        ),
    ]
    .into_iter()
    .map(|(v, ja, en)| (v.to_string(), l.t(ja, en).to_string()))
    .collect();
    for code in [
        "read.search",
        "read.resident",
        "read.household",
        "read.my_number",
        "read.provisional",
        "change.provisional",
        "change.approve",
        "change.return",
        "support.release",
        "support.blocked",
        "certificate.issue",
        "audit.view",
    ] {
        let (ja, en) = super::auditview::function_label(code);
        out.push((code.to_string(), l.t(&ja, &en).to_string()));
    }
    if !current.is_empty() && !out.iter().any(|o| o.0 == current) {
        let (ja, en) = super::auditview::function_label(current);
        out.push((current.to_string(), l.t(&ja, &en).to_string()));
    }
    out
}

/// Late night: 22:00–05:59 Japan time.
fn is_late(micros: i64) -> bool {
    chrono::DateTime::<chrono::Utc>::from_timestamp_micros(micros)
        .map(|t| {
            let h = t.with_timezone(&jst()).hour();
            !(6..22).contains(&h)
        })
        .unwrap_or(false)
}

fn day_start(s: &str, end: bool) -> Option<i64> {
    let d = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok()?;
    let d = if end { d.succ_opt()? } else { d };
    Some(
        d.and_hms_opt(0, 0, 0)?
            .and_local_timezone(jst())
            .single()?
            .timestamp_micros(),
    )
}

/// The access log: search by operator, function, target and dates;
/// late-night access; mass reads by one operator within an hour.
pub async fn audit(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let (ctx, tenant) = match Ctx::for_page(&s, &headers, Permission::ReadAuditLog).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let f = FormData(q.ok().map(|Query(q)| q).unwrap_or_default());
    let threshold = f
        .get("threshold")
        .and_then(|t| t.parse::<usize>().ok())
        .unwrap_or(30)
        .clamp(1, 100_000);
    let late_only = f.checked("late");
    let filter = AuditFilter {
        operator: f.get("operator").map(str::to_string),
        function: f.get("function").map(str::to_string),
        target: f.get("target").map(str::to_string),
        from: f.get("from").and_then(|d| day_start(d, false)),
        to: f.get("to").and_then(|d| day_start(d, true)),
    };
    let t = tenant.clone();
    let fl = filter.clone();
    let (entries, procedures) = match s
        .registry
        .store()
        .read(Some(&tenant), move |tx| {
            let entries = oversight::search_audit(tx, &t, &fl, 20_000)?;
            let defs = crate::store::procedure_definitions::all(tx, &t)?;
            Ok::<_, crate::store::StoreError>((entries, super::auditview::procedures(&defs)))
        })
        .await
    {
        Ok(e) => e,
        Err(e) => return ctx.error(&ServiceError::from(e).into()),
    };
    // Mass reads: per operator and hour, over what the filter selected.
    let mut per_hour: BTreeMap<(String, String), (usize, usize)> = BTreeMap::new();
    for e in &entries {
        if e.entry.function.starts_with("read.") {
            let hour = super::hour_of(e.at);
            let c = per_hour
                .entry((e.entry.operator.clone(), hour))
                .or_default();
            c.0 += 1;
            if e.entry.function == "read.search" {
                c.1 += 1;
            }
        }
    }
    let mass = per_hour
        .into_iter()
        .filter(|(_, (reads, _))| *reads >= threshold)
        .map(|((operator, hour), (reads, searches))| MassRow {
            operator,
            hour,
            reads,
            searches,
        })
        .collect();
    let scanned = entries.len();
    let rows = entries
        .iter()
        .filter(|e| !late_only || is_late(e.at))
        .take(300)
        .map(|e| AuditRow {
            seq: e.seq,
            at: when(e.at),
            operator: e.entry.operator.clone(),
            terminal: e.entry.terminal.clone(),
            function: {
                let (ja, en) = super::auditview::function_label(&e.entry.function);
                ctx.lang.t(&ja, &en).to_string()
            },
            code: e.entry.function.clone(),
            target: super::auditview::target_text(
                &e.entry.target.chars().take(120).collect::<String>(),
                ctx.lang,
                &procedures,
            ),
            detail: super::auditview::detail_of(
                &e.entry.detail,
                ctx.lang,
                s.registry.eras(),
                &procedures,
            )
            .chars()
            .take(300)
            .collect(),
            my_number_shown: e.entry.my_number_shown,
            late: is_late(e.at),
        })
        .collect();
    // Looking at the log is itself logged.
    if let Err(e) = s
        .registry
        .record_access(
            &tenant,
            &ctx.caller.actor(),
            "audit.view",
            "",
            serde_json::json!({
                "operator": filter.operator, "function": filter.function,
                "target": filter.target, "late": late_only,
            }),
        )
        .await
    {
        return ctx.error(&e.into());
    }
    let function_options = function_options(&ctx, f.v("function"));
    html(&AuditPage {
        c: Chrome::new(&ctx, "アクセスログ", "Access log"),
        f,
        rows,
        mass,
        threshold,
        late_only,
        scanned,
        function_options,
    })
}

#[derive(Template)]
#[template(path = "stats.html")]
struct StatsPage {
    c: Chrome,
    a: oversight::Aggregates,
    total: i64,
}

/// Aggregates for the CIO: counts only, no person can be identified.
pub async fn stats(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let (ctx, tenant) = match Ctx::for_page(&s, &headers, Permission::ReadAggregates).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let since = s.registry.clock().now().timestamp_micros() - 30 * 86_400 * 1_000_000;
    let t = tenant.clone();
    let a = match s
        .registry
        .store()
        .read(Some(&tenant), move |tx| {
            oversight::aggregates(tx, &t, since)
        })
        .await
    {
        Ok(a) => a,
        Err(e) => return ctx.error(&ServiceError::from(e).into()),
    };
    // Codes as the domain names them, in the page's language.
    let l = ctx.lang;
    let mut a = a;
    for (code, _) in a.by_status.iter_mut() {
        if let Some(st) = machi_domain::model::ResidentStatus::from_code(code) {
            *code = l.t(st.label_ja(), st.label_en()).to_string();
        }
    }
    for (code, _) in a.changes_by_reason.iter_mut() {
        if let Some(r) = machi_domain::change::ChangeReason::from_code(code) {
            *code = l.t(r.label_ja(), r.label_en()).to_string();
        }
    }
    html(&StatsPage {
        c: Chrome::new(&ctx, "統計（直近30日）", "Statistics (last 30 days)"),
        total: a.by_status.iter().map(|x| x.1).sum(),
        a,
    })
}

pub struct AccountRow {
    pub login: String,
    pub display_name: String,
    pub role: String,
    pub role_code: String,
    pub disabled: bool,
    /// Waiting for its holder to set a password with an activation code.
    pub awaiting: bool,
}

/// A webhook subscription needing attention, as the administrator sees it.
pub struct HookAlertRow {
    /// The subscription's number (its page: `/ui/admin/subscriptions/{id}`).
    pub id: i64,
    pub client_id: String,
    pub url: String,
    /// What is wrong, in words.
    pub state: String,
    /// Since when it fails (date and time), or empty.
    pub since: String,
}

pub struct ClientRow {
    pub client_id: String,
    pub system: String,
    /// The scopes in words (e.g. 住民記録の参照、異動の入力).
    pub scopes: String,
    /// Which of [`scope_choices`] the client holds, by `resource:operation`.
    pub held: Vec<String>,
    pub disabled: bool,
    pub direct_commit: bool,
}

/// What a scope's resource and operation let a client do, in words.
fn scope_label(resource: &str, operation: &str, l: super::Lang) -> String {
    match crate::service::auth::scope_words(resource, operation) {
        Some((ja, en)) => l.t(ja, en).to_string(),
        None => format!("{resource} {operation}"),
    }
}

/// The scopes a client may be given: every resource and operation the
/// server knows ([`machi_domain::access::SCOPE_RESOURCES`]), as
/// (`resource:operation`, label).
fn scope_choices(l: super::Lang) -> Vec<(String, String)> {
    machi_domain::access::SCOPE_RESOURCES
        .iter()
        .flat_map(|(r, ops)| {
            ops.iter()
                .map(move |o| (format!("{r}:{o}"), scope_label(r, o, l)))
        })
        .collect()
}

/// A client's stored scopes in words.
fn scopes_text(stored: &str, l: super::Lang) -> String {
    crate::service::auth::scopes_in_words(stored, l.en)
}

/// The scopes a form sends: the checked `scope` boxes
/// (`resource:operation`) with the system name in front; or, from a
/// program, a `scopes` text as the API takes it. The server validates
/// either ([`crate::service::grants::parse_client_scopes`]).
fn scopes_of(f: &FormData, system: &str) -> String {
    let checked = f.all("scope");
    if checked.is_empty() {
        return f.text("scopes");
    }
    checked
        .iter()
        .map(|s| format!("{system}:{s}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Template)]
#[template(path = "accounts.html")]
struct AccountsPage {
    c: Chrome,
    accounts: Vec<AccountRow>,
    clients: Vec<ClientRow>,
    hook_alerts: Vec<HookAlertRow>,
    roles: Vec<(&'static str, String)>,
    pending: Vec<GrantRow>,
    error: Option<String>,
    handover: Option<Handover>,
    scope_choices: Vec<(String, String)>,
    /// The certifying officer as set: (title, name), empty when unset.
    issuer: (String, String),
    /// 手数料 per certificate copy (None before a certifying officer is set).
    certificate_fee: Option<i64>,
    /// File linkage: the tenant's own schedule in words, if set.
    extract_schedule: Option<String>,
    /// The form: which choice is ticked (`daily`, `weekdays`, `default`).
    extract_mode: &'static str,
    /// The times as typed: 「02:00, 14:00」.
    extract_times: String,
    /// The days of the week: (form value, label, ticked).
    extract_days: Vec<(&'static str, &'static str, bool)>,
    /// `diff` or `full`.
    extract_kind: &'static str,
    /// Whether the scheduled extracts include 個人番号.
    extract_my_number: bool,
    /// The server-wide default in words.
    extract_default: String,
    /// Whether this server writes scheduled extracts at all.
    extract_on: bool,
    /// The latest extracts at the target, newest first.
    extract_history: Vec<ExtractRow>,
    /// Why the past extracts could not be listed (the target unreadable).
    extract_history_error: Option<String>,
}

/// One past extract as the administrator's page lists it.
struct ExtractRow {
    /// 和暦 date and time it was complete.
    when: String,
    kind: &'static str,
    /// 「第1号〜第336号」 (or 「新しい連携イベントなし」).
    events: String,
    residents: u64,
    /// 「—」 for a difference extract (no households.csv).
    households: String,
    measures: u64,
    /// 「含む」 / 「含まない」.
    my_number: &'static str,
}

/// How many past extracts the administrator's page lists.
const EXTRACT_HISTORY: usize = 10;

/// The latest extracts of `tenant` at the server's target, as rows, or
/// why they cannot be read.
async fn extract_history(
    s: &AppState,
    tenant: &MunicipalityCode,
    en: bool,
) -> (Vec<ExtractRow>, Option<String>) {
    let Some(target) = s.registry.extract_target() else {
        return (Vec::new(), None);
    };
    let list = match crate::linkage::open_target(target) {
        Ok((store, prefix)) => {
            crate::linkage::recent_extracts(store.as_ref(), &prefix, tenant, EXTRACT_HISTORY).await
        }
        Err(e) => Err(e),
    };
    let t = |ja: &'static str, e: &'static str| if en { e } else { ja };
    match list {
        Ok(list) => (
            list.iter()
                .map(|m| {
                    let rows = |name: &str| m.files.iter().find(|f| f.name == name).map(|f| f.rows);
                    ExtractRow {
                        when: chrono::DateTime::parse_from_rfc3339(&m.created_at)
                            .map(|d| super::when(d.timestamp_micros()))
                            .unwrap_or_default(),
                        kind: match m.kind {
                            crate::linkage::Kind::Full => t("全件", "full"),
                            crate::linkage::Kind::Diff => t("差分", "difference"),
                        },
                        events: if m.to_seq > m.from_seq {
                            if en {
                                format!("{} to {}", m.from_seq + 1, m.to_seq)
                            } else {
                                format!("第{}号〜第{}号", m.from_seq + 1, m.to_seq)
                            }
                        } else {
                            t("新しい連携イベントなし", "no new event").to_string()
                        },
                        residents: rows(crate::migration::layout::RESIDENTS_FILE).unwrap_or(0),
                        households: rows(crate::migration::layout::HOUSEHOLDS_FILE)
                            .map_or_else(|| "—".to_string(), |n| n.to_string()),
                        measures: rows(crate::migration::side::LINKAGE_SUPPORT_FILE)
                            .or_else(|| rows(crate::migration::layout::SUPPORT_MEASURES_FILE))
                            .unwrap_or(0),
                        my_number: if m.my_number_included {
                            t("含む", "included")
                        } else {
                            t("含まない", "not included")
                        },
                    }
                })
                .collect(),
            None,
        ),
        Err(e) => {
            tracing::warn!(tenant = %tenant, error = %e, "linkage: cannot list the extracts for the admin page");
            (
                Vec::new(),
                Some(
                    t(
                        "出力先を読めないため、これまでの抽出を表示できません（管理者にお知らせください）。",
                        "The extract target cannot be read, so the past extracts cannot be listed (tell the administrator).",
                    )
                    .to_string(),
                ),
            )
        }
    }
}

/// The tenant's accounts and clients as the administrator and the
/// approvers see them.
pub(super) async fn accounts_and_clients(
    s: &AppState,
    ctx: &Ctx,
    tenant: &MunicipalityCode,
) -> Result<(Vec<AccountRow>, Vec<ClientRow>), UiError> {
    let accounts = s.registry.accounts(tenant).await?;
    let t = tenant.clone();
    let clients = s
        .registry
        .store()
        .read(Some(tenant), move |tx| {
            crate::store::accounts::list_clients(tx, &t)
        })
        .await
        .map_err(ServiceError::from)?;
    let en = ctx.lang.en;
    Ok((
        accounts
            .iter()
            .map(|a| AccountRow {
                login: a.login.clone(),
                display_name: a.display_name.clone(),
                role: a
                    .role
                    .parse::<Role>()
                    .map(|r| if en { r.label_en() } else { r.label_ja() }.to_string())
                    .unwrap_or_else(|_| a.role.clone()),
                role_code: a.role.clone(),
                disabled: a.disabled,
                awaiting: a.awaiting_activation(),
            })
            .collect(),
        clients
            .iter()
            .map(|c| ClientRow {
                client_id: c.client_id.clone(),
                system: c.system.clone(),
                scopes: scopes_text(&c.scopes, ctx.lang),
                held: machi_domain::access::Scope::parse_list(&c.scopes)
                    .unwrap_or_default()
                    .iter()
                    .map(|s| format!("{}:{}", s.resource, s.operation))
                    .collect(),
                disabled: c.disabled,
                direct_commit: c.direct_commit,
            })
            .collect(),
    ))
}

async fn accounts_page(
    s: &AppState,
    ctx: &Ctx,
    tenant: &MunicipalityCode,
    result: Result<(String, Option<Handover>), UiError>,
) -> Response {
    let (lists, pending) = match (
        accounts_and_clients(s, ctx, tenant).await,
        s.registry.grants(tenant, true, 200).await,
    ) {
        (Ok(l), Ok(p)) => (l, p),
        (Err(e), _) => return ctx.error(&e),
        (_, Err(e)) => return ctx.error(&e.into()),
    };
    let (accounts, clients) = lists;
    let en = ctx.lang.en;
    let t = tenant.clone();
    let issuer = match s
        .registry
        .store()
        .read(Some(tenant), move |tx| {
            crate::service::certificates::issuer_of(tx, &t)
        })
        .await
    {
        Ok(i) => i.map(|i| (i.title, i.name)).unwrap_or_default(),
        Err(e) => return ctx.error(&ServiceError::from(e).into()),
    };
    let schedule = match crate::linkage::tenant_schedule(&s.registry, tenant).await {
        Ok(sc) => sc,
        Err(e) => return ctx.error(&e.into()),
    };
    let extract_schedule = schedule.as_ref().map(|sc| sc.words(ctx.lang.en));
    let extract_mode = match &schedule {
        None => "default",
        Some(sc) if sc.weekdays.is_every_day() => "daily",
        Some(_) => "weekdays",
    };
    let extract_times = schedule
        .as_ref()
        .map_or_else(|| "02:00".to_string(), |sc| sc.times_text(", "));
    let extract_days = crate::linkage::WEEK
        .iter()
        .map(|(d, ja, en)| {
            (
                weekday_value(*d),
                if ctx.lang.en { *en } else { *ja },
                schedule.as_ref().is_some_and(|sc| sc.weekdays.contains(*d)),
            )
        })
        .collect();
    let extract_kind = schedule.as_ref().map_or("diff", |sc| sc.kind.as_str());
    let extract_my_number = schedule.as_ref().is_some_and(|sc| sc.include_my_number);
    let (extract_history, extract_history_error) = extract_history(s, tenant, en).await;
    let hook_alerts = match s.registry.hook_alerts(tenant).await {
        Ok(a) => a,
        Err(e) => return ctx.error(&e.into()),
    };
    let hook_alerts = hook_alerts
        .into_iter()
        .map(|a| HookAlertRow {
            id: a.subscription_id,
            client_id: a.client_id,
            url: a.url,
            state: match (a.status.as_str(), en) {
                // Paused by hand (the client through the API, or an
                // administrator on the 通知先 page): nothing failed.
                ("paused", false) if a.failing_since.is_none() => {
                    "一時停止中（管理者または連携先が停止しました。通知先の画面で再開できます）".into()
                }
                ("paused", true) if a.failing_since.is_none() => {
                    "Paused (by an administrator or the client; resume it on its page)".into()
                }
                ("paused", false) => {
                    "一時停止中（72時間以上届いていません。受け手の復旧後に通知先の画面で再開してください）"
                        .into()
                }
                ("paused", true) => {
                    "Paused (failing for more than 72 hours; resume it on its page once the receiver is back)"
                        .into()
                }
                ("disabled", false) => "停止（受け手が 410 Gone で購読の終了を求めました）".into(),
                ("disabled", true) => "Disabled (the receiver answered 410 Gone)".into(),
                (_, false) => format!("再送中（{} 回失敗）", a.failed_attempts),
                (_, true) => format!("Retrying ({} failed attempts)", a.failed_attempts),
            },
            since: a.failing_since.map(super::when).unwrap_or_default(),
        })
        .collect();
    let (status, error, flash, handover) = match result {
        Ok((flash, handover)) => (StatusCode::OK, None, Some(flash), handover),
        Err(e) => (
            if e.status == StatusCode::FORBIDDEN {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            },
            Some(ctx.lang.t(&e.ja, &e.en).to_string()),
            None,
            None,
        ),
    };
    let page = AccountsPage {
        c: Chrome::new(
            ctx,
            "職員アカウントと連携先システム",
            "Staff accounts and API clients",
        )
        .with_flash(flash),
        accounts,
        clients,
        hook_alerts,
        roles: Role::ALL
            .into_iter()
            .filter(|r| r.is_tenant_role())
            .map(|r| {
                (
                    r.as_str(),
                    if en { r.label_en() } else { r.label_ja() }.to_string(),
                )
            })
            .collect(),
        pending: pending.iter().map(|g| GrantRow::new(g, ctx)).collect(),
        error,
        handover,
        scope_choices: scope_choices(ctx.lang),
        issuer,
        certificate_fee: s.registry.certificate_fee(tenant).await.ok().flatten(),
        extract_schedule,
        extract_mode,
        extract_times,
        extract_days,
        extract_kind,
        extract_my_number,
        extract_default: {
            let secs = s.registry.extract_every();
            let every = if secs.is_multiple_of(3600) {
                ctx.lang
                    .t(
                        &format!("{}時間ごと", secs / 3600),
                        &format!("every {} h", secs / 3600),
                    )
                    .to_string()
            } else {
                ctx.lang
                    .t(
                        &format!("{}分ごと", secs / 60),
                        &format!("every {} min", secs / 60),
                    )
                    .to_string()
            };
            // The server-wide option of 個人番号, set where the server
            // is configured (off unless set).
            let (mn_ja, mn_en) = if s.registry.extract_includes_my_number() {
                ("個人番号を含む", "with 個人番号")
            } else {
                ("個人番号を含まない", "without 個人番号")
            };
            ctx.lang
                .t(
                    &format!("{every}（新しい異動があれば差分、最初は全件。{mn_ja}）"),
                    &format!("{every} (a difference when changes came; a full one first; {mn_en})"),
                )
                .to_string()
        },
        extract_on: s.registry.extract_target().is_some(),
        extract_history,
        extract_history_error,
    };
    (status, html(&page)).into_response()
}

pub async fn accounts(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let (ctx, tenant) = match Ctx::for_page(&s, &headers, Permission::ManageAccounts).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    accounts_page(&s, &ctx, &tenant, Ok((String::new(), None))).await
}

/// What a proposal step tells the administrator.
fn proposed(ctx: &Ctx, grant_id: i64) -> String {
    if ctx.lang.en {
        format!(
            "Proposal {grant_id} is awaiting a second person's approval (a supervisor or the CIO). \
             Nothing takes effect before then."
        )
    } else {
        format!("申請 {grant_id} を受け付けました。決裁者またはCIOが承認するまで効力はありません。")
    }
}

fn role_of(f: &FormData) -> Result<Role, UiError> {
    match f.text("role").parse::<Role>() {
        Ok(r) if r.is_tenant_role() => Ok(r),
        _ => Err(UiError {
            status: StatusCode::BAD_REQUEST,
            ja: "役割を選んでください。".into(),
            en: "choose a role".into(),
        }),
    }
}

fn account_step(ctx: &Ctx, step: AccountStep) -> (String, Option<Handover>) {
    match step {
        AccountStep::Proposed(id) => (proposed(ctx, id), None),
        AccountStep::Activation(code) => (
            ctx.lang
                .t("アカウントを作成しました。", "Account created.")
                .to_string(),
            Some(Handover::activation(&code)),
        ),
        AccountStep::Done => (ctx.lang.t("変更しました。", "Saved.").to_string(), None),
    }
}

fn client_step(ctx: &Ctx, step: ClientStep) -> (String, Option<Handover>) {
    match step {
        ClientStep::Proposed { grant_id, .. } => (proposed(ctx, grant_id), None),
        ClientStep::Done => (ctx.lang.t("変更しました。", "Saved.").to_string(), None),
    }
}

/// Adds a staff account: a role with personal data (or an approver's) is
/// proposed; a tenant administrator is created with an activation code.
pub async fn create_account(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let f = FormData(form);
    let (ctx, tenant) = match Ctx::for_form(&s, &headers, &f, Permission::ManageAccounts).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let result = match role_of(&f) {
        Ok(role) => s
            .registry
            .add_account(
                &tenant,
                &f.text("login"),
                &f.text("display_name"),
                role,
                &ctx.caller.actor(),
            )
            .await
            .map(|step| account_step(&ctx, step))
            .map_err(UiError::from),
        Err(e) => Err(e),
    };
    accounts_page(&s, &ctx, &tenant, result).await
}

/// Changes an account's role (to a role with personal data: a proposal).
pub async fn account_role(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let f = FormData(form);
    let (ctx, tenant) = match Ctx::for_form(&s, &headers, &f, Permission::ManageAccounts).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let result = match role_of(&f) {
        Ok(role) => s
            .registry
            .change_role(&tenant, &f.text("login"), role, &ctx.caller.actor())
            .await
            .map(|step| account_step(&ctx, step))
            .map_err(UiError::from),
        Err(e) => Err(e),
    };
    accounts_page(&s, &ctx, &tenant, result).await
}

/// Disables or enables a staff account.
pub async fn account_state(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let f = FormData(form);
    let (ctx, tenant) = match Ctx::for_form(&s, &headers, &f, Permission::ManageAccounts).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let disable = f.text("action") == "disable";
    let result = s
        .registry
        .set_account_disabled(&tenant, &f.text("login"), disable, &ctx.caller.actor())
        .await
        .map(|()| (ctx.lang.t("変更しました。", "Saved.").to_string(), None))
        .map_err(UiError::from);
    accounts_page(&s, &ctx, &tenant, result).await
}

/// Proposes an API client; its secret is made when a second person
/// approves, and shown to them.
pub async fn create_client(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let f = FormData(form);
    let (ctx, tenant) = match Ctx::for_form(&s, &headers, &f, Permission::ManageAccounts).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let result = s
        .registry
        .propose_client(
            &tenant,
            &f.text("system"),
            &scopes_of(&f, &f.text("system")),
            &ctx.caller.actor(),
        )
        .await
        .map(|step| client_step(&ctx, step))
        .map_err(UiError::from);
    accounts_page(&s, &ctx, &tenant, result).await
}

/// Disables (its tokens end at once) or enables an API client.
pub async fn client_state(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let f = FormData(form);
    let (ctx, tenant) = match Ctx::for_form(&s, &headers, &f, Permission::ManageAccounts).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let disable = f.text("action") == "disable";
    let result = s
        .registry
        .set_client_disabled(&tenant, &f.text("client_id"), disable, &ctx.caller.actor())
        .await
        .map(|()| (ctx.lang.t("変更しました。", "Saved.").to_string(), None))
        .map_err(UiError::from);
    accounts_page(&s, &ctx, &tenant, result).await
}

/// Sets an API client's scopes (wider: a proposal).
pub async fn client_scopes(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let f = FormData(form);
    let (ctx, tenant) = match Ctx::for_form(&s, &headers, &f, Permission::ManageAccounts).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let result = s
        .registry
        .change_client_scopes(
            &tenant,
            &f.text("client_id"),
            &scopes_of(&f, &f.text("system")),
            &ctx.caller.actor(),
        )
        .await
        .map(|step| client_step(&ctx, step))
        .map_err(UiError::from);
    accounts_page(&s, &ctx, &tenant, result).await
}

/// Proposes that a client may commit changes directly, or stops it.
pub async fn client_direct(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let f = FormData(form);
    let (ctx, tenant) = match Ctx::for_form(&s, &headers, &f, Permission::ManageAccounts).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let on = f.text("action") == "on";
    let result = s
        .registry
        .set_client_direct_commit(&tenant, &f.text("client_id"), on, &ctx.caller.actor())
        .await
        .map(|step| client_step(&ctx, step))
        .map_err(UiError::from);
    accounts_page(&s, &ctx, &tenant, result).await
}

/// Sets the certifying officer printed on certificates (j310).
pub async fn set_issuer(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let f = FormData(form);
    let (ctx, tenant) = match Ctx::for_form(&s, &headers, &f, Permission::ManageAccounts).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let result = s
        .registry
        .set_issuer(
            &tenant,
            &f.text("issuer_title"),
            &f.text("issuer_name"),
            &ctx.caller.actor(),
        )
        .await
        .map(|()| {
            (
                ctx.lang
                    .t("認証者を設定しました。", "Issuer saved.")
                    .to_string(),
                None,
            )
        })
        .map_err(UiError::from);
    accounts_page(&s, &ctx, &tenant, result).await
}

/// The 手数料 per certificate copy, shown on the counter's form.
pub async fn set_certificate_fee(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let f = FormData(form);
    let (ctx, tenant) = match Ctx::for_form(&s, &headers, &f, Permission::ManageAccounts).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let typed = machi_domain::input::compact_number(&f.text("certificate_fee"));
    let result = match typed.parse::<i64>() {
        Ok(yen) => s
            .registry
            .set_certificate_fee(&tenant, yen, &ctx.caller.actor())
            .await
            .map(|()| {
                (
                    ctx.lang
                        .t("手数料を設定しました。", "Fee saved.")
                        .to_string(),
                    None,
                )
            })
            .map_err(UiError::from),
        Err(_) => Err(UiError {
            status: StatusCode::BAD_REQUEST,
            ja: "手数料は円単位の数字で入力してください。".into(),
            en: "the fee is a number of yen".into(),
        }),
    };
    accounts_page(&s, &ctx, &tenant, result).await
}

/// A day of the week as the schedule form sends it.
fn weekday_value(d: chrono::Weekday) -> &'static str {
    match d {
        chrono::Weekday::Mon => "mon",
        chrono::Weekday::Tue => "tue",
        chrono::Weekday::Wed => "wed",
        chrono::Weekday::Thu => "thu",
        chrono::Weekday::Fri => "fri",
        chrono::Weekday::Sat => "sat",
        chrono::Weekday::Sun => "sun",
    }
}

/// File linkage: the tenant's own extract schedule (times of the day,
/// every day (`mode=daily`) or on ticked days (`mode=weekdays`), full or
/// difference), or back to the server-wide default (`mode=default`).
pub async fn set_extract_schedule(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let f = FormData(form);
    let (ctx, tenant) = match Ctx::for_form(&s, &headers, &f, Permission::ManageAccounts).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let schedule = match f.text("mode").as_str() {
        "default" => Ok(None),
        // Chosen days: the ticked boxes (none ticked is refused).
        "weekdays" => {
            let days: Vec<chrono::Weekday> = f
                .all("weekday")
                .into_iter()
                .filter_map(|v| {
                    crate::linkage::WEEK
                        .iter()
                        .map(|(d, _, _)| *d)
                        .find(|d| weekday_value(*d) == v)
                })
                .collect();
            crate::linkage::TenantSchedule::parse(&f.text("times"), Some(&days), &f.text("kind"))
                .map(Some)
        }
        _ => {
            crate::linkage::TenantSchedule::parse(&f.text("times"), None, &f.text("kind")).map(Some)
        }
    };
    let include_my_number = f.checked("include_my_number");
    let schedule = schedule.map(|sc| {
        sc.map(|mut sc| {
            sc.include_my_number = include_my_number;
            sc
        })
    });
    let result = match schedule {
        Ok(sc) => {
            crate::linkage::set_tenant_schedule(&s.registry, &tenant, sc, &ctx.caller.actor())
                .await
                .map(|()| {
                    (
                        ctx.lang
                            .t("定期抽出の設定を保存しました。", "Extract schedule saved.")
                            .to_string(),
                        None,
                    )
                })
                .map_err(UiError::from)
        }
        Err(e) => Err(UiError::from(e)),
    };
    accounts_page(&s, &ctx, &tenant, result).await
}

/// File linkage: an extract made now by the tenant administrator
/// (`kind` full or diff, 個人番号 only when `include_my_number` is ticked),
/// at the server's target; the page then lists it with the earlier ones.
pub async fn run_extract(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    use crate::linkage::ExtractError;
    let f = FormData(form);
    let (ctx, tenant) = match Ctx::for_form(&s, &headers, &f, Permission::ManageAccounts).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let en = ctx.lang.en;
    let ui = |status: axum::http::StatusCode, ja: String, en: String| UiError { status, ja, en };
    let result = async {
        let kind: crate::linkage::Kind = f.text("kind").trim().parse().map_err(|_| {
            ui(
                axum::http::StatusCode::BAD_REQUEST,
                "抽出の種類は全件か差分を選んでください。".into(),
                "Choose a full or a difference extract.".into(),
            )
        })?;
        let Some(target) = s.registry.extract_target() else {
            return Err(ui(
                axum::http::StatusCode::CONFLICT,
                "このサーバーには抽出の出力先が設定されていないため、抽出はできません。".into(),
                "This server has no extract target, so no extract can be made.".into(),
            ));
        };
        let opts = crate::linkage::ExtractOptions {
            include_my_number: f.checked("include_my_number"),
        };
        let failed = |e: ExtractError| -> UiError {
            match e {
                ExtractError::NoBase(_) => ui(
                    axum::http::StatusCode::CONFLICT,
                    "出力先にこの団体の完了した抽出がありません。先に全件抽出を行ってください。".into(),
                    "The target holds no complete extract of this municipality yet: make a full extract first.".into(),
                ),
                ExtractError::Running(_) => ui(
                    axum::http::StatusCode::CONFLICT,
                    "この団体の抽出が実行中です（定期または随時）。何も書き込んでいません。終わってからやり直してください。".into(),
                    "An extract of this municipality is running (scheduled or on demand); nothing was written. Try again when it has finished.".into(),
                ),
                ExtractError::Service(e) => e.into(),
                e => {
                    tracing::warn!(error = %e, "linkage: extract from the admin page failed");
                    ui(
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        "抽出を書き込めませんでした（管理者にお知らせください）。次の実行でやり直します。".into(),
                        "The extract could not be written (tell the administrator); the next run redoes it.".into(),
                    )
                }
            }
        };
        let (store, prefix) = crate::linkage::open_target(target).map_err(failed)?;
        let m = crate::linkage::extract_with(
            &s.registry,
            &tenant,
            kind,
            opts,
            store.as_ref(),
            &prefix,
            &ctx.caller.actor(),
        )
        .await
        .map_err(failed)?;
        let rows = m
            .files
            .iter()
            .find(|f| f.name == crate::migration::layout::RESIDENTS_FILE)
            .map_or(0, |f| f.rows);
        Ok((
            match (m.kind, en) {
                (crate::linkage::Kind::Full, false) => {
                    format!("全件抽出を作成しました（住民記録 {rows} 行）。")
                }
                (crate::linkage::Kind::Diff, false) => {
                    format!("差分抽出を作成しました（住民記録 {rows} 行）。")
                }
                (crate::linkage::Kind::Full, true) => {
                    format!("Full extract made ({rows} resident rows).")
                }
                (crate::linkage::Kind::Diff, true) => {
                    format!("Difference extract made ({rows} resident rows).")
                }
            },
            None,
        ))
    }
    .await;
    accounts_page(&s, &ctx, &tenant, result).await
}

#[derive(Template)]
#[template(path = "tenants.html")]
struct TenantsPage {
    c: Chrome,
    tenants: Vec<crate::store::tenants::Tenant>,
    error: Option<String>,
}

pub async fn tenants(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let ctx = match Ctx::load(&s, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    tenants_page(&s, &ctx, None, None).await
}

async fn tenants_page(
    s: &AppState,
    ctx: &Ctx,
    error: Option<String>,
    flash: Option<String>,
) -> Response {
    if !ctx.can(Permission::ManageTenants) {
        return ctx.error(&UiError::forbidden());
    }
    let tenants = match s.registry.tenants().await {
        Ok(t) => t,
        Err(e) => return ctx.error(&e.into()),
    };
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    (
        status,
        html(&TenantsPage {
            c: Chrome::new(ctx, "団体（テナント）", "Tenants").with_flash(flash),
            tenants,
            error,
        }),
    )
        .into_response()
}

/// Adds a tenant with its first tenant administrator.
pub async fn create_tenant(
    State(s): State<AppState>,
    headers: HeaderMap,
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
    if !ctx.can(Permission::ManageTenants) {
        return ctx.error(&UiError::forbidden());
    }
    let fail = |e: UiError| ctx.lang.t(&e.ja, &e.en).to_string();
    let code: MunicipalityCode = match f.text("municipality_code").parse() {
        Ok(c) => c,
        Err(e) => {
            let e: &dyn machi_domain::error::Localized = &e;
            return tenants_page(&s, &ctx, Some(fail(e.into())), None).await;
        }
    };
    if let Err(e) = s
        .registry
        .create_tenant(code.clone(), &f.text("name"), &f.text("prefecture"))
        .await
    {
        return tenants_page(&s, &ctx, Some(fail(e.into())), None).await;
    }
    if f.get("admin_login").is_some()
        && let Err(e) = s
            .registry
            .create_account(
                Some(&code),
                &f.text("admin_login"),
                &f.text("admin_name"),
                Role::TenantAdmin,
                f.v("admin_password"),
                &ctx.caller.actor(),
            )
            .await
    {
        return tenants_page(&s, &ctx, Some(fail(e.into())), None).await;
    }
    let done = ctx
        .lang
        .t("団体を登録しました。", "Tenant created.")
        .to_string();
    tenants_page(&s, &ctx, None, Some(done)).await
}

//! Sign-in, home, search, the resident and household pages, a change.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use machi_domain::access::Permission;
use machi_domain::change::AsOf;
use machi_domain::ids::{AddresseeNumber, HouseholdNumber};
use serde::Deserialize;

use super::{Chrome, Ctx, LANG_COOKIE, Lang, UiError, html};
use crate::api::AppState;
use crate::api::auth::SESSION_COOKIE;
use crate::api::source::ClientAddr;
use crate::api::views::{ChangeView, ResidentView};
use crate::service::auth::SESSION_SECONDS;
use crate::service::registry::{SearchParams, encode_cursor};

pub async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../templates/machi.css"),
    )
        .into_response()
}

pub async fn root() -> Redirect {
    Redirect::to("/ui")
}

#[derive(Deserialize)]
pub struct LangQuery {
    to: Option<String>,
}

/// Switches the language and goes back to the page the person was on. The
/// site sends `Referrer-Policy: no-referrer`; the language links alone ask
/// for a same-origin `Referer` (`referrerpolicy="same-origin"`), so the way
/// back is known and never leaves machi.
pub async fn set_lang(headers: HeaderMap, Query(q): Query<LangQuery>) -> Response {
    let v = if q.to.as_deref() == Some("en") {
        "en"
    } else {
        "ja"
    };
    let back = headers
        .get(header::REFERER)
        .and_then(|r| r.to_str().ok())
        .and_then(|r| {
            // Only a path on this site.
            let path = r
                .split_once("://")
                .map_or(r, |(_, rest)| rest.find('/').map_or("/", |i| &rest[i..]));
            path.starts_with('/').then(|| path.to_string())
        })
        .filter(|p| !p.starts_with("//") && !p.contains('\\'))
        .unwrap_or_else(|| "/ui".into());
    let mut res = Redirect::to(&back).into_response();
    if let Ok(c) = HeaderValue::from_str(&format!(
        "{LANG_COOKIE}={v}; Path=/; SameSite=Strict; Max-Age=31536000"
    )) {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    res
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    l: Lang,
    tenant: &'a str,
    login: &'a str,
    terminal: &'a str,
    error: Option<String>,
    notice: Option<&'a str>,
    login_csrf: String,
}

/// The login form's own CSRF defence (a session does not exist yet): a
/// random value in a cookie and in the form, which must match (double
/// submit), so another site cannot sign a browser into an account.
const LOGIN_COOKIE: &str = "machi_login";

fn login_page(
    l: Lang,
    tenant: &str,
    login: &str,
    terminal: &str,
    error: Option<String>,
    notice: Option<&str>,
) -> Response {
    let token = crate::service::auth::random_hex(16).unwrap_or_default();
    let mut res = html(&LoginPage {
        l,
        tenant,
        login,
        terminal,
        error,
        notice,
        login_csrf: token.clone(),
    });
    if let Ok(c) = HeaderValue::from_str(&format!(
        "{LOGIN_COOKIE}={token}; Path=/login; HttpOnly; SameSite=Strict; Max-Age=3600{}",
        super::secure_attr()
    )) {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    res
}

#[derive(Deserialize)]
pub struct LoginQuery {
    activated: Option<String>,
}

pub async fn login_form(
    headers: HeaderMap,
    q: Result<Query<LoginQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let l = Lang::of(&headers);
    let activated = q.is_ok_and(|Query(q)| q.activated.is_some());
    let notice = activated.then(|| {
        l.t(
            "アカウントを有効化しました。決めたパスワードでログインしてください。",
            "Your account is active. Sign in with the password you chose.",
        )
    });
    login_page(l, "", "", "", None, notice)
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    login_csrf: String,
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    login: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    terminal: String,
}

/// Signs in; throttled by the client's address (see
/// [`crate::service::throttle`]): a refusal is a 429 with `Retry-After`.
pub async fn login(
    State(s): State<AppState>,
    ClientAddr(source): ClientAddr,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let l = Lang::of(&headers);
    let fail = |status: StatusCode, e: UiError| {
        let mut res = login_page(
            l,
            &f.tenant,
            &f.login,
            &f.terminal,
            Some(if l.en { e.en } else { e.ja }),
            None,
        );
        *res.status_mut() = status;
        res
    };
    let cookie = crate::api::auth::cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if cookie.is_empty()
        || !crate::api::auth::constant_time_eq(cookie.as_bytes(), f.login_csrf.as_bytes())
    {
        return fail(
            StatusCode::FORBIDDEN,
            UiError {
                status: StatusCode::FORBIDDEN,
                ja: "ログイン画面の有効期限が切れました。もう一度入力してください。".into(),
                en: "the sign-in form expired; please enter your details again".into(),
            },
        );
    }
    let tenant = match f.tenant.trim() {
        "" => None,
        t => match t.parse() {
            Ok(t) => Some(t),
            Err(e) => {
                let e: &dyn machi_domain::error::Localized = &e;
                return fail(StatusCode::BAD_REQUEST, e.into());
            }
        },
    };
    match s
        .registry
        .login_from(source, tenant.as_ref(), &f.login, &f.password, &f.terminal)
        .await
    {
        Ok(out) => {
            let mut res = Redirect::to("/ui").into_response();
            if let Ok(c) = HeaderValue::from_str(&format!(
                "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECONDS}{}",
                out.token,
                super::secure_attr()
            )) {
                res.headers_mut().append(header::SET_COOKIE, c);
            }
            res
        }
        Err(e) => {
            let retry_after = match &e {
                crate::service::ServiceError::TooManyAttempts { retry_after } => Some(*retry_after),
                _ => None,
            };
            let e = UiError::from(e);
            let mut res = fail(e.status, e);
            if let Some(secs) = retry_after {
                res.headers_mut().insert(header::RETRY_AFTER, secs.into());
            }
            res
        }
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub async fn logout(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    let ctx = match Ctx::load(&s, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Err(r) = ctx.check_csrf(&f.csrf) {
        return r;
    }
    if let Err(e) = s.registry.logout(&ctx.session_token, &ctx.caller).await {
        return ctx.error(&e.into());
    }
    let mut res = Redirect::to("/login").into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static("machi_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    res
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    c: Chrome,
    pending: i64,
    alerts: Vec<(String, String, String)>,
    /// The clerk's entries sent back (差戻し), to edit and enter again.
    returned: Vec<WorkRow>,
    /// The supervisor's review queue, oldest first, with each entry's age.
    queue: Vec<WorkRow>,
}

/// One provisional entry on the home page.
pub struct WorkRow {
    pub id: i64,
    pub summary: String,
    pub entered_by: String,
    pub entered_at: String,
    /// How long it has waited, e.g. 「3日」.
    pub age: String,
    pub decided_by: String,
    pub decided_at: String,
    pub reason: String,
    /// Entered by the caller (a supervisor cannot approve their own).
    pub own: bool,
}

#[derive(Deserialize)]
pub struct FlashQuery {
    done: Option<String>,
}

/// How long ago `micros` was, in the page's language.
fn age(l: super::Lang, now: i64, micros: i64) -> String {
    let mins = (now - micros).max(0) / 60_000_000;
    let (n, ja, en) = if mins >= 24 * 60 {
        (mins / (24 * 60), "日", " d")
    } else if mins >= 60 {
        (mins / 60, "時間", " h")
    } else {
        (mins, "分", " min")
    };
    format!("{n}{}", l.t(ja, en))
}

/// The entries of `list` as the home page shows them; the summary withheld
/// for an entry concerning a person a support measure shields (j440).
async fn work_rows(
    s: &AppState,
    ctx: &Ctx,
    tenant: &machi_domain::ids::MunicipalityCode,
    list: &[crate::store::pending::PendingChange],
) -> Vec<WorkRow> {
    let persons: Vec<machi_domain::ids::AddresseeNumber> = list
        .iter()
        .flat_map(|p| p.persons.iter().cloned())
        .collect();
    let restricted = s
        .registry
        .support_covered(tenant, &persons)
        .await
        .unwrap_or_else(|_| persons.iter().cloned().collect());
    let now = s.registry.clock().now().timestamp_micros();
    list.iter()
        .map(|p| WorkRow {
            id: p.pending_id,
            summary: if p.persons.iter().any(|a| restricted.contains(a)) {
                ctx.lang
                    .t(
                        "（支援措置対象者を含むため非表示）",
                        "(includes a person under a support measure: withheld)",
                    )
                    .to_string()
            } else {
                p.summary.clone()
            },
            entered_by: p.entered_by.clone(),
            entered_at: super::when(p.entered_at),
            age: age(ctx.lang, now, p.entered_at),
            decided_by: p.decided_by.clone().unwrap_or_default(),
            decided_at: p.decided_at.map(super::when).unwrap_or_default(),
            reason: p.comment.clone().unwrap_or_default(),
            own: p.entered_by == ctx.login,
        })
        .collect()
}

pub async fn home(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<FlashQuery>,
) -> Response {
    let ctx = match Ctx::load(&s, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut pending = 0;
    let (mut returned, mut queue) = (vec![], vec![]);
    if let Some(t) = &ctx.tenant {
        if ctx.can(Permission::ApproveChange) || ctx.can(Permission::EnterChange) {
            pending = s.registry.pending_count(t).await.unwrap_or(0);
        }
        if ctx.can(Permission::EnterChange)
            && let Ok(list) = s.registry.returned_to(t, &ctx.login, 20).await
        {
            returned = work_rows(&s, &ctx, t, &list).await;
        }
        if ctx.can(Permission::ApproveChange)
            && let Ok(list) = s
                .registry
                .pending_list(t, crate::store::pending::PendingStatus::Pending, 20)
                .await
        {
            queue = work_rows(&s, &ctx, t, &list).await;
        }
    }
    let alerts = super::support::alerts(&s, &ctx).await;
    html(&HomePage {
        c: Chrome::new(&ctx, "ホーム", "Home").with_flash(q.done),
        pending,
        alerts,
        returned,
        queue,
    })
}

#[derive(Deserialize, Default)]
pub struct SearchQuery {
    name: Option<String>,
    birth_date: Option<String>,
    address: Option<String>,
    addressee_number: Option<String>,
    household_number: Option<String>,
    include_history: Option<String>,
    include_removed: Option<String>,
    after: Option<String>,
}

/// One line of the search results. A person the shield of a support
/// measure covers (j380, j410, j440) shows only who they are and a notice,
/// the protected person and those living with them alike.
struct SearchRow {
    addressee_number: String,
    name: String,
    kana: String,
    born: String,
    /// Address and 方書; empty when restricted.
    address: String,
    status: String,
    restricted: bool,
}

#[derive(Template)]
#[template(path = "search.html")]
struct SearchPage {
    c: Chrome,
    q: SearchQuery,
    searched: bool,
    results: Vec<SearchRow>,
    next: Option<String>,
    error: Option<String>,
}

impl SearchQuery {
    fn v(o: &Option<String>) -> &str {
        o.as_deref().unwrap_or("")
    }
    fn name(&self) -> &str {
        Self::v(&self.name)
    }
    fn birth_date(&self) -> &str {
        Self::v(&self.birth_date)
    }
    fn address(&self) -> &str {
        Self::v(&self.address)
    }
    fn addressee_number(&self) -> &str {
        Self::v(&self.addressee_number)
    }
    fn household_number(&self) -> &str {
        Self::v(&self.household_number)
    }
    fn history(&self) -> bool {
        self.include_history.is_some()
    }
    fn removed(&self) -> bool {
        self.include_removed.is_some()
    }
    /// The query string of the next page.
    fn next_query(&self, after: &str) -> String {
        let mut parts = vec![];
        for (k, v) in [
            ("name", &self.name),
            ("birth_date", &self.birth_date),
            ("address", &self.address),
            ("addressee_number", &self.addressee_number),
            ("household_number", &self.household_number),
            ("include_history", &self.include_history),
            ("include_removed", &self.include_removed),
        ] {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                parts.push(format!("{k}={}", urlencode(v)));
            }
        }
        parts.push(format!("after={after}"));
        parts.join("&")
    }
}

/// Percent-encodes a query value.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn search(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let (ctx, tenant) = match Ctx::for_page(&s, &headers, Permission::ReadPersonal).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let q = q.ok().map(|Query(q)| q).unwrap_or_default();
    let searched = [
        &q.name,
        &q.birth_date,
        &q.address,
        &q.addressee_number,
        &q.household_number,
    ]
    .iter()
    .any(|v| v.as_deref().is_some_and(|v| !v.trim().is_empty()));
    let mut page = SearchPage {
        c: Chrome::new(&ctx, "住民検索", "Resident search"),
        q: SearchQuery::default(),
        searched,
        results: vec![],
        next: None,
        error: None,
    };
    if searched {
        let params = SearchParams {
            name: q.name.clone(),
            birth_date: q.birth_date.clone(),
            address: q.address.clone(),
            // As a person types them: "０００１－２３４５", "0001 2345".
            addressee_number: q
                .addressee_number
                .as_deref()
                .map(machi_domain::input::compact_number),
            household_number: q
                .household_number
                .as_deref()
                .map(machi_domain::input::compact_number),
            include_history: q.history(),
            include_removed: q.removed(),
            after: q.after.clone(),
            limit: 50,
        };
        match s
            .registry
            .search(&tenant, &params, &ctx.caller.actor())
            .await
        {
            Ok(r) => {
                let eras = s.registry.eras();
                page.results = r
                    .rows
                    .iter()
                    .map(|row| {
                        let v = ResidentView::new(row, eras);
                        let restricted = r.restricted.contains(&row.record.addressee_number);
                        SearchRow {
                            address: match (&v.address_annex, restricted) {
                                (_, true) => String::new(),
                                (Some(a), false) => format!("{}　{}", v.address, a),
                                (None, false) => v.address.clone(),
                            },
                            addressee_number: v.addressee_number,
                            name: v.name,
                            kana: v.name_kana.unwrap_or_default(),
                            born: v.birth_date.text,
                            status: v.status_label_ja,
                            restricted,
                        }
                    })
                    .collect();
                page.next = r
                    .next_after
                    .as_ref()
                    .map(|a| q.next_query(&encode_cursor(a)));
            }
            Err(e) => {
                let e = UiError::from(e);
                page.error = Some(if ctx.lang.en { e.en } else { e.ja });
            }
        }
    }
    page.q = q;
    html(&page)
}

#[derive(Deserialize)]
pub struct AsOfQuery {
    as_of: Option<String>,
    recorded_as_of: Option<String>,
}

#[derive(Template)]
#[template(path = "resident.html")]
struct ResidentPage {
    c: Chrome,
    r: ResidentView,
    history: Vec<ResidentView>,
    as_of: String,
    recorded_as_of: String,
    is_current: bool,
    can_enter: bool,
    can_reveal: bool,
    can_certify: bool,
    my_number: Option<String>,
}

pub async fn resident(
    State(s): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    q: Result<Query<AsOfQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let (ctx, tenant) = match Ctx::for_page(&s, &headers, Permission::ReadPersonal).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Ok(Path(a)) = path else {
        return ctx.error(&UiError::forbidden());
    };
    let person: AddresseeNumber = match a.parse() {
        Ok(p) => p,
        Err(e) => {
            let e: &dyn machi_domain::error::Localized = &e;
            return ctx.error(&e.into());
        }
    };
    let (as_of_text, recorded_text) = q
        .map(|Query(q)| {
            (
                q.as_of.unwrap_or_default(),
                q.recorded_as_of.unwrap_or_default(),
            )
        })
        .unwrap_or_default();
    let as_of = match s
        .registry
        .parse_as_of_typed(Some(&as_of_text), Some(&recorded_text))
    {
        Ok(a) => a,
        Err(e) => {
            return ctx.error_back(
                &e.into(),
                Some((
                    &format!("/ui/residents/{person}"),
                    "現在の記録へ戻る",
                    "Back to the current record",
                )),
            );
        }
    };
    render_resident(
        &s,
        &ctx,
        &tenant,
        &person,
        as_of,
        &as_of_text,
        &recorded_text,
        None,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn render_resident(
    s: &AppState,
    ctx: &Ctx,
    tenant: &machi_domain::ids::MunicipalityCode,
    person: &AddresseeNumber,
    as_of: AsOf,
    as_of_text: &str,
    recorded_text: &str,
    my_number: Option<String>,
) -> Response {
    let (row, history) = match s
        .registry
        .resident(tenant, person, as_of, &ctx.caller.actor())
        .await
    {
        Ok(r) => r,
        // An "as of" date or time before the person was recorded: the
        // way back is the current record.
        Err(e @ crate::service::ServiceError::NotRecordedAsOf(_)) => {
            return ctx.error_back(
                &e.into(),
                Some((
                    &format!("/ui/residents/{person}"),
                    "現在の記録へ戻る",
                    "Back to the current record",
                )),
            );
        }
        Err(e) => {
            return ctx.refused(
                e,
                &format!("宛名番号 {person}"),
                &format!("Addressee number {person}"),
            );
        }
    };
    let eras = s.registry.eras();
    let mut history: Vec<ResidentView> = history
        .iter()
        .map(|r| {
            let mut v = ResidentView::new(r, eras);
            v.change.recorded_at = super::when(r.change.recorded_at);
            v
        })
        .collect();
    history.reverse();
    html(&ResidentPage {
        c: Chrome::new(ctx, "住民票（個人）", "Resident record"),
        r: ResidentView::new(&row, eras),
        history,
        as_of: as_of_text.to_string(),
        recorded_as_of: recorded_text.to_string(),
        is_current: as_of == AsOf::default(),
        can_enter: ctx.can(Permission::EnterChange),
        can_reveal: ctx.can(Permission::RevealMyNumber),
        can_certify: ctx.can(Permission::IssueCertificate),
        my_number,
    })
}

pub async fn reveal_my_number(
    State(s): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let ctx = match Ctx::load(&s, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Err(r) = ctx.check_csrf(&f.csrf) {
        return r;
    }
    let tenant = match ctx.require(Permission::RevealMyNumber) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let Ok(Path(a)) = path else {
        return ctx.error(&UiError::forbidden());
    };
    let person: AddresseeNumber = match a.parse() {
        Ok(p) => p,
        Err(e) => {
            let e: &dyn machi_domain::error::Localized = &e;
            return ctx.error(&e.into());
        }
    };
    let number = match s
        .registry
        .reveal_my_number(&tenant, &person, &ctx.caller.actor())
        .await
    {
        Ok(n) => n.unwrap_or_else(|| ctx.lang.t("（記録なし）", "(none recorded)").to_string()),
        Err(e) => return ctx.error(&e.into()),
    };
    render_resident(
        &s,
        &ctx,
        &tenant,
        &person,
        AsOf::default(),
        "",
        "",
        Some(number),
    )
    .await
}

#[derive(Template)]
#[template(path = "household.html")]
struct HouseholdPage {
    c: Chrome,
    household_number: String,
    address: String,
    members: Vec<ResidentView>,
    as_of: String,
    can_enter: bool,
    can_certify: bool,
}

pub async fn household(
    State(s): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    q: Result<Query<AsOfQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let (ctx, tenant) = match Ctx::for_page(&s, &headers, Permission::ReadPersonal).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Ok(Path(h)) = path else {
        return ctx.error(&UiError::forbidden());
    };
    let household: HouseholdNumber = match h.parse() {
        Ok(p) => p,
        Err(e) => {
            let e: &dyn machi_domain::error::Localized = &e;
            return ctx.error(&e.into());
        }
    };
    let as_of_text = q.ok().and_then(|Query(q)| q.as_of).unwrap_or_default();
    let back = format!("/ui/households/{household}");
    let back = Some((
        back.as_str(),
        "現在の世帯へ戻る",
        "Back to the current household",
    ));
    let as_of = match s.registry.parse_as_of(Some(&as_of_text), None) {
        Ok(a) => a,
        Err(e) => return ctx.error_back(&e.into(), back),
    };
    let members = match s
        .registry
        .household(&tenant, &household, as_of, &ctx.caller.actor())
        .await
    {
        Ok(m) => m,
        Err(e @ crate::service::ServiceError::HouseholdNotFound(_)) if as_of != AsOf::default() => {
            return ctx.error_back(&e.into(), back);
        }
        Err(e) => {
            return ctx.refused(
                e,
                &format!("世帯番号 {household}"),
                &format!("Household number {household}"),
            );
        }
    };
    let eras = s.registry.eras();
    let members: Vec<ResidentView> = members.iter().map(|m| ResidentView::new(m, eras)).collect();
    let address = members
        .first()
        .map(|m| match &m.address_annex {
            Some(a) => format!("{}　{}", m.address, a),
            None => m.address.clone(),
        })
        .unwrap_or_default();
    html(&HouseholdPage {
        c: Chrome::new(&ctx, "世帯", "Household"),
        household_number: household.to_string(),
        address,
        members,
        as_of: as_of_text,
        can_enter: ctx.can(Permission::EnterChange),
        can_certify: ctx.can(Permission::IssueCertificate),
    })
}

#[derive(Template)]
#[template(path = "change.html")]
struct ChangePage {
    c: Chrome,
    ch: ChangeView,
    recorded_at: String,
    rv: super::review::ReviewView,
    can_cancel: bool,
}

pub async fn change(
    State(s): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Response {
    let (ctx, tenant) = match Ctx::for_page(&s, &headers, Permission::ReadPersonal).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(id) = path.ok().and_then(|Path(id)| id.parse::<i64>().ok()) else {
        return ctx.error(&UiError {
            status: StatusCode::BAD_REQUEST,
            ja: "異動番号は数字で指定してください。".into(),
            en: "a change id is a number".into(),
        });
    };
    let c = match s.registry.change(&tenant, id, &ctx.caller.actor()).await {
        Ok(c) => c,
        Err(e) => return ctx.refused(e, &format!("異動 {id}"), &format!("Change {id}")),
    };
    let review = match s.registry.review_change(&tenant, id).await {
        Ok(r) => r,
        Err(e) => return ctx.error(&e.into()),
    };
    let notices: Vec<machi_domain::change::Notice> =
        serde_json::from_value(c.notices.clone()).unwrap_or_default();
    let mut rv = super::review::ReviewView::new(review, &notices, ctx.lang, s.registry.eras());
    rv.input_place.clear();
    let ch = ChangeView::new(&c, s.registry.eras());
    html(&ChangePage {
        c: Chrome::new(&ctx, "異動の内容", "Change"),
        recorded_at: super::when(c.recorded_at),
        rv,
        can_cancel: ctx.can(Permission::EnterChange) && ch.cancels.is_none(),
        ch,
    })
}
